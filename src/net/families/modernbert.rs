//! ModernBERT's layer: pre-LayerNorm sublayers (no biases in the published models) added back
//! to the residual stream, GeGLU whose first half is activated. The first layer has no
//! attention norm (`nn.Identity` in `transformers`), so its block projects its input straight
//! into attention.
//!
//! ```text
//!   h = x + attention(LN(x) Wqkvᵀ) Woᵀ          (layer 0: attention(x Wqkvᵀ))
//!   y = h + (gelu(a) ⊙ g) Wo₂ᵀ,  [a | g] = LN(h) Wiᵀ
//! ```
//!
//! Global and local layers differ only in their rotary θ and mask (`EncoderConfig::layers`);
//! the embeddings are LayerNormed and the stack ends in a LayerNorm.

use crate::backend::Activation;
use crate::net::block::{Block, BlockBuilder, Value};
use crate::params::{LinearId, NormId};

/// The block of every layer (`first` false) or of the first.
pub fn block(first: bool) -> Block {
    let b = BlockBuilder::new();
    let x = Value::INPUT;
    let normed = if first { x } else { b.layer_norm(x, NormId::Attention) };
    let h = b.add(x, b.dropout(b.linear(b.attention(b.linear(normed, LinearId::Qkv)), LinearId::AttentionOut)));
    let act = b.gated(b.linear(b.layer_norm(h, NormId::Ffn), LinearId::FfnIn), Activation::Gelu);
    b.add(h, b.dropout(b.linear(act, LinearId::FfnOut)));
    b.finish("ModernBERT layer").expect("the ModernBERT block reads only values written before each op")
}
