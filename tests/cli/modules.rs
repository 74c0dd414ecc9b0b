//! The modules around the Transformer and the newer families through the command line:
//! prompts, `--truncate-dim`, Dense modules and the poolings that weigh tokens, and T5,
//! each against its float64 PyTorch golden (tests/reference/generate_golden_generic.py).

use crate::common;

use std::process::Command;

use common::{f64s, fixture_dir, golden, matrix, max_abs, max_abs_diff};
use serde_json::Value;

fn simattr(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_simattr")).args(args).output().expect("run simattr")
}

/// The golden case of `fixture` that `pick` selects.
fn case(fixture: &str, pick: impl Fn(&Value) -> bool) -> Value {
    let golden = golden(&format!("{fixture}.json"));
    golden["attributions"].as_array().unwrap().iter().find(|c| pick(c)).cloned().expect("a golden case")
}

/// `simattr explain` of `case` on `fixture` with `extra` flags: its `--json` document, after
/// checking the matrix against the golden within 1e-5 of max|A|.
fn explain_case(fixture: &str, case: &Value, extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("pair.json");
    let (model, layer, steps) = (fixture_dir(fixture), case["layer"].to_string(), case["steps"].to_string());
    let mut args = vec!["explain", "--model", model.to_str().unwrap(), "--layer", &layer, "--steps", &steps];
    args.extend(["--similarity", case["similarity"].as_str().unwrap(), "--json", json.to_str().unwrap()]);
    args.extend(extra);
    args.extend([case["text_a"].as_str().unwrap(), case["text_b"].as_str().unwrap()]);
    let out = simattr(&args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let (got, want) = (matrix(&doc["attributions"]).concat(), matrix(&case["attributions"]).concat());
    let err = max_abs_diff(&got, &want) / max_abs(&want);
    assert!(err <= 1e-5, "{fixture} {args:?}: A differs from PyTorch by {err:e} of max|A|");
    doc
}

/// A query prompt against a document prompt: both prompts' tokens are attributed, marked in the
/// JSON, and the matrix is PyTorch's for `encode(prompt_name=…)`'s inputs.
#[test]
fn explain_with_prompts_matches_pytorch() {
    let fixture = "tiny-bert-weightedmean";
    let case = case(fixture, |c| c["prompt_a"] == "query" && c["prompt_b"] == "document" && c["similarity"] == "cos");
    let doc = explain_case(fixture, &case, &["--prompt-a", "query", "--prompt-b", "document"]);
    // "query: " is [CLS] q ##u ##er ##y : as sentence-transformers counts it (prompt_length 6).
    assert_eq!(doc["text_a"]["prompt_tokens"], serde_json::json!([1, 6]));
    assert_eq!(doc["text_b"]["prompt_tokens"], serde_json::json!([1, 9]));
    assert!(doc["text_a"]["text"].as_str().unwrap().starts_with("query: "), "{}", doc["text_a"]["text"]);
    assert_eq!(doc["tokens_a"], case["tokens_a"]);
    assert_eq!(doc["pooling"], "weightedmean");
    // The reference input pads the prompt: only [CLS] and [SEP] stay.
    assert_eq!(doc["text_a"]["reference_ids"], case["reference_ids_a"]);
}

/// `--truncate-dim`: the attributions of the first K dimensions, K in the provenance.
#[test]
fn explain_truncated_matches_pytorch() {
    let fixture = "tiny-bert-weightedmean";
    let case = case(fixture, |c| c["truncate_dim"] == 8 && c["similarity"] == "cos");
    let doc = explain_case(fixture, &case, &["--truncate-dim", "8"]);
    assert_eq!(doc["provenance"]["truncate_dim"], 8);
    let score = doc["score"].as_f64().unwrap();
    assert!((score - case["score"].as_f64().unwrap()).abs() < 1e-6, "score {score} vs {}", case["score"]);
}

/// `embed --prompt` and `--truncate-dim` give what `encode(prompt_name=…, truncate_dim=…)` does.
#[test]
fn embed_with_prompt_and_truncation_matches_encode() {
    let fixture = "tiny-bert-weightedmean";
    let golden = golden(&format!("{fixture}.json"));
    let embeddings = golden["embeddings"].as_array().unwrap();
    let checked = embeddings.iter().filter(|e| !e["prompt"].is_null() || !e["truncate_dim"].is_null());
    let mut count = 0;
    for entry in checked {
        let model = fixture_dir(fixture);
        let mut args = vec!["embed".to_string(), "--model".into(), model.to_str().unwrap().into()];
        if let Some(prompt) = entry["prompt"].as_str() {
            args.extend(["--prompt".into(), prompt.into()]);
        }
        if let Some(k) = entry["truncate_dim"].as_u64() {
            args.extend(["--truncate-dim".into(), k.to_string()]);
        }
        args.push(entry["text"].as_str().unwrap().into());
        let out = simattr(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let got: Vec<f64> = stdout.split_whitespace().map(|v| v.parse().unwrap()).collect();
        let want = f64s(&entry["encode"]);
        assert_eq!(got.len(), want.len(), "{args:?}");
        assert!(max_abs_diff(&got, &want) < 2e-6, "{args:?}: {got:?} vs {want:?}");
        count += 1;
    }
    assert!(count >= 2, "only {count} prompted or truncated embeddings in the golden");
}

/// A T5 encoder (gtr-t5's structure: mean pooling, a Dense module without bias, Normalize)
/// explained from the command line in both modes: PyTorch's matrix, and a reference input
/// with T5's framing (no opening token, `</s>` last).
#[test]
fn explain_t5_matches_pytorch() {
    for mode in ["forward", "reverse"] {
        let case = case("tiny-t5", |c| c["layer"] == 1 && c["similarity"] == "dot");
        let doc = explain_case("tiny-t5", &case, &["--mode", mode]);
        assert_eq!(doc["architecture"], "t5");
        let reference: Vec<u64> =
            doc["text_a"]["reference_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        assert_eq!(reference.last(), Some(&1), "T5's reference ends in </s>");
        assert!(reference[..reference.len() - 1].iter().all(|&id| id == 0), "and pads the rest: {reference:?}");
        assert_eq!(doc["text_a"]["mode"], mode);
    }
}

/// A folder's `default_prompt_name` is applied where no prompt is asked for, as `encode` does,
/// and an empty prompt asks for none.
#[test]
fn the_default_prompt_applies_unless_an_empty_one_is_asked_for() {
    let dir = common::copy_model(&fixture_dir("tiny-bert-weightedmean"));
    let config = dir.path().join("config_sentence_transformers.json");
    let mut value: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    value["default_prompt_name"] = "query".into();
    std::fs::write(&config, value.to_string()).unwrap();
    let embed = |model: &std::path::Path, extra: &[&str]| -> String {
        let mut args = vec!["embed", "--model", model.to_str().unwrap()];
        args.extend(extra);
        args.push("A man is playing a guitar.");
        let out = simattr(&args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let original = fixture_dir("tiny-bert-weightedmean");
    assert_eq!(embed(dir.path(), &[]), embed(&original, &["--prompt", "query"]));
    assert_eq!(embed(dir.path(), &["--prompt", ""]), embed(&original, &[]));
    assert_ne!(embed(dir.path(), &[]), embed(&original, &[]));
}
