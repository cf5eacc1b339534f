use super::*;
use crate::lm::prune::has_structure;
use crate::lm::sparsegpt::tests::{hessian, output_error, problem};
use crate::mask::Pattern;

const P24: Pattern = Pattern { n: 2, m: 4 };

fn run(w: &[f32], h: &[f64], rows: usize, cols: usize, kind: Structure) -> (Vec<f32>, Vec<u8>) {
    let basis = Basis::new(h, cols, 0.01, &Device::Cpu).unwrap();
    let s = Settings::new(
        kind,
        crate::solvers::SolverRef::Builtin(&crate::solvers::exact::Exact),
        0,
    );
    let mut wh = w.to_vec();
    let (keep, _) = prune(&mut wh, rows, cols, &basis, &s).unwrap();
    (wh, keep)
}

/// The damped `H` ALPS minimises with.
fn damped(h: &[f64], n: usize) -> Vec<f64> {
    let mean = (0..n).map(|i| h[i * n + i]).sum::<f64>() / n as f64;
    let mut d = h.to_vec();
    for i in 0..n {
        d[i * n + i] += 0.01 * mean;
    }
    d
}

/// `Σ_rows (w − ŵ) H (w − ŵ)ᵀ`.
fn objective(w: &[f32], wh: &[f32], h: &[f64], n: usize) -> f64 {
    w.chunks(n)
        .zip(wh.chunks(n))
        .map(|(a, b)| {
            let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| (x - y) as f64).collect();
            (0..n)
                .flat_map(|i| (0..n).map(move |j| (i, j)))
                .map(|(i, j)| d[i] * h[i * n + j] * d[j])
                .sum::<f64>()
        })
        .sum()
}

#[test]
fn dense_leaves_the_weights_unchanged() {
    let (w, x) = problem(8, 16, 64, 1);
    let (wh, keep) = run(&w, &hessian(&x, 16), 8, 16, Structure::Dense);
    assert_eq!(wh, w);
    assert!(keep.iter().all(|&k| k == 1));
}

#[test]
fn weights_that_already_have_the_structure_keep_it_and_lose_nothing() {
    let (rows, cols) = (8, 16);
    let (mut w, x) = problem(rows, cols, 128, 3);
    // Zero the 2 smallest of every 4: w is 2:4 already.
    for g in w.chunks_mut(4) {
        let mut idx: Vec<usize> = (0..4).collect();
        idx.sort_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs()));
        g[idx[0]] = 0.0;
        g[idx[1]] = 0.0;
    }
    let (wh, keep) = run(&w, &hessian(&x, cols), rows, cols, Structure::Nm(P24));
    let kept: Vec<u8> = w.iter().map(|&v| (v != 0.0) as u8).collect();
    assert_eq!(keep, kept);
    let base = output_error(&w, &vec![0.0; w.len()], &x, cols);
    let err = output_error(&w, &wh, &x, cols);
    assert!(err <= 1e-8 * base, "error {err} of {base}");
}

#[test]
fn the_refit_is_the_least_squares_optimum_on_its_support() {
    // On ALPS's own support, each row's kept weights solve H_SS ŵ_S = (H w)_S (H damped as ALPS
    // damps it); ALPS's objective is that optimum's to 1e-3.
    let (rows, cols) = (8, 16);
    let (w, x) = problem(rows, cols, 128, 4);
    let h = hessian(&x, cols);
    let hd = damped(&h, cols);
    for kind in [Structure::Nm(P24), Structure::Unstructured(0.5)] {
        let (wh, keep) = run(&w, &h, rows, cols, kind);
        let mut best = vec![0f32; w.len()];
        for r in 0..rows {
            let s: Vec<usize> = (0..cols).filter(|&j| keep[r * cols + j] != 0).collect();
            let a = nalgebra::DMatrix::from_fn(s.len(), s.len(), |i, j| hd[s[i] * cols + s[j]]);
            let b = nalgebra::DVector::from_fn(s.len(), |i, _| {
                (0..cols)
                    .map(|j| hd[s[i] * cols + j] * w[r * cols + j] as f64)
                    .sum::<f64>()
            });
            let sol = a.cholesky().unwrap().solve(&b);
            for (i, &j) in s.iter().enumerate() {
                best[r * cols + j] = sol[i] as f32;
            }
        }
        let (got, opt) = (
            objective(&w, &wh, &hd, cols),
            objective(&w, &best, &hd, cols),
        );
        assert!(
            got <= opt * (1.0 + 1e-3) + 1e-9,
            "{kind:?}: alps {got}, optimum {opt}"
        );
        assert!(got > 0.0);
    }
}

