//! landauer's own CPU matmul for the GGUF block formats of small models: Q4_0, Q4_1, Q8_0.
//!
//! ```
//! use candle_core::quantized::{GgmlDType, QTensor};
//! use candle_core::{Device, Tensor};
//! use landauer_engine::kernels::QLinear;
//!
//! // A 64 x 96 weight matrix in Q4_1 and a batch of 3 activation rows.
//! let w = Tensor::randn(0f32, 1.0, (64, 96), &Device::Cpu).unwrap();
//! let linear = QLinear::new(QTensor::quantize(&w, GgmlDType::Q4_1).unwrap()).unwrap();
//! let x = Tensor::randn(0f32, 1.0, (3, 96), &Device::Cpu).unwrap();
//! let y = linear.forward(&x).unwrap();
//! assert_eq!(y.dims(), &[3, 64]);
//! ```
//!
//! Why these exist (candle 0.11 ships kernels for most formats, see benches/README.md):
//! - candle has no SIMD path for Q4_1, the default model's format: its scalar loop was 70% of
//!   CPU decode time.
//! - candle computes every (weight row, activation row) dot product on its own, so a batch of
//!   B rows reads and unpacks every weight block B times. Here each weight block is loaded and
//!   unpacked once and multiplied into up to four activation rows while it sits in registers:
//!   batched decode and prompt prefill read the weights once per step.
//! - The instruction set is chosen at run time (AVX2 + FMA + F16C), not at compile time, so the
//!   portable default build is fast on the machines that have them; elsewhere a plain Rust
//!   reference runs (the same one the tests hold the SIMD code to).
//!
//! Activations are quantized exactly as candle and ggml quantize them (Q8_1 for Q4_1 weights,
//! Q8_0 otherwise, with f16 scales), so the integer sums are identical to candle's and results
//! differ from its kernels only by the order of float additions.
//!
//! The work is split over candle's persistent barrier thread pool (threads that spin between
//! calls, the main thread taking a share), the pool candle's own quantized matmul uses.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{CpuStorage, CustomOp1, Layout, Module, Shape, Tensor};
use half::f16;
use std::cell::RefCell;
use std::sync::Arc;

#[cfg(target_arch = "x86_64")]
mod x86;

/// Values per block in every format here.
pub const BLOCK: usize = 32;

/// Weight formats with a kernel here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// f16 scale, 32 4-bit values, value = (q − 8)·d. 18 bytes.
    Q4_0,
    /// f16 scale and minimum, 32 4-bit values, value = q·d + m. 20 bytes.
    Q4_1,
    /// f16 scale, 32 signed bytes, value = q·d. 34 bytes.
    Q8_0,
}

impl Format {
    /// The format of a GGUF type, if a kernel here handles it.
    pub fn of(dtype: GgmlDType) -> Option<Self> {
        match dtype {
            GgmlDType::Q4_0 => Some(Format::Q4_0),
            GgmlDType::Q4_1 => Some(Format::Q4_1),
            GgmlDType::Q8_0 => Some(Format::Q8_0),
            _ => None,
        }
    }

    /// Bytes of one block of 32 values.
    pub const fn block_bytes(self) -> usize {
        match self {
            Format::Q4_0 => 18,
            Format::Q4_1 => 20,
            Format::Q8_0 => 34,
        }
    }
}

/// Which implementation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Plain Rust, every platform.
    Reference,
    /// x86-64 with AVX2, FMA and F16C, detected at run time.
    Avx2,
}

/// The best implementation this CPU supports (detected once).
pub fn detected_isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            return Isa::Avx2;
        }
        Isa::Reference
    })
}

/// A weight matrix of `n` rows × `k` columns in GGUF block layout (row-major, blocks of 32
/// along `k`).
#[derive(Debug, Clone)]
pub struct QWeights {
    pub format: Format,
    pub n: usize,
    pub k: usize,
    data: Vec<u8>,
}

