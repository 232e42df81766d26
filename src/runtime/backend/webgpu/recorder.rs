//! Recording a submission: kernels in one compute pass, their parameters in uniform pages,
//! bind groups reused from the step before.

use super::device::{warn, BindKey, Gpu};
use super::kernel::Kernel;
use super::readback;
use crate::error::{Error, Result};

/// Most workgroups in one dispatch dimension (WebGPU's default limit).
const MAX_GROUPS: u32 = 65_535;
/// Bytes of kernel parameters per uniform page (one page holds a few hundred kernels' worth).
const PARAMS_PAGE: usize = 64 * 1024;
/// Bind groups kept for reuse: a few forwards' worth (about 550 kernels each).
const MAX_BIND_GROUPS: usize = 8192;

/// One submission being recorded. Kernels share one compute pass (closed only for a
/// buffer copy), and their parameters go into uniform pages written once at submit, so
/// recording a kernel allocates nothing on the GPU.
pub struct Recorder<'g> {
    pub(super) gpu: &'g Gpu,
    encoder: wgpu::CommandEncoder,
    pass: Option<wgpu::ComputePass<'static>>,
    /// Pages in use, each with the parameter bytes to write into it.
    pages: Vec<(wgpu::Buffer, Vec<u8>)>,
    /// When profiling: the kernels recorded with timestamps, in order.
    timed: Vec<(&'static str, (u32, u32, u32))>,
}

impl Gpu {
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

impl Recorder<'_> {
    /// Records kernel `K`: `params` at binding 0, then `buffers` at bindings 1…, over
    /// `groups` workgroups (spread over two dimensions when needed).
    pub(super) fn dispatch<K: Kernel>(&mut self, params: &K::Params, buffers: &[&wgpu::Buffer], groups: Groups) {
        let (page, offset, size) = self.params_slot(bytemuck::bytes_of(params));
        let (pipeline, layout) = &self.gpu.pipelines[K::NAME];
        let page = &self.pages[page].0;
        let key: BindKey = (
            K::NAME,
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
            self.timed.push((K::NAME, (x, y, z)));
            self.pass = None;
        }
    }

    /// Records a buffer copy (between kernels, in order).
    pub fn copy(&mut self, src: &wgpu::Buffer, src_offset: u64, dst: &wgpu::Buffer, dst_offset: u64, bytes: u64) {
        self.pass = None;
        self.encoder
            .copy_buffer_to_buffer(src, src_offset, dst, dst_offset, bytes);
    }

    /// Where `params` go: (page, byte offset, bytes), padded to the 16-byte size uniforms
    /// have; each slot starts on the adapter's uniform offset alignment.
    fn params_slot(&mut self, params: &[u8]) -> (usize, u64, u64) {
        let size = params.len().div_ceil(16).max(1) * 16;
        let slot = size.next_multiple_of(self.gpu.params_stride);
        if self
            .pages
            .last()
            .is_none_or(|(_, bytes)| bytes.len() + slot > PARAMS_PAGE)
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
        bytes.extend_from_slice(params);
        bytes.resize(offset + slot, 0);
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
