//! The JSON Schemas of the command line's JSON outputs (`schemas/`): every kind of output —
//! `explain --json` with each option that changes its shape, `batch --out` records (explained
//! pairs, `--query` ranks, error records), `embed --json`, `convergence --json` — made by the
//! binary on the tiny fixtures and validated against its schema; the schemas are valid draft
//! 2020-12, closed (a field the program adds without documenting it fails here) and reject
//! broken documents.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::fixture_dir;
use jsonschema::{Registry, Validator};
use serde_json::{json, Value};

/// Where the schemas' `$id`s live: cross-file `$ref`s are relative to it, and resolved here
/// by registering every file under its `$id` (nothing is fetched).
const BASE_URI: &str = "https://simattr.dev/schemas/";
const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";
/// Every file of `schemas/`; `common` holds the definitions the others share.
const SCHEMA_FILES: [&str; 5] = ["common", "explain", "batch-record", "embed", "convergence"];

const A: &str = "A man plays a guitar.";
const B: &str = "Someone plays music.";

fn schemas_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn schema_file(name: &str) -> Value {
    read_json(&schemas_dir().join(format!("{name}.schema.json")))
}

/// The validators, built against a registry of every schema file under its `$id`.
struct Schemas {
    explain: Validator,
    batch_record: Validator,
    embed: Validator,
    convergence: Validator,
    /// The two branches of a batch record, for errors that say more than "not valid under
    /// any of the schemas in oneOf".
    explained_pair: Validator,
    error_record: Validator,
}

impl Schemas {
    fn load() -> Self {
        let files: Vec<(String, Value)> =
            SCHEMA_FILES.iter().map(|name| (format!("{BASE_URI}{name}.schema.json"), schema_file(name))).collect();
        let registry = Registry::new()
            .extend(files.iter().map(|(uri, schema)| (uri.as_str(), schema)))
            .and_then(|builder| builder.prepare())
            .unwrap_or_else(|e| panic!("the schemas do not form a registry: {e}"));
        let build = |schema: &Value, what: &str| {
            jsonschema::draft202012::options()
                .with_registry(&registry)
                .build(schema)
                .unwrap_or_else(|e| panic!("{what} does not compile: {e}"))
        };
        let by_name = |name: &str| {
            let (_, schema) = files.iter().find(|(uri, _)| uri.ends_with(&format!("/{name}.schema.json"))).unwrap();
            build(schema, name)
        };
        let definition = |pointer: &str| build(&json!({ "$ref": format!("{BASE_URI}{pointer}") }), pointer);
        Schemas {
            explain: by_name("explain"),
            batch_record: by_name("batch-record"),
            embed: by_name("embed"),
            convergence: by_name("convergence"),
            explained_pair: definition("batch-record.schema.json#/$defs/explained_pair"),
            error_record: definition("batch-record.schema.json#/$defs/error_record"),
        }
    }

    /// The branch of a batch record its keys say it is meant to be.
    fn record_branch(&self, record: &Value) -> &Validator {
        match record.get("error") {
            Some(_) => &self.error_record,
            None => &self.explained_pair,
        }
    }
}

/// Every validation error of `instance`, one line each with its instance path.
fn errors(validator: &Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| {
            let message = e.to_string();
            let message = match message.char_indices().nth(400) {
                Some((cut, _)) => format!("{}…", &message[..cut]),
                None => message,
            };
            format!("at {:?}: {message}", e.instance_path().to_string())
        })
        .collect()
}

/// One output to check: what made it, and its document.
struct Doc {
    label: String,
    value: Value,
}

fn simattr(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_simattr")).args(args).output().expect("run simattr")
}

