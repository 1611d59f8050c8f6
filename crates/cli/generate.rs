//! `landauer generate`: text with a per-token entropy and energy trace.

use crate::{FootprintArgs, GpuArgs, MeterArg, ModelArgs, SamplingArgs};
use anyhow::Context;
use clap::Args;
use landauer_engine::{
    GenerateOptions, RunEnd, RunStart, SamplingParams, SinkError, TokenEvent, TokenSink,
};
use landauer_studies::session::{run_record, unix_now};
use landauer_studies::{Loaded, MeterSession, RunSettings};
use landauer_trace::{CsvTrace, JsonlTrace, Recorder, SamplingRecord, TerminalPrinter};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Args)]
pub struct GenerateArgs {
    /// The prompt.
    #[arg(value_name = "PROMPT")]
    pub prompt_arg: Option<String>,
    /// The prompt (alternative to the positional argument).
    #[arg(long, short = 'p', conflicts_with = "prompt_arg")]
    pub prompt: Option<String>,
    /// Decode several prompts together as one batch, one prompt per line of FILE: row r
    /// samples with seed + r, the trace's token records carry their row in `seq`, and each
    /// row's text is printed when the batch ends.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["prompt_arg", "prompt"])]
    pub prompts: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Wrap the prompt in the model's chat template (ChatML for SmolLM2).
    #[arg(long)]
    pub chat: bool,
    /// System message for --chat.
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
    /// With --chat, render the model's own Jinja chat template with its defaults (as
    /// transformers does; SmolLM2's adds a default system message) instead of plain ChatML.
    #[arg(long, requires = "chat")]
    pub jinja: bool,
    /// Stop after this many generated tokens.
    #[arg(long, short = 'n', default_value_t = 256)]
    pub max_tokens: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Alternatives recorded per token.
    #[arg(long, default_value_t = 5)]
    pub top_n: usize,
    /// Temperature for the Landauer yardstick k_B T ln 2, in kelvin.
    #[arg(long, default_value_t = landauer_physics::DEFAULT_KELVIN)]
    pub kelvin: f64,
    /// Energy meter.
    #[arg(long, value_enum, default_value_t = MeterArg::Auto)]
    pub meter: MeterArg,
    #[command(flatten)]
    pub gpu: GpuArgs,
    /// Assumed watts per busy core for the CPU-time estimate (labeled ESTIMATED wherever shown).
    #[arg(long, default_value_t = landauer_meter::DEFAULT_CPU_WATTS_PER_CORE)]
    pub cpu_watts: f64,
    /// Seconds of idle power measured before the run, so that summaries can show active
    /// energy (total minus idle power x time). Default: 2 on a GPU, 0 on the CPU.
    #[arg(long)]
    pub idle_seconds: Option<f64>,
    #[command(flatten)]
    pub footprint: FootprintArgs,
    /// Write a JSONL trace (run record, one record per token, summary), flushed as it goes.
    #[arg(long, value_name = "FILE.jsonl")]
    pub trace: Option<PathBuf>,
    /// Write one CSV row per token.
    #[arg(long, value_name = "FILE.csv")]
    pub csv: Option<PathBuf>,
    /// Print the summary as JSON on stdout (the text then goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Do not print the summary (text only).
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Keep generating after the end-of-sequence token.
    #[arg(long)]
    pub ignore_eos: bool,
}

/// Passes a batch's events on and keeps each row's text.
struct RowTexts<'a, S> {
    inner: &'a mut S,
    texts: Vec<String>,
}

impl<S: TokenSink> TokenSink for RowTexts<'_, S> {
    fn needs(&self) -> landauer_engine::Needs {
        self.inner.needs()
    }
    fn begin(&mut self, s: &RunStart) -> Result<(), SinkError> {
        self.inner.begin(s)
    }
    fn token(&mut self, e: &TokenEvent<'_>) -> Result<(), SinkError> {
        if !e.is_eos {
            if let Some(t) = self.texts.get_mut(e.seq) {
                t.push_str(e.text);
            }
        }
        self.inner.token(e)
    }
    fn end(&mut self, e: &RunEnd) -> Result<(), SinkError> {
        self.inner.end(e)
    }
}

