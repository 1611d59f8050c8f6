//! landauer's own CPU matmul for every GGUF weight format llama.cpp's `llama-quantize` writes
//! for its common presets (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) and for
//! unquantized F16, BF16 and F32 weights.
//!
//! ```
//! use candle_core::quantized::{GgmlDType, QTensor};
//! use candle_core::{Device, Tensor};
//! use landauer_engine::kernels::QLinear;
//!
//! // A 64 x 256 weight matrix in Q4_K and a batch of 3 activation rows.
//! let w = Tensor::randn(0f32, 1.0, (64, 256), &Device::Cpu).unwrap();
//! let linear = QLinear::new(QTensor::quantize(&w, GgmlDType::Q4K).unwrap()).unwrap();
//! assert!(linear.is_landauer());
//! let x = Tensor::randn(0f32, 1.0, (3, 256), &Device::Cpu).unwrap();
//! let y = linear.forward(&x).unwrap();
//! assert_eq!(y.dims(), &[3, 64]);
//! ```
//!
//! Why these exist (candle 0.11 ships kernels for most formats, see benches/README.md):
//! - candle has no SIMD path for Q4_1, Q5_0 or Q5_1 (its scalar loops were 70% of decode time
//!   on the default model, and made a Q4_K_M file of SmolLM2, mostly Q5_0 inside, run at a
//!   quarter of llama.cpp's speed), and a file runs at the speed of its slowest type.
//! - candle computes every (weight row, activation row) dot product on its own, so a batch of
//!   B rows reads and unpacks every weight block B times. Here each weight block is loaded and
//!   unpacked once and multiplied into up to eight activation rows while it sits in registers:
//!   batched decode and prompt prefill read the weights once per step. Q4_0, Q4_1, Q5_0,
//!   Q5_1, Q8_0, Q4_K, Q5_K and Q6_K weights are interleaved in tiles of 8 rows (see [`QWeights`]), so that one
//!   instruction serves 8 weight rows; the other formats keep GGUF's row layout, one file per format
//!   (`q5_0.rs`, `q4_k.rs`, ...: its block layout, a plain-Rust reference dot product and the
//!   AVX2 kernel, each tested against the reference, candle's dequantization and exact
//!   arithmetic).
//! - The instruction set is chosen at run time (AVX2 + FMA + F16C), not at compile time, so the
//!   portable default build is fast on the machines that have them; elsewhere a plain Rust
//!   reference runs (the same one the tests hold the SIMD code to).
//!
//! Activations are quantized as ggml quantizes them for each weight format (Q8_1 for Q4_1 and
//! Q5_1, Q8_0 for the other 32-value formats, Q8_K for the K-quants; [`Activations`]), so the
//! integer sums are ggml's and results differ from its kernels only by the order of float
//! additions. Float weights multiply f32 activations (ggml rounds them to the weights' type).
//!
//! The work is split over candle's persistent barrier thread pool (threads that spin between
//! calls, the main thread taking a share), the pool candle's own quantized matmul uses, in
//! ranges of shrinking size ([`parallel_for`]).

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{CpuStorage, CustomOp1, Layout, Module, Shape, Tensor};
use half::f16;
use std::cell::RefCell;
use std::sync::Arc;

mod float;
mod k_scales;
mod q2_k;
mod q3_k;
mod q4_k;
mod q5_0;
mod q5_1;
mod q5_common;
mod q5_k;
mod q6_k;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

/// Values per block of the 32-value formats (Q4_0 ... Q8_0) and of [`Q8Rows`].
pub const BLOCK: usize = 32;
/// Values per super-block of the K-quants and of [`Q8KRows`].
pub const QK_K: usize = 256;

/// Where the bytes of row j's block go in a tile's block (see `QWeights::tiled`):
/// `copy(from, to, len)` for each run of bytes, `from` in the row's block, `to` in the tile's.
fn for_tile_bytes(format: Format, j: usize, mut copy: impl FnMut(usize, usize, usize)) {
    let fields = match format {
        Format::Q4_1 => 2,
        _ => 1,
    };
    for f in 0..fields {
        copy(2 * f, 16 * f + 2 * j, 2);
    }
    let (from, to) = (2 * fields, 16 * fields);
    for c in 0..(format.block_bytes() - from) / 4 {
        copy(from + 4 * c, to + 32 * c + 4 * j, 4);
    }
}

/// Interleaves block b of 8 rows (GGUF layout) into one block of their tile.
fn tile_block(format: Format, rows: [&[u8]; TILE_ROWS], dst: &mut [u8]) {
    match format {
        Format::Q4K => return q4_k::tile_block(rows, dst),
        Format::Q6K => return q6_k::tile_block(rows, dst),
        Format::Q5_0 => return q5_0::tile_block(rows, dst),
        Format::Q5_1 => return q5_1::tile_block(rows, dst),
        Format::Q5K => return q5_k::tile_block(rows, dst),
        _ => {}
    }
    for (j, src) in rows.iter().enumerate() {
        for_tile_bytes(format, j, |from, to, len| {
            dst[to..to + len].copy_from_slice(&src[from..from + len])
        });
    }
}

/// Row j's GGUF block back from a block of its tile.
fn untile_block(format: Format, tile: &[u8], j: usize, dst: &mut [u8]) {
    match format {
        Format::Q4K => return q4_k::untile_block(tile, j, dst),
        Format::Q6K => return q6_k::untile_block(tile, j, dst),
        Format::Q5_0 => return q5_0::untile_block(tile, j, dst),
        Format::Q5_1 => return q5_1::untile_block(tile, j, dst),
        Format::Q5K => return q5_k::untile_block(tile, j, dst),
        _ => {}
    }
    for_tile_bytes(format, j, |from, to, len| {
        dst[from..from + len].copy_from_slice(&tile[to..to + len])
    });
}

/// Weight formats with a kernel here: every type llama.cpp's `llama-quantize` writes for its
/// common presets (Q4_0 ... Q8_0, Q2_K ... Q6_K) and unquantized F16, BF16 and F32 weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// f16 scale, 32 4-bit values, value = (q − 8)·d. 18 bytes.
    Q4_0,
    /// f16 scale and minimum, 32 4-bit values, value = q·d + m. 20 bytes.
    Q4_1,
    /// f16 scale, 32 5-bit values (4 bits + 1 high bit), value = (q − 16)·d. 22 bytes.
    Q5_0,
    /// f16 scale and minimum, 32 5-bit values, value = q·d + m. 24 bytes.
    Q5_1,
    /// f16 scale, 32 signed bytes, value = q·d. 34 bytes.
    Q8_0,
    /// 256 values: 16 groups of 16 with 4-bit scales and mins, 2-bit quants. 84 bytes.
    Q2K,
    /// 256 values: 16 groups of 16 with 6-bit scales, 3-bit quants. 110 bytes.
    Q3K,
    /// 256 values: 8 groups of 32 with 6-bit scales and mins, 4-bit quants. 144 bytes.
    Q4K,
    /// 256 values: 8 groups of 32 with 6-bit scales and mins, 5-bit quants. 176 bytes.
    Q5K,
    /// 256 values: 16 groups of 16 with 8-bit scales, 6-bit quants. 210 bytes.
    Q6K,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
    /// f32.
    F32,
}

