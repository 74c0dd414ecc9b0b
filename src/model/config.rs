//! `config.json` of the transformer module: the numbers that fix every tensor's shape, and
//! each layer's attention (rotary frequency, mask) where the family varies it by layer.
//!
//! The rotary families' configs come in two spellings, both read: what `transformers` 5
//! writes (`rope_parameters`, `layer_types`) and the older keys of the real Hub folders
//! (`rope_theta`, `rope_local_base_freq`, `sliding_window_pattern`, `global_rope_theta`,
//! `local_rope_theta`, `global_attn_every_n_layers`); tests/reference/README.md, "The rotary
//! families", has the table.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::arch::{Architecture, PositionIds, RelativeBuckets};
use crate::backend::Activation;
use crate::error::{Error, Result};

/// Which keys a query may attend to, besides the padding every pass masks itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionMask {
    /// Every key (encoders, and Gemma's and ModernBERT's global layers).
    Full,
    /// Keys at or before the query (Qwen3, a decoder).
    Causal,
    /// Keys within `radius` positions either side: `|i − j| ≤ radius` (the sliding layers of
    /// EmbeddingGemma and ModernBERT).
    Window { radius: usize },
    /// The last `width` keys up to the query: `i − width < j ≤ i` (a causal Gemma's sliding
    /// layers).
    CausalWindow { width: usize },
}

impl AttentionMask {
    /// Whether query `i` sees key `j`.
    pub fn sees(self, i: usize, j: usize) -> bool {
        match self {
            AttentionMask::Full => true,
            AttentionMask::Causal => j <= i,
            AttentionMask::Window { radius } => i.abs_diff(j) <= radius,
            AttentionMask::CausalWindow { width } => j <= i && i - j < width,
        }
    }
}

/// What one layer's attention does beyond its weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerAttention {
    /// The rotary embedding's base `θ`, in the rotary families.
    pub rope_theta: Option<f64>,
    pub mask: AttentionMask,
}

/// Which dense layers and norms carry a bias (`attention_bias`, `mlp_bias`, `norm_bias`;
/// NomicBERT's `qkv_proj_bias`, `mlp_fc1_bias`, `mlp_fc2_bias`); the loader fills zeros where
/// they do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Biases {
    pub attention: bool,
    /// The feed-forward's input projection(s).
    pub mlp_in: bool,
    /// The feed-forward's output projection.
    pub mlp_out: bool,
    pub norm: bool,
}

/// The encoder's hyper-parameters, checked for consistency when read.
#[derive(Debug, Clone)]
pub struct EncoderConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key and value heads (fewer than `num_heads` under grouped-query attention: query head
    /// `h` reads key/value head `h / (num_heads / num_kv_heads)`).
    pub num_kv_heads: usize,
    /// Each head's width (Gemma's 256 is not `hidden / heads`).
    pub head_dim: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    /// The padding id, which the reference input is made of; a model without one (Qwen3)
    /// pads with its end-of-sequence token.
    pub pad_token_id: u32,
    /// The word table's `padding_idx` in `transformers` (and the remote code): the row that
    /// training leaves as it is. None where the family builds its table without one (T5) or
    /// the model has no pad token (Qwen3).
    pub padding_idx: Option<u32>,
    /// MPNet's and T5's relative position bias on the attention scores.
    pub relative_buckets: Option<RelativeBuckets>,
    /// The feed-forward's activation, and whether it gates (`[gate | up]`, T5's gated-gelu).
    pub ffn_activation: Activation,
    pub ffn_gated: bool,
    /// The factor on attention's `QKᵀ`: `None` for `1/√head_dim`.
    pub attention_scale: Option<f64>,
    /// Each layer's rotary frequency and mask.
    pub layers: Vec<LayerAttention>,
    /// The factor on the token embeddings (Gemma's `√hidden`).
    pub embedding_scale: Option<f64>,
    pub biases: Biases,
    /// JinaBERT's symmetric ALiBi: `−m_h |i − j|` added to head `h`'s scores
    /// (`relative_bias::alibi_bias`).
    pub alibi: bool,
}

impl EncoderConfig {
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// The factor on attention's `QKᵀ`: `None` for `1/√d`; T5 does not scale, Gemma scales
    /// by `query_pre_attn_scalar^−½`.
    pub fn attention_scale(&self) -> Option<f64> {
        self.attention_scale
    }

    pub fn position_ids(&self) -> PositionIds {
        self.architecture.position_ids(self.pad_token_id)
    }

