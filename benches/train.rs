//! Criterion bench: one training step (forward, backward, update) of the table4 MLP
//! (784→256→256→10, batch 128, SGD) on CPU, dense vs masked. Run: `cargo bench --bench train`.
//!
//! `dense_autograd` is the reference (plain candle autograd); `dense_op` runs the custom op with
//! no mask, `all_ones_mask` with a mask that keeps everything; the others add a transposable 4:8
//! mask and an estimator on the update GEMM.

use candle_core::Device;
use criterion::{Criterion, criterion_group, criterion_main};
use masklab::train::models::{LayerPolicy, build};
use masklab::train::optim::Optimizer;
use masklab::train::trainer::{layer_mask, train_step};
use masklab::train::{MaskKind, data::synthetic};
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    let data = synthetic(128, 0);
    let idx: Vec<usize> = (0..128).collect();
    let (x, y) = data.batch(&data.train, &idx, &dev).expect("batch");
    let mut group = c.benchmark_group("train_step_mlp_784_256_256_10_b128");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5));
    for (name, mask, grad, custom) in [
        ("dense_autograd", "dense", "dense", false),
        ("dense_op", "dense", "dense", true),
        ("all_ones_mask", "unstructured:0", "dense", true),
        ("transposable_4_8", "transposable:4:8", "dense", true),
        (
            "transposable_4_8_mvue_2_4",
            "transposable:4:8",
            "mvue:2:4",
            true,
        ),
        (
            "transposable_4_8_greedy_2_4",
            "transposable:4:8",
            "greedy:2:4",
            true,
        ),
        // The reference again, last: on this shared VM a process's first seconds can run slower.
        ("dense_autograd_again", "dense", "dense", false),
        ("dense_op_again", "dense", "dense", true),
    ] {
        let mask: MaskKind = mask.parse().expect("mask");
        let policy = LayerPolicy {
            estimator: grad.parse().expect("estimator"),
            custom,
            tile: mask.tile(),
            srste: 0.0,
        };
        let mut model = build("mlp", data.shape, 10, &[256, 256], &policy, 0, &dev).expect("model");
        for l in model.sparse_layers() {
            let m = layer_mask(l, mask, "greedy", 0).expect("mask");
            l.set_mask(m.as_ref()).expect("set mask");
        }
        let mut opt = Optimizer::sgd(model.vars(), 0.9, 5e-4);
        group.bench_function(name, |b| {
            b.iter(|| train_step(model.as_ref(), &mut opt, &x, &y, 0.01).expect("step"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
