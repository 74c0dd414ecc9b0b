//! `simattr train` end to end on the tiny fixtures: the exact model it writes (e(r) = 0
//! exactly, Σ A → score), resume after a kill, divergence, and bad input.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::fixture_dir;
use simattr::attribution::{explain_pair, Quadrature, Rule, Similarity, TextOptions};
use simattr::backend::reference::CpuReference;
use simattr::model::SentenceModel;
use simattr::net::Encoder;

const TEXTS: [&str; 12] = [
    "A man is playing a guitar.",
    "Someone plays an instrument.",
    "The cat sits on the mat.",
    "A dog is lying on the rug.",
    "The children are playing in the park.",
    "Kids play outside in the sun.",
    "A woman is reading a book.",
    "A man is eating an apple.",
    "The sun goes down over the sea.",
    "The birds fly home to their trees.",
    "Two boys ride bikes.",
    "Two girls ride horses.",
];

/// 30 labelled pairs (JSONL, scores on the 0–5 scale) in `dir`.
fn pairs_file(dir: &Path) -> PathBuf {
    let mut lines = String::new();
    for n in 0..30 {
        let (a, b) = (TEXTS[n % 12], TEXTS[(n * 5 + 1) % 12]);
        let score = ((n * 7) % 11) as f64 / 2.0;
        lines.push_str(&serde_json::json!({"a": a, "b": b, "score": score}).to_string());
        lines.push('\n');
    }
    let path = dir.join("pairs.jsonl");
    std::fs::write(&path, lines).unwrap();
    path
}

