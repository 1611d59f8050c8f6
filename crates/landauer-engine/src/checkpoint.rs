//! Hugging Face checkpoints: a directory with `config.json`, `tokenizer.json` (and
//! `tokenizer_config.json` for the chat template) and one or several `*.safetensors` files
//! (sharded ones with their `model.safetensors.index.json`).
//!
//! A checkpoint is opened as a GGUF whose header is written from `config.json` and whose
//! tensor data is read straight out of the memory-mapped safetensors files: tensors get
//! llama.cpp's names, and the query and key projections of Llama-family models are reordered
//! row by row as llama.cpp's `convert_hf_to_gguf.py` reorders them (Hugging Face's rotate-half
//! RoPE layout to GGUF's interleaved one). Everything downstream (landauer's forward pass and
//! kernels, candle-transformers' models on GPUs, the model's shapes for the floor) then sees
//! the same model a converted GGUF file would give, and each weight is copied once, from the
//! page cache into the tensor the kernels read.
//!
//! F32, F16 and BF16 weights are read as they are; architectures: llama, mistral, qwen2,
//! qwen3.

use crate::gguf::GgufFile;
use crate::{EngineError, Result};
use candle_core::quantized::gguf_file::{Content, TensorInfo, Value};
use candle_core::quantized::GgmlDType;
use memmap2::Mmap;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Whether `path` looks like a Hugging Face checkpoint directory.
pub fn is_checkpoint(path: &Path) -> bool {
    path.is_dir() && path.join("config.json").is_file()
}

/// The parts of `config.json` landauer reads.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct HfConfig {
    pub model_type: String,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Qwen3 states its head size; elsewhere it is hidden / heads.
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub max_position_embeddings: Option<usize>,
    #[serde(default)]
    pub tie_word_embeddings: Option<bool>,
    #[serde(default)]
    pub bos_token_id: Option<serde_json::Value>,
    #[serde(default)]
    pub eos_token_id: Option<serde_json::Value>,
    #[serde(default)]
    pub _name_or_path: Option<String>,
}

fn default_eps() -> f64 {
    1e-6
}

impl HfConfig {
    /// llama.cpp's architecture name, and whether q and k are reordered for interleaved RoPE.
    fn architecture(&self) -> Option<(&'static str, bool)> {
        match self.model_type.as_str() {
            // convert_hf_to_gguf.py writes Mistral's dense models as llama.
            "llama" | "mistral" => Some(("llama", true)),
            "qwen2" => Some(("qwen2", false)),
            "qwen3" => Some(("qwen3", false)),
            _ => None,
        }
    }

    fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }
}

/// The first id of a `bos_token_id`/`eos_token_id` entry (a number or a list of them).
fn first_id(v: &Option<serde_json::Value>) -> Option<u32> {
    match v.as_ref()? {
        serde_json::Value::Number(n) => n.as_u64().map(|n| n as u32),
        serde_json::Value::Array(a) => a.first().and_then(|n| n.as_u64()).map(|n| n as u32),
        _ => None,
    }
}

/// Where one GGUF tensor's bytes come from.
#[derive(Debug, Clone)]
struct Region {
    /// Offset in the virtual GGUF tensor data.
    start: u64,
    len: u64,
    shard: usize,
    /// Offset of the tensor's bytes in its shard.
    src: u64,
    /// Rows reordered for interleaved RoPE: (bytes per row, rows per head).
    permute: Option<(u64, u64)>,
}

impl Region {
    /// The source offset of the virtual byte `at` (relative to the region) and how many bytes
    /// from there are contiguous in the source.
    fn source(&self, at: u64) -> (u64, u64) {
        match self.permute {
            None => (self.src + at, self.len - at),
            Some((row_bytes, head_rows)) => {
                let (row, col) = (at / row_bytes, at % row_bytes);
                // GGUF row h·d + 2j + a holds Hugging Face row h·d + a·d/2 + j.
                let (h, r) = (row / head_rows, row % head_rows);
                let (j, a) = (r / 2, r % 2);
                let src_row = h * head_rows + a * (head_rows / 2) + j;
                (self.src + src_row * row_bytes + col, row_bytes - col)
            }
        }
    }
}

