//! An unchanged sentence-transformers folder: which modules it lists (transformer, pooling,
//! normalize), their configs, the tokenizer and the weights.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::config::{read_encoder_config, EncoderConfig};
use super::tokenizer::TextTokenizer;
use super::weights::load_encoder_params;
use crate::error::{Error, Result};
use crate::params::{EncoderParams, HostTensor};

/// How token states become one sentence vector (`1_Pooling/config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The mean over tokens (most models).
    Mean,
    /// The first token's state (the bge family).
    Cls,
    /// The largest value over tokens, per feature.
    Max,
}

impl Pooling {
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Max => "max",
        }
    }
}

/// The `modules.json` type that marks an exact model, listed between the Transformer and the
/// Pooling module: `{"idx": 1, "name": "shifted_reference", "path": "", "type":
/// "simattr.ShiftedReference"}`. Like xsbert's `ShiftingReferenceTransformer`, the model then
/// subtracts the output token states of the reference input of the same length (the
/// tokenizer's framing tokens around padding) from the text's before pooling.
pub const SHIFTED_REFERENCE_MODULE: &str = "simattr.ShiftedReference";

/// A loaded sentence-transformers model, weights on the host.
pub struct SentenceModel {
    pub path: PathBuf,
    pub config: EncoderConfig,
    pub pooling: Pooling,
    /// Whether `modules.json` lists a `Normalize` module (applied by `encode`, not attributed).
    pub normalize: bool,
    /// An exact model (`SHIFTED_REFERENCE_MODULE` listed): the output token states of the
    /// reference input of the same length are subtracted before pooling, so `e(r) = 0`.
    pub shifted_reference: bool,
    /// The Transformer module's folder (config, tokenizer, weights) and the Pooling module's.
    pub encoder_dir: PathBuf,
    pub pooling_dir: PathBuf,
    pub max_seq_length: usize,
    pub tokenizer: TextTokenizer,
    pub params: EncoderParams<HostTensor>,
    /// sha256 of `model.safetensors` (lowercase hex): which weights, whatever the folder is
    /// called. Recorded in every JSON output and part of the attribution cache's key.
    pub weights_sha256: String,
}

#[derive(Deserialize)]
struct ModuleEntry {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

impl SentenceModel {
    pub fn load(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::MissingFile {
                path: dir.to_path_buf(),
                file: "(the folder itself)".into(),
                hint: ". Fetch the default model with `scripts/fetch_model.sh`, or pass --model DIR".into(),
            });
        }
        let modules: Vec<ModuleEntry> = read_json(&require(dir, "modules.json")?, "modules.json")?;
        let module = |suffix: &str| modules.iter().find(|m| m.kind.ends_with(suffix));
        let transformer = module("models.Transformer").ok_or_else(|| Error::Unsupported {
            path: dir.join("modules.json"),
            message: "no sentence_transformers.models.Transformer module is listed".into(),
        })?;
        let pooling_module = module("models.Pooling").ok_or_else(|| Error::Unsupported {
            path: dir.join("modules.json"),
            message: "no sentence_transformers.models.Pooling module is listed".into(),
        })?;
        let normalize = module("models.Normalize").is_some();
        let shifted_reference = modules.iter().any(|m| m.kind == SHIFTED_REFERENCE_MODULE);
        for m in &modules {
            let known = ["models.Transformer", "models.Pooling", "models.Normalize", SHIFTED_REFERENCE_MODULE];
            if !known.iter().any(|k| m.kind.ends_with(k)) {
                return Err(Error::Unsupported {
                    path: dir.join("modules.json"),
                    message: format!(
                        "module `{}` (supported: Transformer, Pooling, Normalize, {SHIFTED_REFERENCE_MODULE})",
                        m.kind
                    ),
                });
            }
        }

