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
use super::{f16_at, Q8KRows, QK_K, TILE_ROWS};

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

// ----------------------------------------------------------------------------------------
// 8-row tiles.
//
// Tile layout (one tile block = block b of 8 rows, 1680 bytes = 8 · BLOCK_BYTES, lossless):
// - bytes 0..16: the 8 rows' f16 d, row j at 2j (one `vcvtph2ps` gives all 8);
// - bytes 16..144: the 8 × 16 scales, by pairs of groups: pair p (groups 2p, 2p + 1) has 16
//   bytes at 16 + 16p: sc[0..4][2p], sc[0..4][2p+1], sc[4..8][2p], sc[4..8][2p+1] (sc[j][g]:
//   row j, group g). One `vpmovsxbw` of these 16 bytes and one `vpunpck{l,h}wd` with itself
//   give each group's register of i16 scales with row j's in lanes 2j and 2j + 1 (what `madd`
//   wants after `maddubs`), and one more unpack gives the pairs (sc[j][2p], sc[j][2p+1]) that
//   fold the −32 offset against the activation's bsums;
// - bytes 144..1680: the quants, 96 bytes per group of 16 values g (at 144 + 96g) as three
//   32-byte registers A, B, C. "Chunk" c (0..4) of group g is values 16g + 4c .. 16g + 4c + 4
//   of the 8 rows, byte 4j + i holding row j's value 16g + 4c + i: chunks 0, 1, 2 are the low
//   6 bits of A, B, C, and chunk 3's 6 bits are spread over their top 2 bits (bits 4–5 in A,
//   2–3 in B, 0–1 in C). So the unpack of 4 chunks (128 quants) is 3 `and`s for chunks 0–2
//   and 3 shifts, 3 `and`s and 2 `or`s for chunk 3: 11 instructions instead of the 16 the
//   GGUF nibble/2-bit layout needs.
// ----------------------------------------------------------------------------------------

/// Bytes of one tile block: exactly the 8 rows' GGUF bytes, rearranged.
pub const TILE_BLOCK_BYTES: usize = TILE_ROWS * BLOCK_BYTES;
const T_D: usize = 0;
const T_SC: usize = 16;
const T_Q: usize = 144;
const T_GROUP: usize = 96;

/// Where row j's scale of group g sits in a tile block.
const fn tile_scale_at(j: usize, g: usize) -> usize {
    T_SC + 16 * (g / 2) + 8 * (j / 4) + 4 * (g % 2) + j % 4
}

/// Sets the 6-bit quant of value i of a GGUF block (the inverse of [`quant`]; the block's
/// ql/qh bits of value i must be zero).
fn put_quant(block: &mut [u8], i: usize, q: u8) {
    let (h, t, l) = (i / 128, i % 128 / 32, i % 32);
    let at = QL + 64 * h + 32 * (t & 1) + l;
    block[at] |= if t < 2 { q & 0x0F } else { (q & 0x0F) << 4 };
    block[QH + 32 * h + l] |= (q >> 4) << (2 * t);
}

/// Interleaves block b of 8 rows (each `BLOCK_BYTES`, GGUF layout) into one tile block of
/// [`TILE_BLOCK_BYTES`] (layout above). Lossless: [`untile_block`] gives the rows back.
pub fn tile_block(rows: [&[u8]; 8], out: &mut [u8]) {
    assert!(out.len() >= TILE_BLOCK_BYTES);
    let out = &mut out[..TILE_BLOCK_BYTES];
    out.fill(0);
    for (j, row) in rows.iter().enumerate() {
        assert!(row.len() >= BLOCK_BYTES);
        out[T_D + 2 * j..T_D + 2 * j + 2].copy_from_slice(&row[D..D + 2]);
        for g in 0..16 {
            out[tile_scale_at(j, g)] = row[SCALES + g];
            let grp = T_Q + T_GROUP * g;
            for c in 0..4 {
                for i in 0..4 {
                    let q = quant(row, 16 * g + 4 * c + i) as u8;
                    let at = grp + 4 * j + i;
                    if c < 3 {
                        out[at + 32 * c] |= q;
                    } else {
                        out[at] |= (q >> 4) << 6;
                        out[at + 32] |= ((q >> 2) & 3) << 6;
                        out[at + 64] |= (q & 3) << 6;
                    }
                }
            }
        }
    }
}

