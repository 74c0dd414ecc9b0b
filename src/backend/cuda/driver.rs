//! The launch layer on a real GPU, through cudarc's thin driver-API wrappers: device memory
//! from the stream-ordered allocator (plain `cuMemAlloc` on a device without memory pools),
//! every copy and launch on the context's default stream
//! (so they run in the order the host code issues them), and each family's kernels compiled
//! by NVRTC for the device's own architecture at first use, once per process (a cubin, so
//! that any CUDA 12 or 13 driver loads it; see `nvrtc.rs`), and loaded once per opened device.
//!
//! cudarc loads libcuda and libnvrtc at run time, so this builds without CUDA installed; it
//! panics on a missing library, so `Cuda::open` checks for both first and turns their absence
//! into an error that says what is missing.

use std::collections::HashMap;
use std::ffi::{c_void, CString};
use std::sync::Mutex;

use cudarc::driver::{result, sys};

use super::{block_shape, decode, encode, nvrtc, ordered_addresses, param_words, toolkit, value_bytes, MAX_VALUES};
use crate::backend::gpu::{Device, DeviceBuffer};
use crate::backend::Precision;
use crate::error::{Error, Result};

fn driver_error(what: &str, e: result::DriverError) -> Error {
    Error::Cuda(format!("{what}: {e:?}"))
}

/// A buffer in device memory, freed on the default stream when dropped.
pub struct CudaBuffer {
    pointer: sys::CUdeviceptr,
    len: usize,
    value_bytes: usize,
    context: sys::CUcontext,
    /// From the stream-ordered allocator (else `cuMemAlloc`).
    pooled: bool,
}

// Device pointers and the context handle are plain handles; the driver API is thread-safe.
unsafe impl Send for CudaBuffer {}
unsafe impl Sync for CudaBuffer {}

impl CudaBuffer {
    fn bytes(&self) -> usize {
        self.len * self.value_bytes
    }
}

impl DeviceBuffer for CudaBuffer {
    fn len(&self) -> usize {
        self.len
    }
}

impl Drop for CudaBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated by `Cuda::buffer` in this context; the default stream orders the
        // free after every launch that reads the buffer (`cuMemFree` waits for them).
        unsafe {
            let _ = result::ctx::set_current(self.context);
            let _ = match self.pooled {
                true => result::free_async(self.pointer, std::ptr::null_mut()),
                false => result::free_sync(self.pointer),
            };
        }
    }
}

/// Initialises the driver and counts its GPUs. cudarc panics where the driver library is
/// missing, so its absence is checked first and reported as what it is.
fn device_count() -> Result<usize> {
    // SAFETY: only probes whether the library can be opened.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(Error::Cuda(
            "no CUDA driver here (libcuda.so was not found): --backend cuda needs an NVIDIA GPU and its \
             driver; --backend cuda-emu runs the same kernels on the CPU, --backend wgpu runs on other GPUs"
                .into(),
        ));
    }
    result::init().map_err(|e| driver_error("the CUDA driver did not initialise (is there a GPU?)", e))?;
    Ok(result::device::get_count().map_err(|e| driver_error("counting CUDA devices", e))? as usize)
}

/// A device's compute capability as NVRTC names it: 80 for sm_80.
fn compute_capability(device: sys::CUdevice) -> Result<u32> {
    use sys::CUdevice_attribute::{
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
    };
    let attribute = |attribute| {
        // SAFETY: a valid device handle.
        unsafe { result::device::get_attribute(device, attribute) }
            .map_err(|e| driver_error("the compute capability", e))
    };
    let major = attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
    let minor = attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
    Ok((major * 10 + minor) as u32)
}

/// The GPUs `--backend cuda --device N` can run on, one line each: number, name, compute
/// capability, memory.
pub fn describe_devices() -> Result<Vec<String>> {
    (0..device_count()?)
        .map(|ordinal| {
            let device = result::device::get(ordinal as i32).map_err(|e| driver_error("opening a device", e))?;
            let name = result::device::get_name(device).map_err(|e| driver_error("naming a device", e))?;
            let arch = compute_capability(device)?;
            // SAFETY: a valid device handle.
            let memory = unsafe { result::device::total_mem(device) }.map_err(|e| driver_error("device memory", e))?;
            Ok(format!("{ordinal}: {name} (sm_{arch}, {:.1} GiB)", memory as f64 / (1u64 << 30) as f64))
        })
        .collect()
}

