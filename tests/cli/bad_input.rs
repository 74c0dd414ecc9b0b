//! Every kind of bad input ends in a clear error that names the problem, a non-zero exit, no
//! panic, and no half-written output file.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{copy_model, tiny_model_dir};

/// Runs simattr, expects failure, returns stderr.
fn fails(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_simattr")).args(args).output().expect("run simattr");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "expected failure for {args:?}");
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    stderr
}

fn explain_with(model: &Path, extra: &[&str]) -> String {
    let mut args = vec!["explain", "--model", model.to_str().unwrap(), "--steps", "2"];
    args.extend(extra);
    args.extend(["a man is playing", "someone plays"]);
    fails(&args)
}

fn assert_mentions(stderr: &str, needles: &[&str]) {
    for n in needles {
        assert!(stderr.contains(n), "error should mention `{n}`: {stderr}");
    }
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(path, serde_json::to_string(&value).unwrap()).unwrap();
}

/// Rewrites model.safetensors with one tensor replaced.
fn replace_tensor(dir: &Path, name: &str, dtype: safetensors::Dtype, shape: Vec<usize>, bytes: Vec<u8>) {
    let path = dir.join("model.safetensors");
    let data = std::fs::read(&path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&data).unwrap();
    let mut tensors: Vec<(String, safetensors::tensor::TensorView)> = Vec::new();
    for (n, view) in file.tensors() {
        if n != name {
            tensors.push((n, view));
        }
    }
    tensors.push((name.to_string(), safetensors::tensor::TensorView::new(dtype, shape, &bytes).unwrap()));
    let out = safetensors::tensor::serialize(tensors, None).unwrap();
    std::fs::write(&path, out).unwrap();
}

#[test]
fn missing_model_folder() {
    let stderr = explain_with(Path::new("/nonexistent/model"), &[]);
    assert_mentions(&stderr, &["/nonexistent/model"]);
}

#[test]
fn missing_files_are_named() {
    for file in ["model.safetensors", "tokenizer.json", "config.json", "modules.json", "sentence_bert_config.json"] {
        let dir = copy_model(&tiny_model_dir());
        std::fs::remove_file(dir.path().join(file)).unwrap();
        assert_mentions(&explain_with(dir.path(), &[]), &[file]);
    }
}

#[test]
fn corrupt_json_is_named() {
    let dir = copy_model(&tiny_model_dir());
    std::fs::write(dir.path().join("config.json"), "{ not json").unwrap();
    assert_mentions(&explain_with(dir.path(), &[]), &["config.json", "not valid JSON"]);
}

#[test]
fn corrupt_tokenizer_is_named() {
    let dir = copy_model(&tiny_model_dir());
    std::fs::write(dir.path().join("tokenizer.json"), "{\"version\": 3}").unwrap();
    assert_mentions(&explain_with(dir.path(), &[]), &["tokenizer.json"]);
}

#[test]
fn truncated_safetensors_is_named() {
    let dir = copy_model(&tiny_model_dir());
    let path = dir.path().join("model.safetensors");
    let data = std::fs::read(&path).unwrap();
    std::fs::write(&path, &data[..data.len() / 2]).unwrap();
    assert_mentions(&explain_with(dir.path(), &[]), &["model.safetensors", "not a valid safetensors"]);
    std::fs::write(&path, &data[..5]).unwrap();
    assert_mentions(&explain_with(dir.path(), &[]), &["model.safetensors"]);
}

#[test]
fn wrong_tensor_shape_is_named() {
    let dir = copy_model(&tiny_model_dir());
    let name = "encoder.layer.1.attention.self.key.weight";
    replace_tensor(dir.path(), name, safetensors::Dtype::F32, vec![32, 31], vec![0u8; 32 * 31 * 4]);
    assert_mentions(&explain_with(dir.path(), &[]), &[name, "[32, 31]", "[32, 32]"]);
}

