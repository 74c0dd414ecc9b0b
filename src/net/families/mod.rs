//! Each family's transformer block, written once as a description (`net::block`). Which block
//! an encoder runs follows from its configuration's architecture.

pub mod post_ln;

use crate::model::Architecture;
use crate::net::block::Block;

/// The block every layer of an encoder of `architecture` runs.
pub fn block_of(architecture: Architecture) -> Block {
    match architecture {
        Architecture::Bert | Architecture::Mpnet | Architecture::Roberta | Architecture::XlmRoberta => post_ln::block(),
    }
}
