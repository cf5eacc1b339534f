//! `mvue`: the minimum-variance unbiased N:M estimator, for any N:M (2:4 included).
//!
//! Problem: a random ĝ with at most N non-zeros per group of M and `E[ĝ] = g`, of least variance.
//! Rule: inclusion probabilities `p_i = min(1, λ|a_i|)` with `Σ p_i = N` (water-filling: the
//! largest entries saturate at 1 first), a fixed-size design with exactly those marginals —
//! systematic sampling: one uniform u, points u, u+1, …, u+N−1 laid over the cumulative sums of
//! p, each entry hit once is kept — and kept values scaled by `1/p_i`.
//! Guarantee: unbiased, exactly N kept (all non-zeros when a group has fewer than N), and the
//! minimum variance `Σ a_i²(1/p_i − 1)` among unbiased N-of-M estimators. For 2:4 with S = Σ|a_i|:
//! `S²/2 − Σa_i²` when `max|a_i| ≤ S/2`; otherwise the largest is always kept and the variance is
//! `(S − |a_max|)² − Σ_{i≠max} a_i²`.
//! Cost: O(N·M) per group (the top N by repeated maximum search), one uniform, no allocation.
//! Source: Chmiel et al., ICLR 2023, §4 (MVUE 2:4).

use super::Estimator;
use crate::error::Result;
use crate::mask::Pattern;
use candle_core::{DType, Tensor};

/// MVUE for any N:M.
pub struct Mvue;

/// Inclusion probabilities `p_i = min(1, λ|a_i|)` with `Σ p_i = min(N, #non-zeros)`.
///
/// Water-filling from the top: with the k largest magnitudes saturated at 1, `λ = (N − k) /
/// (sum of the rest)`, valid once the (k+1)-th largest times λ is ≤ 1. Only the top N are ever
/// looked at, found by repeated maximum search (O(N·M), no sort, no allocation for M ≤ 64).
#[inline]
pub fn inclusion(group: &[f32], n: usize, p: &mut [f64]) {
    let m = group.len();
    if m > 64 {
        return inclusion_sorted(group, n, p);
    }
    // `p` holds the magnitudes until λ is known.
    let mut total = 0f64;
    for (d, v) in p.iter_mut().zip(group) {
        *d = v.abs() as f64;
        total += *d;
    }
    let mut used = 0u64;
    let mut rest = total;
    let mut lambda = f64::INFINITY;
    for k in 0..n {
        if rest <= 0.0 {
            break; // fewer than N non-zeros: every non-zero saturates
        }
        let (mut best, mut at) = (-1f64, 0usize);
        for (i, &v) in p[..m].iter().enumerate() {
            if used & (1 << i) == 0 && v > best {
                (best, at) = (v, i);
            }
        }
        let l = (n - k) as f64 / rest;
        if l * best <= 1.0 {
            lambda = l;
            break;
        }
        used |= 1 << at;
        rest -= best;
    }
    for (pi, v) in p.iter_mut().zip(group) {
        *pi = if *v == 0.0 {
            0.0
        } else {
            (lambda * *pi).min(1.0)
        };
    }
}

/// [`inclusion`] by a full sort (any M).
fn inclusion_sorted(group: &[f32], n: usize, p: &mut [f64]) {
    let m = group.len();
    let mut mags: Vec<f64> = group.iter().map(|v| v.abs() as f64).collect();
    mags.sort_by(|a, b| b.total_cmp(a));
    let mut suffix = vec![0f64; m + 1];
    for i in (0..m).rev() {
        suffix[i] = suffix[i + 1] + mags[i];
    }
    let mut lambda = f64::INFINITY;
    for k in 0..n {
        if suffix[k] <= 0.0 {
            break;
        }
        let l = (n - k) as f64 / suffix[k];
        if l * mags[k] <= 1.0 {
            lambda = l;
            break;
        }
    }
    for (pi, v) in p.iter_mut().zip(group) {
        *pi = if *v == 0.0 {
            0.0
        } else {
            (lambda * v.abs() as f64).min(1.0)
        };
    }
}

/// Systematic sampling: keep entry i when a point of {u, u+1, …} falls in `[C_{i−1}, C_i)`.
#[inline]
pub fn systematic(p: &[f64], u: f64, kept: &mut [bool]) {
    let total: f64 = p.iter().sum();
    let target = total.round();
    let mut c_prev = 0f64;
    let mut acc = 0f64;
    let count = |x: f64| if x <= u { 0.0 } else { (x - u).ceil() };
    for (i, (&pi, k)) in p.iter().zip(kept.iter_mut()).enumerate() {
        acc += pi;
        // Snap the last cumulative sum to the integer total so exactly that many are kept.
        let c = if i + 1 == p.len() {
            target
        } else {
            acc.min(target)
        };
        *k = count(c) - count(c_prev) >= 1.0;
        c_prev = c;
    }
}

/// Keep the sampled entries scaled by `1/p_i`; zero the rest.
#[inline]
fn scale(g: &mut [f32], p: &[f64], kept: &[bool]) {
    for ((v, &pi), &k) in g.iter_mut().zip(p).zip(kept) {
        *v = if k && pi > 0.0 {
            (*v as f64 / pi) as f32
        } else {
            0.0
        };
    }
}

/// [`inclusion`], [`systematic`] and [`scale`] on stack arrays of a compile-time M, which the
/// compiler unrolls (the same arithmetic as the generic path, so the same draws).
fn prune_fixed<const M: usize>(values: &mut [f32], n: usize, uniforms: &[f32]) {
    let (mut p, mut kept) = ([0f64; M], [false; M]);
    for (g, &u) in values.chunks_exact_mut(M).zip(uniforms) {
        inclusion(g, n, &mut p);
        systematic(&p, u as f64, &mut kept);
        scale(g, &p, &kept);
    }
}

