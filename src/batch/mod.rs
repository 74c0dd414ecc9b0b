//! Many pairs: `simattr batch`. Pairs come in from JSONL, CSV or TSV (`input`), each distinct
//! text's `P` is computed once and reused (`cache`), and one JSON record per pair goes out,
//! appended whole (`writer`). For "why did this match", a query is ranked against documents
//! and its top matches explained (`rank_documents`).

pub mod cache;
pub mod input;
pub mod writer;

use serde::Serialize;

use crate::attribution::words::WordMerge;
use crate::attribution::{attribute, reference_ids, Explanation, Progress, Similarity, TextAttribution, TextOptions};
use crate::backend::Backend;
use crate::embed::embed_tokenized;
use crate::error::{Error, Result};
use crate::model::{SentenceModel, Tokenized};
use crate::net::Encoder;
use crate::output::json::ExplainJson;
use crate::output::provenance::{AttributionSettings, Provenance};

pub use cache::{CacheKey, CacheStats, TextCache};
pub use input::{read_items, Format, Item};
pub use writer::{Existing, RecordWriter};

/// One explained pair: the `explain` JSON with the pair's id and input line (and, for a
/// ranked document, its rank).
#[derive(Serialize)]
pub struct PairRecord {
    pub id: String,
    pub line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank: Option<usize>,
    #[serde(flatten)]
    pub explanation: ExplainJson,
}

/// A pair that could not be explained, and why.
#[derive(Serialize)]
pub struct ErrorRecord {
    pub id: String,
    pub line: usize,
    pub error: String,
}

/// What became of one input item.
pub enum Outcome {
    Explained(Box<PairRecord>),
    Failed(ErrorRecord),
}

impl Outcome {
    pub fn failed(id: &str, line: usize, error: String) -> Self {
        Outcome::Failed(ErrorRecord { id: id.to_string(), line, error })
    }

    /// The record as one line of the output file, without its newline.
    pub fn to_line(&self) -> Result<Vec<u8>> {
        match self {
            Outcome::Explained(record) => record_line(record),
            Outcome::Failed(record) => record_line(record),
        }
    }
}

/// A record serialized as one line of a batch output file (without the newline).
pub fn record_line<T: Serialize>(record: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(record).map_err(|e| Error::Internal(format!("a batch record does not serialize: {e}")))
}

/// Explains pairs with one encoder, computing each distinct text's `P` once.
pub struct PairExplainer<'e, 'a, B: Backend> {
    encoder: &'e Encoder<'a, B>,
    model: &'a SentenceModel,
    options: TextOptions,
    similarity: Similarity,
    word_merge: Option<WordMerge>,
    /// Cut texts over `max_seq_length` (as `explain` does) instead of refusing them.
    truncate: bool,
    provenance: Provenance,
    pub cache: TextCache,
    /// The prompts put before text a (and a query) and text b (and a document): names of the
    /// folder's prompts, or prompt texts (`--prompt-a`, `--prompt-b`).
    prompts: [Option<String>; 2],
}

