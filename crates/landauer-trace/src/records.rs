//! The records a trace is made of: one run record, one per token, one summary.

use serde::{Deserialize, Serialize};

/// One line of a JSONL trace.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Record {
    Run(Box<RunRecord>),
    Token(Box<TokenRecord>),
    Summary(Box<SummaryRecord>),
}

/// Sampling settings as recorded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SamplingRecord {
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub seed: u64,
    pub greedy: bool,
}

/// A weight matrix that took the slow path.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SlowTensorRecord {
    pub name: String,
    /// llama.cpp's spelling of its type (`Q8_K`).
    #[serde(rename = "type")]
    pub dtype: String,
}

/// What was run, where, and how it was measured. First line of a trace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub landauer_version: String,
    /// Model name (`general.name`, else the file name).
    pub model: String,
    pub model_path: String,
    pub model_sha256: String,
    pub architecture: String,
    pub quantization: String,
    pub parameters: u64,
    /// Bits per weight of the matrices (null in traces that predate it).
    #[serde(default)]
    pub bits_per_weight: Option<f64>,
    /// The type of each class of matrix (`attn_q`, `ffn_down`, `output`, ...): one type, or
    /// the layers' types with their counts.
    #[serde(default)]
    pub tensor_types: std::collections::BTreeMap<String, String>,
    /// Quantized at load (`--quantize`): the preset, and the type the weights had before.
    #[serde(default)]
    pub quantize: Option<String>,
    #[serde(default)]
    pub quantized_from: Option<String>,
    /// Exact mode (`--exact`): f32 weights and activations, so that entropies are the
    /// model's own to f32 arithmetic; speed and energy are then not the model's.
    #[serde(default)]
    pub exact: bool,
    /// What a decode step moves and computes (weights, KV cache, FLOPs), for the roofline
    /// floor of `landauer gap`; null in traces that predate it.
    #[serde(default)]
    pub shape: Option<landauer_physics::floor::ModelShape>,
    /// A synthetic model (`synthetic:ARCH:QUANT`): real shapes, random weights. Energy and
    /// speed are real; entropy and surprisal are meaningless.
    #[serde(default)]
    pub synthetic: bool,
    pub context_length: usize,
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// The device's name (the GPU's, for CUDA), where known.
    #[serde(default)]
    pub device_name: Option<String>,
    /// The CUDA device's PCI bus id, by which the NVML meter was matched to it.
    #[serde(default)]
    pub device_pci_bus_id: Option<String>,
    pub threads: usize,
    /// How the KV cache stored keys and values (`f16`, `f32`); null in traces that predate
    /// it.
    #[serde(default)]
    pub kv_cache: Option<String>,
    /// Where each step's logits became tokens and statistics: `host` (copied there) or
    /// `device` (reduced where they were; a GPU's default); null in traces that predate it.
    #[serde(default)]
    pub sampled_on: Option<String>,
    /// Weight matrices that ran on candle's CPU kernels instead of landauer's (the slow path),
    /// by GGUF name and type: a figure never hides a fallback. Empty when every matrix had a
    /// landauer kernel (and on GPUs); absent in traces that predate it.
    #[serde(default)]
    pub slow_tensors: Vec<SlowTensorRecord>,
    /// Meter identifier (`rapl`, `cpu-time-estimate`, `none`).
    pub meter: String,
    /// What the meter measures, in words.
    pub meter_description: String,
    /// Why this meter was chosen.
    pub meter_reason: String,
    /// The counter's effective update period (median interval between changes of its value),
    /// seconds, probed before the run; null without a meter.
    pub meter_resolution_s: Option<f64>,
    /// How often the sampler thread polls the meter, seconds.
    pub meter_interval_s: Option<f64>,
    /// Seconds of idle measured before the run (0: none).
    pub idle_seconds: f64,
    /// Mean power over the idle measurement, watts.
    pub idle_power_w: Option<f64>,
    /// True when energy is a model, not a measurement.
    pub estimated: bool,
    pub kelvin: f64,
    /// k_B · T · ln 2 at `kelvin`, joules per bit.
    pub landauer_j_per_bit: f64,
    pub sampling: SamplingRecord,
    pub max_tokens: usize,
    pub chat: bool,
    /// The prompt as given by the user.
    /// The prompt; for a batch, every row's prompt, one per line.
    pub prompt: String,
    /// The text actually tokenized (after the chat template).
    pub prompt_text: String,
    pub prompt_tokens: usize,
    /// The prompt's token ids, one list per row of the batch, so that any engine with the
    /// same tokenizer vocabulary can replay the run token for token (the generated ids are
    /// in the token records). Empty in traces that predate it.
    #[serde(default)]
    pub prompt_token_ids: Vec<Vec<u32>>,
    /// Sequences decoded together (token records carry their row in `seq`).
    #[serde(default = "one")]
    pub batch: usize,
    pub top_n: usize,
    /// The grid's carbon intensity and price the money and carbon figures use (the
    /// documented defaults when the trace predates them or no flag was given).
    #[serde(default)]
    pub footprint: landauer_physics::footprint::Footprint,
    /// Seconds since the Unix epoch when the run started: the time zero of every token's
    /// `t_start_s` and `t_end_s`, so that another instrument's readings line up with them.
    pub started_unix_s: f64,
}

/// An alternative the model considered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Alternative {
    pub token_id: u32,
    pub text: String,
    pub prob: f64,
}

fn one() -> usize {
    1
}

