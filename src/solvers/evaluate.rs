//! Checking and scoring a solver's masks: infeasible blocks are counted and never scored;
//! gaps to the optimum are computed over the blocks the mask gets right.
//!
//! `kept_gap = (OPT − kept) / OPT` on the kept score and `pruned_excess = (pruned − pruned_OPT) /
//! pruned_OPT` on the pruned score, both summed over the feasible blocks only.

use crate::mask::Pattern;
use crate::mask::tile::check_block;

/// Per-block scores of a mask batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Kept score of each block; `None` where the block is infeasible.
    pub kept: Vec<Option<f64>>,
    /// Total score of each block.
    pub total: Vec<f64>,
    /// Blocks in which a row or column keeps more than N.
    pub infeasible: usize,
    /// Feasible blocks in which a row or column keeps fewer than N.
    pub underfilled: usize,
}

/// Score and check `keep` (`[B, M, M]` 0/1) against `blocks` (`[B, M, M]` scores).
pub fn evaluate(blocks: &[f32], keep: &[u8], pattern: Pattern) -> Evaluation {
    use rayon::prelude::*;
    let mm = pattern.m * pattern.m;
    // Per block, in parallel (order kept): (total, kept if feasible, under-filled).
    let per: Vec<(f64, Option<f64>, bool)> = blocks
        .par_chunks(mm.max(1))
        .zip(keep.par_chunks(mm.max(1)))
        .with_min_len(256)
        .map(|(scores, mask)| {
            let total: f64 = scores.iter().map(|&s| s as f64).sum();
            let (over, under) = check_block(mask, pattern);
            let kept = (!over).then(|| {
                scores
                    .iter()
                    .zip(mask)
                    .filter(|(_, k)| **k != 0)
                    .map(|(&s, _)| s as f64)
                    .sum()
            });
            (total, kept, under && !over)
        })
        .collect();
    Evaluation {
        infeasible: per.iter().filter(|p| p.1.is_none()).count(),
        underfilled: per.iter().filter(|p| p.2).count(),
        total: per.iter().map(|p| p.0).collect(),
        kept: per.into_iter().map(|p| p.1).collect(),
    }
}

impl Evaluation {
    /// Kept score summed over feasible blocks.
    pub fn kept_total(&self) -> f64 {
        self.kept.iter().flatten().sum()
    }
}

/// A mask's distance from the optimum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gap {
    /// Kept score over the feasible blocks.
    pub kept: f64,
    /// The optimum's kept score over the same blocks.
    pub optimum: f64,
    /// `(OPT − kept) / OPT`.
    pub kept_gap: f64,
    /// `(pruned − pruned_OPT) / pruned_OPT` (0 when both prune nothing).
    pub pruned_excess: f64,
}

/// Compare `e` with the optimum's evaluation `opt` over the blocks `e` keeps feasible.
pub fn gap(e: &Evaluation, opt: &Evaluation) -> Gap {
    let (mut kept, mut best, mut total) = (0f64, 0f64, 0f64);
    for ((k, o), t) in e.kept.iter().zip(&opt.kept).zip(&e.total) {
        if let (Some(k), Some(o)) = (k, o) {
            kept += k;
            best += o;
            total += t;
        }
    }
    let ratio = |num: f64, den: f64| {
        if den > 0.0 {
            num / den
        } else if num.abs() > 0.0 {
            f64::INFINITY
        } else {
            0.0
        }
    };
    let (pruned, pruned_opt) = (total - kept, total - best);
    Gap {
        kept,
        optimum: best,
        kept_gap: ratio(best - kept, best),
        pruned_excess: ratio(pruned - pruned_opt, pruned_opt),
    }
}