impl<'e, 'a, B: Backend> PairExplainer<'e, 'a, B> {
    /// `cache_dir`: the on-disk cache (`--cache`); `memory_budget`: bytes of `P` kept in
    /// memory for the run.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        encoder: &'e Encoder<'a, B>,
        model: &'a SentenceModel,
        options: &TextOptions,
        similarity: Similarity,
        word_merge: Option<WordMerge>,
        truncate: bool,
        cache_dir: Option<&std::path::Path>,
        memory_budget: usize,
    ) -> Result<Self> {
        encoder.check_layer(options.layer)?;
        let options = options.for_similarity(similarity);
        let provenance = Provenance::new(model, &encoder.backend.engine_info())
            .with_attribution(AttributionSettings::new(&options, similarity, word_merge));
        let cache =
            TextCache::new(CacheKey::new(&provenance, &options), cache_dir, memory_budget, model.include_prompt)?;
        let prompts = [None, None];
        Ok(PairExplainer { encoder, model, options, similarity, word_merge, truncate, provenance, cache, prompts })
    }

    /// This explainer with the prompts put before text a and text b.
    pub fn with_prompts(self, prompts: [Option<String>; 2]) -> Self {
        PairExplainer { prompts, ..self }
    }

    /// The tokens of `text` on `side` (0: a, or the query; 1: b, or a document), after that
    /// side's prompt.
    pub fn tokenize_side(&self, text: &str, side: usize, label: &str) -> Result<Tokenized> {
        self.tokenize_with_prompt(text, self.prompts[side].as_deref(), label)
    }

    /// `text` as the model reads it on `side`: after that side's prompt (or the folder's
    /// default prompt).
    pub fn prompted(&self, text: &str, side: usize) -> String {
        let prompt = self.model.prompts.text_for(self.prompts[side].as_deref());
        format!("{}{text}", prompt.unwrap_or_default())
    }

    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    pub fn model(&self) -> &'a SentenceModel {
        self.model
    }

    pub fn similarity(&self) -> Similarity {
        self.similarity
    }

    /// The tokens of `text`; a text over `max_seq_length` is an error unless truncating.
    pub fn tokenize(&self, text: &str, label: &str) -> Result<Tokenized> {
        self.tokenize_with_prompt(text, None, label)
    }

    /// The tokens of `prompt` followed by `text` (`prompt` a name of the folder's prompts or
    /// the prompt's text), as `encode(prompt=…)` tokenizes them.
    pub fn tokenize_with_prompt(&self, text: &str, prompt: Option<&str>, label: &str) -> Result<Tokenized> {
        let prompt = self.model.prompt(prompt);
        let tokenized =
            self.model.tokenizer.encode_with_prompt(text, prompt.as_deref()).map_err(|e| with_label(e, label))?;
        match tokenized.truncated_from {
            Some(from) if !self.truncate => Err(Error::argument(
                "TEXT",
                format!(
                    "{label} has {from} tokens, over the model's max_seq_length {} (pass --truncate to cut it as explain does)",
                    self.model.max_seq_length
                ),
            )),
            _ => Ok(tokenized),
        }
    }

    /// The width of the model's hidden states.
    pub fn hidden(&self) -> usize {
        self.encoder.hidden()
    }

    /// `D`, the width of the attributed embedding (`Encoder::embedding_dim`).
    pub fn embedding_dim(&self) -> usize {
        self.encoder.embedding_dim()
    }

    /// `P` of one tokenized text, from the cache when it has been seen. A text whose Jacobian
    /// is kept (`explain --jacobians`) is computed afresh: the cache holds `P` only.
    fn text(&mut self, tokenized: Tokenized, progress: &dyn Progress) -> Result<TextAttribution> {
        let (encoder, tokenizer, options) = (self.encoder, &self.model.tokenizer, &self.options);
        if options.keep_jacobian {
            return attribute(encoder, tokenizer, tokenized, options, progress);
        }
        let reference = reference_ids(tokenizer, tokenized.ids.len());
        self.cache.get_or_compute(tokenized, &reference, |t| attribute(encoder, tokenizer, t, options, progress))
    }

    /// The explanation of `a` and `b`, exactly what `explain` gives for them.
    pub fn explain(&mut self, a: &str, b: &str) -> Result<Explanation> {
        self.explain_with(a, b, &())
    }

    /// `explain`, reporting the integration's steps to `progress`.
    pub fn explain_with(&mut self, a: &str, b: &str, progress: &dyn Progress) -> Result<Explanation> {
        let (tokens_a, tokens_b) = (self.tokenize_side(a, 0, "text a")?, self.tokenize_side(b, 1, "text b")?);
        self.explain_tokens_with(tokens_a, tokens_b, progress)
    }

    /// `explain` for texts already through `tokenize` (the query and the ranked documents).
    pub fn explain_tokens(&mut self, tokens_a: Tokenized, tokens_b: Tokenized) -> Result<Explanation> {
        self.explain_tokens_with(tokens_a, tokens_b, &())
    }

    /// `explain_tokens`, reporting the integration's steps to `progress`.
    pub fn explain_tokens_with(
        &mut self,
        tokens_a: Tokenized,
        tokens_b: Tokenized,
        progress: &dyn Progress,
    ) -> Result<Explanation> {
        let text_a = self.text(tokens_a, progress)?;
        let text_b = self.text(tokens_b, progress)?;
        Ok(Explanation::combine(text_a, text_b, &self.options, self.similarity))
    }

    /// The record `simattr batch` writes for one input item: the explained pair, or an error
    /// record naming the line.
    pub fn explain_item(&mut self, item: &Item) -> Outcome {
        match item {
            Item::Row { line, id, fields } => {
                let (a, b) = (&fields[0], &fields[1]);
                match self.explain(a, b) {
                    Ok(e) => Outcome::Explained(Box::new(self.record(id, *line, None, a, b, &e))),
                    Err(error) => Outcome::failed(id, *line, format!("line {line}: {error}")),
                }
            }
            Item::Bad { line, id, message } => Outcome::failed(id, *line, message.clone()),
        }
    }

    /// The record of an explained pair (`a` and `b` as given, before their prompts).
    pub fn record(&self, id: &str, line: usize, rank: Option<usize>, a: &str, b: &str, e: &Explanation) -> PairRecord {
        let (a, b) = (self.prompted(a, 0), self.prompted(b, 1));
        PairRecord { id: id.to_string(), line, rank, explanation: self.explain_json(&a, &b, e) }
    }

    /// The `explain --json` document of an explained pair.
    pub fn explain_json(&self, a: &str, b: &str, e: &Explanation) -> ExplainJson {
        ExplainJson::new(self.model, &self.provenance, a, b, e, self.word_merge)
    }

    /// The `explain --json` document with the word view merged by `merge`, whatever this
    /// explainer's own word setting (the HTML report always has words).
    pub fn explain_json_merged(&self, a: &str, b: &str, e: &Explanation, merge: WordMerge) -> ExplainJson {
        let provenance = self.provenance.clone().with_attribution(AttributionSettings::new(
            &self.options,
            self.similarity,
            Some(merge),
        ));
        ExplainJson::new(self.model, &provenance, a, b, e, Some(merge))
    }
}

