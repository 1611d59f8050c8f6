//! landauer's own forward pass for batches of sequences (llama, qwen2 and qwen3 families).
//!
//! candle-transformers' quantized models share one position across a batch and grow their
//! KV cache by concatenation every step. Here B sequences of any prompt lengths decode
//! together, one pass per step:
//! - prompts are left-padded to a common length, so every row writes the same cache slot at
//!   each step; each row has its own positions (for RoPE) and an attention mask that hides its
//!   padding and the future;
//! - the KV cache is allocated once, for B rows and the run's capacity, and written in place
//!   (`slice_set`); attention reads a view of the filled slots, no copy;
//! - grouped-query attention multiplies each KV head by its group of query heads directly
//!   (no repeated K/V tensors).
//!
//! The graph is candle-transformers' (same ops in the same order: embedding, RMSNorm, q/k/v,
//! RoPE, softmax(QKᵀ/√d)V, SwiGLU MLP), so a batch of one gives the same logits as
//! `quantized_llama`/`quantized_qwen2`; tests hold the two to the same greedy tokens.

use crate::cpu_attention::{KvDtype, LayerCache};
pub use crate::family::{Config, Family};
use crate::gguf::{one_line, GgufFile};
use crate::kernels::QLinear;
use crate::{EngineError, Result};
use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, IndexOp, Module, Tensor};
use std::io::{Read, Seek};

struct Layer {
    attn_norm: Tensor,
    wq: QLinear,
    wk: QLinear,
    wv: QLinear,
    bias: Option<(Tensor, Tensor, Tensor)>,
    /// Qwen3's per-head norms of queries and keys (head_dim weights each).
    qk_norm: Option<(Tensor, Tensor)>,
    wo: QLinear,
    ffn_norm: Tensor,
    gate: QLinear,
    up: QLinear,
    down: QLinear,
}

/// The preallocated KV cache of one batch: tensors on a GPU, plain buffers on the CPU (where
/// attention runs in [`crate::cpu_attention`]).
struct Cache {
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    host: Vec<LayerCache>,
    batch: usize,
    capacity: usize,
}

/// A loaded model that runs batches.
pub struct BatchedModel {
    pub config: Config,
    embed: candle_nn::Embedding,
    layers: Vec<Layer>,
    norm: Tensor,
    output: QLinear,
    /// `output.weight`, or `token_embd.weight` when the embedding is tied.
    output_name: String,
    /// RoPE tables for `max_positions` positions, (positions, head_dim / 2).
    cos: Tensor,
    sin: Tensor,
    max_positions: usize,
    cache: Option<Cache>,
    /// How the CPU cache stores keys and values (GPUs keep f32 tensors).
    kv_dtype: KvDtype,
    /// Attention through candle's tensor ops on the CPU too ([`Self::set_tensor_attention`]).
    tensor_attention: bool,
    device: Device,
}

/// Where a step's tokens go in the cache.
#[derive(Clone, Copy)]
enum Slots<'a> {
    /// Every row at the same slot (left-padded batches).
    Same(usize),
    /// Row r at slot `lens[r]` (continuous batches).
    Rows(&'a [usize]),
}

/// Positions RoPE tables are built for (as candle's llama, 4096).
pub const MAX_POSITIONS: usize = 4096;

