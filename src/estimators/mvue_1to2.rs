//! `mvue_1to2`: the minimum-variance unbiased 1:2 estimator.
//!
//! Problem: keep one of (a, b) so that E\[ĝ\] = g with minimum variance. Rule: keep a with
//! probability `|a|/(|a|+|b|)`, else b; the kept entry becomes `sign·(|a|+|b|)`.
//! Guarantee: unbiased; variance `2|a||b|` per group, the minimum among unbiased 1-of-2
//! estimators. Cost: O(1) per group, one uniform. Source: Chmiel et al., ICLR 2023, §4.

use super::Estimator;
use crate::error::{Error, Result};
use crate::mask::Pattern;
use candle_core::Tensor;

/// MVUE for 1:2.
pub struct Mvue1to2;

impl Estimator for Mvue1to2 {
    fn name(&self) -> &'static str {
        "mvue_1to2"
    }
    fn summary(&self) -> &'static str {
        "keep a w.p. |a|/(|a|+|b|) as sign(a)(|a|+|b|) (unbiased, minimum variance)"
    }
    fn unbiased(&self) -> bool {
        true
    }
    fn uniforms_per_group(&self) -> usize {
        1
    }
    fn supports(&self, pattern: Pattern) -> Result<()> {
        if (pattern.n, pattern.m) != (1, 2) {
            return Err(Error::Unsupported {
                what: format!("mvue_1to2 for {pattern}"),
                reason: "it is the 1:2 estimator; use mvue for other N:M".into(),
            });
        }
        Ok(())
    }
    fn prune_groups(&self, values: &mut [f32], _pattern: Pattern, uniforms: &[f32]) {
        for (g, &u) in values.chunks_mut(2).zip(uniforms) {
            let (a, b) = (g[0], g[1]);
            let s = a.abs() + b.abs();
            if s == 0.0 {
                continue;
            }
            if u < a.abs() / s {
                g[0] = a.signum() * s;
                g[1] = 0.0;
            } else {
                g[0] = 0.0;
                g[1] = b.signum() * s;
            }
        }
    }
    fn prune_tensor(
        &self,
        groups: &Tensor,
        _pattern: Pattern,
        u: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let mag = groups.abs()?;
        let s = mag.sum_keepdim(1)?;
        let p0 = mag
            .narrow(1, 0, 1)?
            .broadcast_div(&s.clamp(f32::MIN_POSITIVE, f32::MAX)?)?;
        let keep0 = u.lt(&p0)?.to_dtype(groups.dtype())?;
        let keep = Tensor::cat(&[&keep0, &(1.0 - &keep0)?], 1)?;
        groups.sign()?.broadcast_mul(&s)? * keep
    }
}
