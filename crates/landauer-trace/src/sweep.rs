//! The sweep file (`sweep.json`): decode speed and energy per token against batch size.
//! One schema, written by the sweep runner and read back by `gap`, `report` and `--replot`.

use crate::SlowTensorRecord;
use landauer_physics::floor::ModelShape;
use landauer_physics::footprint::Footprint;
use serde::{Deserialize, Serialize};

/// One batch size, measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepRow {
    pub batch: usize,
    pub runs: usize,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub prefill_s: f64,
    pub prefill_tokens_per_s: f64,
    pub prefill_energy_j: Option<f64>,
    /// The decode window: from the prefill's end to the last step, every row busy.
    pub decode_window_s: f64,
    pub decode_tokens_per_s: f64,
    pub mean_power_w: Option<f64>,
    pub joules_per_token: Option<f64>,
    /// Minus idle power × time.
    pub active_joules_per_token: Option<f64>,
    pub tokens_per_wh: Option<f64>,
    /// Mean entropy of the sampling distributions, bits/token (over the first 16 rows).
    pub mean_entropy_bits: f64,
    pub bits_per_joule: Option<f64>,
    /// J/token over (mean bits × k_B T ln 2).
    pub landauer_gap: Option<f64>,
    /// False when the decode window is shorter than 2 s or than a few counter updates.
    pub steady: bool,
    /// kWh, grams of CO2 and cost of a million tokens at `joules_per_token` and the
    /// sweep's `footprint` (flat fields, so that sweep.csv has a column for each).
    #[serde(default)]
    pub kwh_per_million_tokens: Option<f64>,
    #[serde(default)]
    pub gco2_per_million_tokens: Option<f64>,
    #[serde(default)]
    pub cost_per_million_tokens: Option<f64>,
    /// GPU die temperature at the end of the decode window (median over the runs; null
    /// without a GPU meter), for the ladder's Landauer rung at the die's temperature.
    #[serde(default)]
    pub die_temperature_c: Option<f64>,
}

/// What a sweep file says besides its rows: the model, the machine and the meter.
/// Every field has a default, so that files written before a field existed still read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SweepHeader {
    pub model: String,
    pub quantization: String,
    pub parameters: u64,
    /// The model's shapes, for `landauer gap`'s roofline floor.
    pub shape: Option<ModelShape>,
    pub synthetic: bool,
    pub device: String,
    pub device_name: Option<String>,
    pub threads: usize,
    /// How the KV cache stored keys and values (`f16`, `f32`).
    pub kv_cache: String,
    /// Where each step was sampled: `host` or `device` (empty in files that predate it).
    #[serde(default)]
    pub sampled_on: String,
    /// Weight matrices that ran on candle's CPU kernels (the slow path): name and type.
    pub slow_tensors: Vec<SlowTensorRecord>,
    pub meter: String,
    pub meter_reason: String,
    pub estimated: bool,
    pub meter_resolution_s: Option<f64>,
    pub idle_power_w: Option<f64>,
    pub max_tokens: usize,
    /// Runs measured in rounds over the batch sizes (`--interleave`).
    pub interleaved: bool,
    pub kelvin: f64,
    /// The grid behind `per_million_tokens`.
    pub footprint: Footprint,
}

impl Default for SweepHeader {
    fn default() -> Self {
        SweepHeader {
            model: String::new(),
            quantization: String::new(),
            parameters: 0,
            shape: None,
            synthetic: false,
            device: String::new(),
            device_name: None,
            threads: 0,
            kv_cache: String::new(),
            sampled_on: String::new(),
            slow_tensors: Vec::new(),
            meter: String::new(),
            meter_reason: String::new(),
            estimated: false,
            meter_resolution_s: None,
            idle_power_w: None,
            max_tokens: 0,
            interleaved: false,
            kelvin: landauer_physics::DEFAULT_KELVIN,
            footprint: Footprint::default(),
        }
    }
}

impl SweepHeader {
    /// The sweep figure's title: "MODEL on DEVICE", marked when the energy is estimated.
    pub fn title(&self) -> String {
        sweep_title(
            &self.model,
            self.device_name.as_deref().unwrap_or(&self.device),
            self.estimated,
        )
    }
}

/// The sweep figure's title: "MODEL on DEVICE", marked when the energy is estimated.
pub fn sweep_title(model: &str, device: &str, estimated: bool) -> String {
    let est = if estimated { " (energy ESTIMATED)" } else { "" };
    format!("{model} on {device}{est}")
}

/// One batch size's measured runs, in the order they ran (with `interleaved`, run k of every
/// batch size belongs to round k, so that ratios between batch sizes can be taken round by
/// round, each between runs measured minutes apart at most).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepRuns {
    pub batch: usize,
    pub decode_tokens_per_s: Vec<f64>,
    /// When each run began, seconds after the first warm-up began.
    pub started_s: Vec<f64>,
}

/// A whole `sweep.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepFile {
    #[serde(default)]
    pub landauer_version: String,
    #[serde(flatten)]
    pub header: SweepHeader,
    /// How the figures were measured.
    #[serde(default)]
    pub method: String,
    #[serde(default)]
    pub caveats: Vec<String>,
    pub rows: Vec<SweepRow>,
    /// Every measured run's figure, for ratios taken run by run.
    #[serde(default)]
    pub runs: Vec<SweepRuns>,
}
