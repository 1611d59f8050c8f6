//! Quantize at load: llama-quantize's per-tensor types, the same model in memory and saved,
//! from GGUF files and from checkpoints.

use candle_core::quantized::{gguf_file, GgmlDType};
use landauer_engine::tiny::{write_checkpoint, write_tiny_llama, TinyConfig};
use landauer_engine::{
    Device, Engine, Forward, GenerateOptions, SamplingParams, SinkError, TokenEvent, TokenSink,
};
use std::path::Path;

/// Big enough for k-quants' 256-wide blocks.
fn cfg(dtype: GgmlDType) -> TinyConfig {
    TinyConfig {
        hidden: 256,
        ffn: 512,
        heads: 4,
        kv_heads: 2,
        dtype,
        ..Default::default()
    }
}

#[derive(Default)]
struct Logits(Vec<u32>, Vec<Vec<f32>>);

impl TokenSink for Logits {
    fn token(&mut self, e: &TokenEvent<'_>) -> Result<(), SinkError> {
        self.0.push(e.token_id);
        self.1.push(e.logits.unwrap().to_vec());
        Ok(())
    }
}

fn run(engine: &mut Engine) -> Logits {
    let tokens = engine.encode("The cat sat on the mat").unwrap();
    let opts = GenerateOptions {
        max_tokens: 6,
        sampling: SamplingParams::greedy(),
        ignore_eos: true,
        stop: None,
        stats_rows: usize::MAX,
    };
    let mut out = Logits::default();
    engine.generate(&tokens, &opts, &mut out).unwrap();
    out
}

fn types(path: &Path) -> std::collections::HashMap<String, GgmlDType> {
    let mut f = std::fs::File::open(path).unwrap();
    let c = gguf_file::Content::read(&mut f).unwrap();
    c.tensor_infos
        .into_iter()
        .map(|(n, t)| (n, t.ggml_dtype))
        .collect()
}

fn quantized(path: &Path, preset: &str, save: Option<&Path>) -> Engine {
    Engine::load_quantized(
        path,
        None,
        &Device::Cpu,
        Forward::Batched,
        preset,
        save,
        &mut |_, _| {},
    )
    .unwrap()
}

#[test]
fn q4_k_m_types_each_tensor_as_llama_quantize_does_and_saves_what_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("f32.gguf");
    write_tiny_llama(&src, &cfg(GgmlDType::F32)).unwrap();
    let saved = dir.path().join("q4_k_m.gguf");
    let mut a = quantized(&src, "q4_k_m", Some(&saved));
    let t = types(&saved);
    // Two layers: llama.cpp's use_more_bits picks layer 1 (i >= 7n/8) for attn_v and
    // ffn_down; the tied embedding is the output, in Q6_K; norms stay F32.
    assert_eq!(t["token_embd.weight"], GgmlDType::Q6K);
    assert_eq!(t["blk.0.attn_v.weight"], GgmlDType::Q4K);
    assert_eq!(t["blk.1.attn_v.weight"], GgmlDType::Q6K);
    assert_eq!(t["blk.1.ffn_down.weight"], GgmlDType::Q6K);
    assert_eq!(t["blk.0.attn_q.weight"], GgmlDType::Q4K);
    assert_eq!(t["blk.0.attn_norm.weight"], GgmlDType::F32);
    // What runs in memory is what was saved, bit for bit.
    let mut b = Engine::load_batched(&saved, None, &Device::Cpu).unwrap();
    let (x, y) = (run(&mut a), run(&mut b));
    assert_eq!(x.0, y.0);
    assert_eq!(x.1, y.1);
    let info = a.info();
    assert_eq!(info.quantize.as_deref(), Some("q4_k_m"));
    assert_eq!(info.quantized_from.as_deref(), Some("F32"));
    assert_eq!(info.tensor_types["attn_v"], "Q4_K 1, Q6_K 1");
    assert_eq!(info.tensor_types["attn_q"], "Q4_K");
    // Q4_K is 4.5 bits a weight, Q6_K 6.5625: the mix lies between.
    assert!(
        info.bits_per_weight > 4.5 && info.bits_per_weight < 6.5625,
        "{}",
        info.bits_per_weight
    );
}

