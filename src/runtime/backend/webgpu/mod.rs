//! WebGPU compute through wgpu: WebGPU in the browser, Vulkan/Metal/DX12 natively.
//!
//! One WGSL file per op in `kernels/`, each with a CPU twin in [`crate::runtime::backend::cpu`] and a
//! test comparing the two (`tests/webgpu.rs` natively, the page's self-test in the browser).
//! Quantized weights are repacked once at load into one GPU-friendly format (int8 in u32
//! words plus an f32 scale per 32 values: Q8_0 with the scale widened), split into
//! chunks where a matrix exceeds the adapter's largest storage binding.

pub mod check;
mod profile;
mod readback;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use wgpu::util::DeviceExt;

use crate::error::{Error, Result};
use crate::runtime::backend::cpu::AttentionShape;
use crate::runtime::backend::q8::Q8Rows;

/// The kernels a forward pass needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    EmbedQ8,
    MatmulQ8,
    MergeLora,
    RmsNorm,
    Rope,
    Attention,
    AttentionCombine,
    GeluMul,
}

impl Kernel {
    pub const ALL: [Kernel; 8] = [
        Kernel::EmbedQ8,
        Kernel::MatmulQ8,
        Kernel::MergeLora,
        Kernel::RmsNorm,
        Kernel::Rope,
        Kernel::Attention,
        Kernel::AttentionCombine,
        Kernel::GeluMul,
    ];

    /// The kernel's file name (labels, the self-test's report).
    pub fn name(self) -> &'static str {
        match self {
            Kernel::EmbedQ8 => "embed_q8",
            Kernel::MatmulQ8 => "matmul_q8",
            Kernel::MergeLora => "merge_lora",
            Kernel::RmsNorm => "rms_norm",
            Kernel::Rope => "rope",
            Kernel::Attention => "attention",
            Kernel::AttentionCombine => "attention_combine",
            Kernel::GeluMul => "gelu_mul",
        }
    }

    fn source(self) -> &'static str {
        match self {
            Kernel::EmbedQ8 => include_str!("kernels/embed_q8.wgsl"),
            Kernel::MatmulQ8 => include_str!("kernels/matmul_q8.wgsl"),
            Kernel::MergeLora => include_str!("kernels/merge_lora.wgsl"),
            Kernel::RmsNorm => include_str!("kernels/rms_norm.wgsl"),
            Kernel::Rope => include_str!("kernels/rope.wgsl"),
            Kernel::Attention => include_str!("kernels/attention.wgsl"),
            Kernel::AttentionCombine => include_str!("kernels/attention_combine.wgsl"),
            Kernel::GeluMul => include_str!("kernels/gelu_mul.wgsl"),
        }
    }
}

/// Largest head dimension the attention kernel handles (one dim per thread, 256 threads);
/// it must also be a multiple of 4 (keys are read as vec4s).
pub const MAX_HEAD_DIM: usize = 256;
/// Below this many rows, RMSNorm gives each row a whole workgroup (a decode step): one
/// invocation per row would leave most of one workgroup idle and each row waiting on one
/// long loop.
const SPLIT_BELOW: usize = 64;
/// Most splits of one (head, token)'s keys in a split attention, which bounds its parts buffer.
const ATTENTION_MAX_SPLITS: usize = 32;
/// Keys one attention workgroup takes per tile (`TILE` in attention.wgsl); a split is whole tiles.
const ATTENTION_TILE: usize = 64;
/// Tokens one matmul workgroup serves in prefill (`TOKENS` in matmul_q8.wgsl).
const MATMUL_TOKENS: usize = 8;
/// Invocations that share a row in a decode step's matmul (`SLICES` in matmul_q8.wgsl).
const MATMUL_DECODE_SLICES: usize = 16;
/// Most workgroups in one dispatch dimension (WebGPU's default limit).
const MAX_GROUPS: u32 = 65_535;
/// Bytes of kernel parameters per uniform page (one page holds a few hundred kernels' worth).
const PARAMS_PAGE: usize = 64 * 1024;
/// Bind groups kept for reuse: a few forwards' worth (about 550 kernels each).
const MAX_BIND_GROUPS: usize = 8192;

