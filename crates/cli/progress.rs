//! The command line's observer of studies: notes on stderr, a progress bar, each bench run's
//! line, and a sweep's files rewritten as its results come.

use landauer_studies::{BenchRun, Observer};
use landauer_trace::{StudyFile, SweepFile};
use std::path::PathBuf;

#[derive(Default)]
pub struct Terminal {
    bar: Option<indicatif::ProgressBar>,
    /// Where a sweep's files go (sweep.json, sweep.csv, sweep.svg).
    pub sweep_dir: Option<PathBuf>,
    /// Where a study's files go (study.json, study.csv, study.svg).
    pub study_dir: Option<PathBuf>,
}

impl Observer for Terminal {
    fn note(&mut self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("landauer: {line}")),
            None => eprintln!("landauer: {line}"),
        }
    }
    fn start(&mut self, total: u64) {
        self.bar = Some(
            indicatif::ProgressBar::new(total).with_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} batches  {msg}")
                    .expect("valid template"),
            ),
        );
    }
    fn status(&mut self, what: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(what.to_string());
        }
    }
    fn advance(&mut self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }
    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
    fn bench_run(&mut self, r: &BenchRun) {
        eprintln!(
            "run {}/{} tracing {:>3}: decode {:7.2} tokens/s, prefill {:7.2} tokens/s",
            r.round + 1,
            r.rounds,
            if r.traced { "on" } else { "off" },
            r.decode_tokens_per_s,
            r.prefill_tokens_per_s
        );
    }
    fn study_progress(&mut self, so_far: &StudyFile) -> anyhow::Result<()> {
        match &self.study_dir {
            Some(dir) => landauer_reports::study_files::write(dir, so_far),
            None => Ok(()),
        }
    }
    fn sweep_progress(&mut self, so_far: &SweepFile) -> anyhow::Result<()> {
        match &self.sweep_dir {
            Some(dir) => landauer_reports::sweep_files::write(dir, so_far),
            None => Ok(()),
        }
    }
}
