//! landauer's studies: the measurements behind `landauer bench` and `landauer sweep`, as
//! library runners with typed configs and results, for Rust programs and notebooks.
//!
//! A sweep of batch sizes on a tiny random-weight model, written on the spot:
//!
//! ```
//! use landauer_studies::{sweep, Loaded, ModelOptions, SweepConfig};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("tiny.gguf");
//! landauer_engine::tiny::write_tiny_llama(&path, &Default::default()).unwrap();
//! let opts = ModelOptions {
//!     model: Some(path.display().to_string()),
//!     batched: true, // landauer's batched forward pass
//!     ..Default::default()
//! };
//! let mut model = Loaded::load(&opts, &mut ()).unwrap();
//! let cfg = SweepConfig {
//!     batch: vec![1, 3],
//!     max_tokens: 4,
//!     meter: landauer_studies::MeterOptions {
//!         // The CPU-time estimate works everywhere; real meters are NVML and RAPL.
//!         choice: landauer_meter::MeterChoice::Estimate,
//!         ..Default::default()
//!     },
//!     ..Default::default()
//! };
//! // Progress, notes and the results so far go to an observer; `()` ignores them.
//! let result = sweep::run(&mut model, 1, &cfg, &mut ()).unwrap();
//! assert_eq!(result.rows.len(), 2);
//! assert_eq!(result.rows[1].batch, 3);
//! assert!(result.header.estimated);
//! assert!(result.rows.iter().all(|r| r.decode_tokens_per_s > 0.0));
//! // The same schema `landauer sweep` writes as sweep.json:
//! let json = serde_json::to_string_pretty(&result).unwrap();
//! assert!(json.contains("\"joules_per_token\""));
//! ```
//!
//! [`bench::run`] measures decode and prefill speed with tracing on and off in the same
//! process; [`sweep::run`] measures speed and energy per token against batch size. Both take
//! a [`Loaded`] model (see [`session`]) and an [`Observer`] that receives their progress, and
//! return serde types that the files are written from.

pub mod bandwidth;
pub mod bench;
mod observer;
pub mod prompts;
pub mod session;
pub mod stats;
pub mod study;
pub mod sweep;

pub use bench::{BenchConfig, BenchReport};
pub use observer::{BenchRun, Collect, Observer};
pub use session::{Loaded, MeterOptions, MeterSession, ModelOptions, RunSettings};
pub use study::StudyConfig;
pub use sweep::SweepConfig;
