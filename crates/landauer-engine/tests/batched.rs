//! The batched forward pass: one row equals candle's model; a batch equals each row alone,
//! whatever the prompt lengths; rows that finish early leave the others undisturbed; a
//! batch too large for memory is refused up front.

use landauer_engine::tiny::{write_tiny_llama, TinyConfig};
use landauer_engine::{
    Device, Engine, Forward, GenerateOptions, KvDtype, SamplingParams, SinkError, TokenEvent,
    TokenSink,
};
use std::path::{Path, PathBuf};

fn model(dir: &Path, cfg: &TinyConfig) -> PathBuf {
    let p = dir.join(format!("{}-{}.gguf", cfg.architecture, cfg.eos_token_id));
    write_tiny_llama(&p, cfg).unwrap();
    p
}

fn greedy(max_tokens: usize, ignore_eos: bool) -> GenerateOptions {
    GenerateOptions {
        max_tokens,
        sampling: SamplingParams::greedy(),
        ignore_eos,
        stop: None,
        stats_rows: usize::MAX,
    }
}

/// Token ids per row, with the first step's logits of row 0.
#[derive(Default)]
struct Rows {
    ids: Vec<Vec<u32>>,
    first_logits: Vec<f32>,
    step_tokens: Vec<usize>,
    /// Rows whose tokens came with the engine's softmax statistics.
    with_stats: std::collections::BTreeSet<usize>,
}

impl TokenSink for Rows {
    fn token(&mut self, e: &TokenEvent<'_>) -> Result<(), SinkError> {
        if self.ids.len() <= e.seq {
            self.ids.resize(e.seq + 1, Vec::new());
        }
        if e.seq == 0 && e.index == 0 {
            self.first_logits = e.logits.unwrap().to_vec();
        }
        assert_eq!(e.index, self.ids[e.seq].len(), "indices count up per row");
        self.ids[e.seq].push(e.token_id);
        self.step_tokens.push(e.step_tokens);
        if let Some(stats) = e.stats {
            // Computed in parallel with the other rows, the same as alone.
            assert_eq!(stats, landauer_physics::softmax_stats(e.logits.unwrap()));
            self.with_stats.insert(e.seq);
        }
        Ok(())
    }
}

fn alone(engine: &mut Engine, prompt: &[u32], opts: &GenerateOptions) -> Rows {
    let mut rows = Rows::default();
    engine.generate(prompt, opts, &mut rows).unwrap();
    rows
}

const PROMPTS: [&str; 4] = [
    "The cat sat on the mat.",
    "Hello",
    "Once upon a time, there was a little girl named Lily.",
    "What is the energy of a token?",
];

#[test]
fn one_row_matches_candles_models() {
    let dir = tempfile::tempdir().unwrap();
    for arch in ["llama", "mistral", "qwen2", "qwen3"] {
        let cfg = TinyConfig {
            architecture: arch.into(),
            // Qwen3's heads need not divide the hidden size: 4 heads of 24 in a width of 64.
            head_dim: (arch == "qwen3").then_some(24),
            ..Default::default()
        };
        let path = model(dir.path(), &cfg);
        let mut candle = Engine::load_with(&path, None, &Device::Cpu, Forward::Candle).unwrap();
        let mut ours = Engine::load_batched(&path, None, &Device::Cpu).unwrap();
        assert!(ours.is_batched() && !candle.is_batched());
        assert_eq!(ours.kv_dtype(), KvDtype::F16, "the CPU default");
        assert!(!candle.set_kv_dtype(KvDtype::F16) && candle.kv_dtype() == KvDtype::F32);
        let prompt = candle.encode(PROMPTS[2]).unwrap();
        let a = alone(&mut candle, &prompt, &greedy(24, true));
        // With an f32 cache (candle's), the same arithmetic up to the order of additions.
        assert!(ours.set_kv_dtype(KvDtype::F32));
        let b = alone(&mut ours, &prompt, &greedy(24, true));
        assert_eq!(a.ids, b.ids, "{arch}: greedy tokens differ");
        let diff = |x: &[f32], y: &[f32]| {
            x.iter()
                .zip(y)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max)
        };
        let d32 = diff(&a.first_logits, &b.first_logits);
        assert!(d32 < 1e-4, "{arch}: logits differ by {d32}");
        // With an f16 cache, keys and values rounded to 11 bits: not the same, but near.
        // (These random weights, ±3/√fan-in, amplify a perturbation layer after layer: the
        // rounding moves their logits by ~3% of the largest. The default model's greedy run
        // moves by as much as candle's forward pass does; cpu_attention's tests hold the
        // attention itself to the rounded values.)
        ours.set_kv_dtype(KvDtype::F16);
        let c = alone(&mut ours, &prompt, &greedy(24, true));
        let d16 = diff(&a.first_logits, &c.first_logits);
        let scale = a.first_logits.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(
            d16 > 1e-3 * scale && d16 < 0.1 * scale,
            "{arch}: f16 cache moved the logits by {d16} (f32: {d32}; largest |logit| {scale})"
        );
    }
}

