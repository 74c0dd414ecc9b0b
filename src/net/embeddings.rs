//! The embeddings beneath the first layer as data: which rows are summed into a token's first
//! state, and what is done to the sum. A family's network starts with this
//! (`Network::embeddings`); the encoder and training both run it from here.
//!
//! ```text
//!   x = scale · (word[id] + position[pos] + token_type[0])     then the norm, if any
//! ```
//!
//! BERT, RoBERTa and XLM-R sum all three and LayerNorm the sum; MPNet has no token types.
//! Families with rotary, ALiBi or relative positions have no position table, and some no norm
//! (Qwen3, T5) or a scale (Gemma: `√hidden`). Every text is single-segment: its token type is
//! 0 everywhere. Attribution starts at a layer's input, so only training differentiates this.

use crate::backend::{Backend, NormSaved};
use crate::error::{Error, Result};
use crate::net::block::NormKind;
use crate::params::EmbeddingParams;

/// What a family's embeddings are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Embeddings {
    /// A learned table of absolute positions is summed in.
    pub positions: bool,
    /// Row 0 of a token-type table is summed in.
    pub token_types: bool,
    /// The sum is multiplied by this before the norm.
    pub scale: Option<f64>,
    /// The norm of the sum.
    pub norm: Option<NormKind>,
}

/// What the embeddings' backward pass reads of their forward pass: the norm's statistics.
pub struct EmbeddingsTape<T> {
    pub norm: Option<NormSaved<T>>,
}

impl Embeddings {
    /// BERT's: word, position and token-type rows, then LayerNorm (`token_types` false for
    /// MPNet).
    pub fn bert(token_types: bool) -> Self {
        Embeddings { positions: true, token_types, scale: None, norm: Some(NormKind::Layer) }
    }

    /// Fails unless `params` has exactly the tables and norm this description reads.
    pub fn check<T>(&self, params: &EmbeddingParams<T>) -> Result<()> {
        let parts = [
            ("a position table", self.positions, params.position.is_some()),
            ("a token-type table", self.token_types, params.token_type.is_some()),
            ("an embedding norm", self.norm.is_some(), params.norm.is_some()),
        ];
        for (what, described, present) in parts {
            match (described, present) {
                (true, false) => {
                    return Err(Error::Internal(format!("the embeddings' description reads {what} the weights lack")))
                }
                (false, true) => {
                    return Err(Error::Internal(format!(
                        "the weights have {what} the embeddings' description does not read"
                    )))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The first layer's input for rows of token ids and their position ids, `[rows, hidden]`,
    /// with what the backward pass reads; `eps` is the norm's.
    pub fn forward<B: Backend>(
        &self,
        backend: &B,
        params: &EmbeddingParams<B::Tensor>,
        hidden: usize,
        eps: f64,
        ids: &[u32],
        positions: &[u32],
    ) -> Result<(B::Tensor, EmbeddingsTape<B::Tensor>)> {
        let (b, h) = (backend, hidden);
        let mut x = b.gather_rows(&params.word, h, ids)?;
        if let (true, Some(table)) = (self.positions, &params.position) {
            x = b.add(&x, &b.gather_rows(table, h, positions)?)?;
        }
        if let (true, Some(types)) = (self.token_types, &params.token_type) {
            x = b.add(&x, &b.gather_rows(types, h, &vec![0; ids.len()])?)?;
        }
        if let Some(scale) = self.scale {
            x = scaled(b, &x, scale, Some(&x))?;
        }
        match (self.norm, &params.norm) {
            (Some(kind), Some(norm)) => {
                let (y, saved) = kind.forward(b, &x, ids.len(), h, norm, eps)?;
                Ok((y, EmbeddingsTape { norm: Some(saved) }))
            }
            (None, _) => Ok((x, EmbeddingsTape { norm: None })),
            (Some(_), None) => Err(Error::Internal("the embeddings' description has a norm the weights lack".into())),
        }
    }
}

/// `scale · x`, on the host in f64 (the embeddings' rows are few, and no backend has a
/// kernel for it); stored as `like` is.
pub fn scaled<B: Backend>(backend: &B, x: &B::Tensor, scale: f64, like: Option<&B::Tensor>) -> Result<B::Tensor> {
    let values: Vec<f64> = backend.download(x)?.into_iter().map(|v| v * scale).collect();
    backend.upload_f64(&values, like)
}
