//! Neural-gradient N:M estimators, behind one trait and chosen by name.
//!
//! An estimator prunes a gradient tensor `g` to N:M along one dimension — by default the
//! reduction dimension of the update GEMM `dW = gᵀ x`, i.e. the batch/token axis (dim 0) of
//! `g: [batch, out]` — keeping at most N non-zeros in every group of M. Random choices come from
//! uniforms drawn by a seeded ChaCha RNG (one or two per group, in group order), so a seed gives
//! the same draw on every device and thread count.
//!
//! Each estimator has a CPU path (plain loops over contiguous groups, parallel over chunks) and
//! a tensor path (candle ops only, for CUDA); both consume the same uniforms and give the same
//! result.

pub mod apply;
pub mod approx_mvue_2to4;
pub mod greedy;
pub mod measure;
pub mod mvue;
pub mod mvue_1to2;

use crate::error::{Error, Result};
use crate::mask::Pattern;
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};

/// A neural-gradient N:M estimator.
pub trait Estimator: Sync + Send {
    /// Registry name.
    fn name(&self) -> &'static str;
    /// One line saying what it does.
    fn summary(&self) -> &'static str;
    /// Whether `E[ĝ] = g`.
    fn unbiased(&self) -> bool;
    /// Uniforms consumed per group.
    fn uniforms_per_group(&self) -> usize;
    /// Patterns it supports (an error says why not).
    fn supports(&self, pattern: Pattern) -> Result<()>;
    /// CPU path: prune contiguous groups of `pattern.m` in place, with `u` uniforms per group.
    fn prune_groups(&self, values: &mut [f32], pattern: Pattern, uniforms: &[f32]);
    /// CPU path along dim 0: prune one strip of M rows of `cols` values (`inp` → `out`, both
    /// row-major `[M, cols]`), group c being column c with uniforms `uniforms[c·u..]`. The
    /// default gathers columns into contiguous groups a tile at a time ([`prune_strip_tiled`]).
    fn prune_strip(
        &self,
        inp: &[f32],
        out: &mut [f32],
        cols: usize,
        pattern: Pattern,
        uniforms: &[f32],
    ) {
        prune_strip_tiled(self, inp, out, cols, pattern, uniforms)
    }
    /// Tensor path: `groups: [G, M]` → pruned `[G, M]`, with uniforms `[G, k]` on the same device.
    fn prune_tensor(
        &self,
        groups: &Tensor,
        pattern: Pattern,
        uniforms: &Tensor,
    ) -> candle_core::Result<Tensor>;
}

/// Every estimator, by name.
pub static REGISTRY: &[&dyn Estimator] = &[
    &greedy::Greedy,
    &mvue_1to2::Mvue1to2,
    &mvue::Mvue,
    &approx_mvue_2to4::ApproxMvue2to4,
];

/// The estimator called `name`, or an error listing the known names.
pub fn by_name(name: &str) -> Result<&'static dyn Estimator> {
    REGISTRY
        .iter()
        .copied()
        .find(|e| e.name() == name)
        .ok_or_else(|| {
            let known: Vec<_> = REGISTRY.iter().map(|e| e.name()).collect();
            Error::invalid(
                "estimator",
                name,
                format!("known estimators: {}", known.join(", ")),
            )
        })
}

/// Uniforms for `groups` groups, `k` per group, from a seeded RNG (chunked so that it is
/// parallel and independent of the thread count).
pub fn uniforms(groups: usize, k: usize, seed: u64) -> Vec<f32> {
    const CHUNK: usize = 1 << 14;
    let mut u = vec![0f32; groups * k];
    crate::par::chunks_mut(&mut u, CHUNK * k.max(1), |c, out| {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(crate::seed::derive_nth(
            seed,
            "uniforms chunk",
            c as u64,
        ));
        out.iter_mut().for_each(|v| *v = rng.random::<f32>());
    });
    u
}

