//! Tiny random-weight llama models with a real (small) byte-level BPE vocabulary, written as
//! GGUF with candle's writer. Tests and examples use them; nothing is downloaded.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("tiny.gguf");
//! landauer_engine::tiny::write_tiny_llama(&path, &Default::default()).unwrap();
//! let engine = landauer_engine::Engine::load(&path, None, &candle_core::Device::Cpu).unwrap();
//! assert_eq!(engine.info().architecture, "llama");
//! ```

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::collections::HashMap;
use std::path::Path;

/// Shape and contents of a tiny model.
#[derive(Debug, Clone)]
pub struct TinyConfig {
    pub architecture: String,
    pub layers: usize,
    pub hidden: usize,
    pub ffn: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub context: usize,
    /// BPE merges learned from the built-in corpus.
    pub merges: usize,
    /// Type of the 2-D weight matrices (norms stay F32).
    pub dtype: GgmlDType,
    /// Weights are uniform in ±scale / sqrt(fan-in).
    pub scale: f32,
    pub seed: u64,
    /// `tokenizer.ggml.eos_token_id` (2, `<|im_end|>`, by default).
    pub eos_token_id: u32,
    /// Size of an attention head (default hidden / heads; Qwen3 states its own).
    pub head_dim: Option<usize>,
}

impl Default for TinyConfig {
    fn default() -> Self {
        Self {
            architecture: "llama".into(),
            layers: 2,
            hidden: 64,
            ffn: 128,
            heads: 4,
            kv_heads: 2,
            context: 256,
            merges: 200,
            dtype: GgmlDType::Q8_0,
            scale: 3.0,
            seed: 42,
            eos_token_id: 2,
            head_dim: None,
        }
    }
}

/// A few sentences to learn merges from, so that common words are single tokens.
const CORPUS: &str = "The capital of France is Paris. The cat sat on the mat. \
Once upon a time, there was a little girl named Lily. She liked to play in the park with her \
friends. What is the energy of a token? Every token costs energy and resolves uncertainty. \
The quick brown fox jumps over the lazy dog. Hello world! 12345 67890.";

/// Special tokens, at ids 0, 1, 2 as in SmolLM2.
pub const SPECIAL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// GPT-2's byte-to-unicode table: printable stand-ins for the 256 byte values.
pub fn bytes_to_unicode() -> Vec<char> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut table = vec![' '; 256];
    for (b, c) in bs.into_iter().zip(cs) {
        table[b as usize] = char::from_u32(c).expect("valid code point");
    }
    table
}

/// Learns `n` byte-level BPE merges from the corpus. Returns (vocabulary, merges).
pub fn train_bpe(n: usize) -> (Vec<String>, Vec<String>) {
    let table = bytes_to_unicode();
    let mut vocab: Vec<String> = SPECIAL_TOKENS.iter().map(|s| s.to_string()).collect();
    vocab.extend(table.iter().map(|c| c.to_string()));
    // Words keep their leading space, as the byte-level pre-tokenizer splits them.
    let mut words: Vec<Vec<String>> = Vec::new();
    let mut cur = String::new();
    for ch in CORPUS.chars() {
        if (ch == ' ' || !ch.is_alphanumeric()) && !cur.is_empty() && !cur.ends_with(' ') {
            words.push(to_symbols(&cur, &table));
            cur.clear();
        }
        cur.push(ch);
    }
    if !cur.is_empty() {
        words.push(to_symbols(&cur, &table));
    }
    let mut merges = Vec::new();
    for _ in 0..n {
        let mut counts: HashMap<(String, String), usize> = HashMap::new();
        for w in &words {
            for pair in w.windows(2) {
                *counts
                    .entry((pair[0].clone(), pair[1].clone()))
                    .or_default() += 1;
            }
        }
        let Some(((a, b), _)) = counts
            .into_iter()
            .max_by(|x, y| x.1.cmp(&y.1).then_with(|| y.0.cmp(&x.0)))
        else {
            break;
        };
        let joined = format!("{a}{b}");
        for w in &mut words {
            let mut i = 0;
            while i + 1 < w.len() {
                if w[i] == a && w[i + 1] == b {
                    w[i] = joined.clone();
                    w.remove(i + 1);
                }
                i += 1;
            }
        }
        merges.push(format!("{a} {b}"));
        vocab.push(joined);
    }
    (vocab, merges)
}

