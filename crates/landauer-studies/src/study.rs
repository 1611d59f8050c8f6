//! The precision and size study: models × quantizations × batch sizes. For each cell, the
//! sweep's speed and energy, and the quality the weights keep, teacher-forced on a reference
//! text: cross-entropy, and KL divergence and top-1 agreement against the same model's
//! highest-precision cell.

use crate::session::{Loaded, ModelOptions};
use crate::sweep::{self, SweepConfig};
use crate::Observer;
use landauer_trace::{StudyCell, StudyFile};
use std::io::{BufReader, BufWriter, Read, Write};

/// The built-in reference text: chapter 1 of Melville's *Moby-Dick* (public domain; see
/// crates/landauer-studies/data/README.md).
pub const REFERENCE_TEXT: &str = include_str!("../data/moby-dick-chapter-1.txt");
pub const REFERENCE_NAME: &str = "Moby-Dick, chapter 1 (Melville, 1851; public domain)";

/// What to study.
#[derive(Debug, Clone)]
pub struct StudyConfig {
    /// The models (each loaded with landauer's batched forward pass).
    pub models: Vec<ModelOptions>,
    /// Quantizations of each model: a `--quantize` preset, or None for the model as stored.
    pub quantize: Vec<Option<String>>,
    /// Batch sizes, tokens, runs, meter, temperature and grid of the speed and energy runs.
    pub sweep: SweepConfig,
    pub reference_name: String,
    pub reference_text: String,
    /// Reference tokens scored (the text is cut there, and to the model's context).
    pub reference_tokens: usize,
    /// Score every cell's reference tokens again in exact mode (f32 activations against the
    /// cell's own weights) and report the default mode's entropy error; skipped for
    /// synthetic models.
    pub exact_check: bool,
}

impl Default for StudyConfig {
    fn default() -> Self {
        StudyConfig {
            models: Vec::new(),
            quantize: vec![None],
            sweep: SweepConfig {
                batch: vec![1, 8],
                ..Default::default()
            },
            reference_name: REFERENCE_NAME.into(),
            reference_text: REFERENCE_TEXT.into(),
            reference_tokens: 512,
            exact_check: true,
        }
    }
}

/// How the figures were measured (the study file's `method`).
pub const METHOD: &str = "per model and quantization: the weights quantized at load with llama-quantize's per-tensor rules for the preset; quality teacher-forced on the reference text (its first reference_tokens tokens after the first): cross-entropy = mean -log2 p(next token), KL divergence in bits from the same model's highest-precision cell to this one and top-1 agreement with it, per position, averaged; speed and energy per batch size as `landauer sweep` measures them";

/// One cell's scoring of the reference: cross-entropy, each position's entropy and top-1
/// token, and (when kept) every position's log-probabilities in a temporary file, for the KL
/// divergences.
struct Scored {
    /// The entropy of each position's distribution, bits.
    entropies: Vec<f64>,
    cross_entropy_bits: f64,
    tokens: usize,
    top1: Vec<u32>,
    logprobs: Option<tempfile::NamedTempFile>,
    vocab: usize,
}

/// Teacher-forces the reference through the model: one softmax pass per position
/// ([`landauer_physics::softmax_stats`]) gives its log-partition and entropy. `keep_logprobs`
/// writes the log-probabilities too (vocabulary × 4 bytes a position).
fn score(
    loaded: &mut Loaded,
    text: &str,
    max_tokens: usize,
    keep_logprobs: bool,
) -> anyhow::Result<Scored> {
    let ids = loaded.engine.encode(text)?;
    let n = ids
        .len()
        .saturating_sub(1)
        .min(max_tokens)
        .min(loaded.engine.context_length().saturating_sub(2));
    if n == 0 {
        anyhow::bail!("the reference text is shorter than two tokens");
    }
    let mut file = match keep_logprobs {
        true => Some(BufWriter::new(tempfile::NamedTempFile::new()?)),
        false => None,
    };
    let (mut nats, mut top1, mut vocab) = (0f64, Vec::with_capacity(n), 0);
    let mut entropies = Vec::with_capacity(n);
    let mut err = None;
    loaded.engine.score(&ids[..1], &ids[1..=n], |i, logits| {
        let stats = landauer_physics::softmax_stats(logits);
        let lz = stats.log_sum_exp;
        nats += lz - logits[ids[i + 1] as usize] as f64;
        entropies.push(stats.entropy_bits);
        let best = (0..logits.len())
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap_or(0);
        top1.push(best as u32);
        vocab = logits.len();
        if let Some(f) = file.as_mut() {
            for &l in logits {
                if let Err(e) = f.write_all(&((l as f64 - lz) as f32).to_le_bytes()) {
                    err.get_or_insert(e);
                }
            }
        }
    })?;
    if let Some(e) = err {
        return Err(e.into());
    }
    let logprobs = match file {
        Some(f) => Some(f.into_inner().map_err(|e| e.into_error())?),
        None => None,
    };
    Ok(Scored {
        entropies,
        cross_entropy_bits: nats / n as f64 / std::f64::consts::LN_2,
        tokens: n,
        top1,
        logprobs,
        vocab,
    })
}

