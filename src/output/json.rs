//! The JSON files other tools read. Field names are a public format: add, never rename.

use serde::Serialize;

use crate::attribution::words::{merge_matrix, words_of, WordMerge};
use crate::attribution::{ConvergenceRow, Explanation, Mode, Rule, Similarity, TextAttribution};
use crate::model::SentenceModel;
use crate::output::provenance::Provenance;

#[derive(Serialize)]
pub struct ReferenceTermsJson {
    /// `e(r_a)·e(b)` (scaled like `A`).
    #[serde(rename = "ref_a__b")]
    pub reference_a_b: f64,
    /// `e(a)·e(r_b)`.
    #[serde(rename = "a__ref_b")]
    pub a_reference_b: f64,
    /// `e(r_a)·e(r_b)`.
    #[serde(rename = "ref_a__ref_b")]
    pub reference_a_reference_b: f64,
}

#[derive(Serialize)]
pub struct TextReportJson {
    pub text: String,
    pub ids: Vec<u32>,
    pub reference_ids: Vec<u32>,
    /// `max_d |Σ_i P_di − (e_d(x) − e_d(r))|`.
    pub identity_error: f64,
    pub relative_identity_error: f64,
    /// Token count before truncation to `max_seq_length`, if the text was cut.
    pub truncated_from: Option<usize>,
    /// With a prompt, the tokens that are its, `[start, end)`.
    pub prompt_tokens: Option<[usize; 2]>,
    /// How this text's `P` was computed: forward (token tangents) or reverse (output
    /// cotangents) mode, `--mode auto` resolved; `none` for the decomposition.
    pub mode: &'static str,
    /// `gauss-legendre-adaptive`: where on the path (α) this text's steps went and with what
    /// weights, fitted to its path; `null` for the fixed rules, whose nodes are the rule's.
    pub quadrature_nodes: Option<Vec<NodeJson>>,
}

#[derive(Serialize)]
pub struct NodeJson {
    pub alpha: f64,
    pub weight: f64,
}

#[derive(Serialize)]
pub struct ExplainJson {
    pub model: String,
    /// The encoder family (`transformers`' model_type: bert, mpnet, roberta, xlm-roberta).
    pub architecture: &'static str,
    /// How token states became the sentence vector: mean, cls or max.
    pub pooling: &'static str,
    /// An exact model: its reference's output states are subtracted before pooling.
    pub shifted_reference: bool,
    /// The backend and storage precision that computed it ("cpu f32", "cpu-reference f64").
    pub backend: String,
    pub tokens_a: Vec<String>,
    pub tokens_b: Vec<String>,
    /// Row i = token i of a, column j = token j of b.
    pub attributions: Vec<Vec<f64>>,
    pub score: f64,
    pub attribution_sum: f64,
    pub reference_terms: ReferenceTermsJson,
    /// `score − ref_a__b − a__ref_b + ref_a__ref_b`, what `attribution_sum` converges to.
    pub attributable: f64,
    pub completeness_error: f64,
    pub layer: usize,
    pub steps: usize,
    pub quadrature: &'static str,
    /// How `P` was computed: forward (token tangents) or reverse (output cotangents) mode, or
    /// `mixed` when `--mode auto` chose differently for the two texts (see `text_a.mode`).
    pub mode: &'static str,
    /// The `--mode` asked for: forward, reverse or auto.
    pub mode_requested: &'static str,
    /// `integrated-jacobians`, or `decomposition` (the baseline: no derivative, so `mode` is
    /// `none` and the layer, steps and quadrature are not used).
    pub method: &'static str,
    pub similarity: &'static str,
    pub text_a: TextReportJson,
    pub text_b: TextReportJson,
    /// `--words`: the sub-word tokens merged into the tokenizer's words.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub words: Option<WordsJson>,
    pub provenance: Provenance,
}

/// The word-level view: each text's words (special tokens are words of their own) and the
/// word-by-word matrix, row i = word i of a, column j = word j of b.
#[derive(Serialize)]
pub struct WordsJson {
    pub words_a: Vec<String>,
    pub words_b: Vec<String>,
    pub word_attributions: Vec<Vec<f64>>,
    /// sum (the word pair's token pairs added up, so completeness still holds) or mean.
    pub word_merge: &'static str,
}

impl WordsJson {
    pub fn new(text_a: &str, text_b: &str, e: &Explanation, merge: WordMerge) -> Self {
        let (a, b) = (words_of(&e.a.tokenized, text_a), words_of(&e.b.tokenized, text_b));
        let p = &e.pair;
        let merged = merge_matrix(&p.matrix, p.rows, p.cols, &a, &b, merge);
        let columns = b.labels.len().max(1);
        WordsJson {
            word_attributions: merged.chunks(columns).map(<[f64]>::to_vec).collect(),
            words_a: a.labels,
            words_b: b.labels,
            word_merge: merge.name(),
        }
    }
}

fn text_report(text: &str, t: &TextAttribution, rule: Rule) -> TextReportJson {
    TextReportJson {
        text: text.to_string(),
        ids: t.tokenized.ids.clone(),
        reference_ids: t.reference_ids.clone(),
        identity_error: t.identity_error(),
        relative_identity_error: t.relative_identity_error(),
        truncated_from: t.tokenized.truncated_from,
        prompt_tokens: t.tokenized.prompt_length.map(|_| {
            let range = t.tokenized.prompt_tokens();
            [range.start, range.end]
        }),
        mode: t.mode.map_or("none", Mode::name),
        quadrature_nodes: (rule == Rule::GaussLegendreAdaptive && !t.nodes.is_empty())
            .then(|| t.nodes.iter().map(|n| NodeJson { alpha: n.alpha, weight: n.weight }).collect()),
    }
}

