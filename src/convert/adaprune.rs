//! AdaPrune: re-fit a pruned layer's kept weights to the dense layer's outputs.
//!
//! Problem (Hubara et al. 2021, AdaPrune): given a linear layer's dense weights `W: [out, in]`,
//! a fixed 0/1 mask `S` and calibration inputs `X: [r, in]`, find `W′`, zero wherever `S` is,
//! minimising `‖X Wᵀ − X W′ᵀ‖²_F`. The problem separates by output row: with `K` the kept
//! inputs of row `o`, `min_v ‖X w_o − X_K v‖²`, whose minimiser solves the normal equations
//! `G_KK v = (G w_o)_K` with `G = XᵀX` — the data enter only through the Gram matrix. Hubara et al.
//! run gradient steps on this loss; here every row is solved in closed form (Cholesky, f64).
//! A singular `G_KK` (an input that is always zero, e.g. a border pixel) gets a damping
//! `λ·mean(diag G)·I`, λ from 1e-8 up by tens until the factorisation succeeds.
//!
//! Guarantee: pruned weights are exactly zero; no row's calibration error is worse than the
//! plain pruned row `S⊙w` (a row whose damped solution is not better keeps `S⊙w`), so neither is
//! the layer's; without damping each row is the least-squares optimum (tested against an
//! independent solve). Cost: `O(in²)` per row for `G w_o` plus `O(k³/3)` for the factorisation
//! of the `k` kept inputs, rows in parallel; `G` itself is one `[in, r]·[r, in]` GEMM (the
//! caller's).

use crate::error::{Error, Result};
use nalgebra::{DMatrix, DVector};
use rayon::prelude::*;

/// A re-fitted layer.
#[derive(Debug, Clone)]
pub struct Refit {
    /// `W′` row-major `[out, in]`, zero wherever the mask is.
    pub weights: Vec<f32>,
    /// `‖X Wᵀ − X (S⊙W)ᵀ‖² / ‖X Wᵀ‖²`: the relative calibration error of plain pruning.
    pub error_pruned: f64,
    /// The same for `W′`.
    pub error_refit: f64,
    /// Rows whose damped solution was not better than `S⊙w` and were left pruned only.
    pub rows_unchanged: usize,
}

/// Calibration error of row `v` (kept entries `k`, values `vals`) against the dense row, from the
/// Gram matrix: `‖X w − X v‖² = wᵀGw − 2 vᵀ(Gw) + vᵀGv`.
fn row_error(gram: &[f64], n: usize, w_g_w: f64, gw: &[f64], k: &[usize], vals: &[f64]) -> f64 {
    let mut cross = 0.0;
    let mut quad = 0.0;
    for (a, &i) in k.iter().enumerate() {
        cross += vals[a] * gw[i];
        let row = &gram[i * n..(i + 1) * n];
        let mut s = 0.0;
        for (b, &j) in k.iter().enumerate() {
            s += row[j] * vals[b];
        }
        quad += vals[a] * s;
    }
    (w_g_w - 2.0 * cross + quad).max(0.0)
}

