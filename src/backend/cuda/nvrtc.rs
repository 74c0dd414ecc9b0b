//! The kernels as NVRTC compiles them for a GPU: each family's `.cu` file with `common.cuh`
//! inlined (NVRTC gets one source string), its storage precision chosen by a define.
//!
//! A device gets machine code (a cubin) for its own architecture wherever this NVRTC knows
//! that architecture, and PTX only for a newer one. The reason is the driver: PTX from NVRTC
//! 12.9 declares PTX ISA 8.8, which only a 12.9 or newer driver will JIT, while a cubin loads
//! on every CUDA 12 driver (minor-version compatibility) and on CUDA 13's. PTX is kept for a
//! GPU newer than this NVRTC, whose driver is newer too and JITs it forward.
//!
//! CI compiles every family for every architecture and precision, to PTX checked by `ptxas`'s
//! resource report and to cubins (`tests/cuda_kernels.rs`).

use std::collections::HashMap;
use std::ffi::{c_char, CStr, CString};
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::nvrtc::{result, sys};

use super::toolkit;
use crate::backend::Precision;
use crate::error::{Error, Result};

const COMMON: &str = include_str!("../../../kernels/common.cuh");

/// The architectures the kernels are built and checked for: Turing (T4), Ampere (A100),
/// Ada (L4, RTX 40xx), Hopper (H100).
pub const ARCHITECTURES: [u32; 4] = [75, 80, 89, 90];

/// A family's source as one string: `#include "common.cuh"` replaced by the header itself.
pub fn source(family: &str) -> Result<String> {
    let text = crate::backend::gpu::kernels::family(family)?.cuda;
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

/// The symbol common.cuh defines in every module compiled for `precision`, so a loaded
/// module names what it stores (the driver emulation, `kernels/emu/libcuda.rs`, reads it).
pub fn storage_symbol(precision: Precision) -> Result<&'static str> {
    super::value_bytes(precision)?;
    Ok(match precision {
        Precision::F16 => "simattr_storage_f16",
        Precision::Bf16 => "simattr_storage_bf16",
        _ => "simattr_storage_f32",
    })
}

/// The kernels a family declares (every line `KERNEL name(`), sorted: what build.rs registers
/// for the harness (it parses the files the same way) and what a compiled module must hold.
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

/// What a module is compiled to for one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// Machine code for `sm_{0}`: loads on any driver of this NVRTC's major version or newer.
    Cubin(u32),
    /// PTX for `compute_{0}`, which the driver compiles for the device when it loads it.
    Ptx(u32),
}

impl Target {
    /// What to build for a device of compute capability `device` (80 for sm_80): its own
    /// cubin where this NVRTC knows the architecture, else PTX for the newest architecture
    /// it knows below the device's.
    pub fn for_device(device: u32) -> Result<Target> {
        let known = supported_architectures()?;
        if known.contains(&device) {
            return Ok(Target::Cubin(device));
        }
        known.iter().copied().filter(|&arch| arch < device).max().map(Target::Ptx).ok_or_else(|| {
            Error::Cuda(format!(
                "this GPU (sm_{device}) is older than every architecture NVRTC compiles for ({})",
                describe_architectures(&known)
            ))
        })
    }

    fn option(self) -> String {
        match self {
            Target::Cubin(arch) => format!("--gpu-architecture=sm_{arch}"),
            Target::Ptx(arch) => format!("--gpu-architecture=compute_{arch}"),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Cubin(arch) => write!(f, "sm_{arch}"),
            Target::Ptx(arch) => write!(f, "compute_{arch} PTX"),
        }
    }
}

fn describe_architectures(archs: &[u32]) -> String {
    archs.iter().map(|arch| format!("sm_{arch}")).collect::<Vec<_>>().join(", ")
}

/// The architectures this NVRTC compiles for (`nvrtcGetSupportedArchs`), ascending.
pub fn supported_architectures() -> Result<Vec<u32>> {
    toolkit::load_nvrtc()?;
    let failed = |e: sys::nvrtcResult| Error::Cuda(format!("asking NVRTC for its architectures: {e:?}"));
    let mut count = 0;
    // SAFETY: NVRTC is loaded; both calls write within what they are given.
    unsafe { sys::nvrtcGetNumSupportedArchs(&mut count) }.result().map_err(|e| failed(e.0))?;
    let mut archs = vec![0; count.max(0) as usize];
    unsafe { sys::nvrtcGetSupportedArchs(archs.as_mut_ptr()) }.result().map_err(|e| failed(e.0))?;
    let mut archs: Vec<u32> = archs.into_iter().filter_map(|arch| u32::try_from(arch).ok()).collect();
    archs.sort_unstable();
    Ok(archs)
}

