//! The packed 6-bit scales and minimums of Q4_K and Q5_K (ggml's `get_scale_min_k4`).
//!
//! Both formats split a 256-value super-block into 8 sub-blocks of 32, each with a 6-bit scale
//! `sc[j]` and a 6-bit minimum `m[j]`, packed into 12 bytes `s[0..12]`:
//! - j < 4: `sc[j] = s[j] & 63`, `m[j] = s[j + 4] & 63`;
//! - j ≥ 4: `sc[j] = (s[j + 4] & 15) | (s[j − 4] >> 6) << 4`,
//!   `m[j] = (s[j + 4] >> 4) | (s[j] >> 6) << 4`
//!
//! (bytes 0..4 hold the low 6 bits of sc[0..4] and the top 2 bits of sc[4..8], bytes 4..8 the
//! same for the minimums, bytes 8..12 the low 4 bits of sc[4..8] and of m[4..8]). [`unpack`]
//! does all 16 at once on three 32-bit words, one byte per lane, as ggml's SIMD kernels do.

// Kernels index their per-row registers and arrays by row number: iterator forms of these
// loops measured slower (up to 20% at one row) where they kept the arrays out of registers.
#![allow(clippy::needless_range_loop)]

/// The 8 scales and the 8 minimums of a packed 12-byte field, as two little-endian words of
/// 8 bytes: byte j of the first is `sc[j]`, byte j of the second `m[j]` (each 0..=63).
#[inline(always)]
pub fn unpack(s: &[u8; 12]) -> (u64, u64) {
    let word = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (a, b, c) = (word(0), word(1), word(2));
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const LOW2: u32 = 0x0303_0303;
    // Per byte lane; bits that a shift carries in from the neighbouring byte are masked off.
    let sc_lo = a & LOW6;
    let m_lo = b & LOW6;
    let sc_hi = (c & LOW4) | ((a >> 6) & LOW2) << 4;
    let m_hi = ((c >> 4) & LOW4) | ((b >> 6) & LOW2) << 4;
    (
        sc_lo as u64 | (sc_hi as u64) << 32,
        m_lo as u64 | (m_hi as u64) << 32,
    )
}

/// [`unpack`] as two arrays: (scales, minimums).
#[inline(always)]
pub fn unpack_arrays(s: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let (sc, m) = unpack(s);
    (sc.to_le_bytes(), m.to_le_bytes())
}

/// `pshufb` controls on a register holding [`unpack`]'s scales in bytes 0..8 and minimums in
/// bytes 8..16 (in both 128-bit halves): `SHUFFLE[j]` (j < 8) puts sc[j] in every 16-bit lane
/// (high byte 0), the multiplier of sub-block j's `maddubs` pair sums; `SHUFFLE[8]` gives the
/// 16-bit lanes [m0, m0, m1, m1, .., m7, m7], the multipliers of Q8_K's 16 bsums.
#[repr(align(32))]
pub struct Shuffles(pub [[i8; 32]; 9]);

pub static SHUFFLE: Shuffles = {
    let mut t = [[-128i8; 32]; 9];
    let mut j = 0;
    while j < 8 {
        let mut i = 0;
        while i < 16 {
            t[j][2 * i] = j as i8;
            // 16-bit lane i holds bsums[i], of sub-block i / 2 (pshufb indexes within each
            // 128-bit half, and both halves hold the same 16 bytes).
            t[8][2 * i] = 8 + (i / 2) as i8;
            i += 1;
        }
        j += 1;
    }
    Shuffles(t)
};

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The definition, one sub-block at a time (ggml's `get_scale_min_k4`).
    fn scale_min(j: usize, s: &[u8; 12]) -> (u8, u8) {
        if j < 4 {
            (s[j] & 63, s[j + 4] & 63)
        } else {
            (
                (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4),
                (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
            )
        }
    }

    #[test]
    fn unpack_matches_the_definition() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut seen = [[[false; 64]; 8]; 2];
        let mut check = |s: &[u8; 12]| {
            let (sc, m) = unpack_arrays(s);
            for j in 0..8 {
                assert_eq!((sc[j], m[j]), scale_min(j, s), "{s:?} j={j}");
                seen[0][j][sc[j] as usize] = true;
                seen[1][j][m[j] as usize] = true;
            }
        };
        // Every value of every byte, the others random; then all-0 and all-0xFF.
        for at in 0..12 {
            for v in 0..=255u8 {
                let mut s = [0u8; 12];
                rng.fill(&mut s[..]);
                s[at] = v;
                check(&s);
            }
        }
        check(&[0; 12]);
        check(&[0xFF; 12]);
        // Every scale and every minimum of every sub-block took all 64 values.
        assert!(seen.iter().flatten().flatten().all(|&x| x));
    }
}