        let encoder_dir = dir.join(&transformer.path);
        let pooling = read_pooling(&require(&dir.join(&pooling_module.path), "config.json")?)?;
        if shifted_reference && pooling == Pooling::Max {
            // The max of shifted states is not the shifted max: the shift is only known to be
            // a constant offset of the pooled vector for mean and CLS pooling.
            return Err(Error::Unsupported {
                path: dir.join("modules.json"),
                message: format!("{SHIFTED_REFERENCE_MODULE} with max pooling (an exact model pools by mean or CLS)"),
            });
        }
        let config = read_encoder_config(&require(&encoder_dir, "config.json")?)?;
        let sbert_path = require(&encoder_dir, "sentence_bert_config.json")?;
        let sbert: SentenceBertConfig = read_json(&sbert_path, "sentence_bert_config.json")?;
        let max_seq_length = sbert.max_seq_length.unwrap_or(config.max_tokens()).min(config.max_tokens());
        if max_seq_length < 2 {
            return Err(Error::BadConfig { path: sbert_path, message: format!("max_seq_length {max_seq_length} < 2") });
        }
        let (tokenizer_path, weights_path) =
            (require(&encoder_dir, "tokenizer.json")?, require(&encoder_dir, "model.safetensors")?);
        // The tokenizer parses and the weights are hashed while the weights are read.
        let (tokenizer, params, weights_sha256) = std::thread::scope(|scope| {
            let tokenizer = scope.spawn(|| TextTokenizer::load(&tokenizer_path, max_seq_length, &config));
            let hash = scope.spawn(|| file_sha256(&weights_path));
            let params = load_encoder_params(&weights_path, &config);
            let tokenizer = tokenizer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (tokenizer, params, hash.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
        });
        let (tokenizer, params, weights_sha256) = (tokenizer?, params?, weights_sha256?);
        Ok(SentenceModel {
            path: dir.to_path_buf(),
            config,
            pooling,
            normalize,
            shifted_reference,
            pooling_dir: dir.join(&pooling_module.path),
            encoder_dir,
            max_seq_length,
            tokenizer,
            params,
            weights_sha256,
        })
    }
}

/// sha256 of a file's bytes, lowercase hex (≈ 1.5 GB/s with the CPU's SHA extensions).
pub fn file_sha256(path: &Path) -> Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer).map_err(io)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_pooling(path: &Path) -> Result<Pooling> {
    let raw: PoolingConfig = read_json(path, "a pooling config")?;
    let modes = [
        ("cls", raw.pooling_mode_cls_token),
        ("mean", raw.pooling_mode_mean_tokens),
        ("max", raw.pooling_mode_max_tokens),
        ("mean_sqrt_len", raw.pooling_mode_mean_sqrt_len_tokens),
        ("weightedmean", raw.pooling_mode_weightedmean_tokens),
        ("lasttoken", raw.pooling_mode_lasttoken),
    ];
    let active: Vec<&str> = modes.iter().filter(|(_, on)| *on).map(|(name, _)| *name).collect();
    let unsupported = |message: String| Error::Unsupported { path: path.to_path_buf(), message };
    match active.as_slice() {
        ["mean"] => Ok(Pooling::Mean),
        ["cls"] => Ok(Pooling::Cls),
        ["max"] => Ok(Pooling::Max),
        [] => Err(unsupported("no pooling mode is switched on".into())),
        [one] => Err(unsupported(format!("pooling mode `{one}` (supported: mean, cls, max)"))),
        several => Err(unsupported(format!(
            "pooling modes {} together (a concatenation; supported: exactly one of mean, cls, max)",
            several.join(" + ")
        ))),
    }
}

fn require(dir: &Path, file: &str) -> Result<PathBuf> {
    let path = dir.join(file);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::MissingFile { path: dir.to_path_buf(), file: file.to_string(), hint: String::new() })
    }
}

pub(crate) fn read_json<T: DeserializeOwned>(path: &Path, what: &'static str) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    serde_json::from_str(&text).map_err(|e| Error::BadJson { path: path.to_path_buf(), what, message: e.to_string() })
}
