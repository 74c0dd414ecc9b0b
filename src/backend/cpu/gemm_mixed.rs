//! Dense layers of the f64 primal: `y = x Wᵀ (+ b)` with `x` in f64, the weight in f32 as the
//! model stores it, and every product and sum in f64.
//!
//! faer's GEMM wants both operands in one type. A whole-layer f64 copy of the weight, made per
//! call, cost a quarter of an explanation (MPNet's 7 M weights per layer: fresh pages and DRAM
//! writes); kept for the run, it doubles the weights' memory and still costs the one-off copy,
//! which a single explanation does not earn back (measured slower). So each task widens only
//! its own block of weight rows, small enough to stay in cache, and runs a sequential faer f64
//! GEMM on it; a hand-written AVX2 micro-kernel reading f32 weights directly was measured 25%
//! slower than this.
//!
//! Layout: `x` is `[rows, in]`, `W` is `[out, in]`, both row-major. Tasks take blocks of
//! outputs (a fixed size for the layer's width, not for the thread count, so results do not
//! depend on `--threads`) and write `yᵀ[block, rows]`, transposed back with the bias at the end.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

/// Weight rows per task: about 256 KB of widened weights.
fn outputs_per_task(n_in: usize) -> usize {
    (32768 / n_in.max(1)).clamp(4, 64)
}

/// `x Wᵀ (+ bias)` over `rows` rows; `weight` is `[n_out, n_in]`.
pub fn linear(x: &[f64], rows: usize, weight: &[f32], n_in: usize, n_out: usize, bias: Option<&[f32]>) -> Vec<f64> {
    let mut y_t = vec![0.0f64; n_out * rows];
    if y_t.is_empty() {
        return y_t;
    }
    let per_task = outputs_per_task(n_in);
    let x_t = MatRef::from_row_major_slice(x, rows, n_in).transpose();
    y_t.par_chunks_mut(per_task * rows).enumerate().for_each(|(task, block)| {
        let (first, outputs) = (task * per_task, block.len() / rows);
        let w: Vec<f64> = weight[first * n_in..(first + outputs) * n_in].iter().map(|&v| v as f64).collect();
        let w = MatRef::from_row_major_slice(&w, outputs, n_in);
        matmul(MatMut::from_row_major_slice_mut(block, outputs, rows), Accum::Replace, w, x_t, 1.0f64, Par::Seq);
    });
    let mut y = vec![0.0f64; rows * n_out];
    y.par_chunks_mut(n_out).enumerate().for_each(|(r, row)| {
        for (o, v) in row.iter_mut().enumerate() {
            *v = y_t[o * rows + r] + bias.map_or(0.0, |b| b[o] as f64);
        }
    });
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a plain f64 sum, at widths that leave partial task blocks.
    #[test]
    fn matches_a_plain_f64_sum() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        };
        for (rows, n_in, n_out) in [(1, 1, 1), (5, 7, 6), (3, 8, 4), (7, 33, 70), (10, 640, 137)] {
            let x: Vec<f64> = (0..rows * n_in).map(|_| next()).collect();
            let w: Vec<f32> = (0..n_out * n_in).map(|_| next() as f32).collect();
            let b: Vec<f32> = (0..n_out).map(|_| next() as f32).collect();
            for bias in [None, Some(&b[..])] {
                let y = linear(&x, rows, &w, n_in, n_out, bias);
                for r in 0..rows {
                    for o in 0..n_out {
                        let terms = (0..n_in).map(|i| x[r * n_in + i] * w[o * n_in + i] as f64);
                        let size: f64 = terms.clone().map(f64::abs).sum::<f64>() + 1.0;
                        let exact = terms.sum::<f64>() + bias.map_or(0.0, |b| b[o] as f64);
                        // f64 rounding of an n_in-term sum; f32 accumulation would be ~1e-7.
                        let err = (y[r * n_out + o] - exact).abs();
                        assert!(err <= 1e-14 * size, "{rows}x{n_in}x{n_out} [{r},{o}]: {err:e}");
                    }
                }
            }
        }
    }
}
