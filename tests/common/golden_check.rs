//! Compares the engine on any backend with a golden file from
//! tests/reference/generate_golden.py (float64 PyTorch, xsbert-style reverse mode).
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;
use simattr::attribution::{
    attribute_text, Mode, PairAttribution, Quadrature, Similarity, TextAttribution, TextOptions,
};
use simattr::backend::Backend;
use simattr::embed::embed_prompted;
use simattr::model::SentenceModel;
use simattr::net::Encoder;

use super::{f64s, matrix, max_abs, max_abs_diff, strings};

/// A case's `truncate_dim` (the generic generator's goldens carry one; `null` or missing: none).
fn truncate_dim(case: &Value) -> Option<usize> {
    case.get("truncate_dim").and_then(Value::as_u64).map(|k| k as usize)
}

/// The model in `model_dir`, embedding and attributing the first `truncate_dim` dimensions.
fn load_truncated(model_dir: &Path, truncate_dim: Option<usize>) -> SentenceModel {
    let mut model = SentenceModel::load(model_dir).expect("load model");
    model.truncate_dim = truncate_dim;
    model
}

/// The distinct `truncate_dim`s of `cases`, in order of first use.
fn truncations(cases: &[Value]) -> Vec<Option<usize>> {
    let mut seen = Vec::new();
    cases.iter().map(truncate_dim).for_each(|k| {
        if !seen.contains(&k) {
            seen.push(k)
        }
    });
    seen
}

/// Checks every golden embedding (raw and `encode`) within `tolerance` (absolute).
pub fn check_embeddings<B: Backend>(backend: &B, model_dir: &Path, golden: &Value, tolerance: f64) {
    let cases = golden["embeddings"].as_array().expect("embeddings");
    assert!(!cases.is_empty());
    for truncation in truncations(cases) {
        let model = load_truncated(model_dir, truncation);
        let encoder = Encoder::new(backend, &model).expect("encoder");
        let mine = cases.iter().filter(|case| truncate_dim(case) == truncation);
        check_embeddings_with(&encoder, &model, mine, tolerance);
    }
}

fn check_embeddings_with<'c, B: Backend>(
    encoder: &Encoder<'_, B>,
    model: &SentenceModel,
    cases: impl Iterator<Item = &'c Value>,
    tolerance: f64,
) {
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let prompt = case.get("prompt").and_then(Value::as_str);
        let raw = embed_prompted(encoder, model, text, prompt, false).unwrap();
        assert_eq!(raw.tokenized.tokens, strings(&case["tokens"]), "tokens of {text:?}");
        let ids: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        assert_eq!(raw.tokenized.ids, ids, "ids of {text:?}");
        let err = max_abs_diff(&raw.vector, &f64s(&case["raw"]));
        assert!(err < tolerance, "raw embedding of {text:?} differs by {err:e}");
        // sentence-transformers' `encode` ran in float32, so it is good to ~1e-7 at best.
        let encoded = embed_prompted(encoder, model, text, prompt, true).unwrap();
        let err = max_abs_diff(&encoded.vector, &f64s(&case["encode"]));
        assert!(err < tolerance.max(1e-5), "encode() of {text:?} differs by {err:e}");
    }
}

/// Checks every golden attribution in forward mode; `relative` is the tolerance as a fraction
/// of max|A|. Returns how many cases were checked.
pub fn check_attributions<B: Backend>(
    backend: &B,
    model_dir: &Path,
    golden: &Value,
    relative: f64,
    filter: impl Fn(&Value) -> bool,
) -> usize {
    check_attributions_in(Mode::Forward, backend, model_dir, golden, relative, filter)
}

/// `check_attributions` with `P` computed in `mode`.
pub fn check_attributions_in<B: Backend>(
    mode: Mode,
    backend: &B,
    model_dir: &Path,
    golden: &Value,
    relative: f64,
    filter: impl Fn(&Value) -> bool,
) -> usize {
    let cases = golden["attributions"].as_array().expect("attributions");
    let mut checked = 0;
    for truncation in truncations(cases) {
        let model = load_truncated(model_dir, truncation);
        let encoder = Encoder::new(backend, &model).expect("encoder");
        let mine = cases.iter().filter(|case| truncate_dim(case) == truncation && filter(case));
        checked += check_attributions_with(mode, &encoder, &model, mine, relative);
    }
    checked
}

