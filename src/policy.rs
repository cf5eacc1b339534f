//! The mask policy: the rule that turns scores into a mask of a [`Structure`] ([`mask_of`]),
//! shared by training, one-shot conversion and language-model pruning, so every command chooses
//! masks the same way.
//!
//! Problem: given non-negative scores of a weight, the mask of the structure keeping the most
//! score (unstructured, B×B blocks, N:M along `in`; transposable N:M by a registered solver).
//! Guarantee: the structure holds (a transposable solver's infeasible block is an error naming
//! the solver). Cost: a selection over the scores, or the solver's.

use crate::error::{Error, Result};
use crate::mask::tile::Blocks;
use crate::mask::{Mask, Matrix, Pattern, Structure};
use crate::solvers::{SolveContext, Solver, apply::solve_blocks};

/// The mask of structure `kind` on `scores` (`None` for dense); transposable masks come from
/// `solver` (an infeasible block is an error naming it).
pub fn mask_of(
    scores: &Matrix,
    kind: Structure,
    solver: &dyn Solver,
    seed: u64,
) -> Result<Option<Mask>> {
    Ok(match kind {
        Structure::Dense => None,
        Structure::Unstructured(s) => Some(Mask::unstructured(scores, s)?),
        Structure::Block(b, s) => Some(Mask::block(scores, b, s)?),
        Structure::Nm(p) => Some(Mask::nm(scores, p)?),
        Structure::Transposable(p) => {
            let blocks = Blocks::from_matrix(scores, p.m)?;
            let solved = solve_feasible(&blocks, p, solver, seed)?;
            Some(blocks.to_mask(&solved.keep)?)
        }
    })
}

/// `solver` on the blocks of a transposable mask; an infeasible block is an error naming it.
pub fn solve_feasible(
    blocks: &Blocks,
    p: Pattern,
    solver: &dyn Solver,
    seed: u64,
) -> Result<crate::solvers::apply::Solved> {
    let ctx = SolveContext {
        seed,
        ..Default::default()
    };
    let solved = solve_blocks(solver, blocks.data(), p, &ctx)?;
    if solved.evaluation.infeasible > 0 {
        return Err(Error::invalid(
            "solver",
            solver.name(),
            format!("{} infeasible blocks for {p}", solved.evaluation.infeasible),
        ));
    }
    Ok(solved)
}