/// An NVRTC program, destroyed when dropped.
struct Program {
    handle: sys::nvrtcProgram,
    // NVRTC may keep pointers into the source and name until the program is destroyed.
    _source: CString,
    _name: CString,
}

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: created by `create_program` and destroyed only here.
        let _ = unsafe { result::destroy_program(self.handle) };
    }
}

/// Bytes an NVRTC getter hands back, through its size query.
fn read_output(
    program: &Program,
    size: unsafe fn(sys::nvrtcProgram, *mut usize) -> sys::nvrtcResult,
    get: unsafe fn(sys::nvrtcProgram, *mut c_char) -> sys::nvrtcResult,
) -> std::result::Result<Vec<u8>, sys::nvrtcResult> {
    let mut len = 0usize;
    // SAFETY: a compiled program; `get` writes exactly the `len` bytes `size` reported.
    unsafe { size(program.handle, &mut len) }.result().map_err(|e| e.0)?;
    let mut bytes = vec![0u8; len];
    unsafe { get(program.handle, bytes.as_mut_ptr().cast()) }.result().map_err(|e| e.0)?;
    Ok(bytes)
}

/// `family`'s module for `target`, storing `precision`: a cubin, or NUL-terminated PTX, as
/// `cuModuleLoadData` takes either.
pub fn compile(family: &str, target: Target, precision: Precision) -> Result<Vec<u8>> {
    toolkit::load_nvrtc()?;
    let mut options = vec![target.option(), "--std=c++17".to_string()];
    if let Some(define) = storage_define(precision)? {
        options.push(define.to_string());
        options.push(format!("--include-path={}", toolkit::include_dir()?.display()));
    }
    let source = CString::new(source(family)?).map_err(|_| Error::Internal(format!("{family}.cu holds a NUL")))?;
    let name = CString::new(format!("{family}.cu")).map_err(|_| Error::Internal("a family name holds a NUL".into()))?;
    let failed = |what: &str, e: sys::nvrtcResult| {
        Error::Cuda(format!("NVRTC failed on {family}.cu for {target} ({}): {what}: {e:?}", precision.name()))
    };
    let handle = result::create_program(&source, Some(&name)).map_err(|e| failed("creating the program", e.0))?;
    let program = Program { handle, _source: source, _name: name };
    // SAFETY: a program just created and not destroyed.
    if let Err(e) = unsafe { result::compile_program(program.handle, &options) } {
        let log = unsafe { result::get_program_log(program.handle) }
            .map(|log| {
                // SAFETY: NVRTC's log is NUL-terminated.
                unsafe { CStr::from_ptr(log.as_ptr()) }.to_string_lossy().into_owned()
            })
            .unwrap_or_default();
        return Err(Error::Cuda(format!(
            "NVRTC could not compile {family}.cu for {target} ({}): {:?}\n{log}",
            precision.name(),
            e.0
        )));
    }
    match target {
        Target::Cubin(_) => read_output(&program, sys::nvrtcGetCUBINSize, sys::nvrtcGetCUBIN),
        Target::Ptx(_) => read_output(&program, sys::nvrtcGetPTXSize, sys::nvrtcGetPTX),
    }
    .map_err(|e| failed("reading the output", e))
}

/// `compile`, once per process for each family, target and precision, however many times a
/// device is opened (NVRTC takes a few hundred milliseconds per family).
pub fn compile_once(family: &'static str, target: Target, precision: Precision) -> Result<Arc<Vec<u8>>> {
    type Images = HashMap<(&'static str, Target, Precision), Arc<Vec<u8>>>;
    static IMAGES: OnceLock<Mutex<Images>> = OnceLock::new();
    let mut images = IMAGES.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(image) = images.get(&(family, target, precision)) {
        return Ok(image.clone());
    }
    let image = Arc::new(compile(family, target, precision)?);
    images.insert((family, target, precision), image.clone());
    Ok(image)
}

/// PTX of `family`'s kernels for `compute_{arch}`, storing `precision`, as text (for `ptxas`).
pub fn compile_ptx(family: &str, arch: u32, precision: Precision) -> Result<String> {
    let mut ptx = compile(family, Target::Ptx(arch), precision)?;
    while ptx.last() == Some(&0) {
        ptx.pop();
    }
    String::from_utf8(ptx).map_err(|_| Error::Cuda(format!("NVRTC's PTX for {family}.cu is not text")))
}
