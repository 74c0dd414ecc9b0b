//! Multi-head attention `softmax(QKᵀ/√d + bias, masked) V` and its JVP
//! `Ṡ = (Q̇Kᵀ + QK̇ᵀ)/√d`, `Ṗ = P ⊙ (Ṡ − rowsum(P ⊙ Ṡ))`, `Ȯ = ṖV + PV̇`.
//!
//! Layout: `qkv` rows are `[q | k | v]` (`3·width`), head `h` owning features `h·d..(h+1)·d`
//! of each third, so each token's q, k or v of one head is a contiguous run of `d` scalars
//! that the products read in place: scores are dot products over the head dimension (eight
//! fixed f32 lanes, so they vectorise without reordering a sum), and `PV`, `ṖV + PV̇` are
//! axpys of value rows into the output row. Probabilities are `[seqs, heads, T, T]`, the
//! context `[seqs, T, width]`. Softmax sums and `rowsum(P ⊙ Ṡ)` run in f64.
//!
//! Threads: the primal splits its sequences (steps), the JVP its tangent sequences; each
//! sequence is computed by one thread, with the probabilities of its step computed once by the
//! primal and read by all of that step's tangents.

use std::ops::Range;

use faer::linalg::matmul::matmul;
use faer::reborrow::ReborrowMut;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use super::tensor::CpuTensor;
use crate::backend::{Batch, Heads, ScoreMods};

/// `y += a · x`.
#[inline]
pub(super) fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// `a · b` over eight fixed lanes, which the compiler keeps in SIMD registers (a plain running
/// sum would have to stay scalar to keep its order).
#[inline]
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8.remainder().iter().zip(b8.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a8.zip(b8) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Head `h`'s `d` features of part `part` (0 = q, 1 = k, 2 = v) in every row of a sequence's
/// `[T, 3·width]` block; `row(j)` is token `j`'s slice.
#[derive(Clone, Copy)]
pub(super) struct Part<'a> {
    rows: &'a [f32],
    offset: usize,
    dim: usize,
    stride: usize,
}

impl<'a> Part<'a> {
    pub(super) fn new(rows: &'a [f32], part: usize, h: usize, heads: Heads) -> Self {
        let w = heads.width();
        Part { rows, offset: part * w + h * heads.dim, dim: heads.dim, stride: 3 * w }
    }

    #[inline]
    pub(super) fn row(&self, j: usize) -> &'a [f32] {
        &self.rows[j * self.stride + self.offset..][..self.dim]
    }
}

/// One row of `Ṗ = P ⊙ (Ṡ − rowsum(P ⊙ Ṡ)) / √d` from the unscaled score tangents `ds`, the
/// sum in f64.
#[inline]
fn probability_tangent(p_row: &[f32], ds: &[f32], scale: f64, dp: &mut [f32]) {
    let mean: f64 = p_row.iter().zip(ds).map(|(&p, &s)| p as f64 * s as f64).sum();
    for ((dp, &p), &s) in dp.iter_mut().zip(p_row).zip(ds) {
        *dp = (p as f64 * (s as f64 - mean) * scale) as f32;
    }
}

/// Turns raw scores `q·k` into probabilities in place: scale, add the bias row, drop masked
/// keys (probability exactly 0), softmax in f64. A row with every key masked becomes all zero.
fn softmax_row(row: &mut [f32], scale: f64, bias: Option<&[f32]>, mask: Option<&[f32]>, buf: &mut [f64]) {
    let mut max = f64::NEG_INFINITY;
    for (j, (b, &s)) in buf.iter_mut().zip(row.iter()).enumerate() {
        let attends = mask.is_none_or(|m| m[j] != 0.0);
        *b = if attends { s as f64 * scale + bias.map_or(0.0, |b| b[j] as f64) } else { f64::NEG_INFINITY };
        max = max.max(*b);
    }
    if max == f64::NEG_INFINITY {
        row.fill(0.0);
        return;
    }
    let mut total = 0.0;
    for b in buf.iter_mut() {
        *b = (*b - max).exp();
        total += *b;
    }
    for (p, &e) in row.iter_mut().zip(buf.iter()) {
        *p = (e / total) as f32;
    }
}

