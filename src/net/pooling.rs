//! Pooling as sentence-transformers configures it, and its derivative: the token states of a
//! sequence become one vector by their mean, the first token's state (CLS), the last's
//! (`lasttoken`), a sum weighted per token (`mean_sqrt_len_tokens`, `weightedmean`), or the
//! largest value per feature (max). All but max are linear, so their JVP is themselves on the
//! tangents; max's JVP reads each feature's tangent at the primal's arg-max token.

use crate::backend::{Backend, Batch};
use crate::error::{Error, Result};
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
        Pooling::Cls => backend.gather_rows(x, width, &picked_rows(seqs, tokens, 0)),
        Pooling::LastToken => backend.gather_rows(x, width, &picked_rows(seqs, tokens, tokens.saturating_sub(1))),
        Pooling::Max => backend.max_pool(x, seqs, tokens, width),
        Pooling::MeanSqrtLen | Pooling::WeightedMean => {
            backend.weighted_pool(x, seqs, &weights(pooling, tokens)?, width)
        }
    }
}

/// A linear pooling's weight per token.
fn weights(pooling: Pooling, tokens: usize) -> Result<Vec<f64>> {
    pooling
        .token_weights(tokens, 0)
        .ok_or_else(|| Error::Internal(format!("{} pooling has no token weights", pooling.name())))
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
        Pooling::Max => backend.max_pool_jvp(y, dy, batch, width),
        _ => pool(backend, pooling, dy, batch.tangent_seqs(), batch.tokens, width),
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
        Pooling::Cls => backend.scatter_rows(dy, width, &picked_rows(seqs, batch.tokens, 0), batch.tangent_rows()),
        Pooling::LastToken => {
            let last = picked_rows(seqs, batch.tokens, batch.tokens.saturating_sub(1));
            backend.scatter_rows(dy, width, &last, batch.tangent_rows())
        }
        Pooling::Max => backend.max_pool_vjp(y, dy, batch, width),
        Pooling::MeanSqrtLen | Pooling::WeightedMean => {
            backend.weighted_pool_vjp(dy, seqs, &weights(pooling, batch.tokens)?, width)
        }
    }
}

/// One sequence's pooled vector from its token states on the host (`[tokens, width]`, f64).
pub fn pool_host(pooling: Pooling, states: &[f64], width: usize) -> Vec<f64> {
    let rows = states.chunks_exact(width);
    match pooling.token_weights(rows.len(), 0) {
        Some(weights) => {
            let mut sum = vec![0.0f64; width];
            rows.zip(weights).for_each(|(row, w)| sum.iter_mut().zip(row).for_each(|(a, v)| *a += w * v));
            sum
        }
        None => {
            let mut max = vec![f64::NEG_INFINITY; width];
            rows.for_each(|row| max.iter_mut().zip(row).for_each(|(m, &v)| *m = m.max(v)));
            max
        }
    }
}

/// Row `pick` of each of `seqs` sequences of `tokens` rows.
fn picked_rows(seqs: usize, tokens: usize, pick: usize) -> Vec<u32> {
    (0..seqs).map(|s| (s * tokens + pick) as u32).collect()
}
