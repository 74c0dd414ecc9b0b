//! The fast backend's weight gradients. `W̄ = dyᵀ x` is one faer GEMM over the batch's rows
//! (the rows are the GEMM's inner dimension, which faer does not split across threads, so the
//! result does not depend on `--threads`); the bias and LayerNorm sums run in f64 over the rows
//! in order. Training attention works one thread per sequence, head by head and row by row
//! (training batches are short sentences, where attention is a few percent of the work);
//! each sequence writes its own `S̄`, summed over the sequences in order afterwards.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use super::attention::{self, axpy, dot, Part};
use super::tensor::CpuTensor;
use super::{elementwise, CpuBackend};
use crate::backend::shapes::Contract;
use crate::backend::{AttentionSaved, Heads, MathOps, NormSaved, ScoreMods, WeightGradients};
use crate::error::Result;

/// `Σ_r rows[r]` column by column in f64, `rows` being `[.., width]`.
fn column_sums(rows: &[f32], width: usize, weight: Option<&[f32]>) -> Vec<f32> {
    let mut sums = vec![0.0f64; width];
    for (r, row) in rows.chunks_exact(width).enumerate() {
        match weight {
            Some(w) => {
                sums.iter_mut().zip(row).zip(&w[r * width..]).for_each(|((s, &y), &x)| *s += y as f64 * x as f64)
            }
            None => sums.iter_mut().zip(row).for_each(|(s, &y)| *s += y as f64),
        }
    }
    sums.into_iter().map(|s| s as f32).collect()
}

impl WeightGradients for CpuBackend {
    fn linear_weight_grad(
        &self,
        x: &CpuTensor,
        dy: &CpuTensor,
        rows: usize,
        in_dim: usize,
        out_dim: usize,
    ) -> Result<(CpuTensor, CpuTensor)> {
        Contract(self).linear_weight_grad(x, dy, rows, in_dim, out_dim)?;
        self.run(|| {
            let (x, dy) = (x.to_f32(), dy.to_f32());
            let mut dw = vec![0.0f32; out_dim * in_dim];
            if rows > 0 && !dw.is_empty() {
                let par = if self.threads > 1 { Par::rayon(self.threads) } else { Par::Seq };
                let lhs = MatRef::from_row_major_slice(&dy, rows, out_dim).transpose();
                let rhs = MatRef::from_row_major_slice(&x, rows, in_dim);
                matmul(
                    MatMut::from_row_major_slice_mut(&mut dw, out_dim, in_dim),
                    Accum::Replace,
                    lhs,
                    rhs,
                    1.0f32,
                    par,
                );
            }
            (CpuTensor::F32(dw), CpuTensor::F32(column_sums(&dy, out_dim, None)))
        })
    }

    fn layer_norm_weight_grad(
        &self,
        saved: &NormSaved<CpuTensor>,
        dy: &CpuTensor,
        rows: usize,
        width: usize,
    ) -> Result<(CpuTensor, CpuTensor)> {
        Contract(self).layer_norm_weight_grad(saved, dy, rows, width)?;
        let (dy, normalized) = (dy.to_f32(), saved.normalized.to_f32());
        let d_gamma = column_sums(&dy, width, Some(&normalized));
        Ok((CpuTensor::F32(d_gamma), CpuTensor::F32(column_sums(&dy, width, None))))
    }

    fn mul(&self, a: &CpuTensor, b: &CpuTensor) -> Result<CpuTensor> {
        Contract(self).same("mul operand", a, b)?;
        self.run(|| CpuTensor::F32(elementwise::zip_map(&a.to_f32(), &b.to_f32(), |x, y| x * y)))
    }

    fn attention_dropout(
        &self,
        qkv: &CpuTensor,
        seqs: usize,
        tokens: usize,
        heads: Heads,
        scores: ScoreMods<'_, CpuTensor>,
        keep: Option<&CpuTensor>,
    ) -> Result<(CpuTensor, AttentionSaved<CpuTensor>)> {
        Contract(self).attention(qkv, seqs, tokens, heads, scores, keep)?;
        let Some(keep) = keep else { return self.attention(qkv, seqs, tokens, heads, scores) };
        // One pass in f32 (an f64 primal too: training keeps its primal in f32), the mask applied
        // as the context is formed.
        self.run(|| {
            let (ctx, probs) = attention::attention(&qkv.to_f32(), seqs, tokens, heads, scores, Some(keep));
            (CpuTensor::F32(ctx), AttentionSaved { probs: CpuTensor::F32(probs) })
        })
    }

