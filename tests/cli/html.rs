//! The HTML report (`explain --html`, `batch --html`) in a real browser: headless Chromium opens
//! the page with `#selftest`, in which the page's script hovers cells, labels and tokens after
//! drawing and writes what it shows into `<pre id="simattr-selftest">`; `--dump-dom` hands the
//! DOM back. The matrix values in the DOM must equal the JSON's exactly, the colours follow the
//! RdBu ramp, hovering shows the right pair and highlights exactly a row or column, the
//! strongest pairs and the word view match the JSON. Then a screenshot (target/html-report.png)
//! and the batch index. Chromium must be installed (Debian: `apt-get install -y chromium`): a
//! missing browser fails these tests, it does not skip them.

use crate::common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{repo, tiny_model_dir};
use serde_json::Value;

/// Texts the tiny vocabulary splits into several tokens per word, so the word view differs.
const A: &str = "Guitars, unbelievably loud.";
const B: &str = "A quiet piano";
const STEPS: &str = "5";
/// How long one Chromium run may take before the test gives up on it.
const BROWSER_LIMIT: Duration = Duration::from_secs(90);

fn simattr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_simattr")).args(args).output().expect("run simattr")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn s(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// Chromium from PATH (`chromium`, or `chromium-browser` as some distributions name it).
fn chromium() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "the HTML report tests need Chromium, and neither `chromium` nor `chromium-browser` is on PATH: \
         install it (Debian/Ubuntu: `apt-get install -y chromium`; scripts/test.sh does this)"
    );
}

fn file_url(path: &Path, fragment: &str) -> String {
    let mut url = String::from("file://");
    for c in s(path).chars() {
        match c {
            ' ' => url.push_str("%20"),
            '#' => url.push_str("%23"),
            '%' => url.push_str("%25"),
            '?' => url.push_str("%3F"),
            c => url.push(c),
        }
    }
    url + fragment
}

/// Runs headless Chromium (the new headless mode; `--no-sandbox` because tests may run as
/// root) with a profile of its own, and returns its stdout; killed after `BROWSER_LIMIT`.
fn run_chromium(args: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--hide-scrollbars",
            "--mute-audio",
        ])
        .arg(format!("--user-data-dir={}", s(profile.path())))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium().display()));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > BROWSER_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {args:?} ran over {BROWSER_LIMIT:?}: {}", stderr.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(status.success(), "chromium {args:?} failed ({status}): {stderr}");
    eprintln!("chromium {:?}: {:.2} s", args.last().unwrap(), started.elapsed().as_secs_f64());
    stdout
}

/// The DOM of `page` (with `fragment`) after its scripts ran.
fn dump_dom(page: &Path, fragment: &str) -> String {
    let dom = run_chromium(&["--dump-dom".to_string(), file_url(page, fragment)]);
    assert!(dom.contains("</html>"), "no DOM came back: {dom:.300}");
    dom
}

/// Undoes the serializer's character references.
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// The element content after `start` (an opening tag's beginning, up to its `>`) up to `end`.
fn content<'d>(dom: &'d str, start: &str, end: &str) -> Option<&'d str> {
    let from = dom.find(start)?;
    let open = from + dom[from..].find('>')? + 1;
    let close = open + dom[open..].find(end)?;
    Some(&dom[open..close])
}

fn selftest_of(dom: &str) -> Value {
    let text = content(dom, "<pre id=\"simattr-selftest\"", "</pre>").expect("the selftest element");
    assert!(!text.is_empty(), "the page wrote no selftest result: did its script run?");
    serde_json::from_str(&unescape(text)).unwrap_or_else(|e| panic!("selftest result: {e}: {text}"))
}

/// The page's embedded record, as the page's script reads it.
fn embedded(page: &str) -> (Value, String) {
    let text = content(page, "<script type=\"application/json\" id=\"simattr-data\"", "</script>").expect("data");
    (serde_json::from_str(text).expect("the embedded record is JSON"), text.to_string())
}

