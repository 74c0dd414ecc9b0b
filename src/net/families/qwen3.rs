//! Qwen3's decoder layer, read as an encoder (Qwen3-Embedding): pre-RMSNorm sublayers added
//! back to the residual stream, QK-norm on every head's queries and keys before the rotary
//! turn, SwiGLU, no biases.
//!
//! ```text
//!   h = x + attention(QKnorm(RMS(x) Wqkvᵀ)) Woᵀ          rotary θ, causal mask
//!   y = h + (silu(g) ⊙ u) Wdownᵀ,  [g | u] = RMS(h) [Wgate | Wup]ᵀ
//! ```
//!
//! Causality is the layer's mask (`Encoder::score_bias`), grouped-query heads are repeated at
//! load (`model::weights`), and the stack ends in an RMSNorm (`Network::final_norm`).

use crate::backend::Activation;
use crate::net::block::{Block, BlockBuilder, Value};
use crate::params::{LinearId, NormId};

pub fn block() -> Block {
    let b = BlockBuilder::new();
    let x = Value::INPUT;
    let qkv = b.head_norm(b.linear(b.rms_norm(x, NormId::Attention), LinearId::Qkv));
    let h = b.add(x, b.dropout(b.linear(b.attention(qkv), LinearId::AttentionOut)));
    let act = b.gated(b.linear(b.rms_norm(h, NormId::Ffn), LinearId::FfnIn), Activation::Silu);
    b.add(h, b.dropout(b.linear(act, LinearId::FfnOut)));
    b.finish("Qwen3 layer").expect("the Qwen3 block reads only values written before each op")
}
