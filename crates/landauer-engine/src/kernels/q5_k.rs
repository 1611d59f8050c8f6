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

/// Bytes of one tile block: the 8 rows' blocks, rearranged, nothing added (8 · 176).
pub const TILE_BLOCK_BYTES: usize = 8 * BLOCK_BYTES;

/// Start of the 32 value vectors `Y` in a tile block; start of the 8 vectors `P`.
const TILE_Y: usize = 128;
const TILE_P: usize = TILE_Y + 32 * 32;

/// Tile block layout (1,408 bytes, the same information as the 8 GGUF blocks):
/// - 0..16: the 8 rows' f16 `d`; 16..32: their f16 `dmin` (row j at 2j);
/// - 32..128: the packed 6-bit scales and minimums as three 32-byte vectors, vector w holding
///   word w (bytes 4 + 4w..8 + 4w) of row j's 12-byte field in 32-bit lane j (as Q4_K's tile);
/// - 128..1152: 32 vectors `Y[t]`, t = 8c + i (c = 0..4 the GGUF nibble chunk, i = 0..8 the
///   group of 4 positions l = 4i + p): byte 4j + p is `lo | (hi >> 2) << 5` where lo and hi are
///   row j's 5-bit values 64c + l (sub-block 2c) and 64c + 32 + l (sub-block 2c + 1);
/// - 1152..1408: 8 vectors `P[i]`: byte 4j + p holds `hi & 3` of chunk c in bits 2c..2c + 2.
///
/// So a chunk's 32 values of sub-block 2c (8 rows × 4) are `Y & 0x1F` (one op, where Q4_K
/// needs one) and those of sub-block 2c + 1 are `(Y >> 3) & 0x1C | (P[i] >> 2c) & 3` (five ops
/// at most, 16-bit shifts whose cross-byte spill the masks clear), against nine for GGUF's
/// nibbles plus a qh bit plane. The rearrangement is a bijection of the 1,280 quant bits:
/// [`untile_block`] inverts it.
#[inline(always)]
fn tile_y(t: usize, j: usize, p: usize) -> usize {
    TILE_Y + 32 * t + 4 * j + p
}
#[inline(always)]
fn tile_p(i: usize, j: usize, p: usize) -> usize {
    TILE_P + 32 * i + 4 * j + p
}

/// Interleaves block b of 8 rows (each `BLOCK_BYTES`, GGUF layout) into one tile block of
/// [`TILE_BLOCK_BYTES`] (layout: see [`tile_y`]). Lossless: [`untile_block`] inverts it.
pub fn tile_block(rows: [&[u8]; 8], out: &mut [u8]) {
    assert!(out.len() == TILE_BLOCK_BYTES);
    out[TILE_P..].fill(0);
    for (j, src) in rows.iter().enumerate() {
        assert!(src.len() == BLOCK_BYTES);
        out[2 * j..2 * j + 2].copy_from_slice(&src[0..2]);
        out[16 + 2 * j..18 + 2 * j].copy_from_slice(&src[2..4]);
        for w in 0..3 {
            out[32 + 32 * w + 4 * j..][..4].copy_from_slice(&src[4 + 4 * w..][..4]);
        }
        for c in 0..4 {
            for i in 0..8 {
                for p in 0..4 {
                    let l = 4 * i + p;
                    let (lo, hi) = (quant(src, 2 * c, l), quant(src, 2 * c + 1, l));
                    out[tile_y(8 * c + i, j, p)] = lo | (hi >> 2) << 5;
                    out[tile_p(i, j, p)] |= (hi & 3) << (2 * c);
                }
            }
        }
    }
}

/// Row j's GGUF block back from a tile block (the exact bytes `tile_block` was given).
pub fn untile_block(tile: &[u8], j: usize, out: &mut [u8]) {
    assert!(tile.len() == TILE_BLOCK_BYTES && out.len() == BLOCK_BYTES && j < 8);
    out[0..2].copy_from_slice(&tile[2 * j..2 * j + 2]);
    out[2..4].copy_from_slice(&tile[16 + 2 * j..18 + 2 * j]);
    for w in 0..3 {
        out[4 + 4 * w..][..4].copy_from_slice(&tile[32 + 32 * w + 4 * j..][..4]);
    }
    out[16..48].fill(0);
    for c in 0..4 {
        for i in 0..8 {
            for p in 0..4 {
                let l = 4 * i + p;
                let y = tile[tile_y(8 * c + i, j, p)];
                let lo = y & 0x1F;
                let hi = (y >> 5) << 2 | (tile[tile_p(i, j, p)] >> (2 * c)) & 3;
                out[48 + 32 * c + l] = (lo & 0xF) | (hi & 0xF) << 4;
                out[16 + l] |= (lo >> 4) << (2 * c) | (hi >> 4) << (2 * c + 1);
            }
        }
    }
}

/// `pshufb` controls on a vector whose 32-bit lane j holds 4 unpacked scales (or minimums) of
/// row j: `TILE_SHUFFLE[s % 4]` puts byte s % 4 of each lane into both of its 16-bit halves
/// (lane j = (x_j,s, x_j,s) as two i16, a `madd` multiplier, as in Q4_K's tile kernel), and
/// `TILE_SHUFFLE[4 + s % 4]` puts it in byte 0 with the rest zero (lane j = x_j,s as an i32,
/// the VNNI kernel's `mullo` multiplier).
#[cfg(target_arch = "x86_64")]
#[repr(align(32))]
struct TileShuffles([[i8; 32]; 8]);

#[cfg(target_arch = "x86_64")]
static TILE_SHUFFLE: TileShuffles = {
    let mut t = [[-128i8; 32]; 8];
    let mut s = 0;
    while s < 4 {
        let mut lane = 0;
        while lane < 8 {
            // pshufb indexes within each 128-bit half: lane % 4 is the lane in its half.
            t[s][4 * lane] = (4 * (lane % 4) + s) as i8;
            t[s][4 * lane + 2] = (4 * (lane % 4) + s) as i8;
            t[4 + s][4 * lane] = (4 * (lane % 4) + s) as i8;
            lane += 1;
        }
        s += 1;
    }
    TileShuffles(t)
};

/// The 5-bit values of sub-block 2c + 1 in a tile's chunk 8c + i, from its `Y` vector and the
/// group's `P[i]` vector: `(Y >> 3) & 0x1C` (bits 2..5 of the value, from Y's bits 5..8) or
/// `(P >> 2c) & 3` (bits 0..2). The 16-bit shifts move at most 6 bits of the upper byte into
/// the lower one, into bits that the masks clear.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_hi(
    y: std::arch::x86_64::__m256i,
    p: std::arch::x86_64::__m256i,
    c: usize,
) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    let p = match c {
        0 => p,
        1 => _mm256_srli_epi16::<2>(p),
        2 => _mm256_srli_epi16::<4>(p),
        _ => _mm256_srli_epi16::<6>(p),
    };
    _mm256_or_si256(
        _mm256_and_si256(_mm256_srli_epi16::<3>(y), _mm256_set1_epi8(0x1C)),
        _mm256_and_si256(p, _mm256_set1_epi8(0x03)),
    )
}

