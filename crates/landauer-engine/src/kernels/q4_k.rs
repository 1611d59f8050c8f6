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

/// Bytes of one tile block: the 8 rows' blocks, reordered, nothing added (8 · 144).
pub const TILE_BLOCK_BYTES: usize = 8 * BLOCK_BYTES;

/// Where the bytes of row j's block go in a tile block: `copy(from, to, len)` for each run,
/// `from` in the row's GGUF block, `to` in the tile block.
///
/// Tile block layout (1,152 bytes, the same bytes as the 8 GGUF blocks, moved):
/// - 0..16: the 8 rows' f16 `d`; 16..32: their f16 `dmin` (row j at 2j);
/// - 32..128: the packed 6-bit scales and minimums as three 32-byte vectors, vector w holding
///   bytes 4 + 4w..8 + 4w (word w) of row j's 12-byte field in 32-bit lane j, so that
///   [`k_scales::unpack`]'s word arithmetic runs on all 8 rows at once;
/// - 128..1152: 32 chunks of 32 bytes; chunk t holds nibble bytes 4t..4t + 4 of row j in
///   lane j. A nibble byte l of GGUF chunk c = t / 8 holds value 64c + l (low nibble,
///   sub-block 2c) and 64c + 32 + l (high nibble, sub-block 2c + 1), so chunk t's low nibbles
///   are values 64c + 4(t % 8) + 0..4 of the 8 rows and its high nibbles the same + 32.
///
/// This is the engine's generic `for_tile_bytes` with two f16 fields (as Q4_1): f16 fields
/// first, then every later 4-byte group of the block (the 3 scale words, then the 32 nibble
/// words) at `32 + 32c + 4j`.
fn for_tile_bytes(j: usize, mut copy: impl FnMut(usize, usize, usize)) {
    copy(0, 2 * j, 2);
    copy(2, 16 + 2 * j, 2);
    for c in 0..(BLOCK_BYTES - 4) / 4 {
        copy(4 + 4 * c, 32 + 32 * c + 4 * j, 4);
    }
}

/// Interleaves block b of 8 rows (each `BLOCK_BYTES`, GGUF layout) into one tile block of
/// [`TILE_BLOCK_BYTES`] (layout: see [`for_tile_bytes`]). Lossless: [`untile_block`] inverts it.
pub fn tile_block(rows: [&[u8]; 8], out: &mut [u8]) {
    assert!(out.len() == TILE_BLOCK_BYTES);
    for (j, src) in rows.iter().enumerate() {
        assert!(src.len() == BLOCK_BYTES);
        for_tile_bytes(j, |from, to, len| {
            out[to..to + len].copy_from_slice(&src[from..from + len])
        });
    }
}

/// Row j's GGUF block back from a tile block (the exact bytes `tile_block` was given).
pub fn untile_block(tile: &[u8], j: usize, out: &mut [u8]) {
    assert!(tile.len() == TILE_BLOCK_BYTES && out.len() == BLOCK_BYTES && j < 8);
    for_tile_bytes(j, |from, to, len| {
        out[from..from + len].copy_from_slice(&tile[to..to + len])
    });
}

/// `pshufb` controls that put byte s % 4 of each 32-bit lane into both of its 16-bit halves
/// (high bytes zero): on a vector whose lane j holds 4 unpacked scales (or minimums) of row j,
/// `TILE_SHUFFLE[s % 4]` gives lane j = (x_j,s, x_j,s) as two i16, the `madd` multiplier that
/// scales both 16-bit pair sums of row j's sub-block s.
#[cfg(target_arch = "x86_64")]
#[repr(align(32))]
struct TileShuffles([[i8; 32]; 4]);

#[cfg(target_arch = "x86_64")]
static TILE_SHUFFLE: TileShuffles = {
    let mut t = [[-128i8; 32]; 4];
    let mut s = 0;
    while s < 4 {
        let mut lane = 0;
        while lane < 8 {
            // pshufb indexes within each 128-bit half: lane % 4 is the lane in its half.
            t[s][4 * lane] = (4 * (lane % 4) + s) as i8;
            t[s][4 * lane + 2] = (4 * (lane % 4) + s) as i8;
            lane += 1;
        }
        s += 1;
    }
    TileShuffles(t)
};