/// The context `[seqs, T, width]` and probabilities `[seqs, heads, T, T]` of `seqs` sequences.
/// With `keep` (a dropout mask laid out as the probabilities, training's) the context is
/// `(P ⊙ keep) V`; the probabilities returned are `P`.
pub fn attention(
    qkv: &[f32],
    seqs: usize,
    tokens: usize,
    heads: Heads,
    scores: ScoreMods<'_, CpuTensor>,
    keep: Option<&[f32]>,
) -> (Vec<f32>, Vec<f32>) {
    let (t, w, d) = (tokens, heads.width(), heads.dim);
    let scale = heads.scale();
    let mut ctx = vec![0.0f32; seqs * t * w];
    let mut probs = vec![0.0f32; seqs * heads.count * t * t];
    if ctx.is_empty() || t == 0 {
        return (ctx, probs);
    }
    ctx.par_chunks_mut(t * w).zip(probs.par_chunks_mut(heads.count * t * t)).enumerate().for_each(
        |(s, (ctx_seq, probs_seq))| {
            let qkv_seq = &qkv[s * t * 3 * w..(s + 1) * t * 3 * w];
            let mask = scores.key_mask.map(|m| &m[s * t..(s + 1) * t]);
            let mut buf = vec![0.0f64; t];
            for (h, p_head) in probs_seq.chunks_exact_mut(t * t).enumerate() {
                let [q, k, v] = [0, 1, 2].map(|part| Part::new(qkv_seq, part, h, heads));
                for (i, p_row) in p_head.chunks_exact_mut(t).enumerate() {
                    // A masked key's score is never read (its probability is 0), so padding
                    // costs no products.
                    for (j, s) in p_row.iter_mut().enumerate() {
                        if mask.is_none_or(|m| m[j] != 0.0) {
                            *s = dot(q.row(i), k.row(j));
                        }
                    }
                    let bias = scores.bias.map(|b| &b[(h * t + i) * t..(h * t + i + 1) * t]);
                    softmax_row(p_row, scale, bias, mask, &mut buf);
                    let out = &mut ctx_seq[i * w + h * d..i * w + (h + 1) * d];
                    let keep_row = keep.map(|k| &k[((s * heads.count + h) * t + i) * t..][..t]);
                    for (j, &p) in p_row.iter().enumerate() {
                        let p = keep_row.map_or(p, |k| p * k[j]);
                        if p != 0.0 {
                            axpy(out, p, v.row(j));
                        }
                    }
                }
            }
        },
    );
    (ctx, probs)
}

/// `Ȯ` `[steps, tangents, T, width]` for the tangents `dqkv` at the primal `qkv`, reading each
/// step's probabilities `probs` (`[steps, heads, T, T]`).
pub fn attention_jvp(qkv: &[f32], probs: &[f32], dqkv: &[f32], batch: Batch, heads: Heads) -> Vec<f32> {
    each_sequence(qkv, probs, dqkv, heads.width(), batch, heads, [sequence_jvp_by_rows, sequence_jvp_by_gemm])
}

/// One sequence's JVP or VJP: `(qkv, probs, input, output, tokens, heads, 1/√d)`.
type SequenceKernel = fn(&[f32], &[f32], &[f32], &mut [f32], usize, Heads, f64);

/// Runs `kernels` (by rows below `GEMM_TOKENS` tokens, as GEMMs from there) on every tangent
/// or cotangent sequence of `input` (rows of `3·width` for tangents, `width` for cotangents),
/// one thread per sequence, each at its step's primal `qkv` and `probs`. The output rows are
/// the other width.
fn each_sequence(
    qkv: &[f32],
    probs: &[f32],
    input: &[f32],
    output_width: usize,
    batch: Batch,
    heads: Heads,
    kernels: [SequenceKernel; 2],
) -> Vec<f32> {
    let (t, w) = (batch.tokens, heads.width());
    let scale = heads.scale();
    let mut output = vec![0.0f32; batch.tangent_rows() * output_width];
    if output.is_empty() || t == 0 {
        return output;
    }
    let input_width = input.len() / batch.tangent_rows();
    let kernel = if t >= GEMM_TOKENS { kernels[1] } else { kernels[0] };
    output.par_chunks_mut(t * output_width).enumerate().for_each(|(seq, out_seq)| {
        let s = seq / batch.tangents;
        let qkv_seq = &qkv[s * t * 3 * w..(s + 1) * t * 3 * w];
        let input_seq = &input[seq * t * input_width..(seq + 1) * t * input_width];
        let probs_seq = &probs[s * heads.count * t * t..(s + 1) * heads.count * t * t];
        kernel(qkv_seq, probs_seq, input_seq, out_seq, t, heads, scale);
    });
    output
}