/// [`tile_dot`]'s work on chunk group c of a tile block (chunks 8c..8c + 8: sub-blocks 2c and
/// 2c + 1, scales `s0`, `s1` as (x, x) i16 pairs per lane) for R ≤ 4 activation rows at
/// `qp[r] + x`: each `Y` load serves both sub-blocks; 16-bit sums over 4 chunks at a time.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_pair<const R: usize, const C: usize>(
    blk: *const u8,
    qp: &[*const i8; R],
    x: usize,
    s0: std::arch::x86_64::__m256i,
    s1: std::arch::x86_64::__m256i,
    sumi: &mut [std::arch::x86_64::__m256i; R],
) {
    use std::arch::x86_64::*;
    let low5 = _mm256_set1_epi8(0x1F);
    for h in 0..2 {
        let mut slo = [_mm256_setzero_si256(); R];
        let mut shi = [_mm256_setzero_si256(); R];
        for i in 4 * h..4 * h + 4 {
            let y = _mm256_loadu_si256(blk.add(TILE_Y + 32 * (8 * C + i)) as *const __m256i);
            let p = _mm256_loadu_si256(blk.add(TILE_P + 32 * i) as *const __m256i);
            let lo = _mm256_and_si256(y, low5);
            let hi = tile_hi(y, p, C);
            for r in 0..R {
                let a = qp[r].add(x + 64 * C + 4 * i) as *const i32;
                let alo = _mm256_set1_epi32(a.read_unaligned());
                let ahi = _mm256_set1_epi32(a.add(8).read_unaligned());
                slo[r] = _mm256_add_epi16(slo[r], _mm256_maddubs_epi16(lo, alo));
                shi[r] = _mm256_add_epi16(shi[r], _mm256_maddubs_epi16(hi, ahi));
            }
        }
        for r in 0..R {
            let p = _mm256_add_epi32(_mm256_madd_epi16(slo[r], s0), _mm256_madd_epi16(shi[r], s1));
            sumi[r] = _mm256_add_epi32(sumi[r], p);
        }
    }
}

/// [`tile_dot`]'s work on sub-block S of a tile block (scales `scs`) for R > 4 activation
/// rows, half a sub-block (4 chunks: the most a 16-bit sum may take) at a time: the 4 chunks'
/// values are unpacked into registers, then each row's 4 `maddubs` are summed and scaled in
/// one go, so that only the R i32 sums stay live across rows.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_sub<const R: usize, const S: usize>(
    blk: *const u8,
    qp: &[*const i8; R],
    x: usize,
    scs: std::arch::x86_64::__m256i,
    sumi: &mut [std::arch::x86_64::__m256i; R],
) {
    use std::arch::x86_64::*;
    let c = S / 2;
    for h in 0..2 {
        let w: [__m256i; 4] = std::array::from_fn(|k| {
            let i = 4 * h + k;
            let y = _mm256_loadu_si256(blk.add(TILE_Y + 32 * (8 * c + i)) as *const __m256i);
            if S.is_multiple_of(2) {
                _mm256_and_si256(y, _mm256_set1_epi8(0x1F))
            } else {
                let p = _mm256_loadu_si256(blk.add(TILE_P + 32 * i) as *const __m256i);
                tile_hi(y, p, c)
            }
        });
        for r in 0..R {
            let a = qp[r].add(x + 32 * S + 16 * h) as *const i32;
            let m =
                |k: usize| _mm256_maddubs_epi16(w[k], _mm256_set1_epi32(a.add(k).read_unaligned()));
            let s16 = _mm256_add_epi16(_mm256_add_epi16(m(0), m(1)), _mm256_add_epi16(m(2), m(3)));
            sumi[r] = _mm256_add_epi32(sumi[r], _mm256_madd_epi16(s16, scs));
        }
    }
}

/// The 8 rows of a tile (`a.blocks` tile blocks back to back at `tile`) dotted with activation
/// rows `first..first + R`: lane j of result r = weight row j · activation row first + r.
///
/// Q4_K's tile kernel (see `q4_k::tile_dot`) on 5-bit values: per tile block, shared by the R
/// rows, the 8 rows' d, dmin, scales and minimums are unpacked 8 rows at once (lane j = row j);
/// per chunk of 4 values of the 8 rows and 2 sub-blocks, the values come out of the tile's
/// `Y`/`P` vectors ([`tile_y`]: 1 op for the even sub-block, 5 at most for the odd one), and
/// each `maddubs` against the activation's 4 values broadcast to all lanes serves 8 rows.
///
/// No overflow (exact integer sums, identical to [`dot_reference`]'s): q ∈ 0..=31 and
/// y ∈ −128..=127, so a `maddubs` pair is at most 2·31·128 = 7,936 in magnitude (no
/// saturation), and only 4 chunks are summed in 16-bit lanes (at most 4·7,936 = 31,744 <
/// 32,767; 8 would overflow), so each sub-block takes two `madd`s with its scales (half a
/// sub-block each; test `tile_worst_case_is_exact` builds q = 31, y = −128). A `madd` with
/// sc ≤ 63 gives at most 63·2·31,744 = 3,999,744, and `sumi` over 8 sub-blocks at most
/// 8·63·32·31·128 = 63,995,904 < 2^31 (the reference's i32 bound; its f32 conversion rounds
/// exactly as the reference's does). A bsum is at most 16·128 = 2,048, so a minimums `madd`
/// is at most 2·63·2,048 = 258,048 and `summ` at most 2,064,384 (exact in f32).
///
/// Loop shape: with R ≤ 4 ([`tile_pair`]) a chunk serves sub-blocks 2c and 2c + 1 from one
/// `Y` load, 2R 16-bit sums live; with R = 8 ([`tile_sub`]) half a sub-block's 4 chunks are
/// unpacked into registers and each row's 4 `maddubs` summed and scaled at once, so that the 8
/// i32 sums stay in registers (keeping 8 16-bit sums live instead spilled and cost 1.2x). Each
/// chunk group / sub-block is its own call with a constant c, so that P's shift is an
/// immediate.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; `tile` points at `a.blocks` tile blocks and
/// `first + R <= a.m`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn tile_dot<const R: usize>(
    tile: *const u8,
    a: &Q8KRows,
    first: usize,
) -> [std::arch::x86_64::__m256; R] {
    use std::arch::x86_64::*;
    debug_assert!(first + R <= a.m && a.qs.len() == a.m * a.blocks * QK_K);
    let qp: [*const i8; R] =
        std::array::from_fn(|r| a.qs.as_ptr().add((first + r) * a.blocks * QK_K));
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..a.blocks {
        let blk = tile.add(b * TILE_BLOCK_BYTES);
        let head = TileHead::new(blk);
        let sc = |s: usize| head.scales(s, 0);
        let mut sumi = [_mm256_setzero_si256(); R];
        let x = b * QK_K;
        // Each chunk group / sub-block as its own call with a constant c: the shift of P is
        // then an immediate (a loop over c left the compiler a spilled table of shifted Ps).
        if R <= 4 {
            tile_pair::<R, 0>(blk, &qp, x, sc(0), sc(1), &mut sumi);
            tile_pair::<R, 1>(blk, &qp, x, sc(2), sc(3), &mut sumi);
            tile_pair::<R, 2>(blk, &qp, x, sc(4), sc(5), &mut sumi);
            tile_pair::<R, 3>(blk, &qp, x, sc(6), sc(7), &mut sumi);
        } else {
            tile_sub::<R, 0>(blk, &qp, x, sc(0), &mut sumi);
            tile_sub::<R, 1>(blk, &qp, x, sc(1), &mut sumi);
            tile_sub::<R, 2>(blk, &qp, x, sc(2), &mut sumi);
            tile_sub::<R, 3>(blk, &qp, x, sc(3), &mut sumi);
            tile_sub::<R, 4>(blk, &qp, x, sc(4), &mut sumi);
            tile_sub::<R, 5>(blk, &qp, x, sc(5), &mut sumi);
            tile_sub::<R, 6>(blk, &qp, x, sc(6), &mut sumi);
            tile_sub::<R, 7>(blk, &qp, x, sc(7), &mut sumi);
        }
        head.finish(a, first, b, &sumi, &mut acc);
    }
    acc
}

