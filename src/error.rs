//! The one error type of the library. Every variant names what went wrong and where
//! (file, tensor, argument), so the CLI can print it as is.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },

    #[error("model folder {path} is missing {file}{hint}")]
    MissingFile { path: PathBuf, file: String, hint: String },

    #[error("{path} is not valid JSON for {what}: {message}")]
    BadJson { path: PathBuf, what: &'static str, message: String },

    #[error("{path} is not a valid safetensors file: {message}")]
    BadSafetensors { path: PathBuf, message: String },

    #[error("tensor `{name}` is missing from {path}")]
    MissingTensor { path: PathBuf, name: String },

    #[error("tensor `{name}` in {path} has shape {found:?}, but config.json implies {expected:?}")]
    TensorShape { path: PathBuf, name: String, expected: Vec<usize>, found: Vec<usize> },

    #[error("tensor `{name}` in {path} has dtype {dtype}; only F32, F16 and BF16 are supported")]
    TensorDtype { path: PathBuf, name: String, dtype: String },

    #[error("unsupported model in {path}: {message}")]
    Unsupported { path: PathBuf, message: String },

    #[error("invalid config in {path}: {message}")]
    BadConfig { path: PathBuf, message: String },

    #[error("tokenizer {path}: {message}")]
    Tokenizer { path: PathBuf, message: String },

    #[error("invalid argument {argument}: {message}")]
    Argument { argument: &'static str, message: String },

    /// CUDA is missing or failed: the driver, a GPU, or a tool the kernels need (NVRTC,
    /// ptxas, the f16 headers).
    #[error("CUDA: {0}")]
    Cuda(String),

    #[error("cannot render the heatmap: {0}")]
    Heatmap(String),

    /// Training produced a non-finite loss or gradient, or weights whose scores are not finite.
    #[error("training diverged at epoch {epoch}, update {step}: {what}; {}", match checkpoint {
        Some(dir) => format!("the last good checkpoint is kept in {} (resume with --resume, perhaps with a lower --lr)", dir.display()),
        None => "no epoch had finished, so there is no checkpoint (try a lower --lr)".to_string(),
    })]
    Diverged { epoch: u64, step: u64, what: String, checkpoint: Option<PathBuf> },

    /// The caller asked the work to stop (`Progress::interrupted`).
    #[error("interrupted")]
    Interrupted,

    /// A broken invariant inside the engine (a bug, not bad input).
    #[error("internal error (please report): {0}")]
    Internal(String),
}

impl Error {
    pub fn argument(argument: &'static str, message: impl Into<String>) -> Self {
        Error::Argument { argument, message: message.into() }
    }
}
