//! Q6_K weights against Q8_K activations.
//!
//! A block holds 256 values in 210 bytes: `ql` (128 bytes, the low 4 bits of each value),
//! `qh` (64 bytes, the high 2 bits), 16 signed 8-bit scales (one per 16 values) and an f16
//! `d`; value = d · scale · (q − 32) with q the 6-bit quant (0..=63). The values are
//! arranged in two halves of 128: in half h, for l < 32,
//! - value 128h + l      : low nibble of ql[64h + l],      bits 0–1 of qh[32h + l],
//! - value 128h + 32 + l : low nibble of ql[64h + 32 + l], bits 2–3 of qh[32h + l],
//! - value 128h + 64 + l : high nibble of ql[64h + l],     bits 4–5 of qh[32h + l],
//! - value 128h + 96 + l : high nibble of ql[64h + 32 + l], bits 6–7 of qh[32h + l],
//!
//! so three 32-byte loads give four registers of 32 consecutive values each ("chunks"), and
//! chunk c (values 32c..32c + 32) takes scales 2c (its first 16 values) and 2c + 1.
//!
//! The AVX2 kernel unpacks each chunk to 32 unsigned bytes q (0..=63) once and multiplies it
//! into all R activation rows: `maddubs` (u8 × i8 → pairs of i16), then `madd` with the
//! chunk's two scales widened to i16 (→ 8 × i32, the scale applied and the pairs summed in
//! one instruction). The −32 offset is not subtracted per value as ggml's kernel does (one
//! more `maddubs` and a subtraction per chunk and row): Σ sc·(q − 32)·y = Σ sc·q·y −
//! 32·Σ_g sc_g·bsum_g, and the second term is one `madd` of the 16 scales (times 32) with
//! the activation row's 16 precomputed sums of 16 quants per block.

// Kernels index their per-row registers and arrays by row number: iterator forms of these
// loops measured slower (up to 20% at one row) where they kept the arrays out of registers.
#![allow(clippy::needless_range_loop)]
use super::{f16_at, Q8KRows, QK_K};

pub const BLOCK_VALUES: usize = QK_K;
pub const BLOCK_BYTES: usize = 210;

/// Byte offsets of a block's fields.
const QL: usize = 0;
const QH: usize = 128;
const SCALES: usize = 192;
const D: usize = 208;

/// The 6-bit quant (0..=63) of value i (< 256) of `block`.
fn quant(block: &[u8], i: usize) -> i32 {
    let (h, t, l) = (i / 128, i % 128 / 32, i % 32);
    let ql = block[QL + 64 * h + 32 * (t & 1) + l];
    let low = if t < 2 { ql & 0x0F } else { ql >> 4 };
    let high = (block[QH + 32 * h + l] >> (2 * t)) & 3;
    (low | high << 4) as i32
}

/// GGUF's dequantization of one block (ggml's `dequantize_row_q6_K`): d·scale, then times
/// q − 32, in that order (so the values are bit-identical to ggml's and candle's).
pub fn dequantize_block(block: &[u8], out: &mut [f32]) {
    assert!(block.len() >= BLOCK_BYTES && out.len() == BLOCK_VALUES);
    let d = f16_at(block, D);
    for (i, o) in out.iter_mut().enumerate() {
        let sc = block[SCALES + i / 16] as i8 as f32;
        *o = d * sc * (quant(block, i) - 32) as f32;
    }
}

/// Weight row `row` (k/256 blocks) · activation row r of `a`, as ggml's reference
/// `ggml_vec_dot_q6_K_q8_K`: per block the integer Σ_g sc_g · Σ_{i in g} (q_i − 32)·y_i, then
/// times d_w·d_a in f32.
pub fn dot_reference(row: &[u8], a: &Q8KRows, r: usize) -> f32 {
    let qs = a.row_qs(r);
    let mut sum = 0f32;
    for (b, blk) in row.chunks_exact(BLOCK_BYTES).take(a.blocks).enumerate() {
        let y = &qs[b * QK_K..(b + 1) * QK_K];
        let mut isum = 0i32;
        for g in 0..16 {
            let sc = blk[SCALES + g] as i8 as i32;
            let s: i32 = (16 * g..16 * g + 16)
                .map(|i| (quant(blk, i) - 32) * y[i] as i32)
                .sum();
            isum += sc * s;
        }
        sum += f16_at(blk, D) * a.scale(r, b) * isum as f32;
    }
    sum
}

