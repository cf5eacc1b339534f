//! SparseGPT (Frantar and Alistarh, 2023): prune one linear layer to a mask chosen on the fly and
//! update the weights that remain so that the layer's output on calibration inputs moves least.
//!
//! Problem: given `W: [out, in]` and the calibration Hessian `H = XᵀX` of its inputs, find
//! `Ŵ` with the structure's zeros minimising `‖XWᵀ − XŴᵀ‖²`. Method, as the reference code
//! does it: dampen `H` by 1% of its mean diagonal (dead inputs, with a zero diagonal, get 1 and
//! their weights 0), take the upper Cholesky factor `U` of `H⁻¹`, and walk the columns in lazy
//! blocks of 128. Each pruned weight's error `(w − 0)/U_jj` is spread over the row's later
//! columns through `U`'s row (the optimal brain surgeon update, one column at a time); the
//! block's accumulated errors update the columns after it at once. Masks: unstructured — the
//! block's `w²/U_jj²` saliencies below the block's quantile are pruned; N:M — at each group of M
//! columns, each row prunes its M−N least salient, on the weights as updated so far; transposable
//! N:M — at the start of each column block, every M×M tile of the block's saliencies gets its
//! mask from the chosen solver (TSENOR's integration), and the exact solver's kept saliency on
//! the same tiles gives the kept_gap.
//!
//! Guarantee: at 0% sparsity nothing is pruned and `Ŵ = W` exactly (every error is zero); the
//! result keeps the structure. Cost: `O(in³)` for the factorisations (f64, nalgebra) and
//! `O(out·in²)` for the updates, rows in parallel.

use crate::error::{Error, Result};
use crate::mask::{Mask, Matrix};
use crate::structure::MaskKind;
use rayon::prelude::*;

/// Saliency kept by the solver's and by the exact solver's transposable masks (0 for others).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KeptScores {
    /// By the chosen solver.
    pub solver: f64,
    /// By the exact solver on the same scores.
    pub exact: f64,
}

impl KeptScores {
    /// `1 − solver/exact` (0 when nothing was solved).
    pub fn gap(&self) -> f64 {
        if self.exact > 0.0 {
            1.0 - self.solver / self.exact
        } else {
            0.0
        }
    }

    /// Sum of two.
    pub fn plus(self, o: KeptScores) -> KeptScores {
        KeptScores {
            solver: self.solver + o.solver,
            exact: self.exact + o.exact,
        }
    }
}

/// A transposable mask of `scores` by `solver`, with the kept scores of it and of the exact
/// solver's mask.
pub fn transposable_with_gap(
    scores: &Matrix,
    kind: MaskKind,
    solver: &str,
    seed: u64,
) -> Result<(Mask, KeptScores)> {
    let mask = crate::structure::mask_of(scores, kind, solver, seed)?
        .ok_or_else(|| Error::invalid("structure", "dense", "has no mask"))?;
    let kept = mask.kept_score(scores);
    let exact = if solver == "exact" {
        kept
    } else {
        crate::structure::mask_of(scores, kind, "exact", seed)?
            .map(|m| m.kept_score(scores))
            .unwrap_or(kept)
    };
    Ok((
        mask,
        KeptScores {
            solver: kept,
            exact,
        },
    ))
}

/// Settings of one SparseGPT run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The structure (dense prunes nothing).
    pub kind: MaskKind,
    /// Solver of transposable tiles.
    pub solver: String,
    /// Seed for solvers that draw.
    pub seed: u64,
    /// Damping as a fraction of the mean diagonal of H (0.01).
    pub damp: f64,
    /// Columns per lazy block (128).
    pub block: usize,
}

/// The inverse Hessian's upper Cholesky factor of one layer input, shared by every projection
/// reading that input (q, k and v; gate and up).
pub struct Factor {
    /// `U`, row-major `[n, n]`, `H⁻¹ = UᵀU`.
    u: Vec<f64>,
    /// Inputs with a zero diagonal in `H` (their weights are zeroed).
    dead: Vec<bool>,
    n: usize,
}

