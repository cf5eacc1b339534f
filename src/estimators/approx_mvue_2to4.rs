//! `approx_mvue_2to4`: the two-draw approximation of MVUE 2:4.
//!
//! Rule: pick one element with probability `|a_i|/S` (S = Σ|a|), then a second from the other
//! three in proportion to magnitude; scale each kept element by the inverse of its exact
//! inclusion probability `π_k = |a_k|/S · (1 + Σ_{i≠k} |a_i|/(S − |a_i|))`. Groups with at most
//! two non-zeros are kept as they are.
//! Guarantee: unbiased; variance at least that of `mvue` (its inclusion probabilities are not
//! the variance-minimising ones). Cost: O(M) per group, two uniforms.
//! Source: Chmiel et al., ICLR 2023, §4 (the practical 2:4 sampler).

use super::Estimator;
use crate::error::{Error, Result};
use crate::mask::Pattern;
use candle_core::{DType, Tensor};

/// Approximate MVUE 2:4.
pub struct ApproxMvue2to4;

/// Exact inclusion probabilities of the two-draw design for one group of four.
pub fn inclusion(mags: &[f64; 4]) -> [f64; 4] {
    let s: f64 = mags.iter().sum();
    let r: Vec<f64> = mags
        .iter()
        .map(|&a| if s - a > 0.0 { a / (s - a) } else { 0.0 })
        .collect();
    let t: f64 = r.iter().sum();
    std::array::from_fn(|k| {
        if s > 0.0 {
            mags[k] / s * (1.0 + t - r[k])
        } else {
            0.0
        }
    })
}

fn pick(weights: &[f64; 4], u: f64) -> usize {
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    let mut last = 0;
    for (i, &w) in weights.iter().enumerate() {
        if w <= 0.0 {
            continue;
        }
        last = i;
        acc += w;
        if u * total < acc {
            return i;
        }
    }
    last
}

impl Estimator for ApproxMvue2to4 {
    fn name(&self) -> &'static str {
        "approx_mvue_2to4"
    }
    fn summary(&self) -> &'static str {
        "draw one w.p. |a_i|/S, a second in proportion among the rest; scale by 1/π (unbiased)"
    }
    fn unbiased(&self) -> bool {
        true
    }
    fn uniforms_per_group(&self) -> usize {
        2
    }
    fn supports(&self, pattern: Pattern) -> Result<()> {
        if (pattern.n, pattern.m) != (2, 4) {
            return Err(Error::Unsupported {
                what: format!("approx_mvue_2to4 for {pattern}"),
                reason: "it is a 2:4 sampler; use mvue for other N:M".into(),
            });
        }
        Ok(())
    }
    fn prune_groups(&self, values: &mut [f32], _pattern: Pattern, uniforms: &[f32]) {
        for (g, u) in values.chunks_mut(4).zip(uniforms.chunks(2)) {
            let mags: [f64; 4] = std::array::from_fn(|i| g[i].abs() as f64);
            if mags.iter().filter(|&&a| a > 0.0).count() <= 2 {
                continue;
            }
            let first = pick(&mags, u[0] as f64);
            let mut rest = mags;
            rest[first] = 0.0;
            let second = pick(&rest, u[1] as f64);
            let pi = inclusion(&mags);
            for k in 0..4 {
                g[k] = if k == first || k == second {
                    (g[k] as f64 / pi[k]) as f32
                } else {
                    0.0
                };
            }
        }
    }
    fn prune_tensor(
        &self,
        groups: &Tensor,
        _pattern: Pattern,
        u: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let x = groups.to_dtype(DType::F64)?;
        let mag = x.abs()?;
        let s = mag.sum_keepdim(1)?;
        let nonzero = mag.gt(0.0)?.to_dtype(DType::F64)?.sum_keepdim(1)?;
        let dense = nonzero.le(2.0)?.to_dtype(DType::F64)?;
        let u = u.to_dtype(DType::F64)?;
        // Inverse-CDF pick: index = number of cumulative weights ≤ u·total (zero weights skipped by
        // counting only positions whose own weight is positive and cumulative is ≤ threshold).
        let pick = |w: &Tensor, uu: &Tensor| -> candle_core::Result<Tensor> {
            let total = w.sum_keepdim(1)?;
            let threshold = uu.broadcast_mul(&total)?;
            let before = w
                .cumsum(1)?
                .broadcast_le(&threshold)?
                .to_dtype(DType::F64)?;
            // one-hot of the first position whose cumulative sum exceeds the threshold
            let after = (1.0 - &before)?;
            let shifted = Tensor::cat(
                &[
                    &Tensor::ones((w.dim(0)?, 1), DType::F64, w.device())?,
                    &before.narrow(1, 0, 3)?,
                ],
                1,
            )?;
            let onehot = (after * shifted)?;
            onehot * w.gt(0.0)?.to_dtype(DType::F64)?
        };
        let first = pick(&mag, &u.narrow(1, 0, 1)?)?;
        let rest = (&mag * (1.0 - &first)?)?;
        let second = pick(&rest, &u.narrow(1, 1, 1)?)?;
        let r = (&mag / s.broadcast_sub(&mag)?.clamp(1e-300, f64::MAX)?)?;
        let t = r.sum_keepdim(1)?;
        let pi = (mag.broadcast_div(&s.clamp(1e-300, f64::MAX)?)? * (t.broadcast_sub(&r)? + 1.0)?)?;
        let kept = (first + second)?;
        let sampled = ((&x / pi.clamp(1e-300, f64::MAX)?)? * kept)?;
        let out = (sampled.broadcast_mul(&(1.0 - &dense)?)? + x.broadcast_mul(&dense)?)?;
        out.to_dtype(groups.dtype())
    }
}
