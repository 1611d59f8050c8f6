//! Hugging Face checkpoints: a GGUF written out as a checkpoint (Hugging Face's tensor names
//! and q/k layout, safetensors, config.json, tokenizer.json) loads back to the same model.

use candle_core::quantized::{gguf_file, GgmlDType};
use candle_core::{DType, Device, Tensor};
use landauer_engine::tiny::{write_checkpoint, write_tiny_llama, TinyConfig};
use landauer_engine::{Engine, Forward, GenerateOptions, SamplingParams, SinkError, TokenEvent};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Greedy tokens and every step's logits.
#[derive(Default)]
struct Logits(Vec<u32>, Vec<Vec<f32>>);

impl landauer_engine::TokenSink for Logits {
    fn token(&mut self, e: &TokenEvent<'_>) -> Result<(), SinkError> {
        self.0.push(e.token_id);
        self.1.push(e.logits.unwrap().to_vec());
        Ok(())
    }
}

fn run(engine: &mut Engine, prompt: &str, n: usize) -> Logits {
    let tokens = engine.encode(prompt).unwrap();
    let opts = GenerateOptions {
        max_tokens: n,
        sampling: SamplingParams::greedy(),
        ignore_eos: true,
        stop: None,
        stats_rows: usize::MAX,
    };
    let mut out = Logits::default();
    engine.generate(&tokens, &opts, &mut out).unwrap();
    out
}

fn max_diff(a: &Logits, b: &Logits) -> f32 {
    a.1.iter()
        .zip(&b.1)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f32::max)
}

fn tiny(dir: &Path, arch: &str, dtype: GgmlDType) -> PathBuf {
    let cfg = TinyConfig {
        architecture: arch.into(),
        dtype,
        ..Default::default()
    };
    let p = dir.join(format!("{arch}-{dtype:?}.gguf"));
    write_tiny_llama(&p, &cfg).unwrap();
    p
}

#[test]
fn a_checkpoint_loads_to_the_same_model_as_its_gguf() {
    let dir = tempfile::tempdir().unwrap();
    for (arch, dtype, shards) in [
        ("llama", GgmlDType::F32, 1),
        ("mistral", GgmlDType::F16, 3),
        ("qwen2", GgmlDType::BF16, 2),
        ("qwen3", GgmlDType::F32, 1),
    ] {
        let gguf = tiny(dir.path(), arch, dtype);
        let ckpt = dir.path().join(format!("{arch}-ckpt"));
        write_checkpoint(&gguf, &ckpt, shards).unwrap();
        for forward in [Forward::Batched, Forward::Candle] {
            let mut a = Engine::load_with(&gguf, None, &Device::Cpu, forward).unwrap();
            let mut b = Engine::load_with(&ckpt, None, &Device::Cpu, forward).unwrap();
            let (x, y) = (
                run(&mut a, "The cat sat on", 6),
                run(&mut b, "The cat sat on", 6),
            );
            assert_eq!(x.0, y.0, "{arch} {forward:?}: the same greedy tokens");
            let d = max_diff(&x, &y);
            assert!(d <= 1e-4, "{arch} {forward:?}: logits differ by {d}");
        }
        let info = Engine::load(&ckpt, None, &Device::Cpu)
            .unwrap()
            .info()
            .clone();
        let from_gguf = Engine::load(&gguf, None, &Device::Cpu)
            .unwrap()
            .info()
            .clone();
        assert_eq!(info.parameters, from_gguf.parameters, "{arch}");
        assert_eq!(
            info.shape, from_gguf.shape,
            "{arch}: the floor sees the same shapes"
        );
        assert_eq!(info.quantization, format!("{dtype:?}").to_uppercase());
    }
}

