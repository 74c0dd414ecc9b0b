//! The command line end to end on the tiny model: what it prints and the files it writes,
//! checked against the PyTorch golden values.

use crate::common;

use std::process::Command;

use common::{f64s, golden, golden_case, matrix, max_abs, max_abs_diff, strings, tiny_model_dir};
use serde_json::Value;

fn simattr(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_simattr")).args(args).output().expect("run simattr")
}

#[test]
fn explain_writes_json_and_png_matching_pytorch() {
    let case = golden_case(2, 20, "cos");
    let dir = tempfile::tempdir().unwrap();
    let (json_path, png_path) = (dir.path().join("pair.json"), dir.path().join("pair.png"));
    let model = tiny_model_dir();
    let out = simattr(&[
        "explain",
        "--model",
        model.to_str().unwrap(),
        "--layer",
        "2",
        "--steps",
        "20",
        "--json",
        json_path.to_str().unwrap(),
        "--png",
        png_path.to_str().unwrap(),
        case["text_a"].as_str().unwrap(),
        case["text_b"].as_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("strongest token pairs") && stdout.contains("completeness error"), "{stdout}");

    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(strings(&doc["tokens_a"]), strings(&case["tokens_a"]));
    assert_eq!(strings(&doc["tokens_b"]), strings(&case["tokens_b"]));
    assert_eq!((doc["layer"].as_u64(), doc["steps"].as_u64()), (Some(2), Some(20)));
    assert_eq!(doc["similarity"], "cos");
    assert_eq!(doc["backend"], "cpu f32 (f64 primal)", "the default backend is the fast CPU backend");
    let (got, want) = (matrix(&doc["attributions"]).concat(), matrix(&case["attributions"]).concat());
    assert!(max_abs_diff(&got, &want) <= 1e-4 * max_abs(&want));
    assert!((doc["score"].as_f64().unwrap() - case["score"].as_f64().unwrap()).abs() < 1e-5);
    assert!((doc["attribution_sum"].as_f64().unwrap() - got.iter().sum::<f64>()).abs() < 1e-9);
    for key in ["ref_a__b", "a__ref_b", "ref_a__ref_b"] {
        let (g, w) = (doc["reference_terms"][key].as_f64().unwrap(), case["reference_terms"][key].as_f64().unwrap());
        assert!((g - w).abs() < 1e-5, "{key}: {g} vs {w}");
    }

    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png_path).unwrap()));
    let reader = decoder.read_info().expect("a valid PNG");
    let info = reader.info();
    assert!(info.width > 100 && info.height > 100, "{}×{}", info.width, info.height);
}

