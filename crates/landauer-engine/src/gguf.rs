//! Opening and inspecting GGUF files with checks that turn bad input into clear errors.

use crate::{EngineError, Result};
use candle_core::quantized::{gguf_file, GgmlDType};
use serde::Serialize;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// What a GGUF header says about a model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// `general.name` where present.
    pub name: Option<String>,
    /// `general.architecture` (llama, mistral, qwen2, qwen3, ...).
    pub architecture: String,
    /// The quantization of most of the parameters, in llama.cpp's spelling (Q4_1, Q4_K, F16).
    pub quantization: String,
    /// Number of parameters: the elements of every tensor in the file.
    pub parameters: u64,
    /// Bytes of tensor data.
    pub tensor_bytes: u64,
    /// Weight bytes one decode step reads: every tensor except the token embedding, which
    /// is only gathered a row at a time, unless it doubles as the output projection (tied
    /// embeddings, no `output.weight`). The KV cache comes on top.
    pub weight_bytes_per_token: u64,
    pub layers: Option<u32>,
    pub embedding_length: Option<u32>,
    /// The context the model was trained for (`{arch}.context_length`).
    pub context_length: Option<u32>,
    pub vocab_size: Option<usize>,
    /// A synthetic model (real shapes, random weights): its entropy means nothing.
    pub synthetic: bool,
    /// What a decode step moves and computes, for the roofline energy floor; null when
    /// the header lacks the attention metadata.
    pub shape: Option<landauer_physics::floor::ModelShape>,
    /// Bits per weight of the matrices (rank 2 and more).
    pub bits_per_weight: f64,
    /// The type of each class of matrix (`attn_q`, `ffn_down`, `output`, ...; see
    /// [`crate::quantize::tensor_classes`]).
    pub tensor_types: std::collections::BTreeMap<String, String>,
    /// Quantized at load (`--quantize`): the preset and the type the weights had before.
    pub quantize: Option<String>,
    pub quantized_from: Option<String>,
    /// Exact mode ([`crate::Engine::load_exact`]): f32 weights and activations.
    pub exact: bool,
}

/// An opened GGUF file: its header and a reader positioned anywhere. The reader is a
/// [`File`] for models on disk; synthetic models supply one that generates their bytes.
pub struct GgufFile<R = File> {
    pub path: PathBuf,
    pub file: R,
    pub content: gguf_file::Content,
}

/// llama.cpp's spelling of a ggml type.
pub fn dtype_name(d: GgmlDType) -> &'static str {
    use GgmlDType::*;
    match d {
        F32 => "F32",
        F16 => "F16",
        BF16 => "BF16",
        Q4_0 => "Q4_0",
        Q4_1 => "Q4_1",
        Q5_0 => "Q5_0",
        Q5_1 => "Q5_1",
        Q8_0 => "Q8_0",
        Q8_1 => "Q8_1",
        Q2K => "Q2_K",
        Q3K => "Q3_K",
        Q4K => "Q4_K",
        Q5K => "Q5_K",
        Q6K => "Q6_K",
        Q8K => "Q8_K",
    }
}

pub(crate) fn tensor_bytes(info: &gguf_file::TensorInfo) -> u64 {
    let elems = info.shape.elem_count() as u64;
    let block = info.ggml_dtype.block_size() as u64;
    elems.div_ceil(block) * info.ggml_dtype.type_size() as u64
}

impl GgufFile {
    /// Opens `path`, checks the magic, reads the header and checks the file holds every
    /// tensor the header promises.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let io = |source| EngineError::Io {
            path: path.clone(),
            source,
        };
        if !path.exists() {
            return Err(EngineError::ModelNotFound(path));
        }
        if path.is_dir() {
            return Err(EngineError::NotGguf {
                path,
                magic: "<a directory>".into(),
            });
        }
        let mut file = File::open(&path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut magic = [0u8; 4];
        let got = read_up_to(&mut file, &mut magic).map_err(io)?;
        if &magic[..got] != b"GGUF" {
            return Err(EngineError::NotGguf {
                path,
                magic: String::from_utf8_lossy(&magic[..got]).into_owned(),
            });
        }
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        let content = gguf_file::Content::read(&mut file).map_err(|e| {
            let reason = one_line(&e.to_string());
            match unknown_type(&reason) {
                Some(dtype) => EngineError::UnsupportedTensorType {
                    path: path.clone(),
                    dtype,
                },
                None => EngineError::CorruptGguf {
                    path: path.clone(),
                    reason,
                },
            }
        })?;
        // Every tensor's size and place, in checked arithmetic: a forged dimension or offset
        // must be a refusal, not an overflow.
        let mut expected = content.tensor_data_offset;
        for (name, t) in &content.tensor_infos {
            let end = t
                .shape
                .dims()
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
                .and_then(|elems| {
                    let block = t.ggml_dtype.block_size() as u64;
                    elems
                        .div_ceil(block)
                        .checked_mul(t.ggml_dtype.type_size() as u64)
                })
                .and_then(|bytes| {
                    content
                        .tensor_data_offset
                        .checked_add(t.offset)?
                        .checked_add(bytes)
                });
            match end {
                Some(end) => expected = expected.max(end),
                None => {
                    return Err(EngineError::CorruptGguf {
                        path,
                        reason: format!("the tensor {name} claims a size or place beyond any file"),
                    })
                }
            }
        }
        if expected > len {
            return Err(EngineError::Truncated {
                path,
                expected,
                actual: len,
            });
        }
        Ok(Self {
            path,
            file,
            content,
        })
    }
}

impl<R> GgufFile<R> {
    pub fn architecture(&self) -> Option<String> {
        self.get_str("general.architecture")
    }

    pub fn get_str(&self, key: &str) -> Option<String> {
        self.content
            .metadata
            .get(key)
            .and_then(|v| v.to_string().ok())
            .cloned()
    }