pub fn sampling_params(s: &SamplingArgs) -> SamplingParams {
    SamplingParams {
        temperature: if s.greedy { 0.0 } else { s.temperature },
        top_k: s.top_k,
        top_p: s.top_p,
        seed: s.seed.unwrap_or_else(rand_seed),
    }
}

/// A seed from the clock and the process id, recorded so that the run can be repeated.
fn rand_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ ((std::process::id() as u64) << 32)
}

/// The prompts of a run: one, or every line of --prompts (a batch).
struct Prompts {
    /// As given (the lines joined for a batch).
    prompt: String,
    /// One per row.
    rows: Vec<String>,
    batch: bool,
}

impl GenerateArgs {
    /// Checks the settings before anything is loaded.
    fn check(&self) -> anyhow::Result<Prompts> {
        // A batch: every line of --prompts, decoded together.
        let batch = match &self.prompts {
            Some(p) => Some(landauer_studies::prompts::read_prompts(Some(p))?),
            None => None,
        };
        let prompt =
            match &batch {
                Some(rows) => rows.join("\n"),
                None => self.prompt_arg.clone().or(self.prompt.clone()).context(
                    "no prompt given; run e.g. `landauer generate \"Once upon a time\"`",
                )?,
            };
        if self.max_tokens == 0 {
            anyhow::bail!("--max-tokens must be at least 1");
        }
        if !(self.kelvin.is_finite() && self.kelvin > 0.0) {
            anyhow::bail!(
                "--kelvin must be a positive temperature, got {}",
                self.kelvin
            );
        }
        self.footprint.over(Default::default())?;
        if let Some(idle) = self.idle_seconds.filter(|s| !(s.is_finite() && *s >= 0.0)) {
            anyhow::bail!("--idle-seconds must be 0 or more, got {idle}");
        }
        if !(self.cpu_watts.is_finite() && self.cpu_watts > 0.0) {
            anyhow::bail!("--cpu-watts must be positive, got {}", self.cpu_watts);
        }
        Ok(Prompts {
            rows: batch.clone().unwrap_or_else(|| vec![prompt.clone()]),
            prompt,
            batch: batch.is_some(),
        })
    }
}

