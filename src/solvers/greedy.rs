//! `greedy`: the transposable rule of Hubara et al.'s training code.
//!
//! Problem: in an M×M block of non-negative scores, keep at most N entries per row and column,
//! maximising the kept score.
//! Rule: visit entries in descending score (ties: lower index first); keep an entry while its row
//! and its column each keep fewer than N.
//! Guarantee: the kept set is a maximal feasible set of a 2-matroid intersection, so the kept
//! score is at least ½ of the optimum. It may leave rows under-filled.
//! Method: the sorted scan keeps exactly the entries that are, when their turn comes, the
//! largest remaining one in a row and a column that are both not full (a skipped entry stays
//! skipped: counts only grow). For M = 2, 4, …, 64 the block is solved that way without a sort:
//! each row holds its largest remaining entry in a non-full column; the next kept entry is the
//! largest row maximum (ties: lowest row, then lowest column, as in the scan); a row whose
//! maximum sits in a column that has meanwhile become full is recomputed when it is picked. A
//! pick has no data-dependent branch (integer max over the scores' bit patterns, by the lane
//! reductions of [`crate::lanes`], AVX2 when the CPU has it), and two blocks are stepped in turn
//! so that their dependency chains overlap. Other M sort. Both give the same masks (tested).
//! Cost: O(N·M²) per block for the fixed path (about N·M picks, O(M) each), one sort of M² keys,
//! O(M² log M), otherwise; blocks run in parallel.
//! Source: Hubara et al., NeurIPS 2021 (code released with the paper).

use super::{BlockFn, Guarantee, SolveContext, Solver};
use crate::error::Result;
use crate::lanes::Lanes;
use crate::mask::{Mask, Matrix, Pattern, tile};

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

    fn solve(&self, blocks: &[f32], pattern: Pattern, _ctx: &SolveContext) -> Result<Vec<u8>> {
        super::check_blocks(blocks, pattern)?;
        let solve = block_solver(pattern, true);
        Ok(super::per_chunk(blocks, pattern, |run, out, _| {
            solve(run, pattern, out)
        }))
    }
}

/// Solve consecutive M×M blocks (`scores` row-major, non-negative) into `keep` by the greedy rule.
pub(crate) fn solve_block(scores: &[f32], pattern: Pattern, keep: &mut [u8]) {
    block_solver(pattern, true)(scores, pattern, keep)
}

/// The fastest block solver for this pattern on this CPU (`avx2 = false`: the portable build, what
/// CPUs without AVX2 run).
fn block_solver(pattern: Pattern, avx2: bool) -> BlockFn {
    if pattern.n == 0 {
        return |_, _, keep| keep.fill(0);
    }
    fixed_m_block_fn!(pattern.m, avx2, fixed_run, fixed_avx2, |scores, p, keep| {
        let mm = p.m * p.m;
        for (s, k) in scores.chunks(mm).zip(keep.chunks_mut(mm)) {
            sorted(s, p.n, k)
        }
    })
}

/// [`fixed_run`] with AVX2 lanes, compiled with AVX2 enabled.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn fixed_avx2<const M: usize>(scores: &[f32], n: usize, keep: &mut [u8]) {
    // SAFETY: this function is compiled for, and only called on, CPUs with AVX2.
    fixed_run::<M, _>(unsafe { crate::lanes::Avx2::assume() }, scores, n, keep)
}

/// Blocks stepped together by [`fixed`].
const INTERLEAVE: usize = 2;

/// [`fixed`] over consecutive blocks, [`INTERLEAVE`] at a time.
#[inline(always)]
fn fixed_run<const M: usize, L: Lanes>(lanes: L, scores: &[f32], n: usize, keep: &mut [u8]) {
    let group = INTERLEAVE * M * M;
    let whole = scores.len() / group * group;
    let (head, tail) = scores.split_at(whole);
    let (keep_head, keep_tail) = keep.split_at_mut(whole);
    for (s, k) in head
        .chunks_exact(group)
        .zip(keep_head.chunks_exact_mut(group))
    {
        fixed::<M, INTERLEAVE, L>(lanes, s, n, k);
    }
    for (s, k) in tail
        .chunks_exact(M * M)
        .zip(keep_tail.chunks_exact_mut(M * M))
    {
        fixed::<M, 1, L>(lanes, s, n, k);
    }
}

/// One block's state in the fixed-size greedy (M ≤ 64): scores as bit patterns (−1 once kept),
/// full columns (−1), counts, and each row's largest remaining entry in a non-full column.
#[derive(Clone, Copy)]
struct Block<const M: usize> {
    bits: [[i32; M]; M],
    full: [i32; M],
    row_count: [usize; M],
    col_count: [usize; M],
    best: [i32; M],
    best_col: [usize; M],
    placed: usize,
    running: bool,
}