#[test]
fn wrong_tensor_dtype_is_named() {
    let dir = copy_model(&tiny_model_dir());
    let name = "encoder.layer.0.output.dense.bias";
    replace_tensor(dir.path(), name, safetensors::Dtype::I32, vec![32], vec![0u8; 32 * 4]);
    assert_mentions(&explain_with(dir.path(), &[]), &[name, "I32"]);
}

#[test]
fn missing_tensor_is_named() {
    let dir = copy_model(&tiny_model_dir());
    let name = "encoder.layer.2.intermediate.dense.bias";
    let path = dir.path().join("model.safetensors");
    let data = std::fs::read(&path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&data).unwrap();
    let kept: Vec<_> = file.tensors().into_iter().filter(|(n, _)| n != name).collect();
    std::fs::write(&path, safetensors::tensor::serialize(kept, None).unwrap()).unwrap();
    assert_mentions(&explain_with(dir.path(), &[]), &[name, "missing"]);
}

#[test]
fn unknown_architecture_is_named() {
    let dir = copy_model(&tiny_model_dir());
    edit_json(&dir.path().join("config.json"), |c| c["model_type"] = "gpt2".into());
    assert_mentions(
        &explain_with(dir.path(), &[]),
        &[
            "gpt2",
            "unsupported",
            "bert, gemma3_text, jina_bert, modernbert, mpnet, nomic_bert, qwen3, roberta, t5, xlm-roberta",
        ],
    );
}

#[test]
fn unsupported_pooling_is_named() {
    let dir = copy_model(&tiny_model_dir());
    let config = dir.path().join("1_Pooling/config.json");
    edit_json(&config, |c| c["pooling_mode"] = "meanmax".into());
    let names = "cls, mean, max, mean_sqrt_len_tokens, weightedmean, lasttoken";
    assert_mentions(&explain_with(dir.path(), &[]), &["pooling", "meanmax", names]);
    // sentence-transformers concatenates several modes; simattr attributes one vector per mode.
    edit_json(&config, |c| {
        c.as_object_mut().unwrap().remove("pooling_mode");
        c["pooling_mode_cls_token"] = true.into();
        c["pooling_mode_max_tokens"] = true.into();
    });
    assert_mentions(&explain_with(dir.path(), &[]), &["pooling", "cls + mean + max", "exactly one"]);
    edit_json(&config, |c| {
        c["pooling_mode_cls_token"] = false.into();
        c["pooling_mode_max_tokens"] = false.into();
        c["pooling_mode_mean_tokens"] = false.into();
    });
    assert_mentions(&explain_with(dir.path(), &[]), &["pooling", "no pooling mode"]);
}

#[test]
fn unsupported_modules_are_named() {
    let dir = copy_model(&tiny_model_dir());
    edit_json(&dir.path().join("modules.json"), |m| {
        let layer_norm = serde_json::json!({"idx": 3, "name": "3", "path": "3_LayerNorm", "type": "sentence_transformers.models.LayerNorm"});
        m.as_array_mut().unwrap().push(layer_norm);
    });
    assert_mentions(
        &explain_with(dir.path(), &[]),
        &["modules.json", "sentence_transformers.models.LayerNorm", "Dense, Normalize"],
    );
}

