//! Continuous batching: sequences that join a running batch at different steps and leave
//! at different steps give the tokens they give alone (greedy and seeded sampling), on the
//! CPU's attention and on the tensor ops GPUs run; a step's window is shared by the tokens
//! it produced and the windows tile the busy time; stopped rows leave and free their row;
//! what cannot be taken is refused with the sink handed back.

use landauer_engine::continuous::{ContinuousBatch, Finished, RowOptions};
use landauer_engine::tiny::{write_tiny_llama, TinyConfig};
use landauer_engine::{
    Device, Engine, GenerateOptions, KvDtype, Phase, RunEnd, RunStart, SamplingParams,
    SamplingPlace, SinkError, StopReason, TokenEvent, TokenSink,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

fn model(dir: &Path, cfg: &TinyConfig) -> PathBuf {
    let p = dir.join(format!("{}.gguf", cfg.architecture));
    write_tiny_llama(&p, cfg).unwrap();
    p
}

/// A tiny model on landauer's batched pass.
fn engine(dir: &Path, cfg: &TinyConfig) -> Engine {
    Engine::load_batched(&model(dir, cfg), None, &Device::Cpu).unwrap()
}

/// What a sequence's sink saw.
#[derive(Default)]
struct Seen {
    at: Option<Instant>,
    ids: Vec<u32>,
    phases: Vec<Phase>,
    /// (start, end) of each token's window, absolute, and its step's token count.
    windows: Vec<(Instant, Instant, usize)>,
    entropies: Vec<f64>,
    ended: Option<RunEnd>,
}

impl TokenSink for Seen {
    fn begin(&mut self, s: &RunStart) -> Result<(), SinkError> {
        self.at = Some(s.at);
        Ok(())
    }
    fn token(&mut self, e: &TokenEvent<'_>) -> Result<(), SinkError> {
        assert_eq!(e.index, self.ids.len(), "indices count up per sequence");
        let at = self.at.expect("begun");
        let abs = |s: f64| at + std::time::Duration::from_secs_f64(s);
        self.windows
            .push((abs(e.t_start_s), abs(e.t_end_s), e.step_tokens));
        self.ids.push(e.token_id);
        self.phases.push(e.phase);
        self.entropies
            .push(e.softmax_stats().expect("stats sent").entropy_bits);
        Ok(())
    }
    fn end(&mut self, e: &RunEnd) -> Result<(), SinkError> {
        self.ended = Some(e.clone());
        Ok(())
    }
}

const PROMPTS: [&str; 5] = [
    "The cat sat on the mat.",
    "Hello",
    "Once upon a time, there was a little girl named Lily.",
    "What is the energy of a token?",
    "A",
];

/// Tokens of `prompt` generated alone.
fn alone(
    engine: &mut Engine,
    prompt: &[u32],
    max_tokens: usize,
    sampling: &SamplingParams,
) -> Vec<u32> {
    let opts = GenerateOptions {
        max_tokens,
        sampling: sampling.clone(),
        ignore_eos: true,
        stop: None,
        stats_rows: usize::MAX,
    };
    let mut seen = Seen::default();
    engine.generate(prompt, &opts, &mut seen).unwrap();
    seen.ids
}

/// Runs `plan` (sequence i joins before step `joins[i]`, generating `max[i]` tokens) in a
/// batch of `max_batch` rows; returns the finished sequences by id.
fn run(
    engine: &mut Engine,
    prompts: &[Vec<u32>],
    joins: &[usize],
    max: &[usize],
    sampling: &[SamplingParams],
    max_batch: usize,
) -> (Vec<Finished<Seen>>, Vec<usize>) {
    let mut batch = ContinuousBatch::new(engine, max_batch).unwrap();
    let mut done = Vec::new();
    let mut decode_rows = Vec::new();
    let mut next = 0;
    let mut step = 0;
    while next < prompts.len() || !batch.is_empty() {
        while next < prompts.len() && joins[next] <= step && batch.has_room() {
            let opts = RowOptions {
                ignore_eos: true,
                ..RowOptions::new(max[next], sampling[next].clone())
            };
            let id = batch
                .admit(prompts[next].clone(), opts, Seen::default())
                .map_err(|(e, _)| e)
                .unwrap();
            assert_eq!(id, next as u64, "ids count up");
            next += 1;
        }
        done.extend(batch.step().unwrap());
        decode_rows.push(batch.last_decode_rows());
        step += 1;
    }
    done.sort_by_key(|f| f.id);
    (done, decode_rows)
}

fn check_equals_alone(arch: &str, tensor_attention: bool, kv: KvDtype, place: SamplingPlace) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TinyConfig {
        architecture: arch.into(),
        ..Default::default()
    };
    let mut engine = engine(dir.path(), &cfg);
    engine.set_tensor_attention(tensor_attention);
    engine.set_kv_dtype(kv);
    // Alone on the host: the device path (rows with the same settings planned together)
    // must give the host's tokens.
    engine.set_sampling_place(place);
    let label =
        format!("{arch}, tensor attention {tensor_attention}, {kv:?}, sampled on {place:?}");
    let prompts: Vec<Vec<u32>> = PROMPTS.iter().map(|p| engine.encode(p).unwrap()).collect();
    // Joining at steps 0, 0, 2, 3 and 7 (the last after two rows have left and a third has
    // moved into a freed row), leaving after 9, 4, 12, 3 and 6 tokens.
    let joins = [0, 0, 2, 3, 7];
    let max = [9, 4, 12, 3, 6];
    let mut sampling = vec![SamplingParams::greedy(); 5];
    // Two sampled rows, with their own seeds and settings: the draws they make alone.
    sampling[1] = SamplingParams {
        temperature: 0.9,
        seed: 7,
        ..SamplingParams::greedy()
    };
    sampling[3] = SamplingParams {
        temperature: 1.0,
        top_k: Some(20),
        top_p: Some(0.9),
        seed: 11,
    };
    let (done, decode_rows) = run(&mut engine, &prompts, &joins, &max, &sampling, 3);
    engine.set_sampling_place(SamplingPlace::Host);
    assert_eq!(done.len(), 5, "{label}");
    assert!(
        decode_rows.contains(&3),
        "{label}: three rows decode together at some step ({decode_rows:?})"
    );
    for (i, f) in done.iter().enumerate() {
        let want = alone(&mut engine, &prompts[i], max[i], &sampling[i]);
        assert_eq!(f.sink.ids, want, "{label}: sequence {i} differs from alone");
        let end = f.sink.ended.as_ref().expect("ended");
        assert_eq!(end.reason, StopReason::MaxTokens);
        assert_eq!(end.generated_tokens, max[i]);
        assert_eq!(f.end.prompt_tokens, prompts[i].len());
        assert_eq!(f.sink.phases[0], Phase::Prefill);
        assert!(f.sink.phases[1..].iter().all(|&p| p == Phase::Decode));
        assert!(f.sink.entropies.iter().all(|h| h.is_finite() && *h >= 0.0));
    }
}

