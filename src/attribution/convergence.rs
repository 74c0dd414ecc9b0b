//! How fast each quadrature rule converges on one pair (`simattr convergence`): for every rule
//! and step count, the completeness error of `A` and each text's identity error, and how long
//! the explanation took. Every row is a whole explanation at that setting, so the errors are
//! exactly what `explain --rule R --steps N` reports.

use std::time::Instant;

use crate::attribution::quadrature::{Quadrature, Rule};
use crate::attribution::{explain_tokenized, Progress, Similarity, TextOptions};
use crate::backend::Backend;
use crate::error::Result;
use crate::model::{TextTokenizer, Tokenized};
use crate::net::Encoder;

/// One rule at one step count.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvergenceRow {
    pub rule: Rule,
    pub steps: usize,
    /// `|Σ A − (score − reference terms)|`.
    pub completeness_error: f64,
    /// The same relative to `|score − reference terms|`.
    pub relative_completeness_error: f64,
    /// Each text's `max_d |Σ_i P_di − (e_d(x) − e_d(r))| / max_d |e_d(x) − e_d(r)|`.
    pub relative_identity_errors: [f64; 2],
    pub attribution_sum: f64,
    pub attributable: f64,
    /// Wall time of the explanation (both texts' passes and the pair).
    pub seconds: f64,
}

/// Explains the texts `tokens` (a and b, each after its prompt where it has one) once per rule
/// and step count, with everything else as
/// `options` says (its quadrature is replaced). Rows come rule by rule, steps ascending as given.
#[allow(clippy::too_many_arguments)]
pub fn convergence<B: Backend>(
    encoder: &Encoder<'_, B>,
    tokenizer: &TextTokenizer,
    tokens: [Tokenized; 2],
    rules: &[Rule],
    steps: &[usize],
    options: &TextOptions,
    similarity: Similarity,
    progress: &dyn Progress,
) -> Result<Vec<ConvergenceRow>> {
    // Every setting is checked before the first explanation runs.
    let settings: Vec<Quadrature> =
        rules.iter().flat_map(|&rule| steps.iter().map(move |&n| Quadrature::new(rule, n))).collect::<Result<_>>()?;
    let mut rows = Vec::with_capacity(settings.len());
    for quadrature in settings {
        let options = TextOptions { quadrature, ..*options };
        let start = Instant::now();
        let e = explain_tokenized(encoder, tokenizer, tokens.clone(), &options, similarity, progress)?;
        let seconds = start.elapsed().as_secs_f64();
        let p = &e.pair;
        let attributable = p.attributable();
        rows.push(ConvergenceRow {
            rule: quadrature.rule(),
            steps: quadrature.steps(),
            completeness_error: p.completeness_error(),
            relative_completeness_error: p.completeness_error() / attributable.abs().max(f64::MIN_POSITIVE),
            relative_identity_errors: [e.a.relative_identity_error(), e.b.relative_identity_error()],
            attribution_sum: p.attribution_sum,
            attributable,
            seconds,
        });
    }
    Ok(rows)
}