#[test]
fn a_broken_checkpoint_says_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = tiny(dir.path(), "llama", GgmlDType::F32);
    let ckpt = dir.path().join("ckpt");
    write_checkpoint(&gguf, &ckpt, 2).unwrap();
    let load = |p: &Path| match Engine::load(p, None, &Device::Cpu) {
        Ok(_) => panic!("{} loaded", p.display()),
        Err(e) => e.to_string(),
    };

    // A shard gone.
    let shard = ckpt.join("model-00002-of-00002.safetensors");
    let kept = std::fs::read(&shard).unwrap();
    std::fs::remove_file(&shard).unwrap();
    let e = load(&ckpt);
    assert!(
        e.contains("model-00002-of-00002.safetensors") && e.contains("missing"),
        "{e}"
    );
    // A shard cut short.
    std::fs::write(&shard, &kept[..kept.len() / 2]).unwrap();
    let e = load(&ckpt);
    assert!(e.contains("not a whole safetensors file"), "{e}");
    std::fs::write(&shard, &kept).unwrap();

    // An architecture landauer does not run.
    let config = std::fs::read_to_string(ckpt.join("config.json")).unwrap();
    std::fs::write(
        ckpt.join("config.json"),
        config.replace("\"llama\"", "\"gpt_neox\""),
    )
    .unwrap();
    let e = load(&ckpt);
    assert!(
        e.contains("gpt_neox") && e.contains("llama, mistral, qwen2 and qwen3"),
        "{e}"
    );
    std::fs::write(ckpt.join("config.json"), &config).unwrap();

    // A tensor twice.
    let twice = HashMap::from([(
        "model.layers.0.mlp.up_proj.weight".to_string(),
        Tensor::zeros((4, 4), DType::F32, &Device::Cpu).unwrap(),
    )]);
    candle_core::safetensors::save(&twice, ckpt.join("extra.safetensors")).unwrap();
    std::fs::remove_file(ckpt.join("model.safetensors.index.json")).unwrap();
    let e = load(&ckpt);
    assert!(
        e.contains("model.layers.0.mlp.up_proj.weight") && e.contains("twice"),
        "{e}"
    );
    std::fs::remove_file(ckpt.join("extra.safetensors")).unwrap();

    // A dtype not handled.
    let mut tensors = candle_core::safetensors::load(&shard, &Device::Cpu).unwrap();
    let name = tensors
        .keys()
        .find(|k| k.ends_with("weight"))
        .unwrap()
        .clone();
    tensors.insert(
        name,
        Tensor::zeros((4, 4), DType::I64, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&tensors, &shard).unwrap();
    let e = load(&ckpt);
    assert!(e.contains("I64") && e.contains("F32, F16 and BF16"), "{e}");
    std::fs::write(&shard, &kept).unwrap();

    // No tokenizer.
    std::fs::remove_file(ckpt.join("tokenizer.json")).unwrap();
    let e = load(&ckpt);
    assert!(e.contains("tokenizer.json"), "{e}");
}

/// The default model dequantized, as an F32 GGUF and as a checkpoint: the same logits.
#[test]
fn the_default_model_as_a_checkpoint_gives_its_gguf_logits() {
    use landauer_engine::fetch::{default_model_path, Manifest};
    let model = default_model_path();
    let whole = std::fs::metadata(&model).is_ok_and(|m| m.len() == Manifest::default_model().size);
    if !whole {
        eprintln!(
            "SKIPPED the_default_model_as_a_checkpoint_gives_its_gguf_logits: the default model is not in the cache (run `landauer fetch`)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Dequantize to an F32 GGUF with the same header.
    let mut f = std::fs::File::open(&model).unwrap();
    let c = gguf_file::Content::read(&mut f).unwrap();
    let mut tensors = Vec::new();
    for name in c.tensor_infos.keys() {
        let t = c
            .tensor(&mut f, name, &Device::Cpu)
            .unwrap()
            .dequantize(&Device::Cpu)
            .unwrap();
        let q = candle_core::quantized::QTensor::quantize(&t, GgmlDType::F32).unwrap();
        tensors.push((name.clone(), q));
    }
    let f32_gguf = dir.path().join("smollm2-f32.gguf");
    let mut out = std::fs::File::create(&f32_gguf).unwrap();
    let meta: Vec<(&str, &gguf_file::Value)> =
        c.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let refs: Vec<(&str, &candle_core::quantized::QTensor)> =
        tensors.iter().map(|(n, q)| (n.as_str(), q)).collect();
    gguf_file::write(&mut out, &meta, &refs).unwrap();
    drop(out);
    let ckpt = dir.path().join("smollm2-ckpt");
    write_checkpoint(&f32_gguf, &ckpt, 2).unwrap();
    let mut a = Engine::load_batched(&f32_gguf, None, &Device::Cpu).unwrap();
    let mut b = Engine::load_batched(&ckpt, None, &Device::Cpu).unwrap();
    let prompt = "The capital of France is";
    let (x, y) = (run(&mut a, prompt, 4), run(&mut b, prompt, 4));
    assert_eq!(x.0, y.0);
    let d = max_diff(&x, &y);
    assert!(d <= 1e-4, "logits differ by {d}");
}
