//! The mask structure of a model's prunable layers ([`MaskKind`]) and the policy that turns
//! scores into a mask of that structure ([`mask_of`]): shared by training, one-shot conversion
//! and language-model pruning, so the three choose masks the same way.
//!
//! Problem: given non-negative scores of a weight, the mask of the structure keeping the most
//! score (unstructured, B×B blocks, N:M along `in`; transposable N:M by a registered solver).
//! Guarantee: the structure holds (a transposable solver's infeasible block is an error naming
//! the solver). Cost: a selection over the scores, or the solver's.

use crate::diversity::{Structure, diversity};
use crate::error::{Error, Result};
use crate::mask::tile::Blocks;
use crate::mask::{Mask, Matrix, Pattern};
use crate::solvers::{SolveContext, Solver, apply::solve_blocks};
use std::fmt;
use std::str::FromStr;

/// The mask structure of the prunable layers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaskKind {
    /// No mask.
    Dense,
    /// Keep the largest `1 − sparsity` fraction of each layer.
    Unstructured(f64),
    /// Keep the `B×B` blocks of largest L2 norm, a `1 − sparsity` fraction of them.
    Block(usize, f64),
    /// N:M along `in` (forward GEMM only).
    Nm(Pattern),
    /// Transposable N:M (forward and backward GEMMs), found by a registered solver.
    Transposable(Pattern),
}

impl MaskKind {
    /// The side a prunable layer's weights must tile by: M of the pattern, B of blocks, else 1.
    pub fn tile(&self) -> usize {
        match self {
            MaskKind::Nm(p) | MaskKind::Transposable(p) => p.m,
            MaskKind::Block(b, _) => *b,
            _ => 1,
        }
    }

    /// The nominal fraction of a prunable layer's weights that the mask prunes.
    pub fn sparsity(&self) -> f64 {
        match self {
            MaskKind::Dense => 0.0,
            MaskKind::Unstructured(s) | MaskKind::Block(_, s) => *s,
            MaskKind::Nm(p) | MaskKind::Transposable(p) => p.sparsity(),
        }
    }

    /// The structure as the diversity module counts it (`None` for dense).
    pub fn structure(&self) -> Option<Structure> {
        match *self {
            MaskKind::Dense => None,
            MaskKind::Unstructured(sparsity) => Some(Structure::Unstructured { sparsity }),
            MaskKind::Block(b, sparsity) => Some(Structure::Block { b, sparsity }),
            MaskKind::Nm(p) => Some(Structure::Nm(p)),
            MaskKind::Transposable(p) => Some(Structure::Transposable(p)),
        }
    }

    /// log10 of the number of masks this structure allows over weights of the given shapes
    /// (the sum of each layer's log10 mask diversity); 0 for dense (one mask).
    pub fn log10_diversity(&self, shapes: &[(usize, usize)]) -> Result<f64> {
        let Some(structure) = self.structure() else {
            return Ok(0.0);
        };
        shapes
            .iter()
            .map(|&(r, c)| diversity(structure, r, c).map(|d| d.log10))
            .sum()
    }
}

impl FromStr for MaskKind {
    type Err = Error;
    /// `dense`, `unstructured:SPARSITY`, `block:B:SPARSITY`, `nm:N:M` (or `N:M`),
    /// `transposable:N:M`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| Error::invalid("mask", s, why);
        if s == "dense" {
            return Ok(MaskKind::Dense);
        }
        if let Some(rest) = s.strip_prefix("block:") {
            let parsed = rest
                .split_once(':')
                .and_then(|(b, f)| Some((b.parse::<usize>().ok()?, f.parse::<f64>().ok()?)));
            let Some((b, f)) = parsed else {
                return Err(bad("expected block:B:SPARSITY, e.g. block:4:0.5"));
            };
            if b == 0 {
                return Err(bad("the block side B must be at least 1"));
            }
            if !(0.0..1.0).contains(&f) {
                return Err(bad("sparsity must be in [0, 1)"));
            }
            return Ok(MaskKind::Block(b, f));
        }
        if let Some(f) = s.strip_prefix("unstructured:") {
            let f: f64 = f
                .parse()
                .map_err(|_| bad("expected unstructured:SPARSITY, e.g. unstructured:0.5"))?;
            if !(0.0..1.0).contains(&f) {
                return Err(bad("sparsity must be in [0, 1)"));
            }
            return Ok(MaskKind::Unstructured(f));
        }
        if let Some(p) = s.strip_prefix("transposable:") {
            return Ok(MaskKind::Transposable(p.parse()?));
        }
        let p = s.strip_prefix("nm:").unwrap_or(s);
        p.parse()
            .map(MaskKind::Nm)
            .map_err(|_| bad("expected dense, unstructured:S, nm:N:M or transposable:N:M"))
    }
}

impl fmt::Display for MaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaskKind::Dense => write!(f, "dense"),
            MaskKind::Unstructured(s) => write!(f, "unstructured:{s}"),
            MaskKind::Block(b, s) => write!(f, "block:{b}:{s}"),
            MaskKind::Nm(p) => write!(f, "nm:{p}"),
            MaskKind::Transposable(p) => write!(f, "transposable:{p}"),
        }
    }
}

/// The mask of structure `kind` on `scores` (`None` for dense); transposable masks come from
/// `solver` (an infeasible block is an error naming it).
pub fn mask_of(
    scores: &Matrix,
    kind: MaskKind,
    solver: &dyn Solver,
    seed: u64,
) -> Result<Option<Mask>> {
    Ok(match kind {
        MaskKind::Dense => None,
        MaskKind::Unstructured(s) => Some(Mask::unstructured(scores, s)?),
        MaskKind::Block(b, s) => Some(Mask::block(scores, b, s)?),
        MaskKind::Nm(p) => Some(Mask::nm(scores, p)?),
        MaskKind::Transposable(p) => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_kinds_parse_and_print() -> Result<()> {
        for s in [
            "dense",
            "unstructured:0.5",
            "block:4:0.5",
            "nm:2:4",
            "transposable:4:8",
        ] {
            assert_eq!(s.parse::<MaskKind>()?.to_string(), s);
        }
        assert_eq!("2:4".parse::<MaskKind>()?, MaskKind::Nm("2:4".parse()?));
        for bad in [
            "unstructured:2",
            "transposable:5:4",
            "blocky",
            "block:0:0.5",
            "block:4",
            "block:4:1.5",
        ] {
            assert!(bad.parse::<MaskKind>().is_err(), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn model_diversity_is_the_sum_over_layers_and_orders_the_structures() -> Result<()> {
        let shapes = [(8, 8), (8, 16)];
        let md = |s: &str| s.parse::<MaskKind>()?.log10_diversity(&shapes);
        // Transposable 2:4 on 8×8 is 4 tiles of 90 masks each, on 8×16 eight tiles: 90^12.
        assert!((md("transposable:2:4")? - 12.0 * 90f64.log10()).abs() < 1e-9);
        // 2:4 is C(4,2) = 6 per group of four: 48 groups.
        assert!((md("nm:2:4")? - 48.0 * 6f64.log10()).abs() < 1e-9);
        assert_eq!(md("dense")?, 0.0);
        // Hubara's ordering at 50%: unstructured > 2:4 > transposable 2:4 > 4×4 blocks.
        let (u, nm, t, b) = (
            md("unstructured:0.5")?,
            md("nm:2:4")?,
            md("transposable:2:4")?,
            md("block:4:0.5")?,
        );
        assert!(u > nm && nm > t && t > b, "{u} {nm} {t} {b}");
        Ok(())
    }
}
