//! Q5_0 weights (GGUF / ggml `block_q5_0`) against Q8_0 activations (`Q8Rows`, only `d`).
//!
//! Block of 32 values, 22 bytes: f16 scale `d` (bytes 0..2), the 32 fifth bits `qh` as a
//! little-endian u32 (bytes 2..6), 16 bytes of nibbles `qs` (bytes 6..22; value j < 16 in the
//! low nibble of `qs[j]`, value j + 16 in its high nibble). Value j = (q5_j − 16)·d with
//! q5_j = nibble | bit_j << 4 in 0..=31, so values are d·[−16, 15].
//!
//! The dot product is ggml's `vec_dot_q5_0_q8_0`: per block the integer Σ(q5 − 16)·y, times
//! d_w·d_a, summed. The AVX2 kernel forms each block's 32 signed weights in one register
//! without leaving 8 bits: the nibbles OR'd with 0xF0 where the fifth bit is clear, which is
//! nibble − 16 in two's complement (and the nibble itself where the bit is set, i.e.
//! nibble + 16 − 16). The fifth bits are spread to bytes by shuffle/and/cmpeq
//! (`q5_common::high_bit_mask`), not bit by bit. As the engine's Q4_0 / Q8_0 kernels do, the
//! weight's sign moves onto the activation (`sign_epi8`) so that `maddubs` (u8 × i8) sees |w|.

// Kernels index their per-row registers and arrays by row number: iterator forms of these
// loops measured slower (up to 20% at one row) where they kept the arrays out of registers.
#![allow(clippy::needless_range_loop)]

#[cfg(test)]
use super::q5_common::testing;
use super::q5_common::unpack;
use super::{f16_at, Q8Rows, BLOCK};

pub const BLOCK_VALUES: usize = 32;
pub const BLOCK_BYTES: usize = 22;

/// ggml's `dequantize_row_q5_0` for one block: out[j] = (q5_j − 16)·d.
pub fn dequantize_block(block: &[u8], out: &mut [f32]) {
    assert!(block.len() >= BLOCK_BYTES && out.len() == BLOCK_VALUES);
    let d = f16_at(block, 0);
    let q = unpack(&block[2..6], &block[6..22]);
    for (o, &q) in out.iter_mut().zip(&q) {
        *o = (q as i32 - 16) as f32 * d;
    }
}

/// One weight row · activation row r, as ggml's scalar `vec_dot_q5_0_q8_0`: per block the
/// exact integer Σ(q5 − 16)·y, then `sum += sumi · (d_w · d_a)` in f32.
pub fn dot_reference(row: &[u8], a: &Q8Rows, r: usize) -> f32 {
    debug_assert_eq!(row.len(), a.blocks * BLOCK_BYTES);
    let y = a.row_qs(r);
    let mut sum = 0f32;
    for (b, blk) in row.chunks_exact(BLOCK_BYTES).enumerate() {
        let q = unpack(&blk[2..6], &blk[6..22]);
        let y = &y[b * BLOCK..(b + 1) * BLOCK];
        let sumi: i32 = q
            .iter()
            .zip(y)
            .map(|(&q, &y)| (q as i32 - 16) * y as i32)
            .sum();
        sum += sumi as f32 * (f16_at(blk, 0) * a.scale(r, b));
    }
    sum
}

/// One weight row (`a.blocks` blocks at `row`) · activation rows `first..first + R`.
///
/// Per block, shared by the R rows: x = nibbles | (0xF0 where the fifth bit is clear), the
/// signed weights in [−16, 15], and |x|. Per row: `sign_epi8(y, x)` and `maddubs(|x|, ·)`;
/// then `q5_common::Acc` sums, scales and accumulates (per row for R < 4, all rows at once
/// for R = 4, 8). R = 1 alternates two accumulators so that consecutive blocks' FMAs do not
/// wait on each other.
///
/// Bounds: each byte product is |x|·|y| ≤ 16·127 = 2,032; `maddubs` adds two (4,064; i16
/// saturates at 32,767), and `Acc` at most 8 before widening to i32 (16,256). The sign trick
/// needs y ≠ −128 (negating −128 gives −128): Q8_0 quantization gives |y| ≤ 127
/// (round(x / (max|x|/127))), tested below.
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
    // Block-major scales: block b's R rows are adjacent at dp[b·m..].
    let dp = a.d.as_ptr().add(first);
    let high = _mm256_set1_epi8(0xF0u8 as i8);
    let block = |b: usize, acc: &mut Acc<R>| {
        let blk = row.add(b * BLOCK_BYTES);
        // d (and 3 f16s of junk) in one load-and-convert, lane 0 broadcast.
        let dw = _mm256_broadcastss_ps(f16x4_load::<0>(blk));
        let x = _mm256_or_si256(
            nibbles(blk.add(6)),
            _mm256_andnot_si256(high_bit_mask::<2>(blk), high),
        );
        let ax = _mm256_sign_epi8(x, x);
        let p: [__m256i; R] = std::array::from_fn(|r| {
            let y = _mm256_loadu_si256(qp[r].add(b * BLOCK) as *const __m256i);
            _mm256_maddubs_epi16(ax, _mm256_sign_epi8(y, x))
        });
        acc.add(dw, dp.add(b * m), &p);
    };
    let mut acc = Acc::<R>::new();
    if R == 1 {
        let mut odd = Acc::<R>::new();
        let mut b = 0;
        while b + 2 <= nb {
            block(b, &mut acc);
            block(b + 1, &mut odd);
            b += 2;
        }
        if b < nb {
            block(b, &mut acc);
        }
        acc.merge(&odd);
    } else {
        for b in 0..nb {
            block(b, &mut acc);
        }
    }
    acc.finish()
}

