//! Sentence embeddings as sentence-transformers' `encode` returns them.

use crate::backend::Backend;
use crate::error::Result;
use crate::model::{SentenceModel, Tokenized};
use crate::net::Encoder;

pub struct Embedded {
    pub tokenized: Tokenized,
    pub vector: Vec<f64>,
}

/// Mean-pooled embedding of `text`; with `apply_normalize`, divided by its norm when the
/// folder lists a `Normalize` module (exactly what `encode` does).
pub fn embed_text<B: Backend>(
    encoder: &Encoder<'_, B>,
    model: &SentenceModel,
    text: &str,
    apply_normalize: bool,
) -> Result<Embedded> {
    let tokenized = model.tokenizer.encode(text)?;
    let mut vector = encoder.embed(&tokenized.ids, 1)?;
    if apply_normalize && model.normalize {
        // torch.nn.functional.normalize clamps the norm at 1e-12.
        let norm = vector.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
        vector.iter_mut().for_each(|v| *v /= norm);
    }
    Ok(Embedded { tokenized, vector })
}
