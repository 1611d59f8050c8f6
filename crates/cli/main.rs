//! `landauer`: generate text with a per-token entropy and energy trace.

mod bench;
mod gap;
mod generate;
mod meters;
mod report;
mod sweep;
mod synthetic_gguf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "landauer",
    version,
    about = "Generate text and measure the energy and information of every token"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text, streaming it with a per-token entropy and energy trace.
    Generate(GenerateArgs),
    /// Download the default model into the cache and verify its sha256.
    Fetch,
    /// Benchmark decode speed with tracing on and off (medians of several runs).
    Bench(bench::BenchArgs),
    /// List the energy meters on this machine and probe each: resolution, idle power, cost.
    Meters(meters::MetersArgs),
    /// Measure decode speed and energy per token against batch size (JSON, CSV and SVG).
    Sweep(sweep::SweepArgs),
    /// The ladder: measured J/token, the roofline energy floor of the model on its
    /// hardware, and the Landauer yardstick of its bits, with the ratios between them.
    Gap(gap::GapArgs),
    /// Write one self-contained HTML report (inline SVG figures) for a trace or a sweep.
    Report(report::ReportArgs),
    /// Write a synthetic model (real shapes, random weights) as a GGUF file that llama.cpp
    /// and landauer both load, with llama-quantize's type mix and optionally a real tokenizer.
    SyntheticGguf(synthetic_gguf::SyntheticGgufArgs),
}

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
    /// A local .gguf file, a hub `owner/repo:file.gguf`, or `synthetic:ARCH[:QUANT]` (real
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(args) => generate::run(args),
        Command::Fetch => fetch(),
        Command::Bench(args) => bench::run(args),
        Command::Meters(args) => meters::run(args),
        Command::Sweep(args) => sweep::run(args),
        Command::Gap(args) => gap::run(args),
        Command::Report(args) => report::run(args),
        Command::SyntheticGguf(args) => synthetic_gguf::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // One line: what is wrong and what to do.
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("landauer: error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn fetch() -> anyhow::Result<ExitCode> {
    let m = landauer_engine::fetch::Manifest::default_model();
    let path = landauer_engine::fetch::ensure_default_model(&m, true)?;
    eprintln!(
        "landauer: {} {} ({}) verified (sha256 {})",
        m.name, m.quantization, m.license, m.sha256
    );
    println!("{}", path.display());
    Ok(ExitCode::SUCCESS)
}
