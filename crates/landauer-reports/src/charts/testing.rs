//! Fixtures of the figures' tests: token records and sweep rows, and readers of the SVG
//! the figures write (its texts, polylines, tick exponents).

use super::canvas::trim_svg_header;
use landauer_trace::{SweepRow, TokenRecord};
use resvg::usvg;
use serde_json::json;

pub(super) const K: f64 = 2.870978885078724e-21;

/// Token `i` of row `seq`: entropy and energy vary with i; the chosen token is at rank
/// i % 3 of five alternatives, except every fourth token (4, 8, ...), which is outside them.
pub(super) fn record(seq: usize, i: usize, entropy: f64, energy: Option<f64>) -> TokenRecord {
    let chosen = 1000 + i as u32;
    let in_top = i == 0 || !i.is_multiple_of(4);
    let probs: [f64; 5] = [0.45, 0.2, 0.1, 0.05, 0.02];
    let top: Vec<_> = probs
        .iter()
        .enumerate()
        .map(|(r, &p)| {
            let id = if in_top && r == i % 3 {
                chosen
            } else {
                5000 + (i * 10 + r) as u32
            };
            json!({"token_id": id, "text": format!("alt{r}"), "prob": p})
        })
        .collect();
    let prob: f64 = if in_top { probs[i % 3] } else { 0.004 };
    serde_json::from_value(json!({
        "seq": seq, "index": i, "position": 5 + i, "token_id": chosen,
        "text": format!(" tok{i}"), "eos": false,
        "phase": if i == 0 { "prefill" } else { "decode" },
        "entropy_bits": entropy, "sampling_entropy_bits": entropy * 0.7,
        "surprisal_bits": -prob.log2(), "prob": prob, "top": top,
        "t_start_s": i as f64 * 0.01, "t_end_s": (i + 1) as f64 * 0.01,
        "step_tokens": 1, "energy_j": energy, "energy_estimated": true,
        "energy_resolved": false, "meter_gap": false,
        "landauer_j": entropy * K, "landauer_gap": null
    }))
    .expect("a token record")
}

/// n tokens of one row: entropy 0.5..5.5 bits, energy 0.1 + 0.01 i J (the first 0.9 J).
pub(super) fn tokens(n: usize) -> Vec<TokenRecord> {
    (0..n)
        .map(|i| {
            let e = if i == 0 { 0.9 } else { 0.1 + 0.01 * i as f64 };
            record(0, i, 0.5 + (i * 7 % 11) as f64 * 0.5, Some(e))
        })
        .collect()
}

pub(super) fn without_energy(mut t: Vec<TokenRecord>) -> Vec<TokenRecord> {
    t.iter_mut().for_each(|t| t.energy_j = None);
    t
}

pub(super) fn zero_entropy(mut t: Vec<TokenRecord>) -> Vec<TokenRecord> {
    for t in &mut t {
        t.entropy_bits = 0.0;
        t.surprisal_bits = 0.0;
        t.prob = 1.0;
    }
    t
}

/// Checks the document is one parsable SVG and returns it trimmed.
pub(super) fn valid(svg: &str) -> &str {
    let doc = trim_svg_header(svg);
    assert!(
        doc.starts_with("<svg"),
        "not an SVG: {}",
        &doc[..doc.len().min(80)]
    );
    assert!(doc.trim_end().ends_with("</svg>"));
    usvg::Tree::from_str(doc, &usvg::Options::default()).expect("usvg parses the figure");
    doc
}

/// The texts of the document's <text> elements.
pub(super) fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .map(|s| {
            let body = &s[s.find('>').unwrap() + 1..];
            body[..body.find("</text>").unwrap()].trim().to_string()
        })
        .collect()
}

/// The exponents of the "10ⁿ" tick labels.
pub(super) fn exponents(svg: &str) -> Vec<i32> {
    texts(svg)
        .iter()
        .filter_map(|t| t.strip_prefix("10"))
        .filter(|e| !e.is_empty() && e.chars().all(|c| "⁻⁰¹²³⁴⁵⁶⁷⁸⁹".contains(c)))
        .map(|e| {
            let digits: String = e
                .chars()
                .map(|c| match c {
                    '⁻' => '-',
                    c => char::from_digit(
                        "⁰¹²³⁴⁵⁶⁷⁸⁹".chars().position(|d| d == c).unwrap() as u32,
                        10,
                    )
                    .unwrap(),
                })
                .collect();
            digits.parse().unwrap()
        })
        .collect()
}

/// The point lists of the polylines stroked in `color` ("#RRGGBB").
pub(super) fn polylines(svg: &str, color: &str) -> Vec<Vec<(i32, i32)>> {
    svg.split("<polyline")
        .skip(1)
        .map(|s| &s[..s.find("/>").unwrap()])
        .filter(|s| s.contains(&format!("stroke=\"{color}\"")))
        .map(|s| {
            let p = &s[s.find("points=\"").unwrap() + 8..];
            p[..p.find('"').unwrap()]
                .split_whitespace()
                .map(|xy| {
                    let (x, y) = xy.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect()
        })
        .collect()
}

pub(super) fn count(svg: &str, needle: &str) -> usize {
    svg.matches(needle).count()
}

pub(super) fn sweep_row(batch: usize, tps: f64, wh: Option<f64>) -> SweepRow {
    serde_json::from_value(json!({
        "batch": batch, "runs": 3, "prompt_tokens": 10, "generated_tokens": 64,
        "prefill_s": 0.1, "prefill_tokens_per_s": 100.0, "prefill_energy_j": 1.0,
        "decode_window_s": 3.0, "decode_tokens_per_s": tps, "mean_power_w": 20.0,
        "joules_per_token": wh.map(|w| 3600.0 / w), "active_joules_per_token": null,
        "tokens_per_wh": wh, "mean_entropy_bits": 2.0, "bits_per_joule": 10.0,
        "landauer_gap": 1e19, "steady": true
    }))
    .expect("a sweep row")
}
