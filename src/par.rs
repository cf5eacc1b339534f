//! Fork-join for short parallel sections (a training step's GEMMs, SGD updates and gradient
//! estimators), on candle's barrier pool.
//!
//! Problem: a step of the table4 MLP is a dozen short parallel sections (each GEMM split in
//! two, the SGD update of each weight, the estimator's pass over each neural gradient)
//! separated by serial work of tens of microseconds. rayon's
//! workers fall asleep in those gaps, and waking one costs 20–70 µs here (a futex and a
//! reschedule in a VM) — measured as the second half of a split GEMM starting that much later
//! than the first. candle's barrier pool spins for a while before parking, so its workers are
//! still awake at the next section; and with every section of the step on it, no second pool
//! competes with it for the cores.
//!
//! Guarantee: [`fork`]`(parts, f)` returns after `f(i)` has run exactly once for every `i` in
//! `0..parts`, on at most `min(parts, rayon's current pool size, barrier pool size)` threads
//! (so `--threads 1` stays serial); the calling thread takes part. A `fork` inside a `fork` runs
//! serially. The closures must not call candle ops that use the barrier pool themselves
//! (elementwise ops on ≥ 64 Ki elements): the pool serves one caller at a time. Nor should they
//! use rayon: called from a barrier-pool worker, a rayon loop queues on rayon's global pool and
//! waits for it. [`chunks_mut`] is the parallel loop to use instead.
//!
//! Cost: one wake-up of the spinning workers and one barrier per call.

use std::cell::Cell;
use std::sync::{Mutex, OnceLock};

thread_local! {
    static IN_FORK: Cell<bool> = const { Cell::new(false) };
}

/// Threads of candle's barrier pool, the caller included (counted once).
fn pool_width() -> usize {
    static WIDTH: OnceLock<usize> = OnceLock::new();
    *WIDTH.get_or_init(|| {
        let seen = std::sync::atomic::AtomicUsize::new(0);
        candle_core::utils::barrier_pool().execute(|tid| {
            seen.fetch_max(tid + 1, std::sync::atomic::Ordering::Relaxed);
        });
        seen.into_inner().max(1)
    })
}

/// How many threads a [`fork`] of `parts` would use here.
pub(crate) fn width(parts: usize) -> usize {
    if IN_FORK.with(|f| f.get()) {
        return 1;
    }
    parts
        .min(rayon::current_num_threads())
        .min(pool_width())
        .max(1)
}

/// Runs `f(i)` for every `i` in `0..parts`, split over the barrier pool's threads.
pub(crate) fn fork(parts: usize, f: impl Fn(usize) + Sync) {
    let w = width(parts);
    if w <= 1 {
        (0..parts).for_each(f);
        return;
    }
    let run = |slot: usize| {
        IN_FORK.with(|flag| flag.set(true));
        let mut i = slot;
        while i < parts {
            f(i);
            i += w;
        }
        IN_FORK.with(|flag| flag.set(false));
    };
    let n = pool_width() - 1;
    candle_core::utils::barrier_pool().execute(|tid| {
        // The caller (tid n) takes slot 0, worker t slot t + 1; extra workers idle.
        let slot = if tid == n { 0 } else { tid + 1 };
        if slot < w {
            run(slot);
        }
    });
}

/// `f(i, chunk)` for every `chunk`-long piece of `data` (the last may be shorter), `i` its
/// index; each thread of a [`fork`] takes one contiguous run of pieces. Which piece gets which
/// index does not depend on the thread count.
pub(crate) fn chunks_mut<T: Send>(
    data: &mut [T],
    chunk: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let chunk = chunk.max(1);
    let pieces = data.len().div_ceil(chunk);
    let w = width(pieces);
    if w <= 1 {
        data.chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
        return;
    }
    let per = pieces.div_ceil(w);
    let runs: Vec<Mutex<&mut [T]>> = data.chunks_mut(per * chunk).map(Mutex::new).collect();
    fork(runs.len(), |r| {
        let mut run = runs[r].lock().unwrap_or_else(|p| p.into_inner());
        for (j, c) in run.chunks_mut(chunk).enumerate() {
            f(r * per + j, c);
        }
    });
}

/// `(a(), b())`, the two run side by side by [`fork`] (one after the other when it is serial).
pub(crate) fn join<A: Send, B: Send>(
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    let a = Mutex::new((Some(a), None));
    let b = Mutex::new((Some(b), None));
    fork(2, |i| {
        if i == 0 {
            let mut s = a.lock().unwrap_or_else(|p| p.into_inner());
            s.1 = s.0.take().map(|f| f());
        } else {
            let mut s = b.lock().unwrap_or_else(|p| p.into_inner());
            s.1 = s.0.take().map(|f| f());
        }
    });
    let done = "fork runs every part once (a panic in a part propagates)";
    let a = a.into_inner().unwrap_or_else(|p| p.into_inner()).1;
    let b = b.into_inner().unwrap_or_else(|p| p.into_inner()).1;
    (a.expect(done), b.expect(done))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_part_runs_once_nested_and_in_any_pool() {
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                for parts in [0, 1, 2, 3, 7] {
                    let hits: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
                    let inner = AtomicUsize::new(0);
                    fork(parts, |i| {
                        hits[i].fetch_add(1, Ordering::Relaxed);
                        fork(3, |_| {
                            inner.fetch_add(1, Ordering::Relaxed);
                        });
                    });
                    assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
                    assert_eq!(inner.load(Ordering::Relaxed), 3 * parts);
                }
                assert!(width(8) <= threads);
                let (a, b) = join(|| 1 + 1, || "two");
                assert_eq!((a, b), (2, "two"));
                // Every element once, with the index of its piece.
                let mut v = vec![0usize; 103];
                chunks_mut(&mut v, 10, |i, c| c.iter_mut().for_each(|x| *x += i + 1));
                assert_eq!(v, (0..103).map(|e| e / 10 + 1).collect::<Vec<_>>());
            });
        }
    }
}

/// A pointer into one buffer shared by the parts of a parallel loop (a [`fork`], a rayon
/// loop), each of which writes elements no other part touches. The caller's `unsafe` blocks
/// state which elements a part writes; the buffer must outlive the loop.
#[derive(Clone, Copy)]
pub struct SharedMut<T>(*mut T);

// the pointer is only dereferenced by parts that write disjoint elements of a buffer
// that outlives them (the contract above), and T is Send, so moving the writes to other
// threads is sound.
// SAFETY: sound by the contract just stated.
unsafe impl<T: Send> Sync for SharedMut<T> {}
// SAFETY: as for Sync: a copy on another thread writes only its own part's elements.
unsafe impl<T: Send> Send for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// Share `buf`'s elements.
    pub fn new(buf: &mut [T]) -> Self {
        SharedMut(buf.as_mut_ptr())
    }

    /// The buffer's first element.
    pub fn get(self) -> *mut T {
        self.0
    }
}
