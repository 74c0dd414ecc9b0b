//! The post-LN encoder layer of BERT, MPNet, RoBERTa and XLM-RoBERTa (and of every
//! sentence-transformers model built on them): attention, then a GELU feed-forward, each
//! added to its input and normalized after the sum. Training drops out each sublayer's output
//! before the sum, and attention's probabilities (inside the attention op).
//!
//! ```text
//!   qkv = x Wqkvᵀ + b                 ctx = attention(q, k, v)
//!   h1 = LN(ctx Woᵀ + bo + x)         y  = LN(gelu(h1 W1ᵀ + b1) W2ᵀ + b2 + h1)
//! ```
//!
//! What differs between the four (position ids, token types, MPNet's relative attention bias)
//! is in their embeddings and score modifiers, not in the layer.

use crate::backend::Activation;
use crate::net::block::{Block, BlockBuilder, Value};
use crate::params::{LinearId, NormId};

pub fn block() -> Block {
    with_ffn(None)
}

/// The post-LN layer with a gated feed-forward (`act(gate) ⊙ up` of `[gate | up]` rows):
/// NomicBERT's SwiGLU and JinaBERT's GeGLU, which differ from BERT only there and in how
/// positions enter attention (rotary turns, ALiBi).
pub fn gated(act: Activation) -> Block {
    with_ffn(Some(act))
}

fn with_ffn(gate: Option<Activation>) -> Block {
    let b = BlockBuilder::new();
    let x = Value::INPUT;
    let ctx = b.attention(b.linear(x, LinearId::Qkv));
    let h1 = b.layer_norm(b.add(b.dropout(b.linear(ctx, LinearId::AttentionOut)), x), NormId::Attention);
    let up = b.linear(h1, LinearId::FfnIn);
    let act = match gate {
        Some(act) => b.gated(up, act),
        None => b.gelu(up),
    };
    b.layer_norm(b.add(b.dropout(b.linear(act, LinearId::FfnOut)), h1), NormId::Ffn);
    b.finish("post-LN encoder layer").expect("the post-LN block reads only values written before each op")
}
