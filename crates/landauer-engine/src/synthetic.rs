//! Synthetic models: the exact tensor shapes of real architectures, with random weights made
//! on the spot, so that speed and energy can be studied at real sizes without downloading
//! weights (the GPU machines have no network).
//!
//! A synthetic model is a GGUF header built in memory plus a reader that generates each
//! tensor's bytes when the loader asks for them, so it goes through exactly the loading and
//! forward code of a real file: same kernels, same bytes moved per token, same arithmetic.
//! Every weight matrix is generated separately (nothing is shared between layers), as
//! quantized blocks with realistic scales: weights of standard deviation 1/sqrt(fan-in),
//! centered, per-block scales that vary ±25% like trained ones. Norm weights are ones.
//!
//! QUANT is one type for every matrix (`q4_k`, `q5_k`) or, named as llama.cpp's file types
//! (`q4_k_m`, `q4_0`, ...), the mix llama.cpp's `llama-quantize` writes for that type
//! ([`SyntheticSpec::tensor_type`] has its rules). [`write_gguf`] writes a synthetic model
//! to a GGUF file, so that llama.cpp runs the very bytes landauer generates in place;
//! [`Vocabulary`] gives it a real tokenizer copied from another GGUF.
//!
//! Random weights make the *entropy* meaningless (the distribution says nothing about
//! language); energy and speed are real. Every output of a synthetic run says so.
//!
//! ```
//! use landauer_engine::synthetic::SyntheticSpec;
//! let spec = SyntheticSpec::parse("synthetic:smollm2-135m:q8_0").unwrap();
//! assert_eq!(spec.arch.parameters(), 134_515_008); // HuggingFaceTB/SmolLM2-135M
//! let gguf = spec.open();
//! assert_eq!(gguf.info().parameters, 134_515_008);
//! ```

use crate::gguf::GgufFile;
use crate::{EngineError, Result};
use candle_core::quantized::gguf_file::{Content, TensorInfo, Value, VersionedMagic};
use candle_core::quantized::GgmlDType;
use half::f16;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

/// Alignment of tensor data (GGUF's default, `general.alignment`).
const ALIGNMENT: u64 = 32;

/// The shapes of a real model, from its published `config.json`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Architecture {
    /// Name used in `synthetic:NAME`.
    pub name: &'static str,
    /// Where the shapes come from.
    pub source: &'static str,
    /// GGUF `general.architecture`: the forward pass used (`llama` or `qwen2`).
    pub family: &'static str,
    pub layers: usize,
    pub hidden: usize,
    pub ffn: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub vocab: usize,
    pub context: usize,
    pub rope_theta: f32,
    pub rms_eps: f32,
    /// The output projection is the token embedding (no `output.weight`).
    pub tied_embeddings: bool,
    /// Biases on the q, k and v projections (Qwen2).
    pub qkv_bias: bool,
    /// Size of an attention head when it is not hidden / heads (Qwen3 states its own); the
    /// family `qwen3` also has per-head norms of queries and keys.
    pub head_size: Option<usize>,
}

/// The architectures `synthetic:NAME` knows.
pub const ARCHITECTURES: &[Architecture] = &[
    Architecture {
        name: "smollm2-135m",
        source: "HuggingFaceTB/SmolLM2-135M",
        family: "llama",
        layers: 30,
        hidden: 576,
        ffn: 1536,
        heads: 9,
        kv_heads: 3,
        vocab: 49152,
        context: 8192,
        rope_theta: 100_000.0,
        rms_eps: 1e-5,
        tied_embeddings: true,
        qkv_bias: false,
        head_size: None,
    },
    Architecture {
        name: "smollm2-360m",
        source: "HuggingFaceTB/SmolLM2-360M",
        family: "llama",
        layers: 32,
        hidden: 960,
        ffn: 2560,
        heads: 15,
        kv_heads: 5,
        vocab: 49152,
        context: 8192,
        rope_theta: 100_000.0,
        rms_eps: 1e-5,
        tied_embeddings: true,
        qkv_bias: false,
        head_size: None,
    },
    Architecture {
        name: "qwen2.5-0.5b",
        source: "Qwen/Qwen2.5-0.5B",
        family: "qwen2",
        layers: 24,
        hidden: 896,
        ffn: 4864,
        heads: 14,
        kv_heads: 2,
        vocab: 151_936,
        context: 32_768,
        rope_theta: 1_000_000.0,
        rms_eps: 1e-6,
        tied_embeddings: true,
        qkv_bias: true,
        head_size: None,
    },
    Architecture {
        name: "qwen3-0.6b",
        source: "Qwen/Qwen3-0.6B",
        family: "qwen3",
        layers: 28,
        hidden: 1024,
        ffn: 3072,
        heads: 16,
        kv_heads: 8,
        vocab: 151_936,
        context: 40_960,
        rope_theta: 1_000_000.0,
        rms_eps: 1e-6,
        tied_embeddings: true,
        qkv_bias: false,
        head_size: Some(128),
    },
    Architecture {
        name: "llama-3.2-1b",
        source: "meta-llama/Llama-3.2-1B",
        family: "llama",
        layers: 16,
        hidden: 2048,
        ffn: 8192,
        heads: 32,
        kv_heads: 8,
        vocab: 128_256,
        context: 131_072,
        rope_theta: 500_000.0,
        rms_eps: 1e-5,
        tied_embeddings: true,
        qkv_bias: false,
        head_size: None,
    },
    Architecture {
        name: "llama-3.2-3b",
        source: "meta-llama/Llama-3.2-3B",
        family: "llama",
        layers: 28,
        hidden: 3072,
        ffn: 8192,
        heads: 24,
        kv_heads: 8,
        vocab: 128_256,
        context: 131_072,
        rope_theta: 500_000.0,
        rms_eps: 1e-5,
        tied_embeddings: true,
        qkv_bias: false,
        head_size: None,
    },
    Architecture {
        name: "llama-3.1-8b",
        source: "meta-llama/Llama-3.1-8B",
        family: "llama",
        layers: 32,
        hidden: 4096,
        ffn: 14336,
        heads: 32,
        kv_heads: 8,
        vocab: 128_256,
        context: 131_072,
        rope_theta: 500_000.0,
        rms_eps: 1e-5,
        tied_embeddings: false,
        qkv_bias: false,
        head_size: None,
    },
    Architecture {
        name: "qwen2.5-7b",
        source: "Qwen/Qwen2.5-7B",
        family: "qwen2",
        layers: 28,
        hidden: 3584,
        ffn: 18944,
        heads: 28,
        kv_heads: 4,
        vocab: 152_064,
        context: 131_072,
        rope_theta: 1_000_000.0,
        rms_eps: 1e-6,
        tied_embeddings: false,
        qkv_bias: true,
        head_size: None,
    },
];

/// A file type of llama.cpp's quantizer (`llama_ftype`, as `llama-quantize` names it): a base
/// type for most matrices and llama.cpp's rules for the others (see
/// [`SyntheticSpec::tensor_type`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4KS,
    Q4KM,
    Q5KS,
    Q5KM,
    Q6K,
    Q2K,
    Q3KS,
    Q3KM,
    Q3KL,
}

impl FileType {
    /// `general.file_type`: llama.cpp's `llama_ftype` number (llama.h).
    pub fn id(self) -> u32 {
        match self {
            FileType::F16 => 1,
            FileType::Q4_0 => 2,
            FileType::Q4_1 => 3,
            FileType::Q8_0 => 7,
            FileType::Q5_0 => 8,
            FileType::Q5_1 => 9,
            FileType::Q4KS => 14,
            FileType::Q4KM => 15,
            FileType::Q5KS => 16,
            FileType::Q5KM => 17,
            FileType::Q6K => 18,
            FileType::Q2K => 10,
            FileType::Q3KS => 11,
            FileType::Q3KM => 12,
            FileType::Q3KL => 13,
        }
    }