impl BatchedModel {
    /// Loads the weights of a llama-, qwen2- or qwen3-family GGUF onto `device`.
    pub fn load<R: Read + Seek>(gguf: &mut GgufFile<R>, device: &Device) -> Result<Self> {
        let path = gguf.path.clone();
        let err = |e: candle_core::Error| EngineError::Load {
            path: path.clone(),
            reason: one_line(&e.to_string()),
        };
        let arch = gguf.architecture().unwrap_or_default();
        let family = Family::of(&arch).ok_or_else(|| EngineError::UnsupportedArchitecture {
            path: path.clone(),
            arch: format!("{arch} (batched decoding supports llama, mistral, qwen2 and qwen3)"),
        })?;
        let key = |k: &str| format!("{arch}.{k}");
        let num = |k: &str| -> Result<usize> {
            gguf.get_u32(&key(k))
                .map(|v| v as usize)
                .ok_or_else(|| EngineError::Load {
                    path: path.clone(),
                    reason: format!("no {} in the header", key(k)),
                })
        };
        let f = |k: &str| {
            gguf.content
                .metadata
                .get(&key(k))
                .and_then(|v| v.to_f32().ok())
        };
        let heads = num("attention.head_count")?;
        let hidden = num("embedding_length")?;
        // Qwen3 states its head size (Qwen3-0.6B: 128, with 16 heads of a 1024 hidden size);
        // elsewhere it is hidden / heads, which llama files also state.
        let head_dim = match family {
            Family::Qwen3 => num("attention.key_length")?,
            _ => hidden / heads,
        };
        let config = Config {
            family,
            layers: num("block_count")?,
            hidden,
            heads,
            kv_heads: num("attention.head_count_kv")?,
            head_dim,
            q_dim: heads * head_dim,
            rope_theta: f("rope.freq_base").unwrap_or(10_000.0),
            rms_eps: f("attention.layer_norm_rms_epsilon").unwrap_or(1e-5) as f64,
            vocab: 0,
        };
        let (heads, kv_heads, hd) = (config.heads, config.kv_heads, config.head_dim);
        if heads == 0 || kv_heads == 0 || hd == 0 || hd % 2 == 1 || heads % kv_heads != 0 {
            return Err(EngineError::Load {
                path: path.clone(),
                reason: format!(
                    "the header's attention does not fit together ({heads} heads, {kv_heads} key/value heads, head size {hd})"
                ),
            });
        }
        let ct: &gguf_file::Content = &gguf.content;
        // Each tensor's shape against the header's: a file whose header and tensors disagree
        // (forged, or mixed up) is refused here, not asserted on mid-computation.
        let ffn = ct
            .tensor_infos
            .get("blk.0.ffn_gate.weight")
            .map_or(0, |t| t.shape.dims()[0]);
        let kv_dim = kv_heads * hd;
        let want = |name: &str| -> Option<Vec<usize>> {
            let part = name.split_once('.').map_or(name, |(_, p)| p);
            let part = part.split_once('.').map_or(part, |(_, p)| p);
            Some(match (name, part) {
                ("token_embd.weight" | "output.weight", _) => return None,
                ("output_norm.weight", _) => vec![hidden],
                (_, "attn_norm.weight" | "ffn_norm.weight") => vec![hidden],
                (_, "attn_q.weight") => vec![config.q_dim, hidden],
                (_, "attn_k.weight" | "attn_v.weight") => vec![kv_dim, hidden],
                (_, "attn_output.weight") => vec![hidden, config.q_dim],
                (_, "attn_q.bias") => vec![config.q_dim],
                (_, "attn_k.bias" | "attn_v.bias") => vec![kv_dim],
                (_, "attn_q_norm.weight" | "attn_k_norm.weight") => vec![hd],
                (_, "ffn_gate.weight" | "ffn_up.weight") => vec![ffn, hidden],
                (_, "ffn_down.weight") => vec![hidden, ffn],
                _ => return None,
            })
        };
        for (name, t) in &ct.tensor_infos {
            let dims = t.shape.dims();
            let bad = match want(name) {
                Some(w) => dims != w.as_slice(),
                // The embedding and output: (vocabulary, hidden).
                None => dims.len() == 2 && dims[1] != hidden,
            };
            if bad {
                return Err(EngineError::Load {
                    path: path.clone(),
                    reason: format!(
                        "the tensor {name} has shape {dims:?}, which the header's sizes (hidden {hidden}, {heads} heads of {hd}, {kv_heads} key/value heads) do not give"
                    ),
                });
            }
        }
        let r: &mut R = &mut gguf.file;
        let mut tensor = |name: &str| ct.tensor(&mut *r, name, device).map_err(err);
        let dense = |q: &candle_core::quantized::QTensor| q.dequantize(device).map_err(err);
        let qmm = |q| QLinear::new(q).map_err(err);
        let embed_q = tensor("token_embd.weight")?;
        let embed = dense(&embed_q)?;
        let vocab = embed.dim(0).map_err(err)?;
        let mut layers = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let p = |n: &str| format!("blk.{i}.{n}");
            let bias = match family {
                Family::Qwen2 => Some((
                    dense(&tensor(&p("attn_q.bias"))?)?,
                    dense(&tensor(&p("attn_k.bias"))?)?,
                    dense(&tensor(&p("attn_v.bias"))?)?,
                )),
                Family::Llama | Family::Qwen3 => None,
            };
            let qk_norm = match family {
                Family::Qwen3 => Some((
                    dense(&tensor(&p("attn_q_norm.weight"))?)?,
                    dense(&tensor(&p("attn_k_norm.weight"))?)?,
                )),
                _ => None,
            };
            layers.push(Layer {
                attn_norm: dense(&tensor(&p("attn_norm.weight"))?)?,
                wq: qmm(tensor(&p("attn_q.weight"))?)?,
                wk: qmm(tensor(&p("attn_k.weight"))?)?,
                wv: qmm(tensor(&p("attn_v.weight"))?)?,
                bias,
                qk_norm,
                wo: qmm(tensor(&p("attn_output.weight"))?)?,
                ffn_norm: dense(&tensor(&p("ffn_norm.weight"))?)?,
                gate: qmm(tensor(&p("ffn_gate.weight"))?)?,
                up: qmm(tensor(&p("ffn_up.weight"))?)?,
                down: qmm(tensor(&p("ffn_down.weight"))?)?,
            });
        }
        let norm = dense(&tensor("output_norm.weight")?)?;
        let (output, output_name) = match ct.tensor_infos.contains_key("output.weight") {
            true => (qmm(tensor("output.weight")?)?, "output.weight"),
            false => (qmm(embed_q)?, "token_embd.weight"),
        };
        let (cos, sin) =
            rope_tables(config.head_dim, config.rope_theta, MAX_POSITIONS, device).map_err(err)?;
        Ok(Self {
            config: Config { vocab, ..config },
            embed: candle_nn::Embedding::new(embed, hidden),
            layers,
            norm,
            output,
            output_name: output_name.into(),
            cos,
            sin,
            max_positions: MAX_POSITIONS,
            cache: None,
            kv_dtype: KvDtype::default(),
            tensor_attention: false,
            device: device.clone(),
        })
    }

    /// The weight matrices that landauer's kernels do not run (candle's CPU kernels, the slow
    /// path), by GGUF tensor name and type; empty on a GPU, where candle's kernels are the
    /// fast path.
    pub fn slow_tensors(&self) -> Vec<crate::slow_path::SlowTensor> {
        let mut named: Vec<(String, &QLinear)> = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            for (n, q) in [
                ("attn_q", &l.wq),
                ("attn_k", &l.wk),
                ("attn_v", &l.wv),
                ("attn_output", &l.wo),
                ("ffn_gate", &l.gate),
                ("ffn_up", &l.up),
                ("ffn_down", &l.down),
            ] {
                named.push((format!("blk.{i}.{n}.weight"), q));
            }
        }
        named.push((self.output_name.clone(), &self.output));
        named
            .into_iter()
            .filter_map(|(name, q)| {
                q.fallback().map(|d| crate::slow_path::SlowTensor {
                    name,
                    dtype: crate::gguf::dtype_name(d).into(),
                })
            })
            .collect()
    }

    /// Positions the RoPE tables cover.
    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// How the KV cache stores keys and values: on the CPU f16 unless set otherwise, on a GPU
    /// f32.
    pub fn kv_dtype(&self) -> KvDtype {
        match self.host_attention() {
            true => self.kv_dtype,
            false => KvDtype::F32,
        }
    }

    /// Sets how the CPU cache stores keys and values, from the next [`Self::start`] on (GPUs
    /// keep f32).
    pub fn set_kv_dtype(&mut self, dtype: KvDtype) {
        self.kv_dtype = dtype;
    }

    /// Bytes of KV cache for `batch` rows of `capacity` slots.
    pub fn kv_cache_bytes(&self, batch: usize, capacity: usize) -> u64 {
        let c = &self.config;
        (c.layers * 2 * batch * c.kv_heads * capacity * c.head_dim * self.kv_dtype().bytes()) as u64
    }

    /// Peak working memory of one step of `rows` × `tokens` positions attending to `slots`
    /// (activations, attention scores, logits), a generous estimate.
    pub fn working_bytes(&self, rows: usize, tokens: usize, slots: usize) -> u64 {
        let c = &self.config;
        let n = (rows * tokens) as u64;
        let ffn = 4 * c.hidden as u64; // the MLP's width is at most ~5x hidden in these families
        let scores = (rows * c.heads * tokens * slots) as u64;
        4 * (n * (6 * c.hidden as u64 + 3 * ffn) + 2 * scores + rows as u64 * c.vocab as u64)
    }

    /// Allocates the KV cache for a new batch (the previous one is dropped first).
    pub fn start(&mut self, batch: usize, capacity: usize) -> Result<()> {
        self.cache = None;
        let c = &self.config;
        let shape = (batch, c.kv_heads, capacity, c.head_dim);
        let mut k = Vec::with_capacity(c.layers);
        let mut v = Vec::with_capacity(c.layers);
        let mut host = Vec::new();
        for _ in 0..c.layers {
            if self.host_attention() {
                // Zeroed pages are mapped lazily: only the slots a run reaches cost memory.
                let n = batch * c.kv_heads * capacity * c.head_dim;
                host.push(LayerCache::new(self.kv_dtype, n));
            } else {
                k.push(Tensor::zeros(shape, DType::F32, &self.device)?);
                v.push(Tensor::zeros(shape, DType::F32, &self.device)?);
            }
        }
        self.cache = Some(Cache {
            k,
            v,
            host,
            batch,
            capacity,
        });
        Ok(())
    }

    /// One pass over `tokens` (B, T), written into cache slots `slot..slot + T` of rows
    /// 0..B. `positions` (B·T, u32) are each token's RoPE position; `mask` (B, 1, T, slot + T)
    /// is added to the attention scores (0 to attend, −∞ to hide; None: every slot visible).
    /// Returns the logits of the last position of every row, (B, vocab).
    pub fn forward(
        &mut self,
        tokens: &Tensor,
        positions: &Tensor,
        slot: usize,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        self.pass(tokens, positions, 0, Slots::Same(slot), mask)
    }

    /// One pass of a continuous batch: row r of `tokens` (B, T) is cache row `row0 + r`,
    /// holding `lens[r]` tokens so far; its T tokens go to slots (and positions)
    /// `lens[r]..lens[r] + T` and attend causally to the row's own slots. Rows have no
    /// padding: each was prefilled alone (B = 1, its own row). Returns the logits of the last
    /// position of every row, (B, vocab).
    pub fn forward_rows(&mut self, tokens: &Tensor, row0: usize, lens: &[usize]) -> Result<Tensor> {
        let (b, t) = tokens.dims2()?;
        if lens.len() != b {
            return Err(EngineError::Compute(candle_core::Error::Msg(format!(
                "{} lengths for a batch of {b} rows",
                lens.len()
            ))));
        }
        let positions: Vec<u32> = lens
            .iter()
            .flat_map(|&len| (len..len + t).map(|p| p as u32))
            .collect();
        let positions = Tensor::new(positions, &self.device)?;
        let span = lens.iter().copied().max().unwrap_or(0) + t;
        let uniform = lens.iter().all(|&l| l == lens[0]);
        // On the CPU a row reads only its own slots: a mask only for a step's own future.
        // The tensor path reads the longest row's span for every row: the mask also hides
        // what lies beyond each row's length.
        let host = self.host_attention();
        let mask = match (t > 1, host, uniform) {
            (false, true, _) | (false, false, true) => None,
            _ => {
                let mut m = vec![0f32; b * t * span];
                for (r, &len) in lens.iter().enumerate() {
                    for i in 0..t {
                        m[(r * t + i) * span + len + i + 1..(r * t + i + 1) * span]
                            .iter_mut()
                            .for_each(|x| *x = f32::NEG_INFINITY);
                    }
                }
                Some(Tensor::from_vec(m, (b, 1, t, span), &self.device)?)
            }
        };
        let slots = match uniform {
            true => Slots::Same(lens.first().copied().unwrap_or(0)),
            false => Slots::Rows(lens),
        };
        self.pass(tokens, &positions, row0, slots, mask.as_ref())
    }

    /// Copies row `from`'s first `len` slots of keys and values to row `to`, in every layer:
    /// a continuous batch moves its last row into the place of one that finished, so that
    /// its rows stay 0..n.
    pub fn copy_row(&mut self, from: usize, to: usize, len: usize) -> Result<()> {
        let c = &self.config;
        let cache = self.cache.as_mut().ok_or_else(|| {
            EngineError::Compute(candle_core::Error::Msg("start() the batch first".into()))
        })?;
        if from.max(to) >= cache.batch || len > cache.capacity {
            return Err(EngineError::Compute(candle_core::Error::Msg(format!(
                "row {from} to row {to} ({len} slots) is outside the cache ({} rows, {} slots)",
                cache.batch, cache.capacity
            ))));
        }
        if from == to || len == 0 {
            return Ok(());
        }
        for layer in &mut cache.host {
            layer.copy_row((c.kv_heads, cache.capacity, c.head_dim), from, to, len);
        }
        for t in cache.k.iter().chain(&cache.v) {
            let view = t.narrow(0, from, 1)?.narrow(2, 0, len)?;
            // A copy of its own (slice_set refuses a source that shares the cache's storage).
            let src = match view.is_contiguous() {
                true => view.affine(1.0, 0.0)?,
                false => view.contiguous()?,
            };
            t.narrow(0, to, 1)?.slice_set(&src, 2, 0)?;
        }
        Ok(())
    }

    /// Runs attention with candle's tensor ops (the GPU's path) on the CPU too, so that tests
    /// check that path where no GPU is; from the next [`Self::start`] on.
    pub fn set_tensor_attention(&mut self, on: bool) {
        self.tensor_attention = on;
    }

    /// Whether attention runs on plain host buffers ([`crate::cpu_attention`]).
    fn host_attention(&self) -> bool {
        self.device.is_cpu() && !self.tensor_attention
    }

    fn pass(
        &mut self,
        tokens: &Tensor,
        positions: &Tensor,
        row0: usize,
        slots: Slots,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, t) = tokens.dims2()?;
        let cache = self.cache.as_ref().ok_or_else(|| {
            EngineError::Compute(candle_core::Error::Msg("start() the batch first".into()))
        })?;
        let (first, span) = match slots {
            Slots::Same(s) => (s, s + t),
            Slots::Rows(l) => (
                l.iter().copied().min().unwrap_or(0),
                l.iter().copied().max().unwrap_or(0) + t,
            ),
        };
        if row0 + b > cache.batch || span > cache.capacity {
            return Err(EngineError::Compute(candle_core::Error::Msg(format!(
                "rows {row0}..{} at slots {first}..{span} do not fit the cache ({} rows, {} slots)",
                row0 + b,
                cache.batch,
                cache.capacity
            ))));
        }
        let (slot, row_slots) = match slots {
            Slots::Same(s) => (s, None),
            Slots::Rows(l) => (0, Some(l)),
        };
        let capacity = cache.capacity;
        let c = self.config.clone();
        let half = c.head_dim / 2;
        let cos = self.cos.index_select(positions, 0)?.reshape((b, t, half))?;
        let sin = self.sin.index_select(positions, 0)?.reshape((b, t, half))?;
        // On the CPU, attention reads plain slices: RoPE tables and mask once per step.
        let host = match self.host_attention() {
            true => Some((
                cpu_f32(&cos)?,
                cpu_f32(&sin)?,
                mask.map(cpu_f32).transpose()?,
            )),
            false => None,
        };
        // The tensor path's destinations of a step whose rows are at different slots: for
        // each (row, KV head, token), its vector's index in the flattened cache. Built once a
        // step for every layer, from one index per vector: widened to the head size on the
        // device (what the host sends is head_dim times smaller).
        let scatter =
            match (row_slots, &host) {
                (Some(lens), None) => {
                    let mut index = Vec::with_capacity(b * c.kv_heads * t);
                    for (r, &len) in lens.iter().enumerate() {
                        for h in 0..c.kv_heads {
                            index.extend((0..t).map(|i| {
                                (((row0 + r) * c.kv_heads + h) * capacity + len + i) as u32
                            }));
                        }
                    }
                    let n = index.len();
                    Some(
                        Tensor::from_vec(index, (n, 1), &self.device)?
                            .broadcast_as((n, c.head_dim))?
                            .contiguous()?,
                    )
                }
                _ => None,
            };
        let eps = c.rms_eps as f32;
        // Each residual sum is normed as it is made: by the next norm in line (the layer's
        // MLP norm, the next layer's attention norm, or the final norm).
        let norm_after = |l: usize| self.layers.get(l + 1).map_or(&self.norm, |n| &n.attn_norm);
        let mut x = self.embed.forward(tokens)?;
        let first_norm = self.layers.first().map_or(&self.norm, |n| &n.attn_norm);
        let mut h = crate::kernels::rms_norm(&x, first_norm, eps)?;
        for (l, layer) in self.layers.iter().enumerate() {
            let residual = &x;
            let y = if let Some((cos_v, sin_v, mask_v)) = &host {
                // The projections as plain vectors, straight from the kernels (no tensor
                // and no copy on the way to attention).
                let mut qkv =
                    match QLinear::forward_many_host([&layer.wq, &layer.wk, &layer.wv], &h)? {
                        Some(qkv) => qkv,
                        None => {
                            let [q, k, v] =
                                QLinear::forward_many([&layer.wq, &layer.wk, &layer.wv], &h)?;
                            [cpu_f32(&q)?, cpu_f32(&k)?, cpu_f32(&v)?]
                        }
                    };
                if let Some((bq, bk, bv)) = &layer.bias {
                    for (x, bias) in qkv.iter_mut().zip([bq, bk, bv]) {
                        crate::kernels::host_slice(bias, |bias| {
                            for row in x.chunks_exact_mut(bias.len()) {
                                for (a, b) in row.iter_mut().zip(bias) {
                                    *a += b;
                                }
                            }
                        })?;
                    }
                }
                if let Some((qn, kn)) = &layer.qk_norm {
                    for (x, w) in qkv.iter_mut().zip([qn, kn]) {
                        crate::kernels::host_slice(w, |w| {
                            crate::kernels::rms_norm_rows_in_place(x, w, eps)
                        })?;
                    }
                }
                let [q, k, v] = qkv;
                let step = crate::cpu_attention::Step {
                    batch: b,
                    t,
                    heads: c.heads,
                    kv_heads: c.kv_heads,
                    head_dim: c.head_dim,
                    capacity,
                    slot,
                    family: c.family,
                    slots: row_slots,
                    first_row: row0,
                };
                let cache = self.cache.as_mut().expect("checked above");
                let y = crate::cpu_attention::attend(
                    &step,
                    &mut cache.host[l],
                    &q,
                    &k,
                    &v,
                    cos_v,
                    sin_v,
                    mask_v.as_deref(),
                    None,
                );
                Tensor::from_vec(y, (b, t, c.q_dim), &self.device)?
            } else {
                let [mut q, mut k, mut v] =
                    QLinear::forward_many([&layer.wq, &layer.wk, &layer.wv], &h)?;
                if let Some((bq, bk, bv)) = &layer.bias {
                    q = q.broadcast_add(bq)?;
                    k = k.broadcast_add(bk)?;
                    v = v.broadcast_add(bv)?;
                }
                let split = |x: Tensor, n: usize| -> candle_core::Result<Tensor> {
                    x.reshape((b, t, n, c.head_dim))?
                        .transpose(1, 2)?
                        .contiguous()
                };
                let rope = |x: &Tensor| match c.family.rotate_half() {
                    false => candle_nn::rotary_emb::rope_i(x, &cos, &sin),
                    true => candle_nn::rotary_emb::rope(x, &cos, &sin),
                };
                let (mut q, mut k) = (split(q, c.heads)?, split(k, c.kv_heads)?);
                if let Some((qn, kn)) = &layer.qk_norm {
                    q = candle_nn::ops::rms_norm(&q, qn, eps)?;
                    k = candle_nn::ops::rms_norm(&k, kn, eps)?;
                }
                let q = rope(&q)?;
                let k = rope(&k)?;
                let v = split(v, c.kv_heads)?;
                let cache = self.cache.as_ref().expect("checked above");
                let (ck, cv) = (
                    cache.k[l].narrow(0, row0, b)?,
                    cache.v[l].narrow(0, row0, b)?,
                );
                match &scatter {
                    None => {
                        ck.slice_set(&k, 2, slot)?;
                        cv.slice_set(&v, 2, slot)?;
                    }
                    // Each row at its own slot: one scatter of (row, KV head, token) vectors
                    // into the cache seen as (rows · KV heads · slots, head size).
                    Some(index) => {
                        let flat = (cache.batch * c.kv_heads * capacity, c.head_dim);
                        let n = (b * c.kv_heads * t, c.head_dim);
                        cache.k[l]
                            .reshape(flat)?
                            .scatter_set(index, &k.reshape(n)?, 0)?;
                        cache.v[l]
                            .reshape(flat)?
                            .scatter_set(index, &v.reshape(n)?, 0)?;
                    }
                }
                let keys = ck.narrow(2, 0, span)?;
                let values = cv.narrow(2, 0, span)?;
                // Each KV head with its group of query heads: (B, kv, g·T, D) x (B, kv, D, S).
                let g = c.heads / c.kv_heads;
                let q = q.reshape((b, c.kv_heads, g * t, c.head_dim))?;
                let att = (q.matmul(&keys.t()?)? / (c.head_dim as f64).sqrt())?;
                let att = att.reshape((b, c.heads, t, span))?;
                let att = match mask {
                    Some(m) => att.broadcast_add(m)?,
                    None => att,
                };
                let att = candle_nn::ops::softmax_last_dim(&att)?;
                let att = att.reshape((b, c.kv_heads, g * t, span))?;
                att.matmul(&values)?
                    .reshape((b, c.heads, t, c.head_dim))?
                    .transpose(1, 2)?
                    .reshape((b, t, c.q_dim))?
            };
            let (x1, h1) = crate::kernels::add_rms_norm(
                &layer.wo.forward(&y)?,
                residual,
                &layer.ffn_norm,
                eps,
            )?;
            let mlp = QLinear::forward_swiglu(&layer.gate, &layer.up, &h1)?;
            (x, h) =
                crate::kernels::add_rms_norm(&layer.down.forward(&mlp)?, &x1, norm_after(l), eps)?;
        }
        let x = h.i((.., t - 1, ..))?.contiguous()?;
        Ok(self.output.forward(&x)?)
    }
}

