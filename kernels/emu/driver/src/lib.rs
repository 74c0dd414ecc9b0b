//! A CUDA driver on the CPU execution harness: a `libcuda.so` that implements the part of the
//! driver API `--backend cuda` calls (`src/backend/cuda/driver.rs`, through cudarc), so that
//! the real backend runs end to end on a machine without a GPU: the shared suite
//! (`tests/backends`, `cuda_f32`) opens it in the test process, `tests/cuda_driver.rs` puts it on
//! `LD_LIBRARY_PATH` in front of the CLI.
//!
//! It is strict where a GPU is: the context must be current on the calling thread, every copy,
//! fill and kernel argument must lie in a live allocation, device memory is capped, a module
//! must be a cubin for this device's architecture (or PTX for one no newer), a launch must fit
//! the block and grid limits. A module's kernels run on the harness, chosen by reading the
//! image: the family from its kernels' names, the storage precision from the symbol
//! `common.cuh` defines. Copies and launches run at once, so stream order holds trivially.
//!
//! Settings (environment): `SIMATTR_EMU_DRIVER_MEMORY` device bytes (default 8 GiB, allocated
//! only as used), `SIMATTR_EMU_DRIVER_ARCH` compute capability (default 80),
//! `SIMATTR_EMU_DRIVER_DEVICES` (default 1), `SIMATTR_EMU_DRIVER_POOLS` 0 for a device without
//! memory pools (no stream-ordered allocator), `SIMATTR_EMU_DRIVER_REPORT` a file that gets, at
//! exit, a JSON summary: peak and live bytes, allocations, launches and the modules loaded.
//!
//! A test double, not a driver: `cargo build --release -p simattr-emu-driver` (scripts/test.sh
//! does) writes `target/release/libsimattr_emu_driver.so`, whose soname is `libcuda.so.1`.

// Each exported function's safety contract is the CUDA driver API's: the pointers it is given
// are valid as NVIDIA's documentation of that function requires.
#![allow(clippy::missing_safety_doc)]

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::{Mutex, MutexGuard, OnceLock};

use cudarc::driver::sys::{
    CUcontext, CUdevice, CUdevice_attribute, CUdeviceptr, CUfunction, CUmodule, CUresult, CUstream,
};
use simattr::backend::cuda::{emu, nvrtc, FAMILIES};
use simattr::backend::Precision;

const DEVICE_NAME: &CStr = c"simattr emulated GPU (CUDA kernels on the CPU harness)";
/// Allocations are aligned as cudaMalloc's are.
const ALIGN: usize = 256;

struct Settings {
    memory: usize,
    arch: u32,
    devices: i32,
    /// Whether the device has memory pools (the stream-ordered allocator).
    pools: bool,
    report: Option<String>,
}

fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        let number = |name: &str, default: u64| {
            std::env::var(name).ok().and_then(|value| value.trim().parse::<u64>().ok()).unwrap_or(default)
        };
        Settings {
            memory: number("SIMATTR_EMU_DRIVER_MEMORY", 8 << 30) as usize,
            arch: number("SIMATTR_EMU_DRIVER_ARCH", 80) as u32,
            devices: number("SIMATTR_EMU_DRIVER_DEVICES", 1) as i32,
            pools: number("SIMATTR_EMU_DRIVER_POOLS", 1) != 0,
            report: std::env::var("SIMATTR_EMU_DRIVER_REPORT").ok().filter(|path| !path.is_empty()),
        }
    })
}

/// A loaded module: which harness module its kernels run from.
struct Module {
    family: &'static str,
    storage: Precision,
}

/// A kernel looked up in a module.
struct Function {
    module: usize,
    harness_module: String,
    kernel: String,
    parameters: usize,
}

#[derive(Default)]
struct State {
    initialised: bool,
    /// Live allocations: address → layout.
    allocations: BTreeMap<u64, Layout>,
    live_bytes: usize,
    peak_bytes: usize,
    allocations_made: usize,
    /// Of them, from the stream-ordered allocator.
    pooled_allocations: usize,
    launches: usize,
    unloaded: usize,
    modules: HashMap<usize, Module>,
    functions: HashMap<usize, Function>,
    loaded: Vec<serde_json::Value>,
}

impl State {
    /// Whether `[address, address + bytes)` lies within one live allocation.
    fn holds(&self, address: u64, bytes: usize) -> bool {
        self.allocations.range(..=address).next_back().is_some_and(|(&start, layout)| {
            address.checked_add(bytes as u64).is_some_and(|end| end <= start + layout.size() as u64)
        })
    }
}

