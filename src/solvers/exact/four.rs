//! [`super::Exact`]'s path for M = 4: every transposable 4×4 pattern scored, eight blocks at once.
//!
//! Problem: the optimal transposable N:4 mask (0 < N < 4) of each 4×4 block.
//! Method: a 4×4 block has only 90 feasible masks at N = 2 and 24 at N = 1 or 3
//! ([`crate::solvers::exhaustive::patterns`]), so instead of a flow the solver scores them all:
//! each row's C(4, N) choices of kept columns are summed once (f64), a pattern's score is the
//! sum of its four rows' choices, and the first pattern (enumeration order) with the largest
//! score wins. Eight consecutive blocks run side by side, one per lane (`[f64; 8]` arrays that
//! compile to AVX2 or SSE2 vectors), so every step is a vector add, compare or select, and no
//! branch depends on the data.
//! Guarantee: exact (every feasible mask is scored; sums in f64 as in the flow path).
//! Cost: per block about 3·P adds and P selects over eight lanes (P = 90 or 24), against the flow's
//! warm start plus ~1.5 shortest paths per 2:4 block; on 8192² 2:4 this path is what puts exact
//! under the greedy's time (see `cargo bench --bench solvers -- exact_vs_greedy`).

/// Blocks solved side by side.
const LANES: usize = 8;

/// The row choices (C(4, N) ≤ 6 bit masks of kept columns, ascending) and every transposable
/// pattern as the index of each row's choice, with its 16-byte mask.
pub(super) struct Table {
    choices: Vec<u8>,
    patterns: Vec<[u8; 4]>,
    masks: Vec<[u8; 16]>,
}

impl Table {
    /// The table for N kept per row and column (0 < N < 4), built on first use and kept: the
    /// enumeration scans all 2¹⁶ 0/1 matrices, more than a small layer's solve costs (the
    /// trainer re-solves every layer's mask at each refresh).
    pub(super) fn get(n: usize) -> &'static Table {
        use std::sync::OnceLock;
        static TABLES: [OnceLock<Table>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        TABLES[n - 1].get_or_init(|| Table::new(n))
    }

    /// The table for N kept per row and column (0 < N < 4), patterns in
    /// [`crate::solvers::exhaustive::patterns`]' order.
    fn new(n: usize) -> Table {
        let choices: Vec<u8> = (0u8..16).filter(|c| c.count_ones() as usize == n).collect();
        let mut patterns = Vec::new();
        let mut masks = Vec::new();
        for p in crate::solvers::exhaustive::patterns(n) {
            let mut mask = [0u8; 16];
            let mut pick = [0u8; 4];
            for (r, pick) in pick.iter_mut().enumerate() {
                let bits = (0..4).fold(0u8, |b, c| b | ((p[r * 4 + c] as u8) << c));
                *pick = choices
                    .iter()
                    .position(|&c| c == bits)
                    .expect("a row choice") as u8;
                for c in 0..4 {
                    mask[r * 4 + c] = p[r * 4 + c] as u8;
                }
            }
            patterns.push(pick);
            masks.push(mask);
        }
        Table {
            choices,
            patterns,
            masks,
        }
    }
}

/// Solve the consecutive 4×4 blocks of `blocks` (row-major, 16 scores each) into `keep` by
/// `table` ([`Table::get`]).
pub(super) fn solve_run(table: &Table, blocks: &[f32], keep: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if crate::lanes::Avx2::detect().is_some() {
        // SAFETY: the CPU reports AVX2, which `run_avx2` is compiled for.
        unsafe { run_avx2(table, blocks, keep) };
        return;
    }
    run(table, blocks, keep);
}

/// [`run`] compiled with AVX2 enabled.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn run_avx2(table: &Table, blocks: &[f32], keep: &mut [u8]) {
    run(table, blocks, keep)
}

/// All blocks of `blocks`, [`LANES`] at a time (the last group padded with zero blocks).
#[inline(always)]
fn run(table: &Table, blocks: &[f32], keep: &mut [u8]) {
    for (inp, out) in blocks.chunks(16 * LANES).zip(keep.chunks_mut(16 * LANES)) {
        // x[e][l]: entry e of lane l's block.
        let mut x = [[0f64; LANES]; 16];
        for (l, block) in inp.chunks_exact(16).enumerate() {
            for (e, &s) in block.iter().enumerate() {
                x[e][l] = s as f64;
            }
        }
        let best = best_patterns(table, &x);
        for (out, &p) in out.chunks_exact_mut(16).zip(&best) {
            out.copy_from_slice(&table.masks[p as usize]);
        }
    }
}

/// Each lane's best pattern: the first, in the table's order, of largest score.
#[inline(always)]
fn best_patterns(table: &Table, x: &[[f64; LANES]; 16]) -> [u32; LANES] {
    // sums[r][c][l]: row r's kept score under choice c, lane l.
    let mut sums = [[[0f64; LANES]; 6]; 4];
    for (r, sums) in sums.iter_mut().enumerate() {
        for (sum, &bits) in sums.iter_mut().zip(&table.choices) {
            for c in 0..4 {
                if bits >> c & 1 == 1 {
                    for l in 0..LANES {
                        sum[l] += x[r * 4 + c][l];
                    }
                }
            }
        }
    }
    let mut best = [f64::NEG_INFINITY; LANES];
    let mut index = [0u32; LANES];
    for (p, pick) in table.patterns.iter().enumerate() {
        let [a, b, c, d] = pick.map(|k| k as usize);
        let (s0, s1, s2, s3) = (&sums[0][a], &sums[1][b], &sums[2][c], &sums[3][d]);
        for l in 0..LANES {
            let s = (s0[l] + s1[l]) + (s2[l] + s3[l]);
            let better = s > best[l];
            best[l] = if better { s } else { best[l] };
            index[l] = if better { p as u32 } else { index[l] };
        }
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn every_block_gets_a_best_pattern_by_brute_force_and_ties_the_first() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(21); // fixed seed
        for n in 1..=3 {
            let pats = crate::solvers::exhaustive::patterns(n);
            assert_eq!(pats.len(), if n == 2 { 90 } else { 24 });
            // 13 blocks: one full group of eight and a padded one; integer scores tie often.
            for ties in [false, true] {
                let a: Vec<f32> = (0..13 * 16)
                    .map(|_| {
                        if ties {
                            rng.random_range(0..3) as f32
                        } else {
                            rng.random()
                        }
                    })
                    .collect();
                let table = Table::get(n);
                let mut keep = vec![9u8; a.len()];
                solve_run(table, &a, &mut keep);
                let mut portable = vec![9u8; a.len()];
                run(table, &a, &mut portable);
                assert_eq!(portable, keep, "N = {n}: portable lanes");
                for (block, got) in a.chunks(16).zip(keep.chunks(16)) {
                    let score = |m: &[f32; 16]| -> f64 {
                        m.iter()
                            .zip(block)
                            .map(|(&k, &s)| k as f64 * s as f64)
                            .sum()
                    };
                    let brute = pats.iter().map(score).fold(f64::MIN, f64::max);
                    let first = pats.iter().position(|q| score(q) == brute).unwrap();
                    let want: Vec<u8> = pats[first].iter().map(|&k| k as u8).collect();
                    assert_eq!(got, want, "N = {n}, block {block:?}");
                }
            }
        }
    }
}
