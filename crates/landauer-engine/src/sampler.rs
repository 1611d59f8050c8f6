//! Turning logits into a token: greedy, or sampled with temperature, top-k and top-p.
//!
//! candle's `LogitsProcessor` does not expose the distribution it samples from after
//! truncation, which landauer must report (`sampling_entropy_bits`), so sampling lives here.
//! Buffers are reused between steps: no allocation per token.

use crate::{EngineError, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::Serialize;

/// How to choose the next token.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SamplingParams {
    /// 0 means greedy (argmax).
    pub temperature: f64,
    /// Keep only the k most likely tokens.
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose probability reaches p.
    pub top_p: Option<f64>,
    /// Seed of the ChaCha20 generator: same seed, same text.
    pub seed: u64,
}

impl SamplingParams {
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            seed: 0,
        }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0 || self.top_k == Some(1)
    }

    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(EngineError::Sampling(format!(
                "temperature must be a number >= 0, got {}",
                self.temperature
            )));
        }
        if self.top_k == Some(0) {
            return Err(EngineError::Sampling("top-k must be at least 1".into()));
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(EngineError::Sampling(format!(
                    "top-p must be in (0, 1], got {p}"
                )));
            }
        }
        Ok(())
    }
}

/// The distribution a token was actually drawn from.
#[derive(Debug, Clone, Copy)]
pub enum SampledDist<'a> {
    /// Argmax: all the mass on the chosen token.
    Greedy,
    /// softmax(logits / T) over the whole vocabulary, normalised.
    Full(&'a [f64]),
    /// After top-k / top-p: the kept tokens and their renormalised probabilities,
    /// most likely first.
    Truncated { ids: &'a [u32], probs: &'a [f64] },
    /// softmax(logits / T) over the whole vocabulary, left on the device: its entropy in
    /// bits ([`crate::device_sampling`]).
    Entropy(f64),
}

impl SampledDist<'_> {
    /// Shannon entropy of the distribution, in bits.
    pub fn entropy_bits(&self) -> f64 {
        match self {
            SampledDist::Greedy => 0.0,
            SampledDist::Full(p) => landauer_physics::entropy_bits_from_probs(p),
            SampledDist::Truncated { probs, .. } => {
                landauer_physics::entropy_bits_from_probs(probs)
            }
            SampledDist::Entropy(bits) => *bits,
        }
    }

    /// Probability the sampler gave `token` (NaN for [`SampledDist::Entropy`]: the
    /// probabilities stayed on the device).
    pub fn prob_of(&self, token: u32, chosen: u32) -> f64 {
        match self {
            SampledDist::Greedy => (token == chosen) as u8 as f64,
            SampledDist::Full(p) => p.get(token as usize).copied().unwrap_or(0.0),
            SampledDist::Truncated { ids, probs } => ids
                .iter()
                .position(|&i| i == token)
                .map(|k| probs[k])
                .unwrap_or(0.0),
            SampledDist::Entropy(_) => f64::NAN,
        }
    }
}

