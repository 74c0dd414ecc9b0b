//! An unchanged sentence-transformers folder: which modules it lists (transformer, pooling,
//! normalize), their configs, the tokenizer and the weights.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::config::{read_encoder_config, EncoderConfig};
use super::digest::file_sha256;
use super::tokenizer::TextTokenizer;
use super::weights::{load_dense, load_encoder_params};
use crate::error::{Error, Result};
use crate::params::{DenseActivation, EncoderParams, HostTensor, Linear};

/// How token states become one sentence vector (`1_Pooling/config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pooling {
    /// The mean over tokens (most models).
    Mean,
    /// The first token's state (the bge family).
    Cls,
    /// The largest value over tokens, per feature.
    Max,
    /// The last token's state (decoders: Qwen3-Embedding pools its closing EOS).
    LastToken,
    /// The token sum over `√T` (`mean_sqrt_len_tokens`).
    MeanSqrtLen,
    /// Token `i` (from 0) weighted by `i + 1`, the sum over the weights' sum (`weightedmean`,
    /// the SGPT models).
    WeightedMean,
}

impl Pooling {
    /// Every mode, as sentence-transformers names it in `pooling_mode`.
    pub const ALL: [Pooling; 6] =
        [Pooling::Cls, Pooling::Mean, Pooling::Max, Pooling::MeanSqrtLen, Pooling::WeightedMean, Pooling::LastToken];

    pub fn name(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Max => "max",
            Pooling::LastToken => "lasttoken",
            Pooling::MeanSqrtLen => "mean_sqrt_len_tokens",
            Pooling::WeightedMean => "weightedmean",
        }
    }

    /// The weight of each of `tokens` tokens in the pooled vector, whose pooling is a weighted
    /// sum of the token states (every mode but max), the first `skipped` tokens left out as
    /// sentence-transformers masks out a prompt (`include_prompt: false`): each mode's
    /// normalizer counts only the tokens kept, `weightedmean`'s weights stay the positions,
    /// `i + 1`, and CLS reads the first token kept (sentence-transformers 6 takes the first
    /// unmasked one). `None` for max, which is not linear.
    pub fn token_weights(self, tokens: usize, skipped: usize) -> Option<Vec<f64>> {
        let skipped = skipped.min(tokens);
        let kept = (tokens - skipped) as f64;
        let weight = |i: usize| match self {
            _ if i < skipped => 0.0,
            Pooling::Cls => f64::from(u8::from(i == skipped)),
            Pooling::Mean => 1.0 / kept,
            Pooling::MeanSqrtLen => 1.0 / kept.sqrt(),
            Pooling::WeightedMean => (i + 1) as f64 / (skipped + 1..=tokens).map(|p| p as f64).sum::<f64>(),
            Pooling::LastToken => f64::from(u8::from(i + 1 == tokens)),
            Pooling::Max => 0.0,
        };
        (self != Pooling::Max).then(|| (0..tokens).map(weight).collect())
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
    /// Whether `modules.json` lists a `Normalize` module (last; applied by `encode`, not
    /// attributed).
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
    /// sha256 of `model.safetensors` (lowercase hex), combined with the Dense modules' weights
    /// where there are any (`with_dense_weights`): which weights, whatever the folder is
    /// called. Recorded in every JSON output and part of the attribution cache's key.
    pub weights_sha256: String,
    /// The Dense modules after pooling, in order (their weights are `params.heads`).
    pub dense: Vec<DenseModule>,
    /// Whether pooling counts a prompt's tokens (`include_prompt`, the Pooling config's).
    pub include_prompt: bool,
    /// The prompts of `config_sentence_transformers.json`.
    pub prompts: Prompts,
    /// `--truncate-dim`: attribute and embed the first `K` values (Matryoshka models). Not in
    /// the folder; the caller sets it.
    pub truncate_dim: Option<usize>,
}

/// A Dense module after pooling, as the folder lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenseModule {
    /// Its folder, as `modules.json` names it (`2_Dense`).
    pub path: String,
    pub activation: DenseActivation,
    /// Whether it adds a bias (`bias` in its config).
    pub bias: bool,
}

