//! AVX2 + FMA + F16C dot products (x86-64), chosen at run time by `detected_isa`.
//!
//! Two layouts. Weights in GGUF's row layout: one weight block is loaded and unpacked to 32
//! bytes once, then multiplied into each of up to eight activation rows: `maddubs` (u8 × i8 →
//! pairs of i16), `madd` with ones (→ 8 × i32), converted to f32 and accumulated with the
//! block's scale product, as ggml's AVX2 kernels do for one row. Weights in tiles of 8 rows
//! (`QWeights::tiled`, Q4_1 and Q8_0): one register holds 4 values of each of the 8 rows, so
//! each `maddubs` serves 8 rows and one conversion and scale serve the block's 8 outputs.
//! Signed formats (Q4_0 after subtracting 8, Q8_0) move the weight's sign onto the activation
//! so that `maddubs` sees |w| as unsigned.

use super::{Activations, Format, Q8Rows, QWeights, BLOCK, TILE_ROWS};
use std::arch::x86_64::*;
use std::ops::Range;

const Q4_0: u8 = 0;
const Q4_1: u8 = 1;
const Q8_0: u8 = 2;

/// Weight rows `range` of `w` against every activation row of `a`, into `out` (a.m × w.n).
///
/// # Safety
/// The CPU must support the kernels of `isa` (AVX2, FMA and F16C; AVX-VNNI; AVX-512);
/// `range.end <= w.n`,
/// `a.k == w.k` with `a` prepared for `w.format`, and `out` must point to a.m × w.n writable
/// values.
pub(super) unsafe fn rows(
    w: &QWeights,
    range: Range<usize>,
    a: &Activations,
    out: *mut f32,
    isa: super::Isa,
) {
    let vnni = isa >= super::Isa::AvxVnni;
    let avx512 = isa >= super::Isa::Avx512Vnni;
    match w.format {
        Format::Q4_0 if w.tiled && vnni => tiles_q4_0_vnni(w, range, &a.q8, out),
        Format::Q4_0 if w.tiled => tiles_q4_0(w, range, &a.q8, out),
        Format::Q4_1 if w.tiled && vnni => tiles_q4_1_vnni(w, range, &a.q8, out),
        Format::Q4_1 if w.tiled => tiles_q4_1(w, range, &a.q8, out),
        Format::Q8_0 if w.tiled && vnni => tiles_q8_0_vnni(w, range, &a.q8, out),
        Format::Q8_0 if w.tiled => tiles_q8_0(w, range, &a.q8, out),
        Format::Q4K if w.tiled && vnni => tiles_q4_k_vnni(w, range, &a.q8k, out),
        Format::Q4K if w.tiled => tiles_q4_k(w, range, &a.q8k, out),
        Format::Q6K if w.tiled && avx512 => tiles_q6_k_512(w, range, &a.q8k, out),
        Format::Q6K if w.tiled && vnni => tiles_q6_k_vnni(w, range, &a.q8k, out),
        Format::Q5K if w.tiled && avx512 => tiles_q5_k_512(w, range, &a.q8k, out),
        Format::Q5K if w.tiled && vnni => tiles_q5_k_vnni(w, range, &a.q8k, out),
        Format::Q5K if w.tiled => tiles_q5_k(w, range, &a.q8k, out),
        Format::Q6K if w.tiled => tiles_q6_k(w, range, &a.q8k, out),
        Format::Q5_0 if w.tiled && vnni => tiles_q5_0_vnni(w, range, &a.q8, out),
        Format::Q5_0 if w.tiled => tiles_q5_0(w, range, &a.q8, out),
        Format::Q5_1 if w.tiled && vnni => tiles_q5_1_vnni(w, range, &a.q8, out),
        Format::Q5_1 if w.tiled => tiles_q5_1(w, range, &a.q8, out),
        Format::Q4_0 => rows_q4_0(w, range, &a.q8, out),
        Format::Q4_1 => rows_q4_1(w, range, &a.q8, out),
        Format::Q8_0 => rows_q8_0(w, range, &a.q8, out),
        Format::Q5_0 => rows_q5_0(w, range, &a.q8, out),
        Format::Q5_1 => rows_q5_1(w, range, &a.q8, out),
        Format::Q2K => rows_q2_k(w, range, &a.q8k, out),
        Format::Q3K => rows_q3_k(w, range, &a.q8k, out),
        Format::Q4K => rows_q4_k(w, range, &a.q8k, out),
        Format::Q5K => rows_q5_k(w, range, &a.q8k, out),
        Format::Q6K => rows_q6_k(w, range, &a.q8k, out),
        Format::F16 => rows_f16(w, range, &a.f32, out),
        Format::BF16 => rows_bf16(w, range, &a.f32, out),
        Format::F32 => rows_f32(w, range, &a.f32, out),
    }
}

