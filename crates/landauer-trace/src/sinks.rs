//! Record sinks: JSONL and CSV trace files, and the terminal printer.

use crate::records::{Record, RunRecord, SummaryRecord, TokenRecord};
use crate::RecordSink;
use serde::Serialize;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

fn create(path: &Path) -> io::Result<File> {
    File::create(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot write {}: {e}; choose a writable path",
                path.display()
            ),
        )
    })
}

/// A JSONL trace: a `run` record, one `token` record per token, a `summary` record.
/// Every record is flushed as it is written, so an interrupted run leaves a valid file.
pub struct JsonlTrace {
    out: BufWriter<File>,
}

impl JsonlTrace {
    pub fn create(path: &Path) -> io::Result<Self> {
        Ok(Self {
            out: BufWriter::new(create(path)?),
        })
    }

    fn write(&mut self, rec: &Record) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, rec)?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }
}

impl RecordSink for JsonlTrace {
    fn run(&mut self, run: &RunRecord) -> io::Result<()> {
        self.write(&Record::Run(Box::new(run.clone())))
    }
    fn token(&mut self, token: &TokenRecord) -> io::Result<()> {
        self.write(&Record::Token(Box::new(token.clone())))
    }
    fn summary(&mut self, summary: &SummaryRecord) -> io::Result<()> {
        self.write(&Record::Summary(Box::new(summary.clone())))
    }
}

/// One CSV row per token (the `top` alternatives as a JSON array in one column).
pub struct CsvTrace {
    out: csv::Writer<File>,
    /// From the run record: every row of a synthetic model's trace says so.
    synthetic: bool,
}

#[derive(Serialize)]
struct CsvRow<'a> {
    seq: usize,
    index: usize,
    position: usize,
    token_id: u32,
    text: &'a str,
    eos: bool,
    phase: &'a str,
    entropy_bits: f64,
    sampling_entropy_bits: f64,
    surprisal_bits: f64,
    prob: f64,
    t_start_s: f64,
    t_end_s: f64,
    step_tokens: usize,
    energy_j: Option<f64>,
    energy_estimated: bool,
    energy_resolved: bool,
    meter_gap: bool,
    landauer_j: f64,
    landauer_gap: Option<f64>,
    temperature_c: Option<f64>,
    sm_clock_mhz: Option<f64>,
    mem_clock_mhz: Option<f64>,
    power_instant_w: Option<f64>,
    /// Random weights: the entropy columns are meaningless.
    synthetic: bool,
    top: String,
}

impl CsvTrace {
    pub fn create(path: &Path) -> io::Result<Self> {
        Ok(Self {
            out: csv::Writer::from_writer(create(path)?),
            synthetic: false,
        })
    }
}

impl RecordSink for CsvTrace {
    fn run(&mut self, r: &RunRecord) -> io::Result<()> {
        self.synthetic = r.synthetic;
        Ok(())
    }

    fn token(&mut self, t: &TokenRecord) -> io::Result<()> {
        self.out.serialize(CsvRow {
            seq: t.seq,
            index: t.index,
            position: t.position,
            token_id: t.token_id,
            text: &t.text,
            eos: t.eos,
            phase: &t.phase,
            entropy_bits: t.entropy_bits,
            sampling_entropy_bits: t.sampling_entropy_bits,
            surprisal_bits: t.surprisal_bits,
            prob: t.prob,
            t_start_s: t.t_start_s,
            t_end_s: t.t_end_s,
            step_tokens: t.step_tokens,
            energy_j: t.energy_j,
            energy_estimated: t.energy_estimated,
            energy_resolved: t.energy_resolved,
            meter_gap: t.meter_gap,
            landauer_j: t.landauer_j,
            landauer_gap: t.landauer_gap,
            temperature_c: t.temperature_c,
            sm_clock_mhz: t.sm_clock_mhz,
            mem_clock_mhz: t.mem_clock_mhz,
            power_instant_w: t.power_instant_w,
            synthetic: self.synthetic,
            top: serde_json::to_string(&t.top)?,
        })?;
        self.out.flush()
    }
}

/// Streams generated text to one writer and the summary to another (normally stdout and
/// stderr; with `--json` the text goes to stderr too, leaving stdout to the JSON).
pub struct TerminalPrinter {
    text: Box<dyn Write + Send>,
    report: Box<dyn Write + Send>,
    run: Option<RunRecord>,
    show_summary: bool,
}

impl TerminalPrinter {
    pub fn new(
        text: Box<dyn Write + Send>,
        report: Box<dyn Write + Send>,
        show_summary: bool,
    ) -> Self {
        Self {
            text,
            report,
            run: None,
            show_summary,
        }
    }
}

impl RecordSink for TerminalPrinter {
    fn run(&mut self, run: &RunRecord) -> io::Result<()> {
        self.run = Some(run.clone());
        Ok(())
    }
    fn text(&mut self, text: &str) -> io::Result<()> {
        self.text.write_all(text.as_bytes())?;
        self.text.flush()
    }
    fn summary(&mut self, s: &SummaryRecord) -> io::Result<()> {
        self.text.write_all(b"\n")?;
        self.text.flush()?;
        if self.show_summary {
            if let Some(run) = &self.run {
                self.report.write_all(format_summary(run, s).as_bytes())?;
                self.report.flush()?;
            }
        }
        Ok(())
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "n/a".into())
}