/// The dense JVP of one tangent sequence, head by head and row by row:
/// `Ṡ_i = Q̇ᵢ Kᵀ + Qᵢ K̇ᵀ`, then `Ṗ_i`, then `Ȯ_i = Ṗᵢ V + Pᵢ V̇`.
fn sequence_jvp_by_rows(
    qkv_seq: &[f32],
    probs_seq: &[f32],
    dqkv_seq: &[f32],
    out_seq: &mut [f32],
    t: usize,
    heads: Heads,
    scale: f64,
) {
    let (w, d) = (heads.width(), heads.dim);
    let (mut ds, mut dp) = (vec![0.0f32; t], vec![0.0f32; t]);
    for h in 0..heads.count {
        let [q, k, v] = [0, 1, 2].map(|part| Part::new(qkv_seq, part, h, heads));
        let [dq, dk, dv] = [0, 1, 2].map(|part| Part::new(dqkv_seq, part, h, heads));
        let p_head = &probs_seq[h * t * t..(h + 1) * t * t];
        for (i, p_row) in p_head.chunks_exact(t).enumerate() {
            // Ṡ row i, unscaled.
            for (j, ds) in ds.iter_mut().enumerate() {
                *ds = dot(dq.row(i), k.row(j)) + dot(q.row(i), dk.row(j));
            }
            probability_tangent(p_row, &ds, scale, &mut dp);
            let out = &mut out_seq[i * w + h * d..i * w + (h + 1) * d];
            for j in 0..t {
                axpy(out, dp[j], v.row(j));
                axpy(out, p_row[j], dv.row(j));
            }
        }
    }
}

/// From this many tokens on, the dense JVP runs its four per-head products as GEMMs; below it,
/// the per-row loops are faster (a GEMM call costs more than a 12×12×32 product).
const GEMM_TOKENS: usize = 32;

/// Head `h`'s `[T, d]` block of part `part` (0 = q, 1 = k, 2 = v) of a `[T, 3·width]`
/// sequence, as a strided matrix view.
fn part_matrix(rows: &[f32], part: usize, h: usize, t: usize, heads: Heads) -> MatRef<'_, f32> {
    let w = heads.width();
    MatRef::from_row_major_slice_with_stride(&rows[part * w + h * heads.dim..], t, heads.dim, 3 * w)
}

/// The dense JVP of one tangent sequence, head by head, as GEMMs:
/// `Ṡ = Q̇Kᵀ + QK̇ᵀ`, `Ṗ = P ⊙ (Ṡ − rowsum(P ⊙ Ṡ))/√d`, `Ȯ = ṖV + PV̇`.
fn sequence_jvp_by_gemm(
    qkv_seq: &[f32],
    probs_seq: &[f32],
    dqkv_seq: &[f32],
    out_seq: &mut [f32],
    t: usize,
    heads: Heads,
    scale: f64,
) {
    let (w, d) = (heads.width(), heads.dim);
    let (mut ds, mut dp) = (vec![0.0f32; t * t], vec![0.0f32; t * t]);
    for h in 0..heads.count {
        let [q, k, v] = [0, 1, 2].map(|part| part_matrix(qkv_seq, part, h, t, heads));
        let [dq, dk, dv] = [0, 1, 2].map(|part| part_matrix(dqkv_seq, part, h, t, heads));
        let p_head = &probs_seq[h * t * t..(h + 1) * t * t];
        let p = MatRef::from_row_major_slice(p_head, t, t);
        {
            let mut ds = MatMut::from_row_major_slice_mut(&mut ds, t, t);
            matmul(ds.rb_mut(), Accum::Replace, dq, k.transpose(), 1.0f32, Par::Seq);
            matmul(ds.rb_mut(), Accum::Add, q, dk.transpose(), 1.0f32, Par::Seq);
        }
        for ((dp_row, ds_row), p_row) in dp.chunks_exact_mut(t).zip(ds.chunks_exact(t)).zip(p_head.chunks_exact(t)) {
            probability_tangent(p_row, ds_row, scale, dp_row);
        }
        // (faer 0.24's `from_row_major_slice_with_stride_mut` lays the view out column-major,
        // so the row-major view is built as the transpose of a column-major one.)
        let mut out = MatMut::from_column_major_slice_with_stride_mut(&mut out_seq[h * d..], d, t, w).transpose_mut();
        matmul(out.rb_mut(), Accum::Replace, MatRef::from_row_major_slice(&dp, t, t), v, 1.0f32, Par::Seq);
        matmul(out.rb_mut(), Accum::Add, p, dv, 1.0f32, Par::Seq);
    }
}