/// Weight rows in GGUF's row layout against every activation row, for the formats whose
/// dot products live in their own files (`dot_avx2::<R>`: one weight row against R activation
/// rows, each block unpacked once for all R). Activation rows go in cache-sized groups, as in
/// `rows_f`. One function per format, so that profiles name the format.
macro_rules! row_kernel {
    ($name:ident, $act:ty, $($dot:ident)::+) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $name(w: &QWeights, range: Range<usize>, a: &$act, out: *mut f32) {
            let (m, n, rb) = (a.m, w.n, w.row_bytes());
            let store = |j: usize, i: usize, v: &[f32]| {
                for (t, &x) in v.iter().enumerate() {
                    *out.add((i + t) * n + j) = x;
                }
            };
            const GROUP: usize = 64;
            let mut i0 = 0;
            while i0 < m {
                let i1 = (i0 + GROUP).min(m);
                for j in range.clone() {
                    let row = w.data.as_ptr().add(j * rb);
                    let mut i = i0;
                    while i + 8 <= i1 {
                        store(j, i, &$($dot)::+::<8>(row, a, i));
                        i += 8;
                    }
                    while i + 4 <= i1 {
                        store(j, i, &$($dot)::+::<4>(row, a, i));
                        i += 4;
                    }
                    match i1 - i {
                        1 => store(j, i, &$($dot)::+::<1>(row, a, i)),
                        2 => store(j, i, &$($dot)::+::<2>(row, a, i)),
                        3 => store(j, i, &$($dot)::+::<3>(row, a, i)),
                        _ => {}
                    }
                }
                i0 = i1;
            }
        }
    };
}

/// Weight rows `range` (whole tiles) of tiled weights whose tile kernels live in their
/// format's file (`tile_dot::<R>`: the 8 rows of a tile against R activation rows, lane j of
/// result r = weight row j · activation row first + r), against every activation row;
/// activation rows in cache-sized groups, as in `tiles_f`. One function per format, so that
/// profiles name it.
macro_rules! tile_kernel {
    ($name:ident, $act:ty, $($dot:ident)::+) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $name(w: &QWeights, range: Range<usize>, a: &$act, out: *mut f32) {
            debug_assert!(range.start % TILE_ROWS == 0 && range.end % TILE_ROWS == 0);
            let (m, n) = (a.m, w.n);
            let tile_bytes = w.k / w.format.block_values() * w.format.tile_block_bytes();
            const GROUP: usize = 64;
            let mut i0 = 0;
            while i0 < m {
                let i1 = (i0 + GROUP).min(m);
                for t in range.start / TILE_ROWS..range.end / TILE_ROWS {
                    let tile = w.data.as_ptr().add(t * tile_bytes);
                    let at = out.add(t * TILE_ROWS);
                    let mut i = i0;
                    while i + 8 <= i1 {
                        store_tile(at, n, i, &$($dot)::+::<8>(tile, a, i));
                        i += 8;
                    }
                    while i + 4 <= i1 {
                        store_tile(at, n, i, &$($dot)::+::<4>(tile, a, i));
                        i += 4;
                    }
                    match i1 - i {
                        1 => store_tile(at, n, i, &$($dot)::+::<1>(tile, a, i)),
                        2 => store_tile(at, n, i, &$($dot)::+::<2>(tile, a, i)),
                        3 => store_tile(at, n, i, &$($dot)::+::<3>(tile, a, i)),
                        _ => {}
                    }
                }
                i0 = i1;
            }
        }
    };
}

tile_kernel!(tiles_q4_k, super::Q8KRows, super::q4_k::tile_dot);
tile_kernel!(tiles_q4_k_vnni, super::Q8KRows, super::q4_k::tile_dot_vnni);
tile_kernel!(tiles_q8_0_vnni, super::Q8Rows, tile_q8_0_vnni);
tile_kernel!(tiles_q4_0_vnni, super::Q8Rows, tile_q4_0_vnni);
tile_kernel!(tiles_q4_1_vnni, super::Q8Rows, tile_q4_1_vnni);
tile_kernel!(tiles_q6_k, super::Q8KRows, super::q6_k::tile_dot);
tile_kernel!(tiles_q5_k, super::Q8KRows, super::q5_k::tile_dot);
tile_kernel!(tiles_q5_k_vnni, super::Q8KRows, tile_q5_k_vnni);

/// Q5_K's VNNI tile kernel for 2 rows and more; one row (decode) gains nothing from it
/// (measured) and takes the AVX2 one.
unsafe fn tile_q5_k_vnni<const R: usize>(
    t: *const u8,
    a: &super::Q8KRows,
    first: usize,
) -> [__m256; R] {
    if R == 1 {
        super::q5_k::tile_dot::<R>(t, a, first)
    } else {
        super::q5_k::tile_dot_vnni::<R>(t, a, first)
    }
}
tile_kernel!(tiles_q6_k_vnni, super::Q8KRows, super::q6_k::tile_dot_vnni);
tile_kernel!(tiles_q5_0, super::Q8Rows, super::q5_0::tile_dot);
tile_kernel!(tiles_q5_0_vnni, super::Q8Rows, super::q5_0::tile_dot_vnni);
tile_kernel!(tiles_q5_1, super::Q8Rows, super::q5_1::tile_dot);
tile_kernel!(tiles_q5_1_vnni, super::Q8Rows, super::q5_1::tile_dot_vnni);

