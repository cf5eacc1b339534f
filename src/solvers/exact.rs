//! `exact`: the optimal transposable mask of every block, by min-cost flow.
//!
//! Problem: in an M×M block of non-negative scores A, choose a 0/1 mask S with every row and
//! column sum exactly N maximising `Σ S_ij A_ij` (a transportation problem; its polytope is
//! integral, so the optimum is a mask).
//! Method: successive shortest paths with potentials, warm-started. Each column gets a price
//! `v_j` (for M ≥ 8, from one to three rounds of alternating row and column thresholds; else 0)
//! and each row keeps its N largest `A_ij − v_j` — optimal if columns were free, and with row
//! potentials equal to each row's N-th largest of those and column potentials `−v_j` every
//! residual edge has non-negative reduced cost. Columns that received more than N then send
//! their excess back to columns with fewer, one unit per Dijkstra along alternating paths (drop
//! `(i, j)`, add `(i, k)`), on the dense M×M graph without a heap.
//! For M = 2, 4, 8, 16, 32 and 64 the block is solved by a fixed-size, branch-free version of the
//! same algorithm (edge costs held as `±A` or `+∞` per direction, node selection by the lane
//! reductions of [`crate::lanes`]), compiled a second time with AVX2 intrinsics and chosen at run
//! time; other M take the general loop. Both are tested to give the same optimum. At M = 4
//! (0 < N < 4) [`Exact::solve`] scores the 90 (or 24) feasible masks of eight blocks at once
//! instead (`exact/four.rs`: fewer operations than the flow's start at that size); the flow path
//! at M = 4 stays as the reference its tests compare against.
//! Guarantee: exact (the reduced costs certify optimality; tested against brute force and an LP).
//! When tied scores make several masks optimal, which one is returned follows from the prices:
//! changing the price rounds changed table6's transposable SparseGPT masks (quantized weights
//! tie often) and moved that row's perplexity by 0.75% at 8 calibration windows.
//! Cost: O(M² log² M) per price round and for the warm start's row thresholds (sorting networks
//! over all rows or columns at once, `exact/network.rs`), plus O(M²) per unit of column excess (per
//! block on |Gaussian| scores: 1.5 / 1.3 / 2.1 / 3.5 / 7.8 units for 2:4 / 4:8 / 8:16 / 16:32 /
//! 32:64 with the prices, against 1.5 / 4.4 / 12.6 / 35.8 / 102 without); blocks run in parallel.
//! Works for any 0 ≤ N ≤ M.
//! Source: Hubara et al., NeurIPS 2021 (min-cost flow formulation); the warm start and dense
//! Dijkstra are this crate's.

use super::{BlockFn, Guarantee, SolveContext, Solver};
use crate::error::Result;
use crate::lanes::Lanes;
use crate::mask::Pattern;

mod four;
mod network;

/// The exact min-cost-flow solver.
#[derive(Debug, Default, Clone, Copy)]
pub struct Exact;

impl Solver for Exact {
    fn name(&self) -> &'static str {
        "exact"
    }

    fn summary(&self) -> &'static str {
        "optimal mask by min-cost flow (warm-started successive shortest paths)"
    }

    fn guarantee(&self) -> Guarantee {
        Guarantee::Exact
    }

    fn solve(&self, blocks: &[f32], pattern: Pattern, _ctx: &SolveContext) -> Result<Vec<u8>> {
        super::check_blocks(blocks, pattern)?;
        if pattern.m == 4 && 0 < pattern.n && pattern.n < 4 {
            let table = four::Table::get(pattern.n);
            return Ok(super::per_chunk(blocks, pattern, |run, keep, _| {
                four::solve_run(table, run, keep)
            }));
        }
        let solve = block_solver(pattern, true);
        Ok(super::per_block(blocks, pattern, |block, out, _| {
            solve(block, pattern, out)
        }))
    }
}

/// Solve one M×M block optimally into `keep` (row-major 0/1); the tests' entry point.
#[cfg(test)]
pub(crate) fn solve_block(scores: &[f32], pattern: Pattern, keep: &mut [u8]) {
    block_solver(pattern, true)(scores, pattern, keep)
}