impl<const M: usize> Block<M> {
    /// The state before the first pick.
    #[inline(always)]
    fn new<L: Lanes>(lanes: L, scores: &[f32]) -> Self {
        let mut b = Block {
            bits: [[0; M]; M],
            full: [0; M],
            row_count: [0; M],
            col_count: [0; M],
            best: [0; M],
            best_col: [0; M],
            placed: 0,
            running: true,
        };
        for (row, s) in b.bits.iter_mut().zip(scores.chunks_exact(M)) {
            for (x, &s) in row.iter_mut().zip(s) {
                *x = super::score_bits(s);
            }
        }
        for r in 0..M {
            (b.best[r], b.best_col[r]) = b.row_best(lanes, r);
        }
        b
    }

    /// Row r's largest remaining entry in a non-full column: `(bits, column)`, −1 when none.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // indexed: measured 10% faster than the zipped form
    fn row_best<L: Lanes>(&self, lanes: L, r: usize) -> (i32, usize) {
        let mut live = [0i32; M];
        for c in 0..M {
            live[c] = self.bits[r][c] | self.full[c];
        }
        let best = lanes.max_i32(&live);
        (best, lanes.first_i32(&live, best))
    }

    /// One pick, without data-dependent branches: keep the largest row maximum if its column is
    /// not full (else it was stale), then refresh that row. Clears `running` when done.
    #[inline(always)]
    fn step<L: Lanes>(&mut self, lanes: L, n: usize, keep: &mut [u8]) {
        let top = lanes.max_i32(&self.best);
        // Done when N·M are kept, or every remaining entry is in a full row or column.
        self.running = (top >= 0) & (self.placed < n * M);
        let r = lanes.first_i32(&self.best, top).min(M - 1);
        let c = self.best_col[r];
        let ok = self.running & (self.full[c] == 0);
        keep[r * M + c] |= ok as u8;
        let x = if ok { -1 } else { self.bits[r][c] };
        lanes.set_i32(&mut self.bits[r], c, x);
        self.placed += ok as usize;
        self.row_count[r] += ok as usize;
        self.col_count[c] += ok as usize;
        let f = -((self.col_count[c] >= n) as i32);
        lanes.set_i32(&mut self.full, c, f);
        let (b, at) = self.row_best(lanes, r);
        let b = if self.row_count[r] >= n { -1 } else { b };
        lanes.set_i32(&mut self.best, r, b);
        self.best_col[r] = at;
    }
}

/// The greedy rule for K consecutive blocks of a fixed M ≤ 64 and 0 < N ≤ M, by repeated row
/// maxima (see the module doc). The K blocks are stepped in turn: each pick is a chain of
/// dependent reductions, and independent chains let the CPU overlap them.
#[inline(always)]
fn fixed<const M: usize, const K: usize, L: Lanes>(
    lanes: L,
    scores: &[f32],
    n: usize,
    keep: &mut [u8],
) {
    let (scores, keep) = (&scores[..K * M * M], &mut keep[..K * M * M]);
    keep.fill(0);
    // Not `std::array::from_fn`: its closure wrapper may be left out of line and then compiled
    // without AVX2.
    let mut blocks = [Block::<M>::new(lanes, &scores[..M * M]); K];
    for (k, b) in blocks.iter_mut().enumerate().skip(1) {
        *b = Block::new(lanes, &scores[k * M * M..(k + 1) * M * M]);
    }
    while blocks.iter().any(|b| b.running) {
        for (b, keep) in blocks.iter_mut().zip(keep.chunks_exact_mut(M * M)) {
            if b.running {
                b.step(lanes, n, keep);
            }
        }
    }
}

/// The greedy rule for any M ≤ [`super::MAX_M`], by the sorted scan itself.
fn sorted(scores: &[f32], n: usize, keep: &mut [u8]) {
    let m = scores.len().isqrt();
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
    let cap = n as u16; // N ≤ M ≤ 256 does not fit a u8
    let mut placed = 0;
    for &key in keys.iter() {
        let idx = (key & 0xffff_ffff) as usize;
        let (r, c) = (idx / m, idx % m);
        if rows[r] < cap && cols[c] < cap {
            keep[idx] = 1;
            rows[r] += 1;
            cols[c] += 1;
            placed += 1;
            if placed == n * m {
                break;
            }
        }
    }
}