    /// The type most matrices get (llama.cpp's `llama_ftype_get_default_type`).
    pub fn base(self) -> GgmlDType {
        match self {
            FileType::F16 => GgmlDType::F16,
            FileType::Q4_0 => GgmlDType::Q4_0,
            FileType::Q4_1 => GgmlDType::Q4_1,
            FileType::Q5_0 => GgmlDType::Q5_0,
            FileType::Q5_1 => GgmlDType::Q5_1,
            FileType::Q8_0 => GgmlDType::Q8_0,
            FileType::Q4KS | FileType::Q4KM => GgmlDType::Q4K,
            FileType::Q5KS | FileType::Q5KM => GgmlDType::Q5K,
            FileType::Q6K => GgmlDType::Q6K,
            FileType::Q2K => GgmlDType::Q2K,
            FileType::Q3KS | FileType::Q3KM | FileType::Q3KL => GgmlDType::Q3K,
        }
    }
}

/// How a synthetic model's matrices are typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quant {
    /// Every matrix in one type (falling back, as llama.cpp does, where rows do not fit its
    /// blocks).
    Pure(GgmlDType),
    /// The mix `llama-quantize` writes for this file type.
    Mix(FileType),
}

impl Quant {
    /// The type `llama-quantize` gives the tensor `name` (llama.cpp's name) of `shape` in a
    /// model of `layers` blocks (`tied`: the output reuses the embedding) whose query heads
    /// share each key/value head `gqa` ways (llama.cpp's `llama_tensor_get_type`, dense
    /// models below 70B).
    pub fn tensor_type(
        &self,
        name: &str,
        shape: &[usize],
        layers: usize,
        tied: bool,
        gqa: usize,
    ) -> GgmlDType {
        if shape.len() < 2 {
            return GgmlDType::F32;
        }
        let cols = shape[1];
        let ftype = match *self {
            Quant::Pure(d) => return block_fallback(d, cols),
            Quant::Mix(FileType::F16) => return GgmlDType::F16,
            Quant::Mix(f) => f,
        };
        let base = ftype.base();
        let layer = layer_of(name).unwrap_or(0);
        let output = name == "output.weight" || (tied && name == "token_embd.weight");
        let t = if output {
            if !cols.is_multiple_of(base.block_size()) {
                GgmlDType::Q8_0
            } else if base != GgmlDType::Q8_0 {
                GgmlDType::Q6K
            } else {
                base
            }
        } else if name.ends_with(".attn_v.weight") {
            match ftype {
                FileType::Q2K if gqa >= 4 => GgmlDType::Q4K,
                FileType::Q2K => GgmlDType::Q3K,
                FileType::Q3KM if layer < 2 => GgmlDType::Q5K,
                FileType::Q3KM => GgmlDType::Q4K,
                FileType::Q3KL => GgmlDType::Q5K,
                FileType::Q4KM | FileType::Q5KM if use_more_bits(layer, layers) => GgmlDType::Q6K,
                FileType::Q4KS if layer < 4 => GgmlDType::Q5K,
                _ => base,
            }
        } else if name.ends_with(".ffn_down.weight") {
            match ftype {
                FileType::Q2K => GgmlDType::Q3K,
                FileType::Q3KM if layer < layers / 16 => GgmlDType::Q5K,
                FileType::Q3KM => GgmlDType::Q4K,
                FileType::Q3KL => GgmlDType::Q5K,
                FileType::Q4KM | FileType::Q5KM if use_more_bits(layer, layers) => GgmlDType::Q6K,
                FileType::Q4KS if layer < layers / 8 => GgmlDType::Q5K,
                _ => base,
            }
        } else if name.ends_with(".attn_output.weight") {
            match ftype {
                FileType::Q2K => GgmlDType::Q3K,
                FileType::Q3KM => GgmlDType::Q4K,
                FileType::Q3KL => GgmlDType::Q5K,
                _ => base,
            }
        } else {
            base
        };
        block_fallback(t, cols)
    }
}

/// What `synthetic:ARCH:QUANT` accepts (llama.cpp's spelling, lower case). The names of
/// llama.cpp file types (`q4_k_m`, `q4_0`, `q8_0`, ...) give the mix `llama-quantize` writes
/// for them: the output matrix (or a tied embedding) in Q6_K, some `attn_v` and `ffn_down` in
/// more bits for the `_m` and `_s` mixes. `q4_k` and `q5_k` put every matrix in that type.
/// `q6_k`, `q8_0` and `f16` come out the same either way.
pub const QUANTS: &[(&str, Quant)] = &[
    ("q4_0", Quant::Mix(FileType::Q4_0)),
    ("q4_1", Quant::Mix(FileType::Q4_1)),
    ("q5_0", Quant::Mix(FileType::Q5_0)),
    ("q5_1", Quant::Mix(FileType::Q5_1)),
    ("q8_0", Quant::Mix(FileType::Q8_0)),
    ("q4_k", Quant::Pure(GgmlDType::Q4K)),
    ("q5_k", Quant::Pure(GgmlDType::Q5K)),
    ("q6_k", Quant::Mix(FileType::Q6K)),
    ("q4_k_s", Quant::Mix(FileType::Q4KS)),
    ("q4_k_m", Quant::Mix(FileType::Q4KM)),
    ("q5_k_s", Quant::Mix(FileType::Q5KS)),
    ("q5_k_m", Quant::Mix(FileType::Q5KM)),
    ("f16", Quant::Mix(FileType::F16)),
    // llama-quantize's 2- and 3-bit mixes: quantize at load only (synthetic models do not
    // generate these types' blocks).
    ("q2_k", Quant::Mix(FileType::Q2K)),
    ("q3_k_s", Quant::Mix(FileType::Q3KS)),
    ("q3_k_m", Quant::Mix(FileType::Q3KM)),
    ("q3_k_l", Quant::Mix(FileType::Q3KL)),
    // Every matrix in F32: the weights as they are (a dequantized model's reference).
    ("f32", Quant::Pure(GgmlDType::F32)),
];

/// The quantization used when `synthetic:ARCH` names none.
pub const DEFAULT_QUANT: &str = "q4_k";

impl Architecture {
    pub fn head_dim(&self) -> usize {
        self.head_size.unwrap_or(self.hidden / self.heads)
    }

    /// Every tensor of the model: name, shape (rows, cols) or (len,), and whether it is a
    /// weight matrix (quantized) rather than a norm or bias (kept in F32).
    pub fn tensors(&self) -> Vec<(String, Vec<usize>, bool)> {
        let (h, f, kv) = (self.hidden, self.ffn, self.kv_heads * self.head_dim());
        let q = self.heads * self.head_dim();
        let mut t = vec![("token_embd.weight".to_string(), vec![self.vocab, h], true)];
        for i in 0..self.layers {
            let b = |n: &str| format!("blk.{i}.{n}");
            t.push((b("attn_norm.weight"), vec![h], false));
            t.push((b("attn_q.weight"), vec![q, h], true));
            t.push((b("attn_k.weight"), vec![kv, h], true));
            t.push((b("attn_v.weight"), vec![kv, h], true));
            if self.qkv_bias {
                t.push((b("attn_q.bias"), vec![q], false));
                t.push((b("attn_k.bias"), vec![kv], false));
                t.push((b("attn_v.bias"), vec![kv], false));
            }
            if self.family == "qwen3" {
                t.push((b("attn_q_norm.weight"), vec![self.head_dim()], false));
                t.push((b("attn_k_norm.weight"), vec![self.head_dim()], false));
            }
            t.push((b("attn_output.weight"), vec![h, q], true));
            t.push((b("ffn_norm.weight"), vec![h], false));
            t.push((b("ffn_gate.weight"), vec![f, h], true));
            t.push((b("ffn_up.weight"), vec![f, h], true));
            t.push((b("ffn_down.weight"), vec![h, f], true));
        }
        t.push(("output_norm.weight".to_string(), vec![h], false));
        if !self.tied_embeddings {
            t.push(("output.weight".to_string(), vec![self.vocab, h], true));
        }
        t
    }

