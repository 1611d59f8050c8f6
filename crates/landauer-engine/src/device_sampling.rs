//! Sampling, entropy, surprisal and top-N where the logits are, with only per-row scalars
//! and a few chunks of candidates copied to the host.
//!
//! On a GPU every step used to copy every row's logits to the host (128k f32 a row for Llama
//! 3: 64 MiB a step at batch 128) and sample there; the copy and the host work, not the
//! model, bounded large batches. Here a step's logits stay on the device as (rows, chunks,
//! [`CHUNK`]) (padded with −∞), and candle tensor ops reduce them:
//! - each chunk's maximum (rows × vocab/[`CHUNK`] values to the host): the row's maximum, and
//!   which chunks can hold the row's m largest logits, whatever m: a chunk whose maximum is
//!   below the m-th largest chunk maximum holds nothing above the m-th largest logit. Those
//!   chunks alone are gathered and copied: greedy's argmax, the trace's top-N and top-k/top-p's
//!   candidates come from them, with the host sampler's order (logit descending, lower id first
//!   on ties, NaN never).
//! - in f64, Σ e^{x−m} and Σ e^{x−m}(x−m) per row: the log-partition function and the entropy
//!   ([`landauer_physics::softmax_stats`]'s formulas), and at a temperature T the sum of
//!   e^{(x−m)/T} per chunk: an inverse-CDF draw finds its chunk from those sums and its token
//!   in that one chunk, copied.
//!
//! The host sampler ([`crate::Sampler`]) stays the definition: the same seeded generator
//! draws the same uniform numbers, probabilities are the same f64 expressions, and candidates
//! are the same tokens in the same order, so the device gives the host's tokens, entropies and
//! top-N (tested on the CPU backend, tests/device_sampling.rs). Sums run in another order, so
//! values agree to rounding (1e-12 relative), and a draw could differ only where the uniform
//! number falls within that rounding of a boundary between two tokens.

use crate::sampler::{SampledDist, Sampler, SamplingParams};
use crate::Result;
use candle_core::{DType, Tensor};
use landauer_physics::SoftmaxStats;

/// Logits per chunk: the granularity of what is copied (a chunk's maximum, a whole chunk).
pub const CHUNK: usize = 256;

/// Where a step's logits become tokens, entropies and top-N.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SamplingPlace {
    /// On the device for GPUs; on the host for the CPU, where the logits already are.
    #[default]
    Auto,
    /// Every row's logits copied to the host, sampled by [`Sampler::sample`].
    Host,
    /// Reduced where the logits are ([`DeviceLogits`]).
    Device,
}

impl SamplingPlace {
    /// `host` or `device` as a run sampled (`auto` resolved by the engine).
    pub fn name(self) -> &'static str {
        match self {
            SamplingPlace::Auto => "auto",
            SamplingPlace::Host => "host",
            SamplingPlace::Device => "device",
        }
    }
}

impl std::str::FromStr for SamplingPlace {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(SamplingPlace::Auto),
            "host" => Ok(SamplingPlace::Host),
            "device" => Ok(SamplingPlace::Device),
            other => Err(format!("{other:?} is not one of auto, host, device")),
        }
    }
}

/// One step's logits, kept on their device, and what has been reduced from them.
pub struct DeviceLogits {
    rows: usize,
    vocab: usize,
    chunks: usize,
    /// (rows · chunks, CHUNK) f32, padded with −∞.
    x: Tensor,
    /// Each chunk's maximum, row-major (rows × chunks).
    chunk_max: Vec<f32>,
    /// Each row's maximum (NaN ignored; −∞ when nothing is larger).
    max: Vec<f64>,
}

/// A row's outcome of a step on the device.
pub struct RowOutcome {
    pub token: u32,
    /// The chosen token's logit.
    pub chosen_logit: f32,
    /// The row's `top_n` largest logits, most likely first.
    pub top: Vec<(u32, f32)>,
}

