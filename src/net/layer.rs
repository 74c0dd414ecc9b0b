//! One post-LN encoder layer, written once over the backend's ops: its forward pass, its
//! forward-mode derivative (JVP) for a batch of tangents that share each step's primal, and its
//! reverse-mode derivative (VJP) for a batch of cotangents that share it likewise.
//!
//! ```text
//!   qkv = x Wqkvᵀ + b                 ctx = attention(q, k, v)
//!   h1 = LN(ctx Woᵀ + bo + x)         y  = LN(gelu(h1 W1ᵀ + b1) W2ᵀ + b2 + h1)
//! ```
//!
//! The GEMMs are bias-free `matmul`s; each bias is applied by the block op that follows
//! (bias + residual + LayerNorm, bias + GELU), which a fast backend fuses into one pass.
//!
//! Where the attribution pass enters and leaves the stack, the JVP takes what a generic
//! autodiff cannot see (docs/design.md §3): token-direction tangents into the first layer
//! (`TangentsIn::TokenDirections`), and only the pooled tangent out of the last
//! (`last_layer_pooled_jvp`). Both are backend ops whose defaults are the plain path.

use std::ops::Range;

use crate::backend::{AttentionSaved, Backend, Batch, Heads, NormSaved, ResidualNorm, ScoreMods};
use crate::error::Result;
use crate::model::EncoderConfig;
use crate::params::{EmbeddingParams, LayerParams, Norm};

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
            heads: Heads { count: config.num_heads, dim: config.head_dim() },
            eps: config.layer_norm_eps,
        }
    }

    /// Scalars alive per tangent row at the peak of `layer_jvp` (the FFN block holds the
    /// layer's input tangent, `ḣ1`, the pre-activation and activation tangents, and the
    /// output being formed), an upper bound the attribution sizes its passes with.
    pub fn tangent_row_scalars(&self) -> usize {
        4 * self.hidden + 2 * self.ffn
    }

    /// Scalars one primal row keeps in a `LayerTape` at `tokens` tokens: `q|k|v`, the
    /// probabilities of its query row in every head, two norms' `x̂` and `1/σ`, and GELU's input.
    pub fn tape_row_scalars(&self, tokens: usize) -> usize {
        3 * self.hidden + self.heads.count * tokens + 2 * (self.hidden + 1) + self.ffn
    }

    /// `norm` as the layer applies it: over the hidden width, after a residual sum.
    fn residual_norm<'a, T>(&self, norm: &'a Norm<T>) -> ResidualNorm<'a, T> {
        ResidualNorm { norm, width: self.hidden, eps: self.eps }
    }
}

/// The embedding output for rows of token ids and their position ids: the word, position and
/// (where the family has one) token-type rows summed, then LayerNorm; with what the norm's
/// VJP needs. Every text is single-segment, so its token type is 0 everywhere.
pub fn embed_rows<B: Backend>(
    backend: &B,
    params: &EmbeddingParams<B::Tensor>,
    shape: LayerShape,
    ids: &[u32],
    positions: &[u32],
) -> Result<(B::Tensor, NormSaved<B::Tensor>)> {
    let (b, h) = (backend, shape.hidden);
    let mut x = b.add(&b.gather_rows(&params.word, h, ids)?, &b.gather_rows(&params.position, h, positions)?)?;
    if let Some(types) = &params.token_type {
        x = b.add(&x, &b.gather_rows(types, h, &vec![0; ids.len()])?)?;
    }
    b.layer_norm(&x, ids.len(), h, &params.norm, shape.eps)
}

/// Forward pass over `seqs` sequences of `tokens` rows: `[seqs, tokens, hidden]` → same.
pub fn layer_forward<B: Backend>(
    backend: &B,
    params: &LayerParams<B::Tensor>,
    shape: LayerShape,
    x: &B::Tensor,
    seqs: usize,
    tokens: usize,
    scores: ScoreMods<'_, B::Tensor>,
) -> Result<B::Tensor> {
    let attend = |qkv: &B::Tensor| Ok(backend.attention(qkv, seqs, tokens, shape.heads, scores)?.0);
    layer_forward_rows(backend, params, shape, x, seqs * tokens, attend)
}

