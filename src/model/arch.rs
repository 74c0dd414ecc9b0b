//! What distinguishes one encoder family from another: how position ids are made, whether a
//! token-type table exists, and what the tensors are called. Everything else (the post-LN
//! layer, mean pooling, the attribution) is shared, so a new family joins here and in the
//! weight loader only.

/// A supported encoder family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// BERT (all-MiniLM-L6-v2, the bge family).
    Bert,
    /// MPNet (all-mpnet-base-v2, the papers' model): no token types, positions after padding,
    /// and a relative position bias on the attention scores.
    Mpnet,
    /// RoBERTa (all-distilroberta-v1): BERT's layer, positions after padding, one token type.
    Roberta,
    /// XLM-RoBERTa (multilingual-e5, paraphrase-multilingual-mpnet-base-v2, bge-m3): the RoBERTa
    /// network with a SentencePiece tokenizer, which `tokenizer.json` carries.
    XlmRoberta,
    /// T5's encoder (gtr-t5, sentence-t5): pre-RMSNorm blocks without biases, relative
    /// position buckets shared by every layer, unscaled attention, ReLU or gated-GELU.
    T5,
    /// Qwen3 (Qwen3-Embedding): a decoder read as an encoder, causal attention, grouped-query
    /// heads, QK-norm, rotary positions, pre-RMSNorm, SwiGLU, no biases; last-token pooling.
    Qwen3,
    /// Gemma 3 (EmbeddingGemma): bidirectional, sliding-window layers between global ones,
    /// each with its own rotary frequency; RMSNorm `(1 + w)` before and after each sublayer,
    /// QK-norm, GeGLU (tanh), embeddings scaled by `√hidden`.
    Gemma3,
    /// ModernBERT (gte-modernbert, modernbert-embed): pre-LayerNorm without biases, GeGLU,
    /// rotary positions per layer type, global and local (windowed) layers, an embedding norm
    /// and a final norm.
    ModernBert,
    /// NomicBERT (nomic-embed-text v1, v1.5; remote code on the Hub): BERT's post-LN layer
    /// with rotary positions instead of a table, bias-free projections and SwiGLU.
    NomicBert,
    /// JinaBERT v2 (jina-embeddings-v2; remote code, `model_type` "bert" with
    /// `position_embedding_type` "alibi"): BERT's post-LN layer with symmetric ALiBi instead of
    /// a position table and a GeGLU feed-forward.
    JinaBert,
}

/// MPNet's and T5's relative position bias (T5's buckets), as `transformers` computes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelativeBuckets {
    pub buckets: usize,
    pub max_distance: usize,
}

impl RelativeBuckets {
    /// The bucket of `key − query`. Half the buckets are for keys after the query; within a
    /// half, the first quarter of distances is exact and the rest grows logarithmically up to
    /// `max_distance`, beyond which all share the last bucket. The logarithm is taken in f32,
    /// as PyTorch does it, so that the rounding down lands where it lands there.
    pub fn bucket(self, relative_position: i64) -> usize {
        let half = (self.buckets / 2) as i64;
        let n = -relative_position;
        let offset = if n < 0 { half } else { 0 };
        let n = n.abs();
        let max_exact = half / 2;
        let within = if n < max_exact {
            n
        } else {
            let scale = ((self.max_distance as f64) / (max_exact as f64)).ln() as f32;
            let large = (n as f32 / max_exact as f32).ln() / scale * (half - max_exact) as f32;
            (max_exact + large as i64).min(half - 1)
        };
        (offset + within) as usize
    }
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
    /// No position table: positions enter attention as relative buckets (T5) or rotations
    /// (the rotary families), each `0, 1, …, T−1`.
    None,
}

impl PositionIds {
    /// The most tokens a sequence may have when the position table has `table_rows` rows.
    pub fn max_tokens(self, table_rows: usize) -> usize {
        match self {
            PositionIds::FromZero => table_rows,
            PositionIds::AfterPadding { pad_id } => table_rows.saturating_sub(pad_id as usize + 1),
            // T5 has no bound (`usize::MAX`); the rotary families their trained length.
            PositionIds::None => table_rows,
        }
    }

