//! What distinguishes one encoder family from another: how position ids are made, whether a
//! token-type table exists, and what the tensors are called. Everything else (the post-LN
//! layer, mean pooling, the attribution) is shared, so a new family joins here and in the
//! weight loader only.

/// A supported encoder family. MPNet and RoBERTa join later (roadmap item 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Bert,
}

/// How position ids follow from the token ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionIds {
    /// BERT: 0, 1, …, T−1.
    FromZero,
    /// MPNet/RoBERTa (`transformers`' `create_position_ids_from_input_ids`):
    /// `pad + cumsum(id ≠ pad) · (id ≠ pad)`, so real tokens count from pad+1 and every pad
    /// token sits at position `pad`. This matters for the all-pad reference input.
    AfterPadding { pad_id: u32 },
}

impl PositionIds {
    pub fn for_ids(self, ids: &[u32]) -> Vec<u32> {
        match self {
            PositionIds::FromZero => (0..ids.len() as u32).collect(),
            PositionIds::AfterPadding { pad_id } => {
                let mut seen = 0;
                ids.iter()
                    .map(|&id| {
                        if id == pad_id {
                            pad_id
                        } else {
                            seen += 1;
                            pad_id + seen
                        }
                    })
                    .collect()
            }
        }
    }
}

/// Base names (without `.weight`/`.bias`) of one encoder layer's tensors.
pub struct LayerTensorNames {
    pub query: String,
    pub key: String,
    pub value: String,
    pub attention_out: String,
    pub attention_norm: String,
    pub ffn_in: String,
    pub ffn_out: String,
    pub ffn_norm: String,
}

/// Base names of the embedding tensors.
pub struct EmbeddingTensorNames {
    pub word: String,
    pub position: String,
    pub token_type: Option<String>,
    pub norm: String,
}

impl Architecture {
    pub fn detect(model_type: Option<&str>, architectures: &[String]) -> Result<Self, String> {
        match model_type {
            Some("bert") => Ok(Architecture::Bert),
            Some(other) => Err(format!("model_type `{other}` (supported: bert)")),
            None if architectures.iter().any(|a| a.starts_with("Bert")) => Ok(Architecture::Bert),
            None => Err(format!(
                "config.json has no model_type and architectures {architectures:?} name no supported family (bert)"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Architecture::Bert => "bert",
        }
    }

    pub fn position_ids(self, _pad_id: u32) -> PositionIds {
        match self {
            Architecture::Bert => PositionIds::FromZero,
        }
    }

    pub fn uses_token_types(self) -> bool {
        match self {
            Architecture::Bert => true,
        }
    }

    /// Prefixes a checkpoint may put before every name (`BertModel` inside a bigger model).
    pub fn name_prefixes(self) -> &'static [&'static str] {
        match self {
            Architecture::Bert => &["bert.", "model."],
        }
    }

    pub fn embedding_names(self) -> EmbeddingTensorNames {
        match self {
            Architecture::Bert => EmbeddingTensorNames {
                word: "embeddings.word_embeddings".into(),
                position: "embeddings.position_embeddings".into(),
                token_type: Some("embeddings.token_type_embeddings".into()),
                norm: "embeddings.LayerNorm".into(),
            },
        }
    }

    pub fn layer_names(self, layer: usize) -> LayerTensorNames {
        match self {
            Architecture::Bert => {
                let p = format!("encoder.layer.{layer}");
                LayerTensorNames {
                    query: format!("{p}.attention.self.query"),
                    key: format!("{p}.attention.self.key"),
                    value: format!("{p}.attention.self.value"),
                    attention_out: format!("{p}.attention.output.dense"),
                    attention_norm: format!("{p}.attention.output.LayerNorm"),
                    ffn_in: format!("{p}.intermediate.dense"),
                    ffn_out: format!("{p}.output.dense"),
                    ffn_norm: format!("{p}.output.LayerNorm"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_offset_positions_follow_transformers() {
        // transformers: pad + cumsum(id != pad) * (id != pad), with pad = 1 for RoBERTa/MPNet.
        let ids = [0, 1, 1, 1, 2];
        assert_eq!(PositionIds::AfterPadding { pad_id: 1 }.for_ids(&ids), vec![2, 1, 1, 1, 3]);
        let ids = [0, 713, 16, 2];
        assert_eq!(PositionIds::AfterPadding { pad_id: 1 }.for_ids(&ids), vec![2, 3, 4, 5]);
        assert_eq!(PositionIds::FromZero.for_ids(&ids), vec![0, 1, 2, 3]);
    }

    #[test]
    fn unknown_families_are_named() {
        let err = Architecture::detect(Some("gpt2"), &[]).unwrap_err();
        assert!(err.contains("gpt2"), "{err}");
        assert_eq!(Architecture::detect(None, &["BertModel".into()]), Ok(Architecture::Bert));
    }
}
