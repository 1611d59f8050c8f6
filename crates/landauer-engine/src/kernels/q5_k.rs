//! Q5_K: the weight format of llama.cpp's Q5_K_M / Q5_K_S files.
//!
//! A block holds 256 values in 176 bytes: f16 `d` (bytes 0..2), f16 `dmin` (2..4), 12 bytes of
//! packed 6-bit scales `sc[j]` and minimums `m[j]` for 8 sub-blocks of 32 values (4..16, see
//! [`k_scales`](super::k_scales)), 32 bytes of high bits `qh` (16..48), then 128 bytes of
//! nibbles (48..176). As in Q4_K, byte l of the 32-byte nibble chunk c (0..4) holds value
//! 64c + l in its low nibble (sub-block 2c) and value 64c + 32 + l in its high nibble
//! (sub-block 2c + 1); bit j of `qh[l]` is the fifth bit (16) of value 32j + l. Value i of
//! sub-block j is `d·sc[j]·q − dmin·m[j]` with q in 0..32.
//!
//! The partner activations are Q8_K (`Q8KRows`); the dot product is formed as Q4_K's
//! (see `q4_k`): `d·d_a·Σ_j sc[j]·Σ q·y − dmin·d_a·Σ_j m[j]·(bsums[2j] + bsums[2j + 1])`.

// Kernels index their per-row registers and arrays by row number: iterator forms of these
// loops measured slower (up to 20% at one row) where they kept the arrays out of registers.
#![allow(clippy::needless_range_loop)]

#[cfg(target_arch = "x86_64")]
use super::x86::hsum;
use super::{f16_at, k_scales, Q8KRows, QK_K};

pub const BLOCK_VALUES: usize = QK_K;
pub const BLOCK_BYTES: usize = 176;

/// Value 32j + l of a block: nibble plus high bit, 0..32.
#[inline(always)]
fn quant(block: &[u8], j: usize, l: usize) -> u8 {
    let nibble = (block[48 + 32 * (j / 2) + l] >> (4 * (j % 2))) & 0xF;
    nibble | ((block[16 + l] >> j) & 1) << 4
}

/// GGUF's dequantization of one block (ggml's `dequantize_row_q5_K`): value = d·sc·q − dmin·m,
/// with d·sc and dmin·m rounded to f32 first.
pub fn dequantize_block(block: &[u8], out: &mut [f32]) {
    assert!(block.len() == BLOCK_BYTES && out.len() == QK_K);
    let (d, dmin) = (f16_at(block, 0), f16_at(block, 2));
    let (sc, m) = k_scales::unpack_arrays(block[4..16].try_into().unwrap());
    for j in 0..8 {
        let (d1, m1) = (d * sc[j] as f32, dmin * m[j] as f32);
        for l in 0..32 {
            out[32 * j + l] = d1 * quant(block, j, l) as f32 - m1;
        }
    }
}

/// One weight row · activation row `r`, as ggml's `vec_dot_q5_K_q8_K` reference: per block the
/// integer sums Σ_j sc[j]·Σ q·y and Σ_j m[j]·(bsums[2j] + bsums[2j+1]), then
/// `d·d_a·sumi − dmin·d_a·summ` in f32 (|sumi| ≤ 8·63·32·31·128 < 2^26, |summ| ≤ 8·63·32·128: no
/// i32 overflow).
pub fn dot_reference(row: &[u8], a: &Q8KRows, r: usize) -> f32 {
    assert!(row.len() == a.blocks * BLOCK_BYTES);
    let qs = a.row_qs(r);
    let mut sum = 0f32;
    for (b, blk) in row.chunks_exact(BLOCK_BYTES).enumerate() {
        let (sc, m) = k_scales::unpack_arrays(blk[4..16].try_into().unwrap());
        let y = &qs[b * QK_K..][..QK_K];
        let bs = a.bsums(r, b);
        let (mut sumi, mut summ) = (0i32, 0i32);
        for j in 0..8 {
            let dot: i32 = (0..32)
                .map(|l| quant(blk, j, l) as i32 * y[32 * j + l] as i32)
                .sum();
            sumi += sc[j] as i32 * dot;
            summ += m[j] as i32 * (bs[2 * j] as i32 + bs[2 * j + 1] as i32);
        }
        let da = a.scale(r, b);
        sum += f16_at(blk, 0) * da * sumi as f32 - f16_at(blk, 2) * da * summ as f32;
    }
    sum
}

