//! Q4_K: the weight format of llama.cpp's Q4_K_M files (with Q6_K for a few tensors).
//!
//! A block holds 256 values in 144 bytes: f16 `d` (bytes 0..2), f16 `dmin` (2..4), 12 bytes of
//! packed 6-bit scales `sc[j]` and minimums `m[j]` for 8 sub-blocks of 32 values (4..16, see
//! [`k_scales`](super::k_scales)), then 128 bytes of nibbles (16..144). Byte l of the 32-byte
//! chunk c (0..4) holds value 64c + l in its low nibble (sub-block 2c) and value 64c + 32 + l
//! in its high nibble (sub-block 2c + 1). Value i of sub-block j is `d·sc[j]·q − dmin·m[j]`.
//!
//! The partner activations are Q8_K (`Q8KRows`: 256 i8 per block, f32 scale, sums of each 16
//! quants). As in ggml, a block's dot product with activation y (scale d_a) is
//! `d·d_a·Σ_j sc[j]·Σ_{i∈j} q_i·y_i − dmin·d_a·Σ_j m[j]·Σ_{i∈j} y_i`, where Σ_{i∈j} y_i is
//! `bsums[2j] + bsums[2j + 1]`: two integer sums, then two float products.

// Kernels index their per-row registers and arrays by row number: iterator forms of these
// loops measured slower (up to 20% at one row) where they kept the arrays out of registers.
#![allow(clippy::needless_range_loop)]

#[cfg(target_arch = "x86_64")]
use super::x86::hsum;
use super::{f16_at, k_scales, Q8KRows, QK_K};

pub const BLOCK_VALUES: usize = QK_K;
pub const BLOCK_BYTES: usize = 144;

/// GGUF's dequantization of one block (ggml's `dequantize_row_q4_K`): value = d·sc·q − dmin·m,
/// with d·sc and dmin·m rounded to f32 first.
pub fn dequantize_block(block: &[u8], out: &mut [f32]) {
    assert!(block.len() == BLOCK_BYTES && out.len() == QK_K);
    let (d, dmin) = (f16_at(block, 0), f16_at(block, 2));
    let (sc, m) = k_scales::unpack_arrays(block[4..16].try_into().unwrap());
    for j in 0..8 {
        let (d1, m1) = (d * sc[j] as f32, dmin * m[j] as f32);
        let chunk = &block[16 + 32 * (j / 2)..][..32];
        let shift = 4 * (j % 2);
        for (o, &q) in out[32 * j..32 * (j + 1)].iter_mut().zip(chunk) {
            *o = d1 * ((q >> shift) & 0xF) as f32 - m1;
        }
    }
}

/// One weight row · activation row `r`, as ggml's `vec_dot_q4_K_q8_K` reference: per block the
/// integer sums Σ_j sc[j]·Σ q·y and Σ_j m[j]·(bsums[2j] + bsums[2j+1]), then
/// `d·d_a·sumi − dmin·d_a·summ` in f32 (|sumi| ≤ 8·63·32·15·128 < 2^25, |summ| ≤ 8·63·32·128: no
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
            let chunk = &blk[16 + 32 * (j / 2)..][..32];
            let shift = 4 * (j % 2);
            let dot: i32 = (0..32)
                .map(|l| ((chunk[l] >> shift) & 0xF) as i32 * y[32 * j + l] as i32)
                .sum();
            sumi += sc[j] as i32 * dot;
            summ += m[j] as i32 * (bs[2 * j] as i32 + bs[2 * j + 1] as i32);
        }
        let da = a.scale(r, b);
        sum += f16_at(blk, 0) * da * sumi as f32 - f16_at(blk, 2) * da * summ as f32;
    }
    sum
}

/// One weight row · activation rows `first..first + R`.
///
/// Per block, shared by the R rows: d and dmin through F16C; the 8 scales and 8 minimums
/// unpacked on three 32-bit words ([`k_scales::unpack`]) into one register, from which
/// `pshufb` (controls in [`k_scales::SHUFFLE`]) makes each sub-block's scale in all 16-bit
/// lanes and the minimums doubled up to match the 16 bsums; then, per 64 values, one 32-byte
/// load split into low and high nibbles (two sub-blocks).
/// Per row and sub-block: `maddubs` (nibbles as u8 × activations as i8 → 16 i16 pair sums),
/// `madd` with the sub-block's scale (→ 8 i32, scaled) and an add into the row's i32 sum. Per
/// row and block: `madd` of the 16 bsums with the doubled minimums gives Σ m·Σy in 8 lanes, and
/// `(d·sumi − dmin·summ)·d_a` is accumulated in f32 (one horizontal sum per row at the end).
/// Weights are unsigned 0..15, so no sign trick is needed.
///
/// No overflow (exact integer sums): a `maddubs` pair is at most 2·15·128 = 3,840 in
/// magnitude (i16 saturates at 32,767); an i32 lane of sumi adds 8 `madd` results of at most
/// 63·2·3,840 = 483,840, so |lane| ≤ 3.9M < 2^24 and its f32 conversion is exact too; a bsum is
/// at most 16·128 = 2,048, so a lane of summ is at most 2·63·2,048 = 258,048.
///
/// The loop over 64 values keeps 13 vectors live for R = 8 (2 of nibbles, 2 of scales, the
/// nibble mask, 8 row sums): they fit the 16 registers; the f32 accumulators wait in memory
/// between blocks. Per row and 32 values the work is `maddubs`, `madd` and an add on the
/// vector ports, which bounds R = 8 at about 4× the time of R = 1 (examples/speed.rs).
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
        let mut sumi = [_mm256_setzero_si256(); R];
        for c in 0..4 {
            let bits = _mm256_loadu_si256(blk.add(16 + 32 * c) as *const __m256i);
            let lo = _mm256_and_si256(bits, low);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(bits), low);
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

    const Q4K: Format = Format {
        dtype: GgmlDType::Q4K,
        block_bytes: BLOCK_BYTES,
        quants: 16..BLOCK_BYTES,
        dequantize: dequantize_block,
        reference: dot_reference,
        #[cfg(target_arch = "x86_64")]
        avx2,
    };

    #[test]
    fn dequantize_matches_candle() {
        testing::dequantize_matches_candle(&Q4K);
    }

    #[test]
    fn reference_is_the_dequantized_dot() {
        testing::reference_is_the_dequantized_dot(&Q4K);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_matches_reference() {
        testing::avx2_matches_reference(&Q4K);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn worst_case_cannot_saturate() {
        testing::maddubs_cannot_saturate(15);
        testing::worst_case_is_exact(&Q4K, 15);
    }
}