/// The 8 rows of a tile (`a.blocks` tile blocks back to back at `tile`) dotted with activation
/// rows `first..first + R`: lane j of result r = weight row j · activation row first + r.
///
/// Per tile block, shared by the R rows: the 8 rows' d and dmin (F16C); their scales and
/// minimums unpacked from the three word vectors (the word arithmetic of [`k_scales::unpack`],
/// 8 rows at once: lane j of `sc_lo`/`sc_hi` holds sc[0..4]/sc[4..8] of row j as bytes, the
/// same for the minimums), then one `pshufb` per sub-block gives lane j = (sc_j,s, sc_j,s) as
/// i16 (and the same for the minimums). Per sub-block s (32 values, 8 chunks of 4 values of
/// the 8 rows): each chunk's nibbles (low for even s, high for odd s) times the activation's
/// 4 values broadcast to all lanes (`maddubs`: 8 rows × 2 pair sums of 2 products) are added
/// up in 16-bit lanes over the 8 chunks; one `madd` with the sub-block's scales then gives
/// lane j = sc_j,s · Σ q·y, added into the row's i32 `sumi`. Per row and block, the minimums
/// term Σ_s m_j,s · (bsums[2s] + bsums[2s + 1]) is 8 `madd`s of (m_j,s, m_j,s) with the bsum
/// pair broadcast; then `acc += d·d_a·sumi − dmin·d_a·summ` in f32, 8 rows per lane: no
/// horizontal sums at all.
///
/// No overflow (exact integer sums, identical to [`dot_reference`]'s): q ∈ 0..=15 and
/// y ∈ −128..=127, so a `maddubs` pair is at most 2·15·128 = 3,840 in magnitude (no
/// saturation) and the 16-bit sum over a sub-block's 8 chunks at most 8·3,840 = 30,720 <
/// 32,767 (test `tile_worst_case_is_exact` builds it: q = 15, y = −128). A `madd` with
/// sc ≤ 63 gives at most 63·2·30,720 = 3,870,720, and `sumi` over 8 sub-blocks at most
/// 30,965,760 < 2^31 (the reference's i32 bound; its f32 conversion rounds exactly as the
/// reference's does). A bsum is at most 16·128 = 2,048, so a minimums `madd` is at most
/// 2·63·2,048 = 258,048 and `summ` at most 2,064,384 (exact in f32).
///
/// Loop shape: with R ≤ 4 a chunk's low and high nibbles (sub-blocks 2c and 2c + 1) are used
/// from one load, 2R 16-bit sums live; with R = 8 the sub-blocks go one at a time (each chunk
/// loaded twice, from L1) so that the 8 16-bit sums, the nibbles and the mask fit the 16
/// registers.
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
    let (m, nb) = (a.m, a.blocks);
    let qp: [*const i8; R] = std::array::from_fn(|r| a.qs.as_ptr().add((first + r) * nb * QK_K));
    let bp: [*const i16; R] = std::array::from_fn(|r| a.bsums.as_ptr().add((first + r) * nb * 16));
    let dp = a.d.as_ptr().add(first);
    let low = _mm256_set1_epi8(0x0F);
    let ctrl = |s: usize| _mm256_load_si256(TILE_SHUFFLE.0[s].as_ptr() as *const __m256i);
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..nb {
        let blk = tile.add(b * TILE_BLOCK_BYTES);
        let d = _mm256_cvtph_ps(_mm_loadu_si128(blk as *const __m128i));
        let dmin = _mm256_cvtph_ps(_mm_loadu_si128(blk.add(16) as *const __m128i));
        // k_scales::unpack on 8 rows' words at once (lane j = row j).
        let w0 = _mm256_loadu_si256(blk.add(32) as *const __m256i);
        let w1 = _mm256_loadu_si256(blk.add(64) as *const __m256i);
        let w2 = _mm256_loadu_si256(blk.add(96) as *const __m256i);
        let low6 = _mm256_set1_epi8(0x3F);
        let low2 = _mm256_set1_epi8(0x03);
        let sc_lo = _mm256_and_si256(w0, low6);
        let m_lo = _mm256_and_si256(w1, low6);
        let sc_hi = _mm256_or_si256(
            _mm256_and_si256(w2, low),
            _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<6>(w0), low2)),
        );
        let m_hi = _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16::<4>(w2), low),
            _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<6>(w1), low2)),
        );
        // Sub-block s's scales (and minimums) of the 8 rows, as (x, x) i16 pairs in lane j.
        let sc = |s: usize| _mm256_shuffle_epi8(if s < 4 { sc_lo } else { sc_hi }, ctrl(s % 4));
        let mn = |s: usize| _mm256_shuffle_epi8(if s < 4 { m_lo } else { m_hi }, ctrl(s % 4));
        let q = blk.add(128);
        let mut sumi = [_mm256_setzero_si256(); R];
        if R <= 4 {
            for c in 0..4 {
                let mut slo = [_mm256_setzero_si256(); R];
                let mut shi = [_mm256_setzero_si256(); R];
                for i in 0..8 {
                    let bits = _mm256_loadu_si256(q.add(32 * (8 * c + i)) as *const __m256i);
                    let lo = _mm256_and_si256(bits, low);
                    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(bits), low);
                    for r in 0..R {
                        let y = qp[r].add(b * QK_K + 64 * c + 4 * i) as *const i32;
                        let ylo = _mm256_set1_epi32(y.read_unaligned());
                        let yhi = _mm256_set1_epi32(y.add(8).read_unaligned());
                        slo[r] = _mm256_add_epi16(slo[r], _mm256_maddubs_epi16(lo, ylo));
                        shi[r] = _mm256_add_epi16(shi[r], _mm256_maddubs_epi16(hi, yhi));
                    }
                }
                let (s0, s1) = (sc(2 * c), sc(2 * c + 1));
                for r in 0..R {
                    let p = _mm256_add_epi32(
                        _mm256_madd_epi16(slo[r], s0),
                        _mm256_madd_epi16(shi[r], s1),
                    );
                    sumi[r] = _mm256_add_epi32(sumi[r], p);
                }
            }
        } else {
            for s in 0..8 {
                let mut s16 = [_mm256_setzero_si256(); R];
                for i in 0..8 {
                    let bits = _mm256_loadu_si256(q.add(32 * (8 * (s / 2) + i)) as *const __m256i);
                    let w = if s % 2 == 0 {
                        _mm256_and_si256(bits, low)
                    } else {
                        _mm256_and_si256(_mm256_srli_epi16::<4>(bits), low)
                    };
                    for r in 0..R {
                        let y = qp[r].add(b * QK_K + 32 * s + 4 * i) as *const i32;
                        let y = _mm256_set1_epi32(y.read_unaligned());
                        s16[r] = _mm256_add_epi16(s16[r], _mm256_maddubs_epi16(w, y));
                    }
                }
                let scs = sc(s);
                for r in 0..R {
                    sumi[r] = _mm256_add_epi32(sumi[r], _mm256_madd_epi16(s16[r], scs));
                }
            }
        }
        let mut summ = [_mm256_setzero_si256(); R];
        for s in 0..8 {
            let ms = mn(s);
            for r in 0..R {
                let pair = (bp[r].add(b * 16 + 2 * s) as *const i32).read_unaligned();
                let p = _mm256_madd_epi16(ms, _mm256_set1_epi32(pair));
                summ[r] = _mm256_add_epi32(summ[r], p);
            }
        }
        for r in 0..R {
            let da = _mm256_broadcast_ss(&*dp.add(b * m + r));
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[r]), _mm256_mul_ps(d, da), acc[r]);
            acc[r] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(summ[r]), _mm256_mul_ps(dmin, da), acc[r]);
        }
    }
    acc
}