fn train(model: &str, pairs: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let model = fixture_dir(model);
    let mut args = vec!["train", "--model", model.to_str().unwrap(), "--pairs", pairs.to_str().unwrap()];
    args.extend(["--out", out.to_str().unwrap(), "--threads", "2"]);
    for (option, default) in [("--lr", "5e-3"), ("--batch-size", "4")] {
        if !extra.contains(&option) {
            args.extend([option, default]);
        }
    }
    args.extend(extra);
    Command::new(env!("CARGO_BIN_EXE_simattr")).args(&args).output().expect("run simattr train")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn trained_model_is_exact_and_explains_with_zero_reference_terms() {
    for fixture in ["tiny-bert", "tiny-mpnet"] {
        trained_model_is_exact(fixture, 64);
    }
}

/// Each newer family; tiny-t5 and tiny-gemma3 through their linear Dense modules after
/// pooling (one, and two). Their lively random weights make sharp integrands: 64 nodes leave
/// 1e-3 of the score.
#[test]
fn trained_newer_families_are_exact() {
    for fixture in ["tiny-qwen3", "tiny-modernbert", "tiny-nomic-bert", "tiny-jina-bert", "tiny-t5", "tiny-gemma3"] {
        trained_model_is_exact(fixture, 512);
    }
}

/// `train` on `fixture`: the folder it writes holds the checkpoint's tensors, embeds its
/// reference to exactly zero, and its attributions add up to the score (`nodes` Gauss-Legendre
/// nodes) with zero reference terms.
fn trained_model_is_exact(fixture: &str, nodes: usize) {
    {
        let dir = tempfile::tempdir().unwrap();
        let out_dir = dir.path().join("exact");
        let out = train(fixture, &pairs_file(dir.path()), &out_dir, &["--epochs", "2"]);
        assert!(out.status.success(), "{fixture}: {}", stderr(&out));
        let log = stderr(&out);
        assert!(log.contains("epoch 2:") && log.contains("dev Spearman"), "{log}");

        let model = SentenceModel::load(&out_dir).unwrap();
        assert!(model.shifted_reference, "{fixture}: modules.json lists the shift");
        let original = SentenceModel::load(&fixture_dir(fixture)).unwrap();
        assert_ne!(model.weights_sha256, original.weights_sha256, "{fixture}: the weights changed");
        // The checkpoint's own tensors, every one, under its own name and shape.
        let tensors = |dir: &std::path::Path| -> Vec<(String, Vec<usize>)> {
            let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
            let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            let mut names: Vec<_> = file.tensors().into_iter().map(|(n, v)| (n, v.shape().to_vec())).collect();
            names.sort();
            names
        };
        assert_eq!(tensors(&out_dir), tensors(&fixture_dir(fixture)), "{fixture}: the exported tensors");
        // The Dense modules, trained, in their own folders, in order.
        assert_eq!(model.dense.len(), original.dense.len(), "{fixture}: Dense modules");
        for (n, (ours, theirs)) in model.dense.iter().zip(&original.dense).enumerate() {
            assert_eq!(ours.path, format!("{}_Dense", n + 2));
            assert_eq!(tensors(&out_dir.join(&ours.path)), tensors(&fixture_dir(fixture).join(&theirs.path)));
            let (trained, given) = (&model.params.heads[n].weight, &original.params.heads[n].weight);
            assert_ne!(trained.data(), given.data(), "{fixture}: Dense module {n} was not trained");
        }
        assert_eq!(model.normalize, original.normalize, "{fixture}: Normalize");

        // e(r) = 0 exactly, for every length.
        let b = CpuReference::<f64>::new();
        let encoder = Encoder::new(&b, &model).unwrap();
        let framing = model.tokenizer.reference_framing();
        for len in [2, 5, 11] {
            let e = encoder.embed(&framing.ids(len), 1, encoder.pool_all()).unwrap();
            assert!(e.iter().all(|&v| v == 0.0), "{fixture}: e(r) of length {len} is {e:?}");
        }
        // Σ A → the score itself: the reference terms are zero and the quadrature converges.
        let options = TextOptions::new(0, Quadrature::new(Rule::GaussLegendre, nodes).unwrap());
        for similarity in [Similarity::Dot, Similarity::Cos] {
            let e = explain_pair(&encoder, &model.tokenizer, TEXTS[0], TEXTS[3], &options, similarity, &()).unwrap();
            let r = e.pair.reference_terms;
            assert_eq!([r.reference_a_b, r.a_reference_b, r.reference_a_reference_b], [0.0; 3], "{fixture}");
            let error = (e.pair.attribution_sum - e.pair.score).abs();
            assert!(
                error <= 1e-6 * e.pair.score.abs().max(1.0),
                "{fixture} {similarity:?}: Σ A {} vs score {}",
                e.pair.attribution_sum,
                e.pair.score
            );
        }
        let record: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out_dir.join("simattr_training.json")).unwrap()).unwrap();
        assert_eq!(record["history"].as_array().unwrap().len(), 3, "before training and two epochs");
    }
}

#[test]
fn resume_after_a_kill_gives_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = pairs_file(dir.path());
    let options = ["--epochs", "3", "--dropout", "0.1"];
    let whole = train("tiny-mpnet", &pairs, &dir.path().join("whole"), &options);
    assert!(whole.status.success(), "{}", stderr(&whole));

    let out = dir.path().join("killed");
    let model = fixture_dir("tiny-mpnet");
    let mut args = vec!["train", "--model", model.to_str().unwrap(), "--pairs", pairs.to_str().unwrap()];
    args.extend(["--out", out.to_str().unwrap(), "--lr", "5e-3", "--batch-size", "4", "--threads", "2"]);
    args.extend(options);
    let killed = Command::new(env!("CARGO_BIN_EXE_simattr"))
        .args(&args)
        .env("SIMATTR_TRAIN_ABORT_AFTER_EPOCH", "2")
        .output()
        .unwrap();
    assert!(!killed.status.success(), "the run was meant to die after epoch 2");
    assert!(!out.exists(), "a killed run leaves no model folder");
    let checkpoints = dir.path().join("killed.checkpoints");
    assert_eq!(std::fs::read_to_string(checkpoints.join("latest")).unwrap(), "checkpoint-epoch-2");

    let mut resume_args = args.clone();
    resume_args.push("--resume");
    let resumed = Command::new(env!("CARGO_BIN_EXE_simattr")).args(&resume_args).output().unwrap();
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(stderr(&resumed).contains("resuming after epoch 2"), "{}", stderr(&resumed));
    let weights = |d: &str| std::fs::read(dir.path().join(d).join("model.safetensors")).unwrap();
    assert!(weights("whole") == weights("killed"), "resumed weights differ from the uninterrupted run's");

    // Resuming with other options is refused, naming both.
    let mut other = resume_args.clone();
    other.extend(["--seed", "7", "--force"]);
    let refused = Command::new(env!("CARGO_BIN_EXE_simattr")).args(&other).output().unwrap();
    assert!(!refused.status.success() && stderr(&refused).contains("another run"), "{}", stderr(&refused));
}