/// The fastest block solver for this pattern on this CPU (`avx2 = false`: the portable build, what
/// CPUs without AVX2 run).
fn block_solver(pattern: Pattern, avx2: bool) -> BlockFn {
    // Keeping nothing or everything needs no search, whatever the loop.
    if pattern.n == 0 {
        return |_, _, keep| keep.fill(0);
    }
    if pattern.n == pattern.m {
        return |_, _, keep| keep.fill(1);
    }
    fixed_m_block_fn!(pattern.m, avx2, fixed, fixed_avx2, general)
}

/// [`fixed`] with AVX2 lanes, compiled with AVX2 enabled.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn fixed_avx2<const M: usize>(a: &[f32], n: usize, keep: &mut [u8]) {
    // SAFETY: this function is compiled for, and only called on, CPUs with AVX2.
    fixed::<M, _>(unsafe { crate::lanes::Avx2::assume() }, a, n, keep)
}

/// `x` if positive, else 0 (one `maxpd`: no NaN handling needed, none can occur).
#[inline(always)]
fn pos(x: f64) -> f64 {
    if x > 0.0 { x } else { 0.0 }
}

/// The same algorithm as [`general`] for a fixed M ≤ 64 and 0 < N < M, written without data-dependent
/// branches in the inner loops so that they vectorise: a warm start ([`Residual::start`]), then one
/// shortest path ([`Residual::shortest_path`]) and its augmentation ([`Residual::augment`]) per
/// unit of column excess.
#[inline(always)]
fn fixed<const M: usize, L: Lanes>(lanes: L, a: &[f32], n: usize, keep: &mut [u8]) {
    let (a, keep) = (&a[..M * M], &mut keep[..M * M]);
    let mut r = Residual::<M>::start(lanes, a, n, keep);
    while let Some(path) = r.shortest_path(lanes, n) {
        r.augment(a, keep, &path);
    }
}

/// The residual graph of one block: `down[j][i]` is the cost of the edge column j → row i
/// (`A_ij` if kept, else +∞), `up[i][k]` of row i → column k (`−A_ik` if pruned, else +∞); the
/// node potentials and each column's kept count.
struct Residual<const M: usize> {
    down: [[f64; M]; M],
    up: [[f64; M]; M],
    pot_row: [f64; M],
    pot_col: [f64; M],
    col_count: [usize; M],
}

/// A shortest path from a column with excess to one with room: the target, and each node's
/// predecessor (`u64::MAX` at the sources).
struct Path<const M: usize> {
    target: usize,
    via_col: [u64; M],
    via_row: [u64; M],
}

