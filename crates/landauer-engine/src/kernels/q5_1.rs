//! Q5_1 weights (GGUF / ggml `block_q5_1`) against Q8_1 activations (`Q8Rows`, `d` and `s`).
//!
//! Block of 32 values, 24 bytes: f16 scale `d` (bytes 0..2), f16 minimum `m` (2..4), the 32
//! fifth bits `qh` as a little-endian u32 (4..8), 16 bytes of nibbles `qs` (8..24; value
//! j < 16 in the low nibble of `qs[j]`, value j + 16 in its high nibble). Value j =
//! q5_j·d + m with q5_j = nibble | bit_j << 4 in 0..=31.
//!
//! The dot product is ggml's `vec_dot_q5_1_q8_1`: per block d_w·d_a·Σq5·y + m_w·s_a, where
//! s_a = d_a·Σy is the Q8_1 block's precomputed (f16-rounded) sum, so the minimum costs one
//! multiply-add per block and row instead of touching the 32 values. The quants are unsigned,
//! so the AVX2 kernel feeds them to `maddubs` (u8 × i8) as they are: nibbles OR'd with 0x10
//! where the fifth bit is set, the bits spread to bytes by shuffle/and/cmpeq
//! (`q5_common::high_bit_mask`), no sign trick needed.

// Kernels index their per-row registers and arrays by row number: iterator forms of these
// loops measured slower (up to 20% at one row) where they kept the arrays out of registers.
#![allow(clippy::needless_range_loop)]

#[cfg(test)]
use super::q5_common::testing;
use super::q5_common::unpack;
use super::{f16_at, Q8Rows, BLOCK};

pub const BLOCK_VALUES: usize = 32;
pub const BLOCK_BYTES: usize = 24;

/// ggml's `dequantize_row_q5_1` for one block: out[j] = q5_j·d + m.
pub fn dequantize_block(block: &[u8], out: &mut [f32]) {
    assert!(block.len() >= BLOCK_BYTES && out.len() == BLOCK_VALUES);
    let (d, m) = (f16_at(block, 0), f16_at(block, 2));
    let q = unpack(&block[4..8], &block[8..24]);
    for (o, &q) in out.iter_mut().zip(&q) {
        *o = q as f32 * d + m;
    }
}

/// One weight row · activation row r, as ggml's scalar `vec_dot_q5_1_q8_1`: per block the
/// exact integer Σq5·y, then `sum += sumi · (d_w · d_a) + m_w · s_a` in f32.
pub fn dot_reference(row: &[u8], a: &Q8Rows, r: usize) -> f32 {
    debug_assert_eq!(row.len(), a.blocks * BLOCK_BYTES);
    let y = a.row_qs(r);
    let mut sum = 0f32;
    for (b, blk) in row.chunks_exact(BLOCK_BYTES).enumerate() {
        let q = unpack(&blk[4..8], &blk[8..24]);
        let y = &y[b * BLOCK..(b + 1) * BLOCK];
        let sumi: i32 = q.iter().zip(y).map(|(&q, &y)| q as i32 * y as i32).sum();
        sum += sumi as f32 * (f16_at(blk, 0) * a.scale(r, b)) + f16_at(blk, 2) * a.sum_scale(r, b);
    }
    sum
}

