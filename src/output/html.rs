//! The interactive HTML report: `explain --html FILE` writes one self-contained page (inline
//! CSS and JS, nothing fetched), `batch --html DIR` an index of the records with one page per
//! explained record. A page embeds the record's JSON, the same object `--json` or the batch
//! file holds, in `<script type="application/json" id="simattr-data">`; its script
//! (`report/report.js`) draws the heatmap, the tokens and the strongest pairs from it.

use std::io::BufRead;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::output::markup::escape;
use crate::output::{files, heatmap};

const PAGE: &str = include_str!("report/report.html");
const CSS: &str = include_str!("report/report.css");
const JS: &str = include_str!("report/report.js");

/// How many characters of a text titles and the index show.
const SHORT_TEXT: usize = 60;

/// `value` as JSON that can stand inside a `<script>` element: `<`, `>` and `&` occur only
/// inside JSON strings, where their `\u` escapes mean the same to `JSON.parse`, so no text can
/// close the script (`</script>`) or open a comment in it (`<!--`).
pub fn script_json<T: Serialize + ?Sized>(value: &T) -> String {
    // Serializing plain structs and JSON values cannot fail; NaN becomes null.
    let json = serde_json::to_string(value).unwrap_or_else(|_| "null".to_string());
    json.replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026")
}

/// The first `width` characters of `text` on one line, with `…` where it was cut.
pub fn shorten(text: &str, width: usize) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    match flat.chars().count() > width {
        true => format!("{}…", flat.chars().take(width.saturating_sub(1)).collect::<String>()),
        false => flat,
    }
}

/// The title of a pair's page.
pub fn pair_title(text_a: &str, text_b: &str) -> String {
    format!("simattr: {} ↔ {}", shorten(text_a, SHORT_TEXT), shorten(text_b, SHORT_TEXT))
}