/// Reads a checkpoint's tensors as one GGUF tensor-data section, out of the memory-mapped
/// safetensors files.
pub struct CheckpointReader {
    shards: Vec<Arc<Mmap>>,
    regions: Vec<Region>,
    pos: u64,
    len: u64,
}

impl Read for CheckpointReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let i = self
            .regions
            .partition_point(|r| r.start + r.len <= self.pos);
        let r = &self.regions[i];
        let (src, avail) = r.source(self.pos - r.start);
        let n = (buf.len() as u64).min(avail) as usize;
        let shard = &self.shards[r.shard];
        buf[..n].copy_from_slice(&shard[src as usize..src as usize + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for CheckpointReader {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => p as i128,
            SeekFrom::End(d) => self.len as i128 + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if pos < 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start",
            ));
        }
        self.pos = pos as u64;
        Ok(self.pos)
    }
}

/// llama.cpp's name for a Hugging Face tensor name, if landauer uses the tensor.
fn gguf_name(hf: &str) -> Option<String> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(n) = fixed {
        return Some(n.into());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let part = match part {
        "input_layernorm.weight" => "attn_norm.weight",
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.q_proj.bias" => "attn_q.bias",
        "self_attn.k_proj.bias" => "attn_k.bias",
        "self_attn.v_proj.bias" => "attn_v.bias",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "self_attn.q_norm.weight" => "attn_q_norm.weight",
        "self_attn.k_norm.weight" => "attn_k_norm.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        _ => return None,
    };
    Some(format!("blk.{layer}.{part}"))
}

/// The safetensors files of a checkpoint: those its index names, else every
/// `*.safetensors` in the directory.
fn shard_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let bad = |reason: String| EngineError::Checkpoint {
        path: dir.into(),
        reason,
    };
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|e| bad(format!("{e}")))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| bad(format!("model.safetensors.index.json is not JSON ({e})")))?;
        let map = v["weight_map"]
            .as_object()
            .ok_or_else(|| bad("model.safetensors.index.json has no weight_map".into()))?;
        let mut files: Vec<String> = map
            .values()
            .filter_map(|f| f.as_str().map(String::from))
            .collect();
        files.sort();
        files.dedup();
        let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
        if let Some(missing) = paths.iter().find(|p| !p.is_file()) {
            return Err(bad(format!(
                "the shard {} that model.safetensors.index.json names is missing; download it",
                missing.file_name().unwrap_or_default().to_string_lossy()
            )));
        }
        return Ok(paths);
    }
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| bad(format!("{e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(bad(
            "it has no *.safetensors file; download the model's weights into it".into(),
        ));
    }
    Ok(paths)
}