/// Test harness shared by the Q4_K and Q5_K files: random blocks and activations, and the
/// checks each format runs (against candle, exact arithmetic, and the reference).
#[cfg(test)]
pub(crate) mod testing {
    use super::super::{Q8KRows, QK_K};
    use candle_core::quantized::{GgmlDType, QStorage, QTensor};
    use candle_core::Device;
    use half::f16;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::borrow::Cow;
    use std::ops::Range;

    /// What the checks need to know of a format (both have f16 d at byte 0, dmin at 2 and the
    /// packed scales at 4..16).
    pub struct Format {
        pub dtype: GgmlDType,
        pub block_bytes: usize,
        /// The quant bytes (Q5_K: high bits and nibbles).
        pub quants: Range<usize>,
        pub dequantize: fn(&[u8], &mut [f32]),
        pub reference: fn(&[u8], &Q8KRows, usize) -> f32,
        /// `dot_avx2::<R>` for R in {1, 2, 3, 4, 8}.
        #[cfg(target_arch = "x86_64")]
        pub avx2: unsafe fn(usize, *const u8, &Q8KRows, usize) -> Vec<f32>,
    }

    fn random_f16(rng: &mut ChaCha8Rng) -> [u8; 2] {
        let v = rng.random_range(1e-3f32..1.0) * if rng.random_bool(0.5) { 1.0 } else { -1.0 };
        f16::from_f32(v).to_le_bytes()
    }

    /// `blocks` random blocks. Every byte value occurs in the quants, high bits and packed
    /// scales (so every 6-bit scale and minimum takes all 64 values over a couple of thousand
    /// blocks); d and dmin are random f16 of either sign in [1e-3, 1]. Block kinds cycle
    /// (offset by `salt`): random; quant bytes all 0xFF; quant bytes all 0x00; everything but
    /// d and dmin 0xFF (scales and minimums 63, quants at their maximum); scales all 0x00.
    pub fn random_blocks(rng: &mut ChaCha8Rng, f: &Format, blocks: usize, salt: usize) -> Vec<u8> {
        let mut data = vec![0u8; blocks * f.block_bytes];
        rng.fill(&mut data[..]);
        for (b, blk) in data.chunks_exact_mut(f.block_bytes).enumerate() {
            match (b + salt) % 6 {
                1 => blk[f.quants.clone()].fill(0xFF),
                2 => blk[f.quants.clone()].fill(0),
                3 => blk[4..].fill(0xFF),
                4 => blk[4..16].fill(0),
                _ => {}
            }
            let (d, dmin) = (random_f16(rng), random_f16(rng));
            blk[0..2].copy_from_slice(&d);
            blk[2..4].copy_from_slice(&dmin);
        }
        data
    }

    /// m rows of k activations: mostly in ±2 with 1% outliers of ±1e4; exact zeros; block 1
    /// of every row all zero (when there is one); row 2 all zero; row 4 scaled by 1e6.
    pub fn random_activations(rng: &mut ChaCha8Rng, m: usize, k: usize) -> Q8KRows {
        let x: Vec<f32> = (0..m * k)
            .map(|i| {
                let (r, c) = (i / k, i % k);
                if r == 2 || c / QK_K == 1 || rng.random_bool(0.05) {
                    0.0
                } else if rng.random_bool(0.01) {
                    rng.random_range(-1e4f32..1e4)
                } else {
                    rng.random_range(-2.0f32..2.0) * if r == 4 { 1e6 } else { 1.0 }
                }
            })
            .collect();
        let mut a = Q8KRows::default();
        a.quantize(&x, m, k);
        a
    }

    /// Widths: 1, 2, 3 and 5 blocks, and a model's 2048.
    pub const WIDTHS: [usize; 5] = [QK_K, 2 * QK_K, 3 * QK_K, 5 * QK_K, 2048];

