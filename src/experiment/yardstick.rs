//! The yardstick of a run: a fixed reference workload timed at the start, so measured times
//! can be compared across runs as ratios to it (`seconds / yardstick_v2_seconds`). A slower
//! machine then does not read as a regression, and a faster one does not hide one.
//!
//! The workload must not be code that masklab's own work changes, or improving that code moves
//! every ratio. Version 1 timed the exact transposable solver (plus matrix products): when the
//! solver became about 3× faster (8192² 8:16 in 0.95 → 0.25 s), the yardstick shrank by half
//! and every time measured afterwards read as a doubling against the baselines measured before.
//! Version 2 ([`VERSION`]) times code that stays put: eight 384×384×384 matrix products on the
//! run's device (candle's, pinned by Cargo.lock; the training tables' kind of loop) and a
//! top-8-of-16 selection by insertion over 2²¹ |Gaussian| scores written here (the solver
//! tables' kind: scalar and branchy, over 8 MB). It takes about 0.03 s here; the reported figure is
//! the fastest of `REPEATS` (7) repetitions (the least disturbed by other load). Times are
//! compared only against a yardstick of the same version ([`crate::results::regress`]).

use crate::error::{Error, Result};
use rand::Rng;
use std::time::Instant;

/// The workload's version; a summary carries its yardstick under a column of this version.
pub const VERSION: u32 = 2;

/// Repetitions of the workload; the fastest counts.
const REPEATS: usize = 7;

/// Time the reference workload on `device`: the fastest of `REPEATS` runs, in seconds.
pub fn measure(device: &candle_core::Device) -> Result<f64> {
    let mut rng = crate::seed::rng(0, "yardstick");
    let scores: Vec<f32> = (0..1 << 21)
        .map(|_| {
            let v: f32 = rng.sample(rand_distr::StandardNormal);
            v.abs()
        })
        .collect();
    let a = candle_core::Tensor::randn(0f32, 0.05f32, (384, 384), device)
        .map_err(Error::tensor("yardstick operand"))?;
    let mut best = f64::INFINITY;
    for _ in 0..REPEATS {
        let start = Instant::now();
        std::hint::black_box(top_half_sums(std::hint::black_box(&scores)));
        let mut x = a.clone();
        for _ in 0..8 {
            x = x.matmul(&a).map_err(Error::tensor("yardstick product"))?;
        }
        // Reading a value back waits for an asynchronous device.
        let _ = x
            .sum_all()
            .and_then(|s| s.to_scalar::<f32>())
            .map_err(Error::tensor("yardstick sum"))?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// The sum over rows of 16 scores of each row's 8 largest, each row's kept set built by
/// insertion into a sorted run (the solver-like half of the workload).
fn top_half_sums(scores: &[f32]) -> f32 {
    let mut total = 0.0;
    for row in scores.chunks_exact(16) {
        let mut top = [f32::NEG_INFINITY; 8];
        for &s in row {
            if s > top[7] {
                let mut k = 7;
                while k > 0 && top[k - 1] < s {
                    top[k] = top[k - 1];
                    k -= 1;
                }
                top[k] = s;
            }
        }
        total += top.iter().sum::<f32>();
    }
    total
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_workload_runs_and_takes_measurable_time() {
        let s = super::measure(&candle_core::Device::Cpu).unwrap();
        // A positive, finite figure (2²¹ scores and 0.9 GFLOP of products take milliseconds).
        assert!(s.is_finite() && s > 1e-4, "{s}");
    }

    #[test]
    fn the_selection_keeps_each_rows_eight_largest() {
        // Row 0: 0..16 in a scrambled order keeps 8..16; row 1 is all 1s.
        let mut v: Vec<f32> = (0..16).map(|i| ((i * 7) % 16) as f32).collect();
        v.extend([1.0; 16]);
        assert_eq!(super::top_half_sums(&v), (8..16).sum::<i32>() as f32 + 8.0);
    }
}
