//! `two-approx`: the 2-approximation of Hubara et al. 2021, as stated and proved there.
//!
//! Problem: prune at least M−N entries in every row and column of an M×M block (equivalently,
//! keep at most N) at minimum pruned score.
//! Rule: visit entries in ascending score (ties: lower index first); prune an entry while its
//! row or its column still needs zeros (has fewer than M−N). Every other entry is kept.
//! Guarantee: pruned score ≤ 2 × the optimal pruned score. It over-prunes: rows and columns may
//! keep fewer than N (reported as under-filled, not repaired).
//! Cost: one sort of M² keys per block, O(M² log M); blocks run in parallel.
//! Source: Hubara et al., NeurIPS 2021, "2-approximation" algorithm and its proof.

use super::{Guarantee, SolveContext, Solver};
use crate::error::Result;
use crate::mask::Pattern;

/// The 2-approximation.
#[derive(Debug, Default, Clone, Copy)]
pub struct TwoApprox;

impl Solver for TwoApprox {
    fn name(&self) -> &'static str {
        "two-approx"
    }

    fn summary(&self) -> &'static str {
        "ascending scores, prune while row or column needs zeros (Hubara 2021); over-prunes"
    }

    fn guarantee(&self) -> Guarantee {
        Guarantee::TwoApprox
    }

    fn solve(&self, blocks: &[f32], pattern: Pattern, _ctx: &SolveContext) -> Result<Vec<u8>> {
        super::check_blocks(blocks, pattern)?;
        Ok(super::per_block(blocks, pattern, |block, out, _| {
            solve_block(block, pattern, out)
        }))
    }
}

/// Solve one block by the 2-approximation rule.
pub(crate) fn solve_block(scores: &[f32], pattern: Pattern, keep: &mut [u8]) {
    let m = pattern.m;
    let zeros_needed = m - pattern.n;
    let mut row_zeros = vec![0usize; m];
    let mut col_zeros = vec![0usize; m];
    keep.iter_mut().for_each(|k| *k = 1);
    let mut ascending: Vec<usize> = (0..scores.len()).collect();
    ascending.sort_unstable_by(|&x, &y| scores[x].total_cmp(&scores[y]).then(x.cmp(&y)));
    for idx in ascending {
        let (r, c) = (idx / m, idx % m);
        if row_zeros[r] < zeros_needed || col_zeros[c] < zeros_needed {
            keep[idx] = 0;
            row_zeros[r] += 1;
            col_zeros[c] += 1;
        }
    }
}
