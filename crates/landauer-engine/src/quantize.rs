//! Quantize at load: a model's float weights (a checkpoint's F32/F16/BF16, or a GGUF file of
//! higher precision) turned into any format landauer has kernels for, with the per-tensor
//! rules of llama.cpp's `llama-quantize` presets (`q4_k_m`, `q5_k_m`, `q6_k`, `q8_0`, ...; see
//! [`crate::synthetic::QUANTS`]), so that results compare with the files people download.
//!
//! Each tensor is dequantized to f32 and quantized with ggml's reference quantizers (no
//! importance matrix, as `llama-quantize` without `--imatrix`): Q2_K to Q6_K by landauer's port
//! of llama.cpp's ([`crate::quantize_k`]), the others by candle's. The files come out byte for
//! byte as llama-quantize writes them (scripts/quantize-vs-llamacpp.py). The
//! result is an in-memory GGUF that loads like a file and can be saved as one
//! ([`Quantized::save`]).

use crate::gguf::{dtype_name, GgufFile};
use crate::synthetic::{Quant, QUANTS};
use crate::{EngineError, Result};
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;
use std::io::{Cursor, Read, Seek};
use std::path::{Path, PathBuf};

/// A `--quantize` name (`q4_k_m`, `q8_0`, `f16`, ...), checked.
pub fn parse(name: &str) -> Result<(&'static str, Quant)> {
    let key = name.to_ascii_lowercase().replace('-', "_");
    QUANTS.iter().find(|q| q.0 == key).copied().ok_or_else(|| {
        EngineError::Quantize(format!(
            "unknown format `{name}`; landauer has kernels for {}",
            QUANTS.iter().map(|q| q.0).collect::<Vec<_>>().join(", ")
        ))
    })
}

/// A model quantized in memory, as a GGUF.
pub struct Quantized {
    /// The GGUF file's bytes.
    pub bytes: Vec<u8>,
    /// Where the weights came from.
    pub source: PathBuf,
}

impl Quantized {
    /// The model, opened like a GGUF file.
    pub fn open(&self) -> Result<GgufFile<Cursor<&[u8]>>> {
        let mut r = Cursor::new(self.bytes.as_slice());
        let content = gguf_file::Content::read(&mut r).map_err(|e| EngineError::CorruptGguf {
            path: self.source.clone(),
            reason: e.to_string(),
        })?;
        Ok(GgufFile {
            path: self.source.clone(),
            file: r,
            content,
        })
    }

    /// Writes the model as a GGUF file (to FILE.tmp, renamed when whole).
    pub fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("gguf.tmp");
        let write = |cause| EngineError::Write {
            action: "write the quantized model",
            path: path.into(),
            cause,
        };
        std::fs::write(&tmp, &self.bytes).map_err(write)?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            write(e)
        })
    }
}

/// Quantizes every matrix of `src` as the preset `name` types it; 1-D tensors (norms, biases)
/// become F32, as in llama.cpp's files. `progress(done, total)` is called after each tensor.
/// Extra `metadata` (a tokenizer, say) is added to the header.
pub fn quantize<R: Read + Seek>(
    src: &mut GgufFile<R>,
    name: &str,
    metadata: Vec<(String, Value)>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Quantized> {
    let (preset, quant) = parse(name)?;
    let source_type = src.info().quantization;
    let arch = src.architecture().unwrap_or_default();
    let layers = src
        .get_u32(&format!("{arch}.block_count"))
        .unwrap_or_default() as usize;
    let tied = !src.content.tensor_infos.contains_key("output.weight");
    let heads = src
        .get_u32(&format!("{arch}.attention.head_count"))
        .unwrap_or(1) as usize;
    let kv_heads = src
        .get_u32(&format!("{arch}.attention.head_count_kv"))
        .unwrap_or(heads as u32) as usize;
    let gqa = heads / kv_heads.max(1);
    let mut names: Vec<String> = src.content.tensor_infos.keys().cloned().collect();
    names.sort();
    let err = |e: candle_core::Error| EngineError::Quantize(format!("{}: {e}", src.path.display()));
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(names.len());
    for (i, n) in names.iter().enumerate() {
        let info = &src.content.tensor_infos[n];
        let shape = info.shape.dims().to_vec();
        let target = quant.tensor_type(n, &shape, layers, tied, gqa);
        let q = src
            .content
            .tensor(&mut src.file, n, &Device::Cpu)
            .map_err(err)?;
        let q = if q.dtype() == target {
            q
        } else {
            let t = q.dequantize(&Device::Cpu).map_err(err)?;
            match crate::quantize_k::quantize(&t, target).map_err(err)? {
                Some(q) => q,
                None => QTensor::quantize(&t, target).map_err(err)?,
            }
        };
        tensors.push((n.clone(), q));
        progress(i + 1, names.len());
    }
    let mut meta: Vec<(String, Value)> = src
        .content
        .metadata
        .iter()
        .filter(|(k, _)| !k.starts_with("landauer.quantize"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    meta.extend(metadata);
    // The file type llama.cpp reports: the preset's (llama.h's llama_ftype), not the source's.
    meta.retain(|(k, _)| k != "general.file_type");
    let file_type = match quant {
        Quant::Mix(f) => Some(f.id()),
        Quant::Pure(GgmlDType::F32) => Some(0),
        Quant::Pure(_) => None,
    };
    if let Some(id) = file_type {
        meta.push(("general.file_type".into(), Value::U32(id)));
    }
    meta.push(("landauer.quantize".into(), Value::String(preset.into())));
    meta.push((
        "landauer.quantized_from".into(),
        Value::String(source_type.clone()),
    ));
    meta.sort_by(|a, b| a.0.cmp(&b.0));
    let md: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &md, &ts).map_err(err)?;
    Ok(Quantized {
        bytes: out.into_inner(),
        source: src.path.clone(),
    })
}

/// The type of each class of tensor (`attn_q`, `ffn_down`, `output`, ...) in a GGUF header:
/// one type, or the types the layers use, most common first (`Q4_K 16, Q6_K 14`).
pub fn tensor_classes(content: &gguf_file::Content) -> std::collections::BTreeMap<String, String> {
    let mut by_class: std::collections::BTreeMap<String, std::collections::BTreeMap<&str, usize>> =
        Default::default();
    for (name, info) in &content.tensor_infos {
        if info.shape.rank() < 2 {
            continue;
        }
        let class = match name.strip_prefix("blk.") {
            Some(rest) => rest.split_once('.').map_or(rest, |(_, c)| c),
            None => name.as_str(),
        };
        let class = class.trim_end_matches(".weight").to_string();
        *by_class
            .entry(class)
            .or_default()
            .entry(dtype_name(info.ggml_dtype))
            .or_default() += 1;
    }
    by_class
        .into_iter()
        .map(|(class, types)| {
            let mut v: Vec<(&str, usize)> = types.into_iter().collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let text = match v.as_slice() {
                [(t, _)] => t.to_string(),
                _ => v
                    .iter()
                    .map(|(t, n)| format!("{t} {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            (class, text)
        })
        .collect()
}

/// Bits per weight of the matrices (rank 2 and more), as llama.cpp reports a file's BPW.
pub fn bits_per_weight(content: &gguf_file::Content) -> f64 {
    let (mut bits, mut n) = (0f64, 0f64);
    for info in content
        .tensor_infos
        .values()
        .filter(|t| t.shape.rank() >= 2)
    {
        bits += (crate::gguf::tensor_bytes(info) * 8) as f64;
        n += info.shape.elem_count() as f64;
    }
    if n > 0.0 {
        bits / n
    } else {
        0.0
    }
}