/// Row j's GGUF block back from a tile block (the exact bytes `tile_block` was given).
pub fn untile_block(tile: &[u8], j: usize, out: &mut [u8]) {
    assert!(tile.len() >= TILE_BLOCK_BYTES && j < TILE_ROWS && out.len() >= BLOCK_BYTES);
    let out = &mut out[..BLOCK_BYTES];
    out.fill(0);
    out[D..D + 2].copy_from_slice(&tile[T_D + 2 * j..T_D + 2 * j + 2]);
    for g in 0..16 {
        out[SCALES + g] = tile[tile_scale_at(j, g)];
        let grp = T_Q + T_GROUP * g;
        for c in 0..4 {
            for i in 0..4 {
                let at = grp + 4 * j + i;
                let q = if c < 3 {
                    tile[at + 32 * c] & 0x3F
                } else {
                    (tile[at] >> 6) << 4 | (tile[at + 32] >> 6) << 2 | tile[at + 64] >> 6
                };
                put_quant(out, 16 * g + 4 * c + i, q);
            }
        }
    }
}

/// A whole matrix (n rows, a multiple of 8, of `blocks` GGUF blocks each) in tiles: tile t's
/// block b at `(t · blocks + b) · TILE_BLOCK_BYTES` (a convenience for tests and benchmarks;
/// the engine's `QWeights::tiled` does the same with [`tile_block`]).
#[cfg(test)]
pub fn tile_matrix(data: &[u8], n: usize, blocks: usize) -> Vec<u8> {
    assert!(n.is_multiple_of(TILE_ROWS) && data.len() == n * blocks * BLOCK_BYTES);
    let rb = blocks * BLOCK_BYTES;
    let mut out = vec![0u8; data.len()];
    for t in 0..n / TILE_ROWS {
        for b in 0..blocks {
            let rows: [&[u8]; 8] = std::array::from_fn(|j| {
                &data[(t * TILE_ROWS + j) * rb + b * BLOCK_BYTES..][..BLOCK_BYTES]
            });
            tile_block(
                rows,
                &mut out[(t * blocks + b) * TILE_BLOCK_BYTES..][..TILE_BLOCK_BYTES],
            );
        }
    }
    out
}

/// The 8 rows of a tile (`a.blocks` tile blocks back to back at `tile`) dotted with
/// activation rows first..first + R: lane j of result r = weight row j · activation row
/// first + r (the same integers as [`dot_reference`], times d_w·d_a in f32).
///
/// Per group of 16 values: three loads and 11 instructions unpack 4 chunks (4 values of each
/// of the 8 rows, unsigned 0..=63); each chunk costs every activation row one broadcast of
/// its 4 matching quants and one `maddubs` (8 rows at once). Two chunks' products are summed
/// in 16-bit lanes, then `madd` with the group's scales (row j's in lanes 2j, 2j + 1) sums
/// each row's pair of lanes and applies its scale in one instruction. Per pair of groups
/// each row subtracts 32·(sc·bsum) by one `madd` of the (scale · 32) pairs against the two
/// broadcast bsums. Per block each row converts its 8 sums once and `fma`s them times
/// d_w (8 rows, one `vcvtph2ps`) · d_a.
///
/// No saturation or overflow (y in [−128, 127], the worst case of the type, q ≤ 63, |sc| ≤ 128):
/// a `maddubs` pair is in [−16,128, 16,002], two chunks' sum in [−32,256, 32,004] ⊂ i16;
/// a `madd` lane is ≤ 2·32,256·128 = 8,257,536 in magnitude, 32 per block: ≤ 264.3 M; the
/// correction pairs: 32·|sc| ≤ 4,096 (fits i16), |bsum| ≤ 2,048, ≤ 2·4,096·2,048 = 16.8 M
/// per pair, 8 pairs: ≤ 134.3 M. |i32| ≤ 398.6 M < 2^31.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; `tile` must point to `a.blocks` tile blocks;
/// `first + R <= a.m`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::needless_range_loop)]
pub unsafe fn tile_dot<const R: usize>(
    tile: *const u8,
    a: &Q8KRows,
    first: usize,
) -> [std::arch::x86_64::__m256; R] {
    use std::arch::x86_64::*;
    debug_assert!(first + R <= a.m);
    let (nb, m) = (a.blocks, a.m);
    let qp: [*const i8; R] = std::array::from_fn(|r| a.qs.as_ptr().add((first + r) * nb * QK_K));
    let bp: [*const i16; R] = std::array::from_fn(|r| a.bsums.as_ptr().add((first + r) * nb * 16));
    let dp = a.d.as_ptr().add(first);
    let m3f = _mm256_set1_epi8(0x3F);
    let m30 = _mm256_set1_epi8(0x30);
    let m0c = _mm256_set1_epi8(0x0C);
    let m03 = _mm256_set1_epi8(0x03);
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..nb {
        let blk = tile.add(b * TILE_BLOCK_BYTES);
        let mut s = [_mm256_setzero_si256(); R];
        for p in 0..8 {
            let x = _mm256_cvtepi8_epi16(_mm_loadu_si128(blk.add(T_SC + 16 * p) as *const __m128i));
            let sc = [_mm256_unpacklo_epi16(x, x), _mm256_unpackhi_epi16(x, x)];
            let pairs = _mm256_slli_epi16::<5>(_mm256_unpacklo_epi16(x, _mm256_srli_si256::<8>(x)));
            for r in 0..R {
                let bs =
                    _mm256_set1_epi32((bp[r].add(16 * b + 2 * p) as *const i32).read_unaligned());
                s[r] = _mm256_sub_epi32(s[r], _mm256_madd_epi16(pairs, bs));
            }
            for h in 0..2 {
                let g = 2 * p + h;
                let q = blk.add(T_Q + T_GROUP * g);
                let ra = _mm256_loadu_si256(q as *const __m256i);
                let rb = _mm256_loadu_si256(q.add(32) as *const __m256i);
                let rc = _mm256_loadu_si256(q.add(64) as *const __m256i);
                // (16-bit shifts move bits across the bytes of a pair; the masks keep only
                // bits that came from the same byte.)
                let w3 = _mm256_or_si256(
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<2>(ra), m30),
                        _mm256_and_si256(_mm256_srli_epi16::<4>(rb), m0c),
                    ),
                    _mm256_and_si256(_mm256_srli_epi16::<6>(rc), m03),
                );
                let w = [
                    _mm256_and_si256(ra, m3f),
                    _mm256_and_si256(rb, m3f),
                    _mm256_and_si256(rc, m3f),
                    w3,
                ];
                for r in 0..R {
                    let y = qp[r].add(b * QK_K + 16 * g) as *const i32;
                    let p0 = _mm256_maddubs_epi16(w[0], _mm256_set1_epi32(y.read_unaligned()));
                    let p1 =
                        _mm256_maddubs_epi16(w[1], _mm256_set1_epi32(y.add(1).read_unaligned()));
                    let p2 =
                        _mm256_maddubs_epi16(w[2], _mm256_set1_epi32(y.add(2).read_unaligned()));
                    let p3 =
                        _mm256_maddubs_epi16(w[3], _mm256_set1_epi32(y.add(3).read_unaligned()));
                    let lo = _mm256_madd_epi16(_mm256_add_epi16(p0, p1), sc[h]);
                    let hi = _mm256_madd_epi16(_mm256_add_epi16(p2, p3), sc[h]);
                    s[r] = _mm256_add_epi32(s[r], _mm256_add_epi32(lo, hi));
                }
            }
        }
        let dw = _mm256_cvtph_ps(_mm_loadu_si128(blk.add(T_D) as *const __m128i));
        for r in 0..R {
            let da = _mm256_set1_ps(*dp.add(b * m + r));
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[r]), _mm256_mul_ps(dw, da), acc[r]);
        }
    }
    acc
}

