//! The threads a load works on: how many (`QWGPU_LOAD_THREADS`), and one
//! way of spreading a list of jobs over them. The GPU upload's staging fill
//! and the 4-bit repack ([`PackOptions::threads`](crate::PackOptions::threads))
//! both use these, so one setting governs every copy of a load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Threads a load copies and repacks on: `QWGPU_LOAD_THREADS` if set, else
/// the available cores up to 8 (a host's memory bandwidth is reached well
/// before that many copy threads). `1` works on the loading thread alone;
/// `0` also means one thread here (a GPU upload reads it as "no staging
/// ring", see the model crate). A web page (wasm32) has one thread: 0.
pub fn load_threads() -> usize {
    if cfg!(target_arch = "wasm32") {
        return 0;
    }
    std::env::var("QWGPU_LOAD_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(8)
        })
}

/// Runs `work` on every job, on up to `threads` threads (the calling thread
/// is one of them; `0` and `1` run everything on it, in order). Jobs are
/// handed out in order, one at a time, so jobs of similar size balance. The
/// first error stops the handing out and is returned (jobs already running
/// finish); a job that panics panics the caller.
pub fn try_for_each<T, E>(
    threads: usize,
    jobs: Vec<T>,
    work: impl Fn(T) -> Result<(), E> + Sync,
) -> Result<(), E>
where
    T: Send,
    E: Send,
{
    let threads = threads.min(jobs.len());
    if threads <= 1 {
        return jobs.into_iter().try_for_each(work);
    }
    let queue = Mutex::new(jobs.into_iter());
    let stop = AtomicBool::new(false);
    let first_error: Mutex<Option<E>> = Mutex::new(None);
    let worker = || {
        while !stop.load(Ordering::Relaxed) {
            // A poisoned queue means another worker panicked: the scope
            // re-raises that panic, so this worker just stops.
            let Some(job) = queue.lock().ok().and_then(|mut q| q.next()) else {
                break;
            };
            if let Err(e) = work(job) {
                stop.store(true, Ordering::Relaxed);
                if let Ok(mut slot) = first_error.lock() {
                    slot.get_or_insert(e);
                }
            }
        }
    };
    std::thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(worker);
        }
        worker();
    });
    match first_error.into_inner() {
        Ok(Some(e)) => Err(e),
        // Poisoned only by a panicking worker, which the scope re-raised.
        Ok(None) | Err(_) => Ok(()),
    }
}

/// `work` of every item on up to `threads` threads, the results in the
/// items' order; every item is worked on, and the error returned is the
/// first in that order (whatever the threads), as a loop would return it.
pub(crate) fn map_in_order<T, R, E>(
    threads: usize,
    items: &[T],
    work: impl Fn(&T) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E>
where
    T: Sync,
    R: Send,
    E: Send,
{
    if threads.min(items.len()) <= 1 {
        return items.iter().map(work).collect();
    }
    let mut slots: Vec<Option<Result<R, E>>> = (0..items.len()).map(|_| None).collect();
    let jobs: Vec<(&T, &mut Option<Result<R, E>>)> = items.iter().zip(slots.iter_mut()).collect();
    let done: Result<(), std::convert::Infallible> = try_for_each(threads, jobs, |(item, slot)| {
        *slot = Some(work(item));
        Ok(())
    });
    match done {
        // Every job ran (none fails), so every slot is filled.
        Ok(()) => slots.into_iter().flatten().collect(),
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn every_job_runs_once_on_any_thread_count() {
        for threads in [0, 1, 2, 3, 8, 100] {
            let hits: Vec<AtomicUsize> = (0..37).map(|_| AtomicUsize::new(0)).collect();
            try_for_each(threads, (0..37).collect(), |i: usize| {
                hits[i].fetch_add(1, Ordering::Relaxed);
                Ok::<(), ()>(())
            })
            .expect("no job fails");
            assert!(
                hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                "{threads} threads"
            );
        }
    }

    #[test]
    fn jobs_get_disjoint_mutable_slices() {
        let mut out = vec![0u32; 1000];
        let jobs: Vec<(usize, &mut [u32])> = out.chunks_mut(7).enumerate().collect();
        try_for_each(4, jobs, |(i, s): (usize, &mut [u32])| {
            s.fill(i as u32 + 1);
            Ok::<(), ()>(())
        })
        .expect("no job fails");
        assert!(out
            .iter()
            .enumerate()
            .all(|(k, &v)| v == (k / 7) as u32 + 1));
    }

    #[test]
    fn mapped_results_keep_their_order_and_the_first_error_in_order_wins() {
        let items: Vec<usize> = (0..50).collect();
        for threads in [0, 1, 2, 7] {
            let got = map_in_order(threads, &items, |&i| Ok::<usize, usize>(i * i));
            assert_eq!(got, Ok(items.iter().map(|i| i * i).collect()), "{threads}");
            // Items 10 and 40 fail; 40 may fail first on another thread.
            let got = map_in_order(threads, &items, |&i| {
                if i == 10 || i == 40 {
                    Err(i)
                } else {
                    Ok(i)
                }
            });
            assert_eq!(got, Err(10), "{threads}");
        }
    }

    #[test]
    fn the_first_error_is_returned_and_stops_the_rest() {
        let ran = AtomicUsize::new(0);
        let r = try_for_each(2, (0..10_000).collect(), |i: usize| {
            ran.fetch_add(1, Ordering::Relaxed);
            if i == 3 {
                Err(format!("job {i}"))
            } else {
                Ok(())
            }
        });
        assert_eq!(r, Err("job 3".to_string()));
        assert!(ran.load(Ordering::Relaxed) < 10_000, "handing out stopped");
        // On one thread the jobs after the failing one never run.
        let ran = AtomicUsize::new(0);
        let r = try_for_each(1, (0..10).collect(), |i: usize| {
            ran.fetch_add(1, Ordering::Relaxed);
            if i == 3 {
                Err(i)
            } else {
                Ok(())
            }
        });
        assert_eq!((r, ran.load(Ordering::Relaxed)), (Err(3), 4));
    }
}
