//! What every layer of an encoder shares: its shape. The layer itself is a block description (`net::block`, one per family in `net::families`);
//! the three functions at the end run the post-LN block by the names the op tests and the
//! layer benchmark use.

use std::sync::LazyLock;

use crate::backend::{Backend, Batch, Heads, ScoreMods};
use crate::error::Result;
use crate::model::{EncoderConfig, LayerAttention};
pub use crate::net::block::TangentsIn;
use crate::net::block::{Block, Geometry};
use crate::params::LayerParams;

/// Shape facts one layer needs.
#[derive(Debug, Clone, Copy)]
pub struct LayerShape {
    pub hidden: usize,
    pub ffn: usize,
    pub heads: Heads,
    pub eps: f64,
}

impl LayerShape {
    /// The shape of every layer of the encoder `config` describes.
    pub fn of(config: &EncoderConfig) -> Self {
        LayerShape {
            hidden: config.hidden_size,
            ffn: config.intermediate_size,
            heads: Heads { count: config.num_heads, dim: config.head_dim(), scale: config.attention_scale() },
            eps: config.layer_norm_eps,
        }
    }

    /// Attention's heads and LayerNorm's `ε`, as a block walk takes them, for a layer without
    /// rotary positions.
    pub fn geometry(&self) -> Geometry {
        Geometry { heads: self.heads, eps: self.eps, rope_theta: None }
    }

    /// The geometry of a layer whose attention is `attention` (its rotary frequency).
    pub fn geometry_of(&self, attention: &LayerAttention) -> Geometry {
        Geometry { rope_theta: attention.rope_theta, ..self.geometry() }
    }
}

/// The post-LN block, described once (`net::families::post_ln`).
static POST_LN: LazyLock<Block> = LazyLock::new(crate::net::families::post_ln::block);

/// The post-LN layer's forward pass over `seqs` sequences of `tokens` rows.
pub fn layer_forward<B: Backend>(
    backend: &B,
    params: &LayerParams<B::Tensor>,
    shape: LayerShape,
    x: &B::Tensor,
    seqs: usize,
    tokens: usize,
    scores: ScoreMods<'_, B::Tensor>,
) -> Result<B::Tensor> {
    POST_LN.forward(backend, params, shape.geometry(), x, seqs, tokens, scores)
}

/// The post-LN layer's primal and JVP (`Block::jvp`).
pub fn layer_jvp<B: Backend>(
    backend: &B,
    params: &LayerParams<B::Tensor>,
    shape: LayerShape,
    x: &B::Tensor,
    dx: TangentsIn<'_, B::Tensor>,
    batch: Batch,
    scores: ScoreMods<'_, B::Tensor>,
) -> Result<(B::Tensor, B::Tensor)> {
    POST_LN.jvp(backend, params, shape.geometry(), x, dx, batch, scores)
}

/// The post-LN layer's JVP under mean pooling (`Block::pooled_jvp`).
pub fn last_layer_pooled_jvp<B: Backend>(
    backend: &B,
    params: &LayerParams<B::Tensor>,
    shape: LayerShape,
    x: &B::Tensor,
    dx: TangentsIn<'_, B::Tensor>,
    batch: Batch,
    scores: ScoreMods<'_, B::Tensor>,
) -> Result<B::Tensor> {
    POST_LN.pooled_jvp(backend, params, shape.geometry(), x, dx, batch, scores)
}