    /// Parameters, counted as Hugging Face counts them (tied embeddings once).
    pub fn parameters(&self) -> u64 {
        self.tensors()
            .iter()
            .map(|(_, s, _)| s.iter().product::<usize>() as u64)
            .sum()
    }
}

/// A parsed `synthetic:ARCH[:QUANT]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticSpec {
    pub arch: Architecture,
    /// The QUANT as written in the spec (`q4_k_m`).
    pub quant: &'static str,
    /// How the matrices are typed: one type, or a `llama-quantize` mix.
    pub mix: Quant,
    /// The base type: every matrix's for [`Quant::Pure`], most matrices' for a mix (see
    /// [`Self::tensor_type`] for each tensor's).
    pub dtype: GgmlDType,
    /// Seed of the weights (same seed, same bytes).
    pub seed: u64,
    /// A real tokenizer copied from a GGUF file ([`Self::with_vocab`]); `None` keeps the
    /// built-in one (a small BPE and filler tokens up to the architecture's vocabulary size).
    pub vocab: Option<std::sync::Arc<Vocabulary>>,
}

fn known_archs() -> String {
    ARCHITECTURES
        .iter()
        .map(|a| a.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn known_quants() -> String {
    QUANTS.iter().map(|q| q.0).collect::<Vec<_>>().join(", ")
}

/// llama.cpp's `use_more_bits`: the layers whose `attn_v` and `ffn_down` the `_M` mixes keep
/// in Q6_K: the first and last eighth, and every third layer between.
pub fn use_more_bits(layer: usize, layers: usize) -> bool {
    layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2
}

/// The layer of `blk.N.…`.
fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

impl SyntheticSpec {
    /// Whether a `--model` value asks for a synthetic model.
    pub fn is_synthetic(model: &str) -> bool {
        model.starts_with("synthetic:") || model == "synthetic"
    }

    /// Parses `synthetic:ARCH[:QUANT]` (QUANT defaults to q4_k).
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: String| EngineError::Synthetic(why);
        let rest = s.strip_prefix("synthetic:").ok_or_else(|| {
            bad(format!(
                "`{s}`: write synthetic:ARCH[:QUANT], ARCH one of {}",
                known_archs()
            ))
        })?;
        let mut parts = rest.split(':');
        let name = parts.next().unwrap_or_default().to_ascii_lowercase();
        let quant = parts
            .next()
            .unwrap_or(DEFAULT_QUANT)
            .to_ascii_lowercase()
            .replace('-', "_");
        if parts.next().is_some() {
            return Err(bad(format!(
                "`{s}` has too many parts; write synthetic:ARCH[:QUANT]"
            )));
        }
        let arch = *ARCHITECTURES
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| {
                bad(format!(
                    "unknown architecture `{name}`; known: {}",
                    known_archs()
                ))
            })?;
        let (quant, mix) = *QUANTS.iter().find(|q| q.0 == quant).ok_or_else(|| {
            bad(format!(
                "unknown quantization `{quant}`; known: {}",
                known_quants()
            ))
        })?;
        let dtype = match mix {
            Quant::Pure(d) => d,
            Quant::Mix(f) => f.base(),
        };
        if matches!(dtype, GgmlDType::Q2K | GgmlDType::Q3K) {
            return Err(bad(format!(
                "synthetic models do not come in {quant} (their blocks are not generated); write one in F16 with `landauer synthetic-gguf ARCH:f16 -o FILE` and quantize it with --quantize {quant}"
            )));
        }
        Ok(Self {
            arch,
            quant,
            mix,
            dtype,
            seed: 0x5eed,
            vocab: None,
        })
    }

    /// The same model with `vocab`'s tokenizer: its size becomes the model's vocabulary size
    /// (the rows of `token_embd` and `output`).
    pub fn with_vocab(mut self, vocab: Vocabulary) -> Self {
        self.arch.vocab = vocab.size;
        self.vocab = Some(std::sync::Arc::new(vocab));
        self
    }

    /// `synthetic:ARCH:QUANT`.
    pub fn label(&self) -> String {
        format!("synthetic:{}:{}", self.arch.name, self.quant)
    }

    /// `general.file_type`: the `llama_ftype` of a mix; a one-type model has none (llama.cpp
    /// then guesses it from the tensors, as for any file without the key).
    pub fn file_type(&self) -> Option<FileType> {
        match self.mix {
            Quant::Mix(f) => Some(f),
            Quant::Pure(_) => None,
        }
    }

    /// The type of tensor `name` of shape `shape` (rows, cols), as llama.cpp's quantizer picks
    /// it for this file type from an F32/F16 model without an importance matrix.
    ///
    /// From llama.cpp's `src/llama-quant.cpp` (ggml-org/llama.cpp at
    /// 007dbbf3fd17eefe9b47fee45f48f7ba5e62b714: `tensor_allows_quantization`,
    /// `llama_tensor_get_type_impl`, `tensor_type_fallback`), for the file types here and the
    /// dense llama/qwen2 tensors synthetic models have:
    ///
    /// * 1-D tensors (norms, biases) are not quantized: F32, as converted.
    /// * F16: every matrix F16 (the rules below apply to quantized types only).
    /// * `output.weight`, and `token_embd.weight` when the model has no `output.weight` (tied
    ///   embeddings: "we quantize the token embeddings with the quantization of the output
    ///   tensor"): Q8_0 if the row length is not a multiple of the base type's block, else
    ///   Q6_K unless the base is Q8_0 (which stays).
    /// * an untied `token_embd.weight`: the base type.
    /// * `attn_v.weight` of layer i of n: Q4_K_M and Q5_K_M give Q6_K where
    ///   [`use_more_bits`]`(i, n)`; Q4_K_S gives Q5_K for i < 4.
    /// * `ffn_down` of layer i of n: Q4_K_M and Q5_K_M give Q6_K where `use_more_bits(i, n)`;
    ///   Q4_K_S gives Q5_K for i < n/8 (the `Q4_0`/`Q5_0` rule needs an importance matrix).
    /// * everything else (`attn_q`, `attn_k`, `attn_output`, `ffn_gate`, `ffn_up`): the base.
    /// * then, a K-quant whose row length (columns) is not a multiple of 256 falls back
    ///   ([`block_fallback`]): Q4_K to Q5_0, Q5_K to Q5_1, Q6_K to Q8_0 (SmolLM2's 576).
    ///
    /// The counters llama.cpp keeps (`i_attention_wv`, `i_ffn_down`) are layer numbers here:
    /// its loader visits tensors in layer order (`weight_name_comparer` in
    /// `llama-model-loader.h`) and each layer has one `attn_v` and one `ffn_down`.
    /// [`Quant::Pure`] skips the rules but not the fallback.
    pub fn tensor_type(&self, name: &str, shape: &[usize]) -> GgmlDType {
        self.mix.tensor_type(
            name,
            shape,
            self.arch.layers,
            self.arch.tied_embeddings,
            self.arch.heads / self.arch.kv_heads.max(1),
        )
    }

    /// The model's GGUF header and a reader that generates its tensor data on demand.
    pub fn open(&self) -> GgufFile<SyntheticReader> {
        let a = &self.arch;
        let mut tensor_infos = HashMap::new();
        let mut regions = Vec::new();
        let mut offset = 0u64;
        for (i, (name, shape, matrix)) in a.tensors().into_iter().enumerate() {
            let dtype = self.tensor_type(&name, &shape);
            let elems: usize = shape.iter().product();
            let bytes = (elems / dtype.block_size() * dtype.type_size()) as u64;
            // Weights of standard deviation 1/sqrt(fan-in) keep activations of order 1.
            let fill = if !matrix {
                if name.ends_with(".bias") {
                    Fill::Bias
                } else {
                    Fill::Ones
                }
            } else {
                Fill::Weights {
                    sigma: 1.0 / (shape[1] as f32).sqrt(),
                }
            };
            regions.push(Region {
                start: offset,
                len: bytes,
                dtype,
                fill,
                seed: self.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            });
            tensor_infos.insert(
                name,
                TensorInfo {
                    ggml_dtype: dtype,
                    shape: candle_core::Shape::from(shape),
                    offset,
                },
            );
            offset = (offset + bytes).div_ceil(ALIGNMENT) * ALIGNMENT;
        }
        let content = Content {
            magic: VersionedMagic::GgufV3,
            metadata: self.metadata(),
            tensor_infos,
            tensor_data_offset: 0,
        };
        GgufFile {
            path: PathBuf::from(self.label()),
            file: SyntheticReader {
                regions,
                len: offset,
                pos: 0,
            },
            content,
        }
    }

    /// `general.name`: the spec, and where the vocabulary came from if it is not built in.
    pub fn name(&self) -> String {
        match &self.vocab {
            Some(v) => format!(
                "{}, vocabulary of {} tokens from {}",
                self.label(),
                v.size,
                v.source
            ),
            None => self.label(),
        }
    }

    fn metadata(&self) -> HashMap<String, Value> {
        let a = &self.arch;
        let k = |s: &str| format!("{}.{s}", a.family);
        let u = |x: usize| Value::U32(x as u32);
        let mut md: HashMap<String, Value> = [
            (
                "general.architecture".into(),
                Value::String(a.family.into()),
            ),
            ("general.type".into(), Value::String("model".into())),
            ("general.name".into(), Value::String(self.name())),
            (
                "general.source.huggingface.repository".into(),
                Value::String(a.source.into()),
            ),
            ("general.alignment".into(), Value::U32(ALIGNMENT as u32)),
            // GGML_QNT_VERSION, which llama-quantize writes.
            ("general.quantization_version".into(), Value::U32(2)),
            (k("block_count"), u(a.layers)),
            (k("context_length"), u(a.context)),
            (k("embedding_length"), u(a.hidden)),
            (k("feed_forward_length"), u(a.ffn)),
            (k("attention.head_count"), u(a.heads)),
            (k("attention.head_count_kv"), u(a.kv_heads)),
            (k("rope.dimension_count"), u(a.head_dim())),
            (k("attention.key_length"), u(a.head_dim())),
            (k("attention.value_length"), u(a.head_dim())),
            (k("rope.freq_base"), Value::F32(a.rope_theta)),
            (k("attention.layer_norm_rms_epsilon"), Value::F32(a.rms_eps)),
            (k("vocab_size"), u(a.vocab)),
        ]
        .into_iter()
        .collect();
        if let Some(f) = self.file_type() {
            md.insert("general.file_type".into(), Value::U32(f.id()));
        }
        match &self.vocab {
            Some(v) => md.extend(v.metadata.iter().cloned()),
            None => md.extend(builtin_tokenizer(a.vocab)),
        }
        md.insert("landauer.synthetic".into(), Value::Bool(true));
        md.insert(
            "landauer.synthetic.spec".into(),
            Value::String(self.label()),
        );
        md.insert("landauer.synthetic.seed".into(), Value::U64(self.seed));
        md.insert("landauer.synthetic.vocab_size".into(), u(a.vocab));
        md.insert(
            "landauer.synthetic.vocab_from".into(),
            Value::String(
                self.vocab
                    .as_ref()
                    .map_or_else(|| "built-in".to_string(), |v| v.source.clone()),
            ),
        );
        md
    }
}