/// One GPU: its primary context, the kernels compiled for it, the storage precision.
pub struct Cuda {
    context: sys::CUcontext,
    name: String,
    /// The compute capability as NVRTC names it: 80 for sm_80.
    arch: u32,
    /// What the kernels are compiled to for it.
    target: nvrtc::Target,
    precision: Precision,
    value_bytes: usize,
    /// Whether the device has memory pools, and so the stream-ordered allocator (not every
    /// platform does: some virtualised GPUs, older drivers on Windows).
    pools: bool,
    /// Each family's module and the functions looked up in it, by (family, kernel).
    modules: Mutex<HashMap<&'static str, sys::CUmodule>>,
    functions: Mutex<HashMap<(&'static str, &'static str), sys::CUfunction>>,
}

unsafe impl Send for Cuda {}
unsafe impl Sync for Cuda {}

impl Drop for Cuda {
    fn drop(&mut self) {
        let modules = self.modules.get_mut().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the modules were loaded by this device and are unloaded once, after every
        // launch that could still use them has run.
        unsafe {
            let _ = result::ctx::set_current(self.context);
            let _ = result::ctx::synchronize();
            for (_, module) in modules.drain() {
                let _ = result::module::unload(module);
            }
        }
    }
}

impl Cuda {
    /// GPU `ordinal` (`--device`; the first when `None`), storing tensors in `precision`.
    pub fn open(ordinal: Option<usize>, precision: Precision) -> Result<Self> {
        let value_bytes = value_bytes(precision)?;
        let count = device_count()?;
        if count == 0 {
            return Err(Error::Cuda("the CUDA driver finds no GPU on this machine".into()));
        }
        let ordinal = ordinal.unwrap_or(0);
        if ordinal >= count {
            return Err(Error::argument("--device", format!("{ordinal} is not a CUDA device here; there are {count}")));
        }
        toolkit::load_nvrtc()?;
        let device = result::device::get(ordinal as i32).map_err(|e| driver_error("opening the device", e))?;
        let name = result::device::get_name(device).map_err(|e| driver_error("naming the device", e))?;
        // SAFETY: `device` is a valid handle; the primary context lives as long as the process.
        let context = unsafe { result::primary_ctx::retain(device) }.map_err(|e| driver_error("a context", e))?;
        unsafe { result::ctx::set_current(context) }.map_err(|e| driver_error("making the context current", e))?;
        let arch = compute_capability(device)?;
        let target = nvrtc::Target::for_device(arch)?;
        // SAFETY: a valid device handle.
        let pools = unsafe {
            result::device::get_attribute(device, sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED)
        }
        .is_ok_and(|v| v != 0);
        Ok(Cuda {
            context,
            name,
            arch,
            target,
            precision,
            value_bytes,
            pools,
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
        })
    }

    /// Device memory (free, total) in bytes.
    fn memory(&self) -> Result<(usize, usize)> {
        self.current()?;
        result::mem_get_info().map_err(|e| driver_error("asking for free device memory", e))
    }

    fn current(&self) -> Result<()> {
        // SAFETY: the context was retained in `open` and is never released.
        unsafe { result::ctx::set_current(self.context) }.map_err(|e| driver_error("making the context current", e))
    }

    fn buffer(&self, len: usize, value_bytes: usize) -> Result<CudaBuffer> {
        self.current()?;
        let bytes = (len.max(1) * value_bytes).next_multiple_of(16);
        // SAFETY: a plain allocation (on the default stream where it is stream-ordered).
        let allocated = match self.pools {
            true => unsafe { result::malloc_async(std::ptr::null_mut(), bytes) },
            false => unsafe { result::malloc_sync(bytes) },
        };
        let pointer = allocated.map_err(|e| {
            if e.0 != sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY {
                return driver_error(&format!("allocating {bytes} bytes on {}", self.name), e);
            }
            let free = match self.memory() {
                Ok((free, total)) => format!(" ({free} of {total} bytes free)"),
                Err(_) => String::new(),
            };
            Error::Cuda(format!(
                "out of memory on {}: {bytes} more bytes do not fit{free}. The model's weights and one pass must \
                 fit: a smaller --max-memory makes the passes smaller, --precision f16 or bf16 halves both",
                self.name
            ))
        })?;
        Ok(CudaBuffer { pointer, len, value_bytes, context: self.context, pooled: self.pools })
    }

    fn write(&self, buffer: &CudaBuffer, bytes: &[u8]) -> Result<()> {
        self.current()?;
        // SAFETY: `bytes` fits the allocation; a copy from pageable memory returns once the
        // host bytes have been staged.
        unsafe { result::memcpy_htod_async(buffer.pointer, bytes, std::ptr::null_mut()) }
            .map_err(|e| driver_error("copying to the device", e))
    }

