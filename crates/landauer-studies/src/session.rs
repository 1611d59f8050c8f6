//! What every study and command sets up first: the model on its device, and a meter polled
//! beside it.

use crate::Observer;
use landauer_engine::device::{device_info, open_device, DeviceInfo};
use landauer_engine::fetch::{self, ModelSpec};
use landauer_engine::synthetic::SyntheticSpec;
use landauer_engine::{Engine, Forward, KvDtype, RunEnd, SamplingPlace};
use landauer_meter::attribution::WindowEnergy;
use landauer_meter::sampler::MeterSampler;
use landauer_meter::{open_meter, MeterChoice, MeterRequest, OpenedMeter};
use landauer_trace::{RunRecord, SamplingRecord, SlowTensorRecord};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Which model to load, and how.
#[derive(Debug, Clone)]
pub struct ModelOptions {
    /// A local .gguf file, a hub `owner/repo:file.gguf`, `synthetic:ARCH[:QUANT]`, or None
    /// for the default model (fetched into the cache if needed).
    pub model: Option<String>,
    /// A Hugging Face tokenizer.json to use instead of the GGUF's vocabulary.
    pub tokenizer: Option<PathBuf>,
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// The KV cache's type, where the forward pass can store it (None: its default).
    pub kv_cache: Option<KvDtype>,
    /// landauer's batched forward pass (batches of prompts), not candle-transformers'.
    pub batched: bool,
    /// Draw progress bars while downloading or hashing a file.
    pub progress: bool,
    /// Quantize the weights at load with this `llama-quantize` preset (`q4_k_m`, `q8_0`,
    /// ...; see [`landauer_engine::quantize`]).
    pub quantize: Option<String>,
    /// With `quantize`, also write the quantized model as a GGUF file.
    pub save_gguf: Option<PathBuf>,
    /// Exact mode: every matrix dequantized to F32, f32 activations and KV cache (see
    /// [`Engine::load_exact`]).
    pub exact: bool,
    /// Where each step's logits become tokens and statistics (Auto: the device on GPUs).
    pub sample_on: SamplingPlace,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            model: None,
            tokenizer: None,
            device: "cpu".into(),
            kv_cache: None,
            batched: false,
            progress: false,
            quantize: None,
            save_gguf: None,
            exact: false,
            sample_on: SamplingPlace::Auto,
        }
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

