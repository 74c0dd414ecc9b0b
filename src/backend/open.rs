//! Opening the backend a user named at run time. Everything above the backends is generic over
//! `B: Backend`; this is the one place that turns a name, a precision and a device into a
//! concrete backend and hands it to generic code (the CLI's commands, an owned `Session`).

use super::cpu::CpuBackend;
#[cfg(feature = "cuda")]
use super::cuda::CudaBackend;
#[cfg(feature = "cuda-emu")]
use super::cuda::CudaEmuBackend;
use super::reference::CpuReference;
#[cfg(feature = "wgpu")]
use super::wgpu::WgpuBackend;
use super::{Backend, BackendKind, BackendSettings, Precision};
use crate::error::{Error, Result};

/// A backend as the user chose it: checked, not yet opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendChoice {
    pub kind: BackendKind,
    /// The GPU (`--device`): wgpu's adapter number or the CUDA device number.
    pub device: Option<usize>,
    /// The storage precision, checked against what `kind` offers.
    pub precision: Precision,
    pub settings: BackendSettings,
}

impl BackendChoice {
    /// Checks the combination: `device` only for the GPU backends, a precision and a primal
    /// precision the backend offers (`None`: its defaults).
    pub fn new(
        kind: BackendKind,
        device: Option<usize>,
        precision: Option<Precision>,
        primal: Option<Precision>,
        settings: BackendSettings,
    ) -> Result<Self> {
        kind.check_built()?;
        if device.is_some() && !matches!(kind, BackendKind::Wgpu | BackendKind::Cuda) {
            return Err(Error::argument(
                "--device",
                format!("it chooses the GPU of --backend wgpu or cuda, not {}", kind.name()),
            ));
        }
        let precision = kind.check_precision(precision)?;
        let settings = match kind.check_primal(primal)? {
            Some(primal) => settings.with_primal(primal),
            None => settings,
        };
        Ok(BackendChoice { kind, device, precision, settings })
    }

    /// Opens the backend and gives it to `user`.
    pub fn open<U: UseBackend>(&self, user: U) -> Result<U::Output> {
        let (settings, precision) = (self.settings, self.precision);
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        let device = self.device;
        Ok(match (self.kind, precision) {
            (BackendKind::Cpu, Precision::F32) => user.with(CpuBackend::new(settings)?),
            (BackendKind::CpuReference, Precision::F32) => user.with(CpuReference::<f32>::with_settings(settings)),
            (BackendKind::CpuReference, Precision::F64) => user.with(CpuReference::<f64>::with_settings(settings)),
            #[cfg(feature = "wgpu")]
            (BackendKind::Wgpu, precision) => user.with(WgpuBackend::new(settings, device, precision)?),
            #[cfg(feature = "cuda")]
            (BackendKind::Cuda, precision) => user.with(CudaBackend::open(settings, device, precision)?),
            #[cfg(feature = "cuda-emu")]
            (BackendKind::CudaEmu, precision) => user.with(CudaEmuBackend::emulated(settings, precision)?),
            #[allow(unreachable_patterns)]
            (kind, precision) => {
                kind.check_built()?;
                return Err(Error::argument(
                    "--precision",
                    format!("backend {} has no {} implementation", kind.name(), precision.name()),
                ));
            }
        })
    }
}

/// Generic code that runs on whichever backend `BackendChoice::open` opens.
pub trait UseBackend {
    type Output;
    fn with<B: Backend + Send + 'static>(self, backend: B) -> Self::Output;
}
