//! The physics of a generated token: how many bits a sampling step resolves and what the
//! Landauer limit says one bit is worth in joules.
//!
//! ```
//! use landauer_physics::{entropy_bits_from_logits, landauer_joules_per_bit, BOLTZMANN};
//!
//! // Four equally likely tokens carry two bits.
//! let bits = entropy_bits_from_logits(&[0.5, 0.5, 0.5, 0.5]);
//! assert!((bits - 2.0).abs() < 1e-12);
//!
//! // k_B · 300 K · ln 2 ≈ 2.871e-21 J.
//! let j = landauer_joules_per_bit(300.0);
//! assert!((j - 2.871e-21).abs() < 1e-24);
//! assert_eq!(BOLTZMANN, 1.380649e-23);
//! ```
//!
//! All sums are accumulated in `f64` with the log-sum-exp trick, so logits of any magnitude
//! (including `-inf` for masked tokens) give finite, exact-as-possible results.

mod fastexp;
pub mod floor;
pub mod footprint;
pub use fastexp::exp_le_zero;

/// Boltzmann's constant in J/K (exact since the 2019 SI redefinition).
pub const BOLTZMANN: f64 = 1.380649e-23;

/// Default temperature for the Landauer yardstick, in kelvin.
pub const DEFAULT_KELVIN: f64 = 300.0;

/// Joules per watt-hour.
pub const JOULES_PER_WH: f64 = 3600.0;

/// The Landauer energy of one bit at `kelvin`: k_B · T · ln 2, in joules.
///
/// Landauer's principle bounds the energy needed to *erase* one bit; a sampled token's
/// entropy is not erased, so landauer reports it as a yardstick, not as a bound.
pub fn landauer_joules_per_bit(kelvin: f64) -> f64 {
    BOLTZMANN * kelvin * std::f64::consts::LN_2
}

/// The largest logit, in f64: `NaN` if any logit is `NaN`, `-inf` for an empty slice.
fn max_logit(logits: &[f32]) -> f64 {
    // Eight lanes of compare-and-select, which the compiler turns into vector max
    // instructions; `f32::max` (NaN-ignoring) kept this a scalar loop with a branch per entry,
    // ~40% of the entropy's cost on a 49k vocabulary. `>` is false for NaN, so NaN never
    // becomes the maximum and is tracked on the side.
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut nan = [false; 8];
    let mut chunks = logits.chunks_exact(8);
    for c in &mut chunks {
        for l in 0..8 {
            nan[l] |= c[l].is_nan();
            lanes[l] = if c[l] > lanes[l] { c[l] } else { lanes[l] };
        }
    }
    let rest = chunks.remainder();
    if nan.contains(&true) || rest.iter().any(|x| x.is_nan()) {
        return f64::NAN;
    }
    lanes
        .iter()
        .chain(rest)
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m }) as f64
}

/// Natural log of Σ exp(x_i), stable for any magnitudes. Returns `-inf` when every
/// entry is `-inf` (or the slice is empty) and `NaN` if any entry is `NaN`.
pub fn log_sum_exp(logits: &[f32]) -> f64 {
    softmax_stats(logits).log_sum_exp
}

/// Shannon entropy, in bits, of softmax(`logits`).
pub fn entropy_bits_from_logits(logits: &[f32]) -> f64 {
    softmax_stats(logits).entropy_bits
}

/// What one pass over a step's logits tells: the log-partition function and the entropy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SoftmaxStats {
    /// ln Σ exp(x_i); the log-probability of token i is x_i − `log_sum_exp`.
    pub log_sum_exp: f64,
    /// Shannon entropy of softmax(x), bits.
    pub entropy_bits: f64,
}

