//! The bench: decode and prefill speed with tracing on and off in the same process, the
//! energy of both, and (on the CPU) how close decode comes to the memory roofline.

use crate::session::{run_record, Loaded, MeterOptions, MeterSession, RunSettings};
use crate::stats::{median, median_of, paired_excess};
use crate::{BenchRun, Observer};
use landauer_engine::{
    GenerateOptions, RunEnd, RunStart, SamplingParams, SinkError, TokenEvent, TokenSink,
};
pub use landauer_trace::EntropyError;
use landauer_trace::{CsvTrace, JsonlTrace, Recorder, RunRecord, SamplingRecord, SummaryRecord};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What to bench.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Measured rounds; each runs once traced and once untraced (order alternating).
    pub runs: usize,
    /// Unmeasured warm-up generations before the first measured one.
    pub warmup: usize,
    /// Tokens generated per run and row (end-of-sequence is ignored).
    pub max_tokens: usize,
    pub prompt: String,
    /// Rows decoded together, each with `prompt` (1: a single sequence). Above 1 the model
    /// must be loaded into landauer's batched pass.
    pub batch: usize,
    /// Keep the traced runs' JSONL and CSV traces here (None: a temporary directory).
    pub trace_dir: Option<PathBuf>,
    /// Seconds of idle power measured before each run (None: 2 on a GPU, else 0).
    pub idle_seconds: Option<f64>,
    pub meter: MeterOptions,
    /// Load this model again in exact mode and score the last traced run's tokens with it:
    /// how far the default mode's entropies are from the model's own ([`EntropyError`]).
    /// None skips it.
    pub exact_check: Option<crate::ModelOptions>,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            runs: 5,
            warmup: 1,
            max_tokens: 128,
            prompt: "Once upon a time, there was a little girl named Lily. She".into(),
            batch: 1,
            trace_dir: None,
            idle_seconds: None,
            meter: MeterOptions::default(),
            exact_check: None,
        }
    }
}

impl BenchConfig {
    /// Checks the settings and creates the trace directory: call before loading a model, so
    /// that a bad setting fails before any work is done.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.runs == 0 || self.max_tokens < 2 {
            anyhow::bail!("--runs must be at least 1 and --max-tokens at least 2");
        }
        if self.batch == 0 {
            anyhow::bail!("--batch must be at least 1");
        }
        if let Some(idle) = self.idle_seconds.filter(|s| !(s.is_finite() && *s >= 0.0)) {
            anyhow::bail!("--idle-seconds must be 0 or more, got {idle}");
        }
        if let Some(d) = &self.trace_dir {
            std::fs::create_dir_all(d)
                .map_err(|e| anyhow::anyhow!("cannot create --trace-dir {}: {e}", d.display()))?;
        }
        Ok(())
    }
}

fn one() -> usize {
    1
}

/// Speeds of one configuration (tracing on or off), every run and the medians.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rates {
    pub decode_tokens_per_s: Vec<f64>,
    pub prefill_tokens_per_s: Vec<f64>,
    pub decode_tokens_per_s_median: f64,
    pub prefill_tokens_per_s_median: f64,
}

impl Rates {
    fn of(decode: Vec<f64>, prefill: Vec<f64>) -> Self {
        Rates {
            decode_tokens_per_s_median: median(&decode),
            prefill_tokens_per_s_median: median(&prefill),
            decode_tokens_per_s: decode,
            prefill_tokens_per_s: prefill,
        }
    }
}

/// Energy of the runs, medians over runs: traced (per-token attribution) and untraced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnergyStats {
    pub meter: String,
    pub meter_reason: String,
    pub estimated: bool,
    /// The counter's update period, seconds (median over runs).
    pub meter_resolution_s: Option<f64>,
    pub idle_power_w: Option<f64>,
    /// Decode energy per token (every token after the first), joules.
    pub decode_joules_per_token: Vec<f64>,
    pub decode_joules_per_token_median: f64,
    /// Decode energy per token minus idle power × time per token.
    pub decode_active_joules_per_token_median: Option<f64>,
    /// 3600 / decode J/token.
    pub decode_tokens_per_wh_median: f64,
    /// Decode energy over decode time, watts.
    pub decode_power_w_median: f64,
    pub prefill_energy_j_median: f64,
    /// Die temperature and SM clock over the runs (GPU meters).
    pub temperature_c_mean: Option<f64>,
    pub sm_clock_mhz_mean: Option<f64>,
    pub power_instant_w_mean: Option<f64>,
    /// The same figures for the untraced runs (the meter runs, nothing else does): the
    /// engine's own cost, without tracing's. From each run's decode window on the meter's
    /// timeline.
    pub untraced_decode_joules_per_token: Vec<f64>,
    pub untraced_decode_joules_per_token_median: Option<f64>,
    pub untraced_decode_tokens_per_wh_median: Option<f64>,
    pub untraced_decode_power_w_median: Option<f64>,
    pub untraced_decode_active_joules_per_token_median: Option<f64>,
}

