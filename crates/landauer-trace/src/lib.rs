//! landauer's one schema: per-token trace records, sweep files, the sinks that write them
//! and the readers that read them back.
//!
//! The engine emits [`landauer_engine::TokenEvent`]s; a [`Recorder`] turns each into a
//! [`TokenRecord`] (entropy, surprisal, top alternatives, energy, Landauer yardstick) and
//! pushes it to any number of [`RecordSink`]s: [`JsonlTrace`], [`CsvTrace`],
//! [`TerminalPrinter`]. A sweep's `sweep.json` is a [`SweepFile`]; [`read_input`] reads
//! either back for the ladder and the reports.
//!
//! ```
//! use landauer_trace::{JsonlTrace, Record, RecordSink};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("t.jsonl");
//! let mut trace = JsonlTrace::create(&path).unwrap();
//! # let run: landauer_trace::RunRecord = serde_json::from_value(serde_json::json!({
//! #   "landauer_version": "0", "model": "m", "model_path": "p", "model_sha256": "", "architecture": "llama",
//! #   "quantization": "Q4_1", "parameters": 1, "context_length": 8, "device": "cpu", "threads": 1, "meter": "none",
//! #   "meter_description": "", "meter_reason": "", "estimated": false, "kelvin": 300.0,
//! #   "landauer_j_per_bit": 2.87e-21, "sampling": {"temperature": 0.0, "top_k": null, "top_p": null,
//! #   "seed": 0, "greedy": true}, "max_tokens": 1, "chat": false, "prompt": "", "prompt_text": "",
//! #   "prompt_tokens": 0, "top_n": 5, "started_unix_s": 0.0, "idle_seconds": 0.0})).unwrap();
//! trace.run(&run).unwrap();
//! let line = std::fs::read_to_string(&path).unwrap();
//! // Written and flushed at once: a reader (or a Ctrl-C) sees whole records.
//! assert!(matches!(serde_json::from_str::<Record>(line.trim()).unwrap(), Record::Run(_)));
//! ```

mod read;
mod recorder;
mod records;
mod sinks;
mod study;
mod sweep;

pub use read::{read_input, Input, ReadError, Study, Sweep, Trace};
pub use recorder::{Recorder, MIN_STEADY_WINDOW_S};
pub use records::{
    Alternative, Record, RunRecord, SamplingRecord, SlowTensorRecord, SummaryRecord, TokenRecord,
};
pub use sinks::{format_summary, CsvTrace, JsonlTrace, TerminalPrinter};
pub use study::{EntropyError, StudyCell, StudyFile};
pub use sweep::{sweep_title, SweepFile, SweepHeader, SweepRow, SweepRuns};

/// Receives records. Every method has a default; a sink implements what it needs.
pub trait RecordSink {
    fn run(&mut self, _run: &RunRecord) -> std::io::Result<()> {
        Ok(())
    }
    /// Generated text, sent at once (a token's record follows once its energy is known).
    fn text(&mut self, _text: &str) -> std::io::Result<()> {
        Ok(())
    }
    fn token(&mut self, _token: &TokenRecord) -> std::io::Result<()> {
        Ok(())
    }
    fn summary(&mut self, _summary: &SummaryRecord) -> std::io::Result<()> {
        Ok(())
    }
}