/// How a format's partner activations are held (ggml's `vec_dot_type`): 8-bit blocks of 32
/// (Q8_0 / Q8_1, [`Q8Rows`]), 8-bit blocks of 256 (Q8_K, [`Q8KRows`]), or f32 ([`F32Rows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Q8,
    Q8K,
    F32,
}

impl Format {
    /// Every format, in GGUF's order of type ids.
    pub const ALL: [Format; 13] = [
        Format::F32,
        Format::F16,
        Format::Q4_0,
        Format::Q4_1,
        Format::Q5_0,
        Format::Q5_1,
        Format::Q8_0,
        Format::Q2K,
        Format::Q3K,
        Format::Q4K,
        Format::Q5K,
        Format::Q6K,
        Format::BF16,
    ];

    /// The format of a GGUF type, if a kernel here handles it.
    pub fn of(dtype: GgmlDType) -> Option<Self> {
        Some(match dtype {
            GgmlDType::Q4_0 => Format::Q4_0,
            GgmlDType::Q4_1 => Format::Q4_1,
            GgmlDType::Q5_0 => Format::Q5_0,
            GgmlDType::Q5_1 => Format::Q5_1,
            GgmlDType::Q8_0 => Format::Q8_0,
            GgmlDType::Q2K => Format::Q2K,
            GgmlDType::Q3K => Format::Q3K,
            GgmlDType::Q4K => Format::Q4K,
            GgmlDType::Q5K => Format::Q5K,
            GgmlDType::Q6K => Format::Q6K,
            GgmlDType::F16 => Format::F16,
            GgmlDType::BF16 => Format::BF16,
            GgmlDType::F32 => Format::F32,
            GgmlDType::Q8_1 | GgmlDType::Q8K => return None,
        })
    }

    /// The GGUF type.
    pub fn dtype(self) -> GgmlDType {
        match self {
            Format::Q4_0 => GgmlDType::Q4_0,
            Format::Q4_1 => GgmlDType::Q4_1,
            Format::Q5_0 => GgmlDType::Q5_0,
            Format::Q5_1 => GgmlDType::Q5_1,
            Format::Q8_0 => GgmlDType::Q8_0,
            Format::Q2K => GgmlDType::Q2K,
            Format::Q3K => GgmlDType::Q3K,
            Format::Q4K => GgmlDType::Q4K,
            Format::Q5K => GgmlDType::Q5K,
            Format::Q6K => GgmlDType::Q6K,
            Format::F16 => GgmlDType::F16,
            Format::BF16 => GgmlDType::BF16,
            Format::F32 => GgmlDType::F32,
        }
    }

    /// llama.cpp's name of the type (`q4_k`, `f16`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Format::Q4_0 => "q4_0",
            Format::Q4_1 => "q4_1",
            Format::Q5_0 => "q5_0",
            Format::Q5_1 => "q5_1",
            Format::Q8_0 => "q8_0",
            Format::Q2K => "q2_k",
            Format::Q3K => "q3_k",
            Format::Q4K => "q4_k",
            Format::Q5K => "q5_k",
            Format::Q6K => "q6_k",
            Format::F16 => "f16",
            Format::BF16 => "bf16",
            Format::F32 => "f32",
        }
    }

    /// Bytes of one block.
    pub const fn block_bytes(self) -> usize {
        match self {
            Format::Q4_0 => 18,
            Format::Q4_1 => 20,
            Format::Q5_0 => q5_0::BLOCK_BYTES,
            Format::Q5_1 => q5_1::BLOCK_BYTES,
            Format::Q8_0 => 34,
            Format::Q2K => q2_k::BLOCK_BYTES,
            Format::Q3K => q3_k::BLOCK_BYTES,
            Format::Q4K => q4_k::BLOCK_BYTES,
            Format::Q5K => q5_k::BLOCK_BYTES,
            Format::Q6K => q6_k::BLOCK_BYTES,
            Format::F16 => float::F16::BLOCK_BYTES,
            Format::BF16 => float::BF16::BLOCK_BYTES,
            Format::F32 => float::F32::BLOCK_BYTES,
        }
    }

    /// Values in one block: 256 for the K-quants, 32 for the others (unquantized weights are
    /// handled in runs of 32 values).
    pub const fn block_values(self) -> usize {
        match self {
            Format::Q2K => q2_k::BLOCK_VALUES,
            Format::Q3K => q3_k::BLOCK_VALUES,
            Format::Q4K => q4_k::BLOCK_VALUES,
            Format::Q5K => q5_k::BLOCK_VALUES,
            Format::Q6K => q6_k::BLOCK_VALUES,
            Format::F16 | Format::BF16 | Format::F32 => float::BLOCK_VALUES,
            _ => BLOCK,
        }
    }

    /// Whether matrices of this format (of a multiple of 8 rows) are stored in interleaved tiles
    /// of [`TILE_ROWS`] rows (see [`QWeights::is_tiled`]).
    pub const fn tiles(self) -> bool {
        matches!(
            self,
            Format::Q4_0
                | Format::Q4_1
                | Format::Q5_0
                | Format::Q5_1
                | Format::Q8_0
                | Format::Q4K
                | Format::Q5K
                | Format::Q6K
        )
    }

    /// Bytes of one block of a tile of [`TILE_ROWS`] rows.
    pub const fn tile_block_bytes(self) -> usize {
        match self {
            Format::Q4K => q4_k::TILE_BLOCK_BYTES,
            Format::Q6K => q6_k::TILE_BLOCK_BYTES,
            Format::Q5_0 => q5_0::TILE_BLOCK_BYTES,
            Format::Q5_1 => q5_1::TILE_BLOCK_BYTES,
            Format::Q5K => q5_k::TILE_BLOCK_BYTES,
            _ => TILE_ROWS * self.block_bytes(),
        }
    }

    /// The activations this format's dot product takes.
    pub const fn act(self) -> Act {
        match self {
            Format::Q4_0 | Format::Q4_1 | Format::Q5_0 | Format::Q5_1 | Format::Q8_0 => Act::Q8,
            Format::Q2K | Format::Q3K | Format::Q4K | Format::Q5K | Format::Q6K => Act::Q8K,
            Format::F16 | Format::BF16 | Format::F32 => Act::F32,
        }
    }
}

/// Which implementation runs; each variant's kernels may run where a later one was detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Plain Rust, every platform.
    Reference,
    /// x86-64 with AVX2, FMA and F16C, detected at run time.
    Avx2,
    /// AVX2, FMA and F16C with AVX-VNNI (the VEX-encoded `vpdpbusd`), which some tiled
    /// kernels use where it is present (`LANDAUER_VNNI=0` keeps them on plain AVX2).
    AvxVnni,
    /// AVX-VNNI and AVX-512 (F, BW, VL, VNNI): the K-quant tiles of Q5_K and Q6_K take two
    /// tiles a pass in 512-bit registers for 4 activation rows and more (`LANDAUER_AVX512=0`
    /// keeps them at 256 bits).
    Avx512Vnni,
}

