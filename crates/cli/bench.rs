//! `landauer bench`: decode and prefill speed, with tracing on and off in the same process.

use crate::generate::load_engine;
use crate::ModelArgs;
use clap::Args;
use landauer_engine::{
    GenerateOptions, RunEnd, RunStart, SamplingParams, SinkError, TokenEvent, TokenSink,
};
use landauer_meter::{open_meter, MeterChoice};
use landauer_trace::{CsvTrace, JsonlTrace, Recorder, RunRecord, SamplingRecord};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub gpu: crate::GpuArgs,
    /// Measured repetitions of each configuration (medians are reported).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Unmeasured warm-up generations before the first measured one.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Tokens generated per run (end-of-sequence is ignored so that every run is this long).
    #[arg(long, short = 'n', default_value_t = 128)]
    pub max_tokens: usize,
    /// Prompt for every run.
    #[arg(
        long,
        default_value = "Once upon a time, there was a little girl named Lily. She"
    )]
    pub prompt: String,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the results as JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Wraps a sink and measures the wall time spent inside it: the direct cost of tracing,
/// free of the run-to-run noise of end-to-end rates.
struct Timed<S> {
    inner: S,
    decode_s: f64,
    decode_cpu_s: f64,
}

impl<S: TokenSink> TokenSink for Timed<S> {
    fn begin(&mut self, s: &RunStart) -> Result<(), SinkError> {
        self.inner.begin(s)
    }
    fn token(&mut self, e: &TokenEvent<'_>) -> Result<(), SinkError> {
        let t = std::time::Instant::now();
        let c = landauer_meter::thread_cpu_seconds().unwrap_or(0.0);
        let r = self.inner.token(e);
        if e.index > 0 {
            self.decode_s += t.elapsed().as_secs_f64();
            self.decode_cpu_s += landauer_meter::thread_cpu_seconds().unwrap_or(0.0) - c;
        }
        r
    }
    fn end(&mut self, e: &RunEnd) -> Result<(), SinkError> {
        self.inner.end(e)
    }
}

#[derive(Serialize)]
struct Config {
    decode_tokens_per_s: Vec<f64>,
    prefill_tokens_per_s: Vec<f64>,
    decode_tokens_per_s_median: f64,
    prefill_tokens_per_s_median: f64,
}