/// Log-partition function and entropy of softmax(`logits`), with one exponential per entry.
///
/// With m = max x_i, d_i = x_i − m, s = Σ e^{d_i}: ln Z = m + ln s and
/// H = ln s − Σ e^{d_i} d_i / s (in nats). Working with the shifted d_i keeps full precision
/// whatever the logits' magnitude. Entries at `-inf` contribute nothing; an empty or fully
/// masked slice has entropy 0; any `NaN` makes both `NaN`.
pub fn softmax_stats(logits: &[f32]) -> SoftmaxStats {
    let max = max_logit(logits);
    if !max.is_finite() {
        // NaN, empty, all masked, or an infinite logit that takes all the mass.
        return SoftmaxStats {
            log_sum_exp: max,
            entropy_bits: if max.is_nan() { f64::NAN } else { 0.0 },
        };
    }
    // Large vocabularies (Llama 3's 128k entries: ~1 ms of exponentials) are split into
    // fixed chunks summed on rayon's pool, then added in order: the result does not depend
    // on the thread count or scheduling.
    let (s, t) = if logits.len() >= PARALLEL_MIN {
        use rayon::prelude::*;
        let parts: Vec<(f64, f64)> = logits
            .par_chunks(PARALLEL_CHUNK)
            .map(|c| shifted_sums(c, max))
            .collect();
        parts
            .iter()
            .fold((0.0, 0.0), |(s, t), &(a, b)| (s + a, t + b))
    } else {
        shifted_sums(logits, max)
    };
    let ln_s = s.ln();
    SoftmaxStats {
        log_sum_exp: max + ln_s,
        // Rounding can leave a tiny negative value for a one-hot distribution.
        entropy_bits: ((ln_s - t / s) / std::f64::consts::LN_2).max(0.0),
    }
}

/// Vocabulary size from which `softmax_stats` works in parallel, and its chunk size.
const PARALLEL_MIN: usize = 65_536;
const PARALLEL_CHUNK: usize = 16_384;

use fastexp::shifted_sums;

/// Shannon entropy, in bits, of an explicit probability vector (need not be normalised:
/// it is normalised here). Zero entries contribute nothing.
pub fn entropy_bits_from_probs(probs: &[f64]) -> f64 {
    let total: f64 = probs.iter().sum();
    if total <= 0.0 || !total.is_finite() {
        return 0.0;
    }
    let h: f64 = probs
        .iter()
        .filter(|&&p| p > 0.0)
        .map(|&p| {
            let q = p / total;
            -q * q.log2()
        })
        .sum();
    h.max(0.0)
}

/// Surprisal of an outcome of probability `p`, in bits: −log2 p (`inf` for p = 0).
pub fn surprisal_bits(p: f64) -> f64 {
    if p <= 0.0 {
        f64::INFINITY
    } else {
        (-p.log2()).max(0.0)
    }
}

