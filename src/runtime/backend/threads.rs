//! The threads the CPU ops share their work among. Natively these are candle's pool (its
//! matrix kernels already use it); in the threaded browser build (feature `threads`, wasm
//! with atomics) the calling thread and the Web Workers that `initThreadPool` started over
//! the engine's shared memory ([`web`]); in the single-threaded browser build, none: the
//! work runs in place.
//!
//! Every op splits its work by output rows, each row computed as it would be alone, so
//! the results do not depend on how many threads there are.

use std::sync::Mutex;

/// Whether the ops share work among a pool of Web Workers (the threaded browser build).
pub const WEB_WORKERS: bool = cfg!(all(target_arch = "wasm32", feature = "threads"));

/// How many threads share an op's work.
pub fn count() -> usize {
    // The pool's workers and the calling thread. (candle's `get_num_threads` reads the
    // environment, and may read /proc/cpuinfo, on every call.)
    #[cfg(not(target_arch = "wasm32"))]
    return candle_core::utils::barrier_pool().n_workers() + 1;
    #[cfg(all(target_arch = "wasm32", feature = "threads"))]
    return web::pool().helpers + 1;
    #[cfg(all(target_arch = "wasm32", not(feature = "threads")))]
    return 1;
}

/// Calls `f(i)` for every `i` in `0..tasks`, the tasks shared out among the threads.
pub fn run(tasks: usize, f: impl Fn(usize) + Sync) {
    #[cfg(not(target_arch = "wasm32"))]
    candle_core::utils::barrier_pool().execute_chunked(tasks, |range| range.for_each(&f));
    #[cfg(all(target_arch = "wasm32", feature = "threads"))]
    web::pool().run(tasks, &f);
    #[cfg(all(target_arch = "wasm32", not(feature = "threads")))]
    (0..tasks).for_each(f);
}

/// `[f(0), f(1), …, f(n - 1)]`, the calls shared out among the threads.
pub fn map<R: Send>(n: usize, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let out: Vec<Mutex<Option<R>>> = (0..n).map(|_| Mutex::new(None)).collect();
    run(n, |i| {
        *out[i].lock().expect("each result is written by one task") = Some(f(i))
    });
    out.into_iter()
        .map(|r| r.into_inner().expect("the tasks are done").expect("every task ran"))
        .collect()
}

/// Calls `f(i, row)` for every `width`-wide row `i` of `out`, the rows shared out among
/// the threads in contiguous runs.
pub fn rows_mut(out: &mut [f32], width: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    row_runs_mut(out, width, each_row(width, f));
}

/// Runs of rows an op is cut into, per thread. The browser's pool hands runs out as its
/// threads come free, and its threads share the cores with the page's own: with one run
/// each, an op waited for any thread set aside, and four even that out (measured on the
/// e-mail thread in `bench/documents.html` with 2 threads). candle's pool natively gives
/// each thread its share up front.
const RUNS_PER_THREAD: usize = if WEB_WORKERS { 4 } else { 1 };

/// Calls `f(first, run)` for runs of whole `width`-wide rows of `out`, [`RUNS_PER_THREAD`]
/// runs per thread (`first`: the run's first row): for work that takes several rows at a time.
pub fn row_runs_mut(out: &mut [f32], width: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    if width == 0 {
        return; // no rows (a product for no tokens)
    }
    let rows = out.len() / width;
    let per = rows.div_ceil(count() * RUNS_PER_THREAD).max(1);
    let ends: Vec<usize> = (per..rows + per).step_by(per).map(|e| e.min(rows)).collect();
    runs_mut(out, width, &ends, f);
}

/// A run's task that calls `f(i, row)` for each of its rows.
fn each_row(width: usize, f: impl Fn(usize, &mut [f32]) + Sync) -> impl Fn(usize, &mut [f32]) + Sync {
    move |first, run| {
        for (i, row) in run.chunks_exact_mut(width).enumerate() {
            f(first + i, row);
        }
    }
}

/// [`rows_mut`] for rows of unequal work: the runs are cut where the sum of `cost(i)`
/// reaches each run's share (causal attention's rows grow with their position).
pub fn rows_mut_by_cost(
    out: &mut [f32],
    width: usize,
    cost: impl Fn(usize) -> usize,
    f: impl Fn(usize, &mut [f32]) + Sync,
) {
    if width == 0 {
        return;
    }
    let rows = out.len() / width;
    let runs = count() * RUNS_PER_THREAD;
    let total: usize = (0..rows).map(&cost).sum();
    let mut ends = Vec::with_capacity(runs);
    let mut sum = 0;
    for i in 0..rows {
        sum += cost(i);
        // Run k ends once the rows so far hold k + 1 shares of the work.
        if sum * runs >= (ends.len() + 1) * total.max(1) || i + 1 == rows {
            ends.push(i + 1);
        }
    }
    runs_mut(out, width, &ends, each_row(width, f));
}

/// `f(first, run)` for each run of rows (up to each of `ends`), a task of its own.
fn runs_mut(out: &mut [f32], width: usize, ends: &[usize], f: impl Fn(usize, &mut [f32]) + Sync) {
    let mut runs = Vec::with_capacity(ends.len());
    let (mut rest, mut start) = (out, 0);
    for &end in ends {
        let (run, tail) = rest.split_at_mut((end - start) * width);
        // One lock per run, taken once by the one task that writes it.
        runs.push((start, Mutex::new(run)));
        (rest, start) = (tail, end);
    }
    run(runs.len(), |r| {
        let (first, run) = &runs[r];
        f(*first, &mut run.lock().expect("each run is written by one task"));
    });
}

