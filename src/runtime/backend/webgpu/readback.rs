//! Waiting for a buffer to map. Natively the device is polled until the copy is done; in
//! the browser the map callback comes from the event loop, so the wait is a future that
//! the callback completes (the engine's API is async for this reason).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::error::{Error, Result};

#[derive(Default)]
struct Slot {
    done: Option<std::result::Result<(), wgpu::BufferAsyncError>>,
    waker: Option<Waker>,
}

struct Mapped(Arc<Mutex<Slot>>);

impl Future for Mapped {
    type Output = Result<()>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match slot.done.take() {
            Some(r) => Poll::Ready(r.map_err(|e| Error::Gpu(format!("reading back a buffer: {e}")))),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Maps the first `size` bytes of `buf` for reading.
pub async fn map(device: &wgpu::Device, buf: &wgpu::Buffer, size: u64) -> Result<()> {
    let slot = Arc::new(Mutex::new(Slot::default()));
    let s = slot.clone();
    buf.slice(..size).map_async(wgpu::MapMode::Read, move |r| {
        let mut slot = s.lock().unwrap_or_else(|e| e.into_inner());
        slot.done = Some(r);
        if let Some(w) = slot.waker.take() {
            w.wake();
        }
    });
    #[cfg(not(target_arch = "wasm32"))]
    device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
    #[cfg(target_arch = "wasm32")]
    let _ = device;
    Mapped(slot).await
}
