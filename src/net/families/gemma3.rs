//! Gemma 3's layer (EmbeddingGemma): each sublayer normalized before and after ("sandwich"
//! norms), QK-norm before the rotary turn, GeGLU with the tanh GELU, no biases. Every RMSNorm
//! scales by `1 + w` (the loader marks the scales, `ScaleStorage::UnitOffset`).
//!
//! ```text
//!   h = x + RMS(attention(QKnorm(RMS(x) Wqkvᵀ)) Woᵀ)           rotary θ per layer type
//!   y = h + RMS((gelu_tanh(g) ⊙ u) Wdownᵀ),  [g | u] = RMS(h) [Wgate | Wup]ᵀ
//! ```
//!
//! Sliding layers see keys within half the window either side (`AttentionMask::Window`);
//! scores are scaled by `query_pre_attn_scalar^−½`, the embeddings by `√hidden`.

use crate::backend::Activation;
use crate::net::block::{Block, BlockBuilder, Value};
use crate::params::{LinearId, NormId};

pub fn block() -> Block {
    let b = BlockBuilder::new();
    let x = Value::INPUT;
    let qkv = b.head_norm(b.linear(b.rms_norm(x, NormId::Attention), LinearId::Qkv));
    let attended = b.rms_norm(b.linear(b.attention(qkv), LinearId::AttentionOut), NormId::PostAttention);
    let h = b.add(x, b.dropout(attended));
    let act = b.gated(b.linear(b.rms_norm(h, NormId::Ffn), LinearId::FfnIn), Activation::GeluTanh);
    let fed = b.rms_norm(b.linear(act, LinearId::FfnOut), NormId::PostFfn);
    b.add(h, b.dropout(fed));
    b.finish("Gemma 3 layer").expect("the Gemma 3 block reads only values written before each op")
}