/// `template` with each `{{name}}` replaced by its part, in one pass: what a part brings in is
/// never searched for placeholders.
fn fill(template: &str, parts: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + parts.iter().map(|(_, p)| p.len()).sum::<usize>());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            rest = &rest[start..];
            break;
        };
        match parts.iter().find(|(name, _)| *name == &after[..end]) {
            Some((_, part)) => out.push_str(part),
            None => out.push_str(&rest[start..start + end + 4]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

fn page<T: Serialize + ?Sized>(record: &T, title: &str, nav: &str) -> Vec<u8> {
    let (title, data) = (escape(title), script_json(record));
    // The page colours cells with the heatmap's own scale, handed to the script as data.
    let scale = serde_json::json!({
        "red_arm": heatmap::RED_ARM,
        "blue_arm": heatmap::BLUE_ARM,
        "non_finite": heatmap::NON_FINITE,
        "white": heatmap::WHITE,
    });
    let js = format!("const SIMATTR_SCALE = {scale};\n{JS}");
    let parts = [
        ("version", env!("CARGO_PKG_VERSION")),
        ("title", title.as_str()),
        ("nav", nav),
        ("css", CSS),
        ("js", js.as_str()),
        ("data", data.as_str()),
    ];
    fill(PAGE, &parts).into_bytes()
}

/// The report of one explained pair: `record` is the explain JSON (with the word view for the
/// switch) or a batch record; `title` is plain text.
pub fn explain_page<T: Serialize + ?Sized>(record: &T, title: &str) -> Vec<u8> {
    page(record, title, "")
}

/// The page of the `n`th record of a batch, linking back to the index.
pub fn record_page(record: &Value, n: usize) -> Vec<u8> {
    let text = |field: &str| record.pointer(&format!("/{field}/text")).and_then(Value::as_str).unwrap_or("");
    let title = format!("{} (record {n})", pair_title(text("text_a"), text("text_b")));
    page(record, &title, "<nav><a href=\"index.html\">← all records</a></nav>\n")
}

/// The file name of the `n`th record's page (never the id, which may hold anything).
pub fn page_name(n: usize) -> String {
    format!("pair-{n}.html")
}

/// The strongest token pair of a record.
#[derive(Debug, Clone, PartialEq)]
pub struct Strongest {
    pub token_a: String,
    pub token_b: String,
    pub value: f64,
}

/// What the index shows of the `n`th record of a batch file.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexEntry {
    pub n: usize,
    pub id: String,
    pub line: Option<u64>,
    pub rank: Option<u64>,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Explained { text_a: String, text_b: String, score: f64, strongest: Option<Strongest> },
    Failed { error: String },
}

impl IndexEntry {
    pub fn of_record(n: usize, record: &Value) -> Self {
        let id = match record.get("id") {
            Some(Value::String(id)) => id.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let text = |field: &str| record.pointer(&format!("/{field}/text")).and_then(Value::as_str).unwrap_or("");
        let outcome = match record.get("error") {
            Some(error) => Outcome::Failed { error: error.as_str().map_or_else(|| error.to_string(), str::to_string) },
            None => Outcome::Explained {
                text_a: text("text_a").to_string(),
                text_b: text("text_b").to_string(),
                score: record.get("score").and_then(Value::as_f64).unwrap_or(f64::NAN),
                strongest: strongest(record),
            },
        };
        IndexEntry {
            n,
            id,
            line: record.get("line").and_then(Value::as_u64),
            rank: record.get("rank").and_then(Value::as_u64),
            outcome,
        }
    }
}

/// The token pair of largest |value| (the first in row-major order on a tie).
fn strongest(record: &Value) -> Option<Strongest> {
    let token = |field: &str, k: usize| record.get(field)?.get(k)?.as_str().map(str::to_string);
    let mut best: Option<(usize, usize, f64)> = None;
    for (i, row) in record.get("attributions")?.as_array()?.iter().enumerate() {
        for (j, v) in row.as_array()?.iter().enumerate() {
            let Some(v) = v.as_f64().filter(|v| v.is_finite()) else { continue };
            if best.is_none_or(|(_, _, b)| v.abs() > b.abs()) {
                best = Some((i, j, v));
            }
        }
    }
    let (i, j, value) = best?;
    Some(Strongest { token_a: token("tokens_a", i)?, token_b: token("tokens_b", j)?, value })
}

/// The index of a batch's records: `title` and `about` (a line on the source and settings)
/// are plain text.
pub fn batch_index(entries: &[IndexEntry], title: &str, about: &str) -> Vec<u8> {
    let explained = entries.iter().filter(|e| matches!(e.outcome, Outcome::Explained { .. })).count();
    let ranked = entries.iter().any(|e| e.rank.is_some());
    let mut rows = String::new();
    for e in entries {
        let optional = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        let rank = match ranked {
            true => format!("<td class=\"num rank\">{}</td>", optional(e.rank)),
            false => String::new(),
        };
        match &e.outcome {
            Outcome::Explained { text_a, text_b, score, strongest } => {
                let href = page_name(e.n);
                let pair = strongest.as_ref().map_or_else(String::new, |s| {
                    escape(&format!("{} ↔ {}: {:+.4}", s.token_a, s.token_b, s.value))
                });
                rows.push_str(&format!(
                    "<tr class=\"explained\" data-n=\"{n}\" data-id=\"{id}\"><td class=\"num\"><a href=\"{href}\">{n}</a></td>\
                     <td class=\"id\"><a href=\"{href}\">{id}</a></td><td class=\"num line\">{line}</td>{rank}\
                     <td class=\"text a\" title=\"{full_a}\">{short_a}</td><td class=\"text b\" title=\"{full_b}\">{short_b}</td>\
                     <td class=\"score\" data-value=\"{score}\">{score:.4}</td><td class=\"pair\">{pair}</td></tr>\n",
                    n = e.n,
                    id = escape(&e.id),
                    line = optional(e.line),
                    full_a = escape(text_a),
                    short_a = escape(&shorten(text_a, SHORT_TEXT)),
                    full_b = escape(text_b),
                    short_b = escape(&shorten(text_b, SHORT_TEXT)),
                ));
            }
            Outcome::Failed { error } => rows.push_str(&format!(
                "<tr class=\"error\" data-n=\"{n}\" data-id=\"{id}\"><td class=\"num\">{n}</td><td class=\"id\">{id}</td>\
                 <td class=\"num line\">{line}</td>{rank}<td class=\"error\" colspan=\"4\">{error}</td></tr>\n",
                n = e.n,
                id = escape(&e.id),
                line = optional(e.line),
                error = escape(error),
            )),
        }
    }
    let summary = format!(
        "{} records: {explained} explained, {} errors{}",
        entries.len(),
        entries.len() - explained,
        if about.is_empty() { String::new() } else { format!(" · {about}") }
    );
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'\">\n\
         <meta name=\"generator\" content=\"simattr {version}\">\n<title>{title}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n\
         <header><h1>{title}</h1><p class=\"meta\" id=\"summary\">{summary}</p></header>\n<main>\n\
         <table class=\"index\" id=\"records\">\n<thead><tr><th class=\"num\">#</th><th>id</th><th class=\"num\">line</th>{rank_header}<th>text a</th>\
         <th>text b</th><th class=\"num\">score</th><th>strongest token pair</th></tr></thead>\n<tbody>\n{rows}</tbody>\n</table>\n</main>\n</body>\n</html>\n",
        version = env!("CARGO_PKG_VERSION"),
        title = escape(title),
        summary = escape(&summary),
        rank_header = if ranked { "<th class=\"num\">rank</th>" } else { "" },
    )
    .into_bytes()
}

/// Makes `dir` for `batch --html` and checks that it can be written, before the work.
pub fn prepare_dir(dir: &Path) -> Result<()> {
    let write_error = |source| Error::Write { path: dir.to_path_buf(), source };
    if dir.exists() && !dir.is_dir() {
        return Err(write_error(std::io::Error::other("it is not a directory")));
    }
    std::fs::create_dir_all(dir).map_err(write_error)?;
    files::check_writable(&dir.join("index.html"))
}

/// What `write_batch_report` wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchReport {
    pub records: usize,
    pub pages: usize,
}