/// The numbers of `"key": [[…], …]` in `json`, each parsed by Rust's correctly rounded parser
/// from the digits written (serde_json's own number parsing may be off by an ulp).
fn raw_matrix(json: &str, key: &str) -> Vec<Vec<f64>> {
    let pattern = format!("\"{key}\":");
    let start = json.find(&pattern).unwrap_or_else(|| panic!("no {key}")) + pattern.len();
    let (mut rows, mut row, mut token, mut depth) = (Vec::new(), Vec::new(), String::new(), 0);
    let flush = |token: &mut String, row: &mut Vec<f64>| {
        if !token.is_empty() {
            row.push(if token == "null" { f64::NAN } else { token.parse().unwrap() });
            token.clear();
        }
    };
    for c in json[start..].chars() {
        match c {
            '[' => depth += 1,
            ']' => {
                flush(&mut token, &mut row);
                depth -= 1;
                match depth {
                    0 => break,
                    1 => rows.push(std::mem::take(&mut row)),
                    _ => {}
                }
            }
            ',' => flush(&mut token, &mut row),
            c if c.is_whitespace() => {}
            c => token.push(c),
        }
    }
    rows
}

/// The number after `"key":` in `json`, parsed as `raw_matrix` does.
fn raw_number(json: &str, key: &str) -> f64 {
    let pattern = format!("\"{key}\":");
    let start = json.find(&pattern).unwrap_or_else(|| panic!("no {key}")) + pattern.len();
    let text: String = json[start..].trim_start().chars().take_while(|c| !matches!(c, ',' | '}' | '\n')).collect();
    match text.trim() {
        "null" => f64::NAN,
        number => number.parse().unwrap(),
    }
}

fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

fn dom_number(value: &Value) -> f64 {
    value.as_str().expect("a data-value string").parse().unwrap()
}

/// The page's colour of `v`: the heatmap's own colour scale, which the page's script mirrors.
fn colour(v: f64, max_abs: f64) -> String {
    let rgb = simattr::output::heatmap::colour(v, max_abs);
    format!("rgb({}, {}, {})", rgb[0], rgb[1], rgb[2])
}

fn max_abs(values: impl IntoIterator<Item = f64>) -> f64 {
    values.into_iter().filter(|v| v.is_finite()).fold(0.0, |m, v| m.max(v.abs()))
}

/// Whether `shown` is `v` as the page prints it: sign always, four decimals.
fn shows(shown: &str, v: f64) -> bool {
    let sign_ok = shown.starts_with(if v < 0.0 { '-' } else { '+' });
    let decimals_ok = shown.split_once('.').is_some_and(|(_, d)| d.len() == 4);
    let close = shown.parse::<f64>().is_ok_and(|x| (x - v).abs() <= 0.5e-4 + 1e-12);
    sign_ok && decimals_ok && close
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().expect("an array").iter().map(|v| v.as_str().expect("a string").to_string()).collect()
}

fn indices(value: &Value) -> Vec<usize> {
    value.as_array().expect("an array").iter().map(|v| v.as_u64().unwrap() as usize).collect()
}

fn pairs(value: &Value) -> Vec<(usize, usize)> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap() as usize, p[1].as_u64().unwrap() as usize))
        .collect()
}

/// The top `k` pairs by |value|, the first in row-major order on a tie.
fn top_pairs(m: &[Vec<f64>], k: usize) -> Vec<(usize, usize, f64)> {
    let mut all: Vec<(usize, usize, f64)> = m
        .iter()
        .enumerate()
        .flat_map(|(i, row)| row.iter().enumerate().map(move |(j, &v)| (i, j, v)))
        .filter(|p| p.2.is_finite())
        .collect();
    all.sort_by(|x, y| y.2.abs().total_cmp(&x.2.abs()));
    all.truncate(k);
    all
}

