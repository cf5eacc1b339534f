//! Memory of a training run is flat in the number of steps (issue 12).
//!
//! A counting global allocator (this test binary's own) tracks the bytes live on the heap. For
//! every mask kind, every gradient estimator and both optimisers, a small model trains through
//! [`Session::step`] — the trainer's own loop, mask refreshes included — and the live bytes after
//! step 20 and after step 200 are compared. Anything kept across steps that still holds the
//! autograd graph (a momentum buffer built from a gradient that was not detached, a captured
//! tensor) keeps a whole step alive per step: tens of kilobytes to megabytes per step here, so
//! megabytes over 180 steps, far above the slack. Timing does not enter the test.
//!
//! Live bytes are read after steps 20, 110 and 200. A retained graph grows in both halves;
//! a one-time allocation made late (a worker thread's first gemm packing buffer, 2 MiB, which
//! CI saw appear after step 20 on the first case) shows in one half only. So a case fails when
//! *both* halves grow by more than the slack. A warm-up session per model runs first, so the
//! process's lazily allocated buffers exist before any case is measured.
//!
//! One test function, so nothing else allocates in this process while it measures. It also
//! checks that the peak resident size the reports give (`peak_rss_mb`) sees a touched allocation.

use candle_core::Device;
use masklab::train::data::synthetic;
use masklab::train::trainer::{OptimizerKind, Session, TrainConfig};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is updated.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Live heap bytes may grow over 90 steps by at most this much: the per-step state is replaced,
/// never accumulated, so only allocator-internal noise remains.
const SLACK_BYTES: isize = 256 * 1024;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

#[test]
fn live_memory_does_not_grow_with_steps() {
    // First the OS's figure that `peak_rss_mb` reports: 64 MiB touched must show in the peak.
    if let Some(before) = masklab::memory::rss_mb() {
        let v = std::hint::black_box(vec![1u8; 64 << 20]);
        let peak = masklab::memory::peak_rss_mb().unwrap_or(0.0);
        assert!(
            peak >= before + 60.0,
            "peak {peak} MB after touching 64 MiB from {before} MB"
        );
        drop(v);
    }
    // 2048 synthetic examples, batch 16: 128 steps per epoch, 2 epochs = 256 steps.
    let data = synthetic(2048, 0);
    let dev = Device::Cpu;
    let mut cases = Vec::new();
    for mask in [
        "dense",
        "unstructured:0.5",
        "nm:2:4",
        "transposable:2:4",
        "transposable:4:8",
    ] {
        for grad in [
            "dense",
            "greedy:1:2",
            "greedy:2:4",
            "mvue_1to2:1:2",
            "mvue:2:4",
            "approx_mvue_2to4:2:4",
        ] {
            for opt in [OptimizerKind::Sgd, OptimizerKind::AdamW] {
                cases.push(("mlp", mask, grad, opt));
            }
        }
    }
    cases.push(("mlp", "block:4:0.5", "mvue:2:4", OptimizerKind::Sgd));
    cases.push((
        "mlp-bn",
        "transposable:4:8",
        "greedy:1:2",
        OptimizerKind::Sgd,
    ));
    cases.push(("mlp-bn", "dense", "mvue_1to2:1:2", OptimizerKind::AdamW));
    cases.push(("lenet", "dense", "dense", OptimizerKind::Sgd));
    cases.push(("lenet", "dense", "greedy:1:2", OptimizerKind::Sgd));
    cases.push(("lenet", "transposable:4:8", "mvue:2:4", OptimizerKind::Sgd));
    cases.push((
        "lenet",
        "transposable:4:8",
        "mvue:2:4",
        OptimizerKind::AdamW,
    ));
    let config = |model: &str, mask: &str, grad: &str, optimizer| TrainConfig {
        model: model.into(),
        hidden: vec![64, 32],
        mask: mask.parse().expect("mask"),
        grad: grad.parse().expect("estimator"),
        every: 16,
        solver: masklab::solvers::SolverRef::Builtin(&masklab::solvers::exact::Exact),
        epochs: 2,
        batch: 16,
        lr: 0.01,
        optimizer,
        ..Default::default()
    };
    for model in ["mlp", "mlp-bn", "lenet"] {
        let cfg = config(model, "transposable:4:8", "mvue:2:4", OptimizerKind::Sgd);
        let mut session = Session::new(&cfg, &data, &dev).expect("warm-up session");
        for _ in 0..40 {
            session.step().expect("warm-up step");
        }
    }
    let mut failures = Vec::new();
    for (model, mask, grad, optimizer) in cases {
        let cfg = config(model, mask, grad, optimizer);
        let mut session = Session::new(&cfg, &data, &dev).expect("session");
        assert!(session.total_steps() >= 200);
        let mut marks = [0isize; 3];
        for step in 1..=200 {
            session.step().expect("step");
            match step {
                20 => marks[0] = live(),
                110 => marks[1] = live(),
                200 => marks[2] = live(),
                _ => {}
            }
        }
        let (first, second) = (marks[1] - marks[0], marks[2] - marks[1]);
        if first > SLACK_BYTES && second > SLACK_BYTES {
            failures.push(format!(
                "{model} {mask} + {grad} ({optimizer:?}): live bytes grew by {first} over steps \
                 20-110 and by {second} over steps 110-200"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