/// Like `tile_kernel!`, with a 512-bit kernel for pairs of tiles (`$dot2::<R>(t0, t1, a,
/// first)`: 16 weight rows, lane j of result r = row j of the pair · activation row
/// first + r) where 4 or 8 activation rows go together; 1-3 rows, and a tile left without a
/// partner, take the 256-bit `$dot1`.
macro_rules! tile2_kernel {
    ($name:ident, $act:ty, $($dot2:ident)::+, $($dot1:ident)::+) => {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c,avxvnni")]
        unsafe fn $name(w: &QWeights, range: Range<usize>, a: &$act, out: *mut f32) {
            debug_assert!(range.start % TILE_ROWS == 0 && range.end % TILE_ROWS == 0);
            let (m, n) = (a.m, w.n);
            let tile_bytes = w.k / w.format.block_values() * w.format.tile_block_bytes();
            let (t_start, t_end) = (range.start / TILE_ROWS, range.end / TILE_ROWS);
            const GROUP: usize = 64;
            let mut i0 = 0;
            while i0 < m {
                let i1 = (i0 + GROUP).min(m);
                let mut t = t_start;
                while t < t_end {
                    let tile = w.data.as_ptr().add(t * tile_bytes);
                    let at = out.add(t * TILE_ROWS);
                    let mut i = i0;
                    if t + 1 < t_end {
                        let next = tile.add(tile_bytes);
                        while i + 8 <= i1 {
                            store_tile2(at, n, i, &$($dot2)::+::<8>(tile, next, a, i));
                            i += 8;
                        }
                        while i + 4 <= i1 {
                            store_tile2(at, n, i, &$($dot2)::+::<4>(tile, next, a, i));
                            i += 4;
                        }
                        // The rest, 1-3 rows, a tile at a time.
                        for u in [tile, next] {
                            let at = at.add(if u == tile { 0 } else { TILE_ROWS });
                            match i1 - i {
                                1 => store_tile(at, n, i, &$($dot1)::+::<1>(u, a, i)),
                                2 => store_tile(at, n, i, &$($dot1)::+::<2>(u, a, i)),
                                3 => store_tile(at, n, i, &$($dot1)::+::<3>(u, a, i)),
                                _ => {}
                            }
                        }
                        t += 2;
                        continue;
                    }
                    while i + 8 <= i1 {
                        store_tile(at, n, i, &$($dot1)::+::<8>(tile, a, i));
                        i += 8;
                    }
                    while i + 4 <= i1 {
                        store_tile(at, n, i, &$($dot1)::+::<4>(tile, a, i));
                        i += 4;
                    }
                    match i1 - i {
                        1 => store_tile(at, n, i, &$($dot1)::+::<1>(tile, a, i)),
                        2 => store_tile(at, n, i, &$($dot1)::+::<2>(tile, a, i)),
                        3 => store_tile(at, n, i, &$($dot1)::+::<3>(tile, a, i)),
                        _ => {}
                    }
                    t += 1;
                }
                i0 = i1;
            }
        }
    };
}

/// Writes 16 adjacent outputs (two tiles' columns) of each of R activation rows.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn store_tile2<const R: usize>(at: *mut f32, n: usize, first: usize, v: &[__m512; R]) {
    for (r, x) in v.iter().enumerate() {
        _mm512_storeu_ps(at.add((first + r) * n), *x);
    }
}

tile2_kernel!(
    tiles_q6_k_512,
    super::Q8KRows,
    super::q6_k::tile2_dot_512,
    super::q6_k::tile_dot_vnni
);
tile2_kernel!(
    tiles_q5_k_512,
    super::Q8KRows,
    super::q5_k::tile2_dot_512,
    tile_q5_k_vnni
);

row_kernel!(rows_q5_0, super::Q8Rows, super::q5_0::dot_avx2);
row_kernel!(rows_q5_1, super::Q8Rows, super::q5_1::dot_avx2);
row_kernel!(rows_q2_k, super::Q8KRows, super::q2_k::dot_avx2);
row_kernel!(rows_q3_k, super::Q8KRows, super::q3_k::dot_avx2);
row_kernel!(rows_q4_k, super::Q8KRows, super::q4_k::dot_avx2);
row_kernel!(rows_q5_k, super::Q8KRows, super::q5_k::dot_avx2);
row_kernel!(rows_q6_k, super::Q8KRows, super::q6_k::dot_avx2);
row_kernel!(rows_f16, super::F32Rows, super::float::dot_avx2_f16);
row_kernel!(rows_bf16, super::F32Rows, super::float::dot_avx2_bf16);
row_kernel!(rows_f32, super::F32Rows, super::float::dot_avx2_f32);

