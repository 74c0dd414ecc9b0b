//! The tiny random BERT against PyTorch (tests/reference, float64, xsbert-style reverse mode).

mod common;

use common::golden_check::{check_attributions, check_embeddings};
use common::{golden, tiny_model_dir};

#[test]
fn embeddings_match_sentence_transformers() {
    check_embeddings(&tiny_model_dir(), &golden("tiny-bert.json"), 1e-4);
}

#[test]
fn attributions_match_pytorch_reverse_mode() {
    let checked = check_attributions(&tiny_model_dir(), &golden("tiny-bert.json"), 1e-4, |_| true);
    // 3 pairs × 2 layers × 2 step counts × 2 similarities.
    assert!(checked >= 24, "only {checked} golden cases");
}
