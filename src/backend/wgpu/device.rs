//! The device side of the wgpu backend: the adapter and device, the shaders compiled once per
//! process, pipelines cached by entry point, a pool of storage buffers, and the one way every op
//! runs: a uniform of shape parameters, storage bindings, a dispatch.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex, PoisonError};

use wgpu::util::DeviceExt;

use crate::backend::gpu::kernels::{Family, FAMILIES};
use crate::backend::gpu::{Device, DeviceBuffer};
use crate::backend::Precision;
use crate::error::{Error, Result};

/// The adapters this machine offers, in the order `--device` counts them.
pub fn adapters() -> Vec<wgpu::Adapter> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
}

/// One line per adapter: index, name, kind, API.
pub fn describe_adapters() -> Vec<String> {
    adapters()
        .iter()
        .enumerate()
        .map(|(i, adapter)| {
            let info = adapter.get_info();
            format!("{i}: {} ({:?}, {:?})", info.name, info.device_type, info.backend)
        })
        .collect()
}

/// Storage buffers kept for reuse, by size class (powers of two), so that ops do not allocate.
pub struct BufferPool {
    free: Mutex<HashMap<u64, Vec<wgpu::Buffer>>>,
    /// Bytes held in `free`, and the most it may hold.
    held: Mutex<u64>,
    cap: u64,
}

impl BufferPool {
    fn size_class(bytes: u64) -> u64 {
        bytes.max(256).next_power_of_two()
    }

    fn give_back(&self, buffer: wgpu::Buffer) {
        let size = buffer.size();
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if *held + size > self.cap {
            return;
        }
        *held += size;
        self.free.lock().unwrap_or_else(PoisonError::into_inner).entry(size).or_default().push(buffer);
    }

    fn take(&self, class: u64) -> Option<wgpu::Buffer> {
        let buffer = self.free.lock().unwrap_or_else(PoisonError::into_inner).get_mut(&class)?.pop()?;
        *self.held.lock().unwrap_or_else(PoisonError::into_inner) -= class;
        Some(buffer)
    }
}

/// A storage buffer of `len` values of `value_bytes` each (a tensor's f32 or f16; f32 or u32
/// for step weights, alphas, ids) on the device; back to the pool when dropped.
pub struct WgpuBuffer {
    buffer: Option<wgpu::Buffer>,
    pub len: usize,
    value_bytes: usize,
    pool: Arc<BufferPool>,
}

impl WgpuBuffer {
    pub fn raw(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("a device buffer is present until dropped")
    }

    /// Bytes of the `len` values, rounded up to whole 4-byte words (WebGPU binds nothing
    /// smaller).
    fn bytes(&self) -> u64 {
        (self.len.max(1) * self.value_bytes).next_multiple_of(4) as u64
    }

    /// The `len` values as a binding.
    fn binding(&self) -> wgpu::BindingResource<'_> {
        let bytes = self.bytes();
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self.raw(),
            offset: 0,
            size: NonZeroU64::new(bytes),
        })
    }
}

impl DeviceBuffer for WgpuBuffer {
    fn len(&self) -> usize {
        self.len
    }
}

impl Drop for WgpuBuffer {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            self.pool.give_back(buffer);
        }
    }
}

/// The device, its queue and what ops share.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    modules: HashMap<&'static str, wgpu::ShaderModule>,
    pipelines: Mutex<HashMap<(&'static str, &'static str), Arc<wgpu::ComputePipeline>>>,
    pool: Arc<BufferPool>,
    /// The first validation or out-of-memory error the device reported, checked at every sync.
    error: Arc<Mutex<Option<String>>>,
    /// Lower limits than the adapter's, in values (tests): one binding, and the tables kept on
    /// the device.
    binding_cap: usize,
    table_cap: usize,
    /// Bytes of one tensor value: 4 (f32) or 2 (f16).
    value_bytes: usize,
}

