//! The GPU: the adapter chosen, the device opened, every kernel compiled, and the buffers
//! and bind groups that submissions reuse.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use wgpu::util::DeviceExt;

use super::kernel::KernelSource;
use super::profile::Profiler;
use crate::error::{Error, Result};

/// What a bind group binds: the kernel, its parameter page and offset, and its buffers.
pub(super) type BindKey = (&'static str, wgpu::Buffer, u64, Vec<wgpu::Buffer>);

/// How to open the GPU.
#[derive(Clone, Copy, Debug, Default)]
pub struct GpuOptions {
    /// Accept a software adapter (SwiftShader, lavapipe). Automatic selection does not:
    /// the CPU SIMD path is faster than a GPU emulated on the same cores.
    pub allow_software: bool,
    /// Compile one kernel with a syntax error: the fallback test's forced failure.
    pub broken_kernel: bool,
    /// Time every kernel and print a table of GPU time per kernel to stderr when the device
    /// is dropped (native only; slows the run down, see `profile.rs`).
    pub profile: bool,
}

/// A device with the kernels compiled.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    /// The adapter's name and driver, for the backend badge and the benchmarks.
    pub adapter: String,
    /// Largest storage buffer a kernel may bind, in bytes.
    pub max_binding: u64,
    /// Each kernel's pipeline and the layout of its bind group, by kernel name.
    pub(super) pipelines: HashMap<&'static str, (wgpu::ComputePipeline, wgpu::BindGroupLayout)>,
    /// Bound as `ids` by matmuls over all rows, which never read it.
    pub(super) no_ids: wgpu::Buffer,
    /// Bytes between two kernels' parameters in a page (the adapter's uniform offset alignment).
    pub(super) params_stride: usize,
    /// Uniform pages and readback buffers that earlier submissions used, for the next ones:
    /// a decode step then creates no GPU buffer (creating them cost more than the kernels).
    pub(super) params_pages: RefCell<Vec<wgpu::Buffer>>,
    pub(super) staging: RefCell<Option<wgpu::Buffer>>,
    /// A decode step records the same kernels over the same buffers and parameter slots
    /// as the one before, so its bind groups are made once.
    pub(super) bind_groups: RefCell<HashMap<BindKey, wgpu::BindGroup>>,
    lost: Arc<std::sync::atomic::AtomicBool>,
    pub(super) profiler: Option<Profiler>,
}

impl Gpu {
    /// The first high-performance adapter, with `kernels` compiled. Any failure (no
    /// WebGPU, no adapter, a kernel the driver rejects) is [`Error::Gpu`], and the caller
    /// falls back to the CPU.
    pub(super) async fn open(options: GpuOptions, kernels: &[KernelSource]) -> Result<Gpu> {
        #[cfg(target_arch = "wasm32")]
        if !wgpu::util::is_browser_webgpu_supported().await {
            return Err(Error::Gpu("this browser has no WebGPU".into()));
        }
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Gpu(format!("no WebGPU adapter: {e}")))?;
        let info = adapter.get_info();
        if info.device_type == wgpu::DeviceType::Cpu && !options.allow_software {
            return Err(Error::Gpu(format!(
                "the only WebGPU adapter is a software renderer ({}); the CPU SIMD path is faster",
                adapter_name(&info)
            )));
        }
        let limits = adapter.limits();
        if options.profile && !adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            return Err(Error::Gpu(format!("{} cannot time kernels", adapter_name(&info))));
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("anote"),
                required_features: match options.profile {
                    true => wgpu::Features::TIMESTAMP_QUERY,
                    false => wgpu::Features::empty(),
                },
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Gpu(format!("no device: {e}")))?;
        let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = lost.clone();
        device.set_device_lost_callback(move |_, _| flag.store(true, std::sync::atomic::Ordering::Relaxed));
        // Errors are caught by scopes where they can happen; anything else is reported, not
        // a panic (wgpu's default handler panics).
        device.on_uncaptured_error(Arc::new(|e| warn(&format!("webgpu: {e}"))));
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut pipelines = HashMap::new();
        for (i, k) in kernels.iter().enumerate() {
            let mut source = k.wgsl();
            if options.broken_kernel && i == 0 {
                // Any kernel will do; the first is the small GeGLU.
                source.push_str(" this is not WGSL");
            }
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(k.name),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(k.name),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
            let layout = pipeline.get_bind_group_layout(0);
            pipelines.insert(k.name, (pipeline, layout));
        }
        if let Some(e) = scope.pop().await {
            return Err(Error::Gpu(format!("a kernel did not compile: {e}")));
        }
        let no_ids = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("no ids"),
            size: 4,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let profiler = options.profile.then(|| Profiler::new(&device, &queue));
        Ok(Gpu {
            profiler,
            device,
            queue,
            adapter: adapter_name(&info),
            max_binding: limits.max_storage_buffer_binding_size.min(limits.max_buffer_size),
            pipelines,
            no_ids,
            params_stride: (limits.min_uniform_buffer_offset_alignment as usize).max(32),
            params_pages: RefCell::default(),
            staging: RefCell::default(),
            bind_groups: RefCell::default(),
            lost,
        })
    }

    /// With [`GpuOptions::profile`]: the table of GPU time per kernel so far.
    pub fn profile_report(&self) -> Option<String> {
        self.profiler.as_ref().map(Profiler::report)
    }

    pub fn is_lost(&self) -> bool {
        self.lost.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A storage buffer holding `data`.
    pub fn upload<T: bytemuck::Pod>(&self, data: &[T]) -> wgpu::Buffer {
        // A zero-sized binding is invalid: empty data gets one padding word.
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let padded;
        let contents = if bytes.is_empty() {
            padded = [0u8; 4];
            &padded[..]
        } else {
            bytes
        };
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        })
    }

    /// A zeroed storage buffer of `len` f32s.
    pub fn zeros(&self, len: usize) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: (len.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Drops the kept bind groups (and with them the buffers they hold): for a model that
    /// replaces its activation or cache buffers.
    pub fn forget_bind_groups(&self) {
        self.bind_groups.borrow_mut().clear();
    }
}

/// The adapter's name, driver and whether it is a software renderer; browsers may hide
/// the name and the driver.
fn adapter_name(info: &wgpu::AdapterInfo) -> String {
    let name = if info.name.is_empty() {
        "unnamed adapter"
    } else {
        &info.name
    };
    let software = (info.device_type == wgpu::DeviceType::Cpu).then_some("software");
    let notes: Vec<&str> = [Some(info.driver_info.as_str()).filter(|d| !d.is_empty()), software]
        .into_iter()
        .flatten()
        .collect();
    match notes.is_empty() {
        true => name.to_string(),
        false => format!("{name} ({})", notes.join(", ")),
    }
}

pub(super) fn warn(message: &str) {
    #[cfg(target_arch = "wasm32")]
    web_sys::console::warn_1(&message.into());
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("{message}");
}
