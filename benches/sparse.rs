//! Criterion bench: the sparse GEMM kernels against the dense reference on the same product,
//! `C = A·B` with `A: [4096, 4096]` and `B: [4096, width]` row-major, at widths 1 (a
//! matrix-vector product, memory-bound) and 128 (compute-bound): N:M 2:4 and 1:4, CSR at 50%,
//! BSR 8×8 at 50%, and the dense product of the masked `A` (gemm; at width 1 also masklab's
//! matrix-vector kernel, the fair reference there). The ratios are what table7 reports (it
//! also times the transposes a training GEMM needs); this bench isolates the kernels.
//! Run: `cargo bench --bench sparse`.

use criterion::{Criterion, criterion_group, criterion_main};
use masklab::mask::{Mask, Matrix};
use masklab::sparse::bsr::BsrMatrix;
use masklab::sparse::csr::CsrMatrix;
use masklab::sparse::dense::{self, Strided};
use masklab::sparse::nm::NmMatrix;
use std::time::Duration;

/// Deterministic `n×n` weights in [-1, 1) and their magnitudes as scores.
fn weights(n: usize) -> (Vec<f32>, Matrix) {
    let w: Vec<f32> = (0..n * n)
        .map(|i| ((i as u64).wrapping_mul(2654435761) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let scores = Matrix::new(n, n, w.iter().map(|v| v.abs()).collect()).expect("scores");
    (w, scores)
}

fn bench(c: &mut Criterion) {
    let n = 4096;
    let (a, scores) = weights(n);
    let threads = rayon::current_num_threads();
    for width in [1usize, 128] {
        let b: Vec<f32> = (0..n * width)
            .map(|i| (i % 17) as f32 / 8.0 - 1.0)
            .collect();
        let mut out = vec![0f32; n * width];
        let mut group = c.benchmark_group(format!("spmm_4096x4096_width{width}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(3));
        let dense_of = |m: &Mask| -> Vec<f32> {
            a.iter()
                .zip(m.keep())
                .map(|(&v, &k)| if k != 0 { v } else { 0.0 })
                .collect()
        };
        let m24 = Mask::nm(&scores, "2:4".parse().expect("pattern")).expect("mask");
        let wm = dense_of(&m24);
        group.bench_function("dense_gemm", |bch| {
            bch.iter(|| {
                let sa = Strided {
                    data: &wm,
                    rs: n,
                    cs: 1,
                };
                let sb = Strided {
                    data: &b,
                    rs: width,
                    cs: 1,
                };
                dense::matmul((n, width, n), sa, sb, &mut out, threads).expect("gemm")
            })
        });
        if width == 1 {
            // At width 1 gemm is not the fair reference (a third of OpenBLAS's sgemv here):
            // masklab's matrix-vector kernel is, as in table7.
            group.bench_function("dense_matvec", |bch| {
                bch.iter(|| dense::matvec(&wm, n, n, &b, &mut out).expect("matvec"))
            });
        }
        for pattern in ["2:4", "1:4"] {
            let p = pattern.parse().expect("pattern");
            let m = Mask::nm(&scores, p).expect("mask");
            let nm = NmMatrix::compress(&dense_of(&m), m.keep(), n, n, p).expect("compress");
            group.bench_function(format!("nm_{pattern}"), |bch| {
                bch.iter(|| nm.matmul(&b, width, &mut out).expect("spmm"))
            });
        }
        let mu = Mask::unstructured(&scores, 0.5).expect("mask");
        let csr = CsrMatrix::compress(&dense_of(&mu), mu.keep(), n, n).expect("csr");
        group.bench_function("csr_50", |bch| {
            bch.iter(|| csr.matmul(&b, width, &mut out).expect("csr"))
        });
        let mb = Mask::block(&scores, 8, 0.5).expect("mask");
        let bsr = BsrMatrix::compress(&dense_of(&mb), mb.keep(), n, n, 8).expect("bsr");
        group.bench_function("bsr_8_50", |bch| {
            bch.iter(|| bsr.matmul(&b, width, &mut out).expect("bsr"))
        });
        group.finish();
    }
}

/// A training step's refresh of both compressed operands of a 2048×2048 layer with a 2:4 mask
/// from the dense weights ([`NmMatrix::refill`]): `W⊙m` from row-major `W`, and a transposed
/// operand (N:M along `out`) read through `W`'s strides — what `masklab train --gemm sparse`
/// does before each forward and backward product.
fn refill(c: &mut Criterion) {
    let n = 2048;
    let (w, scores) = weights(n);
    let pattern = "2:4".parse().expect("pattern");
    let m = Mask::nm(&scores, pattern).expect("mask");
    let keep: Vec<f32> = m.keep().iter().map(|&k| f32::from(k)).collect();
    let mut fwd = NmMatrix::compress(&w, m.keep(), n, n, pattern).expect("compress");
    let fwd_map = fwd.slot_map(&keep, n, 1).expect("map");
    // The transposed operand: W's transpose under an N:M mask of its own rows.
    let mut wt = vec![0f32; n * n];
    masklab::sparse::transpose(&w, n, n, &mut wt);
    let st = Matrix::new(n, n, wt.iter().map(|v| v.abs()).collect()).expect("scores");
    let mt = Mask::nm(&st, pattern).expect("mask");
    let keep_t: Vec<f32> = mt
        .transpose()
        .keep()
        .iter()
        .map(|&k| f32::from(k))
        .collect();
    let mut bwd = NmMatrix::compress(&wt, mt.keep(), n, n, pattern).expect("compress");
    let bwd_map = bwd.slot_map(&keep_t, 1, n).expect("map");
    let mut group = c.benchmark_group("refill_2048x2048_2of4");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    group.bench_function("rows", |b| {
        b.iter(|| fwd.refill(&w, &fwd_map).expect("refill"))
    });
    group.bench_function("transposed", |b| {
        b.iter(|| bwd.refill(&w, &bwd_map).expect("refill"))
    });
    group.finish();
}

criterion_group!(benches, bench, refill);
criterion_main!(benches);