/// What a bind group binds: the kernel, its parameter page and offset, and its buffers.
type BindKey = (Kernel, wgpu::Buffer, u64, Vec<wgpu::Buffer>);

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
    /// Each kernel's pipeline and the layout of its bind group.
    pipelines: HashMap<Kernel, (wgpu::ComputePipeline, wgpu::BindGroupLayout)>,
    /// Bound as `ids` by matmuls over all rows, which never read it.
    no_ids: wgpu::Buffer,
    /// Bytes between two kernels' parameters in a page (the adapter's uniform offset alignment).
    params_stride: usize,
    /// Uniform pages and readback buffers that earlier submissions used, for the next ones:
    /// a decode step then creates no GPU buffer (creating them cost more than the kernels).
    params_pages: RefCell<Vec<wgpu::Buffer>>,
    staging: RefCell<Option<wgpu::Buffer>>,
    /// A decode step records the same kernels over the same buffers and parameter slots
    /// as the one before, so its bind groups are made once.
    bind_groups: RefCell<HashMap<BindKey, wgpu::BindGroup>>,
    lost: Arc<std::sync::atomic::AtomicBool>,
    profiler: Option<profile::Profiler>,
}

impl Gpu {
    /// The first high-performance adapter, with every kernel compiled. Any failure (no
    /// WebGPU, no adapter, a kernel the driver rejects) is [`Error::Gpu`], and the caller
    /// falls back to the CPU.
    pub async fn new(options: GpuOptions) -> Result<Gpu> {
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
        for k in Kernel::ALL {
            let source = match options.broken_kernel && k == Kernel::GeluMul {
                true => format!("{} this is not WGSL", k.source()),
                false => k.source().to_string(),
            };
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(k.name()),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(k.name()),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
            let layout = pipeline.get_bind_group_layout(0);
            pipelines.insert(k, (pipeline, layout));
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
        let profiler = options.profile.then(|| profile::Profiler::new(&device, &queue));
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
        self.profiler.as_ref().map(profile::Profiler::report)
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

    /// Starts recording one submission.
    pub fn recorder(&self) -> Recorder<'_> {
        Recorder {
            gpu: self,
            encoder: self.device.create_command_encoder(&Default::default()),
            pass: None,
            pages: Vec::new(),
            timed: Vec::new(),
        }
    }
}

/// One submission being recorded. Kernels share one compute pass (closed only for a
/// buffer copy), and their parameters go into uniform pages written once at submit, so
/// recording a kernel allocates nothing on the GPU.
pub struct Recorder<'g> {
    gpu: &'g Gpu,
    encoder: wgpu::CommandEncoder,
    pass: Option<wgpu::ComputePass<'static>>,
    /// Pages in use, each with the parameter bytes to write into it.
    pages: Vec<(wgpu::Buffer, Vec<u8>)>,
    /// When profiling: the kernels recorded with timestamps, in order.
    timed: Vec<(Kernel, (u32, u32, u32))>,
}