/// Runs simattr and checks its exit status.
fn run(args: &[String], status: i32) {
    let out = simattr(args);
    assert_eq!(
        out.status.code(),
        Some(status),
        "simattr {}\nstderr:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn model(name: &str) -> String {
    fixture_dir(name).display().to_string()
}

/// A text of 42 tokens: over tiny-bert's max_seq_length (24), within tiny-mpnet's (64).
fn long_text() -> String {
    vec!["word"; 40].join(" ")
}

/// `explain --json` with `options` on the fixture `fixture`, texts `a` and `b`.
fn explain(dir: &Path, n: usize, fixture: &str, options: &[&str], a: &str, b: &str) -> Doc {
    let path = dir.join(format!("explain-{n}.json"));
    let mut args = strings(&["explain", "--model", &model(fixture), "--json", &path.display().to_string()]);
    args.extend(strings(options));
    args.extend(strings(&[a, b]));
    run(&args, 0);
    Doc { label: format!("explain {fixture} {}", options.join(" ")), value: read_json(&path) }
}

fn jsonl(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{}: {e}: {line}", path.display())))
        .collect()
}

/// The explain outputs: every architecture and pooling, an exact model, each rule, mode,
/// method, similarity and word merge, both precisions of the CPU backends, a truncated text and
/// a pair whose texts `--mode auto` resolved differently.
fn explain_docs(dir: &Path) -> Vec<Doc> {
    let long = long_text();
    let cases: Vec<(&str, Vec<&str>, &str, &str)> = vec![
        ("tiny-bert", vec!["--steps", "5"], A, B),
        ("tiny-bert", vec!["--steps", "5", "--words"], A, B),
        ("tiny-bert", vec!["--steps", "5", "--words", "--word-merge", "mean"], A, B),
        ("tiny-bert-cls", vec!["--steps", "5", "--rule", "gauss-legendre-adaptive"], A, B),
        ("tiny-bert", vec!["--method", "decomposition"], A, B),
        ("tiny-bert", vec!["--steps", "4", "--similarity", "cos-exact", "--mode", "reverse"], A, B),
        ("tiny-mpnet", vec!["--steps", "3", "--rule", "trapezoid", "--similarity", "dot", "--layer", "1"], A, B),
        ("tiny-mpnet-max", vec!["--steps", "5", "--rule", "gauss-legendre", "--mode", "forward"], A, B),
        ("tiny-mpnet-exact", vec!["--steps", "5", "--rule", "gauss-legendre-adaptive", "--words"], A, B),
        ("tiny-roberta", vec!["--steps", "5", "--words", "--mode", "reverse"], A, B),
        ("tiny-roberta", vec!["--backend", "cpu-ref", "--precision", "f64", "--steps", "3"], A, B),
        (
            "tiny-xlm-roberta",
            vec!["--steps", "5", "--similarity", "cos-exact", "--words", "--word-merge", "mean"],
            A,
            B,
        ),
        // The modules after the Transformer, prompts and truncation, and T5.
        ("tiny-bert-weightedmean", vec!["--steps", "3", "--prompt-a", "query", "--prompt-b", "document"], A, B),
        ("tiny-bert-lasttoken", vec!["--steps", "3", "--truncate-dim", "8", "--words"], A, B),
        ("tiny-t5", vec!["--steps", "3", "--mode", "reverse"], A, B),
        // The rotary families: a causal decoder with its query prompt, sandwich norms and
        // sliding windows, ModernBERT's global and local layers.
        ("tiny-qwen3", vec!["--steps", "3", "--prompt-a", "query", "--words"], A, B),
        (
            "tiny-gemma3",
            vec!["--steps", "3", "--mode", "reverse", "--prompt-a", "query", "--prompt-b", "document"],
            A,
            B,
        ),
        ("tiny-modernbert", vec!["--steps", "3", "--layer", "1"], A, B),
        ("tiny-nomic-bert", vec!["--steps", "3", "--prompt-a", "query", "--truncate-dim", "16"], A, B),
        ("tiny-jina-bert", vec!["--steps", "3", "--mode", "reverse"], A, B),
        // Cut at max_seq_length 24: text_a.truncated_from, provenance.truncated.
        ("tiny-bert", vec!["--steps", "2"], long.as_str(), B),
        // 42 tokens over width 32 go reverse, 3 go forward: mode "mixed" (at layer 0, where
        // the cost of each way is the whole depth's).
        ("tiny-mpnet", vec!["--steps", "2", "--layer", "0"], long.as_str(), "short"),
    ];
    cases.iter().enumerate().map(|(n, (fixture, options, a, b))| explain(dir, n, fixture, options, a, b)).collect()
}

/// Batch records: explained pairs with --words (an id from a number, one from the line), error
/// records for a line without `b` and a text over max_seq_length (exit status 3), and a
/// `--query` run whose records carry `rank`.
fn batch_docs(dir: &Path) -> Vec<Doc> {
    let pairs = dir.join("pairs.jsonl");
    let lines = [
        json!({"id": "guitar", "a": A, "b": B}),
        json!({"a": "one", "b": "two"}),
        json!({"id": "no-b", "a": "a text without its pair"}),
        json!({"id": 7, "a": "c", "b": "d"}),
        json!({"id": "too-long", "a": long_text(), "b": "short"}),
    ];
    std::fs::write(&pairs, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let docs = dir.join("docs.txt");
    std::fs::write(&docs, "the first document\nanother one\na guitar is played\n").unwrap();
    let mut out = Vec::new();
    let runs: [(&str, &str, Vec<String>, i32); 2] = [
        ("pairs", "tiny-bert", strings(&["--words", pairs.to_str().unwrap()]), 3),
        ("query", "tiny-xlm-roberta", strings(&["--query", A, "--docs", docs.to_str().unwrap(), "--top", "2"]), 0),
    ];
    for (name, fixture, options, status) in runs {
        let path = dir.join(format!("{name}-records.jsonl"));
        let mut args = strings(&["batch", "--model", &model(fixture), "--steps", "3", "--out", path.to_str().unwrap()]);
        args.extend(options);
        run(&args, status);
        for (n, record) in jsonl(&path).into_iter().enumerate() {
            out.push(Doc { label: format!("batch {name} {fixture}: line {} of --out", n + 1), value: record });
        }
    }
    out
}

fn embed_docs(dir: &Path) -> Vec<Doc> {
    let long = long_text();
    let cases: [(&str, Vec<&str>); 3] = [
        ("tiny-bert", vec!["a", "b"]),
        ("tiny-mpnet-exact", vec!["--raw", A]),
        ("tiny-bert-cls", vec![A, long.as_str()]),
    ];
    cases
        .iter()
        .enumerate()
        .map(|(n, (fixture, options))| {
            let path = dir.join(format!("embed-{n}.json"));
            let mut args = strings(&["embed", "--model", &model(fixture), "--json", path.to_str().unwrap()]);
            args.extend(strings(options));
            run(&args, 0);
            Doc { label: format!("embed {fixture} {}", options.join(" ")), value: read_json(&path) }
        })
        .collect()
}

fn convergence_docs(dir: &Path) -> Vec<Doc> {
    let cases: [(&str, Vec<&str>); 3] = [
        ("tiny-bert", vec!["--steps", "3,5"]),
        ("tiny-gemma3", vec!["--steps", "2", "--prompt-a", "query", "--prompt-b", "document"]),
        (
            "tiny-xlm-roberta",
            vec!["--steps", "2", "--rules", "gauss-legendre-adaptive", "--mode", "reverse", "--similarity", "dot"],
        ),
    ];
    cases
        .iter()
        .enumerate()
        .map(|(n, (fixture, options))| {
            let path = dir.join(format!("convergence-{n}.json"));
            let mut args = strings(&["convergence", "--model", &model(fixture), "--json", path.to_str().unwrap()]);
            args.extend(strings(options));
            args.extend(strings(&["a b", "c d"]));
            run(&args, 0);
            Doc { label: format!("convergence {fixture} {}", options.join(" ")), value: read_json(&path) }
        })
        .collect()
}

/// The values the explanations took at `pointer` (a JSON pointer), as text.
fn values_of<'v>(explanations: impl Iterator<Item = &'v Value>, pointer: &str) -> BTreeSet<String> {
    explanations
        .filter_map(|e| e.pointer(pointer))
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

fn set(values: &[&str]) -> BTreeSet<String> {
    values.iter().map(|s| s.to_string()).collect()
}

#[test]
fn every_output_matches_its_schema() {
    let schemas = Schemas::load();
    let dir = tempfile::tempdir().expect("tempdir");
    let explains = explain_docs(dir.path());
    let records = batch_docs(dir.path());
    let embeds = embed_docs(dir.path());
    let convergences = convergence_docs(dir.path());

    let mut failures = Vec::new();
    let mut check = |validator: &Validator, branch: Option<&Validator>, doc: &Doc, schema: &str| {
        let mut found = errors(validator, &doc.value);
        if !found.is_empty() {
            // A oneOf says little; the branch the record is meant to match says what is wrong.
            found.extend(branch.map(|b| errors(b, &doc.value)).unwrap_or_default());
            failures.push(format!("{} (against {schema}):\n  {}", doc.label, found.join("\n  ")));
        }
    };
    for doc in &explains {
        check(&schemas.explain, None, doc, "explain.schema.json");
    }
    for doc in &records {
        check(&schemas.batch_record, Some(schemas.record_branch(&doc.value)), doc, "batch-record.schema.json");
    }
    for doc in &embeds {
        check(&schemas.embed, None, doc, "embed.schema.json");
    }
    for doc in &convergences {
        check(&schemas.convergence, None, doc, "convergence.schema.json");
    }
    assert!(failures.is_empty(), "{} outputs do not match their schemas:\n{}", failures.len(), failures.join("\n"));

    // The runs above covered every variant the schemas describe, so each was checked.
    let explained = || {
        explains.iter().map(|d| &d.value).chain(records.iter().map(|d| &d.value).filter(|r| r.get("error").is_none()))
    };
    let expect = |pointer: &str, wanted: &[&str]| {
        let seen = values_of(explained(), pointer);
        assert!(seen.is_superset(&set(wanted)), "{pointer}: the runs gave {seen:?}, not all of {wanted:?}");
    };
    expect(
        "/architecture",
        &[
            "bert",
            "mpnet",
            "roberta",
            "xlm-roberta",
            "t5",
            "qwen3",
            "gemma3_text",
            "modernbert",
            "nomic_bert",
            "jina_bert",
        ],
    );
    expect("/pooling", &["mean", "cls", "max"]);
    expect("/mode", &["forward", "reverse", "mixed", "none"]);
    expect("/mode_requested", &["forward", "reverse", "auto"]);
    expect("/method", &["integrated-jacobians", "decomposition"]);
    expect("/similarity", &["cos", "dot", "cos-exact"]);
    expect("/quadrature", &["riemann-right", "trapezoid", "gauss-legendre", "gauss-legendre-adaptive"]);
    expect("/word_merge", &["sum", "mean"]);
    expect("/shifted_reference", &["true", "false"]);
    expect("/provenance/truncated", &["true", "false"]);
    expect("/provenance/precision", &["f32", "f64"]);
    let kinds = |pointer: &str| -> BTreeSet<&'static str> {
        explained().filter_map(|e| e.pointer(pointer)).map(|v| if v.is_null() { "null" } else { "set" }).collect()
    };
    assert_eq!(kinds("/text_a/truncated_from"), BTreeSet::from(["null", "set"]), "truncated_from");
    assert_eq!(kinds("/text_a/quadrature_nodes"), BTreeSet::from(["null", "set"]), "quadrature_nodes");
    assert!(records.iter().any(|r| r.value.get("rank").is_some()), "no --query record with a rank");
    assert!(records.iter().filter(|r| r.value.get("error").is_some()).count() >= 2, "too few error records");
    assert!(
        embeds.iter().any(|d| d.value["texts"].as_array().unwrap().iter().any(|t| !t["truncated_from"].is_null())),
        "no truncated embed text"
    );
}

/// A valid explain output with `--words` from tiny-bert, the start of the broken documents.
fn valid_explanation(dir: &Path) -> Value {
    explain(dir, 0, "tiny-bert", &["--steps", "2", "--words"], A, B).value
}

/// Asserts `validator` rejects `instance`, with an error at `path` that mentions `mention`.
fn assert_rejected(validator: &Validator, instance: &Value, what: &str, path: &str, mention: &str) {
    let found: Vec<(String, String)> =
        validator.iter_errors(instance).map(|e| (e.instance_path().to_string(), e.to_string())).collect();
    assert!(!found.is_empty(), "{what}: the schema accepted it");
    assert!(
        found.iter().any(|(at, message)| at == path && message.contains(mention)),
        "{what}: no error at {path:?} mentioning {mention:?}; the errors: {found:?}"
    );
}

#[test]
fn the_schemas_reject_broken_outputs() {
    let schemas = Schemas::load();
    let dir = tempfile::tempdir().expect("tempdir");
    let valid = valid_explanation(dir.path());
    assert_eq!(errors(&schemas.explain, &valid), Vec::<String>::new(), "the starting document is valid");
    let broken = |change: &dyn Fn(&mut Value)| {
        let mut doc = valid.clone();
        change(&mut doc);
        doc
    };

    // A field the program added without documenting it.
    let unknown = broken(&|d| d["undocumented"] = json!(1));
    assert_rejected(&schemas.explain, &unknown, "an unknown top-level field", "", "undocumented");
    let unknown_nested = broken(&|d| d["text_a"]["undocumented"] = json!(1));
    assert_rejected(&schemas.explain, &unknown_nested, "an unknown field of text_a", "/text_a", "undocumented");
    let unknown_provenance = broken(&|d| d["provenance"]["undocumented"] = json!(true));
    assert_rejected(
        &schemas.explain,
        &unknown_provenance,
        "an unknown provenance field",
        "/provenance",
        "undocumented",
    );
    // A field removed or renamed.
    let missing = broken(&|d| {
        d.as_object_mut().unwrap().remove("completeness_error");
    });
    assert_rejected(&schemas.explain, &missing, "a missing required field", "", "completeness_error");
    let missing_nested = broken(&|d| {
        d["reference_terms"].as_object_mut().unwrap().remove("a__ref_b");
    });
    assert_rejected(&schemas.explain, &missing_nested, "a missing reference term", "/reference_terms", "a__ref_b");
    // A value of the wrong type or outside its set.
    let string_number = broken(&|d| d["score"] = json!("0.98"));
    assert_rejected(&schemas.explain, &string_number, "a string for a number", "/score", "number");
    let string_entry = broken(&|d| d["attributions"][1][1] = json!("0.1"));
    assert_rejected(&schemas.explain, &string_entry, "a string in the matrix", "/attributions/1/1", "number");
    let null_score = broken(&|d| d["score"] = Value::Null);
    assert_rejected(&schemas.explain, &null_score, "null for the score", "/score", "number");
    let bad_enum = broken(&|d| d["pooling"] = json!("weighted"));
    assert_rejected(&schemas.explain, &bad_enum, "an unknown pooling", "/pooling", "weighted");
    let bad_hash = broken(&|d| d["provenance"]["weights_sha256"] = json!("ABC"));
    assert_rejected(&schemas.explain, &bad_hash, "a malformed sha256", "/provenance/weights_sha256", "ABC");
    // The --words fields come together, with provenance.word_merge.
    let partial_words = broken(&|d| {
        d.as_object_mut().unwrap().remove("words_b");
    });
    assert_rejected(&schemas.explain, &partial_words, "words without words_b", "", "words_b");
    let no_provenance_merge = broken(&|d| {
        d["provenance"].as_object_mut().unwrap().remove("word_merge");
    });
    assert_rejected(
        &schemas.explain,
        &no_provenance_merge,
        "--words without provenance.word_merge",
        "/provenance",
        "word_merge",
    );
    // The decomposition has no mode, the integrated Jacobians always one.
    let decomposition_mode = broken(&|d| d["method"] = json!("decomposition"));
    assert_rejected(&schemas.explain, &decomposition_mode, "a decomposition with a mode", "/mode", "none");

    // Batch records: the explanation plus id, line (and rank), or exactly {id, line, error}.
    let mut record = valid.clone();
    record["id"] = json!("pair-1");
    record["line"] = json!(1);
    assert_eq!(errors(&schemas.batch_record, &record), Vec::<String>::new(), "an explained pair is a record");
    record["rank"] = json!(1);
    assert_eq!(errors(&schemas.batch_record, &record), Vec::<String>::new(), "a ranked pair is a record");
    let error = json!({"id": "pair-2", "line": 2, "error": "line 2: field `b` is missing"});
    assert_eq!(errors(&schemas.batch_record, &error), Vec::<String>::new(), "an error record is a record");
    for (what, bad) in [
        ("an explanation without its id", {
            let mut r = record.clone();
            r.as_object_mut().unwrap().remove("id");
            r
        }),
        ("a rank of 0", {
            let mut r = record.clone();
            r["rank"] = json!(0);
            r
        }),
        ("an undocumented record field", {
            let mut r = record.clone();
            r["undocumented"] = json!(1);
            r
        }),
        ("an error record with a fourth field", {
            let mut r = error.clone();
            r["score"] = json!(0.5);
            r
        }),
        ("an error record without its error", json!({"id": "x", "line": 3})),
        ("an error record with a numeric id", json!({"id": 3, "line": 3, "error": "bad"})),
        ("an explanation alone", valid.clone()),
    ] {
        assert!(!schemas.batch_record.is_valid(&bad), "batch-record accepted {what}");
    }

    // embed and convergence carry no attribution settings in their provenance.
    let mut provenance = valid["provenance"].clone();
    let mut embed = json!({
        "model": "m",
        "normalized": true,
        "embeddings": [[0.5, -0.5]],
        "texts": [{"text": "a", "tokens": ["[CLS]", "a", "[SEP]"], "truncated_from": null}],
        "provenance": provenance,
    });
    assert_rejected(&schemas.embed, &embed, "embed with attribution settings", "/provenance/method", "");
    for field in ["method", "layer", "rule", "steps", "similarity", "mode", "word_merge"] {
        provenance.as_object_mut().unwrap().remove(field);
    }
    embed["provenance"] = provenance;
    assert_eq!(errors(&schemas.embed, &embed), Vec::<String>::new(), "the engine-only embed is valid");
    embed["embeddings"][0][0] = json!("0.5");
    assert_rejected(&schemas.embed, &embed, "a string in an embedding", "/embeddings/0/0", "number");
}

/// Every schema is valid draft 2020-12 (against its meta-schema, and compiled above), names
/// its `$id` after its file, and keeps the rules that make it a contract: every object lists
/// its required fields and allows no others, and every field has a description.
#[test]
fn the_schemas_are_valid_draft_2020_12_and_closed() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(schemas_dir())
        .expect("schemas/")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.strip_suffix(".schema.json").map(str::to_string))
        .collect();
    assert_eq!(on_disk, SCHEMA_FILES.iter().map(|s| s.to_string()).collect(), "the schema files");
    let mut problems = Vec::new();
    for name in SCHEMA_FILES {
        let schema = schema_file(name);
        if let Err(e) = jsonschema::draft202012::meta::validate(&schema) {
            problems.push(format!("{name}: not a valid draft 2020-12 schema: {e} (at {})", e.instance_path()));
        }
        if schema["$schema"] != DRAFT_2020_12 {
            problems.push(format!("{name}: $schema is {}, not {DRAFT_2020_12}", schema["$schema"]));
        }
        if schema["$id"] != format!("{BASE_URI}{name}.schema.json") {
            problems.push(format!("{name}: $id {} does not name its file", schema["$id"]));
        }
        if !schema["description"].is_string() {
            problems.push(format!("{name}: no description"));
        }
        lint(&schema, &format!("{name}.schema.json#"), &mut problems);
    }
    Schemas::load();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The one object left open on purpose: the explanation's fields, which explain's root and a