impl Loaded {
    /// Opens the device and loads the model `opts` names (fetching the default if needed,
    /// building a synthetic one in place). Notes (the slow path, a synthetic build) go to
    /// the observer.
    pub fn load(opts: &ModelOptions, obs: &mut dyn Observer) -> anyhow::Result<Loaded> {
        let device = open_device(&opts.device)?;
        let info = device_info(&device);
        if let Some(m) = opts
            .model
            .as_deref()
            .filter(|m| SyntheticSpec::is_synthetic(m))
        {
            let spec = SyntheticSpec::parse(m)?;
            if opts.exact {
                anyhow::bail!(
                    "--exact does not apply to a synthetic model (its entropy is meaningless)"
                );
            }
            if opts.quantize.is_some() {
                anyhow::bail!(
                    "--quantize does not apply to a synthetic model; name the type in it (synthetic:ARCH:QUANT)"
                );
            }
            if opts.tokenizer.is_some() {
                anyhow::bail!("--tokenizer cannot be used with a synthetic model (it has its own)");
            }
            obs.note(&format!(
                "building {} ({:.2}B parameters, random weights) on {}",
                spec.label(),
                spec.arch.parameters() as f64 / 1e9,
                info.label
            ));
            let t = std::time::Instant::now();
            let mut engine = if opts.batched {
                Engine::synthetic_batched(&spec, &device)?
            } else {
                Engine::synthetic(&spec, &device)?
            };
            set_kv_cache(&mut engine, opts.kv_cache, obs);
            engine.set_sampling_place(opts.sample_on);
            note_slow_path(&engine, obs);
            obs.note(&format!(
                "built in {:.1} s; its entropy is meaningless (random weights), its energy and speed are real",
                t.elapsed().as_secs_f64()
            ));
            return Ok(Loaded {
                engine,
                model_path: spec.label(),
                sha256: String::new(),
                device: info,
            });
        }
        let spec = ModelSpec::parse(opts.model.as_deref());
        let resolved = fetch::resolve(&spec, opts.progress)?;
        let sha256 = match resolved.sha256 {
            Some(s) => s,
            None => fetch::sha256_file(&resolved.path, opts.progress)?,
        };
        let forward = match opts.batched {
            true => Forward::Batched,
            false => Forward::Auto,
        };
        let mut engine = match &opts.quantize {
            _ if opts.exact && opts.quantize.is_some() => {
                anyhow::bail!("--exact runs the model as stored; quantize it first (--quantize ... --save-gguf FILE), then run FILE with --exact")
            }
            _ if opts.exact => {
                obs.note("exact mode: every matrix dequantized to F32, f32 activations and KV cache (slow; 32 bits a weight in memory)");
                Engine::load_exact(&resolved.path, opts.tokenizer.as_deref(), &device, forward)?
            }
            Some(preset) => {
                obs.note(&format!(
                    "quantizing {} to {preset} at load",
                    resolved.path.display()
                ));
                let t = std::time::Instant::now();
                let engine = Engine::load_quantized(
                    &resolved.path,
                    opts.tokenizer.as_deref(),
                    &device,
                    forward,
                    preset,
                    opts.save_gguf.as_deref(),
                    &mut |_, _| {},
                )?;
                obs.note(&format!(
                    "quantized in {:.1} s: {:.2} bits per weight (from {}){}",
                    t.elapsed().as_secs_f64(),
                    engine.info().bits_per_weight,
                    engine.info().quantized_from.as_deref().unwrap_or("?"),
                    opts.save_gguf
                        .as_ref()
                        .map(|p| format!("; saved as {}", p.display()))
                        .unwrap_or_default()
                ));
                engine
            }
            None => Engine::load_with(&resolved.path, opts.tokenizer.as_deref(), &device, forward)?,
        };
        set_kv_cache(&mut engine, opts.kv_cache, obs);
        engine.set_sampling_place(opts.sample_on);
        note_slow_path(&engine, obs);
        Ok(Loaded {
            engine,
            model_path: resolved.path.display().to_string(),
            sha256,
            device: info,
        })
    }

    /// Runs on a GPU.
    pub fn on_gpu(&self) -> bool {
        self.device.label.starts_with("cuda")
    }

    /// Seconds of idle power to measure before a run: as asked, else 2 on a GPU and 0 on
    /// the CPU (a CPU's idle draw is not separable from the rest of the machine's).
    pub fn idle_seconds(&self, asked: Option<f64>) -> f64 {
        asked.unwrap_or(if self.on_gpu() { 2.0 } else { 0.0 })
    }

    /// The engine's slow-path tensors as trace records.
    pub fn slow_tensor_records(&self) -> Vec<SlowTensorRecord> {
        self.engine
            .slow_tensors()
            .into_iter()
            .map(|t| SlowTensorRecord {
                name: t.name,
                dtype: t.dtype,
            })
            .collect()
    }
}

/// Applies an explicit KV cache type; when the model cannot store it (a GPU, or
/// candle-transformers' forward pass), says so and keeps the one it has.
fn set_kv_cache(engine: &mut Engine, asked: Option<KvDtype>, obs: &mut dyn Observer) {
    if let Some(dtype) = asked {
        if !engine.set_kv_dtype(dtype) {
            obs.note(&format!(
                "note: --kv-cache {} applies to landauer's CPU forward pass; this model keeps an {} cache",
                dtype.name(),
                engine.kv_dtype().name()
            ));
        }
    }
}