/// A tile block's d, dmin, scales and minimums for the 8 rows (lane j = row j), unpacked once
/// for all activation rows: [`k_scales::unpack`]'s word arithmetic on 8 rows at once
/// (`sc[0]`/`sc[1]` hold sc[0..4]/sc[4..8] of row j as bytes of lane j, `mn` the same for the
/// minimums).
#[cfg(target_arch = "x86_64")]
struct TileHead {
    d: std::arch::x86_64::__m256,
    dmin: std::arch::x86_64::__m256,
    sc: [std::arch::x86_64::__m256i; 2],
    mn: [std::arch::x86_64::__m256i; 2],
}

#[cfg(target_arch = "x86_64")]
impl TileHead {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn new(blk: *const u8) -> Self {
        use std::arch::x86_64::*;
        let d = _mm256_cvtph_ps(_mm_loadu_si128(blk as *const __m128i));
        let dmin = _mm256_cvtph_ps(_mm_loadu_si128(blk.add(16) as *const __m128i));
        let w0 = _mm256_loadu_si256(blk.add(32) as *const __m256i);
        let w1 = _mm256_loadu_si256(blk.add(64) as *const __m256i);
        let w2 = _mm256_loadu_si256(blk.add(96) as *const __m256i);
        let low = _mm256_set1_epi8(0x0F);
        let low6 = _mm256_set1_epi8(0x3F);
        let low2 = _mm256_set1_epi8(0x03);
        let sc_hi = _mm256_or_si256(
            _mm256_and_si256(w2, low),
            _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<6>(w0), low2)),
        );
        let m_hi = _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16::<4>(w2), low),
            _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<6>(w1), low2)),
        );
        TileHead {
            d,
            dmin,
            sc: [_mm256_and_si256(w0, low6), sc_hi],
            mn: [_mm256_and_si256(w1, low6), m_hi],
        }
    }

    /// Sub-block s's scales of the 8 rows: as (x, x) i16 pairs in lane j (`kind` 0), or as
    /// i32 (`kind` 4).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn scales(&self, s: usize, kind: usize) -> std::arch::x86_64::__m256i {
        use std::arch::x86_64::*;
        let ctrl = _mm256_load_si256(TILE_SHUFFLE.0[kind + s % 4].as_ptr() as *const __m256i);
        _mm256_shuffle_epi8(self.sc[s / 4], ctrl)
    }

    /// The minimums term and the float step for activation rows first..first + R, block b:
    /// summ = Σ_s m_j,s · (bsums[2s] + bsums[2s + 1]) (8 `madd`s of (m, m) pairs with the
    /// bsum pair broadcast), then `acc += d·d_a·sumi − dmin·d_a·summ`, 8 rows per lane.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn finish<const R: usize>(
        &self,
        a: &Q8KRows,
        first: usize,
        b: usize,
        sumi: &[std::arch::x86_64::__m256i; R],
        acc: &mut [std::arch::x86_64::__m256; R],
    ) {
        use std::arch::x86_64::*;
        let nb = a.blocks;
        let mut summ = [_mm256_setzero_si256(); R];
        for s in 0..8 {
            let ctrl = _mm256_load_si256(TILE_SHUFFLE.0[s % 4].as_ptr() as *const __m256i);
            let ms = _mm256_shuffle_epi8(self.mn[s / 4], ctrl);
            for r in 0..R {
                let bp = a.bsums.as_ptr().add(((first + r) * nb + b) * 16 + 2 * s);
                let p =
                    _mm256_madd_epi16(ms, _mm256_set1_epi32((bp as *const i32).read_unaligned()));
                summ[r] = _mm256_add_epi32(summ[r], p);
            }
        }
        for r in 0..R {
            let da = _mm256_broadcast_ss(&*a.d.as_ptr().add(b * a.m + first + r));
            acc[r] = _mm256_fmadd_ps(
                _mm256_cvtepi32_ps(sumi[r]),
                _mm256_mul_ps(self.d, da),
                acc[r],
            );
            acc[r] = _mm256_fnmadd_ps(
                _mm256_cvtepi32_ps(summ[r]),
                _mm256_mul_ps(self.dmin, da),
                acc[r],
            );
        }
    }
}

