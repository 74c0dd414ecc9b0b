//! The primal ops in f64 (see `tensor.rs` for why): embeddings, dense layers, GELU, attention
//! and pooling (LayerNorm is `norm::layer_norm_as` over f64 rows) of primal states `[seqs, tokens, width]` stored in f64, with
//! f32 parameters widened as they are read.
//!
//! Layouts are those of the f32 kernels (`qkv` rows `[q | k | v]`, probabilities
//! `[seqs, heads, T, T]`). The dense layers are `gemm_mixed` (f64 products of f32 weights). Everything else splits whole rows or sequences across the pool, and
//! computes each row the same way on any thread.

use rayon::prelude::*;

use super::gemm_mixed;
use super::norm::lane_sum;
use super::tensor::CpuTensor;
use crate::backend::{Heads, ScoreMods};
use crate::params::Linear;

/// `out[r] = table[ids[r]]`, widened to f64; `table` is `[vocab, width]`.
pub fn gather_rows<S: Copy + Into<f64> + Sync>(table: &[S], width: usize, ids: &[u32]) -> Vec<f64> {
    let mut out = vec![0.0; ids.len() * width];
    if width == 0 {
        return out;
    }
    out.par_chunks_mut(width).zip(ids).for_each(|(row, &id)| {
        let id = id as usize;
        for (o, &v) in row.iter_mut().zip(&table[id * width..(id + 1) * width]) {
            *o = v.into();
        }
    });
    out
}

/// `f(a_i, b_i)` for equal-length `a` and `b`.
pub fn zip_map(a: &[f64], b: &[f64], f: impl Fn(f64, f64) -> f64 + Sync) -> Vec<f64> {
    a.par_iter().zip(b).map(|(&x, &y)| f(x, y)).collect()
}

/// `x + b` for every row of `x` (`[rows, width]`, `b` is `[width]`).
pub fn add_bias(x: &[f64], bias: &[f32]) -> Vec<f64> {
    let width = bias.len();
    let mut out = x.to_vec();
    if width > 0 {
        out.par_chunks_mut(width).for_each(|row| row.iter_mut().zip(bias).for_each(|(o, &b)| *o += b as f64));
    }
    out
}

/// Row `k` of the result is `origin + alphas[k] · delta`.
pub fn interpolate(origin: &[f64], delta: &[f64], alphas: &[f64]) -> Vec<f64> {
    let len = origin.len();
    let mut out = vec![0.0; alphas.len() * len];
    if len == 0 {
        return out;
    }
    out.par_chunks_mut(len).zip(alphas).for_each(|(row, &alpha)| {
        for ((o, &x), &d) in row.iter_mut().zip(origin).zip(delta) {
            *o = x + alpha * d;
        }
    });
    out
}

/// `x Wᵀ (+ b)` over `rows` rows in f64, `layer.weight` stored `[out, in]` in f32.
pub fn linear(x: &[f64], rows: usize, layer: &Linear<CpuTensor>, with_bias: bool) -> Vec<f64> {
    let bias = with_bias.then_some(&layer.bias[..]);
    gemm_mixed::linear(x, rows, &layer.weight, layer.in_dim, layer.out_dim, bias)
}

/// Exact (erf) GELU of `x + bias` (`bias` one value per column of the rows, optional).
pub fn gelu(x: &[f64], bias: Option<&[f32]>) -> Vec<f64> {
    // Rows of the bias's width, or any blocks without one.
    let width = bias.map_or(4096, |b| b.len());
    let mut out = x.to_vec();
    if width == 0 {
        return out;
    }
    out.par_chunks_mut(width).for_each(|row| {
        for (c, v) in row.iter_mut().enumerate() {
            let z = *v + bias.map_or(0.0, |b| b[c] as f64);
            *v = 0.5 * z * (1.0 + libm::erf(z * std::f64::consts::FRAC_1_SQRT_2));
        }
    });
    out
}

/// `a · b` over four fixed lanes, as the LayerNorm sums.
fn dot(a: &[f64], b: &[f64]) -> f64 {
    lane_sum(a, |i, x| x * b[i])
}

/// The context `[seqs, T, width]` and probabilities `[seqs, heads, T, T]` of `seqs` sequences,
/// in f64; masked keys get probability exactly 0, a row with every key masked is all zero.
pub fn attention(
    qkv: &[f64],
    seqs: usize,
    tokens: usize,
    heads: Heads,
    scores: ScoreMods<'_, CpuTensor>,
) -> (Vec<f64>, Vec<f64>) {
    let (t, w, d) = (tokens, heads.width(), heads.dim);
    let scale = heads.scale();
    let mut ctx = vec![0.0f64; seqs * t * w];
    let mut probs = vec![0.0f64; seqs * heads.count * t * t];
    if ctx.is_empty() || t == 0 {
        return (ctx, probs);
    }
    let row = |s: usize, j: usize, part: usize, h: usize| &qkv[(s * t + j) * 3 * w + part * w + h * d..][..d];
    ctx.par_chunks_mut(t * w).zip(probs.par_chunks_mut(heads.count * t * t)).enumerate().for_each(
        |(s, (ctx_seq, probs_seq))| {
            let attends = |j: usize| scores.key_mask.is_none_or(|m| m[s * t + j] != 0.0);
            for (h, p_head) in probs_seq.chunks_exact_mut(t * t).enumerate() {
                for (i, p_row) in p_head.chunks_exact_mut(t).enumerate() {
                    let q = row(s, i, 0, h);
                    let mut max = f64::NEG_INFINITY;
                    for (j, p) in p_row.iter_mut().enumerate() {
                        let bias = scores.bias.map_or(0.0, |b| b[(h * t + i) * t + j] as f64);
                        *p = if attends(j) { dot(q, row(s, j, 1, h)) * scale + bias } else { f64::NEG_INFINITY };
                        max = max.max(*p);
                    }
                    if max == f64::NEG_INFINITY {
                        p_row.fill(0.0);
                        continue;
                    }
                    let mut total = 0.0;
                    for p in p_row.iter_mut() {
                        *p = (*p - max).exp();
                        total += *p;
                    }
                    let out = &mut ctx_seq[i * w + h * d..][..d];
                    for (j, p) in p_row.iter_mut().enumerate() {
                        *p /= total;
                        out.iter_mut().zip(row(s, j, 2, h)).for_each(|(o, &v)| *o += *p * v);
                    }
                }
            }
        },
    );
    (ctx, probs)
}

pub fn mean_pool(x: &[f64], seqs: usize, tokens: usize, width: usize) -> Vec<f64> {
    let mut out = vec![0.0f64; seqs * width];
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(width).enumerate().for_each(|(s, out)| {
        for row in x[s * tokens * width..(s + 1) * tokens * width].chunks_exact(width) {
            out.iter_mut().zip(row).for_each(|(o, &v)| *o += v);
        }
        out.iter_mut().for_each(|o| *o /= tokens as f64);
    });
    out
}

/// Per feature, the largest value over the tokens (the first on a tie, as the f32 kernel).
pub fn max_pool(x: &[f64], seqs: usize, tokens: usize, width: usize) -> Vec<f64> {
    let mut out = vec![f64::NEG_INFINITY; seqs * width];
    if width == 0 {
        return out;
    }
    out.par_chunks_mut(width).enumerate().for_each(|(s, out)| {
        for row in x[s * tokens * width..(s + 1) * tokens * width].chunks_exact(width) {
            out.iter_mut().zip(row).for_each(|(o, &v)| *o = if v > *o { v } else { *o });
        }
    });
    out
}