// One function per format, so that profiles name the format.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_q4_0(w: &QWeights, range: Range<usize>, a: &Q8Rows, out: *mut f32) {
    rows_f::<Q4_0>(w, range, a, out)
}
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_q4_1(w: &QWeights, range: Range<usize>, a: &Q8Rows, out: *mut f32) {
    rows_f::<Q4_1>(w, range, a, out)
}
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_q8_0(w: &QWeights, range: Range<usize>, a: &Q8Rows, out: *mut f32) {
    rows_f::<Q8_0>(w, range, a, out)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_f<const F: u8>(w: &QWeights, range: Range<usize>, a: &Q8Rows, out: *mut f32) {
    let (m, n) = (a.m, w.n);
    let store = |j: usize, i: usize, v: &[f32]| {
        for (t, &x) in v.iter().enumerate() {
            *out.add((i + t) * n + j) = x;
        }
    };
    // Activation rows in tiles that stay in cache while this call's weight rows stream past
    // (prefill and large batches: hundreds of rows would otherwise be re-read from L2 or
    // memory for every weight row).
    const TILE: usize = 64;
    let mut i0 = 0;
    while i0 < m {
        let i1 = (i0 + TILE).min(m);
        for j in range.clone() {
            let row = w.row(j);
            let wr: &[u8] = &row;
            let mut i = i0;
            while i + 8 <= i1 {
                store(j, i, &dot::<F, 8>(wr, a, i));
                i += 8;
            }
            while i + 4 <= i1 {
                store(j, i, &dot::<F, 4>(wr, a, i));
                i += 4;
            }
            match i1 - i {
                1 => store(j, i, &dot::<F, 1>(wr, a, i)),
                2 => store(j, i, &dot::<F, 2>(wr, a, i)),
                3 => store(j, i, &dot::<F, 3>(wr, a, i)),
                _ => {}
            }
        }
        i0 = i1;
    }
}

// One function per format, so that profiles name the format.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tiles_q4_0(w: &QWeights, range: Range<usize>, a: &Q8Rows, out: *mut f32) {
    tiles_f::<Q4_0>(w, range, a, out)
}
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tiles_q4_1(w: &QWeights, range: Range<usize>, a: &Q8Rows, out: *mut f32) {
    tiles_f::<Q4_1>(w, range, a, out)
}
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tiles_q8_0(w: &QWeights, range: Range<usize>, a: &Q8Rows, out: *mut f32) {
    tiles_f::<Q8_0>(w, range, a, out)
}

/// Weight rows `range` (whole tiles) of tiled weights against every activation row.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tiles_f<const F: u8>(w: &QWeights, range: Range<usize>, a: &Q8Rows, out: *mut f32) {
    debug_assert!(range.start.is_multiple_of(TILE_ROWS) && range.end.is_multiple_of(TILE_ROWS));
    let (m, n, nb) = (a.m, w.n, a.blocks);
    let tb = w.format.tile_block_bytes();
    // Activation rows in cache-sized groups, as in `rows_f`; within a group, 8 rows at a
    // time against one tile, then 4, then the rest (a tile of 8 rows × 1536 values is
    // 7.7 KB: it stays in L1 while they pass). 8 at a time is ~5% faster than 4 here even
    // though its accumulators spill (examples/matmul_speed).
    const GROUP: usize = 64;
    let mut i0 = 0;
    while i0 < m {
        let i1 = (i0 + GROUP).min(m);
        for t in range.start / TILE_ROWS..range.end / TILE_ROWS {
            let tile = w.data.as_ptr().add(t * nb * tb);
            let at = out.add(t * TILE_ROWS);
            let mut i = i0;
            while i + 8 <= i1 {
                store_tile(at, n, i, &tile_dot::<F, 8>(tile, a, i));
                i += 8;
            }
            while i + 4 <= i1 {
                store_tile(at, n, i, &tile_dot::<F, 4>(tile, a, i));
                i += 4;
            }
            match i1 - i {
                1 => store_tile(at, n, i, &tile_dot::<F, 1>(tile, a, i)),
                2 => store_tile(at, n, i, &tile_dot::<F, 2>(tile, a, i)),
                3 => store_tile(at, n, i, &tile_dot::<F, 3>(tile, a, i)),
                _ => {}
            }
        }
        i0 = i1;
    }
}

/// Writes 8 adjacent outputs of each of R activation rows (`at` points at the tile's first
/// column of row 0; rows are `n` apart).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn store_tile<const R: usize>(at: *mut f32, n: usize, first: usize, v: &[__m256; R]) {
    for (r, x) in v.iter().enumerate() {
        _mm256_storeu_ps(at.add((first + r) * n), *x);
    }
}

/// One tile's 8 weight rows dotted with activation rows `first..first + R`: lane j of
/// result r is row j · activation row first + r.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_dot<const F: u8, const R: usize>(
    tile: *const u8,
    a: &Q8Rows,
    first: usize,
) -> [__m256; R] {
    match F {
        Q4_0 => tile_q4::<Q4_0, R>(tile, a, first),
        Q4_1 => tile_q4::<Q4_1, R>(tile, a, first),
        _ => tile_q8_0::<R>(tile, a, first),
    }
}