/// One weight row (`a.blocks` blocks at `row`) · activation rows `first..first + R`.
///
/// Per block, shared by the R rows: the 32 quants x = nibbles | (0x10 where the fifth bit is
/// set), and d_w, m_w through one F16C conversion straight from memory. Per row:
/// `maddubs(x, y)`; then `q5_common::Acc` sums, scales and accumulates (per row for R < 4,
/// all rows at once for R = 4, 8). m_w·s_a goes into a scalar per row (one FMA per block,
/// off the vector chain), or for R = 4 and 8 one vector FMA per 4 rows (s_a of adjacent rows
/// is adjacent). R = 1 alternates two sets of accumulators so that consecutive blocks' FMAs
/// do not wait on each other.
///
/// Bounds: each byte product is x·|y| ≤ 31·128 = 3,968, whatever the i8 activation (−128
/// included); `maddubs` adds two (7,936; i16 saturates at 32,767), and `Acc` at most 8
/// before widening to i32 (31,744).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; `row` must point to `a.blocks · BLOCK_BYTES`
/// readable bytes and `first + R <= a.m`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_avx2<const R: usize>(row: *const u8, a: &Q8Rows, first: usize) -> [f32; R] {
    use super::q5_common::{f16x4_load, high_bit_mask, nibbles, Acc};
    use std::arch::x86_64::*;
    debug_assert!(first + R <= a.m);
    let (nb, m) = (a.blocks, a.m);
    let qp: [*const i8; R] = std::array::from_fn(|r| a.qs.as_ptr().add((first + r) * nb * BLOCK));
    // Block-major scales: block b's R rows are adjacent at dp[b·m..], sp[b·m..].
    let (dp, sp) = (a.d.as_ptr().add(first), a.s.as_ptr().add(first));
    let bit4 = _mm256_set1_epi8(0x10);
    // m_w·s_a: 4 rows a vector in `mv` when R is a multiple of 4 (at most 8), else per row
    // in `ms`.
    let vec_m = R.is_multiple_of(4) && R <= 8;
    let block = |b: usize, acc: &mut Acc<R>, ms: &mut [f32; R], mv: &mut [__m128; 2]| {
        let blk = row.add(b * BLOCK_BYTES);
        // d, m (and 2 f16s of junk) in one load-and-convert.
        let dm = f16x4_load::<0>(blk);
        let dw = _mm256_broadcastss_ps(dm);
        let x = _mm256_or_si256(
            nibbles(blk.add(8)),
            _mm256_and_si256(high_bit_mask::<4>(blk), bit4),
        );
        let p: [__m256i; R] = std::array::from_fn(|r| {
            let y = _mm256_loadu_si256(qp[r].add(b * BLOCK) as *const __m256i);
            _mm256_maddubs_epi16(x, y)
        });
        acc.add(dw, dp.add(b * m), &p);
        if vec_m {
            let mw = _mm_permute_ps::<0b01_01_01_01>(dm);
            for (c, v) in mv.iter_mut().enumerate().take(R / 4) {
                *v = _mm_fmadd_ps(mw, _mm_loadu_ps(sp.add(b * m + 4 * c)), *v);
            }
        } else {
            let mw = _mm_cvtss_f32(_mm_movehdup_ps(dm));
            for r in 0..R {
                ms[r] = mw.mul_add(*sp.add(b * m + r), ms[r]);
            }
        }
    };
    let mut acc = Acc::<R>::new();
    let mut ms = [0f32; R];
    let mut mv = [_mm_setzero_ps(); 2];
    if R == 1 {
        let (mut acc2, mut ms2) = (Acc::<R>::new(), [0f32; R]);
        let mut b = 0;
        while b + 2 <= nb {
            block(b, &mut acc, &mut ms, &mut mv);
            block(b + 1, &mut acc2, &mut ms2, &mut mv);
            b += 2;
        }
        if b < nb {
            block(b, &mut acc, &mut ms, &mut mv);
        }
        acc.merge(&acc2);
        ms[0] += ms2[0];
    } else {
        for b in 0..nb {
            block(b, &mut acc, &mut ms, &mut mv);
        }
    }
    if vec_m {
        let mut lanes = [0f32; 8];
        _mm_storeu_ps(lanes.as_mut_ptr(), mv[0]);
        _mm_storeu_ps(lanes.as_mut_ptr().add(4), mv[1]);
        ms.copy_from_slice(&lanes[..R]);
    }
    let dots = acc.finish();
    std::array::from_fn(|r| dots[r] + ms[r])
}

/// Bytes of one block of a tile of 8 rows: the 8 rows' f16 scales d (16 bytes), their 8 f16 minima m (16 bytes), then
/// the 8 rows' quants in `q5_common::tile_q5`'s layout (160 bytes): exactly 8 · BLOCK_BYTES.
pub const TILE_BLOCK_BYTES: usize = 8 * BLOCK_BYTES;