/// [`tile_dot`] with AVX-VNNI: `vpdpbusd` (u8 × i8, 4 products summed into an i32 lane) takes
/// the place of `maddubs` + a 16-bit add, so a sub-block's 8 chunks sum in i32 with no 16-bit
/// bound; the scale is then applied by one `mullo` per sub-block and row. R ≤ 4 serves a
/// chunk group's two sub-blocks from one load, R = 8 one sub-block at a time (as [`tile_dot`]).
///
/// No overflow: a sub-block's lane sum is at most 32·31·128 = 126,976, times sc ≤ 63 at most
/// 7,999,488; `sumi` at most 8 times that (63,995,904 < 2^31, the reference's bound). The
/// minimums and the float step are [`tile_dot`]'s.
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C and AVX-VNNI; `tile` points at `a.blocks` tile blocks
/// and `first + R <= a.m`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
pub unsafe fn tile_dot_vnni<const R: usize>(
    tile: *const u8,
    a: &Q8KRows,
    first: usize,
) -> [std::arch::x86_64::__m256; R] {
    use std::arch::x86_64::*;
    debug_assert!(first + R <= a.m && a.qs.len() == a.m * a.blocks * QK_K);
    let qp: [*const i8; R] =
        std::array::from_fn(|r| a.qs.as_ptr().add((first + r) * a.blocks * QK_K));
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..a.blocks {
        let blk = tile.add(b * TILE_BLOCK_BYTES);
        let head = TileHead::new(blk);
        let sc = |s: usize| head.scales(s, 4);
        let mut sumi = [_mm256_setzero_si256(); R];
        let x = b * QK_K;
        if R <= 4 {
            vnni_pair::<R, 0>(blk, &qp, x, sc(0), sc(1), &mut sumi);
            vnni_pair::<R, 1>(blk, &qp, x, sc(2), sc(3), &mut sumi);
            vnni_pair::<R, 2>(blk, &qp, x, sc(4), sc(5), &mut sumi);
            vnni_pair::<R, 3>(blk, &qp, x, sc(6), sc(7), &mut sumi);
        } else {
            vnni_sub::<R, 0>(blk, &qp, x, sc(0), &mut sumi);
            vnni_sub::<R, 1>(blk, &qp, x, sc(1), &mut sumi);
            vnni_sub::<R, 2>(blk, &qp, x, sc(2), &mut sumi);
            vnni_sub::<R, 3>(blk, &qp, x, sc(3), &mut sumi);
            vnni_sub::<R, 4>(blk, &qp, x, sc(4), &mut sumi);
            vnni_sub::<R, 5>(blk, &qp, x, sc(5), &mut sumi);
            vnni_sub::<R, 6>(blk, &qp, x, sc(6), &mut sumi);
            vnni_sub::<R, 7>(blk, &qp, x, sc(7), &mut sumi);
        }
        head.finish(a, first, b, &sumi, &mut acc);
    }
    acc
}

/// [`tile_pair`] with `vpdpbusd`: i32 sums over the group's 8 chunks, scales as i32.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
unsafe fn vnni_pair<const R: usize, const C: usize>(
    blk: *const u8,
    qp: &[*const i8; R],
    x: usize,
    s0: std::arch::x86_64::__m256i,
    s1: std::arch::x86_64::__m256i,
    sumi: &mut [std::arch::x86_64::__m256i; R],
) {
    use std::arch::x86_64::*;
    let low5 = _mm256_set1_epi8(0x1F);
    let mut slo = [_mm256_setzero_si256(); R];
    let mut shi = [_mm256_setzero_si256(); R];
    for i in 0..8 {
        let y = _mm256_loadu_si256(blk.add(TILE_Y + 32 * (8 * C + i)) as *const __m256i);
        let p = _mm256_loadu_si256(blk.add(TILE_P + 32 * i) as *const __m256i);
        let lo = _mm256_and_si256(y, low5);
        let hi = tile_hi(y, p, C);
        for r in 0..R {
            let a = qp[r].add(x + 64 * C + 4 * i) as *const i32;
            let alo = _mm256_set1_epi32(a.read_unaligned());
            let ahi = _mm256_set1_epi32(a.add(8).read_unaligned());
            slo[r] = _mm256_dpbusd_avx_epi32(slo[r], lo, alo);
            shi[r] = _mm256_dpbusd_avx_epi32(shi[r], hi, ahi);
        }
    }
    for r in 0..R {
        let p = _mm256_add_epi32(
            _mm256_mullo_epi32(slo[r], s0),
            _mm256_mullo_epi32(shi[r], s1),
        );
        sumi[r] = _mm256_add_epi32(sumi[r], p);
    }
}

/// [`tile_sub`] with `vpdpbusd`.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
unsafe fn vnni_sub<const R: usize, const S: usize>(
    blk: *const u8,
    qp: &[*const i8; R],
    x: usize,
    scs: std::arch::x86_64::__m256i,
    sumi: &mut [std::arch::x86_64::__m256i; R],
) {
    use std::arch::x86_64::*;
    let c = S / 2;
    let mut s32 = [_mm256_setzero_si256(); R];
    for i in 0..8 {
        let y = _mm256_loadu_si256(blk.add(TILE_Y + 32 * (8 * c + i)) as *const __m256i);
        let w = if S.is_multiple_of(2) {
            _mm256_and_si256(y, _mm256_set1_epi8(0x1F))
        } else {
            let p = _mm256_loadu_si256(blk.add(TILE_P + 32 * i) as *const __m256i);
            tile_hi(y, p, c)
        };
        for r in 0..R {
            let a = qp[r].add(x + 32 * S + 4 * i) as *const i32;
            s32[r] = _mm256_dpbusd_avx_epi32(s32[r], w, _mm256_set1_epi32(a.read_unaligned()));
        }
    }
    for r in 0..R {
        sumi[r] = _mm256_add_epi32(sumi[r], _mm256_mullo_epi32(s32[r], scs));
    }
}

/// Two tile blocks' 32-byte vectors at byte `off`: tile t0's in the low 256 bits, t1's in the
/// high (one load and one `vinserti64x4` with a memory operand).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn load2(t0: *const u8, t1: *const u8, off: usize) -> std::arch::x86_64::__m512i {
    use std::arch::x86_64::*;
    let lo = _mm256_loadu_si256(t0.add(off) as *const __m256i);
    let hi = _mm256_loadu_si256(t1.add(off) as *const __m256i);
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
}

/// [`tile_hi`] on two tiles' vectors at once (the same ops, 512 bits wide).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn tile_hi512<const C: usize>(
    y: std::arch::x86_64::__m512i,
    p: std::arch::x86_64::__m512i,
) -> std::arch::x86_64::__m512i {
    use std::arch::x86_64::*;
    let p = match C {
        0 => p,
        1 => _mm512_srli_epi16::<2>(p),
        2 => _mm512_srli_epi16::<4>(p),
        _ => _mm512_srli_epi16::<6>(p),
    };
    _mm512_or_si512(
        _mm512_and_si512(_mm512_srli_epi16::<3>(y), _mm512_set1_epi8(0x1C)),
        _mm512_and_si512(p, _mm512_set1_epi8(0x03)),
    )
}

