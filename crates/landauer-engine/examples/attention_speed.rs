//! CPU attention of one decode step on the default model's shapes, in one process (medians of
//! several repetitions, random cache contents): each query head on its own against the query
//! heads of a KV head taken together (f32 cache), and those groups over an f16 cache.
//!
//! ```sh
//! cargo run --release -p landauer-engine --example attention_speed [REPS] [SPAN]
//! ```
//!
//! For each batch size (rows) it runs the attention of all 30 layers of SmolLM2-135M (9 query
//! heads, 3 KV heads of 64 values) for one new token per row, over SPAN cached slots (default
//! 142: the mean context of a 256-token run after a 14-token prompt), with every layer's cache
//! its own memory as in the model (8 rows × 30 layers at 142 slots is 52 MB: it comes from
//! DRAM, not cache), and prints microseconds per step.
use landauer_engine::batched::Family;
use landauer_engine::cpu_attention::{attend, heads_per_item, KvDtype, LayerCache, Step};
use landauer_engine::kernels::pool_threads;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let arg = |i: usize, default: usize| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let (reps, span) = (arg(1, 15), arg(2, 142).max(1));
    let (heads, kv_heads, d, layers) = (9, 3, 64, 30);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut rnd = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
    println!(
        "{} threads; µs per decode step, {layers} layers, {span} slots (medians of {reps})",
        pool_threads()
    );
    println!(
        "{:>5} {:>12} {:>12} {:>7} {:>12} {:>7} {:>5}",
        "rows", "1 head/item", "3 heads/item", "ratio", "f16, 3/item", "ratio", "auto"
    );
    for b in [1usize, 2, 4, 8, 16] {
        let step = Step {
            batch: b,
            t: 1,
            heads,
            kv_heads,
            head_dim: d,
            capacity: span,
            slot: span - 1,
            family: Family::Llama,
            slots: None,
            first_row: 0,
        };
        // The same random contents in an f32 and an f16 cache.
        let (mut f32s, mut f16s): (Vec<LayerCache>, Vec<LayerCache>) = (0..layers)
            .map(|_| {
                let (k, v) = (rnd(b * kv_heads * span * d), rnd(b * kv_heads * span * d));
                (
                    LayerCache::from_values(KvDtype::F32, &k, &v),
                    LayerCache::from_values(KvDtype::F16, &k, &v),
                )
            })
            .unzip();
        let (q, k, v) = (
            rnd(b * heads * d),
            rnd(b * kv_heads * d),
            rnd(b * kv_heads * d),
        );
        let theta = rnd(b * d / 2);
        let cos: Vec<f32> = theta.iter().map(|x| x.cos()).collect();
        let sin: Vec<f32> = theta.iter().map(|x| x.sin()).collect();
        let time = |caches: &mut [LayerCache], per_item: usize| {
            let t = Instant::now();
            for c in caches.iter_mut() {
                std::hint::black_box(attend(
                    &step,
                    c,
                    &q,
                    &k,
                    &v,
                    &cos,
                    &sin,
                    None,
                    Some(per_item),
                ));
            }
            t.elapsed().as_secs_f64() * 1e6
        };
        let g = heads / kv_heads;
        let (mut one, mut group, mut half) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..reps {
            one.push(time(&mut f32s, 1));
            group.push(time(&mut f32s, g));
            half.push(time(&mut f16s, g));
        }
        let (one, group, half) = (median(one), median(group), median(half));
        println!(
            "{b:>5} {one:>12.0} {group:>12.0} {:>6.2}x {half:>12.0} {:>6.2}x {:>5}",
            one / group,
            group / half,
            heads_per_item(&step, pool_threads())
        );
    }
}