fn state() -> MutexGuard<'static, State> {
    static STATE: OnceLock<Mutex<State>> = OnceLock::new();
    STATE.get_or_init(Default::default).lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

thread_local! {
    /// Whether the primary context is current on this thread (a GPU context is per thread).
    static CURRENT: Cell<bool> = const { Cell::new(false) };
}

/// The primary context's handle: any non-null address.
static CONTEXT: u8 = 0;

fn context() -> CUcontext {
    (&CONTEXT as *const u8).cast_mut().cast()
}

/// The state, once the driver is initialised and the context is current on this thread.
fn ready() -> Result<MutexGuard<'static, State>, CUresult> {
    let state = state();
    if !state.initialised {
        return Err(CUresult::CUDA_ERROR_NOT_INITIALIZED);
    }
    if !CURRENT.with(Cell::get) {
        return Err(CUresult::CUDA_ERROR_INVALID_CONTEXT);
    }
    Ok(state)
}

fn status(result: Result<(), CUresult>) -> CUresult {
    result.err().unwrap_or(CUresult::CUDA_SUCCESS)
}

fn valid_device(device: CUdevice) -> Result<(), CUresult> {
    if (0..settings().devices).contains(&device) {
        Ok(())
    } else {
        Err(CUresult::CUDA_ERROR_INVALID_DEVICE)
    }
}

extern "C" fn write_report() {
    let Some(path) = &settings().report else { return };
    let state = state();
    let report = serde_json::json!({
        "device_memory": settings().memory,
        "arch": settings().arch,
        "peak_bytes": state.peak_bytes,
        "live_bytes": state.live_bytes,
        "allocations": state.allocations_made,
        "pooled_allocations": state.pooled_allocations,
        "launches": state.launches,
        "unloaded_modules": state.unloaded,
        "modules": state.loaded,
    });
    let _ = std::fs::write(path, report.to_string());
}

