//! Criterion bench `train_step`: one training step (forward, backward, SGD update) at batch 128
//! on CPU, for the table4 MLP (784→256→256→10) and LeNet (1×28×28), dense and fully masked
//! (transposable 4:8 on the forward and backward GEMMs, MVUE 2:4 on the update GEMM).
//! Run: `cargo bench --bench train`.
//!
//! `dense` is what a dense `masklab train` runs (the fused CPU op, no mask, no estimator);
//! `masked` adds a static transposable mask (exact solver) and the MVUE estimator; `autograd` is
//! the same dense model built from plain candle ops (the reference the fused op is tested
//! against, and what every step ran before the fused kernels). Like `masklab train`, the bench
//! keeps glibc from returning freed blocks to the OS between steps and runs each step on a
//! worker of the rayon pool, one thread per core (not on a thread outside the pool, which
//! would sleep and wake at every parallel GEMM).

use candle_core::Device;
use criterion::{Criterion, criterion_group, criterion_main};
use masklab::mask::Structure;
use masklab::train::data::synthetic;
use masklab::train::models::{LayerPolicy, build};
use masklab::train::optim::Optimizer;
use masklab::train::trainer::{layer_mask, train_step};
use std::time::Duration;

fn bench(c: &mut Criterion) {
    masklab::memory::keep_freed_memory();
    let dev = Device::Cpu;
    let data = synthetic(128, 0);
    let idx: Vec<usize> = (0..128).collect();
    let (x, y) = data.batch(&data.train, &idx, &dev).expect("batch");
    // The bench's own thread becomes a worker of the global pool.
    rayon::ThreadPoolBuilder::new()
        .use_current_thread()
        .build_global()
        .expect("thread pool");
    let mut group = c.benchmark_group("train_step");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5));
    for model_name in ["mlp", "lenet"] {
        for (name, mask, grad, custom) in [
            ("dense", "dense", "dense", true),
            ("masked", "transposable:4:8", "mvue:2:4", true),
            ("autograd", "dense", "dense", false),
        ] {
            let mask: Structure = mask.parse().expect("mask");
            let policy = LayerPolicy {
                estimator: grad.parse().expect("estimator"),
                custom,
                tile: mask.tile(),
                srste: 0.0,
            };
            let mut model =
                build(model_name, data.shape, 10, &[256, 256], &policy, 0, &dev).expect("model");
            for l in model.sparse_layers() {
                let m = layer_mask(l, mask, &masklab::solvers::exact::Exact, 0).expect("mask");
                l.set_mask(m.as_ref()).expect("set mask");
            }
            let mut opt = Optimizer::sgd(model.vars(), 0.9, 5e-4);
            group.bench_function(format!("{model_name}/{name}"), |b| {
                b.iter(|| train_step(model.as_ref(), &mut opt, &x, &y, 0.01).expect("step"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