/// Re-fit the kept weights of `w` (`[out, in]`, row-major) under `keep` (same shape, 0/1) to
/// minimise the calibration error given the Gram matrix `gram = XᵀX` (`[in, in]`, row-major).
pub fn adaprune(w: &[f32], keep: &[u8], (out, inp): (usize, usize), gram: &[f64]) -> Result<Refit> {
    if w.len() != out * inp || keep.len() != out * inp || gram.len() != inp * inp {
        return Err(Error::Shape {
            rows: out,
            cols: inp,
            reason: format!(
                "AdaPrune: weights {}, mask {} and Gram matrix {} do not fit [{out}, {inp}]",
                w.len(),
                keep.len(),
                gram.len()
            ),
        });
    }
    let mean_diag = (0..inp).map(|i| gram[i * inp + i]).sum::<f64>() / inp.max(1) as f64;
    // Per row: (new row, error of S⊙w, error of the refit, unchanged).
    let rows: Vec<(Vec<f32>, f64, f64, f64, bool)> = (0..out)
        .into_par_iter()
        .map(|o| {
            let wr: Vec<f64> = w[o * inp..(o + 1) * inp]
                .iter()
                .map(|&x| x as f64)
                .collect();
            let gw: Vec<f64> = (0..inp)
                .map(|i| {
                    let g = &gram[i * inp..(i + 1) * inp];
                    g.iter().zip(&wr).map(|(a, b)| a * b).sum()
                })
                .collect();
            let w_g_w: f64 = wr.iter().zip(&gw).map(|(a, b)| a * b).sum();
            let kept: Vec<usize> = (0..inp).filter(|&i| keep[o * inp + i] != 0).collect();
            let plain: Vec<f64> = kept.iter().map(|&i| wr[i]).collect();
            let e_plain = row_error(gram, inp, w_g_w, &gw, &kept, &plain);
            let mut row = vec![0f32; inp];
            for (&i, &v) in kept.iter().zip(&plain) {
                row[i] = v as f32;
            }
            if kept.is_empty() {
                return (row, e_plain, e_plain, w_g_w, true);
            }
            let kk = kept.len();
            let rhs = DVector::from_iterator(kk, kept.iter().map(|&i| gw[i]));
            let mut damping = 0.0;
            let solved = loop {
                let a = DMatrix::from_fn(kk, kk, |r, c| {
                    gram[kept[r] * inp + kept[c]] + if r == c { damping } else { 0.0 }
                });
                if let Some(ch) = a.cholesky() {
                    break Some(ch.solve(&rhs));
                }
                damping = if damping == 0.0 {
                    1e-8 * mean_diag.max(f64::MIN_POSITIVE)
                } else {
                    damping * 10.0
                };
                if damping > mean_diag.max(1.0) {
                    break None;
                }
            };
            let Some(v) = solved.filter(|v| v.iter().all(|x| x.is_finite())) else {
                return (row, e_plain, e_plain, w_g_w, true);
            };
            let vals: Vec<f64> = v.iter().copied().collect();
            let e_fit = row_error(gram, inp, w_g_w, &gw, &kept, &vals);
            if e_fit >= e_plain {
                return (row, e_plain, e_plain, w_g_w, true);
            }
            for (&i, &x) in kept.iter().zip(&vals) {
                row[i] = x as f32;
            }
            (row, e_plain, e_fit, w_g_w, false)
        })
        .collect();
    let total: f64 = rows.iter().map(|r| r.3).sum();
    let rel = |e: f64| if total > 0.0 { e / total } else { 0.0 };
    Ok(Refit {
        error_pruned: rel(rows.iter().map(|r| r.1).sum()),
        error_refit: rel(rows.iter().map(|r| r.2).sum()),
        rows_unchanged: rows.iter().filter(|r| r.4).count(),
        weights: rows.into_iter().flat_map(|r| r.0).collect(),
    })
}

