//! `greedy`: the transposable rule of Hubara et al.'s training code.
//!
//! Problem: in an M×M block of non-negative scores, keep at most N entries per row and column,
//! maximising the kept score.
//! Rule: visit entries in descending score (ties: lower index first); keep an entry while its row
//! and its column each keep fewer than N.
//! Guarantee: the kept set is a maximal feasible set of a 2-matroid intersection, so the kept
//! score is at least ½ of the optimum. It may leave rows under-filled.
//! Cost: one sort of M² keys per block, O(M² log M); blocks run in parallel.
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
    let mut stack = [0u64; 1024];
    let mut heap = Vec::new();
    let keys: &mut [u64] = if scores.len() <= stack.len() {
        &mut stack[..scores.len()]
    } else {
        heap.resize(scores.len(), 0);
        &mut heap
    };
    super::descending_keys(scores, keys);
    let mut rows = [0u16; super::MAX_M];
    let mut cols = [0u16; super::MAX_M];
    keep.iter_mut().for_each(|k| *k = 0);
    let n = pattern.n as u16; // N ≤ M ≤ 256 does not fit a u8
    let mut placed = 0;
    for &key in keys.iter() {
        let idx = (key & 0xffff_ffff) as usize;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn n_equal_to_m_256_keeps_everything() {
        let m = 256;
        let scores: Vec<f32> = (0..m * m).map(|i| (i % 7) as f32).collect();
        let mut keep = vec![0u8; m * m];
        solve_block(&scores, Pattern::new(m, m).unwrap(), &mut keep);
        assert!(keep.iter().all(|&k| k == 1));
    }
}
