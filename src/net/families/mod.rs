//! Each family's transformer block, written once as a description (`net::block`), and what
//! runs between the last block and pooling. Which a model runs follows from its
//! configuration's architecture.

pub mod post_ln;

use crate::model::Architecture;
use crate::net::block::{Block, NormKind};

/// An encoder's layers as data: the block every layer runs, and the norm after the last where
/// the family has one (pre-norm families do: their blocks end in a residual sum). The last
/// layer's block ends in that norm (`Block::ending_in`), so that the walks see
/// `Norm(Linear(a) + r)` feeding the pooling, as in a post-LN block.
#[derive(Debug, Clone)]
pub struct Network {
    pub block: Block,
    pub final_norm: Option<NormKind>,
}

/// The layers of an encoder of `architecture`.
pub fn network_of(architecture: Architecture) -> Network {
    Network { block: block_of(architecture), final_norm: None }
}

/// The block every layer of an encoder of `architecture` runs.
pub fn block_of(architecture: Architecture) -> Block {
    match architecture {
        Architecture::Bert | Architecture::Mpnet | Architecture::Roberta | Architecture::XlmRoberta => post_ln::block(),
    }
}