/// Bit `B` of every byte of `qh`, moved to bit 4 (the value 16), other bits cleared.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn high_bit<const B: u32>(qh: std::arch::x86_64::__m256i) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    // A 16-bit shift by s ≤ 4 moves bit B of each byte to bit B ± s of the same byte; what it
    // carries across bytes lands in bits that the mask clears.
    let v = match B {
        0 => _mm256_slli_epi16::<4>(qh),
        1 => _mm256_slli_epi16::<3>(qh),
        2 => _mm256_slli_epi16::<2>(qh),
        3 => _mm256_slli_epi16::<1>(qh),
        4 => qh,
        5 => _mm256_srli_epi16::<1>(qh),
        6 => _mm256_srli_epi16::<2>(qh),
        _ => _mm256_srli_epi16::<3>(qh),
    };
    _mm256_and_si256(v, _mm256_set1_epi8(0x10))
}

/// One weight row · activation rows `first..first + R`.
///
/// Q4_K's kernel (see `q4_k::dot_avx2`) with the fifth bit: the block's 32 bytes of high bits
/// are loaded once, and for the 64 values of nibble chunk c, bits 2c and 2c + 1 of each byte
/// are moved to bit 4 (one shift and one mask each, [`high_bit`]) and or-ed onto the low and
/// high nibbles. Per row and sub-block the work is then Q4_K's: `maddubs` (u8 0..31 × i8),
/// `madd` with the sub-block's scale, add; per row and block, `madd` of the bsums with the
/// doubled minimums and `(d·sumi − dmin·summ)·d_a` in f32. The unpacking (9 vector ops per 64
/// values against Q4_K's 3) is done once for all R rows.
///
/// No overflow (exact integer sums): a `maddubs` pair is at most 2·31·128 = 7,936 in
/// magnitude (i16 saturates at 32,767); an i32 lane of sumi adds 8 `madd` results of at most
/// 63·2·7,936 = 999,936, so |lane| ≤ 8.0M < 2^24 and its f32 conversion is exact too; a bsum is
/// at most 16·128 = 2,048, so a lane of summ is at most 2·63·2,048 = 258,048.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; `row` points at `a.blocks` blocks and
/// `first + R <= a.m`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_avx2<const R: usize>(row: *const u8, a: &Q8KRows, first: usize) -> [f32; R] {
    use std::arch::x86_64::*;
    debug_assert!(first + R <= a.m && a.qs.len() == a.m * a.blocks * QK_K);
    let (m, nb) = (a.m, a.blocks);
    // Row r's quants of block b at qp + r·stride + b·256; its bsums at bp + (r·nb + b)·16.
    let stride = nb * QK_K;
    let qp = a.qs.as_ptr().add(first * stride);
    let bp = a.bsums.as_ptr().add(first * nb * 16);
    let dp = a.d.as_ptr().add(first);
    let low = _mm256_set1_epi8(0x0F);
    let ctrl = |j: usize| _mm256_load_si256(k_scales::SHUFFLE.0[j].as_ptr() as *const __m256i);
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..nb {
        let blk = row.add(b * BLOCK_BYTES);
        let dd = _mm_cvtph_ps(_mm_cvtsi32_si128((blk as *const i32).read_unaligned()));
        let vd = _mm256_broadcastss_ps(dd);
        let vmin = _mm256_broadcastss_ps(_mm_movehdup_ps(dd));
        let (sc, mn) = k_scales::unpack(&*(blk.add(4) as *const [u8; 12]));
        // Bytes 0..8: scales, 8..16: minimums; in both 128-bit lanes.
        let scm = _mm256_broadcastsi128_si256(_mm_set_epi64x(mn as i64, sc as i64));
        let qh = _mm256_loadu_si256(blk.add(16) as *const __m256i);
        let mut sumi = [_mm256_setzero_si256(); R];
        for c in 0..4 {
            let bits = _mm256_loadu_si256(blk.add(48 + 32 * c) as *const __m256i);
            let (hlo, hhi) = match c {
                0 => (high_bit::<0>(qh), high_bit::<1>(qh)),
                1 => (high_bit::<2>(qh), high_bit::<3>(qh)),
                2 => (high_bit::<4>(qh), high_bit::<5>(qh)),
                _ => (high_bit::<6>(qh), high_bit::<7>(qh)),
            };
            let lo = _mm256_or_si256(_mm256_and_si256(bits, low), hlo);
            let hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(bits), low), hhi);
            // The scales of sub-blocks 2c and 2c + 1 in every 16-bit lane.
            let s_lo = _mm256_shuffle_epi8(scm, ctrl(2 * c));
            let s_hi = _mm256_shuffle_epi8(scm, ctrl(2 * c + 1));
            for r in 0..R {
                let y = qp.add(r * stride + b * QK_K + 64 * c);
                let ylo = _mm256_loadu_si256(y as *const __m256i);
                let yhi = _mm256_loadu_si256(y.add(32) as *const __m256i);
                let plo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, ylo), s_lo);
                let phi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, yhi), s_hi);
                sumi[r] = _mm256_add_epi32(sumi[r], _mm256_add_epi32(plo, phi));
            }
        }
        // [m0, m0, m1, m1, .., m7, m7]: the minimum of each bsum's sub-block.
        let mins = _mm256_shuffle_epi8(scm, ctrl(8));
        for r in 0..R {
            let bs = _mm256_loadu_si256(bp.add((r * nb + b) * 16) as *const __m256i);
            let summ = _mm256_cvtepi32_ps(_mm256_madd_epi16(bs, mins));
            let t = _mm256_fmsub_ps(_mm256_cvtepi32_ps(sumi[r]), vd, _mm256_mul_ps(summ, vmin));
            acc[r] = _mm256_fmadd_ps(t, _mm256_broadcast_ss(&*dp.add(b * m + r)), acc[r]);
        }
    }
    std::array::from_fn(|r| hsum(acc[r]))
}

