//! The second part of the backend seam: the math ops, each op family's forward, JVP and VJP
//! side by side (the conventions are in `backend/mod.rs`). The network's walks are written
//! against these; RMSNorm and the gated activations are provided through the host
//! (`backend/host_ops.rs`) until a backend has kernels for them.

use super::host_ops::{self, through_host, Activation};
use super::{AttentionSaved, Batch, Heads, NormSaved, ScoreMods, Storage};
use crate::error::Result;
use crate::params::{Linear, Norm};

pub trait MathOps: Storage {
    // ---- data movement -----------------------------------------------------------------------

    /// `out[r] = table[ids[r]]`, `table` is `[vocab, width]`.
    fn gather_rows(&self, table: &Self::Tensor, width: usize, ids: &[u32]) -> Result<Self::Tensor>;

    /// Elementwise `a + b` (equal lengths).
    fn add(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;

    /// Elementwise `a − b` (equal lengths).
    fn sub(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;

    /// `x + b` for every row of `x` (`[rows, width]`, `b` is `[width]`).
    fn add_bias(&self, x: &Self::Tensor, rows: usize, bias: &Self::Tensor) -> Result<Self::Tensor>;

    // ---- linear: y = x Wᵀ + b --------------------------------------------------------------

    fn linear(&self, x: &Self::Tensor, rows: usize, layer: &Linear<Self::Tensor>) -> Result<Self::Tensor>;

    /// `x Wᵀ` without the bias: the JVP of `linear`, and the GEMM half of the block ops.
    fn matmul(&self, x: &Self::Tensor, rows: usize, layer: &Linear<Self::Tensor>) -> Result<Self::Tensor>;

    /// `x̄ = ȳ W`: the VJP of `matmul` (and of `linear`) with respect to its input, for the
    /// cotangents `dy` (`[rows, out]`) → `[rows, in]`.
    fn matmul_vjp(&self, dy: &Self::Tensor, rows: usize, layer: &Linear<Self::Tensor>) -> Result<Self::Tensor>;

    // ---- layer norm ----------------------------------------------------------------------------

    fn layer_norm(
        &self,
        x: &Self::Tensor,
        rows: usize,
        width: usize,
        norm: &Norm<Self::Tensor>,
        eps: f64,
    ) -> Result<(Self::Tensor, NormSaved<Self::Tensor>)>;

    /// `ẏ = γ ⊙ (ẋ − mean ẋ − x̂ · mean(x̂ ⊙ ẋ)) / σ`, broadcasting the primal over tangents.
    fn layer_norm_jvp(
        &self,
        saved: &NormSaved<Self::Tensor>,
        norm: &Norm<Self::Tensor>,
        dx: &Self::Tensor,
        batch: Batch,
        width: usize,
    ) -> Result<Self::Tensor>;

    /// The adjoint of `layer_norm_jvp`: `x̄ = (g − mean g − x̂ · mean(x̂ ⊙ g)) / σ` with
    /// `g = γ ⊙ ȳ`, each cotangent row of `dy` (`[steps, cotangents, tokens, width]`) at its
    /// step's primal row.
    fn layer_norm_vjp(
        &self,
        saved: &NormSaved<Self::Tensor>,
        norm: &Norm<Self::Tensor>,
        dy: &Self::Tensor,
        batch: Batch,
        width: usize,
    ) -> Result<Self::Tensor>;

    // ---- GELU (exact, erf) -----------------------------------------------------------------------

    fn gelu(&self, x: &Self::Tensor) -> Result<Self::Tensor>;

    /// `ġ = gelu'(x) ẋ`, `x` the primal pre-activation `[steps, tokens, width]`.
    fn gelu_jvp(&self, x: &Self::Tensor, dx: &Self::Tensor, batch: Batch, width: usize) -> Result<Self::Tensor>;

    /// `x̄ = gelu'(x) ȳ`: GELU's Jacobian is diagonal, so its VJP is its JVP.
    fn gelu_vjp(&self, x: &Self::Tensor, dy: &Self::Tensor, batch: Batch, width: usize) -> Result<Self::Tensor> {
        self.gelu_jvp(x, dy, batch, width)
    }

    /// `y = γ ⊙ x / √(mean(x²) + ε)` over `rows` rows (RMSNorm; `norm.beta` is not read).
    /// The saved `normalized` is `x / rms`, `inv_std` is `1/rms`, so LayerNorm's weight gradient
    /// gives RMSNorm's `γ̄` (`WeightGradients::layer_norm_weight_grad`).
    fn rms_norm(
        &self,
        x: &Self::Tensor,
        rows: usize,
        width: usize,
        norm: &Norm<Self::Tensor>,
        eps: f64,
    ) -> Result<(Self::Tensor, NormSaved<Self::Tensor>)> {
        let normed = host_ops::rms_norm(&self.download(x)?, &self.download(&norm.gamma)?, rows, width, eps)?;
        let saved = NormSaved {
            normalized: self.upload_f64(&normed.normalized, None)?,
            inv_std: self.upload_f64(&normed.inv_rms, None)?,
        };
        Ok((self.upload_f64(&normed.y, Some(x))?, saved))
    }

    /// `ẏ = γ ⊙ (ẋ − x̂ · mean(x̂ ⊙ ẋ)) / rms`, broadcasting the primal over tangents.
    fn rms_norm_jvp(
        &self,
        saved: &NormSaved<Self::Tensor>,
        norm: &Norm<Self::Tensor>,
        dx: &Self::Tensor,
        batch: Batch,
        width: usize,
    ) -> Result<Self::Tensor> {
        through_host(self, [&saved.normalized, &saved.inv_std, &norm.gamma, dx], None, |[xhat, inv, gamma, dx]| {
            host_ops::rms_norm_derivative(&xhat, &inv, &gamma, &dx, batch, width, false)
        })
    }

    /// The adjoint of `rms_norm_jvp`: `x̄ = (g − x̂ · mean(x̂ ⊙ g)) / rms`, `g = γ ⊙ ȳ`.
    fn rms_norm_vjp(
        &self,
        saved: &NormSaved<Self::Tensor>,
        norm: &Norm<Self::Tensor>,
        dy: &Self::Tensor,
        batch: Batch,
        width: usize,
    ) -> Result<Self::Tensor> {
        through_host(self, [&saved.normalized, &saved.inv_std, &norm.gamma, dy], None, |[xhat, inv, gamma, dy]| {
            host_ops::rms_norm_derivative(&xhat, &inv, &gamma, &dy, batch, width, true)
        })
    }

    /// `act(gate) ⊙ up` for rows `[gate | up]` of `x` (`[rows, 2·width]`) → `[rows, width]`.
    fn gated(&self, x: &Self::Tensor, rows: usize, width: usize, act: Activation) -> Result<Self::Tensor> {
        through_host(self, [x], Some(x), |[x]| host_ops::gated(&x, rows, width, act))
    }

    /// `ẏ = act'(gate) ġ ⊙ up + act(gate) ⊙ u̇` at the primal `x` (`[steps, tokens, 2·width]`).
    fn gated_jvp(
        &self,
        x: &Self::Tensor,
        dx: &Self::Tensor,
        batch: Batch,
        width: usize,
        act: Activation,
    ) -> Result<Self::Tensor> {
        through_host(self, [x, dx], None, |[x, dx]| host_ops::gated_jvp(&x, &dx, batch, width, act))
    }

    /// The adjoint of `gated_jvp`: `[act'(gate) ⊙ up ⊙ ȳ | act(gate) ⊙ ȳ]` rows.
    fn gated_vjp(
        &self,
        x: &Self::Tensor,
        dy: &Self::Tensor,
        batch: Batch,
        width: usize,
        act: Activation,
    ) -> Result<Self::Tensor> {
        through_host(self, [x, dy], None, |[x, dy]| host_ops::gated_vjp(&x, &dy, batch, width, act))
    }

    /// `act(x)` elementwise (`[rows, width]`): an FFN's activation other than BERT's GELU.
    fn activation(&self, x: &Self::Tensor, act: Activation) -> Result<Self::Tensor> {
        through_host(self, [x], Some(x), |[x]| Ok(host_ops::activation(&x, act)))
    }

    /// `ẏ = act'(x) ⊙ ẋ` for tangents `dx` (`[steps, tangents, tokens, width]`) at the primal
    /// `x` (`[steps, tokens, width]`).
    fn activation_jvp(
        &self,
        x: &Self::Tensor,
        dx: &Self::Tensor,
        batch: Batch,
        width: usize,
        act: Activation,
    ) -> Result<Self::Tensor> {
        through_host(self, [x, dx], None, |[x, dx]| host_ops::activation_derivative(&x, &dx, batch, width, act))
    }

    /// The adjoint of `activation_jvp`: the same diagonal, so the same product.
    fn activation_vjp(
        &self,
        x: &Self::Tensor,
        dy: &Self::Tensor,
        batch: Batch,
        width: usize,
        act: Activation,
    ) -> Result<Self::Tensor> {
        self.activation_jvp(x, dy, batch, width, act)
    }

    /// Rotary position embedding of the queries and keys of `qkv` rows (`[…, tokens, 3·width]`,
    /// values untouched; `host_ops::rope`): linear, so also its own JVP on tangent rows.
    fn rope(&self, qkv: &Self::Tensor, tokens: usize, heads: Heads, theta: f64) -> Result<Self::Tensor> {
        through_host(self, [qkv], Some(qkv), |[x]| host_ops::rope(&x, tokens, heads.count, heads.dim, theta, false))
    }

    /// The VJP of `rope`: each pair turned back.
    fn rope_vjp(&self, dqkv: &Self::Tensor, tokens: usize, heads: Heads, theta: f64) -> Result<Self::Tensor> {
        through_host(self, [dqkv], Some(dqkv), |[d]| host_ops::rope(&d, tokens, heads.count, heads.dim, theta, true))
    }

    /// QK-norm: RMSNorm over each head's slice of the queries (`q.gamma`, `heads.dim` wide) and
    /// of the keys (`k.gamma`) of `qkv` rows (`[rows, 3·width]`); values untouched. The saved
    /// `normalized` is `x̂` (`[rows, 3·width]`), `inv_std` is `1/rms` per row, part and head.
    fn head_rms_norm(
        &self,
        qkv: &Self::Tensor,
        heads: Heads,
        q: &Norm<Self::Tensor>,
        k: &Norm<Self::Tensor>,
        eps: f64,
    ) -> Result<(Self::Tensor, NormSaved<Self::Tensor>)> {
        let (x, q, k) = (self.download(qkv)?, self.download(&q.gamma)?, self.download(&k.gamma)?);
        let (y, normalized, inv_rms) = host_ops::head_rms_norm(&x, &q, &k, heads.count, heads.dim, eps)?;
        let saved =
            NormSaved { normalized: self.upload_f64(&normalized, None)?, inv_std: self.upload_f64(&inv_rms, None)? };
        Ok((self.upload_f64(&y, Some(qkv))?, saved))
    }

    /// The JVP of `head_rms_norm` for tangents `dqkv` (`[steps, tangents, tokens, 3·width]`).
    fn head_rms_norm_jvp(
        &self,
        saved: &NormSaved<Self::Tensor>,
        q: &Norm<Self::Tensor>,
        k: &Norm<Self::Tensor>,
        dqkv: &Self::Tensor,
        batch: Batch,
        heads: Heads,
    ) -> Result<Self::Tensor> {
        through_host(self, [&saved.normalized, &saved.inv_std, &q.gamma, &k.gamma, dqkv], None, |[x, i, q, k, d]| {
            host_ops::head_rms_norm_derivative(&x, &i, &q, &k, &d, batch, heads.count, heads.dim, false)
        })
    }

    /// The VJP of `head_rms_norm`.
    fn head_rms_norm_vjp(
        &self,
        saved: &NormSaved<Self::Tensor>,
        q: &Norm<Self::Tensor>,
        k: &Norm<Self::Tensor>,
        dy: &Self::Tensor,
        batch: Batch,
        heads: Heads,
    ) -> Result<Self::Tensor> {
        through_host(self, [&saved.normalized, &saved.inv_std, &q.gamma, &k.gamma, dy], None, |[x, i, q, k, d]| {
            host_ops::head_rms_norm_derivative(&x, &i, &q, &k, &d, batch, heads.count, heads.dim, true)
        })
    }

    // ---- attention: softmax(Q Kᵀ/√d + bias, masked) V per head --------------------------------

    /// `qkv` is `[seqs, tokens, 3·width]`, each row `[q | k | v]` (the fused projection's
    /// output); returns the context `[seqs, tokens, width]` and the probabilities.
    fn attention(
        &self,
        qkv: &Self::Tensor,
        seqs: usize,
        tokens: usize,
        heads: Heads,
        scores: ScoreMods<'_, Self::Tensor>,
    ) -> Result<(Self::Tensor, AttentionSaved<Self::Tensor>)>;

    /// `Ṡ = (Q̇Kᵀ + QK̇ᵀ)/√d`, `Ṗ = P ⊙ (Ṡ − rowsum(P ⊙ Ṡ))`, `Ȯ = ṖV + PV̇`, for tangents
    /// `dqkv` (`[steps, tangents, tokens, 3·width]`) at the primal `qkv` (`[steps, tokens, 3·width]`).
    /// The score bias is constant and masked keys have `P = 0`, so `saved` carries both.
    fn attention_jvp(
        &self,
        qkv: &Self::Tensor,
        saved: &AttentionSaved<Self::Tensor>,
        dqkv: &Self::Tensor,
        batch: Batch,
        heads: Heads,
    ) -> Result<Self::Tensor>;

    /// The adjoint of `attention_jvp`: for context cotangents `dctx`
    /// (`[steps, cotangents, tokens, width]`), per head `V̄ = Pᵀ Ō`, `P̄ = Ō Vᵀ`,
    /// `S̄ = P ⊙ (P̄ − rowsum(P ⊙ P̄))`, `Q̄ = S̄ K/√d`, `K̄ = S̄ᵀ Q/√d`, returned as `[q̄ | k̄ | v̄]`
    /// rows (`[steps, cotangents, tokens, 3·width]`). The score bias is constant and masked keys
    /// have `P = 0`, so neither needs more than `saved`.
    fn attention_vjp(
        &self,
        qkv: &Self::Tensor,
        saved: &AttentionSaved<Self::Tensor>,
        dctx: &Self::Tensor,
        batch: Batch,
        heads: Heads,
    ) -> Result<Self::Tensor>;

    // ---- pooling ---------------------------------------------------------------------------------

    /// Mean over tokens: `[seqs, tokens, width]` → `[seqs, width]` (linear, so it is its own JVP).
    fn mean_pool(&self, x: &Self::Tensor, seqs: usize, tokens: usize, width: usize) -> Result<Self::Tensor>;

    /// Max over tokens per feature: `[seqs, tokens, width]` → `[seqs, width]`.
    fn max_pool(&self, x: &Self::Tensor, seqs: usize, tokens: usize, width: usize) -> Result<Self::Tensor>;

    /// The JVP of `max_pool` at the primal `x` (`[steps, tokens, width]`): each feature of each
    /// tangent sequence takes its tangent at the token where that step's primal is largest
    /// (the first such token on a tie, one-sided as PyTorch's), `[steps · tangents, width]`.
    fn max_pool_jvp(&self, x: &Self::Tensor, dx: &Self::Tensor, batch: Batch, width: usize) -> Result<Self::Tensor>;

    /// A weighted sum over tokens, `y_s = Σ_t weights[t] x_(s,t)`: `[seqs, tokens, width]` →
    /// `[seqs, width]`, `tokens = weights.len()` (the poolings that weigh tokens; linear, so
    /// its own JVP).
    fn weighted_pool(&self, x: &Self::Tensor, seqs: usize, weights: &[f64], width: usize) -> Result<Self::Tensor> {
        through_host(self, [x], Some(x), |[x]| host_ops::weighted_pool(&x, seqs, weights, width))
    }

    /// The VJP of `weighted_pool`: row `t` of sequence `s` gets `weights[t] · dy[s]`,
    /// `[seqs, width]` → `[seqs, tokens, width]`.
    fn weighted_pool_vjp(&self, dy: &Self::Tensor, seqs: usize, weights: &[f64], width: usize) -> Result<Self::Tensor> {
        through_host(self, [dy], Some(dy), |[dy]| host_ops::weighted_pool_vjp(&dy, seqs, weights, width))
    }

    /// The VJP of `mean_pool`: each of the `tokens` rows of sequence `s` gets `dy[s] / tokens`,
    /// `[seqs, width]` → `[seqs, tokens, width]`.
    fn mean_pool_vjp(&self, dy: &Self::Tensor, seqs: usize, tokens: usize, width: usize) -> Result<Self::Tensor>;

    /// The VJP of `max_pool` at the primal `x` (`[steps, tokens, width]`): each feature of each
    /// cotangent (`[steps · cotangents, width]`) goes to the token where that step's primal
    /// is largest (the first on a tie, as `max_pool_jvp` reads it), zero elsewhere:
    /// `[steps, cotangents, tokens, width]`.
    fn max_pool_vjp(&self, x: &Self::Tensor, dy: &Self::Tensor, batch: Batch, width: usize) -> Result<Self::Tensor>;

    /// The adjoint of `gather_rows`: `[rows, width]` zeros, then `out[ids[r]] += x[r]` for every
    /// row `r` of `x` (`[ids.len(), width]`), in order.
    fn scatter_rows(&self, x: &Self::Tensor, width: usize, ids: &[u32], rows: usize) -> Result<Self::Tensor>;
}
