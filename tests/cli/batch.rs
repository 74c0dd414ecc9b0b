//! `simattr batch`: records equal single `explain` runs, each distinct text is integrated once
//! (in memory and through the disk cache), a killed run resumes to the same file, bad lines
//! become error records, and `--query` ranks documents by the score it explains.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{minilm_dir, tiny_model_dir};
use serde_json::{json, Value};

fn simattr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_simattr")).args(args).output().expect("run simattr")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn records(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().map(|line| serde_json::from_str(line).expect("a record is one JSON line")).collect()
}

fn write_jsonl(path: &Path, rows: &[Value]) {
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// The numbers the closing line reports: "texts: C computed, M reused from memory, D from the
/// disk cache".
fn text_counts(out: &Output) -> (usize, usize, usize) {
    let text = stderr(out);
    let tail = text.split("texts: ").nth(1).unwrap_or_else(|| panic!("no text counts in: {text}"));
    let numbers: Vec<usize> = tail
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(3)
        .map(|s| s.parse().unwrap())
        .collect();
    (numbers[0], numbers[1], numbers[2])
}

/// The record without its batch fields: what `explain --json` writes for the same pair.
fn as_explain(record: &Value) -> Value {
    let mut record = record.clone();
    let object = record.as_object_mut().unwrap();
    for field in ["id", "line", "rank"] {
        object.remove(field);
    }
    record
}

fn explain_json(model: &Path, settings: &[&str], a: &str, b: &str, dir: &Path) -> Value {
    let path = dir.join("single.json");
    let mut args = vec!["explain", "--model", model.to_str().unwrap()];
    args.extend_from_slice(settings);
    args.extend_from_slice(&["--json", path.to_str().unwrap(), a, b]);
    let out = simattr(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// 100 distinct sentences.
fn sentences() -> Vec<String> {
    let subjects = ["A man", "The woman", "A child", "The old dog", "A young cat"];
    let verbs = ["plays", "watches", "paints", "sells"];
    let objects = ["a guitar", "the sea", "some flowers", "an old car", "a red ball"];
    let mut texts = Vec::new();
    for s in subjects {
        for v in verbs {
            for o in objects {
                texts.push(format!("{s} {v} {o}."));
            }
        }
    }
    texts
}

#[test]
fn a_thousand_minilm_pairs_integrate_each_text_once_and_equal_single_explains() {
    let texts = sentences();
    assert_eq!(texts.len(), 100);
    let dir = tempfile::tempdir().unwrap();
    let (pairs, out_path) = (dir.path().join("pairs.jsonl"), dir.path().join("out.jsonl"));
    // Pair k: texts k mod 100 and (7k + 3) mod 100 (never the same text): every text on both sides.
    let rows: Vec<Value> = (0..1000)
        .map(|k| json!({"id": format!("pair-{k}"), "a": texts[k % 100], "b": texts[(7 * k + 3) % 100]}))
        .collect();
    write_jsonl(&pairs, &rows);
    let model = minilm_dir();
    let settings = ["--steps", "10", "--words"];
    let mut args = vec!["batch", "--model", model.to_str().unwrap(), pairs.to_str().unwrap()];
    args.extend_from_slice(&settings);
    args.extend_from_slice(&["--out", out_path.to_str().unwrap()]);
    let out = simattr(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(text_counts(&out), (100, 1900, 0), "{}", stderr(&out));
    let written = records(&out_path);
    assert_eq!(written.len(), 1000);
    for (k, record) in written.iter().enumerate() {
        assert_eq!(record["id"], format!("pair-{k}"));
        assert_eq!(record["line"], k + 1);
        assert_eq!(record["text_a"]["text"], rows[k]["a"]);
        assert_eq!(record["text_b"]["text"], rows[k]["b"]);
    }
    // Records late in the run (texts reused many times) equal fresh single runs, bit for bit.
    for k in [0, 517, 999] {
        let (a, b) = (rows[k]["a"].as_str().unwrap(), rows[k]["b"].as_str().unwrap());
        assert_eq!(as_explain(&written[k]), explain_json(&model, &settings, a, b, dir.path()), "pair {k}");
    }
}

/// `count` pairs of word combinations (the tiny vocabulary has no digits: they are `[UNK]`).
fn tiny_pairs(dir: &Path, count: usize) -> PathBuf {
    let words = ["alpha", "bravo", "delta", "echo", "golf", "hotel", "kilo", "lima", "papa", "tango"];
    let rows: Vec<Value> = (0..count)
        .map(|k| {
            let a = format!("{} {}", words[k % 10], words[(k / 10) % 10]);
            let b = format!("{} {} {}", words[(k + 5) % 10], words[(k / 10 + 3) % 10], words[k % 3]);
            json!({"id": format!("p{k}"), "a": a, "b": b})
        })
        .collect();
    let path = dir.join("pairs.jsonl");
    write_jsonl(&path, &rows);
    path
}

fn tiny_batch(pairs: &Path, out: &Path, extra: &[&str]) -> Output {
    let model = tiny_model_dir();
    let mut args =
        vec!["batch", "--model", model.to_str().unwrap(), pairs.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    simattr(&args)
}

#[test]
fn a_killed_run_resumes_to_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = tiny_pairs(dir.path(), 60);
    let settings = ["--steps", "40", "--threads", "1"];
    let whole = dir.path().join("whole.jsonl");
    let out = tiny_batch(&pairs, &whole, &settings);
    assert!(out.status.success(), "{}", stderr(&out));
    let expected = std::fs::read(&whole).unwrap();
    assert_eq!(records(&whole).len(), 60);

    // The same run, killed (SIGKILL: no chance to tidy up) once some records are out.
    let killed = dir.path().join("killed.jsonl");
    let model = tiny_model_dir();
    let mut args = vec!["batch", "--model", model.to_str().unwrap(), pairs.to_str().unwrap()];
    args.extend_from_slice(&["--out", killed.to_str().unwrap()]);
    args.extend_from_slice(&settings);
    let mut child =
        Command::new(env!("CARGO_BIN_EXE_simattr")).args(&args).stderr(std::process::Stdio::null()).spawn().unwrap();
    let lines = || std::fs::read(&killed).map(|b| b.iter().filter(|&&c| c == b'\n').count()).unwrap_or(0);
    while lines() < 10 {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = lines();
    assert!(at_kill < 60, "killed too late to test anything ({at_kill} records)");
    // Without --resume the file is not touched.
    let refused = tiny_batch(&pairs, &killed, &settings);
    assert!(!refused.status.success() && stderr(&refused).contains("--resume"), "{}", stderr(&refused));
    let resumed = tiny_batch(&pairs, &killed, &[&settings[..], &["--resume"]].concat());
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(stderr(&resumed).contains(&format!("{at_kill} already in")), "{}", stderr(&resumed));
    assert_eq!(std::fs::read(&killed).unwrap(), expected, "the resumed file differs from the uninterrupted run's");
}

#[test]
fn a_partial_last_record_is_cut_and_rewritten_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = tiny_pairs(dir.path(), 8);
    let out_path = dir.path().join("out.jsonl");
    assert!(tiny_batch(&pairs, &out_path, &["--steps", "5"]).status.success());
    let whole = std::fs::read(&out_path).unwrap();
    // As if killed in the middle of the sixth record's write.
    let fifth_end = whole.iter().enumerate().filter(|(_, &c)| c == b'\n').nth(4).unwrap().0 + 1;
    std::fs::write(&out_path, &whole[..fifth_end + 40]).unwrap();
    let out = tiny_batch(&pairs, &out_path, &["--steps", "5", "--resume"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("cut off a partial last record (40 bytes)"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&out_path).unwrap(), whole);
    // Resuming with other settings would mix results: refused, naming the setting.
    std::fs::write(&out_path, &whole[..fifth_end]).unwrap();
    let other = tiny_batch(&pairs, &out_path, &["--steps", "6", "--resume"]);
    assert!(!other.status.success() && stderr(&other).contains("a different steps"), "{}", stderr(&other));
    assert_eq!(std::fs::read(&out_path).unwrap(), &whole[..fifth_end], "a refused resume changed the file");
}

#[test]
fn the_disk_cache_gives_the_same_records_without_integrating() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = tiny_pairs(dir.path(), 12);
    let cache = dir.path().join("cache");
    let settings = ["--steps", "7", "--cache", cache.to_str().unwrap()];
    let (first, second, third) = (dir.path().join("1.jsonl"), dir.path().join("2.jsonl"), dir.path().join("3.jsonl"));
    let out = tiny_batch(&pairs, &first, &settings);
    assert!(out.status.success(), "{}", stderr(&out));
    let (computed, _, from_disk) = text_counts(&out);
    assert_eq!(from_disk, 0);
    let entries: Vec<PathBuf> = std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(entries.len(), computed);
    let out = tiny_batch(&pairs, &second, &settings);
    assert_eq!(text_counts(&out), (0, 24 - computed, computed), "{}", stderr(&out));
    assert_eq!(std::fs::read(&first).unwrap(), std::fs::read(&second).unwrap());
    // A damaged entry is recomputed, not trusted; the results stay the same.
    let damaged = &entries[0];
    let bytes = std::fs::read(damaged).unwrap();
    std::fs::write(damaged, &bytes[..bytes.len() / 2]).unwrap();
    let out = tiny_batch(&pairs, &third, &settings);
    assert!(stderr(&out).contains("1 unreadable cache files recomputed"), "{}", stderr(&out));
    assert_eq!(text_counts(&out).0, 1);
    assert_eq!(std::fs::read(&first).unwrap(), std::fs::read(&third).unwrap());
    // Another setting that changes P (the layer) misses the cache; the similarity cos vs dot does not.
    let layer = tiny_batch(&pairs, &dir.path().join("4.jsonl"), &[&settings[..], &["--layer", "1"]].concat());
    assert_eq!(text_counts(&layer).2, 0, "{}", stderr(&layer));
    let dot = tiny_batch(&pairs, &dir.path().join("5.jsonl"), &[&settings[..], &["--similarity", "dot"]].concat());
    assert_eq!(text_counts(&dot).0, 0, "{}", stderr(&dot));
}

#[test]
fn csv_tsv_and_jsonl_give_the_same_records_and_bad_lines_become_error_records() {
    let dir = tempfile::tempdir().unwrap();
    let long = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima";
    let jsonl = dir.path().join("pairs.jsonl");
    std::fs::write(
        &jsonl,
        format!(
            "{}\n{}\n{}\n{}\n{}\n",
            json!({"id": "one", "a": "a man, with a guitar", "b": "music"}),
            json!({"id": "two", "a": "x", "c": "y"}),
            json!({"id": "three", "a": long, "b": "short"}),
            json!({"id": "one", "a": "again", "b": "again"}),
            json!({"a": "  ", "b": "empty a"}),
        ),
    )
    .unwrap();
    let out_path = dir.path().join("out.jsonl");
    let out = tiny_batch(&jsonl, &out_path, &["--steps", "5"]);
    assert_eq!(out.status.code(), Some(3), "error records make exit status 3: {}", stderr(&out));
    let written = records(&out_path);
    let errors: Vec<(&str, &str)> =
        written.iter().filter_map(|r| Some((r["id"].as_str().unwrap(), r.get("error")?.as_str().unwrap()))).collect();
    assert_eq!(written.len(), 5);
    assert!(
        errors[0].0 == "two" && errors[0].1.contains("line 2") && errors[0].1.contains("`b` is missing"),
        "{errors:?}"
    );
    assert!(errors[1].0 == "three" && errors[1].1.contains("over the model's max_seq_length"), "{errors:?}");
    assert!(errors[2].0 == "one" && errors[2].1.contains("repeats line 1"), "{errors:?}");
    assert!(errors[3].0 == "5" && errors[3].1.contains("empty"), "{errors:?}");
    // --truncate cuts the long text as explain does, and says so in the record.
    let cut = tiny_batch(&jsonl, &dir.path().join("cut.jsonl"), &["--steps", "5", "--truncate"]);
    assert_eq!(cut.status.code(), Some(3));
    let cut = records(&dir.path().join("cut.jsonl"));
    assert_eq!(cut[2]["provenance"]["truncated"], true);
    assert!(cut[2]["text_a"]["truncated_from"].as_u64().unwrap() > 24);

    let first = &written[0];
    for (name, text) in [
        ("pairs.csv", "b,id,a\nmusic,one,\"a man, with a guitar\"\n"),
        ("pairs.tsv", "id\ta\tb\none\ta man, with a guitar\tmusic\n"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out_path = dir.path().join(format!("{name}.out"));
        let out = tiny_batch(&path, &out_path, &["--steps", "5"]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let record = &records(&out_path)[0];
        assert_eq!(as_explain(record), as_explain(first), "{name}");
        assert_eq!(record["id"], "one");
    }
}

#[test]
fn a_query_ranks_the_documents_and_explains_the_best() {
    let dir = tempfile::tempdir().unwrap();
    let documents = ["alpha bravo", "golf hotel", "alpha", "kilo lima papa", "bravo alpha echo"];
    let docs = dir.path().join("docs.txt");
    std::fs::write(&docs, documents.join("\n\n")).unwrap();
    let (query, model) = ("alpha bravo echo", tiny_model_dir());
    let out_path = dir.path().join("ranked.jsonl");
    let out = simattr(&[
        "batch",
        "--model",
        model.to_str().unwrap(),
        "--query",
        query,
        "--docs",
        docs.to_str().unwrap(),
        "--top",
        "3",
        "--steps",
        "5",
        "--out",
        out_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The query is integrated once, each explained document once.
    assert_eq!(text_counts(&out), (4, 2, 0), "{}", stderr(&out));
    let written = records(&out_path);
    assert_eq!(written.len(), 3);
    // Every document's score, from single explain runs: the ranking is by that score.
    let mut scores: Vec<(f64, usize)> = documents
        .iter()
        .enumerate()
        .map(|(n, d)| (explain_json(&model, &["--steps", "5"], query, d, dir.path())["score"].as_f64().unwrap(), n))
        .collect();
    scores.sort_by(|x, y| y.0.total_cmp(&x.0));
    for (rank, (record, (score, n))) in written.iter().zip(&scores).enumerate() {
        assert_eq!(record["rank"], rank + 1);
        assert_eq!(record["text_b"]["text"], documents[*n]);
        // Documents on lines 1, 3, 5, …: the id is the line.
        assert_eq!(record["id"], (2 * n + 1).to_string());
        assert_eq!(record["text_a"]["text"], query);
        assert_eq!(record["score"].as_f64().unwrap(), *score);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    assert!(stdout.lines().next().unwrap().contains(documents[scores[0].1]), "{stdout}");
}

#[test]
fn bad_batch_arguments_fail_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.jsonl");
    let cases: [(&[&str], &str); 5] = [
        (&["batch", "missing.jsonl", "--out", out_path.to_str().unwrap()], "missing.jsonl"),
        (&["batch", "pairs.xlsx", "--out", out_path.to_str().unwrap()], "cannot tell the format"),
        (&["batch", "--query", "q", "--out", out_path.to_str().unwrap()], "--docs"),
        (&["batch", "--out", out_path.to_str().unwrap()], "PAIRS"),
        (&["batch", "x.jsonl", "--out", out_path.to_str().unwrap(), "--cache-memory", "lots"], "--cache-memory"),
    ];
    std::fs::write(dir.path().join("pairs.xlsx"), "").unwrap();
    for (args, expected) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_simattr")).current_dir(dir.path()).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr(&out).contains(expected), "{args:?}: {}", stderr(&out));
        assert!(!out_path.exists(), "{args:?} left {}", out_path.display());
    }
    let csv = dir.path().join("pairs.csv");
    std::fs::write(&csv, "first,second\nx,y\n").unwrap();
    let out = tiny_batch(&csv, &out_path, &[]);
    assert!(stderr(&out).contains("no `a` column") && !out_path.exists(), "{}", stderr(&out));
}

/// Under `include_prompt: false` the same ids pool differently read as prompt and text or as
/// text alone: "hi" after the prompt `query: ` and the literal text "query: hi" are two texts
/// to the cache (in memory and on disk), and each record equals `explain` of its pair.
#[test]
fn a_prompt_left_out_of_pooling_is_part_of_a_texts_cache_identity() {
    let dir = tempfile::tempdir().unwrap();
    let (pairs, cache) = (dir.path().join("pairs.jsonl"), dir.path().join("cache"));
    write_jsonl(&pairs, &[json!({"a": "hi", "b": "query: hi"})]);
    let model = common::fixture_dir("tiny-bert-sqrtlen");
    let settings = ["--steps", "5", "--prompt-a", "query", "--prompt-b", "", "--cache", cache.to_str().unwrap()];
    let run = |out: &Path| {
        let mut args = vec!["batch", "--model", model.to_str().unwrap(), pairs.to_str().unwrap()];
        args.extend_from_slice(&settings);
        args.extend_from_slice(&["--out", out.to_str().unwrap()]);
        let output = simattr(&args);
        assert!(output.status.success(), "{}", stderr(&output));
        output
    };
    let (first, second) = (dir.path().join("1.jsonl"), dir.path().join("2.jsonl"));
    let out = run(&first);
    assert_eq!(text_counts(&out), (2, 0, 0), "{}", stderr(&out));
    let record = &records(&first)[0];
    assert_eq!(record["text_a"]["ids"], record["text_b"]["ids"], "the two texts must have the same ids");
    let single = explain_json(&model, &settings[..6], "hi", "query: hi", dir.path());
    assert_eq!(as_explain(record)["attributions"], single["attributions"]);
    assert!(record["text_a"]["prompt_tokens"].is_array() && record["text_b"]["prompt_tokens"].is_null());
    let out = run(&second);
    assert_eq!(text_counts(&out), (0, 0, 2), "{}", stderr(&out));
    assert_eq!(std::fs::read(&first).unwrap(), std::fs::read(&second).unwrap());
}
