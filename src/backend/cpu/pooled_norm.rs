//! The last layer's output block when only the token mean of its tangents is wanted
//! (docs/design.md §3, "Structure to exploit"): `y = LN(x Wᵀ + b + h)` with tangents
//! `ż_r = ẋ_r Wᵀ + ḣ_r`, pooled as `mean_t ẏ`.
//!
//! `ẏ_r = γ ⊙ (ż_r − mean(ż_r) − x̂_p mean(x̂_p ⊙ ż_r)) / σ_p`, where `x̂_p` and `σ_p` belong
//! to the tangent row's primal row `p` and not to the tangent. Summing over the tokens of a
//! tangent sequence first,
//!
//! ```text
//!   T · mean_t ẏ = γ ⊙ [ (Σ_r ẋ_r/σ_p) Wᵀ + Σ_r (ḣ_r − mean(ż_r) − x̂_p mean(x̂_p ⊙ ż_r)) / σ_p ]
//!   mean(ż_r)        = (ẋ_r · colsum(W) + Σ ḣ_r) / width
//!   mean(x̂_p ⊙ ż_r) = (ẋ_r · (x̂_p W)  + ḣ_r · x̂_p) / width
//! ```
//!
//! so the tangent GEMM runs on one row per tangent sequence instead of one per token, and
//! `x̂_p W` is one GEMM over the primal rows. Each tangent sequence is reduced by one thread,
//! in f64, so the result does not depend on the thread count.

use std::ops::Range;

use rayon::prelude::*;

use super::norm::{layer_norm, RowSum};
use super::tensor::CpuTensor;
use super::{gemm, rows_per_task};
use crate::backend::{Batch, NormSaved, ResidualNorm};
use crate::params::Linear;

#[allow(clippy::too_many_arguments)]
pub fn pooled_linear_residual_norm_jvp(
    x: &[f32],
    dx: &[f32],
    residual: &[f32],
    d_residual: &[f32],
    layer: &Linear<CpuTensor>,
    batch: Batch,
    ln: ResidualNorm<'_, CpuTensor>,
    threads: usize,
) -> Vec<f32> {
    // The primal: y's statistics.
    let z = gemm::linear(x, batch.primal_rows(), layer, Some(&layer.bias), threads);
    let (_, saved) = layer_norm(&RowSum::two(&z, residual, None), batch.primal_rows(), ln.width, ln.norm, ln.eps);
    drop(z);
    pooled_jvp_at(&saved, dx, d_residual, layer, batch, ln, threads)
}

/// The same, given the statistics (`x̂`, `1/σ`) of the primal output rows, as the f64 primal
/// path computes them.
pub fn pooled_jvp_at(
    saved: &NormSaved<Vec<f32>>,
    dx: &[f32],
    d_residual: &[f32],
    layer: &Linear<CpuTensor>,
    batch: Batch,
    ln: ResidualNorm<'_, CpuTensor>,
    threads: usize,
) -> Vec<f32> {
    let (inner, width, t) = (layer.in_dim, layer.out_dim, batch.tokens);
    let seqs = batch.tangent_seqs();
    if seqs == 0 || width == 0 || t == 0 {
        return vec![0.0; seqs * width];
    }

    // x̂_p W for the per-row means.
    let xhat_w = gemm::linear_transposed(&saved.normalized, batch.primal_rows(), layer, threads);
    // colsum(W)[k] = Σ_c W[c, k], over the rows of the stored `[out, in]` weight.
    let mut colsum = vec![0.0f64; inner];
    for row in layer.weight.chunks_exact(inner) {
        colsum.iter_mut().zip(row).for_each(|(sum, &v)| *sum += v as f64);
    }

    // Per tangent sequence: Σ_r ẋ_r/σ_p (for the GEMM) and the rest of the bracket.
    let mut scaled_dx = vec![0.0f32; seqs * inner];
    let mut rest = vec![0.0f32; seqs * width];
    scaled_dx.par_chunks_mut(inner).zip(rest.par_chunks_mut(width)).enumerate().for_each(|(seq, (g_out, rest_out))| {
        let step = seq / batch.tangents;
        let (mut g, mut r) = (vec![0.0f64; inner], vec![0.0f64; width]);
        for token in 0..t {
            let (row, p) = (seq * t + token, step * t + token);
            let dx_row = &dx[row * inner..(row + 1) * inner];
            let dh = &d_residual[row * width..(row + 1) * width];
            let xhat = &saved.normalized[p * width..(p + 1) * width];
            let xw = &xhat_w[p * inner..(p + 1) * inner];
            let rstd = saved.inv_std[p] as f64;
            let (mut dx_sum, mut dx_xw) = (0.0f64, 0.0f64);
            for ((g, &v), (&c, &u)) in g.iter_mut().zip(dx_row).zip(colsum.iter().zip(xw)) {
                let v = v as f64;
                dx_sum += v * c;
                dx_xw += v * u as f64;
                *g += rstd * v;
            }
            let (mut dh_sum, mut dh_x) = (0.0f64, 0.0f64);
            for (&v, &xh) in dh.iter().zip(xhat) {
                dh_sum += v as f64;
                dh_x += v as f64 * xh as f64;
            }
            let mean_z = (dx_sum + dh_sum) / width as f64;
            let mean_xz = (dx_xw + dh_x) / width as f64;
            for ((r, &v), &xh) in r.iter_mut().zip(dh).zip(xhat) {
                *r += rstd * (v as f64 - mean_z - xh as f64 * mean_xz);
            }
        }
        for (o, v) in g_out.iter_mut().zip(&g) {
            *o = *v as f32;
        }
        for (o, v) in rest_out.iter_mut().zip(&r) {
            *o = *v as f32;
        }
    });
    let mut pooled = gemm::linear(&scaled_dx, seqs, layer, None, threads);
    drop(scaled_dx);
    pooled.par_chunks_mut(width).zip(rest.par_chunks(width)).for_each(|(out, rest)| {
        for ((o, &r), &gamma) in out.iter_mut().zip(rest).zip(ln.norm.gamma.iter()) {
            *o = (gamma as f64 * (*o as f64 + r as f64) / t as f64) as f32;
        }
    });
    pooled
}