impl<const M: usize> Residual<M> {
    /// Warm start from column prices v (column potentials −v): row i keeps the entries of rank
    /// < N in `A_i − v` (rank: larger first, ties by lower column), and its potential is the
    /// value of rank N − 1, so every residual edge has a non-negative reduced cost whatever v is.
    /// With v = 0 that is each row's N largest scores; better prices leave the columns less
    /// excess for the shortest paths to move (see [`column_prices`]).
    #[inline(always)]
    fn start<L: Lanes>(lanes: L, a: &[f32], n: usize, keep: &mut [u8]) -> Self {
        const INF: f64 = f64::INFINITY;
        // Columns (`down`, counts) written in a pass of their own over the transposed block
        // (M = 8: single-threaded 8192² 4:8 solve 0.72 → 0.47 s) or entry by entry with the rows
        // (M ≥ 16, where the pass measured no faster). The block is transposed again for that
        // pass rather than kept from the prices: kept alive over the row loop, the transposed
        // block slowed the 8:16 solve by a third (the compiler's stack layout).
        let column_pass = M == 8;
        let mut r = Residual {
            down: [[INF; M]; M],
            up: [[INF; M]; M],
            pot_row: [0f64; M],
            pot_col: [0f64; M],
            col_count: [0usize; M],
        };
        let mut v = [0f32; M];
        // With price rounds, each row's N-th largest of `A_i − v` (f64), from one sorting network
        // over all rows: the rows whose values are not tied there keep the entries at or above it.
        let mut nth = [0f64; M];
        if price_rounds(M) > 0 {
            let at = lanes.transpose_f32::<M>(a);
            column_prices(lanes, a, &at, n, &mut v);
            let mut x = [[0f64; M]; M];
            for ((x, at), &v) in x.iter_mut().zip(&at).zip(&v) {
                for (x, &s) in x.iter_mut().zip(at) {
                    *x = s as f64 - v as f64;
                }
            }
            network::sort_desc(lanes, &mut x);
            nth = x[n - 1];
        }
        // Competitors' columns for the v = 0 ranks (M ≤ 4 only: no price rounds; at that size the
        // plain index compare costs less than an opaque array as in [`ranks_i64`], measured 12%
        // on 2:4).
        let mut column = [0i32; M];
        for (j, c) in column.iter_mut().enumerate() {
            *c = j as i32;
        }
        let mut tied = 0u64; // rows whose N-th value is tied (priced starts)
        for i in 0..M {
            let row: &[f32; M] = a[i * M..(i + 1) * M].try_into().expect("row");
            // Row i's values `A_ij − v_j` as ranked (f64), and their ranks.
            let mut b = [0f64; M];
            let mut rank = [0i32; M];
            if price_rounds(M) > 0 {
                // A_ij − v_j in f64: exact (two f32s), so the kept set and the potential agree to
                // the bit. When exactly N are at or above the row's N-th largest, they are its
                // N largest (ranks 0 and 1 suffice below); ties there are ranked by their order
                // keys over i64 lanes.
                let mut at_or_above = 0;
                for ((b, r), (&s, &p)) in b.iter_mut().zip(&mut rank).zip(row.iter().zip(&v)) {
                    *b = s as f64 - p as f64;
                    *r = (*b < nth[i]) as i32 * n as i32;
                    at_or_above += (*b >= nth[i]) as usize;
                }
                if at_or_above != n {
                    tied |= 1 << i;
                    let mut key = [0i64; M];
                    for (k, b) in key.iter_mut().zip(&b) {
                        let bits = b.to_bits() as i64;
                        *k = bits ^ ((bits >> 63) & i64::MAX);
                    }
                    rank = ranks_i64(&key);
                }
            } else {
                // v = 0: the scores' bit patterns order them, over i32 lanes, all M at once per
                // competitor.
                let mut bits = [0i32; M];
                for ((bits, b), &s) in bits.iter_mut().zip(b.iter_mut()).zip(row) {
                    *bits = super::score_bits(s);
                    *b = s as f64;
                }
                for k in 0..M {
                    let (bk, k) = (bits[k], k as i32);
                    for j in 0..M {
                        rank[j] += ((bk > bits[j]) | ((bk == bits[j]) & (k < column[j]))) as i32;
                    }
                }
            }
            for j in 0..M {
                let (s, kept) = (row[j] as f64, rank[j] < n as i32);
                keep[i * M + j] = kept as u8;
                r.up[i][j] = if kept { INF } else { -s };
                if !column_pass || price_rounds(M) == 0 {
                    r.col_count[j] += kept as usize;
                    r.down[j][i] = if kept { s } else { INF };
                }
            }
            r.pot_row[i] = if price_rounds(M) > 0 {
                nth[i]
            } else {
                b[lanes.first_i32(&rank, n as i32 - 1)]
            };
        }
        if column_pass && price_rounds(M) > 0 {
            r.columns_from_transposed(&lanes.transpose_f32::<M>(a), &v, &nth, keep, tied);
        }
        for (p, &v) in r.pot_col.iter_mut().zip(&v) {
            *p = -(v as f64);
        }
        r
    }

    /// [`Residual::start`]'s column pass (priced starts at M = 8): `down` and the column counts
    /// from the transposed block by the row pass's test, so that they run over lanes; rows in
    /// `tied` (a bit per row) take their `keep` instead.
    #[inline(always)]
    fn columns_from_transposed(
        &mut self,
        at: &[[f32; M]; M],
        v: &[f32; M],
        nth: &[f64; M],
        keep: &[u8],
        mut tied: u64,
    ) {
        const INF: f64 = f64::INFINITY;
        for j in 0..M {
            let mut count = 0;
            for i in 0..M {
                // The row pass's test, transposed.
                let s = at[j][i] as f64;
                let kept = s - v[j] as f64 >= nth[i];
                self.down[j][i] = if kept { s } else { INF };
                count += kept as usize;
            }
            self.col_count[j] = count;
        }
        // Tied rows: their masks decide (rare; off the lanes).
        while tied != 0 {
            let i = tied.trailing_zeros() as usize;
            tied &= tied - 1;
            for j in 0..M {
                let (s, kept) = (at[j][i] as f64, keep[i * M + j] == 1);
                let was = s - v[j] as f64 >= nth[i];
                self.col_count[j] = self.col_count[j] + kept as usize - was as usize;
                self.down[j][i] = if kept { s } else { INF };
            }
        }
    }

