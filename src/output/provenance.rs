//! Where a result came from (docs/design.md §3): every JSON output carries it, so a file says which
//! weights, engine and settings made it. The batch cache keys on the same facts.

use serde::{Deserialize, Serialize};

use crate::attribution::{Similarity, TextOptions, WordMerge};
use crate::backend::EngineInfo;
use crate::model::SentenceModel;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub simattr_version: String,
    /// The model folder: the path given, or the cache folder a model name resolved to.
    pub model: String,
    /// sha256 of its `model.safetensors`: which weights, whatever the folder is called.
    pub weights_sha256: String,
    /// transformers' model_type: bert, mpnet, roberta, xlm-roberta.
    pub architecture: String,
    pub pooling: String,
    /// An exact model (shifted reference: `e(r) = 0`).
    pub exact_model: bool,
    /// The backend and its device ("cpu f32 (f64 primal)", "wgpu llvmpipe … f16", …).
    pub backend: String,
    /// Storage precision of the backend's tensors.
    pub precision: String,
    /// Precision of the primal states (the cpu backend keeps them in f64 for attributions).
    pub primal_precision: String,
    /// Texts longer than this many tokens are cut (sentence-transformers' max_seq_length).
    pub max_seq_length: usize,
    /// Whether a text of this output was cut at `max_seq_length`.
    pub truncated: bool,
    /// `--truncate-dim`: the embedding's first K dimensions; `null` for all of them.
    pub truncate_dim: Option<usize>,
    /// How the attributions were computed; absent where none were (embed).
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub attribution: Option<AttributionSettings>,
}

/// The options that change an attribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributionSettings {
    /// integrated-jacobians or decomposition.
    pub method: String,
    pub layer: usize,
    pub rule: String,
    pub steps: usize,
    pub similarity: String,
    /// The `--mode` asked for (each text's resolved mode is in its report).
    pub mode: String,
    /// `--words`: how the word pairs were merged (sum or mean); absent without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub word_merge: Option<String>,
}

impl AttributionSettings {
    pub fn new(options: &TextOptions, similarity: Similarity, word_merge: Option<WordMerge>) -> Self {
        AttributionSettings {
            method: options.method.name().to_string(),
            layer: options.layer,
            rule: options.quadrature.rule().name().to_string(),
            steps: options.quadrature.steps(),
            similarity: similarity.name().to_string(),
            mode: options.mode.name().to_string(),
            word_merge: word_merge.map(|merge| merge.name().to_string()),
        }
    }
}

impl Provenance {
    /// The model and the engine (`Backend::engine_info`); `truncated` false, no attribution
    /// settings.
    pub fn new(model: &SentenceModel, engine: &EngineInfo) -> Self {
        Provenance {
            simattr_version: env!("CARGO_PKG_VERSION").to_string(),
            model: model.path.display().to_string(),
            weights_sha256: model.weights_sha256.clone(),
            architecture: model.config.architecture.name().to_string(),
            pooling: model.pooling.name().to_string(),
            exact_model: model.shifted_reference,
            backend: engine.name.clone(),
            precision: engine.precision.name().to_string(),
            primal_precision: engine.primal_precision.name().to_string(),
            max_seq_length: model.max_seq_length,
            truncated: false,
            truncate_dim: model.truncate_dim,
            attribution: None,
        }
    }

    pub fn with_attribution(self, settings: AttributionSettings) -> Self {
        Provenance { attribution: Some(settings), ..self }
    }

    pub fn with_truncated(self, truncated: bool) -> Self {
        Provenance { truncated, ..self }
    }

    /// The first field in which two outputs' settings differ (the per-output `truncated`
    /// and the model folder's path aside): what makes their results not comparable, e.g.
    /// when a batch is resumed.
    pub fn differs_from(&self, other: &Provenance) -> Option<&'static str> {
        let (mine, theirs) = (self.attribution.as_ref(), other.attribution.as_ref());
        let attribution = |field: fn(&AttributionSettings) -> String| mine.map(field) == theirs.map(field);
        let fields: [(&str, bool); 17] = [
            ("simattr_version", self.simattr_version == other.simattr_version),
            ("weights_sha256", self.weights_sha256 == other.weights_sha256),
            ("architecture", self.architecture == other.architecture),
            ("pooling", self.pooling == other.pooling),
            ("exact_model", self.exact_model == other.exact_model),
            ("backend", self.backend == other.backend),
            ("precision", self.precision == other.precision),
            ("primal_precision", self.primal_precision == other.primal_precision),
            ("max_seq_length", self.max_seq_length == other.max_seq_length),
            ("truncate_dim", self.truncate_dim == other.truncate_dim),
            ("method", attribution(|a| a.method.clone())),
            ("layer", attribution(|a| a.layer.to_string())),
            ("rule", attribution(|a| a.rule.clone())),
            ("steps", attribution(|a| a.steps.to_string())),
            ("similarity", attribution(|a| a.similarity.clone())),
            ("mode", attribution(|a| a.mode.clone())),
            ("word_merge (--words)", attribution(|a| format!("{:?}", a.word_merge))),
        ];
        fields.into_iter().find(|(_, same)| !same).map(|(name, _)| name)
    }
}