/// Reverse mode's counterpart at the top of the stack: the unit cotangents `e_d` of the pooled
/// output (`d ∈ dims`, every step) through mean pooling, `y = LN(z)` and the GEMM
/// `z = a Wᵀ + …` beneath it. Each token row of `y` receives `e_d / T`, so with `g = γ_d e_d / T`
///
/// ```text
///   z̄_r = (γ_d / (T σ_p)) (e_d − 1/width − x̂_p[d] x̂_p / width)
///   ā_r = z̄_r W = (γ_d / (T σ_p)) (W[d, :] − colmean(W) − x̂_p[d] (x̂_p W) / width)
/// ```
///
/// for cotangent row `r` at primal row `p`: `ā` takes one GEMM over the primal rows (`x̂_p W`)
/// instead of one over the cotangent rows. Returns `(z̄, ā)`.
pub fn mean_pooled_norm_linear_vjp(
    saved: &NormSaved<CpuTensor>,
    gamma: &[f32],
    layer: &Linear<CpuTensor>,
    dims: Range<usize>,
    batch: Batch,
    threads: usize,
) -> (Vec<f32>, Vec<f32>) {
    let (inner, width, t) = (layer.in_dim, layer.out_dim, batch.tokens);
    let primal_rows = batch.primal_rows();
    let rows = batch.tangent_rows();
    let (mut d_sum, mut d_in) = (vec![0.0f32; rows * width], vec![0.0f32; rows * inner]);
    if rows == 0 || width == 0 {
        return (d_sum, d_in);
    }
    // x̂_p W for every primal row, and colmean(W) as the product of one more row, of 1/width.
    let mut xhat_rows = Vec::with_capacity((primal_rows + 1) * width);
    xhat_rows.extend_from_slice(&saved.normalized);
    xhat_rows.resize((primal_rows + 1) * width, 1.0 / width as f32);
    let xhat_w = gemm::linear_transposed(&xhat_rows, primal_rows + 1, layer, threads);
    let col_mean = &xhat_w[primal_rows * inner..];

    let per_task = rows_per_task(width + inner);
    d_sum.par_chunks_mut(per_task * width).zip(d_in.par_chunks_mut(per_task * inner)).enumerate().for_each(
        |(task, (sum_rows, in_rows))| {
            for (i, (sum_row, in_row)) in
                sum_rows.chunks_exact_mut(width).zip(in_rows.chunks_exact_mut(inner)).enumerate()
            {
                let r = task * per_task + i;
                let (p, d) = (batch.primal_row_of(r), dims.start + (r / t) % batch.tangents);
                let xhat = &saved.normalized[p * width..(p + 1) * width];
                let scale = gamma[d] as f64 * saved.inv_std[p] as f64 / t as f64;
                let xhat_d = xhat[d] as f64 / width as f64;
                for (out, &x) in sum_row.iter_mut().zip(xhat) {
                    *out = (scale * (-1.0 / width as f64 - xhat_d * x as f64)) as f32;
                }
                sum_row[d] = (scale * (1.0 - 1.0 / width as f64 - xhat_d * xhat[d] as f64)) as f32;
                let w_d = &layer.weight[d * inner..(d + 1) * inner];
                let xw = &xhat_w[p * inner..(p + 1) * inner];
                for (((out, &w), &m), &u) in in_row.iter_mut().zip(w_d).zip(col_mean).zip(xw) {
                    *out = (scale * (w as f64 - m as f64 - xhat_d * u as f64)) as f32;
                }
            }
        },
    );
    (d_sum, d_in)
}
