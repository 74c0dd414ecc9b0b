//! Checks the device backends (`wgpu`, `cuda-emu`) share: the explain command end to end on
//! them, and a 16-bit storage precision that rounds but stays close.

use std::process::Command;

use serde_json::Value;
use simattr::backend::Backend;

use super::golden_check::{check_attributions, check_embeddings};
use super::{fixture_dir, golden, golden_case, matrix, max_abs, max_abs_diff, tiny_model_dir};

pub fn simattr(args: &[&str]) -> std::process::Output {
    simattr_in(&[], args)
}

/// `simattr ARGS` with `env` added to its environment.
pub fn simattr_in(env: &[(String, String)], args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_simattr")).envs(env.iter().cloned()).args(args).output().expect("run simattr")
}

/// `simattr --backend BACKEND [--precision P] explain …` on the tiny model: the JSON's matrix
/// and the backend it names.
pub fn explain(backend: &str, precision: &str, extra: &[&str], texts: [&str; 2]) -> (Vec<f64>, Value) {
    explain_in(&[], backend, precision, extra, texts)
}

/// `explain` with `env` added to the command's environment.
pub fn explain_in(
    env: &[(String, String)],
    backend: &str,
    precision: &str,
    extra: &[&str],
    texts: [&str; 2],
) -> (Vec<f64>, Value) {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("out.json");
    let model = tiny_model_dir();
    let args = ["--backend", backend, "--precision", precision, "explain", "--model", model.to_str().unwrap()];
    let json = ["--json", json_path.to_str().unwrap()];
    let out = simattr_in(env, &[&args[..], extra, &json, &texts].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let prefix = format!("{backend} {precision}");
    assert!(doc["backend"].as_str().unwrap().starts_with(&prefix), "{} is not {prefix}", doc["backend"]);
    (matrix(&doc["attributions"]).concat(), doc)
}

/// `explain --backend BACKEND` writes the tiny model's golden matrix, in forward and reverse
/// mode, within 1e-5 of max|A|.
pub fn explain_gives_the_golden_matrix(backend: &str) {
    explain_gives_the_golden_matrix_in(&[], backend)
}

/// `explain_gives_the_golden_matrix` with `env` added to the command's environment.
pub fn explain_gives_the_golden_matrix_in(env: &[(String, String)], backend: &str) {
    let case = golden_case(2, 20, "cos");
    let texts = [case["text_a"].as_str().unwrap(), case["text_b"].as_str().unwrap()];
    let want = matrix(&case["attributions"]).concat();
    for mode in ["forward", "reverse"] {
        let (got, doc) = explain_in(env, backend, "f32", &["--layer", "2", "--steps", "20", "--mode", mode], texts);
        assert_eq!(doc["mode"], mode);
        let err = max_abs_diff(&got, &want) / max_abs(&want);
        assert!(err <= 1e-5, "{backend} {mode}: max |ΔA| / max|A| = {err:.2e}");
    }
}

/// A 16-bit storage precision on `backend` keeps the tiny fixtures' golden embeddings within
/// `embedding_tolerance` and attributions within `tolerance` of their largest value, and the
/// matrix really is rounded: it differs from f32's by more than f32's own error (1e-5).
pub fn half_storage_stays_close<B: Backend>(backend: &B, name: &str, embedding_tolerance: f64, tolerance: f64) {
    let precision = backend.precision().name();
    for fixture in ["tiny-bert", "tiny-mpnet"] {
        let golden = golden(&format!("{fixture}.json"));
        check_embeddings(backend, &fixture_dir(fixture), &golden, embedding_tolerance);
        let checked = check_attributions(backend, &fixture_dir(fixture), &golden, tolerance, |c| c["steps"] == 20);
        assert!(checked >= 12, "{fixture}: only {checked} golden cases");
    }
    let texts = ["A man is playing a guitar.", "Hi."];
    let (half, _) = explain(name, precision, &[], texts);
    let (single, _) = explain(name, "f32", &[], texts);
    let err = max_abs_diff(&half, &single) / max_abs(&single);
    assert!(err > 1e-5 && err < tolerance, "{precision} against f32: {err:.2e} of max|A|");
}
