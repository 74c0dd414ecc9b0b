//! LayerNorm and its JVP, optionally fused with the bias and residual sums that precede it in
//! a post-LN layer.
//!
//! Layout: rows of `width` scalars; tangent row `r` is a direction at primal row
//! `batch.primal_row_of(r)`. The primal pass forms `z + bias + residual` once per row (in
//! f64), its `μ`, `σ` and `x̂`, and writes `y` along with `x̂` and `1/σ`; the tangent pass
//! forms `u = dz + d_residual` and reuses its primal row's `x̂` and `1/σ`. Keeping the two
//! passes apart lets the tangent pass split its rows freely across threads however few steps
//! the batch has. Both split groups of whole rows across the pool; sums run in f64 over fixed
//! lanes, so no row depends on the split.

use rayon::prelude::*;

use super::rows_per_task;
use super::tensor::CpuTensor;
use crate::backend::{Batch, NormSaved};
use crate::params::Norm;

/// The input of a LayerNorm: one tensor, or the sum of two plus an optional row bias, read row
/// by row into f64 so the sum is never rounded to f32. The tensors are f32, or the f64 primal.
pub struct RowSum<'a, S = f32> {
    first: &'a [S],
    second: Option<&'a [S]>,
    bias: Option<&'a [f32]>,
}

impl<'a, S: Copy + Into<f64>> RowSum<'a, S> {
    pub fn one(x: &'a [S]) -> Self {
        RowSum { first: x, second: None, bias: None }
    }

    pub fn two(a: &'a [S], b: &'a [S], bias: Option<&'a [f32]>) -> Self {
        RowSum { first: a, second: Some(b), bias }
    }

    /// Row `row` of the sum into `out` (`[width]`).
    fn load(&self, row: usize, out: &mut [f64]) {
        let range = row * out.len()..(row + 1) * out.len();
        for (o, &x) in out.iter_mut().zip(&self.first[range.clone()]) {
            *o = x.into();
        }
        if let Some(bias) = self.bias {
            for (o, &b) in out.iter_mut().zip(bias) {
                *o += b as f64;
            }
        }
        if let Some(second) = self.second {
            for (o, &x) in out.iter_mut().zip(&second[range]) {
                *o += x.into();
            }
        }
    }
}

