//! Unquantized F16, BF16 and F32 weights against f32 activations ([`F32Rows`]: no
//! quantization, so the products are the weights' exact values times the activations').
//!
//! A row is k little-endian values back to back (GGUF's layout). The kernels treat 32
//! consecutive values as a "block" (64 bytes of F16/BF16, 128 of F32) only to share the
//! engine's block bookkeeping: k must be a multiple of 32.
//!
//! One implementation serves the three types through [`Widen8`], the conversion of 8
//! consecutive weights to 8 f32 lanes: F16 by F16C's `vcvtph2ps`, BF16 by moving each 16-bit
//! value into the top half of a 32-bit lane (bf16 is the upper half of an f32), F32 by a plain
//! load. No integer arithmetic is involved, so nothing can overflow short of f32's range.
//!
//! F32 weights are the precise format (exact mode dequantizes every matrix to F32): their
//! dots sum in f64 ([`dot_avx2_f32`], [`dot_reference_f64`]) and are rounded to f32 once,
//! within an ulp of the exact value, where an f32 sum of a few thousand products can be a
//! few ulp off. Exact mode's entropies came twice as close to a float64 forward pass
//! (tests/exact.rs). F32 rows are 4 bytes a weight: the speed is memory's either way.

// Kernels index their per-row registers and arrays by row number: iterator forms of these
// loops measured slower (up to 20% at one row) where they kept the arrays out of registers.
#![allow(clippy::needless_range_loop)]
use super::F32Rows;

/// Values per "block" (the unit the row length must be a multiple of).
pub const BLOCK_VALUES: usize = super::BLOCK;

/// A weight type: its size and its scalar and 8-wide conversions to f32.
pub trait Widen8 {
    /// Bytes of one value.
    const BYTES: usize;
    /// Value i of `b` as f32 (exact: every F16 and BF16 value is an f32).
    fn at(b: &[u8], i: usize) -> f32;
    /// Values 0..8 at `p` as 8 f32 lanes.
    ///
    /// # Safety
    /// The CPU must support AVX2 and F16C; `p` must point to 8 readable values.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(p: *const u8) -> std::arch::x86_64::__m256;
}

/// IEEE half precision.
pub struct F16;
/// bfloat16 (the upper 16 bits of an f32).
pub struct BF16;
/// f32.
pub struct F32;

impl Widen8 for F16 {
    const BYTES: usize = 2;
    fn at(b: &[u8], i: usize) -> f32 {
        half::f16::from_le_bytes([b[2 * i], b[2 * i + 1]]).to_f32()
    }
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load8(p: *const u8) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }
}

impl Widen8 for BF16 {
    const BYTES: usize = 2;
    fn at(b: &[u8], i: usize) -> f32 {
        half::bf16::from_le_bytes([b[2 * i], b[2 * i + 1]]).to_f32()
    }
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load8(p: *const u8) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        let v = _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i));
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(v))
    }
}

impl Widen8 for F32 {
    const BYTES: usize = 4;
    fn at(b: &[u8], i: usize) -> f32 {
        f32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
    }
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load8(p: *const u8) -> std::arch::x86_64::__m256 {
        std::arch::x86_64::_mm256_loadu_ps(p as *const f32)
    }
}

macro_rules! per_type {
    ($t:ident) => {
        impl $t {
            /// GGUF bytes of 32 values.
            pub const BLOCK_BYTES: usize = BLOCK_VALUES * <$t as Widen8>::BYTES;
            /// The 32 values of `block` as f32 (the plain conversion).
            pub fn dequantize_block(block: &[u8], out: &mut [f32]) {
                dequantize_block::<$t>(block, out)
            }
            /// See [`dot_reference`].
            pub fn dot_reference(row: &[u8], a: &F32Rows, r: usize) -> f32 {
                dot_reference::<$t>(row, a, r)
            }
        }
    };
}
per_type!(F16);
per_type!(BF16);

impl F32 {
    /// GGUF bytes of 32 values.
    pub const BLOCK_BYTES: usize = BLOCK_VALUES * <F32 as Widen8>::BYTES;
    /// The 32 values of `block`.
    pub fn dequantize_block(block: &[u8], out: &mut [f32]) {
        dequantize_block::<F32>(block, out)
    }
    /// See [`dot_reference_f64`].
    pub fn dot_reference(row: &[u8], a: &F32Rows, r: usize) -> f32 {
        dot_reference_f64(row, a, r)
    }
}