/// [`tile_dot`] with AVX-VNNI (`vpdpbusd`, u8 × i8 in groups of 4 summed into i32 lanes):
/// each chunk costs every activation row one `vpdpbusd` (instead of a `maddubs`, half an add
/// and half a `madd`); the 4 chunks of a group give each row's exact Σq·y over its 16
/// values, which one `vpmulld` by the group's scales (row j's in lane j, as i32) turns into
/// its share, and the −32 correction is one `vpdpwssd` per pair of groups. ~14% faster than
/// [`tile_dot`] at R = 8 on this machine (Xeon with AVX-VNNI), the same at R = 1.
///
/// Bounds: a group sum is ≤ 16·63·128 = 129,024 in magnitude, times |sc| ≤ 128: ≤ 16.5 M;
/// 16 groups ≤ 264.2 M; the correction ≤ 134.3 M as in [`tile_dot`]: |i32| < 400 M < 2^31
/// (and `vpdpbusd`/`vpdpwssd` wrap, they do not saturate; nothing comes near wrapping).
///
/// # Safety
/// As [`tile_dot`], and the CPU must support AVX-VNNI.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
#[allow(clippy::needless_range_loop)]
pub unsafe fn tile_dot_vnni<const R: usize>(
    tile: *const u8,
    a: &Q8KRows,
    first: usize,
) -> [std::arch::x86_64::__m256; R] {
    use std::arch::x86_64::*;
    debug_assert!(first + R <= a.m);
    let (nb, m) = (a.blocks, a.m);
    let qp: [*const i8; R] = std::array::from_fn(|r| a.qs.as_ptr().add((first + r) * nb * QK_K));
    let bp: [*const i16; R] = std::array::from_fn(|r| a.bsums.as_ptr().add((first + r) * nb * 16));
    let dp = a.d.as_ptr().add(first);
    let m3f = _mm256_set1_epi8(0x3F);
    let m30 = _mm256_set1_epi8(0x30);
    let m0c = _mm256_set1_epi8(0x0C);
    let m03 = _mm256_set1_epi8(0x03);
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..nb {
        let blk = tile.add(b * TILE_BLOCK_BYTES);
        let mut s = [_mm256_setzero_si256(); R];
        for p in 0..8 {
            let x = _mm256_cvtepi8_epi16(_mm_loadu_si128(blk.add(T_SC + 16 * p) as *const __m128i));
            // Each group's 8 scales as i32, row j's in lane j.
            let sc = [
                _mm256_srai_epi32::<16>(_mm256_unpacklo_epi16(x, x)),
                _mm256_srai_epi32::<16>(_mm256_unpackhi_epi16(x, x)),
            ];
            // (sc[j][2p], sc[j][2p + 1]) · −32 as i16 pairs, row j's in lanes 2j, 2j + 1.
            let npairs = _mm256_sub_epi16(
                _mm256_setzero_si256(),
                _mm256_slli_epi16::<5>(_mm256_unpacklo_epi16(x, _mm256_srli_si256::<8>(x))),
            );
            for r in 0..R {
                let bs =
                    _mm256_set1_epi32((bp[r].add(16 * b + 2 * p) as *const i32).read_unaligned());
                s[r] = _mm256_dpwssd_avx_epi32(s[r], npairs, bs);
            }
            for h in 0..2 {
                let g = 2 * p + h;
                let q = blk.add(T_Q + T_GROUP * g);
                let ra = _mm256_loadu_si256(q as *const __m256i);
                let rb = _mm256_loadu_si256(q.add(32) as *const __m256i);
                let rc = _mm256_loadu_si256(q.add(64) as *const __m256i);
                // (16-bit shifts move bits across the bytes of a pair; the masks keep only
                // bits that came from the same byte.)
                let w3 = _mm256_or_si256(
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<2>(ra), m30),
                        _mm256_and_si256(_mm256_srli_epi16::<4>(rb), m0c),
                    ),
                    _mm256_and_si256(_mm256_srli_epi16::<6>(rc), m03),
                );
                let w = [
                    _mm256_and_si256(ra, m3f),
                    _mm256_and_si256(rb, m3f),
                    _mm256_and_si256(rc, m3f),
                    w3,
                ];
                for r in 0..R {
                    let y = qp[r].add(b * QK_K + 16 * g) as *const i32;
                    let mut t = _mm256_setzero_si256();
                    for c in 0..4 {
                        t = _mm256_dpbusd_avx_epi32(
                            t,
                            w[c],
                            _mm256_set1_epi32(y.add(c).read_unaligned()),
                        );
                    }
                    s[r] = _mm256_add_epi32(s[r], _mm256_mullo_epi32(t, sc[h]));
                }
            }
        }
        let dw = _mm256_cvtph_ps(_mm_loadu_si128(blk.add(T_D) as *const __m128i));
        for r in 0..R {
            let da = _mm256_set1_ps(*dp.add(b * m + r));
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[r]), _mm256_mul_ps(dw, da), acc[r]);
        }
    }
    acc
}