impl Isa {
    /// Whether the AVX2 + FMA + F16C kernels may run.
    pub fn avx2(self) -> bool {
        matches!(self, Isa::Avx2 | Isa::AvxVnni | Isa::Avx512Vnni)
    }
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
            let vnni = std::arch::is_x86_feature_detected!("avxvnni")
                && std::env::var("LANDAUER_VNNI").map_or(true, |v| v != "0");
            let avx512 = vnni
                && std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx512vnni")
                && std::env::var("LANDAUER_AVX512").map_or(true, |v| v != "0");
            return match (vnni, avx512) {
                (_, true) => Isa::Avx512Vnni,
                (true, false) => Isa::AvxVnni,
                _ => Isa::Avx2,
            };
        }
        Isa::Reference
    })
}

/// Weight rows per tile of the interleaved layout (Q4_1 and Q8_0).
pub const TILE_ROWS: usize = 8;

/// A weight matrix of `n` rows × `k` columns in GGUF blocks of 32 values along `k`.
///
/// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K matrices whose row count is a multiple of [`TILE_ROWS`] are stored
/// interleaved in tiles of 8 rows (see [`QWeights::is_tiled`]): the same bytes as the GGUF row
/// layout, reordered at load time so that one 32-byte load holds 4 values of each of 8 rows.
/// The kernel then multiplies 8 weight rows by one activation row with one `maddubs` per 4
/// values of each row and scales 8 rows at once (Q4_1 also sums the block in 16-bit lanes):
/// fewer instructions per product than the row layout's kernel, whose every row-block product
/// ends in `madd`, a conversion and an `fma` of its own. Other formats and shapes keep the
/// GGUF row layout.
#[derive(Debug, Clone)]
pub struct QWeights {
    pub format: Format,
    pub n: usize,
    pub k: usize,
    data: Vec<u8>,
    tiled: bool,
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
        if k % format.block_values() != 0 || !matches!(q.device(), candle_core::Device::Cpu) {
            return Ok(None);
        }
        let data = q.data()?.into_owned();
        let bytes = n * k / format.block_values() * format.block_bytes();
        if data.len() != bytes {
            candle_core::bail!(
                "{format:?} tensor of {n}x{k} holds {} bytes, expected {bytes}",
                data.len(),
            );
        }
        Self::from_bytes(format, n, k, data).map(Some)
    }

    /// Weights from raw GGUF blocks (`n` rows of `k` values).
    pub fn from_bytes(
        format: Format,
        n: usize,
        k: usize,
        data: Vec<u8>,
    ) -> candle_core::Result<Self> {
        let bv = format.block_values();
        if !k.is_multiple_of(bv) || data.len() != n * k / bv * format.block_bytes() {
            candle_core::bail!(
                "{} bytes are not {n} rows of {k} {format:?} values",
                data.len()
            );
        }
        let rows = Self {
            format,
            n,
            k,
            data,
            tiled: false,
        };
        Ok(if format.tiles() && n.is_multiple_of(TILE_ROWS) {
            rows.tiled()
        } else {
            rows
        })
    }

    /// True when the rows are stored in interleaved tiles of [`TILE_ROWS`].
    pub fn is_tiled(&self) -> bool {
        self.tiled
    }

    /// The same weights in the GGUF row layout (to compare the two layouts' kernels).
    pub fn rowwise(&self) -> Self {
        let mut data = Vec::with_capacity(self.data.len());
        for j in 0..self.n {
            data.extend_from_slice(&self.row(j));
        }
        Self {
            data,
            tiled: false,
            ..*self
        }
    }

    /// Interleaves the rows in tiles of 8. Tile t, block b takes 8 blocks' bytes at
    /// `(t·blocks + b)·8·block_bytes`: first the 8 rows' f16 scales (then, for Q4_1, their 8
    /// f16 minima), then chunks of 32 bytes where chunk c holds bytes 4c..4c+4 of each row's
    /// quant bytes, row after row. Q8_0 has 8 chunks, values 4c..4c+4 of each row. Q4_1 has 4:
    /// a nibble byte holds value i (low nibble) and value i + 16 (high), so chunk c's low
    /// nibbles are values 4c..4c+4 of the 8 rows and its high nibbles values 16+4c..20+4c.
    fn tiled(self) -> Self {
        debug_assert!(self.n.is_multiple_of(TILE_ROWS));
        let (nb, rb, bb) = (
            self.k / self.format.block_values(),
            self.row_bytes(),
            self.format.block_bytes(),
        );
        let tbb = self.format.tile_block_bytes();
        let mut data = vec![0u8; self.n / TILE_ROWS * nb * tbb];
        for t in 0..self.n / TILE_ROWS {
            for b in 0..nb {
                let dst = &mut data[(t * nb + b) * tbb..][..tbb];
                let rows: [&[u8]; TILE_ROWS] =
                    std::array::from_fn(|j| &self.data[(t * TILE_ROWS + j) * rb + b * bb..][..bb]);
                tile_block(self.format, rows, dst);
            }
        }
        Self {
            data,
            tiled: true,
            ..self
        }
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.k / self.format.block_values() * self.format.block_bytes()
    }

    /// Bytes of the whole matrix.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Row `i` in GGUF block layout (reassembled from its tile when tiled).
    fn row(&self, i: usize) -> std::borrow::Cow<'_, [u8]> {
        let rb = self.row_bytes();
        if !self.tiled {
            return std::borrow::Cow::Borrowed(&self.data[i * rb..(i + 1) * rb]);
        }
        let (nb, t, j) = (
            self.k / self.format.block_values(),
            i / TILE_ROWS,
            i % TILE_ROWS,
        );
        let tbb = self.format.tile_block_bytes();
        let mut row = vec![0u8; rb];
        for (b, dst) in row.chunks_exact_mut(self.format.block_bytes()).enumerate() {
            untile_block(self.format, &self.data[(t * nb + b) * tbb..][..tbb], j, dst);
        }
        std::borrow::Cow::Owned(row)
    }

    /// Rows per unit of work handed to a thread: a whole tile when tiled.
    fn rows_per_unit(&self) -> usize {
        if self.tiled {
            TILE_ROWS
        } else {
            1
        }
    }

    /// Row `i` as f32 values (the GGUF dequantization), for tests and references.
    pub fn dequantize_row(&self, i: usize) -> Vec<f32> {
        let (bb, bv) = (self.format.block_bytes(), self.format.block_values());
        let mut out = vec![0f32; self.k];
        for (b, dst) in self.row(i).chunks_exact(bb).zip(out.chunks_exact_mut(bv)) {
            dequantize_block(self.format, b, dst);
        }
        out
    }
}