/// Reads every record of the batch file `records` (a resumed run's old ones too) and writes
/// `dir/pair-N.html` for the Nth record when it was explained (unless that very page is there
/// already), then `dir/index.html` listing them all; each file whole or not at all.
pub fn write_batch_report(records: &Path, dir: &Path) -> Result<BatchReport> {
    let read_error = |source| Error::Io { path: records.to_path_buf(), source };
    let reader = std::io::BufReader::new(std::fs::File::open(records).map_err(read_error)?);
    let mut entries = Vec::new();
    let mut about = String::new();
    let mut pages = 0;
    for (k, line) in reader.lines().enumerate() {
        let line = line.map_err(read_error)?;
        if line.trim().is_empty() {
            continue;
        }
        let record: Value = serde_json::from_str(&line).map_err(|e| Error::BadJson {
            path: records.to_path_buf(),
            what: "a batch record",
            message: format!("line {}: {e}", k + 1),
        })?;
        let entry = IndexEntry::of_record(entries.len() + 1, &record);
        if let Outcome::Explained { .. } = entry.outcome {
            // A resumed run finds its earlier pages already there: only new or changed ones are
            // written (each write is synced to disk).
            let (path, page) = (dir.join(page_name(entry.n)), record_page(&record, entry.n));
            if std::fs::read(&path).ok().as_deref() != Some(page.as_slice()) {
                files::write_atomic(&path, &page)?;
            }
            pages += 1;
            if about.is_empty() {
                about = settings_line(&record);
            }
        }
        entries.push(entry);
    }
    let name = records.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let index = batch_index(&entries, &format!("simattr batch: {name}"), &about);
    files::write_atomic(&dir.join("index.html"), &index)?;
    Ok(BatchReport { records: entries.len(), pages })
}