/// A tokenizer with `size` tokens: special tokens, the 256 byte symbols, a few merges, then
/// filler tokens (`tok123`) that only random weights will pick.
fn builtin_tokenizer(size: usize) -> Vec<(String, Value)> {
    let (mut vocab, merges) = crate::tiny::train_bpe(200);
    let specials = crate::tiny::SPECIAL_TOKENS.len();
    for i in vocab.len()..size {
        vocab.push(format!("tok{i}"));
    }
    vocab.truncate(size);
    let strings =
        |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect::<Vec<_>>());
    let types = (0..size)
        .map(|i| Value::I32(if i < specials { 3 } else { 1 }))
        .collect();
    vec![
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("smollm".into())),
        ("tokenizer.ggml.tokens".into(), strings(vocab)),
        ("tokenizer.ggml.token_type".into(), Value::Array(types)),
        ("tokenizer.ggml.merges".into(), strings(merges)),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
        ("tokenizer.ggml.unknown_token_id".into(), Value::U32(0)),
        (
            "tokenizer.chat_template".into(),
            Value::String(crate::tokenizer::CHATML_TEMPLATE.into()),
        ),
    ]
}

/// A real tokenizer: every `tokenizer.*` key of a GGUF file (tokens, token types, merges or
/// scores, model, pre-tokenizer, special token ids, chat template).
#[derive(Debug, Clone)]
pub struct Vocabulary {
    /// The file's name (not its directory), recorded in the model's metadata.
    pub source: String,
    /// The number of tokens.
    pub size: usize,
    /// The `tokenizer.*` keys, sorted.
    pub metadata: Vec<(String, Value)>,
}

impl PartialEq for Vocabulary {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
            && self.size == other.size
            && self.metadata.len() == other.metadata.len()
            && self
                .metadata
                .iter()
                .zip(&other.metadata)
                .all(|((ka, va), (kb, vb))| ka == kb && value_eq(va, vb))
    }
}

/// Equality of two GGUF values (candle's `Value` has none).
pub fn value_eq(a: &Value, b: &Value) -> bool {
    use Value::*;
    match (a, b) {
        (U8(x), U8(y)) => x == y,
        (I8(x), I8(y)) => x == y,
        (U16(x), U16(y)) => x == y,
        (I16(x), I16(y)) => x == y,
        (U32(x), U32(y)) => x == y,
        (I32(x), I32(y)) => x == y,
        (U64(x), U64(y)) => x == y,
        (I64(x), I64(y)) => x == y,
        (F32(x), F32(y)) => x.to_bits() == y.to_bits(),
        (F64(x), F64(y)) => x.to_bits() == y.to_bits(),
        (Bool(x), Bool(y)) => x == y,
        (String(x), String(y)) => x == y,
        (Array(x), Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| value_eq(p, q)),
        _ => false,
    }
}

impl Vocabulary {
    /// Copies the tokenizer of the GGUF file at `path` (only its header is read).
    pub fn from_gguf(path: &std::path::Path) -> Result<Self> {
        let g = GgufFile::open(path)?;
        let mut metadata: Vec<(String, Value)> = g
            .content
            .metadata
            .iter()
            .filter(|(k, _)| k.starts_with("tokenizer."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        metadata.sort_by(|a, b| a.0.cmp(&b.0));
        let size = g
            .content
            .metadata
            .get("tokenizer.ggml.tokens")
            .and_then(|v| v.to_vec().ok())
            .map(|v| v.len())
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                EngineError::Synthetic(format!(
                    "{} has no tokenizer.ggml.tokens: no vocabulary to copy",
                    path.display()
                ))
            })?;
        let source = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        Ok(Self {
            source,
            size,
            metadata,
        })
    }
}

/// What a tensor's bytes hold.
#[derive(Debug, Clone, Copy)]
enum Fill {
    Weights { sigma: f32 },
    Ones,
    Bias,
}

#[derive(Debug, Clone)]
struct Region {
    start: u64,
    len: u64,
    dtype: GgmlDType,
    fill: Fill,
    seed: u64,
}

/// Blocks generated per independently seeded chunk (the unit of parallel work).
const CHUNK_BLOCKS: u64 = 4096;

impl Region {
    fn block_bytes(&self) -> u64 {
        self.dtype.type_size() as u64
    }

    fn chunk_bytes(&self) -> u64 {
        CHUNK_BLOCKS * self.block_bytes()
    }

