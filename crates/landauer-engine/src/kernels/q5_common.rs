//! What Q5_0 and Q5_1 share: their 5-bit quants. A block of 32 values stores the low four
//! bits of value j (j < 16) in the low nibble of `qs[j]` and those of value j + 16 in its high
//! nibble (16 bytes), and the fifth bit of value j in bit j of the little-endian u32 `qh`
//! (4 bytes), as ggml's `block_q5_0` / `block_q5_1`.

// Kernels index their per-row registers and arrays by row number: iterator forms of these
// loops measured slower (up to 20% at one row) where they kept the arrays out of registers.
#![allow(clippy::needless_range_loop)]

// Nested modules reach the parent's names through these imports (`super::`), so that the
// file moves into the engine with only `crate::` becoming `super::`.
#[cfg(target_arch = "x86_64")]
use super::x86::hsum;
#[cfg(test)]
use super::{Q8Rows, BLOCK};

/// The 32 unsigned 5-bit quants (0..=31) of a block whose `qh` (4 bytes) and `qs` (16 bytes)
/// are given, in value order.
pub(crate) fn unpack(qh: &[u8], qs: &[u8]) -> [u8; 32] {
    let h = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    std::array::from_fn(|j| {
        let nib = if j < 16 {
            qs[j] & 0x0F
        } else {
            qs[j - 16] >> 4
        };
        nib | (((h >> j) & 1) as u8) << 4
    })
}

/// `qh` (4 bytes) and `qs` (16 bytes) of the 32 quants `q` (each 0..=31): [`unpack`]'s inverse.
pub(crate) fn pack(q: &[u8; 32], qh: &mut [u8], qs: &mut [u8]) {
    let mut h = 0u32;
    for (j, &v) in q.iter().enumerate() {
        h |= ((v >> 4) as u32 & 1) << j;
    }
    qh[..4].copy_from_slice(&h.to_le_bytes());
    for j in 0..16 {
        qs[j] = (q[j] & 0x0F) | (q[j + 16] & 0x0F) << 4;
    }
}

/// Bytes of the quants of one tile block (8 rows × 20 bytes): 32 bytes of spare bits, then
/// 4 chunks of 32 bytes.
pub(crate) const TILE_QUANT_BYTES: usize = 160;

/// The quants of block b of 8 rows (`q[j]`: row j's 32 values, 0..=31) in the tile layout
/// (`out`: [`TILE_QUANT_BYTES`]). Byte 4j + i of chunk c (c, i < 4) holds row j's value
/// 4c + i in bits 0..5 and bits 2..5 of its value 16 + 4c + i in bits 5..8; byte 4j + i of
/// the 32 bytes before the chunks (the "spare" bits) holds bits 0 and 1 of value 16 + 4c + i
/// in its bits 2c and 2c + 1, for c = 0..4. So a chunk unpacks to its two registers of 5-bit
/// quants with a few lane-wise operations and no shuffle (see [`tile_quants`]): low values
/// `chunk & 0x1F`; high values `(chunk >> 3) & 0x1C | (spare >> 2c) & 3`.
pub(crate) fn tile_q5(q: &[[u8; 32]; 8], out: &mut [u8]) {
    let (spare, chunks) = out[..TILE_QUANT_BYTES].split_at_mut(32);
    spare.fill(0);
    for (j, q) in q.iter().enumerate() {
        for c in 0..4 {
            for i in 0..4 {
                let (lo, hi) = (q[4 * c + i], q[16 + 4 * c + i]);
                debug_assert!(lo < 32 && hi < 32);
                chunks[32 * c + 4 * j + i] = lo | (hi >> 2) << 5;
                spare[4 * j + i] |= (hi & 3) << (2 * c);
            }
        }
    }
}