/// Runs `explain --json` on the tiny model for the golden case at layer 2 with `steps` and
/// `similarity`, plus `options`; returns the process output and the JSON it wrote.
fn explain_golden_case(options: &[&str], steps: u64, similarity: &str) -> (std::process::Output, Value) {
    let case = golden_case(2, steps, similarity);
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("pair.json");
    let (model, steps) = (tiny_model_dir(), steps.to_string());
    let mut args = vec!["explain", "--model", model.to_str().unwrap(), "--layer", "2", "--steps", &steps];
    args.extend(["--similarity", similarity]);
    args.extend(options);
    args.extend([
        "--json",
        json_path.to_str().unwrap(),
        case["text_a"].as_str().unwrap(),
        case["text_b"].as_str().unwrap(),
    ]);
    let out = simattr(&args);
    assert!(out.status.success(), "{options:?}: {}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    (out, doc)
}

/// `explain_golden_case` with cos, its matrix checked against the golden one within 1e-5 of
/// max|A|.
fn explain_golden_case_with(options: &[&str], steps: u64) -> Value {
    let (_, doc) = explain_golden_case(options, steps, "cos");
    let case = golden_case(2, steps, "cos");
    let (got, want) = (matrix(&doc["attributions"]).concat(), matrix(&case["attributions"]).concat());
    assert!(max_abs_diff(&got, &want) <= 1e-5 * max_abs(&want), "{options:?}");
    doc
}

/// `--primal f32` keeps the primal states in f32 too, and says so in the JSON.
#[test]
fn primal_f32_is_named_and_matches_pytorch() {
    assert_eq!(explain_golden_case_with(&["--primal", "f32"], 20)["backend"], "cpu f32");
}

/// `--mode reverse` computes `P` from output cotangents, says so, and gives the golden matrix;
/// the default, `auto`, takes forward mode for these short texts (T ≪ D).
#[test]
fn reverse_mode_is_named_and_matches_pytorch() {
    let doc = explain_golden_case_with(&["--mode", "reverse"], 5);
    assert_eq!(
        (&doc["mode"], &doc["text_a"]["mode"], &doc["text_b"]["mode"]),
        (&"reverse".into(), &"reverse".into(), &"reverse".into())
    );
    let doc = explain_golden_case_with(&[], 5);
    assert_eq!((&doc["mode"], &doc["mode_requested"]), (&"forward".into(), &"auto".into()));
    assert_eq!((&doc["text_a"]["mode"], &doc["text_b"]["mode"]), (&"forward".into(), &"forward".into()));
}

/// `--mode auto` decides per text: on tiny-mpnet (D = 32, three layers from layer 0) a
/// 50-token text goes in reverse mode and a short one in forward mode, and the matrix is
/// forward mode's.
#[test]
fn auto_mode_takes_reverse_for_a_text_longer_than_d() {
    let long = "the quick brown fox jumps over the lazy dog and then runs far away into the dark green forest \
                where many other animals live together in peace and quiet for a very long time indeed";
    let model = common::fixture_dir("tiny-mpnet");
    let dir = tempfile::tempdir().unwrap();
    let run = |mode: &str| {
        let json_path = dir.path().join(format!("{mode}.json"));
        let args = ["explain", "--model", model.to_str().unwrap(), "--layer", "0", "--steps", "3", "--mode", mode];
        let out = simattr(&[&args[..], &["--json", json_path.to_str().unwrap(), long, "a short text"]].concat());
        assert!(out.status.success(), "{mode}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_str::<Value>(&std::fs::read_to_string(&json_path).unwrap()).unwrap()
    };
    let (auto, forward) = (run("auto"), run("forward"));
    let tokens = auto["tokens_a"].as_array().unwrap().len();
    assert!(tokens > 40, "the long text has {tokens} tokens, not more than D = 32 by enough");
    assert_eq!((&auto["text_a"]["mode"], &auto["text_b"]["mode"]), (&"reverse".into(), &"forward".into()));
    assert_eq!((&auto["mode"], &auto["mode_requested"]), (&"mixed".into(), &"auto".into()));
    let (got, want) = (matrix(&auto["attributions"]).concat(), matrix(&forward["attributions"]).concat());
    assert!(max_abs_diff(&got, &want) <= 1e-5 * max_abs(&want), "auto differs from forward mode");
}

/// `--jacobians` writes J and Δ of both texts as safetensors: contracting each J with its Δ
/// gives P, and `P_aᵀ P_b` is the matrix of the JSON written beside it (dot similarity).
/// `--feature-pairs` in the same run writes `[T_a, H, T_b, H]`, which summed over both H is
/// that matrix too.
#[test]
fn jacobians_and_feature_pairs_contract_to_the_attributions() {
    let dir = tempfile::tempdir().unwrap();
    let (tensors_path, pairs_path) = (dir.path().join("pair.safetensors"), dir.path().join("features.safetensors"));
    let options = ["--jacobians", tensors_path.to_str().unwrap(), "--feature-pairs", pairs_path.to_str().unwrap()];
    let (out, doc) = explain_golden_case(&options, 5, "dot");
    assert!(String::from_utf8_lossy(&out.stderr).contains("reverse mode"), "says that it ran in reverse mode");
    assert_eq!(doc["mode"], "reverse");
    let bytes = std::fs::read(&tensors_path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = header.metadata().clone().unwrap();
    assert_eq!(metadata["tokens_a"], serde_json::to_string(&doc["tokens_a"]).unwrap());
    assert_eq!(metadata["mode"], "reverse");
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let read = |name: &str| -> (Vec<usize>, Vec<f64>) {
        let view = file.tensor(name).unwrap();
        assert_eq!(view.dtype(), safetensors::Dtype::F64, "{name}");
        let values = view.data().chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect();
        (view.shape().to_vec(), values)
    };
    // P[d, i] = Σ_h J[d, i, h] Δ[i, h].
    let projection = |text: &str| -> (usize, usize, Vec<f64>) {
        let ((j_shape, j), (d_shape, delta)) = (read(&format!("J_{text}")), read(&format!("delta_{text}")));
        let (dims, tokens, width) = (j_shape[0], j_shape[1], j_shape[2]);
        assert_eq!(d_shape, vec![tokens, width]);
        let mut p = vec![0.0; dims * tokens];
        for d in 0..dims {
            for i in 0..tokens {
                p[d * tokens + i] = (0..width).map(|h| j[(d * tokens + i) * width + h] * delta[i * width + h]).sum();
            }
        }
        (dims, tokens, p)
    };
    let ((dims, ta, pa), (_, tb, pb)) = (projection("a"), projection("b"));
    assert_eq!((ta, tb), (strings(&doc["tokens_a"]).len(), strings(&doc["tokens_b"]).len()));
    let mut a = vec![0.0; ta * tb];
    for i in 0..ta {
        for j in 0..tb {
            a[i * tb + j] = (0..dims).map(|d| pa[d * ta + i] * pb[d * tb + j]).sum();
        }
    }
    let want = matrix(&doc["attributions"]).concat();
    assert!(max_abs_diff(&a, &want) <= 1e-6 * max_abs(&want), "J·Δ does not give the JSON's matrix");

    let bytes = std::fs::read(&pairs_path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let view = file.tensor("feature_pairs").unwrap();
    let width = view.shape()[1];
    assert_eq!(view.shape(), [ta, width, tb, width]);
    let values: Vec<f64> = view.data().chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect();
    let mut summed = vec![0.0; ta * tb];
    for (n, v) in values.iter().enumerate() {
        let (i, j) = (n / (width * tb * width), (n / width) % tb);
        summed[i * tb + j] += v;
    }
    assert!(max_abs_diff(&summed, &want) <= 1e-6 * max_abs(&want), "feature pairs do not sum to the matrix");
}

#[test]
fn embed_matches_sentence_transformers_encode_and_raw() {
    let g = golden("tiny-bert.json");
    let cases = g["embeddings"].as_array().unwrap();
    let texts: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap()).collect();
    let model = tiny_model_dir();
    let dir = tempfile::tempdir().unwrap();
    for (raw, key) in [(false, "encode"), (true, "raw")] {
        let path = dir.path().join(format!("{key}.json"));
        let mut args = vec!["embed", "--model", model.to_str().unwrap(), "--json", path.to_str().unwrap()];
        if raw {
            args.push("--raw");
        }
        args.extend(&texts);
        let out = simattr(&args);
        assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let embeddings = doc["embeddings"].as_array().unwrap();
        assert_eq!(embeddings.len(), cases.len());
        for (got, case) in embeddings.iter().zip(cases) {
            assert!(max_abs_diff(&f64s(got), &f64s(&case[key])) < 1e-4, "{key} of {}", case["text"]);
        }
        // The over-long text is truncated, and the user is told.
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("truncated to max_seq_length 24"), "{stderr}");
    }
}

#[test]
fn similarity_prints_the_cosine() {
    let case = golden_case(0, 5, "cos");
    let model = tiny_model_dir();
    let out = simattr(&[
        "similarity",
        "--model",
        model.to_str().unwrap(),
        case["text_a"].as_str().unwrap(),
        case["text_b"].as_str().unwrap(),
    ]);
    assert!(out.status.success());
    let printed: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!((printed - case["score"].as_f64().unwrap()).abs() < 1e-5);
}

/// Every backend and precision, on one and two threads, under a memory cap, against the
/// float64 golden: f32 storage to 1e-5 of max|A|, f64 (the reference) to 1e-10.
#[test]
fn every_backend_and_precision_explains_the_same_pair() {
    let case = golden_case(2, 5, "dot");
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model_dir();
    let want = matrix(&case["attributions"]).concat();
    for (backend, precision, primal, threads, tolerance, name) in [
        ("cpu", "f32", "", "1", 1e-5, "cpu f32 (f64 primal)"),
        ("cpu", "f32", "", "2", 1e-5, "cpu f32 (f64 primal)"),
        ("cpu", "f32", "f32", "2", 1e-5, "cpu f32"),
        ("cpu-ref", "f32", "", "2", 1e-5, "cpu-reference f32"),
        ("cpu-ref", "f64", "", "2", 1e-10, "cpu-reference f64"),
    ] {
        let json_path = dir.path().join(format!("{backend}-{precision}-{primal}-{threads}.json"));
        let primal_flag: &[&str] = if primal.is_empty() { &[] } else { &["--primal", primal] };
        let out = simattr(
            &[
                &["--backend", backend, "--precision", precision, "--threads", threads, "--max-memory", "64M"],
                primal_flag,
                &[
                    "explain",
                    "--model",
                    model.to_str().unwrap(),
                    "--layer",
                    "2",
                    "--steps",
                    "5",
                    "--similarity",
                    "dot",
                    "--json",
                    json_path.to_str().unwrap(),
                    case["text_a"].as_str().unwrap(),
                    case["text_b"].as_str().unwrap(),
                ],
            ]
            .concat(),
        );
        assert!(out.status.success(), "{backend} {precision}: {}", String::from_utf8_lossy(&out.stderr));
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
        assert_eq!(doc["backend"], name);
        let err = max_abs_diff(&matrix(&doc["attributions"]).concat(), &want) / max_abs(&want);
        assert!(err <= tolerance, "{backend} {precision} threads {threads}: {err:e} of max|A| from the golden");
    }
}

/// Every family and pooling mode through the command line: the JSON names them, and its matrix
/// is the PyTorch golden one (MPNet with max pooling, XLM-RoBERTa with its SentencePiece tokens).
#[test]
fn explain_names_architecture_and_pooling() {
    for (fixture, architecture, pooling) in [
        ("tiny-mpnet-max", "mpnet", "max"),
        ("tiny-xlm-roberta", "xlm-roberta", "mean"),
        ("tiny-bert-cls", "bert", "cls"),
    ] {
        let golden = golden(&format!("{fixture}.json"));
        let case = golden["attributions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["layer"] == 0 && c["steps"] == 5 && c["similarity"] == "dot")
            .expect("golden case")
            .clone();
        let dir = tempfile::tempdir().unwrap();
        let json_path = dir.path().join("pair.json");
        let model = common::fixture_dir(fixture);
        let out = simattr(&[
            "explain",
            "--model",
            model.to_str().unwrap(),
            "--layer",
            "0",
            "--steps",
            "5",
            "--similarity",
            "dot",
            "--json",
            json_path.to_str().unwrap(),
            case["text_a"].as_str().unwrap(),
            case["text_b"].as_str().unwrap(),
        ]);
        assert!(out.status.success(), "{fixture}: {}", String::from_utf8_lossy(&out.stderr));
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
        assert_eq!(doc["architecture"], architecture, "{fixture}");
        assert_eq!(doc["pooling"], pooling, "{fixture}");
        assert_eq!(strings(&doc["tokens_a"]), strings(&case["tokens_a"]), "{fixture}");
        let (got, want) = (matrix(&doc["attributions"]).concat(), matrix(&case["attributions"]).concat());
        let err = max_abs_diff(&got, &want) / max_abs(&want);
        assert!(err <= 1e-5, "{fixture}: max |ΔA| / max|A| = {err:.2e}");
    }
}

/// `convergence` on the tiny model: one row per rule and step count, in the order asked; each
/// row's errors are those `explain` reports at that rule and step count; Gauss–Legendre's error
/// is below right Riemann's at the same cost.
#[test]
fn convergence_reports_what_explain_reports() {
    let dir = tempfile::tempdir().unwrap();
    let (model, json_path) = (tiny_model_dir(), dir.path().join("convergence.json"));
    let (m, j) = (model.to_str().unwrap(), json_path.to_str().unwrap());
    let (a, b) = ("A man is playing a guitar.", "Someone plays an instrument.");
    let args = ["convergence", "--model", m, "--layer", "2", "--rules", "riemann-right,gauss-legendre"];
    let out = simattr(&[&args[..], &["--steps", "4,16", "--json", j, a, b]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("gauss-legendre") && stdout.contains("completeness error"), "{stdout}");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let rows = doc["rows"].as_array().unwrap();
    let settings: Vec<(&str, u64)> =
        rows.iter().map(|r| (r["rule"].as_str().unwrap(), r["steps"].as_u64().unwrap())).collect();
    assert_eq!(settings, [("riemann-right", 4), ("riemann-right", 16), ("gauss-legendre", 4), ("gauss-legendre", 16)]);
    for (row, rule, steps) in [(&rows[3], "gauss-legendre", "16"), (&rows[0], "riemann-right", "4")] {
        let explain_json = dir.path().join(format!("{rule}.json"));
        let args = ["explain", "--model", m, "--layer", "2", "--rule", rule, "--steps", steps];
        let out = simattr(&[&args[..], &["--json", explain_json.to_str().unwrap(), a, b]].concat());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let e: Value = serde_json::from_str(&std::fs::read_to_string(&explain_json).unwrap()).unwrap();
        assert_eq!(e["quadrature"], rule);
        let (got, want) = (row["completeness_error"].as_f64().unwrap(), e["completeness_error"].as_f64().unwrap());
        assert!((got - want).abs() <= 1e-12 * want.abs().max(1e-300), "{rule} {steps}: {got} vs explain's {want}");
        let identity = e["text_a"]["relative_identity_error"].as_f64().unwrap();
        assert!((row["relative_identity_error_a"].as_f64().unwrap() - identity).abs() <= 1e-12 * identity);
    }
    let error = |row: &Value| row["completeness_error"].as_f64().unwrap();
    assert!(error(&rows[3]) < error(&rows[1]) && error(&rows[2]) < error(&rows[0]), "{rows:?}");
}

/// `convergence --prompt-a/--prompt-b` explains the prompted texts, as `explain` does with the
/// same prompts: the same completeness error row for row, the prompts named in the JSON, and not
/// what the unprompted texts give.
#[test]
fn convergence_takes_prompts_as_explain_does() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::fixture_dir("tiny-gemma3");
    let m = model.to_str().unwrap();
    let (a, b) = ("A man is playing a guitar.", "Someone plays an instrument.");
    let prompts = ["--prompt-a", "query", "--prompt-b", "document"];
    let run = |args: &[&str], name: &str| -> Value {
        let path = dir.path().join(name);
        let out = simattr(&[args, &["--json", path.to_str().unwrap(), a, b]].concat());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    };
    let settings = ["--layer", "1", "--rules", "riemann-right", "--steps", "6"];
    let prompted = run(&[&["convergence", "--model", m][..], &settings, &prompts].concat(), "prompted.json");
    assert_eq!(prompted["prompt_a"], "task: search result | query: ");
    assert_eq!(prompted["prompt_b"], "title: none | text: ");
    let plain = run(&[&["convergence", "--model", m][..], &settings].concat(), "plain.json");
    assert!(plain["prompt_a"].is_null() && plain["prompt_b"].is_null());
    let explained = run(
        &[&["explain", "--model", m, "--layer", "1", "--rule", "riemann-right", "--steps", "6"][..], &prompts].concat(),
        "explain.json",
    );
    let number = |doc: &Value, pointer: &str| doc.pointer(pointer).and_then(Value::as_f64).unwrap();
    let (got, want) = (number(&prompted, "/rows/0/completeness_error"), number(&explained, "/completeness_error"));
    assert!((got - want).abs() <= 1e-12 * want.abs(), "{got} vs explain's {want}");
    let (with, without) = (number(&prompted, "/rows/0/attribution_sum"), number(&plain, "/rows/0/attribution_sum"));
    assert!((with - without).abs() > 1e-6 * with.abs(), "the prompts changed nothing: {with} vs {without}");
}

/// `--rule gauss-legendre-adaptive` reports, per text, the nodes it fitted to that text's path:
/// `--steps` of them, inside (0, 1), ascending, weights summing to 1; the fixed rules report
/// none. Its completeness error is below right Riemann's at five times the steps.
#[test]
fn adaptive_rule_reports_its_nodes_per_text() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model_dir();
    let (a, b) = ("A man is playing a guitar.", "Someone plays an instrument.");
    let run = |rule: &str, steps: &str| -> Value {
        let json_path = dir.path().join(format!("{rule}-{steps}.json"));
        let args = ["explain", "--model", model.to_str().unwrap(), "--rule", rule, "--steps", steps];
        let out = simattr(&[&args[..], &["--json", json_path.to_str().unwrap(), a, b]].concat());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap()
    };
    let adaptive = run("gauss-legendre-adaptive", "12");
    assert_eq!(adaptive["quadrature"], "gauss-legendre-adaptive");
    for text in ["text_a", "text_b"] {
        let nodes = adaptive[text]["quadrature_nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 12, "{text}");
        let alphas: Vec<f64> = nodes.iter().map(|n| n["alpha"].as_f64().unwrap()).collect();
        assert!(alphas.windows(2).all(|w| w[0] < w[1]) && alphas[0] > 0.0 && alphas[11] < 1.0, "{alphas:?}");
        let weights: f64 = nodes.iter().map(|n| n["weight"].as_f64().unwrap()).sum();
        assert!((weights - 1.0).abs() < 1e-12, "{text}: weights sum to {weights}");
    }
    let riemann = run("riemann-right", "60");
    assert!(riemann["text_a"]["quadrature_nodes"].is_null());
    let error = |doc: &Value| doc["completeness_error"].as_f64().unwrap();
    assert!(error(&adaptive) < error(&riemann), "{} vs {}", error(&adaptive), error(&riemann));
}

#[test]
fn explain_json_carries_words_and_provenance() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("pair.json");
    let model = tiny_model_dir();
    let (a, b) = ("Guitars, unbelievably loud.", "A quiet piano");
    let run = |merge: &str| -> Value {
        let out = simattr(&[
            "explain",
            "--model",
            model.to_str().unwrap(),
            "--layer",
            "1",
            "--steps",
            "7",
            "--rule",
            "trapezoid",
            "--words",
            "--word-merge",
            merge,
            "--json",
            json_path.to_str().unwrap(),
            a,
            b,
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("strongest word pairs"));
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap()
    };
    let doc = run("sum");
    // The words are the text's, whatever the sub-word split (the tiny vocabulary splits a lot).
    assert_eq!(strings(&doc["words_a"]), ["[CLS]", "Guitars", ",", "unbelievably", "loud", ".", "[SEP]"]);
    assert_eq!(strings(&doc["words_b"]), ["[CLS]", "A", "quiet", "piano", "[SEP]"]);
    assert!(strings(&doc["tokens_a"]).len() > 7, "the fixture should split words into pieces");
    // Summing keeps completeness: the word matrix adds up to the token matrix.
    let words = matrix(&doc["word_attributions"]);
    let total: f64 = words.iter().flatten().sum();
    assert!((total - doc["attribution_sum"].as_f64().unwrap()).abs() < 1e-12);
    // The mean divides each block by its token pairs.
    let mean = matrix(&run("mean")["word_attributions"]);
    let sizes = |tokens: &Value, words: usize| -> Vec<f64> {
        // Tokens per word: a word of the fixture text ends where the next begins; count the
        // pieces by the ## marks (BERT WordPiece).
        let mut sizes = vec![0.0; words];
        let mut word = 0;
        for (n, token) in strings(tokens).iter().enumerate() {
            if n > 0 && !token.starts_with("##") {
                word += 1;
            }
            sizes[word.min(words - 1)] += 1.0;
        }
        sizes
    };
    let (sizes_a, sizes_b) = (sizes(&doc["tokens_a"], words.len()), sizes(&doc["tokens_b"], words[0].len()));
    for (i, row) in words.iter().enumerate() {
        for (j, &sum) in row.iter().enumerate() {
            assert!((mean[i][j] - sum / (sizes_a[i] * sizes_b[j])).abs() < 1e-15, "word pair {i}, {j}");
        }
    }
    // Provenance: the settings asked for and the weights' own sha256.
    let provenance = &doc["provenance"];
    let sha = Command::new("sha256sum").arg(model.join("model.safetensors")).output().expect("sha256sum");
    let sha = String::from_utf8_lossy(&sha.stdout).split_whitespace().next().unwrap().to_string();
    assert_eq!(provenance["weights_sha256"], sha);
    assert_eq!(provenance["simattr_version"], env!("CARGO_PKG_VERSION"));
    let expected = [
        ("layer", Value::from(1)),
        ("steps", 7.into()),
        ("rule", "trapezoid".into()),
        ("similarity", "cos".into()),
        ("mode", "auto".into()),
        ("method", "integrated-jacobians".into()),
        ("word_merge", "sum".into()),
        ("precision", "f32".into()),
        ("exact_model", false.into()),
        ("truncated", false.into()),
        ("architecture", "bert".into()),
    ];
    for (field, value) in expected {
        assert_eq!(provenance[field], value, "provenance.{field}");
    }
}

/// The summary brackets each text's prompt tokens and stars them in the strongest pairs, as
/// `text_X.prompt_tokens` of the JSON says.
#[test]
fn the_summary_marks_the_prompts_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::fixture_dir("tiny-qwen3");
    let json = dir.path().join("e.json");
    let (a, b) = ("A man is playing a guitar.", "Someone plays an instrument.");
    let out = simattr(&[
        "explain",
        "--model",
        model.to_str().unwrap(),
        "--steps",
        "3",
        "--prompt-a",
        "query",
        "--top",
        "400",
        "--json",
        json.to_str().unwrap(),
        a,
        b,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let record: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let tokens: Vec<&str> = record["tokens_a"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    let range = &record["text_a"]["prompt_tokens"];
    let (start, end) = (range[0].as_u64().unwrap() as usize, range[1].as_u64().unwrap() as usize);
    assert!(start < end && end < tokens.len(), "a prompt and a text: {range}");
    let line = stdout.lines().find(|l| l.starts_with("tokens a")).unwrap();
    let bracketed = format!("[{}]", tokens[start..end].join(" "));
    assert!(line.contains(&bracketed), "{line} should bracket {bracketed}");
    assert!(record["text_b"].get("prompt_tokens").is_none_or(Value::is_null), "text b has no prompt");
    assert!(!stdout.lines().find(|l| l.starts_with("tokens b")).unwrap().contains('['));
    // Every pair listed: a row token is starred exactly when it is the prompt's.
    assert!(stdout.contains("strongest token pairs (* a prompt's token):"));
    let pairs: Vec<&str> = stdout.lines().filter(|l| l.contains(" ↔ ")).collect();
    assert_eq!(pairs.len(), tokens.len() * record["tokens_b"].as_array().unwrap().len());
    let starred = pairs.iter().filter(|l| l.split(" ↔ ").next().unwrap().trim_end().ends_with('*')).count();
    assert_eq!(starred, (end - start) * record["tokens_b"].as_array().unwrap().len());
}
