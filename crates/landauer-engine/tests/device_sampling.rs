//! Sampling where the logits are ([`DeviceLogits`], candle tensor ops) against the host
//! sampler, on the CPU backend: the same tokens (same seeds), entropies, chosen logits and
//! top-N, for greedy, temperature, top-k and top-p, single sequences and batches.

use candle_core::{Device, Tensor};
use landauer_engine::device_sampling::{DeviceLogits, CHUNK};
use landauer_engine::{
    Engine, GenerateOptions, Needs, SampledDist, Sampler, SamplingParams, SamplingPlace, SinkError,
    TokenEvent, TokenSink,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn params(temperature: f64, top_k: Option<usize>, top_p: Option<f64>, seed: u64) -> SamplingParams {
    SamplingParams {
        temperature,
        top_k,
        top_p,
        seed,
    }
}

/// The settings every comparison runs: greedy, the full distribution at two temperatures,
/// top-k, top-p (a window that must grow on a flat distribution) and both.
fn settings(seed: u64) -> Vec<SamplingParams> {
    vec![
        SamplingParams::greedy(),
        params(1.0, None, None, seed),
        params(0.7, None, None, seed),
        params(0.9, Some(7), None, seed),
        params(1.3, None, Some(0.95), seed),
        params(0.8, Some(40), Some(0.6), seed),
    ]
}

/// The host's top-N: a full sort (logit descending, lower id first, NaN never).
fn full_sort_top(row: &[f32], n: usize) -> Vec<(u32, f32)> {
    let mut all: Vec<(u32, f32)> = row
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.is_nan())
        .map(|(i, &v)| (i as u32, v))
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all.truncate(n);
    all
}

/// Rows of logits with what real ones have and edge cases: peaked and flat rows, exact ties
/// across chunks, masked (−∞) entries, a vocabulary not a multiple of the chunk.
fn rows(rng: &mut ChaCha8Rng, n: usize, vocab: usize) -> Vec<Vec<f32>> {
    (0..n)
        .map(|r| {
            let spread = [8.0f32, 2.0, 0.05][r % 3];
            let mut row: Vec<f32> = (0..vocab)
                .map(|_| rng.random_range(-spread..spread))
                .collect();
            if r % 2 == 0 {
                // The same top value in three places, in different chunks.
                let top = spread + 1.0;
                for at in [vocab - 1, 3, CHUNK + 5] {
                    row[at] = top;
                }
            }
            for i in (0..vocab).step_by(97) {
                row[i] = f32::NEG_INFINITY;
            }
            row
        })
        .collect()
}

#[test]
fn device_draws_are_the_host_samplers() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for vocab in [1000, 49_152 + 3] {
        let rows = rows(&mut rng, 6, vocab);
        let flat: Vec<f32> = rows.concat();
        let t = Tensor::from_vec(flat, (rows.len(), vocab), &Device::Cpu).unwrap();
        let dl = DeviceLogits::new(&t).unwrap();
        let stats = dl.stats().unwrap();
        for (r, row) in rows.iter().enumerate() {
            let want = landauer_physics::softmax_stats(row);
            assert!((stats[r].log_sum_exp - want.log_sum_exp).abs() < 1e-9);
            assert!((stats[r].entropy_bits - want.entropy_bits).abs() < 1e-9);
        }
        let active: Vec<usize> = (0..rows.len()).collect();
        for p in settings(11) {
            // 20 steps, each row with its own seeded sampler on both sides.
            let mut host: Vec<Sampler> = (0..rows.len())
                .map(|r| {
                    Sampler::new(params(p.temperature, p.top_k, p.top_p, p.seed + r as u64))
                        .unwrap()
                })
                .collect();
            let mut dev: Vec<Sampler> = (0..rows.len())
                .map(|r| {
                    Sampler::new(params(p.temperature, p.top_k, p.top_p, p.seed + r as u64))
                        .unwrap()
                })
                .collect();
            for step in 0..20 {
                let mut plan = dl.plan(&active, &p, 5).unwrap();
                for (i, &r) in active.iter().enumerate() {
                    let (want, want_h) = {
                        let (tok, dist) = host[r].sample(&rows[r]);
                        (tok, dist.entropy_bits())
                    };
                    let (out, dist) = dl.sample_row(&mut plan, i, r, &mut dev[r]).unwrap();
                    let ctx = format!("vocab {vocab} {p:?} row {r} step {step}");
                    assert_eq!(out.token, want, "{ctx}");
                    assert_eq!(
                        out.chosen_logit.to_bits(),
                        rows[r][want as usize].to_bits(),
                        "{ctx}"
                    );
                    assert_eq!(out.top, full_sort_top(&rows[r], 5), "{ctx}");
                    assert!(
                        (dist.entropy_bits() - want_h).abs() < 1e-9,
                        "{ctx}: {} vs {want_h}",
                        dist.entropy_bits()
                    );
                    if !p.is_greedy() && p.top_k.is_none() && p.top_p.is_none() {
                        assert!(matches!(dist, SampledDist::Entropy(_)));
                    }
                }
            }
        }
    }
}