/// Row j's 32 quants back from the tile layout ([`tile_q5`]'s inverse).
pub(crate) fn untile_q5(t: &[u8], j: usize) -> [u8; 32] {
    let mut q = [0u8; 32];
    for c in 0..4 {
        for i in 0..4 {
            let (byte, spare) = (t[32 + 32 * c + 4 * j + i], t[4 * j + i]);
            q[4 * c + i] = byte & 0x1F;
            q[16 + 4 * c + i] = (byte >> 5) << 2 | (spare >> (2 * c)) & 3;
        }
    }
    q
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::*;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// The 4 bytes of `qh` at `p + AT` spread to one byte per bit: byte j of the result is 0xFF
    /// where bit j of the little-endian u32 is set, 0 where not. No per-bit loop: the u32 is
    /// broadcast, `shuffle_epi8` copies its byte j/8 into byte j (bytes 0..8 take byte 0,
    /// 8..16 byte 1, ...; the broadcast puts all four bytes in both 128-bit lanes, so the
    /// in-lane shuffle can reach them), `and` keeps bit j%8 of each, and `cmpeq` against the
    /// same one-bit pattern turns it into a full-byte mask. 4 instructions, one of them a
    /// load-broadcast.
    ///
    /// # Safety
    /// AVX2; `p + AT` must point to 4 readable bytes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn high_bit_mask<const AT: usize>(p: *const u8) -> __m256i {
        let v = broadcast_u32::<AT>(p);
        let spread = _mm256_setr_epi64x(
            0x0000_0000_0000_0000,
            0x0101_0101_0101_0101,
            0x0202_0202_0202_0202,
            0x0303_0303_0303_0303,
        );
        let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
        _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(v, spread), bit), bit)
    }

    /// The u32 at `p` in all 8 lanes, broadcast by the load itself (`vpbroadcastd ymm, m32`:
    /// a load, no ALU or shuffle-port work). Written as `asm!` because LLVM, seeing the f16
    /// scale read from the same bytes, merges the two into one 64-bit integer load and then
    /// moves and broadcasts through the shuffle port (3 more shuffle-port instructions a
    /// block, ~15% slower at R = 1).
    ///
    /// # Safety
    /// AVX2; `p + AT` must point to 4 readable bytes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn broadcast_u32<const AT: usize>(p: *const u8) -> __m256i {
        let v: __m256i;
        std::arch::asm!(
            "vpbroadcastd {v}, dword ptr [{p} + {at}]",
            v = lateout(ymm_reg) v,
            p = in(reg) p,
            at = const AT,
            options(pure, readonly, nostack, preserves_flags),
        );
        v
    }

    /// Accumulates blocks of one weight row against R activation rows, from each row's
    /// `maddubs` output (16 × i16, each the sum of two byte products) and the scales.
    ///
    /// R = 1, 2, 3 (any R but 4 and 8): per row, `madd` with ones (8 × i32), conversion, and an FMA with
    /// d_w·d_a into 8 f32 lanes; one horizontal sum per row at the end (ggml's shape).
    ///
    /// R = 4 and 8: the R rows' integer sums are first reduced together, so that one
    /// conversion and one FMA serve all rows, with lane r holding row r: `madd` with ones
    /// (pairs of i16 → i32), `packs` of two rows back to i16 and `madd` again, twice, which
    /// leaves [row 0, 1, 2, 3] (and [4, 5, 6, 7]) per 128-bit half; the halves are added
    /// across. The scales then need no broadcasts: d_w · (R adjacent d_a) is one multiply.
    /// Per row and block that is ~2 instructions on the two ports that `maddubs`, `madd`,
    /// conversions and FMAs share, instead of 4 (`madd`, conversion, scale, FMA), ~20% faster
    /// at R = 8. Exact: `packs` saturates at ±32,767, and its inputs are sums of 4 and of 8
    /// byte products, |x|·|y| ≤ 31·128 = 3,968 each (Q5_1's worst case; Q5_0's is 16·127):
    /// at most 15,872 and 31,744.
    pub(crate) struct Acc<const R: usize> {
        rows: [__m256; R],
        lanes: __m256,
    }

    impl<const R: usize> Acc<R> {
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn new() -> Self {
            Acc {
                rows: [_mm256_setzero_ps(); R],
                lanes: _mm256_setzero_ps(),
            }
        }

        /// One block: `p[r]` is row r's `maddubs` output, `dw` the weight's scale in all
        /// lanes, `d` points to the R rows' scales d_a (adjacent).
        ///
        /// # Safety
        /// AVX2, FMA; `d` must point to R readable f32.
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn add(&mut self, dw: __m256, d: *const f32, p: &[__m256i; R]) {
            let ones = _mm256_set1_epi16(1);
            if R == 8 {
                let m: [__m256i; 8] = std::array::from_fn(|r| _mm256_madd_epi16(p[r], ones));
                let q: [__m256i; 4] = std::array::from_fn(|i| {
                    _mm256_madd_epi16(_mm256_packs_epi32(m[2 * i], m[2 * i + 1]), ones)
                });
                let t0 = _mm256_madd_epi16(_mm256_packs_epi32(q[0], q[1]), ones);
                let t1 = _mm256_madd_epi16(_mm256_packs_epi32(q[2], q[3]), ones);
                let s = _mm256_add_epi32(
                    _mm256_permute2x128_si256::<0x20>(t0, t1),
                    _mm256_permute2x128_si256::<0x31>(t0, t1),
                );
                let dd = _mm256_mul_ps(dw, _mm256_loadu_ps(d));
                self.lanes = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(s), self.lanes);
            } else if R == 4 {
                let m: [__m256i; 4] = std::array::from_fn(|r| _mm256_madd_epi16(p[r], ones));
                let q0 = _mm256_madd_epi16(_mm256_packs_epi32(m[0], m[1]), ones);
                let q1 = _mm256_madd_epi16(_mm256_packs_epi32(m[2], m[3]), ones);
                let t = _mm256_madd_epi16(_mm256_packs_epi32(q0, q1), ones);
                let s = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
                let dd = _mm_mul_ps(_mm256_castps256_ps128(dw), _mm_loadu_ps(d));
                let l = _mm256_castps256_ps128(self.lanes);
                self.lanes = _mm256_zextps128_ps256(_mm_fmadd_ps(dd, _mm_cvtepi32_ps(s), l));
            } else {
                for r in 0..R {
                    let s = _mm256_madd_epi16(p[r], ones);
                    let dd = _mm256_mul_ps(dw, _mm256_broadcast_ss(&*d.add(r)));
                    self.rows[r] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(s), self.rows[r]);
                }
            }
        }

        /// Adds another accumulator's sums into this one.
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn merge(&mut self, other: &Self) {
            for r in 0..R {
                self.rows[r] = _mm256_add_ps(self.rows[r], other.rows[r]);
            }
            self.lanes = _mm256_add_ps(self.lanes, other.lanes);
        }

        /// The R dot products.
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn finish(&self) -> [f32; R] {
            if R == 8 || R == 4 {
                let mut v = [0f32; 8];
                _mm256_storeu_ps(v.as_mut_ptr(), self.lanes);
                std::array::from_fn(|r| v[r])
            } else {
                std::array::from_fn(|r| super::hsum(self.rows[r]))
            }
        }
    }

    /// The 8 registers of 5-bit quants (0..=31) of one tile block's quants at `q` (layout at
    /// [`super::tile_q5`]): `[lo0, lo1, lo2, lo3, hi0, hi1, hi2, hi3]`, where lo_c holds
    /// values 4c..4c+4 of each of the 8 rows (bytes 4j..4j+4: row j) and hi_c values
    /// 16+4c..20+4c. Per chunk: one `and` for the low values; for the high ones a 16-bit
    /// shift and `and` for bits 2..5 (from the chunk's top 3 bits: the bits shifted in from
    /// the neighbouring byte are masked off), a shift (none for chunk 0) and `and` of the
    /// spare bits (their pair for chunk c sits at bits 2c, 2c + 1 of each byte and moves to
    /// bits 0, 1; a 16-bit shift right by at most 6 takes them from the same byte), and an
    /// `or`: 5 or 6 lane-wise instructions per 64 quants, none on the shuffle port.
    ///
    /// # Safety
    /// AVX2; `q` must point to [`super::TILE_QUANT_BYTES`] readable bytes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn tile_quants(q: *const u8) -> [__m256i; 8] {
        let spare = _mm256_loadu_si256(q as *const __m256i);
        let (m5, m3, m2) = (
            _mm256_set1_epi8(0x1F),
            _mm256_set1_epi8(0x1C),
            _mm256_set1_epi8(0x03),
        );
        let sp = [
            spare,
            _mm256_srli_epi16::<2>(spare),
            _mm256_srli_epi16::<4>(spare),
            _mm256_srli_epi16::<6>(spare),
        ];
        let mut w = [_mm256_setzero_si256(); 8];
        for c in 0..4 {
            let v = _mm256_loadu_si256(q.add(32 + 32 * c) as *const __m256i);
            w[c] = _mm256_and_si256(v, m5);
            w[4 + c] = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16::<3>(v), m3),
                _mm256_and_si256(sp[c], m2),
            );
        }
        w
    }

    /// Σq·y of each of a tile's 8 weight rows (i32 lane j: row j) for one block: `w` from
    /// [`tile_quants`], `y` the activation row's 32 quants. Each 4 activation values are
    /// broadcast to all rows and multiplied (`maddubs`, u8 × i8) with the matching register.
    /// Bounds: a `maddubs` pair is at most 2·31·128 = 7,936 in magnitude (whatever the i8,
    /// −128 included), and 4 are summed in 16 bits (31,744 ≤ 32,767) before `madd` widens:
    /// the low and high halves are summed separately (8 would reach 63,488).
    ///
    /// # Safety
    /// AVX2; `y` must point to 32 readable bytes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn tile_isum(w: &[__m256i; 8], y: *const i8) -> __m256i {
        let yb = |at: usize| _mm256_set1_epi32((y.add(at) as *const i32).read_unaligned());
        let mut s = [_mm256_setzero_si256(); 2];
        for h in 0..2 {
            let p: [__m256i; 4] =
                std::array::from_fn(|c| _mm256_maddubs_epi16(w[4 * h + c], yb(16 * h + 4 * c)));
            s[h] = _mm256_add_epi16(_mm256_add_epi16(p[0], p[1]), _mm256_add_epi16(p[2], p[3]));
        }
        let ones = _mm256_set1_epi16(1);
        _mm256_add_epi32(_mm256_madd_epi16(s[0], ones), _mm256_madd_epi16(s[1], ones))
    }

    /// [`tile_isum`] with AVX-VNNI: `dpbusd` sums 4 byte products straight into i32 (no
    /// 16-bit stage, no bound to mind), two chains of 4.
    ///
    /// # Safety
    /// AVX2 and AVX-VNNI; `y` must point to 32 readable bytes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avxvnni")]
    pub(crate) unsafe fn tile_isum_vnni(w: &[__m256i; 8], y: *const i8) -> __m256i {
        let yb = |at: usize| _mm256_set1_epi32((y.add(at) as *const i32).read_unaligned());
        let mut s = [_mm256_setzero_si256(); 2];
        for c in 0..4 {
            for h in 0..2 {
                s[h] = _mm256_dpbusd_avx_epi32(s[h], w[4 * h + c], yb(16 * h + 4 * c));
            }
        }
        _mm256_add_epi32(s[0], s[1])
    }

    /// The 16 bytes of nibbles at `qs` as 32 bytes 0..=15 in value order: low nibbles
    /// (values 0..16) in the low 128-bit lane, high nibbles (values 16..32) in the high lane.
    /// The 16 bytes are broadcast to both lanes by the load itself (`vbroadcasti128`), the
    /// high lane shifted right by 4 (`srlv_epi64` shifts each 64-bit lane by its own count),
    /// then masked: 2 ALU instructions, none on the shuffle port.
    ///
    /// # Safety
    /// AVX2; `qs` must point to 16 readable bytes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn nibbles(qs: *const u8) -> __m256i {
        let v = _mm256_broadcastsi128_si256(_mm_loadu_si128(qs as *const __m128i));
        let v = _mm256_srlv_epi64(v, _mm256_setr_epi64x(0, 0, 4, 4));
        _mm256_and_si256(v, _mm256_set1_epi8(0x0F))
    }

    /// The 4 little-endian f16 at `p + AT` as f32 lanes 0..4, converted straight from memory
    /// (`vcvtph2ps xmm, m64`: one arithmetic instruction, no move through the shuffle port;
    /// `asm!` for the reason given at [`broadcast_u32`]). Reads 8 bytes.
    ///
    /// # Safety
    /// F16C; `p + AT` must point to 8 readable bytes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn f16x4_load<const AT: usize>(p: *const u8) -> __m128 {
        let v: __m128;
        std::arch::asm!(
            "vcvtph2ps {v}, qword ptr [{p} + {at}]",
            v = lateout(xmm_reg) v,
            p = in(reg) p,
            at = const AT,
            options(pure, readonly, nostack, preserves_flags),
        );
        v
    }
}

