//! The yardstick of a run: a fixed reference workload timed at the start, so measured times
//! can be compared across runs as ratios to it (`seconds / yardstick_seconds`). A slower
//! machine then does not read as a regression, and a faster one does not hide one.
//!
//! The workload is the harness's two kinds of hot loop, on fixed data: the exact transposable
//! solver on a 1024×2048 |Gaussian| matrix at 8:16 (the solver tables) and eight 384×384×384
//! matrix products on the run's device (the training tables). It takes about 0.05 s here; the
//! reported figure is the fastest of three repetitions (the least disturbed by other load).

use crate::error::{Error, Result};
use crate::mask::Pattern;
use crate::solvers::{SolveContext, Solver};
use rand::Rng;
use std::time::Instant;

/// Repetitions of the workload; the fastest counts.
const REPEATS: usize = 3;

/// Time the reference workload on `device`: the fastest of `REPEATS` runs, in seconds.
pub fn measure(device: &candle_core::Device) -> Result<f64> {
    let (rows, cols, pattern) = (1024usize, 2048usize, Pattern::new(8, 16)?);
    // The stream keeps the module's first name: the workload's data, and so its time, stay those
    // the committed baselines were measured with.
    let mut rng = crate::seed::rng(0, "calibration");
    let scores: Vec<f32> = (0..rows * cols)
        .map(|_| {
            let v: f32 = rng.sample(rand_distr::StandardNormal);
            v.abs()
        })
        .collect();
    let matrix = crate::mask::Matrix::new(rows, cols, scores)?;
    let blocks = crate::mask::tile::Blocks::from_matrix(&matrix, pattern.m)?;
    let a = candle_core::Tensor::randn(0f32, 0.05f32, (384, 384), device)
        .map_err(Error::tensor("yardstick operand"))?;
    let ctx = SolveContext::default();
    let mut best = f64::INFINITY;
    for _ in 0..REPEATS {
        let start = Instant::now();
        let keep = crate::solvers::exact::Exact.solve(blocks.data(), pattern, &ctx)?;
        std::hint::black_box(&keep);
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_workload_runs_and_takes_measurable_time() {
        let s = super::measure(&candle_core::Device::Cpu).unwrap();
        // A positive, finite figure; the exact solve alone is ~1/30 of an 8192² solve.
        assert!(s.is_finite() && s > 1e-4, "{s}");
    }
}
