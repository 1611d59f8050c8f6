//! The CPU matmul kernels on the default model's shapes: the tiled layout against the GGUF
//! row layout, in one process (medians of several repetitions, random weights).
//!
//! ```sh
//! cargo run --release -p landauer-engine --example matmul_speed [REPS]
//! ```
//!
//! For each batch size m (activation rows) it multiplies one decoder layer of
//! SmolLM2-135M (q, k, v, o, gate, up, down: Q4_1) and its output layer (49,152 × 576,
//! Q8_0) the way a decode step does, and prints microseconds per step and the ratio.
use landauer_engine::kernels::{detected_isa, matmul_quantized, Activations, Format, QWeights};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

fn weights(rng: &mut ChaCha8Rng, format: Format, n: usize, k: usize) -> QWeights {
    let bb = format.block_bytes();
    let mut data = vec![0u8; n * k / format.block_values() * bb];
    rng.fill(&mut data[..]);
    // Small finite f16 scales (and minima), as real weights have: the high byte of each f16
    // field (Q4_K: d, dmin at 0 and 2; Q6_K: d at 208; the 32-value formats: d at 0, m at 2).
    let high: &[usize] = match format {
        Format::Q6K => &[209],
        Format::Q4_1 | Format::Q4K => &[1, 3],
        _ => &[1],
    };
    for blk in data.chunks_exact_mut(bb) {
        for &h in high {
            blk[h] = 0x20;
        }
    }
    QWeights::from_bytes(format, n, k, data).expect("sizes")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let reps: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(9);
    // A second argument keeps one format (`q4_0`).
    let only = std::env::args().nth(2);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    // (rows, width, format, matrices of this shape per step): 30 layers of q, o (576 × 576),
    // k, v (192 × 576), gate, up (1536 × 576), down (576 × 1536); the output layer once.
    let shapes = [
        (576, 576, Format::Q4_1, 60),
        (192, 576, Format::Q4_1, 60),
        (1536, 576, Format::Q4_1, 60),
        (576, 1536, Format::Q4_1, 30),
        (49152, 576, Format::Q8_0, 1),
        // Llama-3.2-1B's q and MLP in Q4_0 (the Q4_0 preset's main type).
        (2048, 2048, Format::Q4_0, 32),
        (8192, 2048, Format::Q4_0, 32),
        // And in the K-quants of the Q4_K_M preset (row layout: both columns time the same).
        (2048, 2048, Format::Q4K, 32),
        (8192, 2048, Format::Q4K, 32),
        (8192, 2048, Format::Q6K, 16),
    ];
    println!(
        "isa {:?}; µs per decode step (medians of {reps})",
        detected_isa()
    );
    println!(
        "{:>10} {:>3} {:>12} {:>12} {:>7}",
        "format", "m", "rows", "tiled", "ratio"
    );
    for m in [1usize, 4, 8, 16] {
        for &(n, k, format, count) in &shapes {
            let tiled = weights(&mut rng, format, n, k);
            if let Some(f) = only.as_deref() {
                if !format!("{format:?}").eq_ignore_ascii_case(f) {
                    continue;
                }
            }
            let rows = tiled.rowwise();
            let x: Vec<f32> = (0..m * k).map(|_| rng.random_range(-2.0..2.0)).collect();
            let a = Activations::new(&x, m, k, &[format]);
            let mut out = vec![0f32; m * n];
            let mut time = |w: &QWeights| {
                let t = Instant::now();
                let calls = (count / 6).max(1);
                for _ in 0..calls {
                    matmul_quantized(w, &a, &mut out, detected_isa());
                }
                t.elapsed().as_secs_f64() * 1e6 * count as f64 / calls as f64
            };
            let (mut tr, mut tt) = (Vec::new(), Vec::new());
            for _ in 0..reps {
                tr.push(time(&rows));
                tt.push(time(&tiled));
            }
            let (r, t) = (median(tr), median(tt));
            println!(
                "{:>10} {m:>3} {r:>12.0} {t:>12.0} {:>6.2}x",
                format!("{format:?} {n}x{k}"),
                r / t
            );
        }
    }
}