impl Gpu {
    /// Adapter `index` (as `describe_adapters` lists them; the default adapter when `None`),
    /// with the shaders compiled for tensors of f16 (`half`) or f32.
    pub fn open(index: Option<usize>, pool_cap: u64, half: bool) -> Result<Self> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = match index {
            None => {
                pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default())).map_err(|e| {
                    Error::argument(
                        "--backend",
                        format!(
                            "wgpu found no GPU adapter ({e}); install a Vulkan, Metal or DX12 driver (on Debian: \
                             apt-get install mesa-vulkan-drivers libvulkan1 gives the CPU one, lavapipe)"
                        ),
                    )
                })?
            }
            Some(i) => {
                let mut all = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
                if i >= all.len() {
                    let listed = describe_adapters();
                    return Err(Error::argument(
                        "--device",
                        format!("{i} is not an adapter here; there are {}: {}", listed.len(), listed.join("; ")),
                    ));
                }
                all.swap_remove(i)
            }
        };
        let info = adapter.get_info();
        let limits = adapter.limits();
        if half && !adapter.features().contains(wgpu::Features::SHADER_F16) {
            return Err(Error::argument(
                "--precision",
                format!(
                    "f16 needs an adapter with 16-bit shader floats (SHADER_F16); {} does not offer them: use f32",
                    info.name
                ),
            ));
        }
        let descriptor = wgpu::DeviceDescriptor {
            label: Some("simattr"),
            required_features: if half { wgpu::Features::SHADER_F16 } else { wgpu::Features::empty() },
            required_limits: limits.clone(),
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&descriptor))
            .map_err(|e| Error::argument("--backend", format!("wgpu could not open {}: {e}", info.name)))?;
        let error = Arc::new(Mutex::new(None::<String>));
        let sink = error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = sink.lock().unwrap_or_else(PoisonError::into_inner);
            slot.get_or_insert_with(|| e.to_string());
        }));
        // The one line that differs between the precisions: what the shaders' `real` is.
        let prelude = if half { "enable f16;\nalias real = f16;\n" } else { "alias real = f32;\n" };
        let modules = FAMILIES
            .iter()
            .map(|&Family { name, wgsl: source, .. }| {
                let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(name),
                    source: wgpu::ShaderSource::Wgsl(format!("{prelude}{source}").into()),
                });
                (name, module)
            })
            .collect();
        let pool = Arc::new(BufferPool { free: Mutex::new(HashMap::new()), held: Mutex::new(0), cap: pool_cap });
        let pipelines = Mutex::new(HashMap::new());
        let gpu = Gpu {
            device,
            queue,
            info,
            limits,
            modules,
            pipelines,
            pool,
            error,
            binding_cap: usize::MAX,
            table_cap: usize::MAX,
            value_bytes: if half { 2 } else { 4 },
        };
        gpu.check()?;
        Ok(gpu)
    }

    /// The device's first reported error, if any, as ours.
    pub fn check(&self) -> Result<()> {
        match self.error.lock().unwrap_or_else(PoisonError::into_inner).take() {
            None => Ok(()),
            Some(message) => Err(Error::Internal(format!("wgpu on {}: {message}", self.info.name))),
        }
    }

    /// Binds at most `binding` values per tensor from now on, as a smaller adapter would, and
    /// keeps tables of more than `table` values on the host.
    pub fn cap(&mut self, binding: usize, table: usize) {
        (self.binding_cap, self.table_cap) = (binding, table);
    }

    fn buffer(&self, len: usize, value_bytes: usize) -> Result<WgpuBuffer> {
        if len * value_bytes > self.max_binding_values() * self.value_bytes {
            return Err(Error::Internal(format!(
                "a tensor of {len} values exceeds the {} values one binding of {} takes",
                self.max_binding_values(),
                self.info.name
            )));
        }
        let class = BufferPool::size_class((len.max(1) * value_bytes).next_multiple_of(4) as u64);
        let buffer = self.pool.take(class).unwrap_or_else(|| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: class,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        Ok(WgpuBuffer { buffer: Some(buffer), len, value_bytes, pool: self.pool.clone() })
    }

    /// `bytes` into the start of `buffer`, padded to whole words.
    fn write(&self, buffer: &WgpuBuffer, mut bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        bytes.resize(bytes.len().next_multiple_of(4), 0);
        self.queue.write_buffer(buffer.raw(), 0, &bytes);
    }

    fn pipeline(&self, shader: &'static str, entry: &'static str) -> Result<Arc<wgpu::ComputePipeline>> {
        let mut pipelines = self.pipelines.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(pipeline) = pipelines.get(&(shader, entry)) {
            return Ok(pipeline.clone());
        }
        let module = self.modules.get(shader).ok_or_else(|| Error::Internal(format!("no shader family `{shader}`")))?;
        let pipeline = Arc::new(self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: None,
            module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        }));
        self.check()?;
        pipelines.insert((shader, entry), pipeline.clone());
        Ok(pipeline)
    }
}

impl Device for Gpu {
    type Buffer = WgpuBuffer;

    fn describe(&self, precision: Precision) -> String {
        format!("wgpu {} ({})", precision.name(), self.info.name)
    }