/// Interleaves block b of 8 rows (each `BLOCK_BYTES`, GGUF layout) into one tile block
/// (`out`: `TILE_BLOCK_BYTES`): the 8 rows' f16 scales d (16 bytes), their 8 f16 minima m (16 bytes), then the quants as
/// `q5_common::tile_q5` lays them out (4 chunks of 32 bytes, each with 4 values of each row
/// in the low 5 bits and 4 more values' low 3 bits in the top 3, and 32 bytes of the latter's
/// two top bits). Lossless: [`untile_block`] is its inverse.
pub fn tile_block(rows: [&[u8]; 8], out: &mut [u8]) {
    use super::q5_common::{tile_q5, TILE_QUANT_BYTES};
    assert!(out.len() >= TILE_BLOCK_BYTES);
    let mut q = [[0u8; 32]; 8];
    for (j, src) in rows.iter().enumerate() {
        out[2 * j..2 * j + 2].copy_from_slice(&src[0..2]);
        out[16 + 2 * j..18 + 2 * j].copy_from_slice(&src[2..4]);
        q[j] = unpack(&src[4..8], &src[8..8 + 16]);
    }
    tile_q5(&q, &mut out[32..32 + TILE_QUANT_BYTES]);
}

/// Row j's GGUF block (`out`: `BLOCK_BYTES`) back from a tile block.
pub fn untile_block(tile: &[u8], j: usize, out: &mut [u8]) {
    use super::q5_common::{pack, untile_q5};
    out[0..2].copy_from_slice(&tile[2 * j..2 * j + 2]);
    out[2..4].copy_from_slice(&tile[16 + 2 * j..18 + 2 * j]);
    let q = untile_q5(&tile[32..], j);
    let (qh, qs) = out[4..8 + 16].split_at_mut(4);
    pack(&q, qh, qs);
}

/// The 8 rows of a tile (`a.blocks` tile blocks back to back at `tile`) dotted with
/// activation rows `first..first + R`: lane j of result r = weight row j · activation row
/// first + r.
///
/// Per block, shared by the R rows: the 8 scales and 8 minima in two F16C conversions and
/// the quants unpacked once to 8 registers of unsigned 5-bit values
/// (`q5_common::tile_quants`). Per row: 8 `maddubs` against broadcast groups of 4 activation
/// values give the integer sums Σq5·y of the 8 weight rows (`q5_common::tile_isum`), scaled
/// by d_w · d_a; m_w · s_a goes to a second accumulator (off the first one's FMA chain).
/// Any i8 activation (−128 included) is exact: see `tile_isum`'s bounds.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; `tile` must point to `a.blocks · TILE_BLOCK_BYTES`
/// readable bytes and `first + R <= a.m`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn tile_dot<const R: usize>(
    tile: *const u8,
    a: &Q8Rows,
    first: usize,
) -> [std::arch::x86_64::__m256; R] {
    tile_body::<R>(tile, a, first, |w, y| super::q5_common::tile_isum(w, y))
}

/// [`tile_dot`] with AVX-VNNI (`dpbusd` in place of `maddubs` + 16-bit sums + `madd`).
///
/// # Safety
/// As [`tile_dot`], and the CPU must support AVX-VNNI.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
pub unsafe fn tile_dot_vnni<const R: usize>(
    tile: *const u8,
    a: &Q8Rows,
    first: usize,
) -> [std::arch::x86_64::__m256; R] {
    tile_body::<R>(tile, a, first, |w, y| {
        super::q5_common::tile_isum_vnni(w, y)
    })
}

