//! Q3_K weights against Q8_K activations.
//!
//! A block holds 256 values in 110 bytes: `hmask` (32 bytes, one high bit per value), `qs`
//! (64 bytes, the low 2 bits), 12 bytes of 16 packed 6-bit scales (one per 16 values,
//! stored biased by 32) and an f16 `d`; value = d · (sc − 32) · (u − 4) with the 3-bit
//! u = low | high << 2 (0..=7): a clear high bit means low − 4, a set one low itself. In half
//! h (128 values), for l < 32 and s < 4, value 128h + 32s + l has its low bits at bits 2s of
//! qs[32h + l] and its high bit at bit 4h + s of hmask[l]. So the 32 hmask bytes are one
//! register whose bit c belongs to chunk c (values 32c..32c + 32), each half's 32 qs bytes
//! hold four chunks, and chunk c takes scales 2c (its first 16 values) and 2c + 1.
//!
//! Scale j (6 bits) is the low nibble of byte j (j < 8) or the high nibble of byte j − 8,
//! with bits 4–5 from bits 2·(j / 4) of byte 8 + j % 4.
//!
//! The AVX2 kernel is shaped as the Q6_K one: each chunk is unpacked once to 32 unsigned
//! bytes u (0..=7) and multiplied into all R activation rows with one `maddubs` and one
//! `madd` by the chunk's two scales (sc − 32, as i16) per row; the −4 offset is folded into
//! the activations' precomputed sums of 16 (Σ s·(u − 4)·y = Σ s·u·y − 4·Σ_g s_g·bsum_g, one
//! `madd` per block and row) instead of ggml's second `maddubs` and subtraction per chunk.

// Kernels index their per-row registers and arrays by row number: iterator forms of these
// loops measured slower (up to 20% at one row) where they kept the arrays out of registers.
#![allow(clippy::needless_range_loop)]
use super::{f16_at, Q8KRows, QK_K};

pub const BLOCK_VALUES: usize = QK_K;
pub const BLOCK_BYTES: usize = 110;

/// Byte offsets of a block's fields.
const HMASK: usize = 0;
const QS: usize = 32;
const SCALES: usize = 96;
const D: usize = 108;

/// The quant of value i (< 256) of `block`, −4..=3.
fn quant(block: &[u8], i: usize) -> i32 {
    let (h, s, l) = (i / 128, i % 128 / 32, i % 32);
    let low = (block[QS + 32 * h + l] >> (2 * s)) & 3;
    let high = (block[HMASK + l] >> (4 * h + s)) & 1;
    (low | high << 2) as i32 - 4
}

/// Scale j (< 16) of `block` as stored, 0..=63 (the value is this − 32).
fn scale(block: &[u8], j: usize) -> i32 {
    let sc = &block[SCALES..SCALES + 12];
    let low = if j < 8 { sc[j] & 0x0F } else { sc[j - 8] >> 4 };
    let high = (sc[8 + j % 4] >> (2 * (j / 4))) & 3;
    (low | high << 4) as i32
}

/// GGUF's dequantization of one block (ggml's `dequantize_row_q3_K`): d·(sc − 32), then
/// times the quant, in that order (bit-identical to ggml's and candle's).
pub fn dequantize_block(block: &[u8], out: &mut [f32]) {
    assert!(block.len() >= BLOCK_BYTES && out.len() == BLOCK_VALUES);
    let d = f16_at(block, D);
    for (i, o) in out.iter_mut().enumerate() {
        let dl = d * (scale(block, i / 16) as f32 - 32.0);
        *o = dl * quant(block, i) as f32;
    }
}