impl Factor {
    /// Factor `h: [n, n]` (`XᵀX`, any positive scale) damped by `damp` × its mean diagonal.
    pub fn new(h: &[f64], n: usize, damp: f64) -> Result<Self> {
        if h.len() != n * n {
            return Err(Error::invalid(
                "hessian",
                format!("{} values", h.len()),
                format!("expected {n}x{n}"),
            ));
        }
        Ok(Factor {
            u: inverse_cholesky_upper(h, n, damp)?,
            dead: (0..n).map(|j| h[j * n + j] == 0.0).collect(),
            n,
        })
    }
}

/// Prune `w: [rows, cols]` in place given `h: [cols, cols]` (`XᵀX`, any positive scale);
/// returns the mask and the transposable kept scores.
pub fn prune(
    w: &mut [f32],
    rows: usize,
    cols: usize,
    h: &[f64],
    s: &Settings,
) -> Result<(Vec<u8>, KeptScores)> {
    prune_factored(w, rows, cols, &Factor::new(h, cols, s.damp)?, s)
}

/// [`prune`] with the factor already made.
pub fn prune_factored(
    w: &mut [f32],
    rows: usize,
    cols: usize,
    f: &Factor,
    s: &Settings,
) -> Result<(Vec<u8>, KeptScores)> {
    if w.len() != rows * cols || f.n != cols {
        return Err(Error::invalid(
            "sparsegpt operands",
            format!("w {} values, factor {}x{}", w.len(), f.n, f.n),
            format!("expected {rows}x{cols} and {cols}x{cols}"),
        ));
    }
    let m = s.kind.tile();
    let tiles_rows = matches!(s.kind, MaskKind::Transposable(_) | MaskKind::Block(..));
    if m > 1
        && (!s.block.is_multiple_of(m)
            || (tiles_rows && !rows.is_multiple_of(m))
            || !cols.is_multiple_of(m))
    {
        return Err(Error::Shape {
            rows,
            cols,
            reason: format!(
                "SparseGPT's blocks of {} and the tiles of {m} do not fit",
                s.block
            ),
        });
    }
    let u = &f.u;
    let mut wf: Vec<f64> = w.iter().map(|&x| x as f64).collect();
    // Dead inputs (zero diagonal): their weights carry no output.
    for j in 0..cols {
        if f.dead[j] {
            for r in 0..rows {
                wf[r * cols + j] = 0.0;
            }
        }
    }
    let mut keep = vec![1u8; rows * cols];
    let mut kept = KeptScores::default();
    let mut i1 = 0;
    while i1 < cols {
        let i2 = (i1 + s.block).min(cols);
        let count = i2 - i1;
        let saliency = |r: usize, j: usize| {
            let d = u[j * cols + j];
            (wf[r * cols + j] * wf[r * cols + j] / (d * d)) as f32
        };
        // Unstructured, block and transposable masks are chosen for the whole column block at
        // its start (N:M inside the column walk below).
        if !matches!(s.kind, MaskKind::Dense | MaskKind::Nm(_)) {
            let scores: Vec<f32> = (0..rows)
                .flat_map(|r| (i1..i2).map(move |j| (r, j)))
                .map(|(r, j)| saliency(r, j))
                .collect();
            let scores = Matrix::new(rows, count, scores)?;
            let block = if let MaskKind::Transposable(_) = s.kind {
                let (mask, k) = transposable_with_gap(&scores, s.kind, &s.solver, s.seed)?;
                kept = kept.plus(k);
                mask
            } else {
                crate::structure::mask_of(&scores, s.kind, &s.solver, s.seed)?
                    .expect("a sparse structure has a mask")
            };
            for r in 0..rows {
                keep[r * cols + i1..r * cols + i2]
                    .copy_from_slice(&block.keep()[r * count..(r + 1) * count]);
            }
        }
        wf.par_chunks_mut(cols)
            .zip(keep.par_chunks_mut(cols))
            .for_each(|(row, krow)| {
                let mut err = vec![0f64; count];
                for (i, err_i) in err.iter_mut().enumerate() {
                    let j = i1 + i;
                    if let MaskKind::Nm(p) = s.kind
                        && i % p.m == 0
                    {
                        let sal: Vec<f32> = (j..j + p.m)
                            .map(|c| {
                                let d = u[c * cols + c];
                                (row[c] * row[c] / (d * d)) as f32
                            })
                            .collect();
                        let top = crate::mask::top_k(&sal, p.n);
                        krow[j..j + p.m].copy_from_slice(&top);
                    }
                    let wv = row[j];
                    let q = if krow[j] != 0 { wv } else { 0.0 };
                    let e = (wv - q) / u[j * cols + j];
                    if e != 0.0 {
                        let urow = &u[j * cols..(j + 1) * cols];
                        for c in j..i2 {
                            row[c] -= e * urow[c];
                        }
                    }
                    row[j] = q;
                    *err_i = e;
                }
                // The block's errors on every later column at once.
                for (i, &e) in err.iter().enumerate() {
                    if e != 0.0 {
                        let urow = &u[(i1 + i) * cols..(i1 + i + 1) * cols];
                        for c in i2..cols {
                            row[c] -= e * urow[c];
                        }
                    }
                }
            });
        i1 = i2;
    }
    for (o, (&v, &k)) in w.iter_mut().zip(wf.iter().zip(&keep)) {
        *o = if k != 0 { v as f32 } else { 0.0 };
    }
    Ok((keep, kept))
}