/// Test helpers shared by the Q5_0 and Q5_1 tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Q8Rows, BLOCK};
    use half::f16;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Where a format's fields sit in its block.
    pub struct Layout {
        pub bytes: usize,
        pub qh: usize,
        pub qs: usize,
        /// Byte offsets of the f16 fields (d, and Q5_1's m).
        pub f16s: &'static [usize],
    }

    pub fn rng(seed: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(seed)
    }

    pub fn has_avx2() -> bool {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    }

    /// `nb` random blocks: random bytes for the quants and fifth bits (every value of both),
    /// every 7th block from the 3rd with all quant and high-bit bytes 0xFF, every 7th from the
    /// 5th with all 0x00; f16 fields random finite ±[1e-3, 1].
    pub fn random_row(rng: &mut ChaCha8Rng, f: &Layout, nb: usize) -> Vec<u8> {
        let mut data = vec![0u8; nb * f.bytes];
        rng.fill(&mut data[..]);
        for (b, blk) in data.chunks_exact_mut(f.bytes).enumerate() {
            if b % 7 == 3 {
                blk[f.qh..].fill(0xFF);
            } else if b % 7 == 5 {
                blk[f.qh..].fill(0);
            }
            debug_assert!(f.qs == f.qh + 4 && f.bytes == f.qs + 16);
            for &at in f.f16s {
                let mag = 10f32.powf(rng.random_range(-3.0f32..=0.0));
                let v = if rng.random_bool(0.5) { -mag } else { mag };
                blk[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
            }
        }
        data
    }

    /// m activation rows of nb blocks, quantized as Q8_0 / Q8_1: mostly values in ±2, 5%
    /// exact zeros, 1% outliers to ±40, block 1 all zero, block 2 of large magnitude (±1e3;
    /// not more: Q8_1's f16 block sum s = d·Σq overflows to inf once |Σx| passes 65,504, in
    /// ggml as here).
    pub fn random_q8(rng: &mut ChaCha8Rng, m: usize, nb: usize) -> Q8Rows {
        let k = nb * BLOCK;
        let x: Vec<f32> = (0..m * k)
            .map(|i| match (i % k) / BLOCK {
                1 => 0.0,
                2 => rng.random_range(-1e3f32..1e3),
                _ if rng.random_bool(0.05) => 0.0,
                _ if rng.random_bool(0.01) => rng.random_range(-40f32..40.0),
                _ => rng.random_range(-2f32..2.0),
            })
            .collect();
        let mut a = Q8Rows::default();
        a.quantize(&x, m, k);
        a
    }

    /// Rows of nb blocks, row r with every quant `ys[r]`, every scale d (s as Q8_1 rounds
    /// it: f16(f16(Σq)·d)).
    pub fn fixed_q8(ys: &[i8], nb: usize, d: f32) -> Q8Rows {
        let m = ys.len();
        let mut a = Q8Rows {
            m,
            blocks: nb,
            ..Default::default()
        };
        for &y in ys {
            a.qs.extend(std::iter::repeat_n(y, nb * BLOCK));
        }
        // Block-major: d[b·m + r].
        for _ in 0..nb {
            for &y in ys {
                a.d.push(d);
                a.s.push((f16::from_f32(32.0 * y as f32) * f16::from_f32(d)).to_f32());
                a.qsum.push(32 * y as i32);
            }
        }
        a
    }

    /// The activations of the saturation tests: 8 rows of ±127 (and −128 where the kernel
    /// allows it), same-sign and mixed neighbours, so that `Acc`'s pairing of rows meets
    /// every sign combination at the largest magnitudes.
    pub fn extreme_rows(allow_minus_128: bool) -> Vec<i8> {
        let lo = if allow_minus_128 { -128 } else { -127 };
        vec![lo, lo, 127, 127, lo, 127, 127, lo, lo]
    }

    /// The row's bytes as candle's block type T (size checked; T is plain old data).
    pub fn as_candle<T>(bytes: &[u8], bb: usize) -> Vec<T> {
        assert_eq!(std::mem::size_of::<T>(), bb);
        let n = bytes.len() / bb;
        let mut v = Vec::<T>::with_capacity(n);
        // SAFETY: T is a repr(C) block of f16s and bytes: every bit pattern is valid.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), v.as_mut_ptr() as *mut u8, n * bb);
            v.set_len(n);
        }
        v
    }

    /// For R in {1, 2, 3, 4, 8} and the first rows 1 and m − R: every result of `run`
    /// (R rows at once) within 1e-5 · Σ|terms| of `reference(r)` = (value, Σ|terms|).
    pub fn check_all_r(
        row: &[u8],
        a: &Q8Rows,
        reference: impl Fn(usize) -> (f32, f64),
        run: impl Fn(*const u8, &Q8Rows, usize, &mut [f32]),
    ) {
        for rr in [1usize, 2, 3, 4, 8] {
            assert!(a.m > rr + 1);
            for first in [1, a.m - rr] {
                let mut out = vec![0f32; rr];
                run(row.as_ptr(), a, first, &mut out);
                for (t, &got) in out.iter().enumerate() {
                    let (want, abs) = reference(first + t);
                    let err = (got as f64 - want as f64).abs();
                    assert!(
                        err <= 1e-5 * abs + 1e-30,
                        "blocks {} R {rr} row {}: {got} vs {want} (Σ|terms| {abs})",
                        a.blocks,
                        first + t
                    );
                }
            }
        }
    }

    /// 8 rows of `nb` blocks of `bb` bytes interleaved into a tile by `tile` (tile block
    /// `tbb` bytes); also checks that every row's every block comes back unchanged.
    pub fn tile_rows(
        rows: &[Vec<u8>],
        bb: usize,
        tbb: usize,
        tile: impl Fn([&[u8]; 8], &mut [u8]),
        untile: impl Fn(&[u8], usize, &mut [u8]),
    ) -> Vec<u8> {
        assert_eq!(rows.len(), 8);
        let nb = rows[0].len() / bb;
        let mut t = vec![0u8; nb * tbb];
        for b in 0..nb {
            let src: [&[u8]; 8] = std::array::from_fn(|j| &rows[j][b * bb..(b + 1) * bb]);
            tile(src, &mut t[b * tbb..(b + 1) * tbb]);
        }
        let mut back = vec![0u8; bb];
        for b in 0..nb {
            for j in 0..8 {
                untile(&t[b * tbb..(b + 1) * tbb], j, &mut back);
                assert_eq!(back, rows[j][b * bb..(b + 1) * bb], "block {b} row {j}");
            }
        }
        t
    }

    /// For R in {1, 2, 3, 4, 8} and the first rows 1 and m − R: lane j of every result of
    /// `run(tile, a, first, R)` within 1e-5 · Σ|terms| of `reference(j, r)` = (value, Σ|terms|).
    pub fn check_tile_all_r(
        tile: &[u8],
        a: &Q8Rows,
        reference: impl Fn(usize, usize) -> (f32, f64),
        run: impl Fn(*const u8, &Q8Rows, usize, usize) -> Vec<[f32; 8]>,
    ) {
        for rr in [1usize, 2, 3, 4, 8] {
            assert!(a.m > rr + 1);
            for first in [1, a.m - rr] {
                let out = run(tile.as_ptr(), a, first, rr);
                assert_eq!(out.len(), rr);
                for (t, lanes) in out.iter().enumerate() {
                    for (j, &got) in lanes.iter().enumerate() {
                        let (want, abs) = reference(j, first + t);
                        let err = (got as f64 - want as f64).abs();
                        assert!(
                            err <= 1e-5 * abs + 1e-30,
                            "blocks {} R {rr} act row {} weight row {j}: {got} vs {want}",
                            a.blocks,
                            first + t
                        );
                    }
                }
            }
        }
    }

    /// The lanes of R vectors.
    #[cfg(target_arch = "x86_64")]
    pub fn lanes<const R: usize>(v: [std::arch::x86_64::__m256; R]) -> Vec<[f32; 8]> {
        v.iter()
            .map(|x| {
                let mut l = [0f32; 8];
                unsafe { std::arch::x86_64::_mm256_storeu_ps(l.as_mut_ptr(), *x) };
                l
            })
            .collect()
    }

    /// The spare-bit layout against a plain description: random 5-bit quants through
    /// `tile_q5` / `untile_q5`, and the registers of `tile_quants` hold value 4c + i (low) and
    /// 16 + 4c + i (high) of row j at byte 4j + i.
    #[test]
    fn tile_q5_layout() {
        let mut rng = rng(7);
        for _ in 0..200 {
            let q: [[u8; 32]; 8] =
                std::array::from_fn(|_| std::array::from_fn(|_| rng.random_range(0..32u8)));
            let mut t = [0u8; super::TILE_QUANT_BYTES];
            super::tile_q5(&q, &mut t);
            for j in 0..8 {
                assert_eq!(super::untile_q5(&t, j), q[j]);
            }
            if has_avx2() {
                let w = unsafe { super::tile_quants(t.as_ptr()) };
                for c in 0..4 {
                    let (mut lo, mut hi) = ([0u8; 32], [0u8; 32]);
                    unsafe {
                        use std::arch::x86_64::*;
                        _mm256_storeu_si256(lo.as_mut_ptr() as *mut __m256i, w[c]);
                        _mm256_storeu_si256(hi.as_mut_ptr() as *mut __m256i, w[4 + c]);
                    }
                    for j in 0..8 {
                        for i in 0..4 {
                            assert_eq!(lo[4 * j + i], q[j][4 * c + i]);
                            assert_eq!(hi[4 * j + i], q[j][16 + 4 * c + i]);
                        }
                    }
                }
            }
        }
    }

    /// Q8_0 / Q8_1 quantization's quants stay in [−127, 127]: on random blocks of random
    /// scale and on blocks built so that x/d lands just past ±127 (values next to ±max|x|).
    pub fn assert_q8_never_minus_128() {
        let mut rng = rng(99);
        let mut x = Vec::new();
        for i in 0..4000 {
            let scale = 10f32.powf(rng.random_range(-30f32..30.0));
            let mut blk: Vec<f32> = (0..BLOCK)
                .map(|_| rng.random_range(-1f32..1.0) * scale)
                .collect();
            if i % 2 == 0 {
                // −max and values one ulp below it in magnitude, and at max itself.
                let mx = -scale;
                blk[0] = mx;
                for v in &mut blk[1..8] {
                    *v = f32::from_bits(mx.to_bits() - 1);
                }
                blk[8] = scale;
            }
            x.extend(blk);
        }
        let mut a = Q8Rows::default();
        a.quantize(&x, 1, x.len());
        assert!(a.qs.iter().all(|&q| q >= -127));
    }
}
