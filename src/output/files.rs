//! Output files are written whole or not at all: into a temporary file beside the target,
//! then renamed over it. A failure leaves no half-written file behind.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

fn temporary_beside(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.simattr-{}.tmp", std::process::id()))
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
    if path.is_dir() {
        return Err(write_error(path, std::io::Error::other("it is a directory")));
    }
    let temporary = temporary_beside(path);
    let result = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temporary);
        return Err(write_error(path, e));
    }
    Ok(())
}