/// [`tile_dot`] for Q4_0 and Q4_1. Per block: chunk c of the tile (32 bytes) unpacks to two
/// registers, values 4c..4c+4 and 16+4c..20+4c of the 8 rows; each is multiplied
/// (`maddubs`, u8 × i8) by the activation row's matching 4 values broadcast to all 8 rows,
/// and the 8 products are summed in 16-bit lanes (at most 8 · 2 · 15 · 127 = 30,480 in
/// magnitude: no overflow). One `madd` then gives each row's integer sum Σq·y. Q4_1 scales it
/// by its own d_w times the row's d_a and adds m_w · s_a; Q4_0's values are q − 8, so it
/// subtracts 8·Σy (the activation block's exact sum) from the integer sum first: the same
/// integer ggml's Q4_0 kernel forms, scaled by d_w · d_a.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_q4<const F: u8, const R: usize>(
    tile: *const u8,
    a: &Q8Rows,
    first: usize,
) -> [__m256; R] {
    let (m, nb) = (a.m, a.blocks);
    // Q4_1's tile block holds 8 scales and 8 minima (32 bytes) before the quants; Q4_0's only
    // the scales.
    let (bb, head) = if F == Q4_1 { (20, 32) } else { (18, 16) };
    let qp: [*const i8; R] = std::array::from_fn(|r| a.qs.as_ptr().add((first + r) * nb * BLOCK));
    let (dtp, stp, sump) = (
        a.d.as_ptr().add(first),
        a.s.as_ptr().add(first),
        a.qsum.as_ptr().add(first),
    );
    let low = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..nb {
        let blk = tile.add(b * TILE_ROWS * bb);
        let dw = _mm256_cvtph_ps(_mm_loadu_si128(blk as *const __m128i));
        let mut s = [_mm256_setzero_si256(); R];
        for c in 0..4 {
            let raw = _mm256_loadu_si256(blk.add(head + 32 * c) as *const __m256i);
            let lo = _mm256_and_si256(raw, low);
            let hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low);
            for r in 0..R {
                let y = qp[r].add(b * BLOCK + 4 * c) as *const i32;
                let ylo = _mm256_set1_epi32(y.read_unaligned());
                let yhi = _mm256_set1_epi32(y.add(4).read_unaligned());
                s[r] = _mm256_add_epi16(s[r], _mm256_maddubs_epi16(lo, ylo));
                s[r] = _mm256_add_epi16(s[r], _mm256_maddubs_epi16(hi, yhi));
            }
        }
        if F == Q4_1 {
            let mw = _mm256_cvtph_ps(_mm_loadu_si128(blk.add(16) as *const __m128i));
            for r in 0..R {
                let p = _mm256_cvtepi32_ps(_mm256_madd_epi16(s[r], ones));
                let da = _mm256_set1_ps(*dtp.add(b * m + r));
                let sa = _mm256_set1_ps(*stp.add(b * m + r));
                acc[r] = _mm256_fmadd_ps(p, _mm256_mul_ps(dw, da), acc[r]);
                acc[r] = _mm256_fmadd_ps(mw, sa, acc[r]);
            }
        } else {
            for r in 0..R {
                let sum8 = _mm256_set1_epi32(8 * *sump.add(b * m + r));
                let p = _mm256_sub_epi32(_mm256_madd_epi16(s[r], ones), sum8);
                let da = _mm256_set1_ps(*dtp.add(b * m + r));
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(dw, da), acc[r]);
            }
        }
    }
    acc
}

/// [`tile_q4`] with AVX-VNNI: each chunk's two `vpdpbusd` add the 4-value products straight
/// into i32 lanes (no 16-bit sums, no `madd`): the same integer sums.
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C and AVX-VNNI; as [`tile_q4`] otherwise.
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
pub(super) unsafe fn tile_q4_vnni<const F: u8, const R: usize>(
    tile: *const u8,
    a: &Q8Rows,
    first: usize,
) -> [__m256; R] {
    let (m, nb) = (a.m, a.blocks);
    let (bb, head) = if F == Q4_1 { (20, 32) } else { (18, 16) };
    let qp: [*const i8; R] = std::array::from_fn(|r| a.qs.as_ptr().add((first + r) * nb * BLOCK));
    let (dtp, stp, sump) = (
        a.d.as_ptr().add(first),
        a.s.as_ptr().add(first),
        a.qsum.as_ptr().add(first),
    );
    let low = _mm256_set1_epi8(0x0F);
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..nb {
        let blk = tile.add(b * TILE_ROWS * bb);
        let dw = _mm256_cvtph_ps(_mm_loadu_si128(blk as *const __m128i));
        let mut s = [_mm256_setzero_si256(); R];
        // Up to 4 rows, the high nibbles' products go into a second chain of their own: 8
        // dependent vpdpbusd a block would leave the unit waiting on their latency.
        let mut s2 = [_mm256_setzero_si256(); R];
        if F == Q4_0 {
            // Start each row's sum at −8·Σy, so that Σ(q − 8)·y is left after the products.
            for (r, s) in s.iter_mut().enumerate() {
                *s = _mm256_set1_epi32(-8 * *sump.add(b * m + r));
            }
        }
        for c in 0..4 {
            let raw = _mm256_loadu_si256(blk.add(head + 32 * c) as *const __m256i);
            let lo = _mm256_and_si256(raw, low);
            let hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low);
            for r in 0..R {
                let y = qp[r].add(b * BLOCK + 4 * c) as *const i32;
                let ylo = _mm256_set1_epi32(y.read_unaligned());
                let yhi = _mm256_set1_epi32(y.add(4).read_unaligned());
                s[r] = _mm256_dpbusd_avx_epi32(s[r], lo, ylo);
                if R <= 4 {
                    s2[r] = _mm256_dpbusd_avx_epi32(s2[r], hi, yhi);
                } else {
                    s[r] = _mm256_dpbusd_avx_epi32(s[r], hi, yhi);
                }
            }
        }
        if R <= 4 {
            for (s, s2) in s.iter_mut().zip(&s2) {
                *s = _mm256_add_epi32(*s, *s2);
            }
        }
        if F == Q4_1 {
            let mw = _mm256_cvtph_ps(_mm_loadu_si128(blk.add(16) as *const __m128i));
            for r in 0..R {
                let da = _mm256_set1_ps(*dtp.add(b * m + r));
                let sa = _mm256_set1_ps(*stp.add(b * m + r));
                let p = _mm256_cvtepi32_ps(s[r]);
                acc[r] = _mm256_fmadd_ps(p, _mm256_mul_ps(dw, da), acc[r]);
                acc[r] = _mm256_fmadd_ps(mw, sa, acc[r]);
            }
        } else {
            for r in 0..R {
                let da = _mm256_set1_ps(*dtp.add(b * m + r));
                let p = _mm256_cvtepi32_ps(s[r]);
                acc[r] = _mm256_fmadd_ps(p, _mm256_mul_ps(dw, da), acc[r]);
            }
        }
    }
    acc
}