/// One generated token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    pub seq: usize,
    pub index: usize,
    pub position: usize,
    pub token_id: u32,
    pub text: String,
    pub eos: bool,
    /// `prefill` for the first token (its distribution came from the prompt pass), else `decode`.
    pub phase: String,
    /// Entropy of the model's distribution at temperature 1, bits.
    pub entropy_bits: f64,
    /// Entropy of the distribution actually sampled from (temperature, top-k, top-p), bits.
    pub sampling_entropy_bits: f64,
    /// −log2 of `prob`.
    pub surprisal_bits: f64,
    /// Probability of the chosen token under the model at temperature 1.
    pub prob: f64,
    /// The most likely tokens at temperature 1, most likely first.
    pub top: Vec<Alternative>,
    pub t_start_s: f64,
    pub t_end_s: f64,
    /// Tokens produced in this token's step (batch rows; 1 for a single sequence): the
    /// step's window energy is shared equally among them.
    #[serde(default = "one")]
    pub step_tokens: usize,
    /// Energy attributed to this token (its window of the meter), joules; null without a meter.
    pub energy_j: Option<f64>,
    /// True when `energy_j` is an estimate, not a measurement.
    pub energy_estimated: bool,
    /// False when the token is shorter than one counter update: its energy is then a
    /// time-proportional share of that update, not a measurement of the token alone.
    pub energy_resolved: bool,
    /// True when a meter read failed during this token's window (energy interpolated across).
    pub meter_gap: bool,
    /// `entropy_bits` × k_B·T·ln 2, joules.
    pub landauer_j: f64,
    /// `energy_j` / `landauer_j`; null when either is missing or the bits are 0.
    pub landauer_gap: Option<f64>,
    /// GPU telemetry at the token's end (latest ~100 ms reading; null without a GPU meter):
    /// die temperature, SM and memory clocks, instantaneous board power.
    #[serde(default)]
    pub temperature_c: Option<f64>,
    #[serde(default)]
    pub sm_clock_mhz: Option<f64>,
    #[serde(default)]
    pub mem_clock_mhz: Option<f64>,
    #[serde(default)]
    pub power_instant_w: Option<f64>,
}

/// Energy of one part of a meter (one GPU, one RAPL domain) over the run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PartEnergy {
    pub name: String,
    /// This part's share of the counted energy, applied to `energy_j`.
    pub joules: f64,
    pub share: f64,
}

/// The run in numbers. Last line of a trace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SummaryRecord {
    /// Generated tokens.
    pub tokens: usize,
    pub prompt_tokens: usize,
    pub stop_reason: String,
    pub prefill_s: f64,
    pub prefill_tokens_per_s: Option<f64>,
    pub decode_s: f64,
    /// Tokens after the first, over the time after the prefill.
    pub decode_tokens_per_s: Option<f64>,
    pub wall_s: f64,
    /// Total energy of the run (prefill and decode), joules: the sum of the tokens' energies.
    pub energy_j: Option<f64>,
    /// `energy_j` minus idle power × run time (null without an idle measurement).
    pub active_energy_j: Option<f64>,
    pub idle_power_w: Option<f64>,
    pub prefill_energy_j: Option<f64>,
    pub decode_energy_j: Option<f64>,
    /// `energy_j` / `tokens`.
    pub joules_per_token: Option<f64>,
    /// `decode_energy_j` / decode tokens.
    pub decode_joules_per_token: Option<f64>,
    /// 3600 / `joules_per_token`.
    pub tokens_per_wh: Option<f64>,
    pub mean_power_w: Option<f64>,
    /// Length of the steady-state decode window (every token after the prefill), seconds.
    pub steady_window_s: f64,
    /// Decode J/token over the steady-state window, when it lasts at least 2 s (the
    /// ML.ENERGY method): the headline figure. Null for shorter runs (see `steady_note`).
    pub steady_joules_per_token: Option<f64>,
    pub steady_active_joules_per_token: Option<f64>,
    pub steady_note: String,
    pub mean_entropy_bits: f64,
    pub mean_sampling_entropy_bits: f64,
    pub mean_surprisal_bits: f64,
    pub total_entropy_bits: f64,
    /// `total_entropy_bits` / `energy_j`.
    pub bits_per_joule: Option<f64>,
    /// `total_entropy_bits` × k_B·T·ln 2, joules.
    pub landauer_j: f64,
    /// `energy_j` / `landauer_j`.
    pub landauer_gap: Option<f64>,
    pub meter: String,
    pub estimated: bool,
    /// The counter's update period measured over the whole run, seconds.
    pub meter_resolution_s: Option<f64>,
    /// Tokens shorter than one counter update (energy apportioned by time).
    pub unresolved_tokens: usize,
    /// Failed meter reads during the run (energy interpolated across them).
    pub meter_faults: usize,
    /// CPU time of the meter sampler thread, seconds, and as a fraction of the run.
    pub sampler_cpu_s: Option<f64>,
    pub sampler_cpu_fraction: Option<f64>,
    /// The energy split by GPU or RAPL domain (empty for single-part meters).
    #[serde(default)]
    pub energy_by_part: Vec<PartEnergy>,
    /// GPU telemetry over the run (null without a GPU meter).
    #[serde(default)]
    pub temperature_c_mean: Option<f64>,
    #[serde(default)]
    pub temperature_c_max: Option<f64>,
    #[serde(default)]
    pub sm_clock_mhz_mean: Option<f64>,
    #[serde(default)]
    pub power_instant_w_mean: Option<f64>,
    /// Energy, grams of CO2 and cost of a million tokens at `joules_per_token` (the whole
    /// run's energy over its tokens) and the run record's `footprint`.
    #[serde(default)]
    pub per_million_tokens: Option<landauer_physics::footprint::PerMillion>,
    /// What the reader must know before trusting the figures (estimated meter, synthetic
    /// model, short run).
    #[serde(default)]
    pub caveats: Vec<String>,
}
