//! Where one training step's time goes: forward, loss, backward (with the weight gradients
//! collected) and the SGD update of a table4 model at batch 128 on one fixed batch, averaged over
//! 1000 steps after 100 warm-up steps (LeNet: 100 after 10), on the thread pool `masklab train`
//! uses. `just vs-jax` times it against JAX/XLA's step.
//! Run: `cargo run --release --example step_phases -- [MASK] [GRAD] [MODEL]`, e.g.
//! `-- transposable:4:8 mvue:2:4` (default `dense dense mlp`; MODEL `mlp` or `lenet`).

use candle_core::Device;
use masklab::mask::Structure;
use masklab::train::data::synthetic;
use masklab::train::models::{LayerPolicy, build};
use masklab::train::optim::Optimizer;
use std::time::Instant;
fn main() {
    masklab::memory::keep_freed_memory();
    rayon::ThreadPoolBuilder::new()
        .use_current_thread()
        .build_global()
        .unwrap();
    let dev = Device::Cpu;
    let data = synthetic(128, 0);
    let idx: Vec<usize> = (0..128).collect();
    let (x, y) = data.batch(&data.train, &idx, &dev).unwrap();
    let args: Vec<String> = std::env::args().collect();
    let mask: Structure = args
        .get(1)
        .map(|s| s.as_str())
        .unwrap_or("dense")
        .parse()
        .unwrap();
    let est = args.get(2).map(|s| s.as_str()).unwrap_or("dense");
    let policy = LayerPolicy {
        estimator: est.parse().unwrap(),
        custom: true,
        tile: mask.tile(),
        srste: 0.0,
    };
    let name = args.get(3).map(|s| s.as_str()).unwrap_or("mlp");
    let mut model = build(name, data.shape, 10, &[256, 256], &policy, 0, &dev).unwrap();
    for l in model.sparse_layers() {
        let m = masklab::train::trainer::layer_mask(l, mask, &masklab::solvers::exact::Exact, 0)
            .unwrap();
        l.set_mask(m.as_ref()).unwrap();
    }
    let mut opt = Optimizer::sgd(model.vars(), 0.9, 5e-4);
    let (mut tf, mut tl, mut tb, mut to) = (0.0, 0.0, 0.0, 0.0);
    let (n, warm) = if name == "lenet" {
        (100, 10)
    } else {
        (1000, 100)
    };
    for i in 0..n + warm {
        let t0 = Instant::now();
        let logits = model.forward(&x, true).unwrap();
        let t1 = Instant::now();
        let loss = masklab::train::kernels::cross_entropy(&logits, &y).unwrap();
        let t2 = Instant::now();
        let grads = model.backward(&loss).unwrap();
        let t3 = Instant::now();
        opt.step(&grads, 0.01).unwrap();
        let _ = loss.to_scalar::<f32>().unwrap();
        let t4 = Instant::now();
        if i >= warm {
            tf += (t1 - t0).as_secs_f64();
            tl += (t2 - t1).as_secs_f64();
            tb += (t3 - t2).as_secs_f64();
            to += (t4 - t3).as_secs_f64();
        }
    }
    let u = 1e6 / n as f64;
    println!(
        "forward {:.0} us, loss {:.0} us, backward {:.0} us, opt {:.0} us, total {:.0}",
        tf * u,
        tl * u,
        tb * u,
        to * u,
        (tf + tl + tb + to) * u
    );
}
