//! Criterion bench: each estimator pruning a 4096×4096 f32 gradient along dim 0 (CPU path,
//! including the transposes in and out). Run: `cargo bench --bench estimators`.

use candle_core::{Device, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use masklab::estimators::{REGISTRY, sample};
use masklab::mask::Pattern;
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let n = 4096;
    let data: Vec<f32> = (0..n * n)
        .map(|i| ((i as u64).wrapping_mul(2654435761) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let g = Tensor::from_vec(data, (n, n), &Device::Cpu).expect("tensor");
    let mut group = c.benchmark_group("estimators_4096x4096");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(4));
    for est in REGISTRY {
        let pattern: Pattern = if est.name() == "mvue_1to2" {
            "1:2"
        } else {
            "2:4"
        }
        .parse()
        .expect("pattern");
        group.bench_function(format!("{}_{pattern}", est.name()), |b| {
            b.iter(|| sample(*est, &g, pattern, 0, 1).expect("samples"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
