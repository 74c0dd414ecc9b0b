//! Sentence embeddings as sentence-transformers' `encode` returns them.

use crate::backend::Backend;
use crate::error::Result;
use crate::model::{SentenceModel, Tokenized};
use crate::net::Encoder;

pub struct Embedded {
    pub tokenized: Tokenized,
    pub vector: Vec<f64>,
}

/// Texts per packed batch, as sentence-transformers' `encode` batches by default.
pub const PACKED_BATCH: usize = 32;

/// Embeddings of already tokenized texts, in order: sorted by length and packed
/// `PACKED_BATCH` at a time without padding (`Encoder::embed_packed`), so short texts share one
/// pass through the layers.
/// Each is what `embed_text` gives for it alone, up to f32 summation order.
pub fn embed_tokenized<B: Backend>(
    encoder: &Encoder<'_, B>,
    model: &SentenceModel,
    texts: &[Tokenized],
    apply_normalize: bool,
) -> Result<Vec<Vec<f64>>> {
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&n| std::cmp::Reverse(texts[n].ids.len()));
    let mut vectors = vec![Vec::new(); texts.len()];
    for batch in order.chunks(PACKED_BATCH) {
        let texts = batch
            .iter()
            .map(|&n| Ok((texts[n].ids.as_slice(), encoder.pool_for(&texts[n])?)))
            .collect::<Result<Vec<_>>>()?;
        for (&n, vector) in batch.iter().zip(encoder.embed_packed(&texts)?) {
            vectors[n] = vector;
        }
    }
    if apply_normalize && model.normalize {
        vectors.iter_mut().for_each(|v| normalize(v));
    }
    vectors.iter_mut().for_each(|v| truncate(encoder, v));
    Ok(vectors)
}

/// The first `--truncate-dim` values, after Normalize, as `encode(truncate_dim=K)` returns
/// them (so a normalized model's truncated embedding is not of unit length).
fn truncate<B: Backend>(encoder: &Encoder<'_, B>, vector: &mut Vec<f64>) {
    if let Some(dims) = encoder.truncation() {
        vector.truncate(dims);
    }
}

/// `v / max(|v|, 1e-12)`, as torch.nn.functional.normalize.
fn normalize(vector: &mut [f64]) {
    let norm = vector.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
    vector.iter_mut().for_each(|v| *v /= norm);
}

/// Mean-pooled embedding of `text`; with `apply_normalize`, divided by its norm when the
/// folder lists a `Normalize` module (exactly what `encode` does).
pub fn embed_text<B: Backend>(
    encoder: &Encoder<'_, B>,
    model: &SentenceModel,
    text: &str,
    apply_normalize: bool,
) -> Result<Embedded> {
    embed_prompted(encoder, model, text, None, apply_normalize)
}

/// `embed_text` of `text` after the prompt `prompt` (a name of the folder's prompts or the
/// prompt's text), as `encode(prompt_name=…)` or `encode(prompt=…)` embeds it.
pub fn embed_prompted<B: Backend>(
    encoder: &Encoder<'_, B>,
    model: &SentenceModel,
    text: &str,
    prompt: Option<&str>,
    apply_normalize: bool,
) -> Result<Embedded> {
    let prompt = model.prompt(prompt);
    let tokenized = model.tokenizer.encode_with_prompt(text, prompt.as_deref())?;
    let mut vector = encoder.embed(&tokenized.ids, 1, encoder.pool_for(&tokenized)?)?;
    if apply_normalize && model.normalize {
        normalize(&mut vector);
    }
    truncate(encoder, &mut vector);
    Ok(Embedded { tokenized, vector })
}
