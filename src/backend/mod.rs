//! The op set every backend implements. The network description (`crate::net`) is written
//! against this trait only, so the same layer code runs on the CPU reference, the fast CPU
//! backend, WGSL and CUDA.
//!
//! Conventions shared by all ops:
//! - Tensors are opaque device buffers, row-major; shapes travel as explicit arguments.
//! - A *primal* batch is `[steps, tokens, width]`. A *tangent* batch is
//!   `[steps, tangents, tokens, width]`: every step carries `tangents` directions that share
//!   that step's primal, which is what makes the integrated-Jacobian work one big batch.
//! - Each op family has its forward, its JVP and its VJP side by side. A cotangent batch has the
//!   tangent batch's shape, `[steps, cotangents, tokens, width]`, `Batch::tangents` counting the
//!   cotangents of each step.
//! - Small ops are required; *block ops* (bias + residual + LayerNorm with its tangents,
//!   bias + GELU with its derivative, attention with its JVP) are provided methods built from
//!   the small ops. The reference keeps those plain defaults; a fast backend overrides only
//!   what it fuses, and the shared test suite checks both against the reference.

pub mod cpu;
#[cfg(any(feature = "cuda", feature = "cuda-emu"))]
pub mod cuda;
#[cfg(any(feature = "wgpu", feature = "cuda", feature = "cuda-emu"))]
pub mod gpu;
mod gradients;
mod open;
pub mod reference;
mod settings;
#[cfg(feature = "wgpu")]
pub mod wgpu;

use std::ops::Range;

pub use gradients::WeightGradients;
pub use open::{BackendChoice, UseBackend};
pub use settings::{parse_memory, BackendKind, BackendSettings, Precision};

use crate::error::{Error, Result};
pub use crate::params::Role;
use crate::params::{Linear, Norm};

/// Dimensions of one batched JVP pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// Primal sequences (one per quadrature node).
    pub steps: usize,
    /// Tangent sequences per primal sequence.
    pub tangents: usize,
    /// Tokens per sequence.
    pub tokens: usize,
}

impl Batch {
    pub fn primal_rows(&self) -> usize {
        self.steps * self.tokens
    }
    pub fn tangent_rows(&self) -> usize {
        self.steps * self.tangents * self.tokens
    }
    /// Tangent sequences in the batch (`steps × tangents`).
    pub fn tangent_seqs(&self) -> usize {
        self.steps * self.tangents
    }
    /// Row of the primal that tangent row `row` is a direction at.
    pub fn primal_row_of(&self, row: usize) -> usize {
        let step = row / (self.tangents * self.tokens);
        step * self.tokens + row % self.tokens
    }
}

/// The check every backend's `upload` starts with: the data is as long as its role says.
pub fn check_upload(data: &[f32], role: Role) -> Result<()> {
    if data.len() == role.len() {
        return Ok(());
    }
    Err(Error::Internal(format!("upload of {role:?} got {} values", data.len())))
}

/// `[steps, dims.len(), width]`, row `(k, c)` the unit vector `e_{dims.start + c}`: the seeds of
/// reverse mode, one cotangent per output dimension and step.
pub fn unit_rows(steps: usize, dims: Range<usize>, width: usize) -> Vec<f32> {
    let count = dims.len();
    let mut rows = vec![0.0f32; steps * count * width];
    for k in 0..steps {
        for (c, d) in dims.clone().enumerate() {
            rows[(k * count + c) * width + d] = 1.0;
        }
    }
    rows
}

/// Multi-head attention geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heads {
    pub count: usize,
    pub dim: usize,
}

impl Heads {
    pub fn width(&self) -> usize {
        self.count * self.dim
    }
}

/// What LayerNorm's JVP needs from its forward pass.
pub struct NormSaved<T> {
    /// `x̂ = (x − μ)/σ`, `[rows, width]`.
    pub normalized: T,
    /// `1/σ`, `[rows]`.
    pub inv_std: T,
}

