//! The third part of the backend seam: block ops, each provided from the math ops and
//! overridden by a backend that fuses it (the reference keeps the defaults; the shared suite
//! checks every override against them). The network's walks reach them through the rewrites of
//! `net/block/plan.rs` and the structured passes of docs/design.md §3.

use std::ops::Range;

use super::{unit_rows, Accumulators, Batch, Heads, MathOps, NormSaved, ResidualNorm, Role, ScoreMods};
use crate::error::Result;
use crate::params::{Linear, Norm};

pub trait FusedOps: MathOps + Accumulators {
    // ---- block ops: provided, built from the small ops; fast backends fuse them -------------------

    /// `LN(z + bias + residual)` over `rows` rows.
    fn bias_residual_norm(
        &self,
        z: &Self::Tensor,
        bias: &Self::Tensor,
        residual: &Self::Tensor,
        rows: usize,
        ln: ResidualNorm<'_, Self::Tensor>,
    ) -> Result<Self::Tensor> {
        let sum = self.add(&self.add_bias(z, rows, bias)?, residual)?;
        Ok(self.layer_norm(&sum, rows, ln.width, ln.norm, ln.eps)?.0)
    }

    /// `y = LN(z + bias + residual)` over the primal rows and `ẏ` for the tangents
    /// `dz + d_residual`, sharing each row's `μ` and `σ`.
    #[allow(clippy::too_many_arguments)]
    fn bias_residual_norm_jvp(
        &self,
        z: &Self::Tensor,
        bias: &Self::Tensor,
        residual: &Self::Tensor,
        dz: &Self::Tensor,
        d_residual: &Self::Tensor,
        batch: Batch,
        ln: ResidualNorm<'_, Self::Tensor>,
    ) -> Result<(Self::Tensor, Self::Tensor)> {
        let sum = self.add(&self.add_bias(z, batch.primal_rows(), bias)?, residual)?;
        let (y, saved) = self.layer_norm(&sum, batch.primal_rows(), ln.width, ln.norm, ln.eps)?;
        let dy = self.layer_norm_jvp(&saved, ln.norm, &self.add(dz, d_residual)?, batch, ln.width)?;
        Ok((y, dy))
    }

    /// The VJP of a LayerNorm whose output feeds two branches (the post-LN layer's norm feeds
    /// the next block and its residual): `LNᵀ(dy + d_residual)`, the cotangents of both branches
    /// summed. The adjoint of `bias_residual_norm_jvp`'s tangent half; a fast backend sums them
    /// as it reads them.
    fn residual_norm_vjp(
        &self,
        saved: &NormSaved<Self::Tensor>,
        norm: &Norm<Self::Tensor>,
        dy: &Self::Tensor,
        d_residual: &Self::Tensor,
        batch: Batch,
        width: usize,
    ) -> Result<Self::Tensor> {
        self.layer_norm_vjp(saved, norm, &self.add(dy, d_residual)?, batch, width)
    }

    /// `gelu(z + bias)` over `rows` rows of `width`.
    fn bias_gelu(&self, z: &Self::Tensor, rows: usize, bias: &Self::Tensor) -> Result<Self::Tensor> {
        self.gelu(&self.add_bias(z, rows, bias)?)
    }

    /// `(gelu(z + bias), gelu'(z + bias) ⊙ dz)` for the primal rows and their tangents.
    fn bias_gelu_jvp(
        &self,
        z: &Self::Tensor,
        bias: &Self::Tensor,
        dz: &Self::Tensor,
        batch: Batch,
        width: usize,
    ) -> Result<(Self::Tensor, Self::Tensor)> {
        let pre = self.add_bias(z, batch.primal_rows(), bias)?;
        let dy = self.gelu_jvp(&pre, dz, batch, width)?;
        Ok((self.gelu(&pre)?, dy))
    }

