//! `explain` as a library job: everything between a parsed request and the bytes of its
//! outputs, so that the CLI, `batch`, the Python package and a server run the same steps and
//! give the same results:
//! - the options a request runs with (`job_options`): a Jacobian file forces reverse mode,
//!   which yields the Jacobians row by row, and the decomposition has none to give;
//! - the size limits of the tensor files, checked on the tokens before any work is done;
//! - the explanation, through a `PairExplainer` (the per-text cache where it has one);
//! - every output rendered to bytes (JSON, PNG, SVG, HTML, safetensors) before any is written,
//!   so that a caller writes all of them or none (`output::files::write_all`).
//!
//! What stays with the caller: where the bytes go (files, an HTTP body, Python objects) and
//! how progress is shown.

use crate::attribution::words::WordMerge;
use crate::attribution::{feature_pairs, Explanation, Method, Mode, Progress, TextOptions};
use crate::backend::Backend;
use crate::batch::PairExplainer;
use crate::error::{Error, Result};
use crate::model::{SentenceModel, Tokenized};
use crate::output::json::ExplainJson;
use crate::output::{heatmap, html, tensors};

/// One output an explain job can render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Artefact {
    /// The `explain --json` document (with the word view when the job has `--words`).
    Json,
    /// The heatmap as PNG.
    Png,
    /// The heatmap as SVG.
    Svg,
    /// The self-contained HTML report (always with a word view: `--words`' merge, or sum).
    Html,
    /// The integrated Jacobians `J_a`, `J_b` and `Δ_a`, `Δ_b`, as safetensors.
    Jacobians,
    /// The feature-pair attributions `[T_a, H, T_b, H]`, as safetensors.
    FeaturePairs,
}

impl Artefact {
    /// The command-line flag that asks for it, for messages.
    pub fn flag(self) -> &'static str {
        match self {
            Artefact::Json => "--json",
            Artefact::Png => "--png",
            Artefact::Svg => "--svg",
            Artefact::Html => "--html",
            Artefact::Jacobians => "--jacobians",
            Artefact::FeaturePairs => "--feature-pairs",
        }
    }

    /// Whether it needs the Jacobians kept (and so reverse mode).
    pub fn keeps_jacobians(self) -> bool {
        matches!(self, Artefact::Jacobians | Artefact::FeaturePairs)
    }
}

/// The options a job asking for `wanted` runs with, and a notice for the user when they
/// differ from the ones asked for (a Jacobian file computes in reverse mode).
pub fn job_options(options: &TextOptions, wanted: &[Artefact]) -> Result<(TextOptions, Option<String>)> {
    let keep_jacobian = wanted.iter().any(|a| a.keeps_jacobians());
    if !keep_jacobian {
        return Ok((*options, None));
    }
    if options.method == Method::Decomposition {
        return Err(Error::argument("--jacobians/--feature-pairs", "the decomposition baseline takes no Jacobian"));
    }
    let notice = (options.mode != Mode::Reverse).then(|| {
        "--jacobians/--feature-pairs: computing in reverse mode, which yields the Jacobians row by row".to_string()
    });
    Ok((TextOptions { mode: Mode::Reverse, keep_jacobian: true, ..*options }, notice))
}

/// An explained pair and its outputs, rendered.
pub struct ExplainOutput {
    pub explanation: Explanation,
    /// The `explain --json` document.
    pub json: ExplainJson,
    /// Each artefact asked for, in the order asked.
    pub artefacts: Vec<(Artefact, Vec<u8>)>,
}

impl ExplainOutput {
    /// A warning per text cut to the model's `max_seq_length`.
    pub fn truncation_warnings(&self, max_seq_length: usize) -> Vec<String> {
        [("text A", &self.explanation.a.tokenized), ("text B", &self.explanation.b.tokenized)]
            .into_iter()
            .filter_map(|(label, t)| truncation_warning(label, t, max_seq_length))
            .collect()
    }
}

/// The warning for a text cut to `max_seq_length`, if it was.
pub fn truncation_warning(label: &str, tokenized: &Tokenized, max_seq_length: usize) -> Option<String> {
    tokenized
        .truncated_from
        .map(|from| format!("{label} has {from} tokens; truncated to max_seq_length {max_seq_length}"))
}

