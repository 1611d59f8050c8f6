//! Attention on the CPU in one pass over plain slices: RoPE, the write into the KV cache,
//! scores, softmax and the weighted sum of values for every (row, head), spread over the
//! thread pool in work items of a row and the query heads that share a KV head.
//!
//! On the CPU the batched forward pass otherwise spends as long in the dozen candle ops of
//! attention (reshapes, transposes, copies, small matmuls, each with an allocation) as in the
//! weight matmuls for a small model; here each query reads its keys and values where the cache
//! holds them, with no intermediate tensor. The arithmetic is the same as the tensor path
//! (RoPE, q·k/√d, mask, softmax, Σ p·v in f32) on the keys and values as the cache holds them
//! (f16 by default: [`KvDtype`]); only the order of additions differs.

use crate::family::Family;

/// How the CPU KV cache stores keys and values.
///
/// f16 (llama.cpp's default) halves the bytes attention reads every step, which at a batch of
/// 8 rows and a few hundred slots are a third as many as the weights' and come from memory.
/// Its rounding (2⁻¹¹ relative) moves a 256-token greedy run of the default model's entropy
/// by 0.05 bits per token on average, as much as switching to candle-transformers' forward
/// pass does (benches/README.md); f32 keeps the projections' values exactly, and attention
/// over it computes in f64 (the precise choice, exact mode's; slower).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvDtype {
    #[default]
    F16,
    F32,
}

impl KvDtype {
    /// Bytes per stored value.
    pub fn bytes(self) -> usize {
        match self {
            KvDtype::F16 => 2,
            KvDtype::F32 => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KvDtype::F16 => "f16",
            KvDtype::F32 => "f32",
        }
    }
}

impl std::str::FromStr for KvDtype {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f16" => Ok(KvDtype::F16),
            "f32" => Ok(KvDtype::F32),
            _ => Err(format!("unknown KV cache type {s:?}: use f16 or f32")),
        }
    }
}

/// One side (keys or values) of a layer's cache.
#[derive(Clone)]
enum Store {
    F32(Vec<f32>),
    /// f16 bits (`u16`, so that a zeroed buffer comes from the allocator's zeroed pages).
    F16(Vec<u16>),
}

impl Store {
    fn zeroed(dtype: KvDtype, n: usize) -> Self {
        match dtype {
            KvDtype::F32 => Store::F32(vec![0f32; n]),
            KvDtype::F16 => Store::F16(vec![0u16; n]),
        }
    }

    fn len(&self) -> usize {
        match self {
            Store::F32(x) => x.len(),
            Store::F16(x) => x.len(),
        }
    }

    fn as_mut_ptr(&mut self) -> *mut u8 {
        match self {
            Store::F32(x) => x.as_mut_ptr().cast(),
            Store::F16(x) => x.as_mut_ptr().cast(),
        }
    }
}

/// One layer's cache: `(batch, kv_heads, capacity, head_dim)`, row-major, in f32 or f16.
#[derive(Clone)]
pub struct LayerCache {
    k: Store,
    v: Store,
}

impl LayerCache {
    /// A cache of `len` keys and `len` values, zero (pages are mapped as slots are written).
    pub fn new(dtype: KvDtype, len: usize) -> Self {
        Self {
            k: Store::zeroed(dtype, len),
            v: Store::zeroed(dtype, len),
        }
    }

    /// A cache holding `k` and `v` (rounded to f16 for [`KvDtype::F16`], saturating as
    /// [`attend`]'s writes do).
    pub fn from_values(dtype: KvDtype, k: &[f32], v: &[f32]) -> Self {
        let top = half::f16::MAX.to_f32();
        let store = |x: &[f32]| match dtype {
            KvDtype::F32 => Store::F32(x.to_vec()),
            KvDtype::F16 => Store::F16(
                x.iter()
                    .map(|&x| half::f16::from_f32(x.clamp(-top, top)).to_bits())
                    .collect(),
            ),
        };
        Self {
            k: store(k),
            v: store(v),
        }
    }

    /// Copies slots `0..len` of row `from` to row `to`, keys and values, for every KV head
    /// (rows of `kv_heads` × `capacity` × `head_dim` values): a continuous batch moves its
    /// last row into a finished row's place, so that its rows stay 0..n.
    pub fn copy_row(
        &mut self,
        (kv_heads, capacity, head_dim): (usize, usize, usize),
        from: usize,
        to: usize,
        len: usize,
    ) {
        assert!(len <= capacity);
        let row = kv_heads * capacity * head_dim;
        for store in [&mut self.k, &mut self.v] {
            for h in 0..kv_heads {
                let at = |r: usize| r * row + h * capacity * head_dim;
                let src = at(from)..at(from) + len * head_dim;
                match store {
                    Store::F32(x) => x.copy_within(src, at(to)),
                    Store::F16(x) => x.copy_within(src, at(to)),
                }
            }
        }
    }

    pub fn dtype(&self) -> KvDtype {
        match self.k {
            Store::F32(_) => KvDtype::F32,
            Store::F16(_) => KvDtype::F16,
        }
    }
}

/// Shapes of one step.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    pub batch: usize,
    /// Query tokens per row this step.
    pub t: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub capacity: usize,
    /// First cache slot this step writes (every row's, unless `slots` says otherwise).
    pub slot: usize,
    pub family: Family,
    /// Each row's first slot, when rows differ (continuous batching: every row at its own
    /// length); None: every row at `slot`. Row r attends to slots 0..slots[r] + t.
    pub slots: Option<&'a [usize]>,
    /// The cache row of the step's row 0 (a continuous batch prefills a newcomer in its own
    /// row); the step's rows are cache rows `first_row..first_row + batch`.
    pub first_row: usize,
}

impl Step<'_> {
    /// Row `r`'s first slot this step.
    #[inline(always)]
    pub fn slot_of(&self, r: usize) -> usize {
        self.slots.map_or(self.slot, |s| s[r])
    }

    /// Slots row `r` attends to: its history and this step's tokens.
    #[inline(always)]
    pub fn span_of(&self, r: usize) -> usize {
        self.slot_of(r) + self.t
    }

    /// The longest row's span: the stride of the mask's rows.
    pub fn max_span(&self) -> usize {
        self.slots
            .map_or(self.slot, |s| s.iter().copied().max().unwrap_or(0))
            + self.t
    }
}