/// GGUF's dequantization of one block of `format` into `out` (its block's values).
pub fn dequantize_block(format: Format, b: &[u8], out: &mut [f32]) {
    let d = || f16_at(b, 0);
    match format {
        Format::Q4_0 => {
            let qs = &b[2..18];
            for (j, &q) in qs.iter().enumerate() {
                out[j] = ((q & 0x0F) as f32 - 8.0) * d();
                out[j + 16] = ((q >> 4) as f32 - 8.0) * d();
            }
        }
        Format::Q4_1 => {
            let (m, qs) = (f16_at(b, 2), &b[4..20]);
            for (j, &q) in qs.iter().enumerate() {
                out[j] = (q & 0x0F) as f32 * d() + m;
                out[j + 16] = (q >> 4) as f32 * d() + m;
            }
        }
        Format::Q8_0 => {
            for (o, &q) in out.iter_mut().zip(&b[2..34]) {
                *o = q as i8 as f32 * d();
            }
        }
        Format::Q5_0 => q5_0::dequantize_block(b, out),
        Format::Q5_1 => q5_1::dequantize_block(b, out),
        Format::Q2K => q2_k::dequantize_block(b, out),
        Format::Q3K => q3_k::dequantize_block(b, out),
        Format::Q4K => q4_k::dequantize_block(b, out),
        Format::Q5K => q5_k::dequantize_block(b, out),
        Format::Q6K => q6_k::dequantize_block(b, out),
        Format::F16 => float::F16::dequantize_block(b, out),
        Format::BF16 => float::BF16::dequantize_block(b, out),
        Format::F32 => float::F32::dequantize_block(b, out),
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
    /// Row-major: row r's block b is `qs[(r·blocks + b)·32..][..32]`.
    pub qs: Vec<i8>,
    /// Block-major (`d[b·m + r]`), so that one block's scales for adjacent rows are adjacent,
    /// as the kernels read them; [`Self::scale`] and [`Self::sum_scale`] index by row.
    pub d: Vec<f32>,
    pub s: Vec<f32>,
    /// Σq of each block, exactly, block-major (Q4_0's tiled kernel subtracts 8·Σq from its
    /// unsigned sums).
    pub qsum: Vec<i32>,
}

impl Q8Rows {
    /// Quantizes `m` rows of `k` values (row-major), reusing this buffer's memory.
    pub fn quantize(&mut self, x: &[f32], m: usize, k: usize) {
        self.quantize_on(x, m, k, detected_isa())
    }

    /// [`Self::quantize`] on a given implementation (both give the same bytes).
    pub fn quantize_on(&mut self, x: &[f32], m: usize, k: usize, isa: Isa) {
        assert!(k.is_multiple_of(BLOCK) && x.len() == m * k);
        let blocks = m * k / BLOCK;
        self.m = m;
        self.blocks = k / BLOCK;
        self.qs.resize(m * k, 0);
        self.d.resize(blocks, 0.0);
        self.s.resize(blocks, 0.0);
        self.qsum.resize(blocks, 0);
        #[cfg(target_arch = "x86_64")]
        if isa.avx2() {
            assert!(detected_isa().avx2(), "AVX2 kernels on a CPU without AVX2");
            for (i, xs) in x.chunks_exact(BLOCK).enumerate() {
                // SAFETY: AVX2 is present (checked); xs and the output block hold 32 values.
                let (d, s, sum) =
                    unsafe { x86::quantize_block(xs, &mut self.qs[i * BLOCK..(i + 1) * BLOCK]) };
                let at = self.scale_slot(i);
                (self.d[at], self.s[at], self.qsum[at]) = (d, s, sum);
            }
            return;
        }
        let _ = isa;
        for (i, xs) in x.chunks_exact(BLOCK).enumerate() {
            let amax = xs.iter().fold(0f32, |a, &x| a.max(x.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let qs = &mut self.qs[i * BLOCK..(i + 1) * BLOCK];
            let mut sum = 0i32;
            for (q, &x) in qs.iter_mut().zip(xs) {
                // Nearest, ties to even, as ggml's AVX2 quantizer (its scalar reference
                // rounds ties away from zero); `as` saturates.
                *q = (x * id).round_ties_even() as i8;
                sum += *q as i32;
            }
            self.set_scales(i, amax / 127.0, sum);
        }
    }

    /// Scales of the i-th block in row-major order: d (stored rounded to f16) and
    /// s = d·Σq (as candle: f16 sum times f16 d, rounded to f16).
    fn set_scales(&mut self, i: usize, d: f32, sum: i32) {
        let at = self.scale_slot(i);
        let d = f16::from_f32(d);
        self.d[at] = d.to_f32();
        self.s[at] = (f16::from_f32(sum as f32) * d).to_f32();
        self.qsum[at] = sum;
    }

    /// Where the scales of the i-th block in row-major order go (they are block-major).
    fn scale_slot(&self, i: usize) -> usize {
        (i % self.blocks) * self.m + i / self.blocks
    }

    /// Row r's block b: its scale d.
    pub fn scale(&self, r: usize, b: usize) -> f32 {
        self.d[b * self.m + r]
    }

    /// Row r's block b: d·Σq.
    pub fn sum_scale(&self, r: usize, b: usize) -> f32 {
        self.s[b * self.m + r]
    }

    /// Row r's quants.
    pub fn row_qs(&self, r: usize) -> &[i8] {
        &self.qs[r * self.blocks * BLOCK..(r + 1) * self.blocks * BLOCK]
    }

    /// Row r's values as the kernels see them: q·d.
    pub fn dequantize_row(&self, r: usize) -> Vec<f32> {
        let qs = self.row_qs(r);
        (0..self.blocks * BLOCK)
            .map(|i| qs[i] as f32 * self.scale(r, i / BLOCK))
            .collect()
    }
}

/// Activation rows quantized as ggml's Q8_K, the K-quants' partner: 256 values a block,
/// d = max / −127 in f32 where max is the value of largest magnitude (with its sign), q =
/// round(x/d) (so |q| ≤ 127), and the sums of each 16 quants (`bsums`), which carry the
/// K-quants' minimums and offsets. candle's `from_float` computes the same bytes.
#[derive(Debug, Default, Clone)]
pub struct Q8KRows {
    pub m: usize,
    /// Blocks of 256 per row.
    pub blocks: usize,
    /// Row-major: row r's block b is `qs[(r·blocks + b)·256..][..256]`.
    pub qs: Vec<i8>,
    /// Block-major (`d[b·m + r]`), as [`Q8Rows`].
    pub d: Vec<f32>,
    /// Row-major: row r's block b has 16 sums at `bsums[(r·blocks + b)·16..][..16]`.
    pub bsums: Vec<i16>,
}

impl Q8KRows {
    /// Quantizes `m` rows of `k` values (row-major, k a multiple of 256), reusing this
    /// buffer's memory.
    pub fn quantize(&mut self, x: &[f32], m: usize, k: usize) {
        self.quantize_on(x, m, k, detected_isa())
    }

    /// [`Self::quantize`] on a given implementation (both give the same bytes).
    pub fn quantize_on(&mut self, x: &[f32], m: usize, k: usize, isa: Isa) {
        assert!(k.is_multiple_of(QK_K) && x.len() == m * k);
        self.m = m;
        self.blocks = k / QK_K;
        self.qs.resize(m * k, 0);
        self.d.resize(m * k / QK_K, 0.0);
        self.bsums.resize(m * k / 16, 0);
        #[cfg(target_arch = "x86_64")]
        if isa.avx2() {
            assert!(detected_isa().avx2(), "AVX2 kernels on a CPU without AVX2");
            for (i, xs) in x.chunks_exact(QK_K).enumerate() {
                let at = (i % self.blocks) * self.m + i / self.blocks;
                // SAFETY: AVX2 is present (checked); the block's values, quants and sums
                // have the lengths the function asserts.
                self.d[at] = unsafe {
                    x86::quantize_q8k_block(
                        xs,
                        &mut self.qs[i * QK_K..(i + 1) * QK_K],
                        &mut self.bsums[i * 16..(i + 1) * 16],
                    )
                };
            }
            return;
        }
        let _ = isa;
        for (i, xs) in x.chunks_exact(QK_K).enumerate() {
            let (mut max, mut amax) = (0f32, 0f32);
            for &v in xs {
                if amax < v.abs() {
                    amax = v.abs();
                    max = v;
                }
            }
            let at = (i % self.blocks) * self.m + i / self.blocks;
            let qs = &mut self.qs[i * QK_K..(i + 1) * QK_K];
            if amax == 0.0 {
                qs.fill(0);
                self.bsums[i * 16..(i + 1) * 16].fill(0);
                self.d[at] = 0.0;
                continue;
            }
            let iscale = -127.0 / max;
            for (q, &v) in qs.iter_mut().zip(xs) {
                *q = (iscale * v).round().clamp(-128.0, 127.0) as i8;
            }
            for (j, s) in self.bsums[i * 16..(i + 1) * 16].iter_mut().enumerate() {
                *s = qs[j * 16..(j + 1) * 16].iter().map(|&q| q as i16).sum();
            }
            self.d[at] = 1.0 / iscale;
        }
    }

    /// Row r's block b: its scale d.
    pub fn scale(&self, r: usize, b: usize) -> f32 {
        self.d[b * self.m + r]
    }

    /// Row r's quants.
    pub fn row_qs(&self, r: usize) -> &[i8] {
        &self.qs[r * self.blocks * QK_K..(r + 1) * self.blocks * QK_K]
    }

    /// Row r's block b: the 16 sums of 16 quants each.
    pub fn bsums(&self, r: usize, b: usize) -> &[i16] {
        &self.bsums[(r * self.blocks + b) * 16..][..16]
    }

    /// Row r's values as the kernels see them: q·d.
    pub fn dequantize_row(&self, r: usize) -> Vec<f32> {
        let qs = self.row_qs(r);
        (0..self.blocks * QK_K)
            .map(|i| qs[i] as f32 * self.scale(r, i / QK_K))
            .collect()
    }
}

/// Activation rows kept in f32: the partner of F16, BF16 and F32 weights (ggml converts them
/// to the weights' type first; here they stay exact).
#[derive(Debug, Default, Clone)]
pub struct F32Rows {
    pub m: usize,
    pub k: usize,
    /// Row-major m × k.
    pub x: Vec<f32>,
}

impl F32Rows {
    /// Copies `m` rows of `k` values.
    pub fn set(&mut self, x: &[f32], m: usize, k: usize) {
        assert!(x.len() == m * k);
        (self.m, self.k) = (m, k);
        self.x.clear();
        self.x.extend_from_slice(x);
    }

    /// Row r.
    pub fn row(&self, r: usize) -> &[f32] {
        &self.x[r * self.k..(r + 1) * self.k]
    }
}

/// `m` activation rows of `k` values in the forms the weight formats of one matmul call take
/// (each prepared once, whatever the number of matrices that use it).
#[derive(Debug, Default, Clone)]
pub struct Activations {
    pub m: usize,
    pub k: usize,
    /// For Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 weights.
    pub q8: Q8Rows,
    /// For the K-quants.
    pub q8k: Q8KRows,
    /// For F16, BF16 and F32 weights.
    pub f32: F32Rows,
    ready: [bool; 3],
}

impl Activations {
    /// `x` (m × k) prepared for each of `formats`.
    pub fn new(x: &[f32], m: usize, k: usize, formats: &[Format]) -> Self {
        let mut a = Self::default();
        a.prepare(x, m, k, formats.iter().copied(), detected_isa());
        a
    }

    /// Prepares `x` (m × k) for each of `formats`, reusing this buffer's memory; `isa` quantizes
    /// Q8 blocks (both give the same bytes).
    pub fn prepare(
        &mut self,
        x: &[f32],
        m: usize,
        k: usize,
        formats: impl IntoIterator<Item = Format>,
        isa: Isa,
    ) {
        assert_eq!(x.len(), m * k, "activations are not m x k");
        (self.m, self.k) = (m, k);
        self.ready = [false; 3];
        for f in formats {
            let slot = f.act() as usize;
            if self.ready[slot] {
                continue;
            }
            match f.act() {
                Act::Q8 => self.q8.quantize_on(x, m, k, isa),
                Act::Q8K => self.q8k.quantize_on(x, m, k, isa),
                Act::F32 => self.f32.set(x, m, k),
            }
            self.ready[slot] = true;
        }
    }

    /// Whether the form `format` takes is prepared.
    pub fn has(&self, format: Format) -> bool {
        self.ready[format.act() as usize]
    }
}

/// The dot product of weight row `w` (blocks of `format`, GGUF's row layout) with activation
/// row `r` of `a`, in plain Rust: integer sums per block, then scales, as ggml's reference
/// `vec_dot` functions (f32 products for unquantized weights).
pub fn dot_reference(format: Format, w: &[u8], a: &Activations, r: usize) -> f32 {
    match format {
        Format::Q4_0 | Format::Q4_1 | Format::Q8_0 => dot_reference_legacy(format, w, &a.q8, r),
        Format::Q5_0 => q5_0::dot_reference(w, &a.q8, r),
        Format::Q5_1 => q5_1::dot_reference(w, &a.q8, r),
        Format::Q2K => q2_k::dot_reference(w, &a.q8k, r),
        Format::Q3K => q3_k::dot_reference(w, &a.q8k, r),
        Format::Q4K => q4_k::dot_reference(w, &a.q8k, r),
        Format::Q5K => q5_k::dot_reference(w, &a.q8k, r),
        Format::Q6K => q6_k::dot_reference(w, &a.q8k, r),
        Format::F16 => float::F16::dot_reference(w, &a.f32, r),
        Format::BF16 => float::BF16::dot_reference(w, &a.f32, r),
        Format::F32 => float::F32::dot_reference(w, &a.f32, r),
    }
}

/// [`dot_reference`] of Q4_0, Q4_1 and Q8_0.
fn dot_reference_legacy(format: Format, w: &[u8], a: &Q8Rows, r: usize) -> f32 {
    let qs = a.row_qs(r);
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
            _ => unreachable!("legacy formats only"),
        };
        sum += sumi as f32 * (dw * a.scale(r, b));
        if format == Format::Q4_1 {
            sum += f16_at(blk, 2) * a.sum_scale(r, b);
        }
    }
    sum
}

/// `out[i·n + j]` = row j of `w` · activation row i, for the `m` quantized rows of `a` (all of
/// them), on `isa`, split over the thread pool.
pub fn matmul_quantized(w: &QWeights, a: &Activations, out: &mut [f32], isa: Isa) {
    matmul_quantized_many(&[w], a, &mut [out], isa)
}

/// [`matmul_quantized`] for several weight matrices of the same width at once (a layer's
/// q, k and v; gate and up): one activation quantization, one hand-out of work to the threads.
pub fn matmul_quantized_many(ws: &[&QWeights], a: &Activations, outs: &mut [&mut [f32]], isa: Isa) {
    assert_eq!(ws.len(), outs.len());
    let mut targets = Vec::with_capacity(ws.len());
    for (w, out) in ws.iter().zip(outs.iter_mut()) {
        assert_eq!(out.len(), a.m * w.n, "output is not m x n");
        targets.push(SharedOut(out.as_mut_ptr()));
    }
    // SAFETY: each target holds m × n values (checked).
    unsafe { matmul_into(ws, a, &targets, isa) }
}

/// [`matmul_quantized_many`] into raw outputs: writes every one of the m × n values of each.
///
/// # Safety
/// `targets[i]` must point to `a.m × ws[i].n` writable f32 (initialized or not).
unsafe fn matmul_into(ws: &[&QWeights], a: &Activations, targets: &[SharedOut], isa: Isa) {
    assert_eq!(ws.len(), targets.len());
    let m = a.m;
    for w in ws {
        assert_eq!(a.k, w.k, "activation width != weight width");
        assert!(
            a.has(w.format),
            "activations not prepared for {:?}",
            w.format
        );
    }
    // Work units are weight rows (whole tiles of rows for tiled weights) of all matrices,
    // one after the other.
    let total: usize = ws.iter().map(|w| w.n / w.rows_per_unit()).sum();
    let rows = |range: std::ops::Range<usize>| {
        let mut first = 0;
        for (w, out) in ws.iter().zip(targets) {
            let (u, units) = (w.rows_per_unit(), w.n / w.rows_per_unit());
            let (lo, hi) = (range.start.max(first), range.end.min(first + units));
            if lo < hi {
                rows_into(w, (lo - first) * u..(hi - first) * u, a, out, isa);
            }
            first += units;
        }
    };
    // Small matrices are not worth waking the pool for.
    let rows_total: usize = ws.iter().map(|w| w.n).sum();
    if rows_total * (a.k / BLOCK) * m < 2048 {
        rows(0..total);
    } else {
        parallel_for(total, rows);
    }
}

struct SharedOut(*mut f32);
// SAFETY: the threads write disjoint elements (see `rows_into`).
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// Element i (a method, so that closures capture the whole wrapper, which is Sync).
    fn at(&self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}

/// Columns `range` of `out` (m × w.n): weight rows `range` (whole tiles when tiled) against
/// every activation row. Each call writes only the columns of its own weight rows, so calls
/// on disjoint ranges may run on different threads.
fn rows_into(
    w: &QWeights,
    range: std::ops::Range<usize>,
    a: &Activations,
    out: &SharedOut,
    isa: Isa,
) {
    assert!(range.end <= w.n && a.k == w.k);
    let u = w.rows_per_unit();
    assert!(
        range.start.is_multiple_of(u) && range.end.is_multiple_of(u),
        "rows split a tile"
    );
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::AvxVnni | Isa::Avx512Vnni => {
            assert!(
                isa <= detected_isa(),
                "{isa:?} kernels on a CPU without them"
            );
            // SAFETY: the CPU has AVX2, FMA and F16C (checked above); rows and widths are
            // checked above; `out` holds a.m × w.n values and this call writes only
            // columns in `range`.
            unsafe { x86::rows(w, range, a, out.0, isa) }
        }
        _ => {
            for j in range {
                let row = w.row(j);
                for i in 0..a.m {
                    let v = dot_reference(w.format, &row, a, i);
                    // SAFETY: i < m and j < n: inside `out`; column j belongs to this call.
                    unsafe { *out.0.add(i * w.n + j) = v };
                }
            }
        }
    }
}

