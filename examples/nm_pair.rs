//! The N:M kernel against the dense GEMM on the same product, alternated run by run in one
//! process, so the machine's drift (up to 2× here) hits both alike: `C = A·B` with `A: [n, n]`
//! N:M along its rows and `B: [n, width]` row-major. Prints both medians, the median of the
//! run-by-run ratios with its quartiles, and the largest difference of the outputs. Unlike
//! table7 (`masklab gemm`) it times the kernels alone, without the transposes a training GEMM
//! needs. Run: `cargo run --release --example nm_pair -- [n] [width] [N:M]` (4096 128 2:4).

use masklab::mask::{Mask, Matrix};
use masklab::sparse::dense::{self, Strided};
use masklab::sparse::nm::NmMatrix;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map_or(Ok(4096), |s| s.parse())?;
    let width: usize = args.get(2).map_or(Ok(128), |s| s.parse())?;
    let pattern = args.get(3).map_or("2:4", String::as_str).parse()?;
    let a: Vec<f32> = (0..n * n)
        .map(|i| ((i as u64).wrapping_mul(2_654_435_761) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let scores = Matrix::new(n, n, a.iter().map(|v| v.abs()).collect())?;
    let b: Vec<f32> = (0..n * width)
        .map(|i| (i % 17) as f32 / 8.0 - 1.0)
        .collect();
    let mask = Mask::nm(&scores, pattern)?;
    let masked: Vec<f32> = a
        .iter()
        .zip(mask.keep())
        .map(|(&v, &k)| if k != 0 { v } else { 0.0 })
        .collect();
    let nm = NmMatrix::compress(&masked, mask.keep(), n, n, pattern)?;
    let threads = rayon::current_num_threads();
    let (mut want, mut got) = (vec![0f32; n * width], vec![0f32; n * width]);
    let (mut ratios, mut dense_t, mut sparse_t) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..25 {
        let t = Instant::now();
        let sa = Strided {
            data: &masked,
            rs: n,
            cs: 1,
        };
        let sb = Strided {
            data: &b,
            rs: width,
            cs: 1,
        };
        dense::matmul((n, width, n), sa, sb, &mut want, threads)?;
        let d = t.elapsed().as_secs_f64();
        let t = Instant::now();
        nm.matmul(&b, width, &mut got)?;
        let s = t.elapsed().as_secs_f64();
        // The first three runs warm the caches, the pool and the kernel's decoded offsets.
        if run >= 3 {
            ratios.push(d / s);
            dense_t.push(d);
            sparse_t.push(s);
        }
    }
    for v in [&mut ratios, &mut dense_t, &mut sparse_t] {
        v.sort_by(f64::total_cmp);
    }
    let q = |v: &[f64], f: f64| v[((v.len() - 1) as f64 * f).round() as usize];
    let err = want
        .iter()
        .zip(&got)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    println!(
        "{n}² width {width} {pattern}: dense {:.2} ms, sparse {:.2} ms, speedup {:.3} (quartiles {:.3}–{:.3}), max |difference| {err:.2e}",
        q(&dense_t, 0.5) * 1e3,
        q(&sparse_t, 0.5) * 1e3,
        q(&ratios, 0.5),
        q(&ratios, 0.25),
        q(&ratios, 0.75)
    );
    Ok(())
}
