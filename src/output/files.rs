//! Output files are written whole or not at all: into a temporary file beside the target,
//! then renamed over it. A failure leaves no half-written file behind, and the files of one
//! command (JSON and picture) are written as a group: all of them or none.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// A temporary name no other writer uses at the same time: not another thread of this process
/// (the counter), nor a process with the same pid on another machine sharing the folder (the
/// clock's nanoseconds), e.g. the actors of a cluster writing one shared text cache.
fn temporary_beside(path: &Path) -> PathBuf {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let write = WRITES.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |t| t.subsec_nanos());
    path.with_file_name(format!(".{name}.simattr-{}-{write}-{nanos}.tmp", std::process::id()))
}

fn write_error(path: &Path, source: std::io::Error) -> Error {
    Error::Write { path: path.to_path_buf(), source }
}

/// Fails early, before long work, if `path` cannot be written (missing folder, no permission,
/// a directory in the way).
pub fn check_writable(path: &Path) -> Result<()> {
    if path.is_dir() {
        return Err(write_error(path, std::io::Error::other("it is a directory")));
    }
    let probe = temporary_beside(path);
    std::fs::File::create(&probe).map_err(|e| write_error(path, e))?;
    std::fs::remove_file(&probe).map_err(|e| write_error(path, e))
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_all(&[(path, bytes)])
}

/// Writes every `(path, bytes)` or none: all temporaries first, then the renames. If any
/// write or rename fails, the temporaries and the files already put in place are removed, so
/// no output of the group is left behind (a file that existed before is not restored).
pub fn write_all(outputs: &[(&Path, &[u8])]) -> Result<()> {
    let mut written: Vec<(PathBuf, &Path)> = Vec::new();
    let discard = |temporaries: &[(PathBuf, &Path)]| {
        for (temporary, _) in temporaries {
            let _ = std::fs::remove_file(temporary);
        }
    };
    for &(path, bytes) in outputs {
        if path.is_dir() {
            discard(&written);
            return Err(write_error(path, std::io::Error::other("it is a directory")));
        }
        let temporary = temporary_beside(path);
        let result = (|| {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(bytes)?;
            file.sync_all()
        })();
        written.push((temporary, path));
        if let Err(e) = result {
            discard(&written);
            return Err(write_error(path, e));
        }
    }
    for (n, (temporary, path)) in written.iter().enumerate() {
        if let Err(e) = std::fs::rename(temporary, path) {
            discard(&written[n..]);
            for (_, placed) in &written[..n] {
                let _ = std::fs::remove_file(placed);
            }
            return Err(write_error(path, e));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn a_failing_picture_takes_the_json_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("pair.json");
        let missing_folder = dir.path().join("gone").join("pair.png");
        let err = write_all(&[(&json, b"{}"), (&missing_folder, b"png")]).unwrap_err().to_string();
        assert!(err.contains("pair.png"), "{err}");
        assert!(entries(dir.path()).is_empty(), "left behind: {:?}", entries(dir.path()));

        // A directory in the picture's place fails too, and still nothing is left.
        std::fs::create_dir(dir.path().join("pair.png")).unwrap();
        let err = write_all(&[(&json, b"{}"), (&dir.path().join("pair.png"), b"png")]).unwrap_err().to_string();
        assert!(err.contains("directory"), "{err}");
        assert_eq!(entries(dir.path()), vec!["pair.png"]);
    }

    #[test]
    fn a_group_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.json"), dir.path().join("b.png"));
        write_all(&[(&a, b"first"), (&b, b"second")]).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"first");
        assert_eq!(std::fs::read(&b).unwrap(), b"second");
        assert_eq!(entries(dir.path()), vec!["a.json", "b.png"]);
    }
}
