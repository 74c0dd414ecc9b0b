//! What only the GPU backends have, beside the shared suite (`tests/backends`), which checks
//! what they compute: adapter and device choice, 16-bit storage, the kernels as NVRTC and
//! `ptxas` build them, `--backend cuda` on the emulated driver. Each module is built with the
//! feature of its backend; `scripts/test.sh` turns all of them on.

#[path = "../common/mod.rs"]
mod common;

#[cfg(feature = "cuda")]
mod cuda;
#[cfg(feature = "cuda")]
mod cuda_driver;
#[cfg(feature = "cuda-emu")]
mod cuda_emu;
#[cfg(feature = "cuda")]
mod cuda_kernels;
#[cfg(feature = "wgpu")]
mod wgpu;