/// The values of one 32-value block of `T` as f32.
pub fn dequantize_block<T: Widen8>(block: &[u8], out: &mut [f32]) {
    assert!(block.len() >= BLOCK_VALUES * T::BYTES && out.len() == BLOCK_VALUES);
    for (i, o) in out.iter_mut().enumerate() {
        *o = T::at(block, i);
    }
}

/// The dot product of weight row `row` with activation row r in f32, in this order: 8 lanes,
/// lane l summing the rounded products w_i·x_i of i ≡ l (mod 8) one after another; then the
/// lanes are combined as [`super::x86::hsum`] does ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)).
/// That is the SIMD kernel's order with one accumulator and separate multiply and add; the
/// kernel's fused multiply-adds and extra accumulators differ only in rounding.
pub fn dot_reference<T: Widen8>(row: &[u8], a: &F32Rows, r: usize) -> f32 {
    let x = a.row(r);
    assert!(x.len().is_multiple_of(BLOCK_VALUES) && row.len() >= x.len() * T::BYTES);
    let mut lanes = [0f32; 8];
    for (i, &xi) in x.iter().enumerate() {
        lanes[i % 8] += T::at(row, i) * xi;
    }
    let l = lanes;
    let h = [l[0] + l[4], l[1] + l[5], l[2] + l[6], l[3] + l[7]];
    let q = [h[0] + h[2], h[1] + h[3]];
    q[0] + q[1]
}

/// AVX2 dots of F16 weights with activation rows `first..first + R` (see [`dot_avx2`]).
///
/// # Safety
/// As [`dot_avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_avx2_f16<const R: usize>(row: *const u8, a: &F32Rows, first: usize) -> [f32; R] {
    dot_avx2::<F16, R>(row, a, first)
}

/// AVX2 dots of BF16 weights with activation rows `first..first + R` (see [`dot_avx2`]).
///
/// # Safety
/// As [`dot_avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_avx2_bf16<const R: usize>(row: *const u8, a: &F32Rows, first: usize) -> [f32; R] {
    dot_avx2::<BF16, R>(row, a, first)
}

/// The dot product of F32 weight row `row` with activation row r, summed in f64 (every
/// product of two f32 values is exact in f64) in this order: 8 lanes, lane l summing the
/// products of i ≡ l (mod 8) one after another, then ((l0 + l4) + (l2 + l6)) + ((l1 + l5) +
/// (l3 + l7)); rounded to f32 once. That is [`dot_avx2_f32`]'s order, to the bit.
pub fn dot_reference_f64(row: &[u8], a: &F32Rows, r: usize) -> f32 {
    let x = a.row(r);
    assert!(x.len().is_multiple_of(BLOCK_VALUES) && row.len() >= x.len() * F32::BYTES);
    let mut lanes = [0f64; 8];
    for (i, &xi) in x.iter().enumerate() {
        lanes[i % 8] = (F32::at(row, i) as f64).mul_add(xi as f64, lanes[i % 8]);
    }
    let l = lanes;
    (((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]))) as f32
}

/// AVX2 dots of F32 weights with activation rows `first..first + R`, summed in f64 (see
/// [`dot_reference_f64`], whose order it keeps, so each row's result does not depend on R).
/// Per 8 weights: both halves widened to 4 f64 lanes once, then fused into every row's two
/// accumulators.
///
/// # Safety
/// The CPU must support AVX2 and FMA; `row` must point to `a.k` f32 values, `a.k` must be a
/// multiple of 32, and `first + R <= a.m`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_avx2_f32<const R: usize>(row: *const u8, a: &F32Rows, first: usize) -> [f32; R] {
    use std::arch::x86_64::*;
    let k = a.k;
    debug_assert!(k.is_multiple_of(BLOCK_VALUES) && first + R <= a.m);
    let wp = row as *const f32;
    let xp: [*const f32; R] = std::array::from_fn(|r| a.x.as_ptr().add((first + r) * k));
    let mut acc = [[_mm256_setzero_pd(); 2]; R];
    let mut i = 0;
    while i < k {
        let w0 = _mm256_cvtps_pd(_mm_loadu_ps(wp.add(i)));
        let w1 = _mm256_cvtps_pd(_mm_loadu_ps(wp.add(i + 4)));
        for r in 0..R {
            let x0 = _mm256_cvtps_pd(_mm_loadu_ps(xp[r].add(i)));
            let x1 = _mm256_cvtps_pd(_mm_loadu_ps(xp[r].add(i + 4)));
            acc[r][0] = _mm256_fmadd_pd(w0, x0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_pd(w1, x1, acc[r][1]);
        }
        i += 8;
    }
    std::array::from_fn(|r| {
        // Lanes l0..l3 and l4..l7: (l0 + l4, l1 + l5, l2 + l6, l3 + l7), then pairs.
        let s = _mm256_add_pd(acc[r][0], acc[r][1]);
        let lo = _mm256_castpd256_pd128(s);
        let hi = _mm256_extractf128_pd(s, 1);
        let p = _mm_add_pd(lo, hi);
        (_mm_cvtsd_f64(p) + _mm_cvtsd_f64(_mm_unpackhi_pd(p, p))) as f32
    })
}

