//! The slow path: weight matrices that run on candle's CPU kernels rather than landauer's,
//! named so that a run can report them.

/// A weight matrix that runs on candle's CPU kernels rather than landauer's: the slow path,
/// which a run reports so that no figure hides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlowTensor {
    /// GGUF tensor name (`blk.3.ffn_down.weight`).
    pub name: String,
    /// Its type in llama.cpp's spelling (`Q8_K`).
    pub dtype: String,
}

/// One line on the slow path, grouped by type (`Q8_K: 14 matrices (blk.0.attn_q.weight, ...)`),
/// or `None` when every matrix has a landauer kernel.
pub fn slow_path_summary(slow: &[SlowTensor]) -> Option<String> {
    if slow.is_empty() {
        return None;
    }
    let mut by_type: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for t in slow {
        by_type.entry(&t.dtype).or_default().push(&t.name);
    }
    let groups: Vec<String> = by_type
        .iter()
        .map(|(d, names)| match names.len() {
            1 => format!("{d}: {}", names[0]),
            n => format!("{d}: {n} matrices ({}, ...)", names[0]),
        })
        .collect();
    Some(format!(
        "{} weight matrices run on candle's slower CPU kernels (no landauer kernel for them here), so speed and energy figures reflect that: {}",
        slow.len(),
        groups.join("; ")
    ))
}