/// [`tile_q4_vnni`] for Q4_0 and for Q4_1, as the tile driver's `tile_dot::<R>`.
unsafe fn tile_q4_0_vnni<const R: usize>(t: *const u8, a: &Q8Rows, first: usize) -> [__m256; R] {
    tile_q4_vnni::<Q4_0, R>(t, a, first)
}
unsafe fn tile_q4_1_vnni<const R: usize>(t: *const u8, a: &Q8Rows, first: usize) -> [__m256; R] {
    tile_q4_vnni::<Q4_1, R>(t, a, first)
}

/// [`tile_dot`] for Q8_0. Per block: chunk c (32 bytes) holds values 4c..4c+4 of the 8 rows;
/// `maddubs` takes their magnitudes (u8, −128 → 128) and the activation's 4 values broadcast,
/// with each weight's sign moved onto its activation. A pair of products can reach
/// 2 · 128 · 127 = 32,512, so each chunk is widened to 32 bits (`madd`) before summing.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_q8_0<const R: usize>(tile: *const u8, a: &Q8Rows, first: usize) -> [__m256; R] {
    let (m, nb) = (a.m, a.blocks);
    let qp: [*const i8; R] = std::array::from_fn(|r| a.qs.as_ptr().add((first + r) * nb * BLOCK));
    let dtp = a.d.as_ptr().add(first);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..nb {
        let blk = tile.add(b * TILE_ROWS * 34);
        let dw = _mm256_cvtph_ps(_mm_loadu_si128(blk as *const __m128i));
        let mut s = [_mm256_setzero_si256(); R];
        for c in 0..8 {
            let wq = _mm256_loadu_si256(blk.add(16 + 32 * c) as *const __m256i);
            let aw = _mm256_abs_epi8(wq);
            for r in 0..R {
                let y = _mm256_set1_epi32(
                    (qp[r].add(b * BLOCK + 4 * c) as *const i32).read_unaligned(),
                );
                let p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(y, wq));
                s[r] = _mm256_add_epi32(s[r], _mm256_madd_epi16(p, ones));
            }
        }
        for r in 0..R {
            let da = _mm256_set1_ps(*dtp.add(b * m + r));
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[r]), _mm256_mul_ps(dw, da), acc[r]);
        }
    }
    acc
}

/// [`tile_q8_0`] with AVX-VNNI: `vpdpbusd` multiplies the weights' magnitudes by the
/// sign-moved activations and adds each 4 products into the i32 lanes in one instruction (no
/// 16-bit intermediate, so no `madd`), the same integer sums.
///
/// # Safety
/// The CPU must support AVX2, FMA, F16C and AVX-VNNI; as [`tile_q8_0`] otherwise.
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
pub(super) unsafe fn tile_q8_0_vnni<const R: usize>(
    tile: *const u8,
    a: &Q8Rows,
    first: usize,
) -> [__m256; R] {
    let (m, nb) = (a.m, a.blocks);
    let qp: [*const i8; R] = std::array::from_fn(|r| a.qs.as_ptr().add((first + r) * nb * BLOCK));
    let dtp = a.d.as_ptr().add(first);
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..nb {
        let blk = tile.add(b * TILE_ROWS * 34);
        let dw = _mm256_cvtph_ps(_mm_loadu_si128(blk as *const __m128i));
        let mut s = [_mm256_setzero_si256(); R];
        for c in 0..8 {
            let wq = _mm256_loadu_si256(blk.add(16 + 32 * c) as *const __m256i);
            let aw = _mm256_abs_epi8(wq);
            for r in 0..R {
                let y = _mm256_set1_epi32(
                    (qp[r].add(b * BLOCK + 4 * c) as *const i32).read_unaligned(),
                );
                s[r] = _mm256_dpbusd_avx_epi32(s[r], aw, _mm256_sign_epi8(y, wq));
            }
        }
        for r in 0..R {
            let da = _mm256_set1_ps(*dtp.add(b * m + r));
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[r]), _mm256_mul_ps(dw, da), acc[r]);
        }
    }
    acc
}