fn check_attributions_with<'c, B: Backend>(
    mode: Mode,
    encoder: &Encoder<'_, B>,
    model: &SentenceModel,
    cases: impl Iterator<Item = &'c Value>,
    relative: f64,
) -> usize {
    let backend = encoder.backend;
    let mut cache: HashMap<(String, Option<String>, usize, usize), TextAttribution> = HashMap::new();
    let mut attribute = |text: &str, prompt: Option<&str>, layer: usize, steps: usize| -> TextAttribution {
        cache
            .entry((text.to_string(), prompt.map(str::to_string), layer, steps))
            .or_insert_with(|| {
                let options =
                    TextOptions { mode, ..TextOptions::new(layer, Quadrature::riemann_right(steps).unwrap()) };
                let prompt = model.prompt(prompt);
                let tokenized = model.tokenizer.encode_with_prompt(text, prompt.as_deref()).unwrap();
                attribute_text(encoder, &model.tokenizer, tokenized, &options, &()).unwrap()
            })
            .clone()
    };
    let mut checked = 0;
    for case in cases {
        let layer = case["layer"].as_u64().unwrap() as usize;
        let steps = case["steps"].as_u64().unwrap() as usize;
        let similarity: Similarity = case["similarity"].as_str().unwrap().parse().unwrap();
        let (ta, tb) = (case["text_a"].as_str().unwrap(), case["text_b"].as_str().unwrap());
        let label = format!("{ta:?} / {tb:?} layer {layer} steps {steps} {}", similarity.name());
        let prompt = |key: &str| case.get(key).and_then(Value::as_str);
        let a = attribute(ta, prompt("prompt_a"), layer, steps);
        let b = attribute(tb, prompt("prompt_b"), layer, steps);
        for (side, text) in [("a", &a), ("b", &b)] {
            if let Some(ids) = case.get(format!("reference_ids_{side}")) {
                let want: Vec<u32> = ids.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
                assert_eq!(text.reference_ids, want, "{label}: reference ids of {side}");
            }
        }
        assert_eq!(a.tokenized.tokens, strings(&case["tokens_a"]), "{label}");
        assert_eq!(b.tokenized.tokens, strings(&case["tokens_b"]), "{label}");
        let pair = PairAttribution::combine(&a, &b, similarity);
        let expected: Vec<f64> = matrix(&case["attributions"]).concat();
        let scale = max_abs(&expected);
        assert!(scale > 0.0, "{label}: golden matrix is all zero");
        let err = max_abs_diff(&pair.matrix, &expected);
        eprintln!("{} {}: {label}: max |ΔA| / max|A| = {:.2e}", backend.name(), mode.name(), err / scale);
        assert!(err <= relative * scale, "{label}: max |ΔA| = {err:e} > {relative:e}·max|A| = {:e}", relative * scale);

        let close = |name: &str, got: f64, want: &Value| {
            let want = want.as_f64().unwrap();
            let tol = (relative * scale.max(want.abs()) * 10.0).max(1e-14);
            assert!((got - want).abs() <= tol, "{label}: {name} {got} vs golden {want}");
        };
        close("score", pair.score, &case["score"]);
        close("attribution_sum", pair.attribution_sum, &case["attribution_sum"]);
        let r = &case["reference_terms"];
        close("ref_a__b", pair.reference_terms.reference_a_b, &r["ref_a__b"]);
        close("a__ref_b", pair.reference_terms.a_reference_b, &r["a__ref_b"]);
        close("ref_a__ref_b", pair.reference_terms.reference_a_reference_b, &r["ref_a__ref_b"]);
        // The embeddings are O(1): absolute at the matrix's relative tolerance, 1e-5 at least.
        let emb_err = max_abs_diff(&a.reference_embedding, &f64s(&case["reference_embedding_a"]));
        assert!(emb_err < relative.max(1e-5), "{label}: reference embedding of a differs by {emb_err:e}");
        checked += 1;
    }
    checked
}