/// "model …, layer 0, 50 steps riemann-right, cos" from a record's provenance.
fn settings_line(record: &Value) -> String {
    let field = |name: &str| {
        record.pointer(&format!("/provenance/{name}")).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
    };
    let mut parts = Vec::new();
    if let Some(model) = field("model") {
        parts.push(format!("model {model}"));
    }
    if let (Some(layer), Some(steps), Some(rule)) = (field("layer"), field("steps"), field("rule")) {
        parts.push(format!("layer {layer}, {steps} steps {rule}"));
    }
    if let Some(similarity) = field("similarity") {
        parts.push(similarity);
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HOSTILE: &str = "</script><script>alert(1)</script> <b>&";

    /// The text of the page's data element.
    fn data_of(page: &str) -> &str {
        let open = "<script type=\"application/json\" id=\"simattr-data\">";
        let start = page.find(open).expect("data element") + open.len();
        let end = start + page[start..].find("</script>").expect("end of the data element");
        &page[start..end]
    }

    fn record() -> Value {
        json!({
            "tokens_a": ["[CLS]", HOSTILE, "[SEP]"],
            "tokens_b": ["[CLS]", "<b>&", "[SEP]"],
            "attributions": [[0.1, -0.2, 0.0], [0.5, -0.75, 0.25], [0.0, 0.0, 0.125]],
            "score": 0.5,
            "text_a": {"text": HOSTILE},
            "text_b": {"text": "<b>& {{js}} <!-- x"},
        })
    }

    #[test]
    fn texts_cannot_break_out_of_the_page() {
        let page = String::from_utf8(explain_page(&record(), &pair_title(HOSTILE, "<b>&"))).unwrap();
        assert!(!page.contains("<script>alert(1)"), "the data closed its script element");
        assert!(!page.contains("<b>&"), "unescaped markup in the page");
        assert!(!page.contains("<!-- x"), "a comment opened in the data");
        // Two scripts, each closed once: the data and the code.
        assert_eq!(page.matches("</script>").count(), 2);
        assert!(page.contains("<title>simattr: &lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt; &lt;b&gt;&amp; ↔ &lt;b&gt;&amp;</title>"));
        // The data reads back as the record, the placeholder in a text left alone.
        let back: Value = serde_json::from_str(data_of(&page)).unwrap();
        assert_eq!(back, record());
        assert!(data_of(&page).contains("{{js}}"));
    }

    #[test]
    fn every_placeholder_is_filled_and_nothing_is_fetched() {
        let page = String::from_utf8(explain_page(&json!({"x": 1}), "title")).unwrap();
        assert!(!page.contains("{{"), "an unfilled placeholder");
        assert!(page.contains(JS) && page.contains(CSS));
        assert!(!JS.contains("</script") && !CSS.contains("</style"));
        for remote in ["http:", "https:", "src=", "@import", "url("] {
            assert!(!page.contains(remote), "the page refers to something outside it: {remote}");
        }
    }

    #[test]
    fn fill_is_one_pass_and_keeps_unknown_names() {
        assert_eq!(fill("a{{x}}b{{y}}c{{", &[("x", "{{y}}")]), "a{{y}}b{{y}}c{{");
    }

    #[test]
    fn the_index_escapes_ids_and_links_pages_by_number() {
        let mut explained = record();
        explained["id"] = json!("<b>&\"x");
        explained["line"] = json!(2);
        let failed = json!({"id": "bad<i>", "line": 3, "error": "line 3: no field `b` <here>"});
        let entries = [IndexEntry::of_record(1, &explained), IndexEntry::of_record(2, &failed)];
        let Outcome::Explained { strongest: Some(s), .. } = &entries[0].outcome else { panic!("{entries:?}") };
        assert_eq!((s.token_a.as_str(), s.token_b.as_str(), s.value), (HOSTILE, "<b>&", -0.75));
        let index = String::from_utf8(batch_index(&entries, "simattr batch: <out>", "")).unwrap();
        assert!(index.contains("<a href=\"pair-1.html\">&lt;b&gt;&amp;&quot;x</a>"), "{index}");
        assert!(!index.contains("pair-2.html"), "an error record has no page");
        assert!(index.contains("no field `b` &lt;here&gt;"));
        assert!(!index.contains("<script") && !index.contains("<b>") && !index.contains("<i>"));
        assert!(index.contains("2 records: 1 explained, 1 errors"));
    }

    #[test]
    fn shortening_counts_characters() {
        assert_eq!(shorten("héllo\nwörld", 20), "héllo wörld");
        assert_eq!(shorten("héllo wörld", 5), "héll…");
    }
}