    /// Writes the bytes of chunk `c` from its start into `out` (which may be shorter).
    fn fill_chunk(&self, c: u64, out: &mut [u8]) {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ c.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        let bb = self.block_bytes() as usize;
        let mut tmp = vec![0u8; bb];
        for block in out.chunks_mut(bb) {
            if block.len() == bb {
                self.fill_block(&mut rng, block);
            } else {
                self.fill_block(&mut rng, &mut tmp);
                let n = block.len();
                block.copy_from_slice(&tmp[..n]);
            }
        }
    }

    fn fill_block(&self, rng: &mut ChaCha8Rng, b: &mut [u8]) {
        use GgmlDType::*;
        let sigma = match self.fill {
            Fill::Ones => {
                for x in b.chunks_mut(4) {
                    x.copy_from_slice(&1f32.to_le_bytes());
                }
                return;
            }
            Fill::Bias => {
                for x in b.chunks_mut(4) {
                    let v: f32 = rng.random_range(-0.1..0.1);
                    x.copy_from_slice(&v.to_le_bytes());
                }
                return;
            }
            Fill::Weights { sigma } => sigma,
        };
        // Per-block scale jitter, as trained blocks differ in magnitude.
        let s = sigma * rng.random_range(0.75f32..1.25);
        let h = |x: f32| f16::from_f32(x).to_le_bytes();
        // Quants are uniform: a uniform 4-bit value has standard deviation 4.61, 5-bit 9.23,
        // 6-bit 18.47, 8-bit 73.9, so d = s / that gives weights of deviation s.
        // Legacy blocks: d (f16), for Q4_1/Q5_1 a minimum m = −mid·d (f16), then the quants.
        let legacy = match self.dtype {
            Q4_0 => Some((4.61, None)),
            Q4_1 => Some((4.61, Some(7.5))),
            Q5_0 => Some((9.23, None)),
            Q5_1 => Some((9.23, Some(15.5))),
            Q8_0 => Some((73.9, None)),
            _ => None,
        };
        if let Some((qdev, mid)) = legacy {
            let d = s / qdev;
            b[0..2].copy_from_slice(&h(d));
            let quants = match mid {
                Some(mid) => {
                    b[2..4].copy_from_slice(&h(-mid * d));
                    4
                }
                None => 2,
            };
            rng.fill_bytes(&mut b[quants..]);
            return;
        }
        match self.dtype {
            Q4K | Q5K => {
                // w = d·sc·q − dmin·m per 32-weight sub-block; m = sc·mid/ratio centres it.
                let (qdev, mid) = if self.dtype == Q4K {
                    (4.61, 7.5)
                } else {
                    (9.23, 15.5)
                };
                let ratio = 16.0;
                let mut sc = [0u8; 8];
                let mut m = [0u8; 8];
                for j in 0..8 {
                    sc[j] = rng.random_range(24..=63);
                    m[j] = ((sc[j] as f32) * mid / ratio).round() as u8;
                }
                let mean_sc = sc.iter().map(|&x| x as f32).sum::<f32>() / 8.0;
                let d = s / (qdev * mean_sc);
                b[0..2].copy_from_slice(&h(d));
                b[2..4].copy_from_slice(&h(d * ratio));
                b[4..16].copy_from_slice(&pack_k_scales(&sc, &m));
                rng.fill_bytes(&mut b[16..]);
            }
            Q6K => {
                // ql[128], qh[64], scales[16] (i8), d: w = d·sc·(q − 32).
                rng.fill_bytes(&mut b[..192]);
                let mut mean_sc = 0.0;
                for j in 0..16 {
                    let sc: i8 = rng.random_range(24..=63);
                    mean_sc += sc as f32 / 16.0;
                    b[192 + j] = sc as u8;
                }
                b[208..210].copy_from_slice(&h(s / (18.47 * mean_sc)));
            }
            F16 => {
                let a = s * 3f32.sqrt();
                for x in b.chunks_mut(2) {
                    x.copy_from_slice(&h(rng.random_range(-a..a)));
                }
            }
            F32 => {
                let a = s * 3f32.sqrt();
                for x in b.chunks_mut(4) {
                    x.copy_from_slice(&rng.random_range(-a..a).to_le_bytes());
                }
            }
            other => unreachable!("no synthetic blocks for {other:?}: not in QUANTS"),
        }
    }
}

/// The type a matrix of `cols` columns gets when `dtype` needs rows of a multiple of its
/// block and `cols` is not one, as llama.cpp's `tensor_type_fallback` (src/llama-quant.cpp)
/// picks it: Q4_K to Q5_0, Q5_K to Q5_1, Q6_K to Q8_0 (SmolLM2's 576-wide matrices cannot be
/// Q4_K and become Q5_0), Q2_K and Q3_K to Q4_0 (older llama.cpp: IQ4_NL, which has no
/// synthetic blocks here); F16 when even the fallback's 32 does not divide the row.
pub fn block_fallback(dtype: GgmlDType, cols: usize) -> GgmlDType {
    if cols.is_multiple_of(dtype.block_size()) {
        return dtype;
    }
    let fallback = match dtype {
        GgmlDType::Q4K => GgmlDType::Q5_0,
        GgmlDType::Q5K => GgmlDType::Q5_1,
        GgmlDType::Q6K => GgmlDType::Q8_0,
        GgmlDType::Q2K | GgmlDType::Q3K => GgmlDType::Q4_0,
        _ => GgmlDType::F16,
    };
    if cols.is_multiple_of(fallback.block_size()) {
        fallback
    } else {
        GgmlDType::F16
    }
}

/// Packs eight 6-bit scales and mins the way Q4_K and Q5_K store them (llama.cpp's
/// `get_scale_min_k4` reads them back).
fn pack_k_scales(sc: &[u8; 8], m: &[u8; 8]) -> [u8; 12] {
    let mut q = [0u8; 12];
    for j in 0..4 {
        q[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6);
        q[j + 4] = (m[j] & 63) | ((m[j + 4] >> 4) << 6);
        q[j + 8] = (sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4);
    }
    q
}

/// Reads a synthetic model's tensor data, generating it on demand (in parallel, from a
/// seed per tensor and chunk, so any byte range reads the same every time).
pub struct SyntheticReader {
    regions: Vec<Region>,
    len: u64,
    pos: u64,
}

impl Read for SyntheticReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let pos = self.pos;
        // Regions are sorted by start: find the one holding `pos`, if any (else padding).
        let idx = self.regions.partition_point(|r| r.start + r.len <= pos);
        let n = match self.regions.get(idx) {
            Some(r) if r.start <= pos => {
                let n = buf.len().min((r.start + r.len - pos) as usize);
                let out = &mut buf[..n];
                let rel = pos - r.start;
                let cb = r.chunk_bytes();
                if rel.is_multiple_of(cb) {
                    let first = rel / cb;
                    out.par_chunks_mut(cb as usize)
                        .enumerate()
                        .for_each(|(i, o)| r.fill_chunk(first + i as u64, o));
                } else {
                    // An unaligned read (never made by candle's loader): chunk by chunk.
                    let mut done = 0usize;
                    while done < n {
                        let at = rel + done as u64;
                        let c = at / cb;
                        let mut chunk = vec![0u8; cb as usize];
                        r.fill_chunk(c, &mut chunk);
                        let from = (at - c * cb) as usize;
                        let k = (n - done).min(cb as usize - from);
                        out[done..done + k].copy_from_slice(&chunk[from..from + k]);
                        done += k;
                    }
                }
                n
            }
            next => {
                let end = next.map_or(self.len, |r| r.start);
                let n = buf.len().min((end - pos) as usize);
                buf[..n].fill(0);
                n
            }
        };
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SyntheticReader {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => p as i128,
            SeekFrom::End(d) => self.len as i128 + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if new < 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start of a synthetic model",
            ));
        }
        self.pos = new as u64;
        Ok(self.pos)
    }
}