impl ExplainJson {
    /// `provenance` is the run's, with the attribution settings; whether either text was
    /// truncated is filled in here.
    pub fn new(
        model: &SentenceModel,
        provenance: &Provenance,
        text_a: &str,
        text_b: &str,
        e: &Explanation,
        word_merge: Option<WordMerge>,
    ) -> Self {
        let p = &e.pair;
        let truncated = e.a.tokenized.truncated_from.is_some() || e.b.tokenized.truncated_from.is_some();
        ExplainJson {
            model: model.path.display().to_string(),
            architecture: model.config.architecture.name(),
            pooling: model.pooling.name(),
            shifted_reference: model.shifted_reference,
            backend: provenance.backend.clone(),
            tokens_a: e.a.tokenized.tokens.clone(),
            tokens_b: e.b.tokenized.tokens.clone(),
            attributions: (0..p.rows).map(|i| p.row(i).to_vec()).collect(),
            score: p.score,
            attribution_sum: p.attribution_sum,
            reference_terms: ReferenceTermsJson {
                reference_a_b: p.reference_terms.reference_a_b,
                a_reference_b: p.reference_terms.a_reference_b,
                reference_a_reference_b: p.reference_terms.reference_a_reference_b,
            },
            attributable: p.attributable(),
            completeness_error: p.completeness_error(),
            layer: e.layer,
            steps: e.quadrature.steps(),
            quadrature: e.quadrature.name(),
            mode: match (e.a.mode, e.b.mode) {
                (Some(a), Some(b)) if a == b => a.name(),
                (Some(_), Some(_)) => "mixed",
                _ => "none",
            },
            method: e.method.name(),
            mode_requested: e.mode.name(),
            similarity: p.similarity.name(),
            text_a: text_report(text_a, &e.a, e.quadrature.rule()),
            text_b: text_report(text_b, &e.b, e.quadrature.rule()),
            words: word_merge.map(|merge| WordsJson::new(text_a, text_b, e, merge)),
            provenance: provenance.clone().with_truncated(truncated),
        }
    }
}

#[derive(Serialize)]
pub struct EmbeddingEntryJson {
    pub text: String,
    pub tokens: Vec<String>,
    pub truncated_from: Option<usize>,
}

#[derive(Serialize)]
pub struct EmbedJson {
    pub model: String,
    /// Whether a `Normalize` module was applied (false with `--raw`).
    pub normalized: bool,
    /// One vector per input text, in order.
    pub embeddings: Vec<Vec<f64>>,
    pub texts: Vec<EmbeddingEntryJson>,
    pub provenance: Provenance,
}

/// What `convergence --json` writes: the settings and one row per rule and step count.
#[derive(Serialize)]
pub struct ConvergenceJson {
    pub model: String,
    pub architecture: &'static str,
    pub backend: String,
    pub text_a: String,
    pub text_b: String,
    /// The prompt put before each text (the folder's default where none was asked for), or
    /// none.
    pub prompt_a: Option<String>,
    pub prompt_b: Option<String>,
    pub layer: usize,
    pub similarity: &'static str,
    pub mode: &'static str,
    pub rows: Vec<ConvergenceRowJson>,
    /// The run's model and engine (its rules and steps are the rows').
    pub provenance: Provenance,
}

#[derive(Serialize)]
pub struct ConvergenceRowJson {
    pub rule: &'static str,
    pub steps: usize,
    pub completeness_error: f64,
    pub relative_completeness_error: f64,
    pub relative_identity_error_a: f64,
    pub relative_identity_error_b: f64,
    pub attribution_sum: f64,
    pub attributable: f64,
    pub seconds: f64,
}

impl ConvergenceJson {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        model: &SentenceModel,
        provenance: &Provenance,
        [text_a, text_b]: [&str; 2],
        prompts: &[Option<String>; 2],
        layer: usize,
        similarity: Similarity,
        mode: Mode,
        rows: &[ConvergenceRow],
    ) -> Self {
        let rows = rows
            .iter()
            .map(|r| ConvergenceRowJson {
                rule: r.rule.name(),
                steps: r.steps,
                completeness_error: r.completeness_error,
                relative_completeness_error: r.relative_completeness_error,
                relative_identity_error_a: r.relative_identity_errors[0],
                relative_identity_error_b: r.relative_identity_errors[1],
                attribution_sum: r.attribution_sum,
                attributable: r.attributable,
                seconds: r.seconds,
            })
            .collect();
        ConvergenceJson {
            model: model.path.display().to_string(),
            architecture: model.config.architecture.name(),
            backend: provenance.backend.clone(),
            text_a: text_a.to_string(),
            text_b: text_b.to_string(),
            prompt_a: prompts[0].clone(),
            prompt_b: prompts[1].clone(),
            layer,
            similarity: similarity.name(),
            mode: mode.name(),
            rows,
            provenance: provenance.clone(),
        }
    }
}

pub fn to_pretty_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing plain structs of numbers and strings cannot fail; NaN becomes null.
    let mut bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}