/// A stateful sampler (it owns the random generator).
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha20Rng,
    probs: Vec<f64>,
    ids: Vec<u32>,
    kept: Vec<f64>,
    /// Candidates of a top-k/top-p window (reused).
    window: Vec<(u32, f64)>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Result<Self> {
        params.validate()?;
        Ok(Self {
            rng: ChaCha20Rng::seed_from_u64(params.seed),
            params,
            probs: Vec::new(),
            ids: Vec::new(),
            kept: Vec::new(),
            window: Vec::new(),
        })
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Chooses a token from `logits` and returns it with the distribution it came from.
    pub fn sample(&mut self, logits: &[f32]) -> (u32, SampledDist<'_>) {
        if self.params.is_greedy() {
            return (argmax(logits), SampledDist::Greedy);
        }
        let inv_t = 1.0 / self.params.temperature;
        // softmax(logits / T) in f64; -inf logits get probability 0.
        let max = logits
            .iter()
            .copied()
            .filter(|x| !x.is_nan())
            .fold(f32::NEG_INFINITY, f32::max) as f64;
        self.probs.clear();
        self.probs.extend(logits.iter().map(|&x| {
            let x = x as f64;
            if x.is_nan() {
                0.0
            } else {
                ((x - max) * inv_t).exp()
            }
        }));
        let total: f64 = self.probs.iter().sum();
        if !(total > 0.0 && total.is_finite()) {
            // Degenerate logits (all -inf or NaN): fall back to argmax.
            return (argmax(logits), SampledDist::Greedy);
        }
        for p in &mut self.probs {
            *p /= total;
        }
        let truncating = self.params.top_k.is_some_and(|k| k < logits.len())
            || self.params.top_p.is_some_and(|p| p < 1.0);
        if !truncating {
            let token = draw(&mut self.rng, self.probs.iter().copied());
            return (token as u32, SampledDist::Full(&self.probs));
        }

        // Candidates, most likely first: the k best, or a growing prefix until it holds
        // top_p of the mass (most steps need only a few dozen tokens, never a full sort).
        let v = self.probs.len();
        let limit = self.params.top_k.unwrap_or(v).min(v);
        let mut m = if self.params.top_k.is_some() {
            limit
        } else {
            64.min(v)
        };
        let mut window = std::mem::take(&mut self.window);
        loop {
            self.ids.clear();
            self.ids.extend(0..v as u32);
            let probs = &self.probs;
            let by_prob_desc = |a: &u32, b: &u32| {
                probs[*b as usize]
                    .total_cmp(&probs[*a as usize])
                    .then(a.cmp(b))
            };
            if m < v {
                self.ids.select_nth_unstable_by(m - 1, by_prob_desc);
                self.ids.truncate(m);
            }
            self.ids.sort_unstable_by(by_prob_desc);
            window.clear();
            window.extend(self.ids.iter().map(|&i| (i, probs[i as usize])));
            if self.truncate_window(&window, m, v) {
                break;
            }
            m = (m * 8).min(limit);
        }
        self.window = window;
        self.draw_kept()
    }

    /// A uniform number in [0, 1) from the sampler's generator (the next draw's).
    pub(crate) fn uniform(&mut self) -> f64 {
        self.rng.random()
    }

    /// Top-k then top-p (as Hugging Face does) on a window of the `m` most likely tokens of
    /// a `vocab`-entry distribution, with their probabilities, most likely first (lower id
    /// first on ties). Keeps the tokens to draw from and returns true, or returns false when
    /// the window is too small to reach top-p and could grow.
    pub(crate) fn truncate_window(
        &mut self,
        window: &[(u32, f64)],
        m: usize,
        vocab: usize,
    ) -> bool {
        let limit = self.params.top_k.unwrap_or(vocab).min(vocab);
        let top_p = self.params.top_p.unwrap_or(1.0);
        // Renormalise within top-k first.
        let mass_k: f64 = if self.params.top_k.is_some() {
            window.iter().map(|w| w.1).sum()
        } else {
            1.0
        };
        let mut cum = 0.0;
        let mut cut = None;
        for (n, w) in window.iter().enumerate() {
            cum += w.1 / mass_k;
            if cum >= top_p {
                cut = Some(n + 1);
                break;
            }
        }
        let n = match cut {
            Some(n) => n,
            None if m >= limit => window.len(),
            None => return false,
        };
        self.ids.clear();
        self.ids.extend(window[..n].iter().map(|w| w.0));
        self.kept.clear();
        self.kept.extend(window[..n].iter().map(|w| w.1));
        true
    }

    /// Draws from the tokens [`Self::truncate_window`] kept, renormalised.
    pub(crate) fn draw_kept(&mut self) -> (u32, SampledDist<'_>) {
        let mass: f64 = self.kept.iter().sum();
        for p in &mut self.kept {
            *p /= mass;
        }
        let k = draw(&mut self.rng, self.kept.iter().copied());
        (
            self.ids[k],
            SampledDist::Truncated {
                ids: &self.ids,
                probs: &self.kept,
            },
        )
    }
}

