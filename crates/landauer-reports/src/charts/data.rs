//! The token records as the figures take them.

use landauer_trace::TokenRecord;
use std::collections::BTreeSet;

/// The tokens of the trace's first row (lowest `seq`) in index order, and how many rows it has.
pub(super) fn first_row(tokens: &[TokenRecord]) -> (Vec<&TokenRecord>, usize) {
    let seqs: BTreeSet<usize> = tokens.iter().map(|t| t.seq).collect();
    let Some(&first) = seqs.iter().next() else {
        return (Vec::new(), 0);
    };
    let mut row: Vec<&TokenRecord> = tokens.iter().filter(|t| t.seq == first).collect();
    row.sort_by_key(|t| t.index);
    (row, seqs.len())
}

pub(super) fn fin(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

pub(super) fn mean(points: &[(f64, f64)]) -> f64 {
    if points.is_empty() {
        return 0.0;
    }
    points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64
}
