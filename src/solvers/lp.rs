//! `lp`: the transposable mask problem handed to a general LP solver (good_lp + microlp).
//!
//! Problem: maximise `Σ x_ij A_ij` over `0 ≤ x ≤ 1` with every row and column sum equal to N,
//! one LP per M×M block. The constraint matrix is that of a bipartite transportation problem
//! (totally unimodular), so a simplex vertex is a 0/1 mask; values are rounded at ½.
//! Scores are divided by the block's largest score first, for the solver's tolerances.
//! Guarantee: exact up to the LP solver's tolerance (it serves as an independent check of
//! `exact`, and as the "general-purpose solver" baseline the TSENOR paper compares against).
//! Cost: one simplex solve with M² variables and 2M constraints per block — far slower than
//! `exact`; blocks run in parallel.
//! Source: Meng, Makni & Mazumder 2025 (TSENOR), LP baseline.

use super::{Guarantee, SolveContext, Solver};
use crate::error::{Error, Result};
use crate::mask::Pattern;
use good_lp::{Expression, ProblemVariables, Solution, SolverModel, microlp, variable};
use std::sync::Mutex;

/// General-purpose LP baseline.
#[derive(Debug, Default, Clone, Copy)]
pub struct Lp;

impl Solver for Lp {
    fn name(&self) -> &'static str {
        "lp"
    }

    fn summary(&self) -> &'static str {
        "general LP solver (good_lp + microlp) on each block; exact, slow baseline"
    }

    fn guarantee(&self) -> Guarantee {
        Guarantee::Exact
    }

    fn solve(&self, blocks: &[f32], pattern: Pattern, _ctx: &SolveContext) -> Result<Vec<u8>> {
        super::check_blocks(blocks, pattern)?;
        let failure: Mutex<Option<Error>> = Mutex::new(None);
        let keep = super::per_block(blocks, pattern, |block, out, b| {
            if let Err(e) = solve_block(block, pattern, out) {
                let mut f = failure.lock().unwrap_or_else(|p| p.into_inner());
                f.get_or_insert(Error::invalid("lp block", b, e));
            }
        });
        match failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(e),
            None => Ok(keep),
        }
    }
}

/// Solve one block with the LP solver.
pub(crate) fn solve_block(
    scores: &[f32],
    pattern: Pattern,
    keep: &mut [u8],
) -> std::result::Result<(), String> {
    let (m, n) = (pattern.m, pattern.n);
    let scale = scores.iter().fold(0f32, |a, &b| a.max(b));
    let scale = if scale > 0.0 { scale as f64 } else { 1.0 };
    let mut vars = ProblemVariables::new();
    let x: Vec<_> = (0..m * m)
        .map(|_| vars.add(variable().min(0.0).max(1.0)))
        .collect();
    let objective: Expression = x
        .iter()
        .zip(scores)
        .map(|(v, &s)| (s as f64 / scale) * *v)
        .sum();
    let mut model = vars.maximise(objective).using(microlp);
    for i in 0..m {
        let row: Expression = (0..m).map(|j| x[i * m + j]).sum();
        let col: Expression = (0..m).map(|j| x[j * m + i]).sum();
        model = model.with(row.eq(n as f64)).with(col.eq(n as f64));
    }
    let solution = model.solve().map_err(|e| e.to_string())?;
    for (k, v) in keep.iter_mut().zip(&x) {
        *k = (solution.value(*v) > 0.5) as u8;
    }
    Ok(())
}
