//! The linear Dense modules after pooling, in training: an exact model's embedding is
//! `W_k ⋯ W_1 (pool(y(x)) − pool(y(r)))`, the modules being linear maps without bias so that
//! the reference's embedding stays zero. Run on the host in f64 on one vector per text (a few
//! hundred wide): forward keeps each module's input, backward gives each weight's gradient
//! (`Σ_texts ḡ ⊗ input`) and the cotangent of the shifted pooled vector (`Wᵀ ḡ`).

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::params::{EncoderParams, Linear};

/// The Dense modules' weights on the host, row-major `[out, in]`.
pub struct LinearHeads {
    weights: Vec<(Vec<f64>, usize, usize)>,
}

/// Each module's input for every text: what the weight gradients read.
pub struct HeadInputs(Vec<Vec<Vec<f64>>>);

impl LinearHeads {
    /// The Dense weights of `params`, downloaded from `backend`.
    pub fn of<B: Backend>(backend: &B, params: &EncoderParams<B::Tensor>) -> Result<Self> {
        let weights = params
            .heads
            .iter()
            .map(|Linear { weight, in_dim, out_dim, .. }| Ok((backend.download(weight)?, *in_dim, *out_dim)))
            .collect::<Result<_>>()?;
        Ok(LinearHeads { weights })
    }

    /// The embeddings of the texts' (shifted) pooled vectors.
    pub fn forward(&self, pooled: Vec<Vec<f64>>) -> Result<(Vec<Vec<f64>>, HeadInputs)> {
        let mut inputs = Vec::with_capacity(self.weights.len());
        let mut x = pooled;
        for (w, in_dim, out_dim) in &self.weights {
            let y = x.iter().map(|v| matvec(w, *in_dim, *out_dim, v)).collect::<Result<Vec<_>>>()?;
            inputs.push(std::mem::replace(&mut x, y));
        }
        Ok((x, HeadInputs(inputs)))
    }

    /// From the embeddings' cotangents: the pooled vectors' cotangents and each module's
    /// weight gradient (`[out, in]`).
    pub fn backward(&self, inputs: &HeadInputs, d_out: Vec<Vec<f64>>) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
        let mut grads = vec![Vec::new(); self.weights.len()];
        let mut d = d_out;
        for (n, ((w, in_dim, out_dim), x)) in self.weights.iter().zip(&inputs.0).enumerate().rev() {
            let mut grad = vec![0.0; in_dim * out_dim];
            for (d_text, x_text) in d.iter().zip(x) {
                for (row, &g) in grad.chunks_exact_mut(*in_dim).zip(d_text) {
                    row.iter_mut().zip(x_text).for_each(|(acc, &xi)| *acc += g * xi);
                }
            }
            grads[n] = grad;
            d = d
                .iter()
                .map(|d_text| {
                    let mut back = vec![0.0; *in_dim];
                    for (row, &g) in w.chunks_exact(*in_dim).zip(d_text) {
                        back.iter_mut().zip(row).for_each(|(acc, &wi)| *acc += g * wi);
                    }
                    back
                })
                .collect();
        }
        (d, grads)
    }
}

/// `W v` for `W` `[out, in]` row-major.
fn matvec(w: &[f64], in_dim: usize, out_dim: usize, v: &[f64]) -> Result<Vec<f64>> {
    if v.len() != in_dim || w.len() != in_dim * out_dim {
        return Err(Error::Internal(format!("a Dense module of {in_dim} inputs given {} values", v.len())));
    }
    Ok(w.chunks_exact(in_dim).map(|row| row.iter().zip(v).map(|(a, b)| a * b).sum()).collect())
}