/// Explains `a` and `b`, each after the explainer's prompt for its side, with `explainer` (made with `job_options`' options) and renders
/// `wanted`. Nothing is written; a tensor file over `tensors::MAX_FILE_BYTES` is refused
/// before the integration starts.
pub fn explain<B: Backend>(
    explainer: &mut PairExplainer<'_, '_, B>,
    a: &str,
    b: &str,
    wanted: &[Artefact],
    progress: &dyn Progress,
) -> Result<ExplainOutput> {
    let (tokens_a, tokens_b) = (explainer.tokenize_side(a, 0, "text a")?, explainer.tokenize_side(b, 1, "text b")?);
    // The prompt is part of the text, as it is of what the model reads.
    let (a, b) = (explainer.prompted(a, 0), explainer.prompted(b, 1));
    let (a, b) = (a.as_str(), b.as_str());
    check_tensor_sizes(explainer.embedding_dim(), explainer.hidden(), tokens_a.ids.len(), tokens_b.ids.len(), wanted)?;
    let explanation = explainer.explain_tokens_with(tokens_a, tokens_b, progress)?;
    let json = explainer.explain_json(a, b, &explanation);
    let model = explainer.model();
    let mut artefacts = Vec::with_capacity(wanted.len());
    for &artefact in wanted {
        let bytes = match artefact {
            Artefact::Json => crate::output::json::to_pretty_bytes(&json),
            Artefact::Png | Artefact::Svg => {
                let title = heatmap_title(model, &explanation);
                let (ta, tb) = (&explanation.a.tokenized.tokens, &explanation.b.tokenized.tokens);
                let matrix = &explanation.pair.matrix;
                let prompts = heatmap::Prompts {
                    a: explanation.a.tokenized.prompt_tokens(),
                    b: explanation.b.tokenized.prompt_tokens(),
                };
                if artefact == Artefact::Png {
                    heatmap::heatmap_png(ta, tb, matrix, &title, &prompts)?
                } else {
                    heatmap::heatmap_svg(ta, tb, matrix, &title, &prompts)?
                }
            }
            Artefact::Html => {
                // The report always carries a word view; --json has one only with --words.
                let title = html::pair_title(a, b);
                match json.words {
                    Some(_) => html::explain_page(&json, &title),
                    None => {
                        html::explain_page(&explainer.explain_json_merged(a, b, &explanation, WordMerge::Sum), &title)
                    }
                }
            }
            Artefact::Jacobians => tensors::jacobians_safetensors(&explanation, &tensor_settings(explainer))?,
            Artefact::FeaturePairs => {
                let values = feature_pairs(&explanation.a, &explanation.b, explanation.pair.similarity)
                    .ok_or_else(|| Error::argument("--feature-pairs", "the Jacobians were not kept"))?;
                tensors::feature_pairs_safetensors(&explanation, &values, &tensor_settings(explainer))?
            }
        };
        artefacts.push((artefact, bytes));
    }
    Ok(ExplainOutput { explanation, json, artefacts })
}

/// The heatmap's title: the model, the similarity, the setting, the score and `Σ A`.
pub fn heatmap_title(model: &SentenceModel, e: &Explanation) -> String {
    let p = &e.pair;
    let name = model.path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let setting = match e.method {
        Method::IntegratedJacobians => {
            format!("layer {} {} steps {}", e.layer, e.quadrature.name(), e.quadrature.steps())
        }
        Method::Decomposition => "decomposition".to_string(),
    };
    format!("{name} {} {setting}: score {:.4}, sum A {:.4}", p.similarity.name(), p.score, p.attribution_sum)
}

/// The metadata written into the safetensors files.
fn tensor_settings<B: Backend>(explainer: &PairExplainer<'_, '_, B>) -> Vec<(&'static str, String)> {
    let provenance = explainer.provenance();
    vec![
        ("model", provenance.model.clone()),
        ("similarity", explainer.similarity().name().to_string()),
        ("backend", provenance.backend.clone()),
    ]
}

/// Refuses a Jacobian or feature-pair file larger than `tensors::MAX_FILE_BYTES`.
fn check_tensor_sizes(dim: usize, hidden: usize, ta: usize, tb: usize, wanted: &[Artefact]) -> Result<()> {
    for &artefact in wanted {
        let bytes = match artefact {
            Artefact::Jacobians => tensors::jacobians_bytes(dim, hidden, ta, tb),
            Artefact::FeaturePairs => tensors::feature_pairs_bytes(hidden, ta, tb),
            _ => continue,
        };
        if bytes > tensors::MAX_FILE_BYTES {
            return Err(Error::argument(
                artefact.flag(),
                format!(
                    "the file would take {bytes} bytes ({ta} and {tb} tokens, width {hidden}, f64), over the {} limit",
                    tensors::MAX_FILE_BYTES
                ),
            ));
        }
    }
    Ok(())
}
