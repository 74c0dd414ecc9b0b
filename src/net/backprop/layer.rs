//! One post-LN layer for training: the forward pass over packed rows with dropout, keeping
//! what the backward pass reads, and the backward pass, which returns the input's cotangents
//! and every weight's gradient. Dropout sits where BERT and MPNet put it: on the attention
//! probabilities, and on each block's output before its residual sum.
//!
//! ```text
//!   qkv = x Wqkvᵀ + b     ctx = attention(qkv) with P ⊙ keep_p      z = drop1(ctx Woᵀ + bo)
//!   h1 = LN1(z + x)       p = h1 W1ᵀ + b1     z2 = drop2(gelu(p) W2ᵀ + b2)     y = LN2(z2 + h1)
//! ```
//! read backwards:
//! ```text
//!   s̄2 = LN2ᵀ(ȳ)    z̄2 = drop2(s̄2)    W̄2 = z̄2ᵀ gelu(p)    p̄ = gelu'(p) ⊙ z̄2 W2    W̄1 = p̄ᵀ h1
//!   h̄1 = p̄ W1 + s̄2   s̄1 = LN1ᵀ(h̄1)    z̄ = drop1(s̄1)   W̄o = z̄ᵀ ctx   q̄k̄v̄ = attentionᵀ(z̄ Wo)
//!   W̄qkv = q̄k̄v̄ᵀ x    x̄ = q̄k̄v̄ Wqkv + s̄1
//! ```

use crate::backend::{AttentionSaved, Batch, NormSaved, ScoreMods, WeightGradients};
use crate::error::Result;
use crate::net::layer::LayerShape;
use crate::net::packing::Packing;
use crate::params::{LayerParams, LayerSlot, LinearPart, NormPart};

/// One layer's dropout masks (`1/(1 − p)` where kept, 0 where dropped).
pub struct LayerMasks<T> {
    /// `[seqs, heads, T, T]` over the padded attention layout.
    pub probs: T,
    /// `[rows, hidden]`, the attention block's output.
    pub attention_out: T,
    /// `[rows, hidden]`, the feed-forward block's output.
    pub ffn_out: T,
}

/// What the backward pass of one layer reads.
pub struct LayerTape<T> {
    x: T,
    /// `q|k|v` in the padded attention layout `[seqs, T, 3·hidden]`.
    padded_qkv: T,
    attention: AttentionSaved<T>,
    ctx: T,
    attention_norm: NormSaved<T>,
    h1: T,
    pre_activation: T,
    activation: T,
    ffn_norm: NormSaved<T>,
    masks: Option<LayerMasks<T>>,
}

/// Row-wise ops see the packed rows as one sequence of `rows` tokens.
pub(super) fn rows_batch(rows: usize) -> Batch {
    Batch { steps: 1, tangents: 1, tokens: rows }
}

pub fn layer_forward<B: WeightGradients>(
    b: &B,
    params: &LayerParams<B::Tensor>,
    shape: LayerShape,
    packing: &Packing<B::Tensor>,
    scores: ScoreMods<'_, B::Tensor>,
    x: B::Tensor,
    masks: Option<LayerMasks<B::Tensor>>,
) -> Result<(B::Tensor, LayerTape<B::Tensor>)> {
    let (rows, h) = (packing.rows(), shape.hidden);
    let padded_qkv = packing.to_padded(b, &b.linear(&x, rows, &params.qkv)?, 3 * h)?;
    let keep_probs = masks.as_ref().map(|m| &m.probs);
    let (ctx, attention) =
        b.attention_dropout(&padded_qkv, packing.seqs, packing.tokens, shape.heads, scores, keep_probs)?;
    let ctx = packing.to_packed(b, &ctx, h)?;
    let mut z = b.linear(&ctx, rows, &params.attention_out)?;
    if let Some(m) = &masks {
        z = b.mul(&z, &m.attention_out)?;
    }
    let (h1, attention_norm) = b.layer_norm(&b.add(&z, &x)?, rows, h, &params.attention_norm, shape.eps)?;
    let pre_activation = b.linear(&h1, rows, &params.ffn_in)?;
    let activation = b.gelu(&pre_activation)?;
    let mut z2 = b.linear(&activation, rows, &params.ffn_out)?;
    if let Some(m) = &masks {
        z2 = b.mul(&z2, &m.ffn_out)?;
    }
    let (y, ffn_norm) = b.layer_norm(&b.add(&z2, &h1)?, rows, h, &params.ffn_norm, shape.eps)?;
    let tape =
        LayerTape { x, padded_qkv, attention, ctx, attention_norm, h1, pre_activation, activation, ffn_norm, masks };
    Ok((y, tape))
}

