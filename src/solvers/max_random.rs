//! `max-random`: the best of K random feasible masks ("Max1000" in the TSENOR paper).
//!
//! Problem: a transposable N:M mask of an M×M block with high kept score.
//! Rule: draw K masks `P_r · C · P_c`, where C is the circulant mask (row i keeps columns
//! i, …, i+N−1 mod M) and `P_r`, `P_c` are uniformly random row and column permutations; every
//! one keeps exactly N per row and column. Keep the best.
//! Guarantee: feasible and exactly N-regular; no approximation bound (a baseline).
//! Cost: O(K·N·M) per block (K = 1000 by default); blocks run in parallel, each with its own
//! RNG derived from the solve seed and block index, so results do not depend on threads.
//! Source: Meng, Makni & Mazumder 2025 (TSENOR), baseline "Max1000".

use super::{Guarantee, SolveContext, Solver};
use crate::error::Result;
use crate::mask::Pattern;
use rand::SeedableRng;
use rand::seq::SliceRandom;

/// Best of K random feasible masks.
#[derive(Debug, Clone, Copy)]
pub struct MaxRandom {
    /// Masks drawn per block.
    pub draws: usize,
}

impl Default for MaxRandom {
    fn default() -> Self {
        MaxRandom { draws: 1000 }
    }
}

impl Solver for MaxRandom {
    fn name(&self) -> &'static str {
        "max-random"
    }

    fn summary(&self) -> &'static str {
        "best of 1000 random feasible masks (TSENOR's Max1000 baseline)"
    }

    fn guarantee(&self) -> Guarantee {
        Guarantee::Heuristic
    }

    fn options(&self) -> &'static [&'static str] {
        &["draws"]
    }

    fn solve(&self, blocks: &[f32], pattern: Pattern, ctx: &SolveContext) -> Result<Vec<u8>> {
        super::check_blocks(blocks, pattern)?;
        let draws = (ctx.option("draws", self.draws as f64) as usize).max(1);
        Ok(super::per_block(blocks, pattern, |block, out, b| {
            let seed = crate::seed::derive(ctx.seed, &format!("max-random block {b}"));
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            solve_block(block, pattern, draws, &mut rng, out)
        }))
    }
}

/// Best of `draws` random permuted circulant masks for one block.
pub(crate) fn solve_block(
    scores: &[f32],
    pattern: Pattern,
    draws: usize,
    rng: &mut impl rand::Rng,
    keep: &mut [u8],
) {
    let (m, n) = (pattern.m, pattern.n);
    let mut rows: Vec<usize> = (0..m).collect();
    let mut cols: Vec<usize> = (0..m).collect();
    let (mut best_rows, mut best_cols) = (rows.clone(), cols.clone());
    let mut best = f64::NEG_INFINITY;
    for _ in 0..draws {
        rows.shuffle(rng);
        cols.shuffle(rng);
        let mut score = 0f64;
        for i in 0..m {
            let r = rows[i] * m;
            for t in 0..n {
                score += scores[r + cols[(i + t) % m]] as f64;
            }
        }
        if score > best {
            best = score;
            best_rows.copy_from_slice(&rows);
            best_cols.copy_from_slice(&cols);
        }
    }
    keep.iter_mut().for_each(|k| *k = 0);
    for i in 0..m {
        for t in 0..n {
            keep[best_rows[i] * m + best_cols[(i + t) % m]] = 1;
        }
    }
}