    /// Dijkstra from every column with more than N kept to the nearest column with fewer, over
    /// reduced costs (non-negative by the potentials), on the dense graph without a heap; the
    /// potentials are updated by the distances. None when no column has excess (the mask is
    /// optimal) or, unreachable for non-negative finite scores, when no column has room.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // three arrays indexed alike: the form that vectorises
    fn shortest_path<L: Lanes>(&mut self, lanes: L, n: usize) -> Option<Path<M>> {
        const INF: f64 = f64::INFINITY;
        let mut dcol = [INF; M];
        // `open_*[v]` is the distance until v is finished, then +∞: the next node is its argmin.
        let mut open_col = [INF; M];
        let mut via_col = [0u64; M]; // the row a column was reached from
        let mut via_row = [0u64; M]; // the column a row was reached from
        let mut excess = false;
        for j in 0..M {
            let e = self.col_count[j] > n;
            excess |= e;
            dcol[j] = if e { 0.0 } else { INF };
            open_col[j] = dcol[j];
            via_col[j] = u64::MAX; // sources keep this mark
        }
        if !excess {
            return None;
        }
        let mut drow = [INF; M];
        let mut open_row = [INF; M];
        let target = loop {
            let (kc, kr) = (lanes.min_f64(&open_col), lanes.min_f64(&open_row));
            if kc.min(kr) == INF {
                // Unreachable for non-negative finite scores: an N-regular completion exists.
                return None;
            }
            if kc <= kr {
                let j = lanes.first_f64(&open_col, kc);
                lanes.set_f64(&mut open_col, j, INF);
                if self.col_count[j] < n {
                    break j;
                }
                // Column j → row i over a kept entry (drop it).
                let (du, pj) = (dcol[j], self.pot_col[j]);
                let mut cand = [0f64; M];
                for i in 0..M {
                    cand[i] = du + pos(self.down[j][i] + pj - self.pot_row[i]);
                }
                lanes.relax(&cand, &mut drow, &mut open_row, &mut via_row, j as u64);
            } else {
                let i = lanes.first_f64(&open_row, kr);
                lanes.set_f64(&mut open_row, i, INF);
                // Row i → column k over a pruned entry (keep it).
                let (du, pi) = (drow[i], self.pot_row[i]);
                let mut cand = [0f64; M];
                for k in 0..M {
                    cand[k] = du + pos(self.up[i][k] + pi - self.pot_col[k]);
                }
                lanes.relax(&cand, &mut dcol, &mut open_col, &mut via_col, i as u64);
            }
        };
        let d_t = dcol[target];
        for v in 0..M {
            self.pot_col[v] += dcol[v].min(d_t);
            self.pot_row[v] += drow[v].min(d_t);
        }
        Some(Path {
            target,
            via_col,
            via_row,
        })
    }

    /// Flip the path's entries walking back from its target: keep (row, column), drop (row,
    /// previous column), …; one unit moves from the source column to the target.
    #[inline(always)]
    fn augment(&mut self, a: &[f32], keep: &mut [u8], path: &Path<M>) {
        const INF: f64 = f64::INFINITY;
        let mut k = path.target;
        loop {
            let i = path.via_col[k] as usize;
            keep[i * M + k] = 1;
            self.down[k][i] = a[i * M + k] as f64;
            self.up[i][k] = INF;
            let j = path.via_row[i] as usize;
            keep[i * M + j] = 0;
            self.up[i][j] = -(a[i * M + j] as f64);
            self.down[j][i] = INF;
            k = j;
            if path.via_col[k] == u64::MAX {
                break;
            }
        }
        self.col_count[k] -= 1;
        self.col_count[path.target] += 1;
    }
}

/// Rounds of [`column_prices`] for blocks of M: none for M ≤ 4 (the row-wise start leaves
/// about one unit of excess, less than a round costs), one for 8, two for 16, three from 32 (the
/// counts that ran fastest on |Gaussian| 8192² matrices once the rounds were sorting networks:
/// 8:16 0.39 → 0.36 s from one round to two, 16:32 0.40 → 0.36 s from two to three).
const fn price_rounds(m: usize) -> usize {
    match m {
        0..=4 => 0,
        5..=8 => 1,
        9..=16 => 2,
        _ => 3,
    }
}