    pub fn for_ids(self, ids: &[u32]) -> Vec<u32> {
        match self {
            PositionIds::FromZero | PositionIds::None => (0..ids.len() as u32).collect(),
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
    /// A gated feed-forward's second input projection where it is stored apart from `ffn_in`
    /// (Qwen3's and Gemma's `up_proj`, NomicBERT's `fc11`): stacked after it.
    pub ffn_up: Option<String>,
    /// QK-norm's scales, of the queries and of the keys (Qwen3, Gemma3).
    pub head_norms: Option<[String; 2]>,
    /// Gemma's norms of attention's and of the feed-forward's output.
    pub post_norms: Option<[String; 2]>,
}

/// Base names of the embedding tensors, where the family has each.
pub struct EmbeddingTensorNames {
    pub word: String,
    pub position: Option<String>,
    pub token_type: Option<String>,
    pub norm: Option<String>,
}

impl Architecture {
    const ALL: [Architecture; 10] = [
        Architecture::Bert,
        Architecture::Gemma3,
        Architecture::JinaBert,
        Architecture::ModernBert,
        Architecture::Mpnet,
        Architecture::NomicBert,
        Architecture::Qwen3,
        Architecture::Roberta,
        Architecture::T5,
        Architecture::XlmRoberta,
    ];

    /// The family `config.json` names: its `model_type`, else the class in `architectures`.
    pub fn detect(model_type: Option<&str>, architectures: &[String]) -> Result<Self, String> {
        let supported = Self::ALL.map(Self::name).join(", ");
        match model_type {
            Some(name) => Self::ALL
                .into_iter()
                .find(|a| a.name() == name)
                .ok_or_else(|| format!("model_type `{name}` (supported: {supported})")),
            None => Self::ALL
                .into_iter()
                // Longest class prefix first: `XLMRobertaModel` must not read as RoBERTa.
                .rev()
                .find(|a| architectures.iter().any(|c| c.starts_with(a.class_prefix())))
                .ok_or_else(|| {
                    format!(
                        "config.json has no model_type and architectures {architectures:?} name no supported family ({supported})"
                    )
                }),
        }
    }

    /// `model_type` as `transformers` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Bert => "bert",
            Architecture::Mpnet => "mpnet",
            Architecture::Roberta => "roberta",
            Architecture::XlmRoberta => "xlm-roberta",
            Architecture::T5 => "t5",
            Architecture::Qwen3 => "qwen3",
            Architecture::Gemma3 => "gemma3_text",
            Architecture::ModernBert => "modernbert",
            Architecture::NomicBert => "nomic_bert",
            // Its config says "bert"; this name is what simattr reports.
            Architecture::JinaBert => "jina_bert",
        }
    }

    /// The rotary families: positions turn queries and keys, no position table.
    pub fn is_rotary(self) -> bool {
        matches!(self, Architecture::Qwen3 | Architecture::Gemma3 | Architecture::ModernBert | Architecture::NomicBert)
    }

    /// The norms' `ε` where the config does not say: BERT's LayerNorm 1e-12, ModernBERT's
    /// 1e-5, the RMSNorm families' 1e-6.
    pub fn default_norm_eps(self) -> f64 {
        match self {
            Architecture::Bert
            | Architecture::Mpnet
            | Architecture::Roberta
            | Architecture::XlmRoberta
            | Architecture::NomicBert
            | Architecture::JinaBert => 1e-12,
            Architecture::ModernBert => 1e-5,
            Architecture::T5 | Architecture::Qwen3 | Architecture::Gemma3 => 1e-6,
        }
    }