/// Rotates `x` (one head, `head_dim` values) by position tables `cos`, `sin` (head_dim/2).
#[inline(always)]
fn rope(x: &mut [f32], cos: &[f32], sin: &[f32], family: Family) {
    let half = x.len() / 2;
    match family {
        // Interleaved pairs (x[2i], x[2i+1]), as candle's `rope_i`.
        Family::Llama => {
            for i in 0..half {
                let (a, b) = (x[2 * i], x[2 * i + 1]);
                x[2 * i] = a * cos[i] - b * sin[i];
                x[2 * i + 1] = a * sin[i] + b * cos[i];
            }
        }
        // Halves (x[i], x[i + half]), as candle's `rope`.
        Family::Qwen2 | Family::Qwen3 => {
            for i in 0..half {
                let (a, b) = (x[i], x[i + half]);
                x[i] = a * cos[i] - b * sin[i];
                x[i + half] = b * cos[i] + a * sin[i];
            }
        }
    }
}

/// Σ a·b with eight independent accumulators (so that it vectorizes).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// What every (row, head) work item reads, and where it writes.
struct HeadIo<'a> {
    s: &'a Step<'a>,
    q: &'a [f32],
    cos: &'a [f32],
    sin: &'a [f32],
    mask: Option<&'a [f32]>,
    cache: &'a CachePtrs,
    out: &'a Shared,
}

/// The layer's key and value caches, shared by the pool's threads: each (row, KV head)
/// region is written by one thread at a time and read only once written.
struct CachePtrs {
    k: *mut u8,
    v: *mut u8,
    dtype: KvDtype,
}
// SAFETY: see the disjointness arguments where it is written through.
unsafe impl Sync for CachePtrs {}

impl CachePtrs {
    /// Where row `r`'s KV head `kvh` starts in both caches (values of `dtype`).
    fn region(&self, s: &Step, r: usize, kvh: usize) -> (*const u8, *const u8) {
        let base =
            ((s.first_row + r) * s.kv_heads + kvh) * s.capacity * s.head_dim * self.dtype.bytes();
        (
            self.k.wrapping_add(base).cast_const(),
            self.v.wrapping_add(base).cast_const(),
        )
    }

    /// Writes row `r`'s keys (rotated) and values of KV head `h` into slots
    /// `slot..slot + t`, from the step's projections `k` and `v` (batch, t, kv_heads·d).
    ///
    /// # Safety
    /// The caches must have the step's shape, and no other thread may read or write this
    /// (row, KV head) region meanwhile.
    #[allow(clippy::too_many_arguments)]
    unsafe fn write(
        &self,
        s: &Step,
        k: &[f32],
        v: &[f32],
        cos: &[f32],
        sin: &[f32],
        r: usize,
        h: usize,
    ) {
        let (t, d) = (s.t, s.head_dim);
        let (half, hk) = (d / 2, s.kv_heads * d);
        let (kr, vr) = self.region(s, r, h);
        for i in 0..t {
            let tab = (r * t + i) * half;
            let src = (r * t + i) * hk + h * d;
            let at = (s.slot_of(r) + i) * d;
            match self.dtype {
                KvDtype::F32 => {
                    let kd = std::slice::from_raw_parts_mut(kr.cast_mut().cast::<f32>().add(at), d);
                    kd.copy_from_slice(&k[src..src + d]);
                    rope(kd, &cos[tab..tab + half], &sin[tab..tab + half], s.family);
                    std::slice::from_raw_parts_mut(vr.cast_mut().cast::<f32>().add(at), d)
                        .copy_from_slice(&v[src..src + d]);
                }
                KvDtype::F16 => {
                    use half::slice::HalfFloatSliceExt;
                    // The key is rotated in f32, then rounded (to nearest even, through F16C
                    // where the CPU has it).
                    let mut kd = [0f32; MAX_HEAD_DIM];
                    let kd = &mut kd[..d];
                    kd.copy_from_slice(&k[src..src + d]);
                    rope(kd, &cos[tab..tab + half], &sin[tab..tab + half], s.family);
                    let mut vd = [0f32; MAX_HEAD_DIM];
                    let vd = &mut vd[..d];
                    vd.copy_from_slice(&v[src..src + d]);
                    // Beyond f16's range a value saturates rather than becoming infinite.
                    let top = half::f16::MAX.to_f32();
                    for x in kd.iter_mut().chain(vd.iter_mut()) {
                        *x = x.clamp(-top, top);
                    }
                    let f16s = |p: *const u8| {
                        std::slice::from_raw_parts_mut(p.cast_mut().cast::<half::f16>().add(at), d)
                    };
                    f16s(kr).convert_from_f32_slice(kd);
                    f16s(vr).convert_from_f32_slice(vd);
                }
            }
        }
    }
}

impl HeadIo<'_> {
    /// Query head `h` of row `r`'s token `i` into `qh`, rotated; returns where its output
    /// goes (the same offset in the output as the query's in `q`).
    #[inline(always)]
    fn query(&self, r: usize, i: usize, h: usize, qh: &mut [f32]) -> usize {
        let s = self.s;
        let (d, half) = (s.head_dim, s.head_dim / 2);
        let tab = (r * s.t + i) * half;
        let src = (r * s.t + i) * s.heads * d + h * d;
        qh.copy_from_slice(&self.q[src..src + d]);
        rope(
            qh,
            &self.cos[tab..tab + half],
            &self.sin[tab..tab + half],
            s.family,
        );
        src
    }
}

/// Most query heads one work item takes (see [`heads_per_item`]).
pub const MAX_GROUP: usize = 8;

/// Largest head size [`attend`] takes.
pub const MAX_HEAD_DIM: usize = 256;

