//! The real all-MiniLM-L6-v2 (fetched from PyPI by scripts/fetch_model.sh) against PyTorch.

mod common;

use common::golden_check::{check_attributions, check_embeddings};
use common::{golden, minilm_dir};

#[test]
fn embeddings_match_sentence_transformers() {
    check_embeddings(&minilm_dir(), &golden("all-MiniLM-L6-v2.json"), 1e-4);
}

fn attributions_at(layer: u64) {
    let checked =
        check_attributions(&minilm_dir(), &golden("all-MiniLM-L6-v2.json"), 1e-3, |case| case["layer"] == layer);
    assert!(checked >= 2, "only {checked} golden cases at layer {layer}");
}

#[test]
fn attributions_match_pytorch_at_layer_0() {
    attributions_at(0);
}

#[test]
fn attributions_match_pytorch_at_layer_3() {
    attributions_at(3);
}

#[test]
fn attributions_match_pytorch_at_layer_5() {
    attributions_at(5);
}