fn with_label(error: Error, label: &str) -> Error {
    match error {
        Error::Argument { argument, message } => Error::Argument { argument, message: format!("{label}: {message}") },
        other => other,
    }
}

/// A document's place in the ranking.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ranked {
    /// Index into the documents given.
    pub document: usize,
    pub score: f64,
}

/// The documents by decreasing similarity to the query (the score `explain` reports:
/// `similarity` of the pooled embeddings), from packed embeddings of all of them. Ties keep
/// the documents' order.
pub fn rank_documents<B: Backend>(
    encoder: &Encoder<'_, B>,
    model: &SentenceModel,
    query: &Tokenized,
    documents: &[Tokenized],
    similarity: Similarity,
) -> Result<Vec<Ranked>> {
    let texts: Vec<Tokenized> = std::iter::once(query.clone()).chain(documents.iter().cloned()).collect();
    // Unnormalized, as `P` attributes them; cos and cos-exact divide by the norms anyway.
    let vectors = embed_tokenized(encoder, model, &texts, false)?;
    let score = |v: &[f64]| match similarity {
        Similarity::CosExact => Similarity::Cos.score(&vectors[0], v),
        other => other.score(&vectors[0], v),
    };
    let mut ranked: Vec<Ranked> =
        vectors[1..].iter().enumerate().map(|(document, v)| Ranked { document, score: score(v) }).collect();
    ranked.sort_by(|x, y| y.score.total_cmp(&x.score));
    Ok(ranked)
}
