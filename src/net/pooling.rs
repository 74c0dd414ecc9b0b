//! Pooling as sentence-transformers configures it, and its derivative: the token states of a
//! sequence become one vector by their mean, the first token's state (CLS), or the largest
//! value per feature (max). Mean and CLS are linear, so their JVP is themselves on the
//! tangents; max's JVP reads each feature's tangent at the primal's arg-max token.

use crate::backend::{Backend, Batch};
use crate::error::Result;
use crate::model::Pooling;

/// `[seqs, tokens, width]` → `[seqs, width]`.
pub fn pool<B: Backend>(
    backend: &B,
    pooling: Pooling,
    x: &B::Tensor,
    seqs: usize,
    tokens: usize,
    width: usize,
) -> Result<B::Tensor> {
    match pooling {
        Pooling::Mean => backend.mean_pool(x, seqs, tokens, width),
        Pooling::Cls => backend.gather_rows(x, width, &first_rows(seqs, tokens)),
        Pooling::Max => backend.max_pool(x, seqs, tokens, width),
    }
}

/// The pooled tangents `[steps · tangents, width]` of `dy` (`[steps, tangents, tokens, width]`)
/// at the primal states `y` (`[steps, tokens, width]`).
pub fn pool_jvp<B: Backend>(
    backend: &B,
    pooling: Pooling,
    y: &B::Tensor,
    dy: &B::Tensor,
    batch: Batch,
    width: usize,
) -> Result<B::Tensor> {
    match pooling {
        Pooling::Mean | Pooling::Cls => pool(backend, pooling, dy, batch.tangent_seqs(), batch.tokens, width),
        Pooling::Max => backend.max_pool_jvp(y, dy, batch, width),
    }
}

/// The cotangents `[steps, cotangents, tokens, width]` of the token states `y`
/// (`[steps, tokens, width]`) from those of the pooled vectors, `dy` (`[steps · cotangents,
/// width]`).
pub fn pool_vjp<B: Backend>(
    backend: &B,
    pooling: Pooling,
    y: &B::Tensor,
    dy: &B::Tensor,
    batch: Batch,
    width: usize,
) -> Result<B::Tensor> {
    let seqs = batch.tangent_seqs();
    match pooling {
        Pooling::Mean => backend.mean_pool_vjp(dy, seqs, batch.tokens, width),
        Pooling::Cls => backend.scatter_rows(dy, width, &first_rows(seqs, batch.tokens), batch.tangent_rows()),
        Pooling::Max => backend.max_pool_vjp(y, dy, batch, width),
    }
}

/// One sequence's pooled vector from its token states on the host (`[tokens, width]`, f64).
pub fn pool_host(pooling: Pooling, states: &[f64], width: usize) -> Vec<f64> {
    let rows = states.chunks_exact(width);
    match pooling {
        Pooling::Mean => {
            let count = rows.len() as f64;
            let mut sum = vec![0.0f64; width];
            rows.for_each(|row| sum.iter_mut().zip(row).for_each(|(a, v)| *a += v));
            sum.iter().map(|v| v / count).collect()
        }
        Pooling::Cls => states[..width].to_vec(),
        Pooling::Max => {
            let mut max = vec![f64::NEG_INFINITY; width];
            rows.for_each(|row| max.iter_mut().zip(row).for_each(|(m, &v)| *m = m.max(v)));
            max
        }
    }
}

/// The first row of each of `seqs` sequences of `tokens` rows.
fn first_rows(seqs: usize, tokens: usize) -> Vec<u32> {
    (0..seqs).map(|s| (s * tokens) as u32).collect()
}