/// Says once which weight matrices run on candle's CPU kernels rather than landauer's.
fn note_slow_path(engine: &Engine, obs: &mut dyn Observer) {
    if let Some(line) = landauer_engine::slow_path_summary(&engine.slow_tensors()) {
        obs.note(&format!("note: {line}"));
    }
}

/// Which meter to poll, and how often.
#[derive(Debug, Clone)]
pub struct MeterOptions {
    pub choice: MeterChoice,
    /// Assumed watts per busy core for the CPU-time estimate.
    pub cpu_watts_per_core: f64,
    /// GPUs whose energy NVML counts (indices, UUIDs or PCI bus ids); empty: the GPU a CUDA
    /// run is on, else all.
    pub gpus: Vec<String>,
    /// Polling interval (None: the meter's default).
    pub interval: Option<Duration>,
}

impl Default for MeterOptions {
    fn default() -> Self {
        MeterOptions {
            choice: MeterChoice::Auto,
            cpu_watts_per_core: landauer_meter::DEFAULT_CPU_WATTS_PER_CORE,
            gpus: Vec::new(),
            interval: None,
        }
    }
}

impl MeterOptions {
    /// What to ask `open_meter` for on this device.
    pub fn request(&self, device: &DeviceInfo) -> MeterRequest {
        MeterRequest {
            choice: self.choice,
            cpu_watts_per_core: self.cpu_watts_per_core,
            gpus: self.gpus.clone(),
            cuda_pci_bus_id: device
                .label
                .starts_with("cuda")
                .then(|| device.pci_bus_id.clone().unwrap_or_default()),
        }
    }
}

/// A meter opened and polled by its sampler thread (or none: energy not measured).
pub struct MeterSession {
    pub sampler: Option<MeterSampler>,
    /// Why this meter (or none) was chosen.
    pub reason: String,
    /// The counter's probed update period, seconds.
    pub resolution_s: Option<f64>,
}

impl MeterSession {
    /// Opens the meter, starts its sampler and probes its update period.
    pub fn start(opts: &MeterOptions, device: &DeviceInfo) -> anyhow::Result<MeterSession> {
        let mut opened = open_meter(&opts.request(device))?;
        Ok(Self::started(&mut opened, opts.interval))
    }

    /// Starts the sampler of a meter opened earlier (`open_meter`) and probes its update
    /// period; `interval` None polls at the meter's default.
    pub fn started(opened: &mut OpenedMeter, interval: Option<Duration>) -> MeterSession {
        let (sampler, resolution_s) = match opened.meter.take() {
            Some(m) => {
                let interval = interval.unwrap_or_else(|| m.default_interval());
                let s = MeterSampler::start(m, interval);
                let resolution = s.probe_resolution(3, Duration::from_millis(500));
                (Some(s), resolution)
            }
            None => (None, None),
        };
        MeterSession {
            sampler,
            reason: opened.reason.clone(),
            resolution_s,
        }
    }

    /// Mean power over `seconds` of idling, watts (None without a meter or for 0 s).
    pub fn measure_idle(&self, seconds: f64) -> Option<f64> {
        match &self.sampler {
            Some(s) if seconds > 0.0 => s.measure_idle(seconds),
            _ => None,
        }
    }

    /// A run's prefill and decode windows on the meter's timeline (the decode window: from
    /// the prefill's end to the last step), read once the meter has samples past the run's
    /// end. None without a meter.
    pub fn run_windows(&self, at: Instant, end: &RunEnd) -> Option<RunWindows> {
        let s = self.sampler.as_ref()?;
        let offset = at.saturating_duration_since(s.epoch()).as_secs_f64();
        let (a, b) = (offset + end.prefill_s, offset + end.total_s);
        let tl = s.timeline_through(b, Duration::from_secs(1));
        Some(RunWindows {
            prefill_j: tl.window(offset, offset + end.prefill_s).joules,
            decode: tl.window(a, b),
            decode_s: b - a,
            counter_moved: tl.update_period().is_some(),
        })
    }