/// Forward pass over `rows` rows whose attention is `attend` (`qkv` → context). Every other
/// op is row-wise, so the rows need not be laid out as equal-length sequences: packed texts
/// of different lengths run end to end, and `attend` arranges them for attention.
pub fn layer_forward_rows<B: Backend>(
    backend: &B,
    params: &LayerParams<B::Tensor>,
    shape: LayerShape,
    x: &B::Tensor,
    rows: usize,
    attend: impl Fn(&B::Tensor) -> Result<B::Tensor>,
) -> Result<B::Tensor> {
    let qkv = backend.linear(x, rows, &params.qkv)?;
    let ctx = attend(&qkv)?;
    drop(qkv);
    let z = backend.matmul(&ctx, rows, &params.attention_out)?;
    let norm1 = shape.residual_norm(&params.attention_norm);
    let h1 = backend.bias_residual_norm(&z, &params.attention_out.bias, x, rows, norm1)?;
    let act = backend.bias_gelu(&backend.matmul(&h1, rows, &params.ffn_in)?, rows, &params.ffn_in.bias)?;
    let z2 = backend.matmul(&act, rows, &params.ffn_out)?;
    let norm2 = shape.residual_norm(&params.ffn_norm);
    backend.bias_residual_norm(&z2, &params.ffn_out.bias, &h1, rows, norm2)
}