/// Opens a checkpoint directory as a GGUF (header from `config.json`, tensors from the
/// safetensors files). The tokenizer is the directory's `tokenizer.json`
/// ([`tokenizer_path`]).
pub fn open(dir: &Path) -> Result<GgufFile<CheckpointReader>> {
    let bad = |reason: String| EngineError::Checkpoint {
        path: dir.into(),
        reason,
    };
    let config_text = std::fs::read_to_string(dir.join("config.json"))
        .map_err(|e| bad(format!("cannot read config.json ({e})")))?;
    let config: HfConfig = serde_json::from_str(&config_text)
        .map_err(|e| bad(format!("config.json lacks what landauer needs ({e})")))?;
    let (arch, permute_qk) = config.architecture().ok_or_else(|| {
        EngineError::UnsupportedArchitecture {
            path: dir.into(),
            arch: format!(
                "{} (config.json's model_type; landauer reads llama, mistral, qwen2 and qwen3 checkpoints)",
                config.model_type
            ),
        }
    })?;
    if config.num_attention_heads == 0
        || config.kv_heads() == 0
        || !config.head_dim().is_multiple_of(2)
        || !config.num_attention_heads.is_multiple_of(config.kv_heads())
    {
        return Err(bad(format!(
            "config.json's heads do not fit together ({} heads, {} key/value heads, head size {})",
            config.num_attention_heads,
            config.kv_heads(),
            config.head_dim()
        )));
    }
    let mut shards = Vec::new();
    let mut regions = Vec::new();
    let mut tensor_infos = HashMap::new();
    let mut offset = 0u64;
    let mut sorted: BTreeMap<String, (usize, safetensors::tensor::TensorInfo, u64)> =
        BTreeMap::new();
    let files = shard_files(dir)?;
    for (i, path) in files.iter().enumerate() {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let file =
            std::fs::File::open(path).map_err(|e| bad(format!("cannot open {name} ({e})")))?;
        // Safety: the file is only read, and a checkpoint is not modified while it is loaded
        // (as with any memory-mapped model file, truncating it meanwhile is undefined).
        let mmap =
            unsafe { Mmap::map(&file) }.map_err(|e| bad(format!("cannot map {name} ({e})")))?;
        let (header, meta) = safetensors::SafeTensors::read_metadata(&mmap).map_err(|e| {
            bad(format!(
                "{name} is not a whole safetensors file ({e}); download it again"
            ))
        })?;
        let data_start = 8 + header as u64;
        for (hf, info) in meta.tensors() {
            if let Some(g) = gguf_name(&hf) {
                if let Some((j, _, _)) = sorted.insert(g, (i, info.clone(), data_start)) {
                    let other = files[j].file_name().unwrap_or_default().to_string_lossy();
                    return Err(bad(format!(
                        "the tensor {hf} is stored twice, in {other} and {name}; remove the stray file"
                    )));
                }
            }
        }
        shards.push(Arc::new(mmap));
    }
    let head_dim = config.head_dim() as u64;
    for (name, (shard, info, data_start)) in &sorted {
        let dtype = match info.dtype {
            safetensors::Dtype::F32 => GgmlDType::F32,
            safetensors::Dtype::F16 => GgmlDType::F16,
            safetensors::Dtype::BF16 => GgmlDType::BF16,
            other => {
                return Err(bad(format!(
                    "its tensor {name} holds {other:?} values; landauer reads F32, F16 and BF16 checkpoints (quantized checkpoints: use a GGUF file of the model)"
                )))
            }
        };
        let (a, b) = info.data_offsets;
        let len = (b - a) as u64;
        let elems: usize = info.shape.iter().product();
        if len != (elems * dtype.type_size()) as u64 {
            return Err(bad(format!(
                "its tensor {name} has {len} bytes for {elems} values of {dtype:?}"
            )));
        }
        let cols = info.shape.last().copied().unwrap_or(1) as u64;
        let rows = elems as u64 / cols.max(1);
        let qk = name.ends_with("attn_q.weight") || name.ends_with("attn_k.weight");
        let permute = (permute_qk && qk && info.shape.len() == 2)
            .then(|| (cols * dtype.type_size() as u64, head_dim));
        if permute.is_some() && !rows.is_multiple_of(head_dim) {
            return Err(bad(format!(
                "its tensor {name} has {rows} rows, not a whole number of heads of {head_dim}"
            )));
        }
        regions.push(Region {
            start: offset,
            len,
            shard: *shard,
            src: data_start + a as u64,
            permute,
        });
        tensor_infos.insert(
            name.clone(),
            TensorInfo {
                ggml_dtype: dtype,
                shape: candle_core::Shape::from(info.shape.clone()),
                offset,
            },
        );
        offset += len;
    }
    for needed in [
        "token_embd.weight",
        "output_norm.weight",
        "blk.0.attn_q.weight",
    ] {
        if !tensor_infos.contains_key(needed) {
            return Err(bad(format!(
                "no tensor that landauer names {needed} (Hugging Face: model.embed_tokens, model.norm, model.layers.N.self_attn.q_proj); is a shard missing?"
            )));
        }
    }
    let layers = config.num_hidden_layers;
    if let Some(l) =
        (0..layers).find(|l| !tensor_infos.contains_key(&format!("blk.{l}.ffn_down.weight")))
    {
        return Err(bad(format!(
            "layer {l} of {layers} has no mlp.down_proj weight; is a shard missing?"
        )));
    }
    let key = |k: &str| format!("{arch}.{k}");
    let u = |v: usize| Value::U32(v as u32);
    let mut metadata: HashMap<String, Value> = HashMap::new();
    metadata.insert("general.architecture".into(), Value::String(arch.into()));
    let name = config
        ._name_or_path
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| {
            dir.file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
    metadata.insert("general.name".into(), Value::String(name));
    metadata.insert(key("block_count"), u(layers));
    metadata.insert(key("embedding_length"), u(config.hidden_size));
    metadata.insert(key("feed_forward_length"), u(config.intermediate_size));
    metadata.insert(key("attention.head_count"), u(config.num_attention_heads));
    metadata.insert(key("attention.head_count_kv"), u(config.kv_heads()));
    metadata.insert(key("attention.key_length"), u(config.head_dim()));
    metadata.insert(key("attention.value_length"), u(config.head_dim()));
    metadata.insert(key("rope.dimension_count"), u(config.head_dim()));
    metadata.insert(
        key("attention.layer_norm_rms_epsilon"),
        Value::F32(config.rms_norm_eps as f32),
    );
    metadata.insert(
        key("rope.freq_base"),
        Value::F32(config.rope_theta.unwrap_or(10_000.0) as f32),
    );
    if let Some(c) = config.max_position_embeddings {
        metadata.insert(key("context_length"), u(c));
    }
    if let Some(id) = first_id(&config.bos_token_id) {
        metadata.insert("tokenizer.ggml.bos_token_id".into(), Value::U32(id));
    }
    if let Some(id) = first_id(&config.eos_token_id) {
        metadata.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(id));
    }
    // candle-transformers' Qwen3 computes in f16 unless the header says f32 (0); a float
    // checkpoint is computed in f32, as landauer's own forward pass does.
    metadata.insert("general.dtype".into(), Value::U32(0));
    if let Some(t) = chat_template(dir) {
        metadata.insert("tokenizer.chat_template".into(), Value::String(t));
    }
    // The vocabulary too, llama.cpp's way, so that the model saved as a GGUF file
    // (`--quantize ... --save-gguf`) carries its tokenizer; landauer itself reads
    // tokenizer.json.
    if let Some(tok) = bpe_metadata(dir, &config.model_type) {
        metadata.extend(tok);
    }
    let len = offset;
    Ok(GgufFile {
        path: dir.into(),
        file: CheckpointReader {
            shards,
            regions,
            pos: 0,
            len,
        },
        content: Content {
            magic: candle_core::quantized::gguf_file::VersionedMagic::GgufV3,
            metadata,
            tensor_infos,
            tensor_data_offset: 0,
        },
    })
}

