//! The op set every backend implements. The network description (`crate::net`) is written
//! against this trait only, so the same layer code runs on the CPU reference, the fast CPU
//! backend, WGSL and CUDA.
//!
//! Conventions shared by all ops:
//! - Tensors are opaque device buffers, row-major; shapes travel as explicit arguments.
//! - A *primal* batch is `[steps, tokens, width]`. A *tangent* batch is
//!   `[steps, tangents, tokens, width]`: every step carries `tangents` directions that share
//!   that step's primal, which is what makes the integrated-Jacobian work one big batch.
//! - Each op family has its forward and its JVP side by side; the VJP joins them when
//!   reverse mode arrives (roadmap item 5).

pub mod cpu_reference;

use std::ops::Range;

use crate::error::Result;
use crate::net::params::{Linear, Norm};

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
    /// Row of the primal that tangent row `row` is a direction at.
    pub fn primal_row_of(&self, row: usize) -> usize {
        let step = row / (self.tangents * self.tokens);
        step * self.tokens + row % self.tokens
    }
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

pub trait Backend {
    type Tensor;

    /// A short human-readable name ("cpu-reference f32").
    fn name(&self) -> String;

    fn upload(&self, data: &[f32]) -> Result<Self::Tensor>;
    fn download(&self, x: &Self::Tensor) -> Result<Vec<f64>>;

    // ---- data movement -------------------------------------------------------------------

    /// `out[r] = table[ids[r]]`, `table` is `[vocab, width]`.
    fn gather_rows(&self, table: &Self::Tensor, width: usize, ids: &[u32]) -> Result<Self::Tensor>;
    /// Elementwise `a + b` (equal lengths).
    fn add(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// Elementwise `a − b` (equal lengths).
    fn sub(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
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
    /// `ẏ = ẋ Wᵀ` (the bias is constant).
    fn linear_jvp(&self, dx: &Self::Tensor, rows: usize, layer: &Linear<Self::Tensor>) -> Result<Self::Tensor>;

    // ---- layer norm --------------------------------------------------------------------------

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

    // ---- GELU (exact, erf) ---------------------------------------------------------------------

    fn gelu(&self, x: &Self::Tensor) -> Result<Self::Tensor>;
    /// `ġ = gelu'(x) ẋ`, `x` the primal pre-activation `[steps, tokens, width]`.
    fn gelu_jvp(&self, x: &Self::Tensor, dx: &Self::Tensor, batch: Batch, width: usize) -> Result<Self::Tensor>;

    // ---- attention: softmax(Q Kᵀ/√d) V per head -----------------------------------------------

    fn attention(
        &self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        seqs: usize,
        tokens: usize,
        heads: Heads,
    ) -> Result<(Self::Tensor, AttentionSaved<Self::Tensor>)>;
    /// `Ṡ = (Q̇Kᵀ + QK̇ᵀ)/√d`, `Ṗ = P ⊙ (Ṡ − rowsum(P ⊙ Ṡ))`, `Ȯ = ṖV + PV̇`.
    #[allow(clippy::too_many_arguments)]
    fn attention_jvp(
        &self,
        q: &Self::Tensor,
        k: &Self::Tensor,
        v: &Self::Tensor,
        saved: &AttentionSaved<Self::Tensor>,
        dq: &Self::Tensor,
        dk: &Self::Tensor,
        dv: &Self::Tensor,
        batch: Batch,
        heads: Heads,
    ) -> Result<Self::Tensor>;

    // ---- pooling -----------------------------------------------------------------------------------

    /// Mean over tokens: `[seqs, tokens, width]` → `[seqs, width]` (linear, so it is its own JVP).
    fn mean_pool(&self, x: &Self::Tensor, seqs: usize, tokens: usize, width: usize) -> Result<Self::Tensor>;
}