/// Checks one view the page drew against the labels and matrix it should show.
fn check_view(name: &str, shown: &Value, a: &[String], b: &[String], m: &[Vec<f64>]) {
    let (rows, cols) = (a.len(), b.len());
    assert_eq!(shown["view"], name);
    assert_eq!(strings(&shown["row_labels"]), a, "{name}: row labels");
    assert_eq!(strings(&shown["col_labels"]), b, "{name}: column labels");
    assert_eq!(shown["positions_ok"], true, "{name}: a cell's data-i/data-j is not its place");
    let values = shown["values"].as_array().unwrap();
    let colours = shown["colours"].as_array().unwrap();
    assert_eq!(values.len(), rows, "{name}: rows drawn");
    let scale = max_abs(m.iter().flatten().copied());
    for i in 0..rows {
        assert_eq!(values[i].as_array().unwrap().len(), cols, "{name}: cells in row {i}");
        for j in 0..cols {
            let dom = dom_number(&values[i][j]);
            assert!(same(dom, m[i][j]), "{name}: cell ({i}, {j}) holds {dom:e}, the JSON {:e}", m[i][j]);
            assert_eq!(colours[i][j], colour(m[i][j], scale), "{name}: colour of cell ({i}, {j}) = {:e}", m[i][j]);
        }
    }

    // Each text's tokens, coloured by their row and column sums.
    let row_sums: Vec<f64> = m.iter().map(|row| row.iter().fold(0.0, |s, v| s + v)).collect();
    let col_sums: Vec<f64> = (0..cols).map(|j| m.iter().fold(0.0, |s, row| s + row[j])).collect();
    let sum_scale = max_abs(row_sums.iter().chain(&col_sums).copied());
    for (key, labels, sums) in [("tokens_a", a, &row_sums), ("tokens_b", b, &col_sums)] {
        let drawn = shown[key].as_array().unwrap();
        assert_eq!(drawn.len(), labels.len(), "{name}: {key}");
        for (k, token) in drawn.iter().enumerate() {
            assert_eq!(token["text"], labels[k].as_str(), "{name}: {key}[{k}]");
            assert!(
                same(dom_number(&token["value"]), sums[k]),
                "{name}: {key}[{k}] sum {} vs {}",
                token["value"],
                sums[k]
            );
            assert_eq!(token["colour"], colour(sums[k], sum_scale), "{name}: {key}[{k}] colour");
        }
    }

    // The strongest pairs.
    let expected = top_pairs(m, 10);
    let listed = shown["top_pairs"].as_array().unwrap();
    assert_eq!(listed.len(), expected.len().min(10), "{name}: strongest pairs listed");
    for (rank, (p, &(i, j, v))) in listed.iter().zip(&expected).enumerate() {
        assert_eq!((p["i"].as_u64(), p["j"].as_u64()), (Some(i as u64), Some(j as u64)), "{name}: top pair {rank}");
        assert!(same(dom_number(&p["value"]), v), "{name}: top pair {rank} value");
        assert_eq!(p["pair"], format!("{} ↔ {}", a[i], b[j]), "{name}: top pair {rank}");
        assert!(shows(p["shown"].as_str().unwrap(), v), "{name}: top pair {rank} shows {}", p["shown"]);
    }

    // Hovering.
    let hovers = shown["hovers"].as_array().unwrap();
    let kinds: Vec<&str> = hovers.iter().map(|h| h["kind"].as_str().unwrap()).collect();
    for kind in ["cell", "row-label", "col-label", "token-a", "token-b", "top-pair", "none"] {
        assert!(kinds.contains(&kind), "{name}: no hover of a {kind}: {kinds:?}");
    }
    assert!(kinds.iter().filter(|k| **k == "cell").count() >= 3, "{name}: too few cells hovered");
    let row = |i: usize| (0..cols).map(|j| (i, j)).collect::<Vec<_>>();
    let column = |j: usize| (0..rows).map(|i| (i, j)).collect::<Vec<_>>();
    for h in hovers {
        let info = h["info"].as_str().unwrap();
        let (cells, active) = (pairs(&h["cells"]), pairs(&h["active"]));
        let labels = (indices(&h["row_labels"]), indices(&h["col_labels"]));
        let tokens = (indices(&h["tokens_a"]), indices(&h["tokens_b"]));
        let what = format!("{name}: hover {h}");
        match h["kind"].as_str().unwrap() {
            kind @ ("cell" | "top-pair") => {
                let (i, j) = match kind {
                    "cell" => (h["i"].as_u64().unwrap() as usize, h["j"].as_u64().unwrap() as usize),
                    _ => (expected[0].0, expected[0].1),
                };
                let (pair, value) = info.rsplit_once(": ").unwrap_or_else(|| panic!("{what}"));
                assert_eq!(pair, format!("{} ↔ {}", a[i], b[j]), "{what}");
                assert!(shows(value, m[i][j]), "{what}: {value} is not {}", m[i][j]);
                assert_eq!(active, [(i, j)], "{what}");
                assert!(cells.is_empty(), "{what}");
                assert_eq!(labels, (vec![i], vec![j]), "{what}");
                assert_eq!(tokens, (vec![i], vec![j]), "{what}");
            }
            "row-label" | "token-a" => {
                let i = h["index"].as_u64().unwrap() as usize;
                assert_eq!(cells, row(i), "{what}: not exactly row {i}");
                assert!(active.is_empty(), "{what}");
                assert_eq!(labels, (vec![i], vec![]), "{what}");
                assert_eq!(tokens, (vec![i], vec![]), "{what}");
                let (head, sum) = info.rsplit_once("row sum ").unwrap_or_else(|| panic!("{what}"));
                assert!(head.starts_with(a[i].as_str()), "{what}");
                assert!(shows(sum, row_sums[i]), "{what}");
            }
            "col-label" | "token-b" => {
                let j = h["index"].as_u64().unwrap() as usize;
                assert_eq!(cells, column(j), "{what}: not exactly column {j}");
                assert!(active.is_empty(), "{what}");
                assert_eq!(labels, (vec![], vec![j]), "{what}");
                assert_eq!(tokens, (vec![], vec![j]), "{what}");
                let (head, sum) = info.rsplit_once("column sum ").unwrap_or_else(|| panic!("{what}"));
                assert!(head.starts_with(b[j].as_str()), "{what}");
                assert!(shows(sum, col_sums[j]), "{what}");
            }
            _ => {
                assert!(cells.is_empty() && active.is_empty(), "{what}: highlights left after the pointer left");
                assert!(info.starts_with("Hover"), "{what}");
            }
        }
    }
}

