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
