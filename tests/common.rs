//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use landauer_engine::tiny::{write_tiny_llama, TinyConfig};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn landauer() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_landauer"));
    // Never reach for a network or a user's cache from a test.
    c.env("HF_HUB_OFFLINE", "1").env("RAYON_NUM_THREADS", "2");
    c
}

/// A tiny random-weight llama GGUF with a trained BPE vocabulary, written with candle.
pub fn tiny_model(dir: &Path, cfg: &TinyConfig) -> PathBuf {
    let path = dir.join(format!("tiny-{}-{}.gguf", cfg.architecture, cfg.context));
    write_tiny_llama(&path, cfg).expect("write tiny model");
    path
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run landauer");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "landauer panicked: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("trace exists")
        .lines()
        .map(|l| serde_json::from_str(l).expect("every trace line is JSON"))
        .collect()
}

pub fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64()
        .unwrap_or_else(|| panic!("field {k} missing or not a number in {v}"))
}

pub fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-300)
}