impl DenseModule {
    /// A linear map: no bias, the identity activation (gtr-t5's, sentence-t5's and
    /// EmbeddingGemma's). An exact model's shift passes through such a module, and it maps the
    /// reference's zero to zero.
    pub fn is_linear(&self) -> bool {
        !self.bias && self.activation == DenseActivation::Identity
    }

    /// Fails unless this module is linear, naming what is not (`what` says what needs it).
    pub fn check_linear(&self, what: &str) -> Result<()> {
        let why = match (self.bias, self.activation) {
            (true, _) => "a bias".to_string(),
            (false, DenseActivation::Identity) => return Ok(()),
            (false, activation) => format!("the activation {activation:?}"),
        };
        Err(Error::argument(
            "--model",
            format!(
                "Dense module `{}` has {why}; {what} needs Dense modules that are linear maps without bias (the reference's embedding must stay zero)",
                self.path
            ),
        ))
    }
}

/// The named prompts a folder offers (`config_sentence_transformers.json`), prepended to a
/// text before tokenizing, as `encode(prompt_name=…)` does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prompts {
    pub named: BTreeMap<String, String>,
    /// `default_prompt_name`: the prompt `encode` uses when none is asked for.
    pub default_name: Option<String>,
}

impl Prompts {
    /// The prompt text `spec` means: a prompt's name, or else the literal text itself.
    pub fn resolve(&self, spec: &str) -> String {
        self.named.get(spec).cloned().unwrap_or_else(|| spec.to_string())
    }

    /// The prompt a text gets, as `encode` chooses it: the one `spec` names, or the folder's
    /// default prompt where none is asked for; `None` where that is empty (`--prompt-a ""`
    /// asks for none).
    pub fn text_for(&self, spec: Option<&str>) -> Option<String> {
        let text = match spec {
            Some(spec) => self.resolve(spec),
            None => self.default_text()?.to_string(),
        };
        (!text.is_empty()).then_some(text)
    }

    /// The default prompt's text, if the folder names one.
    pub fn default_text(&self) -> Option<&str> {
        self.default_name.as_ref().and_then(|name| self.named.get(name)).map(String::as_str)
    }
}

#[derive(Deserialize)]
struct ModuleEntry {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PoolingModes {
    One(String),
    Several(Vec<String>),
}

#[derive(Deserialize)]
struct PoolingConfig {
    pooling_mode: Option<PoolingModes>,
    include_prompt: Option<bool>,
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

fn default_true() -> bool {
    true
}

#[derive(Deserialize)]
struct DenseConfig {
    in_features: usize,
    out_features: usize,
    #[serde(default = "default_true")]
    bias: bool,
    activation_function: Option<String>,
    #[serde(default)]
    use_residual: bool,
}

#[derive(Deserialize)]
struct SentenceTransformersConfig {
    #[serde(default)]
    prompts: BTreeMap<String, String>,
    default_prompt_name: Option<String>,
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
        let modules_path = require(dir, "modules.json")?;
        let modules: Vec<ModuleEntry> = read_json(&modules_path, "modules.json")?;
        let unsupported = |message: String| Error::Unsupported { path: modules_path.clone(), message };
        // By class name: sentence-transformers 2–5 write `sentence_transformers.models.Pooling`,
        // 6 writes the module path (`sentence_transformers.….pooling.Pooling`).
        fn kind(m: &ModuleEntry) -> &str {
            match m.kind == SHIFTED_REFERENCE_MODULE {
                true => "ShiftedReference",
                false => m.kind.rsplit('.').next().unwrap_or(""),
            }
        }
        let shifted_reference = modules.iter().any(|m| m.kind == SHIFTED_REFERENCE_MODULE);
        let mut listed = modules.iter().filter(|m| kind(m) != "ShiftedReference");
        let transformer = listed
            .next()
            .filter(|m| kind(m) == "Transformer")
            .ok_or_else(|| unsupported("the first module listed is not a sentence_transformers Transformer".into()))?;
        let pooling_module = listed
            .next()
            .filter(|m| kind(m) == "Pooling")
            .ok_or_else(|| unsupported("the module after the Transformer is not a Pooling module".into()))?;
        let (mut dense, mut normalize) = (Vec::new(), false);
        let (mut dense_weights, mut dense_files) = (Vec::new(), Vec::new());
        for m in listed {
            let known = m.kind.starts_with("sentence_transformers.");
            match kind(m) {
                "Dense" if known && !normalize => {
                    let width = dense_weights.last().map(|l: &Linear<HostTensor>| l.out_dim);
                    let (module, weights) = read_dense(&dir.join(&m.path), &m.path, width)?;
                    dense.push(module);
                    dense_weights.push(weights);
                    dense_files.push(dir.join(&m.path).join("model.safetensors"));
                }
                "Normalize" if known && !normalize => normalize = true,
                "Dense" | "Normalize" if known => {
                    return Err(unsupported(format!("module `{}` after Normalize (Normalize must come last)", m.kind)))
                }
                _ => {
                    return Err(unsupported(format!(
                        "module `{}` (supported after the Transformer and Pooling: Dense, Normalize; and {SHIFTED_REFERENCE_MODULE})",
                        m.kind
                    )))
                }
            }
        }

