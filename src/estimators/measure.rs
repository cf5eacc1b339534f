//! Measuring an estimator: relative bias, variance and MSE of ĝ, and of the update GEMM `ĝᵀx`,
//! over K draws of the same seeded sequence.
//!
//! With ĝ₁…ĝ_K and their mean ḡ: `rel_bias = ‖ḡ − g‖²/‖g‖²`, `rel_variance = (1/K)Σ‖ĝ_k − ḡ‖²/‖g‖²`,
//! `rel_mse = (1/K)Σ‖ĝ_k − g‖²/‖g‖²` (= bias + variance); the `gemm_` metrics are the same for
//! `ĝᵀx` against `gᵀx`. An unbiased estimator's measured `rel_bias` is about `rel_variance / K`.

use super::{Estimator, sample};
use crate::error::{Error, Result};
use crate::mask::Pattern;
use crate::seed::derive as derive_seed;
use candle_core::{DType, Tensor};
use serde::Serialize;

/// Measured metrics of one estimator on one gradient.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Measurement {
    /// Draws used.
    pub draws: usize,
    /// `‖E[ĝ] − g‖² / ‖g‖²` (E by the sample mean).
    pub rel_bias: f64,
    /// Total variance over ‖g‖².
    pub rel_variance: f64,
    /// Mean squared error over ‖g‖².
    pub rel_mse: f64,
    /// Relative bias of `ĝᵀx`.
    pub gemm_rel_bias: f64,
    /// Relative variance of `ĝᵀx`.
    pub gemm_rel_variance: f64,
}

/// Per-element running mean and squared deviations (Welford), plus the squared error against a
/// reference: exact zero variance for a deterministic estimator.
struct Moments {
    reference: Vec<f64>,
    mean: Vec<f64>,
    m2: Vec<f64>,
    err_sq: f64,
    k: usize,
}

impl Moments {
    fn new(reference: Vec<f64>) -> Self {
        Moments {
            mean: vec![0.0; reference.len()],
            m2: vec![0.0; reference.len()],
            reference,
            err_sq: 0.0,
            k: 0,
        }
    }
    fn add(&mut self, v: &[f32]) {
        self.k += 1;
        let k = self.k as f64;
        for (((mean, m2), &x), &r) in self
            .mean
            .iter_mut()
            .zip(&mut self.m2)
            .zip(v)
            .zip(&self.reference)
        {
            let x = x as f64;
            let delta = x - *mean;
            *mean += delta / k;
            *m2 += delta * (x - *mean);
            self.err_sq += (x - r) * (x - r);
        }
    }
    /// (rel_bias, rel_variance, rel_mse)
    fn finish(&self) -> (f64, f64, f64) {
        let k = self.k.max(1) as f64;
        let norm: f64 = self
            .reference
            .iter()
            .map(|r| r * r)
            .sum::<f64>()
            .max(f64::MIN_POSITIVE);
        let bias: f64 = self
            .mean
            .iter()
            .zip(&self.reference)
            .map(|(m, r)| (m - r).powi(2))
            .sum();
        let variance: f64 = self.m2.iter().sum::<f64>() / k;
        (bias / norm, variance / norm, self.err_sq / k / norm)
    }
}

fn values(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
}

/// Measure `est` on `g` (2-D) along `dim` over `draws` draws; `x` is the other GEMM operand
/// (`[g.dim(0), in]`).
pub fn measure(
    est: &dyn Estimator,
    g: &Tensor,
    x: &Tensor,
    pattern: Pattern,
    dim: usize,
    draws: usize,
    seed: u64,
) -> Result<Measurement> {
    if draws == 0 {
        return Err(Error::invalid(
            "draws",
            0,
            "must be at least 1 (bias and variance need draws)",
        ));
    }
    let ctx = || Error::tensor(format!("measuring {}", est.name()));
    let g_vals = values(g).map_err(ctx())?;
    let gemm = |t: &Tensor| t.t()?.matmul(x);
    let reference = values(&gemm(g).map_err(ctx())?).map_err(ctx())?;
    let mut m = Moments::new(g_vals.iter().map(|&v| v as f64).collect());
    let mut mg = Moments::new(reference.iter().map(|&v| v as f64).collect());
    for k in 0..draws {
        let draw = sample(
            est,
            g,
            pattern,
            dim,
            derive_seed(seed, &format!("draw {k}")),
        )?;
        m.add(&values(&draw).map_err(ctx())?);
        mg.add(&values(&gemm(&draw).map_err(ctx())?).map_err(ctx())?);
    }
    let (rel_bias, rel_variance, rel_mse) = m.finish();
    let (gemm_rel_bias, gemm_rel_variance, _) = mg.finish();
    Ok(Measurement {
        draws,
        rel_bias,
        rel_variance,
        rel_mse,
        gemm_rel_bias,
        gemm_rel_variance,
    })
}