/// A transposable N:M mask of `scores` by the greedy rule on every M×M tile (one thread); an
/// error when a side is not a multiple of M.
pub fn transposable_mask(scores: &Matrix, pattern: Pattern) -> Result<Mask> {
    let blocks = tile::Blocks::from_matrix(scores, pattern.m)?;
    let mut keep = vec![0u8; blocks.data().len()];
    let mm = pattern.m * pattern.m;
    for (block, out) in blocks.data().chunks(mm).zip(keep.chunks_mut(mm)) {
        solve_block(block, pattern, out);
    }
    blocks.to_mask(&keep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn n_equal_to_m_256_keeps_everything() {
        let m = 256;
        let scores: Vec<f32> = (0..m * m).map(|i| (i % 7) as f32).collect();
        let mut keep = vec![0u8; m * m];
        solve_block(&scores, Pattern::new(m, m).unwrap(), &mut keep);
        assert!(keep.iter().all(|&k| k == 1));
    }

    #[test]
    fn fixed_size_path_and_sorted_scan_keep_the_same_mask() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12); // fixed seed
        let mut underfilled = 0;
        for (n, m) in [
            (1, 2),
            (2, 2),
            (1, 4),
            (2, 4),
            (3, 4),
            (4, 8),
            (3, 8),
            (8, 16),
            (5, 16),
            (16, 32),
            (32, 64),
        ] {
            let p = Pattern::new(n, m).unwrap();
            for kind in 0..4 {
                // An odd number of blocks: interleaved groups and a lone last block.
                let count = if m >= 32 { 11 } else { 61 };
                let a: Vec<f32> = (0..count * m * m)
                    .map(|_| match kind {
                        0 => rng.random(),
                        1 => rng.random_range(0..3) as f32, // ties
                        2 => match rng.random_range(0..10) {
                            0..5 => 0.0,
                            5..7 => -0.0, // counts as 0 in both paths
                            _ => rng.random(),
                        },
                        _ => 10f32.powf(rng.random_range(-8.0..8.0)),
                    })
                    .collect();
                let mut fast = vec![9u8; a.len()];
                solve_block(&a, p, &mut fast);
                // What CPUs without AVX2 run: the same fixed path, so the same masks.
                let mut portable = vec![9u8; a.len()];
                block_solver(p, false)(&a, p, &mut portable);
                assert_eq!(portable, fast, "{p} kind {kind}: portable lanes");
                for (i, (block, fast)) in a.chunks(m * m).zip(fast.chunks(m * m)).enumerate() {
                    let mut slow = vec![9u8; m * m];
                    sorted(block, n, &mut slow);
                    assert_eq!(fast, &slow[..], "{p} kind {kind} block {i}");
                    underfilled +=
                        (fast.iter().map(|&k| k as usize).sum::<usize>() < n * m) as usize;
                }
            }
        }
        // The comparison covers greedy's early stop (rows left under-filled), not only full masks.
        assert!(underfilled > 50, "{underfilled} under-filled blocks");
    }
    #[test]
    fn transposable_greedy_is_transposable_and_its_transpose_is_nm() -> Result<()> {
        let w = Matrix::new(
            16,
            32,
            (0..16 * 32).map(|i| (i * 37 % 101) as f32).collect(),
        )?;
        for p in [
            Pattern::new(2, 4)?,
            Pattern::new(4, 8)?,
            Pattern::new(3, 8)?,
        ] {
            let m = transposable_mask(&w, p)?;
            assert!(m.is_transposable_nm(p)?);
            assert!(m.is_nm(p)? && m.transpose().is_nm(p)?);
        }
        Ok(())
    }

    #[test]
    fn a_matrix_that_does_not_tile_has_no_transposable_mask() {
        let w = Matrix::new(4, 6, vec![1.0; 24]).unwrap();
        assert!(transposable_mask(&w, Pattern { n: 2, m: 4 }).is_err());
    }
}

/// Property tests of [`transposable_mask`] over random shapes, 0 and 1 included.
#[cfg(test)]
mod properties {
    use super::*;
    use crate::mask::properties::{pattern, scores};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn transposable_masks_exist_exactly_when_both_sides_tile(w in scores(), p in pattern()) {
            let m = transposable_mask(&w, p);
            prop_assert_eq!(m.is_ok(), w.rows() % p.m == 0 && w.cols() % p.m == 0);
            if let Ok(m) = m {
                prop_assert!(m.is_transposable_nm(p)?);
                prop_assert!(m.transpose().is_transposable_nm(p)?);
                prop_assert!(m.is_nm(p)?);
            }
        }
    }
}