/// The scores and settings the page shows, against the record's JSON text.
fn check_fields(result: &Value, record: &Value, json: &str) {
    let fields = &result["fields"];
    for key in
        ["score", "attribution_sum", "ref_a__b", "a__ref_b", "ref_a__ref_b", "attributable", "completeness_error"]
    {
        let (shown, written) = (dom_number(&fields[key]), raw_number(json, key));
        assert!(same(shown, written), "{key}: the page shows {shown:e}, the JSON has {written:e}");
    }
    assert_eq!(fields["similarity"], record["similarity"]);
    let provenance = &record["provenance"];
    assert_eq!(fields["model"], provenance["model"]);
    assert_eq!(fields["rule"], provenance["rule"]);
    assert_eq!(fields["layer"], provenance["layer"].to_string());
    assert_eq!(fields["steps"], provenance["steps"].to_string());
    assert_eq!(result["text_a"], record["text_a"]["text"]);
    assert_eq!(result["text_b"], record["text_b"]["text"]);
}

fn check_selftest(result: &Value, record: &Value, json: &str, words: Option<(&Value, &str)>) {
    assert_eq!(result["errors"], Value::Array(vec![]), "the page's script failed");
    check_fields(result, record, json);
    check_view(
        "tokens",
        &result["views"]["tokens"],
        &strings(&record["tokens_a"]),
        &strings(&record["tokens_b"]),
        &raw_matrix(json, "attributions"),
    );
    match words {
        Some((record, json)) => {
            assert_eq!(result["switch_visible"], true, "no word/token switch");
            let shown = &result["views"]["words"];
            assert_eq!(
                shown["pressed"],
                serde_json::json!(["words"]),
                "the switch does not show the word view pressed"
            );
            check_view(
                "words",
                shown,
                &strings(&record["words_a"]),
                &strings(&record["words_b"]),
                &raw_matrix(json, "word_attributions"),
            );
            assert_eq!(result["final_view"], "tokens", "the switch did not go back to the tokens");
        }
        None => {
            assert_eq!(result["switch_visible"], false, "a switch without a word view");
            assert_eq!(result["views_available"], serde_json::json!(["tokens"]));
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Checks a screenshot is a real picture: big enough, and many colours, not one.
fn check_screenshot(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("no screenshot {}: {e}", path.display()));
    assert!(bytes.len() > 10_000, "the screenshot has {} bytes: an empty page?", bytes.len());
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("a PNG's size")];
    let frame = reader.next_frame(&mut pixels).expect("the PNG's pixels");
    assert_eq!((frame.width, frame.height), (1200, 900), "the window size");
    let channels = frame.color_type.samples();
    let colours: std::collections::HashSet<&[u8]> = pixels[..frame.buffer_size()].chunks(channels).collect();
    assert!(colours.len() > 50, "the screenshot has {} colours", colours.len());
}

#[test]
fn explain_report_in_chromium() {
    let started = Instant::now();
    chromium();
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model_dir();
    let run = |words: bool, json: &Path, html: &Path| {
        let mut args = vec!["explain", "--threads", "1", "--model", s(&model), "--steps", STEPS];
        if words {
            args.push("--words");
        }
        args.extend(["--json", s(json), "--html", s(html), A, B]);
        let out = simattr(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stderr(&out).contains(&format!("wrote {}", html.display())), "{}", stderr(&out));
    };
    let (words_json, words_html) = (dir.path().join("words.json"), dir.path().join("words.html"));
    let (plain_json, plain_html) = (dir.path().join("plain.json"), dir.path().join("plain.html"));
    run(true, &words_json, &words_html);
    run(false, &plain_json, &plain_html);
    let (words_text, plain_text) = (read(&words_json), read(&plain_json));
    let words: Value = serde_json::from_str(&words_text).unwrap();
    let plain: Value = serde_json::from_str(&plain_text).unwrap();

    // --json keeps its words to --words; the page always has them.
    assert!(plain.get("words_a").is_none(), "--html put words into --json");
    assert!(strings(&words["words_a"]).len() < strings(&words["tokens_a"]).len(), "the texts should split words");
    let (with_words, _) = embedded(&read(&words_html));
    assert_eq!(with_words, words, "with --words the page embeds what --json wrote");
    let page = read(&plain_html);
    let (mut data, data_text) = embedded(&page);
    for key in ["words_a", "words_b", "word_attributions", "word_merge"] {
        assert_eq!(data[key], words[key], "the page's {key}");
        data.as_object_mut().unwrap().remove(key);
    }
    assert_eq!(data["provenance"]["word_merge"], "sum");
    data["provenance"].as_object_mut().unwrap().remove("word_merge");
    assert_eq!(data, plain, "the page embeds the explain JSON");
    assert!(!data_text.contains("</"), "the embedded JSON can close its script");

    let dom = dump_dom(&plain_html, "#selftest");
    check_selftest(&selftest_of(&dom), &plain, &plain_text, Some((&words, &words_text)));
    let cells = dom.matches("<td class=\"cell").count();
    let (rows, cols) = (strings(&plain["tokens_a"]).len(), strings(&plain["tokens_b"]).len());
    assert_eq!(cells, rows * cols, "cells in the dumped DOM");

    let screenshot = repo().join("target/html-report.png");
    std::fs::create_dir_all(screenshot.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&screenshot);
    run_chromium(&[
        format!("--screenshot={}", s(&screenshot)),
        "--window-size=1200,900".to_string(),
        file_url(&plain_html, ""),
    ]);
    check_screenshot(&screenshot);
    eprintln!("explain_report_in_chromium: {:.1} s", started.elapsed().as_secs_f64());
}

/// With prompts, the page marks exactly the prompt's tokens (`text_X.prompt_tokens` of the
/// JSON) in the token view, in the texts and the matrix labels alike, and nothing without one.
#[test]
fn a_prompt_is_marked_in_the_report() {
    chromium();
    let dir = tempfile::tempdir().unwrap();
    let model = common::fixture_dir("tiny-bert-weightedmean");
    let (json, html) = (dir.path().join("prompted.json"), dir.path().join("prompted.html"));
    let args = ["--prompt-a", "query", "--prompt-b", "document", "--json", s(&json), "--html", s(&html), A, B];
    let mut all = vec!["explain", "--threads", "1", "--model", s(&model), "--steps", STEPS];
    all.extend(args);
    let out = simattr(&all);
    assert!(out.status.success(), "{}", stderr(&out));
    let record: Value = serde_json::from_str(&read(&json)).unwrap();
    let result = selftest_of(&dump_dom(&html, "#selftest"));
    assert_eq!(result["errors"], Value::Array(vec![]), "the page's script failed");
    let shown = &result["views"]["tokens"];
    for axis in ["a", "b"] {
        let range = indices(&record[format!("text_{axis}")]["prompt_tokens"]);
        let expected: Vec<usize> = (range[0]..range[1]).collect();
        assert!(!expected.is_empty(), "text {axis} has a prompt");
        assert_eq!(indices(&shown[format!("prompt_tokens_{axis}")]), expected, "text {axis}'s tokens");
        assert_eq!(indices(&shown[format!("prompt_labels_{axis}")]), expected, "text {axis}'s matrix labels");
    }
    let plain = dir.path().join("plain.html");
    let out =
        simattr(&["explain", "--threads", "1", "--model", s(&model), "--steps", STEPS, "--html", s(&plain), A, B]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = &selftest_of(&dump_dom(&plain, "#selftest"))["views"]["tokens"];
    for key in ["prompt_tokens_a", "prompt_tokens_b", "prompt_labels_a", "prompt_labels_b"] {
        assert_eq!(indices(&shown[key]), Vec::<usize>::new(), "{key} without a prompt");
    }
}

/// One row of the batch index, from the dumped DOM.
#[derive(Debug)]
struct IndexRow {
    class: String,
    n: usize,
    id: String,
    links: Vec<String>,
    pair: Option<String>,
    score: Option<f64>,
    error: Option<String>,
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let pattern = format!(" {name}=\"");
    let start = tag.find(&pattern)? + pattern.len();
    Some(unescape(&tag[start..start + tag[start..].find('"')?]))
}

fn index_rows(dom: &str) -> Vec<IndexRow> {
    let body = content(dom, "<tbody", "</tbody>").expect("the index's rows");
    body.split("<tr ")
        .skip(1)
        .map(|row| {
            let tag = &row[..row.find('>').unwrap()];
            let tag = format!(" {tag}");
            IndexRow {
                class: attribute(&tag, "class").unwrap(),
                n: attribute(&tag, "data-n").unwrap().parse().unwrap(),
                id: attribute(&tag, "data-id").unwrap(),
                links: row.split("href=\"").skip(1).map(|l| unescape(&l[..l.find('"').unwrap()])).collect(),
                pair: content(row, "<td class=\"pair\"", "</td>").map(unescape),
                score: content(row, "<td class=\"score\"", "</td>").map(|_| {
                    let tag = &row[row.find("<td class=\"score\"").unwrap()..];
                    attribute(&tag[..tag.find('>').unwrap()], "data-value").unwrap().parse().unwrap()
                }),
                error: content(row, "<td class=\"error\"", "</td>").map(unescape),
            }
        })
        .collect()
}

fn write_pairs(path: &Path, rows: &[Value]) {
    std::fs::write(path, rows.iter().map(|r| format!("{r}\n")).collect::<String>()).unwrap();
}

fn batch(args: &[&str], expect_errors: bool) {
    let out = simattr(args);
    let code = out.status.code();
    assert_eq!(code, Some(if expect_errors { 3 } else { 0 }), "{}", stderr(&out));
    assert!(stderr(&out).contains("index.html"), "{}", stderr(&out));
}

#[test]
fn batch_index_and_pages_in_chromium() {
    let started = Instant::now();
    chromium();
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model_dir();
    let (pairs, out, report) =
        (dir.path().join("pairs.jsonl"), dir.path().join("out.jsonl"), dir.path().join("report"));
    let hostile_id = "<b>&x</script>";
    let mut rows = vec![
        serde_json::json!({"id": hostile_id, "a": A, "b": B}),
        serde_json::json!({"id": "two", "a": "A man plays a guitar.", "b": "A woman sells flowers."}),
        serde_json::json!({"id": "bad", "a": "no second text"}),
    ];
    write_pairs(&pairs, &rows);
    let args = |resume: bool| {
        let mut args = vec!["batch", "--threads", "1", "--model", s(&model), "--steps", STEPS, "--words"];
        args.extend(["--out", s(&out), "--html", s(&report), s(&pairs)]);
        if resume {
            args.push("--resume");
        }
        args
    };
    batch(&args(false), true);
    // A resumed run adds a record; the index covers the old ones too.
    rows.push(serde_json::json!({"id": "four", "a": "The old dog sleeps.", "b": "A young cat plays."}));
    write_pairs(&pairs, &rows);
    batch(&args(true), false);

    let lines: Vec<String> = read(&out).lines().map(str::to_string).collect();
    let records: Vec<Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 4);
    let mut names: Vec<String> =
        std::fs::read_dir(&report).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["index.html", "pair-1.html", "pair-2.html", "pair-4.html"], "the report's files");

    let index = dump_dom(&report.join("index.html"), "");
    let shown = index_rows(&index);
    assert_eq!(shown.len(), records.len(), "index rows: {shown:?}");
    for (k, (row, record)) in shown.iter().zip(&records).enumerate() {
        let n = k + 1;
        assert_eq!((row.n, row.id.as_str()), (n, record["id"].as_str().unwrap()), "{row:?}");
        match record.get("error") {
            Some(error) => {
                assert_eq!(row.class, "error");
                assert!(row.links.is_empty(), "an error record links a page: {row:?}");
                assert_eq!(row.error.as_deref(), error.as_str(), "{row:?}");
            }
            None => {
                assert_eq!(row.class, "explained");
                assert_eq!(row.links, [format!("pair-{n}.html"), format!("pair-{n}.html")], "{row:?}");
                let score = row.score.unwrap();
                let written = raw_number(&lines[k], "score");
                assert!((score - written).abs() <= 1e-15 * written.abs().max(1.0), "{row:?} vs {written}");
                let m = raw_matrix(&lines[k], "attributions");
                let (i, j, v) = top_pairs(&m, 1)[0];
                let (a, b) = (strings(&record["tokens_a"]), strings(&record["tokens_b"]));
                assert_eq!(row.pair.as_deref(), Some(format!("{} ↔ {}: {v:+.4}", a[i], b[j]).as_str()), "{row:?}");
            }
        }
    }
    assert!(!index.contains("<b>&amp;x") && !index.contains("<b>"), "an id went into the index unescaped");

    // The resumed run's record, and the first, with its hostile id.
    for n in [4, 1] {
        let page = report.join(format!("pair-{n}.html"));
        let result = selftest_of(&dump_dom(&page, "#selftest"));
        let (record, line) = (&records[n - 1], &lines[n - 1]);
        check_selftest(&result, record, line, Some((record, line)));
        assert!(result["meta"].as_str().unwrap().starts_with(&format!("id {}", record["id"].as_str().unwrap())));
    }

    // Without --words a record has no word view, and its page no switch.
    let (plain_out, plain_report) = (dir.path().join("plain.jsonl"), dir.path().join("plain"));
    write_pairs(&pairs, &rows[1..2]);
    let plain_args = [
        "batch",
        "--model",
        s(&model),
        "--steps",
        STEPS,
        "--out",
        s(&plain_out),
        "--html",
        s(&plain_report),
        s(&pairs),
    ];
    batch(&plain_args, false);
    let line = read(&plain_out).lines().next().unwrap().to_string();
    let record: Value = serde_json::from_str(&line).unwrap();
    let result = selftest_of(&dump_dom(&plain_report.join("pair-1.html"), "#selftest"));
    check_selftest(&result, &record, &line, None);
    eprintln!("batch_index_and_pages_in_chromium: {:.1} s", started.elapsed().as_secs_f64());
}
