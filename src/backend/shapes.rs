//! Every op's shape contract, stated once and checked at the seam: each backend's op starts
//! with its contract here, so no kernel indexes outside a tensor, and a mismatch is reported
//! the same way on every backend, as an internal error naming the operand. Shapes come from the
//! network description, never from user input, so a failed check is a bug in the engine: it is
//! reported, never a panic. The provided methods (fused defaults, host ops) run ops that check
//! themselves.
//!
//! The shapes themselves are documented on the ops (`math_ops.rs`, `fused.rs`,
//! `accumulators.rs`, `gradients.rs`).

use std::ops::Range;

use super::{AttentionSaved, Batch, Heads, NormSaved, ResidualNorm, ScoreMods, Storage};
use crate::error::{Error, Result};
use crate::params::{Linear, Norm};

/// An internal error unless `what` has `expected` values.
pub fn check_len(what: &str, len: usize, expected: usize) -> Result<()> {
    match len == expected {
        true => Ok(()),
        false => Err(Error::Internal(format!("{what} has length {len}, expected {expected}"))),
    }
}

/// An internal error unless `range` ends within `limit`.
fn check_within(what: &str, range: &Range<usize>, limit: usize) -> Result<()> {
    match range.end <= limit {
        true => Ok(()),
        false => Err(Error::Internal(format!("{what} {range:?} reach past {limit}"))),
    }
}

/// Checks the lengths of `backend`'s tensors against what an op expects of them.
pub struct Contract<'b, B: Storage + ?Sized>(pub &'b B);