        let encoder_dir = dir.join(&transformer.path);
        let (pooling, include_prompt) = read_pooling(&require(&dir.join(&pooling_module.path), "config.json")?)?;
        if shifted_reference && pooling == Pooling::Max {
            // The max of shifted states is not the shifted max: the shift is only known to be
            // a constant offset of the pooled vector for the poolings that weigh tokens.
            return Err(unsupported(format!(
                "{SHIFTED_REFERENCE_MODULE} with max pooling (an exact model pools linearly)"
            )));
        }
        if let Some(module) = dense.iter().find(|m| shifted_reference && !m.is_linear()) {
            return Err(unsupported(format!(
                "{SHIFTED_REFERENCE_MODULE} with Dense module `{}`, which has a bias or an activation (the shift keeps the reference's embedding at zero only through linear maps)",
                module.path
            )));
        }
        let prompts = read_prompts(dir)?;
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
        let weights_sha256 = with_dense_weights(weights_sha256, &dense_files)?;
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
            params: EncoderParams { heads: dense_weights, ..params },
            weights_sha256,
            dense,
            include_prompt,
            prompts,
            truncate_dim: None,
        })
    }
}

impl SentenceModel {
    /// The prompt text `spec` means: a name of the folder's prompts, or the text itself; the
    /// folder's default prompt where `spec` is `None`; `None` for an empty prompt. Where the
    /// Pooling leaves prompts out (`include_prompt: false`) the prompt is still read by every
    /// layer, and only pooling skips its tokens (`Encoder::pool_for`).
    pub fn prompt(&self, spec: Option<&str>) -> Option<String> {
        self.prompts.text_for(spec)
    }
}

