//! Every kernel against straightforward references, on random inputs of ragged sizes.

use super::*;
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Byte offsets of a block's f16 scale fields (d, and the minimum or dmin where there is one).
fn f16_fields(format: Format) -> &'static [usize] {
    match format {
        Format::Q4_0 | Format::Q5_0 | Format::Q8_0 => &[0],
        Format::Q4_1 | Format::Q5_1 | Format::Q4K | Format::Q5K => &[0, 2],
        Format::Q2K => &[80, 82],
        Format::Q3K => &[108],
        Format::Q6K => &[208],
        Format::F16 | Format::BF16 | Format::F32 => &[],
    }
}

/// Random blocks: every byte value can occur in the quants, high bits, packed scales and
/// minimums (Q8_0's −128 and Q6_K's −128 scale included); f16 scales are random finite values
/// of either sign; unquantized weights are random finite values.
fn random_weights(rng: &mut ChaCha8Rng, format: Format, n: usize, k: usize) -> QWeights {
    let bb = format.block_bytes();
    let mut data = vec![0u8; n * k / format.block_values() * bb];
    rng.fill(&mut data[..]);
    for (b, blk) in data.chunks_exact_mut(bb).enumerate() {
        // Every few blocks, quants and scales at their extremes.
        if b % 7 == 3 {
            blk.fill(0xFF);
        } else if b % 7 == 5 {
            blk.fill(0);
        }
        for (f, &at) in f16_fields(format).iter().enumerate() {
            let range = if f == 0 { 0.05f32 } else { 0.5 };
            let v = f16::from_f32(rng.random_range(-range..range));
            blk[at..at + 2].copy_from_slice(&v.to_le_bytes());
        }
        match format {
            Format::F16 => blk.chunks_exact_mut(2).for_each(|c| {
                c.copy_from_slice(&f16::from_f32(rng.random_range(-1f32..1.0)).to_le_bytes())
            }),
            Format::BF16 => blk.chunks_exact_mut(2).for_each(|c| {
                c.copy_from_slice(&half::bf16::from_f32(rng.random_range(-1f32..1.0)).to_le_bytes())
            }),
            Format::F32 => blk
                .chunks_exact_mut(4)
                .for_each(|c| c.copy_from_slice(&rng.random_range(-1f32..1.0).to_le_bytes())),
            _ => {}
        }
    }
    QWeights::from_bytes(format, n, k, data).unwrap()
}

fn random_activations(rng: &mut ChaCha8Rng, m: usize, k: usize) -> Vec<f32> {
    (0..m * k)
        .map(|i| {
            // Mostly normal-ish values, some large outliers and exact zeros (a zero block too).
            if i / BLOCK == 1 {
                0.0
            } else if rng.random_bool(0.01) {
                rng.random_range(-40.0f32..40.0)
            } else {
                rng.random_range(-2.0f32..2.0)
            }
        })
        .collect()
}

/// Activation row i as the kernels of `format` see it (dequantized Q8 / Q8_K, or f32).
fn activation_row(format: Format, a: &Activations, i: usize) -> Vec<f64> {
    match format.act() {
        Act::Q8 => (0..a.k)
            .map(|c| a.q8.qs[i * a.k + c] as f64 * a.q8.scale(i, c / BLOCK) as f64)
            .collect(),
        Act::Q8K => (0..a.k)
            .map(|c| a.q8k.qs[i * a.k + c] as f64 * a.q8k.scale(i, c / QK_K) as f64)
            .collect(),
        Act::F32 => a.f32.row(i).iter().map(|&v| v as f64).collect(),
    }
}

/// Σ dequantized weight × dequantized activation in f64, and Σ of their magnitudes.
fn dequantized_dot(w: &QWeights, j: usize, a: &Activations, i: usize) -> (f64, f64) {
    let wr = w.dequantize_row(j);
    let ar = activation_row(w.format, a, i);
    let terms = wr.iter().zip(&ar).map(|(&w, &a)| w as f64 * a);
    terms.fold((0.0, 0.0), |(s, m), t| (s + t, m + t.abs()))
}

/// Widths to test a format at: ragged block counts (1, 2, 3, 5 blocks) and a model's width.
fn widths(format: Format) -> Vec<usize> {
    let bv = format.block_values();
    let mut ks: Vec<usize> = [1, 2, 3, 5].iter().map(|b| b * bv).collect();
    ks.push(if bv == QK_K { 2048 } else { 576 });
    ks
}