impl QWeights {
    /// Takes the blocks of a candle `QTensor` (rows × k, on the CPU) whose format has a kernel
    /// here; `None` for other formats, shapes or devices.
    pub fn from_qtensor(q: &QTensor) -> candle_core::Result<Option<Self>> {
        let Some(format) = Format::of(q.dtype()) else {
            return Ok(None);
        };
        let Ok((n, k)) = q.shape().dims2() else {
            return Ok(None);
        };
        if k % BLOCK != 0 || !matches!(q.device(), candle_core::Device::Cpu) {
            return Ok(None);
        }
        let data = q.data()?.into_owned();
        if data.len() != n * k / BLOCK * format.block_bytes() {
            candle_core::bail!(
                "{format:?} tensor of {n}x{k} holds {} bytes, expected {}",
                data.len(),
                n * k / BLOCK * format.block_bytes()
            );
        }
        Ok(Some(Self { format, n, k, data }))
    }

    /// Weights from raw GGUF blocks (`n` rows of `k` values).
    pub fn from_bytes(
        format: Format,
        n: usize,
        k: usize,
        data: Vec<u8>,
    ) -> candle_core::Result<Self> {
        if k % BLOCK != 0 || data.len() != n * k / BLOCK * format.block_bytes() {
            candle_core::bail!(
                "{} bytes are not {n} rows of {k} {format:?} values",
                data.len()
            );
        }
        Ok(Self { format, n, k, data })
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.k / BLOCK * self.format.block_bytes()
    }

    fn row(&self, i: usize) -> &[u8] {
        let rb = self.row_bytes();
        &self.data[i * rb..(i + 1) * rb]
    }

