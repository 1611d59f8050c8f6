//! Arguments shared by several commands, and their conversion into the libraries' settings.

use clap::{Args, ValueEnum};
use std::path::PathBuf;

impl MeterArg {
    pub fn choice(self) -> landauer_meter::MeterChoice {
        use landauer_meter::MeterChoice as C;
        match self {
            MeterArg::Auto => C::Auto,
            MeterArg::Nvml => C::Nvml,
            MeterArg::Rapl => C::Rapl,
            MeterArg::Estimate => C::Estimate,
            MeterArg::None => C::None,
        }
    }
}

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
pub enum MeterArg {
    /// RAPL where readable, else the labeled CPU-time estimate (CPU runs).
    Auto,
    /// NVIDIA GPUs' energy counters (needs the NVIDIA driver).
    Nvml,
    Rapl,
    Estimate,
    None,
}

/// Model selection, shared by every subcommand that loads one.
#[derive(Args, Clone)]
pub struct ModelArgs {
    /// A local .gguf file, a Hugging Face checkpoint directory (config.json, tokenizer.json,
    /// *.safetensors in F32, F16 or BF16), a hub `owner/repo:file.gguf` or checkpoint
    /// `owner/repo`, or `synthetic:ARCH[:QUANT]` (real
    /// shapes, random weights: smollm2-135m, llama-3.2-1b, llama-3.1-8b, qwen2.5-7b, ...;
    /// QUANT q4_k_m, q4_0, q8_0, f16 (llama-quantize's mixes), q4_k, q5_k (one type), ...);
    /// the default model when omitted.
    #[arg(long, short = 'm')]
    pub model: Option<String>,
    /// A Hugging Face tokenizer.json to use instead of the GGUF's embedded vocabulary.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// CPU threads (default: all cores).
    #[arg(long, short = 't')]
    pub threads: Option<usize>,
    /// Where the model runs: cpu, cuda or cuda:N (CUDA needs a build with --features cuda).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// How landauer's CPU forward pass stores its KV cache: f16 (llama.cpp's default; half the
    /// bytes attention reads) or f32 (the projections' values exactly). GPUs and
    /// candle-transformers' models keep f32 (a note says so when this asks otherwise).
    /// [default: f16 on the CPU]
    #[arg(long = "kv-cache", value_name = "TYPE")]
    pub kv_cache: Option<String>,
    /// Quantize the weights at load (from a checkpoint's F32/F16/BF16 or a GGUF file) with
    /// llama-quantize's rules for a file type: q4_k_m, q5_k_m, q6_k, q8_0, q4_0, q4_k_s, q3_k_m,
    /// q2_k, ..., f16, f32; the trace records each tensor class's type and the bits per weight.
    #[arg(long, value_name = "FORMAT")]
    pub quantize: Option<String>,
    /// With --quantize, also write the quantized model as a GGUF file (llama.cpp loads it).
    #[arg(long = "save-gguf", value_name = "FILE", requires = "quantize")]
    pub save_gguf: Option<PathBuf>,
    /// Exact mode: every weight matrix dequantized to F32 and f32 activations and KV cache
    /// (landauer's fast kernels round activations to 8 bits), so that each token's entropy
    /// and surprisal are the model's own. Slow, and 32 bits a weight in memory.
    #[arg(long, conflicts_with = "quantize")]
    pub exact: bool,
    /// Where each step's logits become the token, its entropy, surprisal and top-N: host
    /// (every row's logits copied there each step), device (reduced where they are: only
    /// per-row figures and a few candidates copied) or auto (device on GPUs, host on the CPU)
    #[arg(long = "sample-on", value_name = "WHERE", default_value = "auto")]
    pub sample_on: String,
}

/// Which GPUs the NVML meter counts, and how often meters are polled.
#[derive(Args, Clone, Default)]
pub struct GpuArgs {
    /// Poll the meter every MS milliseconds (default: 2 for NVML, 10 for RAPL and the
    /// estimate). NVML reads cost CPU: at 2 ms the sampler thread keeps most of a core busy.
    #[arg(long = "meter-interval-ms", value_name = "MS")]
    pub meter_interval_ms: Option<f64>,
    /// GPUs whose energy is counted (NVML): indices, UUIDs (GPU-...) or PCI bus ids, comma
    /// separated. Default: the GPU a CUDA run is on (matched by PCI bus id), else all GPUs.
    #[arg(long = "gpu", value_delimiter = ',', value_name = "GPU")]
    pub gpus: Vec<String>,
}