/// batch record each close with `unevaluatedProperties`.
const OPEN_OBJECTS: [&str; 1] = ["explain.schema.json#/$defs/explanation"];

/// Walks the field definitions of `schema` (its `$defs`, `properties`, `items` and `oneOf`
/// branches; not the constraints in `allOf`, `if`, `then`, `else`, `not`).
fn lint(schema: &Value, at: &str, problems: &mut Vec<String>) {
    let Some(object) = schema.as_object() else { return };
    if object.get("type") == Some(&json!("object")) && !OPEN_OBJECTS.contains(&at) {
        if !object.contains_key("required") {
            problems.push(format!("{at}: an object without `required`"));
        }
        let closed = |keyword: &str| object.get(keyword) == Some(&Value::Bool(false));
        if !closed("additionalProperties") && !closed("unevaluatedProperties") {
            problems.push(format!("{at}: an object open to undocumented fields"));
        }
    }
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            let here = format!("{at}/properties/{name}");
            if property.is_object() && property["description"].as_str().is_none_or(str::is_empty) {
                problems.push(format!("{here}: no description"));
            }
            lint(property, &here, problems);
        }
    }
    if let Some(defs) = object.get("$defs").and_then(Value::as_object) {
        for (name, def) in defs {
            lint(def, &format!("{at}/$defs/{name}"), problems);
        }
    }
    if let Some(items) = object.get("items") {
        lint(items, &format!("{at}/items"), problems);
    }
    for (n, branch) in object.get("oneOf").and_then(Value::as_array).into_iter().flatten().enumerate() {
        lint(branch, &format!("{at}/oneOf/{n}"), problems);
    }
}