/// A Dense module's folder: its config and weights are read and checked, each failure naming
/// the file.
#[test]
fn bad_dense_modules_are_named() {
    let base = common::fixture_dir("tiny-bert-lasttoken");
    let dir = copy_model(&base);
    let config = dir.path().join("2_Dense/config.json");
    edit_json(&config, |c| c["activation_function"] = "torch.nn.modules.activation.Softsign".into());
    assert_mentions(&explain_with(dir.path(), &[]), &["2_Dense/config.json", "Softsign", "Identity, Tanh, ReLU, GELU"]);
    edit_json(&config, |c| c["activation_function"] = "torch.nn.modules.activation.Tanh".into());
    edit_json(&dir.path().join("3_Dense/config.json"), |c| c["in_features"] = 21.into());
    assert_mentions(&explain_with(dir.path(), &[]), &["3_Dense/config.json", "in_features 21", "20 outputs"]);
    edit_json(&dir.path().join("3_Dense/config.json"), |c| c["in_features"] = 20.into());
    std::fs::rename(dir.path().join("2_Dense/model.safetensors"), dir.path().join("2_Dense/pytorch_model.bin"))
        .unwrap();
    assert_mentions(&explain_with(dir.path(), &[]), &["2_Dense", "model.safetensors", "pytorch_model.bin"]);
    std::fs::rename(dir.path().join("2_Dense/pytorch_model.bin"), dir.path().join("2_Dense/model.safetensors"))
        .unwrap();
    edit_json(&config, |c| c["out_features"] = 19.into());
    assert_mentions(&explain_with(dir.path(), &[]), &["linear.weight", "[19, 32]"]);
}

/// `--truncate-dim` outside the embedding is refused before any work, naming the option; so
/// is a prompt that, where the Pooling leaves prompts out, leaves no token to pool once the
/// text is truncated to `max_seq_length` (24 here).
#[test]
fn bad_truncation_and_prompts_are_named() {
    let model = common::fixture_dir("tiny-bert-weightedmean");
    assert_mentions(&explain_with(&model, &["--truncate-dim", "0"]), &["--truncate-dim", "0", "32"]);
    assert_mentions(&explain_with(&model, &["--truncate-dim", "33"]), &["--truncate-dim", "33"]);
    let sqrtlen = common::fixture_dir("tiny-bert-sqrtlen");
    let long_prompt = "a man is playing a guitar on the stage ".repeat(4);
    let args = ["--prompt-a", long_prompt.as_str()];
    assert_mentions(&explain_with(&sqrtlen, &args), &["prompt", "none of the 24", "include_prompt: false"]);
    let stderr = fails(&["embed", "--model", sqrtlen.to_str().unwrap(), "--prompt", long_prompt.as_str(), "hello"]);
    assert_mentions(&stderr, &["prompt", "none of the 24", "include_prompt: false"]);
}

/// Training through a Dense module that is not a linear map (tiny-t5-relu's has a bias and
/// Tanh) is refused, naming it, and writes nothing.
#[test]
fn training_through_dense_modules_is_refused() {
    let out = tempfile::tempdir().unwrap();
    let pairs = out.path().join("pairs.jsonl");
    let line = |n: usize| format!("{{\"a\": \"a man is playing {n}\", \"b\": \"someone plays\", \"score\": 0.8}}\n");
    std::fs::write(&pairs, (0..20).map(line).collect::<String>()).unwrap();
    let model = common::fixture_dir("tiny-t5-relu");
    let target = out.path().join("trained");
    let stderr = fails(&[
        "train",
        "--model",
        model.to_str().unwrap(),
        "--pairs",
        pairs.to_str().unwrap(),
        "--out",
        target.to_str().unwrap(),
    ]);
    assert_mentions(&stderr, &["--model", "2_Dense", "bias", "linear"]);
    assert!(!target.exists(), "nothing is written");
}

/// A change to a `config.json`.
type ConfigEdit = fn(&mut serde_json::Value);