/// Index of the largest logit (the first one on ties; NaN never wins).
pub fn argmax(logits: &[f32]) -> u32 {
    // Two passes that vectorize (the largest value in 8 lanes, then its first position)
    // instead of one with a branch per entry: the same answer, NaN passed over; 0 when no
    // entry exceeds −inf.
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = logits.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (m, &x) in lanes.iter_mut().zip(c) {
            // `>` is false for NaN: NaN entries never become the maximum.
            *m = if x > *m { x } else { *m };
        }
    }
    let best_v = lanes
        .iter()
        .chain(rest)
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    if best_v == f32::NEG_INFINITY {
        return 0;
    }
    logits.iter().position(|&x| x == best_v).unwrap_or(0) as u32
}

/// Inverse-CDF draw from normalised probabilities.
fn draw(rng: &mut ChaCha20Rng, probs: impl Iterator<Item = f64> + Clone) -> usize {
    let u: f64 = rng.random();
    let mut cum = 0.0;
    let mut last_nonzero = 0;
    for (i, p) in probs.enumerate() {
        if p > 0.0 {
            last_nonzero = i;
        }
        cum += p;
        if u < cum {
            return i;
        }
    }
    // Rounding left u above the total: the last token with any mass.
    last_nonzero
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(t: f64, k: Option<usize>, p: Option<f64>, seed: u64) -> SamplingParams {
        SamplingParams {
            temperature: t,
            top_k: k,
            top_p: p,
            seed,
        }
    }

    #[test]
    fn argmax_is_the_first_largest_entry() {
        /// The one-pass definition.
        fn reference(xs: &[f32]) -> u32 {
            let (mut best, mut best_v) = (0, f32::NEG_INFINITY);
            for (i, &x) in xs.iter().enumerate() {
                if x > best_v {
                    (best, best_v) = (i, x);
                }
            }
            best as u32
        }
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        for n in [1usize, 3, 8, 9, 17, 1000, 49_152] {
            let mut xs: Vec<f32> = (0..n).map(|_| rng.random_range(-5.0f32..5.0)).collect();
            assert_eq!(argmax(&xs), reference(&xs), "{n}");
            // Ties go to the first; NaN is passed over; all −inf gives 0.
            let top = xs[n / 2] + 100.0;
            xs[n / 2] = top;
            xs[n - 1] = top;
            xs[0] = f32::NAN;
            assert_eq!(argmax(&xs), reference(&xs), "{n} with ties and NaN");
        }
        assert_eq!(argmax(&[f32::NEG_INFINITY; 12]), 0);
        assert_eq!(argmax(&[f32::NAN, f32::NAN]), 0);
        assert_eq!(argmax(&[f32::NAN, 1.0, f32::INFINITY, 2.0]), 2);
    }

    #[test]
    fn greedy_is_argmax_with_zero_entropy() {
        let mut s = Sampler::new(SamplingParams::greedy()).unwrap();
        let (t, d) = s.sample(&[0.1, 3.0, -2.0, 2.9]);
        assert_eq!(t, 1);
        assert_eq!(d.entropy_bits(), 0.0);
    }

    #[test]
    fn same_seed_same_draws_different_seed_differs() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37 % 17) as f32) * 0.1).collect();
        let run = |seed| {
            let mut s = Sampler::new(params(1.0, None, None, seed)).unwrap();
            (0..50).map(|_| s.sample(&logits).0).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn full_distribution_matches_softmax_at_temperature() {
        let logits = [1.0f32, 2.0, 3.0];
        let mut s = Sampler::new(params(2.0, None, None, 1)).unwrap();
        let (_, d) = s.sample(&logits);
        let w: Vec<f64> = logits.iter().map(|&x| (x as f64 / 2.0).exp()).collect();
        let z: f64 = w.iter().sum();
        for (i, wi) in w.iter().enumerate() {
            assert!((d.prob_of(i as u32, 99) - wi / z).abs() < 1e-12);
        }
        let h = landauer_physics::entropy_bits_from_probs(&w);
        assert!((d.entropy_bits() - h).abs() < 1e-12);
    }

    #[test]
    fn top_k_keeps_k_and_renormalises() {
        let logits = [0.0f32, 5.0, 4.0, 3.0, -1.0];
        let mut s = Sampler::new(params(1.0, Some(2), None, 3)).unwrap();
        for _ in 0..200 {
            let (t, d) = s.sample(&logits);
            assert!(t == 1 || t == 2, "sampled {t} outside the top 2");
            let SampledDist::Truncated { ids, probs } = d else {
                panic!("expected truncation")
            };
            assert_eq!(ids, &[1, 2]);
            let e1 = 1.0f64.exp();
            assert!((probs[0] - e1 / (e1 + 1.0)).abs() < 1e-12);
        }
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_p() {
        // Probabilities 0.5, 0.3, 0.15, 0.05.
        let p = [0.5f64, 0.3, 0.15, 0.05];
        let logits: Vec<f32> = p.iter().map(|x| x.ln() as f32).collect();
        let mut s = Sampler::new(params(1.0, None, Some(0.8), 3)).unwrap();
        let (_, d) = s.sample(&logits);
        let SampledDist::Truncated { ids, probs } = d else {
            panic!("expected truncation")
        };
        assert_eq!(ids, &[0, 1]);
        assert!((probs[0] - 0.625).abs() < 1e-6 && (probs[1] - 0.375).abs() < 1e-6);
        let mut s = Sampler::new(params(1.0, None, Some(0.81), 3)).unwrap();
        let (_, d) = s.sample(&logits);
        let SampledDist::Truncated { ids, .. } = d else {
            panic!()
        };
        assert_eq!(ids, &[0, 1, 2]);
    }

    #[test]
    fn top_p_over_a_large_flat_vocabulary_grows_past_the_first_window() {
        let logits = vec![0.0f32; 10_000];
        // 5,000 tokens hold 0.5 of the mass, 5,001 hold 0.5001: the first set to reach
        // 0.50005 needs 5,001, far past the first 64-token window.
        let mut s = Sampler::new(params(1.0, None, Some(0.50005), 3)).unwrap();
        let (_, d) = s.sample(&logits);
        let SampledDist::Truncated { ids, .. } = d else {
            panic!()
        };
        assert_eq!(ids.len(), 5_001);
    }

    #[test]
    fn sampling_frequencies_follow_the_distribution() {
        let p = [0.6f64, 0.3, 0.1];
        let logits: Vec<f32> = p.iter().map(|x| x.ln() as f32).collect();
        let mut s = Sampler::new(params(1.0, None, None, 11)).unwrap();
        let mut counts = [0usize; 3];
        let n = 20_000;
        for _ in 0..n {
            counts[s.sample(&logits).0 as usize] += 1;
        }
        for i in 0..3 {
            let f = counts[i] as f64 / n as f64;
            assert!((f - p[i]).abs() < 0.015, "token {i}: {f} vs {}", p[i]);
        }
    }

    #[test]
    fn masked_tokens_are_never_sampled() {
        let logits = [f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY, 0.0];
        let mut s = Sampler::new(params(0.7, None, None, 5)).unwrap();
        for _ in 0..500 {
            let (t, _) = s.sample(&logits);
            assert!(t == 1 || t == 3);
        }
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(Sampler::new(params(-1.0, None, None, 0)).is_err());
        assert!(Sampler::new(params(f64::NAN, None, None, 0)).is_err());
        assert!(Sampler::new(params(1.0, Some(0), None, 0)).is_err());
        assert!(Sampler::new(params(1.0, None, Some(0.0), 0)).is_err());
        assert!(Sampler::new(params(1.0, None, Some(1.5), 0)).is_err());
    }
}
