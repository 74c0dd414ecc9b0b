//! Pairs (and documents) read from JSONL, CSV or TSV. A file that cannot be read, or a CSV
//! without `a` and `b` columns, stops the run; a bad line becomes a `Bad` item that names the
//! line, so the run goes on and the output says what was wrong where.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// How an input file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated, with a header row.
    Csv,
    /// Tab-separated, with a header row.
    Tsv,
    /// Documents only: one document per line, as is.
    Lines,
}

impl Format {
    /// By the file's extension: .jsonl/.ndjson, .csv, .tsv; `.txt` (documents only) is lines.
    pub fn of_path(path: &Path, allow_lines: bool) -> Result<Self> {
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        match extension.as_str() {
            "jsonl" | "ndjson" => Ok(Format::Jsonl),
            "csv" => Ok(Format::Csv),
            "tsv" => Ok(Format::Tsv),
            "txt" if allow_lines => Ok(Format::Lines),
            _ => Err(Error::argument(
                "input",
                format!(
                    "{}: cannot tell the format from the extension (expected .jsonl, .ndjson, .csv or .tsv{})",
                    path.display(),
                    if allow_lines { ", or .txt for one document per line" } else { "" }
                ),
            )),
        }
    }
}

/// One line of the input: its fields, or what was wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Row { line: usize, id: String, fields: Vec<String> },
    Bad { line: usize, id: String, message: String },
}

impl Item {
    pub fn id(&self) -> &str {
        match self {
            Item::Row { id, .. } | Item::Bad { id, .. } => id,
        }
    }
    pub fn line(&self) -> usize {
        match self {
            Item::Row { line, .. } | Item::Bad { line, .. } => *line,
        }
    }
}

/// Reads every item of `path`: for each line, the named `fields` (e.g. `["a", "b"]`) as
/// non-empty strings and an `id` (the `id` field or column if present, else the line number).
/// A missing or empty field, or an id seen before, makes the line a `Bad` item.
pub fn read_items(path: &Path, format: Format, fields: &[&'static str]) -> Result<Vec<Item>> {
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let items = match format {
        Format::Jsonl => read_jsonl(BufReader::new(file), path, fields)?,
        Format::Csv => read_delimited(file, b',', path, fields)?,
        Format::Tsv => read_delimited(file, b'\t', path, fields)?,
        Format::Lines => {
            let mut items = Vec::new();
            for (n, line) in BufReader::new(file).lines().enumerate() {
                let line = line.map_err(io)?;
                if !line.trim().is_empty() {
                    items.push(Item::Row { line: n + 1, id: (n + 1).to_string(), fields: vec![line] });
                }
            }
            items
        }
    };
    Ok(unique_ids(items))
}

fn read_jsonl(reader: impl BufRead, path: &Path, fields: &[&'static str]) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        let number = n + 1;
        if line.trim().is_empty() {
            continue;
        }
        let object = match serde_json::from_str::<Value>(&line) {
            Ok(Value::Object(object)) => object,
            Ok(_) => {
                items.push(bad(number, None, "not a JSON object".into()));
                continue;
            }
            Err(e) => {
                items.push(bad(number, None, format!("not valid JSON: {e}")));
                continue;
            }
        };
        let id = match object.get("id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(other) => {
                items.push(bad(number, None, format!("field `id` must be a string or a number, not {other}")));
                continue;
            }
        };
        let mut values = Vec::with_capacity(fields.len());
        let mut problem = None;
        for &field in fields {
            match object.get(field) {
                Some(Value::String(text)) => values.push(text.clone()),
                Some(other) => problem = Some(format!("field `{field}` must be a string, not {other}")),
                None => problem = Some(format!("field `{field}` is missing")),
            }
            if problem.is_some() {
                break;
            }
        }
        items.push(match problem {
            Some(message) => bad(number, id, message),
            None => row(number, id, values),
        });
    }
    Ok(items)
}

fn read_delimited(file: std::fs::File, delimiter: u8, path: &Path, fields: &[&'static str]) -> Result<Vec<Item>> {
    let csv_error = |e: csv::Error| Error::argument("input", format!("{}: {e}", path.display()));
    let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).flexible(true).from_reader(file);
    let header = reader.headers().map_err(csv_error)?.clone();
    let column = |name: &str| header.iter().position(|h| h.trim() == name);
    let mut columns = Vec::with_capacity(fields.len());
    for &field in fields {
        columns.push(column(field).ok_or_else(|| {
            Error::argument(
                "input",
                format!(
                    "{}: the header row has no `{field}` column (it has: {})",
                    path.display(),
                    header.iter().collect::<Vec<_>>().join(", ")
                ),
            )
        })?);
    }
    let id_column = column("id");
    let mut items = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                items.push(bad(line, None, format!("cannot be read: {e}")));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line() as usize);
        let id = id_column.and_then(|c| record.get(c)).map(str::to_string).filter(|id| !id.is_empty());
        let values: Option<Vec<String>> = columns.iter().map(|&c| record.get(c).map(str::to_string)).collect();
        items.push(match values {
            Some(values) => row(line, id, values),
            None => bad(line, id, format!("has {} columns, fewer than the header's {}", record.len(), header.len())),
        });
    }
    Ok(items)
}

