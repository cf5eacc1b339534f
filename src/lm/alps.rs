//! ALPS (Meng et al., 2024): one linear layer pruned by operator splitting, then its kept weights
//! refitted by preconditioned conjugate gradients.
//!
//! Problem: as SparseGPT's — given `W: [out, in]` and the calibration Hessian `H = XᵀX`, find `Ŵ`
//! with the structure's zeros minimising `‖XWᵀ − XŴᵀ‖² = Σ_rows (w − ŵ) H (w − ŵ)ᵀ`. Method, as
//! the reference code does it:
//! - dampen `H` by 1% of its mean diagonal (a zero diagonal first set to 1) and normalise it to
//!   a unit diagonal, `Hn = S⁻¹HS⁻¹` with `S = diag(√H_jj)`, the weights to `Wn = WS`;
//! - ADMM on `min ‖(B − Wn)‖²_Hn + ι(D ∈ structure)` subject to `B = D`, with penalty ρ:
//!   `B = (WnHn − V + ρD)(Hn + ρI)⁻¹` (through one eigendecomposition of `Hn`, so a new ρ costs
//!   one product), `D` = the structure's mask of the scores `(B + V/ρ)²` applied to `B + V/ρ`,
//!   `V += ρ(B − D)`;
//! - every 3 iterations ρ grows with the support's change (×1.3 above 10% of the kept count,
//!   ×1.2 above 0.5%, ×1.1 while anything moves; while it has never grown and the support does
//!   not move, ρ shrinks by 5, restarting when something moved), capped at 10⁶; it stops when
//!   the support has settled (nothing moved once ρ has grown, or under 0.03% after 30
//!   iterations) or after 300;
//! - the final mask is the structure's mask of `B²`; on that support, 10 iterations of
//!   conjugate gradients per row (stopping at a relative residual of 10⁻⁴) minimise the same
//!   objective, and `Ŵ = BS⁻¹`.
//!
//! Masks come from [`crate::policy::mask_of`]: unstructured over the whole layer (as the
//! reference does), N:M along `in`, transposable from the chosen solver on every M×M tile (the
//! exact solver's kept score on the final scores gives the kept_gap).
//!
//! Guarantee: `Ŵ` has the structure; on its support it is the least-squares refit to the CG
//! tolerance; a weight that already has the structure is returned with zero error (up to the
//! solves' rounding). The support is a heuristic's, not the optimum's. Cost: one `O(in³)`
//! eigendecomposition per layer input (f64, shared by the projections reading it), then per
//! iteration one `out·in²` product and one mask of the layer, an `in³` product per change of
//! ρ, and `out·in²` per CG step.

use super::sparsegpt::{KeptScores, transposable_with_gap};
use crate::error::{Error, Result};
use crate::mask::Matrix;
use crate::mask::Structure;
use candle_core::{D, DType, Device, Tensor};

/// The normalised, damped Hessian of one layer input and its eigendecomposition, shared by every
/// projection reading that input.
pub struct Basis {
    /// `Hn`, `[n, n]` f32.
    hn: Tensor,
    /// Eigenvectors of `Hn` as columns, `[n, n]` f32.
    q: Tensor,
    /// Eigenvalues of `Hn`.
    lambda: Vec<f64>,
    /// `√H_jj` after damping, `[1, n]` f32.
    scale: Tensor,
    n: usize,
}

