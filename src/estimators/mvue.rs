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
//! 2:4 runs four groups at a time in f64 lanes without branches (AVX2 when the CPU has it),
//! bitwise equal to the generic path.
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
    for (d, v) in p.iter_mut().zip(group) {
        *d = v.abs() as f64;
    }
    let mut used = 0u64;
    let mut lambda = f64::INFINITY;
    for k in 0..n {
        // The sum of the entries not yet saturated, summed afresh in index order: subtracting
        // the saturated ones from the total cancels catastrophically when magnitudes in a group
        // span more than 2^53 (the rest would round to 0 and every entry would saturate).
        // The largest of them is found in the same pass.
        let (mut rest, mut best, mut at) = (0f64, -1f64, 0usize);
        for (i, &v) in p[..m].iter().enumerate() {
            if used & (1 << i) == 0 {
                rest += v;
                if v > best {
                    (best, at) = (v, i);
                }
            }
        }
        if rest <= 0.0 {
            break; // fewer than N non-zeros: every non-zero saturates
        }
        let l = (n - k) as f64 / rest;
        // At k = N − 1, λ·best ≤ 1 holds in exact arithmetic (best ≤ rest); rounding can break
        // it, so it is accepted there regardless.
        if l * best <= 1.0 || k + 1 == n {
            lambda = l;
            break;
        }
        used |= 1 << at;
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
        if l * mags[k] <= 1.0 || k + 1 == n {
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

/// Four 2:4 groups at once, lane l = group l, `a[i][l]` its entry i: [`inclusion`], [`systematic`]
/// and [`scale`] for N = 2, M = 4, with the same arithmetic in the same order, written lane-wise
/// without branches so that it vectorises (4 f64 lanes under AVX2). Bitwise the generic result
/// (tested). Returns `out[i][l]`.
#[inline(always)]
fn two_of_four_x4(a: &[[f32; 4]; 4], u: &[f32; 4]) -> [[f32; 4]; 4] {
    type V = [f64; 4];
    #[inline(always)]
    fn lanes(f: impl Fn(usize) -> f64) -> V {
        [f(0), f(1), f(2), f(3)]
    }
    // Plain loops, not `std::array::from_fn`: its closure wrapper may be left out of line and then
    // compiled without AVX2.
    let mut d = [[0f64; 4]; 4];
    for i in 0..4 {
        d[i] = lanes(|l| a[i][l].abs() as f64);
    }
    let total = lanes(|l| ((d[0][l] + d[1][l]) + d[2][l]) + d[3][l]);
    let max = |x: f64, y: f64| if y > x { y } else { x };
    let best = lanes(|l| max(max(d[0][l], d[1][l]), max(d[2][l], d[3][l])));
    // The rest: the sum without the first largest entry, in index order as `inclusion` sums it.
    let rest = lanes(|l| {
        let (e0, e1, e2) = (d[0][l] == best[l], d[1][l] == best[l], d[2][l] == best[l]);
        let skip = [e0, e1 & !e0, e2 & !e1 & !e0, !(e0 | e1 | e2)];
        let e = |i: usize| if skip[i] { 0.0 } else { d[i][l] };
        ((e(0) + e(1)) + e(2)) + e(3)
    });
    // k = 0: λ = 2/S if it leaves every p ≤ 1; else the largest saturates and λ = 1/rest
    // (k = N − 1, accepted as in `inclusion`). S = 0 gives NaN ≤ 1 = false, then 1/0 = ∞, as does
    // rest = 0: every non-zero saturates, as `inclusion`'s early exit gives.
    let lambda = lanes(|l| {
        let l0 = 2.0 / total[l];
        if l0 * best[l] <= 1.0 {
            l0
        } else {
            1.0 / rest[l]
        }
    });
    let mut p = [[0f64; 4]; 4];
    for i in 0..4 {
        p[i] = lanes(|l| {
            let x = lambda[l] * d[i][l];
            let x = if x < 1.0 { x } else { 1.0 };
            if a[i][l] == 0.0 { 0.0 } else { x }
        });
    }
    let s1 = lanes(|l| p[0][l] + p[1][l]);
    let s2 = lanes(|l| s1[l] + p[2][l]);
    let target = lanes(|l| (s2[l] + p[3][l]).round());
    let u = lanes(|l| u[l] as f64);
    let count = |x: &V| -> V {
        lanes(|l| {
            let c = if x[l] < target[l] { x[l] } else { target[l] };
            if c <= u[l] { 0.0 } else { (c - u[l]).ceil() }
        })
    };
    let hits = [count(&p[0]), count(&s1), count(&s2), count(&target)];
    let mut out = [[0f32; 4]; 4];
    for i in 0..4 {
        for l in 0..4 {
            let kept = hits[i][l] - if i == 0 { 0.0 } else { hits[i - 1][l] } >= 1.0;
            out[i][l] = if kept && p[i][l] > 0.0 {
                (a[i][l] as f64 / p[i][l]) as f32
            } else {
                0.0
            };
        }
    }
    out
}

/// 2:4 over contiguous groups: four at a time by [`two_of_four_x4`], the rest one by one.
#[inline(always)]
fn groups_2of4(values: &mut [f32], uniforms: &[f32]) {
    let whole = values.len() / 16 * 16;
    let (head, tail) = values.split_at_mut(whole);
    for (g, u) in head.chunks_exact_mut(16).zip(uniforms.chunks_exact(4)) {
        let mut a = [[0f32; 4]; 4];
        for (i, row) in a.iter_mut().enumerate() {
            for (l, v) in row.iter_mut().enumerate() {
                *v = g[4 * l + i];
            }
        }
        let out = two_of_four_x4(&a, u.try_into().expect("4 uniforms"));
        for (i, row) in out.iter().enumerate() {
            for (l, &v) in row.iter().enumerate() {
                g[4 * l + i] = v;
            }
        }
    }
    prune_fixed::<4>(tail, 2, &uniforms[whole / 4..]);
}

/// 2:4 down the columns of a strip of 4 rows: four columns at a time by [`two_of_four_x4`] (no
/// gather: lane l is column c + l of each row), the last `cols mod 4` one by one.
#[inline(always)]
fn strip_2of4(inp: &[f32], out: &mut [f32], cols: usize, uniforms: &[f32]) {
    let whole = cols / 4 * 4;
    for c in (0..whole).step_by(4) {
        let mut a = [[0f32; 4]; 4];
        for (i, row) in a.iter_mut().enumerate() {
            row.copy_from_slice(&inp[i * cols + c..i * cols + c + 4]);
        }
        let u = uniforms[c..c + 4].try_into().expect("4 uniforms");
        for (i, row) in two_of_four_x4(&a, u).iter().enumerate() {
            out[i * cols + c..i * cols + c + 4].copy_from_slice(row);
        }
    }
    for c in whole..cols {
        let mut g = [inp[c], inp[cols + c], inp[2 * cols + c], inp[3 * cols + c]];
        prune_fixed::<4>(&mut g, 2, &uniforms[c..c + 1]);
        for (i, v) in g.into_iter().enumerate() {
            out[i * cols + c] = v;
        }
    }
}

/// [`groups_2of4`] compiled with AVX2 enabled.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn groups_2of4_avx2(values: &mut [f32], uniforms: &[f32]) {
    groups_2of4(values, uniforms)
}

/// [`strip_2of4`] compiled with AVX2 enabled.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn strip_2of4_avx2(inp: &[f32], out: &mut [f32], cols: usize, uniforms: &[f32]) {
    strip_2of4(inp, out, cols, uniforms)
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
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the AVX2 build runs only where the CPU reports AVX2.
            4 if pattern.n == 2 && crate::lanes::Avx2::detect().is_some() => unsafe {
                groups_2of4_avx2(values, uniforms)
            },
            4 if pattern.n == 2 => groups_2of4(values, uniforms),
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
    fn prune_strip(
        &self,
        inp: &[f32],
        out: &mut [f32],
        cols: usize,
        pattern: Pattern,
        uniforms: &[f32],
    ) {
        if (pattern.n, pattern.m) != (2, 4) {
            return super::prune_strip_tiled(self, inp, out, cols, pattern, uniforms);
        }
        #[cfg(target_arch = "x86_64")]
        if crate::lanes::Avx2::detect().is_some() {
            // SAFETY: the AVX2 build runs only where the CPU reports AVX2.
            return unsafe { strip_2of4_avx2(inp, out, cols, uniforms) };
        }
        strip_2of4(inp, out, cols, uniforms)
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
        // `sorted` descending; suffix[k] = Σ_{i ≥ k} sorted_i for k < N, summed from the smallest
        // up (a total minus a prefix would cancel when magnitudes span more than 2^53).
        let (ascending, _) = mag.sort_last_dim(true)?;
        let reverse = Tensor::from_vec((0..m as u32).rev().collect(), m, groups.device())?;
        let sorted = ascending.index_select(&reverse, 1)?;
        let suffix = ascending
            .cumsum(1)?
            .index_select(&reverse, 1)?
            .narrow(1, 0, n)?;
        let ks = Tensor::arange(0u32, n as u32, groups.device())?
            .to_dtype(DType::F64)?
            .reshape((1, n))?;
        let lambdas = ((ks.neg()? + n as f64)?.broadcast_as((g, n))?.contiguous()?
            / suffix.clamp(1e-300, f64::MAX)?)?;
        // k = N − 1 is always valid (as in `inclusion`: only rounding could say otherwise).
        let last = Tensor::arange(0u32, n as u32, groups.device())?
            .ge(n as u32 - 1)?
            .to_dtype(DType::F64)?
            .reshape((1, n))?;
        let valid = (lambdas.clone() * sorted.narrow(1, 0, n)?)?
            .le(1.0)?
            .to_dtype(DType::F64)?
            .broadcast_maximum(&last)?;
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
    fn two_of_four_lanes_equal_the_generic_path_bitwise() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(21); // fixed seed
        let p24 = Pattern::new(2, 4).unwrap();
        for trial in 0..400 {
            // 4 rows × 9 columns (two lane groups and one lone column), and the same groups
            // contiguous (nine groups: two lane groups and one lone group).
            let cols = 9;
            let g: Vec<f32> = (0..4 * cols)
                .map(|_| match trial % 4 {
                    0 => rng.random::<f32>() - 0.5,
                    1 => [0.0, -0.0, 1.0, -1.0, 3.0][rng.random_range(0..5)], // zeros, ties
                    2 => (rng.random::<f32>() * 60.0 - 30.0).exp2() * [1.0, -1.0, 0.0][trial % 3],
                    _ => (rng.random::<f32>() * 80.0 - 40.0).exp2(), // spans beyond 2^29
                })
                .collect();
            let u: Vec<f32> = (0..cols).map(|_| rng.random()).collect();
            let mut generic = vec![0f32; g.len()];
            prune_strip_generic(&g, &mut generic, cols, &u);
            let mut strip = vec![0f32; g.len()];
            Mvue.prune_strip(&g, &mut strip, cols, p24, &u);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&strip), bits(&generic), "strip {g:?}");
            // The build without AVX2 (what `prune_strip` runs on other CPUs).
            let mut plain = vec![0f32; g.len()];
            strip_2of4(&g, &mut plain, cols, &u);
            assert_eq!(bits(&plain), bits(&generic), "plain strip {g:?}");
            // Contiguous groups: column c of the strip as group c.
            let mut groups: Vec<f32> = (0..cols)
                .flat_map(|c| (0..4).map(move |i| (i, c)))
                .map(|(i, c)| g[i * cols + c])
                .collect();
            let mut plain = groups.clone();
            groups_2of4(&mut plain, &u);
            Mvue.prune_groups(&mut groups, p24, &u);
            assert_eq!(bits(&plain), bits(&groups), "plain groups {g:?}");
            for c in 0..cols {
                for i in 0..4 {
                    assert_eq!(groups[4 * c + i].to_bits(), generic[i * cols + c].to_bits());
                }
            }
            // Exactly 2 kept in every group with ≥ 2 non-zeros, even across 2^29 and more.
            for c in 0..cols {
                let nz = (0..4).filter(|&i| g[i * cols + c] != 0.0).count();
                let kept = (0..4).filter(|&i| generic[i * cols + c] != 0.0).count();
                assert_eq!(kept, nz.min(2), "column {c} of {g:?}");
            }
        }
    }

    /// The strip pruned group by group through the generic fixed-M path.
    fn prune_strip_generic(inp: &[f32], out: &mut [f32], cols: usize, u: &[f32]) {
        for c in 0..cols {
            let mut g: [f32; 4] = std::array::from_fn(|i| inp[i * cols + c]);
            prune_fixed::<4>(&mut g, 2, &u[c..c + 1]);
            for i in 0..4 {
                out[i * cols + c] = g[i];
            }
        }
    }

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