    /// Σ w·a in f64 over the dequantized weights and activations (q·d), and Σ|w·a|, against
    /// which float rounding is measured (the largest error seen is ~3e-7 of it, against the
    /// 1e-5 allowed).
    fn exact_dot(f: &Format, row: &[u8], a: &Q8KRows, r: usize) -> (f64, f64) {
        let x = a.dequantize_row(r);
        let mut w = vec![0f32; QK_K];
        let (mut s, mut mag) = (0f64, 0f64);
        for (blk, xs) in row.chunks_exact(f.block_bytes).zip(x.chunks_exact(QK_K)) {
            (f.dequantize)(blk, &mut w);
            for (&w, &x) in w.iter().zip(xs) {
                let t = w as f64 * x as f64;
                s += t;
                mag += t.abs();
            }
        }
        (s, mag)
    }

    /// Test 1: `dequantize_block` is bit-identical to candle's dequantization.
    pub fn dequantize_matches_candle(f: &Format) {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let blocks = 2048;
        let data = random_blocks(&mut rng, f, blocks, 0);
        let storage = QStorage::from_data(Cow::Borrowed(&data), &Device::Cpu, f.dtype).unwrap();
        let q = QTensor::new(storage, (blocks, QK_K)).unwrap();
        let want: Vec<f32> = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let mut got = vec![0f32; QK_K];
        // Every sub-block's scale and minimum takes all 64 values in these blocks.
        let mut seen = [[[false; 64]; 8]; 2];
        for blk in data.chunks_exact(f.block_bytes) {
            let (sc, m) = super::unpack_arrays(blk[4..16].try_into().unwrap());
            for j in 0..8 {
                seen[0][j][sc[j] as usize] = true;
                seen[1][j][m[j] as usize] = true;
            }
        }
        assert!(seen.iter().flatten().flatten().all(|&x| x));
        for (b, blk) in data.chunks_exact(f.block_bytes).enumerate() {
            (f.dequantize)(blk, &mut got);
            for (i, (g, w)) in got.iter().zip(&want[b * QK_K..]).enumerate() {
                assert_eq!(g.to_bits(), w.to_bits(), "block {b} value {i}: {g} vs {w}");
            }
        }
    }

    /// Test 2: `dot_reference` is the dequantized dot product, within 1e-5 of Σ|w·a|.
    pub fn reference_is_the_dequantized_dot(f: &Format) {
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        for k in WIDTHS {
            let (n, m) = (7, 6);
            let w = random_blocks(&mut rng, f, n * k / QK_K, k);
            let a = random_activations(&mut rng, m, k);
            let rb = k / QK_K * f.block_bytes;
            for (j, row) in w.chunks_exact(rb).enumerate() {
                for r in 0..m {
                    let got = (f.reference)(row, &a, r) as f64;
                    let (want, mag) = exact_dot(f, row, &a, r);
                    assert!(
                        (got - want).abs() <= 1e-5 * mag,
                        "{:?} k={k} row {j} act {r}: {got} vs {want} (Σ|w·a| {mag})",
                        f.dtype
                    );
                }
            }
        }
    }