#[derive(Serialize)]
struct BenchReport {
    engine: &'static str,
    landauer_version: &'static str,
    model: String,
    model_sha256: String,
    quantization: String,
    threads: usize,
    prompt_tokens: usize,
    generated_tokens: usize,
    runs: usize,
    /// Generation with no sink attached: nothing but the model and the sampler.
    tracing_off: Config,
    /// Entropy, surprisal, top-5, meter reads, JSONL and CSV trace files written and flushed.
    tracing_on: Config,
    /// (decode time per token with tracing) / (without) − 1, from the medians: end to end,
    /// and as noisy as the machine.
    tracing_overhead: f64,
    /// Wall time spent inside the trace sinks per decode token, milliseconds (median over
    /// runs). It includes waiting for a core: candle's idle workers spin ~1 ms before parking.
    tracing_ms_per_token: f64,
    /// CPU time of the generating thread inside the sinks per decode token, milliseconds.
    tracing_cpu_ms_per_token: f64,
    /// That time over the untraced decode time per token (median): the direct cost of tracing.
    tracing_cost_fraction: f64,
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn config(decode: Vec<f64>, prefill: Vec<f64>) -> Config {
    Config {
        decode_tokens_per_s_median: median(&decode),
        prefill_tokens_per_s_median: median(&prefill),
        decode_tokens_per_s: decode,
        prefill_tokens_per_s: prefill,
    }
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.runs == 0 || args.max_tokens < 2 {
        anyhow::bail!("--runs must be at least 1 and --max-tokens at least 2");
    }
    let threads = crate::set_threads(args.model.threads)?;
    let crate::generate::Loaded {
        mut engine,
        model_path,
        sha256,
        device,
    } = load_engine(&args.model)?;
    let tokens = engine.encode(&args.prompt)?;
    let opts = GenerateOptions {
        max_tokens: args.max_tokens,
        sampling: SamplingParams::greedy(),
        ignore_eos: true,
        stop: None,
    };
    let info = engine.info().clone();
    let dir = tempfile::tempdir()?;
    let make_recorder = |i: usize| -> anyhow::Result<Recorder> {
        let mut opened = open_meter(&crate::generate::meter_request(
            MeterChoice::Auto,
            landauer_meter::DEFAULT_CPU_WATTS_PER_CORE,
            &args.gpu.gpus,
            &device,
        ))?;
        let (sampler, meter_resolution_s) = crate::generate::start_sampler(&mut opened);
        let run = RunRecord {
            landauer_version: env!("CARGO_PKG_VERSION").into(),
            model: info.name.clone().unwrap_or_default(),
            model_path: model_path.clone(),
            model_sha256: sha256.clone(),
            architecture: info.architecture.clone(),
            quantization: info.quantization.clone(),
            parameters: info.parameters,
            synthetic: info.synthetic,
            context_length: 0,
            device: device.label.clone(),
            device_name: device.name.clone(),
            device_pci_bus_id: device.pci_bus_id.clone(),
            threads,
            meter: crate::generate::meter_info(&sampler).0,
            meter_description: crate::generate::meter_info(&sampler).1,
            meter_reason: opened.reason.clone(),
            meter_resolution_s,
            meter_interval_s: None,
            idle_seconds: 0.0,
            idle_power_w: None,
            estimated: crate::generate::meter_info(&sampler).2,
            kelvin: 300.0,
            landauer_j_per_bit: landauer_physics::landauer_joules_per_bit(300.0),
            sampling: SamplingRecord {
                temperature: 0.0,
                top_k: None,
                top_p: None,
                seed: 0,
                greedy: true,
            },
            max_tokens: args.max_tokens,
            chat: false,
            prompt: args.prompt.clone(),
            prompt_text: args.prompt.clone(),
            prompt_tokens: 0,
            top_n: 5,
            started_unix_s: 0.0,
        };
        Ok(Recorder::new(run, sampler)
            .with_sink(JsonlTrace::create(&dir.path().join(format!("{i}.jsonl")))?)
            .with_sink(CsvTrace::create(&dir.path().join(format!("{i}.csv")))?))
    };
    let rate = |end: &landauer_engine::RunEnd| {
        (
            (end.generated_tokens - 1) as f64 / (end.total_s - end.prefill_s),
            end.prompt_tokens as f64 / end.prefill_s,
        )
    };
    for _ in 0..args.warmup {
        engine.generate(&tokens, &opts, ())?;
    }
    let (mut off_d, mut off_p, mut on_d, mut on_p) = (vec![], vec![], vec![], vec![]);
    let (mut sink_ms, mut sink_cpu_ms) = (vec![], vec![]);
    let mut generated = 0;
    for i in 0..args.runs {
        // Alternate the order so that drift (heat, other load) hits both alike.
        for traced in [i % 2 == 0, i % 2 == 1] {
            let end = if traced {
                let mut timed = Timed {
                    inner: make_recorder(i)?,
                    decode_s: 0.0,
                    decode_cpu_s: 0.0,
                };
                let end = engine.generate(&tokens, &opts, &mut timed)?;
                let n = (end.generated_tokens - 1) as f64;
                sink_ms.push(timed.decode_s * 1e3 / n);
                sink_cpu_ms.push(timed.decode_cpu_s * 1e3 / n);
                end
            } else {
                engine.generate(&tokens, &opts, ())?
            };
            generated = end.generated_tokens;
            let (d, p) = rate(&end);
            if traced {
                on_d.push(d);
                on_p.push(p);
            } else {
                off_d.push(d);
                off_p.push(p);
            }
            eprintln!(
                "run {}/{} tracing {:>3}: decode {d:7.2} tokens/s, prefill {p:7.2} tokens/s",
                i + 1,
                args.runs,
                if traced { "on" } else { "off" }
            );
        }
    }
    let off = config(off_d, off_p);
    let on = config(on_d, on_p);
    let tracing_ms_per_token = median(&sink_ms);
    let report = BenchReport {
        engine: "landauer",
        landauer_version: env!("CARGO_PKG_VERSION"),
        model: info.name.clone().unwrap_or_default(),
        model_sha256: sha256.clone(),
        quantization: info.quantization.clone(),
        threads,
        prompt_tokens: tokens.len(),
        generated_tokens: generated,
        runs: args.runs,
        tracing_overhead: off.decode_tokens_per_s_median / on.decode_tokens_per_s_median - 1.0,
        tracing_ms_per_token,
        tracing_cpu_ms_per_token: median(&sink_cpu_ms),
        tracing_cost_fraction: tracing_ms_per_token * 1e-3 * off.decode_tokens_per_s_median,
        tracing_off: off,
        tracing_on: on,
    };
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(p) = &args.out {
        std::fs::write(p, &json)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))?;
    }
    if args.json {
        println!("{json}");
    } else {
        println!(
            "landauer bench: {} {}, {} threads, {}-token prompt, {} tokens, {} runs (medians)",
            report.model, report.quantization, threads, report.prompt_tokens, generated, args.runs
        );
        println!(
            "{:<14} {:>12} {:>13}",
            "tracing", "decode tok/s", "prefill tok/s"
        );
        println!(
            "{:<14} {:>12.2} {:>13.2}",
            "off",
            report.tracing_off.decode_tokens_per_s_median,
            report.tracing_off.prefill_tokens_per_s_median
        );
        println!(
            "{:<14} {:>12.2} {:>13.2}",
            "on",
            report.tracing_on.decode_tokens_per_s_median,
            report.tracing_on.prefill_tokens_per_s_median
        );
        println!(
            "tracing: {:.3} ms per token inside the sinks ({:.3} ms of CPU) = {:.2}% of untraced decode time; end-to-end difference of medians {:+.2}%",
            report.tracing_ms_per_token,
            report.tracing_cpu_ms_per_token,
            report.tracing_cost_fraction * 100.0,
            report.tracing_overhead * 100.0
        );
    }
    Ok(ExitCode::SUCCESS)
}
