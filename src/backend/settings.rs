//! What every backend is configured with, and the flags that choose it (docs/design.md §3,
//! "Flags every backend shares").

use crate::error::{Error, Result};

/// Which backend runs the ops. Every kind parses whatever was built; opening one whose Cargo
/// feature was left out is an error that says how to build it (`check_built`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// The fast CPU backend (GEMM library, fused passes, rayon threads)
    Cpu,
    /// The CPU reference: plain loops, f64 sums, the oracle every backend is tested against
    #[value(name = "cpu-ref", alias = "cpu-reference")]
    CpuReference,
    /// WGSL shaders through wgpu on a GPU (Vulkan, Metal, DX12), the adapter `--device` names
    Wgpu,
    /// The CUDA kernels on an NVIDIA GPU, the one `--device` names
    Cuda,
    /// The CUDA kernels on the CPU execution harness (slow: for checking kernels without a GPU)
    CudaEmu,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::CpuReference => "cpu-ref",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
            BackendKind::CudaEmu => "cuda-emu",
        }
    }

    /// The Cargo feature that builds this backend (`None`: always built).
    pub fn feature(self) -> Option<&'static str> {
        match self {
            BackendKind::Cpu | BackendKind::CpuReference => None,
            BackendKind::Wgpu => Some("wgpu"),
            BackendKind::Cuda => Some("cuda"),
            BackendKind::CudaEmu => Some("cuda-emu"),
        }
    }

    /// Whether this binary was built with the backend.
    pub fn is_built(self) -> bool {
        match self {
            BackendKind::Cpu | BackendKind::CpuReference => true,
            BackendKind::Wgpu => cfg!(feature = "wgpu"),
            BackendKind::Cuda => cfg!(feature = "cuda"),
            BackendKind::CudaEmu => cfg!(feature = "cuda-emu"),
        }
    }

    /// An error naming the feature to build with, when this binary lacks the backend.
    pub fn check_built(self) -> Result<()> {
        match self.feature() {
            Some(feature) if !self.is_built() => Err(Error::argument(
                "--backend",
                format!(
                    "{} is not in this build of simattr: build with `cargo build --release --features {feature}`{}",
                    self.name(),
                    if feature == "cuda-emu" { "" } else { " (on by default; left out by --no-default-features)" }
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Storage precisions this backend offers, the default first.
    pub fn precisions(self) -> &'static [Precision] {
        match self {
            BackendKind::Cpu => &[Precision::F32],
            BackendKind::CpuReference => &[Precision::F32, Precision::F64],
            BackendKind::Wgpu => &[Precision::F32, Precision::F16],
            BackendKind::Cuda | BackendKind::CudaEmu => &[Precision::F32, Precision::F16, Precision::Bf16],
        }
    }

    /// `precision`, or the backend's default; an unsupported pair is an error naming what the
    /// backend offers.
    pub fn check_precision(self, precision: Option<Precision>) -> Result<Precision> {
        let offered = self.precisions();
        match precision {
            None => Ok(offered[0]),
            Some(p) if offered.contains(&p) => Ok(p),
            Some(p) => {
                let names: Vec<&str> = offered.iter().map(|p| p.name()).collect();
                Err(Error::argument(
                    "--precision",
                    format!("backend {} does not offer {}; it offers {}", self.name(), p.name(), names.join(", ")),
                ))
            }
        }
    }
}

impl BackendKind {
    /// Primal precisions this backend lets the user choose, the default first (none: the
    /// primal is stored like everything else, in `--precision`).
    pub fn primal_precisions(self) -> &'static [Precision] {
        match self {
            BackendKind::Cpu => &[Precision::F64, Precision::F32],
            BackendKind::CpuReference | BackendKind::Wgpu | BackendKind::Cuda | BackendKind::CudaEmu => &[],
        }
    }

    /// The `--primal` precision checked against what this backend offers.
    pub fn check_primal(self, primal: Option<Precision>) -> Result<Option<Precision>> {
        let Some(wanted) = primal else { return Ok(None) };
        let offered = self.primal_precisions();
        let names: Vec<&str> = offered.iter().map(|p| p.name()).collect();
        match offered.iter().copied().find(|&p| p == wanted) {
            Some(p) => Ok(Some(p)),
            None if offered.is_empty() => Err(Error::argument(
                "--primal",
                format!("backend {} stores its primal in --precision; --primal is for cpu", self.name()),
            )),
            None => Err(Error::argument(
                "--primal",
                format!("`{}`: backend {} offers {}", wanted.name(), self.name(), names.join(", ")),
            )),
        }
    }
}

impl std::str::FromStr for BackendKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(BackendKind::Cpu),
            "cpu-ref" | "cpu-reference" => Ok(BackendKind::CpuReference),
            "wgpu" => Ok(BackendKind::Wgpu),
            "cuda" => Ok(BackendKind::Cuda),
            "cuda-emu" => Ok(BackendKind::CudaEmu),
            other => {
                Err(Error::argument("--backend", format!("`{other}` (available: cpu, cpu-ref, wgpu, cuda, cuda-emu)")))
            }
        }
    }
}