impl Estimator for Mvue {
    fn name(&self) -> &'static str {
        "mvue"
    }
    fn summary(&self) -> &'static str {
        "p_i = min(1, λ|a_i|), systematic sampling of exactly N, scaled by 1/p_i (unbiased, minimum variance)"
    }
    fn unbiased(&self) -> bool {
        true
    }
    fn uniforms_per_group(&self) -> usize {
        1
    }
    fn supports(&self, _pattern: Pattern) -> Result<()> {
        Ok(())
    }
    fn prune_groups(&self, values: &mut [f32], pattern: Pattern, uniforms: &[f32]) {
        match pattern.m {
            2 => prune_fixed::<2>(values, pattern.n, uniforms),
            4 => prune_fixed::<4>(values, pattern.n, uniforms),
            8 => prune_fixed::<8>(values, pattern.n, uniforms),
            16 => prune_fixed::<16>(values, pattern.n, uniforms),
            m => {
                let mut p = vec![0f64; m];
                let mut kept = vec![false; m];
                for (g, &u) in values.chunks_mut(m).zip(uniforms) {
                    inclusion(g, pattern.n, &mut p);
                    systematic(&p, u as f64, &mut kept);
                    scale(g, &p, &kept);
                }
            }
        }
    }
    fn prune_tensor(
        &self,
        groups: &Tensor,
        pattern: Pattern,
        u: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let (g, m) = groups.dims2()?;
        let n = pattern.n;
        let x = groups.to_dtype(DType::F64)?;
        let mag = x.abs()?;
        let (sorted, _) = mag.sort_last_dim(false)?;
        // suffix[k] = Σ_{i ≥ k} sorted_i, for k < N.
        let total = sorted.sum_keepdim(1)?;
        let prefix_excl = (sorted.cumsum(1)? - &sorted)?;
        let suffix = total.broadcast_sub(&prefix_excl)?.narrow(1, 0, n)?;
        let ks = Tensor::arange(0u32, n as u32, groups.device())?
            .to_dtype(DType::F64)?
            .reshape((1, n))?;
        let lambdas = ((ks.neg()? + n as f64)?.broadcast_as((g, n))?.contiguous()?
            / suffix.clamp(1e-300, f64::MAX)?)?;
        let valid = (lambdas.clone() * sorted.narrow(1, 0, n)?)?
            .le(1.0)?
            .to_dtype(DType::F64)?;
        // First valid k: weight valid entries by N − k so the earliest wins the argmax.
        let first = (valid * (ks.neg()? + n as f64)?.broadcast_as((g, n))?)?.argmax_keepdim(1)?;
        let lambda = lambdas.gather(&first, 1)?;
        let p = mag.broadcast_mul(&lambda)?.clamp(0.0, 1.0)?;
        // Systematic sampling on cumulative sums, the last one snapped to round(Σp).
        let csum = p.cumsum(1)?;
        let target = csum.narrow(1, m - 1, 1)?.round()?;
        let csum = csum.broadcast_minimum(&target)?;
        let last = Tensor::cat(&[&csum.narrow(1, 0, m - 1)?, &target], 1)?;
        let prev = Tensor::cat(
            &[
                &Tensor::zeros((g, 1), DType::F64, groups.device())?,
                &last.narrow(1, 0, m - 1)?,
            ],
            1,
        )?;
        let u = u.to_dtype(DType::F64)?;
        let count =
            |c: &Tensor| -> candle_core::Result<Tensor> { c.broadcast_sub(&u)?.ceil()?.relu() };
        let hit = (count(&last)? - count(&prev)?)?
            .ge(1.0)?
            .to_dtype(DType::F64)?;
        let scaled = (x / p.clamp(1e-300, 1.0)?)?;
        (scaled * hit)?.to_dtype(groups.dtype())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn max_search_inclusion_equals_the_sorted_one_with_zeros_and_ties() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for m in [2usize, 4, 8, 16, 32, 64] {
            for n in 1..=m {
                for trial in 0..50 {
                    let g: Vec<f32> = (0..m)
                        .map(|_| match trial % 3 {
                            0 => rng.random::<f32>() - 0.5,
                            1 => [0.0, 1.0, -1.0, 3.0][rng.random_range(0..4)],
                            _ => {
                                (rng.random::<f32>() * 8.0).exp2()
                                    * if rng.random() { 1.0 } else { 0.0 }
                            }
                        })
                        .collect();
                    let (mut a, mut b) = (vec![0f64; m], vec![0f64; m]);
                    inclusion(&g, n, &mut a);
                    inclusion_sorted(&g, n, &mut b);
                    // The fixed-M path gives the same draw as the generic one.
                    let mut fixed = g.clone();
                    let mut generic = g.clone();
                    let u: Vec<f32> = vec![rng.random::<f32>()];
                    Mvue.prune_groups(&mut fixed, Pattern::new(n, m).unwrap(), &u);
                    let mut kept = vec![false; m];
                    systematic(&a, u[0] as f64, &mut kept);
                    scale(&mut generic, &a, &kept);
                    assert_eq!(fixed, generic, "m={m} n={n} {g:?}");
                    for (x, y) in a.iter().zip(&b) {
                        assert!(
                            (x - y).abs() <= 1e-12 * x.abs().max(1.0),
                            "m={m} n={n} {g:?}: {a:?} vs {b:?}"
                        );
                    }
                    let nonzero = g.iter().filter(|v| **v != 0.0).count();
                    let sum: f64 = a.iter().sum();
                    assert!(
                        (sum - n.min(nonzero) as f64).abs() < 1e-9,
                        "Σp = {sum} for {g:?}"
                    );
                }
            }
        }
    }
}