    /// Test 3: `dot_avx2::<R>` agrees with `dot_reference` for R in {1, 2, 3, 4, 8}, at every
    /// `first` from 0 to m − R (m = 11 > 8), within 1e-5 of Σ|w·a|.
    #[cfg(target_arch = "x86_64")]
    pub fn avx2_matches_reference(f: &Format) {
        if !(is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c"))
        {
            eprintln!("no AVX2 + FMA + F16C: skipped");
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(13);
        for k in WIDTHS {
            let (n, m) = (5, 11);
            let w = random_blocks(&mut rng, f, n * k / QK_K, 2 * k);
            let a = random_activations(&mut rng, m, k);
            let rb = k / QK_K * f.block_bytes;
            for (j, row) in w.chunks_exact(rb).enumerate() {
                let want: Vec<(f32, f64)> = (0..m)
                    .map(|r| ((f.reference)(row, &a, r), exact_dot(f, row, &a, r).1))
                    .collect();
                for rr in [1, 2, 3, 4, 8] {
                    for first in 0..=m - rr {
                        let got = unsafe { (f.avx2)(rr, row.as_ptr(), &a, first) };
                        assert_eq!(got.len(), rr);
                        for (t, &g) in got.iter().enumerate() {
                            let (w, mag) = want[first + t];
                            assert!(
                                (g as f64 - w as f64).abs() <= 1e-5 * mag,
                                "{:?} k={k} row {j} R={rr} first={first} act {}: {g} vs {w}",
                                f.dtype,
                                first + t
                            );
                        }
                    }
                }
            }
        }
    }

    /// Test 5 (kernel level): every weight at its maximum (quant bytes and scale bytes 0xFF:
    /// q = 15 or 31, sc = m = 63) against activations of −128 (the most negative i8, which
    /// Q8_K's clamp allows), 127, and alternating −128 / 127, with d = dmin = d_a = 1: the
    /// kernel must give the exact integer result (computed in i64), to f32 rounding.
    #[cfg(target_arch = "x86_64")]
    pub fn worst_case_is_exact(f: &Format, qmax: i64) {
        if !is_x86_feature_detected!("avx2") {
            return;
        }
        let nb = 5;
        let one = f16::from_f32(1.0).to_le_bytes();
        let mut row = vec![0xFFu8; nb * f.block_bytes];
        for blk in row.chunks_exact_mut(f.block_bytes) {
            blk[0..2].copy_from_slice(&one);
            blk[2..4].copy_from_slice(&one);
        }
        let patterns: [fn(usize) -> i8; 3] =
            [|_| -128, |_| 127, |i| if i % 2 == 0 { -128 } else { 127 }];
        let m = 8;
        let k = nb * QK_K;
        let mut a = Q8KRows {
            m,
            blocks: nb,
            qs: vec![0; m * k],
            d: vec![1.0; m * nb],
            bsums: vec![0; m * k / 16],
        };
        for r in 0..m {
            for i in 0..k {
                a.qs[r * k + i] = patterns[r % 3](i);
            }
            for g in 0..k / 16 {
                a.bsums[r * k / 16 + g] =
                    a.qs[r * k + 16 * g..][..16].iter().map(|&q| q as i16).sum();
            }
        }
        for r in 0..m {
            // Σ over blocks and sub-blocks of 63·q·y − 63·y.
            let exact: i64 = a
                .row_qs(r)
                .iter()
                .map(|&y| 63 * qmax * y as i64 - 63 * y as i64)
                .sum();
            let got = unsafe { (f.avx2)(8, row.as_ptr(), &a, 0) }[r] as f64;
            let reference = (f.reference)(&row, &a, r) as f64;
            let tol = 1e-6 * exact.abs() as f64;
            assert!(
                (got - exact as f64).abs() <= tol,
                "{:?} row {r}: {got} vs {exact}",
                f.dtype
            );
            assert!(
                (reference - exact as f64).abs() <= tol,
                "{:?} row {r}: {reference} vs {exact}",
                f.dtype
            );
            let got1 = unsafe { (f.avx2)(1, row.as_ptr(), &a, r) }[0] as f64;
            assert!(
                (got1 - exact as f64).abs() <= tol,
                "{:?} row {r}: {got1} vs {exact}",
                f.dtype
            );
        }
    }

    /// Test 5 (instruction level): `maddubs` of the largest weight (`qmax`, as u8) with −128
    /// and with 127 in both bytes of a pair stays within i16 (|2·qmax·128| ≤ 7,936), and
    /// `madd` with the largest scale (63) gives the exact product in i32.
    #[cfg(target_arch = "x86_64")]
    pub fn maddubs_cannot_saturate(qmax: u8) {
        if !is_x86_feature_detected!("avx2") {
            return;
        }
        use std::arch::x86_64::*;
        for y in [-128i8, 127] {
            let (p, s) = unsafe {
                let p = _mm256_maddubs_epi16(_mm256_set1_epi8(qmax as i8), _mm256_set1_epi8(y));
                let s = _mm256_madd_epi16(p, _mm256_set1_epi16(63));
                (
                    std::mem::transmute::<__m256i, [i16; 16]>(p),
                    std::mem::transmute::<__m256i, [i32; 8]>(s),
                )
            };
            let pair = 2 * qmax as i32 * y as i32;
            assert!(pair.abs() < i16::MAX as i32);
            assert!(p.iter().all(|&v| v as i32 == pair), "{p:?} vs {pair}");
            assert!(s.iter().all(|&v| v == 2 * 63 * pair), "{s:?}");
        }
    }
}