impl DeviceLogits {
    /// Takes a step's logits, (rows, vocab) or (vocab,) in any float type, and reduces each
    /// chunk's maximum.
    pub fn new(logits: &Tensor) -> Result<Self> {
        let logits = match logits.rank() {
            1 => logits.unsqueeze(0)?,
            _ => logits.clone(),
        };
        let (rows, vocab) = logits.dims2()?;
        let chunks = vocab.div_ceil(CHUNK).max(1);
        let mut x = logits.to_dtype(DType::F32)?;
        let pad = chunks * CHUNK - vocab;
        if pad > 0 {
            let fill = Tensor::full(f32::NEG_INFINITY, (rows, pad), x.device())?;
            x = Tensor::cat(&[&x, &fill], 1)?;
        }
        let x = x.reshape((rows * chunks, CHUNK))?;
        let chunk_max: Vec<f32> = x.max(1)?.to_vec1()?;
        let max = chunk_max
            .chunks(chunks)
            .map(|c| {
                c.iter()
                    .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
                    as f64
            })
            .collect();
        Ok(Self {
            rows,
            vocab,
            chunks,
            x,
            chunk_max,
            max,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// e^{(x − m)·scale} of every entry in f64 (rows · chunks, CHUNK), with m each row's
    /// maximum, and (x − m)·scale (clamped: −∞ entries give 0 and 0·(x−m) = 0, not NaN).
    fn shifted_exp(&self, scale: f64) -> Result<(Tensor, Tensor)> {
        let m: Vec<f64> = self
            .max
            .iter()
            .flat_map(|&m| std::iter::repeat_n(if m.is_finite() { m } else { 0.0 }, self.chunks))
            .collect();
        let m = Tensor::from_vec(m, (self.rows * self.chunks, 1), self.x.device())?;
        let d = (self.x.to_dtype(DType::F64)?.broadcast_sub(&m)? * scale)?
            .clamp(-1e300f64, f64::INFINITY)?;
        Ok((d.exp()?, d))
    }

    /// Sums of each row of a (rows · chunks, CHUNK) tensor, on the device.
    fn row_sums(&self, t: &Tensor) -> Result<Vec<f64>> {
        Ok(t.reshape((self.rows, self.chunks * CHUNK))?
            .sum(1)?
            .to_vec1()?)
    }

    /// [`landauer_physics::softmax_stats`] of every row (two f64 scalars a row copied).
    pub fn stats(&self) -> Result<Vec<SoftmaxStats>> {
        let (e, d) = self.shifted_exp(1.0)?;
        let s = self.row_sums(&e)?;
        let t = self.row_sums(&(&e * &d)?)?;
        Ok((0..self.rows)
            .map(|r| stats_of(self.max[r], s[r], t[r]))
            .collect())
    }

    /// The `m` largest logits of each row in `rows`, most likely first (lower id first on
    /// ties; NaN never), from the chunks that can hold them.
    pub fn top(&self, rows: &[usize], m: usize) -> Result<Vec<Vec<(u32, f32)>>> {
        if m == 0 || rows.is_empty() {
            return Ok(vec![Vec::new(); rows.len()]);
        }
        // Per row, the chunks whose maximum reaches the m-th largest chunk maximum.
        let mut picked: Vec<u32> = Vec::new();
        let mut spans = Vec::with_capacity(rows.len());
        for &r in rows {
            let cm = &self.chunk_max[r * self.chunks..(r + 1) * self.chunks];
            let mut sorted: Vec<f32> = cm.iter().copied().filter(|v| !v.is_nan()).collect();
            sorted.sort_unstable_by(|a, b| b.total_cmp(a));
            let start = picked.len();
            match sorted.get(m - 1) {
                Some(&cut) => picked.extend(
                    (0..self.chunks)
                        .filter(|&c| cm[c] >= cut)
                        .map(|c| (r * self.chunks + c) as u32),
                ),
                // Fewer chunks than m: all of them.
                None => picked.extend((0..self.chunks).map(|c| (r * self.chunks + c) as u32)),
            }
            spans.push(start..picked.len());
        }
        let index = Tensor::new(picked.as_slice(), self.x.device())?;
        let values: Vec<f32> = self.x.index_select(&index, 0)?.flatten_all()?.to_vec1()?;
        Ok(spans
            .into_iter()
            .map(|span| {
                let mut cands: Vec<(u32, f32)> = Vec::with_capacity(span.len() * CHUNK);
                for k in span {
                    let c = picked[k] as usize % self.chunks;
                    let vals = &values[k * CHUNK..(k + 1) * CHUNK];
                    for (j, &v) in vals.iter().enumerate() {
                        let id = c * CHUNK + j;
                        if id < self.vocab && !v.is_nan() {
                            cands.push((id as u32, v));
                        }
                    }
                }
                cands.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                cands.truncate(m);
                cands
            })
            .collect())
    }

    /// Row `r`'s chunk `c` (CHUNK logits; beyond the vocabulary −∞).
    fn chunk(&self, r: usize, c: usize) -> Result<Vec<f32>> {
        Ok(self.x.get(r * self.chunks + c)?.to_vec1()?)
    }

    /// What a step's draws need from the device, for the rows in `rows` sampled with
    /// `params` (every row's sampler has them, each its own seed) and reported with their
    /// `top_n` largest logits: one reduction and one copy for all rows.
    pub fn plan(&self, rows: &[usize], params: &SamplingParams, top_n: usize) -> Result<StepPlan> {
        let greedy = params.is_greedy();
        let truncating =
            params.top_k.is_some_and(|k| k < self.vocab) || params.top_p.is_some_and(|p| p < 1.0);
        // Candidates: the largest logit for greedy, the first window of top-k/top-p (the
        // host's: k, else 64 growing eightfold), and the trace's top-N.
        let window = match (greedy, truncating) {
            (true, _) => 1,
            (false, true) => params.top_k.unwrap_or(64).min(self.vocab),
            (false, false) => 0,
        };
        let tops = self.top(rows, window.max(top_n))?;
        // Sampled rows: the temperature's sums per chunk (for the draw and the top-p mass)
        // and per row (its entropy).
        let sums = match greedy {
            true => None,
            false => {
                let (e, d) = self.shifted_exp(1.0 / params.temperature)?;
                let per_chunk: Vec<f64> = e.sum(1)?.to_vec1()?;
                let t = self.row_sums(&(&e * &d)?)?;
                Some((per_chunk, t))
            }
        };
        Ok(StepPlan {
            inv_t: 1.0 / params.temperature,
            greedy,
            truncating,
            window,
            top_n,
            tops,
            sums,
        })
    }

    /// Chooses row `r`'s token (the `i`-th of the plan's rows) with its sampler, as
    /// [`Sampler::sample`] would from the row's logits.
    pub fn sample_row<'s>(
        &self,
        plan: &mut StepPlan,
        i: usize,
        r: usize,
        sampler: &'s mut Sampler,
    ) -> Result<(RowOutcome, SampledDist<'s>)> {
        let top = std::mem::take(&mut plan.tops[i]);
        let top_n = plan.top_n;
        let first_top = |top: &[(u32, f32)]| top.iter().take(top_n).copied().collect();
        // Greedy, and the host's fallback for degenerate logits: the largest logit, the
        // first of them on ties (token 0 when none exceeds −∞, as `argmax`).
        let argmax = |top: &[(u32, f32)]| -> Result<RowOutcome> {
            let (token, chosen_logit) = match top.first() {
                Some(&(id, v)) if v > f32::NEG_INFINITY => (id, v),
                _ => (0, self.chunk(r, 0)?[0]),
            };
            Ok(RowOutcome {
                token,
                chosen_logit,
                top: first_top(top),
            })
        };
        let Some((per_chunk, t)) = plan.sums.as_ref().filter(|_| !plan.greedy) else {
            return Ok((argmax(&top)?, SampledDist::Greedy));
        };
        let span = r * self.chunks..(r + 1) * self.chunks;
        let total: f64 = per_chunk[span.clone()].iter().sum();
        let max = self.max[r];
        if !(total > 0.0 && total.is_finite() && max.is_finite()) {
            return Ok((argmax(&top)?, SampledDist::Greedy));
        }
        let inv_t = plan.inv_t;
        if plan.truncating {
            // The host's growing window: more candidates while top-p is not reached.
            let mut m = plan.window;
            let mut cands = top;
            loop {
                // The host's expression and order (probability descending, lower id
                // first): the logits' order except where probabilities underflow.
                let mut probs: Vec<(u32, f64)> = cands
                    .iter()
                    .take(m)
                    .map(|&(id, x)| (id, ((x as f64 - max) * inv_t).exp() / total))
                    .collect();
                probs.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                if sampler.truncate_window(&probs, m, self.vocab) {
                    break;
                }
                m = (m * 8).min(self.vocab);
                if cands.len() < m {
                    cands = self.top(&[r], m.max(top_n))?.remove(0);
                }
            }
            let (token, dist) = sampler.draw_kept();
            let chosen_logit = cands
                .iter()
                .find(|c| c.0 == token)
                .map_or(f32::NAN, |c| c.1);
            let out = RowOutcome {
                token,
                chosen_logit,
                top: first_top(&cands),
            };
            return Ok((out, dist));
        }
        // The full distribution at T: its chunk by the chunk sums, then its token there.
        let target = sampler.uniform() * total;
        let mut cum = 0.0;
        let mut found = None;
        let mut last_nonzero = None;
        for (c, &s) in per_chunk[span.clone()].iter().enumerate() {
            if s > 0.0 {
                last_nonzero = Some(c);
            }
            if target < cum + s {
                found = Some(c);
                break;
            }
            cum += s;
        }
        // Rounding left the target above the total: the last chunk with mass, its last
        // token with mass (as the host's draw).
        let c = found.or(last_nonzero).unwrap_or(0);
        let values = self.chunk(r, c)?;
        let (mut pick, mut last) = (None, None);
        for (j, &x) in values.iter().enumerate() {
            if c * CHUNK + j >= self.vocab || x.is_nan() {
                continue;
            }
            let p = ((x as f64 - max) * inv_t).exp();
            if p > 0.0 {
                last = Some(j);
            }
            cum += p;
            if found.is_some() && target < cum {
                pick = Some(j);
                break;
            }
        }
        let j = pick.or(last).unwrap_or(0);
        let t = t[r];
        let out = RowOutcome {
            token: (c * CHUNK + j) as u32,
            chosen_logit: values[j],
            top: first_top(&top),
        };
        Ok((
            out,
            SampledDist::Entropy(stats_of(0.0, total, t).entropy_bits),
        ))
    }
}

/// A step's reductions for [`DeviceLogits::sample_row`].
pub struct StepPlan {
    inv_t: f64,
    greedy: bool,
    truncating: bool,
    window: usize,
    top_n: usize,
    /// Candidates of each planned row (its window and top-N), most likely first.
    tops: Vec<Vec<(u32, f32)>>,
    /// At the temperature: Σ e^{(x−m)/T} per chunk, and Σ e^{(x−m)/T}·(x−m)/T per row.
    sums: Option<(Vec<f64>, Vec<f64>)>,
}

/// [`SoftmaxStats`] from a row's maximum m, s = Σ e^{x−m} and t = Σ e^{x−m}(x−m).
fn stats_of(max: f64, s: f64, t: f64) -> SoftmaxStats {
    if !max.is_finite() {
        return SoftmaxStats {
            log_sum_exp: max,
            entropy_bits: if max.is_nan() { f64::NAN } else { 0.0 },
        };
    }
    let ln_s = s.ln();
    SoftmaxStats {
        log_sum_exp: max + ln_s,
        entropy_bits: ((ln_s - t / s) / std::f64::consts::LN_2).max(0.0),
    }
}