/// g ← silu(g) · u, elementwise, split over the thread pool when there is enough of it.
/// silu(v) = v / (1 + e^−v): with AVX2, e^x is a vectorized Cephes-style exp (within 2 ulp
/// of libm's, tested); elsewhere libm's, as candle computes it. Each value's result does not
/// depend on how the slice is split.
pub fn silu_mul_in_place(g: &mut [f32], u: &[f32]) {
    assert_eq!(g.len(), u.len());
    let out = SharedOut(g.as_mut_ptr());
    let avx2 = detected_isa().avx2();
    let work = |range: std::ops::Range<usize>| {
        // SAFETY: `range` lies inside g (and u, as long); each index is in exactly one
        // range, so no other thread touches it. The AVX2 path runs only where detected.
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            unsafe {
                x86::silu_mul(
                    out.at(range.start),
                    u.as_ptr().add(range.start),
                    range.len(),
                )
            };
            return;
        }
        let _ = avx2;
        for i in range {
            // SAFETY: as above.
            unsafe {
                let p = out.at(i);
                *p = *p / (1.0 + (-*p).exp()) * u[i];
            }
        }
    };
    if g.len() < 4096 {
        work(0..g.len());
    } else {
        parallel_for(g.len(), work);
    }
}

/// RMS normalization of the last dimension, x / sqrt(mean(x²) + eps) · alpha, as candle's
/// `rms_norm`. On CPU f32 tensors it is computed in f64 and rounded once (see `norm_row`):
/// within an ulp of the exact value, where candle's f32 sum of one value after another
/// is a few ulp off (and was ~1% of batched decode time, a chain of dependent additions).
pub fn rms_norm(x: &Tensor, alpha: &Tensor, eps: f32) -> candle_core::Result<Tensor> {
    let n = x.dims().last().copied().unwrap_or(0);
    if n == 0 || !host(x) || !host(alpha) || alpha.dims() != [n] {
        return candle_nn::ops::rms_norm(x, alpha, eps);
    }
    let out = host_slice(x, |src| {
        host_slice(alpha, |a| {
            let mut out = vec![0f32; src.len()];
            for (row, dst) in src.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
                norm_row(row, a, eps, dst);
            }
            out
        })
    })??;
    Tensor::from_vec(out, x.dims(), x.device())
}

