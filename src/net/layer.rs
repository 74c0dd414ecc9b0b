//! One post-LN encoder layer, written once over the backend's ops: its forward pass and its
//! forward-mode derivative (JVP) for a batch of tangents that share each step's primal.
//!
//! ```text
//!   q,k,v = x W{q,k,v}ᵀ + b          ctx = attention(q, k, v)
//!   h1 = LN(ctx Woᵀ + bo + x)        y  = LN(gelu(h1 W1ᵀ + b1) W2ᵀ + b2 + h1)
//! ```

use crate::backend::{Backend, Batch, Heads};
use crate::error::Result;
use crate::net::params::LayerParams;

/// Shape facts one layer needs.
#[derive(Debug, Clone, Copy)]
pub struct LayerShape {
    pub hidden: usize,
    pub ffn: usize,
    pub heads: Heads,
    pub eps: f64,
}

/// Forward pass over `seqs` sequences of `tokens` rows: `[seqs, tokens, hidden]` → same.
pub fn layer_forward<B: Backend>(
    backend: &B,
    params: &LayerParams<B::Tensor>,
    shape: LayerShape,
    x: &B::Tensor,
    seqs: usize,
    tokens: usize,
) -> Result<B::Tensor> {
    let rows = seqs * tokens;
    let q = backend.linear(x, rows, &params.query)?;
    let k = backend.linear(x, rows, &params.key)?;
    let v = backend.linear(x, rows, &params.value)?;
    let (ctx, _) = backend.attention(&q, &k, &v, seqs, tokens, shape.heads)?;
    let attended = backend.add(&backend.linear(&ctx, rows, &params.attention_out)?, x)?;
    let (h1, _) = backend.layer_norm(&attended, rows, shape.hidden, &params.attention_norm, shape.eps)?;
    let pre = backend.linear(&h1, rows, &params.ffn_in)?;
    let ffn = backend.linear(&backend.gelu(&pre)?, rows, &params.ffn_out)?;
    let (y, _) = backend.layer_norm(&backend.add(&ffn, &h1)?, rows, shape.hidden, &params.ffn_norm, shape.eps)?;
    Ok(y)
}

/// Forward pass of the `batch.steps` primals and, alongside, the JVP of all
/// `batch.steps × batch.tangents` tangents `dx` (`[steps, tangents, tokens, hidden]`).
/// Returns `(y, ẏ)`. Each primal intermediate is computed once and shared by its tangents.
pub fn layer_jvp<B: Backend>(
    backend: &B,
    params: &LayerParams<B::Tensor>,
    shape: LayerShape,
    x: &B::Tensor,
    dx: &B::Tensor,
    batch: Batch,
) -> Result<(B::Tensor, B::Tensor)> {
    let (rows, trows) = (batch.primal_rows(), batch.tangent_rows());
    let h = shape.hidden;

    // Attention block.
    let q = backend.linear(x, rows, &params.query)?;
    let k = backend.linear(x, rows, &params.key)?;
    let v = backend.linear(x, rows, &params.value)?;
    let dq = backend.linear_jvp(dx, trows, &params.query)?;
    let dk = backend.linear_jvp(dx, trows, &params.key)?;
    let dv = backend.linear_jvp(dx, trows, &params.value)?;
    let (ctx, saved_attention) = backend.attention(&q, &k, &v, batch.steps, batch.tokens, shape.heads)?;
    let dctx = backend.attention_jvp(&q, &k, &v, &saved_attention, &dq, &dk, &dv, batch, shape.heads)?;
    drop((q, k, v, dq, dk, dv, saved_attention));

    let attended = backend.add(&backend.linear(&ctx, rows, &params.attention_out)?, x)?;
    let d_attended = backend.add(&backend.linear_jvp(&dctx, trows, &params.attention_out)?, dx)?;
    let (h1, saved1) = backend.layer_norm(&attended, rows, h, &params.attention_norm, shape.eps)?;
    let dh1 = backend.layer_norm_jvp(&saved1, &params.attention_norm, &d_attended, batch, h)?;

    // Feed-forward block.
    let pre = backend.linear(&h1, rows, &params.ffn_in)?;
    let dpre = backend.linear_jvp(&dh1, trows, &params.ffn_in)?;
    let dact = backend.gelu_jvp(&pre, &dpre, batch, shape.ffn)?;
    let act = backend.gelu(&pre)?;
    let out = backend.add(&backend.linear(&act, rows, &params.ffn_out)?, &h1)?;
    let dout = backend.add(&backend.linear_jvp(&dact, trows, &params.ffn_out)?, &dh1)?;
    let (y, saved2) = backend.layer_norm(&out, rows, h, &params.ffn_norm, shape.eps)?;
    let dy = backend.layer_norm_jvp(&saved2, &params.ffn_norm, &dout, batch, h)?;
    Ok((y, dy))
}