/// Tokens per watt-hour for a given energy per token.
pub fn tokens_per_wh(joules_per_token: f64) -> f64 {
    JOULES_PER_WH / joules_per_token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_over_n_is_log2_n() {
        for n in [1usize, 2, 3, 7, 1000, 49_152] {
            let logits = vec![-3.25f32; n];
            let h = entropy_bits_from_logits(&logits);
            assert!((h - (n as f64).log2()).abs() < 1e-9, "n={n} h={h}");
        }
    }

    #[test]
    fn large_vocabularies_match_the_serial_sum_and_log2_n() {
        // Above the parallel threshold: uniform gives log2 n exactly; a skewed one matches
        // the serial pass to rounding, with masked entries anywhere.
        let n = 152_064;
        assert!((entropy_bits_from_logits(&vec![0.25; n]) - (n as f64).log2()).abs() < 1e-9);
        let mut logits: Vec<f32> = (0..n).map(|i| ((i * 7919) % 997) as f32 / 50.0).collect();
        logits[5] = f32::NEG_INFINITY;
        logits[100_000] = f32::NEG_INFINITY;
        let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let (s, t) = shifted_sums(&logits, max);
        let serial = ((s.ln() - t / s) / std::f64::consts::LN_2).max(0.0);
        let par = softmax_stats(&logits);
        assert!(
            (par.entropy_bits - serial).abs() < 1e-9,
            "{} vs {serial}",
            par.entropy_bits
        );
        assert!((par.log_sum_exp - (max + s.ln())).abs() < 1e-9);
        // Same input, same bits, every time.
        assert_eq!(softmax_stats(&logits), par);
    }

    #[test]
    fn one_hot_is_zero_bits() {
        let mut logits = vec![f32::NEG_INFINITY; 100];
        logits[42] = 1.0;
        assert_eq!(entropy_bits_from_logits(&logits), 0.0);
        // A finite but overwhelming logit is zero to within rounding.
        let mut logits = vec![0.0f32; 100];
        logits[3] = 1000.0;
        assert!(entropy_bits_from_logits(&logits) < 1e-12);
    }

    #[test]
    fn two_point_distribution_is_binary_entropy() {
        for p in [0.5f64, 0.1, 0.01, 0.9, 0.999] {
            let logits = [p.ln() as f32, (1.0 - p).ln() as f32];
            let expected = -(p * p.log2() + (1.0 - p) * (1.0 - p).log2());
            let h = entropy_bits_from_logits(&logits);
            assert!((h - expected).abs() < 1e-6, "p={p}: {h} vs {expected}");
        }
    }

    #[test]
    fn huge_logits_do_not_overflow() {
        let logits = [1e30f32, 1e30, f32::NEG_INFINITY, -1e30];
        let h = entropy_bits_from_logits(&logits);
        assert!((h - 1.0).abs() < 1e-12, "{h}");
    }

    #[test]
    fn all_masked_is_zero_not_nan() {
        assert_eq!(entropy_bits_from_logits(&[f32::NEG_INFINITY; 4]), 0.0);
        assert_eq!(entropy_bits_from_logits(&[]), 0.0);
        assert!(entropy_bits_from_logits(&[f32::NAN, 1.0]).is_nan());
    }

    #[test]
    fn the_largest_logit_is_found_in_any_lane_and_nan_anywhere_wins() {
        for n in [1usize, 7, 8, 9, 16, 49_152, 49_157] {
            for at in [0, n / 3, n - 1] {
                let mut logits: Vec<f32> = (0..n).map(|i| ((i * 37) % 101) as f32 - 60.0).collect();
                logits[at] = 50.5;
                assert_eq!(max_logit(&logits), 50.5, "n={n} at={at}");
                logits[at] = f32::NEG_INFINITY;
                let expected = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                assert_eq!(max_logit(&logits), expected as f64, "n={n} at={at}");
                logits[at] = f32::NAN;
                assert!(max_logit(&logits).is_nan(), "NaN at {at} of {n}");
            }
        }
        assert_eq!(max_logit(&[]), f64::NEG_INFINITY);
        assert_eq!(max_logit(&[f32::NEG_INFINITY; 11]), f64::NEG_INFINITY);
    }

    #[test]
    fn probs_and_logits_agree() {
        let logits = [0.3f32, -1.2, 2.5, 0.0, -7.0];
        let lse = log_sum_exp(&logits);
        let probs: Vec<f64> = logits.iter().map(|&x| (x as f64 - lse).exp()).collect();
        let a = entropy_bits_from_logits(&logits);
        let b = entropy_bits_from_probs(&probs);
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    #[test]
    fn landauer_at_300k() {
        let j = landauer_joules_per_bit(300.0);
        assert!((j / 2.871e-21 - 1.0).abs() < 2e-4, "{j}");
        let j350 = landauer_joules_per_bit(350.0);
        assert!((j350 / 3.35e-21 - 1.0).abs() < 2e-3, "{j350}");
    }

    #[test]
    fn surprisal_of_certain_and_impossible() {
        assert_eq!(surprisal_bits(1.0), 0.0);
        assert_eq!(surprisal_bits(0.25), 2.0);
        assert!(surprisal_bits(0.0).is_infinite());
    }

    #[test]
    fn tokens_per_wh_matches_founding_figure() {
        // 22.5 J/token is the RTX 3090 founding figure: 160 tokens/Wh.
        assert!((tokens_per_wh(22.5) - 160.0).abs() < 1e-9);
    }
}