/// A tensor's values in row-major order.
fn cpu_f32(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// cos and sin of position × θ_i, θ_i = base^(−2i/d): candle's llama tables, computed the
/// same way.
fn rope_tables(
    head_dim: usize,
    base: f32,
    positions: usize,
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    // Angles and their sines in f64, rounded once to f32: position × frequency in f32 is off
    // by up to half an ulp of the angle (1e-4 rad at position 4,000), which exact mode
    // (f32 activations against a float64 reference) would see.
    let half = head_dim / 2;
    let (mut cos, mut sin) = (
        Vec::with_capacity(positions * half),
        Vec::with_capacity(positions * half),
    );
    for p in 0..positions {
        for i in 0..half {
            let freq = 1.0 / (base as f64).powf((2 * i) as f64 / head_dim as f64);
            let (s, c) = (p as f64 * freq).sin_cos();
            cos.push(c as f32);
            sin.push(s as f32);
        }
    }
    Ok((
        Tensor::from_vec(cos, (positions, half), device)?,
        Tensor::from_vec(sin, (positions, half), device)?,
    ))
}

/// The additive attention mask of one step: row r is left-padded by `pads[r]` slots; the
/// step's `t` query tokens sit at slots `slot..slot + t`. A real query sees the row's real
/// slots up to itself; a padding query sees only itself (so that its keys and values stay
/// finite, and hidden from every real query). Shape (B, 1, t, slot + t), row-major.
pub fn step_mask(pads: &[usize], slot: usize, t: usize) -> Vec<f32> {
    let s = slot + t;
    let mut m = vec![f32::NEG_INFINITY; pads.len() * t * s];
    for (r, &pad) in pads.iter().enumerate() {
        for i in 0..t {
            let q = slot + i;
            let row = &mut m[(r * t + i) * s..(r * t + i + 1) * s];
            if q < pad {
                row[q] = 0.0;
            } else {
                row[pad..=q].iter_mut().for_each(|x| *x = 0.0);
            }
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_hides_padding_and_the_future() {
        // Row 0 unpadded, row 1 padded by 2; a 3-token prefill.
        let m = step_mask(&[0, 2], 0, 3);
        let ok = |x: f32| x == 0.0;
        let row = |r: usize, i: usize| &m[(r * 3 + i) * 3..(r * 3 + i + 1) * 3];
        assert!(ok(row(0, 0)[0]) && !ok(row(0, 0)[1]));
        assert!(row(0, 2).iter().all(|&x| ok(x)));
        // Padding queries see only themselves; the real query sees only its real slot.
        assert_eq!(row(1, 0).iter().filter(|&&x| ok(x)).count(), 1);
        assert!(ok(row(1, 1)[1]) && !ok(row(1, 1)[0]));
        assert!(!ok(row(1, 2)[0]) && !ok(row(1, 2)[1]) && ok(row(1, 2)[2]));
        // A decode step at slot 3: row 1 sees slots 2 and 3.
        let m = step_mask(&[0, 2], 3, 1);
        assert_eq!(&m[..4], &[0.0; 4]);
        assert_eq!(
            m[4..].iter().map(|&x| ok(x)).collect::<Vec<_>>(),
            [false, false, true, true]
        );
    }
}
