//! llama.cpp's reference k-quant quantizers (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K), ported by hand.
//!
//! Why hand-written: candle 0.11's k-quant quantizers (`candle_core::quantized::k_quants`) are
//! an older algorithm than llama.cpp's (Q2_K, Q4_K and Q5_K use `make_qkx1_quants` where
//! llama.cpp now uses `make_qkx2_quants`; Q6_K's `make_qx_quants` refines its scale by an older
//! iteration instead of llama.cpp's search over 18 nearby scales), so a model quantized at load
//! with them would not compare with the files people download, which `llama-quantize` makes:
//! every Q4_K and Q6_K tensor came out different and greedy text diverged after 18 tokens. This is
//! a line-by-line port of llama.cpp's `ggml/src/ggml-quants.c` (the copy vendored by
//! llama-cpp-python 0.3.36, the peer landauer is measured against): the helpers
//! `nearest_int`, `make_qx_quants`, `make_q3_quants`, `make_qkx2_quants`, `get_scale_min_k4`,
//! and `quantize_row_q2_K_ref`, `quantize_row_q3_K_ref`, `quantize_row_q4_K_ref`,
//! `quantize_row_q5_K_ref`, `quantize_row_q6_K_ref` — what `quantize_q{2..6}_K` run when
//! `quant_weights` is NULL, i.e. `llama-quantize` without `--imatrix`. Block layouts are those
//! of `ggml/src/ggml-common.h`; `GGML_FP32_TO_FP16` is `ggml_compute_fp32_to_fp16` of
//! `ggml/src/ggml-impl.h`.
//!
//! Bit-exactness: every expression keeps the C operation order, in f32, with ints converted to
//! f32 where C converts them. ggml-quants.c is compiled into libggml-base without `-mfma`
//! (only ggml-cpu gets the CPU's flags), so the C build has no fused multiply-adds, and Rust
//! does not fuse either. Blocks are independent, so quantizing them in parallel changes nothing.

