//! A few background threads that decompress ahead of sequential readers.
//!
//! A FUSE read of a compressed layer spends nearly all its time inflating. When one file is read
//! in order, the segments after the current one (from one restart point to the next) can be
//! inflated independently, each from its own access point, so they are handed to these threads
//! and land in the chunk cache before the reader gets there: a single sequential reader then
//! uses every core instead of one (`chunk_cache::ChunkedReader::read_ahead` decides what to
//! fetch; this module only runs the jobs).
//!
//! The pool is global and small (one thread per core, at most [`MAX_THREADS`]); threads start
//! on the first job and live as long as the process. Work is best effort: when
//! [`MAX_QUEUED`] jobs are waiting a new one is refused, because a reader that far behind will
//! decompress for itself anyway.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};

/// Most threads the pool starts, whatever the core count.
pub const MAX_THREADS: usize = 4;
/// Most jobs waiting for a thread.
pub const MAX_QUEUED: usize = 16;

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    queue: Mutex<VecDeque<Job>>,
    ready: Condvar,
}

static POOL: OnceLock<Option<&'static Pool>> = OnceLock::new();

impl Pool {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Job>> {
        // Jobs run outside the lock, so a poisoned queue is still a consistent queue.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn work(&'static self) {
        loop {
            let job = {
                let mut q = self.lock();
                loop {
                    match q.pop_front() {
                        Some(job) => break job,
                        None => q = self.ready.wait(q).unwrap_or_else(|e| e.into_inner()),
                    }
                }
            };
            // A panicking job must not take its thread with it (the pool never restarts one).
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                log::error!("a read-ahead job panicked; continuing");
            }
        }
    }
}

/// Number of threads for this machine: one per core, within `1..=MAX_THREADS`.
fn thread_count() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_THREADS)
}

/// The pool, started on first use; `None` if not even one thread could be started.
fn pool() -> Option<&'static Pool> {
    *POOL.get_or_init(|| {
        let pool: &'static Pool = Box::leak(Box::new(Pool {
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
        }));
        let started = (0..thread_count())
            .filter(|i| {
                std::thread::Builder::new()
                    .name(format!("imgfs-readahead-{i}"))
                    .spawn(move || pool.work())
                    .map_err(|e| log::warn!("cannot start a read-ahead thread: {e}"))
                    .is_ok()
            })
            .count();
        (started > 0).then_some(pool)
    })
}

/// Queues `job` to run on a pool thread. Returns false (and drops the job) when the queue is
/// full or no thread could be started.
pub fn submit(job: impl FnOnce() + Send + 'static) -> bool {
    let Some(pool) = pool() else { return false };
    let mut q = pool.lock();
    if q.len() >= MAX_QUEUED {
        return false;
    }
    q.push_back(Box::new(job));
    drop(q);
    pool.ready.notify_one();
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn jobs_run_and_a_panic_does_not_stop_the_pool() {
        assert!(submit(|| panic!("job panics on purpose")));
        let (tx, rx) = mpsc::channel();
        for i in 0..4 {
            let tx = tx.clone();
            assert!(submit(move || tx.send(i).unwrap_or(())));
        }
        let mut got: Vec<i32> = (0..4)
            .map(|_| rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap())
            .collect();
        got.sort();
        assert_eq!(got, vec![0, 1, 2, 3]);
    }
}