/// The weights' identity with the Dense modules': the Transformer's `model.safetensors` hash
/// alone where there are none (as before Dense modules were read), else the sha256 of that
/// hash and each Dense file's, in order, as lowercase hex separated by spaces.
fn with_dense_weights(transformer: String, dense_files: &[PathBuf]) -> Result<String> {
    if dense_files.is_empty() {
        return Ok(transformer);
    }
    use sha2::Digest;
    let mut hashes = vec![transformer];
    for path in dense_files {
        hashes.push(file_sha256(path)?);
    }
    Ok(hex(&sha2::Sha256::digest(hashes.join(" ").as_bytes())))
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Pooling config's mode and `include_prompt`: the `pooling_mode` key
/// (sentence-transformers 6: a name, or a list for concatenated modes) or the older
/// `pooling_mode_*` booleans.
fn read_pooling(path: &Path) -> Result<(Pooling, bool)> {
    let raw: PoolingConfig = read_json(path, "a pooling config")?;
    let legacy = [
        ("cls", raw.pooling_mode_cls_token),
        ("mean", raw.pooling_mode_mean_tokens),
        ("max", raw.pooling_mode_max_tokens),
        ("mean_sqrt_len_tokens", raw.pooling_mode_mean_sqrt_len_tokens),
        ("weightedmean", raw.pooling_mode_weightedmean_tokens),
        ("lasttoken", raw.pooling_mode_lasttoken),
    ];
    let active: Vec<String> = match raw.pooling_mode {
        Some(PoolingModes::One(mode)) => vec![mode],
        Some(PoolingModes::Several(modes)) => modes,
        None => legacy.iter().filter(|(_, on)| *on).map(|(name, _)| name.to_string()).collect(),
    };
    let unsupported = |message: String| Error::Unsupported { path: path.to_path_buf(), message };
    let names = Pooling::ALL.map(Pooling::name).join(", ");
    let pooling = match active.as_slice() {
        [one] => Pooling::ALL
            .into_iter()
            .find(|p| p.name() == one)
            .ok_or_else(|| unsupported(format!("pooling mode `{one}` (supported: {names})")))?,
        [] => return Err(unsupported("no pooling mode is switched on".into())),
        several => {
            return Err(unsupported(format!(
                "pooling modes {} together (a concatenation; supported: exactly one of {names})",
                several.join(" + ")
            )))
        }
    };
    Ok((pooling, raw.include_prompt.unwrap_or(true)))
}

/// A Dense module's activation and weights from its folder (`config.json`,
/// `model.safetensors`); `width` is what the module before it writes, where known.
fn read_dense(dir: &Path, path: &str, width: Option<usize>) -> Result<(DenseModule, Linear<HostTensor>)> {
    let config_path = require(dir, "config.json")?;
    let config: DenseConfig = read_json(&config_path, "a Dense module's config")?;
    let bad = |message: String| Error::BadConfig { path: config_path.clone(), message };
    let class = config.activation_function.as_deref().unwrap_or("torch.nn.modules.activation.Tanh");
    let activation = DenseActivation::from_class(class).ok_or_else(|| Error::Unsupported {
        path: config_path.clone(),
        message: format!("activation_function `{class}` (supported: Identity, Tanh, ReLU, GELU)"),
    })?;
    if config.use_residual {
        return Err(Error::Unsupported {
            path: config_path.clone(),
            message: "a Dense module with use_residual".into(),
        });
    }
    if config.in_features == 0 || config.out_features == 0 {
        return Err(bad(format!("in_features {} × out_features {}", config.in_features, config.out_features)));
    }
    if let Some(width) = width.filter(|&w| w != config.in_features) {
        return Err(bad(format!("in_features {} after a Dense module of {width} outputs", config.in_features)));
    }
    let weights = dir.join("model.safetensors");
    if !weights.is_file() {
        let hint = match dir.join("pytorch_model.bin").is_file() {
            true => {
                " (it holds pytorch_model.bin, a pickle simattr does not read: save the module with safe_serialization)"
            }
            false => "",
        };
        return Err(Error::MissingFile {
            path: dir.to_path_buf(),
            file: "model.safetensors".into(),
            hint: hint.into(),
        });
    }
    let linear = load_dense(&weights, config.in_features, config.out_features, config.bias)?;
    Ok((DenseModule { path: path.to_string(), activation, bias: config.bias }, linear))
}

/// The prompts of `config_sentence_transformers.json`, where the folder has one.
fn read_prompts(dir: &Path) -> Result<Prompts> {
    let path = dir.join("config_sentence_transformers.json");
    if !path.is_file() {
        return Ok(Prompts::default());
    }
    let raw: SentenceTransformersConfig = read_json(&path, "config_sentence_transformers.json")?;
    let prompts = Prompts { named: raw.prompts, default_name: raw.default_prompt_name };
    if let Some(name) = prompts.default_name.as_ref().filter(|name| !prompts.named.contains_key(*name)) {
        return Err(Error::BadConfig {
            path,
            message: format!("default_prompt_name `{name}` is not among the prompts"),
        });
    }
    Ok(prompts)
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