/// [`tile_dot`]'s body, with the integer sums of one block by `isum`.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_body<const R: usize>(
    tile: *const u8,
    a: &Q8Rows,
    first: usize,
    isum: impl Fn(&[std::arch::x86_64::__m256i; 8], *const i8) -> std::arch::x86_64::__m256i,
) -> [std::arch::x86_64::__m256; R] {
    use super::q5_common::tile_quants;
    use std::arch::x86_64::*;
    debug_assert!(first + R <= a.m);
    let (m, nb) = (a.m, a.blocks);
    let qp: [*const i8; R] = std::array::from_fn(|r| a.qs.as_ptr().add((first + r) * nb * BLOCK));
    // Block-major: block b's R rows are adjacent at dp[b·m..], sp[b·m..].
    let (dp, sp) = (a.d.as_ptr().add(first), a.s.as_ptr().add(first));
    let mut acc = [_mm256_setzero_ps(); R];
    let mut accm = [_mm256_setzero_ps(); R];
    for b in 0..nb {
        let blk = tile.add(b * TILE_BLOCK_BYTES);
        let dw = _mm256_cvtph_ps(_mm_loadu_si128(blk as *const __m128i));
        let mw = _mm256_cvtph_ps(_mm_loadu_si128(blk.add(16) as *const __m128i));
        let w = tile_quants(blk.add(32));
        for r in 0..R {
            let p = isum(&w, qp[r].add(b * BLOCK));
            let dd = _mm256_mul_ps(dw, _mm256_set1_ps(*dp.add(b * m + r)));
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), dd, acc[r]);
            accm[r] = _mm256_fmadd_ps(mw, _mm256_set1_ps(*sp.add(b * m + r)), accm[r]);
        }
    }
    std::array::from_fn(|r| _mm256_add_ps(acc[r], accm[r]))
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use candle_core::quantized::k_quants::{BlockQ5_1, GgmlType};

    const F: Layout = Layout {
        bytes: BLOCK_BYTES,
        qh: 4,
        qs: 8,
        f16s: &[0, 2],
    };

    /// ggml's arithmetic done exactly in f64: Σ q5·d_w·y·d_a + Σ_b m_w·s_a (with the Q8_1
    /// block sum s_a as stored: f16-rounded d_a·Σy, which is what ggml multiplies m_w by);
    /// and Σ|terms|.
    fn exact_dot(row: &[u8], a: &Q8Rows, r: usize) -> (f64, f64) {
        let ya = a.dequantize_row(r);
        let (mut sum, mut abs) = (0f64, 0f64);
        for (b, blk) in row.chunks_exact(BLOCK_BYTES).enumerate() {
            let (d, mw) = (f16_at(blk, 0) as f64, f16_at(blk, 2) as f64);
            let q = unpack(&blk[4..8], &blk[8..24]);
            for j in 0..32 {
                let t = q[j] as f64 * d * ya[b * 32 + j] as f64;
                sum += t;
                abs += t.abs();
            }
            let t = mw * a.sum_scale(r, b) as f64;
            sum += t;
            abs += t.abs();
        }
        (sum, abs)
    }

    #[test]
    fn dequantize_matches_candle() {
        let mut rng = rng(11);
        let data = random_row(&mut rng, &F, 200);
        let blocks: Vec<BlockQ5_1> = as_candle(&data, BLOCK_BYTES);
        let mut want = vec![0f32; 200 * 32];
        BlockQ5_1::to_float(&blocks, &mut want);
        let mut got = vec![0f32; 32];
        for (b, blk) in data.chunks_exact(BLOCK_BYTES).enumerate() {
            dequantize_block(blk, &mut got);
            for j in 0..32 {
                assert_eq!(
                    got[j].to_bits(),
                    want[b * 32 + j].to_bits(),
                    "block {b} value {j}"
                );
            }
        }
        let mut seen = [false; 32];
        for blk in data.chunks_exact(BLOCK_BYTES) {
            for q in unpack(&blk[4..8], &blk[8..24]) {
                seen[q as usize] = true;
            }
        }
        assert!(seen.iter().all(|&s| s));
    }

    /// `dot_reference` against ggml's arithmetic done exactly, and that arithmetic against
    /// the dequantized weights times the dequantized activations: they differ by exactly
    /// Σ_b m_w·(s_a − d_a·Σy) (Q8_1's f16 rounding of s), nothing else.
    #[test]
    fn reference_matches_exact() {
        let mut rng = rng(12);
        for nb in [1, 2, 3, 5, 64] {
            let m = 3;
            let data = random_row(&mut rng, &F, nb);
            let a = random_q8(&mut rng, m, nb);
            for r in 0..m {
                let (exact, abs) = exact_dot(&data, &a, r);
                let got = dot_reference(&data, &a, r) as f64;
                assert!(
                    (got - exact).abs() <= 1e-5 * abs + 1e-30,
                    "{nb} {r}: {got} vs {exact}"
                );

                let ya = a.dequantize_row(r);
                let qs = a.row_qs(r);
                let mut w = [0f32; 32];
                let (mut deq, mut s_err) = (0f64, 0f64);
                for (b, blk) in data.chunks_exact(BLOCK_BYTES).enumerate() {
                    dequantize_block(blk, &mut w);
                    for j in 0..32 {
                        deq += w[j] as f64 * ya[b * 32 + j] as f64;
                    }
                    let sy: i32 = qs[b * 32..(b + 1) * 32].iter().map(|&q| q as i32).sum();
                    let da = a.scale(r, b) as f64;
                    s_err += f16_at(blk, 2) as f64 * (a.sum_scale(r, b) as f64 - da * sy as f64);
                }
                // f32 rounding of q·d + m: ≤ 2^-24 of each |w|·|a|, well inside 1e-5·abs.
                assert!(
                    (exact - s_err - deq).abs() <= 1e-5 * abs + 1e-30,
                    "{nb} {r}: {exact} − {s_err} vs {deq}"
                );
            }
        }
    }

    #[test]
    fn avx2_matches_reference() {
        if !has_avx2() {
            return;
        }
        let mut rng = rng(13);
        for nb in [1, 2, 3, 5, 48, 64] {
            let m = 11;
            let data = random_row(&mut rng, &F, nb);
            let a = random_q8(&mut rng, m, nb);
            check_all_r(
                &data,
                &a,
                |r| (dot_reference(&data, &a, r), exact_dot(&data, &a, r).1),
                |row, a, first, out| unsafe { run_r(row, a, first, out) },
            );
        }
    }

    /// `dot_avx2::<R>` for R = out.len() (1, 2, 3, 4 or 8).
    unsafe fn run_r(row: *const u8, a: &Q8Rows, first: usize, out: &mut [f32]) {
        match out.len() {
            1 => out.copy_from_slice(&dot_avx2::<1>(row, a, first)),
            2 => out.copy_from_slice(&dot_avx2::<2>(row, a, first)),
            3 => out.copy_from_slice(&dot_avx2::<3>(row, a, first)),
            4 => out.copy_from_slice(&dot_avx2::<4>(row, a, first)),
            8 => out.copy_from_slice(&dot_avx2::<8>(row, a, first)),
            _ => unreachable!(),
        }
    }

    /// The integer sums' worst cases: every quant 31 (all quant and high-bit bytes 0xFF) or 0
    /// (all 0x00), against activation rows of all −128 (beyond what Q8_1 quantization gives)
    /// or all +127, neighbours of equal and of opposite sign, for every R: each `maddubs`
    /// pair is at most 2·31·128 = 7,936 in magnitude and each sum `Acc` packs back to i16 at
    /// most 8·31·128 = 31,744; no saturation, and the results are exact.
    #[test]
    fn worst_case_no_saturation() {
        if !has_avx2() {
            return;
        }
        let nb = 3;
        for (qbyte, w) in [(0xFFu8, 31i32), (0x00, 0)] {
            let mut blk = [qbyte; BLOCK_BYTES];
            blk[..2].copy_from_slice(&half::f16::from_f32(1.0).to_le_bytes());
            blk[2..4].copy_from_slice(&half::f16::from_f32(0.5).to_le_bytes());
            let row: Vec<u8> = blk.repeat(nb);
            let ys = extreme_rows(true);
            let a = fixed_q8(&ys, nb, 1.0);
            // s = 32·y exactly (f16 holds −4096 and 4064); m·s = 16·y per block.
            let want = |y: i8| (nb as i32 * (32 * w * y as i32 + 16 * y as i32)) as f32;
            for r in 0..ys.len() {
                assert_eq!(dot_reference(&row, &a, r), want(ys[r]));
            }
            for rr in [1, 2, 3, 4, 8] {
                let first = ys.len() - rr;
                let mut out = vec![0f32; rr];
                unsafe { run_r(row.as_ptr(), &a, first, &mut out) };
                for (t, &got) in out.iter().enumerate() {
                    assert_eq!(got, want(ys[first + t]), "R {rr} row {}", first + t);
                }
            }
        }
        assert_q8_never_minus_128();
    }

    /// `tile_dot_vnni::<R>` as lanes, R = rr.
    unsafe fn run_tile_vnni(t: *const u8, a: &Q8Rows, first: usize, rr: usize) -> Vec<[f32; 8]> {
        match rr {
            1 => lanes(tile_dot_vnni::<1>(t, a, first)),
            2 => lanes(tile_dot_vnni::<2>(t, a, first)),
            3 => lanes(tile_dot_vnni::<3>(t, a, first)),
            4 => lanes(tile_dot_vnni::<4>(t, a, first)),
            8 => lanes(tile_dot_vnni::<8>(t, a, first)),
            _ => unreachable!(),
        }
    }

    fn has_vnni() -> bool {
        let ok = has_avx2() && is_x86_feature_detected!("avxvnni");
        if !ok {
            println!("note: no AVX-VNNI here, tile_dot_vnni not tested");
        }
        ok
    }

    /// `tile_dot::<R>` as lanes, R = rr.
    unsafe fn run_tile(t: *const u8, a: &Q8Rows, first: usize, rr: usize) -> Vec<[f32; 8]> {
        match rr {
            1 => lanes(tile_dot::<1>(t, a, first)),
            2 => lanes(tile_dot::<2>(t, a, first)),
            3 => lanes(tile_dot::<3>(t, a, first)),
            4 => lanes(tile_dot::<4>(t, a, first)),
            8 => lanes(tile_dot::<8>(t, a, first)),
            _ => unreachable!(),
        }
    }

    /// Tiling round-trips (every byte value of qh and qs: random, all-0x00, all-0xFF blocks),
    /// and lane j of `tile_dot::<R>` equals `dot_reference` of row j, for every R, ragged k.
    #[test]
    fn tile_matches_reference() {
        let mut rng = rng(14);
        for nb in [1, 2, 3, 5, 8, 64] {
            let rows: Vec<Vec<u8>> = (0..8).map(|_| random_row(&mut rng, &F, nb)).collect();
            let t = tile_rows(
                &rows,
                BLOCK_BYTES,
                TILE_BLOCK_BYTES,
                tile_block,
                untile_block,
            );
            if !has_avx2() {
                continue;
            }
            let a = random_q8(&mut rng, 11, nb);
            check_tile_all_r(
                &t,
                &a,
                |j, r| (dot_reference(&rows[j], &a, r), exact_dot(&rows[j], &a, r).1),
                |t, a, first, rr| unsafe { run_tile(t, a, first, rr) },
            );
            if has_vnni() {
                check_tile_all_r(
                    &t,
                    &a,
                    |j, r| (dot_reference(&rows[j], &a, r), exact_dot(&rows[j], &a, r).1),
                    |t, a, first, rr| unsafe { run_tile_vnni(t, a, first, rr) },
                );
            }
        }
    }

    /// The tile kernel's worst cases: every quant 31 (all 0xFF) or 0 (all 0x00), against
    /// rows of all −128 (beyond what Q8_1 gives) or +127, for every R: each `maddubs` pair at
    /// most 2·31·128 = 7,936, each 16-bit sum of 4 at most 31,744; exact results.
    #[test]
    fn tile_worst_case_no_saturation() {
        if !has_avx2() {
            return;
        }
        let nb = 3;
        for (qbyte, w) in [(0xFFu8, 31i32), (0x00, 0)] {
            let mut blk = [qbyte; BLOCK_BYTES];
            blk[..2].copy_from_slice(&half::f16::from_f32(1.0).to_le_bytes());
            blk[2..4].copy_from_slice(&half::f16::from_f32(0.5).to_le_bytes());
            let row: Vec<u8> = blk.repeat(nb);
            let rows = vec![row.clone(); 8];
            let t = tile_rows(
                &rows,
                BLOCK_BYTES,
                TILE_BLOCK_BYTES,
                tile_block,
                untile_block,
            );
            let ys = extreme_rows(true);
            let a = fixed_q8(&ys, nb, 1.0);
            let want = |y: i8| (nb as i32 * (32 * w * y as i32 + 16 * y as i32)) as f32;
            for rr in [1, 2, 3, 4, 8] {
                let first = ys.len() - rr;
                let mut outs = vec![unsafe { run_tile(t.as_ptr(), &a, first, rr) }];
                if has_vnni() {
                    outs.push(unsafe { run_tile_vnni(t.as_ptr(), &a, first, rr) });
                }
                for (r, l) in outs.iter().flat_map(|o| o.iter().enumerate()) {
                    let want = want(ys[first + r]);
                    assert_eq!(dot_reference(&row, &a, first + r), want);
                    assert!(
                        l.iter().all(|&g| g == want),
                        "R {rr} row {}: {l:?} vs {want}",
                        first + r
                    );
                }
            }
        }
    }
}