/// [`TileHead`] of two tile blocks (lanes 0..8 from t0, 8..16 from t1): the same unpacking
/// ops, 512 bits wide.
#[cfg(target_arch = "x86_64")]
struct TileHead2 {
    d: std::arch::x86_64::__m512,
    dmin: std::arch::x86_64::__m512,
    sc: [std::arch::x86_64::__m512i; 2],
    mn: [std::arch::x86_64::__m512i; 2],
}

#[cfg(target_arch = "x86_64")]
impl TileHead2 {
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn new(b0: *const u8, b1: *const u8) -> Self {
        use std::arch::x86_64::*;
        let h = |off: usize| {
            let lo = _mm_loadu_si128(b0.add(off) as *const __m128i);
            let hi = _mm_loadu_si128(b1.add(off) as *const __m128i);
            _mm512_cvtph_ps(_mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi))
        };
        let (w0, w1, w2) = (load2(b0, b1, 32), load2(b0, b1, 64), load2(b0, b1, 96));
        let low = _mm512_set1_epi8(0x0F);
        let low6 = _mm512_set1_epi8(0x3F);
        let low2 = _mm512_set1_epi8(0x03);
        let sc_hi = _mm512_or_si512(
            _mm512_and_si512(w2, low),
            _mm512_slli_epi16::<4>(_mm512_and_si512(_mm512_srli_epi16::<6>(w0), low2)),
        );
        let m_hi = _mm512_or_si512(
            _mm512_and_si512(_mm512_srli_epi16::<4>(w2), low),
            _mm512_slli_epi16::<4>(_mm512_and_si512(_mm512_srli_epi16::<6>(w1), low2)),
        );
        TileHead2 {
            d: h(0),
            dmin: h(16),
            sc: [_mm512_and_si512(w0, low6), sc_hi],
            mn: [_mm512_and_si512(w1, low6), m_hi],
        }
    }

    /// `TILE_SHUFFLE[i]` in both 256-bit halves (pshufb works per 128-bit lane, so the same
    /// control serves both tiles).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn ctrl(i: usize) -> std::arch::x86_64::__m512i {
        use std::arch::x86_64::*;
        _mm512_broadcast_i64x4(_mm256_load_si256(
            TILE_SHUFFLE.0[i].as_ptr() as *const __m256i
        ))
    }

    /// Sub-block s's scales of the 16 rows as i32 (the `mullo` multiplier).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn scales(&self, s: usize) -> std::arch::x86_64::__m512i {
        use std::arch::x86_64::*;
        _mm512_shuffle_epi8(self.sc[s / 4], Self::ctrl(4 + s % 4))
    }

    /// [`TileHead::finish`] for 16 rows: the same integer minimums term and the same float
    /// ops in the same order per lane, so each lane equals `tile_dot`'s bit for bit.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn finish<const R: usize>(
        &self,
        a: &Q8KRows,
        first: usize,
        b: usize,
        sumi: &[std::arch::x86_64::__m512i; R],
        acc: &mut [std::arch::x86_64::__m512; R],
    ) {
        use std::arch::x86_64::*;
        let nb = a.blocks;
        let mut summ = [_mm512_setzero_si512(); R];
        for s in 0..8 {
            let ms = _mm512_shuffle_epi8(self.mn[s / 4], Self::ctrl(s % 4));
            for r in 0..R {
                let bp = a.bsums.as_ptr().add(((first + r) * nb + b) * 16 + 2 * s);
                let p =
                    _mm512_madd_epi16(ms, _mm512_set1_epi32((bp as *const i32).read_unaligned()));
                summ[r] = _mm512_add_epi32(summ[r], p);
            }
        }
        for r in 0..R {
            let da = _mm512_set1_ps(*a.d.as_ptr().add(b * a.m + first + r));
            acc[r] = _mm512_fmadd_ps(
                _mm512_cvtepi32_ps(sumi[r]),
                _mm512_mul_ps(self.d, da),
                acc[r],
            );
            acc[r] = _mm512_fnmadd_ps(
                _mm512_cvtepi32_ps(summ[r]),
                _mm512_mul_ps(self.dmin, da),
                acc[r],
            );
        }
    }
}

/// Two consecutive tiles (each k/256 tile blocks back to back, `t0` and `t1` = t0 + tile
/// bytes) against activation rows first..first+R: lane j (0..16) of result r = weight row j of
/// the pair (0..8 from t0, 8..16 from t1) . activation row first + r.
///
/// [`tile_dot_vnni`] 512 bits wide: a zmm register holds the same 32-byte `Y` (or `P`) vector
/// of both tiles ([`load2`]), so the unpacking, each activation broadcast
/// (`_mm512_set1_epi32`, 4 values to all 16 lanes) and each `vpdpbusd` serve 16 weight rows
/// instead of 8. The activation broadcasts fold into `vpdpbusd`'s memory operand
/// (`{1to16}`). With 32 vector registers every R up to 8 serves a chunk group's two sub-blocks
/// from one `Y` load ([`vnni2_pair`]: 3R i32 sums live, 24 at R = 8, no spills); the
/// sub-block-at-a-time shape that 16 ymm registers force on `tile_dot_vnni::<8>` measured ~3%
/// slower here.
///
/// The integer sums are [`tile_dot`]'s exactly (same bounds as [`tile_dot_vnni`]: a sub-block's
/// lane at most 32·31·128 = 126,976, times sc ≤ 63 at most 7,999,488, `sumi` ≤ 63,995,904 <
/// 2^31; `summ` ≤ 2,064,384), and the float step is [`TileHead::finish`]'s per lane in the same
/// order, so lanes 0..8 are `tile_dot(t0)`'s and lanes 8..16 `tile_dot(t1)`'s bit for bit.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; `t0` and `t1` each point at
/// `a.blocks` tile blocks and `first + R <= a.m`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub unsafe fn tile2_dot_512<const R: usize>(
    t0: *const u8,
    t1: *const u8,
    a: &Q8KRows,
    first: usize,
) -> [std::arch::x86_64::__m512; R] {
    use std::arch::x86_64::*;
    debug_assert!(first + R <= a.m && a.qs.len() == a.m * a.blocks * QK_K);
    let qp: [*const i8; R] =
        std::array::from_fn(|r| a.qs.as_ptr().add((first + r) * a.blocks * QK_K));
    let mut acc = [_mm512_setzero_ps(); R];
    for b in 0..a.blocks {
        let b0 = t0.add(b * TILE_BLOCK_BYTES);
        let b1 = t1.add(b * TILE_BLOCK_BYTES);
        let head = TileHead2::new(b0, b1);
        let sc = |s: usize| head.scales(s);
        let mut sumi = [_mm512_setzero_si512(); R];
        let x = b * QK_K;
        vnni2_pair::<R, 0>(b0, b1, &qp, x, sc(0), sc(1), &mut sumi);
        vnni2_pair::<R, 1>(b0, b1, &qp, x, sc(2), sc(3), &mut sumi);
        vnni2_pair::<R, 2>(b0, b1, &qp, x, sc(4), sc(5), &mut sumi);
        vnni2_pair::<R, 3>(b0, b1, &qp, x, sc(6), sc(7), &mut sumi);
        head.finish(a, first, b, &sumi, &mut acc);
    }
    acc
}

