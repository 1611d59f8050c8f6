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
    /// Keep the traced runs' JSONL and CSV traces in this directory (default: discarded).
    #[arg(long, value_name = "DIR")]
    pub trace_dir: Option<PathBuf>,
    /// Seconds of idle power measured before each traced run (default: 2 on a GPU, else 0),
    /// for active energy.
    #[arg(long)]
    pub idle_seconds: Option<f64>,
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

/// Energy of the runs, medians over runs: traced (per-token attribution) and untraced.
#[derive(Serialize)]
struct EnergyStats {
    meter: String,
    meter_reason: String,
    estimated: bool,
    /// The counter's update period, seconds (median over runs).
    meter_resolution_s: Option<f64>,
    idle_power_w: Option<f64>,
    /// Decode energy per token (every token after the first), joules.
    decode_joules_per_token: Vec<f64>,
    decode_joules_per_token_median: f64,
    /// Decode energy per token minus idle power × time per token.
    decode_active_joules_per_token_median: Option<f64>,
    /// 3600 / decode J/token.
    decode_tokens_per_wh_median: f64,
    /// Decode energy over decode time, watts.
    decode_power_w_median: f64,
    prefill_energy_j_median: f64,
    /// Die temperature and SM clock over the runs (GPU meters).
    temperature_c_mean: Option<f64>,
    sm_clock_mhz_mean: Option<f64>,
    power_instant_w_mean: Option<f64>,
    /// The same figures for the untraced runs (the meter runs, nothing else does): the
    /// engine's own cost, without tracing's. From each run's decode window on the meter's
    /// timeline.
    untraced_decode_joules_per_token: Vec<f64>,
    untraced_decode_joules_per_token_median: Option<f64>,
    untraced_decode_tokens_per_wh_median: Option<f64>,
    untraced_decode_power_w_median: Option<f64>,
    untraced_decode_active_joules_per_token_median: Option<f64>,
}

#[derive(Serialize)]
struct BenchReport {
    engine: &'static str,
    landauer_version: &'static str,
    model: String,
    model_sha256: String,
    quantization: String,
    parameters: u64,
    /// Real shapes, random weights (speed and energy real, entropy meaningless).
    synthetic: bool,
    /// Weight bytes one decode step reads (the KV cache comes on top).
    weight_bytes_per_token: u64,
    device: String,
    device_name: Option<String>,
    threads: usize,
    /// How the KV cache stored keys and values (`f16`, `f32`).
    kv_cache: &'static str,
    /// Weight matrices that ran on candle's CPU kernels (the slow path): name and type.
    slow_tensors: Vec<landauer_trace::SlowTensorRecord>,
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
    /// The median over rounds (each round runs once traced and once not, order alternating) of
    /// (decode time per token traced / untraced) − 1: less sensitive to the machine drifting
    /// during the benchmark than the ratio of medians.
    tracing_overhead_paired: f64,
    /// Wall time spent inside the trace sinks per decode token, milliseconds (median over
    /// runs). It includes waiting for a core: candle's idle workers spin ~1 ms before parking.
    tracing_ms_per_token: f64,
    /// CPU time of the generating thread inside the sinks per decode token, milliseconds.
    tracing_cpu_ms_per_token: f64,
    /// That time over the untraced decode time per token (median): the direct cost of tracing.
    tracing_cost_fraction: f64,
    /// Energy of the traced runs (null with no meter).
    energy: Option<EnergyStats>,
    /// The memory-bandwidth roofline of a CPU run (null on a GPU: scripts/copy-bandwidth.py).
    roofline: Option<Roofline>,
}

/// How fast decode could go if it did nothing but read what it must from memory.
#[derive(Serialize)]
struct Roofline {
    /// Sustained read bandwidth of main memory with the run's threads (a 512 MiB buffer summed
    /// by every thread, median of 5 passes), bytes per second.
    read_bandwidth_bytes_per_s: f64,
    /// Weights plus the mean KV cache one decode step reads.
    bytes_per_token: f64,
    kv_bytes_per_token_mean: f64,
    /// read_bandwidth / bytes_per_token.
    roofline_tokens_per_s: f64,
    /// Untraced decode tokens/s over the roofline.
    fraction_tracing_off: f64,
}

