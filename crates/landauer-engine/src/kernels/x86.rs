//! AVX2 + FMA + F16C dot products (x86-64), chosen at run time by `detected_isa`.
//!
//! One weight block is loaded and unpacked to 32 bytes once, then multiplied into each of up
//! to four activation rows: `maddubs` (u8 × i8 → pairs of i16), `madd` with ones (→ 8 × i32),
//! converted to f32 and accumulated with the block's scale product, as ggml's AVX2 kernels do
//! for one row. Signed formats (Q4_0 after subtracting 8, Q8_0) move the weight's sign onto the
//! activation so that `maddubs` sees |w| as unsigned.

use super::{Format, Q8Rows, BLOCK};
use std::arch::x86_64::*;

const Q4_0: u8 = 0;
const Q4_1: u8 = 1;
const Q8_0: u8 = 2;

/// See `super::dot_rows`.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; `w` must hold `a.blocks` blocks of `format`;
/// rows `first..first + count` must exist in `a`; `count` is 1 to 4.
pub(super) unsafe fn dot_rows(
    format: Format,
    w: &[u8],
    a: &Q8Rows,
    first: usize,
    count: usize,
    out: &mut [f32; 4],
) {
    assert!(w.len() == a.blocks * format.block_bytes() && first + count <= a.m);
    macro_rules! go {
        ($f:expr) => {
            match count {
                1 => dot::<$f, 1>(w, a, first, out),
                2 => dot::<$f, 2>(w, a, first, out),
                3 => dot::<$f, 3>(w, a, first, out),
                4 => dot::<$f, 4>(w, a, first, out),
                _ => unreachable!("1 to 4 rows at a time"),
            }
        };
    }
    match format {
        Format::Q4_0 => go!(Q4_0),
        Format::Q4_1 => go!(Q4_1),
        Format::Q8_0 => go!(Q8_0),
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot<const F: u8, const R: usize>(w: &[u8], a: &Q8Rows, first: usize, out: &mut [f32; 4]) {
    let nb = a.blocks;
    let bb = match F {
        Q4_0 => 18,
        Q4_1 => 20,
        _ => 34,
    };
    let wp = w.as_ptr();
    let qp: [*const i8; R] = std::array::from_fn(|r| a.qs.as_ptr().add((first + r) * nb * BLOCK));
    let dp: [*const f32; R] = std::array::from_fn(|r| a.d.as_ptr().add((first + r) * nb));
    let sp: [*const f32; R] = std::array::from_fn(|r| a.s.as_ptr().add((first + r) * nb));
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
        for r in 0..R {
            let y = _mm256_loadu_si256(qp[r].add(b * BLOCK) as *const __m256i);
            let sy = if F == Q4_1 {
                y
            } else {
                _mm256_sign_epi8(y, qx)
            };
            let p = _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), ones);
            let d = _mm256_set1_ps(dw * *dp[r].add(b));
            acc[r] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc[r]);
            if F == Q4_1 {
                msum[r] += mw * *sp[r].add(b);
            }
        }
    }
    for r in 0..R {
        out[r] = hsum(acc[r]) + msum[r];
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}