/// The residual sum x + y and its [`rms_norm`], in one pass on CPU f32 tensors (a decoder
/// layer's two residual additions are each followed by a norm): the same values as
/// `rms_norm(&(x + y)?, …)`, without candle's elementwise op and its second pass.
pub fn add_rms_norm(
    x: &Tensor,
    y: &Tensor,
    alpha: &Tensor,
    eps: f32,
) -> candle_core::Result<(Tensor, Tensor)> {
    let n = x.dims().last().copied().unwrap_or(0);
    if n == 0 || !host(x) || !host(y) || !host(alpha) || alpha.dims() != [n] || x.dims() != y.dims()
    {
        let sum = (x + y)?;
        let normed = rms_norm(&sum, alpha, eps)?;
        return Ok((sum, normed));
    }
    let (sum, normed) = host_slice(x, |xs| {
        host_slice(y, |ys| {
            host_slice(alpha, |a| {
                let sum: Vec<f32> = xs.iter().zip(ys).map(|(p, q)| p + q).collect();
                let mut normed = vec![0f32; sum.len()];
                for (row, dst) in sum.chunks_exact(n).zip(normed.chunks_exact_mut(n)) {
                    norm_row(row, a, eps, dst);
                }
                (sum, normed)
            })
        })
    })???;
    Ok((
        Tensor::from_vec(sum, x.dims(), x.device())?,
        Tensor::from_vec(normed, x.dims(), x.device())?,
    ))
}