    /// The meter's name, description and whether it estimates.
    pub fn info(&self) -> (String, String, bool) {
        match &self.sampler {
            Some(s) => (
                s.info().name.clone(),
                s.info().description.clone(),
                s.info().estimated,
            ),
            None => ("none".into(), "energy not measured".into(), false),
        }
    }
}

/// The energy of a run's two windows.
#[derive(Debug, Clone, Copy)]
pub struct RunWindows {
    /// Joules of the prefill.
    pub prefill_j: f64,
    /// From the prefill's end to the last step.
    pub decode: WindowEnergy,
    /// The decode window's length on the meter's clock, seconds.
    pub decode_s: f64,
    /// The counter changed at least twice (it has an update period), so the windows are
    /// read off real updates.
    pub counter_moved: bool,
}

/// What a run record says about the run itself (the model, device and meter come from the
/// [`Loaded`] model and the [`MeterSession`]).
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// The model's name as recorded.
    pub model: String,
    pub context_length: usize,
    pub threads: usize,
    pub idle_seconds: f64,
    pub idle_power_w: Option<f64>,
    pub kelvin: f64,
    pub sampling: SamplingRecord,
    pub max_tokens: usize,
    pub chat: bool,
    pub prompt: String,
    pub prompt_text: String,
    pub prompt_tokens: usize,
    /// One list per row.
    pub prompt_token_ids: Vec<Vec<u32>>,
    pub batch: usize,
    pub top_n: usize,
    pub footprint: landauer_physics::footprint::Footprint,
    pub started_unix_s: f64,
}

/// The one way a run record is built, for generate and bench alike.
pub fn run_record(loaded: &Loaded, meter: &MeterSession, s: RunSettings) -> RunRecord {
    let info = loaded.engine.info();
    let (meter_name, meter_description, estimated) = meter.info();
    RunRecord {
        landauer_version: env!("CARGO_PKG_VERSION").into(),
        model: s.model,
        model_path: loaded.model_path.clone(),
        model_sha256: loaded.sha256.clone(),
        architecture: info.architecture.clone(),
        quantization: info.quantization.clone(),
        parameters: info.parameters,
        bits_per_weight: Some(info.bits_per_weight),
        tensor_types: info.tensor_types.clone(),
        quantize: info.quantize.clone(),
        quantized_from: info.quantized_from.clone(),
        exact: info.exact,
        shape: info.shape.clone(),
        synthetic: info.synthetic,
        context_length: s.context_length,
        device: loaded.device.label.clone(),
        device_name: loaded.device.name.clone(),
        device_pci_bus_id: loaded.device.pci_bus_id.clone(),
        threads: s.threads,
        kv_cache: Some(loaded.engine.kv_dtype().name().into()),
        sampled_on: Some(loaded.engine.sampled_on().name().into()),
        slow_tensors: loaded.slow_tensor_records(),
        meter: meter_name,
        meter_description,
        meter_reason: meter.reason.clone(),
        meter_resolution_s: meter.resolution_s,
        meter_interval_s: meter.sampler.as_ref().map(|s| s.interval().as_secs_f64()),
        idle_seconds: s.idle_seconds,
        idle_power_w: s.idle_power_w,
        estimated,
        kelvin: s.kelvin,
        landauer_j_per_bit: landauer_physics::landauer_joules_per_bit(s.kelvin),
        sampling: s.sampling,
        max_tokens: s.max_tokens,
        chat: s.chat,
        prompt: s.prompt,
        prompt_text: s.prompt_text,
        prompt_tokens: s.prompt_tokens,
        prompt_token_ids: s.prompt_token_ids,
        batch: s.batch,
        top_n: s.top_n,
        footprint: s.footprint,
        started_unix_s: s.started_unix_s,
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