#[test]
fn sequences_joining_and_leaving_give_their_tokens_alone() {
    for arch in ["llama", "qwen2", "qwen3"] {
        check_equals_alone(arch, false, KvDtype::F16, SamplingPlace::Host);
    }
    check_equals_alone("llama", false, KvDtype::F32, SamplingPlace::Host);
}

#[test]
fn the_gpus_tensor_path_gives_the_same_tokens_on_the_cpu() {
    for arch in ["llama", "qwen2"] {
        check_equals_alone(arch, true, KvDtype::F32, SamplingPlace::Host);
    }
    // The GPU's whole path: tensor attention and sampling where the logits are, rows with
    // different settings planned in groups.
    check_equals_alone("qwen3", true, KvDtype::F32, SamplingPlace::Device);
}

#[test]
fn rows_sampled_on_the_device_give_the_hosts_tokens() {
    check_equals_alone("llama", false, KvDtype::F16, SamplingPlace::Device);
}

#[test]
fn a_steps_window_is_shared_by_its_tokens_and_windows_tile_the_busy_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = engine(dir.path(), &TinyConfig::default());
    let prompts: Vec<Vec<u32>> = PROMPTS.iter().map(|p| engine.encode(p).unwrap()).collect();
    let (done, _) = run(
        &mut engine,
        &prompts,
        &[0, 1, 1, 4, 5],
        &[6, 6, 3, 5, 4],
        &vec![SamplingParams::greedy(); 5],
        4,
    );
    // Every token's window, with how many tokens it says share it.
    let mut windows: Vec<(Instant, Instant, usize)> =
        done.iter().flat_map(|f| f.sink.windows.clone()).collect();
    windows.sort_by_key(|w| (w.0, w.1));
    let mut distinct: Vec<((Instant, Instant), usize, usize)> = Vec::new();
    for (a, b, n) in windows {
        match distinct.last_mut() {
            Some((w, count, said)) if *w == (a, b) => {
                *count += 1;
                assert_eq!(*said, n, "one step, one token count");
            }
            _ => distinct.push(((a, b), 1, n)),
        }
    }
    for ((a, b), count, said) in &distinct {
        assert!(b > a, "a window has length");
        assert_eq!(
            count, said,
            "a window is shared by exactly the tokens its step produced"
        );
    }
    // The batch never idled: each window starts where the previous one ended.
    for pair in distinct.windows(2) {
        assert_eq!(pair[0].0 .1, pair[1].0 .0, "windows tile the busy time");
    }
    // Prompt passes are their newcomer's alone.
    for f in &done {
        assert_eq!(f.sink.windows[0].2, 1, "a prompt pass produces one token");
    }
}

