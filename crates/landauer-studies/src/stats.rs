//! Statistics of repeated measurements.

/// The median (the mean of the middle two for an even count); NaN for no values.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// The median, or None for no values.
pub fn median_of(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| median(v))
}

/// The median over pairs (a_i, b_i) of a_i / b_i − 1: the paired ratio of two
/// configurations measured side by side, less sensitive to drift than a ratio of medians.
pub fn paired_excess(a: &[f64], b: &[f64]) -> f64 {
    median(
        &a.iter()
            .zip(b)
            .map(|(a, b)| a / b - 1.0)
            .collect::<Vec<_>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(median_of(&[]), None);
        assert_eq!(median_of(&[5.0]), Some(5.0));
    }

    #[test]
    fn paired_excess_is_the_median_of_pair_ratios() {
        // Pairs 2/1, 3/2, 9/3: ratios 2, 1.5, 3; median 2, so +100%.
        assert_eq!(paired_excess(&[2.0, 3.0, 9.0], &[1.0, 2.0, 3.0]), 1.0);
    }
}