/// Four slots' scores from their 8-lane partial sums: `[a0+a1, a2+a3, b0+b1, b2+b3 | a4+a5,
/// ...]` twice, then the two halves; scaled, masked, stored at `sc[first..first + 4]`, and
/// folded into the running maximum `mx` (`max_ps` returns its second operand when the first
/// is NaN: NaN scores are passed over, as f32::max does).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quad_scores(
    [a, b, c, e]: [std::arch::x86_64::__m256; 4],
    scale: f32,
    mask: Option<&[f32]>,
    sc: &mut [f32],
    first: usize,
    mx: &mut std::arch::x86_64::__m128,
) {
    use std::arch::x86_64::*;
    let x = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, e));
    let x = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    let mut x = _mm_mul_ps(x, _mm_set1_ps(scale));
    if let Some(m) = mask {
        x = _mm_add_ps(x, _mm_loadu_ps(m[first..first + 4].as_ptr()));
    }
    _mm_storeu_ps(sc[first..first + 4].as_mut_ptr(), x);
    *mx = _mm_max_ps(x, *mx);
}

/// `sc[i]` ← e^(sc[i] − max), the maximum being that of the four lanes of `mx4` and of `mx1`;
/// returns their sum. Eight at a time, the last few through a copy padded with −inf (which
/// gives 0, as a masked slot does).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn softmax_unnormalized(sc: &mut [f32], mx4: std::arch::x86_64::__m128, mx1: f32) -> f32 {
    use crate::kernels::x86::{exp8, hsum};
    use std::arch::x86_64::*;
    let m2 = _mm_max_ps(_mm_movehl_ps(mx4, mx4), mx4);
    let max = _mm_cvtss_f32(_mm_max_ss(_mm_movehdup_ps(m2), m2)).max(mx1);
    let (mx, mut tv) = (_mm256_set1_ps(max), _mm256_setzero_ps());
    let mut chunks = sc.chunks_exact_mut(8);
    for c in &mut chunks {
        let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), mx));
        _mm256_storeu_ps(c.as_mut_ptr(), e);
        tv = _mm256_add_ps(tv, e);
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let mut pad = [f32::NEG_INFINITY; 8];
        pad[..rest.len()].copy_from_slice(rest);
        let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(pad.as_ptr()), mx));
        _mm256_storeu_ps(pad.as_mut_ptr(), e);
        rest.copy_from_slice(&pad[..rest.len()]);
        tv = _mm256_add_ps(tv, e);
    }
    hsum(tv)
}

/// Most query heads [`group_avx2`] takes at once (a larger group runs in parts).
#[cfg(target_arch = "x86_64")]
const GROUP_PART: usize = 4;

/// Values i..i + 8 of a cache row at `p`: f32, or f16 (`H`) widened by F16C.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load8<const H: bool>(p: *const u8, i: usize) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    if H {
        _mm256_cvtph_ps(_mm_loadu_si128(p.cast::<u16>().add(i) as *const __m128i))
    } else {
        _mm256_loadu_ps(p.cast::<f32>().add(i))
    }
}

/// [`one_head`] on AVX2 + FMA for `G` query heads from `h0` on, which share one KV head, over
/// an f32 cache or (`H`) an f16 one. Each vector of 8 keys or values is loaded (and widened,
/// at most one F16C conversion per cycle) once for all G heads rather than once per head,
/// with the heads' queries read from L1, so that the KV head comes from memory once for the
/// group. Each head's arithmetic is the same whatever the group, and so its result: its key
/// dot products in two chains of fused multiply-adds, four slots' sums reduced together with
/// one horizontal reduction, the values summed two slots at a time (a pair both of whose
/// weights are 0 passed over) and normalized once at the end.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
// The loops index several per-head arrays by (head, vector) in the order the arithmetic needs.
#[allow(clippy::needless_range_loop)]
unsafe fn group_avx2<const N: usize, const G: usize, const H: bool>(
    io: &HeadIo,
    r: usize,
    h0: usize,
    qh: &mut [f32],
    scores: &mut [f32],
) {
    use crate::kernels::x86::hsum;
    use std::arch::x86_64::*;
    let s = io.s;
    let (t, d) = (s.t, s.head_dim);
    debug_assert!(d == 8 * N && (io.cache.dtype == KvDtype::F16) == H);
    let (span, stride) = (s.span_of(r), s.max_span());
    debug_assert!(qh.len() >= G * d && scores.len() >= G * span);
    let kvh = h0 / (s.heads / s.kv_heads);
    let scale = 1.0 / (d as f32).sqrt();
    let (kp, vp) = io.cache.region(s, r, kvh);
    // Bytes per cached slot.
    let row = d * io.cache.dtype.bytes();
    let quads = span / 4 * 4;
    for i in 0..t {
        let mut src = [0usize; G];
        for (j, at) in src.iter_mut().enumerate() {
            *at = io.query(r, i, h0 + j, &mut qh[j * d..(j + 1) * d]);
        }
        let qp = qh.as_ptr();
        let mrow = io
            .mask
            .map(|m| &m[(r * t + i) * stride..(r * t + i) * stride + span]);
        // Scores, slot by slot; each head's 8 lanes of a slot wait in `lanes` until its quad
        // is complete.
        let mut mx4 = [_mm_set1_ps(f32::NEG_INFINITY); G];
        let mut mx1 = [f32::NEG_INFINITY; G];
        let mut lanes = [[_mm256_setzero_ps(); 4]; G];
        for slot in 0..span {
            let k = kp.add(slot * row);
            let mut acc = [[_mm256_setzero_ps(); 2]; G];
            for n in 0..N {
                let kn = load8::<H>(k, 8 * n);
                for (j, a) in acc.iter_mut().enumerate() {
                    a[n % 2] =
                        _mm256_fmadd_ps(_mm256_loadu_ps(qp.add(j * d + 8 * n)), kn, a[n % 2]);
                }
            }
            for j in 0..G {
                let dot = _mm256_add_ps(acc[j][0], acc[j][1]);
                let sc = &mut scores[j * span..(j + 1) * span];
                if slot < quads {
                    lanes[j][slot % 4] = dot;
                    if slot % 4 == 3 {
                        quad_scores(lanes[j], scale, mrow, sc, slot - 3, &mut mx4[j]);
                    }
                } else {
                    let v = hsum(dot) * scale + mrow.map_or(0.0, |m| m[slot]);
                    sc[slot] = v;
                    mx1[j] = mx1[j].max(v);
                }
            }
        }
        let total: [f32; G] = std::array::from_fn(|j| {
            softmax_unnormalized(&mut scores[j * span..(j + 1) * span], mx4[j], mx1[j])
        });
        // Σ p·v two slots at a time, each pair's values loaded once for the heads that weigh
        // it; the pair's products are summed first, so that the accumulators' dependency
        // chains advance once per pair.
        let mut ys = [[_mm256_setzero_ps(); N]; G];
        let evens = span / 2 * 2;
        for pair in (0..evens).step_by(2) {
            let p: [[f32; 2]; G] =
                std::array::from_fn(|j| [scores[j * span + pair], scores[j * span + pair + 1]]);
            let live: [bool; G] = std::array::from_fn(|j| p[j] != [0.0, 0.0]);
            if !live.contains(&true) {
                continue;
            }
            let p0: [__m256; G] = std::array::from_fn(|j| _mm256_set1_ps(p[j][0]));
            let p1: [__m256; G] = std::array::from_fn(|j| _mm256_set1_ps(p[j][1]));
            let v0 = vp.add(pair * row);
            let v1 = v0.add(row);
            for n in 0..N {
                let (a, b) = (load8::<H>(v0, 8 * n), load8::<H>(v1, 8 * n));
                for j in 0..G {
                    if live[j] {
                        let t = _mm256_mul_ps(p1[j], b);
                        ys[j][n] = _mm256_add_ps(ys[j][n], _mm256_fmadd_ps(p0[j], a, t));
                    }
                }
            }
        }
        for (j, y) in ys.iter_mut().enumerate() {
            let p = scores[j * span + span - 1];
            if evens < span && p != 0.0 {
                let (p, v) = (_mm256_set1_ps(p), vp.add((span - 1) * row));
                for (n, yn) in y.iter_mut().enumerate() {
                    *yn = _mm256_fmadd_ps(p, load8::<H>(v, 8 * n), *yn);
                }
            }
            let inv = _mm256_set1_ps(1.0 / total[j]);
            // (r, i, h0 + j) is this item's own output head; no other item writes it, and it
            // lies inside `out` (b·t·heads·d values).
            let out = io.out.0.add(src[j]);
            for (n, yn) in y.iter().enumerate() {
                _mm256_storeu_ps(out.add(8 * n), _mm256_mul_ps(*yn, inv));
            }
        }
    }
}

