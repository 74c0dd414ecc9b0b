//! The sha256 of a weights file (the `weights_sha256` provenance and the attribution cache's
//! key), remembered across processes: hashing a 438 MB checkpoint costs a few hundred ms of
//! every load, and a 2.3 GB one seconds (docs/performance.md). A digest is kept in the cache
//! (`digests/`) under the file's canonical path, length, modification time and inode, the
//! same test `make` and git's index trust; a file rewritten in place gets a new modification
//! time and is hashed again. Modification times advance by the kernel's clock tick (a few ms),
//! so two writes of the same length in one tick look alike: as git does for its index, a file
//! modified less than `SETTLED` ago is hashed every time and not remembered. The record is an
//! optimisation: a cache that cannot be read or written is skipped, never an error.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::model::cache::cache_dir;
use crate::model::folder::hex;

/// sha256 of a file's bytes, lowercase hex: the remembered digest where the file is unchanged,
/// else hashed from the mapped file (no copy through a read buffer) and remembered.
pub fn file_sha256(path: &Path) -> Result<String> {
    file_sha256_remembered_in(path, &cache_dir().join("digests"))
}

/// `file_sha256` with the records in `records`.
fn file_sha256_remembered_in(path: &Path, records: &Path) -> Result<String> {
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let identity = Identity::of(path, &file, records);
    if let Some(digest) = identity.as_ref().and_then(Identity::remembered) {
        return Ok(digest);
    }
    let digest = hash_file(&file).map_err(io)?;
    if let Some(identity) = identity {
        identity.remember(&digest);
    }
    Ok(digest)
}

fn hash_file(file: &std::fs::File) -> std::io::Result<String> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    if file.metadata()?.len() > 0 {
        // SAFETY: read-only, and only for the hash; a file truncated meanwhile could fault,
        // the cost every mapped read of the weights accepts (`model::weights`).
        let map = unsafe { memmap2::Mmap::map(file)? };
        hasher.update(&map[..]);
    }
    Ok(hex(&hasher.finalize()))
}

/// How long ago a file must have been modified for its digest to be remembered.
const SETTLED: Duration = Duration::from_secs(2);

/// What a remembered digest is valid for.
struct Identity {
    /// `path length mtime-ns inode`, one line.
    key: String,
    record: PathBuf,
    modified: SystemTime,
}

impl Identity {
    fn of(path: &Path, file: &std::fs::File, records: &Path) -> Option<Self> {
        let meta = file.metadata().ok()?;
        let modified = meta.modified().ok()?;
        let since_epoch = modified.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0u64;
        let canonical = std::fs::canonicalize(path).ok()?;
        let key = format!("{} {} {since_epoch} {inode}", canonical.display(), meta.len());
        use sha2::Digest;
        let name = hex(&sha2::Sha256::digest(key.as_bytes()));
        Some(Identity { key, record: records.join(format!("{name}.txt")), modified })
    }

    /// The digest remembered for exactly this key, if any.
    fn remembered(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.record).ok()?;
        let (key, digest) = text.trim_end().split_once('\n')?;
        let valid = key == self.key && digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit());
        valid.then(|| digest.to_string())
    }

    fn remember(&self, digest: &str) {
        let settled = SystemTime::now().duration_since(self.modified).is_ok_and(|age| age >= SETTLED);
        if !settled {
            return;
        }
        if let Some(dir) = self.record.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = crate::output::files::write_atomic(&self.record, format!("{}\n{digest}\n", self.key).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The digest is the file's, remembered under its identity once the file has settled; a
    /// rewrite (new mtime, new length) is hashed anew, and a damaged record is ignored.
    #[test]
    fn digests_are_remembered_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let records = dir.path().join("digests");
        let digest = |file: &Path| file_sha256_remembered_in(file, &records).unwrap();
        let identity = |file: &Path| Identity::of(file, &std::fs::File::open(file).unwrap(), &records).unwrap();
        let file = dir.path().join("w.bin");
        std::fs::write(&file, b"abc").unwrap();
        // sha256("abc"), FIPS 180-2's example.
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(digest(&file), abc);
        assert_eq!(identity(&file).remembered(), None, "a file modified just now is not remembered");
        let old = SystemTime::now() - Duration::from_secs(60);
        std::fs::File::options().write(true).open(&file).unwrap().set_modified(old).unwrap();
        assert_eq!(digest(&file), abc);
        assert_eq!(identity(&file).remembered().as_deref(), Some(abc));
        // Remembered: a record saying otherwise for this identity is what comes back.
        let other = "0".repeat(64);
        std::fs::write(&identity(&file).record, format!("{}\n{other}\n", identity(&file).key)).unwrap();
        assert_eq!(digest(&file), other);
        // Rewritten: a new identity, hashed anew.
        std::fs::write(&file, b"").unwrap();
        std::fs::File::options().write(true).open(&file).unwrap().set_modified(old).unwrap();
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(digest(&file), empty);
        // A damaged record is not trusted.
        std::fs::write(&identity(&file).record, format!("{}\nnot a digest\n", identity(&file).key)).unwrap();
        assert_eq!(identity(&file).remembered(), None);
        assert_eq!(digest(&file), empty);
    }
}
