//! Training pairs, read from JSONL, CSV or TSV (by the extension: `.jsonl`/`.ndjson`, `.csv`,
//! `.tsv`).
//!
//! - JSONL: one object per line with `"a"` and `"b"` (strings) and `"score"` (a number).
//! - CSV and TSV: a header row naming the columns `a`, `b` and `score`, in any order; other
//!   columns are ignored. Fields may be quoted (`"a, b"`, with `""` for a quote inside).
//!
//! Blank lines are skipped. Unlike `simattr batch`, a bad line stops the run with an error
//! that names the file and line and what is wrong: a missing field or column, an empty text,
//! a score that is not a number or lies out of range. A file with no pairs is an error too.
//!
//! Scores are rescaled to [0, 1] by `--score-scale`:
//! - `1`: scores lie in [0, 1] and are used as they are;
//! - `5`: scores lie in [0, 5] (the STS benchmark's scale) and are divided by 5;
//! - `auto` (the default): `5` if any score in the file is above 1, else `1`.
//!
//! A score outside the chosen range (outside [0, 5] for `auto`), or one that is not a finite
//! number, is an error naming its line. Distillation (the original model's cosine is the
//! target) does not read scores: a `score` column may be present but is ignored.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::str::FromStr;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::train::rng::{self, SplitMix64};

/// The option that names the pairs file, for error messages.
const ARGUMENT: &str = "--pairs";

/// One training pair.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledPair {
    pub a: String,
    pub b: String,
    /// Rescaled to [0, 1]; `None` when scores are not read (distillation).
    pub score: Option<f64>,
    /// 1-based line in its file (where the record starts, for a quoted multi-line CSV field).
    pub line: usize,
}

/// The scale of the scores in a file (`--score-scale`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScoreScale {
    /// `Five` if any score is above 1, else `Unit`.
    Auto,
    /// Scores in [0, 1], used as they are.
    Unit,
    /// Scores in [0, 5], divided by 5.
    Five,
}

impl FromStr for ScoreScale {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(ScoreScale::Auto),
            "1" => Ok(ScoreScale::Unit),
            "5" => Ok(ScoreScale::Five),
            _ => Err(Error::argument(
                "--score-scale",
                format!(
                    "`{text}` is not a score scale: expected `auto`, `1` (scores in [0, 1]) or `5` (scores in [0, 5])"
                ),
            )),
        }
    }
}

/// Whether the `score` field is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScoresWanted {
    /// Every pair must have a score.
    Required,
    /// Distillation: a score field may be present but is not read (`score` is `None`).
    Ignored,
}

/// A pair as read, its score not yet rescaled.
struct RawPair {
    a: String,
    b: String,
    score: Option<f64>,
    line: usize,
}

/// Reads every pair of `path` (see the module documentation for the formats and the scales).
pub fn read_labelled_pairs(path: &Path, scale: ScoreScale, scores: ScoresWanted) -> Result<Vec<LabelledPair>> {
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let file = std::fs::File::open(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    let raw = match extension.as_str() {
        "jsonl" | "ndjson" => read_jsonl(BufReader::new(file), path, scores)?,
        "csv" => read_delimited(&read_all(file, path)?, b',', path, scores)?,
        "tsv" => read_delimited(&read_all(file, path)?, b'\t', path, scores)?,
        _ => {
            return Err(Error::argument(
                ARGUMENT,
                format!(
                    "{}: cannot tell the format from the extension (expected .jsonl, .ndjson, .csv or .tsv)",
                    path.display()
                ),
            ))
        }
    };
    if raw.is_empty() {
        return Err(Error::argument(ARGUMENT, format!("{}: has no pairs", path.display())));
    }
    rescale(raw, scale, path)
}

fn line_error(path: &Path, line: usize, message: impl std::fmt::Display) -> Error {
    Error::argument(ARGUMENT, format!("{}:{line}: {message}", path.display()))
}

fn read_jsonl(reader: impl BufRead, path: &Path, scores: ScoresWanted) -> Result<Vec<RawPair>> {
    let mut pairs = Vec::new();
    for (n, text) in reader.lines().enumerate() {
        let line = n + 1;
        let text = text.map_err(|source| match source.kind() {
            std::io::ErrorKind::InvalidData => line_error(path, line, "is not valid UTF-8"),
            _ => Error::Io { path: path.to_path_buf(), source },
        })?;
        if text.trim().is_empty() {
            continue;
        }
        let object = match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(object)) => object,
            Ok(_) => return Err(line_error(path, line, "is not a JSON object")),
            Err(e) => return Err(line_error(path, line, format!("is not valid JSON: {e}"))),
        };
        let text_field = |field: &str| match object.get(field) {
            Some(Value::String(text)) => checked_text(text, field, path, line),
            Some(other) => Err(line_error(path, line, format!("field `{field}` must be a string, not {other}"))),
            None => Err(line_error(path, line, format!("field `{field}` is missing"))),
        };
        let (a, b) = (text_field("a")?, text_field("b")?);
        let score = match scores {
            ScoresWanted::Ignored => None,
            ScoresWanted::Required => match object.get("score") {
                Some(Value::Number(number)) => Some(
                    number
                        .as_f64()
                        .ok_or_else(|| line_error(path, line, format!("score {number} is not a finite number")))?,
                ),
                Some(other) => return Err(line_error(path, line, format!("score must be a number, not {other}"))),
                None => return Err(line_error(path, line, "field `score` is missing")),
            },
        };
        pairs.push(RawPair { a, b, score, line });
    }
    Ok(pairs)
}