#[test]
fn every_structure_holds_and_the_error_is_below_magnitude_and_wanda() {
    // ALPS chooses the support and refits the kept weights, so its output error is below
    // zeroing the magnitude or Wanda mask, on every structure, over four problems.
    let (rows, cols) = (16, 32);
    for seed in 0..4 {
        let (w, x) = problem(rows, cols, 256, 10 + seed);
        let h = hessian(&x, cols);
        let norms: Vec<f32> = (0..cols).map(|j| (h[j * cols + j] as f32).sqrt()).collect();
        for kind in [
            Structure::Unstructured(0.5),
            Structure::Nm(P24),
            Structure::Nm(Pattern { n: 4, m: 8 }),
            Structure::Transposable(Pattern { n: 4, m: 8 }),
        ] {
            let (wh, _) = run(&w, &h, rows, cols, kind);
            assert!(has_structure(&wh, rows, cols, kind).unwrap(), "{kind:?}");
            let ours = output_error(&w, &wh, &x, cols);
            for weigh in [false, true] {
                let scores: Vec<f32> = w
                    .iter()
                    .enumerate()
                    .map(|(i, v)| v.abs() * if weigh { norms[i % cols] } else { 1.0 })
                    .collect();
                let scores = Matrix::new(rows, cols, scores).unwrap();
                let mask = crate::policy::mask_of(&scores, kind, &crate::solvers::exact::Exact, 0)
                    .unwrap()
                    .unwrap();
                let zeroed: Vec<f32> = w
                    .iter()
                    .zip(mask.keep())
                    .map(|(&v, &k)| v * k as f32)
                    .collect();
                let theirs = output_error(&w, &zeroed, &x, cols);
                assert!(
                    ours < theirs,
                    "seed {seed} {kind:?} wanda={weigh}: alps {ours}, {theirs}"
                );
            }
        }
    }
}

#[test]
fn transposable_rows_report_the_kept_gap_against_exact() {
    // The exact solver has no gap; the greedy one keeps a different mask of the same final
    // scores (its gap may be negative where it leaves a tile under-filled, keeping fewer than N
    // per row or column, which the exact solver may not).
    let (rows, cols) = (16, 32);
    let (w, x) = problem(rows, cols, 256, 7);
    let h = hessian(&x, cols);
    let basis = Basis::new(&h, cols, 0.01, &Device::Cpu).unwrap();
    let kind = Structure::Transposable(Pattern { n: 4, m: 8 });
    for solver in ["exact", "greedy"] {
        let s = Settings::new(kind, crate::solvers::by_name(solver).unwrap(), 0);
        let mut wh = w.clone();
        let (_, kept) = prune(&mut wh, rows, cols, &basis, &s).unwrap();
        let kept = kept.expect("transposable structures report kept scores");
        assert!(kept.exact > 0.0 && kept.solver > 0.0, "{solver}: {kept:?}");
        assert!(has_structure(&wh, rows, cols, kind).unwrap());
        if solver == "exact" {
            assert_eq!(kept.gap(), 0.0);
        } else {
            assert!(kept.solver != kept.exact, "{kept:?}");
        }
    }
}

#[test]
fn a_bad_hessian_is_an_error_naming_it() {
    let e = Basis::new(&[1.0, 0.0, 0.0], 2, 0.01, &Device::Cpu)
        .err()
        .unwrap();
    assert!(e.to_string().contains("hessian"), "{e}");
    let e = Basis::new(&[f64::NAN, 0.0, 0.0, 1.0], 2, 0.01, &Device::Cpu)
        .err()
        .unwrap();
    assert!(e.to_string().contains("hessian"), "{e}");
}

#[test]
fn the_rho_schedule_grows_with_the_support_change_restarts_and_stops() {
    let mut grown = false;
    // Nothing moved and ρ never grew: smaller.
    assert_eq!(schedule(1.0, 0, 100, &mut grown), Step::Go(0.2));
    // Something moved before ρ ever grew: smaller, from the start.
    assert_eq!(schedule(1.0, 1, 1000, &mut grown), Step::Restart(0.2));
    assert!(!grown);
    // Over 10% of the kept count moved: ×1.3; over 0.5%: ×1.2; less but some: ×1.1.
    assert_eq!(schedule(1.0, 11, 100, &mut grown), Step::Go(1.3));
    assert!(grown);
    assert_eq!(schedule(1.0, 6, 1000, &mut grown), Step::Go(1.2));
    assert_eq!(schedule(1.0, 1, 1000, &mut grown), Step::Go(1.1));
    // Settled after growing: stop. Capped at 10⁶.
    assert_eq!(schedule(1.0, 0, 1000, &mut grown), Step::Stop);
    assert_eq!(schedule(9e5, 500, 1000, &mut grown), Step::Go(RHO_MAX));
}
