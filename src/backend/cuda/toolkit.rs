//! The parts of the CUDA toolkit this project uses, as NVIDIA publishes them on PyPI and
//! `scripts/fetch_cuda_tools.sh` installs them into the cache (no CUDA installation needed):
//! NVRTC (`nvidia-cuda-nvrtc-cu12`), the f16/bf16 headers (`nvidia-cuda-runtime-cu12`) and
//! `ptxas` (`nvidia-cuda-nvcc-cu12`, for resource reports).

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::model::cache::cache_dir;

const FETCH: &str = "scripts/fetch_cuda_tools.sh";

/// `$SIMATTR_CUDA_TOOLS`, else `cuda-tools` in the cache: the folder the wheels were
/// installed into (`pip install --target`).
pub fn tools_dir() -> PathBuf {
    match std::env::var_os("SIMATTR_CUDA_TOOLS").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => cache_dir().join("cuda-tools"),
    }
}

fn tool(parts: &[&str], what: &str) -> Result<PathBuf> {
    let path = parts.iter().fold(tools_dir().join("nvidia"), |path, part| path.join(part));
    if path.exists() {
        return Ok(path);
    }
    Err(Error::Cuda(format!("{what} is not at {}: run {FETCH} (it installs it from PyPI)", path.display())))
}

/// The include folder with `cuda_fp16.h` and `cuda_bf16.h` (NVRTC does not carry them).
pub fn include_dir() -> Result<PathBuf> {
    tool(&["cuda_runtime", "include"], "the CUDA runtime headers (cuda_fp16.h)")
}

/// `ptxas`, which assembles PTX and reports registers, shared memory and spills.
pub fn ptxas() -> Result<PathBuf> {
    tool(&["cuda_nvcc", "bin", "ptxas"], "ptxas")
}

/// Loads NVRTC from the tools folder (unless the system's loader already finds it), so that
/// cudarc, which opens `libnvrtc.so.12` by name, finds it loaded. cudarc panics where the
/// library is missing; this turns that into an error saying what to install.
pub fn load_nvrtc() -> Result<()> {
    static LOADED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let library = tool(&["cuda_nvrtc", "lib", "libnvrtc.so.12"], "NVRTC (libnvrtc.so.12)");
            if let Ok(path) = &library {
                let name = std::ffi::CString::new(path.to_string_lossy().as_bytes()).map_err(|e| e.to_string())?;
                // SAFETY: a valid C string; the library stays loaded for the process's life.
                unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
            }
            // SAFETY: only probes whether the library can be opened.
            if unsafe { cudarc::nvrtc::sys::is_culib_present() } {
                return Ok(());
            }
            Err(match library {
                Ok(path) => format!("NVRTC at {} could not be loaded", path.display()),
                Err(e) => e.to_string(),
            })
        })
        .clone()
        .map_err(Error::Cuda)
}
