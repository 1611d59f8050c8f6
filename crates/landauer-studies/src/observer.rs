//! How a study tells its caller what it is doing, without printing anything itself.

use landauer_trace::{StudyFile, SweepFile};

/// One measured bench run, as it finishes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchRun {
    /// 0-based round; every round runs once traced and once untraced.
    pub round: usize,
    pub rounds: usize,
    pub traced: bool,
    pub decode_tokens_per_s: f64,
    pub prefill_tokens_per_s: f64,
}

/// Receives a study's progress, as a [`landauer_engine::TokenSink`] receives tokens. Every
/// method has a default that does nothing; `()` observes nothing.
pub trait Observer {
    /// A line for the user: what is being built, a note on the slow path, an idle measurement.
    fn note(&mut self, _line: &str) {}
    /// `total` units of work (measured or warm-up batches) are about to run.
    fn start(&mut self, _total: u64) {}
    /// What runs now ("batch 4: run 2/3").
    fn status(&mut self, _what: &str) {}
    /// One unit of work is done.
    fn advance(&mut self) {}
    /// The work is over.
    fn finish(&mut self) {}
    /// A bench run's figures, as each run ends.
    fn bench_run(&mut self, _run: &BenchRun) {}
    /// A sweep's results so far, after every batch size (or, interleaved, every round): a
    /// caller writes them here, so that an interrupted sweep keeps what it measured. An
    /// error stops the sweep.
    fn sweep_progress(&mut self, _so_far: &SweepFile) -> anyhow::Result<()> {
        Ok(())
    }
    /// A study's cells so far, after every model × quantization: a caller writes them here.
    fn study_progress(&mut self, _so_far: &StudyFile) -> anyhow::Result<()> {
        Ok(())
    }
}

impl Observer for () {}

/// Collects notes and the last sweep state; for tests and notebooks.
#[derive(Debug, Default)]
pub struct Collect {
    pub notes: Vec<String>,
    pub bench_runs: Vec<BenchRun>,
    /// How many times `sweep_progress` was called.
    pub sweep_updates: usize,
    /// How many times `study_progress` was called.
    pub study_updates: usize,
    pub units_done: u64,
}

impl Observer for Collect {
    fn note(&mut self, line: &str) {
        self.notes.push(line.to_string());
    }
    fn advance(&mut self) {
        self.units_done += 1;
    }
    fn bench_run(&mut self, run: &BenchRun) {
        self.bench_runs.push(*run);
    }
    fn sweep_progress(&mut self, _so_far: &SweepFile) -> anyhow::Result<()> {
        self.sweep_updates += 1;
        Ok(())
    }
    fn study_progress(&mut self, _so_far: &StudyFile) -> anyhow::Result<()> {
        self.study_updates += 1;
        Ok(())
    }
}
