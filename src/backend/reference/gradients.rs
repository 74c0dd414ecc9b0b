//! The reference's weight gradients: plain loops, every sum in f64.

use super::{dot, for_each_row, head_slice, CpuReference, Part, Scalar};
use crate::backend::shapes::Contract;
use crate::backend::{AttentionSaved, Heads, NormSaved, ScoreMods, WeightGradients};
use crate::error::Result;

impl<S: Scalar> WeightGradients for CpuReference<S> {
    fn linear_weight_grad(
        &self,
        x: &Vec<S>,
        dy: &Vec<S>,
        rows: usize,
        in_dim: usize,
        out_dim: usize,
    ) -> Result<(Vec<S>, Vec<S>)> {
        Contract(self).linear_weight_grad(x, dy, rows, in_dim, out_dim)?;
        let mut dw = vec![S::default(); out_dim * in_dim];
        for_each_row(&mut dw, in_dim, self.threads, |o, out| {
            for (i, slot) in out.iter_mut().enumerate() {
                *slot = S::of((0..rows).map(|r| dy[r * out_dim + o].get() * x[r * in_dim + i].get()).sum());
            }
        });
        let db = (0..out_dim).map(|o| S::of((0..rows).map(|r| dy[r * out_dim + o].get()).sum())).collect();
        Ok((dw, db))
    }

    fn layer_norm_weight_grad(
        &self,
        saved: &NormSaved<Vec<S>>,
        dy: &Vec<S>,
        rows: usize,
        width: usize,
    ) -> Result<(Vec<S>, Vec<S>)> {
        Contract(self).layer_norm_weight_grad(saved, dy, rows, width)?;
        let column_sum = |f: &dyn Fn(usize) -> f64| S::of((0..rows).map(f).sum());
        let d_gamma = (0..width)
            .map(|c| column_sum(&|r| dy[r * width + c].get() * saved.normalized[r * width + c].get()))
            .collect();
        let d_beta = (0..width).map(|c| column_sum(&|r| dy[r * width + c].get())).collect();
        Ok((d_gamma, d_beta))
    }

    fn mul(&self, a: &Vec<S>, b: &Vec<S>) -> Result<Vec<S>> {
        Contract(self).same("mul operand", a, b)?;
        Ok(a.iter().zip(b).map(|(x, y)| S::of(x.get() * y.get())).collect())
    }

    fn attention_dropout(
        &self,
        qkv: &Vec<S>,
        seqs: usize,
        tokens: usize,
        heads: Heads,
        scores: ScoreMods<'_, Vec<S>>,
        keep: Option<&Vec<S>>,
    ) -> Result<(Vec<S>, AttentionSaved<Vec<S>>)> {
        Contract(self).attention(qkv, seqs, tokens, heads, scores, keep)?;
        Ok(self.attention_masked(qkv, seqs, tokens, heads, scores, keep.map(Vec::as_slice)))
    }

    fn attention_dropout_vjp(
        &self,
        qkv: &Vec<S>,
        saved: &AttentionSaved<Vec<S>>,
        keep: Option<&Vec<S>>,
        dctx: &Vec<S>,
        seqs: usize,
        tokens: usize,
        heads: Heads,
    ) -> Result<(Vec<S>, Vec<S>)> {
        Contract(self).attention_dropout_vjp(qkv, saved, keep, dctx, seqs, tokens, heads)?;
        let (t, w, d) = (tokens, heads.width(), heads.dim);
        let scale = heads.scale();
        // S̄ of every sequence, `[seqs, heads, T, T]`, summed over the sequences at the end.
        let mut d_scores = vec![0.0f64; seqs * heads.count * t * t];
        for s in 0..seqs {
            for h in 0..heads.count {
                let at = |i: usize, j: usize| ((s * heads.count + h) * t + i) * t + j;
                let p = |i: usize, j: usize| saved.probs[at(i, j)].get();
                let mask = |i: usize, j: usize| keep.map_or(1.0, |k| k[at(i, j)].get());
                let d_out = |i: usize| &dctx[(s * t + i) * w + h * d..][..d];
                for i in 0..t {
                    let dp: Vec<f64> = (0..t)
                        .map(|j| dot(d_out(i), head_slice(qkv, Part::Value, s * t + j, h, heads)) * mask(i, j))
                        .collect();
                    let mean: f64 = (0..t).map(|j| p(i, j) * dp[j]).sum();
                    for j in 0..t {
                        d_scores[at(i, j)] = p(i, j) * (dp[j] - mean);
                    }
                }
            }
        }
        let mut dqkv = vec![S::default(); seqs * t * 3 * w];
        for_each_row(&mut dqkv, t * 3 * w, self.threads, |s, out| {
            for h in 0..heads.count {
                let at = |i: usize, j: usize| ((s * heads.count + h) * t + i) * t + j;
                let part = |part: Part, j: usize| head_slice(qkv, part, s * t + j, h, heads);
                let kept = |i: usize, j: usize| saved.probs[at(i, j)].get() * keep.map_or(1.0, |k| k[at(i, j)].get());
                for a in 0..t {
                    let row = &mut out[a * 3 * w..(a + 1) * 3 * w];
                    for c in 0..d {
                        let dq: f64 = (0..t).map(|j| d_scores[at(a, j)] * part(Part::Key, j)[c].get()).sum();
                        let dk: f64 = (0..t).map(|i| d_scores[at(i, a)] * part(Part::Query, i)[c].get()).sum();
                        let dv: f64 = (0..t).map(|i| kept(i, a) * dctx[(s * t + i) * w + h * d + c].get()).sum();
                        row[h * d + c] = S::of(dq * scale);
                        row[w + h * d + c] = S::of(dk * scale);
                        row[2 * w + h * d + c] = S::of(dv);
                    }
                }
            }
        });
        let mut bias_grad = vec![0.0f64; heads.count * t * t];
        for chunk in d_scores.chunks_exact(heads.count * t * t) {
            bias_grad.iter_mut().zip(chunk).for_each(|(g, v)| *g += v);
        }
        Ok((dqkv, bias_grad.into_iter().map(S::of).collect()))
    }
}