/// `Ȯ` `[steps, directions, T, width]` for token-direction tangents: tangent `m` of every step
/// is `d_rows` row `i = directions.start + m` (`[q̇ | k̇ | v̇]`) on row `i` only. Then `Ṡ` is
/// non-zero only in row and column `i`, so for every other row `a`
/// `Ȯ_a = P_ai (c_a (V_i − O_a) + V̇_i)` with `c_a = Q_a·K̇_i/√d` and `O_a` the primal context,
/// and only row `i` needs the full `Ṗ_i V`: O(T·d) per head instead of O(T²·d).
pub fn attention_token_jvp(
    qkv: &[f32],
    ctx: &[f32],
    probs: &[f32],
    d_rows: &[f32],
    directions: Range<usize>,
    batch: Batch,
    heads: Heads,
) -> Vec<f32> {
    let (t, w, d) = (batch.tokens, heads.width(), heads.dim);
    let scale = heads.scale();
    let mut dctx = vec![0.0f32; batch.tangent_rows() * w];
    if dctx.is_empty() || t == 0 {
        return dctx;
    }
    dctx.par_chunks_mut(t * w).enumerate().for_each(|(seq, out_seq)| {
        let (s, i) = (seq / batch.tangents, directions.start + seq % batch.tangents);
        let qkv_seq = &qkv[s * t * 3 * w..(s + 1) * t * 3 * w];
        let ctx_seq = &ctx[s * t * w..(s + 1) * t * w];
        let (mut ds, mut dp) = (vec![0.0f32; t], vec![0.0f32; t]);
        let mut v_minus_o = vec![0.0f32; d];
        for h in 0..heads.count {
            let [q, k, v] = [0, 1, 2].map(|part| Part::new(qkv_seq, part, h, heads));
            let [dq, dk, dv] = [0, 1, 2].map(|part| Part::new(d_rows, part, h, heads).row(i));
            let p_head = &probs[(s * heads.count + h) * t * t..(s * heads.count + h + 1) * t * t];
            let head_cols = h * d..(h + 1) * d;
            for a in (0..t).filter(|&a| a != i) {
                let p_ai = p_head[a * t + i];
                if p_ai == 0.0 {
                    continue; // a masked key: no change flows through it
                }
                let c = (dot(q.row(a), dk) as f64 * scale) as f32;
                let o = &ctx_seq[a * w..][head_cols.clone()];
                for ((vo, &vi), &oa) in v_minus_o.iter_mut().zip(v.row(i)).zip(o) {
                    *vo = c * (vi - oa);
                }
                let out = &mut out_seq[a * w..][head_cols.clone()];
                axpy(out, p_ai, &v_minus_o);
                axpy(out, p_ai, dv);
            }
            // Row i: Ṡ_i = Q̇_i Kᵀ + (Q_i·K̇_i) e_i, then as in the dense JVP.
            let p_row = &p_head[i * t..(i + 1) * t];
            for (j, ds) in ds.iter_mut().enumerate() {
                *ds = dot(dq, k.row(j));
            }
            ds[i] += dot(q.row(i), dk);
            probability_tangent(p_row, &ds, scale, &mut dp);
            let out = &mut out_seq[i * w..][head_cols];
            for (j, &dp) in dp.iter().enumerate() {
                axpy(out, dp, v.row(j));
            }
            axpy(out, p_row[i], dv);
        }
    });
    dctx
}

/// The adjoint of `attention_jvp`: `[q̄ | k̄ | v̄]` rows (`[steps, cotangents, T, 3·width]`)
/// for the context cotangents `dctx` (`[steps, cotangents, T, width]`), per head
/// `P̄ = Ō Vᵀ`, `S̄ = P ⊙ (P̄ − rowsum(P ⊙ P̄))/√d`, `Q̄ = S̄ K`, `K̄ = S̄ᵀ Q`, `V̄ = Pᵀ Ō`. One
/// thread per cotangent sequence; row by row for short sequences, as GEMMs from
/// `GEMM_TOKENS` tokens on, as the JVP.
pub fn attention_vjp(qkv: &[f32], probs: &[f32], dctx: &[f32], batch: Batch, heads: Heads) -> Vec<f32> {
    each_sequence(qkv, probs, dctx, 3 * heads.width(), batch, heads, [sequence_vjp_by_rows, sequence_vjp_by_gemm])
}