/// Bytes of one block of a tile of 8 rows: the 8 rows' f16 scales d (16 bytes), then
/// the 8 rows' quants in `q5_common::tile_q5`'s layout (160 bytes): exactly 8 · BLOCK_BYTES.
pub const TILE_BLOCK_BYTES: usize = 8 * BLOCK_BYTES;

/// Interleaves block b of 8 rows (each `BLOCK_BYTES`, GGUF layout) into one tile block
/// (`out`: `TILE_BLOCK_BYTES`): the 8 rows' f16 scales d (16 bytes), then the quants as
/// `q5_common::tile_q5` lays them out (4 chunks of 32 bytes, each with 4 values of each row
/// in the low 5 bits and 4 more values' low 3 bits in the top 3, and 32 bytes of the latter's
/// two top bits). Lossless: [`untile_block`] is its inverse.
pub fn tile_block(rows: [&[u8]; 8], out: &mut [u8]) {
    use super::q5_common::{tile_q5, TILE_QUANT_BYTES};
    assert!(out.len() >= TILE_BLOCK_BYTES);
    let mut q = [[0u8; 32]; 8];
    for (j, src) in rows.iter().enumerate() {
        out[2 * j..2 * j + 2].copy_from_slice(&src[0..2]);
        q[j] = unpack(&src[2..6], &src[6..6 + 16]);
    }
    tile_q5(&q, &mut out[16..16 + TILE_QUANT_BYTES]);
}

/// Row j's GGUF block (`out`: `BLOCK_BYTES`) back from a tile block.
pub fn untile_block(tile: &[u8], j: usize, out: &mut [u8]) {
    use super::q5_common::{pack, untile_q5};
    out[0..2].copy_from_slice(&tile[2 * j..2 * j + 2]);
    let q = untile_q5(&tile[16..], j);
    let (qh, qs) = out[2..6 + 16].split_at_mut(4);
    pack(&q, qh, qs);
}