/// The threaded browser build's pool: the calling thread (the engine's worker) and one
/// helper per rayon thread, which stays on it for good. rayon itself would inject each op
/// into its queue and wake sleeping workers, a cost paid ~150 times a decoding step that
/// measured no faster than one thread; here helpers spin between ops (the gaps are short)
/// and sleep only after a while without work.
#[cfg(all(target_arch = "wasm32", feature = "threads"))]
mod web {
    use std::cell::UnsafeCell;
    use std::sync::atomic::{AtomicUsize, Ordering::*};
    use std::sync::{Condvar, Mutex, OnceLock};

    /// Spins before a helper sleeps: about a millisecond, far longer than the gaps between
    /// the ops of a forward pass.
    const SPINS: u32 = 1 << 20;

    pub struct Pool {
        pub helpers: usize,
        /// Bumped for each job; helpers wait for it to move.
        generation: AtomicUsize,
        job: UnsafeCell<Job>,
        /// The next task to take, and the helpers still inside the current job.
        next: AtomicUsize,
        busy: AtomicUsize,
        sleepers: AtomicUsize,
        wake: (Mutex<()>, Condvar),
        /// One job at a time (there is one engine thread; this keeps a second caller safe).
        caller: Mutex<()>,
    }

    /// The current job: `tasks` calls of the closure behind `data`.
    #[derive(Clone, Copy)]
    struct Job {
        call: unsafe fn(*const (), usize),
        data: *const (),
        tasks: usize,
    }

    // SAFETY: `job` is written only by the caller holding `caller`, while no helper reads it
    // (all are outside a job: `busy` is 0), and published by the `generation` bump.
    unsafe impl Sync for Pool {}
    unsafe impl Send for Pool {}

    pub fn pool() -> &'static Pool {
        static POOL: OnceLock<&'static Pool> = OnceLock::new();
        POOL.get_or_init(|| {
            let pool: &'static Pool = Box::leak(Box::new(Pool {
                helpers: rayon::current_num_threads(),
                generation: AtomicUsize::new(0),
                job: UnsafeCell::new(Job {
                    call: |_, _| {},
                    data: std::ptr::null(),
                    tasks: 0,
                }),
                next: AtomicUsize::new(0),
                busy: AtomicUsize::new(0),
                sleepers: AtomicUsize::new(0),
                wake: (Mutex::new(()), Condvar::new()),
                caller: Mutex::new(()),
            }));
            for _ in 0..pool.helpers {
                rayon::spawn(move || pool.help());
            }
            pool
        })
    }

    impl Pool {
        pub fn run<F: Fn(usize) + Sync>(&self, tasks: usize, f: &F) {
            unsafe fn call<F: Fn(usize)>(data: *const (), i: usize) {
                // SAFETY: `data` is the `&F` of the `run` that is still waiting below.
                unsafe { (*(data as *const F))(i) }
            }
            let _one = self.caller.lock().expect("the pool's caller lock is never poisoned");
            // SAFETY: see `impl Sync for Pool`.
            unsafe {
                *self.job.get() = Job {
                    call: call::<F>,
                    data: f as *const F as *const (),
                    tasks,
                }
            };
            self.next.store(0, SeqCst);
            self.busy.store(self.helpers, SeqCst);
            self.generation.fetch_add(1, SeqCst);
            if self.sleepers.load(SeqCst) > 0 {
                let _lock = self.wake.0.lock().expect("never poisoned");
                self.wake.1.notify_all();
            }
            self.work();
            // `f` must outlive every helper's use of it.
            while self.busy.load(Acquire) > 0 {
                std::hint::spin_loop();
            }
        }

        /// Takes tasks of the current job until none is left.
        fn work(&self) {
            // SAFETY: read after the generation bump that published it (see `run`).
            let job = unsafe { *self.job.get() };
            loop {
                let i = self.next.fetch_add(1, AcqRel);
                if i >= job.tasks {
                    return;
                }
                unsafe { (job.call)(job.data, i) };
            }
        }

        /// A helper's life: wait for a job, work, say so, again.
        fn help(&self) {
            // Not the current value: a helper that starts late must still take the first job.
            let mut seen = 0;
            loop {
                let mut spins = 0u32;
                while self.generation.load(Acquire) == seen {
                    spins += 1;
                    if spins < SPINS {
                        std::hint::spin_loop();
                        continue;
                    }
                    // The caller bumps `generation` before it reads `sleepers`, and this
                    // helper counts itself before it reads `generation`: one sees the other.
                    let mut lock = self.wake.0.lock().expect("never poisoned");
                    self.sleepers.fetch_add(1, SeqCst);
                    while self.generation.load(SeqCst) == seen {
                        lock = self.wake.1.wait(lock).expect("never poisoned");
                    }
                    self.sleepers.fetch_sub(1, SeqCst);
                }
                seen = self.generation.load(Acquire);
                self.work();
                self.busy.fetch_sub(1, Release);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_written_once_with_its_own_index() {
        for rows in [0, 1, 3, 17, 64] {
            let mut out = vec![0f32; rows * 3];
            rows_mut(&mut out, 3, |i, row| row.iter_mut().for_each(|v| *v += i as f32));
            let want: Vec<f32> = (0..rows).flat_map(|i| [i as f32; 3]).collect();
            assert_eq!(out, want);
            let mut out = vec![0f32; rows * 3];
            rows_mut_by_cost(
                &mut out,
                3,
                |i| i * i,
                |i, row| row.iter_mut().for_each(|v| *v += i as f32),
            );
            assert_eq!(out, want, "by cost");
        }
    }
}