    /// Row `i` as f32 values (the GGUF dequantization), for tests and references.
    pub fn dequantize_row(&self, i: usize) -> Vec<f32> {
        let bb = self.format.block_bytes();
        let mut out = Vec::with_capacity(self.k);
        for b in self.row(i).chunks_exact(bb) {
            let d = f16_at(b, 0);
            match self.format {
                Format::Q4_0 => {
                    let qs = &b[2..18];
                    out.extend(qs.iter().map(|&q| ((q & 0x0F) as f32 - 8.0) * d));
                    out.extend(qs.iter().map(|&q| ((q >> 4) as f32 - 8.0) * d));
                }
                Format::Q4_1 => {
                    let (m, qs) = (f16_at(b, 2), &b[4..20]);
                    out.extend(qs.iter().map(|&q| (q & 0x0F) as f32 * d + m));
                    out.extend(qs.iter().map(|&q| (q >> 4) as f32 * d + m));
                }
                Format::Q8_0 => out.extend(b[2..34].iter().map(|&q| q as i8 as f32 * d)),
            }
        }
        out
    }
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Activation rows quantized to 8 bits, 32 values a block, as ggml's `quantize_row_q8_0` /
/// `quantize_row_q8_1` (and candle's `from_float`) do: d = max|x|/127 rounded to f16,
/// q = round(x/d); `s` = d·Σq (Q8_1's extra term, used with Q4_1 weights).
#[derive(Debug, Default, Clone)]
pub struct Q8Rows {
    pub m: usize,
    pub blocks: usize,
    pub qs: Vec<i8>,
    pub d: Vec<f32>,
    pub s: Vec<f32>,
}

impl Q8Rows {
    /// Quantizes `m` rows of `k` values (row-major), reusing this buffer's memory.
    pub fn quantize(&mut self, x: &[f32], m: usize, k: usize) {
        assert!(k % BLOCK == 0 && x.len() == m * k);
        let blocks = m * k / BLOCK;
        self.m = m;
        self.blocks = k / BLOCK;
        self.qs.resize(m * k, 0);
        self.d.resize(blocks, 0.0);
        self.s.resize(blocks, 0.0);
        for (i, xs) in x.chunks_exact(BLOCK).enumerate() {
            let amax = xs.iter().fold(0f32, |a, &x| a.max(x.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let d = f16::from_f32(d);
            let qs = &mut self.qs[i * BLOCK..(i + 1) * BLOCK];
            let mut sum = 0i32;
            for (q, &x) in qs.iter_mut().zip(xs) {
                // f32::round (half away from zero) as ggml's roundf; `as` saturates.
                *q = (x * id).round() as i8;
                sum += *q as i32;
            }
            self.d[i] = d.to_f32();
            // As candle: f16 sum times f16 d, rounded to f16.
            self.s[i] = (f16::from_f32(sum as f32) * d).to_f32();
        }
    }

    fn row_qs(&self, r: usize) -> &[i8] {
        &self.qs[r * self.blocks * BLOCK..(r + 1) * self.blocks * BLOCK]
    }
    fn row_d(&self, r: usize) -> &[f32] {
        &self.d[r * self.blocks..(r + 1) * self.blocks]
    }
    fn row_s(&self, r: usize) -> &[f32] {
        &self.s[r * self.blocks..(r + 1) * self.blocks]
    }
}

/// The dot product of weight row `w` (blocks of `format`) with activation row `r` of `a`, in
/// plain Rust: integer sums per block, then Σ sumi·d_w·d_a (+ m_w·s_a for Q4_1), as ggml's
/// reference `vec_dot` functions.
pub fn dot_reference(format: Format, w: &[u8], a: &Q8Rows, r: usize) -> f32 {
    let (qs, ds, ss) = (a.row_qs(r), a.row_d(r), a.row_s(r));
    let bb = format.block_bytes();
    let mut sum = 0f32;
    for (b, blk) in w.chunks_exact(bb).enumerate() {
        let y = &qs[b * BLOCK..(b + 1) * BLOCK];
        let dw = f16_at(blk, 0);
        let sumi: i32 = match format {
            Format::Q4_0 | Format::Q4_1 => {
                let off = if format == Format::Q4_0 { 8 } else { 0 };
                let q = &blk[bb - 16..];
                (0..16)
                    .map(|j| {
                        let lo = (q[j] & 0x0F) as i32 - off;
                        let hi = (q[j] >> 4) as i32 - off;
                        lo * y[j] as i32 + hi * y[j + 16] as i32
                    })
                    .sum()
            }
            Format::Q8_0 => (0..BLOCK)
                .map(|j| blk[2 + j] as i8 as i32 * y[j] as i32)
                .sum(),
        };
        sum += sumi as f32 * (dw * ds[b]);
        if format == Format::Q4_1 {
            sum += f16_at(blk, 2) * ss[b];
        }
    }
    sum
}

/// `out[i·n + j]` = row j of `w` · activation row i, for the `m` quantized rows of `a` (all of
/// them), on `isa`, split over the thread pool.
pub fn matmul_quantized(w: &QWeights, a: &Q8Rows, out: &mut [f32], isa: Isa) {
    let (m, n) = (a.m, w.n);
    assert_eq!(a.blocks * BLOCK, w.k, "activation width != weight width");
    assert_eq!(out.len(), m * n, "output is not m x n");
    let out = SharedOut(out.as_mut_ptr());
    let rows = |range: std::ops::Range<usize>| {
        // Each call writes only the columns of its own weight rows: disjoint across threads.
        let out = &out;
        for j in range {
            let wr = w.row(j);
            let mut i = 0;
            while i < m {
                let r = (m - i).min(4);
                let mut res = [0f32; 4];
                dot_rows(w.format, wr, a, i, r, isa, &mut res);
                for (t, &v) in res[..r].iter().enumerate() {
                    // SAFETY: (i + t) < m and j < n, so the index is inside `out`, and no other
                    // thread writes column j.
                    unsafe { *out.0.add((i + t) * n + j) = v };
                }
                i += r;
            }
        }
    };
    // Small matrices are not worth waking the pool for.
    if n * a.blocks * m < 2048 {
        rows(0..n);
    } else {
        candle_core::utils::barrier_pool().execute_chunked(n, rows);
    }
}

struct SharedOut(*mut f32);
// SAFETY: the threads write disjoint elements (see `matmul_quantized`).
unsafe impl Sync for SharedOut {}

/// Dots of one weight row with activation rows `first..first + count` (count ≤ 4).
fn dot_rows(
    format: Format,
    w: &[u8],
    a: &Q8Rows,
    first: usize,
    count: usize,
    isa: Isa,
    out: &mut [f32; 4],
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            assert!(
                detected_isa() == Isa::Avx2,
                "AVX2 kernels on a CPU without AVX2"
            );
            // SAFETY: the CPU has AVX2, FMA and F16C (checked above); the slices' lengths
            // match the row's blocks (checked by the caller's asserts).
            unsafe { x86::dot_rows(format, w, a, first, count, out) }
        }
        _ => {
            for (t, o) in out[..count].iter_mut().enumerate() {
                *o = dot_reference(format, w, a, first + t);
            }
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Q8Rows> = RefCell::new(Q8Rows::default());
}

/// x (m × k, row-major f32) times wᵀ → m × n, quantizing x into a reused buffer.
pub fn matmul_f32(w: &QWeights, x: &[f32], m: usize, isa: Isa) -> Vec<f32> {
    let mut out = vec![0f32; m * w.n];
    SCRATCH.with(|s| {
        let mut a = s.borrow_mut();
        a.quantize(x, m, w.k);
        matmul_quantized(w, &a, &mut out, isa);
    });
    out
}

/// The candle op that runs [`matmul_f32`] on a tensor's last dimension.
#[derive(Clone)]
pub struct CpuMatMul(Arc<QWeights>);

impl CpuMatMul {
    /// The weights this op multiplies by.
    pub fn weights(&self) -> &QWeights {
        &self.0
    }
}

impl CustomOp1 for CpuMatMul {
    fn name(&self) -> &'static str {
        "landauer-qmatmul"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let w = &self.0;
        let dims = l.shape().dims();
        let Some((&k, lead)) = dims.split_last() else {
            candle_core::bail!("landauer-qmatmul: a scalar input");
        };
        if k != w.k {
            candle_core::bail!("landauer-qmatmul: input width {k}, weights {}x{}", w.n, w.k);
        }
        let Some((start, end)) = l.contiguous_offsets() else {
            candle_core::bail!("landauer-qmatmul: input not contiguous");
        };
        let x = match s {
            CpuStorage::F32(v) => &v[start..end],
            _ => candle_core::bail!("landauer-qmatmul: input must be f32"),
        };
        let m: usize = lead.iter().product();
        let out = matmul_f32(w, x, m, detected_isa());
        let mut shape = lead.to_vec();
        shape.push(w.n);
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }
}

/// A linear layer with quantized weights: landauer's kernels where they apply (CPU, Q4_0,
/// Q4_1, Q8_0), candle's `QMatMul` everywhere else (GPUs, K-quants, f16).
#[derive(Clone)]
pub enum QLinear {
    Landauer(CpuMatMul),
    Candle(QMatMul),
}

impl QLinear {
    /// Picks the implementation for `q`. `LANDAUER_CPU_KERNELS=candle` in the environment
    /// forces candle's (to compare the two in one benchmark).
    pub fn new(q: QTensor) -> candle_core::Result<Self> {
        let use_candle = std::env::var("LANDAUER_CPU_KERNELS").is_ok_and(|v| v == "candle");
        if !use_candle {
            if let Some(w) = QWeights::from_qtensor(&q)? {
                return Ok(QLinear::Landauer(CpuMatMul(Arc::new(w))));
            }
        }
        Ok(QLinear::Candle(QMatMul::from_qtensor(q)?))
    }

    /// True when landauer's kernels run this layer.
    pub fn is_landauer(&self) -> bool {
        matches!(self, QLinear::Landauer(_))
    }

    /// x (…, k) → (…, n).
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            QLinear::Landauer(op) => x.contiguous()?.apply_op1_no_bwd(op),
            QLinear::Candle(q) => q.forward(x),
        }
    }
}

#[cfg(test)]
mod tests;
