//! Where a GPU's time goes (`anote --gpu-profile`). Each kernel runs in its own compute pass
//! with timestamps written at its start and end, and every submission is waited for and its
//! timestamps read back, so a profiled run is slower than a normal one: it tells which
//! kernels a step's time is in, not how fast a step is.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::task::{Context, Poll, Waker};

use crate::error::{Error, Result};

use super::readback;

/// Timestamps per submission (WebGPU's largest query set); kernels past half of it run untimed.
const QUERIES: u32 = 4096;

/// Kernels are told apart by name and workgroup count: the same kernel over another shape
/// (a projection against the LM head) is another row of the report.
type Key = (&'static str, (u32, u32, u32));

pub struct Profiler {
    queries: wgpu::QuerySet,
    resolved: wgpu::Buffer,
    readback: wgpu::Buffer,
    ns_per_tick: f64,
    /// Per key: (kernels run, nanoseconds).
    totals: RefCell<BTreeMap<Key, (u64, f64)>>,
    untimed: Cell<u64>,
}

impl Profiler {
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue) -> Profiler {
        let bytes = QUERIES as u64 * 8;
        let buffer = |usage| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("kernel timestamps"),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        Profiler {
            queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("kernel timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: QUERIES,
            }),
            resolved: buffer(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC),
            readback: buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST),
            ns_per_tick: queue.get_timestamp_period() as f64,
            totals: RefCell::default(),
            untimed: Cell::default(),
        }
    }

    /// The timestamps of a submission's `n`th kernel, or `None` when the query set is full.
    pub fn writes(&self, n: usize) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        let first = 2 * n as u32;
        if first + 1 >= QUERIES {
            self.untimed.set(self.untimed.get() + 1);
            return None;
        }
        Some(wgpu::ComputePassTimestampWrites {
            query_set: &self.queries,
            beginning_of_pass_write_index: Some(first),
            end_of_pass_write_index: Some(first + 1),
        })
    }

    /// Records copying the timestamps of `n` kernels to where [`Profiler::collect`] reads them.
    pub fn resolve(&self, encoder: &mut wgpu::CommandEncoder, n: usize) {
        let queries = 2 * n as u32;
        encoder.resolve_query_set(&self.queries, 0..queries, &self.resolved, 0);
        encoder.copy_buffer_to_buffer(&self.resolved, 0, &self.readback, 0, queries as u64 * 8);
    }

    /// After the submission: adds each kernel's time to its row.
    pub fn collect(&self, device: &wgpu::Device, kernels: &[(&'static str, (u32, u32, u32))]) -> Result<()> {
        let bytes = kernels.len() as u64 * 16;
        // Natively the map waits for the GPU inside its first poll; the browser would answer
        // later, from its event loop, which a profiled submission cannot wait for.
        let mut mapped = std::pin::pin!(readback::map(device, &self.readback, bytes));
        match mapped.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(r) => r?,
            Poll::Pending => return Err(Error::Gpu("profiling kernels needs the native build".into())),
        }
        let view = self
            .readback
            .slice(..bytes)
            .get_mapped_range()
            .map_err(|e| Error::Gpu(format!("reading kernel timestamps: {e}")))?;
        let ticks: &[u64] = bytemuck::cast_slice(&view);
        let mut totals = self.totals.borrow_mut();
        for (i, &(kernel, groups)) in kernels.iter().enumerate() {
            let row = totals.entry((kernel, groups)).or_default();
            row.0 += 1;
            row.1 += ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * self.ns_per_tick;
        }
        drop(view);
        self.readback.unmap();
        Ok(())
    }

    /// A table of kernel time by kernel and shape, largest first.
    pub fn report(&self) -> String {
        let totals = self.totals.borrow();
        let all: f64 = totals.values().map(|r| r.1).sum();
        let mut rows: Vec<_> = totals.iter().collect();
        rows.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
        let mut out = format!(
            "GPU time by kernel: {:.1} ms in {} kernels ({} untimed)\n| kernel | workgroups | kernels | total ms | share | mean µs |\n|---|---|---|---|---|---|\n",
            all / 1e6,
            totals.values().map(|r| r.0).sum::<u64>(),
            self.untimed.get()
        );
        for ((name, (x, y, z)), (n, ns)) in rows {
            out += &format!(
                "| {name} | {x}×{y}×{z} | {n} | {:.2} | {:.1} % | {:.1} |\n",
                ns / 1e6,
                100.0 * ns / all.max(1.0),
                ns / 1e3 / *n as f64
            );
        }
        out
    }
}

impl Drop for Profiler {
    /// The report goes out when the device does, at the end of the run that asked for it.
    fn drop(&mut self) {
        eprint!("{}", self.report());
    }
}