/// What attention's JVP needs from its forward pass.
pub struct AttentionSaved<T> {
    /// Softmax probabilities, `[seqs, heads, tokens, tokens]`.
    pub probs: T,
}

/// Additions to the attention scores `QKᵀ/√d` before the softmax.
pub struct ScoreMods<'a, T> {
    /// Added to every sequence's scores: `[heads, tokens, tokens]` (MPNet's relative position
    /// bias, computed once per length and shared by all layers).
    pub bias: Option<&'a T>,
    /// `[seqs, tokens]`: 1 where a key may be attended to, 0 where it is padding (texts of
    /// different lengths packed into one batch). Masked keys get probability exactly 0.
    pub key_mask: Option<&'a T>,
}

impl<T> ScoreMods<'_, T> {
    pub fn none() -> Self {
        ScoreMods { bias: None, key_mask: None }
    }
}

impl<T> Clone for ScoreMods<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for ScoreMods<'_, T> {}

/// LayerNorm of a residual sum, as the post-LN layers apply it.
pub struct ResidualNorm<'a, T> {
    pub norm: &'a Norm<T>,
    pub width: usize,
    pub eps: f64,
}

impl<T> Clone for ResidualNorm<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for ResidualNorm<'_, T> {}

/// What a result's provenance says of the engine that made it: plain data, so that the outputs
/// need no backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineInfo {
    pub name: String,
    pub precision: Precision,
    pub primal_precision: Precision,
}

pub trait Backend: Sync {
    type Tensor: Send + Sync;

    /// A short human-readable name ("cpu f32", "cpu-reference f64").
    fn name(&self) -> String;
    /// The storage precision of this backend's tensors.
    fn precision(&self) -> Precision;

    /// Precision the primal states are stored in: `precision()` unless the backend keeps its
    /// primal wider than its tangents.
    fn primal_precision(&self) -> Precision {
        self.precision()
    }
    /// The engine as a result's provenance names it.
    fn engine_info(&self) -> EngineInfo {
        EngineInfo { name: self.name(), precision: self.precision(), primal_precision: self.primal_precision() }
    }
    /// Bytes this backend's tensors may occupy at once (`--max-memory`).
    fn memory_budget(&self) -> usize;

    /// The memory budget in words, for an error that says it is too small: its size, and
    /// where it comes from when that is not `--max-memory` alone.
    fn describe_memory_budget(&self) -> String {
        format!("{} bytes", self.memory_budget())
    }

    /// The most values one tensor may hold, where the backend has such a limit (a GPU
    /// adapter's largest binding).
    fn max_tensor_values(&self) -> Option<usize> {
        None
    }

    /// How many rows of `scalars_per_row` stored scalars fit into the memory budget (and, all
    /// in one tensor, into `max_tensor_values`); the attribution code sizes its passes with
    /// this instead of a constant.
    fn rows_that_fit(&self, scalars_per_row: usize) -> usize {
        let by_budget = self.memory_budget() / (scalars_per_row.max(1) * self.precision().bytes());
        match self.max_tensor_values() {
            Some(values) => by_budget.min(values / scalars_per_row.max(1)),
            None => by_budget,
        }
    }

    /// Moves host data to the device, stored as `role` says (a backend may re-lay-out weights
    /// for its GEMM or store them in a lower precision). `data.len()` must equal `role.len()`.
    fn upload(&self, data: &[f32], role: Role) -> Result<Self::Tensor>;
    /// Activations back to the host (weights are not meant to come back).
    fn download(&self, x: &Self::Tensor) -> Result<Vec<f64>>;
    /// A zero-filled activation tensor of `len` scalars.
    fn zeros(&self, len: usize) -> Result<Self::Tensor>;

    // ---- data movement -----------------------------------------------------------------------