/// [`group_avx2`] for the step's head size and cache type, `heads` query heads in parts of
/// at most [`GROUP_PART`]; false (nothing done) for a head size it has no instance for.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; the heads share one KV head, whose cache rows hold the
/// step's span of slots; `qh` and `sc` hold `heads` heads; the item writes only its own
/// output heads.
#[cfg(target_arch = "x86_64")]
unsafe fn groups_avx2(
    io: &HeadIo,
    r: usize,
    h0: usize,
    heads: usize,
    qh: &mut [f32],
    sc: &mut [f32],
) -> bool {
    macro_rules! by_group {
        ($n:literal, $h:expr, $g:expr, $f16:expr) => {
            match ($g, $f16) {
                (1, false) => group_avx2::<$n, 1, false>(io, r, $h, qh, sc),
                (2, false) => group_avx2::<$n, 2, false>(io, r, $h, qh, sc),
                (3, false) => group_avx2::<$n, 3, false>(io, r, $h, qh, sc),
                (_, false) => group_avx2::<$n, 4, false>(io, r, $h, qh, sc),
                (1, true) => group_avx2::<$n, 1, true>(io, r, $h, qh, sc),
                (2, true) => group_avx2::<$n, 2, true>(io, r, $h, qh, sc),
                (3, true) => group_avx2::<$n, 3, true>(io, r, $h, qh, sc),
                (_, true) => group_avx2::<$n, 4, true>(io, r, $h, qh, sc),
            }
        };
    }
    let f16 = io.cache.dtype == KvDtype::F16;
    let mut h = h0;
    while h < h0 + heads {
        let g = (h0 + heads - h).min(GROUP_PART);
        match io.s.head_dim {
            16 => by_group!(2, h, g, f16),
            32 => by_group!(4, h, g, f16),
            64 => by_group!(8, h, g, f16),
            128 => by_group!(16, h, g, f16),
            _ => return false,
        }
        h += g;
    }
    true
}

/// Query head `h` of row `r`, for each of the step's query tokens: rotate the query, score
/// every visible slot, softmax, and sum the values into the output.
#[inline(always)]
fn one_head(io: &HeadIo, r: usize, h: usize, qh: &mut [f32], scores: &mut [f32]) {
    let s = io.s;
    let (t, d) = (s.t, s.head_dim);
    let (span, stride) = (s.span_of(r), s.max_span());
    let scores = &mut scores[..span];
    let kvh = h / (s.heads / s.kv_heads);
    let scale = 1.0 / (d as f32).sqrt();
    // SAFETY: the region of (r, kvh) holds `span` written slots, and no thread writes it
    // while this item reads it.
    let widened;
    let (ck, cv) = unsafe {
        let (kp, vp) = io.cache.region(s, r, kvh);
        match io.cache.dtype {
            KvDtype::F32 => (
                std::slice::from_raw_parts(kp.cast::<f32>(), span * d),
                std::slice::from_raw_parts(vp.cast::<f32>(), span * d),
            ),
            KvDtype::F16 => {
                let f32s = |p: *const u8| -> Vec<f32> {
                    std::slice::from_raw_parts(p.cast::<half::f16>(), span * d)
                        .iter()
                        .map(|x| x.to_f32())
                        .collect()
                };
                widened = (f32s(kp), f32s(vp));
                (&widened.0[..], &widened.1[..])
            }
        }
    };
    let mut exact = Vec::new();
    for i in 0..t {
        let src = io.query(r, i, h, qh);
        let mrow = io
            .mask
            .map(|m| &m[(r * t + i) * stride..(r * t + i) * stride + span]);
        // SAFETY: (r, i, h) is this item's own output head; no other item writes it, and it
        // lies inside `out` (b·t·heads·d values, zeroed here before it is read).
        let y = unsafe {
            std::ptr::write_bytes(io.out.0.add(src), 0, d);
            std::slice::from_raw_parts_mut(io.out.0.add(src), d)
        };
        if io.cache.dtype == KvDtype::F32 {
            head_f64(qh, ck, cv, mrow, y, &mut exact);
            continue;
        }
        let mut max = f32::NEG_INFINITY;
        for (slot, sc) in scores.iter_mut().enumerate() {
            let mut x = dot(qh, &ck[slot * d..(slot + 1) * d]) * scale;
            if let Some(m) = mrow {
                x += m[slot];
            }
            *sc = x;
            max = max.max(x);
        }
        let mut total = 0f32;
        for sc in scores.iter_mut() {
            *sc = (*sc - max).exp();
            total += *sc;
        }
        for (slot, &p) in scores.iter().enumerate() {
            if p == 0.0 {
                continue;
            }
            let p = p / total;
            for (o, &x) in y.iter_mut().zip(&cv[slot * d..(slot + 1) * d]) {
                *o += p * x;
            }
        }
    }
}

