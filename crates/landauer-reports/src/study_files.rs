//! A study's files: `study.json` (the whole [`StudyFile`]), `study.csv` (one line per cell)
//! and `study.svg` (the figure). Each exporter is a pure function to a string; [`write()`]
//! writes all three.

use anyhow::Context;
use landauer_trace::StudyFile;
use serde::Serialize;
use std::path::Path;

/// study.json: the file pretty-printed.
pub fn json(file: &StudyFile) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(file)?)
}

/// One line of study.csv: a cell's flat fields.
#[derive(Serialize)]
struct Line<'a> {
    model: &'a str,
    quantize: &'a str,
    quantization: &'a str,
    bits_per_weight: f64,
    parameters: u64,
    batch: usize,
    decode_tokens_per_s: f64,
    joules_per_token: Option<f64>,
    tokens_per_wh: Option<f64>,
    steady: bool,
    reference_tokens: usize,
    cross_entropy_bits: f64,
    perplexity: f64,
    kl_bits: Option<f64>,
    top1_agreement: Option<f64>,
    entropy_error_mean_bits: Option<f64>,
    entropy_error_p95_bits: Option<f64>,
    entropy_error_max_bits: Option<f64>,
    synthetic: bool,
}

/// study.csv: a header and one line per cell.
pub fn csv(file: &StudyFile) -> anyhow::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for c in &file.cells {
        w.serialize(Line {
            model: &c.model,
            quantize: c.quantize.as_deref().unwrap_or("as stored"),
            quantization: &c.quantization,
            bits_per_weight: c.bits_per_weight,
            parameters: c.parameters,
            batch: c.batch,
            decode_tokens_per_s: c.decode_tokens_per_s,
            joules_per_token: c.joules_per_token,
            tokens_per_wh: c.tokens_per_wh,
            steady: c.steady,
            reference_tokens: c.reference_tokens,
            cross_entropy_bits: c.cross_entropy_bits,
            perplexity: c.perplexity,
            kl_bits: c.kl_bits,
            top1_agreement: c.top1_agreement,
            entropy_error_mean_bits: c.entropy_error_vs_exact.as_ref().map(|e| e.mean_bits),
            entropy_error_p95_bits: c.entropy_error_vs_exact.as_ref().map(|e| e.p95_bits),
            entropy_error_max_bits: c.entropy_error_vs_exact.as_ref().map(|e| e.max_bits),
            synthetic: c.synthetic,
        })?;
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

/// Writes study.json, study.csv and study.svg into `dir`.
pub fn write(dir: &Path, file: &StudyFile) -> anyhow::Result<()> {
    let out = |name: &str| dir.join(name);
    std::fs::write(out("study.json"), json(file)?)
        .with_context(|| format!("cannot write {}", out("study.json").display()))?;
    std::fs::write(out("study.csv"), csv(file)?)
        .with_context(|| format!("cannot write {}", out("study.csv").display()))?;
    crate::charts::write_study_svg(&out("study.svg"), file)
}
