//! The study file (`study.json`): what each precision and size buys. One cell per model ×
//! quantization × batch size: speed and energy, and the quality the weights keep on a
//! reference text. Written by the study runner, read back by `report` and `gap`.

use landauer_physics::floor::ModelShape;
use landauer_physics::footprint::Footprint;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One model at one precision and batch size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StudyCell {
    pub model: String,
    /// The file, directory or `synthetic:` spec.
    pub model_path: String,
    /// The `--quantize` preset, or null for the model as stored.
    pub quantize: Option<String>,
    /// The type of most parameters (llama.cpp's spelling).
    pub quantization: String,
    pub bits_per_weight: f64,
    pub parameters: u64,
    /// Real shapes, random weights: the quality columns mean nothing.
    pub synthetic: bool,
    pub batch: usize,
    pub decode_tokens_per_s: f64,
    /// Decode-window J/token (median of the runs); null without a meter.
    pub joules_per_token: Option<f64>,
    pub tokens_per_wh: Option<f64>,
    /// The decode window lasted 2 s and several counter updates.
    pub steady: bool,
    /// Tokens of the reference text scored (teacher-forced).
    pub reference_tokens: usize,
    /// Mean −log2 p(next token) over the reference, bits per token.
    pub cross_entropy_bits: f64,
    /// 2^cross_entropy.
    pub perplexity: f64,
    /// Mean KL divergence, bits, from the same model's highest-precision cell (the
    /// `quality_reference`) to this one; 0 for that cell itself.
    pub kl_bits: Option<f64>,
    /// Fraction of positions where this cell's most likely token is the reference cell's.
    pub top1_agreement: Option<f64>,
    /// Which cell the KL and agreement are measured against (its `quantize`, or "as stored").
    pub quality_reference: Option<String>,
    /// Each tensor class's type.
    pub tensor_types: BTreeMap<String, String>,
    /// For the roofline floor (`gap`).
    pub shape: Option<ModelShape>,
    /// The default mode's per-token entropy error against exact mode (f32 activations) on the
    /// same reference tokens; null when not checked (a synthetic model, or not asked for).
    #[serde(default)]
    pub entropy_error_vs_exact: Option<EntropyError>,
}

/// A whole `study.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StudyFile {
    pub landauer_version: String,
    pub device: String,
    pub device_name: Option<String>,
    pub threads: usize,
    pub meter: String,
    pub estimated: bool,
    /// Tokens each row generates in the speed and energy runs.
    pub max_tokens: usize,
    pub runs: usize,
    /// The reference text's name.
    pub reference: String,
    pub kelvin: f64,
    pub footprint: Footprint,
    /// How the figures were measured.
    pub method: String,
    pub caveats: Vec<String>,
    pub cells: Vec<StudyCell>,
}

impl StudyFile {
    /// The study's figure titles: "on DEVICE", marked when the energy is estimated.
    pub fn title(&self) -> String {
        let est = if self.estimated {
            " (energy ESTIMATED)"
        } else {
            ""
        };
        format!(
            "precision and size on {}{est}",
            self.device_name.as_deref().unwrap_or(&self.device)
        )
    }
}

/// The entropy error of the default mode (8-bit activations in landauer's kernels) against
/// exact mode (f32 weights and activations), on the same tokens, bits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EntropyError {
    pub tokens: usize,
    pub mean_bits: f64,
    pub p95_bits: f64,
    pub max_bits: f64,
}

impl EntropyError {
    /// From pairs (default mode, exact mode) of entropies; None for no pairs.
    pub fn of(pairs: &[(f64, f64)]) -> Option<Self> {
        let mut d: Vec<f64> = pairs.iter().map(|(a, b)| (a - b).abs()).collect();
        if d.is_empty() {
            return None;
        }
        d.sort_by(f64::total_cmp);
        let n = d.len();
        Some(EntropyError {
            tokens: n,
            mean_bits: d.iter().sum::<f64>() / n as f64,
            p95_bits: d[((n as f64 * 0.95).ceil() as usize).clamp(1, n) - 1],
            max_bits: d[n - 1],
        })
    }
}
