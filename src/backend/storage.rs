//! The first part of the backend seam: the device and its memory. What a tensor is, what it
//! is stored in, how much of it fits, and how data moves between the host and the device.

use super::{EngineInfo, Precision, Role};
use crate::error::Result;
use crate::params::HostTensor;

pub trait Storage: Sync {
    type Tensor: Send + Sync + 'static;

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

    /// `upload` of a loaded weight, which a backend that reads host memory as it is may keep
    /// without a copy (the CPU backend shares the mapped checkpoint: `HostTensor` holds the
    /// map). By default a copy, as `upload` makes.
    fn upload_host(&self, tensor: &HostTensor, role: Role) -> Result<Self::Tensor> {
        self.upload(tensor.data(), role)
    }

    /// Activations back to the host (weights are not meant to come back).
    fn download(&self, x: &Self::Tensor) -> Result<Vec<f64>>;

    /// How many scalars `x` holds (what the shape contracts, `backend/shapes.rs`, check).
    fn tensor_len(&self, x: &Self::Tensor) -> usize;

    /// A zero-filled activation tensor of `len` scalars.
    fn zeros(&self, len: usize) -> Result<Self::Tensor>;

    /// A norm's scale stored as `w` and applied as `1 + w` (Gemma's RMSNorm,
    /// `Role::UnitOffsetScale`), uploaded as applied: the one is added in f64, and rounded to
    /// f32 by default; a backend that stores f64 keeps `1 + w` exact.
    fn upload_unit_offset(&self, w: &[f32]) -> Result<Self::Tensor> {
        let applied: Vec<f32> = w.iter().map(|&w| (1.0 + f64::from(w)) as f32).collect();
        self.upload(&applied, Role::Vector { len: w.len() })
    }

    // ---- RMSNorm and gated activations: on the host until a backend has kernels ----------------

    /// Host values computed in f64 as an activation tensor: stored as the primal `like` is
    /// (a backend that keeps its primal wider keeps it so), or, with no `like`, as tangents are.
    /// Kept in f64 where the backend stores f64 (the reference's finite-difference tests need
    /// every step in f64); by default rounded to f32 for `upload`.
    fn upload_f64(&self, data: &[f64], like: Option<&Self::Tensor>) -> Result<Self::Tensor> {
        let _ = like;
        let rounded: Vec<f32> = data.iter().map(|&v| v as f32).collect();
        self.upload(&rounded, Role::Activations { len: data.len() })
    }
}