/// The rotary families' configs: every setting the engine does not implement is refused by
/// name, never approximated.
#[test]
fn unsupported_rotary_settings_are_named() {
    let cases: [(&str, ConfigEdit, &[&str]); 13] = [
        ("tiny-qwen3", |c| c["rope_parameters"]["rope_type"] = "yarn".into(), &["rope_type `yarn`"]),
        ("tiny-qwen3", |c| c["layer_types"][1] = "sliding_attention".into(), &["Qwen3", "sliding"]),
        ("tiny-qwen3", |c| c["num_key_value_heads"] = 3.into(), &["num_attention_heads 4", "num_key_value_heads 3"]),
        ("tiny-qwen3", |c| c["hidden_act"] = "gelu".into(), &["Qwen3", "`gelu`", "silu"]),
        ("tiny-gemma3", |c| c["attn_logit_softcapping"] = 50.0.into(), &["attn_logit_softcapping"]),
        ("tiny-gemma3", |c| c["layer_types"][0] = "chunked_attention".into(), &["chunked_attention"]),
        ("tiny-modernbert", |c| c["layer_types"] = serde_json::json!(["full_attention"]), &["layer_types", "3 layers"]),
        ("tiny-nomic-bert", |c| c["prenorm"] = true.into(), &["NomicBERT", "prenorm"]),
        ("tiny-nomic-bert", |c| c["rotary_emb_fraction"] = 0.5.into(), &["rotary_emb_fraction 0.5"]),
        ("tiny-nomic-bert", |c| c["rotary_emb_interleaved"] = true.into(), &["rotary_emb_interleaved"]),
        ("tiny-nomic-bert", |c| c["activation_function"] = "gelu".into(), &["activation_function `gelu`", "swiglu"]),
        ("tiny-jina-bert", |c| c["feed_forward_type"] = "original".into(), &["feed_forward_type", "geglu"]),
        ("tiny-jina-bert", |c| c["position_embedding_type"] = "relative_key".into(), &["relative_key", "alibi"]),
    ];
    for (fixture, edit, needles) in cases {
        let dir = copy_model(&common::fixture_dir(fixture));
        edit_json(&dir.path().join("config.json"), edit);
        let stderr = explain_with(dir.path(), &[]);
        assert_mentions(&stderr, &["config.json"]);
        assert_mentions(&stderr, needles);
    }
    // jina-embeddings-v2-base-code's variant: query and key norms beside query, key and value.
    let dir = copy_model(&common::fixture_dir("tiny-jina-bert"));
    let name = "encoder.layer.0.attention.self.layer_norm_q.weight";
    replace_tensor(dir.path(), name, safetensors::Dtype::F32, vec![32], vec![0; 128]);
    assert_mentions(&explain_with(dir.path(), &[]), &["model.safetensors", "layer_norm_q", "JinaBERT"]);
    // The older spelling: a scaled rotary embedding.
    let dir = copy_model(&common::fixture_dir("tiny-qwen3"));
    std::fs::copy(dir.path().join("config.legacy.json"), dir.path().join("config.json")).unwrap();
    edit_json(&dir.path().join("config.json"), |c| {
        c["rope_scaling"] = serde_json::json!({"rope_type": "linear", "factor": 2.0})
    });
    assert_mentions(&explain_with(dir.path(), &[]), &["config.json", "rope_scaling"]);
}

/// An exact model is recognised by simattr's marker module; with max pooling (where the
/// shift is not a constant of the pooled vector) it is refused, naming the marker.
#[test]
fn exact_models_with_max_pooling_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let base = common::fixture_dir("tiny-mpnet-max");
    let modules = serde_json::json!([
        {"idx": 0, "name": "0", "path": base, "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "shifted_reference", "path": "", "type": "simattr.ShiftedReference"},
        {"idx": 2, "name": "1", "path": base.join("1_Pooling"), "type": "sentence_transformers.models.Pooling"},
    ]);
    std::fs::write(dir.path().join("modules.json"), modules.to_string()).unwrap();
    let stderr = explain_with(dir.path(), &[]);
    assert_mentions(&stderr, &["simattr.ShiftedReference", "max pooling", "modules.json"]);
}