/// A sink whose stop flag is set after `after` tokens.
struct StopAfter {
    seen: Seen,
    after: usize,
    flag: Arc<AtomicBool>,
}

impl TokenSink for StopAfter {
    fn begin(&mut self, s: &RunStart) -> Result<(), SinkError> {
        self.seen.begin(s)
    }
    fn token(&mut self, e: &TokenEvent<'_>) -> Result<(), SinkError> {
        self.seen.token(e)?;
        if self.seen.ids.len() >= self.after {
            self.flag.store(true, Ordering::Relaxed);
        }
        Ok(())
    }
    fn end(&mut self, e: &RunEnd) -> Result<(), SinkError> {
        self.seen.end(e)
    }
}

#[test]
fn a_stopped_row_leaves_and_its_row_serves_the_next_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = engine(dir.path(), &TinyConfig::default());
    let prompts: Vec<Vec<u32>> = PROMPTS.iter().map(|p| engine.encode(p).unwrap()).collect();
    let want2 = alone(&mut engine, &prompts[2], 5, &SamplingParams::greedy());
    let mut batch = ContinuousBatch::new(&mut engine, 2).unwrap();
    let sink = |after| {
        let flag = Arc::new(AtomicBool::new(false));
        let opts = RowOptions {
            ignore_eos: true,
            stop: Some(flag.clone()),
            ..RowOptions::new(50, SamplingParams::greedy())
        };
        (
            opts,
            StopAfter {
                seen: Seen::default(),
                after,
                flag,
            },
        )
    };
    let (o, s) = sink(3);
    batch
        .admit(prompts[0].clone(), o, s)
        .map_err(|(e, _)| e)
        .unwrap();
    let (o, s) = sink(50);
    batch
        .admit(prompts[1].clone(), o, s)
        .map_err(|(e, _)| e)
        .unwrap();
    // Full: the third is refused, its sink handed back.
    let (o, s) = sink(50);
    let (err, back) = batch.admit(prompts[2].clone(), o, s).unwrap_err();
    assert!(err.to_string().contains("full"), "{err}");
    assert_eq!(back.after, 50);
    let mut done = Vec::new();
    while done.is_empty() {
        done.extend(batch.step().unwrap());
    }
    // Row 0 stopped after its 3rd token: it left with exactly 3.
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].id, 0);
    assert_eq!(done[0].end.reason, StopReason::Interrupted);
    assert_eq!(done[0].sink.seen.ids.len(), 3);
    assert!(batch.has_room());
    // The freed row takes the next sequence, which gives its tokens alone.
    let opts = RowOptions {
        ignore_eos: true,
        ..RowOptions::new(5, SamplingParams::greedy())
    };
    let (o, _) = sink(50);
    let id = batch
        .admit(
            prompts[2].clone(),
            opts,
            StopAfter {
                seen: Seen::default(),
                after: 50,
                flag: o.stop.unwrap(),
            },
        )
        .map_err(|(e, _)| e)
        .unwrap();
    let mut rest = Vec::new();
    while rest.iter().all(|f: &Finished<StopAfter>| f.id != id) {
        rest.extend(batch.step().unwrap());
    }
    let third = rest.iter().find(|f| f.id == id).unwrap();
    assert_eq!(third.sink.seen.ids, want2);
    // A waiting sequence stopped before its prompt pass leaves with no token.
    let (o, s) = sink(50);
    let flag = s.flag.clone();
    batch
        .admit(prompts[3].clone(), o, s)
        .map_err(|(e, _)| e)
        .unwrap();
    flag.store(true, Ordering::Relaxed);
    let gone = batch.step().unwrap();
    let f = gone.iter().find(|f| f.id == id + 1).expect("left at once");
    assert_eq!(f.end.generated_tokens, 0);
    assert_eq!(f.end.reason, StopReason::Interrupted);
}