/// The SIMD implementations this CPU can run: AVX2, and AVX-VNNI where present (each tested
/// against the reference; a machine without them prints that they were skipped).
fn simd_isas() -> Vec<Isa> {
    let best = detected_isa();
    match best {
        Isa::Avx512Vnni => vec![Isa::Avx2, Isa::AvxVnni, Isa::Avx512Vnni],
        Isa::AvxVnni => vec![Isa::Avx2, Isa::AvxVnni],
        Isa::Avx2 => {
            eprintln!("SKIPPED: no AVX-VNNI on this CPU; its kernels were not run");
            vec![Isa::Avx2]
        }
        Isa::Reference => vec![],
    }
}

#[test]
fn reference_dot_is_the_dequantized_dot() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for format in Format::ALL {
        for k in widths(format) {
            let w = random_weights(&mut rng, format, 3, k);
            let x = random_activations(&mut rng, 2, k);
            let a = Activations::new(&x, 2, k, &[format]);
            for j in 0..3 {
                for i in 0..2 {
                    let got = dot_reference(format, &w.row(j), &a, i) as f64;
                    let (want, mag) = dequantized_dot(&w, j, &a, i);
                    // Q4_1's and Q5_1's minimum enters through s = d·Σq rounded to f16 (as
                    // ggml does): up to 2^-11 of |m·s| a block.
                    let tol = 1e-5 * mag
                        + match format {
                            Format::Q4_1 | Format::Q5_1 => 2e-3 * (k / BLOCK) as f64,
                            _ => 1e-6,
                        };
                    assert!(
                        (got - want).abs() <= tol,
                        "{format:?} k={k}: {got} vs {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn simd_and_threaded_matmul_equal_the_reference_at_every_size() {
    if !detected_isa().avx2() {
        eprintln!("SKIPPED: this CPU has no AVX2 + FMA + F16C; only the reference runs here");
    }
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for format in Format::ALL {
        // Ragged everywhere: odd block counts, row counts that are not multiples of the
        // 4-row tile or of the thread chunks, batches of 1 to 9 rows and larger; 300 x k x 5
        // goes through the thread pool.
        let bv = format.block_values();
        let big = if bv == QK_K { 2048 } else { 1536 };
        for (n, k, m) in [
            (1, bv, 1),
            (3, 3 * bv, 2),
            (5, 2 * bv, 3),
            (17, 5 * bv, 4),
            (33, bv, 5),
            (7, widths(format)[4], 7),
            (300, 8 * BLOCK.max(bv), 5),
            (64, big, 9),
            (20, 2 * bv, 12),
            (9, 3 * bv, 16),
            (7, 3 * bv, 70),
            // Multiples of 8 rows: Q4_1 and Q8_0 in tiles, 1 to 4 activation rows a pass.
            (8, bv, 1),
            (16, 3 * bv, 2),
            (24, 2 * bv, 3),
            (40, widths(format)[4], 8),
            (296, 8 * BLOCK.max(bv), 5),
            (8, 3 * bv, 70),
        ] {
            let w = random_weights(&mut rng, format, n, k);
            assert_eq!(w.is_tiled(), format.tiles() && n % TILE_ROWS == 0);
            let x = random_activations(&mut rng, m, k);
            let a = Activations::new(&x, m, k, &[format]);
            let mut reference = vec![0f32; m * n];
            matmul_quantized(&w, &a, &mut reference, Isa::Reference);
            for i in 0..m {
                for j in 0..n {
                    assert_eq!(
                        reference[i * n + j],
                        dot_reference(format, &w.row(j), &a, i)
                    );
                }
            }
            for isa in simd_isas() {
                let mut simd = vec![0f32; m * n];
                matmul_quantized(&w, &a, &mut simd, isa);
                for i in 0..m {
                    for j in 0..n {
                        let (g, r) = (simd[i * n + j] as f64, reference[i * n + j] as f64);
                        let tol = 1e-5 * dequantized_dot(&w, j, &a, i).1 + 1e-6;
                        assert!(
                            (g - r).abs() <= tol,
                            "{format:?} on {isa:?} {n}x{k} m={m} ({i},{j}): {g} vs {r}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn quantizing_activations_follows_ggml() {
    let x: Vec<f32> = (0..64).map(|i| (i as f32 - 20.5) * 0.37).collect();
    let mut a = Q8Rows::default();
    a.quantize(&x, 2, 32);
    for r in 0..2 {
        let xs = &x[r * 32..(r + 1) * 32];
        let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = f16::from_f32(amax / 127.0).to_f32();
        assert_eq!(a.scale(r, 0), d);
        // The largest magnitude maps to ±127; every value is within half a step.
        assert_eq!(
            a.qs[r * 32..(r + 1) * 32]
                .iter()
                .map(|q| q.unsigned_abs())
                .max(),
            Some(127)
        );
        for (c, &v) in xs.iter().enumerate() {
            assert!((a.qs[r * 32 + c] as f32 * d - v).abs() <= 0.5 * d + 1e-3 * amax);
        }
        let sum: i32 = a.qs[r * 32..(r + 1) * 32].iter().map(|&q| q as i32).sum();
        assert!((a.sum_scale(r, 0) - sum as f32 * d).abs() <= 1e-3 * (sum as f32 * d).abs() + 1e-6);
    }
    // An all-zero block quantizes to zeros with a zero scale, not NaN.
    a.quantize(&[0.0; 32], 1, 32);
    assert!(a.qs.iter().all(|&q| q == 0) && a.scale(0, 0) == 0.0 && a.sum_scale(0, 0) == 0.0);
}

#[test]
fn dequantization_and_matmul_agree_with_candle() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let dev = Device::Cpu;
    for format in Format::ALL {
        let dtype = format.dtype();
        let (n, k, m) = (40, 512, 6);
        let wf: Vec<f32> = (0..n * k).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let wt = Tensor::from_vec(wf, (n, k), &dev).unwrap();
        let q = QTensor::quantize(&wt, dtype).unwrap();
        let ours = QWeights::from_qtensor(&q)
            .unwrap()
            .expect("a kernel for this format");
        assert_eq!(ours.format, format);
        let theirs = q.dequantize(&dev).unwrap().to_vec2::<f32>().unwrap();
        for (j, row) in theirs.iter().enumerate() {
            assert_eq!(&ours.dequantize_row(j), row, "{format:?} row {j}");
        }
        let x = Tensor::from_vec(random_activations(&mut rng, m, k), (m, k), &dev).unwrap();
        let candle = QMatMul::from_qtensor(QTensor::quantize(&wt, dtype).unwrap())
            .unwrap()
            .forward(&x)
            .unwrap();
        let linear = QLinear::new(q).unwrap();
        assert!(linear.is_landauer());
        let got = linear.forward(&x).unwrap();
        let max_abs = |t: &Tensor| {
            t.abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        let (diff, scale) = (max_abs(&(got - &candle).unwrap()), max_abs(&candle));
        // candle multiplies f16 and bf16 weights by activations rounded to their type; here
        // the activations stay f32.
        let tol = match format {
            Format::F16 => 2e-3,
            Format::BF16 => 2e-2,
            _ => 1e-4,
        };
        assert!(
            diff <= tol * scale,
            "{format:?}: max |ours - candle| {diff} (scale {scale})"
        );
    }
}

#[test]
fn other_formats_fall_back_to_candle_and_bad_inputs_are_errors() {
    let dev = Device::Cpu;
    let w = Tensor::randn(0f32, 1.0, (8, 256), &dev).unwrap();
    // Q8_K is only ever an activation type: no kernel here, candle's runs it.
    let q = QTensor::quantize(&w, GgmlDType::Q8K).unwrap();
    let linear = QLinear::new(q).unwrap();
    assert!(!linear.is_landauer());
    assert_eq!(linear.fallback(), Some(GgmlDType::Q8K));
    let q = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
    let linear = QLinear::new(q).unwrap();
    let wrong = Tensor::zeros((2, 128), candle_core::DType::F32, &dev).unwrap();
    let err = linear.forward(&wrong).unwrap_err().to_string();
    assert!(err.contains("input width 128"), "{err}");
    // Leading dimensions are kept; a transposed (non-contiguous) input is made contiguous.
    let x = Tensor::randn(0f32, 1.0, (2, 3, 256), &dev).unwrap();
    assert_eq!(linear.forward(&x).unwrap().dims(), &[2, 3, 8]);
    let xt = Tensor::randn(0f32, 1.0, (256, 4), &dev)
        .unwrap()
        .t()
        .unwrap();
    assert_eq!(linear.forward(&xt).unwrap().dims(), &[4, 8]);
    assert!(QWeights::from_bytes(Format::Q4_1, 2, 32, vec![0; 39]).is_err());
}

#[test]
fn simd_quantization_gives_the_reference_bytes() {
    if !detected_isa().avx2() {
        eprintln!("SKIPPED: this CPU has no AVX2 + FMA + F16C; only the reference runs here");
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let (m, k) = (5, 320);
    let mut x = random_activations(&mut rng, m, k);
    // Exact ties after scaling: a block of ±127 with values at q + 0.5.
    for (c, v) in x[64..96].iter_mut().enumerate() {
        *v = if c == 0 {
            127.0
        } else {
            (c as f32 - 16.0) + 0.5
        };
    }
    let (mut a, mut b) = (Q8Rows::default(), Q8Rows::default());
    a.quantize_on(&x, m, k, Isa::Reference);
    b.quantize_on(&x, m, k, Isa::Avx2);
    assert_eq!(a.qs, b.qs);
    assert_eq!(a.d, b.d);
    assert_eq!(a.s, b.s);
    assert_eq!(a.qsum, b.qsum);
    // Ties went to even, as ggml's AVX2 quantizer does: 0.5 -> 0, 1.5 -> 2, -0.5 -> 0.
    assert_eq!(&a.qs[64 + 16..64 + 19], &[0, 2, 2]);
    assert_eq!(a.qs[64 + 15], 0);
}

#[test]
fn several_matrices_at_once_equal_each_alone() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (k, m) = (512, 3);
    // Formats of all three activation kinds in one call, as a mixed file's q, k, v can be.
    let ws = [
        random_weights(&mut rng, Format::Q4_1, 70, k),
        random_weights(&mut rng, Format::Q8_0, 9, k),
        random_weights(&mut rng, Format::Q4_0, 33, k),
        random_weights(&mut rng, Format::Q6K, 17, k),
        random_weights(&mut rng, Format::Q4K, 40, k),
        random_weights(&mut rng, Format::F16, 5, k),
    ];
    let x = random_activations(&mut rng, m, k);
    let formats: Vec<Format> = ws.iter().map(|w| w.format).collect();
    let a = Activations::new(&x, m, k, &formats);
    for isa in [vec![Isa::Reference], simd_isas()].concat() {
        let mut outs: Vec<Vec<f32>> = ws.iter().map(|w| vec![0f32; m * w.n]).collect();
        {
            let mut views: Vec<&mut [f32]> = outs.iter_mut().map(|o| o.as_mut_slice()).collect();
            matmul_quantized_many(&ws.iter().collect::<Vec<_>>(), &a, &mut views, isa);
        }
        for (w, got) in ws.iter().zip(&outs) {
            let mut alone = vec![0f32; m * w.n];
            matmul_quantized(w, &a, &mut alone, isa);
            assert_eq!(got, &alone, "{:?} on {isa:?}", w.format);
        }
    }
}

#[test]
fn forward_many_equals_each_forward_and_mixes_with_candle_layers() {
    let dev = Device::Cpu;
    let mk = |n: usize, dtype| {
        let w = Tensor::randn(0f32, 1.0, (n, 256), &dev).unwrap();
        QLinear::new(QTensor::quantize(&w, dtype).unwrap()).unwrap()
    };
    let (a, b, c) = (
        mk(40, GgmlDType::Q4_1),
        mk(8, GgmlDType::Q8_0),
        mk(16, GgmlDType::Q8K),
    );
    let x = Tensor::randn(0f32, 1.0, (2, 3, 256), &dev).unwrap();
    let [ya, yb] = QLinear::forward_many([&a, &b], &x).unwrap();
    assert_eq!(ya.dims(), &[2, 3, 40]);
    let same = |p: &Tensor, q: &Tensor| {
        p.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            == q.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    assert!(same(&ya, &a.forward(&x).unwrap()) && same(&yb, &b.forward(&x).unwrap()));
    // A K-quant layer among them: each runs on its own implementation.
    let [ya2, yc] = QLinear::forward_many([&a, &c], &x).unwrap();
    assert!(same(&ya2, &ya) && same(&yc, &c.forward(&x).unwrap()));
    // As plain vectors: the same values; none when candle runs a layer.
    let [va, vb] = QLinear::forward_many_host([&a, &b], &x).unwrap().unwrap();
    assert_eq!(va, ya.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    assert_eq!(vb, yb.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    assert!(QLinear::forward_many_host([&a, &c], &x).unwrap().is_none());
}

#[test]
fn the_tiled_layout_holds_the_same_rows() {
    for format in [
        Format::Q4_0,
        Format::Q4_1,
        Format::Q5_0,
        Format::Q5_1,
        Format::Q8_0,
        Format::Q4K,
        Format::Q5K,
        Format::Q6K,
    ] {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let (n, k) = (24, 5 * format.block_values());
        let w = random_weights(&mut rng, format, n, k);
        assert!(w.is_tiled());
        let rows = w.rowwise();
        assert!(!rows.is_tiled());
        // The row layout is the GGUF bytes as given; the tiles hold the same bytes reordered
        // (Q5_0's, Q5_1's, Q5_K's and Q6_K's re-pack their quants' bits: the same number of bytes, a
        // lossless layout).
        let mut gguf = Vec::new();
        for j in 0..n {
            assert_eq!(w.row(j), rows.row(j), "row {j}");
            assert_eq!(w.dequantize_row(j), rows.dequantize_row(j));
            gguf.extend_from_slice(&rows.row(j));
        }
        assert_eq!(gguf.len(), w.data.len());
        if !matches!(
            format,
            Format::Q5_0 | Format::Q5_1 | Format::Q5K | Format::Q6K
        ) {
            let (mut a, mut b) = (gguf.clone(), w.data.clone());
            a.sort_unstable();
            b.sort_unstable();
            assert!(
                a == b,
                "{format:?}: the tiles are not a permutation of the rows"
            );
        }
        assert!(gguf != w.data, "{format:?}: the tiles are the rows");
        assert!(
            QWeights::from_bytes(format, n, k, gguf).unwrap().data == w.data,
            "{format:?}: tiling the rows again gives other tiles"
        );
        // Each row of a batch is computed alone: the same bits whatever the batch around it.
        let x = random_activations(&mut rng, 7, k);
        let all = Activations::new(&x, 7, k, &[format]);
        let mut batch = vec![0f32; 7 * n];
        matmul_quantized(&w, &all, &mut batch, detected_isa());
        for i in 0..7 {
            let one = Activations::new(&x[i * k..(i + 1) * k], 1, k, &[format]);
            let mut alone = vec![0f32; n];
            matmul_quantized(&w, &one, &mut alone, detected_isa());
            if batch[i * n..(i + 1) * n] != alone[..] {
                eprintln!("DIFF {format:?} row {i}");
            }
        }
    }
}

#[test]
fn swiglu_equals_candles_silu_times_up() {
    let dev = Device::Cpu;
    let mk = |n: usize, dtype| {
        let w = Tensor::randn(0f32, 1.0, (n, 256), &dev).unwrap();
        QLinear::new(QTensor::quantize(&w, dtype).unwrap()).unwrap()
    };
    // Small (one thread) and large enough for the pool (9 × 3 × 200 > 4096 values, split
    // at arbitrary points); a Q8_K pair (no kernel here) goes through candle's own ops.
    for (rows, dtype) in [
        (1, GgmlDType::Q4_1),
        (9, GgmlDType::Q4_1),
        (2, GgmlDType::Q8K),
        (2, GgmlDType::Q4K),
    ] {
        let (gate, up) = (mk(200, dtype), mk(200, dtype));
        let x = Tensor::randn(0f32, 1.0, (rows, 3, 256), &dev).unwrap();
        let [g, u] = QLinear::forward_many([&gate, &up], &x).unwrap();
        let want = (candle_nn::ops::silu(&g).unwrap() * u).unwrap();
        let got = QLinear::forward_swiglu(&gate, &up, &x).unwrap();
        assert_eq!(got.dims(), want.dims());
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (g, w) in flat(&got).into_iter().zip(flat(&want)) {
            // libm's exp in candle, the vectorized one here: within a few ulp.
            assert!(
                (g - w).abs() <= 1e-6 * w.abs() + 1e-30,
                "{rows} rows of {dtype:?}: {g} vs {w}"
            );
        }
    }
}

#[test]
fn silu_is_candles_within_ulps_and_independent_of_the_split() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    // Ordinary values, large ones of both signs (e^±x saturates), zeros, and a length that is
    // not a multiple of 8 or of the pool's chunks.
    let mut g: Vec<f32> = (0..10_007)
        .map(|i| match i % 97 {
            0 => 0.0,
            1 => rng.random_range(-200.0f32..-80.0),
            2 => rng.random_range(80.0f32..200.0),
            _ => rng.random_range(-12.0f32..12.0),
        })
        .collect();
    let u: Vec<f32> = (0..g.len())
        .map(|_| rng.random_range(-3.0f32..3.0))
        .collect();
    let want: Vec<f32> = g
        .iter()
        .zip(&u)
        .map(|(&v, &w)| v / (1.0 + (-v).exp()) * w)
        .collect();
    let all = g.clone();
    silu_mul_in_place(&mut g, &u);
    for (i, (&got, &w)) in g.iter().zip(&want).enumerate() {
        assert!(
            (got - w).abs() <= 1e-6 * w.abs() + 1e-30,
            "silu({}) * {}: {got} vs {w}",
            all[i],
            u[i]
        );
    }
    // Any piece alone gives the same bits as inside the whole.
    for (start, len) in [(0, 1), (3, 5), (8, 8), (13, 29), (9_990, 17)] {
        let mut piece = all[start..start + len].to_vec();
        silu_mul_in_place(&mut piece, &u[start..start + len]);
        assert_eq!(piece, g[start..start + len], "{start}+{len}");
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn vectorized_exp_is_within_two_ulp_of_libm() {
    if !detected_isa().avx2() {
        eprintln!("SKIPPED: this CPU has no AVX2 + FMA");
        return;
    }
    use std::arch::x86_64::*;
    let ulp = |x: f32| f32::from_bits(x.to_bits() + 1) - x;
    let mut x = -87.0f32;
    while x < 88.0 {
        let xs: [f32; 8] = std::array::from_fn(|i| x + i as f32 * 1.37e-3);
        let mut got = [0f32; 8];
        // SAFETY: AVX2 and FMA are present (checked).
        unsafe { _mm256_storeu_ps(got.as_mut_ptr(), x86::exp8(_mm256_loadu_ps(xs.as_ptr()))) };
        for (g, v) in got.iter().zip(xs) {
            let w = v.exp();
            assert!((g - w).abs() <= 2.0 * ulp(w), "e^{v}: {g} vs {w}");
        }
        x += 0.0113;
    }
}

#[test]
fn parallel_for_hands_out_every_item_once() {
    use std::sync::atomic::{AtomicU32, Ordering};
    for n in [0usize, 1, 2, 3, 17, 64, 1000, 100_003] {
        let seen: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
        parallel_for(n, |range| {
            assert!(
                range.start < range.end && range.end <= n,
                "{range:?} of {n}"
            );
            for i in range {
                seen[i].fetch_add(1, Ordering::Relaxed);
            }
            // A nested call runs inline instead of waiting on the pool.
            parallel_for(2, |r| assert!(r.end <= 2));
        });
        assert!(
            seen.iter().all(|c| c.load(Ordering::Relaxed) == 1),
            "n = {n}"
        );
    }
}

#[test]
fn add_rms_norm_is_the_sum_and_its_norm() {
    let dev = Device::Cpu;
    let bits = |t: &Tensor| -> Vec<u32> {
        let v = t
            .flatten_all()
            .unwrap()
            .to_dtype(candle_core::DType::F32)
            .unwrap();
        v.to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect()
    };
    for (shape, dtype) in [
        (vec![1, 576], candle_core::DType::F32),
        (vec![2, 3, 40], candle_core::DType::F32),
        // Not CPU f32: candle's ops.
        (vec![2, 16], candle_core::DType::F16),
    ] {
        let n = *shape.last().unwrap();
        let rnd = |s: &[usize]| {
            (Tensor::randn(0f32, 1.0, s, &dev).unwrap() * 3.0)
                .unwrap()
                .to_dtype(dtype)
                .unwrap()
        };
        let (x, y, alpha) = (rnd(&shape), rnd(&shape), rnd(&[n]));
        let (sum, normed) = add_rms_norm(&x, &y, &alpha, 1e-5).unwrap();
        let want_sum = (&x + &y).unwrap();
        assert_eq!(sum.dims(), &shape[..]);
        assert_eq!(bits(&sum), bits(&want_sum), "{shape:?}");
        assert_eq!(
            bits(&normed),
            bits(&rms_norm(&want_sum, &alpha, 1e-5).unwrap()),
            "{shape:?}"
        );
    }
}

#[test]
fn rms_norm_is_candles_to_float_rounding() {
    let dev = Device::Cpu;
    for (rows, n) in [(1, 8), (3, 576), (8, 37), (2, 1536)] {
        let x = (Tensor::randn(0f32, 1.0, (rows, n), &dev).unwrap() * 3.0).unwrap();
        let alpha = Tensor::randn(0f32, 1.0, n, &dev).unwrap();
        let want = candle_nn::ops::rms_norm(&x, &alpha, 1e-5).unwrap();
        let got = rms_norm(&x, &alpha, 1e-5).unwrap();
        assert_eq!(got.dims(), want.dims());
        let (g, w) = (
            got.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            want.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        for (a, b) in g.iter().zip(&w) {
            assert!(
                (a - b).abs() <= 1e-5 * b.abs() + 1e-6,
                "{rows}x{n}: {a} vs {b}"
            );
        }
        // Within the rounding of the exact value (computed in f64 here): half an ulp, and a
        // little for f64's own rounding.
        let (xs, al) = (
            x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            alpha.to_vec1::<f32>().unwrap(),
        );
        for (row, got) in xs.chunks_exact(n).zip(g.chunks_exact(n)) {
            let ms = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / n as f64;
            let r = 1.0 / (ms + 1e-5).sqrt();
            for ((&v, &a), &o) in row.iter().zip(&al).zip(got) {
                let exact = v as f64 * r * a as f64;
                let ulp = (exact as f32).abs() * f32::EPSILON;
                assert!(
                    (o as f64 - exact).abs() <= 0.5001 * ulp as f64 + 1e-45,
                    "{rows}x{n}: {o} vs exact {exact}"
                );
            }
        }
    }
    // A 3-d input keeps its shape; other dtypes go to candle (f16 here).
    let x = Tensor::randn(0f32, 1.0, (2, 3, 16), &dev).unwrap();
    let alpha = Tensor::ones(16, candle_core::DType::F32, &dev).unwrap();
    assert_eq!(rms_norm(&x, &alpha, 1e-6).unwrap().dims(), &[2, 3, 16]);
    let h = |t: &Tensor| t.to_dtype(candle_core::DType::F16).unwrap();
    let y = rms_norm(&h(&x), &h(&alpha), 1e-6).unwrap();
    assert_eq!(y.dtype(), candle_core::DType::F16);
}

#[test]
fn each_row_of_a_batch_is_the_row_alone_in_every_format() {
    // Rows of a batch go through kernels of 8, 4 and 1-3 rows at a time. Most kernels give a
    // row the same bits whichever (batched decoding then equals decoding each row alone); those
    // of Q2_K, of the float formats and Q5_0's and Q5_1's row layout (matrices whose row count
    // is not a multiple of 8) order their float additions by the number of rows (more
    // accumulator chains for one row, to hide FMA latency in decode), so there a row agrees
    // with itself alone to float rounding only.
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    for (format, isa) in Format::ALL
        .iter()
        .flat_map(|&f| simd_isas().into_iter().map(move |i| (f, i)))
    {
        for n in [16, 13] {
            let rounded = matches!(
                format,
                Format::Q2K | Format::F16 | Format::BF16 | Format::F32
            ) || (n % TILE_ROWS != 0
                && matches!(format, Format::Q5_0 | Format::Q5_1));
            let exact = !rounded;
            let (k, m) = (2 * format.block_values().max(64), 13);
            let w = random_weights(&mut rng, format, n, k);
            let x = random_activations(&mut rng, m, k);
            let all = Activations::new(&x, m, k, &[format]);
            let mut batch = vec![0f32; m * n];
            matmul_quantized(&w, &all, &mut batch, isa);
            for i in 0..m {
                let one = Activations::new(&x[i * k..(i + 1) * k], 1, k, &[format]);
                let mut alone = vec![0f32; n];
                matmul_quantized(&w, &one, &mut alone, isa);
                let got = &batch[i * n..(i + 1) * n];
                if exact {
                    assert_eq!(got, &alone[..], "{format:?} on {isa:?}, {n} rows, row {i}");
                    continue;
                }
                for j in 0..n {
                    let tol = 1e-5 * dequantized_dot(&w, j, &one, 0).1 + 1e-6;
                    let (g, a) = (got[j] as f64, alone[j] as f64);
                    assert!((g - a).abs() <= tol, "{format:?} ({i},{j}): {g} vs {a}");
                }
            }
        }
    }
}

#[test]
fn simd_q8k_quantization_gives_the_reference_bytes() {
    if !detected_isa().avx2() {
        eprintln!("SKIPPED: this CPU has no AVX2 + FMA + F16C; only the reference runs here");
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let (m, k) = (3, 768);
    let mut x = random_activations(&mut rng, m, k);
    // Exact ties after scaling (the block's maximum 127 makes the scale -1: values at q + 0.5
    // round away from zero), a negative maximum that also appears positive later (the first
    // one gives the sign), and an all-zero block.
    for (c, v) in x[256..512].iter_mut().enumerate() {
        *v = if c == 3 {
            127.0
        } else {
            (c % 200) as f32 - 100.5
        };
    }
    x[512 + 7] = -50.0;
    x[512 + 9] = 50.0;
    x[768 + 256..768 + 512].fill(0.0);
    let (mut a, mut b) = (Q8KRows::default(), Q8KRows::default());
    a.quantize_on(&x, m, k, Isa::Reference);
    b.quantize_on(&x, m, k, Isa::Avx2);
    assert_eq!(a.qs, b.qs);
    assert_eq!(a.d, b.d);
    assert_eq!(a.bsums, b.bsums);
    // Ties went away from zero: -(-100.5) -> 101 (q = round(x · -1)).
    assert_eq!(a.qs[256], 101);
    assert_eq!(a.qs[257], 100);
    assert!(
        a.scale(0, 2) > 0.0,
        "the first maximum (-50) gives d = -50 / -127"
    );
}

/// The GPU-only layers, checked on the CPU backend: half-precision weights kept in their
/// type ([`QLinear::Dense`]) and quantized weights dequantized to f16 for one GEMM
/// ([`QLinear::forward_f16_gemm`]) give x·Wᵀ to half precision's rounding of x.
#[test]
fn dense_and_f16_gemm_layers_multiply_like_the_f32_weights() {
    use candle_core::quantized::{GgmlDType, QTensor};
    let dev = Device::Cpu;
    let (n, k) = (48, 256);
    let w = (Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap() * 0.1).unwrap();
    let x = Tensor::randn(0f32, 1.0, (2, 3, k), &dev).unwrap();
    let check = |got: &Tensor, w_used: &Tensor, what: &str| {
        let want = x.broadcast_matmul(&w_used.t().unwrap()).unwrap();
        assert_eq!(got.dims(), &[2, 3, n], "{what}");
        assert_eq!(got.dtype(), candle_core::DType::F32, "{what}");
        // Σ|x·w| per output bounds the rounding of x to 8 (bf16) or 11 (f16) bits.
        let mag = x
            .abs()
            .unwrap()
            .broadcast_matmul(&w_used.abs().unwrap().t().unwrap())
            .unwrap();
        let (g, w, m) = (
            got.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            want.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            mag.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        for ((g, w), m) in g.iter().zip(&w).zip(&m) {
            assert!((g - w).abs() <= 8e-3 * m + 1e-6, "{what}: {g} vs {w}");
        }
        // And it is not the f32 product by accident: the rounding shows somewhere.
        assert!(g.iter().zip(&w).any(|(a, b)| a != b), "{what}");
    };
    for dtype in [GgmlDType::F16, GgmlDType::BF16] {
        let q = QTensor::quantize(&w, dtype).unwrap();
        let layer = QLinear::dense(&q).unwrap();
        assert!(matches!(&layer, QLinear::Dense(t) if t.dtype() != candle_core::DType::F32));
        let y = layer.forward(&x).unwrap();
        check(&y, &q.dequantize(&dev).unwrap(), &format!("{dtype:?}"));
    }
    for dtype in [GgmlDType::Q8_0, GgmlDType::Q4K] {
        let q = QTensor::quantize(&w, dtype).unwrap();
        let deq = q.dequantize(&dev).unwrap();
        let layer = QLinear::Candle {
            matmul: candle_core::quantized::QMatMul::from_qtensor(q).unwrap(),
            cpu_fallback: None,
        };
        let y = layer
            .forward_f16_gemm(&x)
            .unwrap()
            .expect("quantized weights");
        check(&y, &deq, &format!("{dtype:?}"));
    }
    // Other layers have no f16 GEMM.
    let q = QTensor::quantize(&w, GgmlDType::F16).unwrap();
    assert!(QLinear::dense(&q)
        .unwrap()
        .forward_f16_gemm(&x)
        .unwrap()
        .is_none());
    assert!(QLinear::dense(&QTensor::quantize(&w, GgmlDType::Q8_0).unwrap()).is_err());
}