impl<B: Storage + ?Sized> Contract<'_, B> {
    fn len(&self, what: &str, x: &B::Tensor, expected: usize) -> Result<()> {
        check_len(what, self.0.tensor_len(x), expected)
    }

    /// Row ids within a `[rows, width]` table.
    fn ids(&self, what: &str, ids: &[u32], rows: usize) -> Result<()> {
        match ids.iter().find(|&&id| id as usize >= rows) {
            None => Ok(()),
            Some(bad) => Err(Error::Internal(format!("{what} id {bad} is outside the {rows} rows"))),
        }
    }

    pub fn gather_rows(&self, table: &B::Tensor, width: usize, ids: &[u32]) -> Result<()> {
        let len = self.0.tensor_len(table);
        if width == 0 || len % width != 0 {
            return Err(Error::Internal(format!("gather_rows: a table of {len} values has no rows of {width}")));
        }
        self.ids("gather_rows", ids, len / width)
    }

    pub fn scatter_rows(&self, x: &B::Tensor, width: usize, ids: &[u32], rows: usize) -> Result<()> {
        self.len("scatter_rows input", x, ids.len() * width)?;
        self.ids("scatter_rows", ids, rows)
    }

    /// Elementwise ops of two operands (`add`, `sub`, `mul`).
    pub fn same(&self, what: &str, a: &B::Tensor, b: &B::Tensor) -> Result<()> {
        self.len(what, b, self.0.tensor_len(a))
    }

    pub fn add_bias(&self, x: &B::Tensor, rows: usize, bias: &B::Tensor) -> Result<()> {
        self.len("add_bias input", x, rows * self.0.tensor_len(bias))
    }

    fn weights(&self, what: &str, layer: &Linear<B::Tensor>) -> Result<()> {
        self.len(&format!("{what} weight"), &layer.weight, layer.in_dim * layer.out_dim)?;
        self.len(&format!("{what} bias"), &layer.bias, layer.out_dim)
    }

    /// `linear` and `matmul`: `x` is `[rows, in]`.
    pub fn linear(&self, what: &str, x: &B::Tensor, rows: usize, layer: &Linear<B::Tensor>) -> Result<()> {
        self.weights(what, layer)?;
        self.len(&format!("{what} input"), x, rows * layer.in_dim)
    }

    pub fn matmul_vjp(&self, dy: &B::Tensor, rows: usize, layer: &Linear<B::Tensor>) -> Result<()> {
        self.weights("matmul_vjp", layer)?;
        self.len("matmul_vjp cotangents", dy, rows * layer.out_dim)
    }

    /// `layer_norm` and `rms_norm` (`beta` read by LayerNorm only).
    pub fn norm(&self, what: &str, x: &B::Tensor, rows: usize, width: usize, norm: &Norm<B::Tensor>) -> Result<()> {
        self.len(&format!("{what} input"), x, rows * width)?;
        self.len(&format!("{what} γ"), &norm.gamma, width)
    }

    pub fn layer_norm(&self, x: &B::Tensor, rows: usize, width: usize, norm: &Norm<B::Tensor>) -> Result<()> {
        self.norm("layer_norm", x, rows, width, norm)?;
        self.len("layer_norm β", &norm.beta, width)
    }

    /// The VJP of a LayerNorm whose output feeds two branches.
    #[allow(clippy::too_many_arguments)]
    pub fn residual_norm_vjp(
        &self,
        saved: &NormSaved<B::Tensor>,
        norm: &Norm<B::Tensor>,
        dy: &B::Tensor,
        d_residual: &B::Tensor,
        batch: Batch,
        width: usize,
    ) -> Result<()> {
        self.norm_derivative("residual_norm_vjp", saved, norm, dy, batch, width)?;
        self.same("residual_norm_vjp residual cotangents", dy, d_residual)
    }

    /// The statistics a norm saved for `batch`'s primal rows.
    fn saved_norm(&self, what: &str, saved: &NormSaved<B::Tensor>, rows: usize, width: usize) -> Result<()> {
        self.len(&format!("{what} saved x̂"), &saved.normalized, rows * width)?;
        self.len(&format!("{what} saved 1/σ"), &saved.inv_std, rows)
    }

    /// A norm's JVP or VJP: `d` is `[tangent rows, width]` at the saved primal rows.
    pub fn norm_derivative(
        &self,
        what: &str,
        saved: &NormSaved<B::Tensor>,
        norm: &Norm<B::Tensor>,
        d: &B::Tensor,
        batch: Batch,
        width: usize,
    ) -> Result<()> {
        self.saved_norm(what, saved, batch.primal_rows(), width)?;
        self.len(&format!("{what} γ"), &norm.gamma, width)?;
        self.len(&format!("{what} (co)tangents"), d, batch.tangent_rows() * width)
    }

    /// An elementwise activation's JVP or VJP at the primal `x`.
    pub fn activation_derivative(
        &self,
        what: &str,
        x: &B::Tensor,
        d: &B::Tensor,
        batch: Batch,
        width: usize,
    ) -> Result<()> {
        self.len(&format!("{what} primal"), x, batch.primal_rows() * width)?;
        self.len(&format!("{what} (co)tangents"), d, batch.tangent_rows() * width)
    }

    /// Attention over `seqs` sequences, with a dropout mask on the probabilities where given.
    pub fn attention(
        &self,
        qkv: &B::Tensor,
        seqs: usize,
        tokens: usize,
        heads: Heads,
        scores: ScoreMods<'_, B::Tensor>,
        keep: Option<&B::Tensor>,
    ) -> Result<()> {
        let t = tokens;
        self.len("qkv", qkv, seqs * t * 3 * heads.width())?;
        if let Some(bias) = scores.bias {
            self.len("score bias", bias, heads.count * t * t)?;
        }
        if let Some(mask) = scores.key_mask {
            self.len("key mask", mask, seqs * t)?;
        }
        match keep {
            Some(keep) => self.len("attention dropout mask", keep, seqs * heads.count * t * t),
            None => Ok(()),
        }
    }

    /// Attention's JVP (`d` of width `3·width`) or VJP (`d` the context's, of width `width`).
    pub fn attention_derivative(
        &self,
        qkv: &B::Tensor,
        saved: &AttentionSaved<B::Tensor>,
        d: &B::Tensor,
        d_width: usize,
        batch: Batch,
        heads: Heads,
    ) -> Result<()> {
        let t = batch.tokens;
        self.len("qkv", qkv, batch.primal_rows() * 3 * heads.width())?;
        self.len("attention (co)tangents", d, batch.tangent_rows() * d_width)?;
        self.len("saved probabilities", &saved.probs, batch.steps * heads.count * t * t)
    }

    /// Training's attention VJP, one cotangent per sequence.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_dropout_vjp(
        &self,
        qkv: &B::Tensor,
        saved: &AttentionSaved<B::Tensor>,
        keep: Option<&B::Tensor>,
        dctx: &B::Tensor,
        seqs: usize,
        tokens: usize,
        heads: Heads,
    ) -> Result<()> {
        let batch = Batch { steps: seqs, tangents: 1, tokens };
        self.attention_derivative(qkv, saved, dctx, heads.width(), batch, heads)?;
        match keep {
            Some(keep) => self.len("attention dropout mask", keep, seqs * heads.count * tokens * tokens),
            None => Ok(()),
        }
    }

    /// `mean_pool` and `max_pool`.
    pub fn pool(&self, what: &str, x: &B::Tensor, seqs: usize, tokens: usize, width: usize) -> Result<()> {
        self.len(&format!("{what} input"), x, seqs * tokens * width)
    }

    /// `max_pool_jvp` (`d` per tangent row) and `max_pool_vjp` (`d` per cotangent sequence).
    pub fn max_pool_derivative(
        &self,
        x: &B::Tensor,
        d: &B::Tensor,
        d_rows: usize,
        batch: Batch,
        width: usize,
    ) -> Result<()> {
        self.len("max_pool primal", x, batch.primal_rows() * width)?;
        self.len("max_pool (co)tangents", d, d_rows * width)
    }

    pub fn mean_pool_vjp(&self, dy: &B::Tensor, seqs: usize, width: usize) -> Result<()> {
        self.len("mean_pool cotangents", dy, seqs * width)
    }

    pub fn interpolate(&self, origin: &B::Tensor, delta: &B::Tensor) -> Result<()> {
        self.len("interpolation delta", delta, self.0.tensor_len(origin))
    }

    pub fn token_tangents(
        &self,
        delta: &B::Tensor,
        tokens: usize,
        width: usize,
        directions: &Range<usize>,
    ) -> Result<()> {
        self.len("tangent delta", delta, tokens * width)?;
        check_within("tangent directions", directions, tokens)
    }

    pub fn pool_accumulate(
        &self,
        projection: &B::Tensor,
        d_states: &B::Tensor,
        batch: Batch,
        width: usize,
        weights: &[f64],
        first_direction: usize,
    ) -> Result<()> {
        self.len("pooled tangents", d_states, batch.tangent_rows() * width)?;
        check_len("step weights", weights.len(), batch.steps)?;
        let rows = self.0.tensor_len(projection) / width.max(1);
        check_within("projection rows", &(first_direction..first_direction + batch.tangents), rows)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn cotangent_accumulate(
        &self,
        projection: &B::Tensor,
        d_states: &B::Tensor,
        delta: &B::Tensor,
        batch: Batch,
        width: usize,
        weights: &[f64],
        first_dim: usize,
    ) -> Result<()> {
        let t = batch.tokens;
        self.len("cotangents", d_states, batch.tangent_rows() * width)?;
        self.len("delta", delta, t * width)?;
        check_len("step weights", weights.len(), batch.steps)?;
        let dims = self.0.tensor_len(projection) / t.max(1);
        check_within("projection dims", &(first_dim..first_dim + batch.tangents), dims)
    }

    pub fn linear_weight_grad(
        &self,
        x: &B::Tensor,
        dy: &B::Tensor,
        rows: usize,
        in_dim: usize,
        out_dim: usize,
    ) -> Result<()> {
        self.len("linear_weight_grad input", x, rows * in_dim)?;
        self.len("linear_weight_grad cotangents", dy, rows * out_dim)
    }

    pub fn layer_norm_weight_grad(
        &self,
        saved: &NormSaved<B::Tensor>,
        dy: &B::Tensor,
        rows: usize,
        width: usize,
    ) -> Result<()> {
        self.saved_norm("layer_norm_weight_grad", saved, rows, width)?;
        self.len("layer_norm_weight_grad cotangents", dy, rows * width)
    }

    /// `LN(z + bias + residual)` over `rows` rows, and its tangents `dz + d_residual` where given.
    pub fn bias_residual_norm(
        &self,
        z: &B::Tensor,
        bias: &B::Tensor,
        residual: &B::Tensor,
        tangents: Option<(&B::Tensor, &B::Tensor)>,
        batch: Batch,
        ln: ResidualNorm<'_, B::Tensor>,
    ) -> Result<()> {
        let (rows, width) = (batch.primal_rows(), ln.width);
        self.norm("bias_residual_norm", z, rows, width, ln.norm)?;
        self.len("bias_residual_norm β", &ln.norm.beta, width)?;
        self.len("bias_residual_norm bias", bias, width)?;
        self.len("bias_residual_norm residual", residual, rows * width)?;
        if let Some((dz, d_residual)) = tangents {
            self.len("bias_residual_norm tangents", dz, batch.tangent_rows() * width)?;
            self.len("bias_residual_norm residual tangents", d_residual, batch.tangent_rows() * width)?;
        }
        Ok(())
    }

    /// `gelu(z + bias)` over the primal rows, and its tangents `dz` where given.
    pub fn bias_gelu(
        &self,
        z: &B::Tensor,
        bias: &B::Tensor,
        dz: Option<&B::Tensor>,
        batch: Batch,
        width: usize,
    ) -> Result<()> {
        self.len("bias_gelu input", z, batch.primal_rows() * width)?;
        self.len("bias_gelu bias", bias, width)?;
        match dz {
            Some(dz) => self.len("bias_gelu tangents", dz, batch.tangent_rows() * width),
            None => Ok(()),
        }
    }

    pub fn attention_with_token_jvp(
        &self,
        qkv: &B::Tensor,
        d_rows: &B::Tensor,
        directions: &Range<usize>,
        batch: Batch,
        heads: Heads,
        scores: ScoreMods<'_, B::Tensor>,
    ) -> Result<()> {
        self.attention(qkv, batch.steps, batch.tokens, heads, scores, None)?;
        self.len("projected token tangents", d_rows, batch.tokens * 3 * heads.width())?;
        check_len("token directions", directions.len(), batch.tangents)?;
        check_within("token directions", directions, batch.tokens)
    }

    pub fn attention_with_jvp(
        &self,
        qkv: &B::Tensor,
        dqkv: &B::Tensor,
        batch: Batch,
        heads: Heads,
        scores: ScoreMods<'_, B::Tensor>,
    ) -> Result<()> {
        self.attention(qkv, batch.steps, batch.tokens, heads, scores, None)?;
        self.len("dqkv", dqkv, batch.tangent_rows() * 3 * heads.width())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn pooled_linear_residual_norm_jvp(
        &self,
        x: &B::Tensor,
        dx: &B::Tensor,
        residual: &B::Tensor,
        d_residual: &B::Tensor,
        layer: &Linear<B::Tensor>,
        batch: Batch,
        ln: ResidualNorm<'_, B::Tensor>,
    ) -> Result<()> {
        self.linear("pooled output GEMM", x, batch.primal_rows(), layer)?;
        self.len("pooled output GEMM tangents", dx, batch.tangent_rows() * layer.in_dim)?;
        check_len("pooled output width", layer.out_dim, ln.width)?;
        self.len("pooled output norm γ", &ln.norm.gamma, ln.width)?;
        self.len("pooled output norm β", &ln.norm.beta, ln.width)?;
        self.len("pooled output residual", residual, batch.primal_rows() * ln.width)?;
        self.len("pooled output residual tangents", d_residual, batch.tangent_rows() * ln.width)
    }

    pub fn mean_pooled_norm_linear_vjp(
        &self,
        saved: &NormSaved<B::Tensor>,
        norm: &Norm<B::Tensor>,
        layer: &Linear<B::Tensor>,
        dims: &Range<usize>,
        batch: Batch,
    ) -> Result<()> {
        self.weights("pooled output GEMM", layer)?;
        self.saved_norm("pooled output norm", saved, batch.primal_rows(), layer.out_dim)?;
        self.len("pooled output norm γ", &norm.gamma, layer.out_dim)?;
        check_len("pooled unit cotangents", dims.len(), batch.tangents)?;
        check_within("pooled unit cotangents", dims, layer.out_dim)
    }
}
