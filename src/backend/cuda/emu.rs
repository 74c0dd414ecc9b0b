//! The launch layer on the CPU execution harness: device memory is host memory, a launch
//! calls the harness (`kernels/emu/runtime.cpp`) with the kernel's arguments laid out as
//! `cuLaunchKernel` takes them (one pointer per parameter: the parameter struct, then each
//! buffer's address), and returns when the grid has run.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ffi::{c_char, c_int, c_long, c_void, CString};
use std::ptr::NonNull;

use super::{block_shape, decode, encode, ordered_addresses, param_words, value_bytes, MAX_VALUES};
use crate::backend::gpu::{Device, DeviceBuffer};
use crate::backend::Precision;
use crate::error::{Error, Result};

extern "C" {
    fn simattr_emu_launch(
        module: *const c_char,
        kernel: *const c_char,
        grid: *const u32,
        block: *const u32,
        args: *const *const c_void,
        arg_count: usize,
    ) -> c_int;
    fn simattr_emu_parameters(module: *const c_char, kernel: *const c_char) -> c_long;
}

fn c_name(name: &str) -> Result<CString> {
    CString::new(name).map_err(|_| Error::Internal(format!("cuda-emu: the name `{name}` holds a NUL")))
}

/// How many parameters kernel `kernel` of harness module `module` (`layer_norm_f16`: the
/// family and its storage precision) takes, or `None` when the harness has no such kernel.
pub fn parameter_count(module: &str, kernel: &str) -> Option<usize> {
    let (module, kernel) = (c_name(module).ok()?, c_name(kernel).ok()?);
    // SAFETY: two NUL-terminated strings, read during the call.
    let count = unsafe { simattr_emu_parameters(module.as_ptr(), kernel.as_ptr()) };
    usize::try_from(count).ok()
}

/// Runs kernel `kernel` of harness module `module` over `grid` blocks of `block` threads, its
/// arguments as `cuLaunchKernel` takes them (one pointer per parameter), and returns when the
/// grid has run.
///
/// # Safety
/// `args` must point at values of the kernel's parameter types, and every buffer a kernel
/// reaches through them must hold what the kernel reads and writes.
pub unsafe fn launch(
    module: &str,
    kernel: &str,
    grid: [u32; 3],
    block: [u32; 3],
    args: &[*const c_void],
) -> Result<()> {
    let (module_name, kernel_name) = (c_name(module)?, c_name(kernel)?);
    let status = simattr_emu_launch(
        module_name.as_ptr(),
        kernel_name.as_ptr(),
        grid.as_ptr(),
        block.as_ptr(),
        args.as_ptr(),
        args.len(),
    );
    match status {
        0 => Ok(()),
        1 => Err(Error::Internal(format!("cuda-emu: module `{module}` has no kernel `{kernel}`"))),
        _ => Err(Error::Internal(format!(
            "cuda-emu: `{module}`'s `{kernel}` does not take {} parameters (a parameter struct and {} buffers)",
            args.len(),
            args.len().saturating_sub(1)
        ))),
    }
}

/// Device memory of the harness: a zeroed host allocation of `len` values.
pub struct EmuBuffer {
    data: NonNull<u8>,
    layout: Layout,
    len: usize,
    value_bytes: usize,
}

// The harness reads and writes the allocation only during a launch, which the host code
// orders; nothing else aliases it.
unsafe impl Send for EmuBuffer {}
unsafe impl Sync for EmuBuffer {}

impl EmuBuffer {
    fn new(len: usize, value_bytes: usize) -> Result<Self> {
        let bytes = (len.max(1) * value_bytes).next_multiple_of(16);
        let layout = Layout::from_size_align(bytes, 16)
            .map_err(|_| Error::Internal(format!("cuda-emu: no layout for {len} values")))?;
        // SAFETY: the layout has a non-zero size.
        let data = NonNull::new(unsafe { alloc_zeroed(layout) })
            .ok_or_else(|| Error::Internal(format!("cuda-emu: out of memory for {bytes} bytes")))?;
        Ok(EmuBuffer { data, layout, len, value_bytes })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `data` holds `layout.size()` initialised bytes for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.data.as_ptr(), self.len * self.value_bytes) }
    }

    fn write(&self, bytes: &[u8]) {
        debug_assert!(bytes.len() <= self.layout.size());
        // SAFETY: within the allocation; no launch runs while the host writes.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.data.as_ptr(), bytes.len()) }
    }

    /// The buffer's address, as a kernel argument.
    fn address(&self) -> u64 {
        self.data.as_ptr() as u64
    }
}

impl DeviceBuffer for EmuBuffer {
    fn len(&self) -> usize {
        self.len
    }
}

impl Drop for EmuBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.data.as_ptr(), self.layout) }
    }
}

/// The harness as a device, storing tensors in one precision (a module per family and
/// precision: `layer_norm_f16`).
pub struct Emu {
    precision: Precision,
    value_bytes: usize,
}

impl Emu {
    pub fn new(precision: Precision) -> Result<Self> {
        Ok(Emu { precision, value_bytes: value_bytes(precision)? })
    }
}

impl Device for Emu {
    type Buffer = EmuBuffer;

    fn describe(&self, precision: Precision) -> String {
        format!("cuda-emu {} (CUDA kernels on the CPU harness)", precision.name())
    }

    fn tensor(&self, len: usize) -> Result<EmuBuffer> {
        EmuBuffer::new(len, self.value_bytes)
    }

    fn zeros(&self, len: usize) -> Result<EmuBuffer> {
        EmuBuffer::new(len, self.value_bytes)
    }

    fn upload_tensor(&self, data: &[f32]) -> Result<EmuBuffer> {
        let buffer = self.tensor(data.len())?;
        let bytes = encode(data, self.precision);
        buffer.write(&bytes);
        Ok(buffer)
    }

    fn upload_f32(&self, data: &[f32]) -> Result<EmuBuffer> {
        let buffer = EmuBuffer::new(data.len(), 4)?;
        buffer.write(bytemuck::cast_slice(data));
        Ok(buffer)
    }

    fn upload_u32(&self, data: &[u32]) -> Result<EmuBuffer> {
        let buffer = EmuBuffer::new(data.len(), 4)?;
        buffer.write(bytemuck::cast_slice(data));
        Ok(buffer)
    }

    fn download(&self, buffer: &EmuBuffer) -> Result<Vec<f32>> {
        let bytes = buffer.bytes();
        Ok(decode(bytes, buffer.value_bytes, self.precision))
    }

    fn dispatch(
        &self,
        family: &'static str,
        entry: &'static str,
        params: &[u32],
        bindings: &[(u32, &EmuBuffer)],
        groups: (u32, u32),
    ) -> Result<()> {
        if groups.0 == 0 || groups.1 == 0 {
            return Ok(());
        }
        let words = param_words(family, entry, params)?;
        let addresses = ordered_addresses(bindings, EmuBuffer::address);
        let mut args: Vec<*const c_void> = vec![words.as_ptr().cast()];
        args.extend(addresses.iter().map(|address| (address as *const u64).cast::<c_void>()));
        let module = format!("{family}_{}", self.precision.name());
        let block = block_shape(family)?;
        // SAFETY: every pointer lives until the call returns; the harness runs the grid to its
        // end before returning, and the kernels stay within the buffers' lengths.
        unsafe { launch(&module, entry, [groups.0, groups.1, 1], block, &args) }
    }

    fn max_binding_values(&self) -> usize {
        MAX_VALUES
    }

    fn max_table_values(&self) -> usize {
        MAX_VALUES
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
}