/// A CPU f32 tensor.
pub(crate) fn host(t: &Tensor) -> bool {
    matches!(t.device(), candle_core::Device::Cpu) && t.dtype() == candle_core::DType::F32
}

/// `f` of a CPU f32 tensor's values in row-major order, borrowed from its storage (copied
/// first only when the tensor is not contiguous).
pub(crate) fn host_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (st, l) = t.storage_and_layout();
    match (&*st, l.contiguous_offsets()) {
        (candle_core::Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) => Ok(f(&v[a..b])),
        _ => candle_core::bail!("a contiguous CPU f32 tensor expected"),
    }
}

/// [`rms_norm`] of every `w.len()` values of `x`, in place (Qwen3's per-head norms of queries
/// and keys).
pub fn rms_norm_rows_in_place(x: &mut [f32], w: &[f32], eps: f32) {
    let mut row = vec![0f32; w.len()];
    for chunk in x.chunks_exact_mut(w.len()) {
        row.copy_from_slice(chunk);
        norm_row(&row, w, eps, chunk);
    }
}

/// One row of [`rms_norm`] into `dst`, in f64 from the sum of squares to the scaled values
/// (rounded to f32 once, at the end). The final norm's scale multiplies every logit, so an
/// f32 rounding of it moves all of them together and the entropy with them: in f32 it was
/// most of exact mode's distance from a float64 pass (1.1e-6 bits at worst on the tiny
/// llama, 3.6e-7 in f64; tests/exact.rs). A norm is a sliver of a step's time.
fn norm_row(row: &[f32], alpha: &[f32], eps: f32, dst: &mut [f32]) {
    let n = row.len();
    // Four independent sums, so that the additions need not wait on each other.
    let mut lanes = [0f64; 4];
    let chunks = row.chunks_exact(4);
    let rest: f64 = chunks
        .remainder()
        .iter()
        .map(|&v| v as f64 * v as f64)
        .sum();
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += v as f64 * v as f64;
        }
    }
    let sum2 = (lanes[0] + lanes[2]) + (lanes[1] + lanes[3]) + rest;
    let r = 1.0 / (sum2 / n as f64 + eps as f64).sqrt();
    for ((d, &s), &w) in dst.iter_mut().zip(row).zip(alpha) {
        *d = (s as f64 * r * w as f64) as f32;
    }
}

/// Threads that [`parallel_for`] spreads work over (candle's pool and the caller).
pub fn pool_threads() -> usize {
    candle_core::utils::barrier_pool().n_workers() + 1
}

/// Runs `f` over `0..n` on candle's thread pool (the calling thread takes part), handing out
/// ranges from a shared cursor in guided sizes: a share of what is left divided among twice
/// the threads, down to one item. candle's `execute_chunked` hands out fixed eighths of a
/// thread's share, so the last range could leave the other threads waiting for up to one
/// sixteenth of the call; shrinking ranges end together.
pub fn parallel_for<F: Fn(std::ops::Range<usize>) + Sync>(n: usize, f: F) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    thread_local! {
        /// Set while this thread runs a `parallel_for` range: a nested call runs inline
        /// (the pool takes one call at a time; waiting for it from inside would deadlock).
        static INSIDE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if n == 0 {
        return;
    }
    let pool = candle_core::utils::barrier_pool();
    let threads = pool.n_workers() + 1;
    if threads == 1 || INSIDE.with(|i| i.get()) {
        f(0..n);
        return;
    }
    let cursor = AtomicUsize::new(0);
    pool.execute(|_| {
        let was = INSIDE.with(|i| i.replace(true));
        let mut at = cursor.load(Ordering::Relaxed);
        while at < n {
            let len = ((n - at) / (2 * threads)).max(1);
            match cursor.compare_exchange_weak(at, at + len, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    f(at..at + len);
                    at = cursor.load(Ordering::Relaxed);
                }
                Err(now) => at = now,
            }
        }
        INSIDE.with(|i| i.set(was));
    });
}

thread_local! {
    static SCRATCH: RefCell<Activations> = RefCell::new(Activations::default());
}

/// x (m × k, row-major f32) times each wᵀ → m × n per matrix, quantizing x once into a
/// reused buffer. Every matrix must be k wide.
pub fn matmul_f32(ws: &[&QWeights], x: &[f32], m: usize, isa: Isa) -> Vec<Vec<f32>> {
    // Outputs are not zeroed first: the kernels write every value (zeroing them was ~1.5% of
    // batched CPU decode time, on the thread that the others wait for).
    let mut outs: Vec<Vec<f32>> = ws.iter().map(|w| Vec::with_capacity(m * w.n)).collect();
    let Some(k) = ws.first().map(|w| w.k) else {
        return outs;
    };
    SCRATCH.with(|s| {
        let mut a = s.borrow_mut();
        // The matrices' formats straight from the slice: no allocation per call.
        a.prepare(x, m, k, ws.iter().map(|w| w.format), detected_isa());
        let targets: Vec<SharedOut> = outs
            .iter_mut()
            .map(|o| SharedOut(o.spare_capacity_mut().as_mut_ptr().cast()))
            .collect();
        // SAFETY: each output has capacity for m × n values.
        unsafe { matmul_into(ws, &a, &targets, isa) };
    });
    for (o, w) in outs.iter_mut().zip(ws) {
        // SAFETY: `matmul_into` wrote all m × n values (every weight row against every
        // activation row) and returned.
        unsafe { o.set_len(m * w.n) };
    }
    outs
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
        let out = matmul_f32(&[w], x, m, detected_isa())
            .pop()
            .expect("one output");
        let mut shape = lead.to_vec();
        shape.push(w.n);
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }
}

/// A linear layer with quantized weights: landauer's kernels where they apply (every GGUF
/// format llama-quantize's common presets write, and f16/bf16/f32, on the CPU), candle's
/// `QMatMul` everywhere else (GPUs; on the CPU only types with no kernel here), and on GPUs
/// half-precision weights kept in their type for cuBLAS ([`QLinear::Dense`]).
#[derive(Clone)]
pub enum QLinear {
    Landauer(CpuMatMul),
    Candle {
        matmul: QMatMul,
        /// The weights' type when they are on the CPU: there candle's kernels are the slow
        /// path, which runs say they took ([`QLinear::fallback`]).
        cpu_fallback: Option<GgmlDType>,
    },
    /// F16 or BF16 weights (n, k) as a tensor of their own type, multiplied by cuBLAS in
    /// that type on a GPU: candle's `QMatMul` widens them to f32 (twice the memory, twice
    /// the bytes a decode step reads).
    Dense(Tensor),
}

