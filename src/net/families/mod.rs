//! Each family's transformer block, written once as a description (`net::block`), and the
//! network around it: the norm after the last block, pooling and the modules after pooling.
//! Which block a model runs follows from its configuration's architecture; the pooling and the
//! modules after it from its folder's `modules.json`.

pub mod post_ln;

use crate::model::{Architecture, Pooling, SentenceModel};
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
        Network { embeddings, block, final_norm: None, pooling: Pooling::Mean, heads: Vec::new() }
    }

    /// The network of `model`: its family's layers, its pooling, and Normalize where its folder
    /// lists it.
    pub fn of(model: &SentenceModel) -> Self {
        let heads = if model.normalize { vec![Head::Normalize] } else { Vec::new() };
        Network { pooling: model.pooling, heads, ..Self::of_family(model.config.architecture, model.pooling) }
    }

    /// The layers of an encoder of `architecture`, pooled by `pooling`, nothing after it.
    pub fn of_family(architecture: Architecture, pooling: Pooling) -> Self {
        let (embeddings, block, final_norm) = match architecture {
            Architecture::Bert | Architecture::Mpnet | Architecture::Roberta | Architecture::XlmRoberta => {
                (Embeddings::bert(architecture.uses_token_types()), post_ln::block(), None)
            }
        };
        Network { embeddings, block, final_norm, pooling, heads: Vec::new() }
    }
}