    /// The largest tensor one binding takes, in values.
    fn max_binding_values(&self) -> usize {
        let bytes = (self.limits.max_storage_buffer_binding_size as usize).min(self.limits.max_buffer_size as usize);
        let adapter = bytes / self.value_bytes;
        adapter.min(self.binding_cap)
    }

    /// The largest embedding table kept on the device; larger ones are gathered on the host.
    fn max_table_values(&self) -> usize {
        self.max_binding_values().min(self.table_cap)
    }

    /// An uninitialised tensor of `len` values, from the pool when one is free.
    fn tensor(&self, len: usize) -> Result<WgpuBuffer> {
        self.buffer(len, self.value_bytes)
    }

    /// A tensor of `data`, stored in the tensors' precision.
    fn upload_tensor(&self, data: &[f32]) -> Result<WgpuBuffer> {
        let buffer = self.tensor(data.len())?;
        let bytes: Vec<u8> = match self.value_bytes {
            2 => data.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect(),
            _ => bytemuck::cast_slice(data).to_vec(),
        };
        self.write(&buffer, bytes);
        Ok(buffer)
    }

    /// f32 values that stay f32 (step weights, alphas).
    fn upload_f32(&self, data: &[f32]) -> Result<WgpuBuffer> {
        let buffer = self.buffer(data.len(), 4)?;
        self.write(&buffer, bytemuck::cast_slice(data).to_vec());
        Ok(buffer)
    }

    fn upload_u32(&self, data: &[u32]) -> Result<WgpuBuffer> {
        let buffer = self.buffer(data.len(), 4)?;
        self.write(&buffer, bytemuck::cast_slice(data).to_vec());
        Ok(buffer)
    }

    /// A tensor of `len` zeros.
    fn zeros(&self, len: usize) -> Result<WgpuBuffer> {
        let buffer = self.tensor(len)?;
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        encoder.clear_buffer(buffer.raw(), 0, None);
        self.queue.submit([encoder.finish()]);
        Ok(buffer)
    }

    /// Waits for every submitted op; reports the device's first error.
    fn synchronize(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Internal(format!("wgpu on {}: {e}", self.info.name)))?;
        self.check()
    }

    /// The buffer's values, after every op submitted before.
    fn download(&self, buffer: &WgpuBuffer) -> Result<Vec<f32>> {
        if buffer.len == 0 {
            return Ok(Vec::new());
        }
        let bytes = buffer.bytes();
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("download"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        encoder.copy_buffer_to_buffer(buffer.raw(), 0, &staging, 0, bytes);
        self.queue.submit([encoder.finish()]);
        let (sender, receiver) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |result| {
            let _ = sender.send(result);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Internal(format!("wgpu on {}: {e}", self.info.name)))?;
        self.check()?;
        receiver
            .recv()
            .map_err(|_| Error::Internal("wgpu dropped a download".into()))?
            .map_err(|e| Error::Internal(format!("wgpu could not read a buffer back: {e}")))?;
        let values = {
            let view = staging
                .get_mapped_range(..)
                .map_err(|e| Error::Internal(format!("wgpu could not map a buffer: {e}")))?;
            match buffer.value_bytes {
                2 => view
                    .chunks_exact(2)
                    .take(buffer.len)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                _ => bytemuck::cast_slice::<u8, f32>(&view)[..buffer.len].to_vec(),
            }
        };
        staging.unmap();
        Ok(values)
    }

    /// Runs `shader`'s entry point `entry` on `groups` workgroups (x, y), with `params` as its
    /// uniform (binding 0) and `bindings` (binding number, buffer) as its storage.
    fn dispatch(
        &self,
        shader: &'static str,
        entry: &'static str,
        params: &[u32],
        bindings: &[(u32, &WgpuBuffer)],
        groups: (u32, u32),
    ) -> Result<()> {
        if groups.0 == 0 || groups.1 == 0 {
            return Ok(());
        }
        let pipeline = self.pipeline(shader, entry)?;
        // Uniform structs are padded to 16 bytes.
        let mut words = params.to_vec();
        words.resize(params.len().div_ceil(4).max(1) * 4, 0);
        let uniform = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("params"),
            contents: bytemuck::cast_slice(&words),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() }];
        entries.extend(
            bindings.iter().map(|&(binding, buffer)| wgpu::BindGroupEntry { binding, resource: buffer.binding() }),
        );
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(entry),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(entry) });
        {
            let mut pass =
                encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(entry), timestamp_writes: None });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(groups.0, groups.1, 1);
        }
        self.queue.submit([encoder.finish()]);
        Ok(())
    }
}