/// Prune a 2-D tensor along `dim` (0: groups run down columns; 1: along rows) with one draw.
pub fn sample(
    est: &dyn Estimator,
    g: &Tensor,
    pattern: Pattern,
    dim: usize,
    seed: u64,
) -> Result<Tensor> {
    est.supports(pattern)?;
    let (rows, cols) = g
        .dims2()
        .map_err(Error::tensor("estimator input must be 2-D"))?;
    if rows == 0 || cols == 0 {
        return Err(Error::Shape {
            rows,
            cols,
            reason: "the gradient is empty; there is nothing to prune".into(),
        });
    }
    let along = if dim == 0 { rows } else { cols };
    if dim > 1 || along % pattern.m != 0 {
        return Err(Error::Shape {
            rows,
            cols,
            reason: format!(
                "dim {dim} of length {along} is not a multiple of M = {}",
                pattern.m
            ),
        });
    }
    let ctx = Error::tensor(format!("{} on {rows}x{cols}", est.name()));
    let n_groups = rows * cols / pattern.m;
    let k = est.uniforms_per_group();
    // Group order (and so uniform order), row-major: for dim 1 the groups of each row of g; for
    // dim 0 strip by strip (M rows of g), column by column within a strip.
    let u = uniforms(n_groups, k, seed);
    (|| {
        if let Device::Cpu = g.device() {
            let g = g.to_dtype(candle_core::DType::F32)?.contiguous()?;
            return g.apply_op1_no_bwd(&CpuPrune {
                est,
                pattern,
                dim,
                uniforms: &u,
            });
        }
        tensor_path(est, g, pattern, dim, u)
    })()
    .map_err(ctx)
}

/// The device path of [`sample`] (candle ops only; what CUDA runs), with the same uniforms.
pub fn tensor_path(
    est: &dyn Estimator,
    g: &Tensor,
    pattern: Pattern,
    dim: usize,
    u: Vec<f32>,
) -> candle_core::Result<Tensor> {
    let (rows, cols) = g.dims2()?;
    let m = pattern.m;
    let n_groups = rows * cols / m;
    let grouped = if dim == 0 {
        // [rows, cols] → [strips, M, cols] → [strips, cols, M]
        g.reshape((rows / m, m, cols))?
            .transpose(1, 2)?
            .contiguous()?
    } else {
        g.contiguous()?
    };
    let groups = grouped.reshape((n_groups, m))?;
    let ut = Tensor::from_vec(u, (n_groups, est.uniforms_per_group()), g.device())?;
    let out = est.prune_tensor(&groups, pattern, &ut)?;
    if dim == 0 {
        out.reshape((rows / m, cols, m))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((rows, cols))
    } else {
        out.reshape((rows, cols))
    }
}

/// The CPU path of [`sample`] as a candle op: one pass that reads `g` and writes the pruned
/// copy, in parallel ([`crate::par::chunks_mut`]) over strips of M rows (dim 0) or runs of groups (dim 1). For dim 0, columns
/// of a strip are gathered into groups a tile at a time (small enough to stay in cache), pruned
/// and scattered into the output; group `(strip b, column c)` uses the uniforms of group
/// `b·cols + c`.
struct CpuPrune<'a> {
    est: &'a dyn Estimator,
    pattern: Pattern,
    dim: usize,
    uniforms: &'a [f32],
}