    /// `out[r] = table[ids[r]]`, `table` is `[vocab, width]`.
    fn gather_rows(&self, table: &Self::Tensor, width: usize, ids: &[u32]) -> Result<Self::Tensor>;
    /// Elementwise `a + b` (equal lengths).
    fn add(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// Elementwise `a − b` (equal lengths).
    fn sub(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// `x + b` for every row of `x` (`[rows, width]`, `b` is `[width]`).
    fn add_bias(&self, x: &Self::Tensor, rows: usize, bias: &Self::Tensor) -> Result<Self::Tensor>;
    /// Quadrature inputs `[steps, len]`: row `k` is `origin + alphas[k] · delta` (both `[len]`).
    fn interpolate(&self, origin: &Self::Tensor, delta: &Self::Tensor, alphas: &[f64]) -> Result<Self::Tensor>;
    /// Token-wise tangents `[steps, directions.len(), tokens, width]`: tangent `k` of every
    /// step is `delta` (`[tokens, width]`) on row `directions.start + k` and zero elsewhere.
    fn token_tangents(
        &self,
        delta: &Self::Tensor,
        steps: usize,
        tokens: usize,
        width: usize,
        directions: Range<usize>,
    ) -> Result<Self::Tensor>;

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
    /// The VJP of `mean_pool`: each of the `tokens` rows of sequence `s` gets `dy[s] / tokens`,
    /// `[seqs, width]` → `[seqs, tokens, width]`.
    fn mean_pool_vjp(&self, dy: &Self::Tensor, seqs: usize, tokens: usize, width: usize) -> Result<Self::Tensor>;
    /// The VJP of `max_pool` at the primal `x` (`[steps, tokens, width]`): each feature of each
    /// cotangent (`[steps · cotangents, width]`) goes to the token where that step's primal
    /// is largest (the first on a tie, as `max_pool_jvp` reads it), zero elsewhere:
    /// `[steps, cotangents, tokens, width]`.
    fn max_pool_vjp(&self, x: &Self::Tensor, dy: &Self::Tensor, batch: Batch, width: usize) -> Result<Self::Tensor>;
    /// The weighted pool-and-accumulate that keeps `P` on the device: for every step `k` and
    /// tangent `m` of `d_states` (`[steps, tangents, tokens, width]`),
    /// `projection[first_direction + m] += weights[k] · mean_t d_states[k, m, t]`.
    /// `projection` is `[text tokens, width]` (row `i` is column `i` of `P`); steps are added
    /// in order, so splitting the steps into passes does not change the sum.
    fn pool_accumulate(
        &self,
        projection: &mut Self::Tensor,
        d_states: &Self::Tensor,
        batch: Batch,
        width: usize,
        weights: &[f64],
        first_direction: usize,
    ) -> Result<()>;

    /// The adjoint of `gather_rows`: `[rows, width]` zeros, then `out[ids[r]] += x[r]` for every
    /// row `r` of `x` (`[ids.len(), width]`), in order.
    fn scatter_rows(&self, x: &Self::Tensor, width: usize, ids: &[u32], rows: usize) -> Result<Self::Tensor>;

    /// Reverse mode's counterpart of `pool_accumulate`: for every step `k` and cotangent `c` of
    /// `d_states` (`[steps, cotangents, tokens, width]`, the VJP of output dimension
    /// `first_dim + c` at the attributed layer's input), adds
    /// `weights[k] · Σ_h d_states[k, c, i, h] · delta[i, h]` to `projection[i, first_dim + c]`
    /// for every token `i`; `projection` is `[tokens, dims]`, as `pool_accumulate` fills it, and
    /// `delta` is `[tokens, width]`. Steps are added in order.
    #[allow(clippy::too_many_arguments)]
    fn cotangent_accumulate(
        &self,
        projection: &mut Self::Tensor,
        d_states: &Self::Tensor,
        delta: &Self::Tensor,
        batch: Batch,
        width: usize,
        weights: &[f64],
        first_dim: usize,
    ) -> Result<()>;

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