#[no_mangle]
pub extern "C" fn cuInit(flags: c_uint) -> CUresult {
    if flags != 0 {
        return CUresult::CUDA_ERROR_INVALID_VALUE;
    }
    let mut state = state();
    if !state.initialised {
        state.initialised = true;
        // SAFETY: registers a plain function once.
        unsafe { libc::atexit(write_report) };
    }
    CUresult::CUDA_SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetCount(count: *mut c_int) -> CUresult {
    if !state().initialised {
        return CUresult::CUDA_ERROR_NOT_INITIALIZED;
    }
    *count = settings().devices;
    CUresult::CUDA_SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGet(device: *mut CUdevice, ordinal: c_int) -> CUresult {
    status(valid_device(ordinal).map(|()| *device = ordinal))
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetName(name: *mut c_char, len: c_int, device: CUdevice) -> CUresult {
    if let Err(e) = valid_device(device) {
        return e;
    }
    let bytes = DEVICE_NAME.to_bytes();
    let n = bytes.len().min((len.max(1) - 1) as usize);
    std::ptr::copy_nonoverlapping(bytes.as_ptr().cast(), name, n);
    *name.add(n) = 0;
    CUresult::CUDA_SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetAttribute(
    value: *mut c_int,
    attribute: CUdevice_attribute,
    device: CUdevice,
) -> CUresult {
    if let Err(e) = valid_device(device) {
        return e;
    }
    let arch = settings().arch as c_int;
    *value = match attribute {
        CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR => arch / 10,
        CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR => arch % 10,
        CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK => 1024,
        CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED => settings().pools as c_int,
        _ => return CUresult::CUDA_ERROR_INVALID_VALUE,
    };
    CUresult::CUDA_SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceTotalMem_v2(bytes: *mut usize, device: CUdevice) -> CUresult {
    status(valid_device(device).map(|()| *bytes = settings().memory))
}

#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxRetain(context_out: *mut CUcontext, device: CUdevice) -> CUresult {
    if !state().initialised {
        return CUresult::CUDA_ERROR_NOT_INITIALIZED;
    }
    status(valid_device(device).map(|()| *context_out = context()))
}

#[no_mangle]
pub extern "C" fn cuCtxSetCurrent(ctx: CUcontext) -> CUresult {
    if ctx != context() && !ctx.is_null() {
        return CUresult::CUDA_ERROR_INVALID_CONTEXT;
    }
    CURRENT.with(|current| current.set(!ctx.is_null()));
    CUresult::CUDA_SUCCESS
}

#[no_mangle]
pub extern "C" fn cuCtxSynchronize() -> CUresult {
    status(ready().map(drop))
}

#[no_mangle]
pub unsafe extern "C" fn cuMemGetInfo_v2(free: *mut usize, total: *mut usize) -> CUresult {
    match ready() {
        Ok(state) => {
            *free = settings().memory - state.live_bytes;
            *total = settings().memory;
            CUresult::CUDA_SUCCESS
        }
        Err(e) => e,
    }
}

unsafe fn allocate(pointer: *mut CUdeviceptr, bytes: usize, pooled: bool) -> CUresult {
    let mut state = match ready() {
        Ok(state) => state,
        Err(e) => return e,
    };
    if pooled && !settings().pools {
        return CUresult::CUDA_ERROR_NOT_SUPPORTED;
    }
    if bytes == 0 {
        return CUresult::CUDA_ERROR_INVALID_VALUE;
    }
    let Ok(layout) = Layout::from_size_align(bytes.next_multiple_of(ALIGN), ALIGN) else {
        return CUresult::CUDA_ERROR_OUT_OF_MEMORY;
    };
    if state.live_bytes + layout.size() > settings().memory {
        return CUresult::CUDA_ERROR_OUT_OF_MEMORY;
    }
    // Zeroed, though a GPU's is not: a kernel reading what nobody wrote is caught by the
    // results, not by the harness, either way.
    let data = alloc_zeroed(layout);
    if data.is_null() {
        return CUresult::CUDA_ERROR_OUT_OF_MEMORY;
    }
    state.allocations.insert(data as u64, layout);
    state.live_bytes += layout.size();
    state.peak_bytes = state.peak_bytes.max(state.live_bytes);
    state.allocations_made += 1;
    state.pooled_allocations += pooled as usize;
    *pointer = data as u64;
    CUresult::CUDA_SUCCESS
}

unsafe fn free(pointer: CUdeviceptr, pooled: bool) -> CUresult {
    let mut state = match ready() {
        Ok(state) => state,
        Err(e) => return e,
    };
    if pooled && !settings().pools {
        return CUresult::CUDA_ERROR_NOT_SUPPORTED;
    }
    match state.allocations.remove(&pointer) {
        Some(layout) => {
            state.live_bytes -= layout.size();
            dealloc(pointer as *mut u8, layout);
            CUresult::CUDA_SUCCESS
        }
        None => CUresult::CUDA_ERROR_INVALID_VALUE,
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAllocAsync(pointer: *mut CUdeviceptr, bytes: usize, _stream: CUstream) -> CUresult {
    allocate(pointer, bytes, true)
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAlloc_v2(pointer: *mut CUdeviceptr, bytes: usize) -> CUresult {
    allocate(pointer, bytes, false)
}

#[no_mangle]
pub unsafe extern "C" fn cuMemFreeAsync(pointer: CUdeviceptr, _stream: CUstream) -> CUresult {
    free(pointer, true)
}

#[no_mangle]
pub unsafe extern "C" fn cuMemFree_v2(pointer: CUdeviceptr) -> CUresult {
    free(pointer, false)
}

/// Checks that `[device, device + bytes)` is live device memory.
fn in_device_memory(device: CUdeviceptr, bytes: usize) -> Result<(), CUresult> {
    if ready()?.holds(device, bytes) {
        Ok(())
    } else {
        Err(CUresult::CUDA_ERROR_INVALID_VALUE)
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuMemcpyHtoDAsync_v2(
    device: CUdeviceptr,
    host: *const c_void,
    bytes: usize,
    _stream: CUstream,
) -> CUresult {
    status(
        in_device_memory(device, bytes)
            .map(|()| std::ptr::copy_nonoverlapping(host.cast::<u8>(), device as *mut u8, bytes)),
    )
}

#[no_mangle]
pub unsafe extern "C" fn cuMemcpyDtoH_v2(host: *mut c_void, device: CUdeviceptr, bytes: usize) -> CUresult {
    status(
        in_device_memory(device, bytes)
            .map(|()| std::ptr::copy_nonoverlapping(device as *const u8, host.cast::<u8>(), bytes)),
    )
}

#[no_mangle]
pub unsafe extern "C" fn cuMemsetD8Async(device: CUdeviceptr, value: u8, bytes: usize, _stream: CUstream) -> CUresult {
    status(in_device_memory(device, bytes).map(|()| std::ptr::write_bytes(device as *mut u8, value, bytes)))
}

/// The names a module image declares kernels under, the architecture it is for, and whether
/// it is a cubin (else PTX); `None` for neither.
unsafe fn read_image(image: *const u8) -> Option<(Vec<u8>, bool, u32)> {
    let header = std::slice::from_raw_parts(image, 64);
    if header.starts_with(b"\x7fELF") {
        let word = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().unwrap()) as usize;
        let half = |at: usize| u16::from_le_bytes([header[at], header[at + 1]]) as usize;
        let flags = u32::from_le_bytes(header[0x30..0x34].try_into().unwrap());
        // The CUDA ELF ABI moved the architecture from bits 0–7 to 8–15 with version 8 (sm_100).
        let arch = if header[8] >= 8 { (flags >> 8) & 0xff } else { flags & 0xff };
        let len = (word(0x28) + half(0x3a) * half(0x3c)).max(word(0x20) + half(0x36) * half(0x38));
        return Some((std::slice::from_raw_parts(image, len).to_vec(), true, arch));
    }
    let text = CStr::from_ptr(image.cast()).to_bytes().to_vec();
    let target = String::from_utf8_lossy(&text)
        .lines()
        .find_map(|line| line.trim().strip_prefix(".target sm_").map(|arch| arch.trim().to_string()))?;
    let arch = target.trim_end_matches(|c: char| !c.is_ascii_digit()).parse().ok()?;
    Some((text, false, arch))
}

/// The kernels a module defines: a cubin's `.text.NAME` sections, PTX's `.entry NAME(`.
fn kernels_in(image: &[u8], cubin: bool) -> Vec<String> {
    let mut names: Vec<String> = if cubin {
        image
            .split(|&b| b == 0)
            .filter_map(|name| name.strip_prefix(b".text."))
            .map(|name| String::from_utf8_lossy(name).into_owned())
            .collect()
    } else {
        String::from_utf8_lossy(image)
            .lines()
            .filter_map(|line| line.split(".entry ").nth(1))
            .filter_map(|rest| rest.split('(').next())
            .map(|name| name.trim().to_string())
            .collect()
    };
    names.sort();
    names.dedup();
    names
}

/// Whether the image defines the global `symbol`.
fn defines(image: &[u8], cubin: bool, symbol: &str) -> bool {
    let symbol = symbol.as_bytes();
    if cubin {
        image.split(|&b| b == 0).any(|name| name == symbol)
    } else {
        image.split(|b| !(b.is_ascii_alphanumeric() || *b == b'_')).any(|token| token == symbol)
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleLoadData(module: *mut CUmodule, image: *const c_void) -> CUresult {
    let mut state = match ready() {
        Ok(state) => state,
        Err(e) => return e,
    };
    let Some((bytes, cubin, arch)) = read_image(image.cast()) else {
        return CUresult::CUDA_ERROR_INVALID_IMAGE;
    };
    // A cubin runs on its own architecture only; PTX is compiled forward for a newer one.
    if (cubin && arch != settings().arch) || (!cubin && arch > settings().arch) {
        return CUresult::CUDA_ERROR_NO_BINARY_FOR_GPU;
    }
    let kernels = kernels_in(&bytes, cubin);
    let Some(family) = FAMILIES.into_iter().find(|family| nvrtc::kernel_names(family).is_ok_and(|k| k == kernels))
    else {
        return CUresult::CUDA_ERROR_INVALID_IMAGE;
    };
    let storages: Vec<Precision> = [Precision::F32, Precision::F16, Precision::Bf16]
        .into_iter()
        .filter(|&p| nvrtc::storage_symbol(p).is_ok_and(|symbol| defines(&bytes, cubin, symbol)))
        .collect();
    let [storage] = storages[..] else {
        return CUresult::CUDA_ERROR_INVALID_IMAGE;
    };
    let handle = Box::into_raw(Box::new(0u8)) as usize;
    let image = if cubin { "cubin" } else { "ptx" };
    state.loaded.push(serde_json::json!({"family": family, "storage": storage.name(), "image": image, "arch": arch}));
    state.modules.insert(handle, Module { family, storage });
    *module = handle as CUmodule;
    CUresult::CUDA_SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleGetFunction(
    function: *mut CUfunction,
    module: CUmodule,
    name: *const c_char,
) -> CUresult {
    let mut state = match ready() {
        Ok(state) => state,
        Err(e) => return e,
    };
    let Some(loaded) = state.modules.get(&(module as usize)) else {
        return CUresult::CUDA_ERROR_INVALID_HANDLE;
    };
    let kernel = CStr::from_ptr(name).to_string_lossy().into_owned();
    let harness_module = format!("{}_{}", loaded.family, loaded.storage.name());
    let Some(parameters) = emu::parameter_count(&harness_module, &kernel) else {
        return CUresult::CUDA_ERROR_NOT_FOUND;
    };
    let handle = Box::into_raw(Box::new(0u8)) as usize;
    state.functions.insert(handle, Function { module: module as usize, harness_module, kernel, parameters });
    *function = handle as CUfunction;
    CUresult::CUDA_SUCCESS
}

/// Unloads a module: its functions can no longer be launched.
#[no_mangle]
pub extern "C" fn cuModuleUnload(module: CUmodule) -> CUresult {
    let mut state = match ready() {
        Ok(state) => state,
        Err(e) => return e,
    };
    if state.modules.remove(&(module as usize)).is_none() {
        return CUresult::CUDA_ERROR_INVALID_HANDLE;
    }
    state.functions.retain(|_, function| function.module != module as usize);
    state.unloaded += 1;
    CUresult::CUDA_SUCCESS
}

/// Runs a launch of simattr's kernels, whose parameters are a struct by value and then
/// buffer addresses: each address must be live device memory.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn cuLaunchKernel(
    function: CUfunction,
    grid_x: c_uint,
    grid_y: c_uint,
    grid_z: c_uint,
    block_x: c_uint,
    block_y: c_uint,
    block_z: c_uint,
    shared_bytes: c_uint,
    _stream: CUstream,
    params: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> CUresult {
    let mut state = match ready() {
        Ok(state) => state,
        Err(e) => return e,
    };
    let Some(kernel) = state.functions.get(&(function as usize)) else {
        return CUresult::CUDA_ERROR_INVALID_HANDLE;
    };
    let (grid, block) = ([grid_x, grid_y, grid_z], [block_x, block_y, block_z]);
    let threads = block.iter().map(|&b| b as u64).product::<u64>();
    let fits = grid.iter().all(|&g| g > 0)
        && grid_y <= 65535
        && grid_z <= 65535
        && grid_x <= i32::MAX as u32
        && (1..=1024).contains(&threads)
        && block_z <= 64
        && shared_bytes <= 48 * 1024;
    if !fits {
        return CUresult::CUDA_ERROR_INVALID_VALUE;
    }
    if params.is_null() || !extra.is_null() {
        return CUresult::CUDA_ERROR_INVALID_VALUE;
    }
    let args: Vec<*const c_void> = (0..kernel.parameters).map(|i| (*params.add(i)).cast_const()).collect();
    for &arg in &args[1..] {
        let address = *arg.cast::<u64>();
        if !state.holds(address, 1) {
            return CUresult::CUDA_ERROR_INVALID_VALUE;
        }
    }
    let (module, name) = (kernel.harness_module.clone(), kernel.kernel.clone());
    state.launches += 1;
    drop(state);
    match emu::launch(&module, &name, grid, block, &args) {
        Ok(()) => CUresult::CUDA_SUCCESS,
        Err(_) => CUresult::CUDA_ERROR_LAUNCH_FAILED,
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuGetErrorString(error: CUresult, text: *mut *const c_char) -> CUresult {
    let message: &'static CStr = match error {
        CUresult::CUDA_SUCCESS => c"no error",
        CUresult::CUDA_ERROR_INVALID_VALUE => c"invalid argument",
        CUresult::CUDA_ERROR_OUT_OF_MEMORY => c"out of memory",
        CUresult::CUDA_ERROR_NOT_INITIALIZED => c"initialization error",
        CUresult::CUDA_ERROR_INVALID_DEVICE => c"invalid device ordinal",
        CUresult::CUDA_ERROR_INVALID_IMAGE => c"device kernel image is invalid",
        CUresult::CUDA_ERROR_INVALID_CONTEXT => c"invalid device context",
        CUresult::CUDA_ERROR_NO_BINARY_FOR_GPU => c"no kernel image is available for execution on the device",
        CUresult::CUDA_ERROR_INVALID_HANDLE => c"invalid resource handle",
        CUresult::CUDA_ERROR_NOT_FOUND => c"named symbol not found",
        CUresult::CUDA_ERROR_LAUNCH_FAILED => c"unspecified launch failure",
        CUresult::CUDA_ERROR_NOT_SUPPORTED => c"operation not supported",
        _ => c"unknown error",
    };
    *text = message.as_ptr();
    CUresult::CUDA_SUCCESS
}

/// NVRTC opens libcuda.so.1 and asks for the driver's internal tables; it compiles without
/// them when told there are none.
#[no_mangle]
pub unsafe extern "C" fn cuGetExportTable(table: *mut *const c_void, _id: *const c_void) -> CUresult {
    if !table.is_null() {
        *table = std::ptr::null();
    }
    CUresult::CUDA_ERROR_NOT_SUPPORTED
}