/// [`vnni_pair`] on two tiles: i32 sums over chunk group C's 8 chunks for both sub-blocks.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn vnni2_pair<const R: usize, const C: usize>(
    b0: *const u8,
    b1: *const u8,
    qp: &[*const i8; R],
    x: usize,
    s0: std::arch::x86_64::__m512i,
    s1: std::arch::x86_64::__m512i,
    sumi: &mut [std::arch::x86_64::__m512i; R],
) {
    use std::arch::x86_64::*;
    let low5 = _mm512_set1_epi8(0x1F);
    let mut slo = [_mm512_setzero_si512(); R];
    let mut shi = [_mm512_setzero_si512(); R];
    for i in 0..8 {
        let y = load2(b0, b1, TILE_Y + 32 * (8 * C + i));
        let p = load2(b0, b1, TILE_P + 32 * i);
        let lo = _mm512_and_si512(y, low5);
        let hi = tile_hi512::<C>(y, p);
        for r in 0..R {
            let a = qp[r].add(x + 64 * C + 4 * i) as *const i32;
            let alo = _mm512_set1_epi32(a.read_unaligned());
            let ahi = _mm512_set1_epi32(a.add(8).read_unaligned());
            slo[r] = _mm512_dpbusd_epi32(slo[r], lo, alo);
            shi[r] = _mm512_dpbusd_epi32(shi[r], hi, ahi);
        }
    }
    for r in 0..R {
        let p = _mm512_add_epi32(
            _mm512_mullo_epi32(slo[r], s0),
            _mm512_mullo_epi32(shi[r], s1),
        );
        sumi[r] = _mm512_add_epi32(sumi[r], p);
    }
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

    /// Tiles 8 rows (each `rb` bytes, GGUF layout) of `w` from row `t·8`: k / 256 tile blocks.
    fn tile_rows(w: &[u8], rb: usize, t: usize) -> Vec<u8> {
        let nb = rb / BLOCK_BYTES;
        let mut out = vec![0u8; nb * TILE_BLOCK_BYTES];
        for b in 0..nb {
            let rows: [&[u8]; 8] =
                std::array::from_fn(|j| &w[(8 * t + j) * rb + b * BLOCK_BYTES..][..BLOCK_BYTES]);
            tile_block(rows, &mut out[b * TILE_BLOCK_BYTES..][..TILE_BLOCK_BYTES]);
        }
        out
    }

    /// `untile_block` inverts `tile_block` on random blocks (every byte position takes every
    /// value, d and dmin included), and the tile holds each value where the kernel reads it:
    /// sub-block 2c of chunk 8c + i in `Y & 0x1F`, sub-block 2c + 1 in
    /// `(Y >> 5) << 2 | (P >> 2c) & 3`.
    #[test]
    fn untile_inverts_tile() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(31);
        // 1,200 rounds of 8 blocks: every byte value at every position (600 miss a few).
        let mut seen = [[false; 256]; BLOCK_BYTES];
        for round in 0..1200 {
            let mut blocks = if round % 2 == 0 {
                testing::random_blocks(&mut rng, &Q5K, 8, round)
            } else {
                let mut v = vec![0u8; 8 * BLOCK_BYTES];
                rng.fill(&mut v[..]);
                v
            };
            if round == 1 {
                blocks.fill(0xFF);
            }
            if round == 3 {
                blocks.fill(0);
            }
            for blk in blocks.chunks_exact(BLOCK_BYTES) {
                for (i, &v) in blk.iter().enumerate() {
                    seen[i][v as usize] = true;
                }
            }
            let rows: [&[u8]; 8] =
                std::array::from_fn(|j| &blocks[j * BLOCK_BYTES..][..BLOCK_BYTES]);
            let mut tile = vec![0xA5u8; TILE_BLOCK_BYTES];
            tile_block(rows, &mut tile);
            for j in 0..8 {
                let mut back = [0u8; BLOCK_BYTES];
                untile_block(&tile, j, &mut back);
                assert_eq!(&back[..], rows[j], "round {round} row {j}");
                for c in 0..4 {
                    for l in 0..32 {
                        let (i, p) = (l / 4, l % 4);
                        let y = tile[tile_y(8 * c + i, j, p)];
                        let hi = (y >> 5) << 2 | (tile[tile_p(i, j, p)] >> (2 * c)) & 3;
                        assert_eq!(y & 0x1F, quant(rows[j], 2 * c, l));
                        assert_eq!(hi, quant(rows[j], 2 * c + 1, l));
                    }
                }
            }
        }
        assert!(seen.iter().flatten().all(|&s| s));
    }

    #[cfg(target_arch = "x86_64")]
    /// `tile_dot::<R>` or (vnni) `tile_dot_vnni::<R>`, lanes as arrays.
    #[cfg(target_arch = "x86_64")]
    unsafe fn kernel(
        vnni: bool,
        r: usize,
        tile: *const u8,
        a: &Q8KRows,
        first: usize,
    ) -> Vec<[f32; 8]> {
        use std::arch::x86_64::__m256;
        let v: Vec<__m256> = if vnni {
            match r {
                1 => tile_dot_vnni::<1>(tile, a, first).to_vec(),
                2 => tile_dot_vnni::<2>(tile, a, first).to_vec(),
                3 => tile_dot_vnni::<3>(tile, a, first).to_vec(),
                4 => tile_dot_vnni::<4>(tile, a, first).to_vec(),
                8 => tile_dot_vnni::<8>(tile, a, first).to_vec(),
                _ => unreachable!(),
            }
        } else {
            match r {
                1 => tile_dot::<1>(tile, a, first).to_vec(),
                2 => tile_dot::<2>(tile, a, first).to_vec(),
                3 => tile_dot::<3>(tile, a, first).to_vec(),
                4 => tile_dot::<4>(tile, a, first).to_vec(),
                8 => tile_dot::<8>(tile, a, first).to_vec(),
                _ => unreachable!(),
            }
        };
        v.into_iter()
            .map(|x| std::mem::transmute::<__m256, [f32; 8]>(x))
            .collect()
    }

    /// The kernels to check: `tile_dot`, and `tile_dot_vnni` where the CPU has AVX-VNNI.
    fn kinds() -> Vec<bool> {
        if is_x86_feature_detected!("avxvnni") {
            vec![false, true]
        } else {
            eprintln!("no AVX-VNNI: tile_dot_vnni not tested");
            vec![false]
        }
    }

    fn has_avx2() -> bool {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    }

    /// Σ|terms| of the formula both kernels evaluate (per value (|d·sc·q| + |dmin·m|)·|d_a·y|;
    /// see q4_k's tests for why not Σ|w·a|).
    fn magnitude(row: &[u8], a: &Q8KRows, r: usize) -> f64 {
        let x = a.dequantize_row(r);
        let mut mag = 0f64;
        for (blk, xs) in row.chunks_exact(BLOCK_BYTES).zip(x.chunks_exact(QK_K)) {
            let (d, dmin) = (f16_at(blk, 0) as f64, f16_at(blk, 2) as f64);
            let (sc, mn) = k_scales::unpack_arrays(blk[4..16].try_into().unwrap());
            for (i, &x) in xs.iter().enumerate() {
                let s = i / 32;
                let q = quant(blk, s, i % 32);
                let w = (d * sc[s] as f64 * q as f64).abs() + (dmin * mn[s] as f64).abs();
                mag += w * (x as f64).abs();
            }
        }
        mag
    }

    /// `tile_dot::<R>` lane j of result r equals `dot_reference(row j, a, first + r)` within
    /// 1e-5 of Σ|terms|, for every R, every `first` (m = 11 > 8), k of 1, 2, 3, 5, 8 blocks, on
    /// `random_blocks` (every scale and minimum of every sub-block takes all 64 values; all-0x00
    /// and all-0xFF quants and high bits; scales all 63 / all 0) and `random_activations`
    /// (zeros, an all-zero block, an all-zero row, large magnitudes).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn tile_dot_matches_reference() {
        use rand::SeedableRng;
        if !has_avx2() {
            eprintln!("no AVX2 + FMA + F16C: skipped");
            return;
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(32);
        let m = 11;
        for nbk in [1, 2, 3, 5, 8] {
            let tiles = 2048usize.div_ceil(8 * nbk);
            let k = nbk * QK_K;
            let rb = nbk * BLOCK_BYTES;
            let w = testing::random_blocks(&mut rng, &Q5K, 8 * tiles * nbk, nbk);
            let mut seen = [[[false; 64]; 8]; 2];
            for blk in w.chunks_exact(BLOCK_BYTES) {
                let (sc, mn) = k_scales::unpack_arrays(blk[4..16].try_into().unwrap());
                for s in 0..8 {
                    seen[0][s][sc[s] as usize] = true;
                    seen[1][s][mn[s] as usize] = true;
                }
            }
            assert!(
                seen.iter().flatten().flatten().all(|&x| x),
                "k={k}: scale coverage"
            );
            let a = testing::random_activations(&mut rng, m, k);
            for t in 0..tiles {
                let tile = tile_rows(&w, rb, t);
                let want: Vec<Vec<(f32, f64)>> = (0..8)
                    .map(|j| {
                        let row = &w[(8 * t + j) * rb..][..rb];
                        (0..m)
                            .map(|r| (dot_reference(row, &a, r), magnitude(row, &a, r)))
                            .collect()
                    })
                    .collect();
                for (vnni, rr) in kinds()
                    .into_iter()
                    .flat_map(|v| [1, 2, 3, 4, 8].map(|r| (v, r)))
                {
                    for first in 0..=m - rr {
                        let got = unsafe { kernel(vnni, rr, tile.as_ptr(), &a, first) };
                        assert_eq!(got.len(), rr);
                        for (i, lanes) in got.iter().enumerate() {
                            for j in 0..8 {
                                let (want, mag) = want[j][first + i];
                                let g = lanes[j];
                                assert!(
                                    (g as f64 - want as f64).abs() <= 1e-5 * mag,
                                    "k={k} tile {t} row {j} R={rr} vnni={vnni} first={first} act {}: {g} vs {want}",
                                    first + i
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// Worst case of the 16-bit sums: all weight bytes 0xFF (q = 31, sc = m = 63, d = dmin = 1)
    /// against activations of −128 (Q8_K's clamp allows it), 127, and alternating, in every
    /// R; the result must be the exact integer (in i64) to f32 rounding. Also the instruction
    /// level: 4 chunks' `maddubs(31, −128)` summed in i16 give exactly −31,744 (and 8 would
    /// saturate, which is why the kernel sums only 4).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn tile_worst_case_is_exact() {
        use half::f16;
        if !has_avx2() {
            eprintln!("no AVX2 + FMA + F16C: skipped");
            return;
        }
        unsafe {
            use std::arch::x86_64::*;
            for y in [-128i8, 127] {
                let mut s = _mm256_setzero_si256();
                for _ in 0..4 {
                    let p = _mm256_maddubs_epi16(_mm256_set1_epi8(31), _mm256_set1_epi8(y));
                    s = _mm256_add_epi16(s, p);
                }
                let want = 4 * 2 * 31 * y as i32;
                assert!(want.abs() <= i16::MAX as i32);
                let lanes = std::mem::transmute::<__m256i, [i16; 16]>(s);
                assert!(
                    lanes.iter().all(|&v| v as i32 == want),
                    "{lanes:?} vs {want}"
                );
                let sc = _mm256_madd_epi16(s, _mm256_set1_epi16(63));
                let lanes = std::mem::transmute::<__m256i, [i32; 8]>(sc);
                assert!(lanes.iter().all(|&v| v == 2 * 63 * want));
            }
            assert!(8 * 2 * 31 * 128 > i16::MAX as i32);
        }
        let nb = 5;
        let one = f16::from_f32(1.0).to_le_bytes();
        let mut rows = vec![0xFFu8; 8 * nb * BLOCK_BYTES];
        for blk in rows.chunks_exact_mut(BLOCK_BYTES) {
            blk[0..2].copy_from_slice(&one);
            blk[2..4].copy_from_slice(&one);
        }
        let rb = nb * BLOCK_BYTES;
        let tile = tile_rows(&rows, rb, 0);
        let patterns: [fn(usize) -> i8; 3] =
            [|_| -128, |_| 127, |i| if i % 2 == 0 { -128 } else { 127 }];
        let (m, k) = (8, nb * QK_K);
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
        for (vnni, rr) in kinds()
            .into_iter()
            .flat_map(|v| [1, 2, 3, 4, 8].map(|r| (v, r)))
        {
            for first in 0..=m - rr {
                let got = unsafe { kernel(vnni, rr, tile.as_ptr(), &a, first) };
                for (i, lanes) in got.iter().enumerate() {
                    let r = first + i;
                    let exact: i64 = a
                        .row_qs(r)
                        .iter()
                        .map(|&y| 63 * 31 * y as i64 - 63 * y as i64)
                        .sum();
                    for j in 0..8 {
                        let g = lanes[j] as f64;
                        assert!(
                            (g - exact as f64).abs() <= 1e-6 * exact.abs() as f64,
                            "R={rr} vnni={vnni} act {r} row {j}: {g} vs {exact}"
                        );
                    }
                }
            }
        }
    }

    fn has_512() -> bool {
        has_avx2()
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni")
    }

    /// `tile2_dot_512::<R>`, lanes as arrays.
    #[cfg(target_arch = "x86_64")]
    unsafe fn kernel2(
        r: usize,
        t0: *const u8,
        t1: *const u8,
        a: &Q8KRows,
        first: usize,
    ) -> Vec<[f32; 16]> {
        use std::arch::x86_64::__m512;
        let v: Vec<__m512> = match r {
            1 => tile2_dot_512::<1>(t0, t1, a, first).to_vec(),
            2 => tile2_dot_512::<2>(t0, t1, a, first).to_vec(),
            3 => tile2_dot_512::<3>(t0, t1, a, first).to_vec(),
            4 => tile2_dot_512::<4>(t0, t1, a, first).to_vec(),
            8 => tile2_dot_512::<8>(t0, t1, a, first).to_vec(),
            _ => unreachable!(),
        };
        v.into_iter()
            .map(|x| std::mem::transmute::<__m512, [f32; 16]>(x))
            .collect()
    }

    /// `tile2_dot_512` lanes 0..8 / 8..16 against `tile_dot` of t0 / t1, bit for bit (same
    /// integer sums, same float ops per lane in the same order).
    #[cfg(target_arch = "x86_64")]
    fn check_pair(t0: &[u8], t1: &[u8], a: &Q8KRows, what: &str) {
        for rr in [1, 2, 3, 4, 8] {
            for first in 0..=a.m - rr {
                let got = unsafe { kernel2(rr, t0.as_ptr(), t1.as_ptr(), a, first) };
                let w0 = unsafe { kernel(false, rr, t0.as_ptr(), a, first) };
                let w1 = unsafe { kernel(false, rr, t1.as_ptr(), a, first) };
                assert_eq!(got.len(), rr);
                for i in 0..rr {
                    for j in 0..16 {
                        let want = if j < 8 { w0[i][j] } else { w1[i][j - 8] };
                        assert_eq!(
                            got[i][j].to_bits(),
                            want.to_bits(),
                            "{what} R={rr} first={first} act {} lane {j}: {} vs {want}",
                            first + i,
                            got[i][j]
                        );
                    }
                }
            }
        }
    }

    /// `tile2_dot_512::<R>` equals `tile_dot::<R>` on each tile of the pair, bit for bit, for
    /// R in {1, 2, 3, 4, 8}, every `first` (m = 11), k of 1, 2, 3, 5, 8 blocks, on the field
    /// coverage of `tile_dot_matches_reference` (every scale and minimum value, all-0x00 and
    /// all-0xFF quants, zero / large activations); `tile_dot` itself is held to
    /// `dot_reference` there.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn tile2_dot_512_matches_tile_dot() {
        use rand::SeedableRng;
        if !has_512() {
            eprintln!("no AVX-512 F/BW/VL/VNNI: tile2_dot_512 not tested");
            return;
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(33);
        let m = 11;
        for nbk in [1, 2, 3, 5, 8] {
            let tiles = 2 * 2048usize.div_ceil(16 * nbk);
            let k = nbk * QK_K;
            let rb = nbk * BLOCK_BYTES;
            let w = testing::random_blocks(&mut rng, &Q5K, 8 * tiles * nbk, nbk);
            let mut seen = [[[false; 64]; 8]; 2];
            for blk in w.chunks_exact(BLOCK_BYTES) {
                let (sc, mn) = k_scales::unpack_arrays(blk[4..16].try_into().unwrap());
                for s in 0..8 {
                    seen[0][s][sc[s] as usize] = true;
                    seen[1][s][mn[s] as usize] = true;
                }
            }
            assert!(
                seen.iter().flatten().flatten().all(|&x| x),
                "k={k}: scale coverage"
            );
            let a = testing::random_activations(&mut rng, m, k);
            let tiled: Vec<u8> = (0..tiles).flat_map(|t| tile_rows(&w, rb, t)).collect();
            let tb = nbk * TILE_BLOCK_BYTES;
            for p in 0..tiles / 2 {
                let pair = &tiled[2 * p * tb..][..2 * tb];
                check_pair(&pair[..tb], &pair[tb..], &a, &format!("k={k} pair {p}"));
            }
        }
    }

    /// The worst case of `tile_worst_case_is_exact` (q = 31, sc = m = 63, d = dmin = 1, against
    /// −128, 127 and alternating activations) in both tiles of a pair, and against a pair
    /// whose other tile is all zero (lane order): exact integer results, equal to `tile_dot`.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn tile2_worst_case_is_exact() {
        use half::f16;
        if !has_512() {
            eprintln!("no AVX-512 F/BW/VL/VNNI: tile2_dot_512 not tested");
            return;
        }
        let nb = 5;
        let one = f16::from_f32(1.0).to_le_bytes();
        let mut rows = vec![0xFFu8; 8 * nb * BLOCK_BYTES];
        for blk in rows.chunks_exact_mut(BLOCK_BYTES) {
            blk[0..2].copy_from_slice(&one);
            blk[2..4].copy_from_slice(&one);
        }
        let rb = nb * BLOCK_BYTES;
        let full = tile_rows(&rows, rb, 0);
        let zero = tile_rows(&vec![0u8; 8 * rb], rb, 0);
        let patterns: [fn(usize) -> i8; 3] =
            [|_| -128, |_| 127, |i| if i % 2 == 0 { -128 } else { 127 }];
        let (m, k) = (9, nb * QK_K);
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
        for (t0, t1) in [(&full, &full), (&full, &zero), (&zero, &full)] {
            check_pair(t0, t1, &a, "worst case");
            for rr in [1, 2, 3, 4, 8] {
                for first in 0..=m - rr {
                    let got = unsafe { kernel2(rr, t0.as_ptr(), t1.as_ptr(), &a, first) };
                    for (i, lanes) in got.iter().enumerate() {
                        let r = first + i;
                        let exact: i64 = a
                            .row_qs(r)
                            .iter()
                            .map(|&y| 63 * 31 * y as i64 - 63 * y as i64)
                            .sum();
                        for j in 0..16 {
                            let tile = if j < 8 { t0 } else { t1 };
                            let want = if std::ptr::eq(tile, &zero) {
                                0.0
                            } else {
                                exact as f64
                            };
                            let g = lanes[j] as f64;
                            assert!(
                                (g - want).abs() <= 1e-6 * want.abs(),
                                "R={rr} act {r} lane {j}: {g} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