/// ggml's number for a type (`enum ggml_type` in ggml.h), as GGUF tensor infos store it.
fn ggml_type_id(d: GgmlDType) -> u32 {
    use GgmlDType::*;
    match d {
        F32 => 0,
        F16 => 1,
        Q4_0 => 2,
        Q4_1 => 3,
        Q5_0 => 6,
        Q5_1 => 7,
        Q8_0 => 8,
        Q8_1 => 9,
        Q2K => 10,
        Q3K => 11,
        Q4K => 12,
        Q5K => 13,
        Q6K => 14,
        Q8K => 15,
        BF16 => 30,
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// GGUF's number for a value type.
fn value_type_id(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

fn put_value(out: &mut Vec<u8>, key: &str, v: &Value) -> Result<()> {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => put_str(out, s),
        Value::Array(items) => {
            // An empty array's element type does not matter; candle writes U32 too.
            let t = items.first().map_or(4, value_type_id);
            if items.iter().any(|x| value_type_id(x) != t) {
                return Err(EngineError::Synthetic(format!(
                    "metadata `{key}` mixes value types in one array"
                )));
            }
            out.extend_from_slice(&t.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for x in items {
                put_value(out, key, x)?;
            }
        }
    }
    Ok(())
}

/// The GGUF v3 header of `content` (metadata, tensor infos, padding to the data), with
/// `general.architecture` first and the other keys sorted, tensors in data order.
fn gguf_header(content: &Content) -> Result<Vec<u8>> {
    let mut keys: Vec<&String> = content.metadata.keys().collect();
    keys.sort_by_key(|k| (*k != "general.architecture", k.as_str()));
    let mut tensors: Vec<(&String, &TensorInfo)> = content.tensor_infos.iter().collect();
    tensors.sort_by_key(|(_, t)| t.offset);
    let mut out = Vec::new();
    out.extend_from_slice(b"GGUF");
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(keys.len() as u64).to_le_bytes());
    for k in keys {
        let v = &content.metadata[k];
        put_str(&mut out, k);
        out.extend_from_slice(&value_type_id(v).to_le_bytes());
        put_value(&mut out, k, v)?;
    }
    for (name, t) in tensors {
        put_str(&mut out, name);
        let dims = t.shape.dims();
        out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        // GGUF lists dimensions innermost first (ggml's ne[0] is the row length).
        for &d in dims.iter().rev() {
            out.extend_from_slice(&(d as u64).to_le_bytes());
        }
        out.extend_from_slice(&ggml_type_id(t.ggml_dtype).to_le_bytes());
        out.extend_from_slice(&t.offset.to_le_bytes());
    }
    out.resize(
        (out.len() as u64).div_ceil(ALIGNMENT) as usize * ALIGNMENT as usize,
        0,
    );
    Ok(out)
}

/// Bytes of tensor data generated per write (a whole number of chunks, filled in parallel).
const WRITE_BYTES: u64 = 32 << 20;

/// Writes `spec` as a GGUF file to `out`: the header [`SyntheticSpec::open`] makes, then every
/// tensor's bytes as the in-memory reader generates them (so llama.cpp, reading the file, and
/// landauer, running `spec` in place, see the same bytes). Tensor data is generated and written
/// a piece at a time, so memory stays small whatever the model's size. `progress(done, total)`
/// is called after each piece with the bytes written so far. Returns the bytes written.
pub fn write_gguf<W: std::io::Write>(
    spec: &SyntheticSpec,
    out: &mut W,
    mut progress: impl FnMut(u64, u64),
) -> Result<u64> {
    let g = spec.open();
    let header = gguf_header(&g.content)?;
    let total = header.len() as u64 + g.file.len;
    let io = |e: std::io::Error| EngineError::Synthetic(format!("cannot write the file: {e}"));
    out.write_all(&header).map_err(io)?;
    let mut done = header.len() as u64;
    progress(done, total);
    let mut pos = 0u64;
    let mut buf = Vec::new();
    for r in &g.file.regions {
        let zeros = (r.start - pos) as usize;
        out.write_all(&vec![0u8; zeros]).map_err(io)?;
        done += zeros as u64;
        let cb = r.chunk_bytes();
        let per_write = (WRITE_BYTES / cb).max(1);
        let chunks = r.len.div_ceil(cb);
        let mut c = 0;
        while c < chunks {
            let n = per_write.min(chunks - c);
            let bytes = (n * cb).min(r.len - c * cb) as usize;
            buf.resize(bytes, 0);
            buf.par_chunks_mut(cb as usize)
                .enumerate()
                .for_each(|(i, o)| r.fill_chunk(c + i as u64, o));
            out.write_all(&buf).map_err(io)?;
            c += n;
            done += bytes as u64;
            progress(done, total);
        }
        pos = r.start + r.len;
    }
    out.write_all(&vec![0u8; (g.file.len - pos) as usize])
        .map_err(io)?;
    progress(total, total);
    Ok(total)
}

/// [`write_gguf`] to the file `path`, replacing it: written to `PATH.tmp`, synced and renamed
/// when whole, so that a failed or interrupted write never leaves a half-written `path` (the
/// `.tmp` is removed on error). The `.tmp` is created before anything is generated, so a bad
/// path fails at once. Returns the bytes written.
pub fn write_gguf_file(
    spec: &SyntheticSpec,
    path: &std::path::Path,
    progress: impl FnMut(u64, u64),
) -> Result<u64> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let err = |action, path: &std::path::Path| {
        let path = path.to_path_buf();
        move |cause| EngineError::Write {
            action,
            path,
            cause,
        }
    };
    let file = std::fs::File::create(&tmp).map_err(err("create", &tmp))?;
    let written = (|| -> Result<u64> {
        let mut out = std::io::BufWriter::with_capacity(8 << 20, file);
        let n = write_gguf(spec, &mut out, progress)?;
        let file = out
            .into_inner()
            .map_err(|e| err("write", &tmp)(e.into_error()))?;
        file.sync_all().map_err(err("write", &tmp))?;
        std::fs::rename(&tmp, path).map_err(err("rename the finished file to", path))?;
        Ok(n)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

impl SyntheticSpec {
    /// How many weight matrices of each type the model has (llama.cpp's spelling), most
    /// first: the preset's mix, as llama.cpp's loader counts it (norms and biases, F32, left
    /// out).
    pub fn type_counts(&self) -> Vec<(&'static str, usize)> {
        let mut counts: HashMap<&'static str, usize> = HashMap::new();
        for t in self.open().content.tensor_infos.values() {
            if t.shape.rank() != 2 {
                continue;
            }
            *counts
                .entry(crate::gguf::dtype_name(t.ggml_dtype))
                .or_default() += 1;
        }
        let mut counts: Vec<_> = counts.into_iter().collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn tensor(spec: &SyntheticSpec, name: &str) -> candle_core::quantized::QTensor {
        let mut g = spec.open();
        g.content.tensor(&mut g.file, name, &Device::Cpu).unwrap()
    }

    fn spec(s: &str) -> SyntheticSpec {
        SyntheticSpec::parse(s).unwrap()
    }

    #[test]
    fn weights_have_the_intended_scale_and_no_offset() {
        for (q, _) in QUANTS {
            let Ok(s) = SyntheticSpec::parse(&format!("synthetic:smollm2-135m:{q}")) else {
                continue; // a quantize-at-load preset only
            };
            let t = tensor(&s, "blk.3.ffn_down.weight");
            assert_eq!(t.dtype(), s.dtype, "1536 columns need no fallback");
            let w = t
                .dequantize(&Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert_eq!(w.len(), 576 * 1536);
            let n = w.len() as f64;
            let mean = w.iter().map(|&x| x as f64).sum::<f64>() / n;
            let sd = (w.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
            let want = 1.0 / (1536f64).sqrt();
            assert!(
                (sd / want - 1.0).abs() < 0.2,
                "{q}: deviation {sd} vs intended {want}"
            );
            // Q4_0 and Q5_0 store (q - 8)·d and (q - 16)·d: a half-step offset, as in llama.cpp.
            let offset = if matches!(*q, "q4_0" | "q5_0") {
                0.12
            } else {
                0.03
            };
            assert!(mean.abs() < offset * want, "{q}: mean {mean} is not ~0");
            assert!(w.iter().all(|x| x.is_finite()));
        }
    }

    #[test]
    fn layers_do_not_share_weights_and_reads_repeat() {
        let s = spec("synthetic:smollm2-135m:q4_k");
        assert_eq!(
            tensor(&s, "blk.0.attn_q.weight").dtype(),
            GgmlDType::Q5_0,
            "576 columns cannot be Q4_K"
        );
        let a = tensor(&s, "blk.0.attn_q.weight").data().unwrap().to_vec();
        let b = tensor(&s, "blk.1.attn_q.weight").data().unwrap().to_vec();
        assert_eq!(a.len(), b.len());
        assert_ne!(a, b, "two layers got the same bytes");
        let again = tensor(&s, "blk.0.attn_q.weight").data().unwrap().to_vec();
        assert_eq!(a, again, "the same tensor read twice differs");
    }

    #[test]
    fn unaligned_reads_see_the_same_bytes() {
        let s = spec("synthetic:smollm2-135m:q8_0");
        let mut g = s.open();
        let info = &g.content.tensor_infos["blk.2.ffn_up.weight"];
        let start = info.offset;
        let len = info.shape.elem_count() / 32 * 34;
        let mut whole = vec![0u8; len];
        g.file.seek(SeekFrom::Start(start)).unwrap();
        g.file.read_exact(&mut whole).unwrap();
        let mut piece = vec![0u8; 200_001];
        g.file.seek(SeekFrom::Start(start + 123_457)).unwrap();
        g.file.read_exact(&mut piece).unwrap();
        assert_eq!(piece, whole[123_457..123_457 + 200_001]);
    }

    #[test]
    fn bad_specs_say_what_is_known() {
        let e = SyntheticSpec::parse("synthetic:gpt-5")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown architecture `gpt-5`") && e.contains("llama-3.1-8b"));
        let e = SyntheticSpec::parse("synthetic:llama-3.2-1b:q3_x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown quantization `q3_x`") && e.contains("q4_k"));
        assert_eq!(
            spec("synthetic:Llama-3.2-1B").quant,
            DEFAULT_QUANT,
            "names are case-insensitive and the quant defaults"
        );
        assert_eq!(spec("synthetic:qwen2.5-7b:Q4_K").dtype, GgmlDType::Q4K);
    }

    #[test]
    fn use_more_bits_picks_llama_cpps_layers() {
        let more = |n: usize| (0..n).filter(|&i| use_more_bits(i, n)).collect::<Vec<_>>();
        // n/8 = 2, 7n/8 = 14, and (i - 2) % 3 == 2 between.
        assert_eq!(more(16), [0, 1, 4, 7, 10, 13, 14, 15]);
        // n/8 = 4, 7n/8 = 28: 16 of 32 layers.
        assert_eq!(
            more(32),
            [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]
        );
    }

    #[test]
    fn mixes_match_llama_quantize_files() {
        use GgmlDType::*;
        let counts = |s: &str| {
            let mut v: Vec<(String, usize)> = spec(s)
                .type_counts()
                .into_iter()
                .map(|(d, n)| (d.to_string(), n))
                .collect();
            v.sort();
            v
        };
        let c = |v: &[(&str, usize)]| {
            let mut v: Vec<(String, usize)> = v.iter().map(|(d, n)| (d.to_string(), *n)).collect();
            v.sort();
            v
        };
        // llama.cpp's loader prints "type q4_K: 193 tensors, type q6_K: 33 tensors" for Q4_K_M
        // files of 32-layer untied llamas (Llama-2-7B, Mistral-7B; Llama-3.1-8B has their
        // tensors): attn_v and ffn_down of 16 layers, and output.weight.
        assert_eq!(
            counts("synthetic:llama-3.1-8b:q4_k_m"),
            c(&[("Q4_K", 193), ("Q6_K", 33)])
        );
        // Tied: the embedding is the output, so Q6_K ("type q4_K: 96 tensors, type q6_K: 17
        // tensors" for a Llama-3.2-1B-Instruct Q4_K_M file).
        assert_eq!(
            counts("synthetic:llama-3.2-1b:q4_k_m"),
            c(&[("Q4_K", 96), ("Q6_K", 17)])
        );
        // SmolLM2's 576 columns: Q4_K falls back to Q5_0 and Q6_K to Q8_0 except in ffn_down
        // (1536 columns); attn_v and ffn_down of 14 of 30 layers get more bits; the tied
        // embedding's 576 columns make it Q8_0.
        assert_eq!(
            counts("synthetic:smollm2-135m:q4_k_m"),
            c(&[
                ("Q5_0", 30 * 5 + 16),
                ("Q8_0", 14 + 1),
                ("Q6_K", 14),
                ("Q4_K", 16)
            ])
        );
        // The default model's real file (SmolLM2-135M-Instruct.Q4_1.gguf, from llama-quantize)
        // has token_embd in Q8_0 and every other matrix in Q4_1.
        let s = spec("synthetic:smollm2-135m:q4_1");
        assert_eq!(s.tensor_type("token_embd.weight", &[49152, 576]), Q8_0);
        assert_eq!(
            counts("synthetic:smollm2-135m:q4_1"),
            c(&[("Q4_1", 210), ("Q8_0", 1)])
        );
        // Untied Q4_0: the output matrix in Q6_K, the embedding stays Q4_0.
        let s = spec("synthetic:llama-3.1-8b:q4_0");
        assert_eq!(s.tensor_type("output.weight", &[128_256, 4096]), Q6K);
        assert_eq!(s.tensor_type("token_embd.weight", &[128_256, 4096]), Q4_0);
        // Q4_K_S: attn_v of layers 0-3 and ffn_down of the first eighth in Q5_K.
        assert_eq!(
            counts("synthetic:llama-3.1-8b:q4_k_s"),
            c(&[("Q4_K", 224 + 1 - 4 - 4), ("Q5_K", 8), ("Q6_K", 1)])
        );
        // Q5_K_S: only the output; Q5_K_M as Q4_K_M.
        assert_eq!(
            counts("synthetic:llama-3.1-8b:q5_k_s"),
            c(&[("Q5_K", 225), ("Q6_K", 1)])
        );
        assert_eq!(
            counts("synthetic:llama-3.1-8b:q5_k_m"),
            c(&[("Q5_K", 193), ("Q6_K", 33)])
        );
        // Q6_K, Q8_0 and F16 mixes are their one type (with Q6_K's fallback).
        for arch in ARCHITECTURES {
            for (mix, pure) in [("q6_k", Q6K), ("q8_0", Q8_0), ("f16", F16)] {
                let s = spec(&format!("synthetic:{}:{mix}", arch.name));
                for (name, shape, _) in arch.tensors() {
                    let want = if shape.len() == 1 {
                        F32
                    } else {
                        block_fallback(pure, shape[1])
                    };
                    assert_eq!(
                        s.tensor_type(&name, &shape),
                        want,
                        "{} {mix} {name}",
                        arch.name
                    );
                }
            }
        }
        // q4_k and q5_k stay one type.
        assert_eq!(spec("synthetic:llama-3.1-8b:q4_k").type_counts().len(), 1);
        assert_eq!(spec("synthetic:llama-3.1-8b:q5_k").type_counts().len(), 1);
    }

    /// A small llama: 16 layers (so that `use_more_bits` picks layers 0, 1, 4, 7, 10, 13, 14
    /// and 15), rows of 256 except ffn_down's 320 (which K-quants cannot hold).
    fn small(family: &'static str, tied: bool) -> Architecture {
        Architecture {
            name: "test-small",
            source: "test",
            family,
            layers: 16,
            hidden: 256,
            ffn: 320,
            heads: 4,
            kv_heads: 2,
            vocab: 1000,
            context: 512,
            rope_theta: 10_000.0,
            rms_eps: 1e-5,
            tied_embeddings: tied,
            qkv_bias: family == "qwen2",
            head_size: None,
        }
    }

    /// Writes `spec`, reads the file back with the GGUF loader, checks every tensor's type
    /// against `want`, its shape and bytes against the in-memory model; returns the file.
    fn write_and_check(
        spec: &SyntheticSpec,
        dir: &std::path::Path,
        want: impl Fn(&str) -> GgmlDType,
    ) -> GgufFile {
        let path = dir.join(format!("{}.gguf", spec.quant));
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut last = (0, 0);
        let n = write_gguf(spec, &mut f, |d, t| {
            assert!(d >= last.0 && d <= t);
            last = (d, t);
        })
        .unwrap();
        drop(f);
        assert_eq!(last, (n, n), "progress ends at the total");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), n);
        let mut file = GgufFile::open(&path).unwrap();
        let mut mem = spec.open();
        let names: Vec<String> = spec.arch.tensors().into_iter().map(|t| t.0).collect();
        assert_eq!(file.content.tensor_infos.len(), names.len());
        assert_eq!(file.content.tensor_data_offset % ALIGNMENT, 0);
        for name in &names {
            let info = &file.content.tensor_infos[name];
            let m = &mem.content.tensor_infos[name];
            assert_eq!(info.ggml_dtype, want(name), "{} {name}", spec.quant);
            assert_eq!(info.ggml_dtype, m.ggml_dtype, "{name}");
            assert_eq!(info.shape.dims(), m.shape.dims(), "{name}");
            let a = file
                .content
                .tensor(&mut file.file, name, &Device::Cpu)
                .unwrap();
            let b = mem
                .content
                .tensor(&mut mem.file, name, &Device::Cpu)
                .unwrap();
            assert_eq!(a.data().unwrap(), b.data().unwrap(), "{name}: bytes differ");
        }
        file
    }

    #[test]
    fn written_gguf_reads_back_with_the_mix_the_bytes_and_the_tokenizer() {
        use GgmlDType::*;
        let dir = tempfile::tempdir().unwrap();
        // A source tokenizer: a tiny model's GGUF with a trained BPE vocabulary.
        let source = dir.path().join("source.gguf");
        crate::tiny::write_tiny_llama(&source, &crate::tiny::TinyConfig::default()).unwrap();
        let vocab = Vocabulary::from_gguf(&source).unwrap();
        let src = GgufFile::open(&source).unwrap();
        let src_tokens = src.content.metadata["tokenizer.ggml.tokens"]
            .to_vec()
            .unwrap()
            .len();
        assert_eq!(vocab.size, src_tokens);
        assert_ne!(vocab.size, 1000, "the test needs a size that differs");

        let mut s = spec("synthetic:smollm2-135m:q4_k_m").with_vocab(vocab);
        s.arch = Architecture {
            vocab: src_tokens,
            ..small("llama", true)
        };
        let more = [0, 1, 4, 7, 10, 13, 14, 15];
        let g = write_and_check(&s, dir.path(), |name| {
            let layer = layer_of(name);
            let more_bits = layer.is_some_and(|i| more.contains(&i));
            if name.ends_with("norm.weight") {
                F32
            } else if name == "token_embd.weight" {
                Q6K // tied: the output's type; 256 columns hold Q6_K
            } else if name.ends_with("attn_v.weight") {
                if more_bits {
                    Q6K
                } else {
                    Q4K
                }
            } else if name.ends_with("ffn_down.weight") {
                // 320 columns: Q6_K falls back to Q8_0, Q4_K to Q5_0.
                if more_bits {
                    Q8_0
                } else {
                    Q5_0
                }
            } else {
                Q4K
            }
        });
        let md = &g.content.metadata;
        assert_eq!(g.architecture().as_deref(), Some("llama"));
        assert_eq!(
            g.get_u32("general.file_type"),
            Some(15),
            "LLAMA_FTYPE_MOSTLY_Q4_K_M"
        );
        assert_eq!(g.get_u32("general.alignment"), Some(32));
        assert_eq!(g.get_u32("general.quantization_version"), Some(2));
        for (k, v) in [
            ("block_count", 16),
            ("embedding_length", 256),
            ("feed_forward_length", 320),
            ("attention.head_count", 4),
            ("attention.head_count_kv", 2),
            ("rope.dimension_count", 64),
            ("context_length", 512),
            ("vocab_size", src_tokens as u32),
        ] {
            assert_eq!(g.get_u32(&format!("llama.{k}")), Some(v), "llama.{k}");
        }
        assert_eq!(
            g.content.tensor_infos["token_embd.weight"].shape.dims(),
            [src_tokens, 256]
        );
        // Every tokenizer key of the source, and nothing else, with the same values.
        let tok_keys = |m: &HashMap<String, Value>| {
            let mut k: Vec<String> = m
                .keys()
                .filter(|k| k.starts_with("tokenizer."))
                .cloned()
                .collect();
            k.sort();
            k
        };
        assert_eq!(tok_keys(md), tok_keys(&src.content.metadata));
        for k in tok_keys(md) {
            assert!(value_eq(&md[&k], &src.content.metadata[&k]), "{k}");
        }
        let name = g.get_str("general.name").unwrap();
        assert!(
            name.contains(&format!(
                "vocabulary of {src_tokens} tokens from source.gguf"
            )),
            "{name}"
        );
        assert_eq!(
            g.get_u32("landauer.synthetic.vocab_size"),
            Some(src_tokens as u32)
        );
        assert_eq!(
            g.get_str("landauer.synthetic.vocab_from").as_deref(),
            Some("source.gguf")
        );
        let info = g.info();
        assert!(info.synthetic);
        assert_eq!(info.vocab_size, Some(src_tokens));
        // The file loads as a model and its tokenizer encodes text.
        let engine = crate::generate::Engine::from_gguf(g, None, &Device::Cpu).unwrap();
        assert!(!engine.encode("The cat sat").unwrap().is_empty());

        // Qwen2, untied, Q4_0 and the built-in vocabulary: biases F32, the output in Q6_K, the
        // embedding and every other matrix in Q4_0.
        let mut s = spec("synthetic:qwen2.5-0.5b:q4_0");
        s.arch = small("qwen2", false);
        let g = write_and_check(&s, dir.path(), |name| {
            if name.ends_with("norm.weight") || name.ends_with(".bias") {
                F32
            } else if name == "output.weight" {
                Q6K
            } else {
                Q4_0
            }
        });
        assert_eq!(g.architecture().as_deref(), Some("qwen2"));
        assert_eq!(
            g.get_u32("general.file_type"),
            Some(2),
            "LLAMA_FTYPE_MOSTLY_Q4_0"
        );
        assert_eq!(g.info().vocab_size, Some(1000));
        assert_eq!(
            g.get_str("landauer.synthetic.vocab_from").as_deref(),
            Some("built-in")
        );
    }

    #[test]
    fn a_file_without_a_tokenizer_is_no_vocabulary() {
        let dir = tempfile::tempdir().unwrap();
        let e = Vocabulary::from_gguf(&dir.path().join("none.gguf"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not found"), "{e}");
        let p = dir.path().join("bare.gguf");
        let mut s = spec("synthetic:smollm2-135m:q8_0");
        s.arch = small("llama", true);
        let mut g = s.open();
        g.content
            .metadata
            .retain(|k, _| !k.starts_with("tokenizer."));
        let mut f = std::fs::File::create(&p).unwrap();
        std::io::Write::write_all(&mut f, &gguf_header(&g.content).unwrap()).unwrap();
        let mut data = Vec::new();
        g.file.read_to_end(&mut data).unwrap();
        std::io::Write::write_all(&mut f, &data).unwrap();
        drop(f);
        let e = Vocabulary::from_gguf(&p).unwrap_err().to_string();
        assert!(e.contains("has no tokenizer.ggml.tokens"), "{e}");
    }
}
