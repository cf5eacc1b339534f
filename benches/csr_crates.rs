//! Criterion bench: masklab's CSR kernel against the sparse-matrix crates a researcher would
//! reach for, on the same product `C = A·B` (`A: [n, n]` unstructured at 50% and 25% density,
//! `B: [n, width]` dense): sprs (`CsMat` times a row-major ndarray, its rayon path on; and
//! its matrix-vector product at width 1) and nalgebra-sparse (`spmm_csr_dense`, serial, on its
//! column-major `DMatrix`). Each is timed on
//! all of rayon's threads and inside a one-thread pool, so a serial crate meets masklab on equal
//! terms. faer's sparse module is not here: it would double the dependencies' build time.
//!
//! Run: `cargo bench --features compare-crates --bench csr_crates` (off by default: neither the
//! build nor the tests compile these crates).

use criterion::{
    BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};
use masklab::mask::{Mask, Matrix};
use masklab::sparse::csr::CsrMatrix;
use std::time::Duration;

/// One product, its operands in each library's own types.
struct Case {
    n: usize,
    width: usize,
    b: Vec<f32>,
    ours: CsrMatrix,
    sprs: sprs::CsMat<f32>,
    sprs_b: ndarray::Array2<f32>,
    nalgebra: nalgebra_sparse::CsrMatrix<f32>,
    nalgebra_b: nalgebra::DMatrix<f32>,
}

impl Case {
    fn new(n: usize, width: usize, density: f64) -> Case {
        let a: Vec<f32> = (0..n * n)
            .map(|i| ((i as u64).wrapping_mul(2654435761) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let scores = Matrix::new(n, n, a.iter().map(|v| v.abs()).collect()).expect("scores");
        let mask = Mask::unstructured(&scores, 1.0 - density).expect("mask");
        let ours = CsrMatrix::compress(&a, mask.keep(), n, n).expect("csr");
        let (mut offsets, mut columns, mut values) = (vec![0usize], Vec::new(), Vec::new());
        for r in 0..n {
            for c in 0..n {
                if mask.keep()[r * n + c] != 0 {
                    columns.push(c);
                    values.push(a[r * n + c]);
                }
            }
            offsets.push(values.len());
        }
        let b: Vec<f32> = (0..n * width)
            .map(|i| (i % 17) as f32 / 8.0 - 1.0)
            .collect();
        let sprs = sprs::CsMat::new((n, n), offsets.clone(), columns.clone(), values.clone());
        let sprs_b = ndarray::Array2::from_shape_vec((n, width), b.clone()).expect("ndarray");
        let nalgebra =
            nalgebra_sparse::CsrMatrix::try_from_csr_data(n, n, offsets, columns, values)
                .expect("nalgebra-sparse");
        let nalgebra_b = nalgebra::DMatrix::from_row_slice(n, width, &b);
        Case {
            n,
            width,
            b,
            ours,
            sprs,
            sprs_b,
            nalgebra,
            nalgebra_b,
        }
    }

    /// The three products into `group`, each checked once against masklab's.
    /// With `pool`, every call runs inside it (the same small overhead for each library).
    fn bench(&self, group: &mut BenchmarkGroup<'_, WallTime>, pool: Option<&rayon::ThreadPool>) {
        let tag = if pool.is_some() {
            "one_thread"
        } else {
            "all_threads"
        };
        let run = |f: &mut (dyn FnMut() + Send)| match pool {
            Some(p) => p.install(f),
            None => f(),
        };
        let mut out = vec![0f32; self.n * self.width];
        self.ours
            .matmul(&self.b, self.width, &mut out)
            .expect("csr");
        let theirs = &self.sprs * &self.sprs_b;
        let nal = &self.nalgebra * &self.nalgebra_b;
        for (i, &o) in out.iter().enumerate() {
            let (r, c) = (i / self.width, i % self.width);
            let tol = 1e-3 * (1.0 + o.abs());
            assert!(
                (theirs[(r, c)] - o).abs() <= tol,
                "sprs differs at ({r}, {c})"
            );
            assert!(
                (nal[(r, c)] - o).abs() <= tol,
                "nalgebra-sparse differs at ({r}, {c})"
            );
        }
        group.bench_function(format!("masklab_{tag}"), |bch| {
            bch.iter(|| {
                run(&mut || {
                    self.ours
                        .matmul(&self.b, self.width, &mut out)
                        .expect("csr")
                })
            })
        });
        let mut sprs_out = ndarray::Array2::<f32>::zeros((self.n, self.width));
        group.bench_function(format!("sprs_{tag}"), |bch| {
            bch.iter(|| {
                run(&mut || {
                    sprs_out.fill(0.0);
                    if self.width == 1 {
                        // Its matrix-vector product: the dense-matrix one is for wide B.
                        sprs::prod::mul_acc_mat_vec_csr(
                            self.sprs.view(),
                            self.b.as_slice(),
                            sprs_out.as_slice_mut().expect("contiguous"),
                        )
                    } else {
                        sprs::prod::csr_mulacc_dense_rowmaj(
                            self.sprs.view(),
                            self.sprs_b.view(),
                            sprs_out.view_mut(),
                        )
                    }
                })
            })
        });
        let mut nal_out = nalgebra::DMatrix::<f32>::zeros(self.n, self.width);
        group.bench_function(format!("nalgebra_sparse_{tag}"), |bch| {
            bch.iter(|| {
                run(&mut || {
                    nalgebra_sparse::ops::serial::spmm_csr_dense(
                        0.0,
                        &mut nal_out,
                        1.0,
                        nalgebra_sparse::ops::Op::NoOp(&self.nalgebra),
                        nalgebra_sparse::ops::Op::NoOp(&self.nalgebra_b),
                    )
                })
            })
        });
    }
}

fn bench(c: &mut Criterion) {
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    for (n, width) in [(1024, 1), (1024, 128), (4096, 1), (4096, 32), (4096, 128)] {
        for density in [0.5, 0.25] {
            let case = Case::new(n, width, density);
            let mut group = c.benchmark_group(format!(
                "csr_{n}x{n}_density{}_width{width}",
                (density * 100.0) as u32
            ));
            group
                .sample_size(10)
                .warm_up_time(Duration::from_millis(300))
                .measurement_time(Duration::from_secs(2));
            case.bench(&mut group, None);
            case.bench(&mut group, Some(&one));
            group.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
