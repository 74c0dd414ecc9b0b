//! Dense layers `y = x Wᵀ (+ b)` as one faer GEMM over all rows of the batch.
//!
//! Layout: `x` is `[rows, in]` row-major; weights stay as PyTorch stores them, `W` is
//! `[out, in]` row-major, which read column-major is `Wᵀ` as an `[in, out]` matrix, so the
//! product is `x · Wᵀ` with no transposed copy (faer packs either layout at the same speed,
//! measured at 7200 × 768 × {768, 3072}, and a transpose at upload cost ~1 s for MPNet's
//! 110 M weights). The output `[rows, out]` is row-major. The bias, when there is one, is
//! written into the output first and the GEMM accumulates onto it.
//!
//! Measured on 2 threads at 7200 × 384 × {384, 1152, 1536}: faer's parallel GEMM ≈ 150 GFLOP/s
//! into warm memory; splitting the rows into independent sequential GEMMs instead was ≈ 10–30%
//! slower. A fresh, never-touched output costs up to a third more (page faults), which is why
//! the CLI keeps freed memory for reuse (`simattr::alloc`).

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use super::rows_per_task;
use super::tensor::CpuTensor;
use crate::params::Linear;

/// `x Wᵀ + bias` (bias optional) over `rows` rows, with `layer.weight` stored `[out, in]`.
pub fn linear(x: &[f32], rows: usize, layer: &Linear<CpuTensor>, bias: Option<&[f32]>, threads: usize) -> Vec<f32> {
    let (n_in, n_out) = (layer.in_dim, layer.out_dim);
    let mut y = vec![0.0f32; rows * n_out];
    if y.is_empty() {
        return y;
    }
    let accum = match bias {
        Some(b) => {
            y.par_chunks_mut(rows_per_task(n_out) * n_out).for_each(|rows| {
                rows.chunks_exact_mut(n_out).for_each(|row| row.copy_from_slice(b));
            });
            Accum::Add
        }
        None => Accum::Replace,
    };
    gemm_into(&mut y, accum, x, MatRef::from_column_major_slice(&layer.weight, n_in, n_out), threads);
    y
}

/// `y (+)= x · w` as one faer GEMM on the current pool. faer splits it across the threads
/// without splitting the inner dimension, so the result does not depend on the thread count.
/// Its matrix-vector path (one row, or one output) does reduce across threads, so vector
/// products run on one thread (they are tiny).
fn gemm_into(y: &mut [f32], accum: Accum, x: &[f32], w: MatRef<'_, f32>, threads: usize) {
    let (n_in, n_out) = (w.nrows(), w.ncols());
    let rows = x.len() / n_in;
    let is_vector_product = rows == 1 || n_out == 1;
    let par = if threads > 1 && !is_vector_product { Par::rayon(threads) } else { Par::Seq };
    let (y, x) = (MatMut::from_row_major_slice_mut(y, rows, n_out), MatRef::from_row_major_slice(x, rows, n_in));
    matmul(y, accum, x, w, 1.0f32, par);
}

/// `x W` for a `layer` whose `W` is `[out, in]`: maps `[rows, out]` back to `[rows, in]`
/// (the transpose of `linear`: the stored `[out, in]` weight read row-major).
pub fn linear_transposed(x: &[f32], rows: usize, layer: &Linear<CpuTensor>, threads: usize) -> Vec<f32> {
    let (n_in, n_out) = (layer.in_dim, layer.out_dim);
    let mut y = vec![0.0f32; rows * n_in];
    if y.is_empty() {
        return y;
    }
    let weight = MatRef::from_row_major_slice(&layer.weight, n_out, n_in);
    gemm_into(&mut y, Accum::Replace, x, weight, threads);
    y
}
