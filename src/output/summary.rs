//! The human-readable summary `explain` prints.

use std::fmt::Write;

use crate::attribution::{ConvergenceRow, Explanation, Method, PairAttribution};
use crate::output::json::WordsJson;

pub fn explanation_summary(e: &Explanation, top: usize) -> String {
    let p = &e.pair;
    let (ta, tb) = (&e.a.tokenized.tokens, &e.b.tokenized.tokens);
    let (prompt_a, prompt_b) = (e.a.tokenized.prompt_tokens(), e.b.tokenized.prompt_tokens());
    let mut s = String::new();
    let _ = writeln!(s, "tokens a ({}): {}", ta.len(), with_prompt(ta, &prompt_a));
    let _ = writeln!(s, "tokens b ({}): {}", tb.len(), with_prompt(tb, &prompt_b));
    let _ = match e.method {
        Method::IntegratedJacobians => writeln!(
            s,
            "layer {}, {} steps ({}), similarity {}",
            e.layer,
            e.quadrature.steps(),
            e.quadrature.name(),
            p.similarity.name()
        ),
        Method::Decomposition => {
            writeln!(s, "decomposition (output token states, the baseline), similarity {}", p.similarity.name())
        }
    };
    let prompted = !prompt_a.is_empty() || !prompt_b.is_empty();
    let _ = writeln!(s, "\nstrongest token pairs{}:", if prompted { " (* a prompt's token)" } else { "" });
    let mark = |tokens: &[String], prompt: &std::ops::Range<usize>, k: usize| match prompt.contains(&k) {
        true => format!("{}*", tokens[k]),
        false => tokens[k].clone(),
    };
    for (i, j, v) in p.strongest_pairs(top) {
        let _ = writeln!(s, "  {:>+10.5}  {:>16} ↔ {}", v, mark(ta, &prompt_a, i), mark(tb, &prompt_b, j));
    }
    let r = &p.reference_terms;
    let _ = writeln!(s, "\nscore                 {:+.6}", p.score);
    let _ = writeln!(s, "sum of attributions   {:+.6}", p.attribution_sum);
    let _ = writeln!(
        s,
        "reference terms       ref_a·b {:+.6}  a·ref_b {:+.6}  ref_a·ref_b {:+.6}",
        r.reference_a_b, r.a_reference_b, r.reference_a_reference_b
    );
    let _ = writeln!(s, "attributable          {:+.6}  (score − ref_a·b − a·ref_b + ref_a·ref_b)", p.attributable());
    let _ = writeln!(s, "in short              {}", reference_terms_note(p));
    let _ = writeln!(s, "completeness error    {:.3e}", p.completeness_error());
    let _ = writeln!(
        s,
        "identity error        a {:.3e} ({:.2}%)  b {:.3e} ({:.2}%)",
        e.a.identity_error(),
        100.0 * e.a.relative_identity_error(),
        e.b.identity_error(),
        100.0 * e.b.relative_identity_error()
    );
    s
}

/// The tokens, the prompt's (`prompt`) in brackets: `[Query : ] A man …`.
fn with_prompt(tokens: &[String], prompt: &std::ops::Range<usize>) -> String {
    let mut parts: Vec<String> = Vec::with_capacity(tokens.len());
    for (k, token) in tokens.iter().enumerate() {
        let open = if k == prompt.start && !prompt.is_empty() { "[" } else { "" };
        let close = if k + 1 == prompt.end { "]" } else { "" };
        parts.push(format!("{open}{token}{close}"));
    }
    parts.join(" ")
}

/// One plain line on what the reference terms mean for this pair, and, where they are not 0,
/// how to get attributions that add up to the score.
pub fn reference_terms_note(p: &PairAttribution) -> String {
    let (score, pairs) = (p.score, p.attributable());
    let reference = score - pairs;
    if reference.abs() <= 1e-12 * score.abs().max(1.0) {
        return format!(
            "the reference terms are 0, so the token pairs account for the whole score {score:+.4} \
             (their sum differs from it by the completeness error only)"
        );
    }
    format!(
        "score {score:+.4} = token pairs {pairs:+.4} + reference terms {reference:+.4}, the texts' similarity \
         to empty texts of their length, which no token pair carries; for pairs that add up to the \
         score, explain with an exact model (`simattr train`, docs/method.md)"
    )
}

/// `explain --words`: the strongest word pairs, after the token summary.
pub fn word_pairs_summary(words: &WordsJson, top: usize) -> String {
    let mut pairs: Vec<(usize, usize, f64)> = words
        .word_attributions
        .iter()
        .enumerate()
        .flat_map(|(i, row)| row.iter().enumerate().map(move |(j, &v)| (i, j, v)))
        .collect();
    pairs.sort_by(|x, y| y.2.abs().total_cmp(&x.2.abs()));
    let mut s = format!("\nstrongest word pairs ({} of token pairs):\n", words.word_merge);
    for (i, j, v) in pairs.into_iter().take(top) {
        let _ = writeln!(s, "  {:>+10.5}  {:>16} ↔ {}", v, words.words_a[i], words.words_b[j]);
    }
    s
}

/// The table `convergence` prints: one line per rule and step count.
pub fn convergence_table(rows: &[ConvergenceRow]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<15} {:>6}  {:>18}  {:>10}  {:>14}  {:>14}  {:>9}",
        "rule", "steps", "completeness error", "(relative)", "identity a rel", "identity b rel", "seconds"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:<15} {:>6}  {:>18.3e}  {:>10.2e}  {:>14.2e}  {:>14.2e}  {:>9.3}",
            r.rule.name(),
            r.steps,
            r.completeness_error,
            r.relative_completeness_error,
            r.relative_identity_errors[0],
            r.relative_identity_errors[1],
            r.seconds
        );
    }
    s
}