/// The 8 rows of a tile (`a.blocks` tile blocks back to back at `tile`) dotted with
/// activation rows `first..first + R`: lane j of result r = weight row j · activation row
/// first + r.
///
/// Per block, shared by the R rows: the 8 scales in one F16C conversion and the quants
/// unpacked once to 8 registers of unsigned 5-bit values (`q5_common::tile_quants`). Per
/// row: 8 `maddubs` against broadcast groups of 4 activation values and the integer sums
/// Σq5·y of the 8 weight rows (`q5_common::tile_isum`); Q5_0's values are q5 − 16, so 16·Σy
/// (the activation block's exact sum, `Q8Rows::qsum`) is subtracted in i32: the same integer
/// Σ(q5 − 16)·y as ggml's, scaled by d_w · d_a. No sign trick, so any i8 activation (−128
/// included) is exact: |Σq5·y| ≤ 32·31·128, |16·Σy| ≤ 16·32·128.
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
    // Block-major: block b's R rows are adjacent at dp[b·m..], sump[b·m..].
    let (dp, sump) = (a.d.as_ptr().add(first), a.qsum.as_ptr().add(first));
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..nb {
        let blk = tile.add(b * TILE_BLOCK_BYTES);
        let dw = _mm256_cvtph_ps(_mm_loadu_si128(blk as *const __m128i));
        let w = tile_quants(blk.add(16));
        for r in 0..R {
            let p = isum(&w, qp[r].add(b * BLOCK));
            let p = _mm256_sub_epi32(p, _mm256_set1_epi32(16 * *sump.add(b * m + r)));
            let dd = _mm256_mul_ps(dw, _mm256_set1_ps(*dp.add(b * m + r)));
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), dd, acc[r]);
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use candle_core::quantized::k_quants::{BlockQ5_0, GgmlType};

    const F: Layout = Layout {
        bytes: BLOCK_BYTES,
        qh: 2,
        qs: 6,
        f16s: &[0],
    };

    /// Exact value of block b of the row, in f64: q5 − 16 and d (the dequantized value is
    /// exactly (q5 − 16)·d in f32 too: an 11-bit mantissa times a 5-bit integer).
    fn exact_dot(row: &[u8], a: &Q8Rows, r: usize) -> (f64, f64) {
        let ya = a.dequantize_row(r);
        let mut w = [0f32; 32];
        let (mut sum, mut abs) = (0f64, 0f64);
        for (b, blk) in row.chunks_exact(BLOCK_BYTES).enumerate() {
            dequantize_block(blk, &mut w);
            for j in 0..32 {
                let t = w[j] as f64 * ya[b * 32 + j] as f64;
                sum += t;
                abs += t.abs();
            }
        }
        (sum, abs)
    }

    #[test]
    fn dequantize_matches_candle() {
        let mut rng = rng(1);
        let data = random_row(&mut rng, &F, 200);
        let blocks: Vec<BlockQ5_0> = as_candle(&data, BLOCK_BYTES);
        let mut want = vec![0f32; 200 * 32];
        BlockQ5_0::to_float(&blocks, &mut want);
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
        // Every 5-bit value occurs.
        let mut seen = [false; 32];
        for blk in data.chunks_exact(BLOCK_BYTES) {
            for q in unpack(&blk[2..6], &blk[6..22]) {
                seen[q as usize] = true;
            }
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn reference_matches_exact() {
        let mut rng = rng(2);
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
            }
        }
    }

    #[test]
    fn avx2_matches_reference() {
        if !has_avx2() {
            return;
        }
        let mut rng = rng(3);
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

    /// The sign trick's and the integer sums' worst cases: every weight −16 (all-zero quant
    /// bytes: |x| = 16, the largest magnitude) or 15 (all 0xFF), against activation rows of
    /// all +127 or all −127 (the largest |y| Q8_0 quantization produces), neighbours of equal
    /// and of opposite sign, for every R: each `maddubs` pair is ±2·16·127 = ±4,064 and each
    /// sum `Acc` packs back to i16 at most ±8·16·127 = ±16,256; no saturation, and the
    /// results are exact. Also: Q8_0 quantization never gives −128, on inputs built to push
    /// round(x/d) past −127.
    #[test]
    fn worst_case_no_saturation() {
        if !has_avx2() {
            return;
        }
        let nb = 3;
        for (qbyte, w) in [(0x00u8, -16i32), (0xFF, 15)] {
            let mut blk = [qbyte; BLOCK_BYTES];
            blk[..2].copy_from_slice(&half::f16::from_f32(1.0).to_le_bytes());
            let row: Vec<u8> = blk.repeat(nb);
            let ys = extreme_rows(false);
            let a = fixed_q8(&ys, nb, 1.0);
            for r in 0..ys.len() {
                let want = (nb as i32 * 32 * w * ys[r] as i32) as f32;
                assert_eq!(dot_reference(&row, &a, r), want);
            }
            for rr in [1, 2, 3, 4, 8] {
                let first = ys.len() - rr;
                let mut out = vec![0f32; rr];
                unsafe { run_r(row.as_ptr(), &a, first, &mut out) };
                for (t, &got) in out.iter().enumerate() {
                    let want = (nb as i32 * 32 * w * ys[first + t] as i32) as f32;
                    assert_eq!(got, want, "R {rr} row {}", first + t);
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
        let mut rng = rng(4);
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

    /// The tile kernel's worst cases: every quant 31 (all 0xFF: value 15) or 0 (all 0x00:
    /// value −16), against rows of all −128 (beyond what Q8_0 gives; no sign trick here, so
    /// exact) or +127, for every R: each `maddubs` pair at most 2·31·128 = 7,936, each 16-bit
    /// sum of 4 at most 31,744; exact results.
    #[test]
    fn tile_worst_case_no_saturation() {
        if !has_avx2() {
            return;
        }
        let nb = 3;
        for (qbyte, w) in [(0xFFu8, 15i32), (0x00, -16)] {
            let mut blk = [qbyte; BLOCK_BYTES];
            blk[..2].copy_from_slice(&half::f16::from_f32(1.0).to_le_bytes());
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
            for rr in [1, 2, 3, 4, 8] {
                let first = ys.len() - rr;
                let mut outs = vec![unsafe { run_tile(t.as_ptr(), &a, first, rr) }];
                if has_vnni() {
                    outs.push(unsafe { run_tile_vnni(t.as_ptr(), &a, first, rr) });
                }
                for (r, l) in outs.iter().flat_map(|o| o.iter().enumerate()) {
                    let want = (nb as i32 * 32 * w * ys[first + r] as i32) as f32;
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
