//! The model families landauer runs, each a candle-transformers quantized model.

use crate::gguf::{one_line, GgufFile};
use crate::{EngineError, Result};
use candle_core::{Device, Tensor};
use candle_transformers::models::{quantized_llama, quantized_qwen2, quantized_qwen3};

/// `general.architecture` values landauer can run.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["llama", "mistral", "qwen2", "qwen3"];

/// The file's architecture if landauer can run it, else an error that lists what it can.
pub fn supported_architecture<R>(gguf: &GgufFile<R>) -> Result<String> {
    let arch = gguf.architecture().unwrap_or_default();
    if SUPPORTED_ARCHITECTURES.contains(&arch.as_str()) {
        return Ok(arch);
    }
    Err(EngineError::UnsupportedArchitecture {
        path: gguf.path.clone(),
        arch: if arch.is_empty() {
            "<none: no general.architecture>".into()
        } else {
            arch
        },
    })
}

pub use crate::slow_path::{slow_path_summary, SlowTensor};

/// A loaded model: one variant per family, with a uniform `forward`.
pub enum Model {
    /// Llama, Mistral and the models that share their graph (SmolLM, TinyLlama, ...).
    Llama(quantized_llama::ModelWeights, Vec<SlowTensor>),
    Qwen2(quantized_qwen2::ModelWeights, Vec<SlowTensor>),
    Qwen3(quantized_qwen3::ModelWeights, Vec<SlowTensor>),
    /// landauer's own batched forward pass (llama and qwen2 families), here used one
    /// sequence at a time.
    Batched(crate::batched::BatchedModel),
}

impl Model {
    /// Loads the weights of an opened GGUF file onto `device`.
    pub fn load<R: std::io::Read + std::io::Seek>(
        mut gguf: GgufFile<R>,
        device: &Device,
    ) -> Result<Self> {
        let arch = supported_architecture(&gguf)?;
        let path = gguf.path.clone();
        let load_err = |e: candle_core::Error| EngineError::Load {
            path: path.clone(),
            reason: one_line(&e.to_string()),
        };
        let mut content = gguf.content;
        let file = &mut gguf.file;
        // candle-transformers' models multiply every weight matrix with candle's kernels: on
        // the CPU all of them take the slow path.
        let mut slow: Vec<SlowTensor> = match device.is_cpu() {
            true => content
                .tensor_infos
                .iter()
                .filter(|(name, t)| t.shape.rank() == 2 && *name != "token_embd.weight")
                .map(|(name, t)| SlowTensor {
                    name: name.clone(),
                    dtype: crate::gguf::dtype_name(t.ggml_dtype).into(),
                })
                .collect(),
            false => Vec::new(),
        };
        slow.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(match arch.as_str() {
            "llama" | "mistral" => {
                // candle's llama reads `llama.*` keys; Mistral files use `mistral.*` for the
                // same hyper-parameters, so alias them.
                if arch != "llama" {
                    let prefix = format!("{arch}.");
                    let aliased: Vec<_> = content
                        .metadata
                        .iter()
                        .filter_map(|(k, v)| {
                            k.strip_prefix(&prefix)
                                .map(|rest| (format!("llama.{rest}"), v.clone()))
                        })
                        .collect();
                    content.metadata.extend(aliased);
                }
                Model::Llama(
                    quantized_llama::ModelWeights::from_gguf(content, file, device)
                        .map_err(load_err)?,
                    slow,
                )
            }
            "qwen2" => Model::Qwen2(
                quantized_qwen2::ModelWeights::from_gguf(content, file, device)
                    .map_err(load_err)?,
                slow,
            ),
            "qwen3" => Model::Qwen3(
                quantized_qwen3::ModelWeights::from_gguf(content, file, device)
                    .map_err(load_err)?,
                slow,
            ),
            _ => unreachable!("checked against SUPPORTED_ARCHITECTURES above"),
        })
    }

    /// Loads the weights into landauer's own batched forward pass (llama, mistral, qwen2, qwen3),
    /// which [`crate::Engine::generate_batch`] needs.
    pub fn load_batched<R: std::io::Read + std::io::Seek>(
        mut gguf: GgufFile<R>,
        device: &Device,
    ) -> Result<Self> {
        supported_architecture(&gguf)?;
        Ok(Model::Batched(crate::batched::BatchedModel::load(
            &mut gguf, device,
        )?))
    }

    /// Runs `tokens` (shape `(batch, seq)`) starting at position `pos`; returns the logits of
    /// the last position, shape `(batch, vocab)`.
    pub fn forward(&mut self, tokens: &Tensor, pos: usize) -> Result<Tensor> {
        Ok(match self {
            Model::Llama(m, _) => m.forward(tokens, pos)?,
            Model::Qwen2(m, _) => m.forward(tokens, pos)?,
            Model::Qwen3(m, _) => m.forward(tokens, pos)?,
            Model::Batched(m) => {
                let (b, t) = tokens.dims2()?;
                if pos == 0 {
                    m.start(b, m.max_positions())?;
                }
                let dev = tokens.device();
                let positions: Vec<u32> = (0..b)
                    .flat_map(|_| (pos..pos + t).map(|p| p as u32))
                    .collect();
                let positions = Tensor::new(positions, dev)?;
                let mask = if t > 1 {
                    let m = crate::batched::step_mask(&vec![0; b], pos, t);
                    Some(Tensor::from_vec(m, (b, 1, t, pos + t), dev)?)
                } else {
                    None
                };
                m.forward(tokens, &positions, pos, mask.as_ref())?
            }
        })
    }

    /// The weight matrices that run on candle's CPU kernels (the slow path): every matrix
    /// of candle-transformers' models on the CPU; those of a type with no landauer kernel in
    /// landauer's forward pass; none on a GPU.
    pub fn slow_tensors(&self) -> Vec<SlowTensor> {
        match self {
            Model::Llama(_, s) | Model::Qwen2(_, s) | Model::Qwen3(_, s) => s.clone(),
            Model::Batched(m) => m.slow_tensors(),
        }
    }

    /// Forgets the KV cache so that a new sequence can start at position 0.
    pub fn clear_kv_cache(&mut self) {
        match self {
            Model::Llama(m, _) => m.clear_kv_cache(),
            Model::Qwen2(m, _) => m.clear_kv_cache(),
            Model::Qwen3(m, _) => m.clear_kv_cache(),
            Model::Batched(_) => {}
        }
    }

    /// How the KV cache stores keys and values (candle-transformers' models: f32 tensors).
    pub fn kv_dtype(&self) -> crate::cpu_attention::KvDtype {
        match self {
            Model::Batched(m) => m.kv_dtype(),
            _ => crate::cpu_attention::KvDtype::F32,
        }
    }

    /// Sets how landauer's forward pass stores its CPU KV cache (from the next sequence or
    /// batch on); other models and GPUs keep f32.
    pub fn set_kv_dtype(&mut self, dtype: crate::cpu_attention::KvDtype) {
        if let Model::Batched(m) = self {
            m.set_kv_dtype(dtype);
        }
    }

    /// Positions the implementation can address, whatever the file claims (candle's llama
    /// precomputes RoPE tables for 4096 positions).
    pub fn max_positions(&self) -> Option<usize> {
        match self {
            Model::Llama(..) => Some(quantized_llama::MAX_SEQ_LEN),
            Model::Batched(m) => Some(m.max_positions()),
            _ => None,
        }
    }
}
