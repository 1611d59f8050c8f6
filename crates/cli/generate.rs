//! `landauer generate`.

use crate::{GenerateArgs, ModelArgs, SamplingArgs};
use anyhow::Context;
use landauer_engine::device::{device_info, open_device, DeviceInfo};
use landauer_engine::fetch::{self, ModelSpec};
use landauer_engine::synthetic::SyntheticSpec;
use landauer_engine::{
    Engine, GenerateOptions, RunEnd, RunStart, SamplingParams, SinkError, TokenEvent, TokenSink,
};
use landauer_meter::sampler::MeterSampler;
use landauer_meter::{open_meter, MeterChoice, MeterRequest, OpenedMeter};
use landauer_trace::{CsvTrace, JsonlTrace, Recorder, RunRecord, SamplingRecord, TerminalPrinter};
use std::io::IsTerminal;
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Passes a batch's events on and keeps each row's text.
struct RowTexts<'a, S> {
    inner: &'a mut S,
    texts: Vec<String>,
}

impl<S: TokenSink> TokenSink for RowTexts<'_, S> {
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

/// A loaded model and where it came from.
pub struct Loaded {
    pub engine: Engine,
    /// The file, or `synthetic:ARCH:QUANT`.
    pub model_path: String,
    /// The file's sha256 (empty for synthetic models).
    pub sha256: String,
    pub device: DeviceInfo,
}

/// Opens the device and loads the model a `--model` argument names (fetching the default
/// if needed, building a synthetic one in place).
pub fn load_engine(args: &ModelArgs) -> anyhow::Result<Loaded> {
    load_engine_with(args, false)
}

/// Applies an explicit `--kv-cache`; when the model cannot store that type (a GPU, or
/// candle-transformers' forward pass), says so on stderr and keeps the one it has.
fn set_kv_cache(engine: &mut Engine, asked: Option<landauer_engine::KvDtype>) {
    if let Some(dtype) = asked {
        if !engine.set_kv_dtype(dtype) {
            eprintln!(
                "landauer: note: --kv-cache {} applies to landauer's CPU forward pass; this model keeps an {} cache",
                dtype.name(),
                engine.kv_dtype().name()
            );
        }
    }
}

/// The engine's slow-path tensors as trace records.
pub fn slow_tensor_records(engine: &Engine) -> Vec<landauer_trace::SlowTensorRecord> {
    engine
        .slow_tensors()
        .into_iter()
        .map(|t| landauer_trace::SlowTensorRecord {
            name: t.name,
            dtype: t.dtype,
        })
        .collect()
}

/// Says once, on stderr, which weight matrices run on candle's CPU kernels rather than
/// landauer's (the slow path).
fn note_slow_path(engine: &Engine) {
    if let Some(line) = landauer_engine::slow_path_summary(&engine.slow_tensors()) {
        eprintln!("landauer: note: {line}");
    }
}

/// Like [`load_engine`]; `batched` loads landauer's batched forward pass.
pub fn load_engine_with(args: &ModelArgs, batched: bool) -> anyhow::Result<Loaded> {
    let kv_cache: Option<landauer_engine::KvDtype> = args
        .kv_cache
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--kv-cache: {e}"))?;
    let device = open_device(&args.device)?;
    let info = device_info(&device);
    let progress = std::io::stderr().is_terminal();
    if let Some(m) = args
        .model
        .as_deref()
        .filter(|m| SyntheticSpec::is_synthetic(m))
    {
        let spec = SyntheticSpec::parse(m)?;
        if args.tokenizer.is_some() {
            anyhow::bail!("--tokenizer cannot be used with a synthetic model (it has its own)");
        }
        eprintln!(
            "landauer: building {} ({:.2}B parameters, random weights) on {}",
            spec.label(),
            spec.arch.parameters() as f64 / 1e9,
            info.label
        );
        let t = std::time::Instant::now();
        let mut engine = if batched {
            Engine::synthetic_batched(&spec, &device)?
        } else {
            Engine::synthetic(&spec, &device)?
        };
        set_kv_cache(&mut engine, kv_cache);
        note_slow_path(&engine);
        eprintln!(
            "landauer: built in {:.1} s; its entropy is meaningless (random weights), its energy and speed are real",
            t.elapsed().as_secs_f64()
        );
        return Ok(Loaded {
            engine,
            model_path: spec.label(),
            sha256: String::new(),
            device: info,
        });
    }
    let spec = ModelSpec::parse(args.model.as_deref());
    let resolved = fetch::resolve(&spec, progress)?;
    let sha256 = match resolved.sha256 {
        Some(s) => s,
        None => fetch::sha256_file(&resolved.path, progress)?,
    };
    let mut engine = if batched {
        Engine::load_batched(&resolved.path, args.tokenizer.as_deref(), &device)?
    } else {
        Engine::load(&resolved.path, args.tokenizer.as_deref(), &device)?
    };
    set_kv_cache(&mut engine, kv_cache);
    note_slow_path(&engine);
    Ok(Loaded {
        engine,
        model_path: resolved.path.display().to_string(),
        sha256,
        device: info,
    })
}