/// Everything a bench measured: `bench.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchReport {
    pub engine: String,
    pub landauer_version: String,
    pub model: String,
    pub model_sha256: String,
    pub quantization: String,
    pub parameters: u64,
    /// Real shapes, random weights (speed and energy real, entropy meaningless).
    pub synthetic: bool,
    /// Weight bytes one decode step reads (the KV cache comes on top).
    pub weight_bytes_per_token: u64,
    pub device: String,
    pub device_name: Option<String>,
    pub threads: usize,
    /// How the KV cache stored keys and values (`f16`, `f32`).
    pub kv_cache: String,
    /// Where each step was sampled: `host` or `device`.
    pub sampled_on: String,
    /// Weight matrices that ran on candle's CPU kernels (the slow path): name and type.
    pub slow_tensors: Vec<landauer_trace::SlowTensorRecord>,
    /// Per row.
    pub prompt_tokens: usize,
    /// Every row's, together.
    pub generated_tokens: usize,
    /// Rows decoded together (absent in reports that predate it: 1).
    #[serde(default = "one")]
    pub batch: usize,
    pub runs: usize,
    /// Generation with no sink attached: nothing but the model and the sampler.
    pub tracing_off: Rates,
    /// Entropy, surprisal, top-5, meter reads, JSONL and CSV trace files written and flushed.
    pub tracing_on: Rates,
    /// (decode time per token with tracing) / (without) − 1, from the medians: end to end,
    /// and as noisy as the machine.
    pub tracing_overhead: f64,
    /// The median over rounds (each round runs once traced and once not, order alternating) of
    /// (decode time per token traced / untraced) − 1: less sensitive to the machine drifting
    /// during the benchmark than the ratio of medians.
    pub tracing_overhead_paired: f64,
    /// Wall time spent inside the trace sinks per decode token, milliseconds (median over
    /// runs). It includes waiting for a core: candle's idle workers spin ~1 ms before parking.
    pub tracing_ms_per_token: f64,
    /// CPU time of the generating thread inside the sinks per decode token, milliseconds.
    pub tracing_cpu_ms_per_token: f64,
    /// That time over the untraced decode time per token (median): the direct cost of tracing.
    pub tracing_cost_fraction: f64,
    /// Energy of the traced runs (null with no meter).
    pub energy: Option<EnergyStats>,
    /// The memory-bandwidth roofline of a CPU run (null on a GPU: scripts/copy-bandwidth.py).
    pub roofline: Option<Roofline>,
    /// How far the traced run's per-token entropies are from exact mode's on the same tokens
    /// (null when not checked: a synthetic model, exact mode itself, or not asked for).
    #[serde(default)]
    pub entropy_error_vs_exact: Option<EntropyError>,
}

/// Scores a trace's tokens with the model in exact mode: the default mode's entropy error.
pub fn exact_check(
    opts: &crate::ModelOptions,
    prompt: &[u32],
    trace: &std::path::Path,
    obs: &mut dyn Observer,
) -> anyhow::Result<Option<EntropyError>> {
    let landauer_trace::Input::Trace(t) = landauer_trace::read_input(trace)? else {
        anyhow::bail!("{} is not a trace", trace.display());
    };
    if t.run.synthetic || t.run.exact {
        return Ok(None);
    }
    let tokens: Vec<&landauer_trace::TokenRecord> =
        t.tokens.iter().filter(|r| r.seq == 0).collect();
    let ids: Vec<u32> = tokens.iter().map(|r| r.token_id).collect();
    let exact_opts = crate::ModelOptions {
        exact: true,
        ..opts.clone()
    };
    obs.note("scoring the last traced run's tokens in exact mode (f32 weights and activations)");
    let mut exact = crate::Loaded::load(&exact_opts, obs)?;
    let mut pairs = Vec::with_capacity(ids.len());
    exact.engine.score(prompt, &ids, |i, logits| {
        pairs.push((
            tokens[i].entropy_bits,
            landauer_physics::entropy_bits_from_logits(logits),
        ));
    })?;
    Ok(EntropyError::of(&pairs))
}