/// The tangents entering a layer's JVP.
#[derive(Clone)]
pub enum TangentsIn<'a, T> {
    /// Any tangents, `[steps, tangents, tokens, hidden]`.
    Dense(&'a T),
    /// Token directions, what the first layer above the attributed one receives: tangent `m`
    /// of every step is row `directions.start + m` of `delta` (`[tokens, hidden]`) on that row
    /// and zero elsewhere. Its Q/K/V projections are `tokens` rows, shared by every step and
    /// direction, and the attention JVP takes the structured path.
    TokenDirections { delta: &'a T, directions: Range<usize> },
}

/// The layer up to its last GEMM: `h1`, `gelu(h1 W1ᵀ + b1)` and their tangents.
struct FfnInput<T> {
    h1: T,
    dh1: T,
    act: T,
    dact: T,
}

fn jvp_to_ffn_output<B: Backend>(
    backend: &B,
    params: &LayerParams<B::Tensor>,
    shape: LayerShape,
    x: &B::Tensor,
    dx: TangentsIn<'_, B::Tensor>,
    batch: Batch,
    scores: ScoreMods<'_, B::Tensor>,
) -> Result<FfnInput<B::Tensor>> {
    let (rows, trows) = (batch.primal_rows(), batch.tangent_rows());

    // Attention block: one GEMM for q, k, v of the primals, one for the tangents (`tokens`
    // rows for token directions, all tangent rows otherwise).
    let qkv = backend.linear(x, rows, &params.qkv)?;
    let (ctx, dctx, dense_dx);
    let dx = match dx {
        TangentsIn::Dense(dx) => {
            let dqkv = backend.matmul(dx, trows, &params.qkv)?;
            (ctx, dctx) = backend.attention_with_jvp(&qkv, &dqkv, batch, shape.heads, scores)?;
            dx
        }
        TangentsIn::TokenDirections { delta, directions } => {
            let d_rows = backend.matmul(delta, batch.tokens, &params.qkv)?;
            (ctx, dctx) =
                backend.attention_with_token_jvp(&qkv, &d_rows, directions.clone(), batch, shape.heads, scores)?;
            // The residual needs the tangents themselves.
            dense_dx = backend.token_tangents(delta, batch.steps, batch.tokens, shape.hidden, directions)?;
            &dense_dx
        }
    };
    drop(qkv);
    let z = backend.matmul(&ctx, rows, &params.attention_out)?;
    let dz = backend.matmul(&dctx, trows, &params.attention_out)?;
    drop((ctx, dctx));
    let norm1 = shape.residual_norm(&params.attention_norm);
    let (h1, dh1) = backend.bias_residual_norm_jvp(&z, &params.attention_out.bias, x, &dz, dx, batch, norm1)?;
    drop((z, dz));

    // Feed-forward block up to its output GEMM.
    let pre = backend.matmul(&h1, rows, &params.ffn_in)?;
    let dpre = backend.matmul(&dh1, trows, &params.ffn_in)?;
    let (act, dact) = backend.bias_gelu_jvp(&pre, &params.ffn_in.bias, &dpre, batch, shape.ffn)?;
    Ok(FfnInput { h1, dh1, act, dact })
}

/// Forward pass of the `batch.steps` primals and, alongside, the JVP of all
/// `batch.steps × batch.tangents` tangents `dx`. Returns `(y, ẏ)`, `ẏ` as
/// `[steps, tangents, tokens, hidden]`. Each primal intermediate is computed once and shared
/// by its tangents.
pub fn layer_jvp<B: Backend>(
    backend: &B,
    params: &LayerParams<B::Tensor>,
    shape: LayerShape,
    x: &B::Tensor,
    dx: TangentsIn<'_, B::Tensor>,
    batch: Batch,
    scores: ScoreMods<'_, B::Tensor>,
) -> Result<(B::Tensor, B::Tensor)> {
    let (rows, trows) = (batch.primal_rows(), batch.tangent_rows());
    let FfnInput { h1, dh1, act, dact } = jvp_to_ffn_output(backend, params, shape, x, dx, batch, scores)?;
    let z2 = backend.matmul(&act, rows, &params.ffn_out)?;
    let dz2 = backend.matmul(&dact, trows, &params.ffn_out)?;
    drop((act, dact));
    let norm2 = shape.residual_norm(&params.ffn_norm);
    backend.bias_residual_norm_jvp(&z2, &params.ffn_out.bias, &h1, &dz2, &dh1, batch, norm2)
}

/// The JVP of the last layer followed by mean pooling: the token mean of each tangent
/// sequence's output, `[steps · tangents, hidden]`, which is all attribution needs. The rows are
/// reduced before the output GEMM where the backend can (`pooled_linear_residual_norm_jvp`).
pub fn last_layer_pooled_jvp<B: Backend>(
    backend: &B,
    params: &LayerParams<B::Tensor>,
    shape: LayerShape,
    x: &B::Tensor,
    dx: TangentsIn<'_, B::Tensor>,
    batch: Batch,
    scores: ScoreMods<'_, B::Tensor>,
) -> Result<B::Tensor> {
    let FfnInput { h1, dh1, act, dact } = jvp_to_ffn_output(backend, params, shape, x, dx, batch, scores)?;
    let norm2 = shape.residual_norm(&params.ffn_norm);
    backend.pooled_linear_residual_norm_jvp(&act, &dact, &h1, &dh1, &params.ffn_out, batch, norm2)
}

/// What the reverse pass of one layer reads from its forward pass: the primal quantities its
/// VJPs are taken at (one row per token and step, shared by every cotangent).
pub struct LayerTape<T> {
    qkv: T,
    attention: AttentionSaved<T>,
    attention_norm: NormSaved<T>,
    /// `h1 W1ᵀ + b1`, GELU's input.
    pre_activation: T,
    ffn_norm: NormSaved<T>,
}

/// The forward pass of `layer_forward`, as small ops, keeping what `layer_vjp` needs.
pub fn layer_forward_taped<B: Backend>(
    backend: &B,
    params: &LayerParams<B::Tensor>,
    shape: LayerShape,
    x: &B::Tensor,
    seqs: usize,
    tokens: usize,
    scores: ScoreMods<'_, B::Tensor>,
) -> Result<(B::Tensor, LayerTape<B::Tensor>)> {
    let (b, rows, width) = (backend, seqs * tokens, shape.hidden);
    let qkv = b.linear(x, rows, &params.qkv)?;
    let (ctx, attention) = b.attention(&qkv, seqs, tokens, shape.heads, scores)?;
    let z = b.linear(&ctx, rows, &params.attention_out)?;
    let (h1, attention_norm) = b.layer_norm(&b.add(&z, x)?, rows, width, &params.attention_norm, shape.eps)?;
    let pre_activation = b.linear(&h1, rows, &params.ffn_in)?;
    let z2 = b.linear(&b.gelu(&pre_activation)?, rows, &params.ffn_out)?;
    let (y, ffn_norm) = b.layer_norm(&b.add(&z2, &h1)?, rows, width, &params.ffn_norm, shape.eps)?;
    Ok((y, LayerTape { qkv, attention, attention_norm, pre_activation, ffn_norm }))
}

/// The cotangents entering a layer's VJP from above.
#[derive(Clone)]
pub enum CotangentsIn<'a, T> {
    /// Any cotangents of the output, `[steps, cotangents, tokens, hidden]`.
    Dense(&'a T),
    /// The last layer under mean pooling: cotangent `c` of every step is the unit vector
    /// `e_{dims.start + c}` of the pooled output, so every token's is `e_d / tokens`; the norm's
    /// VJP and the GEMM beneath it take the structured path (`mean_pooled_norm_linear_vjp`).
    PooledMeanUnits(Range<usize>),
}

/// A layer's input cotangents `x̄ = s̄1 + q̄k̄v̄ Wqkv`, kept as its two terms: the residual's
/// `s̄1` (`[…, hidden]`) and the attention projection's `q̄k̄v̄` (`[…, 3·hidden]`). At the
/// attributed layer only `x̄ · Δ` per token is needed, and `q̄k̄v̄ Wqkv · Δ = q̄k̄v̄ · (Δ Wqkvᵀ)`,
/// whose `Δ Wqkvᵀ` is `tokens` rows: the layer's largest cotangent GEMM is not needed there.
pub struct SplitCotangents<T> {
    pub residual: T,
    pub qkv: T,
}

/// Reverse mode through one layer: the cotangents `dy` of its output
/// (`[steps, cotangents, tokens, hidden]`) to those of its input, each cotangent at its step's
/// primal (`tape`). The forward pass read backwards:
///
/// ```text
///   s̄2 = LN2ᵀ(ȳ)      ā = s̄2 W2      p̄ = gelu'(p) ā      h̄1 = s̄2 + p̄ W1
///   s̄1 = LN1ᵀ(h̄1)     c̄ = s̄1 Wo      q̄k̄v̄ = attentionᵀ(c̄)   x̄ = s̄1 + q̄k̄v̄ Wqkv
/// ```
pub fn layer_vjp<B: Backend>(
    backend: &B,
    params: &LayerParams<B::Tensor>,
    shape: LayerShape,
    tape: &LayerTape<B::Tensor>,
    dy: CotangentsIn<'_, B::Tensor>,
    batch: Batch,
) -> Result<B::Tensor> {
    let SplitCotangents { residual, qkv } = layer_vjp_split(backend, params, shape, tape, dy, batch)?;
    backend.add(&residual, &backend.matmul_vjp(&qkv, batch.tangent_rows(), &params.qkv)?)
}

/// `layer_vjp` without its last GEMM: `x̄` as its two terms.
pub fn layer_vjp_split<B: Backend>(
    backend: &B,
    params: &LayerParams<B::Tensor>,
    shape: LayerShape,
    tape: &LayerTape<B::Tensor>,
    dy: CotangentsIn<'_, B::Tensor>,
    batch: Batch,
) -> Result<SplitCotangents<B::Tensor>> {
    let (b, rows, width) = (backend, batch.tangent_rows(), shape.hidden);
    let (d_sum2, d_act) = match dy {
        CotangentsIn::Dense(dy) => {
            let d_sum2 = b.layer_norm_vjp(&tape.ffn_norm, &params.ffn_norm, dy, batch, width)?;
            let d_act = b.matmul_vjp(&d_sum2, rows, &params.ffn_out)?;
            (d_sum2, d_act)
        }
        CotangentsIn::PooledMeanUnits(dims) => {
            b.mean_pooled_norm_linear_vjp(&tape.ffn_norm, &params.ffn_norm, &params.ffn_out, dims, batch)?
        }
    };
    let d_pre = b.gelu_vjp(&tape.pre_activation, &d_act, batch, shape.ffn)?;
    drop(d_act);
    let d_ffn_in = b.matmul_vjp(&d_pre, rows, &params.ffn_in)?;
    drop(d_pre);
    // h1 feeds the FFN and the residual: h̄1 = p̄ W1 + s̄2, summed inside the norm's VJP.
    let d_sum1 = b.residual_norm_vjp(&tape.attention_norm, &params.attention_norm, &d_ffn_in, &d_sum2, batch, width)?;
    drop((d_sum2, d_ffn_in));
    let d_ctx = b.matmul_vjp(&d_sum1, rows, &params.attention_out)?;
    let d_qkv = b.attention_vjp(&tape.qkv, &tape.attention, &d_ctx, batch, shape.heads)?;
    Ok(SplitCotangents { residual: d_sum1, qkv: d_qkv })
}
