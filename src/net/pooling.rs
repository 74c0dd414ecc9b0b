//! Pooling as sentence-transformers configures it, and its derivative: the token states of a
//! sequence become one vector by their mean, the first token's state (CLS), the last's
//! (`lasttoken`), a sum weighted per token (`mean_sqrt_len_tokens`, `weightedmean`), or the
//! largest value per feature (max). All but max are linear, so their JVP is themselves on the
//! tangents; max's JVP reads each feature's tangent at the primal's arg-max token.
//!
//! A Pooling with `include_prompt: false` leaves a text's prompt out (`Pool::skipped`): its
//! tokens still shape every other token's state through attention, but no mode reads their
//! own rows, and the normalizers count only the tokens kept.

use crate::backend::{Backend, Batch};
use crate::error::{Error, Result};
use crate::model::Pooling;

/// How one text's token states are pooled: the mode, and how many leading tokens it leaves
/// out (`prompt_length` under `include_prompt: false`, else 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pool {
    pub mode: Pooling,
    pub skipped: usize,
}

impl Pool {
    /// Every token pooled.
    pub fn all(mode: Pooling) -> Self {
        Pool { mode, skipped: 0 }
    }

    /// Fails unless a sequence of `tokens` tokens keeps at least one token to pool.
    pub fn check(self, tokens: usize) -> Result<()> {
        match self.skipped < tokens {
            true => Ok(()),
            false => Err(Error::argument(
                "prompt",
                format!(
                    "the prompt's {} tokens leave none of the {tokens} to pool (the model's Pooling leaves prompts out, include_prompt: false)",
                    self.skipped
                ),
            )),
        }
    }

    /// The row pooling reads where it reads one (CLS: the first token kept; last-token: the
    /// last), else `None`.
    pub fn picked_row(self, tokens: usize) -> Option<usize> {
        match self.mode {
            Pooling::Cls => Some(self.skipped),
            Pooling::LastToken => Some(tokens.saturating_sub(1)),
            _ => None,
        }
    }

    /// Whether this is plain mean pooling over every token, which the structured passes reduce
    /// before the last GEMM (`Block::pooled_jvp`, `CotangentsIn::PooledMeanUnits`).
    pub fn is_full_mean(self) -> bool {
        self.mode == Pooling::Mean && self.skipped == 0
    }

    /// A linear pooling's weight per token.
    fn weights(self, tokens: usize) -> Result<Vec<f64>> {
        self.mode
            .token_weights(tokens, self.skipped)
            .ok_or_else(|| Error::Internal(format!("{} pooling has no token weights", self.mode.name())))
    }

    /// The rows max pooling reads: each sequence's tokens after the skipped ones.
    fn kept_rows(self, seqs: usize, tokens: usize) -> Vec<u32> {
        (0..seqs).flat_map(|s| (s * tokens + self.skipped..(s + 1) * tokens).map(|r| r as u32)).collect()
    }
}

/// `[seqs, tokens, width]` → `[seqs, width]`.
pub fn pool<B: Backend>(
    backend: &B,
    pool: Pool,
    x: &B::Tensor,
    seqs: usize,
    tokens: usize,
    width: usize,
) -> Result<B::Tensor> {
    pool.check(tokens)?;
    if let Some(row) = pool.picked_row(tokens) {
        return backend.gather_rows(x, width, &picked_rows(seqs, tokens, row));
    }
    match pool.mode {
        _ if pool.is_full_mean() => backend.mean_pool(x, seqs, tokens, width),
        Pooling::Max if pool.skipped == 0 => backend.max_pool(x, seqs, tokens, width),
        Pooling::Max => {
            let kept = backend.gather_rows(x, width, &pool.kept_rows(seqs, tokens))?;
            backend.max_pool(&kept, seqs, tokens - pool.skipped, width)
        }
        _ => backend.weighted_pool(x, seqs, &pool.weights(tokens)?, width),
    }
}

/// The pooled tangents `[steps · tangents, width]` of `dy` (`[steps, tangents, tokens, width]`)
/// at the primal states `y` (`[steps, tokens, width]`).
pub fn pool_jvp<B: Backend>(
    backend: &B,
    pool: Pool,
    y: &B::Tensor,
    dy: &B::Tensor,
    batch: Batch,
    width: usize,
) -> Result<B::Tensor> {
    pool.check(batch.tokens)?;
    match pool.mode {
        Pooling::Max if pool.skipped == 0 => backend.max_pool_jvp(y, dy, batch, width),
        Pooling::Max => {
            let y = backend.gather_rows(y, width, &pool.kept_rows(batch.steps, batch.tokens))?;
            let dy = backend.gather_rows(dy, width, &pool.kept_rows(batch.tangent_seqs(), batch.tokens))?;
            backend.max_pool_jvp(&y, &dy, kept_batch(pool, batch), width)
        }
        _ => self::pool(backend, pool, dy, batch.tangent_seqs(), batch.tokens, width),
    }
}

/// The cotangents `[steps, cotangents, tokens, width]` of the token states `y`
/// (`[steps, tokens, width]`) from those of the pooled vectors, `dy` (`[steps · cotangents,
/// width]`).
pub fn pool_vjp<B: Backend>(
    backend: &B,
    pool: Pool,
    y: &B::Tensor,
    dy: &B::Tensor,
    batch: Batch,
    width: usize,
) -> Result<B::Tensor> {
    pool.check(batch.tokens)?;
    let seqs = batch.tangent_seqs();
    if let Some(row) = pool.picked_row(batch.tokens) {
        return backend.scatter_rows(dy, width, &picked_rows(seqs, batch.tokens, row), batch.tangent_rows());
    }
    match pool.mode {
        _ if pool.is_full_mean() => backend.mean_pool_vjp(dy, seqs, batch.tokens, width),
        Pooling::Max if pool.skipped == 0 => backend.max_pool_vjp(y, dy, batch, width),
        Pooling::Max => {
            let kept_y = backend.gather_rows(y, width, &pool.kept_rows(batch.steps, batch.tokens))?;
            let kept = backend.max_pool_vjp(&kept_y, dy, kept_batch(pool, batch), width)?;
            backend.scatter_rows(&kept, width, &pool.kept_rows(seqs, batch.tokens), batch.tangent_rows())
        }
        _ => backend.weighted_pool_vjp(dy, seqs, &pool.weights(batch.tokens)?, width),
    }
}

/// `batch` with only the tokens `pool` keeps.
fn kept_batch(pool: Pool, batch: Batch) -> Batch {
    Batch { tokens: batch.tokens - pool.skipped, ..batch }
}

/// One sequence's pooled vector from its token states on the host (`[tokens, width]`, f64).
pub fn pool_host(pool: Pool, states: &[f64], width: usize) -> Result<Vec<f64>> {
    let rows = states.chunks_exact(width);
    pool.check(rows.len())?;
    Ok(match pool.mode.token_weights(rows.len(), pool.skipped) {
        Some(weights) => {
            let mut sum = vec![0.0f64; width];
            rows.zip(weights).for_each(|(row, w)| sum.iter_mut().zip(row).for_each(|(a, v)| *a += w * v));
            sum
        }
        None => {
            let mut max = vec![f64::NEG_INFINITY; width];
            rows.skip(pool.skipped).for_each(|row| max.iter_mut().zip(row).for_each(|(m, &v)| *m = m.max(v)));
            max
        }
    })
}

/// Row `pick` of each of `seqs` sequences of `tokens` rows.
fn picked_rows(seqs: usize, tokens: usize, pick: usize) -> Vec<u32> {
    (0..seqs).map(|s| (s * tokens + pick) as u32).collect()
}
