//! `greedy`: the transposable rule of Hubara et al.'s training code.
//!
//! Problem: in an M×M block of non-negative scores, keep at most N entries per row and column,
//! maximising the kept score.
//! Rule: visit entries in descending score (ties: lower index first); keep an entry while its row
//! and its column each keep fewer than N.
//! Guarantee: the kept set is a maximal feasible set of a 2-matroid intersection, so the kept
//! score is at least ½ of the optimum. It may leave rows under-filled.
//! Cost: one radix sort of M² score keys per block, O(M²); blocks run in parallel.
//! Source: Hubara et al., NeurIPS 2021 (code released with the paper).

use super::{Guarantee, SolveContext, Solver};
use crate::error::Result;
use crate::mask::Pattern;

/// The greedy transposable solver.
#[derive(Debug, Default, Clone, Copy)]
pub struct Greedy;

impl Solver for Greedy {
    fn name(&self) -> &'static str {
        "greedy"
    }

    fn summary(&self) -> &'static str {
        "descending scores, keep while row and column keep fewer than N (authors' training code)"
    }

    fn guarantee(&self) -> Guarantee {
        Guarantee::HalfKept
    }

    fn solve(&self, blocks: &[f32], pattern: Pattern, ctx: &SolveContext) -> Result<Vec<u8>> {
        super::check_blocks(blocks, pattern)?;
        Ok(super::per_block(blocks, pattern, ctx, |block, out, _| {
            solve_block(block, pattern, out)
        }))
    }
}

/// Solve one M×M block (`scores` row-major, non-negative) into `keep` by the greedy rule.
pub fn solve_block(scores: &[f32], pattern: Pattern, keep: &mut [u8]) {
    let m = pattern.m;
    let (mut stack, mut stack2) = ([0u32; 1024], [0u32; 1024]);
    let (mut heap, mut heap2) = (Vec::new(), Vec::new());
    let (order, scratch): (&mut [u32], &mut [u32]) = if scores.len() <= stack.len() {
        (&mut stack[..scores.len()], &mut stack2[..scores.len()])
    } else {
        heap.resize(scores.len(), 0);
        heap2.resize(scores.len(), 0);
        (&mut heap, &mut heap2)
    };
    super::descending_order(scores, order, scratch);
    let mut rows = [0u8; super::MAX_M];
    let mut cols = [0u8; super::MAX_M];
    keep.iter_mut().for_each(|k| *k = 0);
    let n = pattern.n as u8;
    let mut placed = 0;
    for &idx in order.iter() {
        let idx = idx as usize;
        let (r, c) = (idx / m, idx % m);
        if rows[r] < n && cols[c] < n {
            keep[idx] = 1;
            rows[r] += 1;
            cols[c] += 1;
            placed += 1;
            if placed == pattern.n * m {
                break;
            }
        }
    }
}