impl Basis {
    /// From `h: [n, n]` (`XᵀX`, any positive scale), damped by `damp` × its mean diagonal.
    pub fn new(h: &[f64], n: usize, damp: f64, dev: &Device) -> Result<Self> {
        if h.len() != n * n || n == 0 {
            return Err(Error::invalid(
                "hessian",
                format!("{} values", h.len()),
                format!("expected {n}x{n}, n > 0"),
            ));
        }
        let mean = (0..n).map(|i| h[i * n + i]).sum::<f64>() / n as f64;
        let diag: Vec<f64> = (0..n)
            .map(|i| {
                let d = h[i * n + i];
                (if d == 0.0 { 1.0 } else { d }) + damp * mean
            })
            .collect();
        if diag.iter().any(|d| !(d.is_finite() && *d > 0.0)) {
            return Err(Error::invalid(
                "hessian",
                format!("{n}x{n}, mean diagonal {mean:e}"),
                "a diagonal entry is negative or not finite",
            ));
        }
        let s: Vec<f64> = diag.iter().map(|d| d.sqrt()).collect();
        let hn = nalgebra::DMatrix::from_fn(n, n, |i, j| {
            if i == j {
                1.0
            } else {
                h[i * n + j] / (s[i] * s[j])
            }
        });
        let eig =
            nalgebra::SymmetricEigen::try_new(hn.clone(), f64::EPSILON, 0).ok_or_else(|| {
                Error::invalid(
                    "hessian",
                    format!("{n}x{n}"),
                    "its eigendecomposition did not converge",
                )
            })?;
        if eig.eigenvalues.iter().any(|l| !l.is_finite()) {
            return Err(Error::invalid(
                "hessian",
                format!("{n}x{n}"),
                "an eigenvalue is not finite",
            ));
        }
        let tensor = |m: &nalgebra::DMatrix<f64>| {
            // Row-major: nalgebra stores columns, so read it transposed.
            let v: Vec<f32> = m.transpose().iter().map(|&x| x as f32).collect();
            Tensor::from_vec(v, (n, n), dev).map_err(Error::tensor("alps basis"))
        };
        Ok(Basis {
            hn: tensor(&hn)?,
            q: tensor(&eig.eigenvectors)?,
            lambda: eig.eigenvalues.iter().copied().collect(),
            scale: Tensor::from_vec(s.iter().map(|&x| x as f32).collect(), (1, n), dev)
                .map_err(Error::tensor("alps scale"))?,
            n,
        })
    }

    /// `(Hn + ρI)⁻¹ = Q diag(1/(λ + ρ)) Qᵀ`.
    fn inverse(&self, rho: f64) -> Result<Tensor> {
        let inv: Vec<f32> = self
            .lambda
            .iter()
            .map(|l| (1.0 / (l + rho)) as f32)
            .collect();
        let inv = Tensor::from_vec(inv, (1, self.n), self.q.device()).map_err(ten)?;
        self.q
            .broadcast_mul(&inv)
            .and_then(|qd| qd.matmul(&self.q.t()?))
            .map_err(ten)
    }
}

/// Settings of one ALPS run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The structure (dense prunes nothing).
    pub kind: Structure,
    /// Solver of transposable tiles.
    pub solver: crate::solvers::SolverRef,
    /// Seed for solvers that draw.
    pub seed: u64,
    /// Starting penalty ρ (0.1).
    pub rho: f64,
    /// Most ADMM iterations (300).
    pub max_iter: usize,
    /// Conjugate-gradient iterations of the refit (10).
    pub cg_iters: usize,
}

impl Settings {
    /// The reference code's settings for `kind`.
    pub fn new(kind: Structure, solver: crate::solvers::SolverRef, seed: u64) -> Self {
        Settings {
            kind,
            solver,
            seed,
            rho: 0.1,
            max_iter: 300,
            cg_iters: 10,
        }
    }
}

/// Iterations between updates of ρ.
const UPDATE_EVERY: usize = 3;
/// Iterations before a small support change may stop the run.
const SWITCH_AFTER: usize = 30;
/// Largest ρ.
const RHO_MAX: f64 = 1e6;

fn ten(e: candle_core::Error) -> Error {
    Error::tensor("alps")(e)
}