impl Recorder<'_> {
    /// Records one kernel: `params` (u32 words, f32s as bits) at binding 0, then `buffers`
    /// at bindings 1…, over `groups` workgroups (spread over two dimensions when needed).
    pub fn dispatch(&mut self, kernel: Kernel, params: &[u32], buffers: &[&wgpu::Buffer], groups: Groups) {
        let (page, offset, size) = self.params_slot(params);
        let (pipeline, layout) = &self.gpu.pipelines[&kernel];
        let page = &self.pages[page].0;
        let key: BindKey = (
            kernel,
            page.clone(),
            offset,
            buffers.iter().map(|&b| b.clone()).collect(),
        );
        let mut kept = self.gpu.bind_groups.borrow_mut();
        if kept.len() >= MAX_BIND_GROUPS && !kept.contains_key(&key) {
            kept.clear();
        }
        let bind = kept.entry(key).or_insert_with(|| {
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: page,
                    offset,
                    size: std::num::NonZeroU64::new(size),
                }),
            }];
            entries.extend(buffers.iter().enumerate().map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: b.as_entire_binding(),
            }));
            self.gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout,
                entries: &entries,
            })
        });
        let (x, y, z) = groups.dims();
        // Profiling: each timed kernel gets a pass of its own, with timestamps at its ends.
        let writes = self.gpu.profiler.as_ref().and_then(|p| p.writes(self.timed.len()));
        let timed = writes.is_some();
        if timed {
            self.pass = None;
        }
        let pass = self.pass.get_or_insert_with(|| {
            let desc = wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: writes,
            };
            self.encoder.begin_compute_pass(&desc).forget_lifetime()
        });
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &*bind, &[]);
        pass.dispatch_workgroups(x, y, z);
        if timed {
            self.timed.push((kernel, (x, y, z)));
            self.pass = None;
        }
    }

    /// Records RMSNorm of `rows` rows of `dim` values from `src` into `dst` (added to it with
    /// `accumulate`), scaled by `w`.
    pub fn rms_norm(
        &mut self,
        (src, w, dst): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
        rows: usize,
        dim: usize,
        eps: f32,
        accumulate: bool,
    ) {
        let split = rows < SPLIT_BELOW;
        let params = [dim as u32, rows as u32, eps.to_bits(), accumulate as u32, split as u32];
        let groups = Groups::cover(rows, if split { 1 } else { 64 }, 1);
        self.dispatch(Kernel::RmsNorm, &params, &[src, w, dst], groups);
    }

    /// Records attention of `tokens` queries at positions `first…` over the KV cache
    /// (`q`, `k`, `v` as [`crate::runtime::backend::cpu::attention`] takes them) into `out`. When
    /// heads × tokens are fewer than [`SPLIT_BELOW`] workgroups (a decode step), each
    /// query's keys are split over up to [`ATTENTION_MAX_SPLITS`] workgroups whose parts
    /// (`parts`, [`attention_parts_len`] floats) a second kernel merges.
    pub fn attention(
        &mut self,
        (q, k, v, parts, out): (
            &wgpu::Buffer,
            &wgpu::Buffer,
            &wgpu::Buffer,
            &wgpu::Buffer,
            &wgpu::Buffer,
        ),
        shape: &AttentionShape,
        first: usize,
        tokens: usize,
    ) {
        let (chunk, splits) = attention_splits(shape, first, tokens);
        let (heads, hd) = (shape.heads as u32, shape.head_dim as u32);
        let params = [
            heads,
            shape.kv_heads as u32,
            hd,
            first as u32,
            shape.window.unwrap_or(0) as u32,
            shape.scale.to_bits(),
            chunk as u32,
            splits as u32,
        ];
        let target = if splits > 1 { parts } else { out };
        let groups = Groups::Grid(heads, tokens as u32, splits as u32);
        self.dispatch(Kernel::Attention, &params, &[q, k, v, target], groups);
        if splits > 1 {
            let params = [heads, hd, splits as u32];
            let groups = Groups::Grid(heads, tokens as u32, 1);
            self.dispatch(Kernel::AttentionCombine, &params, &[parts, out], groups);
        }
    }

    /// Records a buffer copy (between kernels, in order).
    pub fn copy(&mut self, src: &wgpu::Buffer, src_offset: u64, dst: &wgpu::Buffer, dst_offset: u64, bytes: u64) {
        self.pass = None;
        self.encoder
            .copy_buffer_to_buffer(src, src_offset, dst, dst_offset, bytes);
    }

    /// Where `params` go: (page, byte offset, bytes), padded to the 16-byte size uniforms have.
    fn params_slot(&mut self, params: &[u32]) -> (usize, u64, u64) {
        let stride = self.gpu.params_stride;
        let size = params.len().div_ceil(4).max(1) * 16;
        if self
            .pages
            .last()
            .is_none_or(|(_, bytes)| bytes.len() + stride.max(size) > PARAMS_PAGE)
        {
            let page = self.gpu.params_pages.borrow_mut().pop().unwrap_or_else(|| {
                self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("kernel parameters"),
                    size: PARAMS_PAGE as u64,
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            });
            self.pages.push((page, Vec::with_capacity(PARAMS_PAGE)));
        }
        let page = self.pages.len() - 1;
        let bytes = &mut self.pages[page].1;
        let offset = bytes.len();
        bytes.extend_from_slice(bytemuck::cast_slice(params));
        bytes.resize(offset + stride.max(size), 0);
        (page, offset as u64, size as u64)
    }

    /// Writes the parameters and submits.
    pub fn submit(mut self) {
        self.pass = None;
        for (page, bytes) in &self.pages {
            self.gpu.queue.write_buffer(page, 0, bytes);
        }
        let profiler = self.gpu.profiler.as_ref().filter(|_| !self.timed.is_empty());
        if let Some(p) = profiler {
            p.resolve(&mut self.encoder, self.timed.len());
        }
        self.gpu.queue.submit([self.encoder.finish()]);
        if let Some(Err(e)) = profiler.map(|p| p.collect(&self.gpu.device, &self.timed)) {
            warn(&format!("profile: {e}"));
        }
        // Later writes into these pages reach the GPU after this submission has run. Reversed,
        // so the next submission takes them in the same order (and finds its bind groups).
        self.gpu
            .params_pages
            .borrow_mut()
            .extend(self.pages.into_iter().rev().map(|(page, _)| page));
    }

    /// Submits after copying `len` f32s of `buf` out, and returns them.
    pub async fn read(mut self, buf: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
        let gpu = self.gpu;
        let size = (len.max(1) * 4) as u64;
        let staging = match gpu.staging.take() {
            Some(b) if b.size() >= size => b,
            _ => gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
        };
        self.copy(buf, 0, &staging, 0, size);
        self.submit();
        readback::map(&gpu.device, &staging, size).await?;
        if gpu.is_lost() {
            return Err(Error::Gpu("the GPU device was lost".into()));
        }
        let view = staging
            .slice(..size)
            .get_mapped_range()
            .map_err(|e| Error::Gpu(format!("reading back a buffer: {e}")))?;
        let out = bytemuck::cast_slice::<u8, f32>(&view)[..len].to_vec();
        drop(view);
        staging.unmap();
        gpu.staging.replace(Some(staging));
        Ok(out)
    }
}

