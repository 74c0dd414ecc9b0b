//! The kernels as NVRTC compiles them for a GPU: each family's `.cu` file with `common.cuh`
//! inlined (NVRTC gets one source string), its storage precision chosen by a define, for a
//! given architecture. CI compiles every family for every architecture and precision and
//! checks `ptxas`'s resource report (`tests/cuda_kernels.rs`); a real device will load the
//! same PTX.

use super::toolkit;
use crate::backend::Precision;
use crate::error::{Error, Result};

/// Each family's source, embedded in the binary.
const SOURCES: [(&str, &str); 6] = [
    ("elementwise", include_str!("../../../kernels/elementwise.cu")),
    ("matmul", include_str!("../../../kernels/matmul.cu")),
    ("layer_norm", include_str!("../../../kernels/layer_norm.cu")),
    ("gelu", include_str!("../../../kernels/gelu.cu")),
    ("attention", include_str!("../../../kernels/attention.cu")),
    ("pooling", include_str!("../../../kernels/pooling.cu")),
];

const COMMON: &str = include_str!("../../../kernels/common.cuh");

/// The architectures the kernels are built and checked for: Turing (T4), Ampere (A100),
/// Ada (L4, RTX 40xx), Hopper (H100).
pub const ARCHITECTURES: [u32; 4] = [75, 80, 89, 90];

/// A family's source as one string: `#include "common.cuh"` replaced by the header itself.
pub fn source(family: &str) -> Result<String> {
    let (_, text) = SOURCES
        .iter()
        .find(|(name, _)| *name == family)
        .ok_or_else(|| Error::Internal(format!("no CUDA kernel family `{family}`")))?;
    Ok(text.replacen("#include \"common.cuh\"", COMMON, 1))
}

/// The define that selects the storage precision in common.cuh, if any.
fn storage_define(precision: Precision) -> Result<Option<&'static str>> {
    super::value_bytes(precision)?;
    Ok(match precision {
        Precision::F16 => Some("-DSIMATTR_STORAGE_F16"),
        Precision::Bf16 => Some("-DSIMATTR_STORAGE_BF16"),
        _ => None,
    })
}

/// The kernels a family declares (every line `KERNEL name(`), sorted: what build.rs registers
/// for the harness (it parses the files the same way) and what the PTX must hold.
pub fn kernel_names(family: &str) -> Result<Vec<String>> {
    let mut names: Vec<String> = source(family)?
        .lines()
        .filter_map(|line| line.strip_prefix("KERNEL "))
        .filter_map(|rest| rest.split('(').next())
        .map(|name| name.trim().to_string())
        .collect();
    names.sort();
    Ok(names)
}

/// PTX of `family`'s kernels for `sm_{arch}`, storing `precision`.
pub fn compile(family: &str, arch: u32, precision: Precision) -> Result<String> {
    toolkit::load_nvrtc()?;
    let mut options = vec![format!("--gpu-architecture=compute_{arch}"), "--std=c++17".to_string()];
    if let Some(define) = storage_define(precision)? {
        options.push(define.to_string());
        options.push(format!("--include-path={}", toolkit::include_dir()?.display()));
    }
    let compile_options =
        cudarc::nvrtc::CompileOptions { options, name: Some(format!("{family}.cu")), ..Default::default() };
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(source(family)?, compile_options).map_err(|e| match e {
        cudarc::nvrtc::CompileError::CompileError { log, .. } => Error::Cuda(format!(
            "NVRTC could not compile {family}.cu for sm_{arch} ({}):\n{}",
            precision.name(),
            log.to_string_lossy()
        )),
        other => Error::Cuda(format!("NVRTC failed on {family}.cu for sm_{arch}: {other}")),
    })?;
    Ok(ptx.to_src())
}