    fn attention_dropout_vjp(
        &self,
        qkv: &CpuTensor,
        saved: &AttentionSaved<CpuTensor>,
        keep: Option<&CpuTensor>,
        dctx: &CpuTensor,
        seqs: usize,
        tokens: usize,
        heads: Heads,
    ) -> Result<(CpuTensor, CpuTensor)> {
        Contract(self).attention_dropout_vjp(qkv, saved, keep, dctx, seqs, tokens, heads)?;
        let (t, w, d) = (tokens, heads.width(), heads.dim);
        let (qkv, dctx) = (qkv.to_f32(), dctx.to_f32());
        let probs: &[f32] = &saved.probs;
        let keep: Option<&[f32]> = keep.map(|k| &k[..]);
        let scale = heads.scale() as f32;
        let mut dqkv = vec![0.0f32; seqs * t * 3 * w];
        let mut d_scores = vec![0.0f32; seqs * heads.count * t * t];
        self.run(|| {
            let chunks =
                dqkv.par_chunks_mut((t * 3 * w).max(1)).zip(d_scores.par_chunks_mut((heads.count * t * t).max(1)));
            chunks.enumerate().for_each(|(s, (out, ds_seq))| {
                let qkv_seq = &qkv[s * t * 3 * w..(s + 1) * t * 3 * w];
                let mut dp = vec![0.0f32; t];
                for h in 0..heads.count {
                    let [q, k, v] = [0, 1, 2].map(|part| Part::new(qkv_seq, part, h, heads));
                    let at = (s * heads.count + h) * t * t;
                    let cols = |part: usize| part * w + h * d..part * w + (h + 1) * d;
                    for i in 0..t {
                        let d_out = &dctx[(s * t + i) * w + h * d..][..d];
                        // A padded query row has no cotangent, and a key of probability 0 (masked)
                        // gets nothing from any row: both contribute exact zeros, so they are skipped.
                        if d_out.iter().all(|&g| g == 0.0) {
                            continue;
                        }
                        let p_row = &probs[at + i * t..at + (i + 1) * t];
                        let keep_row = keep.map(|k| &k[at + i * t..at + (i + 1) * t]);
                        for (j, dp) in dp.iter_mut().enumerate() {
                            *dp = if p_row[j] == 0.0 {
                                0.0
                            } else {
                                dot(d_out, v.row(j)) * keep_row.map_or(1.0, |k| k[j])
                            };
                        }
                        let mean: f64 = p_row.iter().zip(&dp).map(|(&p, &g)| p as f64 * g as f64).sum();
                        let ds_row = &mut ds_seq[h * t * t + i * t..h * t * t + (i + 1) * t];
                        for j in (0..t).filter(|&j| p_row[j] != 0.0) {
                            ds_row[j] = (p_row[j] as f64 * (dp[j] as f64 - mean)) as f32;
                            let kept = p_row[j] * keep_row.map_or(1.0, |k| k[j]);
                            axpy(&mut out[i * 3 * w..][cols(0)], ds_row[j] * scale, k.row(j));
                            axpy(&mut out[j * 3 * w..][cols(1)], ds_row[j] * scale, q.row(i));
                            axpy(&mut out[j * 3 * w..][cols(2)], kept, d_out);
                        }
                    }
                }
            })
        })?;
        let mut bias_grad = vec![0.0f64; heads.count * t * t];
        for seq in d_scores.chunks_exact((heads.count * t * t).max(1)) {
            bias_grad.iter_mut().zip(seq).for_each(|(g, &v)| *g += v as f64);
        }
        Ok((CpuTensor::F32(dqkv), CpuTensor::F32(bias_grad.into_iter().map(|g| g as f32).collect())))
    }
}
