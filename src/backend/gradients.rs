//! Weight gradients: the backward pass with respect to the parameters, which training needs
//! and attribution does not. A trait of its own beside `Backend`, so the op set the GPU
//! backends implement is untouched; the CPU reference and the fast CPU backend implement it,
//! and a GPU backend joins by implementing these few ops (the input VJPs are `Backend`'s).
//!
//! Training runs one cotangent per sequence: the tape's primal is `[seqs, tokens, width]`
//! and the cotangents have the same shape, which is `Batch { steps: seqs, tangents: 1, … }`
//! in `Backend`'s VJP ops.

use super::{AttentionSaved, Backend, Heads, NormSaved, ScoreMods};
use crate::error::Result;

pub trait WeightGradients: Backend {
    /// For `y = x Wᵀ + b` over `rows` rows (`x` is `[rows, in_dim]`, `dy` is `[rows, out_dim]`):
    /// `(W̄, b̄) = (dyᵀ x, Σ_r dy_r)`, `W̄` laid out `[out_dim, in_dim]` as PyTorch stores `W`.
    fn linear_weight_grad(
        &self,
        x: &Self::Tensor,
        dy: &Self::Tensor,
        rows: usize,
        in_dim: usize,
        out_dim: usize,
    ) -> Result<(Self::Tensor, Self::Tensor)>;

    /// For `y = γ ⊙ x̂ + β` over `rows` rows: `(γ̄, β̄) = (Σ_r ȳ_r ⊙ x̂_r, Σ_r ȳ_r)`, `[width]` each.
    /// RMSNorm's `y = γ ⊙ x̂` has the same `γ̄` (its `x̂` is `x / rms`), and no `β`.
    fn layer_norm_weight_grad(
        &self,
        saved: &NormSaved<Self::Tensor>,
        dy: &Self::Tensor,
        rows: usize,
        width: usize,
    ) -> Result<(Self::Tensor, Self::Tensor)>;

    /// QK-norm's scales' gradients (`head_rms_norm`, whose saved `x̂` is `saved.normalized`)
    /// for the cotangents `dy` of its output: `(γ̄_q, γ̄_k)`, `[heads.dim]` each, summed over rows
    /// and heads. Through the host, as the op itself runs.
    fn head_norm_weight_grad(
        &self,
        saved: &NormSaved<Self::Tensor>,
        dy: &Self::Tensor,
        heads: Heads,
    ) -> Result<(Self::Tensor, Self::Tensor)> {
        let (normalized, dy) = (self.download(&saved.normalized)?, self.download(dy)?);
        let [q, k] = super::host_ops::head_rms_norm_weight_grad(&normalized, &dy, heads.count, heads.dim)?;
        Ok((self.upload_f64(&q, None)?, self.upload_f64(&k, None)?))
    }

    /// Elementwise `a ⊙ b` (equal lengths). With `b` a dropout mask (kept entries `1/(1 − p)`,
    /// dropped ones 0) it is dropout, and, being linear in `a`, its own VJP.
    fn mul(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;

    /// Attention with dropout on its probabilities: `context = (P ⊙ keep) V` per head, `keep`
    /// a mask `[seqs, heads, tokens, tokens]` as `mul` takes it, or none (then it is
    /// `Backend::attention`). `saved.probs` holds `P` before the mask.
    fn attention_dropout(
        &self,
        qkv: &Self::Tensor,
        seqs: usize,
        tokens: usize,
        heads: Heads,
        scores: ScoreMods<'_, Self::Tensor>,
        keep: Option<&Self::Tensor>,
    ) -> Result<(Self::Tensor, AttentionSaved<Self::Tensor>)>;

    /// The VJP of `attention_dropout` for one cotangent per sequence (`dctx`,
    /// `[seqs, tokens, width]`): `V̄ = (P ⊙ keep)ᵀ Ō`, `P̄ = (Ō Vᵀ) ⊙ keep`,
    /// `S̄ = P ⊙ (P̄ − rowsum(P ⊙ P̄))`, `Q̄ = S̄ K/√d`, `K̄ = S̄ᵀ Q/√d`. Returns `q̄k̄v̄`
    /// (`[seqs, tokens, 3·width]`) and `Σ_seqs S̄` (`[heads, tokens, tokens]`), the gradient of a
    /// score bias every sequence shares (MPNet's relative position bias).
    #[allow(clippy::too_many_arguments)]
    fn attention_dropout_vjp(
        &self,
        qkv: &Self::Tensor,
        saved: &AttentionSaved<Self::Tensor>,
        keep: Option<&Self::Tensor>,
        dctx: &Self::Tensor,
        seqs: usize,
        tokens: usize,
        heads: Heads,
    ) -> Result<(Self::Tensor, Self::Tensor)>;
}