#[test]
fn bad_arguments_are_named() {
    let model = tiny_model_dir();
    assert_mentions(&explain_with(&model, &["--layer", "3"]), &["--layer", "3 layers"]);
    assert_mentions(&explain_with(&model, &["--similarity", "euclid"]), &["--similarity", "euclid"]);
    let m = model.to_str().unwrap();
    assert_mentions(&fails(&["explain", "--model", m, "--steps", "0", "a", "b"]), &["--steps"]);
    assert_mentions(&fails(&["explain", "--model", m, "", "someone plays"]), &["empty"]);
    assert_mentions(&fails(&["explain", "--model", m, "a man", "   "]), &["empty"]);
    assert_mentions(&fails(&["embed", "--model", m, ""]), &["empty"]);
    assert_mentions(&explain_with(&model, &["--rule", "simpson"]), &["--rule", "simpson"]);
    assert_mentions(&explain_with(&model, &["--method", "shap"]), &["--method", "shap"]);
    let max = common::fixture_dir("tiny-mpnet-max");
    assert_mentions(&explain_with(&max, &["--method", "decomposition"]), &["--method", "weighted sum", "max"]);
    let dir = tempfile::tempdir().unwrap();
    let jacobians = dir.path().join("j.safetensors");
    let stderr = explain_with(&model, &["--method", "decomposition", "--jacobians", jacobians.to_str().unwrap()]);
    assert_mentions(&stderr, &["--jacobians", "decomposition"]);
    assert!(!jacobians.exists(), "nothing is written");
    assert_mentions(
        &fails(&["explain", "--model", m, "--rule", "trapezoid", "--steps", "1", "a", "b"]),
        &["--steps", "trapezoid"],
    );
    let too_many = ["explain", "--model", m, "--rule", "gauss-legendre", "--steps", "1001", "a", "b"];
    assert_mentions(&fails(&too_many), &["--steps", "1000", "gauss-legendre"]);
    let convergence =
        |rules: &str, steps: &str| fails(&["convergence", "--model", m, "--rules", rules, "--steps", steps, "a", "b"]);
    assert_mentions(&convergence("riemann-right,simpson", "5"), &["--rules", "simpson"]);
    assert_mentions(&convergence("trapezoid", "5,five"), &["--steps", "five"]);
    assert_mentions(&convergence("trapezoid", "5,5"), &["--steps", "twice"]);
    // Every setting is checked before the first explanation: trapezoid at 1 step fails at once.
    assert_mentions(&convergence("riemann-right,trapezoid", "1,5"), &["--steps", "trapezoid"]);
}

#[test]
fn unwritable_outputs_fail_early_and_leave_nothing() {
    let model = tiny_model_dir();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    let json = json.to_str().unwrap();
    let stderr = explain_with(&model, &["--json", json, "--png", "/nonexistent/dir/out.png"]);
    assert_mentions(&stderr, &["/nonexistent/dir/out.png"]);
    let stderr = explain_with(&model, &["--json", dir.path().to_str().unwrap()]);
    assert_mentions(&stderr, &["directory"]);
    let stderr = fails(&["embed", "--model", model.to_str().unwrap(), "--json", "/nonexistent/e.json", "hi"]);
    assert_mentions(&stderr, &["/nonexistent/e.json"]);
    // A later failure (bad layer) must not leave the JSON behind either.
    explain_with(&model, &["--json", json, "--layer", "9"]);
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
}