    /// The longest sequence the position table covers (512 for RoBERTa's and MPNet's 514 rows,
    /// whose first two positions are never used by real tokens), or the rotary families'
    /// `max_position_embeddings`.
    pub fn max_tokens(&self) -> usize {
        self.position_ids().max_tokens(self.max_position_embeddings)
    }

    /// Whether some layer masks keys by position (causal or windowed attention).
    pub fn masks_positions(&self) -> bool {
        self.layers.iter().any(|l| l.mask != AttentionMask::Full)
    }

    /// Whether the family turns queries and keys by position (rotary embeddings).
    pub fn is_rotary(&self) -> bool {
        self.layers.iter().any(|l| l.rope_theta.is_some())
    }
}

/// The keys of every supported family's config; T5's names are aliases of BERT's.
#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
    vocab_size: usize,
    #[serde(alias = "d_model", alias = "n_embd")]
    hidden_size: usize,
    #[serde(alias = "num_layers", alias = "n_layer")]
    num_hidden_layers: usize,
    #[serde(alias = "num_heads", alias = "n_head")]
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    /// The head width of Qwen3 and Gemma3 (`head_dim`) and T5 (`d_kv`).
    #[serde(alias = "d_kv")]
    head_dim: Option<usize>,
    #[serde(alias = "d_ff", alias = "n_inner")]
    intermediate_size: usize,
    #[serde(alias = "n_positions")]
    max_position_embeddings: Option<usize>,
    #[serde(default)]
    type_vocab_size: usize,
    #[serde(alias = "layer_norm_epsilon", alias = "rms_norm_eps", alias = "norm_eps")]
    layer_norm_eps: Option<f64>,
    pad_token_id: Option<u32>,
    /// One id or a list (the first is taken), the pad of a model without one.
    eos_token_id: Option<Value>,
    #[serde(alias = "hidden_activation")]
    hidden_act: Option<String>,
    position_embedding_type: Option<String>,
    relative_attention_num_buckets: Option<usize>,
    relative_attention_max_distance: Option<usize>,
    /// T5: `relu` or `gated-gelu` (T5 v1.1, whose GELU is the tanh form whatever
    /// `dense_act_fn` says, as `T5Config` sets it).
    feed_forward_proj: Option<String>,
    // The rotary families, in both spellings.
    rope_parameters: Option<Value>,
    rope_theta: Option<f64>,
    rope_local_base_freq: Option<f64>,
    global_rope_theta: Option<f64>,
    local_rope_theta: Option<f64>,
    rope_scaling: Option<Value>,
    layer_types: Option<Vec<String>>,
    sliding_window: Option<usize>,
    sliding_window_pattern: Option<usize>,
    use_sliding_window: Option<bool>,
    use_bidirectional_attention: Option<bool>,
    global_attn_every_n_layers: Option<usize>,
    local_attention: Option<usize>,
    query_pre_attn_scalar: Option<f64>,
    attn_logit_softcapping: Option<f64>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    norm_bias: Option<bool>,
    // NomicBERT's GPT-2-style keys.
    activation_function: Option<String>,
    prenorm: Option<bool>,
    parallel_block: Option<bool>,
    use_rms_norm: Option<bool>,
    causal: Option<bool>,
    rotary_emb_base: Option<f64>,
    rotary_emb_fraction: Option<f64>,
    rotary_emb_interleaved: Option<bool>,
    rotary_emb_scale_base: Option<Value>,
    rotary_scaling_factor: Option<Value>,
    qkv_proj_bias: Option<bool>,
    mlp_fc1_bias: Option<bool>,
    mlp_fc2_bias: Option<bool>,
    pad_vocab_size_multiple: Option<usize>,
    // JinaBERT's.
    feed_forward_type: Option<String>,
}