/// The structure's mask of the scores `t²`: the mask as 0/1 f32 `[rows, cols]`, the keep bytes
/// and, with `gap` on a transposable structure, the kept scores of the solver and of the exact
/// solver (asked for the final mask only: the ADMM's projections need no second solve).
fn project(t: &Tensor, s: &Settings, gap: bool) -> Result<(Tensor, Vec<u8>, Option<KeptScores>)> {
    let (rows, cols) = t.dims2().map_err(ten)?;
    let scores: Vec<f32> = t
        .sqr()
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(ten)?;
    let scores = Matrix::new(rows, cols, scores)?;
    let (mask, kept) = if gap && matches!(s.kind, Structure::Transposable(_)) {
        let (m, k) = transposable_with_gap(&scores, s.kind, &*s.solver, s.seed)?;
        (m, Some(k))
    } else {
        let m = crate::policy::mask_of(&scores, s.kind, &*s.solver, s.seed)?
            .ok_or_else(|| Error::invalid("structure", "dense", "has no mask"))?;
        (m, None)
    };
    let keep = mask.keep().to_vec();
    let f: Vec<f32> = keep.iter().map(|&k| k as f32).collect();
    let m = Tensor::from_vec(f, (rows, cols), t.device()).map_err(ten)?;
    Ok((m, keep, kept))
}

/// What the ρ schedule does after a check of the support.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    /// Go on with this ρ.
    Go(f64),
    /// Start the iterates again with this (smaller) ρ.
    Restart(f64),
    /// The support has settled.
    Stop,
}

/// The reference code's ρ schedule: `change` positions of the support moved since the last
/// check, out of `kept` kept; `grown` says whether ρ has ever grown (set here).
fn schedule(rho: f64, change: usize, kept: usize, grown: &mut bool) -> Step {
    let moved = change as f64 / kept.max(1) as f64;
    let step = if moved > 0.1 {
        *grown = true;
        Step::Go(rho * 1.3)
    } else if moved > 0.005 {
        *grown = true;
        Step::Go(rho * 1.2)
    } else if change > 0 {
        if *grown {
            Step::Go(rho * 1.1)
        } else {
            // ρ was too large from the start: smaller, and start again.
            Step::Restart(rho / 5.0)
        }
    } else if *grown {
        Step::Stop
    } else {
        Step::Go(rho / 5.0)
    };
    match step {
        Step::Go(r) => Step::Go(r.min(RHO_MAX)),
        other => other,
    }
}

/// The ADMM iterations from the normalised weights `w0` (`target = w0·Hn`): the last `B`.
fn admm(w0: &Tensor, target: &Tensor, basis: &Basis, s: &Settings) -> Result<Tensor> {
    let (mask0, keep0, _) = project(w0, s, false)?;
    let d0 = w0.mul(&mask0).map_err(ten)?;
    let kept = keep0.iter().filter(|&&k| k != 0).count();
    let (mut b, mut d, mut v) = (w0.clone(), d0.clone(), w0.zeros_like().map_err(ten)?);
    let mut previous = keep0;
    let mut rho = s.rho;
    let mut inverse = basis.inverse(rho)?;
    let mut grown = false;
    for i in 0..s.max_iter {
        // B = (WnHn − V + ρD)(Hn + ρI)⁻¹
        b = target
            .sub(&v)
            .and_then(|r| r.add(&d.affine(rho, 0.0)?))
            .and_then(|r| r.matmul(&inverse))
            .map_err(ten)?;
        let shifted = b
            .add(&v.affine(1.0 / rho, 0.0).map_err(ten)?)
            .map_err(ten)?;
        let (mask, keep, _) = project(&shifted, s, false)?;
        d = shifted.mul(&mask).map_err(ten)?;
        v = v
            .add(&b.sub(&d).and_then(|r| r.affine(rho, 0.0)).map_err(ten)?)
            .map_err(ten)?;
        if (i + 1) % UPDATE_EVERY != 0 {
            continue;
        }
        let change = keep.iter().zip(&previous).filter(|(a, b)| a != b).count();
        match schedule(rho, change, kept, &mut grown) {
            Step::Stop => break,
            Step::Go(r) => rho = r,
            Step::Restart(r) => {
                rho = r;
                b = w0.clone();
                d = d0.clone();
                v = w0.zeros_like().map_err(ten)?;
            }
        }
        previous = keep;
        inverse = basis.inverse(rho)?;
        if i >= SWITCH_AFTER && (change as f64) < 3e-4 * kept as f64 {
            break;
        }
    }
    Ok(b)
}

