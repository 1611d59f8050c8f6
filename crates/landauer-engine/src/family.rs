//! The model families landauer's own forward pass runs, and their hyper-parameters: shared
//! by the forward pass ([`crate::batched`]) and attention ([`crate::cpu_attention`]), so that
//! neither has to import the other's types.

/// How a family names and wires its tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Llama, Mistral, SmolLM: interleaved RoPE, no biases.
    Llama,
    /// Qwen2: rotate-half ("neox") RoPE, biases on q, k, v.
    Qwen2,
    /// Qwen3: rotate-half RoPE, no biases, an RMS norm over each query and key head before
    /// RoPE, and a head size of its own (`attention.key_length`, not hidden / heads).
    Qwen3,
}

impl Family {
    /// The family of a `general.architecture`, if this pass supports it.
    pub fn of(arch: &str) -> Option<Self> {
        match arch {
            "llama" | "mistral" => Some(Family::Llama),
            "qwen2" => Some(Family::Qwen2),
            "qwen3" => Some(Family::Qwen3),
            _ => None,
        }
    }

    /// RoPE on the two halves of a head (candle's `rope`) rather than on interleaved pairs
    /// (`rope_i`).
    pub fn rotate_half(self) -> bool {
        matches!(self, Family::Qwen2 | Family::Qwen3)
    }
}

/// Hyper-parameters read from the GGUF header.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub family: Family,
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Query width, heads × head_dim (the hidden size except in Qwen3).
    pub q_dim: usize,
    pub rope_theta: f32,
    pub rms_eps: f64,
    pub vocab: usize,
}
