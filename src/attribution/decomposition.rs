//! The baseline the papers compare against, xsbert's `explain_by_decomposition`: with mean
//! pooling `e(a)·e(b) = Σ_ij y_a[i]·y_b[j] / (T_a T_b)` for the output token states `y`, so
//! `A_ij = y_a[i]·y_b[j] / (T_a T_b)` (scaled by `1/(|e(a)||e(b)|)` for cos, as every `A` here)
//! adds up to the score exactly, at the cost of one forward pass per text. It says how the
//! output tokens' vectors align, not how the input tokens caused them.
//!
//! It is written as a `P`: column `i` of `P = Yᵀ / T` is token `i`'s share of the mean, the
//! reference embedding is zero, and `A = P_aᵀ P_b` as for the integrated Jacobians. Any
//! pooling that is a weighted sum of the states (`Pooling::token_weights`: CLS, last-token,
//! `mean_sqrt_len_tokens`, `weightedmean`, a prompt left out) splits the same way, with
//! column `i` weighted by token `i`'s weight; max does not.

use crate::attribution::normalization;
use crate::attribution::text::{reference_ids, TextAttribution};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::{TextTokenizer, Tokenized};
use crate::net::Encoder;

/// `P = Yᵀ / T` of one text (`Yᵀ` weighted per token by the pooling), with `e(x)` its column
/// sum and a zero reference embedding.
pub fn decompose_text<B: Backend>(
    encoder: &Encoder<'_, B>,
    tokenizer: &TextTokenizer,
    tokenized: Tokenized,
    normalized: bool,
) -> Result<TextAttribution> {
    let pool = encoder.pool_for(&tokenized)?;
    let (t, h) = (tokenized.ids.len(), encoder.hidden());
    // Any pooling that is a weighted sum of the token states splits as the mean does.
    let weights = pool.mode.token_weights(t, pool.skipped).ok_or_else(|| {
        Error::argument(
            "--method",
            format!("decomposition splits a weighted sum over the tokens; this model pools by {}", pool.mode.name()),
        )
    })?;
    let output = encoder.output_states(&tokenized.ids)?;
    let mut projection = vec![0.0; h * t];
    let mut embedding = vec![0.0; h];
    for ((i, row), weight) in output.chunks_exact(h).enumerate().zip(weights) {
        for (d, &value) in row.iter().enumerate() {
            projection[d * t + i] = weight * value;
            embedding[d] += weight * value;
        }
    }
    if normalized {
        // Cos-exact: the same A as cos, with P and e scaled by 1/|e|.
        let norm = normalization::nonzero_norm(&embedding, "the text's embedding")?;
        projection.iter_mut().chain(embedding.iter_mut()).for_each(|x| *x /= norm);
    }
    Ok(TextAttribution {
        reference_ids: reference_ids(tokenizer, t),
        tokenized,
        dim: h,
        projection,
        embedding,
        reference_embedding: vec![0.0; h],
        mode: None,
        jacobian: None,
        nodes: Vec::new(),
    })
}