/// One query's attention over an f32 cache in f64 (scores, softmax and the weighted sum of
/// values; rounded to f32 once): an f32 cache is the precise choice, exact mode's. With the
/// norms and F32 weights' sums also in f64, exact mode's entropies are within about twice
/// the rounding of f32 activations of a float64 forward pass (tests/exact.rs), where f32
/// sums and an approximate exp doubled that. `scores` is scratch.
fn head_f64(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    mask: Option<&[f32]>,
    y: &mut [f32],
    scores: &mut Vec<f64>,
) {
    let d = q.len();
    let scale = 1.0 / (d as f64).sqrt();
    scores.clear();
    scores.extend(keys.chunks_exact(d).enumerate().map(|(slot, k)| {
        let x: f64 = q.iter().zip(k).map(|(&a, &b)| a as f64 * b as f64).sum();
        x * scale + mask.map_or(0.0, |m| m[slot] as f64)
    }));
    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let mut total = 0.0;
    let mut acc = [0f64; MAX_HEAD_DIM];
    let acc = &mut acc[..d];
    for (&x, v) in scores.iter().zip(values.chunks_exact(d)) {
        let p = (x - max).exp();
        if p == 0.0 {
            continue;
        }
        total += p;
        for (o, &v) in acc.iter_mut().zip(v) {
            *o += p * v as f64;
        }
    }
    for (o, a) in y.iter_mut().zip(acc.iter()) {
        *o = (a / total) as f32;
    }
}

/// Pointer shared by the pool's threads, which write disjoint parts of its buffer.
struct Shared(*mut f32);
// SAFETY: see the disjointness arguments where it is written through.
unsafe impl Sync for Shared {}

/// Query heads per work item: a KV head's whole group of query heads (or the largest divisor
/// of it up to [`MAX_GROUP`]), so that its keys and values are read from memory once rather
/// than once per head, as long as that leaves every thread an item; else a smaller divisor.
/// Attention here waits on memory more than on arithmetic: one row of the default model (3
/// groups of 3 heads on 2 threads, one thread doing two groups) is 1.2-1.5× as fast grouped
/// as in 9 single heads (examples/attention_speed).
pub fn heads_per_item(s: &Step, threads: usize) -> usize {
    let g = s.heads / s.kv_heads;
    (1..=g.min(MAX_GROUP))
        .rev()
        .filter(|x| g.is_multiple_of(*x))
        .find(|x| s.batch * s.heads / x >= threads)
        .unwrap_or(1)
}