/// Dots of one weight row of `T` with activation rows `first..first + R`.
///
/// Per 32 values: 4 conversions of 8 weights, each FMA'd into all R rows while in a register
/// (the weights are read and converted once per R rows). An FMA's result is needed again only
/// by the next FMA into the same accumulator, 4 cycles later, while 2 can start per cycle: with
/// one accumulator per row, R = 1 would wait on that chain, so small R spread each row over
/// several accumulators (4 for R = 1, 2 for R = 2, then 1: R = 3 and up have 3+ chains),
/// combined at the end. For R = 1 the two loads per FMA (weights and activations) bound the
/// speed in cache; out of cache, the weights' bandwidth does.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; `row` must point to `a.k` values of `T`,
/// `a.k` must be a multiple of 32, and `first + R <= a.m`.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_avx2<T: Widen8, const R: usize>(
    row: *const u8,
    a: &F32Rows,
    first: usize,
) -> [f32; R] {
    use std::arch::x86_64::*;
    let k = a.k;
    debug_assert!(k.is_multiple_of(BLOCK_VALUES) && first + R <= a.m);
    let xp: [*const f32; R] = std::array::from_fn(|r| a.x.as_ptr().add((first + r) * k));
    // Accumulators per row (a power of two dividing 4).
    let chains = match R {
        1 => 4,
        2 => 2,
        _ => 1,
    };
    let mut acc = [[_mm256_setzero_ps(); 4]; R];
    let mut i = 0;
    while i < k {
        for v in 0..4 {
            let w = T::load8(row.add((i + 8 * v) * T::BYTES));
            for r in 0..R {
                let x = _mm256_loadu_ps(xp[r].add(i + 8 * v));
                let c = v % chains;
                acc[r][c] = _mm256_fmadd_ps(w, x, acc[r][c]);
            }
        }
        i += BLOCK_VALUES;
    }
    std::array::from_fn(|r| {
        let s = &acc[r];
        let t = match chains {
            4 => _mm256_add_ps(_mm256_add_ps(s[0], s[2]), _mm256_add_ps(s[1], s[3])),
            2 => _mm256_add_ps(s[0], s[1]),
            _ => s[0],
        };
        super::x86::hsum(t)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Random weights of `T` (given as raw bit patterns by `bits`): `n` rows of k values.
    fn random_rows<T: Widen8>(
        rng: &mut ChaCha8Rng,
        n: usize,
        k: usize,
        bits: fn(&mut ChaCha8Rng) -> u32,
    ) -> Vec<u8> {
        let mut data = Vec::with_capacity(n * k * T::BYTES);
        for _ in 0..n * k {
            data.extend_from_slice(&bits(rng).to_le_bytes()[..T::BYTES]);
        }
        data
    }

    /// F16 bit patterns: every finite value can occur (exponent field 0..=30: ±0, subnormals,
    /// up to ±65504), no inf/NaN.
    fn f16_bits(rng: &mut ChaCha8Rng) -> u32 {
        let sign = rng.random_range(0..2u32) << 15;
        sign | rng.random_range(0..31u32) << 10 | rng.random_range(0..1024u32)
    }

    /// BF16 bit patterns: ±0, subnormals and normals with exponents 2^-126 .. 2^40 (the top of
    /// the range would overflow the dot product: that is f32's limit, not the kernel's).
    fn bf16_bits(rng: &mut ChaCha8Rng) -> u32 {
        let sign = rng.random_range(0..2u32) << 15;
        sign | rng.random_range(0..167u32) << 7 | rng.random_range(0..128u32)
    }

    /// F32 bit patterns, as BF16's with a full mantissa.
    fn f32_bits(rng: &mut ChaCha8Rng) -> u32 {
        let sign = rng.random_range(0..2u32) << 31;
        sign | rng.random_range(0..167u32) << 23 | rng.random_range(0..1u32 << 23)
    }

    fn random_x(rng: &mut ChaCha8Rng, m: usize, k: usize) -> F32Rows {
        let x: Vec<f32> = (0..m * k)
            .map(|i| {
                if i / BLOCK_VALUES == 1 || i % 29 == 0 {
                    0.0 // row 0's second block all zero, and scattered zeros
                } else if rng.random_bool(0.01) {
                    rng.random_range(-1e4f32..1e4)
                } else {
                    rng.random_range(-2.0f32..2.0)
                }
            })
            .collect();
        let mut a = F32Rows::default();
        a.set(&x, m, k);
        a
    }

    /// Σ w·x in f64 (exact products) and Σ |w·x|.
    fn exact_dot<T: Widen8>(row: &[u8], a: &F32Rows, r: usize) -> (f64, f64) {
        a.row(r)
            .iter()
            .enumerate()
            .fold((0.0, 0.0), |(s, m), (i, &x)| {
                let t = T::at(row, i) as f64 * x as f64;
                (s + t, m + t.abs())
            })
    }

    fn same_bits_or_both_nan(a: f32, b: f32) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    /// Every one of the 65,536 F16 and BF16 patterns (NaN, ±inf, subnormals included) and
    /// random F32 patterns convert as candle converts them.
    #[test]
    fn dequantize_equals_candle() {
        use candle_core::quantized::k_quants::GgmlType;
        let all: Vec<u8> = (0..=u16::MAX).flat_map(|v| v.to_le_bytes()).collect();
        let h: Vec<half::f16> = (0..=u16::MAX).map(half::f16::from_bits).collect();
        let b: Vec<half::bf16> = (0..=u16::MAX).map(half::bf16::from_bits).collect();
        let (mut th, mut tb) = (vec![0f32; h.len()], vec![0f32; b.len()]);
        half::f16::to_float(&h, &mut th);
        half::bf16::to_float(&b, &mut tb);
        let mut ours = [0f32; BLOCK_VALUES];
        for (c, blk) in all.chunks_exact(F16::BLOCK_BYTES).enumerate() {
            F16::dequantize_block(blk, &mut ours);
            for i in 0..BLOCK_VALUES {
                assert!(
                    same_bits_or_both_nan(ours[i], th[c * 32 + i]),
                    "f16 {:#x}",
                    c * 32 + i
                );
            }
            BF16::dequantize_block(blk, &mut ours);
            for i in 0..BLOCK_VALUES {
                assert!(
                    same_bits_or_both_nan(ours[i], tb[c * 32 + i]),
                    "bf16 {:#x}",
                    c * 32 + i
                );
                if !ours[i].is_nan() {
                    assert_eq!(ours[i].to_bits(), (c as u32 * 32 + i as u32) << 16);
                }
            }
        }
        let mut rng = ChaCha8Rng::seed_from_u64(31);
        let f: Vec<f32> = (0..4096).map(|_| f32::from_bits(rng.random())).collect();
        let bytes: Vec<u8> = f.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut tf = vec![0f32; f.len()];
        f32::to_float(&f, &mut tf);
        for (c, blk) in bytes.chunks_exact(F32::BLOCK_BYTES).enumerate() {
            F32::dequantize_block(blk, &mut ours);
            for i in 0..BLOCK_VALUES {
                assert_eq!(ours[i].to_bits(), tf[c * 32 + i].to_bits());
            }
        }
        assert_eq!(
            (F16::BLOCK_BYTES, BF16::BLOCK_BYTES, F32::BLOCK_BYTES),
            (64, 64, 128)
        );
    }

    const WIDTHS: [usize; 5] = [32, 64, 96, 160, 2048];

    fn reference_is_exact<T: Widen8>(seed: u64, bits: fn(&mut ChaCha8Rng) -> u32) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for k in WIDTHS {
            let w = random_rows::<T>(&mut rng, 3, k, bits);
            let a = random_x(&mut rng, 2, k);
            for row in w.chunks_exact(k * T::BYTES) {
                for r in 0..2 {
                    let got = dot_reference::<T>(row, &a, r) as f64;
                    let (want, mag) = exact_dot::<T>(row, &a, r);
                    assert!(
                        (got - want).abs() <= 1e-5 * mag,
                        "k={k} r={r}: {got} vs {want} (mag {mag})"
                    );
                }
            }
        }
    }

    #[test]
    fn reference_is_the_exact_dot() {
        reference_is_exact::<F16>(32, f16_bits);
        reference_is_exact::<BF16>(33, bf16_bits);
    }

    /// `dot_avx2::<T, R>` against the reference at every `first` of an m = R + 3 batch.
    #[cfg(target_arch = "x86_64")]
    fn check_simd<T: Widen8, const R: usize>(
        rng: &mut ChaCha8Rng,
        bits: fn(&mut ChaCha8Rng) -> u32,
    ) {
        let m = R + 3;
        for k in WIDTHS {
            let w = random_rows::<T>(rng, 3, k, bits);
            let a = random_x(rng, m, k);
            for row in w.chunks_exact(k * T::BYTES) {
                for first in 1..=m - R {
                    // SAFETY: features checked by the caller; row holds k values; first+R <= m.
                    let got = unsafe { dot_avx2::<T, R>(row.as_ptr(), &a, first) };
                    for r in 0..R {
                        let want = dot_reference::<T>(row, &a, first + r) as f64;
                        let (_, mag) = exact_dot::<T>(row, &a, first + r);
                        let g = got[r] as f64;
                        assert!(
                            (g - want).abs() <= 1e-5 * mag,
                            "R={R} k={k} first={first} r={r}: {g} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn check_all_r<T: Widen8>(seed: u64, bits: fn(&mut ChaCha8Rng) -> u32) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        check_simd::<T, 1>(&mut rng, bits);
        check_simd::<T, 2>(&mut rng, bits);
        check_simd::<T, 3>(&mut rng, bits);
        check_simd::<T, 4>(&mut rng, bits);
        check_simd::<T, 8>(&mut rng, bits);
    }

    /// F32 weights: the f64-summing kernel gives its reference's bits for every R and first
    /// row, and both are the exact dot rounded to f32 (within an ulp).
    #[cfg(target_arch = "x86_64")]
    fn check_f32_f64<const R: usize>(rng: &mut ChaCha8Rng) {
        let m = R + 3;
        for k in WIDTHS {
            let w = random_rows::<F32>(rng, 3, k, f32_bits);
            let a = random_x(rng, m, k);
            for row in w.chunks_exact(k * F32::BYTES) {
                for first in 0..=m - R {
                    // SAFETY: features checked by the caller; row holds k values; first+R <= m.
                    let got = unsafe { dot_avx2_f32::<R>(row.as_ptr(), &a, first) };
                    for r in 0..R {
                        let want = F32::dot_reference(row, &a, first + r);
                        assert_eq!(got[r].to_bits(), want.to_bits(), "R={R} k={k} r={r}");
                        let (exact, mag) = exact_dot::<F32>(row, &a, first + r);
                        let ulp = (exact as f32).abs() as f64 * f32::EPSILON as f64;
                        assert!(
                            (want as f64 - exact).abs() <= ulp + 1e-12 * mag,
                            "k={k}: {want} vs exact {exact}"
                        );
                    }
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn f32_weights_sum_in_f64_for_every_r() {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            eprintln!("SKIPPED: this CPU has no AVX2 + FMA");
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(39);
        check_f32_f64::<1>(&mut rng);
        check_f32_f64::<2>(&mut rng);
        check_f32_f64::<3>(&mut rng);
        check_f32_f64::<4>(&mut rng);
        check_f32_f64::<8>(&mut rng);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_equals_reference_for_every_r() {
        if !(is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c"))
        {
            eprintln!("SKIPPED: this CPU has no AVX2 + FMA + F16C");
            return;
        }
        check_all_r::<F16>(35, f16_bits);
        check_all_r::<BF16>(36, bf16_bits);
        // The exported wrappers are the same functions.
        let mut rng = ChaCha8Rng::seed_from_u64(38);
        let a = random_x(&mut rng, 2, 64);
        let h: Vec<u8> = random_rows::<F16>(&mut rng, 1, 64, f16_bits);
        let b: Vec<u8> = random_rows::<BF16>(&mut rng, 1, 64, bf16_bits);
        // SAFETY: features checked; rows of 64 values; 2 activation rows.
        unsafe {
            assert_eq!(
                dot_avx2_f16::<1>(h.as_ptr(), &a, 1),
                dot_avx2::<F16, 1>(h.as_ptr(), &a, 1)
            );
            assert_eq!(
                dot_avx2_bf16::<2>(b.as_ptr(), &a, 0),
                dot_avx2::<BF16, 2>(b.as_ptr(), &a, 0)
            );
        }
    }
}
