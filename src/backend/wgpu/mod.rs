//! The wgpu backend: every op a hand-written WGSL shader (`shaders/`, one file per op family),
//! run through wgpu on whatever adapter the machine has (Vulkan, Metal, DX12; in CI Mesa's
//! lavapipe, a Vulkan driver on the CPU). The host code is `super::gpu`'s, shared with the
//! CUDA backend; this module opens the adapter (`device.rs`) and stores f32 or f16.

mod device;

pub use device::{describe_adapters, Gpu, WgpuBuffer};

use super::gpu::{GpuBackend, GpuTensor};
use super::{BackendSettings, Precision};
use crate::error::{Error, Result};

pub type WgpuBackend = GpuBackend<Gpu>;
pub type WgpuTensor = GpuTensor<WgpuBuffer>;

impl GpuBackend<Gpu> {
    /// The adapter `device` (`--device`; the default adapter when `None`), with tensors
    /// stored in `precision`: f32, or f16 where the adapter offers 16-bit shader floats
    /// (arithmetic stays f32).
    pub fn new(settings: BackendSettings, device: Option<usize>, precision: Precision) -> Result<Self> {
        let half = match precision {
            Precision::F32 => false,
            Precision::F16 => true,
            other => {
                return Err(Error::argument("--precision", format!("wgpu stores f32 or f16, not {}", other.name())))
            }
        };
        let gpu = Gpu::open(device, (settings.max_memory / 2) as u64, half)?;
        GpuBackend::on(gpu, settings, precision)
    }

    /// As `new`, on an adapter that binds at most `binding` f32 values per tensor, and with
    /// embedding tables of more than `table` values kept on the host: tests drive the chunking
    /// under the limits and the host-side tables with it on any adapter.
    pub fn with_caps(settings: BackendSettings, device: Option<usize>, binding: usize, table: usize) -> Result<Self> {
        let mut backend = WgpuBackend::new(settings, device, Precision::F32)?;
        backend.device_mut().cap(binding, table);
        Ok(backend)
    }

    /// The adapter's name, as the driver reports it.
    pub fn adapter_name(&self) -> &str {
        &self.device().info.name
    }
}