/// Mean KL(reference ‖ cell) in bits, and top-1 agreement, over the positions both scored.
fn compare(reference: &Scored, cell: &Scored) -> anyhow::Result<(f64, f64)> {
    if reference.vocab != cell.vocab {
        anyhow::bail!("two cells of one model have different vocabularies");
    }
    let n = reference.tokens.min(cell.tokens);
    let kept = |s: &Scored| s.logprobs.as_ref().map(|f| f.reopen()).transpose();
    let (Some(fa), Some(fb)) = (kept(reference)?, kept(cell)?) else {
        anyhow::bail!("a cell was scored without its log-probabilities");
    };
    let (mut a, mut b) = (BufReader::new(fa), BufReader::new(fb));
    let (mut ra, mut rb) = (vec![0u8; 4 * reference.vocab], vec![0u8; 4 * cell.vocab]);
    let mut kl = 0f64;
    for _ in 0..n {
        a.read_exact(&mut ra)?;
        b.read_exact(&mut rb)?;
        let f = |c: &[u8]| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64;
        kl += ra
            .chunks_exact(4)
            .zip(rb.chunks_exact(4))
            .map(|(p, q)| {
                let (lp, lq) = (f(p), f(q));
                lp.exp() * (lp - lq)
            })
            .sum::<f64>();
    }
    let agree = reference.top1[..n]
        .iter()
        .zip(&cell.top1[..n])
        .filter(|(x, y)| x == y)
        .count();
    Ok((
        kl / n as f64 / std::f64::consts::LN_2,
        agree as f64 / n as f64,
    ))
}