/// Weight row `row` (k/256 blocks) · activation row r of `a`, as ggml's reference
/// `ggml_vec_dot_q3_K_q8_K`: per block the integer Σ_g (sc_g − 32) · Σ_{i in g} q_i·y_i,
/// then times d_w·d_a in f32.
pub fn dot_reference(row: &[u8], a: &Q8KRows, r: usize) -> f32 {
    let qs = a.row_qs(r);
    let mut sum = 0f32;
    for (b, blk) in row.chunks_exact(BLOCK_BYTES).take(a.blocks).enumerate() {
        let y = &qs[b * QK_K..(b + 1) * QK_K];
        let mut isum = 0i32;
        for g in 0..16 {
            let s: i32 = (16 * g..16 * g + 16)
                .map(|i| quant(blk, i) * y[i] as i32)
                .sum();
            isum += (scale(blk, g) - 32) * s;
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

/// `pshufb` tables, table t: 4 where bit t of the index (a nibble of hmask) is set, else 0.
#[cfg(target_arch = "x86_64")]
const HIGH_BIT: [[u8; 32]; 4] = {
    let mut p = [[0u8; 32]; 4];
    let mut t = 0;
    while t < 4 {
        let mut i = 0;
        while i < 32 {
            p[t][i] = (((i % 16) >> t) & 1) as u8 * 4;
            i += 1;
        }
        t += 1;
    }
    p
};

/// The 16 scales of the block at `blk`, minus 32, as i16 (lanes: scales 0..8 | 8..16).
/// Bytes 0..8 give the low nibbles (scales 0..8 from their low halves, 8..16 from their
/// high halves); byte 8 + j % 4, shifted right by 2·(j / 4), gives bits 4–5 of scale j: the
/// 4 bytes broadcast to 4 dwords, dword q shifted by 2q.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn scales_i16(blk: *const u8) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    let m4 = _mm_set1_epi8(0x0F);
    let lo8 = _mm_loadl_epi64(blk.add(SCALES) as *const __m128i);
    let low = _mm_unpacklo_epi64(
        _mm_and_si128(lo8, m4),
        _mm_and_si128(_mm_srli_epi16::<4>(lo8), m4),
    );
    let hi4 = _mm_set1_epi32((blk.add(SCALES + 8) as *const i32).read_unaligned());
    let high = _mm_and_si128(
        _mm_srlv_epi32(hi4, _mm_setr_epi32(0, 2, 4, 6)),
        _mm_set1_epi8(3),
    );
    let sc = _mm_or_si128(low, _mm_slli_epi16::<4>(high));
    _mm256_cvtepi8_epi16(_mm_sub_epi8(sc, _mm_set1_epi8(32)))
}

/// Weight row `row` (GGUF layout, `a.blocks` blocks) · activation rows first..first + R.
///
/// Per block: the scales are unpacked once ([`scales_i16`], and the 8 per-chunk scale
/// registers built by `pshufb`); per half, the qs register shifted by 0, 2, 4, 6 gives the
/// chunks' low bits (masked to 2 bits) and a `pshufb` of the half's hmask nibble gives
/// each chunk's high bit (as 4); each chunk then costs every row one `maddubs`, one `madd`
/// and one add. At the end of the block each row subtracts 4·Σ (sc − 32)·bsum (one `madd`),
/// converts its 8 lane sums to f32 and accumulates them times d_w·d_a.
/// The products d_w·d_a are formed 8 blocks at a time (one `vcvtph2ps` for 8 f16 scales,
/// times each row's d_a) and kept on the stack, so that a block costs each row only a
/// broadcast load, a conversion and an `fma` beyond its integer work.
///
/// No overflow or saturation: `maddubs` pairs are at most 2·7·128 = 1,792 in magnitude
/// (u ≤ 7, |y| ≤ 128); per lane and block the `madd`s add 8 chunks of at most 2·32·1,792 =
/// 114,688 (|sc − 32| ≤ 32), i.e. < 0.92 M, and the correction is at most 2·128·2,048 =
/// 0.52 M (4·|sc − 32| ≤ 128 fits i16).
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
    let m3 = _mm256_set1_epi8(3);
    let m15 = _mm256_set1_epi8(0x0F);
    let high_lut: [__m256i; 4] =
        std::array::from_fn(|t| _mm256_loadu_si256(HIGH_BIT[t].as_ptr() as *const __m256i));
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
        let s16 = scales_i16(blk);
        let halves = [
            _mm256_permute2x128_si256::<0x00>(s16, s16),
            _mm256_permute2x128_si256::<0x11>(s16, s16),
        ];
        let hm = _mm256_loadu_si256(blk.add(HMASK) as *const __m256i);
        // Each half's 4 high bits (a nibble of each hmask byte), looked up (`pshufb`) in a
        // table per chunk that gives 4 where the chunk's bit is set: one instruction per
        // chunk instead of a shift and a mask.
        let nibbles = [
            _mm256_and_si256(hm, m15),
            _mm256_and_si256(_mm256_srli_epi16::<4>(hm), m15),
        ];
        let mut sumi = [_mm256_setzero_si256(); R];
        for h in 0..2 {
            let q = _mm256_loadu_si256(blk.add(QS + 32 * h) as *const __m256i);
            let lows = [
                q,
                _mm256_srli_epi16::<2>(q),
                _mm256_srli_epi16::<4>(q),
                _mm256_srli_epi16::<6>(q),
            ];
            for t in 0..4 {
                let w = _mm256_or_si256(
                    _mm256_and_si256(lows[t], m3),
                    _mm256_shuffle_epi8(high_lut[t], nibbles[h]),
                );
                let sc = _mm256_shuffle_epi8(halves[h], shuf[t]);
                let at = b * QK_K + 128 * h + 32 * t;
                for r in 0..R {
                    let y = _mm256_loadu_si256(qp[r].add(at) as *const __m256i);
                    let p = _mm256_madd_epi16(_mm256_maddubs_epi16(w, y), sc);
                    sumi[r] = _mm256_add_epi32(sumi[r], p);
                }
            }
        }
        let s4 = _mm256_slli_epi16::<2>(s16);
        for r in 0..R {
            let bs = _mm256_loadu_si256(bp[r].add(16 * b) as *const __m256i);
            let isum = _mm256_sub_epi32(sumi[r], _mm256_madd_epi16(s4, bs));
            let d = _mm256_broadcast_ss(&dd[b % 8][r]);
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), d, acc[r]);
        }
    }
    std::array::from_fn(|r| super::x86::hsum(acc[r]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::k_quants::{BlockQ3K, BlockQ8K, GgmlType};
    use half::f16;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Packs 16 6-bit scales (as stored, 0..=63) into a block's 12 scale bytes.
    fn pack_scales(blk: &mut [u8], s: &[u8; 16]) {
        let sc = &mut blk[SCALES..SCALES + 12];
        sc.fill(0);
        for (j, &v) in s.iter().enumerate() {
            assert!(v < 64);
            if j < 8 {
                sc[j] |= v & 0x0F;
            } else {
                sc[j - 8] |= (v & 0x0F) << 4;
            }
            sc[8 + j % 4] |= (v >> 4) << (2 * (j / 4));
        }
    }

    /// Random blocks: random hmask and qs bytes; every 5th block all-0x00, every 5th (offset)
    /// all-0xFF; on even blocks the scales are 16b..16b + 16 (mod 64), so that 8 blocks go
    /// through all 64 values; random scale bytes on odd ones; d random finite of either
    /// sign, |d| in [1e-3, 1].
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
                let s: [u8; 16] = std::array::from_fn(|g| ((16 * (b / 2) + g) % 64) as u8);
                pack_scales(blk, &s);
                for (g, &v) in s.iter().enumerate() {
                    assert_eq!(scale(blk, g), v as i32);
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

    fn candle_blocks(bytes: &[u8]) -> Vec<BlockQ3K> {
        let n = bytes.len() / BLOCK_BYTES;
        assert_eq!(std::mem::size_of::<BlockQ3K>(), BLOCK_BYTES);
        let mut v = vec![BlockQ3K::zeros(); n];
        // SAFETY: BlockQ3K is repr(C), 110 bytes of plain integers and an f16.
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
        let mut rng = ChaCha8Rng::seed_from_u64(31);
        let data = random_blocks(&mut rng, 64);
        let mut theirs = vec![0f32; 64 * QK_K];
        BlockQ3K::to_float(&candle_blocks(&data), &mut theirs);
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
    fn reference_dot_is_the_dequantized_dot_and_candles() {
        let mut rng = ChaCha8Rng::seed_from_u64(33);
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
                    let theirs = BlockQ3K::vec_dot(k, &candle_blocks(row), &ys) as f64;
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

    fn has_avx2() -> bool {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
        {
            return true;
        }
        eprintln!("SKIPPED: no AVX2 + FMA + F16C");
        false
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_equals_the_reference() {
        if !has_avx2() {
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(34);
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

    /// The SIMD scale unpacking gives every stored value of every scale position.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_scales_are_the_packed_scales() {
        use std::arch::x86_64::*;
        if !has_avx2() {
            return;
        }
        let mut blk = vec![0u8; BLOCK_BYTES];
        for rot in 0..64 {
            let s: [u8; 16] = std::array::from_fn(|g| ((rot + 5 * g) % 64) as u8);
            pack_scales(&mut blk, &s);
            let mut got = [0i16; 16];
            // SAFETY: AVX2 checked; blk holds a whole block.
            unsafe {
                _mm256_storeu_si256(got.as_mut_ptr() as *mut __m256i, scales_i16(blk.as_ptr()))
            };
            for g in 0..16 {
                assert_eq!(got[g] as i32, s[g] as i32 - 32, "rot {rot} scale {g}");
            }
        }
    }

    /// The extremes: u = 7 everywhere (hmask, qs all 0xFF: quant 3) and u = 0 (all 0x00:
    /// quant −4), scales at −32 and +31, activations −128 and 127 (Q8_K itself never produces
    /// −128; it is tested anyway) and d = 1: `maddubs` sees its largest pairs, 2·7·(−128) =
    /// −1,792, far within i16. The kernel must match the exact integer.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn extremes_do_not_saturate_or_overflow() {
        use std::arch::x86_64::*;
        if !has_avx2() {
            return;
        }
        // SAFETY: AVX2 checked.
        unsafe {
            let p = _mm256_maddubs_epi16(_mm256_set1_epi8(7), _mm256_set1_epi8(-128));
            let mut v = [0i16; 16];
            _mm256_storeu_si256(v.as_mut_ptr() as *mut __m256i, p);
            assert!(v.iter().all(|&x| x == 2 * 7 * -128));
        }
        for (qbyte, sc, y) in [
            (0xFFu8, 0u8, -128i8),
            (0xFF, 0, 127),
            (0xFF, 63, -128),
            (0x00, 0, 127),
            (0x00, 0, -128),
            (0x00, 63, 127),
        ] {
            let blocks = 2;
            let mut blk = vec![qbyte; BLOCK_BYTES];
            pack_scales(&mut blk, &[sc; 16]);
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
            let q = if qbyte == 0xFF { 3i64 } else { -4 };
            let exact = (blocks * QK_K) as i64 * (sc as i64 - 32) * q * y as i64;
            assert_eq!(dot_reference(&row, &a, 0) as f64, exact as f64);
            // SAFETY: the features are checked above.
            let got = unsafe { dot_avx2::<8>(row.as_ptr(), &a, 0) };
            let got1 = unsafe { dot_avx2::<1>(row.as_ptr(), &a, 7) };
            for g in got.iter().chain(&got1) {
                assert_eq!(*g as f64, exact as f64, "q={q} sc={sc} y={y}");
            }
        }
    }
}