#[test]
fn a_batch_equals_each_row_alone_whatever_the_prompt_lengths() {
    let dir = tempfile::tempdir().unwrap();
    for arch in ["llama", "qwen2", "qwen3"] {
        let cfg = TinyConfig {
            architecture: arch.into(),
            ..Default::default()
        };
        let mut engine =
            Engine::load_batched(&model(dir.path(), &cfg), None, &Device::Cpu).unwrap();
        let prompts: Vec<Vec<u32>> = PROMPTS.iter().map(|p| engine.encode(p).unwrap()).collect();
        let lens: Vec<usize> = prompts.iter().map(Vec::len).collect();
        assert!(
            lens.iter().min() < lens.iter().max(),
            "mixed lengths {lens:?}"
        );
        let opts = greedy(16, true);
        let mut batch = Rows::default();
        let end = engine.generate_batch(&prompts, &opts, &mut batch).unwrap();
        assert_eq!(end.generated_tokens, 4 * 16);
        assert_eq!(end.prompt_tokens, lens.iter().sum::<usize>());
        assert!(batch.step_tokens.iter().all(|&n| n == 4));
        for (r, p) in prompts.iter().enumerate() {
            let single = alone(&mut engine, p, &opts);
            assert_eq!(
                batch.ids[r], single.ids[0],
                "{arch}: row {r} differs from alone"
            );
        }
        // Equal lengths: no padding, and decode steps run without a mask.
        let same = vec![prompts[0].clone(); 3];
        let mut batch = Rows::default();
        engine.generate_batch(&same, &opts, &mut batch).unwrap();
        let single = alone(&mut engine, &prompts[0], &opts);
        for r in 0..3 {
            assert_eq!(batch.ids[r], single.ids[0], "{arch}: unpadded row {r}");
        }
    }
}

#[test]
fn a_row_that_ends_early_leaves_the_others_undisturbed() {
    let dir = tempfile::tempdir().unwrap();
    let base = TinyConfig::default();
    let mut probe = Engine::load_batched(&model(dir.path(), &base), None, &Device::Cpu).unwrap();
    let prompts: Vec<Vec<u32>> = PROMPTS.iter().map(|p| probe.encode(p).unwrap()).collect();
    // Make the 4th token row 0 picks the end-of-sequence token of an otherwise identical model.
    let first = alone(&mut probe, &prompts[0], &greedy(4, true)).ids[0].clone();
    let eos = first[3];
    assert!(!first[..3].contains(&eos), "pick another prompt: {first:?}");
    let cfg = TinyConfig {
        eos_token_id: eos,
        ..base
    };
    let mut engine = Engine::load_batched(&model(dir.path(), &cfg), None, &Device::Cpu).unwrap();
    let opts = greedy(12, false);
    let mut batch = Rows::default();
    engine.generate_batch(&prompts, &opts, &mut batch).unwrap();
    assert_eq!(
        batch.ids[0], first,
        "row 0 stops at its end-of-sequence token"
    );
    for (r, p) in prompts.iter().enumerate() {
        assert_eq!(batch.ids[r], alone(&mut engine, p, &opts).ids[0], "row {r}");
    }
    assert!(
        batch.ids[1..].iter().any(|ids| ids.len() > 4),
        "the other rows go on after row 0 ends"
    );
    // Steps after row 0 ended share their window among fewer tokens.
    assert!(batch.step_tokens.iter().any(|&n| n < 4));
}

#[test]
fn a_batch_too_large_for_memory_is_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TinyConfig {
        context: 4096,
        ..Default::default()
    };
    let mut engine = Engine::load_batched(&model(dir.path(), &cfg), None, &Device::Cpu).unwrap();
    let prompt = engine.encode("Hello").unwrap();
    let (kv, _) = engine.batch_memory(100_000, prompt.len(), 4000);
    assert!(kv > 64 << 30, "{kv}");
    // f16 keys and values by default; f32 takes twice the memory.
    engine.set_kv_dtype(KvDtype::F32);
    assert_eq!(engine.batch_memory(100_000, prompt.len(), 4000).0, 2 * kv);
    engine.set_kv_dtype(KvDtype::F16);
    let prompts = vec![prompt; 100_000];
    let e = engine
        .generate_batch(&prompts, &greedy(4000, true), ())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("100000 rows") && e.contains("GiB") && e.contains("free"),
        "{e}"
    );
    // Not batched: says how to get a batched engine.
    let mut plain = Engine::load_with(
        &model(dir.path(), &cfg),
        None,
        &Device::Cpu,
        Forward::Candle,
    )
    .unwrap();
    let e = plain
        .generate_batch(&[vec![1, 2]], &greedy(2, true), ())
        .unwrap_err()
        .to_string();
    assert!(e.contains("load_batched"), "{e}");
}

#[test]
fn the_engine_sends_the_softmax_statistics_of_the_rows_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let path = model(dir.path(), &TinyConfig::default());
    let mut engine = Engine::load_batched(&path, None, &Device::Cpu).unwrap();
    let prompts: Vec<Vec<u32>> = PROMPTS.iter().map(|p| engine.encode(p).unwrap()).collect();
    for (limit, want) in [(usize::MAX, vec![0, 1, 2, 3]), (2, vec![0, 1]), (0, vec![])] {
        let mut rows = Rows::default();
        let opts = GenerateOptions {
            stats_rows: limit,
            ..greedy(6, true)
        };
        engine.generate_batch(&prompts, &opts, &mut rows).unwrap();
        assert_eq!(rows.with_stats.into_iter().collect::<Vec<_>>(), want);
        let alone = alone(&mut engine, &prompts[0], &opts);
        // A single sequence sends none: its sinks compute them.
        assert!(alone.with_stats.is_empty());
    }
}
