//! Where fetched models live: outside the repository, in a per-user cache.

use std::path::{Path, PathBuf};

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

/// The models `scripts/fetch_model.sh NAME` knows how to fetch.
pub const KNOWN_MODELS: [&str; 2] = ["all-MiniLM-L6-v2", "all-mpnet-base-v2"];

/// The folder `--model` names: an existing folder as given; otherwise a model name, looked up in
/// the cache (a known model, or any folder placed in the cache under that name). When nothing
/// is found the message says what was looked for and, for a known model, the command that
/// fetches it.
pub fn resolve_model(arg: Option<&Path>) -> Result<PathBuf, String> {
    let name = match arg {
        None => DEFAULT_MODEL,
        Some(path) if path.is_dir() => return Ok(path.to_path_buf()),
        Some(path) => match path.to_str() {
            Some(name) if !name.is_empty() && !name.contains(['/', '\\']) && name != "." && name != ".." => name,
            _ => return Err(format!("--model {}: no such folder", path.display())),
        },
    };
    let dir = model_dir(name);
    if dir.is_dir() {
        return Ok(dir);
    }
    let fetch = format!("scripts/fetch_model.sh {name}");
    match (arg, KNOWN_MODELS.contains(&name)) {
        (None, _) => Err(format!(
            "the default model {name} is not in the cache ({}).\nFetch it with `{fetch}`, or pass --model DIR or NAME.",
            dir.display()
        )),
        (Some(_), true) => {
            Err(format!("model {name} is not in the cache ({}).\nFetch it with `{fetch}`.", dir.display()))
        }
        (Some(_), false) => Err(format!(
            "--model {name}: no such folder, and no model of that name in the cache ({}); known models: {}",
            dir.display(),
            KNOWN_MODELS.join(", ")
        )),
    }
}