/// One layer's attention for a step.
///
/// `q` (batch, t, heads·d), `k` and `v` (batch, t, kv_heads·d) are the projections;
/// `cos`/`sin` (batch, t, d/2) the RoPE tables of each token's position; `mask`
/// (batch, t, [`Step::max_span`]) is added to the scores, row r reading the first
/// [`Step::span_of`]`(r)` of its columns (None: all visible). Keys (rotated) and values are
/// written into cache slots `slot..slot + t` of each row (its own slot with
/// [`Step::slots`]). Returns (batch, t, heads·d).
///
/// The cache may hold more rows than the step (a continuous batch's free rows): the step's
/// row r is the cache's row `first_row + r`.
///
/// Work items take `per_item` query heads of one group (a divisor of the group size, at most
/// [`MAX_GROUP`]; None: [`heads_per_item`] for the pool's threads). The result is the same
/// for every choice (examples/attention_speed compares their speed).
#[allow(clippy::too_many_arguments)]
pub fn attend(
    s: &Step,
    cache: &mut LayerCache,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    cos: &[f32],
    sin: &[f32],
    mask: Option<&[f32]>,
    per_item: Option<usize>,
) -> Vec<f32> {
    let per_item = per_item.unwrap_or_else(|| heads_per_item(s, crate::kernels::pool_threads()));
    let (b, t, d) = (s.batch, s.t, s.head_dim);
    assert!(
        (1..=MAX_GROUP).contains(&per_item) && (s.heads / s.kv_heads).is_multiple_of(per_item),
        "{per_item} heads per item do not divide a group of {}",
        s.heads / s.kv_heads
    );
    let (hq, hk) = (s.heads * d, s.kv_heads * d);
    let half = d / 2;
    let span = s.max_span();
    assert!(q.len() == b * t * hq && k.len() == b * t * hk && v.len() == b * t * hk);
    assert!(cos.len() == b * t * half && sin.len() == b * t * half && span <= s.capacity);
    assert!(s.slots.is_none_or(|x| x.len() == b), "one slot per row");
    assert!(
        d % 2 == 0 && d <= MAX_HEAD_DIM,
        "head size {d} is not even or above {MAX_HEAD_DIM}"
    );
    let row_len = s.kv_heads * s.capacity * d;
    assert!(
        cache.k.len() >= (s.first_row + b) * row_len
            && cache.k.len().is_multiple_of(row_len)
            && cache.v.len() == cache.k.len()
    );
    if let Some(m) = mask {
        assert_eq!(m.len(), b * t * span);
    }
    // Keys (rotated) and values into the cache: by the work item of their row and KV head
    // when one item takes the KV head's whole group (its cache lines are then fetched once,
    // for the write, and read back from cache), else all here first.
    let owns_kv = per_item == s.heads / s.kv_heads;
    let cache = CachePtrs {
        dtype: cache.dtype(),
        k: cache.k.as_mut_ptr(),
        v: cache.v.as_mut_ptr(),
    };
    if !owns_kv {
        for r in 0..b {
            for h in 0..s.kv_heads {
                // SAFETY: the caches have the step's shape (asserted); no thread runs yet.
                unsafe { cache.write(s, k, v, cos, sin, r, h) };
            }
        }
    }
    // Every output value is written by its head's work item.
    let mut out = Vec::with_capacity(b * t * hq);
    let shared = Shared(out.spare_capacity_mut().as_mut_ptr().cast());
    // Work items: a row and `per_item` query heads of one group; each writes only its own
    // heads' outputs.
    let avx2 = crate::kernels::detected_isa().avx2();
    let work = |range: std::ops::Range<usize>| {
        let mut qh = vec![0f32; per_item * d];
        let mut scores = vec![0f32; per_item * span];
        let io = HeadIo {
            s,
            q,
            cos,
            sin,
            mask,
            cache: &cache,
            out: &shared,
        };
        let (qh, sc) = (&mut qh[..], &mut scores[..]);
        for item in range {
            let (r, h0) = (
                item / (s.heads / per_item),
                item % (s.heads / per_item) * per_item,
            );
            if owns_kv {
                // SAFETY: this item is the only one of its row and KV head; the caches have
                // the step's shape (asserted).
                unsafe { cache.write(s, k, v, cos, sin, r, h0 / per_item) };
            }
            // SAFETY (AVX2 paths): the CPU has AVX2 and FMA (detected at run time); the
            // heads share one KV head, whose cache rows hold `span` ≤ capacity slots of
            // head_dim = 8·N values; `qh` and `scores` hold `per_item` heads; the item
            // writes only its own output heads.
            #[cfg(target_arch = "x86_64")]
            // An f32 cache is read in f64 by `one_head` (exact mode's).
            let precise = cache.dtype == KvDtype::F32;
            if !(avx2 && !precise && unsafe { groups_avx2(&io, r, h0, per_item, qh, sc) }) {
                (h0..h0 + per_item)
                    .for_each(|h| one_head(&io, r, h, &mut qh[..d], &mut sc[..span]));
            }
            #[cfg(not(target_arch = "x86_64"))]
            (h0..h0 + per_item).for_each(|h| one_head(&io, r, h, &mut qh[..d], &mut sc[..span]));
        }
    };
    let items = b * s.heads / per_item;
    if b * s.heads * t * span * d < 1 << 14 {
        work(0..items);
    } else {
        crate::kernels::parallel_for(items, work);
    }
    // SAFETY: the items wrote all b·t·heads·d values (each its heads, for every token).
    unsafe { out.set_len(b * t * hq) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    /// The tensor-op attention of `BatchedModel::forward` (candle's RoPE, matmuls, softmax).
    #[allow(clippy::too_many_arguments)]
    fn reference(
        s: &Step,
        q: &Tensor,
        k_all: &Tensor,
        v_all: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
    ) -> Vec<f32> {
        let (b, t, d) = (s.batch, s.t, s.head_dim);
        let span = s.slot + t;
        let split = |x: &Tensor, n: usize, len: usize| {
            x.reshape((b, len, n, d))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let rope = |x: &Tensor, c: &Tensor, sn: &Tensor| match s.family {
            Family::Llama => candle_nn::rotary_emb::rope_i(x, c, sn).unwrap(),
            Family::Qwen2 | Family::Qwen3 => candle_nn::rotary_emb::rope(x, c, sn).unwrap(),
        };
        let q = rope(&split(q, s.heads, t), cos, sin);
        // Keys of earlier slots were rotated with their own positions when written: here every
        // slot's key comes rotated from `k_all` (span tokens) with tables for all of them.
        let k = split(k_all, s.kv_heads, span);
        let v = split(v_all, s.kv_heads, span);
        let g = s.heads / s.kv_heads;
        let q = q.reshape((b, s.kv_heads, g * t, d)).unwrap();
        let att = (q.matmul(&k.t().unwrap()).unwrap() / (d as f64).sqrt()).unwrap();
        let att = att.reshape((b, s.heads, t, span)).unwrap();
        let att = match mask {
            Some(m) => att.broadcast_add(m).unwrap(),
            None => att,
        };
        let att = candle_nn::ops::softmax_last_dim(&att).unwrap();
        let att = att.reshape((b, s.kv_heads, g * t, span)).unwrap();
        att.matmul(&v)
            .unwrap()
            .reshape((b, s.heads, t, d))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b, t, s.heads * d))
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    #[test]
    fn equals_the_tensor_ops_for_both_rope_styles_with_gqa_masks_and_history() {
        for dtype in [KvDtype::F32, KvDtype::F16] {
            equals_the_tensor_ops(dtype);
        }
    }

    /// With an f16 cache, the tensor ops get keys (rotated) and values rounded to f16.
    fn equals_the_tensor_ops(dtype: KvDtype) {
        let dev = Device::Cpu;
        let stored = |x: Tensor| match dtype {
            KvDtype::F32 => x,
            KvDtype::F16 => x
                .to_dtype(candle_core::DType::F16)
                .unwrap()
                .to_dtype(candle_core::DType::F32)
                .unwrap(),
        };
        for family in [Family::Llama, Family::Qwen2] {
            for (b, t, slot, d) in [
                (1, 1, 0, 16),
                (1, 1, 5, 16),
                (2, 3, 0, 16),
                (3, 1, 7, 16),
                (2, 4, 6, 16),
                // Head sizes of real models (SmolLM2: 64, Llama-3.1-8B: 128) and one with no
                // AVX2 path; spans that are and are not multiples of 4.
                (2, 1, 9, 64),
                (2, 2, 6, 128),
                (1, 3, 3, 24),
                // Longer spans (of more than the 32-slot blocks an earlier kernel used).
                (2, 1, 37, 64),
                (1, 2, 70, 32),
            ] {
                // Groups of 3 query heads per KV head, and (at head size 64) one group of 7,
                // which the f16 kernel takes in parts of 4 and 3.
                let (heads, kv_heads) = if d == 64 { (7, 1) } else { (6, 2) };
                let capacity = (slot + t).max(16);
                let s = Step {
                    batch: b,
                    t,
                    heads,
                    kv_heads,
                    head_dim: d,
                    capacity,
                    slot,
                    family,
                    slots: None,
                    first_row: 0,
                };
                let span = slot + t;
                let rnd = |shape: &[usize]| Tensor::randn(0f32, 1.0, shape, &dev).unwrap();
                let theta = rnd(&[span * b, d / 2]).abs().unwrap();
                let (cos_all, sin_all) = (theta.cos().unwrap(), theta.sin().unwrap());
                let k_raw = rnd(&[b, span, kv_heads * d]);
                let v_all = rnd(&[b, span, kv_heads * d]);
                let q = rnd(&[b, t, heads * d]);
                let tables = |x: &Tensor, from: usize, len: usize| {
                    x.reshape((b, span, d / 2))
                        .unwrap()
                        .narrow(1, from, len)
                        .unwrap()
                        .contiguous()
                        .unwrap()
                };
                // History: fill slots 0..slot through `attend` one step at a time is what the
                // model does; here the cache is filled directly with rotated keys.
                let mut cache = LayerCache::new(dtype, b * kv_heads * capacity * d);
                assert_eq!(cache.dtype(), dtype);
                if slot > 0 {
                    let hist = Step {
                        t: slot,
                        slot: 0,
                        ..s
                    };
                    let vec = |x: &Tensor| x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    let kh = k_raw.narrow(1, 0, slot).unwrap().contiguous().unwrap();
                    let vh = v_all.narrow(1, 0, slot).unwrap().contiguous().unwrap();
                    let qh = rnd(&[b, slot, heads * d]);
                    attend(
                        &hist,
                        &mut cache,
                        &vec(&qh),
                        &vec(&kh),
                        &vec(&vh),
                        &vec(&tables(&cos_all, 0, slot)),
                        &vec(&tables(&sin_all, 0, slot)),
                        None,
                        None,
                    );
                }
                // A mask that hides a different prefix of each row (padding) and the future.
                let mut m = vec![0f32; b * t * span];
                for r in 0..b {
                    for i in 0..t {
                        for j in 0..span {
                            if j < r.min(slot) || j > slot + i {
                                m[(r * t + i) * span + j] = f32::NEG_INFINITY;
                            }
                        }
                    }
                }
                let vec = |x: &Tensor| x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let (kn, vn) = (
                    k_raw.narrow(1, slot, t).unwrap().contiguous().unwrap(),
                    v_all.narrow(1, slot, t).unwrap().contiguous().unwrap(),
                );
                let (cn, sn) = (tables(&cos_all, slot, t), tables(&sin_all, slot, t));
                // Each KV head's 3 query heads one at a time and all together: the same bits.
                let [got, grouped] = [1, heads / kv_heads].map(|per_item| {
                    attend(
                        &s,
                        &mut cache.clone(),
                        &vec(&q),
                        &vec(&kn),
                        &vec(&vn),
                        &vec(&cn),
                        &vec(&sn),
                        Some(&m),
                        Some(per_item),
                    )
                });
                assert!(
                    got.iter()
                        .zip(&grouped)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{dtype:?} {family:?} b={b} t={t} slot={slot} d={d}: grouping changed the result"
                );
                let k_rot = {
                    let kk = k_raw
                        .reshape((b, span, kv_heads, d))
                        .unwrap()
                        .transpose(1, 2)
                        .unwrap()
                        .contiguous()
                        .unwrap();
                    let c4 = cos_all.reshape((b, span, d / 2)).unwrap();
                    let s4 = sin_all.reshape((b, span, d / 2)).unwrap();
                    let r = match family {
                        Family::Llama => candle_nn::rotary_emb::rope_i(&kk, &c4, &s4).unwrap(),
                        Family::Qwen2 | Family::Qwen3 => {
                            candle_nn::rotary_emb::rope(&kk, &c4, &s4).unwrap()
                        }
                    };
                    r.transpose(1, 2)
                        .unwrap()
                        .reshape((b, span, kv_heads * d))
                        .unwrap()
                };
                let mask_t = Tensor::from_vec(m.clone(), (b, 1, t, span), &dev).unwrap();
                let (k_st, v_st) = (stored(k_rot), stored(v_all.clone()));
                let want = reference(&s, &q, &k_st, &v_st, &cn, &sn, Some(&mask_t));
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    worst < 1e-5,
                    "{dtype:?} {family:?} b={b} t={t} slot={slot} d={d}: max diff {worst}"
                );
            }
        }
    }

    /// Rows at different lengths in one step (a continuous batch), in a cache with spare rows,
    /// give each row what it gives alone (the same bits), for decode and prefill steps; and
    /// a row moved with `copy_row` attends as it did in its old place.
    #[test]
    fn rows_at_their_own_slots_equal_each_row_alone() {
        let rnd = |n: usize, seed: u64| -> Vec<f32> {
            let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
                })
                .collect()
        };
        for dtype in [KvDtype::F16, KvDtype::F32] {
            for (d, heads, kv_heads) in [(16, 6, 2), (64, 9, 3), (24, 4, 2)] {
                let (capacity, cache_rows) = (24, 5);
                let dims = (kv_heads, capacity, d);
                let row_len = kv_heads * capacity * d;
                let lens = [3usize, 11, 0, 7];
                for t in [1usize, 2] {
                    let b = lens.len();
                    let step = Step {
                        batch: b,
                        t,
                        heads,
                        kv_heads,
                        head_dim: d,
                        capacity,
                        slot: 0,
                        family: Family::Qwen2,
                        slots: Some(&lens),
                        first_row: 0,
                    };
                    let half = d / 2;
                    let q = rnd(b * t * heads * d, 1);
                    let k = rnd(b * t * kv_heads * d, 2);
                    let v = rnd(b * t * kv_heads * d, 3);
                    let cos = rnd(b * t * half, 4);
                    let sin = rnd(b * t * half, 5);
                    // History: every row's cache filled with values (only slots below its
                    // length are meant to be read).
                    let hist = LayerCache::from_values(
                        dtype,
                        &rnd(cache_rows * row_len, 6),
                        &rnd(cache_rows * row_len, 7),
                    );
                    // Causal within the step, padded to the longest span.
                    let stride = step.max_span();
                    let mut mask = vec![0f32; b * t * stride];
                    for (r, &len) in lens.iter().enumerate() {
                        for i in 0..t {
                            for j in len + i + 1..stride {
                                mask[(r * t + i) * stride + j] = f32::NEG_INFINITY;
                            }
                        }
                    }
                    let mut together = hist.clone();
                    let got = attend(
                        &step,
                        &mut together,
                        &q,
                        &k,
                        &v,
                        &cos,
                        &sin,
                        Some(&mask),
                        None,
                    );
                    let (hq, hk) = (heads * d, kv_heads * d);
                    for (r, &len) in lens.iter().enumerate() {
                        // Row r alone, in row 0 of a one-row cache with its history.
                        let pick = |x: &Vec<f32>, w: usize| x[r * t * w..(r + 1) * t * w].to_vec();
                        let one = |c: &LayerCache| match (&c.k, &c.v) {
                            (Store::F32(k), Store::F32(v)) => LayerCache {
                                k: Store::F32(k[r * row_len..(r + 1) * row_len].to_vec()),
                                v: Store::F32(v[r * row_len..(r + 1) * row_len].to_vec()),
                            },
                            (Store::F16(k), Store::F16(v)) => LayerCache {
                                k: Store::F16(k[r * row_len..(r + 1) * row_len].to_vec()),
                                v: Store::F16(v[r * row_len..(r + 1) * row_len].to_vec()),
                            },
                            _ => unreachable!(),
                        };
                        let mut alone_cache = one(&hist);
                        let alone_step = Step {
                            batch: 1,
                            slot: len,
                            slots: None,
                            ..step
                        };
                        let span = len + t;
                        let mut m1 = vec![0f32; t * span];
                        for i in 0..t {
                            for j in len + i + 1..span {
                                m1[i * span + j] = f32::NEG_INFINITY;
                            }
                        }
                        let alone = attend(
                            &alone_step,
                            &mut alone_cache,
                            &pick(&q, hq),
                            &pick(&k, hk),
                            &pick(&v, hk),
                            &pick(&cos, half),
                            &pick(&sin, half),
                            Some(&m1),
                            None,
                        );
                        let mine = &got[r * t * hq..(r + 1) * t * hq];
                        assert!(
                            mine.iter()
                                .zip(&alone)
                                .all(|(a, b)| a.to_bits() == b.to_bits()),
                            "{dtype:?} d={d} t={t}: row {r} (length {len}) differs from alone"
                        );
                        // The writes landed in the row's own slots.
                        let written = one(&together);
                        let bits = |c: &LayerCache| match &c.k {
                            Store::F32(x) => x.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                            Store::F16(x) => x.iter().map(|&v| v as u32).collect(),
                        };
                        assert_eq!(bits(&written), bits(&alone_cache), "{dtype:?} row {r}");
                    }
                    // Row 1 moved into row 4 (its slots written this step included) attends
                    // from there as before.
                    let mut moved = together.clone();
                    moved.copy_row(dims, 1, 4, lens[1] + t);
                    // Every KV head's written slots, keys and values.
                    let bits = |c: &LayerCache, r: usize| {
                        let mut out = Vec::new();
                        for store in [&c.k, &c.v] {
                            for h in 0..kv_heads {
                                let at = r * row_len + h * capacity * d;
                                let span = at..at + (lens[1] + t) * d;
                                match store {
                                    Store::F32(x) => {
                                        out.extend(x[span].iter().map(|v| v.to_bits()))
                                    }
                                    Store::F16(x) => out.extend(x[span].iter().map(|&v| v as u32)),
                                }
                            }
                        }
                        out
                    };
                    assert_eq!(bits(&moved, 4), bits(&together, 1));
                }
            }
        }
    }

    #[test]
    fn an_f16_cache_saturates_values_beyond_its_range() {
        // One slot: its value comes out as it was stored.
        let s = Step {
            batch: 1,
            t: 1,
            heads: 2,
            kv_heads: 1,
            head_dim: 16,
            capacity: 4,
            slot: 0,
            family: Family::Llama,
            slots: None,
            first_row: 0,
        };
        let (q, k) = (vec![0.5f32; 2 * 16], vec![0.25f32; 16]);
        let v: Vec<f32> = (0..16)
            .map(|i| if i % 2 == 0 { 1e6 } else { -3e5 })
            .collect();
        let (cos, sin) = (vec![1f32; 8], vec![0f32; 8]);
        for (dtype, top) in [(KvDtype::F32, 1e6f32), (KvDtype::F16, 65504.0)] {
            let mut cache = LayerCache::new(dtype, 4 * 16);
            let out = attend(&s, &mut cache, &q, &k, &v, &cos, &sin, None, None);
            for (i, x) in out.iter().enumerate() {
                let want = if i % 2 == 0 { top } else { -top.min(3e5) };
                assert_eq!(*x, want, "{dtype:?} value {i}");
            }
        }
    }

    #[test]
    fn groups_heads_as_long_as_every_thread_has_an_item() {
        let step = |batch, heads, kv_heads| Step {
            batch,
            t: 1,
            heads,
            kv_heads,
            head_dim: 64,
            capacity: 8,
            slot: 0,
            family: Family::Llama,
            slots: None,
            first_row: 0,
        };
        // SmolLM2-135M (9 heads, 3 KV heads): whole groups from 1 row on 2 or 3 threads.
        assert_eq!(heads_per_item(&step(1, 9, 3), 2), 3);
        assert_eq!(heads_per_item(&step(1, 9, 3), 3), 3);
        assert_eq!(heads_per_item(&step(1, 9, 3), 4), 1);
        assert_eq!(heads_per_item(&step(8, 9, 3), 16), 3);
        // Llama-3.1-8B (32 heads, 8 KV heads): 1 row on 16 threads takes pairs of heads (16
        // items), on 32 threads single heads; 4 rows take whole groups.
        assert_eq!(heads_per_item(&step(1, 32, 8), 16), 2);
        assert_eq!(heads_per_item(&step(1, 32, 8), 32), 1);
        assert_eq!(heads_per_item(&step(4, 32, 8), 32), 4);
        // Qwen2.5-0.5B (14 heads, 2 KV heads): 7 heads a group; no divisor above MAX_GROUP.
        assert_eq!(heads_per_item(&step(4, 14, 2), 2), 7);
        assert_eq!(heads_per_item(&step(4, 16, 1), 2), 8);
        // Multi-head attention: nothing to share.
        assert_eq!(heads_per_item(&step(8, 12, 12), 2), 1);
    }
}