/// `pshufb` patterns that broadcast one 16-bit scale per 128-bit lane from a register that
/// holds 8 scales (the same 8 in both lanes): pattern t puts scale 2t in the low lane (the
/// first 16 values of a chunk) and scale 2t + 1 in the high lane (the last 16).
#[cfg(target_arch = "x86_64")]
const SCALE_SHUFFLE: [[u8; 32]; 4] = {
    let mut p = [[0u8; 32]; 4];
    let mut t = 0;
    while t < 4 {
        let mut i = 0;
        while i < 16 {
            p[t][i] = (4 * t + i % 2) as u8;
            p[t][16 + i] = (4 * t + 2 + i % 2) as u8;
            i += 1;
        }
        t += 1;
    }
    p
};

/// Weight row `row` (GGUF layout, `a.blocks` blocks) · activation rows first..first + R.
///
/// Per block: the 16 scales are widened to i16 once (and the 8 per-chunk scale registers
/// built by `pshufb`); per 128 values three loads and a few shifts, masks and ors give four
/// chunks of 32 unsigned quants; each chunk costs every row one `maddubs`, one `madd` and one
/// add. At the end of the block each row subtracts 32·Σ sc·bsum (one `madd`), converts its
/// 8 lane sums to f32 and accumulates them times d_w·d_a.
/// The products d_w·d_a are formed 8 blocks at a time (one `vcvtph2ps` for 8 f16 scales,
/// times each row's d_a) and kept on the stack, so that a block costs each row only a
/// broadcast load, a conversion and an `fma` beyond its integer work.
///
/// No overflow or saturation: `maddubs` pairs are at most 2·63·128 = 16,128 in magnitude
/// (q ≤ 63, |y| ≤ 128; i16 holds 32,767). Per lane and block the `madd`s add 8 chunks of
/// at most 2·128·16,128 = 4,128,768, i.e. < 33.1 M, and the correction is at most
/// 2·(32·128)·(16·128) = 16.8 M (32·scale fits i16: ≤ 4,096); |i32| < 50 M ≪ 2^31.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; `row` must point to `a.blocks` blocks of
/// `BLOCK_BYTES`; `first + R <= a.m`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
// Indexed loops on purpose: written with iterators (zip/enumerate/take), the d_w·d_a loop
// below made LLVM allocate registers worse in the main loop: ~20% slower at R = 1.
#[allow(clippy::needless_range_loop)]
pub unsafe fn dot_avx2<const R: usize>(row: *const u8, a: &Q8KRows, first: usize) -> [f32; R] {
    use std::arch::x86_64::*;
    debug_assert!(first + R <= a.m);
    let (nb, m) = (a.blocks, a.m);
    let qp: [*const i8; R] = std::array::from_fn(|r| a.qs.as_ptr().add((first + r) * nb * QK_K));
    let bp: [*const i16; R] = std::array::from_fn(|r| a.bsums.as_ptr().add((first + r) * nb * 16));
    let dp = a.d.as_ptr().add(first);
    let shuf: [__m256i; 4] =
        std::array::from_fn(|t| _mm256_loadu_si256(SCALE_SHUFFLE[t].as_ptr() as *const __m256i));
    let m4 = _mm256_set1_epi8(0x0F);
    let m30 = _mm256_set1_epi8(0x30);
    let mut acc = [_mm256_setzero_ps(); R];
    // The blocks' d_w·d_a products, 8 blocks at a time: the 8 f16 scales converted by one
    // `vcvtph2ps`, times each row's d_a, kept in memory so that each block and row takes
    // its product with a plain broadcast load.
    let mut dd = [[0f32; R]; 8];
    for b in 0..nb {
        let blk = row.add(b * BLOCK_BYTES);
        if b % 8 == 0 {
            let mut hs = [0u16; 8];
            for (i, h) in hs.iter_mut().enumerate().take(nb - b) {
                *h = (row.add((b + i) * BLOCK_BYTES + D) as *const u16).read_unaligned();
            }
            let mut dw = [0f32; 8];
            _mm256_storeu_ps(
                dw.as_mut_ptr(),
                _mm256_cvtph_ps(_mm_loadu_si128(hs.as_ptr() as *const __m128i)),
            );
            for i in 0..8.min(nb - b) {
                for r in 0..R {
                    dd[i][r] = dw[i] * *dp.add((b + i) * m + r);
                }
            }
        }
        // Scales 0..16 as i16 (lanes: 0..8 | 8..16), then each lane's 8 in both lanes.
        let s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(blk.add(SCALES) as *const __m128i));
        let halves = [
            _mm256_permute2x128_si256::<0x00>(s16, s16),
            _mm256_permute2x128_si256::<0x11>(s16, s16),
        ];
        let mut sumi = [_mm256_setzero_si256(); R];
        for (h, sh) in halves.iter().enumerate() {
            let ql0 = _mm256_loadu_si256(blk.add(QL + 64 * h) as *const __m256i);
            let ql1 = _mm256_loadu_si256(blk.add(QL + 64 * h + 32) as *const __m256i);
            let qh = _mm256_loadu_si256(blk.add(QH + 32 * h) as *const __m256i);
            // (16-bit shifts move bits across the bytes of a pair; the masks keep each
            // byte's own.)
            let w = [
                _mm256_or_si256(
                    _mm256_and_si256(ql0, m4),
                    _mm256_and_si256(_mm256_slli_epi16::<4>(qh), m30),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(ql1, m4),
                    _mm256_and_si256(_mm256_slli_epi16::<2>(qh), m30),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4),
                    _mm256_and_si256(qh, m30),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4),
                    _mm256_and_si256(_mm256_srli_epi16::<2>(qh), m30),
                ),
            ];
            for t in 0..4 {
                let sc = _mm256_shuffle_epi8(*sh, shuf[t]);
                let at = b * QK_K + 128 * h + 32 * t;
                for r in 0..R {
                    let y = _mm256_loadu_si256(qp[r].add(at) as *const __m256i);
                    let p = _mm256_madd_epi16(_mm256_maddubs_epi16(w[t], y), sc);
                    sumi[r] = _mm256_add_epi32(sumi[r], p);
                }
            }
        }
        let s32 = _mm256_slli_epi16::<5>(s16);
        for r in 0..R {
            let bs = _mm256_loadu_si256(bp[r].add(16 * b) as *const __m256i);
            let isum = _mm256_sub_epi32(sumi[r], _mm256_madd_epi16(s32, bs));
            let d = _mm256_broadcast_ss(&dd[b % 8][r]);
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), d, acc[r]);
        }
    }
    std::array::from_fn(|r| super::x86::hsum(acc[r]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::k_quants::{BlockQ6K, BlockQ8K, GgmlType};
    use half::f16;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Random blocks: random quant bytes; every 5th block all-0x00 quants, every 5th (offset)
    /// all-0xFF; scale bytes of block b are 16b..16b + 16 (mod 256) on even blocks, so that
    /// 32 blocks go through all 256 values (−128 included), random on odd ones; d random
    /// finite of either sign, |d| in [1e-3, 1].
    fn random_blocks(rng: &mut ChaCha8Rng, blocks: usize) -> Vec<u8> {
        let mut data = vec![0u8; blocks * BLOCK_BYTES];
        rng.fill(&mut data[..]);
        for (b, blk) in data.chunks_exact_mut(BLOCK_BYTES).enumerate() {
            match b % 5 {
                1 => blk[..SCALES].fill(0),
                3 => blk[..SCALES].fill(0xFF),
                _ => {}
            }
            if b % 2 == 0 {
                for g in 0..16 {
                    blk[SCALES + g] = (16 * (b / 2) + g) as u8;
                }
            }
            let d = rng.random_range(1e-3f32..1.0) * if rng.random_bool(0.5) { -1.0 } else { 1.0 };
            blk[D..D + 2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
        }
        data
    }

    /// Activations: mostly ±2, 1% large (±40), 5% exact zeros, and block 1 all zero.
    fn random_activations(rng: &mut ChaCha8Rng, m: usize, k: usize) -> Vec<f32> {
        (0..m * k)
            .map(|i| {
                if i % k / QK_K == 1 || rng.random_bool(0.05) {
                    0.0
                } else if rng.random_bool(0.01) {
                    rng.random_range(-40.0f32..40.0)
                } else {
                    rng.random_range(-2.0f32..2.0)
                }
            })
            .collect()
    }

    fn candle_blocks(bytes: &[u8]) -> Vec<BlockQ6K> {
        let n = bytes.len() / BLOCK_BYTES;
        assert_eq!(std::mem::size_of::<BlockQ6K>(), BLOCK_BYTES);
        let mut v = vec![BlockQ6K::zeros(); n];
        // SAFETY: BlockQ6K is repr(C), 210 bytes of plain integers and an f16.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), v.as_mut_ptr() as *mut u8, bytes.len())
        };
        v
    }

    /// Σ dequantized weight × dequantized activation in f64, and Σ of their magnitudes.
    fn dequantized_dot(row: &[u8], a: &Q8KRows, r: usize) -> (f64, f64) {
        let mut w = vec![0f32; BLOCK_VALUES];
        let qs = a.row_qs(r);
        let (mut s, mut mag) = (0f64, 0f64);
        for (b, blk) in row.chunks_exact(BLOCK_BYTES).enumerate() {
            dequantize_block(blk, &mut w);
            for (i, &wv) in w.iter().enumerate() {
                let t = wv as f64 * (qs[b * QK_K + i] as f64 * a.scale(r, b) as f64);
                s += t;
                mag += t.abs();
            }
        }
        (s, mag)
    }

    #[test]
    fn dequantization_is_candles() {
        let mut rng = ChaCha8Rng::seed_from_u64(61);
        let data = random_blocks(&mut rng, 64);
        let mut theirs = vec![0f32; 64 * QK_K];
        BlockQ6K::to_float(&candle_blocks(&data), &mut theirs);
        let mut ours = vec![0f32; QK_K];
        for (b, blk) in data.chunks_exact(BLOCK_BYTES).enumerate() {
            dequantize_block(blk, &mut ours);
            for i in 0..QK_K {
                assert_eq!(
                    ours[i].to_bits(),
                    theirs[b * QK_K + i].to_bits(),
                    "block {b} value {i}"
                );
            }
        }
    }

    #[test]
    fn activations_are_candles_q8k() {
        let mut rng = ChaCha8Rng::seed_from_u64(62);
        let (m, k) = (3, 1024);
        let x = random_activations(&mut rng, m, k);
        let mut a = Q8KRows::default();
        a.quantize(&x, m, k);
        for r in 0..m {
            let mut ys = vec![BlockQ8K::zeros(); k / QK_K];
            BlockQ8K::from_float(&x[r * k..(r + 1) * k], &mut ys);
            for (b, y) in ys.iter().enumerate() {
                // SAFETY: BlockQ8K is repr(C): f32 d, 256 i8, 16 i16 (292 bytes).
                let bytes =
                    unsafe { std::slice::from_raw_parts(y as *const BlockQ8K as *const u8, 292) };
                assert_eq!(
                    f32::from_le_bytes(bytes[..4].try_into().unwrap()),
                    a.scale(r, b)
                );
                let qs: Vec<i8> = bytes[4..260].iter().map(|&v| v as i8).collect();
                assert_eq!(&qs[..], &a.row_qs(r)[b * QK_K..(b + 1) * QK_K]);
                let bs: Vec<i16> = bytes[260..292]
                    .chunks_exact(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]]))
                    .collect();
                assert_eq!(&bs[..], a.bsums(r, b));
            }
        }
    }

    #[test]
    fn reference_dot_is_the_dequantized_dot_and_candles() {
        let mut rng = ChaCha8Rng::seed_from_u64(63);
        for blocks in [1, 2, 3, 5, 8] {
            let k = blocks * QK_K;
            let (n, m) = (6, 2);
            let w = random_blocks(&mut rng, n * blocks);
            let x = random_activations(&mut rng, m, k);
            let mut a = Q8KRows::default();
            a.quantize(&x, m, k);
            for j in 0..n {
                let row = &w[j * blocks * BLOCK_BYTES..(j + 1) * blocks * BLOCK_BYTES];
                for r in 0..m {
                    let got = dot_reference(row, &a, r) as f64;
                    let (want, mag) = dequantized_dot(row, &a, r);
                    assert!(
                        (got - want).abs() <= 1e-5 * mag + 1e-6,
                        "k={k}: {got} vs {want}"
                    );
                    let mut ys = vec![BlockQ8K::zeros(); blocks];
                    BlockQ8K::from_float(&x[r * k..(r + 1) * k], &mut ys);
                    let theirs = BlockQ6K::vec_dot(k, &candle_blocks(row), &ys) as f64;
                    assert!(
                        (got - theirs).abs() <= 1e-5 * mag + 1e-6,
                        "k={k}: {got} vs candle {theirs}"
                    );
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn check_avx2<const R: usize>(w: &[u8], n: usize, a: &Q8KRows, first: usize) {
        let rb = a.blocks * BLOCK_BYTES;
        for j in 0..n {
            let row = &w[j * rb..(j + 1) * rb];
            // SAFETY: AVX2/FMA/F16C checked by the caller; row holds a.blocks blocks.
            let got = unsafe { dot_avx2::<R>(row.as_ptr(), a, first) };
            for (r, &g) in got.iter().enumerate() {
                let want = dot_reference(row, a, first + r) as f64;
                let mag = dequantized_dot(row, a, first + r).1;
                let g = g as f64;
                assert!(
                    (g - want).abs() <= 1e-5 * mag + 1e-6,
                    "R={R} k={} row {j} act {}: {g} vs {want}",
                    a.blocks * QK_K,
                    first + r
                );
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_equals_the_reference() {
        if !(is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c"))
        {
            eprintln!("SKIPPED: no AVX2 + FMA + F16C");
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(64);
        for blocks in [1, 2, 3, 5, 8] {
            let k = blocks * QK_K;
            let n = 7;
            let w = random_blocks(&mut rng, n * blocks);
            let m = 11;
            let x = random_activations(&mut rng, m, k);
            let mut a = Q8KRows::default();
            a.quantize(&x, m, k);
            check_avx2::<1>(&w, n, &a, 1);
            check_avx2::<1>(&w, n, &a, 10);
            check_avx2::<2>(&w, n, &a, 3);
            check_avx2::<3>(&w, n, &a, 2);
            check_avx2::<4>(&w, n, &a, 5);
            check_avx2::<8>(&w, n, &a, 1);
            check_avx2::<8>(&w, n, &a, 3);
        }
    }

    /// The extremes: q = 63 everywhere (ql, qh all 0xFF) and q = 0 (all 0x00), scales −128 and
    /// 127, activations −128 and 127 (Q8_K itself never produces −128; it is tested anyway)
    /// and d = 1: `maddubs` sees its largest pairs, 2·63·(−128) = −16,128, within i16, and the
    /// i32 sums their largest magnitudes. The kernel must match the exact integer.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn extremes_do_not_saturate_or_overflow() {
        use std::arch::x86_64::*;
        if !(is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c"))
        {
            eprintln!("SKIPPED: no AVX2 + FMA + F16C");
            return;
        }
        // SAFETY: AVX2 checked.
        unsafe {
            let p = _mm256_maddubs_epi16(_mm256_set1_epi8(63), _mm256_set1_epi8(-128));
            let mut v = [0i16; 16];
            _mm256_storeu_si256(v.as_mut_ptr() as *mut __m256i, p);
            assert!(v.iter().all(|&x| x == 2 * 63 * -128));
        }
        for (qbyte, sc, y) in [
            (0xFFu8, -128i8, -128i8),
            (0xFF, -128, 127),
            (0xFF, 127, -128),
            (0x00, -128, 127),
            (0x00, -128, -128),
            (0x00, 127, 127),
        ] {
            let blocks = 2;
            let mut blk = vec![qbyte; BLOCK_BYTES];
            blk[SCALES..D].fill(sc as u8);
            blk[D..].copy_from_slice(&f16::from_f32(1.0).to_le_bytes());
            let row: Vec<u8> = blk.repeat(blocks);
            let m = 8;
            let a = Q8KRows {
                m,
                blocks,
                qs: vec![y; m * blocks * QK_K],
                d: vec![1.0; m * blocks],
                bsums: vec![16 * y as i16; m * blocks * 16],
            };
            let q = if qbyte == 0xFF { 63i64 } else { 0 };
            let exact = (blocks * QK_K) as i64 * sc as i64 * (q - 32) * y as i64;
            assert_eq!(dot_reference(&row, &a, 0) as f64, exact as f64);
            // SAFETY: the features are checked above.
            let got = unsafe { dot_avx2::<8>(row.as_ptr(), &a, 0) };
            let got1 = unsafe { dot_avx2::<1>(row.as_ptr(), &a, 7) };
            for g in got.iter().chain(&got1) {
                // Lane sums of 2^21-ish convert exactly; the total is a sum of exact floats.
                assert_eq!(*g as f64, exact as f64, "q={q} sc={sc} y={y}");
            }
        }
    }
}
