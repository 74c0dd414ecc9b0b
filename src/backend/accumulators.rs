//! The fourth part of the backend seam: what the attribution reads and writes besides the
//! network, kept on the device: the quadrature's inputs, the token-direction tangents, and the
//! weighted sums that fill the projection `P` step by step.

use std::ops::Range;

use super::{Batch, Storage};
use crate::error::Result;

pub trait Accumulators: Storage {
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
}
