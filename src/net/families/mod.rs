//! Each family's transformer block, written once as a description (`net::block`), and the
//! network around it: the norm after the last block, pooling and the modules after pooling.
//! Which block a model runs follows from its configuration's architecture; the pooling and the
//! modules after it from its folder's `modules.json`.

pub mod gemma3;
pub mod modernbert;
pub mod post_ln;
pub mod qwen3;
pub mod t5;

use crate::error::Result;
use crate::model::{Architecture, EncoderConfig, Pooling, SentenceModel};
use crate::net::block::{Block, NormKind};
use crate::net::embeddings::Embeddings;
use crate::net::heads::Head;

/// An encoder as data, bottom up: its embeddings, the block every layer runs, the norm after the last
/// where the family has one (pre-norm families do: their blocks end in a residual sum), the
/// pooling and the modules after it (`net::heads`). The last layer's block ends in the final
/// norm (`Block::ending_in`), so that the walks see `Norm(Linear(a) + r)` feeding the pooling,
/// as in a post-LN block.
#[derive(Debug, Clone)]
pub struct Network {
    pub embeddings: Embeddings,
    pub block: Block,
    /// The first layer's block where it differs from the others' (ModernBERT's has no
    /// attention norm).
    pub first_block: Option<Block>,
    pub final_norm: Option<NormKind>,
    pub pooling: Pooling,
    /// Dense modules and Normalize, in order; each Dense reads the next `EncoderParams::heads`.
    pub heads: Vec<Head>,
}

impl Network {
    /// BERT's embeddings, `block` in every layer, no final norm, mean pooling and nothing after
    /// it: how a new structure is tried on existing weights (the tests' variants), changed
    /// field by field.
    pub fn new(block: Block) -> Self {
        let embeddings = Embeddings::bert(true);
        Network { embeddings, block, first_block: None, final_norm: None, pooling: Pooling::Mean, heads: Vec::new() }
    }

    /// The network of `model`: its family's layers, its pooling, the Dense modules and
    /// Normalize its folder lists, and the truncation asked for (before Normalize: the
    /// attributed embedding is the unnormalized one).
    pub fn of(model: &SentenceModel) -> Self {
        let dense = model.dense.iter().map(|module| Head::Dense { activation: module.activation });
        let truncate = model.truncate_dim.map(|dims| Head::Truncate { dims });
        let normalize = model.normalize.then_some(Head::Normalize);
        let heads = dense.chain(truncate).chain(normalize).collect();
        Network { pooling: model.pooling, heads, ..Self::of_family(&model.config, model.pooling) }
    }

    /// The layers of an encoder configured by `config`, pooled by `pooling`, nothing after it.
    pub fn of_family(config: &EncoderConfig, pooling: Pooling) -> Self {
        let architecture = config.architecture;
        // The families without a position table: T5's relative buckets, the rotary families.
        let bare = Embeddings { positions: false, token_types: false, scale: config.embedding_scale, norm: None };
        let (embeddings, block, final_norm) = match architecture {
            Architecture::Bert | Architecture::Mpnet | Architecture::Roberta | Architecture::XlmRoberta => {
                (Embeddings::bert(architecture.uses_token_types()), post_ln::block(), None)
            }
            Architecture::T5 => (bare, t5::block(config.ffn_activation, config.ffn_gated), Some(NormKind::Rms)),
            Architecture::Qwen3 => (bare, qwen3::block(), Some(NormKind::Rms)),
            Architecture::Gemma3 => (bare, gemma3::block(), Some(NormKind::Rms)),
            Architecture::ModernBert => {
                let embeddings = Embeddings { norm: Some(NormKind::Layer), ..bare };
                (embeddings, modernbert::block(false), Some(NormKind::Layer))
            }
            Architecture::NomicBert | Architecture::JinaBert => {
                let embeddings = Embeddings { token_types: true, norm: Some(NormKind::Layer), ..bare };
                (embeddings, post_ln::gated(config.ffn_activation), None)
            }
        };
        let first_block = (architecture == Architecture::ModernBert).then(|| modernbert::block(true));
        Network { embeddings, block, first_block, final_norm, pooling, heads: Vec::new() }
    }

    /// The block each of `layers` layers runs: the first layer's where it differs, the family's
    /// block elsewhere, the last ending in the final norm where the network has one.
    pub fn layer_blocks(&self, layers: usize) -> Result<Vec<Block>> {
        (0..layers)
            .map(|l| {
                let block = match (l, &self.first_block) {
                    (0, Some(first)) => first,
                    _ => &self.block,
                };
                match self.final_norm {
                    Some(kind) if l + 1 == layers => block.ending_in(kind),
                    _ => Ok(block.clone()),
                }
            })
            .collect()
    }
}