/// The unpacked scales and minimums of tile block `blk`, as in [`tile_dot`]:
/// [sc_lo, sc_hi, m_lo, m_hi], lane j = row j, 4 bytes each.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_header(blk: *const u8) -> [std::arch::x86_64::__m256i; 4] {
    use std::arch::x86_64::*;
    let low = _mm256_set1_epi8(0x0F);
    let w0 = _mm256_loadu_si256(blk.add(32) as *const __m256i);
    let w1 = _mm256_loadu_si256(blk.add(64) as *const __m256i);
    let w2 = _mm256_loadu_si256(blk.add(96) as *const __m256i);
    let low6 = _mm256_set1_epi8(0x3F);
    let low2 = _mm256_set1_epi8(0x03);
    let sc_lo = _mm256_and_si256(w0, low6);
    let m_lo = _mm256_and_si256(w1, low6);
    let sc_hi = _mm256_or_si256(
        _mm256_and_si256(w2, low),
        _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<6>(w0), low2)),
    );
    let m_hi = _mm256_or_si256(
        _mm256_and_si256(_mm256_srli_epi16::<4>(w2), low),
        _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<6>(w1), low2)),
    );
    [sc_lo, sc_hi, m_lo, m_hi]
}

/// `tile_dot` with AVX-VNNI (`vpdpbusd`): the same tile layout, the same integer sums, the
/// same float operations after them, so the results are bit-for-bit `tile_dot`'s.
///
/// `vpdpbusd` multiplies the 4 nibbles of row j in a chunk's lane j (u8) by the activation's 4
/// values broadcast (i8) and adds the 4 products straight into the lane's i32: a sub-block's
/// 8 chunks give lane j = Σ q·y of row j in 8 instructions (AVX2: 8 `maddubs` + 8 16-bit
/// adds). The 8 rows' scales of the sub-block are then applied with one `vpmulld` by the
/// scales as i32 (lane j = sc_j,s: `TILE_SHUFFLE`'s (sc, sc) pair with the high half masked
/// off) and an add into `sumi`. Measured against the alternatives: splitting a sub-block into two 16-value halves (each fits i16),
/// packing them with `pslldq` + `pblendw` and applying the scales with `vpdpwssd` saves a
/// port-0/1 uop on paper but was slower (R = 8: ~1.0x of `tile_dot` with the halves in
/// registers, spilling; 1.2x with the first halves parked, vs 1.23x here); `vpmulld` is the
/// cheapest exact way found. Expected gain on paper: 10 port-0/1 uops per sub-block and row
/// against AVX2's 18 uops over 3 ports, about 1.2x, which is what R = 8 measures.
///
/// Loop shape: R ≤ 4 as `tile_dot`: per 64 values one load of each chunk gives both
/// sub-blocks (low and high nibbles), 2R i32 sums live. R > 4: one sub-block at a time, its 8
/// masked chunks held in registers while the R rows go through them (8 broadcasts and 8
/// `vpdpbusd` per row, then `vpmulld`).
///
/// No overflow (exact integers, identical to `tile_dot`'s and [`dot_reference`]'s): a
/// sub-block's i32 sum is at most 32·15·128 = 61,440 in magnitude (no intermediate saturation:
/// `vpdpbusd` adds its 4 products into the i32 exactly); times sc ≤ 63 gives 3,870,720, and
/// `sumi` over 8 sub-blocks at most 30,965,760 < 2^31 (the same bound as `tile_dot`). The
/// minimums: `vpdpwssd` of the (m, m) pairs with a bsum pair (each ≤ 2,048) adds at most
/// 258,048 per sub-block, `summ` ≤ 2,064,384 (non-saturating form, no overflow either).
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C and AVX-VNNI (`is_x86_feature_detected!("avxvnni")`);
/// `tile` points at `a.blocks` tile blocks and `first + R <= a.m`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
pub unsafe fn tile_dot_vnni<const R: usize>(
    tile: *const u8,
    a: &Q8KRows,
    first: usize,
) -> [std::arch::x86_64::__m256; R] {
    use std::arch::x86_64::*;
    debug_assert!(first + R <= a.m && a.qs.len() == a.m * a.blocks * QK_K);
    let (m, nb) = (a.m, a.blocks);
    let qp: [*const i8; R] = std::array::from_fn(|r| a.qs.as_ptr().add((first + r) * nb * QK_K));
    let bp: [*const i16; R] = std::array::from_fn(|r| a.bsums.as_ptr().add((first + r) * nb * 16));
    let dp = a.d.as_ptr().add(first);
    let low = _mm256_set1_epi8(0x0F);
    let lo16 = _mm256_set1_epi32(0xFFFF);
    let ctrl = |s: usize| _mm256_load_si256(TILE_SHUFFLE.0[s].as_ptr() as *const __m256i);
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..nb {
        let blk = tile.add(b * TILE_BLOCK_BYTES);
        let d = _mm256_cvtph_ps(_mm_loadu_si128(blk as *const __m128i));
        let dmin = _mm256_cvtph_ps(_mm_loadu_si128(blk.add(16) as *const __m128i));
        let [sc_lo, sc_hi, m_lo, m_hi] = tile_header(blk);
        let sc = |s: usize| _mm256_shuffle_epi8(if s < 4 { sc_lo } else { sc_hi }, ctrl(s % 4));
        let mn = |s: usize| _mm256_shuffle_epi8(if s < 4 { m_lo } else { m_hi }, ctrl(s % 4));
        let q = blk.add(128);
        let yb = |r: usize, at: usize| {
            _mm256_set1_epi32((qp[r].add(b * QK_K + at) as *const i32).read_unaligned())
        };
        let mut sumi = [_mm256_setzero_si256(); R];
        if R > 4 {
            for s in 0..8 {
                let w: [__m256i; 8] = std::array::from_fn(|i| {
                    let bits = _mm256_loadu_si256(q.add(32 * (8 * (s / 2) + i)) as *const __m256i);
                    if s % 2 == 0 {
                        _mm256_and_si256(bits, low)
                    } else {
                        _mm256_and_si256(_mm256_srli_epi16::<4>(bits), low)
                    }
                });
                let scs = sc(s);
                let sc32 = _mm256_and_si256(scs, lo16);
                for r in 0..R {
                    let mut x = _mm256_setzero_si256();
                    for i in 0..8 {
                        x = _mm256_dpbusd_avx_epi32(x, w[i], yb(r, 32 * s + 4 * i));
                    }
                    sumi[r] = _mm256_add_epi32(sumi[r], _mm256_mullo_epi32(x, sc32));
                }
            }
        } else {
            for c in 0..4 {
                let mut xlo = [_mm256_setzero_si256(); R];
                let mut xhi = [_mm256_setzero_si256(); R];
                for i in 0..8 {
                    let bits = _mm256_loadu_si256(q.add(32 * (8 * c + i)) as *const __m256i);
                    let lo = _mm256_and_si256(bits, low);
                    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(bits), low);
                    for r in 0..R {
                        xlo[r] = _mm256_dpbusd_avx_epi32(xlo[r], lo, yb(r, 64 * c + 4 * i));
                        xhi[r] = _mm256_dpbusd_avx_epi32(xhi[r], hi, yb(r, 64 * c + 32 + 4 * i));
                    }
                }
                let (s0, s1) = (
                    _mm256_and_si256(sc(2 * c), lo16),
                    _mm256_and_si256(sc(2 * c + 1), lo16),
                );
                for r in 0..R {
                    let p = _mm256_add_epi32(
                        _mm256_mullo_epi32(xlo[r], s0),
                        _mm256_mullo_epi32(xhi[r], s1),
                    );
                    sumi[r] = _mm256_add_epi32(sumi[r], p);
                }
            }
        }
        let mut summ = [_mm256_setzero_si256(); R];
        for s in 0..8 {
            let ms = mn(s);
            for r in 0..R {
                let pair = (bp[r].add(b * 16 + 2 * s) as *const i32).read_unaligned();
                summ[r] = _mm256_dpwssd_avx_epi32(summ[r], ms, _mm256_set1_epi32(pair));
            }
        }
        for r in 0..R {
            let da = _mm256_broadcast_ss(&*dp.add(b * m + r));
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[r]), _mm256_mul_ps(d, da), acc[r]);
            acc[r] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(summ[r]), _mm256_mul_ps(dmin, da), acc[r]);
        }
    }
    acc
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

    #[test]
    fn untile_inverts_tile() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(21);
        let mut seen = [[false; 256]; BLOCK_BYTES];
        for round in 0..600 {
            // Random bytes everywhere (d and dmin too: every bit pattern moves), then the kinds
            // of `random_blocks` (all-0x00 / all-0xFF quants, scales 0xFF or 0).
            let mut blocks = if round % 2 == 0 {
                testing::random_blocks(&mut rng, &Q4K, 8, round)
            } else {
                let mut v = vec![0u8; 8 * BLOCK_BYTES];
                rng.fill(&mut v[..]);
                v
            };
            if round == 1 {
                blocks.fill(0xFF);
            }
            for blk in blocks.chunks_exact(BLOCK_BYTES) {
                for (i, &v) in blk.iter().enumerate() {
                    seen[i][v as usize] = true;
                }
            }
            let rows: [&[u8]; 8] =
                std::array::from_fn(|j| &blocks[j * BLOCK_BYTES..][..BLOCK_BYTES]);
            let mut tile = vec![0u8; TILE_BLOCK_BYTES];
            tile_block(rows, &mut tile);
            // A permutation of the bytes: the same multiset.
            let (mut x, mut y) = (tile.clone(), blocks.clone());
            x.sort_unstable();
            y.sort_unstable();
            assert_eq!(x, y);
            for j in 0..8 {
                let mut back = [0u8; BLOCK_BYTES];
                untile_block(&tile, j, &mut back);
                assert_eq!(&back[..], rows[j], "round {round} row {j}");
            }
        }
        // Every byte position of a block took every value.
        assert!(seen.iter().flatten().all(|&s| s));
    }

    #[cfg(target_arch = "x86_64")]
    unsafe fn tiled(r: usize, tile: *const u8, a: &Q8KRows, first: usize) -> Vec<[f32; 8]> {
        use std::arch::x86_64::__m256;
        let v: Vec<__m256> = match r {
            1 => tile_dot::<1>(tile, a, first).to_vec(),
            2 => tile_dot::<2>(tile, a, first).to_vec(),
            3 => tile_dot::<3>(tile, a, first).to_vec(),
            4 => tile_dot::<4>(tile, a, first).to_vec(),
            8 => tile_dot::<8>(tile, a, first).to_vec(),
            _ => unreachable!(),
        };
        v.into_iter()
            .map(|x| std::mem::transmute::<__m256, [f32; 8]>(x))
            .collect()
    }

    fn has_avx2() -> bool {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    }

    /// Σ|terms| of the formula both kernels evaluate, d·d_a·Σ sc·q·y − dmin·d_a·Σ m·y: per
    /// value (|d·sc·q| + |dmin·m|)·|d_a·y|. Not Σ|w·a|: when d·sc·q and dmin·m nearly cancel
    /// (w small), each of the two block terms is rounded to f32 on its own scale (the
    /// reference's own error then exceeds 1e-5·Σ|w·a|: seen with one nonzero activation, sc·q
    /// = 75, m = 18, terms ≈ ±38,000, result ≈ 143).
    fn magnitude(row: &[u8], a: &Q8KRows, r: usize) -> f64 {
        let x = a.dequantize_row(r);
        let mut mag = 0f64;
        for (blk, xs) in row.chunks_exact(BLOCK_BYTES).zip(x.chunks_exact(QK_K)) {
            let (d, dmin) = (f16_at(blk, 0) as f64, f16_at(blk, 2) as f64);
            let (sc, mn) = k_scales::unpack_arrays(blk[4..16].try_into().unwrap());
            for (i, &x) in xs.iter().enumerate() {
                let s = i / 32;
                let q = (blk[16 + 32 * (s / 2) + i % 32] >> (4 * (s % 2))) & 0xF;
                let w = (d * sc[s] as f64 * q as f64).abs() + (dmin * mn[s] as f64).abs();
                mag += w * (x as f64).abs();
            }
        }
        mag
    }

    /// `tile_dot::<R>` lane j of result r equals `dot_reference(row j, a, first + r)` within
    /// 1e-5 of Σ|terms| (see `magnitude`), for every R, every `first` (m = 11 > 8), k of 1, 2, 3, 5, 8 blocks and
    /// 2048, on `random_blocks` (every scale and minimum of every sub-block takes all 64
    /// values; all-0x00 and all-0xFF quants; scales all 63 / all 0) and `random_activations`
    /// (zeros, an all-zero block, an all-zero row, large magnitudes).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn tile_dot_matches_reference() {
        use rand::SeedableRng;
        if !has_avx2() {
            eprintln!("no AVX2 + FMA + F16C: skipped");
            return;
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(22);
        let m = 11;
        for nbk in [1, 2, 3, 5, 8] {
            // At least 2,048 blocks: every scale and minimum value occurs.
            let tiles = 2048usize.div_ceil(8 * nbk);
            let k = nbk * QK_K;
            let rb = nbk * BLOCK_BYTES;
            let w = testing::random_blocks(&mut rng, &Q4K, 8 * tiles * nbk, nbk);
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
                for rr in [1, 2, 3, 4, 8] {
                    for first in 0..=m - rr {
                        let got = unsafe { tiled(rr, tile.as_ptr(), &a, first) };
                        assert_eq!(got.len(), rr);
                        for (i, lanes) in got.iter().enumerate() {
                            for j in 0..8 {
                                let (want, mag) = want[j][first + i];
                                let g = lanes[j];
                                assert!(
                                    (g as f64 - want as f64).abs() <= 1e-5 * mag,
                                    "k={k} tile {t} row {j} R={rr} first={first} act {}: {g} vs {want}",
                                    first + i
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// Worst case of the 16-bit sums: all weight bytes 0xFF (q = 15, sc = m = 63, d = dmin = 1)
    /// against activations of −128 (Q8_K's clamp allows it), 127, and alternating, in every
    /// R; the result must be the exact integer (in i64) to f32 rounding. Also the instruction
    /// level: 8 chunks' `maddubs(15, −128)` summed in i16 give exactly −30,720.
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
                for _ in 0..8 {
                    let p = _mm256_maddubs_epi16(_mm256_set1_epi8(15), _mm256_set1_epi8(y));
                    s = _mm256_add_epi16(s, p);
                }
                let want = 8 * 2 * 15 * y as i32;
                let lanes = std::mem::transmute::<__m256i, [i16; 16]>(s);
                assert!(
                    lanes.iter().all(|&v| v as i32 == want),
                    "{lanes:?} vs {want}"
                );
                let sc = _mm256_madd_epi16(s, _mm256_set1_epi16(63));
                let lanes = std::mem::transmute::<__m256i, [i32; 8]>(sc);
                assert!(lanes.iter().all(|&v| v == 2 * 63 * want));
            }
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
        for rr in [1, 2, 3, 4, 8] {
            for first in 0..=m - rr {
                let got = unsafe { tiled(rr, tile.as_ptr(), &a, first) };
                for (i, lanes) in got.iter().enumerate() {
                    let r = first + i;
                    let exact: i64 = a
                        .row_qs(r)
                        .iter()
                        .map(|&y| 63 * 15 * y as i64 - 63 * y as i64)
                        .sum();
                    for j in 0..8 {
                        let g = lanes[j] as f64;
                        assert!(
                            (g - exact as f64).abs() <= 1e-6 * exact.abs() as f64,
                            "R={rr} act {r} row {j}: {g} vs {exact}"
                        );
                    }
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    unsafe fn tiled_vnni(r: usize, tile: *const u8, a: &Q8KRows, first: usize) -> Vec<[f32; 8]> {
        use std::arch::x86_64::__m256;
        let v: Vec<__m256> = match r {
            1 => tile_dot_vnni::<1>(tile, a, first).to_vec(),
            2 => tile_dot_vnni::<2>(tile, a, first).to_vec(),
            3 => tile_dot_vnni::<3>(tile, a, first).to_vec(),
            4 => tile_dot_vnni::<4>(tile, a, first).to_vec(),
            8 => tile_dot_vnni::<8>(tile, a, first).to_vec(),
            _ => unreachable!(),
        };
        v.into_iter()
            .map(|x| std::mem::transmute::<__m256, [f32; 8]>(x))
            .collect()
    }

    fn has_vnni() -> bool {
        has_avx2() && is_x86_feature_detected!("avxvnni")
    }

    /// Asserts `tile_dot_vnni::<R>` equals `tile_dot::<R>` bit for bit on `tile` for every R
    /// in {1, 2, 3, 4, 8} and every `first` (same integers, same float operations).
    #[cfg(target_arch = "x86_64")]
    fn assert_vnni_is_tile(tile: &[u8], a: &Q8KRows, what: &str) {
        for rr in [1, 2, 3, 4, 8] {
            for first in 0..=a.m - rr {
                let want = unsafe { tiled(rr, tile.as_ptr(), a, first) };
                let got = unsafe { tiled_vnni(rr, tile.as_ptr(), a, first) };
                assert_eq!(got.len(), rr);
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    for j in 0..8 {
                        assert!(
                            g[j].to_bits() == w[j].to_bits(),
                            "{what} R={rr} first={first} act {} row {j}: {} vs {}",
                            first + i,
                            g[j],
                            w[j]
                        );
                    }
                }
            }
        }
    }

    /// `tile_dot_vnni::<R>` is `tile_dot::<R>` bit for bit (and so within 1e-5·Σ|terms| of
    /// `dot_reference`, which `tile_dot_matches_reference` checks on the same kind of data):
    /// every R, every `first` (m = 11), k of 1, 2, 3, 5, 8 blocks, `random_blocks` (every
    /// scale and minimum of every sub-block takes all 64 values; all-0x00 / all-0xFF quants;
    /// scales all 63 / all 0) and `random_activations` (zeros, an all-zero block and row,
    /// large magnitudes).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn tile_dot_vnni_is_tile_dot() {
        use rand::SeedableRng;
        if !has_vnni() {
            eprintln!("no AVX-VNNI (or AVX2 + FMA + F16C): tile_dot_vnni not tested");
            return;
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(23);
        let m = 11;
        for nbk in [1, 2, 3, 5, 8] {
            let tiles = 2048usize.div_ceil(8 * nbk);
            let k = nbk * QK_K;
            let rb = nbk * BLOCK_BYTES;
            let w = testing::random_blocks(&mut rng, &Q4K, 8 * tiles * nbk, nbk);
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
                assert_vnni_is_tile(&tile, &a, &format!("k={k} tile {t}"));
            }
        }
    }

    /// The worst case for `vpdpbusd` and the scale products: all weight bytes 0xFF (q = 15,
    /// sc = m = 63, d = dmin = 1) against activations of −128, 127 and alternating; the
    /// instruction level (8 chunks of 15·(−128) into one i32: −61,440; times 63) and the
    /// kernel, which must be `tile_dot` bit for bit and the exact integer to f32 rounding.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn tile_vnni_worst_case_is_exact() {
        use half::f16;
        if !has_vnni() {
            eprintln!("no AVX-VNNI (or AVX2 + FMA + F16C): tile_dot_vnni not tested");
            return;
        }
        unsafe { vnni_worst_lanes() };
        let nb = 5;
        let one = f16::from_f32(1.0).to_le_bytes();
        let mut rows = vec![0xFFu8; 8 * nb * BLOCK_BYTES];
        for blk in rows.chunks_exact_mut(BLOCK_BYTES) {
            blk[0..2].copy_from_slice(&one);
            blk[2..4].copy_from_slice(&one);
        }
        let tile = tile_rows(&rows, nb * BLOCK_BYTES, 0);
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
        assert_vnni_is_tile(&tile, &a, "worst case");
        for rr in [1, 2, 3, 4, 8] {
            for first in 0..=m - rr {
                let got = unsafe { tiled_vnni(rr, tile.as_ptr(), &a, first) };
                for (i, lanes) in got.iter().enumerate() {
                    let exact: i64 = a
                        .row_qs(first + i)
                        .iter()
                        .map(|&y| 63 * 15 * y as i64 - 63 * y as i64)
                        .sum();
                    for &g in lanes {
                        assert!((g as f64 - exact as f64).abs() <= 1e-6 * exact.abs() as f64);
                    }
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,avxvnni")]
    unsafe fn vnni_worst_lanes() {
        use std::arch::x86_64::*;
        for y in [-128i8, 127] {
            let mut x = _mm256_setzero_si256();
            for _ in 0..8 {
                x = _mm256_dpbusd_avx_epi32(x, _mm256_set1_epi8(15), _mm256_set1_epi8(y));
            }
            let want = 8 * 4 * 15 * y as i32;
            let lanes = std::mem::transmute::<__m256i, [i32; 8]>(x);
            assert!(lanes.iter().all(|&v| v == want), "{lanes:?} vs {want}");
            let p = _mm256_mullo_epi32(x, _mm256_set1_epi32(63));
            let lanes = std::mem::transmute::<__m256i, [i32; 8]>(p);
            assert!(lanes.iter().all(|&v| v == 63 * want));
        }
    }
}
