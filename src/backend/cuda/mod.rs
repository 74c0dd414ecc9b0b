//! The CUDA backend: every op a hand-written CUDA kernel (`kernels/*.cu`, one file per op
//! family, mirroring `shaders/*.wgsl` entry point for entry point). The host code is
//! `super::gpu`'s, shared with wgpu; what is CUDA's own is the launch layer below it (buffers,
//! copies, a launch by family, kernel and grid, synchronisation), which has two
//! implementations:
//! - `emu`: the CPU execution harness (`kernels/emu/`, built by `build.rs`), which runs the
//!   very `.cu` source as C++ on the host: `--backend cuda-emu`, for tests and for checking
//!   kernels on machines without a GPU;
//! - `driver`: cudarc on a real GPU (`--backend cuda`), the kernels compiled by NVRTC for the
//!   device's architecture at first use (`nvrtc.rs`).

#[cfg(feature = "cuda")]
mod driver;
#[cfg(feature = "cuda-emu")]
pub mod emu;
#[cfg(feature = "cuda")]
pub mod nvrtc;
#[cfg(feature = "cuda")]
pub mod toolkit;

#[cfg(feature = "cuda")]
pub use driver::{describe_devices, Cuda, CudaBuffer};
#[cfg(feature = "cuda-emu")]
pub use emu::{Emu, EmuBuffer};

use super::gpu::{kernels, GpuBackend};
use super::{BackendSettings, Precision};
use crate::error::{Error, Result};

#[cfg(feature = "cuda")]
pub type CudaBackend = GpuBackend<Cuda>;
#[cfg(feature = "cuda-emu")]
pub type CudaEmuBackend = GpuBackend<Emu>;
#[cfg(feature = "cuda-emu")]
pub type CudaEmuTensor = super::gpu::GpuTensor<EmuBuffer>;

/// The kernel families, as `kernels/` names their files (the table is `gpu/kernels.rs`).
pub const FAMILIES: [&str; 6] = kernels::NAMES;

/// The block shape a family's kernels are written for: the workgroup size of its WGSL twin,
/// as each `.cu` file's opening comment states it.
pub fn block_shape(family: &str) -> Result<[u32; 3]> {
    Ok(kernels::family(family)?.block)
}

/// Bytes of one stored value, for the storage precisions the kernels are compiled for.
pub fn value_bytes(precision: Precision) -> Result<usize> {
    match precision {
        Precision::F32 => Ok(4),
        Precision::F16 | Precision::Bf16 => Ok(2),
        Precision::F64 => Err(Error::argument("--precision", "the CUDA kernels store f32, f16 or bf16, not f64")),
    }
}

/// Words of the parameter struct handed to every kernel: the largest family `Params` (12
/// words, attention's) fits, and a kernel reads only its own struct's size.
const PARAM_WORDS: usize = 16;

/// The kernels index with 32-bit unsigned integers: the most values one tensor may hold.
const MAX_VALUES: usize = u32::MAX as usize;

/// A launch's parameter struct, padded to `PARAM_WORDS`.
fn param_words(family: &str, entry: &str, params: &[u32]) -> Result<[u32; PARAM_WORDS]> {
    if params.len() > PARAM_WORDS {
        return Err(Error::Internal(format!("{family}.{entry} has {} parameter words", params.len())));
    }
    let mut words = [0u32; PARAM_WORDS];
    words[..params.len()].copy_from_slice(params);
    Ok(words)
}

/// The buffers' device addresses in binding order, the order a kernel takes them in.
fn ordered_addresses<B>(bindings: &[(u32, &B)], address: impl Fn(&B) -> u64) -> Vec<u64> {
    let mut ordered = bindings.to_vec();
    ordered.sort_by_key(|&(binding, _)| binding);
    ordered.into_iter().map(|(_, buffer)| address(buffer)).collect()
}

/// Host values as the bytes of a tensor stored in `precision`.
fn encode(data: &[f32], precision: Precision) -> Vec<u8> {
    match precision {
        Precision::F16 => data.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect(),
        Precision::Bf16 => data.iter().flat_map(|&x| half::bf16::from_f32(x).to_le_bytes()).collect(),
        _ => bytemuck::cast_slice(data).to_vec(),
    }
}

/// A buffer's bytes as f32: 2-byte values in the tensors' 16-bit `precision`, 4-byte as f32.
fn decode(bytes: &[u8], value_bytes: usize, precision: Precision) -> Vec<f32> {
    match (value_bytes, precision) {
        (2, Precision::Bf16) => {
            bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
        }
        (2, _) => bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        _ => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
    }
}

#[cfg(feature = "cuda-emu")]
impl GpuBackend<Emu> {
    /// The CUDA kernels on the CPU execution harness, storing tensors in `precision` (f32, f16
    /// or bf16; arithmetic stays f32).
    pub fn emulated(settings: BackendSettings, precision: Precision) -> Result<Self> {
        GpuBackend::on(Emu::new(precision)?, settings, precision)
    }
}

#[cfg(feature = "cuda")]
impl GpuBackend<Cuda> {
    /// GPU `device` (`--device`; the first when `None`), storing tensors in `precision`, with
    /// its passes sized to the smaller of `--max-memory` and 80% of the device's free memory
    /// when each is planned.
    pub fn open(settings: BackendSettings, device: Option<usize>, precision: Precision) -> Result<Self> {
        GpuBackend::on(Cuda::open(device, precision)?, settings, precision)
    }
}