/// How fast decode could go if it did nothing but read what it must from memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Roofline {
    /// Sustained read bandwidth of main memory with the run's threads (a 512 MiB buffer summed
    /// by every thread, median of 5 passes), bytes per second.
    pub read_bandwidth_bytes_per_s: f64,
    /// Weights plus the mean KV cache one decode step reads.
    pub bytes_per_token: f64,
    pub kv_bytes_per_token_mean: f64,
    /// read_bandwidth / bytes_per_token.
    pub roofline_tokens_per_s: f64,
    /// Untraced decode tokens/s over the roofline.
    pub fraction_tracing_off: f64,
}

/// Wraps a sink and measures the wall time spent inside it: the direct cost of tracing,
/// free of the run-to-run noise of end-to-end rates.
struct Timed<S> {
    inner: S,
    decode_s: f64,
    decode_cpu_s: f64,
}

impl<S: TokenSink> TokenSink for Timed<S> {
    fn needs(&self) -> landauer_engine::Needs {
        self.inner.needs()
    }
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

/// Remembers when the run started, and nothing else.
struct StartMark(Option<std::time::Instant>);

impl TokenSink for StartMark {
    fn needs(&self) -> landauer_engine::Needs {
        landauer_engine::Needs::NOTHING
    }
    fn begin(&mut self, s: &RunStart) -> Result<(), SinkError> {
        self.0 = Some(s.at);
        Ok(())
    }
}

/// Decode energy of an untraced run: (J/token, W, active J/token).
fn untraced_energy(
    meter: &MeterSession,
    at: std::time::Instant,
    end: &RunEnd,
    rows: usize,
    idle_w: Option<f64>,
) -> Option<(f64, f64, Option<f64>)> {
    let w = meter.run_windows(at, end)?;
    let n = end.generated_tokens.checked_sub(rows).filter(|&n| n > 0)? as f64;
    let dt = w.decode_s;
    if !w.counter_moved || dt <= 0.0 {
        return None;
    }
    let j = w.decode.joules;
    Some((j / n, j / dt, idle_w.map(|p| (j - p * dt) / n)))
}

/// Medians of the traced runs' energy figures (None when energy was not measured).
fn energy_stats(
    runs: &[(SummaryRecord, RunRecord)],
    untraced: &[(f64, f64, Option<f64>)],
) -> Option<EnergyStats> {
    let (first, run) = runs.first()?;
    first.energy_j?;
    let per = |f: &dyn Fn(&SummaryRecord) -> Option<f64>| -> Vec<f64> {
        runs.iter().filter_map(|(s, _)| f(s)).collect()
    };
    let jpt = per(&|s| s.decode_joules_per_token);
    let jpt_median = median(&jpt);
    let untraced_jpt: Vec<f64> = untraced.iter().map(|u| u.0).collect();
    Some(EnergyStats {
        meter: run.meter.clone(),
        meter_reason: run.meter_reason.clone(),
        estimated: run.estimated,
        meter_resolution_s: median_of(&per(&|s| s.meter_resolution_s)),
        idle_power_w: median_of(
            &runs
                .iter()
                .filter_map(|(_, r)| r.idle_power_w)
                .collect::<Vec<_>>(),
        ),
        decode_active_joules_per_token_median: median_of(&per(&|s| {
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
        temperature_c_mean: median_of(&per(&|s| s.temperature_c_mean)),
        sm_clock_mhz_mean: median_of(&per(&|s| s.sm_clock_mhz_mean)),
        power_instant_w_mean: median_of(&per(&|s| s.power_instant_w_mean)),
        untraced_decode_joules_per_token_median: median_of(&untraced_jpt),
        untraced_decode_tokens_per_wh_median: median_of(&untraced_jpt).map(|j| 3600.0 / j),
        untraced_decode_joules_per_token: untraced_jpt,
        untraced_decode_power_w_median: median_of(
            &untraced.iter().map(|u| u.1).collect::<Vec<_>>(),
        ),
        untraced_decode_active_joules_per_token_median: median_of(
            &untraced.iter().filter_map(|u| u.2).collect::<Vec<_>>(),
        ),
    })
}

/// What the measured rounds collected.
#[derive(Default)]
struct Rounds {
    off_decode: Vec<f64>,
    off_prefill: Vec<f64>,
    on_decode: Vec<f64>,
    on_prefill: Vec<f64>,
    sink_ms: Vec<f64>,
    sink_cpu_ms: Vec<f64>,
    summaries: Vec<(SummaryRecord, RunRecord)>,
    untraced: Vec<(f64, f64, Option<f64>)>,
    generated: usize,
}

/// Runs the bench on a loaded model with `threads` CPU threads.
pub fn run(
    loaded: &mut Loaded,
    threads: usize,
    cfg: &BenchConfig,
    obs: &mut dyn Observer,
) -> anyhow::Result<BenchReport> {
    cfg.check()?;
    let tokens = loaded.engine.encode(&cfg.prompt)?;
    let tmp = tempfile::tempdir()?;
    let dir = cfg
        .trace_dir
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let opts = GenerateOptions {
        max_tokens: cfg.max_tokens,
        sampling: SamplingParams::greedy(),
        ignore_eos: true,
        stop: None,
        stats_rows: usize::MAX,
    };
    for _ in 0..cfg.warmup {
        generate(loaded, &tokens, cfg.batch, &opts, ())?;
    }
    let mut r = Rounds::default();
    for i in 0..cfg.runs {
        // Alternate the order so that drift (heat, other load) hits both alike.
        for traced in [i % 2 == 0, i % 2 == 1] {
            let end = if traced {
                traced_run(loaded, threads, cfg, &dir, i, &tokens, &opts, &mut r)?
            } else {
                untraced_run(loaded, cfg, &tokens, &opts, &mut r)?
            };
            r.generated = end.generated_tokens;
            let d = decode_rate(&end, cfg.batch);
            let p = end.prompt_tokens as f64 / end.prefill_s;
            let (dv, pv) = if traced {
                (&mut r.on_decode, &mut r.on_prefill)
            } else {
                (&mut r.off_decode, &mut r.off_prefill)
            };
            dv.push(d);
            pv.push(p);
            obs.bench_run(&BenchRun {
                round: i,
                rounds: cfg.runs,
                traced,
                decode_tokens_per_s: d,
                prefill_tokens_per_s: p,
            });
        }
    }
    let mut report = report(loaded, threads, cfg, tokens.len(), r);
    if let Some(opts) = cfg.exact_check.as_ref().filter(|_| cfg.batch == 1) {
        let last = dir.join(format!("run{}.jsonl", cfg.runs - 1));
        report.entropy_error_vs_exact = exact_check(opts, &tokens, &last, obs)?;
    }
    Ok(report)
}

/// One generation of the bench's rows: a single sequence, or a batch of `rows` copies.
fn generate(
    loaded: &mut Loaded,
    tokens: &[u32],
    rows: usize,
    opts: &GenerateOptions,
    sink: impl TokenSink,
) -> anyhow::Result<RunEnd> {
    Ok(match rows {
        1 => loaded.engine.generate(tokens, opts, sink)?,
        _ => loaded
            .engine
            .generate_batch(&vec![tokens.to_vec(); rows], opts, sink)?,
    })
}

/// Decode tokens per second of a run of `rows` rows (every token after each row's first).
fn decode_rate(end: &RunEnd, rows: usize) -> f64 {
    (end.generated_tokens - rows) as f64 / (end.total_s - end.prefill_s)
}

/// One traced run: a recorder writing JSONL and CSV traces, timed inside its sinks.
#[allow(clippy::too_many_arguments)]
fn traced_run(
    loaded: &mut Loaded,
    threads: usize,
    cfg: &BenchConfig,
    dir: &std::path::Path,
    i: usize,
    tokens: &[u32],
    opts: &GenerateOptions,
    r: &mut Rounds,
) -> anyhow::Result<RunEnd> {
    let meter = MeterSession::start(&cfg.meter, &loaded.device)?;
    let idle_seconds = loaded.idle_seconds(cfg.idle_seconds);
    let idle_power_w = meter.measure_idle(idle_seconds);
    let run = run_record(
        loaded,
        &meter,
        RunSettings {
            model: loaded.engine.info().name.clone().unwrap_or_default(),
            context_length: loaded.engine.context_length(),
            threads,
            idle_seconds,
            idle_power_w,
            kelvin: 300.0,
            sampling: SamplingRecord {
                temperature: 0.0,
                top_k: None,
                top_p: None,
                seed: 0,
                greedy: true,
            },
            max_tokens: cfg.max_tokens,
            chat: false,
            prompt: cfg.prompt.clone(),
            prompt_text: cfg.prompt.clone(),
            prompt_tokens: tokens.len() * cfg.batch,
            prompt_token_ids: vec![tokens.to_vec(); cfg.batch],
            batch: cfg.batch,
            top_n: 5,
            footprint: Default::default(),
            started_unix_s: crate::session::unix_now(),
        },
    );
    let recorder = Recorder::new(run, meter.sampler)
        .with_sink(JsonlTrace::create(&dir.join(format!("run{i}.jsonl")))?)
        .with_sink(CsvTrace::create(&dir.join(format!("run{i}.csv")))?);
    let mut timed = Timed {
        inner: recorder,
        decode_s: 0.0,
        decode_cpu_s: 0.0,
    };
    let end = generate(loaded, tokens, cfg.batch, opts, &mut timed)?;
    let n = (end.generated_tokens - cfg.batch) as f64;
    r.sink_ms.push(timed.decode_s * 1e3 / n);
    r.sink_cpu_ms.push(timed.decode_cpu_s * 1e3 / n);
    r.summaries.extend(
        timed
            .inner
            .summary()
            .cloned()
            .map(|s| (s, timed.inner.run_record().clone())),
    );
    Ok(end)
}

/// One untraced run: no sink work at all; the meter runs beside the engine and the decode
/// window's energy is read off its timeline afterwards.
fn untraced_run(
    loaded: &mut Loaded,
    cfg: &BenchConfig,
    tokens: &[u32],
    opts: &GenerateOptions,
    r: &mut Rounds,
) -> anyhow::Result<RunEnd> {
    let meter = MeterSession::start(&cfg.meter, &loaded.device)?;
    let idle_power_w = meter.measure_idle(loaded.idle_seconds(cfg.idle_seconds));
    let mut mark = StartMark(None);
    let end = generate(loaded, tokens, cfg.batch, opts, &mut mark)?;
    if let Some(at) = mark.0 {
        r.untraced
            .extend(untraced_energy(&meter, at, &end, cfg.batch, idle_power_w));
    }
    Ok(end)
}

/// The report from the rounds' figures (and, on the CPU, the bandwidth roofline).
fn report(
    loaded: &Loaded,
    threads: usize,
    cfg: &BenchConfig,
    prompt_tokens: usize,
    r: Rounds,
) -> BenchReport {
    let info = loaded.engine.info();
    let off = Rates::of(r.off_decode, r.off_prefill);
    let on = Rates::of(r.on_decode, r.on_prefill);
    let tracing_ms_per_token = median(&r.sink_ms);
    let roofline = (!loaded.on_gpu()).then(|| {
        let bw = crate::bandwidth::read_bandwidth(threads);
        // The cache holds prompt + i positions at decode step i: on average prompt + n/2,
        // per row; a step's weights are read once for all its rows.
        let per_position = loaded.engine.batch_memory(1, 1, 0).0 as f64;
        let per_row = r.generated as f64 / cfg.batch as f64;
        let kv = per_position * (prompt_tokens as f64 + per_row / 2.0);
        let bytes = info.weight_bytes_per_token as f64 / cfg.batch as f64 + kv;
        Roofline {
            read_bandwidth_bytes_per_s: bw,
            bytes_per_token: bytes,
            kv_bytes_per_token_mean: kv,
            roofline_tokens_per_s: bw / bytes,
            fraction_tracing_off: off.decode_tokens_per_s_median * bytes / bw,
        }
    });
    BenchReport {
        engine: "landauer".into(),
        landauer_version: env!("CARGO_PKG_VERSION").into(),
        model: info.name.clone().unwrap_or_default(),
        model_sha256: loaded.sha256.clone(),
        quantization: info.quantization.clone(),
        parameters: info.parameters,
        synthetic: info.synthetic,
        weight_bytes_per_token: info.weight_bytes_per_token,
        device: loaded.device.label.clone(),
        device_name: loaded.device.name.clone(),
        energy: energy_stats(&r.summaries, &r.untraced),
        threads,
        kv_cache: loaded.engine.kv_dtype().name().into(),
        sampled_on: loaded.engine.sampled_on().name().into(),
        slow_tensors: loaded.slow_tensor_records(),
        prompt_tokens,
        generated_tokens: r.generated,
        batch: cfg.batch,
        runs: cfg.runs,
        tracing_overhead: off.decode_tokens_per_s_median / on.decode_tokens_per_s_median - 1.0,
        tracing_overhead_paired: paired_excess(&off.decode_tokens_per_s, &on.decode_tokens_per_s),
        tracing_ms_per_token,
        tracing_cpu_ms_per_token: median(&r.sink_cpu_ms),
        tracing_cost_fraction: tracing_ms_per_token * 1e-3 * off.decode_tokens_per_s_median,
        tracing_off: off,
        tracing_on: on,
        roofline,
        entropy_error_vs_exact: None,
    }
}
