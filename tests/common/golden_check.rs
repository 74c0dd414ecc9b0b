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
use simattr::embed::embed_text;
use simattr::model::SentenceModel;
use simattr::net::Encoder;

use super::{f64s, matrix, max_abs, max_abs_diff, strings};

/// Checks every golden embedding (raw and `encode`) within `tolerance` (absolute).
pub fn check_embeddings<B: Backend>(backend: &B, model_dir: &Path, golden: &Value, tolerance: f64) {
    let model = SentenceModel::load(model_dir).expect("load model");
    let encoder = Encoder::new(backend, &model).expect("encoder");
    let cases = golden["embeddings"].as_array().expect("embeddings");
    assert!(!cases.is_empty());
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let raw = embed_text(&encoder, &model, text, false).unwrap();
        assert_eq!(raw.tokenized.tokens, strings(&case["tokens"]), "tokens of {text:?}");
        let ids: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        assert_eq!(raw.tokenized.ids, ids, "ids of {text:?}");
        let err = max_abs_diff(&raw.vector, &f64s(&case["raw"]));
        assert!(err < tolerance, "raw embedding of {text:?} differs by {err:e}");
        // sentence-transformers' `encode` ran in float32, so it is good to ~1e-7 at best.
        let encoded = embed_text(&encoder, &model, text, true).unwrap();
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
    let model = SentenceModel::load(model_dir).expect("load model");
    let encoder = Encoder::new(backend, &model).expect("encoder");
    let mut cache: HashMap<(String, usize, usize), TextAttribution> = HashMap::new();
    let mut attribute = |text: &str, layer: usize, steps: usize| -> TextAttribution {
        cache
            .entry((text.to_string(), layer, steps))
            .or_insert_with(|| {
                let options =
                    TextOptions { mode, ..TextOptions::new(layer, Quadrature::riemann_right(steps).unwrap()) };
                let tokenized = model.tokenizer.encode(text).unwrap();
                attribute_text(&encoder, &model.tokenizer, tokenized, &options, &()).unwrap()
            })
            .clone()
    };
    let mut checked = 0;
    for case in golden["attributions"].as_array().expect("attributions") {
        if !filter(case) {
            continue;
        }
        let layer = case["layer"].as_u64().unwrap() as usize;
        let steps = case["steps"].as_u64().unwrap() as usize;
        let similarity: Similarity = case["similarity"].as_str().unwrap().parse().unwrap();
        let (ta, tb) = (case["text_a"].as_str().unwrap(), case["text_b"].as_str().unwrap());
        let label = format!("{ta:?} / {tb:?} layer {layer} steps {steps} {}", similarity.name());
        let a = attribute(ta, layer, steps);
        let b = attribute(tb, layer, steps);
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
