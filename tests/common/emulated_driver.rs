//! The emulated CUDA driver (`kernels/emu/driver`): a `libcuda.so.1` that runs the kernels on
//! the CPU harness, so that `--backend cuda` itself is tested where there is no GPU.

use std::ffi::{CStr, CString};
use std::path::PathBuf;
use std::sync::OnceLock;

/// `target/release/libsimattr_emu_driver.so`, beside the test binaries' `deps/` folder.
pub fn library() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps/<test>");
    let library = profile.join("libsimattr_emu_driver.so");
    assert!(
        library.exists(),
        "{} is missing: build it with `cargo build --release -p simattr-emu-driver` (scripts/test.sh does)",
        library.display()
    );
    library
}

/// Where the machine has no CUDA driver, opens the emulated one in this process, so that
/// cudarc and NVRTC, which open the driver by name, find it already loaded (its soname is
/// `libcuda.so.1`). Where there is a real driver, leaves it to be used. Returns whether the
/// driver in use is the emulated one.
pub fn open_in_process() -> bool {
    static EMULATED: OnceLock<bool> = OnceLock::new();
    *EMULATED.get_or_init(|| {
        // SAFETY: only probes whether a driver library can be opened.
        if unsafe { cudarc::driver::sys::is_culib_present() } {
            return false;
        }
        let path = CString::new(library().to_str().expect("a UTF-8 path")).unwrap();
        // SAFETY: a valid C string; the library stays loaded for the process's life.
        let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        if handle.is_null() {
            // SAFETY: dlerror describes the failure just seen.
            let why = unsafe { CStr::from_ptr(libc::dlerror()) }.to_string_lossy().into_owned();
            panic!("cannot open the emulated CUDA driver: {why}");
        }
        true
    })
}
