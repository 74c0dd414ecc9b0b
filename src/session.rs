//! A long-lived explainer: a model loaded on a backend chosen at run time, with its attribution
//! settings and its per-text cache, held for as long as its owner likes. The CLI borrows a
//! backend and a model for one command; a caller that keeps them across many calls (the Python
//! package, the coming HTTP server) holds a `Session` and calls the same code `explain` and `batch`
//! run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::attribution::words::WordMerge;
use crate::attribution::{Method, Mode, Progress, Quadrature, Rule, Similarity, TextOptions};
use crate::backend::{Backend, BackendChoice, UseBackend};
use crate::batch::{rank_documents, CacheStats, Item, Outcome, PairExplainer, Ranked};
use crate::embed::embed_tokenized;
use crate::error::Result;
use crate::job::{self, Artefact, ExplainOutput};
use crate::model::{SentenceModel, Tokenized};
use crate::net::Encoder;
use crate::output::provenance::Provenance;

/// How a session attributes pairs: the options of `explain` and `batch`.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// `options.layer` is the layer asked for, or the model's last one where `layer` is `None`
    /// (`resolve_layer`, once the model is loaded).
    pub options: TextOptions,
    /// `--layer`; `None`: the default, the model's last layer (`default_layer`).
    pub layer: Option<usize>,
    pub similarity: Similarity,
    /// The word view (`--words`, `--word-merge`); `None`: tokens only.
    pub word_merge: Option<WordMerge>,
    /// Cut texts over `max_seq_length` (as `explain` does) instead of refusing them (as
    /// `batch` does unless `--truncate`).
    pub truncate: bool,
    /// The on-disk text cache (`batch --cache`).
    pub cache_dir: Option<PathBuf>,
    /// Bytes of texts' `P` kept in memory (`batch --cache-memory`).
    pub cache_memory: usize,
    /// The prompts put before text a (and a query) and text b (and a document) (`--prompt-a`,
    /// `--prompt-b`): names of the folder's prompts, or prompt texts.
    pub prompts: [Option<String>; 2],
    /// `--truncate-dim`: attribute and embed the first K dimensions.
    pub truncate_dim: Option<usize>,
}

impl SessionOptions {
    /// The attribution options from their command-line spellings (`--rule riemann-right`,
    /// `--method`, `--similarity`, `--mode`, `--word-merge`; `word_merge` `None`: no word
    /// view), with the cache off and `truncate` false.
    pub fn parse(
        layer: Option<usize>,
        steps: usize,
        rule: &str,
        method: &str,
        similarity: &str,
        mode: &str,
        word_merge: Option<&str>,
    ) -> Result<Self> {
        let quadrature = Quadrature::new(rule.parse::<Rule>()?, steps)?;
        let options = TextOptions {
            mode: mode.parse::<Mode>()?,
            method: method.parse::<Method>()?,
            ..TextOptions::new(layer.unwrap_or(0), quadrature)
        };
        Ok(SessionOptions {
            options,
            layer,
            similarity: similarity.parse()?,
            word_merge: word_merge.map(str::parse::<WordMerge>).transpose()?,
            truncate: false,
            cache_dir: None,
            cache_memory: DEFAULT_CACHE_MEMORY,
            prompts: [None, None],
            truncate_dim: None,
        })
    }
}

impl SessionOptions {
    /// The options with the layer settled for a model of `num_layers` layers.
    pub fn resolve_layer(&self, num_layers: usize) -> TextOptions {
        TextOptions { layer: self.layer.unwrap_or_else(|| default_layer(num_layers)), ..self.options }
    }
}

/// The layer attributed unless `--layer` says otherwise: the last one (its input), in every
/// model. Measured on all-MiniLM-L6-v2 and all-mpnet-base-v2 (docs/method.md, "Choosing the
/// layer"): the reference terms are the same at every layer; an off-the-shelf model's
/// attributions agree best with an exact model's there; the path is smooth there; and it is the
/// cheapest, by the depth of the model (MPNet: ~1/10 of layer 0's time).
pub fn default_layer(num_layers: usize) -> usize {
    num_layers.saturating_sub(1)
}

/// Memory for texts' `P` unless told otherwise (`batch --cache-memory`).
pub const DEFAULT_CACHE_MEMORY: usize = 1 << 30;

/// What a session offers, whatever backend it runs on.
pub trait Session: Send {
    fn model(&self) -> &SentenceModel;
    /// The model, the backend and the attribution settings (`truncated` false).
    fn provenance(&self) -> &Provenance;
    /// The tokens of `text`; over `max_seq_length` an error unless the session truncates.
    fn tokenize(&self, text: &str, label: &str) -> Result<Tokenized>;
    /// Explains `a` and `b` exactly as `simattr explain` does (`job::explain`), each text's
    /// `P` from the cache when the session has seen it, and renders the artefacts `wanted`.
    fn explain(&mut self, a: &str, b: &str, wanted: &[Artefact], progress: &dyn Progress) -> Result<ExplainOutput>;
    /// The record `simattr batch` writes for `item`.
    fn explain_item(&mut self, item: &Item) -> Outcome;
    /// Sentence embeddings, packed as `simattr embed` computes them; `normalize`: apply the
    /// folder's `Normalize` module if it lists one.
    fn embed(&self, texts: &[String], normalize: bool) -> Result<Vec<Vec<f64>>>;
    /// The documents by decreasing score against the query (the score `explain` reports).
    fn rank(&self, query: &str, documents: &[String]) -> Result<Vec<Ranked>>;
    fn cache_stats(&self) -> CacheStats;
}

