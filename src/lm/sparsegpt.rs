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
use crate::mask::Structure;
use crate::mask::{Mask, Matrix};
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
    kind: Structure,
    solver: &dyn crate::solvers::Solver,
    seed: u64,
) -> Result<(Mask, KeptScores)> {
    let mask = crate::policy::mask_of(scores, kind, solver, seed)?
        .ok_or_else(|| Error::invalid("structure", "dense", "has no mask"))?;
    let kept = mask.kept_score(scores);
    let exact = if solver.guarantee() == crate::solvers::Guarantee::Exact {
        kept
    } else {
        crate::policy::mask_of(scores, kind, &crate::solvers::exact::Exact, seed)?
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
    pub kind: Structure,
    /// Solver of transposable tiles.
    pub solver: crate::solvers::SolverRef,
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
    check_fit(w.len(), rows, cols, f, s)?;
    let u = &f.u;
    let mut wf: Vec<f64> = w.iter().map(|&x| x as f64).collect();
    // Dead inputs (zero diagonal): their weights carry no output.
    for j in (0..cols).filter(|&j| f.dead[j]) {
        for r in 0..rows {
            wf[r * cols + j] = 0.0;
        }
    }
    let mut keep = vec![1u8; rows * cols];
    let mut kept = KeptScores::default();
    let mut i1 = 0;
    while i1 < cols {
        let i2 = (i1 + s.block).min(cols);
        // Unstructured, block and transposable masks are chosen for the whole column block at
        // its start (N:M inside the column walk).
        if !matches!(s.kind, Structure::Dense | Structure::Nm(_)) {
            kept = kept.plus(block_mask(&wf, u, &mut keep, rows, cols, (i1, i2), s)?);
        }
        let mut err = vec![0f64; rows * (i2 - i1)];
        wf.par_chunks_mut(cols)
            .zip(keep.par_chunks_mut(cols))
            .zip(err.par_chunks_mut(i2 - i1))
            .for_each(|((row, krow), e)| walk_block(row, krow, e, u, (i1, i2), s.kind));
        later_columns(&mut wf, &err, u, rows, cols, (i1, i2));
        i1 = i2;
    }
    for (o, (&v, &k)) in w.iter_mut().zip(wf.iter().zip(&keep)) {
        *o = if k != 0 { v as f32 } else { 0.0 };
    }
    Ok((keep, kept))
}

/// The operands fit: `w` is `rows × cols`, the factor `cols²`, the tiles divide the blocks.
fn check_fit(len: usize, rows: usize, cols: usize, f: &Factor, s: &Settings) -> Result<()> {
    if len != rows * cols || f.n != cols {
        return Err(Error::invalid(
            "sparsegpt operands",
            format!("w {len} values, factor {}x{}", f.n, f.n),
            format!("expected {rows}x{cols} and {cols}x{cols}"),
        ));
    }
    let m = s.kind.tile();
    let tiles_rows = matches!(s.kind, Structure::Transposable(_) | Structure::Block(..));
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
    Ok(())
}

/// The mask of columns `i1..i2` chosen at the block's start on the saliencies `w²/U_jj²`, written
/// into `keep`; the transposable kept scores (zero for other structures).
fn block_mask(
    wf: &[f64],
    u: &[f64],
    keep: &mut [u8],
    rows: usize,
    cols: usize,
    (i1, i2): (usize, usize),
    s: &Settings,
) -> Result<KeptScores> {
    let count = i2 - i1;
    let saliency = |r: usize, j: usize| {
        let d = u[j * cols + j];
        (wf[r * cols + j] * wf[r * cols + j] / (d * d)) as f32
    };
    let scores: Vec<f32> = (0..rows)
        .flat_map(|r| (i1..i2).map(move |j| (r, j)))
        .map(|(r, j)| saliency(r, j))
        .collect();
    let scores = Matrix::new(rows, count, scores)?;
    let (block, kept) = if let Structure::Transposable(_) = s.kind {
        transposable_with_gap(&scores, s.kind, &*s.solver, s.seed)?
    } else {
        let m = crate::policy::mask_of(&scores, s.kind, &*s.solver, s.seed)?
            .expect("a sparse structure has a mask");
        (m, KeptScores::default())
    };
    for r in 0..rows {
        keep[r * cols + i1..r * cols + i2]
            .copy_from_slice(&block.keep()[r * count..(r + 1) * count]);
    }
    Ok(kept)
}

/// One row's walk over columns `i1..i2`: N:M masks chosen at each group of M on the weights as
/// updated so far, each pruned weight's error `w/U_jj` spread over the later columns of the
/// block through `U`'s row and written to `err` (the block's errors reach the columns after it
/// in [`later_columns`]).
fn walk_block(
    row: &mut [f64],
    krow: &mut [u8],
    err: &mut [f64],
    u: &[f64],
    (i1, i2): (usize, usize),
    kind: Structure,
) {
    let cols = row.len();
    for (i, err_i) in err.iter_mut().enumerate() {
        let j = i1 + i;
        if let Structure::Nm(p) = kind
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
}

/// The lazy update after column block `i1..i2`: every later column at once,
/// `W[:, i2..] −= E·U[i1..i2, i2..]` with `E: [rows, i2 − i1]` the block's scaled errors (one
/// f64 gemm over rayon's threads, `rows·(i2 − i1)·(cols − i2)` multiply-adds).
fn later_columns(
    wf: &mut [f64],
    err: &[f64],
    u: &[f64],
    rows: usize,
    cols: usize,
    (i1, i2): (usize, usize),
) {
    let bw = i2 - i1;
    assert!(
        i1 <= i2
            && i2 <= cols
            && wf.len() == rows * cols
            && err.len() == rows * bw
            && u.len() == cols * cols,
        "sparsegpt: lazy update operands out of shape"
    );
    if i2 == cols || bw == 0 || rows == 0 {
        return;
    }
    // the assert above bounds every access: dst is rows × (cols − i2) from column i2 of
    // `wf` (row stride cols), lhs `err` rows × bw (row stride bw), rhs rows i1..i2 of `u` from
    // column i2 (row stride cols); dst does not alias the operands.
    // SAFETY: by the bounds and ownership just stated.
    unsafe {
        gemm::gemm(
            rows,
            cols - i2,
            bw,
            wf.as_mut_ptr().add(i2),
            1,
            cols as isize,
            true,
            err.as_ptr(),
            1,
            bw as isize,
            u.as_ptr().add(i1 * cols + i2),
            1,
            cols as isize,
            1.0f64,
            -1.0f64,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        );
    }
}

/// The upper Cholesky factor `U` (row-major, `H⁻¹ = UᵀU`) of the inverse of `h` damped by
/// `damp` × its mean diagonal (zero diagonals set to 1 first), without forming `H⁻¹`: with `J`
/// the reversal, `JHJ = L̃L̃ᵀ` gives `H = RRᵀ` with `R = JL̃J` upper triangular, so
/// `H⁻¹ = R⁻ᵀR⁻¹` and `U = R⁻¹` (upper, positive diagonal: the unique such factor). One
/// Cholesky (`n³/3` flops, nalgebra) and one triangular inverse (`n³/3` flops, rows of `U` in
/// parallel, see [`inverse_row`]).
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
    // nalgebra's factor has a positive diagonal. L = Rᵀ, lower triangular, row-major: L[i][k] = R[k][i] = L̃[rev k][rev i].
    let mut l = vec![0f64; n * n];
    for i in 0..n {
        for k in 0..=i {
            l[i * n + k] = lt[(rev(k), rev(i))];
        }
    }
    let mut u = vec![0f64; n * n];
    u.par_chunks_mut(n)
        .enumerate()
        .for_each(|(j, row)| inverse_row(&l, n, j, row));
    Ok(u)
}

/// Row `j` of `U = R⁻¹ = (L⁻¹)ᵀ`, i.e. column `j` of `L⁻¹`, by forward substitution:
/// `x_j = 1/L_jj`, `x_i = −(Σ_{k=j}^{i−1} L_ik x_k)/L_ii` for `i > j` (entries below `j` are
/// zero). Each term is a dot product of two contiguous slices; `(n−j)²/2` multiply-adds.
fn inverse_row(l: &[f64], n: usize, j: usize, row: &mut [f64]) {
    row[j] = 1.0 / l[j * n + j];
    for i in j + 1..n {
        let s = dot(&l[i * n + j..i * n + i], &row[j..i]);
        row[i] = -s / l[i * n + i];
    }
}

/// `Σ aᵢbᵢ` with eight independent partial sums (so that the compiler can use vector lanes).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f64>() + tail
}

#[cfg(test)]
pub(crate) mod tests;