/// A byte-level BPE tokenizer.json as llama.cpp's `tokenizer.ggml.*` keys (tokens, types,
/// merges, and the pre-tokenizer's name), or None for other tokenizers.
fn bpe_metadata(dir: &Path, model_type: &str) -> Option<Vec<(String, Value)>> {
    let text = std::fs::read_to_string(dir.join("tokenizer.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let model = &v["model"];
    if model["type"] != "BPE" {
        return None;
    }
    let mut tokens: BTreeMap<u64, (String, i32)> = BTreeMap::new();
    for (tok, id) in model["vocab"].as_object()? {
        tokens.insert(id.as_u64()?, (tok.clone(), 1));
    }
    for t in v["added_tokens"].as_array().into_iter().flatten() {
        // llama.cpp's token types: 3 control (special), 4 user-defined.
        let kind = if t["special"] == true { 3 } else { 4 };
        tokens.insert(
            t["id"].as_u64()?,
            (t["content"].as_str()?.to_string(), kind),
        );
    }
    let n = tokens.keys().next_back().map_or(0, |&k| k + 1);
    let (mut names, mut types) = (Vec::new(), Vec::new());
    for id in 0..n {
        let (name, kind) = tokens
            .get(&id)
            .cloned()
            .unwrap_or_else(|| (format!("[PAD{id}]"), 5));
        names.push(Value::String(name));
        types.push(Value::I32(kind));
    }
    let merges: Vec<Value> = model["merges"]
        .as_array()?
        .iter()
        .filter_map(|m| match m {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Array(p) => {
                Some(format!("{} {}", p.first()?.as_str()?, p.get(1)?.as_str()?))
            }
            _ => None,
        })
        .map(Value::String)
        .collect();
    let pre = v["pre_tokenizer"].to_string();
    let pre = if pre.contains("\"Digits\"") && pre.contains("\"individual_digits\":true") {
        "smollm"
    } else if model_type.starts_with("qwen") {
        "qwen2"
    } else if n >= 128_000 && model_type == "llama" {
        "llama-bpe"
    } else {
        "default"
    };
    Some(vec![
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String(pre.into())),
        ("tokenizer.ggml.tokens".into(), Value::Array(names)),
        ("tokenizer.ggml.token_type".into(), Value::Array(types)),
        ("tokenizer.ggml.merges".into(), Value::Array(merges)),
    ])
}

/// The checkpoint's tokenizer.json.
pub fn tokenizer_path(dir: &Path) -> Result<PathBuf> {
    let p = dir.join("tokenizer.json");
    if p.is_file() {
        Ok(p)
    } else {
        Err(EngineError::Checkpoint {
            path: dir.into(),
            reason: "it has no tokenizer.json; download the model's tokenizer.json into it, or pass one with --tokenizer".into(),
        })
    }
}

/// The chat template of `tokenizer_config.json` (a string, or the `default` of a list of
/// named templates), if any.
fn chat_template(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("tokenizer_config.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    match &v["chat_template"] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(list) => list
            .iter()
            .find(|t| t["name"] == "default")
            .and_then(|t| t["template"].as_str())
            .map(String::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_q_and_k_are_reordered_as_llama_cpp_reorders_them() {
        // Two heads of four rows, one byte per row: Hugging Face rows h·4 + {0,1,2,3} hold
        // (a=0,j=0), (a=0,j=1), (a=1,j=0), (a=1,j=1); GGUF wants j-major pairs.
        let r = Region {
            start: 0,
            len: 8,
            shard: 0,
            src: 100,
            permute: Some((1, 4)),
        };
        let order: Vec<u64> = (0..8).map(|i| r.source(i).0 - 100).collect();
        assert_eq!(order, [0, 2, 1, 3, 4, 6, 5, 7]);
        // Within a row, bytes stay contiguous.
        let wide = Region {
            permute: Some((3, 4)),
            len: 24,
            ..r
        };
        assert_eq!(wide.source(4), (100 + 2 * 3 + 1, 2));
    }

    #[test]
    fn names_map_to_llama_cpp_names() {
        assert_eq!(
            gguf_name("model.layers.12.self_attn.k_proj.weight").as_deref(),
            Some("blk.12.attn_k.weight")
        );
        assert_eq!(
            gguf_name("lm_head.weight").as_deref(),
            Some("output.weight")
        );
        assert_eq!(
            gguf_name("model.layers.0.self_attn.rotary_emb.inv_freq"),
            None
        );
    }
}