/// Runs the study with `threads` CPU threads. After every cell the results so far go to
/// [`Observer::study_progress`].
pub fn run(cfg: &StudyConfig, threads: usize, obs: &mut dyn Observer) -> anyhow::Result<StudyFile> {
    cfg.sweep.check()?;
    if cfg.models.is_empty() || cfg.quantize.is_empty() {
        anyhow::bail!("a study needs at least one model and one quantization");
    }
    let requantized = cfg.quantize.iter().flatten().next();
    let synthetic = cfg
        .models
        .iter()
        .filter_map(|m| m.model.as_deref())
        .find(|m| landauer_engine::synthetic::SyntheticSpec::is_synthetic(m));
    if let (Some(q), Some(m)) = (requantized, synthetic) {
        // synthetic:ARCH, without a type it may name.
        let m = m.splitn(3, ':').take(2).collect::<Vec<_>>().join(":");
        anyhow::bail!(
            "--quantizations {q} cannot apply to {m}: a synthetic model's type is part of its \
             name; list one model per type (--models {m}:q8_0,{m}:q4_k_m) with --quantizations \
             stored"
        );
    }
    let mut file = StudyFile {
        landauer_version: env!("CARGO_PKG_VERSION").into(),
        device: String::new(),
        device_name: None,
        threads,
        meter: String::new(),
        estimated: false,
        max_tokens: cfg.sweep.max_tokens,
        runs: cfg.sweep.runs,
        reference: cfg.reference_name.clone(),
        kelvin: cfg.sweep.kelvin,
        footprint: cfg.sweep.footprint,
        method: METHOD.into(),
        caveats: Vec::new(),
        cells: Vec::new(),
    };
    for model in &cfg.models {
        let mut scored: Vec<(Option<String>, f64, Scored)> = Vec::new();
        let first_cell = file.cells.len();
        for q in &cfg.quantize {
            let tmp = tempfile::tempdir()?;
            let saved = tmp.path().join("cell.gguf");
            let opts = ModelOptions {
                quantize: q.clone(),
                // Exact mode needs the cell's weights as a file.
                save_gguf: (cfg.exact_check && q.is_some()).then(|| saved.clone()),
                batched: true,
                ..model.clone()
            };
            let mut loaded = Loaded::load(&opts, obs)?;
            obs.note(&format!(
                "{} {}: scoring {} tokens of the reference",
                loaded.engine.info().name.clone().unwrap_or_default(),
                q.as_deref().unwrap_or("as stored"),
                cfg.reference_tokens
            ));
            let s = score(&mut loaded, &cfg.reference_text, cfg.reference_tokens, true)?;
            let exact = match cfg.exact_check && !loaded.engine.info().synthetic {
                true => {
                    let exact_opts = ModelOptions {
                        model: match q {
                            Some(_) => Some(saved.display().to_string()),
                            None => model.model.clone(),
                        },
                        quantize: None,
                        save_gguf: None,
                        exact: true,
                        ..model.clone()
                    };
                    let mut exact = Loaded::load(&exact_opts, obs)?;
                    let e = score(&mut exact, &cfg.reference_text, cfg.reference_tokens, false)?;
                    let pairs: Vec<(f64, f64)> =
                        s.entropies.iter().copied().zip(e.entropies).collect();
                    landauer_trace::EntropyError::of(&pairs)
                }
                false => None,
            };
            let sweep = sweep::run(&mut loaded, threads, &cfg.sweep, &mut Quiet(obs))?;
            let info = loaded.engine.info().clone();
            file.device = sweep.header.device.clone();
            file.device_name = sweep.header.device_name.clone();
            file.meter = sweep.header.meter.clone();
            file.estimated = sweep.header.estimated;
            for row in &sweep.rows {
                file.cells.push(StudyCell {
                    model: info
                        .name
                        .clone()
                        .unwrap_or_else(|| loaded.model_path.clone()),
                    model_path: loaded.model_path.clone(),
                    quantize: q.clone(),
                    quantization: info.quantization.clone(),
                    bits_per_weight: info.bits_per_weight,
                    parameters: info.parameters,
                    synthetic: info.synthetic,
                    batch: row.batch,
                    decode_tokens_per_s: row.decode_tokens_per_s,
                    joules_per_token: row.joules_per_token,
                    tokens_per_wh: row.tokens_per_wh,
                    steady: row.steady,
                    reference_tokens: s.tokens,
                    cross_entropy_bits: s.cross_entropy_bits,
                    perplexity: s.cross_entropy_bits.exp2(),
                    kl_bits: None,
                    top1_agreement: None,
                    quality_reference: None,
                    tensor_types: info.tensor_types.clone(),
                    shape: info.shape.clone(),
                    entropy_error_vs_exact: exact.clone(),
                });
            }
            scored.push((q.clone(), info.bits_per_weight, s));
            file.caveats = caveats(&file);
            obs.study_progress(&file)?;
        }
        // KL and agreement against the model's highest-precision cell.
        let best = (0..scored.len())
            .max_by(|&a, &b| scored[a].1.total_cmp(&scored[b].1))
            .unwrap_or(0);
        let name = scored[best].0.clone().unwrap_or_else(|| "as stored".into());
        for (q, _, s) in &scored {
            let (kl, agree) = compare(&scored[best].2, s)?;
            for c in file.cells[first_cell..]
                .iter_mut()
                .filter(|c| &c.quantize == q)
            {
                c.kl_bits = Some(kl);
                c.top1_agreement = Some(agree);
                c.quality_reference = Some(name.clone());
            }
        }
        obs.study_progress(&file)?;
    }
    obs.finish();
    Ok(file)
}

/// What a reader of the study must know besides its cells.
pub fn caveats(f: &StudyFile) -> Vec<String> {
    let mut c = Vec::new();
    if f.cells.iter().any(|c| c.synthetic) {
        c.push("synthetic models (random weights): their speed and energy are real; cross-entropy, KL and agreement mean nothing".into());
    }
    if f.estimated {
        c.push(format!(
            "energy is ESTIMATED by the {} meter, not measured",
            f.meter
        ));
    }
    if f.cells.iter().any(|c| !c.steady) {
        c.push("some decode windows were shorter than 2 s or a few counter updates (steady: false): raise --max-tokens".into());
    }
    c
}

/// Passes a sweep's notes on but not its progress bar or files (the study has its own).
struct Quiet<'a>(&'a mut dyn Observer);

impl Observer for Quiet<'_> {
    fn note(&mut self, line: &str) {
        self.0.note(line);
    }
    fn status(&mut self, what: &str) {
        self.0.status(what);
    }
}