pub fn run(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let threads = crate::set_threads(args.model.threads)?;
    let prompts = args.check()?;
    let sampling = sampling_params(&args.sampling);
    sampling.validate()?;
    // Open the output files first: an unwritable path fails before any work is done.
    let jsonl = args.trace.as_deref().map(JsonlTrace::create).transpose()?;
    let csv = args.csv.as_deref().map(CsvTrace::create).transpose()?;
    let mut loaded = Loaded::load(
        &args.model.options(prompts.batch)?,
        &mut crate::progress::Terminal::default(),
    )?;
    let meter_opts = args.gpu.meter(args.meter, args.cpu_watts)?;
    let mut opened = landauer_meter::open_meter(&meter_opts.request(&loaded.device))?;
    let row_texts: Vec<String> = prompts
        .rows
        .iter()
        .map(|p| match args.chat {
            true => loaded
                .engine
                .chat_prompt(args.system.as_deref(), p, args.jinja),
            false => Ok(p.clone()),
        })
        .collect::<Result<_, _>>()?;
    let rows: Vec<Vec<u32>> = row_texts
        .iter()
        .map(|t| loaded.engine.encode(t))
        .collect::<Result<_, _>>()?;
    let meter = MeterSession::started(&mut opened, meter_opts.interval);
    let mut recorder = recorder(
        &args, &loaded, meter, threads, &prompts, &row_texts, &rows, &sampling,
    )?;
    if let Some(j) = jsonl {
        recorder = recorder.with_sink(j);
    }
    if let Some(c) = csv {
        recorder = recorder.with_sink(c);
    }
    let opts = GenerateOptions {
        max_tokens: args.max_tokens,
        sampling,
        ignore_eos: args.ignore_eos,
        stop: Some(stop_on_ctrl_c()),
        stats_rows: usize::MAX,
    };
    let end = if prompts.batch {
        let mut rows_sink = RowTexts {
            inner: &mut recorder,
            texts: vec![String::new(); rows.len()],
        };
        let end = loaded.engine.generate_batch(&rows, &opts, &mut rows_sink)?;
        print_rows(&args, &prompts.rows, &rows_sink.texts)?;
        end
    } else {
        loaded.engine.generate(&rows[0], &opts, &mut recorder)?
    };
    if args.json {
        if let Some(s) = recorder.summary() {
            println!("{}", serde_json::to_string_pretty(s)?);
        }
    }
    Ok(if end.reason == landauer_engine::StopReason::Interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

/// The recorder: the run record, the meter's sampler and the terminal printer.
#[allow(clippy::too_many_arguments)]
fn recorder(
    args: &GenerateArgs,
    loaded: &Loaded,
    meter: MeterSession,
    threads: usize,
    prompts: &Prompts,
    row_texts: &[String],
    rows: &[Vec<u32>],
    sampling: &SamplingParams,
) -> anyhow::Result<Recorder> {
    let idle_seconds = loaded.idle_seconds(args.idle_seconds);
    let idle_power_w = match (&meter.sampler, idle_seconds) {
        (Some(_), secs) if secs > 0.0 => {
            eprintln!("landauer: measuring idle power for {secs} s");
            meter.measure_idle(secs)
        }
        _ => None,
    };
    let info = loaded.engine.info();
    let settings = RunSettings {
        model: info.name.clone().unwrap_or_else(|| {
            std::path::Path::new(&loaded.model_path)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        }),
        context_length: loaded.engine.context_length(),
        threads,
        idle_seconds,
        idle_power_w,
        kelvin: args.kelvin,
        sampling: SamplingRecord {
            temperature: sampling.temperature,
            top_k: sampling.top_k,
            top_p: sampling.top_p,
            seed: sampling.seed,
            greedy: sampling.is_greedy(),
        },
        max_tokens: args.max_tokens,
        chat: args.chat,
        prompt: prompts.prompt.clone(),
        prompt_text: row_texts.join("\n"),
        prompt_tokens: rows.iter().map(Vec::len).sum(),
        prompt_token_ids: rows.to_vec(),
        batch: rows.len(),
        top_n: args.top_n,
        footprint: args.footprint.over(Default::default())?,
        started_unix_s: unix_now(),
    };
    let run = run_record(loaded, &meter, settings);
    let text_out: Box<dyn std::io::Write + Send> = if prompts.batch {
        // Rows' tokens interleave step by step: each row's text is printed at the end.
        Box::new(std::io::sink())
    } else if args.json {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    Ok(
        Recorder::new(run, meter.sampler).with_sink(TerminalPrinter::new(
            text_out,
            Box::new(std::io::stderr()),
            !args.quiet && !args.json,
        )),
    )
}

/// Ctrl-C stops generation after the current token; the summary is still written. A second
/// Ctrl-C exits at once (every trace line is already flushed).
fn stop_on_ctrl_c() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
    stop
}

/// Each row's text of a batch, once it ends.
fn print_rows(args: &GenerateArgs, prompts: &[String], texts: &[String]) -> anyhow::Result<()> {
    let mut out: Box<dyn std::io::Write> = if args.json {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    for (r, text) in texts.iter().enumerate() {
        writeln!(out, "--- row {r}: {}\n{text}", prompts[r])?;
    }
    Ok(())
}