/// The upper Cholesky factor `U` (row-major, `H⁻¹ = UᵀU`) of the inverse of `h` damped by
/// `damp` × its mean diagonal (zero diagonals set to 1 first), without forming `H⁻¹`: with `J`
/// the reversal, `JHJ = L̃L̃ᵀ` gives `H = RRᵀ` with `R = JL̃J` upper triangular, so
/// `H⁻¹ = R⁻ᵀR⁻¹` and `U = R⁻¹` (upper, positive diagonal: the unique such factor). One
/// Cholesky and one triangular inverse, `2n³/3` flops.
fn inverse_cholesky_upper(h: &[f64], n: usize, damp: f64) -> Result<Vec<f64>> {
    let mean = (0..n).map(|i| h[i * n + i]).sum::<f64>() / n as f64;
    let rev = |i: usize| n - 1 - i;
    let mut ht = nalgebra::DMatrix::from_fn(n, n, |i, j| h[rev(i) * n + rev(j)]);
    for i in 0..n {
        if ht[(i, i)] == 0.0 {
            ht[(i, i)] = 1.0;
        }
        ht[(i, i)] += damp * mean;
    }
    let not_pd = || {
        Error::invalid(
            "hessian",
            format!("{n}x{n}, mean diagonal {mean:e}"),
            "not positive definite after damping",
        )
    };
    let lt = nalgebra::Cholesky::new(ht).ok_or_else(not_pd)?.unpack();
    let r = nalgebra::DMatrix::from_fn(n, n, |i, j| lt[(rev(i), rev(j))]);
    let ri = r
        .solve_upper_triangular(&nalgebra::DMatrix::identity(n, n))
        .ok_or_else(not_pd)?;
    let mut u = vec![0f64; n * n];
    for i in 0..n {
        for j in i..n {
            u[i * n + j] = ri[(i, j)];
        }
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::Pattern;
    use rand::{Rng, SeedableRng};

    fn problem(rows: usize, cols: usize, tokens: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
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

    fn hessian(x: &[f32], cols: usize) -> Vec<f64> {
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

    fn output_error(w: &[f32], wh: &[f32], x: &[f32], cols: usize) -> f64 {
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

    fn settings(kind: MaskKind) -> Settings {
        Settings {
            kind,
            solver: "exact".into(),
            seed: 0,
            damp: 0.01,
            block: 8,
        }
    }

    #[test]
    fn zero_sparsity_leaves_the_weights_unchanged() {
        let (w, x) = problem(8, 16, 64, 1);
        let h = hessian(&x, 16);
        for kind in [MaskKind::Dense, MaskKind::Unstructured(0.0)] {
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
            MaskKind::Unstructured(0.5),
            MaskKind::Nm(p),
            MaskKind::Transposable(p),
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
                MaskKind::Nm(p) => assert!(mask.is_nm(p).unwrap()),
                MaskKind::Transposable(p) => assert!(mask.is_transposable_nm(p).unwrap()),
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
            kind: MaskKind::Nm(Pattern { n: 1, m: 2 }),
            solver: "exact".into(),
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
}
