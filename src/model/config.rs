//! `config.json` of the transformer module: the numbers that fix every tensor's shape.

use std::path::Path;

use serde::Deserialize;

use super::arch::{Architecture, PositionIds, RelativeBuckets};
use crate::backend::Activation;
use crate::error::{Error, Result};

/// The encoder's hyper-parameters, checked for consistency when read.
#[derive(Debug, Clone)]
pub struct EncoderConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub pad_token_id: u32,
    /// MPNet's and T5's relative position bias on the attention scores.
    pub relative_buckets: Option<RelativeBuckets>,
    /// The feed-forward's activation, and whether it gates (`[gate | up]`, T5's gated-gelu).
    pub ffn_activation: Activation,
    pub ffn_gated: bool,
}

impl EncoderConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// The factor on attention's `QKᵀ`: `None` for `1/√d`; T5 does not scale.
    pub fn attention_scale(&self) -> Option<f64> {
        (self.architecture == Architecture::T5).then_some(1.0)
    }

    pub fn position_ids(&self) -> PositionIds {
        self.architecture.position_ids(self.pad_token_id)
    }

    /// The longest sequence the position table covers (512 for RoBERTa's and MPNet's 514 rows,
    /// whose first two positions are never used by real tokens).
    pub fn max_tokens(&self) -> usize {
        self.position_ids().max_tokens(self.max_position_embeddings)
    }
}

/// The keys of every supported family's config; T5's names are aliases of BERT's.
#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
    vocab_size: usize,
    #[serde(alias = "d_model")]
    hidden_size: usize,
    #[serde(alias = "num_layers")]
    num_hidden_layers: usize,
    #[serde(alias = "num_heads")]
    num_attention_heads: usize,
    #[serde(alias = "d_ff")]
    intermediate_size: usize,
    /// T5's head width (`d_kv`), which may differ from `d_model / num_heads`.
    d_kv: Option<usize>,
    max_position_embeddings: Option<usize>,
    #[serde(default)]
    type_vocab_size: usize,
    #[serde(alias = "layer_norm_epsilon")]
    layer_norm_eps: Option<f64>,
    #[serde(default)]
    pad_token_id: u32,
    hidden_act: Option<String>,
    position_embedding_type: Option<String>,
    relative_attention_num_buckets: Option<usize>,
    relative_attention_max_distance: Option<usize>,
    /// T5: `relu` or `gated-gelu` (T5 v1.1, whose GELU is the tanh form whatever
    /// `dense_act_fn` says, as `T5Config` sets it).
    feed_forward_proj: Option<String>,
}

pub fn read_encoder_config(path: &Path) -> Result<EncoderConfig> {
    let raw: RawConfig = super::folder::read_json(path, "an encoder config")?;
    let bad = |message: String| Error::BadConfig { path: path.to_path_buf(), message };
    let unsupported = |message: String| Error::Unsupported { path: path.to_path_buf(), message };

    let architecture = Architecture::detect(raw.model_type.as_deref(), &raw.architectures).map_err(unsupported)?;
    let (ffn_activation, ffn_gated) = match (architecture, raw.feed_forward_proj.as_deref()) {
        (Architecture::T5, Some("relu") | None) => (Activation::Relu, false),
        (Architecture::T5, Some("gated-gelu")) => (Activation::GeluTanh, true),
        (Architecture::T5, Some(other)) => {
            return Err(unsupported(format!("feed_forward_proj `{other}` (supported: relu, gated-gelu)")))
        }
        _ => (Activation::Gelu, false),
    };
    if let Some(d_kv) = raw.d_kv.filter(|&d| d * raw.num_attention_heads != raw.hidden_size) {
        return Err(unsupported(format!(
            "d_kv {d_kv} × num_heads {} ≠ d_model {} (attention narrower or wider than the model)",
            raw.num_attention_heads, raw.hidden_size
        )));
    }
    // A family with relative positions only has no position table to bound a text.
    let max_position_embeddings = match (architecture.position_ids(raw.pad_token_id), raw.max_position_embeddings) {
        (PositionIds::None, _) => usize::MAX,
        (_, Some(rows)) => rows,
        (_, None) => return Err(bad("`max_position_embeddings` is missing".into())),
    };
    if let Some(act) = raw.hidden_act.as_deref() {
        // Every supported family uses the exact erf GELU; a tanh approximation would silently
        // change every number, so it is refused rather than guessed.
        if act != "gelu" {
            return Err(unsupported(format!("hidden_act `{act}` (only exact `gelu` is supported)")));
        }
    }
    if let Some(kind) = raw.position_embedding_type.as_deref() {
        if kind != "absolute" {
            return Err(unsupported(format!("position_embedding_type `{kind}` (only `absolute`)")));
        }
    }
    for (name, value) in [
        ("vocab_size", raw.vocab_size),
        ("hidden_size", raw.hidden_size),
        ("num_hidden_layers", raw.num_hidden_layers),
        ("num_attention_heads", raw.num_attention_heads),
        ("intermediate_size", raw.intermediate_size),
        ("max_position_embeddings", max_position_embeddings),
    ] {
        if value == 0 {
            return Err(bad(format!("`{name}` is 0")));
        }
    }
    if !raw.hidden_size.is_multiple_of(raw.num_attention_heads) {
        return Err(bad(format!(
            "hidden_size {} is not a multiple of num_attention_heads {}",
            raw.hidden_size, raw.num_attention_heads
        )));
    }
    if architecture.uses_token_types() && raw.type_vocab_size == 0 {
        return Err(bad("`type_vocab_size` is 0".into()));
    }
    let layer_norm_eps = raw.layer_norm_eps.unwrap_or(1e-12);
    if !(layer_norm_eps > 0.0 && layer_norm_eps.is_finite()) {
        return Err(bad(format!("`layer_norm_eps` {layer_norm_eps} is not a positive number")));
    }
    if raw.pad_token_id as usize >= raw.vocab_size {
        return Err(bad(format!("pad_token_id {} ≥ vocab_size {}", raw.pad_token_id, raw.vocab_size)));
    }
    let relative_buckets = architecture.relative_buckets(
        raw.relative_attention_num_buckets.unwrap_or(32),
        raw.relative_attention_max_distance.unwrap_or(128),
    );
    if let Some(buckets) = relative_buckets {
        // Half the buckets per direction, half of those exact: fewer than 4 leaves no room.
        if buckets.buckets < 4 || !buckets.buckets.is_multiple_of(2) {
            return Err(bad(format!("`relative_attention_num_buckets` {} is not an even number ≥ 4", buckets.buckets)));
        }
    }
    if architecture.position_ids(raw.pad_token_id).max_tokens(max_position_embeddings) < 2 {
        return Err(bad(format!(
            "max_position_embeddings {max_position_embeddings} leaves no room for two tokens after the padding offset",
        )));
    }
    Ok(EncoderConfig {
        architecture,
        vocab_size: raw.vocab_size,
        hidden_size: raw.hidden_size,
        num_layers: raw.num_hidden_layers,
        num_heads: raw.num_attention_heads,
        intermediate_size: raw.intermediate_size,
        max_position_embeddings,
        type_vocab_size: raw.type_vocab_size,
        layer_norm_eps,
        pad_token_id: raw.pad_token_id,
        relative_buckets,
        ffn_activation,
        ffn_gated,
    })
}
