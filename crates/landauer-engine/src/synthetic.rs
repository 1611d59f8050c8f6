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
    },
];

/// Weight types a synthetic model can be built in (llama.cpp's spelling, lower case).
pub const QUANTS: &[(&str, GgmlDType)] = &[
    ("q4_0", GgmlDType::Q4_0),
    ("q4_1", GgmlDType::Q4_1),
    ("q5_0", GgmlDType::Q5_0),
    ("q5_1", GgmlDType::Q5_1),
    ("q8_0", GgmlDType::Q8_0),
    ("q4_k", GgmlDType::Q4K),
    ("q5_k", GgmlDType::Q5K),
    ("q6_k", GgmlDType::Q6K),
    ("f16", GgmlDType::F16),
];

/// The quantization used when `synthetic:ARCH` names none.
pub const DEFAULT_QUANT: &str = "q4_k";

impl Architecture {
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }

    /// Every tensor of the model: name, shape (rows, cols) or (len,), and whether it is a
    /// weight matrix (quantized) rather than a norm or bias (kept in F32).
    pub fn tensors(&self) -> Vec<(String, Vec<usize>, bool)> {
        let (h, f, kv) = (self.hidden, self.ffn, self.kv_heads * self.head_dim());
        let mut t = vec![("token_embd.weight".to_string(), vec![self.vocab, h], true)];
        for i in 0..self.layers {
            let b = |n: &str| format!("blk.{i}.{n}");
            t.push((b("attn_norm.weight"), vec![h], false));
            t.push((b("attn_q.weight"), vec![h, h], true));
            t.push((b("attn_k.weight"), vec![kv, h], true));
            t.push((b("attn_v.weight"), vec![kv, h], true));
            if self.qkv_bias {
                t.push((b("attn_q.bias"), vec![h], false));
                t.push((b("attn_k.bias"), vec![kv], false));
                t.push((b("attn_v.bias"), vec![kv], false));
            }
            t.push((b("attn_output.weight"), vec![h, h], true));
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
    pub quant: &'static str,
    pub dtype: GgmlDType,
    /// Seed of the weights (same seed, same bytes).
    pub seed: u64,
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
        let (quant, dtype) = *QUANTS.iter().find(|q| q.0 == quant).ok_or_else(|| {
            bad(format!(
                "unknown quantization `{quant}`; known: {}",
                known_quants()
            ))
        })?;
        Ok(Self {
            arch,
            quant,
            dtype,
            seed: 0x5eed,
        })
    }

    /// `synthetic:ARCH:QUANT`.
    pub fn label(&self) -> String {
        format!("synthetic:{}:{}", self.arch.name, self.quant)
    }

    /// The model's GGUF header and a reader that generates its tensor data on demand.
    pub fn open(&self) -> GgufFile<SyntheticReader> {
        let a = &self.arch;
        let mut tensor_infos = HashMap::new();
        let mut regions = Vec::new();
        let mut offset = 0u64;
        for (i, (name, shape, matrix)) in a.tensors().into_iter().enumerate() {
            let dtype = if matrix {
                block_fallback(self.dtype, shape[1])
            } else {
                GgmlDType::F32
            };
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
            offset = (offset + bytes).div_ceil(32) * 32;
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

    fn metadata(&self) -> HashMap<String, Value> {
        let a = &self.arch;
        let k = |s: &str| format!("{}.{s}", a.family);
        let u = |x: usize| Value::U32(x as u32);
        // A tokenizer with the real vocabulary size: special tokens, the 256 byte symbols,
        // a few merges, then filler tokens (`tok123`) that only random weights will pick.
        let (mut vocab, merges) = crate::tiny::train_bpe(200);
        let specials = crate::tiny::SPECIAL_TOKENS.len();
        for i in vocab.len()..a.vocab {
            vocab.push(format!("tok{i}"));
        }
        vocab.truncate(a.vocab);
        let strings =
            |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect::<Vec<_>>());
        let types = (0..a.vocab)
            .map(|i| Value::I32(if i < specials { 3 } else { 1 }))
            .collect();
        let mut md: HashMap<String, Value> = [
            (
                "general.architecture".into(),
                Value::String(a.family.into()),
            ),
            ("general.name".into(), Value::String(self.label())),
            (
                "general.source.huggingface.repository".into(),
                Value::String(a.source.into()),
            ),
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
        .into_iter()
        .collect();
        md.insert("landauer.synthetic".into(), Value::Bool(true));
        md
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
/// block (K-quants: 256) and `cols` is not one: llama.cpp's quantizer falls back the same way
/// (SmolLM2's 576-wide matrices cannot be Q4_K and become Q5_0).
pub fn block_fallback(dtype: GgmlDType, cols: usize) -> GgmlDType {
    if cols % dtype.block_size() == 0 {
        return dtype;
    }
    match dtype {
        GgmlDType::Q4K => GgmlDType::Q5_0,
        GgmlDType::Q5K => GgmlDType::Q5_1,
        _ => GgmlDType::Q8_0,
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
                if rel % cb == 0 {
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
            let s = spec(&format!("synthetic:smollm2-135m:{q}"));
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
}