fn read_all(mut file: std::fs::File, path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut bytes)
        .map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    Ok(bytes)
}

/// The 1-based line where a record starts, from its byte offset: the csv crate's own line
/// count, and its offset, do not count the blank lines it skipped before the record.
fn line_of(bytes: &[u8], newlines: &[usize], byte: u64) -> usize {
    let mut start = usize::try_from(byte).unwrap_or(usize::MAX).min(bytes.len());
    while start < bytes.len() && matches!(bytes[start], b'\n' | b'\r') {
        start += 1;
    }
    newlines.partition_point(|&at| at < start) + 1
}

fn read_delimited(bytes: &[u8], delimiter: u8, path: &Path, scores: ScoresWanted) -> Result<Vec<RawPair>> {
    let newlines: Vec<usize> = bytes.iter().enumerate().filter(|(_, &b)| b == b'\n').map(|(i, _)| i).collect();
    let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).flexible(true).from_reader(bytes);
    let csv_error = |e: csv::Error| {
        let line = e.position().map_or(1, |p| line_of(bytes, &newlines, p.byte()));
        match e.kind() {
            csv::ErrorKind::Io(_) => Error::argument(ARGUMENT, format!("{}: {e}", path.display())),
            csv::ErrorKind::Utf8 { .. } => line_error(path, line, "is not valid UTF-8"),
            _ => line_error(path, line, format!("cannot be read: {e}")),
        }
    };
    let header = reader.headers().map_err(csv_error)?.clone();
    let mut wanted = vec!["a", "b"];
    if scores == ScoresWanted::Required {
        wanted.push("score");
    }
    let mut columns = HashMap::new();
    for name in wanted {
        let column = header.iter().position(|h| h.trim() == name).ok_or_else(|| {
            line_error(
                path,
                1,
                format!(
                    "the header row has no `{name}` column (it has: {}){}",
                    header.iter().collect::<Vec<_>>().join(", "),
                    if header.len() == 1 && delimiter == b'\t' && header[0].contains(',') {
                        "; is this a CSV file named .tsv?"
                    } else if header.len() == 1 && delimiter == b',' && header[0].contains('\t') {
                        "; is this a TSV file named .csv?"
                    } else {
                        ""
                    }
                ),
            )
        })?;
        columns.insert(name, column);
    }
    let mut pairs = Vec::new();
    for record in reader.records() {
        let record = record.map_err(csv_error)?;
        let line = record.position().map_or(0, |p| line_of(bytes, &newlines, p.byte()));
        let field = |name: &str| {
            record.get(columns[name]).ok_or_else(|| {
                line_error(
                    path,
                    line,
                    format!("has {} columns, too few to hold `{name}` (the header has {})", record.len(), header.len()),
                )
            })
        };
        let a = checked_text(field("a")?, "a", path, line)?;
        let b = checked_text(field("b")?, "b", path, line)?;
        let score = match scores {
            ScoresWanted::Ignored => None,
            ScoresWanted::Required => {
                let text = field("score")?.trim();
                if text.is_empty() {
                    return Err(line_error(path, line, "score is empty"));
                }
                Some(
                    text.parse::<f64>()
                        .map_err(|_| line_error(path, line, format!("score `{text}` is not a number")))?,
                )
            }
        };
        pairs.push(RawPair { a, b, score, line });
    }
    Ok(pairs)
}

fn checked_text(text: &str, field: &str, path: &Path, line: usize) -> Result<String> {
    if text.trim().is_empty() {
        Err(line_error(path, line, format!("text `{field}` is empty")))
    } else {
        Ok(text.to_string())
    }
}

