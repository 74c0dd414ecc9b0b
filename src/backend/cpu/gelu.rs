//! Exact (erf) GELU and its JVP, optionally fused with the bias add that precedes it.
//!
//! Layout: rows of `width` scalars, tangent row `r` at primal row `batch.primal_row_of(r)`.
//! The primal pass forms `z + b` once per element (in f64), and writes `gelu(z + b)` and the
//! slope `gelu'(z + b)`; the tangent pass is then one multiply per tangent element, so erf and
//! exp run once per primal element rather than once per tangent. Both passes split groups of
//! whole rows across the pool.

use std::f64::consts::{FRAC_1_SQRT_2, PI};

use rayon::prelude::*;

use super::{check_len, rows_per_task};
use crate::backend::Batch;

/// `(gelu(x), gelu'(x))`. erf and exp run in single precision (`erff`, `expf`: about 1 ulp,
/// twice as fast as their f64 versions), the products in f64.
fn gelu_and_slope(x: f64) -> (f64, f64) {
    let cdf = 0.5 * (1.0 + libm::erff((x * FRAC_1_SQRT_2) as f32) as f64);
    let pdf = ((-0.5 * x * x) as f32).exp() as f64 / (2.0 * PI).sqrt();
    (x * cdf, cdf + x * pdf)
}

/// Elements per parallel task: whole rows of the bias, so `i % width` is the feature index.
fn chunk_len(bias: Option<&[f32]>) -> (usize, usize) {
    let width = bias.map_or(1, <[f32]>::len).max(1);
    (width, rows_per_task(width) * width)
}

/// `x + bias` of element `i` of a chunk of whole rows, in f64.
fn pre(x: f32, bias: Option<&[f32]>, width: usize, i: usize) -> f64 {
    x as f64 + bias.map_or(0.0, |b| b[i % width] as f64)
}

/// `gelu(x + bias)`, `bias` repeating every row (none: plain `gelu(x)`).
pub fn gelu(x: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (width, chunk) = chunk_len(bias);
    let mut y = vec![0.0f32; x.len()];
    y.par_chunks_mut(chunk).zip(x.par_chunks(chunk)).for_each(|(y, x)| {
        for (i, (y, &x)) in y.iter_mut().zip(x).enumerate() {
            *y = gelu_and_slope(pre(x, bias, width, i)).0 as f32;
        }
    });
    y
}

/// `(gelu(x + bias), gelu'(x + bias) ⊙ dx)` for the primal rows of `x` and the tangent rows of `dx`.
pub fn gelu_jvp(x: &[f32], bias: Option<&[f32]>, dx: &[f32], batch: Batch, width: usize) -> (Vec<f32>, Vec<f32>) {
    check_len("gelu primal", x.len(), batch.primal_rows() * width);
    check_len("gelu tangents", dx.len(), batch.tangent_rows() * width);
    let (bias_width, chunk) = chunk_len(bias);
    let mut y = vec![0.0f32; x.len()];
    let mut slope = vec![0.0f32; x.len()];
    y.par_chunks_mut(chunk).zip(slope.par_chunks_mut(chunk)).zip(x.par_chunks(chunk)).for_each(|((y, s), x)| {
        for (i, ((y, s), &x)) in y.iter_mut().zip(s.iter_mut()).zip(x).enumerate() {
            let (value, derivative) = gelu_and_slope(pre(x, bias, bias_width, i));
            (*y, *s) = (value as f32, derivative as f32);
        }
    });
    let mut dy = vec![0.0f32; dx.len()];
    if dy.is_empty() {
        return (y, dy);
    }
    let group = rows_per_task(width);
    dy.par_chunks_mut(group * width).zip(dx.par_chunks(group * width)).enumerate().for_each(|(g, (dy, dx))| {
        for (i, (out, d)) in dy.chunks_exact_mut(width).zip(dx.chunks_exact(width)).enumerate() {
            let p = batch.primal_row_of(g * group + i);
            for ((o, &d), &s) in out.iter_mut().zip(d).zip(&slope[p * width..(p + 1) * width]) {
                *o = s * d;
            }
        }
    });
    (y, dy)
}