/// `XᵀX` in f64 from `x: [r, in]` (row-major f32), for [`adaprune`].
pub fn gram(x: &candle_core::Tensor) -> Result<Vec<f64>> {
    (|| {
        let x = x.to_dtype(candle_core::DType::F64)?;
        x.t()?.matmul(&x)?.flatten_all()?.to_vec1::<f64>()
    })()
    .map_err(Error::tensor("AdaPrune Gram matrix"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn setup(r: usize, out: usize, inp: usize, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<u8>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let x: Vec<f32> = (0..r * inp).map(|_| rng.random::<f32>() - 0.5).collect();
        let w: Vec<f32> = (0..out * inp).map(|_| rng.random::<f32>() - 0.5).collect();
        // 2:4 along each row, magnitude.
        let mut keep = vec![0u8; out * inp];
        for (g, k) in w.chunks(4).zip(keep.chunks_mut(4)) {
            let mut idx: Vec<usize> = (0..4).collect();
            idx.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()));
            k[idx[0]] = 1;
            k[idx[1]] = 1;
        }
        (x, w, keep)
    }

    fn gram_of(x: &[f32], r: usize, inp: usize) -> Vec<f64> {
        let mut g = vec![0f64; inp * inp];
        for row in x.chunks(inp) {
            for i in 0..inp {
                for j in 0..inp {
                    g[i * inp + j] += row[i] as f64 * row[j] as f64;
                }
            }
        }
        let _ = r;
        g
    }

    /// ‖X wᵀ − X vᵀ‖² over all rows, straight from X.
    fn error(x: &[f32], w: &[f32], v: &[f32], inp: usize) -> f64 {
        let mut e = 0.0;
        for xr in x.chunks(inp) {
            for (wr, vr) in w.chunks(inp).zip(v.chunks(inp)) {
                let d: f64 = xr
                    .iter()
                    .zip(wr.iter().zip(vr))
                    .map(|(&a, (&b, &c))| a as f64 * (b as f64 - c as f64))
                    .sum();
                e += d * d;
            }
        }
        e
    }

    #[test]
    fn refit_is_the_least_squares_optimum_keeps_zeros_and_never_worse() {
        let (r, out, inp) = (64, 6, 16);
        let (x, w, keep) = setup(r, out, inp, 1);
        let g = gram_of(&x, r, inp);
        let fit = adaprune(&w, &keep, (out, inp), &g).unwrap();
        // Pruned weights stay exactly zero.
        for (v, k) in fit.weights.iter().zip(&keep) {
            if *k == 0 {
                assert_eq!(*v, 0.0);
            }
        }
        // Not worse than plain pruning, and strictly better on random data.
        let pruned: Vec<f32> = w.iter().zip(&keep).map(|(a, &k)| a * k as f32).collect();
        let e_pruned = error(&x, &w, &pruned, inp);
        let e_fit = error(&x, &w, &fit.weights, inp);
        assert!(e_fit < 0.9 * e_pruned, "{e_fit} vs {e_pruned}");
        let dense = error(&x, &w, &vec![0.0; w.len()], inp);
        assert!((fit.error_pruned - e_pruned / dense).abs() < 1e-6);
        assert!((fit.error_refit - e_fit / dense).abs() < 1e-6);
        // The optimum, by an independent solve (SVD least squares on X_K) per row.
        for o in 0..out {
            let kept: Vec<usize> = (0..inp).filter(|&i| keep[o * inp + i] != 0).collect();
            let xk = DMatrix::from_fn(r, kept.len(), |a, b| x[a * inp + kept[b]] as f64);
            let y = DVector::from_fn(r, |a, _| {
                (0..inp)
                    .map(|i| x[a * inp + i] as f64 * w[o * inp + i] as f64)
                    .sum()
            });
            let best = xk.svd(true, true).solve(&y, 1e-12).unwrap();
            for (b, &i) in kept.iter().enumerate() {
                let got = fit.weights[o * inp + i] as f64;
                assert!(
                    (got - best[b]).abs() < 1e-4,
                    "row {o} col {i}: {got} vs {}",
                    best[b]
                );
            }
        }
    }

    #[test]
    fn a_singular_gram_is_damped_and_still_never_worse() {
        // Fewer calibration rows than kept inputs, and one input always zero: G_KK is singular.
        let (r, out, inp) = (3, 4, 16);
        let (mut x, w, keep) = setup(r, out, inp, 2);
        for row in x.chunks_mut(inp) {
            row[5] = 0.0;
        }
        let g = gram_of(&x, r, inp);
        let fit = adaprune(&w, &keep, (out, inp), &g).unwrap();
        assert!(fit.weights.iter().all(|v| v.is_finite()));
        assert!(fit.error_refit <= fit.error_pruned + 1e-12);
        for (v, k) in fit.weights.iter().zip(&keep) {
            if *k == 0 {
                assert_eq!(*v, 0.0);
            }
        }
        let pruned: Vec<f32> = w.iter().zip(&keep).map(|(a, &k)| a * k as f32).collect();
        assert!(error(&x, &w, &fit.weights, inp) <= error(&x, &w, &pruned, inp) * (1.0 + 1e-6));
    }

    #[test]
    fn wrong_sizes_are_an_error() {
        assert!(adaprune(&[0.0; 4], &[1; 4], (2, 2), &[0.0; 3]).is_err());
    }
}
