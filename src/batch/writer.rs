//! The batch output: one JSON record per line, each appended whole with a single write. A run
//! killed at any point leaves complete records, and at most one partial last line, which
//! `--resume` cuts off before it continues after the ids already there.

use std::collections::HashSet;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::output::provenance::Provenance;

pub struct RecordWriter {
    path: PathBuf,
    file: std::fs::File,
}

/// What an output file already holds (for `--resume`).
#[derive(Debug, Default)]
pub struct Existing {
    /// The ids of its records, successful or not.
    pub ids: HashSet<String>,
    /// The provenance of its first successful record, to check the settings match.
    pub provenance: Option<Provenance>,
    /// Text a of its first successful record (for `--query`, the query).
    pub first_text_a: Option<String>,
    /// Bytes of a partial last line that were cut off.
    pub cut_bytes: usize,
}

impl RecordWriter {
    /// Opens `path` for a new run: an existing non-empty file is an error unless `resume`, in
    /// which case its complete records are kept (and reported) and a partial last line is
    /// cut off.
    pub fn open(path: &Path, resume: bool) -> Result<(Self, Existing)> {
        let write_error = |source| Error::Write { path: path.to_path_buf(), source };
        if path.is_dir() {
            return Err(write_error(std::io::Error::other("it is a directory")));
        }
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(Error::Io { path: path.to_path_buf(), source }),
        };
        if !bytes.is_empty() && !resume {
            return Err(Error::argument(
                "--out",
                format!(
                    "{} already holds records: pass --resume to continue it, or remove it to start over",
                    path.display()
                ),
            ));
        }
        let (existing, keep) = scan(&bytes, path)?;
        let mut file =
            std::fs::OpenOptions::new().create(true).write(true).truncate(false).open(path).map_err(write_error)?;
        file.set_len(keep as u64).map_err(write_error)?;
        file.seek(std::io::SeekFrom::End(0)).map_err(write_error)?;
        Ok((RecordWriter { path: path.to_path_buf(), file }, existing))
    }

    /// Appends one record as one line, in one write.
    pub fn append<T: Serialize>(&mut self, record: &T) -> Result<()> {
        self.append_line(super::record_line(record)?)
    }

    /// Appends a record already serialized by `record_line`, in one write.
    pub fn append_line(&mut self, mut line: Vec<u8>) -> Result<()> {
        line.push(b'\n');
        self.file.write_all(&line).map_err(|source| Error::Write { path: self.path.clone(), source })
    }

    /// Flushes the records to the disk.
    pub fn finish(self) -> Result<()> {
        self.file.sync_all().map_err(|source| Error::Write { path: self.path.clone(), source })
    }
}

/// The complete records of `bytes` and how many bytes they take; a last line without its
/// newline, or one that is not a JSON object, is partial (a write cut short) and dropped. A
/// bad line before the last is not ours to drop: that is an error.
fn scan(bytes: &[u8], path: &Path) -> Result<(Existing, usize)> {
    let mut existing = Existing::default();
    let mut keep = 0;
    let lines: Vec<&[u8]> = bytes.split_inclusive(|&b| b == b'\n').collect();
    for (n, line) in lines.iter().enumerate() {
        let last = n + 1 == lines.len();
        let parsed = match line.last() {
            Some(b'\n') => serde_json::from_slice::<Value>(line).ok().filter(Value::is_object),
            _ => None,
        };
        let Some(record) = parsed else {
            if last {
                break;
            }
            return Err(Error::argument(
                "--resume",
                format!("{} line {} is not a batch record; it is not this command's output", path.display(), n + 1),
            ));
        };
        let id = match record.get("id") {
            Some(Value::String(id)) => id.clone(),
            _ => {
                return Err(Error::argument(
                    "--resume",
                    format!("{} line {} has no `id`; it is not this command's output", path.display(), n + 1),
                ))
            }
        };
        if existing.provenance.is_none() {
            existing.provenance = record.get("provenance").and_then(|p| serde_json::from_value(p.clone()).ok());
            existing.first_text_a = record.pointer("/text_a/text").and_then(Value::as_str).map(str::to_string);
        }
        existing.ids.insert(id);
        keep += line.len();
    }
    existing.cut_bytes = bytes.len() - keep;
    Ok((existing, keep))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_keeps_whole_records_and_cuts_a_partial_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, "{\"id\":\"1\",\"x\":1}\n{\"id\":\"2\",\"x\":2}\n{\"id\":\"3\",\"x\"").unwrap();
        assert!(RecordWriter::open(&path, false).err().unwrap().to_string().contains("--resume"));
        let (mut writer, existing) = RecordWriter::open(&path, true).unwrap();
        assert_eq!(existing.ids, HashSet::from(["1".to_string(), "2".to_string()]));
        assert_eq!(existing.cut_bytes, "{\"id\":\"3\",\"x\"".len());
        writer.append(&serde_json::json!({"id": "3", "x": 3})).unwrap();
        writer.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"id\":\"1\",\"x\":1}\n{\"id\":\"2\",\"x\":2}\n{\"id\":\"3\",\"x\":3}\n");
    }

    #[test]
    fn a_foreign_file_is_not_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        std::fs::write(&path, "hello\n{\"id\":\"1\"}\n").unwrap();
        let message = RecordWriter::open(&path, true).err().unwrap().to_string();
        assert!(message.contains("line 1 is not a batch record"), "{message}");
        std::fs::write(&path, "{\"x\":1}\n").unwrap();
        assert!(RecordWriter::open(&path, true).err().unwrap().to_string().contains("has no `id`"));
    }
}