/// Prune `w: [rows, cols]` in place with the layer input's [`Basis`]; returns the keep mask and
/// the transposable kept scores.
pub fn prune(
    w: &mut [f32],
    rows: usize,
    cols: usize,
    basis: &Basis,
    s: &Settings,
) -> Result<(Vec<u8>, Option<KeptScores>)> {
    if w.len() != rows * cols || basis.n != cols {
        return Err(Error::invalid(
            "alps operands",
            format!("w {} values, basis {}x{}", w.len(), basis.n, basis.n),
            format!("expected {rows}x{cols} and {cols}x{cols}"),
        ));
    }
    if s.kind == Structure::Dense {
        return Ok((vec![1; w.len()], None));
    }
    let w0 = Tensor::from_slice(w, (rows, cols), basis.hn.device())
        .and_then(|t| t.broadcast_mul(&basis.scale))
        .map_err(ten)?;
    let target = w0.matmul(&basis.hn).map_err(ten)?;
    let b = admm(&w0, &target, basis, s)?;
    let (mask, keep, kept) = project(&b, s, true)?;
    let b = refit(
        &b.mul(&mask).map_err(ten)?,
        &target,
        &basis.hn,
        &mask,
        s.cg_iters,
    )?;
    let out = b
        .broadcast_div(&basis.scale)
        .and_then(|t| t.mul(&mask))
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(ten)?;
    if out.iter().any(|x| !x.is_finite()) {
        return Err(Error::invalid(
            "alps",
            format!("{rows}x{cols} layer"),
            "the pruned weights are not finite",
        ));
    }
    w.copy_from_slice(&out);
    Ok((keep, kept))
}

/// Conjugate gradients per row on `B·Hn = target` restricted to `mask`'s support, from `b`, for
/// at most `iters` steps or until every row's residual is under 10⁻⁴ of its target's norm.
fn refit(b: &Tensor, target: &Tensor, hn: &Tensor, mask: &Tensor, iters: usize) -> Result<Tensor> {
    let row_dot = |a: &Tensor, c: &Tensor| a.mul(c).and_then(|t| t.sum_keepdim(D::Minus1));
    // Per row: num / den, or 0 where den is 0.
    let ratio = |num: &Tensor, den: &Tensor| -> candle_core::Result<Tensor> {
        let zero = den.eq(0.0)?;
        let safe = zero.where_cond(&den.ones_like()?, den)?;
        zero.where_cond(&den.zeros_like()?, &num.div(&safe)?)
    };
    let stop = row_dot(target, target)
        .and_then(|t| t.affine(1e-8, 0.0))
        .map_err(ten)?;
    let mut b = b.clone();
    let mut r = target
        .sub(&b.matmul(hn).map_err(ten)?)
        .and_then(|t| t.mul(mask))
        .map_err(ten)?;
    let mut p = r.clone();
    let mut rr = row_dot(&r, &r).map_err(ten)?;
    for _ in 0..iters {
        let done = rr
            .le(&stop)
            .and_then(|t| t.to_dtype(DType::F32))
            .and_then(|t| t.min_all())
            .and_then(|t| t.to_scalar::<f32>())
            .map_err(ten)?;
        if done > 0.0 {
            break;
        }
        let ap = p.matmul(hn).map_err(ten)?;
        let alpha = row_dot(&p, &ap)
            .and_then(|den| ratio(&rr, &den))
            .map_err(ten)?;
        b = b.add(&p.broadcast_mul(&alpha).map_err(ten)?).map_err(ten)?;
        r = r
            .sub(&ap.broadcast_mul(&alpha).map_err(ten)?)
            .and_then(|t| t.mul(mask))
            .map_err(ten)?;
        let rr_next = row_dot(&r, &r).map_err(ten)?;
        let beta = ratio(&rr_next, &rr).map_err(ten)?;
        p = r.add(&p.broadcast_mul(&beta).map_err(ten)?).map_err(ten)?;
        rr = rr_next;
    }
    Ok(b)
}

#[cfg(test)]
mod tests;
