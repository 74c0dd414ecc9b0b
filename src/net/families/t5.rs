//! T5's encoder block (gtr-t5, sentence-t5): each sublayer reads an RMSNorm of the residual
//! stream and adds its output back, with no biases anywhere. The feed-forward is ReLU, or
//! (T5 v1.1, `gated-gelu`) the tanh GELU of one projection times another.
//!
//! ```text
//!   h = x + (attention(RMS(x) Wqkvᵀ)) Woᵀ
//!   y = h + act(RMS(h) Wiᵀ) Wo₂ᵀ            act(g) or act(g) ⊙ u for rows [g | u]
//! ```
//!
//! Positions enter attention only as the relative bias buckets of the first layer's table,
//! shared by every layer (`Encoder::score_bias`); scores are not scaled by `1/√d`
//! (`EncoderConfig::attention_scale`). The encoder ends in an RMSNorm (`Network::final_norm`).

use crate::backend::Activation;
use crate::net::block::{Block, BlockBuilder, Value};
use crate::params::{LinearId, NormId};

/// The block, its feed-forward gated (`[gate | up]` rows) or not.
pub fn block(activation: Activation, gated: bool) -> Block {
    let b = BlockBuilder::new();
    let x = Value::INPUT;
    let ctx = b.attention(b.linear(b.rms_norm(x, NormId::Attention), LinearId::Qkv));
    let h = b.add(x, b.dropout(b.linear(ctx, LinearId::AttentionOut)));
    let up = b.linear(b.rms_norm(h, NormId::Ffn), LinearId::FfnIn);
    let act = match gated {
        true => b.gated(up, activation),
        false => b.activation(up, activation),
    };
    b.add(h, b.dropout(b.linear(act, LinearId::FfnOut)));
    b.finish("T5 encoder layer").expect("the T5 block reads only values written before each op")
}
