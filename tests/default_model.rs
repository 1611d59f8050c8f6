//! Tests on the real default model (SmolLM2-135M-Instruct Q4_1). They skip, loudly, when
//! the model has not been fetched (`cargo run -- fetch`); CI fetches it so they run there.

mod common;

use common::*;
use landauer_engine::fetch::{default_model_path, Manifest};
use std::path::PathBuf;

fn default_model() -> Option<PathBuf> {
    let p = default_model_path();
    let size_ok = std::fs::metadata(&p)
        .map(|m| m.len() == Manifest::default_model().size)
        .unwrap_or(false);
    if size_ok {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: default model not found at {} -- run `cargo run -- fetch` to enable these tests",
            p.display()
        );
        None
    }
}

#[test]
fn greedy_chat_knows_the_capital_of_france() {
    let Some(model) = default_model() else { return };
    let out = run(landauer()
        .args([
            "generate",
            "--chat",
            "--greedy",
            "--max-tokens",
            "24",
            "-q",
            "--model",
        ])
        .arg(&model)
        .arg("What is the capital of France?"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Paris"), "answer was: {text}");
}

#[test]
fn sampled_surprisal_matches_entropy_over_256_tokens() {
    // Asymptotic equipartition: sampling at temperature 1 from the model's own distribution,
    // the mean surprisal of what was drawn converges to the mean entropy of the distributions.
    let Some(model) = default_model() else { return };
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("aep.jsonl");
    let out = run(landauer()
        .args([
            "generate",
            "--temperature",
            "1",
            "--seed",
            "2024",
            "--max-tokens",
            "256",
        ])
        .args(["--ignore-eos", "-q", "--model"])
        .arg(&model)
        .arg("--trace")
        .arg(&trace)
        .arg("Once upon a time, there was a little girl named Lily. She"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = read_jsonl(&trace);
    let s = t.last().unwrap();
    assert_eq!(s["tokens"], 256);
    let (h, sur) = (f(s, "mean_entropy_bits"), f(s, "mean_surprisal_bits"));
    eprintln!("mean entropy {h:.4} bits, mean surprisal {sur:.4} bits over 256 tokens");
    assert!(
        (sur - h).abs() <= 0.10 * h,
        "surprisal {sur} vs entropy {h}"
    );
    // At temperature 1 without truncation the sampled distribution is the model's.
    for r in t.iter().filter(|r| r["type"] == "token") {
        assert!(close(
            f(r, "sampling_entropy_bits"),
            f(r, "entropy_bits"),
            1e-6
        ));
    }
}

#[test]
fn tokenizer_round_trips_and_splits_digits() {
    let Some(model) = default_model() else { return };
    let engine =
        landauer_engine::Engine::load(&model, None, &landauer_engine::Device::Cpu).unwrap();
    for s in [
        "What is the capital of France?",
        "  leading spaces, unicode: é ü 日本語 🙂\nnew line\ttab",
        "x = 12345 + 678",
    ] {
        let ids = engine.encode(s).unwrap();
        let back = engine.tokenizer().decode(&ids, false).unwrap();
        assert_eq!(back, s);
    }
    // SmolLM2 splits digits one by one.
    let ids = engine.encode("12345").unwrap();
    assert_eq!(ids.len(), 5, "{ids:?}");
    // No prefix space: "Hello" at the start is the same token as inside a text.
    let hello = engine.tokenizer().token_to_id("Hello").unwrap();
    assert_eq!(engine.encode("Hello").unwrap(), vec![hello]);
    // Chat special tokens are single tokens.
    let ids = engine.encode("<|im_start|>user\nhi<|im_end|>").unwrap();
    assert_eq!(ids[0], 1);
    assert_eq!(*ids.last().unwrap(), 2);
}

#[test]
fn synthetic_smollm2_has_the_real_files_shapes() {
    let Some(model) = default_model() else { return };
    let real = landauer_engine::gguf::GgufFile::open(&model).unwrap();
    let spec =
        landauer_engine::synthetic::SyntheticSpec::parse("synthetic:smollm2-135m:q4_1").unwrap();
    let syn = spec.open();
    fn shapes<R>(g: &landauer_engine::gguf::GgufFile<R>) -> Vec<(String, Vec<usize>)> {
        let mut v: Vec<(String, Vec<usize>)> = g
            .content
            .tensor_infos
            .iter()
            .map(|(n, t)| (n.clone(), t.shape.dims().to_vec()))
            .collect();
        v.sort();
        v
    }
    assert_eq!(shapes(&syn), shapes(&real));
    // llama-quantize's Q4_1 mix: token_embd (tied, 576 wide) in Q8_0, the other matrices Q4_1.
    fn types<R>(g: &landauer_engine::gguf::GgufFile<R>) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = g
            .content
            .tensor_infos
            .iter()
            .map(|(n, t)| {
                let d = landauer_engine::gguf::dtype_name(t.ggml_dtype);
                (n.clone(), d.to_string())
            })
            .collect();
        v.sort();
        v
    }
    assert_eq!(types(&syn), types(&real));
    assert_eq!(
        syn.get_u32("general.file_type"),
        real.get_u32("general.file_type")
    );
    assert_eq!(syn.info().parameters, real.info().parameters);
    assert_eq!(syn.info().vocab_size, real.info().vocab_size);
    assert_eq!(syn.info().layers, real.info().layers);
}