/// Dots of one weight row with activation rows `first..first + R`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot<const F: u8, const R: usize>(w: &[u8], a: &Q8Rows, first: usize) -> [f32; R] {
    let nb = a.blocks;
    let bb = match F {
        Q4_0 => 18,
        Q4_1 => 20,
        _ => 34,
    };
    let wp = w.as_ptr();
    let qp: [*const i8; R] = std::array::from_fn(|r| a.qs.as_ptr().add((first + r) * nb * BLOCK));
    // Scales are block-major (`d[b·m + r]`): one block's R rows are adjacent.
    let (dtp, stp, m) = (a.d.as_ptr().add(first), a.s.as_ptr().add(first), a.m);
    let mut acc = [_mm256_setzero_ps(); R];
    let mut msum = [0f32; R];
    let ones = _mm256_set1_epi16(1);
    let low = _mm256_set1_epi8(0x0F);
    for b in 0..nb {
        let blk = wp.add(b * bb);
        // The block's f16 scale (and Q4_1's minimum) through F16C.
        let scales = _mm_cvtph_ps(_mm_cvtsi32_si128((blk as *const i32).read_unaligned()));
        let dw = _mm_cvtss_f32(scales);
        let mw = _mm_cvtss_f32(_mm_movehdup_ps(scales));
        let qx = if F == Q8_0 {
            _mm256_loadu_si256(blk.add(2) as *const __m256i)
        } else {
            // 16 bytes of nibbles: low nibbles are values 0..15, high nibbles 16..31.
            let t = _mm_loadu_si128(blk.add(bb - 16) as *const __m128i);
            let v = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), low);
            if F == Q4_0 {
                _mm256_sub_epi8(v, _mm256_set1_epi8(8))
            } else {
                v
            }
        };
        let ax = if F == Q4_1 {
            qx
        } else {
            _mm256_sign_epi8(qx, qx)
        };
        // dw · d_a of each row, then (Q4_1) Σ m_w · s_a: R adjacent values each.
        let dd: [f32; R] = std::array::from_fn(|r| dw * *dtp.add(b * m + r));
        if F == Q4_1 {
            for (r, ms) in msum.iter_mut().enumerate() {
                *ms += mw * *stp.add(b * m + r);
            }
        }
        for r in 0..R {
            let y = _mm256_loadu_si256(qp[r].add(b * BLOCK) as *const __m256i);
            let sy = if F == Q4_1 {
                y
            } else {
                _mm256_sign_epi8(y, qx)
            };
            let p = _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), ones);
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dd[r]), _mm256_cvtepi32_ps(p), acc[r]);
        }
    }
    std::array::from_fn(|r| hsum(acc[r]) + msum[r])
}

/// Quantizes 32 values as `Q8Rows::quantize` does (max |x| / 127, nearest with ties to
/// even); returns the block's scales as `Q8Rows::set_scales` rounds them, through F16C:
/// d = max|x| / 127 rounded to f16, and s = f16(Σq) · d rounded to f16; and Σq.
///
/// # Safety
/// The CPU must support AVX2; `xs` and `qs` hold 32 values.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn quantize_block(xs: &[f32], qs: &mut [i8]) -> (f32, f32, i32) {
    assert!(xs.len() == BLOCK && qs.len() == BLOCK);
    let p = xs.as_ptr();
    let v = [
        _mm256_loadu_ps(p),
        _mm256_loadu_ps(p.add(8)),
        _mm256_loadu_ps(p.add(16)),
        _mm256_loadu_ps(p.add(24)),
    ];
    let sign = _mm256_set1_ps(-0.0);
    let mut mx = _mm256_andnot_ps(sign, v[0]);
    for x in &v[1..] {
        mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, *x));
    }
    let m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    let m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    let amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
    let d = amax / 127.0;
    let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
    let q: [__m256i; 4] = std::array::from_fn(|i| {
        let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(v[i], id),
        );
        _mm256_cvtps_epi32(r)
    });
    let sum = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    let s4 = _mm_add_epi32(
        _mm256_castsi256_si128(sum),
        _mm256_extracti128_si256(sum, 1),
    );
    let s4 = _mm_add_epi32(s4, _mm_shuffle_epi32::<0b01_00_11_10>(s4));
    let s4 = _mm_add_epi32(s4, _mm_shuffle_epi32::<0b10_11_00_01>(s4));
    // i32 -> i16 -> i8 (saturating), then undo the packs' lane interleaving.
    let w01 = _mm256_packs_epi32(q[0], q[1]);
    let w23 = _mm256_packs_epi32(q[2], q[3]);
    let b = _mm256_packs_epi16(w01, w23);
    let b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(qs.as_mut_ptr() as *mut __m256i, b);
    // Lanes: d, Σq → f16 → f32; then Σq·d → f16 → f32 (half's f16 product, round to nearest
    // even as F16C's conversion).
    const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT;
    let ds = _mm_setr_ps(d, _mm_cvtsi128_si32(s4) as f32, 0.0, 0.0);
    let ds = _mm_cvtph_ps(_mm_cvtps_ph::<NEAREST>(ds));
    let dh = _mm_cvtss_f32(ds);
    let s = _mm_set_ss(_mm_cvtss_f32(_mm_movehdup_ps(ds)) * dh);
    (
        dh,
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtps_ph::<NEAREST>(s))),
        _mm_cvtsi128_si32(s4),
    )
}