/// Two consecutive tiles (each `a.blocks` tile blocks back to back, `t0` and `t1` = t0 + tile
/// bytes) against activation rows first..first + R: lane j (0..16) of result r = weight row j
/// of the pair (0..8 from t0, 8..16 from t1) · activation row first + r.
///
/// [`tile_dot_vnni`] widened to 512 bits: every 32-byte piece of a tile block (quants, the
/// 16 bytes of a scale pair widened, the 8 f16 d) is loaded from both tiles into one `zmm`,
/// t0's in the low 256 bits and t1's in the high 256. All the shuffles used (`vpunpck*wd`,
/// byte shifts) work within 128-bit lanes, so each 256-bit half goes through exactly the
/// steps of [`tile_dot_vnni`] for its own tile: the unpack of 4 chunks is the same 11
/// instructions for 16 rows instead of 8, and each activation broadcast (`_mm512_set1_epi32`)
/// and each `vpdpbusd` / `vpmulld` / `vpdpwssd` serves 16 weight rows. The integer sums are
/// those of [`tile_dot`] / [`tile_dot_vnni`], and the float steps (convert, d_w·d_a,
/// `fma` into the accumulator, block by block) are the same per lane in the same order, so
/// lanes 0..8 equal `tile_dot::<R>(t0)` and lanes 8..16 `tile_dot::<R>(t1)` bit for bit.
/// On this machine (Xeon, AVX-512 VNNI) one call is 1.44–1.56x faster than two
/// [`tile_dot_vnni`] calls at R = 8, 1.16–1.26x at R = 4, about equal at R = 1
/// (examples/speed.rs). What remains per group and row is 4 `vpdpbusd` and a 2-uop `vpmulld`
/// (the scale: the group's exact 16-value sum does not fit the i16 that `vpmaddwd` needs).
///
/// Bounds: as [`tile_dot_vnni`] (each lane is one row's computation): |i32| < 400 M < 2^31.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; `t0` and `t1` must each
/// point to `a.blocks` tile blocks; `first + R <= a.m`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[allow(clippy::needless_range_loop)]
pub unsafe fn tile2_dot_512<const R: usize>(
    t0: *const u8,
    t1: *const u8,
    a: &Q8KRows,
    first: usize,
) -> [std::arch::x86_64::__m512; R] {
    use std::arch::x86_64::*;
    debug_assert!(first + R <= a.m);
    let (nb, m) = (a.blocks, a.m);
    let qp: [*const i8; R] = std::array::from_fn(|r| a.qs.as_ptr().add((first + r) * nb * QK_K));
    let bp: [*const i16; R] = std::array::from_fn(|r| a.bsums.as_ptr().add((first + r) * nb * 16));
    let dp = a.d.as_ptr().add(first);
    // 32 bytes at `off` of both tile blocks: t0's in the low half, t1's in the high half.
    let pair32 = |b0: *const u8, b1: *const u8, off: usize| {
        _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(_mm256_loadu_si256(b0.add(off) as *const __m256i)),
            _mm256_loadu_si256(b1.add(off) as *const __m256i),
        )
    };
    // 16 bytes at `off` of both: t0's in the low 128 bits, t1's in the high 128.
    let pair16 = |b0: *const u8, b1: *const u8, off: usize| {
        _mm256_inserti128_si256::<1>(
            _mm256_castsi128_si256(_mm_loadu_si128(b0.add(off) as *const __m128i)),
            _mm_loadu_si128(b1.add(off) as *const __m128i),
        )
    };
    let m3f = _mm512_set1_epi8(0x3F);
    let m30 = _mm512_set1_epi8(0x30);
    let m0c = _mm512_set1_epi8(0x0C);
    let m03 = _mm512_set1_epi8(0x03);
    let mut acc = [_mm512_setzero_ps(); R];
    for b in 0..nb {
        let b0 = t0.add(b * TILE_BLOCK_BYTES);
        let b1 = t1.add(b * TILE_BLOCK_BYTES);
        let mut s = [_mm512_setzero_si512(); R];
        for p in 0..8 {
            // 128-bit lanes: t0's scales 0..8, 8..16 of the pair's 16 bytes, then t1's.
            let x = _mm512_cvtepi8_epi16(pair16(b0, b1, T_SC + 16 * p));
            // Each group's 16 scales as i32, row j's in lane j (t1's rows in lanes 8..16).
            let sc = [
                _mm512_srai_epi32::<16>(_mm512_unpacklo_epi16(x, x)),
                _mm512_srai_epi32::<16>(_mm512_unpackhi_epi16(x, x)),
            ];
            // (sc[j][2p], sc[j][2p + 1]) · −32 as i16 pairs, row j's in lanes 2j, 2j + 1.
            let npairs = _mm512_sub_epi16(
                _mm512_setzero_si512(),
                _mm512_slli_epi16::<5>(_mm512_unpacklo_epi16(x, _mm512_bsrli_epi128::<8>(x))),
            );
            for r in 0..R {
                let bs =
                    _mm512_set1_epi32((bp[r].add(16 * b + 2 * p) as *const i32).read_unaligned());
                s[r] = _mm512_dpwssd_epi32(s[r], npairs, bs);
            }
            for h in 0..2 {
                let g = 2 * p + h;
                let off = T_Q + T_GROUP * g;
                let ra = pair32(b0, b1, off);
                let rb = pair32(b0, b1, off + 32);
                let rc = pair32(b0, b1, off + 64);
                // (16-bit shifts move bits across the bytes of a pair; the masks keep only
                // bits that came from the same byte.)
                let w3 = _mm512_or_si512(
                    _mm512_or_si512(
                        _mm512_and_si512(_mm512_srli_epi16::<2>(ra), m30),
                        _mm512_and_si512(_mm512_srli_epi16::<4>(rb), m0c),
                    ),
                    _mm512_and_si512(_mm512_srli_epi16::<6>(rc), m03),
                );
                let w = [
                    _mm512_and_si512(ra, m3f),
                    _mm512_and_si512(rb, m3f),
                    _mm512_and_si512(rc, m3f),
                    w3,
                ];
                for r in 0..R {
                    let y = qp[r].add(b * QK_K + 16 * g) as *const i32;
                    let mut t = _mm512_setzero_si512();
                    for c in 0..4 {
                        t = _mm512_dpbusd_epi32(
                            t,
                            w[c],
                            _mm512_set1_epi32(y.add(c).read_unaligned()),
                        );
                    }
                    s[r] = _mm512_add_epi32(s[r], _mm512_mullo_epi32(t, sc[h]));
                }
            }
        }
        let dw = _mm512_cvtph_ps(pair16(b0, b1, T_D));
        for r in 0..R {
            let da = _mm512_set1_ps(*dp.add(b * m + r));
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[r]), _mm512_mul_ps(dw, da), acc[r]);
        }
    }
    acc
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

    #[test]
    fn untile_inverts_tile() {
        let mut rng = ChaCha8Rng::seed_from_u64(65);
        // random_blocks: random bytes everywhere (every value of every field), all-0x00 and
        // all-0xFF quants, every scale value; plus fully random blocks (d included).
        let blocks = 40;
        let mut w = random_blocks(&mut rng, 8 * blocks);
        rng.fill(&mut w[8 * BLOCK_BYTES * (blocks - 4)..]);
        let mut tile = vec![0u8; TILE_BLOCK_BYTES];
        let mut back = vec![0u8; BLOCK_BYTES];
        let mut seen = [[false; 256]; TILE_BLOCK_BYTES];
        for b in 0..blocks {
            let rows: [&[u8]; 8] =
                std::array::from_fn(|j| &w[(j * blocks + b) * BLOCK_BYTES..][..BLOCK_BYTES]);
            tile_block(rows, &mut tile);
            for (i, &v) in tile.iter().enumerate() {
                seen[i][v as usize] = true;
            }
            for j in 0..8 {
                untile_block(&tile, j, &mut back);
                assert_eq!(&back[..], rows[j], "block {b} row {j}");
            }
        }
        // Every tile byte took many values (no byte left constant by the layout).
        assert!(seen.iter().all(|s| s.iter().filter(|&&x| x).count() > 8));
    }

    #[test]
    fn tiled_matrix_rows_are_the_rows() {
        let mut rng = ChaCha8Rng::seed_from_u64(66);
        let (n, blocks) = (16, 3);
        let w = random_blocks(&mut rng, n * blocks);
        let t = tile_matrix(&w, n, blocks);
        let mut back = vec![0u8; BLOCK_BYTES];
        for i in 0..n {
            for b in 0..blocks {
                untile_block(
                    &t[((i / 8) * blocks + b) * TILE_BLOCK_BYTES..],
                    i % 8,
                    &mut back,
                );
                assert_eq!(
                    &back[..],
                    &w[(i * blocks + b) * BLOCK_BYTES..][..BLOCK_BYTES]
                );
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn lanes(v: std::arch::x86_64::__m256) -> [f32; 8] {
        // SAFETY: plain reinterpretation of 8 f32.
        unsafe { std::mem::transmute(v) }
    }

    #[cfg(target_arch = "x86_64")]
    fn check_tile<const R: usize>(
        w: &[u8],
        tiles: &[u8],
        n: usize,
        a: &Q8KRows,
        first: usize,
        vnni: bool,
    ) {
        let rb = a.blocks * BLOCK_BYTES;
        for t in 0..n / 8 {
            let tp = tiles[t * rb * 8..].as_ptr();
            // SAFETY: AVX2/FMA/F16C (and AVX-VNNI when vnni) checked by the caller; the tile
            // holds a.blocks blocks.
            let got = unsafe {
                if vnni {
                    tile_dot_vnni::<R>(tp, a, first)
                } else {
                    tile_dot::<R>(tp, a, first)
                }
            };
            for (r, &v) in got.iter().enumerate() {
                for (j, &g) in lanes(v).iter().enumerate() {
                    let row = &w[(8 * t + j) * rb..][..rb];
                    let want = dot_reference(row, a, first + r) as f64;
                    let mag = dequantized_dot(row, a, first + r).1;
                    let g = g as f64;
                    assert!(
                        (g - want).abs() <= 1e-5 * mag + 1e-6,
                        "vnni={vnni} R={R} k={} row {} act {}: {g} vs {want}",
                        a.blocks * QK_K,
                        8 * t + j,
                        first + r
                    );
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn tile_dot_equals_the_reference() {
        if !(is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c"))
        {
            eprintln!("SKIPPED: no AVX2 + FMA + F16C");
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(67);
        for blocks in [1, 2, 3, 5, 8] {
            let k = blocks * QK_K;
            let n = 16;
            let w = random_blocks(&mut rng, n * blocks);
            let tiles = tile_matrix(&w, n, blocks);
            let m = 11;
            let x = random_activations(&mut rng, m, k);
            let mut a = Q8KRows::default();
            a.quantize(&x, m, k);
            for vnni in [false, true] {
                if vnni && !is_x86_feature_detected!("avxvnni") {
                    eprintln!("SKIPPED tile_dot_vnni: no AVX-VNNI");
                    continue;
                }
                check_tile::<1>(&w, &tiles, n, &a, 1, vnni);
                check_tile::<1>(&w, &tiles, n, &a, 10, vnni);
                check_tile::<2>(&w, &tiles, n, &a, 3, vnni);
                check_tile::<3>(&w, &tiles, n, &a, 2, vnni);
                check_tile::<4>(&w, &tiles, n, &a, 5, vnni);
                check_tile::<8>(&w, &tiles, n, &a, 1, vnni);
                check_tile::<8>(&w, &tiles, n, &a, 3, vnni);
            }
        }
    }

    /// The worst cases of the tiled kernel's 16-bit sums: two chunks of q = 63 against
    /// y = −128 give −32,256 per lane (and q = 63, y = 127: 32,004), checked directly on
    /// `maddubs` + `add_epi16`; then whole tiles of q = 63 / 0, scales −128 / 127, activations
    /// −128 / 127 (and a tile mixing these per row) must give the exact integer.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn tile_extremes_do_not_saturate_or_overflow() {
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
            for (y, want) in [(-128i8, -32_256i16), (127, 32_004)] {
                let p = _mm256_maddubs_epi16(_mm256_set1_epi8(63), _mm256_set1_epi8(y));
                let s = _mm256_add_epi16(p, p);
                let mut v = [0i16; 16];
                _mm256_storeu_si256(v.as_mut_ptr() as *mut __m256i, s);
                assert!(v.iter().all(|&x| x == want));
            }
        }
        let blocks = 2;
        let one = f16::from_f32(1.0).to_le_bytes();
        let block = |qbyte: u8, sc: i8| {
            let mut blk = vec![qbyte; BLOCK_BYTES];
            blk[SCALES..D].fill(sc as u8);
            blk[D..].copy_from_slice(&one);
            blk
        };
        let cases = [
            (0xFFu8, -128i8),
            (0xFF, 127),
            (0x00, -128),
            (0x00, 127),
            (0xFF, -128),
            (0x00, -128),
            (0xFF, 127),
            (0xFF, -128),
        ];
        for y in [-128i8, 127] {
            let m = 9;
            let a = Q8KRows {
                m,
                blocks,
                qs: vec![y; m * blocks * QK_K],
                d: vec![1.0; m * blocks],
                bsums: vec![16 * y as i16; m * blocks * 16],
            };
            // One tile per case (all 8 rows alike), then one tile with the 8 cases as rows.
            let mut tiles: Vec<Vec<(u8, i8)>> = cases.iter().map(|&c| vec![c; 8]).collect();
            tiles.push(cases.to_vec());
            for rows in tiles {
                let mut w = Vec::new();
                for &(qb, sc) in &rows {
                    w.extend(block(qb, sc).repeat(blocks));
                }
                let t = tile_matrix(&w, 8, blocks);
                // SAFETY: the features are checked above.
                let mut got = unsafe { tile_dot::<8>(t.as_ptr(), &a, 1) }.to_vec();
                got.extend(unsafe { tile_dot::<1>(t.as_ptr(), &a, 0) });
                if is_x86_feature_detected!("avxvnni") {
                    // SAFETY: AVX-VNNI checked just above.
                    got.extend(unsafe { tile_dot_vnni::<8>(t.as_ptr(), &a, 1) });
                    got.extend(unsafe { tile_dot_vnni::<1>(t.as_ptr(), &a, 0) });
                } else {
                    eprintln!("SKIPPED tile_dot_vnni: no AVX-VNNI");
                }
                for (j, &(qb, sc)) in rows.iter().enumerate() {
                    let q = if qb == 0xFF { 63i64 } else { 0 };
                    let exact = (blocks * QK_K) as i64 * sc as i64 * (q - 32) * y as i64;
                    for v in &got {
                        assert_eq!(lanes(*v)[j] as f64, exact as f64, "q={q} sc={sc} y={y}");
                    }
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn has_avx512_vnni() -> bool {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni")
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    }

    #[cfg(target_arch = "x86_64")]
    fn lanes16(v: std::arch::x86_64::__m512) -> [f32; 16] {
        // SAFETY: plain reinterpretation of 16 f32.
        unsafe { std::mem::transmute(v) }
    }

    /// Every pair of consecutive tiles: `tile2_dot_512` lanes bit for bit `tile_dot` of t0
    /// (0..8) and of t1 (8..16), and within tolerance of `dot_reference`.
    #[cfg(target_arch = "x86_64")]
    fn check_tile2<const R: usize>(w: &[u8], tiles: &[u8], n: usize, a: &Q8KRows, first: usize) {
        let rb = a.blocks * BLOCK_BYTES;
        let tb = 8 * rb;
        for t in 0..n / 8 - 1 {
            let p0 = tiles[t * tb..].as_ptr();
            let p1 = tiles[(t + 1) * tb..].as_ptr();
            // SAFETY: the features are checked by the caller; each tile holds a.blocks blocks.
            let (got, want0, want1) = unsafe {
                (
                    tile2_dot_512::<R>(p0, p1, a, first),
                    tile_dot::<R>(p0, a, first),
                    tile_dot::<R>(p1, a, first),
                )
            };
            for r in 0..R {
                let g = lanes16(got[r]);
                let want: Vec<f32> = lanes(want0[r]).into_iter().chain(lanes(want1[r])).collect();
                for j in 0..16 {
                    assert_eq!(
                        g[j].to_bits(),
                        want[j].to_bits(),
                        "R={R} k={} tiles {t},{} lane {j} act {}: {} vs tile_dot {}",
                        a.blocks * QK_K,
                        t + 1,
                        first + r,
                        g[j],
                        want[j]
                    );
                    let row = &w[(8 * t + j) * rb..][..rb];
                    let reference = dot_reference(row, a, first + r) as f64;
                    let mag = dequantized_dot(row, a, first + r).1;
                    assert!((g[j] as f64 - reference).abs() <= 1e-5 * mag + 1e-6);
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn tile2_dot_512_equals_tile_dot() {
        if !has_avx512_vnni() {
            eprintln!("SKIPPED tile2_dot_512: no AVX-512 F/BW/VL/VNNI (+ AVX2, FMA, F16C)");
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(68);
        for blocks in [1, 2, 3, 5, 8] {
            let k = blocks * QK_K;
            // 3 tiles: pairs (0, 1) and (1, 2); the random blocks cycle through all fields.
            let n = 24;
            let w = random_blocks(&mut rng, n * blocks);
            let tiles = tile_matrix(&w, n, blocks);
            let m = 11;
            let x = random_activations(&mut rng, m, k);
            let mut a = Q8KRows::default();
            a.quantize(&x, m, k);
            check_tile2::<1>(&w, &tiles, n, &a, 1);
            check_tile2::<1>(&w, &tiles, n, &a, 10);
            check_tile2::<2>(&w, &tiles, n, &a, 3);
            check_tile2::<3>(&w, &tiles, n, &a, 2);
            check_tile2::<4>(&w, &tiles, n, &a, 5);
            check_tile2::<8>(&w, &tiles, n, &a, 1);
            check_tile2::<8>(&w, &tiles, n, &a, 3);
        }
    }

    /// The worst cases of [`tile_extremes_do_not_saturate_or_overflow`] through
    /// `tile2_dot_512`: q = 63 / 0, scales −128 / 127, activations −128 / 127, whole tiles of
    /// one case paired with a tile mixing the 8 cases per row (both orders); exact integers.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn tile2_extremes_do_not_overflow() {
        if !has_avx512_vnni() {
            eprintln!("SKIPPED tile2_dot_512: no AVX-512 F/BW/VL/VNNI (+ AVX2, FMA, F16C)");
            return;
        }
        let blocks = 2;
        let one = f16::from_f32(1.0).to_le_bytes();
        let block = |qbyte: u8, sc: i8| {
            let mut blk = vec![qbyte; BLOCK_BYTES];
            blk[SCALES..D].fill(sc as u8);
            blk[D..].copy_from_slice(&one);
            blk
        };
        let cases = [
            (0xFFu8, -128i8),
            (0xFF, 127),
            (0x00, -128),
            (0x00, 127),
            (0xFF, -128),
            (0x00, -128),
            (0xFF, 127),
            (0xFF, -128),
        ];
        for y in [-128i8, 127] {
            let m = 9;
            let a = Q8KRows {
                m,
                blocks,
                qs: vec![y; m * blocks * QK_K],
                d: vec![1.0; m * blocks],
                bsums: vec![16 * y as i16; m * blocks * 16],
            };
            for &c in &cases {
                for swap in [false, true] {
                    let mut rows = vec![c; 8];
                    rows.extend(cases);
                    if swap {
                        rows.rotate_left(8);
                    }
                    let mut w = Vec::new();
                    for &(qb, sc) in &rows {
                        w.extend(block(qb, sc).repeat(blocks));
                    }
                    let t = tile_matrix(&w, 16, blocks);
                    let t1 = t[8 * blocks * BLOCK_BYTES..].as_ptr();
                    // SAFETY: the features are checked above.
                    let mut got = unsafe { tile2_dot_512::<8>(t.as_ptr(), t1, &a, 1) }.to_vec();
                    got.extend(unsafe { tile2_dot_512::<1>(t.as_ptr(), t1, &a, 0) });
                    for (j, &(qb, sc)) in rows.iter().enumerate() {
                        let q = if qb == 0xFF { 63i64 } else { 0 };
                        let exact = (blocks * QK_K) as i64 * sc as i64 * (q - 32) * y as i64;
                        for v in &got {
                            assert_eq!(lanes16(*v)[j] as f64, exact as f64, "q={q} sc={sc} y={y}");
                        }
                    }
                }
            }
        }
    }
}