/// Column prices `v` for [`fixed`]'s warm start, by alternating thresholds: each row's `u_i` is
/// the midpoint of the N-th and (N+1)-th largest of `A_i − v`, then each column's `v_j` the same
/// of `A_·j − u` ([`price_rounds`] rounds, f32), all rows (columns) at once by one sorting network
/// ([`network::sort_desc`]) over `at` (`A` transposed) or `a`. With rows keeping their top N of
/// `A − v`, the shortest paths per |Gaussian| block (one per unit of column excess) fall from
/// 4.4 / 12.6 / 35.8 / 102 (v = 0; 4:8 / 8:16 / 16:32 / 32:64) to 1.3 / 3.7 / 9.4 / 23 after one
/// round, 0.7 / 2.1 / 5.1 / 12 after two and 3.5 / 7.8 (16:32 / 32:64) after three. Any v keeps
/// the solver exact; these only make its start closer.
#[inline(always)]
fn column_prices<const M: usize, L: Lanes>(
    lanes: L,
    a: &[f32],
    at: &[[f32; M]; M],
    n: usize,
    v: &mut [f32; M],
) {
    let mut u = [0f32; M];
    let mut x = [[0f32; M]; M];
    for _ in 0..price_rounds(M) {
        // Lane i is row i: x[j][i] = A_ij − v_j.
        for ((x, at), &v) in x.iter_mut().zip(at).zip(v.iter()) {
            for (x, &s) in x.iter_mut().zip(at) {
                *x = s - v;
            }
        }
        network::sort_desc(lanes, &mut x);
        for (i, u) in u.iter_mut().enumerate() {
            *u = 0.5 * (x[n - 1][i] + x[n][i]);
        }
        // Lane j is column j: x[i][j] = A_ij − u_i.
        for ((x, row), &u) in x.iter_mut().zip(a.chunks_exact(M)).zip(&u) {
            for (x, &s) in x.iter_mut().zip(row) {
                *x = s - u;
            }
        }
        network::sort_desc(lanes, &mut x);
        for (j, v) in v.iter_mut().enumerate() {
            *v = 0.5 * (x[n - 1][j] + x[n][j]);
        }
    }
}

/// Rank of each key among `key`: how many are larger, or equal at a lower index (so the ranks
/// are 0..M, each once). M² compares over i64 lanes; the warm start's fallback for rows tied at
/// their N-th largest value.
#[inline(always)]
fn ranks_i64<const M: usize>(key: &[i64; M]) -> [i32; M] {
    let mut column = [0i64; M];
    for (j, c) in column.iter_mut().enumerate() {
        *c = j as i64;
    }
    // Opaque to the optimiser, and the competitor's column read from it rather than its loop
    // index: knowing `column[j] == j`, LLVM compares indices in 64-bit lanes and packs every mask
    // down to 32 bits, about twice the work.
    let column = std::hint::black_box(column);
    let mut rank = [0i64; M];
    for k in 0..M {
        let (kk, kc) = (key[k], column[k]);
        for j in 0..M {
            rank[j] += ((kk > key[j]) | ((kk == key[j]) & (kc < column[j]))) as i64;
        }
    }
    let mut out = [0i32; M];
    for (o, &r) in out.iter_mut().zip(&rank) {
        *o = r as i32;
    }
    out
}