#[test]
fn a_diverging_run_stops_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("exact");
    let run =
        train("tiny-bert", &pairs_file(dir.path()), &out, &["--lr", "1e30", "--warmup", "0", "--max-grad-norm", "0"]);
    assert!(!run.status.success());
    let log = stderr(&run);
    assert!(log.contains("training diverged at epoch 1") && log.contains("lower --lr"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(!out.exists(), "nothing half-written");
}

/// Epoch 1 is one update at learning rate 0 (the warm-up's first), epoch 2 one at 1e30/3: its
/// loss is still finite, but the weights it leaves give NaN scores. The run stops there, before
/// epoch 2's checkpoint, and names epoch 1's as the one kept.
#[test]
fn divergence_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("exact");
    let extra = ["--lr", "1e30", "--warmup", "1", "--max-grad-norm", "0", "--batch-size", "32", "--epochs", "3"];
    let run = train("tiny-bert", &pairs_file(dir.path()), &out, &extra);
    assert!(!run.status.success());
    let log = stderr(&run);
    assert!(log.contains("training diverged at epoch 2") && log.contains("kept in"), "{log}");
    let checkpoints = dir.path().join("exact.checkpoints");
    assert_eq!(std::fs::read_to_string(checkpoints.join("latest")).unwrap(), "checkpoint-epoch-1");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(checkpoints.join("checkpoint-epoch-1/state.json")).unwrap())
            .unwrap();
    assert_eq!(state["epochs_done"], 1);
    assert!(!out.exists());
}

#[test]
fn bad_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = pairs_file(dir.path());
    let out = dir.path().join("exact");
    let unlabelled = dir.path().join("unlabelled.tsv");
    std::fs::write(&unlabelled, "a\tb\none\ttwo\n").unwrap();
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        ("tiny-bert", vec!["--dropout", "1.5"], "--dropout"),
        ("tiny-bert", vec!["--objective", "l1"], "--objective"),
        ("tiny-bert", vec!["--batch-size", "0"], "--batch-size"),
        ("tiny-bert", vec!["--score-scale", "10"], "--score-scale"),
        ("tiny-mpnet-max", vec![], "max"),
    ];
    for (model, extra, named) in cases {
        let run = train(model, &pairs, &out, &extra);
        assert!(!run.status.success(), "{extra:?}");
        assert!(stderr(&run).contains(named) && !stderr(&run).contains("panicked"), "{extra:?}: {}", stderr(&run));
    }
    let run = train("tiny-bert", &unlabelled, &out, &[]);
    assert!(!run.status.success() && stderr(&run).contains("score"), "{}", stderr(&run));
    let run = train("tiny-bert", &dir.path().join("missing.jsonl"), &out, &[]);
    assert!(!run.status.success() && stderr(&run).contains("missing.jsonl"), "{}", stderr(&run));
    let gpu = Command::new(env!("CARGO_BIN_EXE_simattr"))
        .args(["--backend", "wgpu", "train", "--pairs", pairs.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!gpu.status.success() && stderr(&gpu).contains("cpu backend"), "{}", stderr(&gpu));
    assert!(!out.exists());
}