/// The grid behind the money and carbon figures (generate, sweep, gap, report).
#[derive(Args, Clone, Default)]
pub struct FootprintArgs {
    /// Grid carbon intensity in grams of CO2 per kWh, for the grams of CO2 per million
    /// tokens [default: 436, the world average of 2022, Ember Global Electricity Review 2023]
    #[arg(long = "grid-gco2-per-kwh", value_name = "GRAMS")]
    pub grid_gco2_per_kwh: Option<f64>,
    /// Electricity price per kWh, for the cost per million tokens (any currency; the figures
    /// come out in it) [default: 0.13 US dollars, the US commercial average of 2023, EIA]
    #[arg(long = "price-per-kwh", value_name = "PRICE")]
    pub price_per_kwh: Option<f64>,
}

impl FootprintArgs {
    /// The flags as the reports' plain overrides.
    pub fn overrides(&self) -> landauer_reports::ladder::FootprintOverrides {
        landauer_reports::ladder::FootprintOverrides {
            grid_gco2_per_kwh: self.grid_gco2_per_kwh,
            price_per_kwh: self.price_per_kwh,
        }
    }

    /// The flags over `base` (the defaults, or what a trace recorded), checked.
    pub fn over(
        &self,
        base: landauer_physics::footprint::Footprint,
    ) -> anyhow::Result<landauer_physics::footprint::Footprint> {
        self.overrides().over(base)
    }
}

/// Sampling settings, shared by generate and bench.
#[derive(Args, Clone)]
pub struct SamplingArgs {
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f64,
    /// Keep only the K most likely tokens.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Keep the most likely tokens up to cumulative probability P (nucleus sampling).
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Random seed (same seed, same text); a random one is drawn and recorded when omitted.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Always take the most likely token (same as --temperature 0).
    #[arg(long)]
    pub greedy: bool,
}

impl GpuArgs {
    /// The polling interval asked for, checked.
    pub fn interval(&self) -> anyhow::Result<Option<std::time::Duration>> {
        match self.meter_interval_ms {
            None => Ok(None),
            Some(ms) if ms.is_finite() && (0.1..=10_000.0).contains(&ms) => {
                Ok(Some(std::time::Duration::from_secs_f64(ms / 1e3)))
            }
            Some(ms) => {
                anyhow::bail!("--meter-interval-ms must be between 0.1 and 10000, got {ms}")
            }
        }
    }
}

pub fn set_threads(threads: Option<usize>) -> anyhow::Result<usize> {
    if let Some(n) = threads {
        if n == 0 {
            anyhow::bail!("--threads must be at least 1");
        }
        // candle sizes its CPU thread pool from RAYON_NUM_THREADS on first use; nothing has
        // started a thread yet.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    Ok(candle_threads())
}

fn candle_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

impl ModelArgs {
    /// The model to load, checked; `batched` asks for landauer's batched forward pass.
    pub fn options(&self, batched: bool) -> anyhow::Result<landauer_studies::ModelOptions> {
        use std::io::IsTerminal;
        let kv_cache = self
            .kv_cache
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--kv-cache: {e}"))?;
        if let Some(q) = &self.quantize {
            landauer_engine::quantize::parse(q).map_err(|e| anyhow::anyhow!("--quantize: {e}"))?;
        }
        let sample_on = self
            .sample_on
            .parse()
            .map_err(|e| anyhow::anyhow!("--sample-on: {e}"))?;
        Ok(landauer_studies::ModelOptions {
            model: self.model.clone(),
            tokenizer: self.tokenizer.clone(),
            device: self.device.clone(),
            kv_cache,
            batched,
            progress: std::io::stderr().is_terminal(),
            quantize: self.quantize.clone(),
            save_gguf: self.save_gguf.clone(),
            exact: self.exact,
            sample_on,
        })
    }
}

impl GpuArgs {
    /// The meter to poll, with the GPUs and interval asked for.
    pub fn meter(
        &self,
        choice: MeterArg,
        cpu_watts_per_core: f64,
    ) -> anyhow::Result<landauer_studies::MeterOptions> {
        Ok(landauer_studies::MeterOptions {
            choice: choice.choice(),
            cpu_watts_per_core,
            gpus: self.gpus.clone(),
            interval: self.interval()?,
        })
    }
}