use candle_core::quantized::{ggml_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rayon::prelude::*;

/// Values per super-block.
const QK_K: usize = 256;
/// Below this a group counts as all zero (`GROUP_MAX_EPS` of ggml-quants.c).
const GROUP_MAX_EPS: f32 = 1e-15;

/// `nearest_int`: round to nearest, ties to even, by the float trick of ggml-quants.c (valid
/// for |fval| <= 4194303; outside that it returns what the C returns).
#[inline]
fn nearest_int(fval: f32) -> i32 {
    let val = fval + 12_582_912.0;
    (val.to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// `GGML_FP32_TO_FP16` (`ggml_compute_fp32_to_fp16`): round to nearest even.
fn fp32_to_fp16(f: f32) -> u16 {
    let scale_to_inf = f32::from_bits(0x7780_0000); // 0x1.0p+112f
    let scale_to_zero = f32::from_bits(0x0880_0000); // 0x1.0p-110f
    let mut base = (f.abs() * scale_to_inf) * scale_to_zero;
    let w = f.to_bits();
    let shl1_w = w.wrapping_add(w);
    let sign = w & 0x8000_0000;
    let mut bias = shl1_w & 0xFF00_0000;
    if bias < 0x7100_0000 {
        bias = 0x7100_0000;
    }
    // `base = fp32_from_bits(...) + base` in C; float addition commutes exactly.
    base += f32::from_bits((bias >> 1) + 0x0780_0000);
    let bits = base.to_bits();
    let exp_bits = (bits >> 13) & 0x0000_7C00;
    let mantissa_bits = bits & 0x0000_0FFF;
    let nonsign = exp_bits + mantissa_bits;
    ((sign >> 16)
        | if shl1_w > 0xFF00_0000 {
            0x7E00
        } else {
            nonsign
        }) as u16
}

/// `GGML_FP16_TO_FP32` (exact).
#[inline]
fn fp16_to_fp32(h: u16) -> f32 {
    half::f16::from_bits(h).to_f32()
}

fn put_f16(dst: &mut [u8], f: f32) -> f32 {
    let h = fp32_to_fp16(f);
    dst[..2].copy_from_slice(&h.to_le_bytes());
    fp16_to_fp32(h)
}

/// `make_qx_quants` with `qw == NULL`. `L` gets `l + nmax`.
fn make_qx_quants(nmax: i32, x: &[f32], ls: &mut [i8], mut rmse_type: i32) -> f32 {
    let mut max = 0f32;
    let mut amax = 0f32;
    for &xi in x {
        let ax = xi.abs();
        if ax > amax {
            amax = ax;
            max = xi;
        }
    }
    if amax < GROUP_MAX_EPS {
        ls.fill(0);
        return 0.0;
    }
    let nm = nmax as f32;
    let mut iscale = -nm / max;
    if rmse_type == 0 {
        for (l_out, &xi) in ls.iter_mut().zip(x) {
            let l = nearest_int(iscale * xi);
            *l_out = (nmax + l.clamp(-nmax, nmax - 1)) as i8;
        }
        return 1.0 / iscale;
    }
    let mut return_early = false;
    if rmse_type < 0 {
        rmse_type = -rmse_type;
        return_early = true;
    }
    let weight = |xi: f32| match rmse_type {
        1 => xi * xi,
        2 => 1.0,
        3 => xi.abs(),
        _ => xi.abs().sqrt(),
    };
    let mut sumlx = 0f32;
    let mut suml2 = 0f32;
    for (l_out, &xi) in ls.iter_mut().zip(x) {
        let l = nearest_int(iscale * xi).clamp(-nmax, nmax - 1);
        *l_out = (l + nmax) as i8;
        let w = weight(xi);
        let lf = l as f32;
        sumlx += w * xi * lf;
        suml2 += w * lf * lf;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    if return_early {
        return if suml2 > 0.0 {
            0.5 * (scale + 1.0 / iscale)
        } else {
            1.0 / iscale
        };
    }
    let mut best = scale * sumlx;
    for is in -9i32..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nm + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for &xi in x {
            let l = nearest_int(iscale * xi).clamp(-nmax, nmax - 1);
            let w = weight(xi);
            let lf = l as f32;
            sumlx += w * xi * lf;
            suml2 += w * lf * lf;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (l_out, &xi) in ls.iter_mut().zip(x) {
                let l = nearest_int(iscale * xi);
                *l_out = (nmax + l.clamp(-nmax, nmax - 1)) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// `make_q3_quants`. `L` gets `l + nmax` (0 for an all-zero group).
fn make_q3_quants(nmax: i32, x: &[f32], ls: &mut [i8], do_rmse: bool) -> f32 {
    let mut max = 0f32;
    let mut amax = 0f32;
    for &xi in x {
        let ax = xi.abs();
        if ax > amax {
            amax = ax;
            max = xi;
        }
    }
    if amax < GROUP_MAX_EPS {
        ls.fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    if do_rmse {
        let mut sumlx = 0f32;
        let mut suml2 = 0f32;
        for (l_out, &xi) in ls.iter_mut().zip(x) {
            let l = nearest_int(iscale * xi).clamp(-nmax, nmax - 1);
            *l_out = l as i8;
            let w = xi * xi;
            let lf = l as f32;
            sumlx += w * xi * lf;
            suml2 += w * lf * lf;
        }
        for _itry in 0..5 {
            let mut n_changed = 0;
            for (l_i, &xi) in ls.iter_mut().zip(x) {
                let w = xi * xi;
                let li = *l_i as f32;
                let mut slx = sumlx - w * xi * li;
                if slx > 0.0 {
                    let mut sl2 = suml2 - w * li * li;
                    let new_l = nearest_int(xi * sl2 / slx).clamp(-nmax, nmax - 1);
                    if new_l != *l_i as i32 {
                        let nf = new_l as f32;
                        slx += w * xi * nf;
                        sl2 += w * nf * nf;
                        if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                            *l_i = new_l as i8;
                            sumlx = slx;
                            suml2 = sl2;
                            n_changed += 1;
                        }
                    }
                }
            }
            if n_changed == 0 {
                break;
            }
        }
        for l in ls.iter_mut() {
            *l += nmax as i8;
        }
        return if suml2 > 0.0 { sumlx / suml2 } else { 0.0 };
    }
    for (l_out, &xi) in ls.iter_mut().zip(x) {
        let l = nearest_int(iscale * xi).clamp(-nmax, nmax - 1);
        *l_out = (l + nmax) as i8;
    }
    1.0 / iscale
}

/// `make_qkx2_quants`: returns `(scale, *the_min)`. `laux` is scratch of `x.len()`.
#[allow(clippy::too_many_arguments)]
fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    ls: &mut [u8],
    laux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        ls.fill(0);
        return (0.0, -min);
    }
    let nm = nmax as f32;
    let mut iscale = nm / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min));
        ls[i] = l.clamp(0, nmax) as u8;
        let mut diff = scale * ls[i] as f32 + min - x[i];
        diff = if use_mad { diff.abs() } else { diff * diff };
        let w = weights[i];
        best_error += w * diff;
    }
    if nstep < 1 {
        return (scale, -min);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nm) / (max - min);
        let mut sum_l = 0f32;
        let mut sum_l2 = 0f32;
        let mut sum_xl = 0f32;
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = l as u8;
            let w = weights[i];
            let lf = l as f32;
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0f32;
            for i in 0..n {
                let mut diff = this_scale * laux[i] as f32 + this_min - x[i];
                diff = if use_mad { diff.abs() } else { diff * diff };
                let w = weights[i];
                cur_error += w * diff;
            }
            if cur_error < best_error {
                ls[..n].copy_from_slice(&laux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` of a Q4_K/Q5_K block.
#[inline]
fn get_scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Packs 2-bit quants as Q2_K and Q3_K do: four 32-value rows of each 128 into one byte.
fn pack_2bit(ls: &[u8; QK_K], qs: &mut [u8]) {
    for j in (0..QK_K).step_by(128) {
        for l in 0..32 {
            qs[j / 4 + l] =
                ls[j + l] | (ls[j + l + 32] << 2) | (ls[j + l + 64] << 4) | (ls[j + l + 96] << 6);
        }
    }
}

/// `quantize_row_q2_K_ref` for one block: scales[16], qs[64], d, dmin.
fn q2_k_block(x: &[f32], y: &mut [u8]) {
    let mut ls = [0u8; QK_K];
    let mut laux = [0u8; 16];
    let mut weights = [0f32; 16];
    let mut mins = [0f32; QK_K / 16];
    let mut scales = [0f32; QK_K / 16];
    let q4scale = 15f32;

    let mut max_scale = 0f32;
    let mut max_min = 0f32;
    for j in 0..QK_K / 16 {
        let xb = &x[16 * j..16 * j + 16];
        for (w, &xi) in weights.iter_mut().zip(xb) {
            *w = xi.abs();
        }
        let (scale, min) = make_qkx2_quants(
            3,
            xb,
            &weights,
            &mut ls[16 * j..16 * j + 16],
            &mut laux,
            -0.5,
            0.1,
            15,
            true,
        );
        scales[j] = scale;
        mins[j] = min;
        if scale > max_scale {
            max_scale = scale;
        }
        if min > max_min {
            max_min = min;
        }
    }

    let (sc, rest) = y.split_at_mut(16);
    let (qs, dd) = rest.split_at_mut(64);
    let d = if max_scale > 0.0 {
        let iscale = q4scale / max_scale;
        for j in 0..QK_K / 16 {
            sc[j] = nearest_int(iscale * scales[j]) as u8;
        }
        put_f16(&mut dd[0..2], max_scale / q4scale)
    } else {
        sc.fill(0);
        put_f16(&mut dd[0..2], 0.0)
    };
    let dmin = if max_min > 0.0 {
        let iscale = q4scale / max_min;
        for j in 0..QK_K / 16 {
            let l = nearest_int(iscale * mins[j]);
            sc[j] |= (l << 4) as u8;
        }
        put_f16(&mut dd[2..4], max_min / q4scale)
    } else {
        put_f16(&mut dd[2..4], 0.0)
    };
    for j in 0..QK_K / 16 {
        let d = d * (sc[j] & 0xF) as f32;
        if d == 0.0 {
            continue;
        }
        let dm = dmin * (sc[j] >> 4) as f32;
        for ii in 0..16 {
            let l = nearest_int((x[16 * j + ii] + dm) / d);
            ls[16 * j + ii] = l.clamp(0, 3) as u8;
        }
    }
    pack_2bit(&ls, qs);
}

/// `quantize_row_q3_K_ref` for one block: hmask[32], qs[64], scales[12], d.
fn q3_k_block(x: &[f32], y: &mut [u8]) {
    let mut li = [0i8; QK_K];
    let mut scales = [0f32; QK_K / 16];

    let mut max_scale = 0f32;
    let mut amax = 0f32;
    for j in 0..QK_K / 16 {
        scales[j] = make_q3_quants(
            4,
            &x[16 * j..16 * j + 16],
            &mut li[16 * j..16 * j + 16],
            true,
        );
        let scale = scales[j].abs();
        if scale > amax {
            amax = scale;
            max_scale = scales[j];
        }
    }

    let (hmask, rest) = y.split_at_mut(QK_K / 8);
    let (qs, rest) = rest.split_at_mut(QK_K / 4);
    let (sc, dd) = rest.split_at_mut(12);
    sc.fill(0);
    let d;
    if max_scale != 0.0 {
        let iscale = -32f32 / max_scale;
        for j in 0..QK_K / 16 {
            let mut l = nearest_int(iscale * scales[j]) as i8;
            l = l.clamp(-32, 31) + 32;
            if j < 8 {
                sc[j] = (l & 0xF) as u8;
            } else {
                sc[j - 8] |= ((l & 0xF) << 4) as u8;
            }
            l >>= 4;
            sc[j % 4 + 8] |= (l << (2 * (j / 4))) as u8;
        }
        d = put_f16(dd, 1.0 / iscale);
    } else {
        d = put_f16(dd, 0.0);
    }

    for j in 0..QK_K / 16 {
        let mut s = if j < 8 { sc[j] & 0xF } else { sc[j - 8] >> 4 } as i8;
        s = (s | ((((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4) as i8)) - 32;
        let d = d * s as f32;
        if d == 0.0 {
            continue;
        }
        for ii in 0..16 {
            let l = nearest_int(x[16 * j + ii] / d);
            li[16 * j + ii] = (l.clamp(-4, 3) + 4) as i8;
        }
    }

    hmask.fill(0);
    let mut m = 0;
    let mut hm = 1u8;
    for l in li.iter_mut() {
        if *l > 3 {
            hmask[m] |= hm;
            *l -= 4;
        }
        m += 1;
        if m == QK_K / 8 {
            m = 0;
            hm = hm.wrapping_shl(1);
        }
    }
    let mut ls = [0u8; QK_K];
    for (u, &l) in ls.iter_mut().zip(&li) {
        *u = l as u8;
    }
    pack_2bit(&ls, qs);
}

/// The scales, mins and requantization shared by `quantize_row_q4_K_ref` and
/// `quantize_row_q5_K_ref`: writes d, dmin, scales[12] into `head` (16 bytes) and the quants
/// (0..=nmax) into `ls`.
#[allow(clippy::too_many_arguments)]
fn q45_k_scales(
    x: &[f32],
    head: &mut [u8],
    ls: &mut [u8; QK_K],
    nmax: i32,
    rmin: f32,
    rdelta: f32,
    nstep: i32,
) {
    let mut laux = [0u8; 32];
    let mut weights = [0f32; 32];
    let mut mins = [0f32; QK_K / 32];
    let mut scales = [0f32; QK_K / 32];

    let mut max_scale = 0f32;
    let mut max_min = 0f32;
    for j in 0..QK_K / 32 {
        let xb = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0f32;
        for &xi in xb {
            sum_x2 += xi * xi;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, &xi) in weights.iter_mut().zip(xb) {
            *w = av_x + xi.abs();
        }
        let (scale, min) = make_qkx2_quants(
            nmax,
            xb,
            &weights,
            &mut ls[32 * j..32 * j + 32],
            &mut laux,
            rmin,
            rdelta,
            nstep,
            false,
        );
        scales[j] = scale;
        mins[j] = min;
        if scale > max_scale {
            max_scale = scale;
        }
        if min > max_min {
            max_min = min;
        }
    }

    let (dd, sc) = head.split_at_mut(4);
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    sc.fill(0);
    for j in 0..QK_K / 32 {
        let ls_ = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            sc[j] = ls_;
            sc[j + 4] = lm;
        } else {
            sc[j + 4] = (ls_ & 0xF) | ((lm & 0xF) << 4);
            sc[j - 4] |= (ls_ >> 4) << 6;
            sc[j] |= (lm >> 4) << 6;
        }
    }
    let d = put_f16(&mut dd[0..2], max_scale / 63.0);
    let dmin = put_f16(&mut dd[2..4], max_min / 63.0);

    for j in 0..QK_K / 32 {
        let (s, m) = get_scale_min_k4(j, sc);
        let d = d * s as f32;
        if d == 0.0 {
            continue;
        }
        let dm = dmin * m as f32;
        for ii in 0..32 {
            let l = nearest_int((x[32 * j + ii] + dm) / d);
            ls[32 * j + ii] = l.clamp(0, nmax) as u8;
        }
    }
}

/// `quantize_row_q4_K_ref` for one block: d, dmin, scales[12], qs[128].
fn q4_k_block(x: &[f32], y: &mut [u8]) {
    let mut ls = [0u8; QK_K];
    let (head, qs) = y.split_at_mut(16);
    q45_k_scales(x, head, &mut ls, 15, -1.0, 0.1, 20);
    for (j, q) in (0..QK_K).step_by(64).zip(qs.chunks_exact_mut(32)) {
        for l in 0..32 {
            q[l] = ls[j + l] | (ls[j + l + 32] << 4);
        }
    }
}

/// `quantize_row_q5_K_ref` for one block: d, dmin, scales[12], qh[32], qs[128].
fn q5_k_block(x: &[f32], y: &mut [u8]) {
    let mut ls = [0u8; QK_K];
    let (head, rest) = y.split_at_mut(16);
    q45_k_scales(x, head, &mut ls, 31, -0.5, 0.1, 15);
    let (qh, ql) = rest.split_at_mut(QK_K / 8);
    qh.fill(0);
    let mut m1 = 1u8;
    let mut m2 = 2u8;
    for (n, ql) in (0..QK_K).step_by(64).zip(ql.chunks_exact_mut(32)) {
        for j in 0..32 {
            let mut l1 = ls[n + j];
            if l1 > 15 {
                l1 -= 16;
                qh[j] |= m1;
            }
            let mut l2 = ls[n + j + 32];
            if l2 > 15 {
                l2 -= 16;
                qh[j] |= m2;
            }
            ql[j] = l1 | (l2 << 4);
        }
        m1 = m1.wrapping_shl(2);
        m2 = m2.wrapping_shl(2);
    }
}

/// `quantize_row_q6_K_ref` for one block: ql[128], qh[64], scales[16] (i8), d.
fn q6_k_block(x: &[f32], y: &mut [u8]) {
    let mut li = [0i8; QK_K];
    let mut scales = [0f32; QK_K / 16];

    let mut max_scale = 0f32;
    let mut max_abs_scale = 0f32;
    for ib in 0..QK_K / 16 {
        let scale = make_qx_quants(
            32,
            &x[16 * ib..16 * ib + 16],
            &mut li[16 * ib..16 * ib + 16],
            1,
        );
        scales[ib] = scale;
        let abs_scale = scale.abs();
        if abs_scale > max_abs_scale {
            max_abs_scale = abs_scale;
            max_scale = scale;
        }
    }

    if max_abs_scale < GROUP_MAX_EPS {
        y.fill(0);
        put_f16(&mut y[208..210], 0.0);
        return;
    }

    let (qlh, rest) = y.split_at_mut(QK_K / 2 + QK_K / 4);
    let (sc, dd) = rest.split_at_mut(QK_K / 16);
    let iscale = -128f32 / max_scale;
    let d = put_f16(dd, 1.0 / iscale);
    for ib in 0..QK_K / 16 {
        sc[ib] = nearest_int(iscale * scales[ib]).min(127) as i8 as u8;
    }

    for j in 0..QK_K / 16 {
        let d = d * (sc[j] as i8) as f32;
        if d == 0.0 {
            continue;
        }
        for ii in 0..16 {
            let l = nearest_int(x[16 * j + ii] / d);
            li[16 * j + ii] = (l.clamp(-32, 31) + 32) as i8;
        }
    }

    let (ql, qh) = qlh.split_at_mut(QK_K / 2);
    let lu = |i: usize| li[i] as u8;
    for ((j, ql), qh) in (0..QK_K)
        .step_by(128)
        .zip(ql.chunks_exact_mut(64))
        .zip(qh.chunks_exact_mut(32))
    {
        for l in 0..32 {
            let q1 = lu(j + l) & 0xF;
            let q2 = lu(j + l + 32) & 0xF;
            let q3 = lu(j + l + 64) & 0xF;
            let q4 = lu(j + l + 96) & 0xF;
            ql[l] = q1 | (q3 << 4);
            ql[l + 32] = q2 | (q4 << 4);
            qh[l] = (lu(j + l) >> 4)
                | ((lu(j + l + 32) >> 4) << 2)
                | ((lu(j + l + 64) >> 4) << 4)
                | ((lu(j + l + 96) >> 4) << 6);
        }
    }
}

/// The blocks' bytes of `xs` (row-major, `xs.len()` a multiple of 256) quantized to `dtype`
/// as llama.cpp's `quantize_row_q{2..6}_K_ref` do; `None` for a type that is not a k-quant
/// (Q2_K..Q6_K).
///
/// # Panics
/// If `xs.len()` is not a multiple of 256.
pub fn quantize_k(dtype: GgmlDType, xs: &[f32]) -> Option<Vec<u8>> {
    let block: fn(&[f32], &mut [u8]) = match dtype {
        GgmlDType::Q2K => q2_k_block,
        GgmlDType::Q3K => q3_k_block,
        GgmlDType::Q4K => q4_k_block,
        GgmlDType::Q5K => q5_k_block,
        GgmlDType::Q6K => q6_k_block,
        _ => return None,
    };
    assert!(
        xs.len().is_multiple_of(QK_K),
        "{} values are not whole blocks of {QK_K}",
        xs.len()
    );
    let size = dtype.type_size();
    let mut out = vec![0u8; xs.len() / QK_K * size];
    out.par_chunks_exact_mut(size)
        .zip(xs.par_chunks_exact(QK_K))
        .for_each(|(y, x)| block(x, y));
    Some(out)
}

/// A CPU [`QTensor`] of `dims` (candle's order, as [`Tensor::dims`]) from its blocks' bytes.
pub fn qtensor_from_bytes(
    dtype: GgmlDType,
    bytes: &[u8],
    dims: Vec<usize>,
) -> candle_core::Result<QTensor> {
    let elems: usize = dims.iter().product();
    let size = elems / dtype.block_size() * dtype.type_size();
    if bytes.len() != size {
        candle_core::bail!(
            "{} bytes for a {dtype:?} tensor of {dims:?}, which takes {size}",
            bytes.len()
        );
    }
    // candle reads the bytes as blocks in place, so they must be aligned as a block is (its
    // f16 fields): copy them into u64s.
    let mut aligned = vec![0u64; size.div_ceil(8)];
    for (a, c) in aligned.iter_mut().zip(bytes.chunks(8)) {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        *a = u64::from_ne_bytes(w);
    }
    // SAFETY: `aligned` holds `size.div_ceil(8) * 8 >= size` initialized bytes.
    let view = unsafe { std::slice::from_raw_parts(aligned.as_ptr().cast::<u8>(), size) };
    ggml_file::qtensor_from_ggml(dtype, view, dims, &Device::Cpu)
}

/// `t` quantized to `dtype` as `llama-quantize` does it without an importance matrix, for the
/// k-quants (Q2_K..Q6_K); `Ok(None)` for other types (candle's quantizers serve those).
/// Fails, as [`QTensor::quantize`] does, unless the last dimension is a multiple of 256.
pub fn quantize(t: &Tensor, dtype: GgmlDType) -> candle_core::Result<Option<QTensor>> {
    if !matches!(
        dtype,
        GgmlDType::Q2K | GgmlDType::Q3K | GgmlDType::Q4K | GgmlDType::Q5K | GgmlDType::Q6K
    ) {
        return Ok(None);
    }
    let dims = t.dims().to_vec();
    match dims.last() {
        Some(last) if last.is_multiple_of(QK_K) => {}
        _ => candle_core::bail!(
            "a {dtype:?} tensor's last dimension must be a multiple of {QK_K}: {dims:?}"
        ),
    }
    let xs = t
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let bytes = quantize_k(dtype, &xs).expect("a k-quant");
    qtensor_from_bytes(dtype, &bytes, dims).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use sha2::{Digest, Sha256};

    const KQUANTS: [GgmlDType; 5] = [
        GgmlDType::Q2K,
        GgmlDType::Q3K,
        GgmlDType::Q4K,
        GgmlDType::Q5K,
        GgmlDType::Q6K,
    ];

    /// `xs` through our quantizer and candle's dequantizer.
    fn roundtrip(dtype: GgmlDType, xs: &[f32]) -> Vec<f32> {
        let bytes = quantize_k(dtype, xs).unwrap();
        assert_eq!(bytes.len(), xs.len() / QK_K * dtype.type_size());
        let q = qtensor_from_bytes(dtype, &bytes, vec![xs.len() / QK_K, QK_K]).unwrap();
        let t = q.dequantize(&Device::Cpu).unwrap();
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    fn rmse(a: &[f32], b: &[f32]) -> f64 {
        let s: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
            .sum();
        (s / a.len() as f64).sqrt()
    }

    /// Gaussian values (Box-Muller) of standard deviation `std`, plus `mean`.
    fn gaussian(n: usize, seed: u64, mean: f32, std: f32) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let u: f32 = rng.random::<f32>().max(1e-7);
                let v: f32 = rng.random();
                mean + std * (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
            })
            .collect()
    }

    /// Mean of |x| * |error|: the error that Q2_K's search minimizes, and a fair measure for
    /// all of them (large weights matter most).
    fn weighted_abs(a: &[f32], b: &[f32]) -> f64 {
        let s: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x.abs() * (x - y).abs()) as f64)
            .sum();
        s / a.len() as f64
    }

    /// (RMSE, [`weighted_abs`]) of ours, then of candle's quantizer, on `xs`.
    fn ours_and_candles(dtype: GgmlDType, xs: &[f32]) -> ((f64, f64), (f64, f64)) {
        let ours = roundtrip(dtype, xs);
        let t = Tensor::from_slice(xs, (xs.len() / QK_K, QK_K), &Device::Cpu).unwrap();
        let c = QTensor::quantize(&t, dtype)
            .unwrap()
            .dequantize(&Device::Cpu);
        let c = c.unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        (
            (rmse(xs, &ours), weighted_abs(xs, &ours)),
            (rmse(xs, &c), weighted_abs(xs, &c)),
        )
    }

    /// Checks ours against candle's on `xs`: no worse on [`weighted_abs`], and on RMSE no
    /// worse than 1% except for Q2_K, whose search minimizes |x|-weighted absolute error
    /// rather than squared error (llama.cpp's Q2_K is 3-14% worse than candle's in RMSE on
    /// these inputs, and better in what it minimizes).
    fn no_worse_than_candles(dtype: GgmlDType, xs: &[f32]) -> f64 {
        let ((rmse, wabs), (c_rmse, c_wabs)) = ours_and_candles(dtype, xs);
        assert!(
            wabs <= c_wabs * 1.001,
            "{dtype:?}: |x|-weighted error {wabs} against candle's {c_wabs}"
        );
        if dtype != GgmlDType::Q2K {
            assert!(
                rmse <= c_rmse * 1.01,
                "{dtype:?}: RMSE {rmse} against candle's {c_rmse}"
            );
        }
        rmse
    }

    /// Relative RMSE of Gaussian weights, roughly what each type achieves.
    fn bound(dtype: GgmlDType) -> f64 {
        match dtype {
            GgmlDType::Q2K => 0.45,
            GgmlDType::Q3K => 0.22,
            GgmlDType::Q4K => 0.11,
            GgmlDType::Q5K => 0.055,
            _ => 0.03,
        }
    }

    #[test]
    fn gaussian_weights_dequantize_close_and_no_worse_than_candles() {
        let std = 0.02;
        let xs = gaussian(64 * QK_K, 7, 0.0, std);
        for dtype in KQUANTS {
            let rel = no_worse_than_candles(dtype, &xs) / std as f64;
            assert!(rel < bound(dtype), "{dtype:?}: relative RMSE {rel}");
        }
    }

    #[test]
    fn negative_only_blocks() {
        let xs: Vec<f32> = gaussian(16 * QK_K, 11, 0.0, 1.0)
            .into_iter()
            .map(|x| -x.abs() - 0.05)
            .collect();
        let std = (xs.iter().map(|x| x * x).sum::<f32>() / xs.len() as f32).sqrt() as f64;
        for dtype in KQUANTS {
            let rel = no_worse_than_candles(dtype, &xs) / std;
            assert!(rel < bound(dtype), "{dtype:?}: relative RMSE {rel}");
            let back = roundtrip(dtype, &xs);
            // (Not all <= 0: Q2_K's and Q4_K's top levels can land above zero.)
            assert!(back.iter().all(|x| x.is_finite()), "{dtype:?}");
        }
    }

    #[test]
    fn an_all_zero_block_is_all_zero_bytes() {
        let xs = vec![0f32; 2 * QK_K];
        for dtype in KQUANTS {
            let bytes = quantize_k(dtype, &xs).unwrap();
            assert!(bytes.iter().all(|&b| b == 0), "{dtype:?}");
            assert!(roundtrip(dtype, &xs).iter().all(|&x| x == 0.0), "{dtype:?}");
        }
    }

    #[test]
    fn a_block_with_one_nonzero_value() {
        // (Much smaller values lose precision in every type: the f16 super-block scale goes
        // subnormal.)
        for v in [0.75f32, -0.75, 0.05, 100.0] {
            let mut xs = vec![0f32; QK_K];
            xs[37] = v;
            for dtype in KQUANTS {
                let back = roundtrip(dtype, &xs);
                let tol = 0.01 * v.abs();
                assert!((back[37] - v).abs() <= tol, "{dtype:?} {v}: {}", back[37]);
                for (i, b) in back.iter().enumerate().filter(|(i, _)| *i != 37) {
                    assert!(b.abs() <= tol, "{dtype:?} {v}: [{i}] = {b}");
                }
            }
        }
    }

    /// The golden input: integers of an LCG scaled by powers of two (exact in f32, so the
    /// Python that made the hashes below builds the same floats), sub-blocks of different
    /// magnitudes, with negative-only (b % 8 == 5), positive offset (b % 8 == 6) and
    /// all-zero (b == 7) blocks.
    fn golden_input() -> Vec<f32> {
        let mut s: u32 = 12345;
        (0..64 * QK_K)
            .map(|i| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let mut v = (s >> 8) as i32 - (1 << 23);
                let e = 23 + (i / 32) % 7;
                let b = i / QK_K;
                if b % 8 == 5 {
                    v = -v.abs();
                } else if b % 8 == 6 {
                    v = v.abs() + (1 << 22);
                } else if b == 7 {
                    v = 0;
                }
                v as f32 * (-(e as f32)).exp2()
            })
            .collect()
    }

    fn sha256(bytes: &[u8]) -> String {
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The hashes are of the bytes that llama.cpp's own `quantize_q{2..6}_K` (libggml-base.so
    /// of llama-cpp-python 0.3.36's llama.cpp, built by scripts/llamacpp-tools.sh, called
    /// through Python's ctypes with `quant_weights` NULL, as 16 rows of 1024) wrote for
    /// [`golden_input`].
    #[test]
    fn matches_llama_cpp_byte_for_byte() {
        let xs = golden_input();
        let input: Vec<u8> = xs.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(
            sha256(&input),
            "af3bc103bad970c713840adc0ada4b8a74abbcda37db1a1a8b64965649549b03"
        );
        for (dtype, want) in [
            (
                GgmlDType::Q2K,
                "5bfaf0d06a8d9c85a1b63f10b9c14efacce958432cad750185c56ff673029e24",
            ),
            (
                GgmlDType::Q3K,
                "a81eff75132ddcfbd1bcdfc0311ce19a2dd2702b0f558ab89a42cf8e98f36838",
            ),
            (
                GgmlDType::Q4K,
                "ea542267dbdbae789ee2715cd7d5cf523eee468a1ff2b5f73699c720f3f649e5",
            ),
            (
                GgmlDType::Q5K,
                "f35760bd427a291ab7097f918ade5ca6be85a6398df304ce3e2665b61e8b3c75",
            ),
            (
                GgmlDType::Q6K,
                "8f73eefd97bfb51ba849783c5e083506c902b65f3d1ffc0bf33d955440fc58c6",
            ),
        ] {
            assert_eq!(sha256(&quantize_k(dtype, &xs).unwrap()), want, "{dtype:?}");
        }
    }

    #[test]
    fn fp16_rounding_is_half_crates() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let special = [0.0f32, -0.0, 65504.0, 65520.0, 1e6, 5.96e-8, 2.98e-8, 1e-10];
        let randoms =
            (0..200_000).map(|_| f32::from_bits(rng.random::<u32>() & 0x8fff_ffff | 0x3000_0000));
        for f in special.into_iter().chain(randoms) {
            assert_eq!(fp32_to_fp16(f), half::f16::from_f32(f).to_bits(), "{f:e}");
        }
        // Halfway between two f16 values: to the even one.
        let a = half::f16::from_bits(0x3c00).to_f32();
        let b = half::f16::from_bits(0x3c01).to_f32();
        assert_eq!(fp32_to_fp16((a + b) / 2.0), 0x3c00);
    }

    #[test]
    fn nearest_int_rounds_half_to_even() {
        for (f, i) in [
            (0.5f32, 0),
            (1.5, 2),
            (2.5, 2),
            (-0.5, 0),
            (-1.5, -2),
            (3.49, 3),
        ] {
            assert_eq!(nearest_int(f), i, "{f}");
        }
    }

    #[test]
    fn other_types_are_left_to_candle_and_shapes_are_checked() {
        assert!(quantize_k(GgmlDType::Q8_0, &[0.0; QK_K]).is_none());
        let t = Tensor::zeros((2, 128), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(quantize(&t, GgmlDType::Q4_0).unwrap().is_none());
        assert!(quantize(&t, GgmlDType::Q4K).is_err());
        let t = Tensor::zeros((3, 512), candle_core::DType::F32, &Device::Cpu).unwrap();
        let q = quantize(&t, GgmlDType::Q6K).unwrap().unwrap();
        assert_eq!(q.dtype(), GgmlDType::Q6K);
        assert_eq!(q.shape().dims(), &[3, 512]);
    }
}