/// `Σ f(i, a_i)` over four fixed lanes: the same value on every thread, without one long
/// dependency chain.
pub(super) fn lane_sum(a: &[f64], f: impl Fn(usize, f64) -> f64) -> f64 {
    let mut acc = [0.0f64; 4];
    let full = a.len() / 4 * 4;
    for i in (0..full).step_by(4) {
        for (l, acc) in acc.iter_mut().enumerate() {
            *acc += f(i + l, a[i + l]);
        }
    }
    let tail: f64 = (full..a.len()).map(|i| f(i, a[i])).sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// `y = γ ⊙ x̂ + β` of the rows of `x` in f32, with `x̂` and `1/σ` saved for the JVP.
pub fn layer_norm(
    x: &RowSum,
    rows: usize,
    width: usize,
    norm: &Norm<CpuTensor>,
    eps: f64,
) -> (Vec<f32>, NormSaved<Vec<f32>>) {
    layer_norm_as(x, rows, width, norm, eps, |v| v as f32)
}

/// `layer_norm` of f32 or f64 rows, `y` stored as `store` rounds it (f32, or f64 for the f64
/// primal); `x̂` and `1/σ` are saved in f32 for the f32 tangent kernels either way.
pub fn layer_norm_as<S: Copy + Into<f64> + Sync, Y: Copy + Default + Send>(
    x: &RowSum<S>,
    rows: usize,
    width: usize,
    norm: &Norm<CpuTensor>,
    eps: f64,
    store: impl Fn(f64) -> Y + Sync,
) -> (Vec<Y>, NormSaved<Vec<f32>>) {
    let mut y = vec![Y::default(); rows * width];
    let mut normalized = vec![0.0f32; rows * width];
    let mut inv_std = vec![0.0f32; rows];
    if y.is_empty() {
        return (y, NormSaved { normalized, inv_std });
    }
    let group = rows_per_task(width);
    y.par_chunks_mut(group * width)
        .zip(normalized.par_chunks_mut(group * width))
        .zip(inv_std.par_chunks_mut(group))
        .enumerate()
        .for_each(|(g, ((y, xhat), rstd))| {
            let mut row = vec![0.0f64; width];
            let rows = y.chunks_exact_mut(width).zip(xhat.chunks_exact_mut(width)).zip(rstd);
            for (i, ((y, xhat), rstd)) in rows.enumerate() {
                x.load(g * group + i, &mut row);
                let mean = lane_sum(&row, |_, v| v) / width as f64;
                let var = lane_sum(&row, |_, v| (v - mean) * (v - mean)) / width as f64;
                let r = 1.0 / (var + eps).sqrt();
                *rstd = r as f32;
                for c in 0..width {
                    let h = (row[c] - mean) * r;
                    xhat[c] = h as f32;
                    y[c] = store(norm.gamma[c] as f64 * h + norm.beta[c] as f64);
                }
            }
        });
    (y, NormSaved { normalized, inv_std })
}

/// `ẏ = γ ⊙ (u − mean u − x̂ · mean(x̂ ⊙ u)) / σ` for every tangent row `u` of `dx`, with `x̂`
/// and `1/σ` of its primal row.
pub fn layer_norm_jvp<T: std::ops::Deref<Target = [f32]> + Sync>(
    saved: &NormSaved<T>,
    norm: &Norm<CpuTensor>,
    dx: &RowSum,
    batch: Batch,
    width: usize,
) -> Vec<f32> {
    let mut dy = vec![0.0f32; batch.tangent_rows() * width];
    if dy.is_empty() {
        return dy;
    }
    let group = rows_per_task(width);
    dy.par_chunks_mut(group * width).enumerate().for_each(|(g, dy)| {
        let mut u = vec![0.0f64; width];
        for (i, out) in dy.chunks_exact_mut(width).enumerate() {
            let r = g * group + i;
            let p = batch.primal_row_of(r);
            let xhat = &saved.normalized[p * width..(p + 1) * width];
            dx.load(r, &mut u);
            let mean_u = lane_sum(&u, |_, v| v) / width as f64;
            let mean_xu = lane_sum(&u, |c, v| xhat[c] as f64 * v) / width as f64;
            let rstd = saved.inv_std[p] as f64;
            for c in 0..width {
                let centred = u[c] - mean_u - xhat[c] as f64 * mean_xu;
                out[c] = (norm.gamma[c] as f64 * rstd * centred) as f32;
            }
        }
    });
    dy
}

/// The adjoint of `layer_norm_jvp`: `x̄ = (g − mean g − x̂ · mean(x̂ ⊙ g)) / σ` with
/// `g = γ ⊙ ȳ` for every cotangent row of `dy` (plus the same row of `d_residual`, when given),
/// with `x̂` and `1/σ` of its primal row.
pub fn layer_norm_vjp<T: std::ops::Deref<Target = [f32]> + Sync>(
    saved: &NormSaved<T>,
    norm: &Norm<CpuTensor>,
    dy: &[f32],
    d_residual: Option<&[f32]>,
    batch: Batch,
    width: usize,
) -> Vec<f32> {
    let mut dx = vec![0.0f32; dy.len()];
    if dx.is_empty() {
        return dx;
    }
    let group = rows_per_task(width);
    dx.par_chunks_mut(group * width).enumerate().for_each(|(g_index, dx)| {
        let mut g = vec![0.0f64; width];
        for (i, out) in dx.chunks_exact_mut(width).enumerate() {
            let r = g_index * group + i;
            let p = batch.primal_row_of(r);
            let xhat = &saved.normalized[p * width..(p + 1) * width];
            for ((g, &d), &gamma) in g.iter_mut().zip(&dy[r * width..(r + 1) * width]).zip(norm.gamma.iter()) {
                *g = gamma as f64 * d as f64;
            }
            if let Some(d_residual) = d_residual {
                let extra = &d_residual[r * width..(r + 1) * width];
                g.iter_mut()
                    .zip(extra)
                    .zip(norm.gamma.iter())
                    .for_each(|((g, &d), &gamma)| *g += gamma as f64 * d as f64);
            }
            let mean_g = lane_sum(&g, |_, v| v) / width as f64;
            let mean_xg = lane_sum(&g, |c, v| xhat[c] as f64 * v) / width as f64;
            let rstd = saved.inv_std[p] as f64;
            for c in 0..width {
                out[c] = (rstd * (g[c] - mean_g - xhat[c] as f64 * mean_xg)) as f32;
            }
        }
    });
    dx
}