    pub fn get_u32(&self, key: &str) -> Option<u32> {
        let v = self.content.metadata.get(key)?;
        v.to_u32()
            .ok()
            .or_else(|| v.to_u64().ok().map(|x| x as u32))
            .or_else(|| v.to_i32().ok().map(|x| x as u32))
    }

    /// The shapes behind the roofline floor, from `{arch}.block_count`,
    /// `.attention.head_count(_kv)`, `.attention.key_length` (else embedding / heads).
    fn shape(
        &self,
        arch: &str,
        weight_bytes_per_step: u64,
        matmul_params: u64,
    ) -> Option<landauer_physics::floor::ModelShape> {
        let get = |k: &str| self.get_u32(&format!("{arch}.{k}"));
        let layers = get("block_count")?;
        let heads = get("attention.head_count").filter(|&h| h > 0)?;
        let kv_heads = get("attention.head_count_kv").unwrap_or(heads);
        let head_dim = get("attention.key_length")
            .or_else(|| get("embedding_length").map(|e| e / heads))
            .filter(|&d| d > 0)?;
        Some(landauer_physics::floor::ModelShape {
            weight_bytes_per_step,
            matmul_params,
            layers,
            q_dim: heads * head_dim,
            kv_dim: kv_heads * head_dim,
            // The floor assumes an f16 cache, as llama.cpp and vLLM keep it.
            kv_bytes_per_elem: 2,
        })
    }

    /// Summarises the header.
    pub fn info(&self) -> ModelInfo {
        let arch = self.architecture().unwrap_or_else(|| "unknown".into());
        let mut by_type: HashMap<GgmlDType, u64> = HashMap::new();
        let mut parameters = 0u64;
        let mut bytes = 0u64;
        for t in self.content.tensor_infos.values() {
            let n = t.shape.elem_count() as u64;
            parameters += n;
            bytes += tensor_bytes(t);
            if t.shape.rank() >= 2 {
                *by_type.entry(t.ggml_dtype).or_default() += n;
            }
        }
        let quantization = by_type
            .into_iter()
            .max_by_key(|(d, n)| (*n, dtype_name(*d)))
            .map(|(d, _)| dtype_name(d).to_string())
            .unwrap_or_else(|| "unknown".into());
        let tied = !self.content.tensor_infos.contains_key("output.weight");
        let embedding = self
            .content
            .tensor_infos
            .get("token_embd.weight")
            .map_or(0, tensor_bytes);
        let weight_bytes_per_token = if tied { bytes } else { bytes - embedding };
        // Matrices multiplied per token: every weight of rank 2 or more except a gathered
        // embedding (1-d norms and biases are too small to count).
        let matmul_params = self
            .content
            .tensor_infos
            .iter()
            .filter(|(name, t)| t.shape.rank() >= 2 && (tied || *name != "token_embd.weight"))
            .map(|(_, t)| t.shape.elem_count() as u64)
            .sum::<u64>();
        let shape = self.shape(&arch, weight_bytes_per_token, matmul_params);
        let vocab_size = self
            .content
            .metadata
            .get("tokenizer.ggml.tokens")
            .and_then(|v| v.to_vec().ok())
            .map(|v| v.len());
        ModelInfo {
            name: self.get_str("general.name"),
            quantization,
            parameters,
            tensor_bytes: bytes,
            weight_bytes_per_token,
            layers: self.get_u32(&format!("{arch}.block_count")),
            embedding_length: self.get_u32(&format!("{arch}.embedding_length")),
            context_length: self.get_u32(&format!("{arch}.context_length")),
            vocab_size,
            synthetic: self.content.metadata.contains_key("landauer.synthetic"),
            shape,
            bits_per_weight: crate::quantize::bits_per_weight(&self.content),
            tensor_types: crate::quantize::tensor_classes(&self.content),
            quantize: self.get_str("landauer.quantize"),
            quantized_from: self.get_str("landauer.quantized_from"),
            exact: false,
            architecture: arch,
        }
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// First line of an error message (candle errors may carry backtraces).
/// The name of the ggml type in candle's "unknown dtype for tensor N" (types newer than
/// candle 0.11's reader: the IQ formats, ternary and MXFP4 ones, integer tensors), if that is
/// the error; a type number no ggml release has used stays a corrupt file.
fn unknown_type(reason: &str) -> Option<String> {
    let n: u32 = reason
        .split("unknown dtype for tensor ")
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    let name = match n {
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => return None,
    };
    Some(format!("{name} (ggml type {n})"))
}

pub(crate) fn one_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny model whose `output_norm.weight` claims ggml type `dtype` (its tensor-info entry
    /// patched in place: name, dimension count, dimensions, then the u32 type).
    fn tiny_with_type(dir: &Path, dtype: u32) -> PathBuf {
        let path = dir.join(format!("type{dtype}.gguf"));
        crate::tiny::write_tiny_llama(&path, &Default::default()).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let name = b"output_norm.weight";
        let at = bytes
            .windows(name.len())
            .position(|w| w == name)
            .expect("tensor info")
            + name.len();
        let dims = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let t = at + 4 + 8 * dims;
        bytes[t..t + 4].copy_from_slice(&dtype.to_le_bytes());
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn a_tensor_type_candle_cannot_read_is_named_not_called_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let err = GgufFile::open(tiny_with_type(dir.path(), 20))
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.contains("tensors of type IQ4_NL (ggml type 20)") && err.contains("llama-quantize"),
            "{err}"
        );
        assert!(!err.contains("corrupt"), "{err}");
        // A type number ggml never used is a corrupt file.
        let err = GgufFile::open(tiny_with_type(dir.path(), 250))
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("corrupt"), "{err}");
    }
}