/// What to ask `open_meter` for on this device.
pub fn meter_request(
    choice: MeterChoice,
    cpu_watts: f64,
    gpus: &[String],
    device: &DeviceInfo,
) -> MeterRequest {
    MeterRequest {
        choice,
        cpu_watts_per_core: cpu_watts,
        gpus: gpus.to_vec(),
        cuda_pci_bus_id: device
            .label
            .starts_with("cuda")
            .then(|| device.pci_bus_id.clone().unwrap_or_default()),
    }
}

/// The meter's sampler thread, started, with the counter's probed update period.
pub fn start_sampler(
    opened: &mut OpenedMeter,
    interval: Option<std::time::Duration>,
) -> (Option<MeterSampler>, Option<f64>) {
    match opened.meter.take() {
        Some(m) => {
            let interval = interval.unwrap_or_else(|| m.default_interval());
            let s = MeterSampler::start(m, interval);
            let resolution = s.probe_resolution(3, std::time::Duration::from_millis(500));
            (Some(s), resolution)
        }
        None => (None, None),
    }
}

/// Name, description and whether it estimates, of the meter a sampler polls.
pub fn meter_info(sampler: &Option<MeterSampler>) -> (String, String, bool) {
    match sampler {
        Some(s) => (
            s.info().name.clone(),
            s.info().description.clone(),
            s.info().estimated,
        ),
        None => ("none".into(), "energy not measured".into(), false),
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

pub fn run(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let threads = crate::set_threads(args.model.threads)?;
    // A batch: every line of --prompts, decoded together.
    let batch: Option<Vec<String>> = match &args.prompts {
        Some(p) => Some(crate::sweep::read_prompts(&Some(p.clone()))?),
        None => None,
    };
    let prompt = match &batch {
        Some(rows) => rows.join("\n"),
        None => args
            .prompt_arg
            .clone()
            .or(args.prompt.clone())
            .context("no prompt given; run e.g. `landauer generate \"Once upon a time\"`")?,
    };
    if args.max_tokens == 0 {
        anyhow::bail!("--max-tokens must be at least 1");
    }
    if !(args.kelvin.is_finite() && args.kelvin > 0.0) {
        anyhow::bail!(
            "--kelvin must be a positive temperature, got {}",
            args.kelvin
        );
    }
    let footprint = args.footprint.over(Default::default())?;
    if let Some(idle) = args.idle_seconds.filter(|s| !(s.is_finite() && *s >= 0.0)) {
        anyhow::bail!("--idle-seconds must be 0 or more, got {idle}");
    }
    if !(args.cpu_watts.is_finite() && args.cpu_watts > 0.0) {
        anyhow::bail!("--cpu-watts must be positive, got {}", args.cpu_watts);
    }
    let sampling = sampling_params(&args.sampling);
    sampling.validate()?;

    // Open the output files first: an unwritable path fails before any work is done.
    let jsonl = args.trace.as_deref().map(JsonlTrace::create).transpose()?;
    let csv = args.csv.as_deref().map(CsvTrace::create).transpose()?;

    let Loaded {
        mut engine,
        model_path,
        sha256,
        device,
    } = load_engine_with(&args.model, batch.is_some())?;
    let on_gpu = device.label.starts_with("cuda");
    let idle_seconds = args.idle_seconds.unwrap_or(if on_gpu { 2.0 } else { 0.0 });
    let mut opened = open_meter(&meter_request(
        args.meter.choice(),
        args.cpu_watts,
        &args.gpu.gpus,
        &device,
    ))?;

    let row_prompts = batch.clone().unwrap_or_else(|| vec![prompt.clone()]);
    let row_texts: Vec<String> = row_prompts
        .iter()
        .map(|p| {
            if args.chat {
                engine.chat_prompt(args.system.as_deref(), p, args.jinja)
            } else {
                Ok(p.clone())
            }
        })
        .collect::<Result<_, _>>()?;
    let prompt_text = row_texts.join("\n");
    let rows: Vec<Vec<u32>> = row_texts
        .iter()
        .map(|t| engine.encode(t))
        .collect::<Result<_, _>>()?;
    let info = engine.info().clone();
    let (sampler, meter_resolution_s) = start_sampler(&mut opened, args.gpu.interval()?);
    let (meter_name, meter_description, estimated) = meter_info(&sampler);
    let idle_power_w = match (&sampler, idle_seconds) {
        (Some(s), secs) if secs > 0.0 => {
            eprintln!("landauer: measuring idle power for {secs} s");
            s.measure_idle(secs)
        }
        _ => None,
    };
    let run = RunRecord {
        landauer_version: env!("CARGO_PKG_VERSION").into(),
        model: info.name.clone().unwrap_or_else(|| {
            std::path::Path::new(&model_path)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        }),
        model_path,
        model_sha256: sha256,
        architecture: info.architecture.clone(),
        quantization: info.quantization.clone(),
        parameters: info.parameters,
        shape: info.shape.clone(),
        synthetic: info.synthetic,
        context_length: engine.context_length(),
        device: device.label.clone(),
        device_name: device.name.clone(),
        device_pci_bus_id: device.pci_bus_id.clone(),
        threads,
        kv_cache: Some(engine.kv_dtype().name().into()),
        slow_tensors: slow_tensor_records(&engine),
        meter: meter_name,
        meter_description,
        meter_reason: opened.reason.clone(),
        meter_resolution_s,
        meter_interval_s: sampler.as_ref().map(|s| s.interval().as_secs_f64()),
        idle_seconds,
        idle_power_w,
        estimated,
        kelvin: args.kelvin,
        landauer_j_per_bit: landauer_physics::landauer_joules_per_bit(args.kelvin),
        sampling: SamplingRecord {
            temperature: sampling.temperature,
            top_k: sampling.top_k,
            top_p: sampling.top_p,
            seed: sampling.seed,
            greedy: sampling.is_greedy(),
        },
        max_tokens: args.max_tokens,
        chat: args.chat,
        prompt,
        prompt_text,
        prompt_tokens: rows.iter().map(Vec::len).sum(),
        batch: rows.len(),
        top_n: args.top_n,
        footprint,
        started_unix_s: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0),
    };

    let text_out: Box<dyn std::io::Write> = if batch.is_some() {
        // Rows' tokens interleave step by step: each row's text is printed at the end.
        Box::new(std::io::sink())
    } else if args.json {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let mut recorder = Recorder::new(run, sampler).with_sink(TerminalPrinter::new(
        text_out,
        Box::new(std::io::stderr()),
        !args.quiet && !args.json,
    ));
    if let Some(j) = jsonl {
        recorder = recorder.with_sink(j);
    }
    if let Some(c) = csv {
        recorder = recorder.with_sink(c);
    }

    // Ctrl-C stops generation after the current token; the summary is still written.
    // A second Ctrl-C exits at once (every trace line is already flushed).
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let _ = ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        });
    }
    let opts = GenerateOptions {
        max_tokens: args.max_tokens,
        sampling,
        ignore_eos: args.ignore_eos,
        stop: Some(stop.clone()),
        stats_rows: usize::MAX,
    };
    let end = if batch.is_some() {
        let mut rows_sink = RowTexts {
            inner: &mut recorder,
            texts: vec![String::new(); rows.len()],
        };
        let end = engine.generate_batch(&rows, &opts, &mut rows_sink)?;
        let mut out: Box<dyn std::io::Write> = if args.json {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::io::stdout())
        };
        for (r, text) in rows_sink.texts.iter().enumerate() {
            writeln!(out, "--- row {r}: {}\n{text}", row_prompts[r])?;
        }
        end
    } else {
        engine.generate(&rows[0], &opts, &mut recorder)?
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