#[test]
fn top_n_of_any_size_is_a_full_sort() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let vocab = 5 * CHUNK + 17;
    let mut rows = rows(&mut rng, 3, vocab);
    rows[1][100] = f32::NAN;
    let t = Tensor::from_vec(rows.concat(), (3, vocab), &Device::Cpu).unwrap();
    let dl = DeviceLogits::new(&t).unwrap();
    for n in [1, 2, 5, 64, CHUNK + 1, vocab, vocab + 10] {
        let got = dl.top(&[0, 1, 2], n).unwrap();
        for (r, row) in rows.iter().enumerate() {
            assert_eq!(got[r], full_sort_top(row, n), "n={n} row {r}");
        }
    }
    // Every entry masked: greedy takes token 0, as the host's argmax does.
    let masked = Tensor::full(f32::NEG_INFINITY, (1, 300), &Device::Cpu).unwrap();
    let dl = DeviceLogits::new(&masked).unwrap();
    let mut s = Sampler::new(SamplingParams::greedy()).unwrap();
    let mut plan = dl.plan(&[0], &SamplingParams::greedy(), 0).unwrap();
    assert_eq!(dl.sample_row(&mut plan, 0, 0, &mut s).unwrap().0.token, 0);
}

/// What a trace reads from each token.
#[derive(Default, Debug, PartialEq)]
struct Seen {
    tokens: Vec<(usize, u32)>,
    entropy: Vec<f64>,
    sampled: Vec<f64>,
    chosen: Vec<f32>,
    top: Vec<Vec<(u32, f32)>>,
    logits_sent: usize,
}

struct Probe {
    needs: Needs,
    seen: Seen,
}

impl TokenSink for Probe {
    fn needs(&self) -> Needs {
        self.needs
    }
    fn token(&mut self, e: &TokenEvent<'_>) -> Result<(), SinkError> {
        let s = &mut self.seen;
        s.tokens.push((e.seq, e.token_id));
        s.entropy.push(e.softmax_stats().unwrap().entropy_bits);
        s.sampled.push(e.sampled.entropy_bits());
        s.chosen.push(e.chosen_logit);
        s.top.push(match (e.top, e.logits) {
            (Some(t), _) => t.to_vec(),
            (None, Some(l)) => full_sort_top(l, 5),
            (None, None) => Vec::new(),
        });
        s.logits_sent += e.logits.is_some() as usize;
        Ok(())
    }
}

fn run(
    engine: &mut Engine,
    place: SamplingPlace,
    prompts: &[Vec<u32>],
    p: &SamplingParams,
) -> Seen {
    engine.set_sampling_place(place);
    let mut probe = Probe {
        needs: Needs {
            logits: false,
            stats: true,
            top_n: 5,
        },
        seen: Seen::default(),
    };
    let opts = GenerateOptions {
        max_tokens: 12,
        sampling: p.clone(),
        ignore_eos: true,
        stop: None,
        stats_rows: usize::MAX,
    };
    match prompts {
        [one] => engine.generate(one, &opts, &mut probe).unwrap(),
        _ => engine.generate_batch(prompts, &opts, &mut probe).unwrap(),
    };
    probe.seen
}

fn close(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9)
}

#[test]
fn generation_on_the_device_path_equals_the_host_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    landauer_engine::tiny::write_tiny_llama(&path, &Default::default()).unwrap();
    let mut engine = Engine::load_batched(&path, None, &Device::Cpu).unwrap();
    assert!(
        !engine.samples_on_device(),
        "the CPU samples on the host by default"
    );
    let single = vec![engine.encode("The cat sat on").unwrap()];
    let batch: Vec<Vec<u32>> = ["Once upon a time", "a b", "The mat was red and"]
        .iter()
        .map(|t| engine.encode(t).unwrap())
        .collect();
    for prompts in [&single, &batch] {
        for p in settings(3) {
            let host = run(&mut engine, SamplingPlace::Host, prompts, &p);
            let dev = run(&mut engine, SamplingPlace::Device, prompts, &p);
            let ctx = format!("{} prompts, {p:?}", prompts.len());
            assert_eq!(dev.tokens, host.tokens, "{ctx}");
            assert!(close(&dev.entropy, &host.entropy), "{ctx}");
            assert!(close(&dev.sampled, &host.sampled), "{ctx}");
            assert_eq!(dev.chosen, host.chosen, "{ctx}");
            assert_eq!(dev.top, host.top, "{ctx}");
            // The host path hands over the logits it has; the device path does not copy them
            // for a sink that does not ask.
            assert_eq!(host.logits_sent, host.tokens.len());
            assert_eq!(dev.logits_sent, 0, "{ctx}");
        }
    }
}
