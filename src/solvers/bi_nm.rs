//! `bi-nm`: row-wise N:M, then column-wise N:M on the result (Zhang et al. 2023).
//!
//! Problem: a transposable N:M mask of an M×M block with high kept score.
//! Rule: keep each row's N largest scores; then in each column keep the N largest of the
//! entries still kept. Rows and columns keep at most N; columns rarely lose nothing, so rows are
//! often under-filled.
//! Guarantee: feasible (≤ N per row and column); no approximation bound.
//! Cost: two partial sorts per row/column, O(M² log M) per block; blocks run in parallel.
//! Source: Zhang et al. 2023, "Bi-directional masks for efficient N:M sparse training"
//! (the baseline TSENOR compares against).

use super::{Guarantee, SolveContext, Solver};
use crate::error::Result;
use crate::mask::Pattern;

/// Row-wise then column-wise N:M.
#[derive(Debug, Default, Clone, Copy)]
pub struct BiNm;

impl Solver for BiNm {
    fn name(&self) -> &'static str {
        "bi-nm"
    }

    fn summary(&self) -> &'static str {
        "row-wise N:M, then column-wise N:M on the result (Zhang et al. 2023)"
    }

    fn guarantee(&self) -> Guarantee {
        Guarantee::Heuristic
    }

    fn solve(&self, blocks: &[f32], pattern: Pattern, _ctx: &SolveContext) -> Result<Vec<u8>> {
        super::check_blocks(blocks, pattern)?;
        Ok(super::per_block(blocks, pattern, |block, out, _| {
            solve_block(block, pattern, out)
        }))
    }
}

/// Solve one block: row-wise top-N, then column-wise top-N among the kept.
pub(crate) fn solve_block(scores: &[f32], pattern: Pattern, keep: &mut [u8]) {
    let (m, n) = (pattern.m, pattern.n);
    keep.iter_mut().for_each(|k| *k = 0);
    let mut idx: Vec<usize> = (0..m).collect();
    for i in 0..m {
        let row = &scores[i * m..(i + 1) * m];
        idx.sort_unstable_by(|&x, &y| row[y].total_cmp(&row[x]).then(x.cmp(&y)));
        for &j in &idx[..n] {
            keep[i * m + j] = 1;
        }
    }
    for j in 0..m {
        let mut kept: Vec<usize> = (0..m).filter(|&i| keep[i * m + j] == 1).collect();
        if kept.len() <= n {
            continue;
        }
        kept.sort_unstable_by(|&x, &y| {
            scores[y * m + j]
                .total_cmp(&scores[x * m + j])
                .then(x.cmp(&y))
        });
        for &i in &kept[n..] {
            keep[i * m + j] = 0;
        }
    }
}