/// Checks every score against the scale (deciding `Auto` first) and rescales it to [0, 1].
fn rescale(raw: Vec<RawPair>, scale: ScoreScale, path: &Path) -> Result<Vec<LabelledPair>> {
    for pair in &raw {
        if let Some(score) = pair.score {
            if !score.is_finite() {
                return Err(line_error(path, pair.line, format!("score {score} is not a finite number")));
            }
        }
    }
    let scale = match scale {
        ScoreScale::Auto if raw.iter().any(|p| p.score.is_some_and(|s| s > 1.0)) => ScoreScale::Five,
        ScoreScale::Auto => ScoreScale::Unit,
        chosen => chosen,
    };
    let (top, how) = match scale {
        ScoreScale::Five => (5.0, "on the 0–5 scale"),
        _ => (1.0, "on the 0–1 scale"),
    };
    raw.into_iter()
        .map(|pair| {
            let score = match pair.score {
                Some(s) if !(0.0..=top).contains(&s) => {
                    return Err(line_error(
                        path,
                        pair.line,
                        format!("score {s} is out of range: expected a number in [0, {top}] {how} (--score-scale)"),
                    ))
                }
                Some(s) => Some(s / top),
                None => None,
            };
            Ok(LabelledPair { a: pair.a, b: pair.b, score, line: pair.line })
        })
        .collect()
}

/// A tag for the generator of the dev split, so it never shares a stream with the epochs'.
const DEV_SPLIT_STREAM: u64 = u64::from_le_bytes(*b"dev-spl\0");

