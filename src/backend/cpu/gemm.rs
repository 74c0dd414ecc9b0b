//! Dense layers `y = x Wᵀ (+ b)` as faer GEMMs over the rows of the batch.
//!
//! Layout: `x` is `[rows, in]` row-major; weights are stored transposed at upload, `Wt` is
//! `[in, out]` row-major, so the product is the plain row-major `x · Wt` and the output
//! `[rows, out]` is row-major too. The bias, when there is one, is written into the output
//! first and the GEMM accumulates onto it. Threads split the rows into blocks, each one
//! sequential GEMM (`Par::Seq`): no block waits for another, the inner dimension is never split,
//! and a row's result does not depend on its block, so results do not depend on the thread
//! count. (faer's own `Par::rayon` GEMM was ≈ 10% slower here: its threads meet at a barrier
//! at every packing step.)

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use super::{check_len, rows_per_task};
use crate::params::Linear;

/// `[out, in]` row-major (PyTorch's layout) → `[in, out]` row-major.
pub fn transpose(w: &[f32], out_dim: usize, in_dim: usize) -> Vec<f32> {
    let mut t = vec![0.0; w.len()];
    if t.is_empty() {
        return t;
    }
    t.par_chunks_mut(out_dim).enumerate().for_each(|(i, row)| {
        for (o, slot) in row.iter_mut().enumerate() {
            *slot = w[o * in_dim + i];
        }
    });
    t
}

/// `x Wᵀ + bias` (bias optional) over `rows` rows, with `layer.weight` stored `[in, out]`.
pub fn linear(x: &[f32], rows: usize, layer: &Linear<Vec<f32>>, bias: Option<&[f32]>, threads: usize) -> Vec<f32> {
    let (n_in, n_out) = (layer.in_dim, layer.out_dim);
    check_len("linear input", x.len(), rows * n_in);
    check_len("linear weight", layer.weight.len(), n_in * n_out);
    let mut y = vec![0.0f32; rows * n_out];
    if y.is_empty() {
        return y;
    }
    let accum = match bias {
        Some(b) => {
            check_len("linear bias", b.len(), n_out);
            y.par_chunks_mut(rows_per_task(n_out) * n_out).for_each(|rows| {
                rows.chunks_exact_mut(n_out).for_each(|row| row.copy_from_slice(b));
            });
            Accum::Add
        }
        None => Accum::Replace,
    };
    row_blocks(&mut y, accum, x, MatRef::from_row_major_slice(&layer.weight, n_in, n_out), threads);
    y
}

/// `y (+)= x · w` over row blocks, one sequential GEMM each, spread over the pool: no block
/// waits for another, and each packs the (small) weight itself.
fn row_blocks(y: &mut [f32], accum: Accum, x: &[f32], w: MatRef<'_, f32>, threads: usize) {
    let (n_in, n_out) = (w.nrows(), w.ncols());
    let block = row_block(x.len() / n_in, threads);
    y.par_chunks_mut(block * n_out).zip(x.par_chunks(block * n_in)).for_each(|(y, x)| {
        let rows = x.len() / n_in;
        let (y, x) = (MatMut::from_row_major_slice_mut(y, rows, n_out), MatRef::from_row_major_slice(x, rows, n_in));
        matmul(y, accum, x, w, 1.0f32, Par::Seq);
    });
}

/// Rows per GEMM block: about two blocks per thread (so a slow thread can be balanced), a
/// multiple of the 24-row microkernel, and no smaller than 96 rows.
fn row_block(rows: usize, threads: usize) -> usize {
    let per_block = rows.div_ceil(2 * threads.max(1));
    per_block.div_ceil(24).max(4) * 24
}

/// `x W` for a `layer` whose `W` is `[out, in]`: maps `[rows, out]` back to `[rows, in]`
/// (the transpose of `linear`, reading the stored `[in, out]` weight as its transpose).
pub fn linear_transposed(x: &[f32], rows: usize, layer: &Linear<Vec<f32>>, threads: usize) -> Vec<f32> {
    let (n_in, n_out) = (layer.in_dim, layer.out_dim);
    check_len("linear_transposed input", x.len(), rows * n_out);
    check_len("linear_transposed weight", layer.weight.len(), n_in * n_out);
    let mut y = vec![0.0f32; rows * n_in];
    if y.is_empty() {
        return y;
    }
    let weight = MatRef::from_row_major_slice(&layer.weight, n_in, n_out).transpose();
    row_blocks(&mut y, Accum::Replace, x, weight, threads);
    y
}