/// Storage precision of a backend's tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Precision {
    F64,
    F32,
    Bf16,
    F16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F64 => "f64",
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }

    /// Bytes one stored scalar takes.
    pub fn bytes(self) -> usize {
        match self {
            Precision::F64 => 8,
            Precision::F32 => 4,
            Precision::Bf16 | Precision::F16 => 2,
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f64" => Ok(Precision::F64),
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            "f16" => Ok(Precision::F16),
            other => Err(Error::argument("--precision", format!("`{other}` (expected f64, f32, bf16 or f16)"))),
        }
    }
}

/// Settings shared by every backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendSettings {
    /// Worker threads (CPU backends).
    pub threads: usize,
    /// Bytes the backend's tensors may occupy at once.
    pub max_memory: usize,
    /// Precision of the primal states where a backend offers a choice (`cpu`: f64, the
    /// default, or f32); `None` for the backend's default.
    pub primal: Option<Precision>,
}

impl BackendSettings {
    /// 2 GiB: comfortable on an 8 GB laptop, and large enough that the GEMMs of a typical
    /// explanation (tens of thousands of tangent rows) run in one pass.
    pub const DEFAULT_MAX_MEMORY: usize = 2 << 30;

    pub fn default_threads() -> usize {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    }

    /// Checked settings; `threads` and `max_memory` default when `None`.
    pub fn new(threads: Option<usize>, max_memory: Option<usize>) -> Result<Self> {
        let threads = threads.unwrap_or_else(Self::default_threads);
        if threads == 0 {
            return Err(Error::argument("--threads", "must be at least 1"));
        }
        if threads > 1024 {
            return Err(Error::argument("--threads", format!("{threads} is more than the 1024 supported")));
        }
        let max_memory = max_memory.unwrap_or(Self::DEFAULT_MAX_MEMORY);
        if max_memory == 0 {
            return Err(Error::argument("--max-memory", "must be more than 0 bytes"));
        }
        Ok(BackendSettings { threads, max_memory, primal: None })
    }
}

impl BackendSettings {
    /// These settings with the primal kept in `primal`.
    pub fn with_primal(self, primal: Precision) -> Self {
        BackendSettings { primal: Some(primal), ..self }
    }
}

impl Default for BackendSettings {
    fn default() -> Self {
        BackendSettings { threads: Self::default_threads(), max_memory: Self::DEFAULT_MAX_MEMORY, primal: None }
    }
}

/// A byte count such as `512M`, `2G`, `1.5GiB` or `1000000` (K/M/G/T are powers of 1024).
pub fn parse_memory(text: &str) -> Result<usize> {
    let bad = || Error::argument("--max-memory", format!("`{text}` is not a size (examples: 512M, 2G, 1.5GiB)"));
    let trimmed = text.trim();
    let split = trimmed.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let value: f64 = number.parse().map_err(|_| bad())?;
    let unit = unit.trim().to_ascii_lowercase();
    let scale: f64 = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let bytes = value * scale;
    if !bytes.is_finite() || bytes >= usize::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_parse() {
        assert_eq!(parse_memory("1000").unwrap(), 1000);
        assert_eq!(parse_memory("512M").unwrap(), 512 << 20);
        assert_eq!(parse_memory("2G").unwrap(), 2 << 30);
        assert_eq!(parse_memory("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_memory("64kb").unwrap(), 64 << 10);
        for bad in ["", "G", "2X", "-1G", "1e99T"] {
            let err = parse_memory(bad).unwrap_err().to_string();
            assert!(err.contains("--max-memory"), "{bad}: {err}");
        }
    }

    #[test]
    fn unsupported_precision_names_what_is_offered() {
        let err = BackendKind::Cpu.check_precision(Some(Precision::F64)).unwrap_err().to_string();
        assert!(err.contains("cpu") && err.contains("f64") && err.contains("offers f32"), "{err}");
        assert_eq!(BackendKind::CpuReference.check_precision(Some(Precision::F64)).unwrap(), Precision::F64);
        assert_eq!(BackendKind::Cpu.check_precision(None).unwrap(), Precision::F32);
    }

    #[test]
    fn primal_precision_is_checked_per_backend() {
        assert_eq!(BackendKind::Cpu.check_primal(None).unwrap(), None);
        assert_eq!(BackendKind::Cpu.check_primal(Some(Precision::F32)).unwrap(), Some(Precision::F32));
        assert_eq!(BackendKind::Cpu.check_primal(Some(Precision::F64)).unwrap(), Some(Precision::F64));
        let err = BackendKind::Cpu.check_primal(Some(Precision::Bf16)).unwrap_err().to_string();
        assert!(err.contains("--primal") && err.contains("f64, f32"), "{err}");
        let err = BackendKind::CpuReference.check_primal(Some(Precision::F64)).unwrap_err().to_string();
        assert!(err.contains("--primal") && err.contains("cpu-ref"), "{err}");
    }

    #[test]
    fn zero_threads_and_memory_are_errors() {
        assert!(BackendSettings::new(Some(0), None).unwrap_err().to_string().contains("--threads"));
        assert!(BackendSettings::new(None, Some(0)).unwrap_err().to_string().contains("--max-memory"));
    }
}
