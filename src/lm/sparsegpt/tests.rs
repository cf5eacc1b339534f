use super::*;
use crate::mask::Pattern;
use rand::{Rng, SeedableRng};

pub(crate) fn problem(rows: usize, cols: usize, tokens: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let w = (0..rows * cols)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    // Correlated inputs: a shared component plus noise, so that H is far from diagonal.
    let x: Vec<f32> = (0..tokens)
        .flat_map(|_| {
            let common: f32 = rng.random_range(-1.0..1.0);
            (0..cols)
                .map(|j| common * (j % 3) as f32 + rng.random_range(-0.5..0.5))
                .collect::<Vec<_>>()
        })
        .collect();
    (w, x)
}

pub(crate) fn hessian(x: &[f32], cols: usize) -> Vec<f64> {
    let mut h = vec![0f64; cols * cols];
    for t in x.chunks(cols) {
        for i in 0..cols {
            for j in 0..cols {
                h[i * cols + j] += t[i] as f64 * t[j] as f64;
            }
        }
    }
    h
}

pub(crate) fn output_error(w: &[f32], wh: &[f32], x: &[f32], cols: usize) -> f64 {
    let rows = w.len() / cols;
    let mut e = 0.0;
    for t in x.chunks(cols) {
        for r in 0..rows {
            let d: f64 = (0..cols)
                .map(|j| (w[r * cols + j] - wh[r * cols + j]) as f64 * t[j] as f64)
                .sum();
            e += d * d;
        }
    }
    e
}

fn settings(kind: Structure) -> Settings {
    Settings {
        kind,
        solver: crate::solvers::SolverRef::Builtin(&crate::solvers::exact::Exact),
        seed: 0,
        damp: 0.01,
        block: 8,
    }
}

#[test]
fn zero_sparsity_leaves_the_weights_unchanged() {
    let (w, x) = problem(8, 16, 64, 1);
    let h = hessian(&x, 16);
    for kind in [Structure::Dense, Structure::Unstructured(0.0)] {
        let mut wh = w.clone();
        let (keep, _) = prune(&mut wh, 8, 16, &h, &settings(kind)).unwrap();
        assert!(keep.iter().all(|&k| k == 1));
        assert_eq!(wh, w, "{kind:?}");
    }
}

#[test]
fn the_update_beats_pruning_the_same_mask_without_it() {
    // SparseGPT's output error is below that of zeroing the same weights and leaving the
    // rest (the update is what it adds), for every structure.
    let (rows, cols) = (16, 32);
    let (w, x) = problem(rows, cols, 256, 2);
    let h = hessian(&x, cols);
    let p = Pattern { n: 2, m: 4 };
    for kind in [
        Structure::Unstructured(0.5),
        Structure::Nm(p),
        Structure::Transposable(p),
    ] {
        let mut wh = w.clone();
        let (keep, _) = prune(&mut wh, rows, cols, &h, &settings(kind)).unwrap();
        let zeroed: Vec<f32> = w.iter().zip(&keep).map(|(&v, &k)| v * k as f32).collect();
        let (e_sgpt, e_zero) = (
            output_error(&w, &wh, &x, cols),
            output_error(&w, &zeroed, &x, cols),
        );
        assert!(e_sgpt < 0.8 * e_zero, "{kind:?}: {e_sgpt} vs {e_zero}");
        let mask = Mask::new(rows, cols, keep).unwrap();
        match kind {
            Structure::Nm(p) => assert!(mask.is_nm(p).unwrap()),
            Structure::Transposable(p) => assert!(mask.is_transposable_nm(p).unwrap()),
            _ => assert!((mask.sparsity() - 0.5).abs() < 1e-9),
        }
        // Pruned weights are exactly zero.
        assert!(
            wh.iter()
                .zip(mask.keep())
                .all(|(&v, &k)| k == 1 || v == 0.0)
        );
    }
}

#[test]
fn the_factor_is_the_upper_cholesky_factor_of_the_inverse() {
    let (_, x) = problem(4, 12, 40, 3);
    let h = hessian(&x, 12);
    let u = inverse_cholesky_upper(&h, 12, 0.01).unwrap();
    // UᵀU·(H + λI) = I.
    let mean = (0..12).map(|i| h[i * 12 + i]).sum::<f64>() / 12.0;
    for i in 0..12 {
        for j in 0..12 {
            let v: f64 = (0..12)
                .map(|k| {
                    let utu: f64 = (0..12).map(|m| u[m * 12 + i] * u[m * 12 + k]).sum();
                    utu * (h[k * 12 + j] + if k == j { 0.01 * mean } else { 0.0 })
                })
                .sum();
            assert!((v - (i == j) as u8 as f64).abs() < 1e-9, "({i},{j}) {v}");
        }
        assert!(u[i * 12 + i] > 0.0);
        for j in 0..i {
            assert_eq!(u[i * 12 + j], 0.0);
        }
    }
}

#[test]
fn a_single_pruned_column_gets_the_closed_form_update() {
    // One row, two inputs, prune the first: the optimal update of the second is
    // w1 + w0·H01/H11 (least squares of x0·w0 on x1).
    let h = vec![2.0, 1.0, 1.0, 4.0];
    let mut w = vec![1.0f32, 0.5];
    let s = Settings {
        kind: Structure::Nm(Pattern { n: 1, m: 2 }),
        solver: crate::solvers::SolverRef::Builtin(&crate::solvers::exact::Exact),
        seed: 0,
        damp: 0.0,
        block: 2,
    };
    // Saliencies w²/U_jj²: U of H⁻¹; the first column's is smaller only if we make w0 small.
    let mut w_small = vec![0.1f32, 0.5];
    prune(&mut w_small, 1, 2, &h, &s).unwrap();
    assert_eq!(w_small[0], 0.0);
    let want = 0.5 + 0.1 * 1.0 / 4.0;
    assert!((w_small[1] as f64 - want).abs() < 1e-6, "{w_small:?}");
    prune(&mut w, 1, 2, &h, &s).unwrap();
    assert_eq!(w.iter().filter(|&&v| v == 0.0).count(), 1);
}
