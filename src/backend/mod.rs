//! The op set every backend implements. The network description (`crate::net`) is written
//! against `Backend` only, so the same layer code runs on the CPU reference, the fast CPU
//! backend, WGSL and CUDA. `Backend` is four traits by concern, one file each, joined by a
//! blanket impl: `Storage` (tensors and memory), `MathOps` (each op's forward, JVP and VJP),
//! `FusedOps` (block ops a backend may fuse) and `Accumulators` (what the attribution sums
//! into `P`). Every op's shape contract is in `shapes.rs`, checked once at the top of each op.
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

mod accumulators;
pub mod cpu;
#[cfg(any(feature = "cuda", feature = "cuda-emu"))]
pub mod cuda;
mod fused;
#[cfg(any(feature = "wgpu", feature = "cuda", feature = "cuda-emu"))]
pub mod gpu;
mod gradients;
pub mod host_ops;
mod math_ops;
mod open;
pub mod reference;
mod settings;
pub mod shapes;
mod storage;
#[cfg(feature = "wgpu")]
pub mod wgpu;

use std::ops::Range;

pub use accumulators::Accumulators;
pub use fused::FusedOps;
pub use gradients::WeightGradients;
pub use host_ops::Activation;
pub use math_ops::MathOps;
pub use open::{BackendChoice, UseBackend};
pub use settings::{parse_memory, BackendKind, BackendSettings, Precision};
pub use storage::Storage;

use crate::error::{Error, Result};
use crate::params::Norm;
pub use crate::params::Role;

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
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Heads {
    pub count: usize,
    pub dim: usize,
    /// What `QKᵀ` is multiplied by before the softmax; `None`: `1/√dim`, as most families
    /// scale (T5 does not scale: `Some(1.0)`).
    pub scale: Option<f64>,
}

impl Heads {
    pub fn width(&self) -> usize {
        self.count * self.dim
    }

    /// The factor on `QKᵀ`.
    pub fn scale(&self) -> f64 {
        self.scale.unwrap_or_else(|| 1.0 / (self.dim as f64).sqrt())
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

/// The seam's traits, for code that calls a concrete backend's ops
/// (`use simattr::backend::prelude::*`); code generic over `B: Backend` needs none of them.
pub mod prelude {
    pub use super::{Accumulators, Backend, FusedOps, MathOps, Storage, WeightGradients};
}

/// The whole seam, as the network and the attribution code name it: a backend is its storage,
/// its math ops, its fused block ops and its accumulators, each a trait in its own file.
pub trait Backend: Storage + MathOps + FusedOps + Accumulators {}

impl<B: Storage + MathOps + FusedOps + Accumulators> Backend for B {}