fn to_symbols(word: &str, table: &[char]) -> Vec<String> {
    word.bytes()
        .map(|b| table[b as usize].to_string())
        .collect()
}

fn random_matrix(rng: &mut ChaCha20Rng, rows: usize, cols: usize, scale: f32) -> Vec<f32> {
    let a = scale / (cols as f32).sqrt();
    (0..rows * cols).map(|_| rng.random_range(-a..a)).collect()
}

/// Writes a tiny random-weight model with a trained BPE vocabulary and a ChatML template.
/// `cfg.architecture` may be `llama`, `mistral`, `qwen2` or `qwen3` (each gets the tensors its
/// candle implementation reads), or anything else to make a file landauer must refuse.
pub fn write_tiny_llama(path: &Path, cfg: &TinyConfig) -> candle_core::Result<()> {
    let (vocab, merges) = train_bpe(cfg.merges);
    let mut rng = ChaCha20Rng::seed_from_u64(cfg.seed);
    let dev = Device::Cpu;
    let head_dim = cfg.head_dim.unwrap_or(cfg.hidden / cfg.heads);
    let q_dim = cfg.heads * head_dim;
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let mut matrix = |name: String, rows: usize, cols: usize, rng: &mut ChaCha20Rng| {
        let t = Tensor::from_vec(
            random_matrix(rng, rows, cols, cfg.scale),
            (rows, cols),
            &dev,
        )?;
        tensors.push((name, QTensor::quantize(&t, cfg.dtype)?));
        candle_core::Result::Ok(())
    };
    matrix(
        "token_embd.weight".into(),
        vocab.len(),
        cfg.hidden,
        &mut rng,
    )?;
    for i in 0..cfg.layers {
        let kv = cfg.kv_heads * head_dim;
        matrix(
            format!("blk.{i}.attn_q.weight"),
            q_dim,
            cfg.hidden,
            &mut rng,
        )?;
        matrix(format!("blk.{i}.attn_k.weight"), kv, cfg.hidden, &mut rng)?;
        matrix(format!("blk.{i}.attn_v.weight"), kv, cfg.hidden, &mut rng)?;
        matrix(
            format!("blk.{i}.attn_output.weight"),
            cfg.hidden,
            q_dim,
            &mut rng,
        )?;
        matrix(
            format!("blk.{i}.ffn_gate.weight"),
            cfg.ffn,
            cfg.hidden,
            &mut rng,
        )?;
        matrix(
            format!("blk.{i}.ffn_up.weight"),
            cfg.ffn,
            cfg.hidden,
            &mut rng,
        )?;
        matrix(
            format!("blk.{i}.ffn_down.weight"),
            cfg.hidden,
            cfg.ffn,
            &mut rng,
        )?;
    }
    let ones = Tensor::ones(cfg.hidden, candle_core::DType::F32, &dev)?;
    let head_ones = Tensor::ones(head_dim, candle_core::DType::F32, &dev)?;
    let f32_tensor = |t: &Tensor| QTensor::quantize(t, GgmlDType::F32);
    for i in 0..cfg.layers {
        for n in ["attn_norm", "ffn_norm"] {
            tensors.push((format!("blk.{i}.{n}.weight"), f32_tensor(&ones)?));
        }
        match cfg.architecture.as_str() {
            // Qwen2 has biases on the q, k, v projections.
            "qwen2" => {
                let kv = cfg.kv_heads * head_dim;
                for (n, len) in [("q", cfg.hidden), ("k", kv), ("v", kv)] {
                    let b: Vec<f32> = (0..len).map(|_| rng.random_range(-0.1..0.1)).collect();
                    let b = Tensor::from_vec(b, len, &dev)?;
                    tensors.push((format!("blk.{i}.attn_{n}.bias"), f32_tensor(&b)?));
                }
            }
            // Qwen3 normalises queries and keys per head.
            "qwen3" => {
                for n in ["attn_q_norm", "attn_k_norm"] {
                    tensors.push((format!("blk.{i}.{n}.weight"), f32_tensor(&head_ones)?));
                }
            }
            _ => {}
        }
    }
    tensors.push((
        "output_norm.weight".into(),
        QTensor::quantize(&ones, GgmlDType::F32)?,
    ));

    let arch = cfg.architecture.as_str();
    let k = |s: &str| format!("{arch}.{s}");
    let strings = |v: &[String]| Value::Array(v.iter().map(|s| Value::String(s.clone())).collect());
    let token_types = Value::Array(
        (0..vocab.len())
            .map(|i| Value::I32(if i < SPECIAL_TOKENS.len() { 3 } else { 1 }))
            .collect(),
    );
    let mut metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        ("general.name".into(), Value::String("tiny-random".into())),
        (k("block_count"), Value::U32(cfg.layers as u32)),
        (k("context_length"), Value::U32(cfg.context as u32)),
        (k("embedding_length"), Value::U32(cfg.hidden as u32)),
        (k("feed_forward_length"), Value::U32(cfg.ffn as u32)),
        (k("attention.head_count"), Value::U32(cfg.heads as u32)),
        (
            k("attention.head_count_kv"),
            Value::U32(cfg.kv_heads as u32),
        ),
        (k("rope.dimension_count"), Value::U32(head_dim as u32)),
        (k("attention.key_length"), Value::U32(head_dim as u32)),
        (k("attention.value_length"), Value::U32(head_dim as u32)),
        (k("rope.freq_base"), Value::F32(10_000.0)),
        (k("attention.layer_norm_rms_epsilon"), Value::F32(1e-5)),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("smollm".into())),
        ("tokenizer.ggml.tokens".into(), strings(&vocab)),
        ("tokenizer.ggml.token_type".into(), token_types),
        ("tokenizer.ggml.merges".into(), strings(&merges)),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
        (
            "tokenizer.ggml.eos_token_id".into(),
            Value::U32(cfg.eos_token_id),
        ),
        ("tokenizer.ggml.unknown_token_id".into(), Value::U32(0)),
        (
            "tokenizer.chat_template".into(),
            Value::String(crate::tokenizer::CHATML_TEMPLATE.into()),
        ),
    ];
    if arch == "qwen3" {
        // candle's Qwen3 computes in f16 unless the file says f32 (0).
        metadata.push(("general.dtype".into(), Value::U32(0)));
    }
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path)?;
    gguf_file::write(&mut f, &md, &ts)
}

