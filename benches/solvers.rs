//! Criterion benches: every solver on a 4096×4096 Gaussian |W| at 2:4, 8:16 and 16:32
//! (`lp`, a general LP baseline that needs minutes there, on 512×512 instead); and `exact`
//! against `greedy` on 8192×8192 at 2:4, 4:8, 8:16 and 16:32, measured in one process (group
//! `exact_vs_greedy`: the exact solver's time should not exceed the greedy's). The example
//! `exact_vs_greedy` measures the same pair alternating solve by solve, which a drifting machine
//! speed cannot bias: `cargo run --release --example exact_vs_greedy`.
//! Run: `cargo bench --bench solvers` (or `just bench`); `-- exact` filters by name.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use masklab::mask::Pattern;
use masklab::mask::tile::Blocks;
use masklab::solvers::{REGISTRY, SolveContext};
use std::time::Duration;

mod common;
use common::gaussian_abs;

fn bench(c: &mut Criterion) {
    let big = gaussian_abs(4096);
    let small = gaussian_abs(512);
    let ctx = SolveContext::default();
    let mut group = c.benchmark_group("solvers");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(5));
    for pattern in ["2:4", "8:16", "16:32"] {
        let p: Pattern = pattern.parse().expect("pattern");
        for solver in REGISTRY
            .iter()
            .filter(|s| s.name() != "exhaustive" || p.m == 4)
        {
            let (matrix, size) = if solver.name() == "lp" {
                (&small, 512)
            } else {
                (&big, 4096)
            };
            let blocks = Blocks::from_matrix(matrix, p.m).expect("tiles");
            group.bench_with_input(
                BenchmarkId::new(solver.name(), format!("{pattern}@{size}")),
                &blocks,
                |b, blocks| b.iter(|| solver.solve(blocks.data(), p, &ctx).expect("solves")),
            );
        }
    }
    group.finish();
}

fn exact_vs_greedy(c: &mut Criterion) {
    let matrix = gaussian_abs(8192);
    let ctx = SolveContext::default();
    let mut group = c.benchmark_group("exact_vs_greedy");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    for pattern in ["2:4", "4:8", "8:16", "16:32"] {
        let p: Pattern = pattern.parse().expect("pattern");
        let blocks = Blocks::from_matrix(&matrix, p.m).expect("tiles");
        for name in ["exact", "greedy"] {
            let solver = masklab::solvers::by_name(name).expect("registered");
            group.bench_with_input(
                BenchmarkId::new(name, format!("{pattern}@8192")),
                &blocks,
                |b, blocks| b.iter(|| solver.solve(blocks.data(), p, &ctx).expect("solves")),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench, exact_vs_greedy);
criterion_main!(benches);