pub fn read_encoder_config(path: &Path) -> Result<EncoderConfig> {
    let raw: RawConfig = super::folder::read_json(path, "an encoder config")?;
    let bad = |message: String| Error::BadConfig { path: path.to_path_buf(), message };
    let unsupported = |message: String| Error::Unsupported { path: path.to_path_buf(), message };

    let mut architecture = Architecture::detect(raw.model_type.as_deref(), &raw.architectures).map_err(unsupported)?;
    // JinaBERT v2's folders say "bert": its classes and ALiBi tell it apart.
    let jina_class = raw.architectures.iter().any(|class| class.starts_with("JinaBert"));
    if architecture == Architecture::Bert && (jina_class || raw.position_embedding_type.as_deref() == Some("alibi")) {
        architecture = Architecture::JinaBert;
    }
    if architecture == Architecture::NomicBert {
        nomic_refusals(&raw).map_err(unsupported)?;
    }
    let (ffn_activation, ffn_gated) = ffn_of(architecture, &raw).map_err(unsupported)?;
    if architecture == Architecture::T5 {
        if let Some(d_kv) = raw.head_dim.filter(|&d| d * raw.num_attention_heads != raw.hidden_size) {
            return Err(unsupported(format!(
                "d_kv {d_kv} × num_heads {} ≠ d_model {} (attention narrower or wider than the model)",
                raw.num_attention_heads, raw.hidden_size
            )));
        }
    }
    // As `transformers` builds the word table: the configured pad, else the config class's
    // default (Qwen3's is none); T5's table has no `padding_idx`.
    let class_default_pad = match architecture {
        Architecture::T5 | Architecture::Qwen3 => None,
        Architecture::ModernBert => Some(50283),
        Architecture::Mpnet | Architecture::Roberta | Architecture::XlmRoberta => Some(1),
        Architecture::Bert | Architecture::Gemma3 | Architecture::NomicBert | Architecture::JinaBert => Some(0),
    };
    let padding_idx = match architecture {
        Architecture::T5 => None,
        _ => raw.pad_token_id.or(class_default_pad),
    };
    let pad_token_id = match (raw.pad_token_id, raw.eos_token_id.as_ref()) {
        (Some(pad), _) => pad,
        (None, Some(eos)) => first_id(eos).ok_or_else(|| bad(format!("`eos_token_id` {eos} is not a token id")))?,
        // BERT's folders omit it where it is 0.
        (None, None) => 0,
    };
    // A family with relative positions only has no position table to bound a text.
    let max_position_embeddings = match (architecture, raw.max_position_embeddings) {
        (Architecture::T5, _) => usize::MAX,
        (_, Some(rows)) => rows,
        (_, None) => return Err(bad("`max_position_embeddings` is missing".into())),
    };
    match (architecture, raw.position_embedding_type.as_deref()) {
        (Architecture::JinaBert, Some("alibi")) | (_, None | Some("absolute")) => {}
        (Architecture::JinaBert, Some(kind)) => {
            return Err(unsupported(format!("JinaBERT with position_embedding_type `{kind}` (only `alibi`)")))
        }
        (_, Some(kind)) => return Err(unsupported(format!("position_embedding_type `{kind}` (only `absolute`)"))),
    }
    // NomicBERT rounds its token table up to a multiple of `pad_vocab_size_multiple`.
    let vocab_size = match (architecture, raw.pad_vocab_size_multiple) {
        (Architecture::NomicBert, Some(multiple)) if multiple > 1 => raw.vocab_size.next_multiple_of(multiple),
        _ => raw.vocab_size,
    };
    let num_kv_heads = raw.num_key_value_heads.unwrap_or(raw.num_attention_heads);
    for (name, value) in [
        ("vocab_size", raw.vocab_size),
        ("hidden_size", raw.hidden_size),
        ("num_hidden_layers", raw.num_hidden_layers),
        ("num_attention_heads", raw.num_attention_heads),
        ("num_key_value_heads", num_kv_heads),
        ("intermediate_size", raw.intermediate_size),
        ("max_position_embeddings", max_position_embeddings),
    ] {
        if value == 0 {
            return Err(bad(format!("`{name}` is 0")));
        }
    }
    let head_dim = match (architecture.is_rotary(), raw.head_dim) {
        (true, Some(dim)) => dim,
        _ => {
            if !raw.hidden_size.is_multiple_of(raw.num_attention_heads) {
                return Err(bad(format!(
                    "hidden_size {} is not a multiple of num_attention_heads {}",
                    raw.hidden_size, raw.num_attention_heads
                )));
            }
            raw.hidden_size / raw.num_attention_heads
        }
    };
    if !raw.num_attention_heads.is_multiple_of(num_kv_heads) {
        return Err(bad(format!(
            "num_attention_heads {} is not a multiple of num_key_value_heads {num_kv_heads}",
            raw.num_attention_heads
        )));
    }
    if architecture.is_rotary() && !head_dim.is_multiple_of(2) {
        return Err(bad(format!("head_dim {head_dim} is odd: rotary embeddings turn pairs of values")));
    }
    if architecture.uses_token_types() && raw.type_vocab_size == 0 {
        return Err(bad("`type_vocab_size` is 0".into()));
    }
    let layer_norm_eps = raw.layer_norm_eps.unwrap_or(architecture.default_norm_eps());
    if !(layer_norm_eps > 0.0 && layer_norm_eps.is_finite()) {
        return Err(bad(format!("`layer_norm_eps` {layer_norm_eps} is not a positive number")));
    }
    if pad_token_id as usize >= vocab_size {
        return Err(bad(format!("pad_token_id {pad_token_id} ≥ vocab_size {vocab_size}")));
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
    if architecture.position_ids(pad_token_id).max_tokens(max_position_embeddings) < 2 {
        return Err(bad(format!(
            "max_position_embeddings {max_position_embeddings} leaves no room for two tokens after the padding offset",
        )));
    }
    let layers = layer_attention(architecture, &raw).map_err(|e| match e {
        ConfigProblem::Bad(m) => bad(m),
        ConfigProblem::Unsupported(m) => unsupported(m),
    })?;
    let attention_scale = match architecture {
        Architecture::T5 => Some(1.0),
        Architecture::Gemma3 => match raw.query_pre_attn_scalar {
            Some(s) if s > 0.0 && s.is_finite() => Some(s.powf(-0.5)),
            Some(s) => return Err(bad(format!("`query_pre_attn_scalar` {s} is not a positive number"))),
            None => return Err(bad("`query_pre_attn_scalar` is missing".into())),
        },
        _ => None,
    };
    if let Some(cap) = raw.attn_logit_softcapping {
        return Err(unsupported(format!("attn_logit_softcapping {cap} (attention without soft-capping only)")));
    }
    let embedding_scale = (architecture == Architecture::Gemma3).then(|| (raw.hidden_size as f64).sqrt());
    let biases = match architecture {
        Architecture::NomicBert => Biases {
            attention: raw.qkv_proj_bias.unwrap_or(true),
            mlp_in: raw.mlp_fc1_bias.unwrap_or(true),
            mlp_out: raw.mlp_fc2_bias.unwrap_or(true),
            norm: true,
        },
        // `mlp.gated_layers` has no bias, `mlp.wo` has one.
        Architecture::JinaBert => Biases { attention: true, mlp_in: false, mlp_out: true, norm: true },
        _ => {
            // BERT-like families have every bias; T5 and the newer families none unless told.
            let default = !architecture.is_rotary() && architecture != Architecture::T5;
            let mlp = raw.mlp_bias.unwrap_or(default);
            Biases {
                attention: raw.attention_bias.unwrap_or(default),
                mlp_in: mlp,
                mlp_out: mlp,
                norm: raw.norm_bias.unwrap_or(default),
            }
        }
    };
    Ok(EncoderConfig {
        architecture,
        vocab_size,
        hidden_size: raw.hidden_size,
        num_layers: raw.num_hidden_layers,
        num_heads: raw.num_attention_heads,
        num_kv_heads,
        head_dim,
        intermediate_size: raw.intermediate_size,
        max_position_embeddings,
        type_vocab_size: raw.type_vocab_size,
        layer_norm_eps,
        pad_token_id,
        padding_idx,
        relative_buckets,
        ffn_activation,
        ffn_gated,
        attention_scale,
        layers,
        embedding_scale,
        biases,
        alibi: architecture == Architecture::JinaBert,
    })
}

/// The NomicBERT options this engine does not implement, each refused by its key.
fn nomic_refusals(raw: &RawConfig) -> std::result::Result<(), String> {
    let flags = [
        ("prenorm", raw.prenorm, "pre-LayerNorm blocks"),
        ("parallel_block", raw.parallel_block, "parallel attention and MLP"),
        ("use_rms_norm", raw.use_rms_norm, "RMSNorm"),
        ("causal", raw.causal, "causal attention"),
        ("rotary_emb_interleaved", raw.rotary_emb_interleaved, "interleaved rotary pairs"),
    ];
    if let Some((key, _, what)) = flags.iter().find(|(_, set, _)| *set == Some(true)) {
        return Err(format!("NomicBERT with {key} true ({what}; supported: the published nomic-embed-text layout)"));
    }
    for (key, value) in
        [("rotary_emb_scale_base", &raw.rotary_emb_scale_base), ("rotary_scaling_factor", &raw.rotary_scaling_factor)]
    {
        if let Some(value) = value.as_ref().filter(|v| !v.is_null()) {
            return Err(format!("NomicBERT with {key} {value} (only the plain rotary embedding)"));
        }
    }
    match raw.rotary_emb_fraction {
        Some(fraction) if fraction != 1.0 => {
            Err(format!("NomicBERT with rotary_emb_fraction {fraction} (only rotary positions over whole heads, 1.0)"))
        }
        _ => Ok(()),
    }
}

/// The first id of `eos_token_id` (an id, or a list of them).
fn first_id(value: &Value) -> Option<u32> {
    let id = match value {
        Value::Array(ids) => ids.first()?,
        id => id,
    };
    id.as_u64().and_then(|id| u32::try_from(id).ok())
}

/// The feed-forward's activation and whether it gates, as the family and its config say.
fn ffn_of(architecture: Architecture, raw: &RawConfig) -> std::result::Result<(Activation, bool), String> {
    let act = raw.hidden_act.as_deref();
    let refused = |family: &str, supported: &str| {
        Err(format!("{family}'s activation `{}` (supported: {supported})", act.unwrap_or("")))
    };
    match architecture {
        Architecture::T5 => match raw.feed_forward_proj.as_deref() {
            Some("relu") | None => Ok((Activation::Relu, false)),
            Some("gated-gelu") => Ok((Activation::GeluTanh, true)),
            Some(other) => Err(format!("feed_forward_proj `{other}` (supported: relu, gated-gelu)")),
        },
        Architecture::Qwen3 => match act {
            Some("silu") | None => Ok((Activation::Silu, true)),
            _ => refused("Qwen3", "silu"),
        },
        Architecture::Gemma3 => match act {
            Some("gelu_pytorch_tanh") | None => Ok((Activation::GeluTanh, true)),
            _ => refused("Gemma3", "gelu_pytorch_tanh"),
        },
        Architecture::ModernBert => match act {
            Some("gelu") | None => Ok((Activation::Gelu, true)),
            _ => refused("ModernBERT", "gelu"),
        },
        Architecture::NomicBert => match raw.activation_function.as_deref() {
            Some("swiglu") | None => Ok((Activation::Silu, true)),
            Some(other) => Err(format!("NomicBERT's activation_function `{other}` (supported: swiglu)")),
        },
        // JinaBERT's GeGLU uses the exact GELU (`hidden_act` "gelu"), its ReGLU ReLU.
        Architecture::JinaBert => match (raw.feed_forward_type.as_deref(), act) {
            (Some("geglu"), Some("gelu") | None) => Ok((Activation::Gelu, true)),
            (Some("reglu"), _) => Ok((Activation::Relu, true)),
            (other, act) => Err(format!(
                "JinaBERT's feed_forward_type {other:?} with hidden_act {act:?} (supported: geglu with gelu, reglu)"
            )),
        },
        // Every BERT-like family uses the exact erf GELU; a tanh approximation would silently
        // change every number, so it is refused rather than guessed.
        _ => match act {
            Some("gelu") | None => Ok((Activation::Gelu, false)),
            Some(other) => Err(format!("hidden_act `{other}` (only exact `gelu` is supported)")),
        },
    }
}

/// A config problem before it is given the file's path.
enum ConfigProblem {
    Bad(String),
    Unsupported(String),
}

/// Each layer's attention: one full, unrotated kind for the BERT-like families and T5; the
/// rotary families' per-layer frequency and mask from either config spelling.
fn layer_attention(
    architecture: Architecture,
    raw: &RawConfig,
) -> std::result::Result<Vec<LayerAttention>, ConfigProblem> {
    let n = raw.num_hidden_layers;
    let full = LayerAttention { rope_theta: None, mask: AttentionMask::Full };
    if !architecture.is_rotary() {
        return Ok(vec![full; n]);
    }
    if let Some(scaling) = raw.rope_scaling.as_ref().filter(|s| !s.is_null()) {
        return Err(ConfigProblem::Unsupported(format!("rope_scaling {scaling} (only the default rotary embedding)")));
    }
    // Which layers slide: `layer_types`, else the family's older key.
    let sliding: Vec<bool> = match &raw.layer_types {
        Some(types) => {
            if types.len() != n {
                return Err(ConfigProblem::Bad(format!("`layer_types` has {} entries for {n} layers", types.len())));
            }
            let kinds = types.iter().map(|t| match t.as_str() {
                "full_attention" => Ok(false),
                "sliding_attention" => Ok(true),
                other => Err(ConfigProblem::Unsupported(format!(
                    "layer type `{other}` (supported: full_attention, sliding_attention)"
                ))),
            });
            kinds.collect::<std::result::Result<_, _>>()?
        }
        None => match architecture {
            Architecture::Gemma3 => {
                let pattern = raw.sliding_window_pattern.unwrap_or(6).max(1);
                (0..n).map(|i| (i + 1) % pattern != 0).collect()
            }
            Architecture::ModernBert => {
                let every = raw.global_attn_every_n_layers.unwrap_or(1).max(1);
                (0..n).map(|i| i % every != 0).collect()
            }
            _ => vec![raw.use_sliding_window.unwrap_or(false); n],
        },
    };
    let theta = |kind: &str| -> Option<f64> {
        let params = raw.rope_parameters.as_ref()?;
        let nested = params.get(kind).unwrap_or(params);
        nested.get("rope_theta")?.as_f64()
    };
    for kind in ["full_attention", "sliding_attention"] {
        let params = raw.rope_parameters.as_ref().map(|p| p.get(kind).unwrap_or(p));
        if let Some(rope_type) = params.and_then(|p| p.get("rope_type")).and_then(Value::as_str) {
            if rope_type != "default" {
                return Err(ConfigProblem::Unsupported(format!(
                    "rope_type `{rope_type}` (only the default rotary embedding)"
                )));
            }
        }
    }
    let (full_theta, sliding_theta) = match architecture {
        Architecture::Gemma3 => (
            theta("full_attention").or(raw.rope_theta).unwrap_or(1_000_000.0),
            theta("sliding_attention").or(raw.rope_local_base_freq).unwrap_or(10_000.0),
        ),
        Architecture::ModernBert => (
            theta("full_attention").or(raw.global_rope_theta).unwrap_or(160_000.0),
            theta("sliding_attention").or(raw.local_rope_theta).unwrap_or(10_000.0),
        ),
        _ => {
            let theta = theta("full_attention").or(raw.rope_theta).or(raw.rotary_emb_base).unwrap_or(10_000.0);
            (theta, theta)
        }
    };
    for theta in [full_theta, sliding_theta] {
        if !(theta > 0.0 && theta.is_finite()) {
            return Err(ConfigProblem::Bad(format!("rotary θ {theta} is not a positive number")));
        }
    }
    let any_sliding = sliding.iter().any(|&s| s);
    let window = |value: Option<usize>, key: &str| {
        value
            .filter(|&w| w > 0)
            .ok_or_else(|| ConfigProblem::Bad(format!("`{key}` is missing or 0 with sliding layers")))
    };
    let (full_mask, sliding_mask) = match architecture {
        Architecture::Qwen3 => {
            if any_sliding {
                return Err(ConfigProblem::Unsupported(
                    "Qwen3 with sliding-window layers (use_sliding_window; only full causal attention)".into(),
                ));
            }
            (AttentionMask::Causal, AttentionMask::Causal)
        }
        Architecture::Gemma3 => {
            let bidirectional = raw.use_bidirectional_attention.unwrap_or(false);
            let full = if bidirectional { AttentionMask::Full } else { AttentionMask::Causal };
            let sliding = match (any_sliding, bidirectional) {
                (false, _) => full,
                // transformers 5 widens its own bound to `w // 2 + 1` and ORs a bidirectional
                // overlay: keys with |i − j| ≤ w // 2.
                (true, true) => AttentionMask::Window { radius: window(raw.sliding_window, "sliding_window")? / 2 },
                (true, false) => AttentionMask::CausalWindow { width: window(raw.sliding_window, "sliding_window")? },
            };
            (full, sliding)
        }
        Architecture::ModernBert => {
            let sliding = match any_sliding {
                true => AttentionMask::Window { radius: window(raw.local_attention, "local_attention")? / 2 },
                false => AttentionMask::Full,
            };
            (AttentionMask::Full, sliding)
        }
        // NomicBERT: every layer full and bidirectional (`sliding` is all false without keys).
        _ => (AttentionMask::Full, AttentionMask::Full),
    };
    Ok(sliding
        .into_iter()
        .map(|slides| match slides {
            true => LayerAttention { rope_theta: Some(sliding_theta), mask: sliding_mask },
            false => LayerAttention { rope_theta: Some(full_theta), mask: full_mask },
        })
        .collect())
}