/// Quantizes 256 values as `Q8KRows::quantize` does (d = max / −127 where max is the first
/// value of largest magnitude, q = round(x · (−127 / max)) with ties away from zero, as
/// `f32::round`) into `qs`, the sums of each 16 quants into `bsums`; returns d (0 for a block
/// of zeros). The same bytes as the scalar loop (tested), without its libm `roundf` calls.
///
/// # Safety
/// The CPU must support AVX2; `xs` and `qs` hold 256 values, `bsums` 16.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn quantize_q8k_block(xs: &[f32], qs: &mut [i8], bsums: &mut [i16]) -> f32 {
    assert!(xs.len() == 256 && qs.len() == 256 && bsums.len() == 16);
    let p = xs.as_ptr();
    let sign = _mm256_set1_ps(-0.0);
    let mut mx = _mm256_setzero_ps();
    for c in 0..32 {
        mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, _mm256_loadu_ps(p.add(8 * c))));
    }
    let m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    let m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    let amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
    if amax == 0.0 {
        qs.fill(0);
        bsums.fill(0);
        return 0.0;
    }
    // The first value whose magnitude is the maximum gives the sign.
    let target = _mm256_set1_ps(amax);
    let mut max = amax;
    for c in 0..32 {
        let a = _mm256_andnot_ps(sign, _mm256_loadu_ps(p.add(8 * c)));
        let hit = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(a, target));
        if hit != 0 {
            max = xs[8 * c + hit.trailing_zeros() as usize];
            break;
        }
    }
    let iscale = -127.0 / max;
    let is = _mm256_set1_ps(iscale);
    let half = _mm256_set1_ps(0.5);
    let one = _mm256_set1_ps(1.0);
    let (lo, hi) = (_mm256_set1_ps(-128.0), _mm256_set1_ps(127.0));
    let fix = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for g in 0..8 {
        // 32 values: four vectors of 8, rounded half away from zero: trunc, then one step
        // away from zero where the dropped fraction is at least one half.
        let q: [__m256i; 4] = std::array::from_fn(|i| {
            let v = _mm256_mul_ps(_mm256_loadu_ps(p.add(32 * g + 8 * i)), is);
            let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(v);
            let frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
            let step = _mm256_and_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(frac, half), one);
            let r = _mm256_add_ps(t, _mm256_or_ps(step, _mm256_and_ps(v, sign)));
            _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi))
        });
        for h in 0..2 {
            let s = _mm256_add_epi32(q[2 * h], q[2 * h + 1]);
            let s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
            let s4 = _mm_add_epi32(s4, _mm_shuffle_epi32::<0b01_00_11_10>(s4));
            let s4 = _mm_add_epi32(s4, _mm_shuffle_epi32::<0b10_11_00_01>(s4));
            bsums[2 * g + h] = _mm_cvtsi128_si32(s4) as i16;
        }
        let b = _mm256_packs_epi16(
            _mm256_packs_epi32(q[0], q[1]),
            _mm256_packs_epi32(q[2], q[3]),
        );
        let b = _mm256_permutevar8x32_epi32(b, fix);
        _mm256_storeu_si256(qs.as_mut_ptr().add(32 * g) as *mut __m256i, b);
    }
    1.0 / iscale
}

/// g[i] ← g[i] / (1 + e^−g[i]) · u[i] for i < len, eight at a time; the last few through a
/// padded copy, so that every value goes through the same arithmetic.
///
/// # Safety
/// The CPU must support AVX2 and FMA; g and u must hold `len` values.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn silu_mul(g: *mut f32, u: *const f32, len: usize) {
    let mut i = 0;
    while i + 8 <= len {
        eight(g.add(i), u.add(i));
        i += 8;
    }
    if i < len {
        let (mut gt, mut ut) = ([0f32; 8], [0f32; 8]);
        std::ptr::copy_nonoverlapping(g.add(i), gt.as_mut_ptr(), len - i);
        std::ptr::copy_nonoverlapping(u.add(i), ut.as_mut_ptr(), len - i);
        eight(gt.as_mut_ptr(), ut.as_ptr());
        std::ptr::copy_nonoverlapping(gt.as_ptr(), g.add(i), len - i);
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn eight(g: *mut f32, u: *const f32) {
    let v = _mm256_loadu_ps(g);
    let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), v));
    let s = _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0), e));
    _mm256_storeu_ps(g, _mm256_mul_ps(s, _mm256_loadu_ps(u)));
}

/// e^x on 8 lanes, Cephes' `expf` (as in the public-domain `avx_mathfun`): x clamped to
/// ±88.38, x = n·ln2 + r with ln2 split in two, e^r by a degree-6 polynomial, 2^n through the
/// exponent bits. Within 2 ulp of libm's expf (tested); e^−88.38 and below give 0. No
/// crate ships a run-time-dispatched AVX2 exp for stable Rust, hence these lines.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn exp8(x: __m256) -> __m256 {
    let x = _mm256_min_ps(_mm256_set1_ps(88.376_26), x);
    let x = _mm256_max_ps(_mm256_set1_ps(-88.376_26), x);
    let fx = _mm256_fmadd_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
        _mm256_set1_ps(0.5),
    );
    let fx = _mm256_floor_ps(fx);
    let x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693_359_4), x);
    let x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.121_944_4e-4), x);
    let z = _mm256_mul_ps(x, x);
    let mut y = _mm256_set1_ps(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ] {
        y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(c));
    }
    let y = _mm256_add_ps(_mm256_fmadd_ps(y, z, x), _mm256_set1_ps(1.0));
    let n = _mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127));
    _mm256_mul_ps(y, _mm256_castsi256_ps(_mm256_slli_epi32::<23>(n)))
}

/// The sum of 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}
