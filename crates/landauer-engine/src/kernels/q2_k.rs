//! Q2_K weights (ggml's `block_q2_K`) against Q8_K activations.
//!
//! A block holds 256 values in 84 bytes:
//! - bytes 0..16: `scales`, one byte per group of 16 values: the low nibble is the group's
//!   scale `sc`, the high nibble its minimum `m` (both 0..15);
//! - bytes 16..80: `qs`, 2-bit quants. The block is two halves of 128 values; half h uses the
//!   32 bytes `qs[32h..32h + 32]`, and bits 2j..2j+2 of byte l are value 128h + 32j + l
//!   (j = 0..4, l = 0..32). Group g = value / 16 takes `scales[g]`;
//! - bytes 80..82: f16 `d`, bytes 82..84: f16 `dmin`.
//!
//! value = d·sc·q − dmin·m. Against a Q8_K block (quants y, scale d_y, sums of 16 `bsums`):
//! Σ value·y·d_y = d_y·d·Σ_g sc_g·Σ q·y − d_y·dmin·Σ_g m_g·bsums_g, so the minimums cost one
//! 16-term product with the activation's precomputed group sums, as ggml computes it.
//!
//! Integer bounds, with |y| ≤ 128 (Q8_K produces at most 127, the kernels do not rely on it):
//! - R = 1 path: `maddubs` takes q (≤ 3) or 4q (≤ 12) as unsigned bytes: a pair is at most
//!   2·12·128 = 3,072, no saturation; `madd` with 4·sc or sc (≤ 60) gives lanes of at most
//!   2·3,072·60 = 368,640; the block's sum is 4·Σ sc·q·y, at most 4·256·15·3·128 = 5,898,240;
//! - R > 1 path: q·sc ≤ 45 as unsigned bytes: a `maddubs` pair is at most 2·45·128 = 11,520,
//!   two pairs added in 16 bits 23,040 < 32,767; the block's Σ sc·q·y is at most 1,474,560;
//! - minimums: taken as 16·m (≤ 240) against `bsums` (|·| ≤ 16·128 = 2,048): a `madd` lane is
//!   at most 983,040 and the block's 16·Σ m·bsums at most 16·16·15·2,048 = 7,864,320.
//!
//! All inside i32, and below 2^24, so converting any of them to f32 is exact.

// Kernels index their per-row registers and arrays by row number: iterator forms of these
// loops measured slower (up to 20% at one row) where they kept the arrays out of registers.
#![allow(clippy::needless_range_loop)]
use super::{f16_at, Q8KRows, QK_K};

pub const BLOCK_VALUES: usize = QK_K;
pub const BLOCK_BYTES: usize = 84;

/// Byte offsets of the block's fields.
const QS: usize = 16;
const D: usize = 80;
const DMIN: usize = 82;

/// GGUF's dequantization of one block (ggml's `dequantize_row_q2_K`, candle's `to_float`):
/// value = (d·sc)·q − dmin·m in f32, with d·sc and dmin·m rounded first.
pub fn dequantize_block(block: &[u8], out: &mut [f32]) {
    assert!(block.len() >= BLOCK_BYTES && out.len() == BLOCK_VALUES);
    let (d, dmin) = (f16_at(block, D), f16_at(block, DMIN));
    for (i, o) in out.iter_mut().enumerate() {
        let sc = block[i / 16];
        let (h, j, l) = (i / 128, i % 128 / 32, i % 32);
        let q = (block[QS + 32 * h + l] >> (2 * j)) & 3;
        let dl = d * (sc & 0xF) as f32;
        let ml = dmin * (sc >> 4) as f32;
        *o = dl * q as f32 - ml;
    }
}