/// Hugging Face's name for a llama.cpp tensor name.
pub fn hf_name(gguf: &str) -> String {
    match gguf {
        "token_embd.weight" => return "model.embed_tokens.weight".into(),
        "output_norm.weight" => return "model.norm.weight".into(),
        "output.weight" => return "lm_head.weight".into(),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.").expect("a layer tensor");
    let (layer, part) = rest.split_once('.').unwrap();
    let part = match part {
        "attn_norm.weight" => "input_layernorm.weight",
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_q.bias" => "self_attn.q_proj.bias",
        "attn_k.bias" => "self_attn.k_proj.bias",
        "attn_v.bias" => "self_attn.v_proj.bias",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "attn_q_norm.weight" => "self_attn.q_norm.weight",
        "attn_k_norm.weight" => "self_attn.k_norm.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        other => panic!("unmapped tensor {other}"),
    };
    format!("model.layers.{layer}.{part}")
}

/// GGUF's interleaved rows back to Hugging Face's rotate-half order: GGUF row h·d + 2j + a
/// is Hugging Face row h·d + a·d/2 + j.
fn unpermute(t: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (rows, cols) = t.dims2()?;
    t.reshape((heads, rows / heads / 2, 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))
}

fn meta_u32(c: &gguf_file::Content, key: &str) -> Option<u32> {
    c.metadata.get(key).and_then(|v| v.to_u32().ok())
}

/// Writes the GGUF model `gguf` as a Hugging Face checkpoint in `dir`, as a model hub would
/// serve it: Hugging Face's tensor names and rotate-half q/k row order, each tensor in its own
/// float type (quantized ones dequantized to F32), in `shards` safetensors files (with an
/// index when more than one), config.json and tokenizer.json. For tests of the checkpoint
/// path ([`crate::checkpoint`]).
pub fn write_checkpoint(gguf: &Path, dir: &Path, shards: usize) -> candle_core::Result<()> {
    let io = |e: std::io::Error| candle_core::Error::Msg(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut f = std::fs::File::open(gguf).map_err(io)?;
    let c = gguf_file::Content::read(&mut f)?;
    let arch = c
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_default();
    let key = |k: &str| format!("{arch}.{k}");
    let need = |k: &str| {
        meta_u32(&c, &key(k))
            .map(|v| v as usize)
            .ok_or_else(|| candle_core::Error::Msg(format!("no {} in {}", key(k), gguf.display())))
    };
    let (heads, kv_heads, hidden) = (
        need("attention.head_count")?,
        need("attention.head_count_kv")?,
        need("embedding_length")?,
    );
    let mut names: Vec<&String> = c.tensor_infos.keys().collect();
    names.sort();
    let mut files: Vec<HashMap<String, Tensor>> = vec![HashMap::new(); shards.max(1)];
    for (i, name) in names.iter().enumerate() {
        let q = c.tensor(&mut f, name, &Device::Cpu)?;
        let dtype = match q.dtype() {
            GgmlDType::F16 => DType::F16,
            GgmlDType::BF16 => DType::BF16,
            _ => DType::F32,
        };
        let mut t = q.dequantize(&Device::Cpu)?;
        let llama = arch == "llama" || arch == "mistral";
        if llama && name.ends_with("attn_q.weight") {
            t = unpermute(&t, heads)?;
        } else if llama && name.ends_with("attn_k.weight") {
            t = unpermute(&t, kv_heads)?;
        }
        files[i % shards.max(1)].insert(hf_name(name), t.to_dtype(dtype)?);
    }
    let mut weight_map = serde_json::Map::new();
    for (i, tensors) in files.iter().enumerate() {
        let file = match shards {
            1 => "model.safetensors".to_string(),
            n => format!("model-{:05}-of-{n:05}.safetensors", i + 1),
        };
        candle_core::safetensors::save(tensors, dir.join(&file))?;
        for name in tensors.keys() {
            weight_map.insert(name.clone(), file.clone().into());
        }
    }
    if shards > 1 {
        let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
        std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).map_err(io)?;
    }
    let f32_meta = |k: &str| c.metadata.get(&key(k)).and_then(|v| v.to_f32().ok());
    let config = serde_json::json!({
        "model_type": arch,
        "hidden_size": hidden,
        "intermediate_size": meta_u32(&c, &key("feed_forward_length")),
        "num_hidden_layers": meta_u32(&c, &key("block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": meta_u32(&c, &key("attention.key_length")).map_or(hidden / heads, |d| d as usize),
        "rms_norm_eps": f32_meta("attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
        "rope_theta": f32_meta("rope.freq_base").unwrap_or(10_000.0),
        "max_position_embeddings": meta_u32(&c, &key("context_length")),
        "tie_word_embeddings": !c.tensor_infos.contains_key("output.weight"),
        "eos_token_id": meta_u32(&c, "tokenizer.ggml.eos_token_id"),
        "bos_token_id": meta_u32(&c, "tokenizer.ggml.bos_token_id"),
    });
    std::fs::write(dir.join("config.json"), config.to_string()).map_err(io)?;
    let gguf =
        crate::gguf::GgufFile::open(gguf).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    crate::tokenizer::tokenizer_from_gguf(&gguf)
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?
        .save(dir.join("tokenizer.json"), false)
        .map_err(|e| candle_core::Error::Msg(e.to_string()))
}