impl candle_core::CustomOp1 for CpuPrune<'_> {
    fn name(&self) -> &'static str {
        "nm-estimator"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let candle_core::CpuStorage::F32(all) = storage else {
            candle_core::bail!("nm-estimator: expected f32");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("nm-estimator: expected a contiguous tensor");
        };
        let inp = &all[start..end];
        let (rows, cols) = layout.shape().dims2()?;
        let (m, k) = (self.pattern.m, self.est.uniforms_per_group());
        let mut out = vec![0f32; inp.len()];
        if self.dim == 1 {
            const GROUPS: usize = 1 << 12;
            let len = GROUPS * m;
            crate::par::chunks_mut(&mut out, len, |c, o| {
                o.copy_from_slice(&inp[c * len..c * len + o.len()]);
                let from = c * GROUPS * k;
                let u = &self.uniforms[from..from + o.len() / m * k];
                self.est.prune_groups(o, self.pattern, u);
            });
        } else {
            debug_assert_eq!(rows % m, 0);
            let len = m * cols;
            crate::par::chunks_mut(&mut out, len, |b, ostrip| {
                let istrip = &inp[b * len..(b + 1) * len];
                let u = &self.uniforms[b * cols * k..(b + 1) * cols * k];
                self.est.prune_strip(istrip, ostrip, cols, self.pattern, u);
            });
        }
        Ok((candle_core::CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// [`Estimator::prune_strip`] for any estimator: columns of the strip are gathered into
/// contiguous groups a 256-column tile at a time (in cache), pruned by
/// [`Estimator::prune_groups`], and scattered back.
pub fn prune_strip_tiled<E: Estimator + ?Sized>(
    est: &E,
    inp: &[f32],
    out: &mut [f32],
    cols: usize,
    pattern: Pattern,
    uniforms: &[f32],
) {
    const TILE: usize = 256;
    let (m, k) = (pattern.m, est.uniforms_per_group());
    let mut buf = vec![0f32; TILE * m];
    for c0 in (0..cols).step_by(TILE) {
        let w = TILE.min(cols - c0);
        for i in 0..m {
            let row = &inp[i * cols + c0..i * cols + c0 + w];
            for (j, &v) in row.iter().enumerate() {
                buf[j * m + i] = v;
            }
        }
        est.prune_groups(&mut buf[..w * m], pattern, &uniforms[c0 * k..(c0 + w) * k]);
        for i in 0..m {
            let row = &mut out[i * cols + c0..i * cols + c0 + w];
            for (j, v) in row.iter_mut().enumerate() {
                *v = buf[j * m + i];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::greedy::Greedy;
    use super::mvue::Mvue;
    use super::*;
    use crate::mask::Mask;
    use rand::Rng;

    fn p(n: usize, m: usize) -> Pattern {
        Pattern::new(n, m).unwrap()
    }

    /// Heavy-tailed values with some exact zeros and ties (fixed seed).
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..len)
            .map(|i| match i % 11 {
                3 => 0.0,
                7 => 0.5,
                _ => {
                    (rng.random::<f32>() * 4.0 - 2.0).exp()
                        * if rng.random::<bool>() { 1.0 } else { -1.0 }
                }
            })
            .collect()
    }

    /// Per-element sample mean and variance of K draws of the CPU path on `g`.
    fn draws(est: &dyn Estimator, g: &[f32], pat: Pattern, k: usize) -> (Vec<f64>, Vec<f64>) {
        let groups = g.len() / pat.m;
        let (mut sum, mut sq) = (vec![0f64; g.len()], vec![0f64; g.len()]);
        for d in 0..k {
            let mut v = g.to_vec();
            let u = uniforms(groups, est.uniforms_per_group(), 1000 + d as u64);
            est.prune_groups(&mut v, pat, &u);
            for ((s, q), x) in sum.iter_mut().zip(&mut sq).zip(&v) {
                *s += *x as f64;
                *q += (*x as f64).powi(2);
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / k as f64).collect();
        let var = sq
            .iter()
            .zip(&mean)
            .map(|(q, m)| (q / k as f64 - m * m).max(0.0))
            .collect();
        (mean, var)
    }

    #[test]
    fn unbiased_estimators_are_unbiased_within_5_standard_errors() {
        let k = 20_000;
        for (name, pat) in [
            ("mvue_1to2", p(1, 2)),
            ("mvue", p(1, 2)),
            ("mvue", p(2, 4)),
            ("mvue", p(4, 8)),
            ("approx_mvue_2to4", p(2, 4)),
        ] {
            let est = by_name(name).unwrap();
            assert!(est.unbiased());
            let g = values(64, 5);
            let (mean, var) = draws(est, &g, pat, k);
            for (i, ((m, v), x)) in mean.iter().zip(&var).zip(&g).enumerate() {
                let se = (v / k as f64).sqrt();
                assert!(
                    (m - *x as f64).abs() <= 5.0 * se + 1e-6,
                    "{name} {pat} element {i}: mean {m} vs {x} (se {se})"
                );
            }
            // The GEMM ĝᵀx: with x a fixed vector per group position, E[Σ ĝ_i x_i] = Σ g_i x_i.
            let x: Vec<f64> = (0..g.len())
                .map(|i| ((i * 7919) % 13) as f64 - 6.0)
                .collect();
            let groups = g.len() / pat.m;
            let (mut s, mut q) = (0f64, 0f64);
            for d in 0..k {
                let mut v = g.clone();
                est.prune_groups(
                    &mut v,
                    pat,
                    &uniforms(groups, est.uniforms_per_group(), 1000 + d as u64),
                );
                let dot: f64 = v.iter().zip(&x).map(|(a, b)| *a as f64 * b).sum();
                s += dot;
                q += dot * dot;
            }
            let (mean, var) = (s / k as f64, q / k as f64 - (s / k as f64).powi(2));
            let truth: f64 = g.iter().zip(&x).map(|(a, b)| *a as f64 * b).sum();
            assert!(
                (mean - truth).abs() <= 5.0 * (var / k as f64).sqrt() + 1e-6,
                "{name} {pat} gemm: {mean} vs {truth}"
            );
        }
    }

    #[test]
    fn greedy_bias_is_minus_the_dropped_elements_exactly() {
        let g = values(64, 6);
        let pat = p(2, 4);
        let mut v = g.clone();
        Greedy.prune_groups(&mut v, pat, &[]);
        for (group, kept) in g.chunks(4).zip(v.chunks(4)) {
            let mut mags: Vec<f32> = group.iter().map(|x| x.abs()).collect();
            mags.sort_by(|a, b| b.total_cmp(a));
            for (x, k) in group.iter().zip(kept) {
                // E[ĝ] − g = −(dropped): kept entries unchanged, dropped are exactly the rest.
                assert!(*k == *x || *k == 0.0);
            }
            let dropped: f32 = group
                .iter()
                .zip(kept)
                .filter(|(_, k)| **k == 0.0)
                .map(|(x, _)| x.abs())
                .sum();
            assert_eq!(dropped, mags[2] + mags[3]);
        }
        let (_, var) = draws(&Greedy, &g, pat, 3);
        assert!(var.iter().all(|v| *v == 0.0), "greedy is deterministic");
    }

    fn mvue_variance_2to4(a: &[f32]) -> f64 {
        let mags: Vec<f64> = a.iter().map(|x| x.abs() as f64).collect();
        let s: f64 = mags.iter().sum();
        let sq: f64 = mags.iter().map(|x| x * x).sum();
        let max = mags.iter().cloned().fold(0.0, f64::max);
        if max <= s / 2.0 {
            s * s / 2.0 - sq
        } else {
            (s - max).powi(2) - (sq - max * max)
        }
    }

    #[test]
    fn mvue_variance_matches_the_closed_form_within_3_percent() {
        let k = 20_000;
        // 1:2: variance 2|a||b|.
        let g = vec![1.0f32, 2.0, -0.5, 3.0];
        let (_, var) = draws(&Mvue, &g, p(1, 2), k);
        let measured: f64 = var.iter().sum();
        let closed = 2.0 * (1.0 * 2.0) + 2.0 * (0.5 * 3.0);
        assert!(
            (measured / closed - 1.0).abs() < 0.03,
            "1:2: {measured} vs {closed}"
        );
        // 2:4, both cases: max ≤ S/2 and max > S/2.
        for group in [[1.0f32, 2.0, -1.5, 0.7], [10.0, 1.0, -2.0, 0.5]] {
            let (_, var) = draws(&Mvue, &group, p(2, 4), k);
            let measured: f64 = var.iter().sum();
            let closed = mvue_variance_2to4(&group);
            assert!(
                (measured / closed - 1.0).abs() < 0.03,
                "2:4 {group:?}: {measured} vs {closed}"
            );
            let (_, avar) = draws(&approx_mvue_2to4::ApproxMvue2to4, &group, p(2, 4), k);
            let amea: f64 = avar.iter().sum();
            assert!(amea >= measured * 0.99, "approx {amea} < mvue {measured}");
        }
    }

    #[test]
    fn approx_variance_is_never_below_mvue_exactly() {
        // Exact total variances Σ a²(1/π − 1) on many random groups (fixed seed).
        let g = values(4 * 2000, 8);
        for group in g.chunks(4) {
            let mags: [f64; 4] = std::array::from_fn(|i| group[i].abs() as f64);
            if mags.iter().filter(|&&a| a > 0.0).count() <= 2 {
                continue;
            }
            let pi = approx_mvue_2to4::inclusion(&mags);
            assert!(
                (pi.iter().sum::<f64>() - 2.0).abs() < 1e-9,
                "π sums to 2: {pi:?}"
            );
            let approx: f64 = mags
                .iter()
                .zip(&pi)
                .filter(|(a, _)| **a > 0.0)
                .map(|(a, p)| a * a * (1.0 / p - 1.0))
                .sum();
            assert!(
                approx >= mvue_variance_2to4(group) * (1.0 - 1e-9),
                "{group:?}"
            );
        }
    }

    #[test]
    fn outputs_are_nm_along_the_chosen_dim_with_zeros_and_ties() -> Result<()> {
        let (rows, cols) = (16, 12);
        let mut data = values(rows * cols, 9);
        data[..8].iter_mut().for_each(|v| *v = 0.0); // whole zero groups along dim 1
        let g = Tensor::from_vec(data, (rows, cols), &Device::Cpu).map_err(Error::tensor("g"))?;
        for est in REGISTRY {
            for (pat, dim) in [(p(1, 2), 0), (p(2, 4), 0), (p(2, 4), 1), (p(4, 8), 0)] {
                if est.supports(pat).is_err() {
                    continue;
                }
                let out = sample(*est, &g, pat, dim, 11)?;
                let v = out
                    .flatten_all()
                    .and_then(|t| t.to_vec1::<f32>())
                    .map_err(Error::tensor("out"))?;
                let mask = Mask::new(rows, cols, v.iter().map(|x| (*x != 0.0) as u8).collect())?;
                let along = if dim == 0 { mask.transpose() } else { mask };
                assert!(along.is_nm(pat)?, "{} {pat} dim {dim}", est.name());
                // Exactly N where a group has at least N non-zeros.
                let orig = if dim == 0 {
                    g.t().unwrap().contiguous().unwrap()
                } else {
                    g.clone()
                };
                let ov = orig.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let kept = along.keep();
                for (og, kg) in ov.chunks(pat.m).zip(kept.chunks(pat.m)) {
                    let nz = og.iter().filter(|x| **x != 0.0).count();
                    let k: usize = kg.iter().map(|&b| b as usize).sum();
                    assert_eq!(k, nz.min(pat.n), "{} {pat}: {og:?}", est.name());
                }
            }
        }
        assert!(sample(&Mvue, &g, p(2, 5), 0, 1).is_err());
        Ok(())
    }

    #[test]
    fn tensor_path_equals_cpu_path() -> candle_core::Result<()> {
        let g = values(4 * 512, 10);
        for est in REGISTRY {
            for pat in [p(1, 2), p(2, 4), p(4, 8)] {
                if est.supports(pat).is_err() || !g.len().is_multiple_of(pat.m) {
                    continue;
                }
                let groups = g.len() / pat.m;
                let k = est.uniforms_per_group();
                let u = uniforms(groups, k, 12);
                let mut cpu = g.clone();
                est.prune_groups(&mut cpu, pat, &u);
                let gt = Tensor::from_vec(g.clone(), (groups, pat.m), &Device::Cpu)?;
                let ut = Tensor::from_vec(u, (groups, k), &Device::Cpu)?;
                let tensor = est
                    .prune_tensor(&gt, pat, &ut)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                for (i, (a, b)) in cpu.iter().zip(&tensor).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-4 * a.abs().max(1.0),
                        "{} {pat} element {i}: cpu {a} tensor {b}",
                        est.name()
                    );
                }
            }
        }
        Ok(())
    }

    #[test]
    fn sample_cpu_path_equals_the_device_path_along_both_dims() -> Result<()> {
        let (rows, cols) = (16, 24);
        let g = Tensor::from_vec(values(rows * cols, 21), (rows, cols), &Device::Cpu).unwrap();
        for est in REGISTRY {
            let pat = if est.name() == "mvue_1to2" {
                p(1, 2)
            } else {
                p(2, 4)
            };
            for dim in [0, 1] {
                let cpu = sample(*est, &g, pat, dim, 5)?
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                let groups = rows * cols / pat.m;
                let u = uniforms(groups, est.uniforms_per_group(), 5);
                let dev = tensor_path(*est, &g, pat, dim, u)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                for (a, b) in cpu.iter().zip(&dev) {
                    assert!(
                        (a - b).abs() <= 1e-4 * a.abs().max(1.0),
                        "{} dim {dim}: {a} vs {b}",
                        est.name()
                    );
                }
            }
        }
        Ok(())
    }
}