/// Loads the model in `model_dir` on the backend `choice` names.
pub fn open_session(model_dir: &Path, choice: &BackendChoice, options: SessionOptions) -> Result<Box<dyn Session>> {
    let mut model = SentenceModel::load(model_dir)?;
    model.truncate_dim = options.truncate_dim;
    choice.open(Opener { model, options })?
}

struct Opener {
    model: SentenceModel,
    options: SessionOptions,
}

impl UseBackend for Opener {
    type Output = Result<Box<dyn Session>>;
    fn with<B: Backend + Send + 'static>(self, backend: B) -> Self::Output {
        Ok(Box::new(Loaded::new(backend, self.model, &self.options)?))
    }
}

/// A session on backend `B`. The explainer borrows the encoder and the model, and the encoder
/// borrows the backend; all three live in `Arc`s owned by this struct, which never hands the
/// borrows out beyond `&self`.
struct Loaded<B: Backend + Send + 'static> {
    // Fields drop in order: the borrowers first, then what they borrow.
    explainer: PairExplainer<'static, 'static, B>,
    encoder: Arc<Encoder<'static, B>>,
    model: Arc<SentenceModel>,
    _backend: Arc<B>,
}

impl<B: Backend + Send + 'static> Loaded<B> {
    fn new(backend: B, model: SentenceModel, options: &SessionOptions) -> Result<Self> {
        let backend = Arc::new(backend);
        let model = Arc::new(model);
        // SAFETY: each reference points into an `Arc` that this struct keeps and drops after
        // every field holding the reference (field order above), and nothing is ever borrowed
        // mutably through them: they are valid for as long as they are used.
        let backend_ref: &'static B = unsafe { &*Arc::as_ptr(&backend) };
        let model_ref: &'static SentenceModel = unsafe { &*Arc::as_ptr(&model) };
        let encoder = Arc::new(Encoder::new(backend_ref, model_ref)?);
        // SAFETY: as above.
        let encoder_ref: &'static Encoder<'static, B> = unsafe { &*Arc::as_ptr(&encoder) };
        let explainer = PairExplainer::new(
            encoder_ref,
            model_ref,
            &options.resolve_layer(encoder.num_layers()),
            options.similarity,
            options.word_merge,
            options.truncate,
            options.cache_dir.as_deref(),
            options.cache_memory,
        )?;
        let explainer = explainer.with_prompts(options.prompts.clone());
        Ok(Loaded { explainer, encoder, model, _backend: backend })
    }
}

impl<B: Backend + Send + 'static> Session for Loaded<B> {
    fn model(&self) -> &SentenceModel {
        &self.model
    }

    fn provenance(&self) -> &Provenance {
        self.explainer.provenance()
    }

    fn tokenize(&self, text: &str, label: &str) -> Result<Tokenized> {
        self.explainer.tokenize(text, label)
    }

    fn explain(&mut self, a: &str, b: &str, wanted: &[Artefact], progress: &dyn Progress) -> Result<ExplainOutput> {
        job::explain(&mut self.explainer, a, b, wanted, progress)
    }

    fn explain_item(&mut self, item: &Item) -> Outcome {
        self.explainer.explain_item(item)
    }

    fn embed(&self, texts: &[String], normalize: bool) -> Result<Vec<Vec<f64>>> {
        let tokenized = self.tokenize_all(texts, "text")?;
        embed_tokenized(&self.encoder, &self.model, &tokenized, normalize)
    }

    fn rank(&self, query: &str, documents: &[String]) -> Result<Vec<Ranked>> {
        let query = self.explainer.tokenize_side(query, 0, "the query")?;
        let documents = (documents.iter().enumerate())
            .map(|(n, text)| self.explainer.tokenize_side(text, 1, &format!("document {n}")))
            .collect::<Result<Vec<_>>>()?;
        rank_documents(&self.encoder, &self.model, &query, &documents, self.explainer.similarity())
    }

    fn cache_stats(&self) -> CacheStats {
        self.explainer.cache.stats
    }
}

impl<B: Backend + Send + 'static> Loaded<B> {
    /// Every text tokenized; an error names the first bad one by its place (from 0).
    fn tokenize_all(&self, texts: &[String], what: &str) -> Result<Vec<Tokenized>> {
        texts.iter().enumerate().map(|(n, text)| self.tokenize(text, &format!("{what} {n}"))).collect()
    }
}