/// Bytes per second `threads` threads read from a buffer far larger than any cache.
fn read_bandwidth(threads: usize) -> f64 {
    const BYTES: usize = 512 << 20;
    let data: Vec<u64> = (0..(BYTES / 8) as u64).collect();
    let per = data.len().div_ceil(threads.max(1));
    let mut rates: Vec<f64> = (0..5)
        .map(|_| {
            let t = std::time::Instant::now();
            let total = std::thread::scope(|s| {
                let hs: Vec<_> = data
                    .chunks(per)
                    .map(|c| {
                        s.spawn(move || {
                            // Eight independent sums: the loop streams loads, not additions.
                            let mut acc = [0u64; 8];
                            for x in c.chunks_exact(8) {
                                for l in 0..8 {
                                    acc[l] = acc[l].wrapping_add(x[l]);
                                }
                            }
                            acc.iter().fold(0u64, |a, b| a.wrapping_add(*b))
                        })
                    })
                    .collect();
                hs.into_iter()
                    .map(|h| h.join().unwrap_or(0))
                    .fold(0u64, u64::wrapping_add)
            });
            std::hint::black_box(total);
            BYTES as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[2]
}

/// A meter started for one run.
struct StartedMeter {
    sampler: Option<landauer_meter::sampler::MeterSampler>,
    reason: String,
    meter_resolution_s: Option<f64>,
    idle_power_w: Option<f64>,
}

/// Remembers when the run started, and nothing else.
struct StartMark(Option<std::time::Instant>);

impl TokenSink for StartMark {
    fn begin(&mut self, s: &RunStart) -> Result<(), SinkError> {
        self.0 = Some(s.at);
        Ok(())
    }
}

/// Decode energy of an untraced run: (J/token, W, active J/token).
fn untraced_energy(
    sampler: landauer_meter::sampler::MeterSampler,
    at: std::time::Instant,
    end: &RunEnd,
    idle_w: Option<f64>,
) -> Option<(f64, f64, Option<f64>)> {
    let offset = at.saturating_duration_since(sampler.epoch()).as_secs_f64();
    let (a, b) = (offset + end.prefill_s, offset + end.total_s);
    let tl = sampler.timeline_through(b, std::time::Duration::from_secs(1));
    let n = end.generated_tokens.checked_sub(1).filter(|&n| n > 0)? as f64;
    let dt = b - a;
    if tl.update_period().is_none() || dt <= 0.0 {
        return None;
    }
    let j = tl.window(a, b).joules;
    Some((j / n, j / dt, idle_w.map(|p| (j - p * dt) / n)))
}

/// Medians of the traced runs' energy figures (None when energy was not measured).
fn energy_stats(
    runs: &[(landauer_trace::SummaryRecord, RunRecord)],
    untraced: &[(f64, f64, Option<f64>)],
) -> Option<EnergyStats> {
    let (first, run) = runs.first()?;
    first.energy_j?;
    let per = |f: &dyn Fn(&landauer_trace::SummaryRecord) -> Option<f64>| -> Vec<f64> {
        runs.iter().filter_map(|(s, _)| f(s)).collect()
    };
    let opt_median = |v: Vec<f64>| (!v.is_empty()).then(|| median(&v));
    let jpt = per(&|s| s.decode_joules_per_token);
    let jpt_median = median(&jpt);
    Some(EnergyStats {
        meter: run.meter.clone(),
        meter_reason: run.meter_reason.clone(),
        estimated: run.estimated,
        meter_resolution_s: opt_median(per(&|s| s.meter_resolution_s)),
        idle_power_w: opt_median(runs.iter().filter_map(|(_, r)| r.idle_power_w).collect()),
        decode_active_joules_per_token_median: opt_median(per(&|s| {
            let n = s.tokens.checked_sub(1).filter(|&n| n > 0)? as f64;
            Some(s.decode_energy_j? / n - s.idle_power_w? * s.decode_s / n)
        })),
        decode_tokens_per_wh_median: 3600.0 / jpt_median,
        decode_joules_per_token: jpt,
        decode_joules_per_token_median: jpt_median,
        decode_power_w_median: median(&per(&|s| {
            s.decode_energy_j
                .filter(|_| s.decode_s > 0.0)
                .map(|e| e / s.decode_s)
        })),
        prefill_energy_j_median: median(&per(&|s| s.prefill_energy_j)),
        temperature_c_mean: opt_median(per(&|s| s.temperature_c_mean)),
        sm_clock_mhz_mean: opt_median(per(&|s| s.sm_clock_mhz_mean)),
        power_instant_w_mean: opt_median(per(&|s| s.power_instant_w_mean)),
        untraced_decode_joules_per_token: untraced.iter().map(|u| u.0).collect(),
        untraced_decode_joules_per_token_median: opt_median(untraced.iter().map(|u| u.0).collect()),
        untraced_decode_tokens_per_wh_median: opt_median(untraced.iter().map(|u| u.0).collect())
            .map(|j| 3600.0 / j),
        untraced_decode_power_w_median: opt_median(untraced.iter().map(|u| u.1).collect()),
        untraced_decode_active_joules_per_token_median: opt_median(
            untraced.iter().filter_map(|u| u.2).collect(),
        ),
    })
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
    if let Some(idle) = args.idle_seconds.filter(|s| !(s.is_finite() && *s >= 0.0)) {
        anyhow::bail!("--idle-seconds must be 0 or more, got {idle}");
    }
    if let Some(d) = &args.trace_dir {
        std::fs::create_dir_all(d)
            .map_err(|e| anyhow::anyhow!("cannot create --trace-dir {}: {e}", d.display()))?;
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
        stats_rows: usize::MAX,
    };
    let info = engine.info().clone();
    let meter_interval = args.gpu.interval()?;
    let on_gpu = device.label.starts_with("cuda");
    let idle_seconds = args.idle_seconds.unwrap_or(if on_gpu { 2.0 } else { 0.0 });
    let tmp = tempfile::tempdir()?;
    let dir = args
        .trace_dir
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    // The same meter, polling and idle wait before every run, traced or not.
    let start_meter = || -> anyhow::Result<StartedMeter> {
        let mut opened = open_meter(&crate::generate::meter_request(
            MeterChoice::Auto,
            landauer_meter::DEFAULT_CPU_WATTS_PER_CORE,
            &args.gpu.gpus,
            &device,
        ))?;
        let (sampler, meter_resolution_s) =
            crate::generate::start_sampler(&mut opened, meter_interval);
        let idle_power_w = match &sampler {
            Some(s) if idle_seconds > 0.0 => s.measure_idle(idle_seconds),
            _ => None,
        };
        Ok(StartedMeter {
            sampler,
            reason: opened.reason,
            meter_resolution_s,
            idle_power_w,
        })
    };
    let kv_cache = engine.kv_dtype().name();
    let slow_tensors = crate::generate::slow_tensor_records(&engine);
    let make_recorder = |i: usize| -> anyhow::Result<Recorder> {
        let StartedMeter {
            sampler,
            reason,
            meter_resolution_s,
            idle_power_w,
        } = start_meter()?;
        let run = RunRecord {
            landauer_version: env!("CARGO_PKG_VERSION").into(),
            model: info.name.clone().unwrap_or_default(),
            model_path: model_path.clone(),
            model_sha256: sha256.clone(),
            architecture: info.architecture.clone(),
            quantization: info.quantization.clone(),
            parameters: info.parameters,
            shape: info.shape.clone(),
            synthetic: info.synthetic,
            context_length: 0,
            device: device.label.clone(),
            device_name: device.name.clone(),
            device_pci_bus_id: device.pci_bus_id.clone(),
            threads,
            kv_cache: Some(kv_cache.into()),
            slow_tensors: slow_tensors.clone(),
            meter: crate::generate::meter_info(&sampler).0,
            meter_description: crate::generate::meter_info(&sampler).1,
            meter_reason: reason,
            meter_resolution_s,
            meter_interval_s: sampler.as_ref().map(|s| s.interval().as_secs_f64()),
            idle_seconds,
            idle_power_w,
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
            batch: 1,
            top_n: 5,
            footprint: Default::default(),
            started_unix_s: 0.0,
        };
        Ok(Recorder::new(run, sampler)
            .with_sink(JsonlTrace::create(&dir.join(format!("run{i}.jsonl")))?)
            .with_sink(CsvTrace::create(&dir.join(format!("run{i}.csv")))?))
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
    let mut summaries = Vec::new();
    let mut untraced = Vec::new();
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
                summaries.extend(
                    timed
                        .inner
                        .summary()
                        .cloned()
                        .map(|s| (s, timed.inner.run_record().clone())),
                );
                end
            } else {
                // No sink work at all; the meter runs beside the engine and the decode
                // window's energy is read off its timeline afterwards.
                let m = start_meter()?;
                let mut mark = StartMark(None);
                let end = engine.generate(&tokens, &opts, &mut mark)?;
                if let (Some(s), Some(at)) = (m.sampler, mark.0) {
                    untraced.extend(untraced_energy(s, at, &end, m.idle_power_w));
                }
                end
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
    let roofline = (!on_gpu).then(|| {
        let bw = read_bandwidth(threads);
        // The cache holds prompt + i positions at decode step i: on average prompt + n/2.
        let per_position = engine.batch_memory(1, 1, 0).0 as f64;
        let kv = per_position * (tokens.len() as f64 + generated as f64 / 2.0);
        let bytes = info.weight_bytes_per_token as f64 + kv;
        Roofline {
            read_bandwidth_bytes_per_s: bw,
            bytes_per_token: bytes,
            kv_bytes_per_token_mean: kv,
            roofline_tokens_per_s: bw / bytes,
            fraction_tracing_off: off.decode_tokens_per_s_median * bytes / bw,
        }
    });
    let report = BenchReport {
        engine: "landauer",
        landauer_version: env!("CARGO_PKG_VERSION"),
        model: info.name.clone().unwrap_or_default(),
        model_sha256: sha256.clone(),
        quantization: info.quantization.clone(),
        parameters: info.parameters,
        synthetic: info.synthetic,
        weight_bytes_per_token: info.weight_bytes_per_token,
        device: device.label.clone(),
        device_name: device.name.clone(),
        energy: energy_stats(&summaries, &untraced),
        threads,
        kv_cache,
        slow_tensors,
        prompt_tokens: tokens.len(),
        generated_tokens: generated,
        runs: args.runs,
        tracing_overhead: off.decode_tokens_per_s_median / on.decode_tokens_per_s_median - 1.0,
        tracing_overhead_paired: median(
            &off.decode_tokens_per_s
                .iter()
                .zip(&on.decode_tokens_per_s)
                .map(|(a, b)| a / b - 1.0)
                .collect::<Vec<_>>(),
        ),
        tracing_ms_per_token,
        tracing_cpu_ms_per_token: median(&sink_cpu_ms),
        tracing_cost_fraction: tracing_ms_per_token * 1e-3 * off.decode_tokens_per_s_median,
        tracing_off: off,
        tracing_on: on,
        roofline,
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
            "tracing: {:.3} ms per token inside the sinks ({:.3} ms of CPU) = {:.2}% of untraced decode time; end to end {:+.2}% (ratio of medians), {:+.2}% (median of run pairs)",
            report.tracing_ms_per_token,
            report.tracing_cpu_ms_per_token,
            report.tracing_cost_fraction * 100.0,
            report.tracing_overhead * 100.0,
            report.tracing_overhead_paired * 100.0
        );
        if let Some(r) = &report.roofline {
            println!(
                "roofline: {:.1} GB/s read ({threads} threads); a decode token reads {:.1} MB (weights {:.1}, KV cache {:.1}) -> {:.0} tokens/s; untraced decode is at {:.0}% of it",
                r.read_bandwidth_bytes_per_s / 1e9,
                r.bytes_per_token / 1e6,
                report.weight_bytes_per_token as f64 / 1e6,
                r.kv_bytes_per_token_mean / 1e6,
                r.roofline_tokens_per_s,
                r.fraction_tracing_off * 100.0
            );
        }
        if let Some(e) = &report.energy {
            let est = if e.estimated { " ESTIMATED" } else { "" };
            println!(
                "energy with tracing ({}{est}): decode {:.4} J/token, {:.0} tokens/Wh, {:.1} W{}",
                e.meter,
                e.decode_joules_per_token_median,
                e.decode_tokens_per_wh_median,
                e.decode_power_w_median,
                e.decode_active_joules_per_token_median
                    .map(|a| format!(
                        "; active {a:.4} J/token (idle {:.1} W)",
                        e.idle_power_w.unwrap_or(0.0)
                    ))
                    .unwrap_or_default()
            );
        }
        if let Some(j) = report
            .energy
            .as_ref()
            .and_then(|e| e.untraced_decode_joules_per_token_median)
        {
            println!(
                "energy without tracing: decode {j:.4} J/token, {:.0} tokens/Wh",
                3600.0 / j
            );
        }
        if report.synthetic {
            println!("synthetic model: random weights; speed and energy are real, entropy is meaningless");
        }
    }
    Ok(ExitCode::SUCCESS)
}