fn row(line: usize, id: Option<String>, fields: Vec<String>) -> Item {
    Item::Row { line, id: id.unwrap_or_else(|| line.to_string()), fields }
}

fn bad(line: usize, id: Option<String>, message: String) -> Item {
    Item::Bad { line, id: id.unwrap_or_else(|| line.to_string()), message: format!("line {line}: {message}") }
}

/// Ids key the output (and `--resume`), so an id seen before makes its later lines `Bad`.
fn unique_ids(items: Vec<Item>) -> Vec<Item> {
    let mut first_line: HashMap<String, usize> = HashMap::new();
    items
        .into_iter()
        .map(|item| {
            let (id, line) = (item.id().to_string(), item.line());
            match first_line.get(&id) {
                Some(&first) => bad(line, Some(id.clone()), format!("id `{id}` repeats line {first}'s")),
                None => {
                    first_line.insert(id, line);
                    item
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, extension: &str, fields: &[&'static str]) -> Vec<Item> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("pairs.{extension}"));
        std::fs::write(&path, text).unwrap();
        read_items(&path, Format::of_path(&path, true).unwrap(), fields).unwrap()
    }

    fn row_of(line: usize, id: &str, fields: &[&str]) -> Item {
        Item::Row { line, id: id.into(), fields: fields.iter().map(|f| f.to_string()).collect() }
    }

    #[test]
    fn jsonl_rows_and_bad_lines() {
        let text = "{\"a\": \"x\", \"b\": \"y\", \"id\": 7}\n\n{\"a\": \"x\"}\nnot json\n{\"a\": \"p\", \"b\": \"q\"}\n[1]\n{\"a\": \"x\", \"b\": \"y\", \"id\": \"7\"}\n";
        let items = read(text, "jsonl", &["a", "b"]);
        assert_eq!(items[0], row_of(1, "7", &["x", "y"]));
        assert!(matches!(&items[1], Item::Bad { line: 3, message, .. } if message.contains("`b` is missing")));
        assert!(matches!(&items[2], Item::Bad { line: 4, message, .. } if message.contains("not valid JSON")));
        assert_eq!(items[3], row_of(5, "5", &["p", "q"]));
        assert!(matches!(&items[4], Item::Bad { line: 6, message, .. } if message.contains("not a JSON object")));
        assert!(matches!(&items[5], Item::Bad { line: 7, message, .. } if message.contains("repeats line 1")));
        assert_eq!(items.len(), 6);
    }

    #[test]
    fn csv_and_tsv_with_quoting_and_any_column_order() {
        let csv = "id,b,a\nfirst,\"y, with comma\",x\n,\"multi\nline\",z\nshort\n";
        let items = read(csv, "csv", &["a", "b"]);
        assert_eq!(items[0], row_of(2, "first", &["x", "y, with comma"]));
        assert_eq!(items[1], row_of(3, "3", &["z", "multi\nline"]));
        assert!(matches!(&items[2], Item::Bad { line: 5, message, .. } if message.contains("fewer than the header")));
        let tsv = "a\tb\nx y\tz\n";
        assert_eq!(read(tsv, "tsv", &["a", "b"]), vec![row_of(2, "2", &["x y", "z"])]);
    }

    #[test]
    fn a_header_without_the_fields_names_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pairs.csv");
        std::fs::write(&path, "text1,text2\nx,y\n").unwrap();
        let message = read_items(&path, Format::Csv, &["a", "b"]).unwrap_err().to_string();
        assert!(message.contains("no `a` column") && message.contains("text1, text2"), "{message}");
        let unknown = Format::of_path(Path::new("pairs.xlsx"), false).unwrap_err().to_string();
        assert!(unknown.contains("pairs.xlsx") && unknown.contains(".jsonl"), "{unknown}");
    }

    #[test]
    fn documents_one_per_line() {
        let items = read("first doc\n\n  \nsecond, doc\n", "txt", &["text"]);
        assert_eq!(items, vec![row_of(1, "1", &["first doc"]), row_of(4, "4", &["second, doc"])]);
    }
}