/// The VJP of one cotangent sequence, head by head and row by row: `P̄_i`, `S̄_i`, then row
/// `i`'s contributions to `Q̄_i` and to every `K̄_j` and `V̄_j`.
fn sequence_vjp_by_rows(
    qkv_seq: &[f32],
    probs_seq: &[f32],
    dctx_seq: &[f32],
    out_seq: &mut [f32],
    t: usize,
    heads: Heads,
    scale: f64,
) {
    let (w, d) = (heads.width(), heads.dim);
    let (mut dp, mut ds) = (vec![0.0f32; t], vec![0.0f32; t]);
    for h in 0..heads.count {
        let [q, k, v] = [0, 1, 2].map(|part| Part::new(qkv_seq, part, h, heads));
        let p_head = &probs_seq[h * t * t..(h + 1) * t * t];
        let cols = |part: usize| part * w + h * d..part * w + (h + 1) * d;
        for i in 0..t {
            let d_out = &dctx_seq[i * w + h * d..i * w + (h + 1) * d];
            let p_row = &p_head[i * t..(i + 1) * t];
            for (j, dp) in dp.iter_mut().enumerate() {
                *dp = dot(d_out, v.row(j));
            }
            // S̄_i (with 1/√d folded in), then its contributions to Q̄_i and to every K̄_j.
            probability_tangent(p_row, &dp, scale, &mut ds);
            for (j, &ds_ij) in ds.iter().enumerate() {
                axpy(&mut out_seq[i * 3 * w..][cols(0)], ds_ij, k.row(j));
                axpy(&mut out_seq[j * 3 * w..][cols(1)], ds_ij, q.row(i));
                axpy(&mut out_seq[j * 3 * w..][cols(2)], p_row[j], d_out);
            }
        }
    }
}

/// The VJP of one cotangent sequence, head by head, as GEMMs: `P̄ = Ō Vᵀ`, `S̄` row by row,
/// `Q̄ = S̄ K`, `K̄ = S̄ᵀ Q`, `V̄ = Pᵀ Ō`.
fn sequence_vjp_by_gemm(
    qkv_seq: &[f32],
    probs_seq: &[f32],
    dctx_seq: &[f32],
    out_seq: &mut [f32],
    t: usize,
    heads: Heads,
    scale: f64,
) {
    let (w, d) = (heads.width(), heads.dim);
    let (mut dp, mut ds) = (vec![0.0f32; t * t], vec![0.0f32; t * t]);
    for h in 0..heads.count {
        let [q, k, v] = [0, 1, 2].map(|part| part_matrix(qkv_seq, part, h, t, heads));
        let d_out = MatRef::from_row_major_slice_with_stride(&dctx_seq[h * d..], t, d, w);
        let p_head = &probs_seq[h * t * t..(h + 1) * t * t];
        matmul(MatMut::from_row_major_slice_mut(&mut dp, t, t), Accum::Replace, d_out, v.transpose(), 1.0f32, Par::Seq);
        for ((ds_row, dp_row), p_row) in ds.chunks_exact_mut(t).zip(dp.chunks_exact(t)).zip(p_head.chunks_exact(t)) {
            probability_tangent(p_row, dp_row, scale, ds_row);
        }
        let (p, ds) = (MatRef::from_row_major_slice(p_head, t, t), MatRef::from_row_major_slice(&ds, t, t));
        for (part, lhs, rhs) in [(0, ds, k), (1, ds.transpose(), q), (2, p.transpose(), d_out)] {
            // (A row-major strided view, built as the transpose of a column-major one: see
            // `sequence_jvp_by_gemm`.)
            let out = MatMut::from_column_major_slice_with_stride_mut(&mut out_seq[part * w + h * d..], d, t, 3 * w)
                .transpose_mut();
            matmul(out, Accum::Replace, lhs, rhs, 1.0f32, Par::Seq);
        }
    }
}