/// The human-readable summary printed after a run.
pub fn format_summary(run: &RunRecord, s: &SummaryRecord) -> String {
    let est = if s.estimated { " ESTIMATED" } else { "" };
    let meaningless = if run.synthetic {
        " (MEANINGLESS: random weights)"
    } else {
        ""
    };
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:>12}  {v}\n"));
    line(
        "model",
        format!(
            "{} {} ({:.1}M params, {}) on {}, {} thread(s)",
            run.model,
            run.quantization,
            run.parameters as f64 / 1e6,
            run.architecture,
            match &run.device_name {
                Some(n) => format!("{} ({n})", run.device),
                None => run.device.clone(),
            },
            run.threads
        ),
    );
    if run.synthetic {
        line(
            "SYNTHETIC",
            "random weights at the real model's shapes: energy and speed are real, entropy is meaningless".into(),
        );
    }
    line(
        "prompt",
        format!(
            "{} tokens, prefill {} tokens/s ({:.3} s)",
            s.prompt_tokens,
            opt(s.prefill_tokens_per_s, |v| format!("{v:.1}")),
            s.prefill_s
        ),
    );
    line(
        "generated",
        format!(
            "{} tokens (stop: {}), decode {} tokens/s",
            s.tokens,
            s.stop_reason,
            opt(s.decode_tokens_per_s, |v| format!("{v:.1}"))
        ),
    );
    match s.energy_j {
        Some(e) => {
            line(
                "energy",
                format!(
                    "{e:.3} J{est}, {} J/token, {} tokens/Wh, mean {} W",
                    opt(s.joules_per_token, |v| format!("{v:.4}")),
                    opt(s.tokens_per_wh, |v| format!("{v:.0}")),
                    opt(s.mean_power_w, |v| format!("{v:.1}")),
                ),
            );
            let active = match (s.idle_power_w, s.active_energy_j) {
                (Some(p), Some(a)) => format!("; active {a:.3} J (idle {p:.2} W subtracted)"),
                _ => String::new(),
            };
            line(
                "",
                format!(
                    "prefill {} J, decode {} J/token{active}",
                    opt(s.prefill_energy_j, |v| format!("{v:.3}")),
                    opt(s.decode_joules_per_token, |v| format!("{v:.4}")),
                ),
            );
            let steady_active = s
                .steady_active_joules_per_token
                .map(|v| format!(", active {v:.4} J/token"))
                .unwrap_or_default();
            line(
                "steady",
                match s.steady_joules_per_token {
                    Some(j) => format!(
                        "{j:.4} J/token{est} decode{steady_active} ({})",
                        s.steady_note
                    ),
                    None => s.steady_note.clone(),
                },
            );
        }
        None => line("energy", "not measured (--meter none)".into()),
    }
    if let Some(j) = s.joules_per_token {
        line("footprint", format!("{}{est}", run.footprint.line(j)));
        line("", format!("at {}", run.footprint.describe()));
    }
    for p in &s.energy_by_part {
        line(
            "",
            format!("{}: {:.3} J ({:.1}%)", p.name, p.joules, p.share * 100.0),
        );
    }
    if s.temperature_c_mean.is_some() || s.sm_clock_mhz_mean.is_some() {
        line(
            "gpu",
            format!(
                "die {} °C mean ({} max), SM clock {} MHz mean, instantaneous power {} W mean",
                opt(s.temperature_c_mean, |v| format!("{v:.1}")),
                opt(s.temperature_c_max, |v| format!("{v:.0}")),
                opt(s.sm_clock_mhz_mean, |v| format!("{v:.0}")),
                opt(s.power_instant_w_mean, |v| format!("{v:.1}")),
            ),
        );
    }
    line("meter", format!("{}: {}", run.meter, run.meter_description));
    if run.meter != "none" {
        line(
            "",
            format!(
                "counter updates every {} ms, polled every {} ms; {} of {} tokens shorter than an update (energy apportioned by time); sampler CPU {}",
                opt(s.meter_resolution_s, |v| format!("{:.1}", v * 1e3)),
                opt(run.meter_interval_s, |v| format!("{:.1}", v * 1e3)),
                s.unresolved_tokens,
                s.tokens,
                opt(s.sampler_cpu_fraction, |v| format!("{:.2}%", v * 100.0)),
            ),
        );
    }
    line(
        "information",
        format!(
            "{:.3} bits/token mean entropy (surprisal {:.3}), {} bits/J{meaningless}",
            s.mean_entropy_bits,
            s.mean_surprisal_bits,
            opt(s.bits_per_joule, |v| format!("{v:.2}"))
        ),
    );
    line(
        "landauer",
        format!(
            "k_B T ln2 = {:.4e} J/bit at {} K; the run is {} x above it{est}{meaningless}",
            run.landauer_j_per_bit,
            run.kelvin,
            opt(s.landauer_gap, |v| format!("{v:.3e}"))
        ),
    );
    if s.meter_faults > 0 {
        line(
            "warning",
            format!(
                "{} meter read(s) failed; the tokens around them are marked meter_gap and their energy interpolated",
                s.meter_faults
            ),
        );
    }
    out
}
