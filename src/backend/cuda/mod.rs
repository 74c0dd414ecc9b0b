//! The CUDA backend: every op a hand-written CUDA kernel (`kernels/*.cu`, one file per op
//! family, mirroring `shaders/*.wgsl` entry point for entry point). The host code is
//! `super::gpu`'s, shared with wgpu; what is CUDA's own is the launch layer below it (buffers,
//! copies, a launch by family, kernel and grid, synchronisation), which has two
//! implementations:
//! - `emu`: the CPU execution harness (`kernels/emu/`, built by `build.rs`), which runs the
//!   very `.cu` source as C++ on the host: `--backend cuda-emu`, for tests and for checking
//!   kernels on machines without a GPU;
//! - cudarc on a real device (to come: the kernels compiled by NVRTC, `nvrtc.rs`).

mod emu;
pub mod nvrtc;
pub mod toolkit;

pub use emu::{Emu, EmuBuffer};

use super::gpu::{GpuBackend, GpuTensor};
use super::{BackendSettings, Precision};
use crate::error::{Error, Result};

pub type CudaEmuBackend = GpuBackend<Emu>;
pub type CudaEmuTensor = GpuTensor<EmuBuffer>;

/// The kernel families, as `kernels/` names their files.
pub const FAMILIES: [&str; 6] = ["elementwise", "matmul", "layer_norm", "gelu", "attention", "pooling"];

/// The block shape a family's kernels are written for: the workgroup size of its WGSL twin,
/// as each `.cu` file's opening comment states it.
pub fn block_shape(family: &str) -> Result<[u32; 3]> {
    match family {
        "elementwise" | "gelu" => Ok([256, 1, 1]),
        "layer_norm" | "attention" | "pooling" => Ok([64, 1, 1]),
        "matmul" => Ok([16, 16, 1]),
        other => Err(Error::Internal(format!("no CUDA kernel family `{other}`"))),
    }
}

/// Bytes of one stored value, for the storage precisions the kernels are compiled for.
pub fn value_bytes(precision: Precision) -> Result<usize> {
    match precision {
        Precision::F32 => Ok(4),
        Precision::F16 | Precision::Bf16 => Ok(2),
        Precision::F64 => Err(Error::argument("--precision", "the CUDA kernels store f32, f16 or bf16, not f64")),
    }
}

impl GpuBackend<Emu> {
    /// The CUDA kernels on the CPU execution harness, storing tensors in `precision` (f32, f16
    /// or bf16; arithmetic stays f32).
    pub fn emulated(settings: BackendSettings, precision: Precision) -> Result<Self> {
        GpuBackend::on(Emu::new(precision)?, settings, precision)
    }
}