#[test]
fn q8_0_stays_close_to_the_float_model() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("f32.gguf");
    write_tiny_llama(&src, &cfg(GgmlDType::F32)).unwrap();
    let mut f32 = Engine::load_batched(&src, None, &Device::Cpu).unwrap();
    let mut q8 = quantized(&src, "q8_0", None);
    assert_eq!(q8.info().bits_per_weight, 8.5);
    assert_eq!(q8.info().tensor_types["ffn_down"], "Q8_0");
    let (x, y) = (run(&mut f32), run(&mut q8));
    // The first step's logits (same prompt) move by a fraction of their spread.
    let spread = x.1[0].iter().fold(0f32, |m, v| m.max(v.abs()));
    let moved = x.1[0]
        .iter()
        .zip(&y.1[0])
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(moved < 0.05 * spread, "moved {moved} of {spread}");
}

#[test]
fn a_bf16_checkpoint_quantized_and_saved_carries_its_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bf16.gguf");
    write_tiny_llama(&src, &cfg(GgmlDType::BF16)).unwrap();
    let ckpt = dir.path().join("ckpt");
    write_checkpoint(&src, &ckpt, 2).unwrap();
    let saved = dir.path().join("q6_k.gguf");
    let mut a = quantized(&ckpt, "q6_k", Some(&saved));
    assert_eq!(a.info().quantized_from.as_deref(), Some("BF16"));
    // The saved file tokenizes on its own (no tokenizer.json beside it).
    let mut b = Engine::load_batched(&saved, None, &Device::Cpu).unwrap();
    assert_eq!(
        a.encode("The quick brown fox 12345").unwrap(),
        b.encode("The quick brown fox 12345").unwrap()
    );
    let (x, y) = (run(&mut a), run(&mut b));
    assert_eq!(x.0, y.0);
    assert_eq!(x.1, y.1);
}

#[test]
fn an_unknown_format_names_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("f32.gguf");
    write_tiny_llama(&src, &cfg(GgmlDType::F32)).unwrap();
    let e = Engine::load_quantized(
        &src,
        None,
        &Device::Cpu,
        Forward::Batched,
        "q3_xs",
        None,
        &mut |_, _| {},
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("q3_xs") && e.contains("q4_k_m"), "{e}");
}

#[test]
fn the_two_and_three_bit_mixes_follow_llama_quantize() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("f32.gguf");
    write_tiny_llama(&src, &cfg(GgmlDType::F32)).unwrap();
    for (preset, want) in [
        // attn_v in Q5_K for the first two layers, ffn_down and attn_output in Q4_K.
        (
            "q3_k_m",
            [
                GgmlDType::Q5K,
                GgmlDType::Q4K,
                GgmlDType::Q4K,
                GgmlDType::Q3K,
            ],
        ),
        (
            "q3_k_l",
            [
                GgmlDType::Q5K,
                GgmlDType::Q5K,
                GgmlDType::Q5K,
                GgmlDType::Q3K,
            ],
        ),
        // 4 heads on 2 key/value heads (gqa 2): attn_v in Q3_K.
        (
            "q2_k",
            [
                GgmlDType::Q3K,
                GgmlDType::Q3K,
                GgmlDType::Q3K,
                GgmlDType::Q2K,
            ],
        ),
    ] {
        let saved = dir.path().join(format!("{preset}.gguf"));
        let mut e = quantized(&src, preset, Some(&saved));
        let t = types(&saved);
        let got = [
            t["blk.1.attn_v.weight"],
            t["blk.1.ffn_down.weight"],
            t["blk.1.attn_output.weight"],
            t["blk.1.attn_q.weight"],
        ];
        assert_eq!(got, want, "{preset}");
        assert_eq!(t["token_embd.weight"], GgmlDType::Q6K, "{preset}");
        // And it runs on landauer's kernels.
        assert_eq!(run(&mut e).0.len(), 6);
        assert!(
            e.slow_tensors().is_empty(),
            "{preset}: {:?}",
            e.slow_tensors()
        );
    }
}