    fn class_prefix(self) -> &'static str {
        match self {
            Architecture::Bert => "Bert",
            Architecture::Mpnet => "MPNet",
            Architecture::Roberta => "Roberta",
            Architecture::XlmRoberta => "XLMRoberta",
            Architecture::T5 => "T5",
            Architecture::Qwen3 => "Qwen3",
            Architecture::Gemma3 => "Gemma3",
            Architecture::ModernBert => "ModernBert",
            Architecture::NomicBert => "NomicBert",
            Architecture::JinaBert => "JinaBert",
        }
    }

    pub fn position_ids(self, pad_id: u32) -> PositionIds {
        match self {
            Architecture::Bert => PositionIds::FromZero,
            Architecture::Mpnet | Architecture::Roberta | Architecture::XlmRoberta => {
                PositionIds::AfterPadding { pad_id }
            }
            Architecture::T5
            | Architecture::Qwen3
            | Architecture::Gemma3
            | Architecture::ModernBert
            | Architecture::NomicBert
            | Architecture::JinaBert => PositionIds::None,
        }
    }

    pub fn uses_token_types(self) -> bool {
        matches!(
            self,
            Architecture::Bert
                | Architecture::Roberta
                | Architecture::XlmRoberta
                | Architecture::NomicBert
                | Architecture::JinaBert
        )
    }

    /// MPNet's and T5's relative position bias; `transformers` fixes MPNet's maximum distance
    /// at 128, T5 reads it from its config.
    pub fn relative_buckets(self, buckets: usize, max_distance: usize) -> Option<RelativeBuckets> {
        match self {
            Architecture::Mpnet => Some(RelativeBuckets { buckets, max_distance: 128 }),
            Architecture::T5 => Some(RelativeBuckets { buckets, max_distance }),
            _ => None,
        }
    }

    /// Prefixes a checkpoint may put before every name (`BertModel` inside a bigger model).
    pub fn name_prefixes(self) -> &'static [&'static str] {
        match self {
            Architecture::Bert => &["bert.", "model."],
            Architecture::Mpnet => &["mpnet.", "model."],
            Architecture::Roberta | Architecture::XlmRoberta => &["roberta.", "model."],
            Architecture::T5 => &[],
            Architecture::Qwen3 | Architecture::Gemma3 | Architecture::ModernBert | Architecture::NomicBert => {
                &["model."]
            }
            Architecture::JinaBert => &["bert.", "model."],
        }
    }

    pub fn embedding_names(self) -> EmbeddingTensorNames {
        let name = |n: &str| Some(n.to_string());
        let bert = EmbeddingTensorNames {
            word: "embeddings.word_embeddings".into(),
            position: name("embeddings.position_embeddings"),
            token_type: self.uses_token_types().then(|| "embeddings.token_type_embeddings".into()),
            norm: name("embeddings.LayerNorm"),
        };
        let bare =
            |word: &str| EmbeddingTensorNames { word: word.into(), position: None, token_type: None, norm: None };
        match self {
            Architecture::Bert | Architecture::Mpnet | Architecture::Roberta | Architecture::XlmRoberta => bert,
            // The encoder's `embed_tokens` is tied to `shared`, which checkpoints store.
            Architecture::T5 => bare("shared"),
            Architecture::Qwen3 | Architecture::Gemma3 => bare("embed_tokens"),
            Architecture::ModernBert => {
                EmbeddingTensorNames { norm: name("embeddings.norm"), ..bare("embeddings.tok_embeddings") }
            }
            Architecture::NomicBert => EmbeddingTensorNames {
                token_type: name("embeddings.token_type_embeddings"),
                norm: name("emb_ln"),
                ..bare("embeddings.word_embeddings")
            },
            Architecture::JinaBert => EmbeddingTensorNames { position: None, ..bert },
        }
    }

    /// The norm after the last layer, where the family has one.
    pub fn final_norm_name(self) -> Option<&'static str> {
        match self {
            Architecture::T5 => Some("encoder.final_layer_norm"),
            Architecture::Qwen3 | Architecture::Gemma3 => Some("norm"),
            Architecture::ModernBert => Some("final_norm"),
            _ => None,
        }
    }

    /// The relative position bias table, `[buckets, heads]`, where the family has one (T5's
    /// first layer holds the one every layer shares).
    pub fn relative_bias_name(self) -> Option<&'static str> {
        match self {
            Architecture::Mpnet => Some("encoder.relative_attention_bias"),
            Architecture::T5 => Some("encoder.block.0.layer.0.SelfAttention.relative_attention_bias"),
            _ => None,
        }
    }

    pub fn layer_names(self, layer: usize) -> LayerTensorNames {
        match self {
            Architecture::Mpnet => {
                let p = format!("encoder.layer.{layer}");
                LayerTensorNames {
                    query: format!("{p}.attention.attn.q"),
                    key: format!("{p}.attention.attn.k"),
                    value: format!("{p}.attention.attn.v"),
                    attention_out: format!("{p}.attention.attn.o"),
                    attention_norm: format!("{p}.attention.LayerNorm"),
                    ffn_in: format!("{p}.intermediate.dense"),
                    ffn_out: format!("{p}.output.dense"),
                    ffn_norm: format!("{p}.output.LayerNorm"),
                    ffn_up: None,
                    head_norms: None,
                    post_norms: None,
                }
            }
            Architecture::T5 => {
                let p = format!("encoder.block.{layer}.layer");
                LayerTensorNames {
                    query: format!("{p}.0.SelfAttention.q"),
                    key: format!("{p}.0.SelfAttention.k"),
                    value: format!("{p}.0.SelfAttention.v"),
                    attention_out: format!("{p}.0.SelfAttention.o"),
                    attention_norm: format!("{p}.0.layer_norm"),
                    ffn_in: format!("{p}.1.DenseReluDense.wi"),
                    ffn_out: format!("{p}.1.DenseReluDense.wo"),
                    ffn_norm: format!("{p}.1.layer_norm"),
                    ffn_up: None,
                    head_norms: None,
                    post_norms: None,
                }
            }
            Architecture::Qwen3 | Architecture::Gemma3 => {
                let p = format!("layers.{layer}");
                let ffn_norm = match self {
                    Architecture::Gemma3 => "pre_feedforward_layernorm",
                    _ => "post_attention_layernorm",
                };
                LayerTensorNames {
                    query: format!("{p}.self_attn.q_proj"),
                    key: format!("{p}.self_attn.k_proj"),
                    value: format!("{p}.self_attn.v_proj"),
                    attention_out: format!("{p}.self_attn.o_proj"),
                    attention_norm: format!("{p}.input_layernorm"),
                    // The gate's projection; the up projection beside it is `mlp.up_proj`.
                    ffn_in: format!("{p}.mlp.gate_proj"),
                    ffn_out: format!("{p}.mlp.down_proj"),
                    ffn_norm: format!("{p}.{ffn_norm}"),
                    ffn_up: Some(format!("{p}.mlp.up_proj")),
                    head_norms: Some([format!("{p}.self_attn.q_norm"), format!("{p}.self_attn.k_norm")]),
                    post_norms: (self == Architecture::Gemma3)
                        .then(|| [format!("{p}.post_attention_layernorm"), format!("{p}.post_feedforward_layernorm")]),
                }
            }
            Architecture::ModernBert => {
                // Queries, keys and values are one stacked tensor, `attn.Wqkv`.
                let p = format!("layers.{layer}");
                LayerTensorNames {
                    query: format!("{p}.attn.Wqkv"),
                    key: format!("{p}.attn.Wqkv"),
                    value: format!("{p}.attn.Wqkv"),
                    attention_out: format!("{p}.attn.Wo"),
                    attention_norm: format!("{p}.attn_norm"),
                    ffn_in: format!("{p}.mlp.Wi"),
                    ffn_out: format!("{p}.mlp.Wo"),
                    ffn_norm: format!("{p}.mlp_norm"),
                    ffn_up: None,
                    head_norms: None,
                    post_norms: None,
                }
            }
            Architecture::NomicBert => {
                let p = format!("encoder.layers.{layer}");
                LayerTensorNames {
                    query: format!("{p}.attn.Wqkv"),
                    key: format!("{p}.attn.Wqkv"),
                    value: format!("{p}.attn.Wqkv"),
                    attention_out: format!("{p}.attn.out_proj"),
                    attention_norm: format!("{p}.norm1"),
                    // The gate's projection (SiLU-activated); the multiplier is `mlp.fc11`.
                    ffn_in: format!("{p}.mlp.fc12"),
                    ffn_out: format!("{p}.mlp.fc2"),
                    ffn_norm: format!("{p}.norm2"),
                    ffn_up: Some(format!("{p}.mlp.fc11")),
                    head_norms: None,
                    post_norms: None,
                }
            }
            Architecture::JinaBert => {
                let p = format!("encoder.layer.{layer}");
                LayerTensorNames {
                    query: format!("{p}.attention.self.query"),
                    key: format!("{p}.attention.self.key"),
                    value: format!("{p}.attention.self.value"),
                    attention_out: format!("{p}.attention.output.dense"),
                    attention_norm: format!("{p}.attention.output.LayerNorm"),
                    // `[gate | multiplier]` stacked in one tensor.
                    ffn_in: format!("{p}.mlp.gated_layers"),
                    ffn_out: format!("{p}.mlp.wo"),
                    ffn_norm: format!("{p}.mlp.layernorm"),
                    ffn_up: None,
                    head_norms: None,
                    post_norms: None,
                }
            }
            Architecture::Bert | Architecture::Roberta | Architecture::XlmRoberta => {
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
                    ffn_up: None,
                    head_norms: None,
                    post_norms: None,
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
        assert_eq!(Architecture::detect(None, &["XLMRobertaModel".into()]), Ok(Architecture::XlmRoberta));
        assert_eq!(Architecture::detect(None, &["RobertaForMaskedLM".into()]), Ok(Architecture::Roberta));
        assert_eq!(Architecture::detect(Some("xlm-roberta"), &[]), Ok(Architecture::XlmRoberta));
        assert_eq!(Architecture::detect(Some("mpnet"), &[]), Ok(Architecture::Mpnet));
    }

    #[test]
    fn relative_buckets_at_their_edges() {
        // Worked by hand from transformers' MPNet `relative_position_bucket` (32 buckets, max
        // distance 128): keys before the query fill 0..16, keys after it 16..32; distances
        // below 8 are exact, 16/32/64 start buckets 10/12/14, and 128 on share the last.
        let b = RelativeBuckets { buckets: 32, max_distance: 128 };
        let cases = [(0, 0), (-1, 1), (-7, 7), (-8, 8), (-15, 9), (-16, 10), (-32, 12), (-64, 14), (-127, 15)];
        for (relative, bucket) in cases {
            assert_eq!(b.bucket(relative), bucket, "key − query = {relative}");
            assert_eq!(b.bucket(-relative), if relative == 0 { 0 } else { bucket + 16 }, "key − query = {}", -relative);
        }
        assert_eq!(b.bucket(-1000), 15);
        assert_eq!(b.bucket(1000), 31);
    }
}