#[test]
fn what_cannot_be_taken_is_refused_with_the_sink_back() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TinyConfig {
        context: 32,
        ..Default::default()
    };
    let mut engine = engine(dir.path(), &cfg);
    let long: Vec<u32> = vec![5; 40];
    let short = engine.encode("Hello").unwrap();
    let mut batch = ContinuousBatch::<Seen>::new(&mut engine, 2).unwrap();
    let opts = RowOptions::new(4, SamplingParams::greedy());
    let (e, _) = batch
        .admit(long, opts.clone(), Seen::default())
        .unwrap_err();
    assert!(e.to_string().contains("context"), "{e}");
    let (e, _) = batch
        .admit(Vec::new(), opts.clone(), Seen::default())
        .unwrap_err();
    assert!(e.to_string().to_lowercase().contains("empty"), "{e}");
    let bad = RowOptions::new(
        4,
        SamplingParams {
            temperature: -1.0,
            ..SamplingParams::greedy()
        },
    );
    assert!(batch.admit(short.clone(), bad, Seen::default()).is_err());
    // A row that reaches the context's end stops there: its last token comes from a full
    // context (32 slots) and is not fed back, as in `Engine::generate`.
    let opts = RowOptions {
        ignore_eos: true,
        ..RowOptions::new(100, SamplingParams::greedy())
    };
    batch
        .admit(short.clone(), opts, Seen::default())
        .map_err(|(e, _)| e)
        .unwrap();
    let mut done = Vec::new();
    while !batch.is_empty() {
        done.extend(batch.step().unwrap());
    }
    assert_eq!(done[0].end.reason, StopReason::ContextFull);
    assert_eq!(done[0].end.generated_tokens + short.len(), 32 + 1);
    drop(batch);
    // A model on candle-transformers' pass cannot batch.
    let mut candle = Engine::load_with(
        &model(dir.path(), &cfg),
        None,
        &Device::Cpu,
        landauer_engine::Forward::Candle,
    )
    .unwrap();
    assert!(ContinuousBatch::<Seen>::new(&mut candle, 2).is_err());
}

#[test]
fn a_batch_is_sized_up_front_and_rows_can_be_shorter_than_the_context() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TinyConfig {
        context: 4096,
        ..Default::default()
    };
    let mut engine = engine(dir.path(), &cfg);
    // Ten million rows of 4,096 slots do not fit: refused before anything is allocated.
    let e = ContinuousBatch::<Seen>::new(&mut engine, 10_000_000)
        .err()
        .expect("refused");
    assert!(e.to_string().contains("10000000"), "{e}");
    assert!(ContinuousBatch::<Seen>::new(&mut engine, 0).is_err());
    // Rows of 16 slots: a prompt of 16 tokens does not fit, one of 15 generates one token
    // from a full row (as at the model's own context end).
    let mut batch = ContinuousBatch::<Seen>::with_context(&mut engine, 2, Some(16)).unwrap();
    assert_eq!(batch.context(), 16);
    let opts = RowOptions {
        ignore_eos: true,
        ..RowOptions::new(50, SamplingParams::greedy())
    };
    assert!(batch
        .admit(vec![5; 16], opts.clone(), Seen::default())
        .is_err());
    batch
        .admit(vec![5; 15], opts, Seen::default())
        .map_err(|(e, _)| e)
        .unwrap();
    let mut done = Vec::new();
    while !batch.is_empty() {
        done.extend(batch.step().unwrap());
    }
    assert_eq!(done[0].end.reason, StopReason::ContextFull);
    assert_eq!(done[0].end.generated_tokens, 2);
}

/// A sink that fails at its first token.
#[derive(Debug, Default)]
struct Failing(bool);

impl TokenSink for Failing {
    fn token(&mut self, _: &TokenEvent<'_>) -> Result<(), SinkError> {
        match self.0 {
            true => Err("the disk is full".into()),
            false => Ok(()),
        }
    }
}

#[test]
fn after_an_error_every_sequence_is_handed_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = engine(dir.path(), &TinyConfig::default());
    let prompt = engine.encode("Hello").unwrap();
    let mut batch = ContinuousBatch::new(&mut engine, 4).unwrap();
    let opts = RowOptions::new(8, SamplingParams::greedy());
    batch
        .admit(prompt.clone(), opts.clone(), Failing(false))
        .unwrap();
    batch.step().unwrap();
    // A newcomer whose sink fails at its prompt pass's token, and one still waiting.
    batch
        .admit(prompt.clone(), opts.clone(), Failing(true))
        .unwrap();
    let e = batch.step().err().expect("the sink's error");
    assert!(e.to_string().contains("disk is full"), "{e}");
    batch.admit(prompt, opts, Failing(false)).unwrap();
    let back = batch.abandon();
    let mut ids: Vec<u64> = back.iter().map(|(id, _)| *id).collect();
    ids.sort();
    assert_eq!(
        ids,
        [0, 1, 2],
        "running, failed and waiting sequences all handed back"
    );
    assert!(batch.is_empty());
}