/// A layer's gradients: each weight's, and `Σ S̄` over the padded attention layout
/// (`[heads, T, T]`, for a shared score bias).
pub struct LayerGrads<T> {
    pub weights: Vec<(LayerSlot, T)>,
    pub score_bias: T,
}

pub fn layer_backward<B: WeightGradients>(
    b: &B,
    params: &LayerParams<B::Tensor>,
    shape: LayerShape,
    packing: &Packing<B::Tensor>,
    tape: &LayerTape<B::Tensor>,
    dy: &B::Tensor,
) -> Result<(B::Tensor, LayerGrads<B::Tensor>)> {
    let (rows, h, ffn) = (packing.rows(), shape.hidden, shape.ffn);
    let batch = rows_batch(rows);
    let mut weights = Vec::with_capacity(LayerSlot::ALL.len());
    let norm_grads = |slot: fn(NormPart) -> LayerSlot, saved: &NormSaved<B::Tensor>, dy: &B::Tensor| {
        let (d_gamma, d_beta) = b.layer_norm_weight_grad(saved, dy, rows, h)?;
        Ok::<_, crate::Error>([(slot(NormPart::Gamma), d_gamma), (slot(NormPart::Beta), d_beta)])
    };
    let linear_grads = |slot: fn(LinearPart) -> LayerSlot, x: &B::Tensor, dy: &B::Tensor, in_dim, out_dim| {
        let (dw, db) = b.linear_weight_grad(x, dy, rows, in_dim, out_dim)?;
        Ok::<_, crate::Error>([(slot(LinearPart::Weight), dw), (slot(LinearPart::Bias), db)])
    };
    // Dropout's VJP is the same mask; `None` where there is no dropout.
    let dropped = |d: &B::Tensor, mask: Option<&B::Tensor>| mask.map(|m| b.mul(d, m)).transpose();

    // Feed-forward block.
    weights.extend(norm_grads(LayerSlot::FfnNorm, &tape.ffn_norm, dy)?);
    let d_sum2 = b.layer_norm_vjp(&tape.ffn_norm, &params.ffn_norm, dy, batch, h)?;
    let d_z2 = dropped(&d_sum2, tape.masks.as_ref().map(|m| &m.ffn_out))?;
    let d_z2 = d_z2.as_ref().unwrap_or(&d_sum2);
    weights.extend(linear_grads(LayerSlot::FfnOut, &tape.activation, d_z2, ffn, h)?);
    let d_act = b.matmul_vjp(d_z2, rows, &params.ffn_out)?;
    let d_pre = b.gelu_vjp(&tape.pre_activation, &d_act, batch, ffn)?;
    weights.extend(linear_grads(LayerSlot::FfnIn, &tape.h1, &d_pre, h, ffn)?);
    let d_h1 = b.add(&b.matmul_vjp(&d_pre, rows, &params.ffn_in)?, &d_sum2)?;

    // Attention block.
    weights.extend(norm_grads(LayerSlot::AttentionNorm, &tape.attention_norm, &d_h1)?);
    let d_sum1 = b.layer_norm_vjp(&tape.attention_norm, &params.attention_norm, &d_h1, batch, h)?;
    let d_z = dropped(&d_sum1, tape.masks.as_ref().map(|m| &m.attention_out))?;
    let d_z = d_z.as_ref().unwrap_or(&d_sum1);
    weights.extend(linear_grads(LayerSlot::AttentionOut, &tape.ctx, d_z, h, h)?);
    let d_ctx = packing.to_padded_cotangents(b, &b.matmul_vjp(d_z, rows, &params.attention_out)?, h)?;
    let (d_qkv, score_bias) = b.attention_dropout_vjp(
        &tape.padded_qkv,
        &tape.attention,
        tape.masks.as_ref().map(|m| &m.probs),
        &d_ctx,
        packing.seqs,
        packing.tokens,
        shape.heads,
    )?;
    let d_qkv = packing.to_packed(b, &d_qkv, 3 * h)?;
    weights.extend(linear_grads(LayerSlot::Qkv, &tape.x, &d_qkv, h, 3 * h)?);
    let dx = b.add(&b.matmul_vjp(&d_qkv, rows, &params.qkv)?, &d_sum1)?;
    Ok((dx, LayerGrads { weights, score_bias }))
}