/// The dot product of a Q2_K row with activation row r, as ggml's `ggml_vec_dot_q2_K_q8_K`
/// reference: per block the integer sums isum = Σ_g sc_g·Σ q·y and summs = Σ_g m_g·bsums_g,
/// then sum += (d_y·d)·isum − (d_y·dmin)·summs in f32, block after block.
pub fn dot_reference(row: &[u8], a: &Q8KRows, r: usize) -> f32 {
    let qs = a.row_qs(r);
    let mut sum = 0f32;
    for (b, blk) in row.chunks_exact(BLOCK_BYTES).take(a.blocks).enumerate() {
        let y = &qs[b * QK_K..(b + 1) * QK_K];
        let summs: i32 = a
            .bsums(r, b)
            .iter()
            .zip(&blk[..16])
            .map(|(&s, &sc)| s as i32 * (sc >> 4) as i32)
            .sum();
        let mut isum = 0i32;
        for g in 0..16 {
            let (h, j, half) = (g / 8, g % 8 / 2, g % 2);
            let group: i32 = (0..16)
                .map(|l| {
                    let l = 16 * half + l;
                    let q = (blk[QS + 32 * h + l] >> (2 * j)) & 3;
                    q as i32 * y[16 * g + l % 16] as i32
                })
                .sum();
            isum += (blk[g] & 0xF) as i32 * group;
        }
        let dy = a.scale(r, b);
        let dall = dy * f16_at(blk, D);
        let dmin = dy * f16_at(blk, DMIN);
        sum += dall * isum as f32 - dmin * summs as f32;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
pub use x86::dot_avx2;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::x86::hsum;
    use super::super::{Q8KRows, QK_K};
    use super::{BLOCK_BYTES, D, QS};
    use std::arch::x86_64::*;

    /// Dots of one Q2_K weight row with activation rows `first..first + R`.
    ///
    /// Per block the weights are unpacked once: the 64 quant bytes give 8 registers of 32
    /// 2-bit values (masks and shifts), and the 16 scales give, for each register, a vector
    /// of 16-bit lanes holding the scale of its lower 16 values in the lower 128-bit half and
    /// of its upper 16 values in the upper half (one `pshufb` of the scale bytes each:
    /// register j of half h covers groups 8h + 2j and 8h + 2j + 1). Then each activation row
    /// needs only its own loads and products. Two shapes, by which costs less per row:
    /// - R = 1 ([`dot_madd`], ggml's shape): `maddubs` q·y, then `madd` with the scale vector
    ///   (scale multiply and widening to i32 in one instruction), per 32 values. Unlike ggml,
    ///   the quants of registers 1 and 3 are left in bits 2..4 (4q: a mask, no shift) and
    ///   registers 0 and 2 meet 4·sc instead: one shift per 128 values instead of three, and
    ///   every product is 4·sc·q, undone exactly by d/4.
    /// - R > 1 ([`dot_prescaled`]): the scale is multiplied into the quants once (q·sc ≤ 45
    ///   still fits a byte; one `mullo_epi16` per register is exact because neither byte's
    ///   product carries), so per row two `maddubs` results add in 16 bits before one `madd`
    ///   with ones widens them: 2 `madd` + 1 add per 64 values instead of 2 + 2. Rows go in
    ///   groups of 4: their integer sums are reduced to one lane each (`hadd`, exact) and one
    ///   conversion and multiply-add serve the 4 rows, with their 4 adjacent d_y (scales are
    ///   block-major). With a single row the `mullo`s cost more than they save.
    ///
    /// The minimums: `madd` of the 16 minimums with the row's 16 `bsums`. A row's float
    /// accumulator gains (d·d_y)·isum − (dmin·d_y)·mins per block, with the scale products of
    /// [`super::dot_reference`] and identical integer sums: only the rounding and order of the
    /// float multiply-adds differ.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C; `row` must point to `a.blocks` blocks and
    /// `first + R <= a.m`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_avx2<const R: usize>(row: *const u8, a: &Q8KRows, first: usize) -> [f32; R] {
        if R == 1 {
            dot_madd::<R>(row, a, first)
        } else {
            dot_prescaled::<R>(row, a, first)
        }
    }

    /// `pshufb` pattern giving 16-bit lanes that hold scale byte g (zero-extended: index
    /// 0x80 gives 0) in the lower 128-bit lane and byte g + 1 in the upper one, from a register
    /// holding the 16 scale bytes in both lanes. Register j of half h covers groups g = 8h + 2j
    /// (its lower 16 values) and g + 1 (upper).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn scale_pattern(g: usize) -> __m256i {
        let (lo, hi) = ((g | 0x8000) as i16, ((g + 1) | 0x8000) as i16);
        _mm256_setr_epi16(
            lo, lo, lo, lo, lo, lo, lo, lo, hi, hi, hi, hi, hi, hi, hi, hi,
        )
    }

    /// A block's fields in registers: d·`dscale` and dmin/16 (powers of two: exact), 16·m of
    /// the 16 minimums as 16-bit lanes (the high nibbles masked in place, no shift), and the
    /// 16 scales (low nibbles) as bytes in both 128-bit lanes.
    struct Block {
        d: f32,
        dmin: f32,
        mins: __m256i,
        sc: __m256i,
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn block(blk: *const u8, dscale: f32) -> Block {
        let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(
            (blk.add(D) as *const i32).read_unaligned(),
        ));
        let dm = _mm_mul_ps(dm, _mm_setr_ps(dscale, 1.0 / 16.0, 0.0, 0.0));
        let raw = _mm256_broadcastsi128_si256(_mm_loadu_si128(blk as *const __m128i));
        let mins = _mm_and_si128(_mm256_castsi256_si128(raw), _mm_set1_epi8(0xF0u8 as i8));
        Block {
            d: _mm_cvtss_f32(dm),
            dmin: _mm_cvtss_f32(_mm_movehdup_ps(dm)),
            mins: _mm256_cvtepu8_epi16(mins),
            sc: _mm256_and_si256(raw, _mm256_set1_epi8(0x0F)),
        }
    }

    /// The 4 registers of 2-bit quants (one byte each, 0..3) of half h: register j holds
    /// values 128h + 32j .. 128h + 32j + 32.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn quants(blk: *const u8, h: usize) -> [__m256i; 4] {
        let bits = _mm256_loadu_si256(blk.add(QS + 32 * h) as *const __m256i);
        let m3 = _mm256_set1_epi8(3);
        [
            _mm256_and_si256(bits, m3),
            _mm256_and_si256(_mm256_srli_epi16::<2>(bits), m3),
            _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m3),
            _mm256_and_si256(_mm256_srli_epi16::<6>(bits), m3),
        ]
    }

    /// Half h's quants with one shift instead of three: registers 1 and 3 keep their field in
    /// bits 2..4 (4q, ≤ 12), registers 0 and 2 in bits 0..2 (q).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn quants_x4(blk: *const u8, h: usize) -> [__m256i; 4] {
        let bits = _mm256_loadu_si256(blk.add(QS + 32 * h) as *const __m256i);
        let high = _mm256_srli_epi16::<4>(bits);
        let (m3, m12) = (_mm256_set1_epi8(3), _mm256_set1_epi8(12));
        [
            _mm256_and_si256(bits, m3),
            _mm256_and_si256(bits, m12),
            _mm256_and_si256(high, m3),
            _mm256_and_si256(high, m12),
        ]
    }

    /// The block's float scales for R rows: d·d_y and dmin·d_y (one vector multiply for a
    /// block's R adjacent activation scales, block-major in `Q8KRows::d`).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn row_scales<const R: usize>(w: &Block, dy: *const f32) -> ([f32; R], [f32; R]) {
        let (mut dd, mut dm) = ([0f32; R], [0f32; R]);
        for r in 0..R {
            dd[r] = w.d * *dy.add(r);
            dm[r] = w.dmin * *dy.add(r);
        }
        (dd, dm)
    }

    /// Adds the block's float contribution for one row: (d·d_y)·isum − (dmin·d_y)·mins, where
    /// `w.mins` carries 16·m and `w.dmin` dmin/16.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn finish(
        acc: __m256,
        w: &Block,
        isum: __m256i,
        bsums: *const i16,
        dd: &f32,
        dm: &f32,
    ) -> __m256 {
        let mins = _mm256_madd_epi16(w.mins, _mm256_loadu_si256(bsums as *const __m256i));
        let acc = _mm256_fmadd_ps(_mm256_broadcast_ss(dd), _mm256_cvtepi32_ps(isum), acc);
        _mm256_fnmadd_ps(_mm256_broadcast_ss(dm), _mm256_cvtepi32_ps(mins), acc)
    }

    /// [`dot_avx2`] with the scales applied by `madd` per row (best for R = 1).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_madd<const R: usize>(
        row: *const u8,
        a: &Q8KRows,
        first: usize,
    ) -> [f32; R] {
        let (m, nb) = (a.m, a.blocks);
        let qp: [*const i8; R] =
            std::array::from_fn(|r| a.qs.as_ptr().add((first + r) * nb * QK_K));
        let bp: [*const i16; R] =
            std::array::from_fn(|r| a.bsums.as_ptr().add((first + r) * nb * 16));
        let dp = a.d.as_ptr().add(first);
        let mut acc = [_mm256_setzero_ps(); R];
        for b in 0..nb {
            let blk = row.add(b * BLOCK_BYTES);
            // Every product is 4·sc·q: registers 0 and 2 (q) meet 4·sc, 1 and 3 (4q) meet sc;
            // d/4 undoes it exactly.
            let w = block(blk, 0.25);
            let (dd, dm) = row_scales::<R>(&w, dp.add(b * m));
            let sc4 = _mm256_slli_epi16::<2>(w.sc);
            let q = [quants_x4(blk, 0), quants_x4(blk, 1)];
            let mut scales = [[_mm256_setzero_si256(); 4]; 2];
            for (h, s) in scales.iter_mut().enumerate() {
                for (j, s) in s.iter_mut().enumerate() {
                    let src = if j % 2 == 0 { sc4 } else { w.sc };
                    *s = _mm256_shuffle_epi8(src, scale_pattern(8 * h + 2 * j));
                }
            }
            for r in 0..R {
                let y = qp[r].add(b * QK_K);
                let mut isum = _mm256_setzero_si256();
                for h in 0..2 {
                    let mut p = [_mm256_setzero_si256(); 4];
                    for j in 0..4 {
                        let yv = _mm256_loadu_si256(y.add(128 * h + 32 * j) as *const __m256i);
                        p[j] = _mm256_madd_epi16(scales[h][j], _mm256_maddubs_epi16(q[h][j], yv));
                    }
                    let s = _mm256_add_epi32(
                        _mm256_add_epi32(p[0], p[1]),
                        _mm256_add_epi32(p[2], p[3]),
                    );
                    isum = _mm256_add_epi32(isum, s);
                }
                acc[r] = finish(acc[r], &w, isum, bp[r].add(b * 16), &dd[r], &dm[r]);
            }
        }
        let mut out = [0f32; R];
        for r in 0..R {
            out[r] = hsum(acc[r]);
        }
        out
    }

    /// [`dot_avx2`] with the scales multiplied into the quants once per block (R > 1).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_prescaled<const R: usize>(
        row: *const u8,
        a: &Q8KRows,
        first: usize,
    ) -> [f32; R] {
        let (m, nb) = (a.m, a.blocks);
        let qp: [*const i8; R] =
            std::array::from_fn(|r| a.qs.as_ptr().add((first + r) * nb * QK_K));
        let bp: [*const i16; R] =
            std::array::from_fn(|r| a.bsums.as_ptr().add((first + r) * nb * 16));
        let dp = a.d.as_ptr().add(first);
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); R];
        let mut acc4 = [_mm_setzero_ps(); R];
        for b in 0..nb {
            let blk = row.add(b * BLOCK_BYTES);
            let w = block(blk, 1.0);
            let (dd, dm) = row_scales::<R>(&w, dp.add(b * m));
            let mut isum = [_mm256_setzero_si256(); R];
            for h in 0..2 {
                let q = quants(blk, h);
                // q·sc per byte (≤ 45): exact in each byte of the 16-bit product.
                let mut qs = [_mm256_setzero_si256(); 4];
                for j in 0..4 {
                    let sc = _mm256_shuffle_epi8(w.sc, scale_pattern(8 * h + 2 * j));
                    qs[j] = _mm256_mullo_epi16(q[j], sc);
                }
                for r in 0..R {
                    let y = qp[r].add(b * QK_K + 128 * h);
                    let mut p = [_mm256_setzero_si256(); 4];
                    for j in 0..4 {
                        let yv = _mm256_loadu_si256(y.add(32 * j) as *const __m256i);
                        p[j] = _mm256_maddubs_epi16(qs[j], yv);
                    }
                    // Two pairs of ≤ 11,520 each: ≤ 23,040 in 16 bits.
                    let p01 = _mm256_madd_epi16(_mm256_add_epi16(p[0], p[1]), ones);
                    let p23 = _mm256_madd_epi16(_mm256_add_epi16(p[2], p[3]), ones);
                    isum[r] = _mm256_add_epi32(isum[r], _mm256_add_epi32(p01, p23));
                }
            }
            // Rows in groups of 4: each row's integer sums reduced to one lane (exact), then
            // one conversion and multiply-add serve 4 rows, with their 4 adjacent d_y.
            for g in 0..R / 4 {
                let mut mins = [_mm256_setzero_si256(); 4];
                for (t, v) in mins.iter_mut().enumerate() {
                    let bs = _mm256_loadu_si256(bp[4 * g + t].add(b * 16) as *const __m256i);
                    *v = _mm256_madd_epi16(w.mins, bs);
                }
                let i4 = _mm_cvtepi32_ps(hsum4(&isum[4 * g..4 * g + 4]));
                let m4 = _mm_cvtepi32_ps(hsum4(&mins));
                let dy = _mm_loadu_ps(dp.add(b * m + 4 * g));
                acc4[g] = _mm_fmadd_ps(i4, _mm_mul_ps(dy, _mm_set1_ps(w.d)), acc4[g]);
                acc4[g] = _mm_fnmadd_ps(m4, _mm_mul_ps(dy, _mm_set1_ps(w.dmin)), acc4[g]);
            }
            for r in R / 4 * 4..R {
                acc[r] = finish(acc[r], &w, isum[r], bp[r].add(b * 16), &dd[r], &dm[r]);
            }
        }
        let mut out = [0f32; R];
        for g in 0..R / 4 {
            _mm_storeu_ps(out.as_mut_ptr().add(4 * g), acc4[g]);
        }
        for r in R / 4 * 4..R {
            out[r] = hsum(acc[r]);
        }
        out
    }

    /// Lane t of the result: the sum of the 8 lanes of `v[t]` (t < 4).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn hsum4(v: &[__m256i]) -> __m128i {
        let a = _mm256_hadd_epi32(v[0], v[1]);
        let b = _mm256_hadd_epi32(v[2], v[3]);
        // Lower half: 4 partial sums of lanes 0..4 of each vector, upper: of lanes 4..8.
        let c = _mm256_hadd_epi32(a, b);
        _mm_add_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256::<1>(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A random f16 of magnitude in [1e-3, 1] and random sign.
    fn scale16(rng: &mut ChaCha8Rng) -> [u8; 2] {
        let v = rng.random_range(1e-3f32..1.0) * if rng.random_bool(0.5) { 1.0 } else { -1.0 };
        f16::from_f32(v).to_le_bytes()
    }

    /// `n` rows of `blocks` blocks: random bytes for scales and quants, with every block index
    /// b % 23 == 7 all 0x00 and b % 23 == 11 all 0xFF (scales and quants), and row 0's first
    /// 16 blocks a sweep in which scales and quant bytes take every value 0..=255 (scale byte
    /// g of block i is 16i + g: every scale/min nibble pair; quant byte l of block i is
    /// (64i + l) mod 256).
    fn random_rows(rng: &mut ChaCha8Rng, n: usize, blocks: usize) -> Vec<u8> {
        let mut data = vec![0u8; n * blocks * BLOCK_BYTES];
        rng.fill(&mut data[..]);
        for (i, blk) in data.chunks_exact_mut(BLOCK_BYTES).enumerate() {
            match i % 23 {
                7 => blk[..D].fill(0),
                11 => blk[..D].fill(0xFF),
                _ => {}
            }
            if i < 16.min(blocks) {
                for g in 0..16 {
                    blk[g] = (16 * i + g) as u8;
                }
                for l in 0..64 {
                    blk[QS + l] = (64 * i + l) as u8;
                }
            }
            let (d, dmin) = (scale16(rng), scale16(rng));
            blk[D..D + 2].copy_from_slice(&d);
            blk[DMIN..DMIN + 2].copy_from_slice(&dmin);
        }
        data
    }

    /// Activations as the engine makes them: mostly modest values, 1% large outliers, exact
    /// zeros, and block 1 of row 0 all zero (if there is one).
    fn random_x(rng: &mut ChaCha8Rng, m: usize, k: usize) -> Vec<f32> {
        (0..m * k)
            .map(|i| {
                if i / QK_K == 1 || i % 37 == 0 {
                    0.0
                } else if rng.random_bool(0.01) {
                    rng.random_range(-300.0f32..300.0)
                } else {
                    rng.random_range(-2.0f32..2.0)
                }
            })
            .collect()
    }

    /// Q8_K rows with every quant value possible (−128 included), random scales, and bsums to
    /// match: the full domain the kernels must handle, beyond what `quantize` produces.
    fn raw_q8k(rng: &mut ChaCha8Rng, m: usize, k: usize) -> Q8KRows {
        let blocks = k / QK_K;
        let mut a = Q8KRows {
            m,
            blocks,
            qs: (0..m * k).map(|_| rng.random::<i8>()).collect(),
            d: (0..m * blocks)
                .map(|_| rng.random_range(-1e-2f32..1e-2))
                .collect(),
            bsums: vec![0; m * k / 16],
        };
        for (s, q) in a.bsums.iter_mut().zip(a.qs.chunks_exact(16)) {
            *s = q.iter().map(|&v| v as i16).sum();
        }
        a
    }

    /// Field by field: (d·sc·q − dmin·m, its two parts' magnitudes) of value i of a block, in
    /// f64 (exact: products of an f16, two small integers).
    fn exact_value(blk: &[u8], i: usize) -> (f64, f64) {
        let sc = blk[i / 16];
        let q = (blk[QS + 32 * (i / 128) + i % 32] >> (2 * (i % 128 / 32))) & 3;
        let a = f16_at(blk, D) as f64 * (sc & 0xF) as f64 * q as f64;
        let b = f16_at(blk, DMIN) as f64 * (sc >> 4) as f64;
        (a - b, a.abs() + b.abs())
    }

    /// Σ w·a over the row in f64 from the fields, and Σ of the terms' magnitudes (both parts
    /// of each weight counted: the kernels sum the scale and minimum parts separately).
    fn exact_dot(row: &[u8], a: &Q8KRows, r: usize) -> (f64, f64) {
        let qs = a.row_qs(r);
        let (mut s, mut mag) = (0f64, 0f64);
        for (b, blk) in row.chunks_exact(BLOCK_BYTES).enumerate() {
            let dy = a.scale(r, b) as f64;
            for i in 0..QK_K {
                let (w, wm) = exact_value(blk, i);
                let y = qs[b * QK_K + i] as f64 * dy;
                s += w * y;
                mag += wm * y.abs();
            }
        }
        (s, mag)
    }

    fn to_candle(bytes: &[u8]) -> Vec<candle_core::quantized::k_quants::BlockQ2K> {
        use candle_core::quantized::k_quants::{BlockQ2K, GgmlType};
        assert_eq!(std::mem::size_of::<BlockQ2K>(), BLOCK_BYTES);
        let n = bytes.len() / BLOCK_BYTES;
        let mut blocks: Vec<BlockQ2K> = (0..n).map(|_| BlockQ2K::zeros()).collect();
        // SAFETY: BlockQ2K is repr(C), 84 bytes of u8 arrays and f16 (checked size): any bytes
        // are a valid value.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                blocks.as_mut_ptr() as *mut u8,
                bytes.len(),
            )
        };
        blocks
    }

    #[test]
    fn dequantize_equals_candle() {
        use candle_core::quantized::k_quants::GgmlType;
        let mut rng = ChaCha8Rng::seed_from_u64(21);
        let blocks = 64;
        let data = random_rows(&mut rng, 1, blocks);
        let mut theirs = vec![0f32; blocks * QK_K];
        candle_core::quantized::k_quants::BlockQ2K::to_float(&to_candle(&data), &mut theirs);
        let mut ours = vec![0f32; QK_K];
        for (b, blk) in data.chunks_exact(BLOCK_BYTES).enumerate() {
            dequantize_block(blk, &mut ours);
            for i in 0..QK_K {
                assert_eq!(
                    ours[i].to_bits(),
                    theirs[b * QK_K + i].to_bits(),
                    "block {b} value {i}"
                );
                let (exact, _) = exact_value(blk, i);
                assert!((ours[i] as f64 - exact).abs() <= 1e-6 * exact.abs().max(1.0));
            }
        }
    }

    #[test]
    fn reference_is_the_exact_dot() {
        let mut rng = ChaCha8Rng::seed_from_u64(22);
        for blocks in [1, 2, 3, 5, 8] {
            let k = blocks * QK_K;
            let w = random_rows(&mut rng, 3, blocks);
            let mut quantized = Q8KRows::default();
            quantized.quantize(&random_x(&mut rng, 2, k), 2, k);
            for a in [quantized, raw_q8k(&mut rng, 2, k)] {
                for (j, row) in w.chunks_exact(blocks * BLOCK_BYTES).enumerate() {
                    for r in 0..2 {
                        let got = dot_reference(row, &a, r) as f64;
                        let (want, mag) = exact_dot(row, &a, r);
                        assert!(
                            (got - want).abs() <= 1e-5 * mag + 1e-30,
                            "k={k} row {j} act {r}: {got} vs {want} (mag {mag})"
                        );
                    }
                }
            }
        }
    }

    /// Every kernel variant for R rows starting at every `first` of an m = R + 3 batch.
    #[cfg(target_arch = "x86_64")]
    fn check_simd<const R: usize>(rng: &mut ChaCha8Rng) {
        let m = R + 3;
        for blocks in [1, 2, 3, 5, 8] {
            let k = blocks * QK_K;
            let w = random_rows(rng, 4, blocks);
            let mut quantized = Q8KRows::default();
            quantized.quantize(&random_x(rng, m, k), m, k);
            for a in [quantized, raw_q8k(rng, m, k)] {
                for row in w.chunks_exact(blocks * BLOCK_BYTES) {
                    for first in 1..=m - R {
                        // SAFETY: AVX2/FMA/F16C checked by the caller; row holds a.blocks
                        // blocks; first + R <= m.
                        let got = unsafe {
                            [
                                dot_avx2::<R>(row.as_ptr(), &a, first),
                                x86::dot_madd::<R>(row.as_ptr(), &a, first),
                                x86::dot_prescaled::<R>(row.as_ptr(), &a, first),
                            ]
                        };
                        for r in 0..R {
                            let want = dot_reference(row, &a, first + r) as f64;
                            let (_, mag) = exact_dot(row, &a, first + r);
                            for (v, g) in got.iter().enumerate() {
                                let g = g[r] as f64;
                                assert!(
                                    (g - want).abs() <= 1e-5 * mag + 1e-30,
                                    "R={R} variant {v} k={k} first={first} r={r}: {g} vs {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn has_avx2() -> bool {
        let ok = is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c");
        if !ok {
            eprintln!("SKIPPED: this CPU has no AVX2 + FMA + F16C");
        }
        ok
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_equals_reference_for_every_r() {
        if !has_avx2() {
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(23);
        check_simd::<1>(&mut rng);
        check_simd::<2>(&mut rng);
        check_simd::<3>(&mut rng);
        check_simd::<4>(&mut rng);
        check_simd::<8>(&mut rng);
        // A model's width: 2048 (8 blocks) is above; 5632 = 22 blocks too.
        let k = 22 * QK_K;
        let w = random_rows(&mut rng, 2, 22);
        let mut a = Q8KRows::default();
        a.quantize(&random_x(&mut rng, 9, k), 9, k);
        for row in w.chunks_exact(22 * BLOCK_BYTES) {
            // SAFETY: as above.
            let (one, eight) = unsafe {
                (
                    dot_avx2::<1>(row.as_ptr(), &a, 0),
                    dot_avx2::<8>(row.as_ptr(), &a, 1),
                )
            };
            for (r, g) in [(0, one[0])]
                .into_iter()
                .chain((1..9).map(|r| (r, eight[r - 1])))
            {
                let want = dot_reference(row, &a, r) as f64;
                let (_, mag) = exact_dot(row, &a, r);
                assert!(
                    (g as f64 - want).abs() <= 1e-5 * mag,
                    "k={k} r={r}: {g} vs {want}"
                );
            }
        }
    }

    /// The worst cases of the integer paths, built explicitly: every quant 3, every scale and
    /// minimum 15, activations all −128 or all 127 (Q8_K never makes −128, but the kernels must
    /// not care), bsums at their extremes. `maddubs` pairs of 4q·y (≤ 3,072) or of q·sc·y
    /// (≤ 11,520, two added: 23,040) cannot saturate, and every path gives the reference's
    /// integer sums exactly (the results are exactly representable, so the floats match bit
    /// for bit).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn worst_case_cannot_saturate() {
        if !has_avx2() {
            return;
        }
        let mut blk = [0xFFu8; BLOCK_BYTES];
        blk[D..D + 2].copy_from_slice(&f16::from_f32(1.0).to_le_bytes());
        blk[DMIN..DMIN + 2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        for y in [-128i8, 127] {
            let a = Q8KRows {
                m: 8,
                blocks: 1,
                qs: vec![y; 8 * QK_K],
                d: vec![1.0; 8],
                bsums: vec![16 * y as i16; 8 * 16],
            };
            // isum = 256·15·3·y, summs = 16·15·16·y: exact in f32.
            let want = (256 * 45 * y as i32) as f32 - 0.5 * (16 * 15 * 16 * y as i32) as f32;
            assert_eq!(dot_reference(&blk, &a, 0), want);
            // SAFETY: AVX2/FMA/F16C checked; one block, 8 rows.
            let got = unsafe {
                [
                    x86::dot_madd::<1>(blk.as_ptr(), &a, 0)[0],
                    x86::dot_madd::<8>(blk.as_ptr(), &a, 0)[7],
                    x86::dot_prescaled::<2>(blk.as_ptr(), &a, 0)[1],
                    x86::dot_prescaled::<3>(blk.as_ptr(), &a, 5)[2],
                    x86::dot_prescaled::<4>(blk.as_ptr(), &a, 4)[3],
                    x86::dot_prescaled::<8>(blk.as_ptr(), &a, 0)[7],
                ]
            };
            assert_eq!(got, [want; 6], "y = {y}");
        }
    }
}