#[cfg(test)]
mod tests {
    use super::super::k_scales::testing::{self, Format};
    use super::*;
    use candle_core::quantized::GgmlDType;

    #[cfg(target_arch = "x86_64")]
    unsafe fn avx2(r: usize, row: *const u8, a: &Q8KRows, first: usize) -> Vec<f32> {
        match r {
            1 => dot_avx2::<1>(row, a, first).to_vec(),
            2 => dot_avx2::<2>(row, a, first).to_vec(),
            3 => dot_avx2::<3>(row, a, first).to_vec(),
            4 => dot_avx2::<4>(row, a, first).to_vec(),
            8 => dot_avx2::<8>(row, a, first).to_vec(),
            _ => unreachable!(),
        }
    }

    const Q5K: Format = Format {
        dtype: GgmlDType::Q5K,
        block_bytes: BLOCK_BYTES,
        quants: 16..BLOCK_BYTES,
        dequantize: dequantize_block,
        reference: dot_reference,
        #[cfg(target_arch = "x86_64")]
        avx2,
    };

    #[test]
    fn dequantize_matches_candle() {
        testing::dequantize_matches_candle(&Q5K);
    }

    #[test]
    fn reference_is_the_dequantized_dot() {
        testing::reference_is_the_dequantized_dot(&Q5K);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_matches_reference() {
        testing::avx2_matches_reference(&Q5K);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn worst_case_cannot_saturate() {
        testing::maddubs_cannot_saturate(31);
        testing::worst_case_is_exact(&Q5K, 31);
    }
}