/// The general loop for any M ≤ [`super::MAX_M`] and 0 < N < M: each row keeps its N largest
/// scores (row potentials their N-th, column potentials 0), then one shortest path
/// ([`general_path`]) and its flips ([`general_augment`]) per unit of column excess.
fn general(scores: &[f32], pattern: Pattern, keep: &mut [u8]) {
    let (m, n) = (pattern.m, pattern.n);
    keep.iter_mut().for_each(|k| *k = 0);
    let a = scores;
    const CAP: usize = super::MAX_M;
    let mut pot_row = [0f64; CAP];
    let mut pot_col = [0f64; CAP];
    let mut col_count = [0usize; CAP];
    let mut keys = [0u64; CAP];
    for i in 0..m {
        let row = &a[i * m..(i + 1) * m];
        super::descending_keys(row, &mut keys[..m]);
        for &key in &keys[..n] {
            let j = (key & 0xffff_ffff) as usize;
            keep[i * m + j] = 1;
            col_count[j] += 1;
        }
        pot_row[i] = row[(keys[n - 1] & 0xffff_ffff) as usize] as f64;
    }
    let mut g = General {
        a,
        m,
        n,
        pot_row: &mut pot_row[..m],
        pot_col: &mut pot_col[..m],
        col_count: &mut col_count[..m],
    };
    // Dijkstra state over 2M nodes: columns 0..m, rows m..2m.
    let mut dist = [0f64; 2 * CAP];
    let mut prev = [usize::MAX; 2 * CAP];
    let (dist, prev) = (&mut dist[..2 * m], &mut prev[..2 * m]);
    while g.col_count.iter().any(|&c| c > n) {
        let Some(target) = general_path(&mut g, keep, dist, prev) else {
            // Unreachable for non-negative finite scores: an N-regular completion always exists.
            break;
        };
        general_augment(&mut g, keep, prev, target);
    }
}

/// [`general`]'s block: scores, sizes, potentials and column counts.
struct General<'a> {
    a: &'a [f32],
    m: usize,
    n: usize,
    pot_row: &'a mut [f64],
    pot_col: &'a mut [f64],
    col_count: &'a mut [usize],
}

/// Dijkstra over reduced costs from the columns with excess to the nearest column with room
/// (`dist`, `prev` over columns 0..m and rows m..2m), then the potentials moved by the
/// distances; the target column, none if no column with room is reachable.
fn general_path(
    g: &mut General,
    keep: &[u8],
    dist: &mut [f64],
    prev: &mut [usize],
) -> Option<usize> {
    let (a, m, n) = (g.a, g.m, g.n);
    dist.iter_mut().for_each(|d| *d = f64::INFINITY);
    prev.iter_mut().for_each(|p| *p = usize::MAX);
    for (d, &c) in dist.iter_mut().zip(g.col_count.iter()) {
        if c > n {
            *d = 0.0;
        }
    }
    // `open[v]` is dist[v] until v is finished, then +∞: the next node is the argmin of `open`.
    // A finished node needs no flag in the relaxations: with reduced costs ≥ 0 its distance is
    // never improved.
    let mut open = [0f64; 2 * super::MAX_M];
    let open = &mut open[..2 * m];
    open.copy_from_slice(dist);
    let target = loop {
        // Pick the closest unfinished node.
        let (mut u, mut best) = (usize::MAX, f64::INFINITY);
        for (v, &d) in open.iter().enumerate() {
            if d < best {
                best = d;
                u = v;
            }
        }
        if u == usize::MAX {
            return None;
        }
        open[u] = f64::INFINITY;
        if u < m {
            let j = u;
            if g.col_count[j] < n {
                break j;
            }
            // Column j → row i over a kept entry (drop it): cost +A_ij.
            for i in (0..m).filter(|&i| keep[i * m + j] == 1) {
                let rc = (a[i * m + j] as f64 + g.pot_col[j] - g.pot_row[i]).max(0.0);
                if dist[u] + rc < dist[m + i] {
                    dist[m + i] = dist[u] + rc;
                    open[m + i] = dist[m + i];
                    prev[m + i] = u;
                }
            }
        } else {
            let i = u - m;
            // Row i → column k over a pruned entry (keep it): cost −A_ik.
            for k in (0..m).filter(|&k| keep[i * m + k] == 0) {
                let rc = (-(a[i * m + k] as f64) + g.pot_row[i] - g.pot_col[k]).max(0.0);
                if dist[u] + rc < dist[k] {
                    dist[k] = dist[u] + rc;
                    open[k] = dist[k];
                    prev[k] = u;
                }
            }
        }
    };
    let d_t = dist[target];
    for (v, &dv) in dist.iter().enumerate() {
        let d = dv.min(d_t);
        if v < m {
            g.pot_col[v] += d;
        } else {
            g.pot_row[v - m] += d;
        }
    }
    Some(target)
}

/// Walk the path back from `target`, flipping entries; one unit moves from its source column.
fn general_augment(g: &mut General, keep: &mut [u8], prev: &[usize], target: usize) {
    let v = super::flip_path(keep, g.m, prev, target, |v| prev[v] == usize::MAX);
    g.col_count[v] -= 1;
    g.col_count[target] += 1;
}

#[cfg(test)]
mod tests;