/// Holds out `round(fraction · n)` pairs for evaluation, chosen by a seeded shuffle (the
/// generator `rng::stream(seed, [DEV_SPLIT_STREAM])`); at least one pair stays in training.
/// Returns (train, dev), each in file order. `fraction` must lie in [0, 1) (the CLI checks);
/// anything else is clamped to that range.
pub fn split_dev(pairs: Vec<LabelledPair>, fraction: f64, seed: u64) -> (Vec<LabelledPair>, Vec<LabelledPair>) {
    let n = pairs.len();
    let fraction = if fraction.is_finite() { fraction.clamp(0.0, 1.0) } else { 0.0 };
    let dev_count = ((fraction * n as f64).round() as usize).min(n.saturating_sub(1));
    let mut order: Vec<usize> = (0..n).collect();
    let mut generator: SplitMix64 = rng::stream(seed, &[DEV_SPLIT_STREAM]);
    generator.shuffle(&mut order);
    let mut in_dev = vec![false; n];
    for &i in &order[..dev_count] {
        in_dev[i] = true;
    }
    let (mut train, mut dev) = (Vec::with_capacity(n - dev_count), Vec::with_capacity(dev_count));
    for (pair, dev_pair) in pairs.into_iter().zip(in_dev) {
        if dev_pair {
            dev.push(pair);
        } else {
            train.push(pair);
        }
    }
    (train, dev)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, extension: &str, scale: ScoreScale, scores: ScoresWanted) -> Result<Vec<LabelledPair>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("pairs.{extension}"));
        std::fs::write(&path, text).unwrap();
        read_labelled_pairs(&path, scale, scores)
    }

    fn scored(text: &str, extension: &str, scale: ScoreScale) -> Vec<LabelledPair> {
        read(text, extension, scale, ScoresWanted::Required).unwrap()
    }

    fn error(text: &str, extension: &str, scale: ScoreScale, scores: ScoresWanted) -> String {
        read(text, extension, scale, scores).unwrap_err().to_string()
    }

    fn pair(a: &str, b: &str, score: Option<f64>, line: usize) -> LabelledPair {
        LabelledPair { a: a.into(), b: b.into(), score, line }
    }

    #[test]
    fn jsonl_pairs() {
        let text =
            "{\"a\": \"x\", \"b\": \"y\", \"score\": 0.25}\n\n{\"b\": \"q\", \"a\": \"p\", \"score\": 1, \"id\": 3}\n";
        let expected = vec![pair("x", "y", Some(0.25), 1), pair("p", "q", Some(1.0), 3)];
        assert_eq!(scored(text, "jsonl", ScoreScale::Auto), expected);
        assert_eq!(scored(text, "ndjson", ScoreScale::Unit), expected);
        let unscored =
            read("{\"a\": \"x\", \"b\": \"y\"}\n", "jsonl", ScoreScale::Auto, ScoresWanted::Ignored).unwrap();
        assert_eq!(unscored, vec![pair("x", "y", None, 1)]);
        // Ignored scores are not even looked at.
        let ignored = read(
            "{\"a\": \"x\", \"b\": \"y\", \"score\": \"n/a\"}\n",
            "jsonl",
            ScoreScale::Five,
            ScoresWanted::Ignored,
        );
        assert_eq!(ignored.unwrap(), vec![pair("x", "y", None, 1)]);
    }

    #[test]
    fn csv_and_tsv_with_quoting_extra_columns_and_any_order() {
        let csv =
            "id,score,b,a,genre\n1,4,\"y, with comma\",x,news\n2,2.5,\"say \"\"hi\"\"\nthere\",z,forum\n\n3,0,w,v,\n";
        assert_eq!(
            scored(csv, "csv", ScoreScale::Auto),
            vec![
                pair("x", "y, with comma", Some(0.8), 2),
                pair("z", "say \"hi\"\nthere", Some(0.5), 3),
                pair("v", "w", Some(0.0), 6)
            ]
        );
        let tsv = "a\tb\tscore\nx y\tz, w\t 0.5 \n";
        assert_eq!(scored(tsv, "tsv", ScoreScale::Unit), vec![pair("x y", "z, w", Some(0.5), 2)]);
        let unscored = read("a\tb\nx\ty\n", "tsv", ScoreScale::Auto, ScoresWanted::Ignored).unwrap();
        assert_eq!(unscored, vec![pair("x", "y", None, 2)]);
        // Windows line ends and blank lines keep the line numbers right.
        let crlf = read("a,b\r\n\r\nx,y\r\n\r\n\r\np,q\r\n", "csv", ScoreScale::Auto, ScoresWanted::Ignored).unwrap();
        assert_eq!(crlf, vec![pair("x", "y", None, 3), pair("p", "q", None, 6)]);
    }

    #[test]
    fn the_auto_rule_picks_five_only_when_a_score_is_above_one() {
        let unit = "a,b,score\nx,y,1\nx,z,0.5\n";
        let scores = |pairs: Vec<LabelledPair>| pairs.iter().map(|p| p.score.unwrap()).collect::<Vec<_>>();
        assert_eq!(scores(scored(unit, "csv", ScoreScale::Auto)), vec![1.0, 0.5]);
        assert_eq!(scores(scored(unit, "csv", ScoreScale::Five)), vec![0.2, 0.1]);
        let five = "a,b,score\nx,y,1\nx,z,1.5\n";
        assert_eq!(scores(scored(five, "csv", ScoreScale::Auto)), vec![0.2, 0.3]);
        assert!(error(five, "csv", ScoreScale::Unit, ScoresWanted::Required)
            .contains("pairs.csv:3: score 1.5 is out of range"));
        let too_high = "a,b,score\nx,y,3\nx,z,5.5\n";
        let message = error(too_high, "csv", ScoreScale::Auto, ScoresWanted::Required);
        assert!(message.contains("pairs.csv:3:") && message.contains("[0, 5]"), "{message}");
        let negative = error("a,b,score\nx,y,-0.1\n", "csv", ScoreScale::Auto, ScoresWanted::Required);
        assert!(negative.contains("pairs.csv:2: score -0.1 is out of range"), "{negative}");
    }

    #[test]
    fn every_bad_line_is_an_error_naming_the_file_and_line() {
        use ScoresWanted::{Ignored, Required};
        let cases: &[(&str, &str, ScoresWanted, &str)] = &[
            (
                "{\"a\": \"x\", \"b\": \"y\", \"score\": 1}\n{\"a\": \"x\", \"score\": 1}\n",
                "jsonl",
                Required,
                "pairs.jsonl:2: field `b` is missing",
            ),
            ("{\"a\": \"x\", \"b\": \"y\"}\n", "jsonl", Required, "pairs.jsonl:1: field `score` is missing"),
            (
                "\n{\"a\": \"x\", \"b\": \"y\", \"score\": \"0.5\"}\n",
                "jsonl",
                Required,
                "pairs.jsonl:2: score must be a number",
            ),
            ("{\"a\": \"  \", \"b\": \"y\"}\n", "jsonl", Ignored, "pairs.jsonl:1: text `a` is empty"),
            ("{\"a\": 3, \"b\": \"y\"}\n", "jsonl", Ignored, "pairs.jsonl:1: field `a` must be a string"),
            ("{\"a\": \"x\", \"b\": \"y\"}\nnot json\n", "jsonl", Ignored, "pairs.jsonl:2: is not valid JSON"),
            ("[1, 2]\n", "jsonl", Ignored, "pairs.jsonl:1: is not a JSON object"),
            ("a,b\nx,y\n", "csv", Required, "pairs.csv:1: the header row has no `score` column (it has: a, b)"),
            ("a,b,score\nx,y,0.5\nx,,0.5\n", "csv", Required, "pairs.csv:3: text `b` is empty"),
            ("a,b,score\nx,y,high\n", "csv", Required, "pairs.csv:2: score `high` is not a number"),
            ("a,b,score\nx,y,NaN\n", "csv", Required, "pairs.csv:2: score NaN is not a finite number"),
            ("a,b,score\nx,y,\n", "csv", Required, "pairs.csv:2: score is empty"),
            ("a,b,score\nx,y,0.5\nx,y\n", "csv", Required, "pairs.csv:3: has 2 columns, too few to hold `score`"),
            ("a,b\tscore\nx,y\t1\n", "tsv", Required, "no `a` column"),
            ("a,b\nx,y\n", "tsv", Ignored, "is this a CSV file named .tsv?"),
            ("", "jsonl", Ignored, "pairs.jsonl: has no pairs"),
            ("\n\n", "jsonl", Required, "pairs.jsonl: has no pairs"),
            ("a,b,score\n", "csv", Required, "pairs.csv: has no pairs"),
            ("a,b\nx,y\n", "xlsx", Ignored, "pairs.xlsx: cannot tell the format"),
        ];
        for (text, extension, scores, expected) in cases {
            let message = error(text, extension, ScoreScale::Auto, *scores);
            assert!(message.contains(expected), "expected `{expected}` in `{message}`");
            assert!(message.contains("--pairs"), "{message}");
        }
        let dir = tempfile::tempdir().unwrap();
        let latin1 = dir.path().join("pairs.tsv");
        std::fs::write(&latin1, b"a\tb\nx\ty\n\ncaf\xe9\tz\n").unwrap();
        let message = read_labelled_pairs(&latin1, ScoreScale::Auto, Ignored).unwrap_err().to_string();
        assert!(message.contains("pairs.tsv:4: is not valid UTF-8"), "{message}");
        std::fs::write(dir.path().join("pairs.jsonl"), b"{\"a\": \"caf\xe9\", \"b\": \"y\"}\n").unwrap();
        let message =
            read_labelled_pairs(&dir.path().join("pairs.jsonl"), ScoreScale::Auto, Ignored).unwrap_err().to_string();
        assert!(message.contains("pairs.jsonl:1: is not valid UTF-8"), "{message}");
        let missing = read_labelled_pairs(Path::new("/nonexistent/pairs.csv"), ScoreScale::Auto, Required).unwrap_err();
        assert!(matches!(missing, Error::Io { .. }), "{missing}");
    }

    #[test]
    fn score_scales_parse() {
        assert_eq!("auto".parse::<ScoreScale>().unwrap(), ScoreScale::Auto);
        assert_eq!("1".parse::<ScoreScale>().unwrap(), ScoreScale::Unit);
        assert_eq!("5".parse::<ScoreScale>().unwrap(), ScoreScale::Five);
        let message = "10".parse::<ScoreScale>().unwrap_err().to_string();
        assert!(
            message.contains("--score-scale") && message.contains("`10`") && message.contains("`auto`"),
            "{message}"
        );
    }

    #[test]
    fn split_dev_is_deterministic_disjoint_complete_and_in_file_order() {
        let pairs: Vec<LabelledPair> = (0..100).map(|i| pair(&format!("a{i}"), "b", Some(0.5), i + 2)).collect();
        let (train, dev) = split_dev(pairs.clone(), 0.1, 7);
        assert_eq!((train.len(), dev.len()), (90, 10));
        assert_eq!(split_dev(pairs.clone(), 0.1, 7), (train.clone(), dev.clone()));
        assert_ne!(split_dev(pairs.clone(), 0.1, 8).1, dev, "another seed picks the same dev pairs");
        let lines = |part: &[LabelledPair]| part.iter().map(|p| p.line).collect::<Vec<_>>();
        let (train_lines, dev_lines) = (lines(&train), lines(&dev));
        assert!(train_lines.windows(2).all(|w| w[0] < w[1]) && dev_lines.windows(2).all(|w| w[0] < w[1]));
        let mut all = [train_lines, dev_lines].concat();
        all.sort_unstable();
        assert_eq!(all, lines(&pairs));
        // Not simply the first or last lines.
        assert!(dev.iter().any(|p| p.line > 11) && dev.iter().any(|p| p.line < 92));
        // Rounding, no dev set, and at least one training pair.
        assert_eq!(split_dev(pairs[..5].to_vec(), 0.5, 1).1.len(), 3);
        assert_eq!(split_dev(pairs.clone(), 0.0, 1), (pairs.clone(), vec![]));
        assert_eq!(split_dev(pairs[..1].to_vec(), 0.9, 1).0.len(), 1);
    }
}