    /// The function `entry` of `family`, compiling the family's module first if needed.
    fn function(&self, family: &'static str, entry: &'static str) -> Result<sys::CUfunction> {
        let mut functions = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&function) = functions.get(&(family, entry)) {
            return Ok(function);
        }
        let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
        let module = match modules.get(family) {
            Some(&module) => module,
            None => {
                let image = nvrtc::compile_once(family, self.target, self.precision)?;
                // SAFETY: a cubin or NUL-terminated PTX, as NVRTC wrote it; the driver copies
                // what it needs, and the module stays loaded for the process.
                let module = unsafe { result::module::load_data(image.as_ptr().cast()) }.map_err(|e| {
                    driver_error(
                        &format!("loading {family}.cu ({}) on {} (sm_{})", self.target, self.name, self.arch),
                        e,
                    )
                })?;
                modules.insert(family, module);
                module
            }
        };
        let name = CString::new(entry).map_err(|_| Error::Internal("a kernel name holds a NUL".into()))?;
        // SAFETY: a loaded module.
        let function = unsafe { result::module::get_function(module, name) }
            .map_err(|e| driver_error(&format!("{family}.cu has no kernel `{entry}`"), e))?;
        functions.insert((family, entry), function);
        Ok(function)
    }
}

impl Device for Cuda {
    type Buffer = CudaBuffer;

    fn describe(&self, precision: Precision) -> String {
        match self.target {
            nvrtc::Target::Cubin(_) => format!("cuda {} ({}, sm_{})", precision.name(), self.name, self.arch),
            target => format!("cuda {} ({}, sm_{} through {target})", precision.name(), self.name, self.arch),
        }
    }

    fn tensor(&self, len: usize) -> Result<CudaBuffer> {
        self.buffer(len, self.value_bytes)
    }

    fn zeros(&self, len: usize) -> Result<CudaBuffer> {
        let buffer = self.tensor(len)?;
        // SAFETY: within the allocation, on the default stream.
        unsafe { result::memset_d8_async(buffer.pointer, 0, buffer.bytes(), std::ptr::null_mut()) }
            .map_err(|e| driver_error("clearing device memory", e))?;
        Ok(buffer)
    }

    fn upload_tensor(&self, data: &[f32]) -> Result<CudaBuffer> {
        let buffer = self.tensor(data.len())?;
        let bytes = encode(data, self.precision);
        self.write(&buffer, &bytes)?;
        Ok(buffer)
    }

    fn upload_f32(&self, data: &[f32]) -> Result<CudaBuffer> {
        let buffer = self.buffer(data.len(), 4)?;
        self.write(&buffer, bytemuck::cast_slice(data))?;
        Ok(buffer)
    }

    fn upload_u32(&self, data: &[u32]) -> Result<CudaBuffer> {
        let buffer = self.buffer(data.len(), 4)?;
        self.write(&buffer, bytemuck::cast_slice(data))?;
        Ok(buffer)
    }

    fn download(&self, buffer: &CudaBuffer) -> Result<Vec<f32>> {
        self.current()?;
        let mut bytes = vec![0u8; buffer.bytes()];
        // SAFETY: the sync copy waits for every launch on the default stream.
        unsafe { result::memcpy_dtoh_sync(&mut bytes, buffer.pointer) }
            .map_err(|e| driver_error(&format!("a kernel on {} failed, or copying back", self.name), e))?;
        Ok(decode(&bytes, buffer.value_bytes, self.precision))
    }

    fn dispatch(
        &self,
        family: &'static str,
        entry: &'static str,
        params: &[u32],
        bindings: &[(u32, &CudaBuffer)],
        groups: (u32, u32),
    ) -> Result<()> {
        if groups.0 == 0 || groups.1 == 0 {
            return Ok(());
        }
        let function = self.function(family, entry)?;
        self.current()?;
        let mut words = param_words(family, entry, params)?;
        let mut pointers: Vec<sys::CUdeviceptr> = ordered_addresses(bindings, |buffer: &CudaBuffer| buffer.pointer);
        let mut args: Vec<*mut c_void> = vec![words.as_mut_ptr().cast()];
        args.extend(pointers.iter_mut().map(|pointer| (pointer as *mut sys::CUdeviceptr).cast::<c_void>()));
        let block = block_shape(family)?;
        // SAFETY: the arguments match the kernel's parameters (the harness checks the same
        // host code against the same source), and live until the launch has read them.
        unsafe {
            result::launch_kernel(
                function,
                (groups.0, groups.1, 1),
                (block[0], block[1], block[2]),
                0,
                std::ptr::null_mut(),
                &mut args,
            )
        }
        .map_err(|e| driver_error(&format!("launching {family}.cu's `{entry}`"), e))
    }

    fn max_binding_values(&self) -> usize {
        MAX_VALUES
    }

    fn max_table_values(&self) -> usize {
        MAX_VALUES
    }

    fn synchronize(&self) -> Result<()> {
        self.current()?;
        result::ctx::synchronize().map_err(|e| driver_error(&format!("a kernel on {} failed", self.name), e))
    }

    fn free_memory(&self) -> Option<usize> {
        self.memory().ok().map(|(free, _)| free)
    }
}
