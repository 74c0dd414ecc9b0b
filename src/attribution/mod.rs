//! Integrated-Jacobian attributions (Moeller, Nikolaev, Padó 2023/2024): per-text projections
//! `P` (forward or reverse mode), combined per pair into `A = P_aᵀ P_b`.

pub mod adaptive;
pub mod convergence;
pub mod decomposition;
pub mod normalization;
pub mod pair;
pub mod quadrature;
pub mod text;
pub mod words;

pub use convergence::{convergence, ConvergenceRow};
pub use pair::{feature_pairs, PairAttribution, ReferenceTerms, Similarity};
pub use quadrature::{Quadrature, Rule};
pub use text::{attribute_text, reference_ids, Jacobian, Method, Mode, TextAttribution, TextOptions};
pub use words::{merge_matrix, words_of, WordMerge, Words};

use crate::backend::Backend;
use crate::error::Result;
use crate::model::{TextTokenizer, Tokenized};
use crate::net::Encoder;

/// Receives progress in work units (one unit: one token direction, or in reverse mode one
/// output dimension, of one quadrature step through one layer). Work is announced as it becomes known, since the token counts are
/// known only after tokenizing. The CLI hands in a progress bar, tests hand in `()`.
pub trait Progress {
    fn add_work(&self, units: u64);
    fn advance(&self, units: u64);
    /// Whoever watches wants the work stopped (Ctrl-C in Python): the integration ends at the
    /// next layer with `Error::Interrupted`.
    fn interrupted(&self) -> bool {
        false
    }
}

impl Progress for () {
    fn add_work(&self, _units: u64) {}
    fn advance(&self, _units: u64) {}
}

/// A whole explanation of one pair.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub a: TextAttribution,
    pub b: TextAttribution,
    pub pair: PairAttribution,
    pub layer: usize,
    pub quadrature: Quadrature,
    pub mode: Mode,
    pub method: Method,
}

/// Explains why `text_a` and `text_b` are similar: both `P`s, then `A`.
pub fn explain_pair<B: Backend>(
    encoder: &Encoder<'_, B>,
    tokenizer: &TextTokenizer,
    text_a: &str,
    text_b: &str,
    options: &TextOptions,
    similarity: Similarity,
    progress: &dyn Progress,
) -> Result<Explanation> {
    // Both texts are checked before either is integrated, so bad input fails at once.
    let (tokens_a, tokens_b) = (tokenizer.encode(text_a)?, tokenizer.encode(text_b)?);
    explain_tokenized(encoder, tokenizer, [tokens_a, tokens_b], options, similarity, progress)
}

/// `explain_pair` for texts already tokenized (after their prompts, where they have one).
pub fn explain_tokenized<B: Backend>(
    encoder: &Encoder<'_, B>,
    tokenizer: &TextTokenizer,
    [tokens_a, tokens_b]: [Tokenized; 2],
    options: &TextOptions,
    similarity: Similarity,
    progress: &dyn Progress,
) -> Result<Explanation> {
    encoder.check_layer(options.layer)?;
    let options = &options.for_similarity(similarity);
    let a = attribute(encoder, tokenizer, tokens_a, options, progress)?;
    let b = attribute(encoder, tokenizer, tokens_b, options, progress)?;
    Ok(Explanation::combine(a, b, options, similarity))
}

/// One text's `P` by the method `options` names (`options` already set for the similarity,
/// `TextOptions::for_similarity`): what `explain_pair` does for each text, and what a batch
/// computes once per distinct text.
pub fn attribute<B: Backend>(
    encoder: &Encoder<'_, B>,
    tokenizer: &TextTokenizer,
    tokenized: Tokenized,
    options: &TextOptions,
    progress: &dyn Progress,
) -> Result<TextAttribution> {
    match options.method {
        Method::IntegratedJacobians => attribute_text(encoder, tokenizer, tokenized, options, progress),
        Method::Decomposition => decomposition::decompose_text(encoder, tokenizer, tokenized, options.normalized),
    }
}

impl Explanation {
    /// The pair's `A` from both texts' `P`.
    pub fn combine(a: TextAttribution, b: TextAttribution, options: &TextOptions, similarity: Similarity) -> Self {
        let pair = PairAttribution::combine(&a, &b, similarity);
        Explanation {
            a,
            b,
            pair,
            layer: options.layer,
            quadrature: options.quadrature,
            mode: options.mode,
            method: options.method,
        }
    }
}