/// Keys per split and splits for [`Recorder::attention`]: whole tiles, enough of them that
/// the longest query's range (its window, or every position up to it) fits.
fn attention_splits(shape: &AttentionShape, first: usize, tokens: usize) -> (usize, usize) {
    if shape.heads * tokens >= SPLIT_BELOW {
        return (0, 1);
    }
    let span = shape.window.map_or(first + tokens, |w| w.min(first + tokens));
    let chunk = span.div_ceil(ATTENTION_MAX_SPLITS).next_multiple_of(ATTENTION_TILE);
    (chunk, span.div_ceil(chunk))
}

/// Floats the `parts` buffer of [`Recorder::attention`] needs for up to `tokens` queries.
pub fn attention_parts_len(shape: &AttentionShape, tokens: usize) -> usize {
    let split_tokens = tokens.min((SPLIT_BELOW - 1) / shape.heads);
    (shape.heads * split_tokens * ATTENTION_MAX_SPLITS * (shape.head_dim + 2)).max(1)
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

fn warn(message: &str) {
    #[cfg(target_arch = "wasm32")]
    web_sys::console::warn_1(&message.into());
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("{message}");
}

/// How many workgroups a dispatch needs: `n` in all, or a 2-D grid `(n, rows)`.
#[derive(Clone, Copy, Debug)]
pub enum Groups {
    /// `n` workgroups, laid out as `x × y` with `x ≤ 65535`; kernels rebuild the index
    /// from `workgroup_id.x + workgroup_id.y · num_workgroups.x`.
    Linear(u32, u32),
    Grid(u32, u32, u32),
}

impl Groups {
    /// Enough workgroups of `size` threads for `items` items, `z` times.
    pub fn cover(items: usize, size: usize, z: usize) -> Groups {
        Groups::Linear(items.div_ceil(size).max(1) as u32, z as u32)
    }

    fn dims(self) -> (u32, u32, u32) {
        match self {
            Groups::Linear(n, z) => {
                let x = n.min(MAX_GROUPS);
                (x, n.div_ceil(x), z)
            }
            Groups::Grid(x, y, z) => (x, y, z),
        }
    }
}

/// A weight matrix `[rows, cols]` on the GPU in the kernels' Q8 layout, in row chunks
/// that each fit one storage binding.
pub struct GpuMatrix {
    pub rows: usize,
    pub cols: usize,
    chunks: Vec<Chunk>,
}

struct Chunk {
    row0: usize,
    rows: usize,
    qs: wgpu::Buffer,
    scales: wgpu::Buffer,
}

impl GpuMatrix {
    pub fn upload(gpu: &Gpu, q: &Q8Rows, rows: usize, cols: usize) -> Result<GpuMatrix> {
        GpuMatrix::upload_in_chunks(gpu, q, rows, cols, gpu.max_binding as usize)
    }

    /// As [`Self::upload`], with chunks of at most `max_bytes` of int8 values (the tests
    /// use small chunks to cover the split that the 262k-row embedding needs).
    pub fn upload_in_chunks(gpu: &Gpu, q: &Q8Rows, rows: usize, cols: usize, max_bytes: usize) -> Result<GpuMatrix> {
        if !cols.is_multiple_of(32) || q.qs.len() * 4 != rows * cols {
            return Err(Error::Gpu(format!("a {rows}×{cols} matrix does not fit the Q8 layout")));
        }
        let per_chunk = (max_bytes / cols).clamp(1, rows.max(1));
        let chunks = (0..rows)
            .step_by(per_chunk)
            .map(|row0| {
                let n = per_chunk.min(rows - row0);
                Chunk {
                    row0,
                    rows: n,
                    qs: gpu.upload(&q.qs[row0 * cols / 4..(row0 + n) * cols / 4]),
                    scales: gpu.upload(&q.scales[row0 * cols / 32..(row0 + n) * cols / 32]),
                }
            })
            .collect();
        Ok(GpuMatrix { rows, cols, chunks })
    }

    /// A new matrix `W + B·A` in the same layout and chunks, for a low-rank pair `A`
    /// `[rank, cols]` and `B` `[rows, rank]` (row-major f32), computed on the GPU.
    /// `self` is kept: removing the adapter goes back to it exactly.
    pub fn merged(&self, gpu: &Gpu, (a, b, rank): (&[f32], &[f32], usize)) -> Result<GpuMatrix> {
        if a.len() != rank * self.cols || b.len() != self.rows * rank {
            return Err(Error::Gpu(format!(
                "a rank-{rank} pair does not fit a {}×{} matrix",
                self.rows, self.cols
            )));
        }
        let (a, b) = (gpu.upload(a), gpu.upload(b));
        let mut rec = gpu.recorder();
        let chunks = self
            .chunks
            .iter()
            .map(|c| {
                let blocks = c.rows * self.cols / 32;
                let out = Chunk {
                    row0: c.row0,
                    rows: c.rows,
                    qs: gpu.zeros(blocks * 8),
                    scales: gpu.zeros(blocks),
                };
                let params = [c.rows as u32, self.cols as u32, c.row0 as u32, rank as u32];
                rec.dispatch(
                    Kernel::MergeLora,
                    &params,
                    &[&c.qs, &c.scales, &a, &b, &out.qs, &out.scales],
                    Groups::cover(blocks, 64, 1),
                );
                out
            })
            .collect();
        rec.submit();
        Ok(GpuMatrix {
            rows: self.rows,
            cols: self.cols,
            chunks,
        })
    }

    /// Records `y = x · Wᵀ` for `tokens` rows of `x`; with `ids`, only those rows of W
    /// (`y` is then `tokens × ids.len()`).
    pub fn matmul(
        &self,
        rec: &mut Recorder,
        (x, tokens): (&wgpu::Buffer, usize),
        ids: Option<(&wgpu::Buffer, usize)>,
        y: &wgpu::Buffer,
    ) {
        let (id_buf, outputs, indexed) = match ids {
            Some((b, n)) => (b, n, 1),
            None => (&rec.gpu.no_ids, self.rows, 0),
        };
        for c in &self.chunks {
            // Without ids a chunk's outputs are its own rows; with ids every chunk scans them all.
            let (first, count) = match indexed {
                1 => (0, outputs),
                _ => (c.row0, c.rows),
            };
            let params = [
                c.rows as u32,
                self.cols as u32,
                c.row0 as u32,
                outputs as u32,
                indexed,
                0,
                first as u32,
                tokens as u32,
            ];
            // matmul_q8.wgsl's layouts: a row per invocation and 8 tokens per workgroup
            // row in prefill; 16 invocations per row in decode.
            let groups = match tokens {
                1 => Groups::cover(count, 64 / MATMUL_DECODE_SLICES, 1),
                _ => Groups::cover(count, 64, tokens.div_ceil(MATMUL_TOKENS)),
            };
            rec.dispatch(Kernel::MatmulQ8, &params, &[&c.qs, &c.scales, x, id_buf, y], groups);
        }
    }

    /// Records the embedding lookup of `ids` (`tokens` of them), times `scale`, into `y`.
    pub fn embed(&self, rec: &mut Recorder, ids: &wgpu::Buffer, tokens: usize, scale: f32, y: &wgpu::Buffer) {
        for c in &self.chunks {
            let params = [
                tokens as u32,
                self.cols as u32,
                c.row0 as u32,
                c.rows as u32,
                scale.to_bits(),
            ];
            rec.dispatch(
                Kernel::EmbedQ8,
                &params,
                &[&c.qs, &c.scales, ids, y],
                Groups::cover(tokens * self.cols, 64, 1),
            );
        }
    }
}