    /// The attention block of the first layer above the attributed one, where tangent `m` of
    /// every step is the token direction `i = directions.start + m`: the projected tangent
    /// `d_rows` (`[tokens, 3·width]`, `Δ Wqkvᵀ`, the same for every step) on row `i` and zero
    /// elsewhere. The same as `attention_with_jvp` on those tangents made dense, which is this
    /// default; a fast backend uses that `Ṡ` is non-zero only in row and column `i`, so a
    /// tangent costs O(T) per head instead of O(T²). Returns `(context, d_context)`.
    fn attention_with_token_jvp(
        &self,
        qkv: &Self::Tensor,
        d_rows: &Self::Tensor,
        directions: Range<usize>,
        batch: Batch,
        heads: Heads,
        scores: ScoreMods<'_, Self::Tensor>,
    ) -> Result<(Self::Tensor, Self::Tensor)> {
        let dqkv = self.token_tangents(d_rows, batch.steps, batch.tokens, 3 * heads.width(), directions)?;
        self.attention_with_jvp(qkv, &dqkv, batch, heads, scores)
    }

    /// The output block of the last layer when only the token mean of its tangents is wanted:
    /// for `y = LN(x Wᵀ + b + residual)` (`layer` is `W`, `b`) and tangents
    /// `ż = ẋ Wᵀ + d_residual`, returns `mean_t ẏ` of every tangent sequence,
    /// `[steps · tangents, width]`. This default is the plain path (both GEMMs, the norm's JVP,
    /// mean pooling); a fast backend reduces the rows before the tangent GEMM (docs/design.md §3).
    #[allow(clippy::too_many_arguments)]
    fn pooled_linear_residual_norm_jvp(
        &self,
        x: &Self::Tensor,
        dx: &Self::Tensor,
        residual: &Self::Tensor,
        d_residual: &Self::Tensor,
        layer: &Linear<Self::Tensor>,
        batch: Batch,
        ln: ResidualNorm<'_, Self::Tensor>,
    ) -> Result<Self::Tensor> {
        let z = self.matmul(x, batch.primal_rows(), layer)?;
        let dz = self.matmul(dx, batch.tangent_rows(), layer)?;
        let (_, dy) = self.bias_residual_norm_jvp(&z, &layer.bias, residual, &dz, d_residual, batch, ln)?;
        self.mean_pool(&dy, batch.tangent_seqs(), batch.tokens, ln.width)
    }

    /// The top of reverse mode under mean pooling: for the unit cotangents `e_d` of the pooled
    /// output, `d ∈ dims` (the same for every step, `batch.tangents = dims.len()`), each token of
    /// `y = LN(z)` receives `e_d / tokens`. Returns `(z̄, ā)`: `z̄ = LNᵀ(e_d / tokens)` at each
    /// step's primal (`saved`), `[steps, dims, tokens, width]`, and `ā = z̄ W` for the GEMM
    /// `z = a Wᵀ + …` beneath the norm (`layer`), `[steps, dims, tokens, in]`. This default is
    /// the plain path (seeds, pooling's VJP, the norm's VJP, the GEMM); a fast backend uses that
    /// `z̄` has rank-one structure per token, so `ā` needs no GEMM over the cotangent rows
    /// (docs/design.md §3).
    fn mean_pooled_norm_linear_vjp(
        &self,
        saved: &NormSaved<Self::Tensor>,
        norm: &Norm<Self::Tensor>,
        layer: &Linear<Self::Tensor>,
        dims: Range<usize>,
        batch: Batch,
    ) -> Result<(Self::Tensor, Self::Tensor)> {
        let width = layer.out_dim;
        let seeds = self.upload(
            &unit_rows(batch.steps, dims, width),
            Role::Activations { len: batch.steps * batch.tangents * width },
        )?;
        let d_out = self.mean_pool_vjp(&seeds, batch.tangent_seqs(), batch.tokens, width)?;
        let d_sum = self.layer_norm_vjp(saved, norm, &d_out, batch, width)?;
        let d_in = self.matmul_vjp(&d_sum, batch.tangent_rows(), layer)?;
        Ok((d_sum, d_in))
    }

    /// The attention block's primal and JVP together: the tangents reuse the primal's
    /// probabilities. Returns `(context, d_context)`.
    fn attention_with_jvp(
        &self,
        qkv: &Self::Tensor,
        dqkv: &Self::Tensor,
        batch: Batch,
        heads: Heads,
        scores: ScoreMods<'_, Self::Tensor>,
    ) -> Result<(Self::Tensor, Self::Tensor)> {
        let (ctx, saved) = self.attention(qkv, batch.steps, batch.tokens, heads, scores)?;
        let dctx = self.attention_jvp(qkv, &saved, dqkv, batch, heads)?;
        Ok((ctx, dctx))
    }
}