/// Rows (batch × tokens) from which a GPU multiplies quantized weights by dequantizing them
/// to f16 and calling cuBLAS (tensor cores), as llama.cpp does above its MMQ threshold,
/// instead of candle's MMQ kernels: `LANDAUER_F16_GEMM_ROWS=N`; unset, never (which wins,
/// and from which batch, is measured by scripts/gpu-campaign.sh, not assumed).
pub fn f16_gemm_rows() -> Option<usize> {
    static ROWS: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *ROWS.get_or_init(|| {
        std::env::var("LANDAUER_F16_GEMM_ROWS")
            .ok()
            .and_then(|v| v.parse().ok())
    })
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
        if !q.device().is_cpu() && matches!(q.dtype(), GgmlDType::F16 | GgmlDType::BF16) {
            return Self::dense(&q);
        }
        let cpu_fallback = q.device().is_cpu().then(|| q.dtype());
        Ok(QLinear::Candle {
            matmul: QMatMul::from_qtensor(q)?,
            cpu_fallback,
        })
    }

    /// [`QLinear::Dense`] of F16 or BF16 weights (any device; [`QLinear::new`] picks it on
    /// GPUs): the values exactly, in their own type.
    pub fn dense(q: &QTensor) -> candle_core::Result<Self> {
        let w = match q.dtype() {
            GgmlDType::F16 => q.dequantize_f16(&q.device())?,
            GgmlDType::BF16 => q
                .dequantize(&q.device())?
                .to_dtype(candle_core::DType::BF16)?,
            other => candle_core::bail!("dense weights are F16 or BF16, not {other:?}"),
        };
        Ok(QLinear::Dense(w))
    }

    /// x · dequantize_f16(w)ᵀ in f16 by cuBLAS (on a GPU; any device computes it), for
    /// quantized weights run by candle: None for other layers.
    pub fn forward_f16_gemm(&self, x: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let QLinear::Candle {
            matmul: QMatMul::QTensor(q),
            ..
        } = self
        else {
            return Ok(None);
        };
        let w = q.dequantize_f16(x.device())?;
        let y = x
            .to_dtype(candle_core::DType::F16)?
            .broadcast_matmul(&w.t()?)?;
        Ok(Some(y.to_dtype(x.dtype())?))
    }

    /// True when landauer's kernels run this layer.
    pub fn is_landauer(&self) -> bool {
        matches!(self, QLinear::Landauer(_))
    }

    /// The weights' type when candle's CPU kernels run this layer (the slow path).
    pub fn fallback(&self) -> Option<GgmlDType> {
        match self {
            QLinear::Candle { cpu_fallback, .. } => *cpu_fallback,
            QLinear::Landauer(_) | QLinear::Dense(_) => None,
        }
    }

    /// Several layers applied to the same input (a layer's q, k, v; gate and up): with
    /// landauer's kernels the input is quantized once and the threads get one batch of work.
    pub fn forward_many<const N: usize>(
        layers: [&QLinear; N],
        x: &Tensor,
    ) -> candle_core::Result<[Tensor; N]> {
        let Some(outs) = Self::forward_many_host(layers, x)? else {
            let outs: Vec<Tensor> = layers
                .iter()
                .map(|l| l.forward(x))
                .collect::<Result<_, _>>()?;
            return Ok(outs.try_into().expect("N outputs"));
        };
        let tensors: Vec<Tensor> = outs
            .into_iter()
            .zip(layers)
            .map(|(o, l)| Tensor::from_vec(o, l.output_shape(x), x.device()))
            .collect::<Result<_, _>>()?;
        Ok(tensors.try_into().expect("N outputs"))
    }

    /// x's shape with the last dimension replaced by this layer's output width (landauer's
    /// kernels only).
    fn output_shape(&self, x: &Tensor) -> Vec<usize> {
        let mut shape = x.dims()[..x.rank().saturating_sub(1)].to_vec();
        if let QLinear::Landauer(op) = self {
            shape.push(op.weights().n);
        }
        shape
    }

    /// [`Self::forward_many`] as plain row-major vectors, when landauer's kernels run every
    /// layer (`None` otherwise, and for inputs they do not take): x (…, k) → N × (rows · n).
    pub fn forward_many_host<const N: usize>(
        layers: [&QLinear; N],
        x: &Tensor,
    ) -> candle_core::Result<Option<[Vec<f32>; N]>> {
        let ws: Vec<&QWeights> = layers
            .iter()
            .filter_map(|l| match l {
                QLinear::Landauer(op) => Some(op.weights()),
                QLinear::Candle { .. } | QLinear::Dense(_) => None,
            })
            .collect();
        let k = x.dims().last().copied().unwrap_or(0);
        if ws.len() < N || ws.iter().any(|w| w.k != k) || !host(x) {
            return Ok(None);
        }
        let outs = host_slice(x, |data| {
            matmul_f32(&ws, data, data.len() / k, detected_isa())
        })?;
        Ok(Some(outs.try_into().expect("N outputs")))
    }

    /// The SwiGLU of a llama MLP, silu(x·gateᵀ) ⊙ (x·upᵀ). With landauer's kernels the two
    /// matmuls share one quantization of x and the elementwise part runs on the thread pool
    /// too (as one op, candle's silu and multiply run on the calling thread while the pool
    /// waits); silu is candle's formula, v / (1 + e^−v), with e^x from
    /// [`silu_mul_in_place`] (within a few ulp of candle's, tested).
    pub fn forward_swiglu(gate: &QLinear, up: &QLinear, x: &Tensor) -> candle_core::Result<Tensor> {
        let same_width = match (gate, up) {
            (QLinear::Landauer(g), QLinear::Landauer(u)) => g.weights().n == u.weights().n,
            _ => false,
        };
        let host = match same_width {
            true => Self::forward_many_host([gate, up], x)?,
            false => None,
        };
        let Some([mut g, u]) = host else {
            let [g, u] = Self::forward_many([gate, up], x)?;
            return candle_nn::ops::silu(&g)? * u;
        };
        silu_mul_in_place(&mut g, &u);
        Tensor::from_vec(g, gate.output_shape(x), x.device())
    }

    /// x (…, k) → (…, n).
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            QLinear::Landauer(op) => x.contiguous()?.apply_op1_no_bwd(op),
            QLinear::Candle { matmul, .. } => {
                let rows = x.elem_count() / x.dims().last().copied().unwrap_or(1).max(1);
                if !x.device().is_cpu() && f16_gemm_rows().is_some_and(|r| rows >= r) {
                    if let Some(y) = self.forward_f16_gemm(x)? {
                        return Ok(y);
                    }
                }
                matmul.forward(x)
            }
            QLinear::Dense(w) => x
                .to_dtype(w.dtype())?
                .broadcast_matmul(&w.t()?)?
                .to_dtype(x.dtype()),
        }
    }
}

#[cfg(test)]
mod tests;
