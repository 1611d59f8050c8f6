//! landauer's engine: loads llama-family GGUF models with candle, tokenizes, samples, and
//! emits one [`TokenEvent`] per generated token to a [`TokenSink`].
//!
//! ```
//! use landauer_engine::{Engine, GenerateOptions, Needs, SamplingParams, TokenEvent, TokenSink, SinkError};
//!
//! // A tiny random-weight model, written on the spot (real models load the same way).
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("tiny.gguf");
//! landauer_engine::tiny::write_tiny_llama(&path, &Default::default()).unwrap();
//! let mut engine = Engine::load(&path, None, &candle_core::Device::Cpu).unwrap();
//!
//! // A sink sees every token with what it asks for: here the statistics of its distribution
//! // (computed where the logits are, on a GPU), not the logits themselves.
//! struct Entropies(Vec<f64>);
//! impl TokenSink for Entropies {
//!     fn needs(&self) -> Needs {
//!         Needs { logits: false, stats: true, top_n: 0 }
//!     }
//!     fn token(&mut self, ev: &TokenEvent<'_>) -> Result<(), SinkError> {
//!         self.0.push(ev.softmax_stats().unwrap().entropy_bits);
//!         Ok(())
//!     }
//! }
//! let prompt = engine.encode("The cat sat").unwrap();
//! let opts = GenerateOptions {
//!     max_tokens: 5,
//!     sampling: SamplingParams::greedy(),
//!     ignore_eos: true,
//!     stop: None,
//!     stats_rows: usize::MAX,
//! };
//! let mut sink = Entropies(Vec::new());
//! let end = engine.generate(&prompt, &opts, &mut sink).unwrap();
//! assert_eq!(end.generated_tokens, 5);
//! assert_eq!(sink.0.len(), 5);
//! ```

pub mod batched;
pub mod checkpoint;
pub mod continuous;
pub mod cpu_attention;
pub mod device;
pub mod device_sampling;
mod error;
pub mod family;
pub mod fetch;
mod generate;
pub mod gguf;
pub mod kernels;
mod model;
pub mod quantize;
pub mod quantize_k;
pub mod sampler;
mod slow_path;
pub mod synthetic;
pub mod tiny;
pub mod tokenizer;

/// The candle device type, re-exported so that users need not depend on candle directly.
pub use candle_core::Device;
pub use cpu_attention::KvDtype;
pub use device_sampling::SamplingPlace;
pub use error::{EngineError, Result};
pub use generate::{
    Engine, Forward, GenerateOptions, Needs, Phase, RunEnd, RunStart, SinkError, StopReason,
    TokenEvent, TokenSink,
};
pub use gguf::ModelInfo;
pub use model::{slow_path_summary, Model, SlowTensor, SUPPORTED_ARCHITECTURES};
pub use sampler::{SampledDist, Sampler, SamplingParams};
