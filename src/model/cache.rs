//! Where fetched models live: outside the repository, in a per-user cache.

use std::path::PathBuf;

/// The default model's folder name inside the cache.
pub const DEFAULT_MODEL: &str = "all-MiniLM-L6-v2";

/// `$SIMATTR_CACHE`, else `$XDG_CACHE_HOME/simattr`, else `~/.cache/simattr`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SIMATTR_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("simattr");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("simattr")
}

/// Folder of a model fetched by `scripts/fetch_model.sh`.
pub fn model_dir(name: &str) -> PathBuf {
    cache_dir().join("models").join(name)
}