#[test]
fn missing_default_model_says_how_to_fetch_it() {
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_simattr"))
        .args(["explain", "a", "b"])
        .env("SIMATTR_CACHE", cache.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_mentions(&stderr, &["scripts/fetch_model.sh all-MiniLM-L6-v2", "--model"]);
}

/// `--model NAME` resolves through the cache: a known model that is missing names the command
/// that fetches it; an unknown name lists the known ones; a model placed in the cache runs by
/// its name.
#[test]
fn model_names_resolve_through_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_simattr")).args(args).env("SIMATTR_CACHE", cache.path()).output().unwrap()
    };
    let out = run(&["embed", "--model", "all-mpnet-base-v2", "a man"]);
    assert_eq!(out.status.code(), Some(1));
    assert_mentions(
        &String::from_utf8_lossy(&out.stderr),
        &["all-mpnet-base-v2", "scripts/fetch_model.sh all-mpnet-base-v2"],
    );
    let out = run(&["embed", "--model", "no-such-model", "a man"]);
    assert_eq!(out.status.code(), Some(1));
    assert_mentions(&String::from_utf8_lossy(&out.stderr), &["no-such-model", "all-MiniLM-L6-v2", "all-mpnet-base-v2"]);
    let out = run(&["embed", "--model", "missing/folder", "a man"]);
    assert_eq!(out.status.code(), Some(1));
    assert_mentions(&String::from_utf8_lossy(&out.stderr), &["missing/folder", "no such folder"]);

    // The tiny model placed in the cache under a name embeds exactly as it does from its folder.
    let named = cache.path().join("models").join("tiny");
    std::fs::create_dir_all(named.parent().unwrap()).unwrap();
    let copy = copy_model(&tiny_model_dir());
    std::fs::rename(copy.path(), &named).unwrap();
    let by_name = run(&["embed", "--model", "tiny", "a man"]);
    assert!(by_name.status.success(), "{}", String::from_utf8_lossy(&by_name.stderr));
    let by_folder = run(&["embed", "--model", tiny_model_dir().to_str().unwrap(), "a man"]);
    assert_eq!(by_name.stdout, by_folder.stdout);
}

#[test]
fn backend_flags_are_checked() {
    let model = tiny_model_dir();
    assert_mentions(&explain_with(&model, &["--backend", "tpu"]), &["--backend", "tpu", "cpu-ref"]);
    assert_mentions(&explain_with(&model, &["--precision", "f64"]), &["--precision", "cpu", "f64", "offers f32"]);
    assert_mentions(
        &explain_with(&model, &["--backend", "cpu-ref", "--precision", "f16"]),
        &["--precision", "f16", "f32, f64"],
    );
    assert_mentions(&explain_with(&model, &["--precision", "f8"]), &["--precision", "f8"]);
    assert_mentions(&explain_with(&model, &["--primal", "f16"]), &["--primal", "f16", "f64, f32"]);
    assert_mentions(
        &explain_with(&model, &["--mode", "sideways"]),
        &["--mode", "sideways", "forward, reverse or auto"],
    );
    assert_mentions(&explain_with(&model, &["--backend", "cpu-ref", "--primal", "f64"]), &["--primal", "cpu-ref"]);
    assert_mentions(&explain_with(&model, &["--threads", "0"]), &["--threads"]);
    assert_mentions(&explain_with(&model, &["--max-memory", "lots"]), &["--max-memory", "lots"]);
}

/// Huge settings are an error that names the limit, never an abort on a failed allocation.
#[test]
fn huge_settings_are_named_errors() {
    let model = tiny_model_dir();
    let m = model.to_str().unwrap();
    let stderr = fails(&["explain", "--model", m, "--steps", "99999999999", "a man", "someone"]);
    assert_mentions(&stderr, &["--steps", "99999999999", "100000"]);
    let stderr = fails(&["explain", "--model", m, "--layer", "99999999999", "a man", "someone"]);
    assert_mentions(&stderr, &["--layer", "99999999999"]);
    // A budget too small for even one token direction of one step says what is needed.
    let stderr = explain_with(&model, &["--max-memory", "1K"]);
    assert_mentions(&stderr, &["--max-memory", "too small", "needs"]);
}

/// Many steps under a small budget stream in passes instead of failing.
#[test]
fn many_steps_stream_within_a_small_budget() {
    let model = tiny_model_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_simattr"))
        .args([
            "--max-memory",
            "64K",
            "explain",
            "--model",
            model.to_str().unwrap(),
            "--steps",
            "3000",
            "a man is playing",
            "someone plays",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let error: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("completeness error"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no completeness error in {stdout}"));
    assert!(error < 1e-3, "completeness error {error} at 3000 steps");
}
