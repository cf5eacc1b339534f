//! `tsenor`: entropy-regularised optimal transport by Dykstra's algorithm, then rounding.
//!
//! Problem: a transposable N:M mask of every M×M block with near-optimal kept score.
//! Method (Meng, Makni & Mazumder 2025): relax the mask to `0 ≤ S ≤ 1` with row and column sums
//! N and maximise `⟨S, A⟩ + τ·H(S)`. The solution is `exp(A/τ)` projected (in KL) onto the
//! intersection of three sets — row sums N, column sums N, the box `S ≤ 1` — which Dykstra's
//! algorithm reaches by cyclic projections: row scaling, column scaling, and clipping at 1 with
//! its dual correction Q (needed because the box is not affine). Everything runs in the log
//! domain (stable for any score scale; scores are divided by each block's maximum, so τ is
//! relative). On the CPU the iterations and the rounding are fused per run of blocks
//! ([`fused`]): 16 blocks side by side in SIMD lanes, no allocation inside the loop, exp and
//! ln by polynomials accurate to a few ulp. On other devices ([`Tsenor::transport`]) they are
//! candle tensor ops on `[B, M, M]`, the whole batch per step.
//! Rounding: greedy on the fractional solution (descending S), completion of rows and columns
//! that keep fewer than N by alternating paths, then local search: 2×2 swaps that strictly
//! raise the kept score, up to `local_search_steps` sweeps.
//! Guarantee: feasible and exactly N per row and column; no proven bound (near-optimal in
//! practice). Cost: `iterations` × (2 exp + a few adds) per score, plus O(M²·N²) per
//! local-search sweep.
//! Source: Meng, Makni & Mazumder, "TSENOR: Highly-Efficient Algorithm for Finding
//! Transposable N:M Sparse Masks", 2025.

use super::{Guarantee, SolveContext, Solver};
use crate::error::{Error, Result};
use crate::mask::Pattern;
use candle_core::{DType, Tensor};

/// The TSENOR solver with its options.
#[derive(Debug, Clone, Copy)]
pub struct Tsenor {
    /// Entropy weight τ, relative to each block's largest score.
    pub tau: f64,
    /// Dykstra iterations (each: row scaling, column scaling, box projection).
    pub iterations: usize,
    /// Local-search sweeps after rounding.
    pub local_search_steps: usize,
}

impl Default for Tsenor {
    fn default() -> Self {
        Tsenor {
            tau: 0.02,
            iterations: 60,
            local_search_steps: 8,
        }
    }
}

impl Solver for Tsenor {
    fn name(&self) -> &'static str {
        "tsenor"
    }

    fn summary(&self) -> &'static str {
        "entropy-regularised OT by Dykstra (fused SIMD lanes on the CPU, candle tensors on CUDA), greedy rounding + local search (TSENOR)"
    }

    fn guarantee(&self) -> Guarantee {
        Guarantee::Heuristic
    }

    fn devices(&self) -> &'static str {
        "cpu, cuda"
    }

    fn options(&self) -> &'static [&'static str] {
        &["tau", "iterations", "local_search_steps"]
    }

    fn solve(&self, blocks: &[f32], pattern: Pattern, ctx: &SolveContext) -> Result<Vec<u8>> {
        super::check_blocks(blocks, pattern)?;
        if blocks.is_empty() {
            return Ok(Vec::new());
        }
        let this = Tsenor {
            tau: ctx.option("tau", self.tau),
            iterations: ctx.option("iterations", self.iterations as f64) as usize,
            local_search_steps: ctx.option("local_search_steps", self.local_search_steps as f64)
                as usize,
        };
        if this.tau.is_nan() || this.tau <= 0.0 {
            return Err(Error::invalid("tau", this.tau, "must be positive"));
        }
        let steps = this.local_search_steps;
        if ctx.device.is_cpu() {
            return Ok(super::per_chunk(blocks, pattern, |inp, out, _| {
                fused::solve_run(&this, inp, pattern, out)
            }));
        }
        let fractional = this
            .transport(blocks, pattern, &ctx.device)
            .map_err(Error::tensor("tsenor Dykstra iterations"))?;
        let mm = pattern.m * pattern.m;
        Ok(super::per_block(blocks, pattern, |block, out, b| {
            round_block(
                block,
                &fractional[b * mm..(b + 1) * mm],
                pattern,
                steps,
                out,
            )
        }))
    }
}

impl Tsenor {
    /// The fractional solution `S` (`[B, M, M]`, flattened) after the Dykstra iterations, as
    /// candle tensor ops on `device` (the CPU solve uses [`fused`] instead).
    pub fn transport(
        &self,
        blocks: &[f32],
        pattern: Pattern,
        device: &candle_core::Device,
    ) -> candle_core::Result<Vec<f32>> {
        let m = pattern.m;
        let b = blocks.len() / (m * m);
        let a = Tensor::from_slice(blocks, (b, m, m), device)?;
        let max = a.max_keepdim(2)?.max_keepdim(1)?;
        let max = max.clamp(f32::MIN_POSITIVE, f32::MAX)?;
        let mut log_s = (a.broadcast_div(&max)? / self.tau)?;
        let mut log_q = log_s.zeros_like()?;
        let log_n = (pattern.n as f64).ln();
        for _ in 0..self.iterations {
            log_s = log_s.broadcast_sub(&(logsumexp(&log_s, 2)? - log_n)?)?;
            log_s = log_s.broadcast_sub(&(logsumexp(&log_s, 1)? - log_n)?)?;
            let shifted = (&log_s + &log_q)?;
            let clipped = shifted.clamp(f32::NEG_INFINITY, 0f32)?;
            log_q = (shifted - &clipped)?;
            log_s = clipped;
        }
        log_s
            .exp()?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()
    }
}

/// The CPU path: Dykstra's iterations on 16 blocks at once, lane-major, then rounding.
pub mod fused {
    use super::{Pattern, Tsenor, round_block};
    use crate::vmath::{exp, exp_sum_term, ln};

    /// Blocks side by side: one f32 SIMD register of AVX-512, two of AVX2.
    pub const LANES: usize = 16;

    /// Per-run scratch: S and Q lane-major (`[(i·M + j)·LANES + lane]`), one block's fraction.
    struct Work {
        s: Vec<f32>,
        q: Vec<f32>,
        frac: Vec<f32>,
    }

    impl Work {
        fn new(mm: usize) -> Work {
            Work {
                s: vec![0.0; mm * LANES],
                q: vec![0.0; mm * LANES],
                frac: vec![0.0; mm],
            }
        }

        /// Run the iterations on blocks `first..first + here` (at most [`LANES`]); lanes past
        /// `here` repeat block `first` and are ignored.
        fn iterate(&mut self, t: &Tsenor, blocks: &[f32], pattern: Pattern, first: usize) {
            self.load(blocks, pattern, first);
            dispatch(t, pattern, self);
        }

        /// Blocks `first..` into the lanes (see [`Work::iterate`]).
        fn load(&mut self, blocks: &[f32], pattern: Pattern, first: usize) {
            let mm = pattern.m * pattern.m;
            let here = LANES.min(blocks.len() / mm - first);
            for lane in 0..LANES {
                let b = first + if lane < here { lane } else { 0 };
                for (e, &v) in blocks[b * mm..(b + 1) * mm].iter().enumerate() {
                    self.s[e * LANES + lane] = v;
                }
            }
        }

        /// Lane `lane`'s fraction, row-major, into `self.frac`.
        fn fraction(&mut self, lane: usize) -> &[f32] {
            for (e, f) in self.frac.iter_mut().enumerate() {
                *f = self.s[e * LANES + lane];
            }
            &self.frac
        }
    }

    /// Solve a run of consecutive M×M blocks into `keep`.
    pub fn solve_run(t: &Tsenor, blocks: &[f32], pattern: Pattern, keep: &mut [u8]) {
        let mm = pattern.m * pattern.m;
        let count = blocks.len() / mm;
        let mut w = Work::new(mm);
        for first in (0..count).step_by(LANES) {
            w.iterate(t, blocks, pattern, first);
            for lane in 0..LANES.min(count - first) {
                let b = first + lane;
                let frac = w.fraction(lane);
                let (scores, out) = (
                    &blocks[b * mm..(b + 1) * mm],
                    &mut keep[b * mm..(b + 1) * mm],
                );
                round_block(scores, frac, pattern, t.local_search_steps, out);
            }
        }
    }

    /// The fractional solution of every block (`[B, M, M]`, flattened), as
    /// [`Tsenor::transport`] gives it.
    pub fn transport(t: &Tsenor, blocks: &[f32], pattern: Pattern) -> Vec<f32> {
        let mm = pattern.m * pattern.m;
        let count = blocks.len() / mm;
        let (mut w, mut out) = (Work::new(mm), Vec::with_capacity(blocks.len()));
        for first in (0..count).step_by(LANES) {
            w.iterate(t, blocks, pattern, first);
            for lane in 0..LANES.min(count - first) {
                out.extend_from_slice(w.fraction(lane));
            }
        }
        out
    }

    fn dispatch(t: &Tsenor, pattern: Pattern, w: &mut Work) {
        #[cfg(target_arch = "x86_64")]
        match crate::lanes::Isa::best() {
            // SAFETY: the CPU reports AVX-512F, the only feature the function enables.
            crate::lanes::Isa::Avx512 => return unsafe { dykstra_avx512(t, pattern, w) },
            // SAFETY: the CPU reports AVX2 and FMA, the features the function enables.
            crate::lanes::Isa::Avx2 => return unsafe { dykstra_avx2(t, pattern, w) },
            crate::lanes::Isa::Scalar => {}
        }
        dykstra(t, pattern, w)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn dykstra_avx512(t: &Tsenor, pattern: Pattern, w: &mut Work) {
        dykstra(t, pattern, w)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn dykstra_avx2(t: &Tsenor, pattern: Pattern, w: &mut Work) {
        dykstra(t, pattern, w)
    }

    /// The scores in `w.s` (lane-major) become the fraction `exp(log S)` after the iterations.
    /// Every step is elementwise across the lanes, so the compiler vectorises it at the width
    /// the caller's target features allow.
    #[inline(always)]
    fn dykstra(t: &Tsenor, pattern: Pattern, w: &mut Work) {
        let (m, s, q) = (pattern.m, &mut w.s[..], &mut w.q[..]);
        let at = |i: usize, j: usize| (i * m + j) * LANES;
        // log S = (A / max A) / τ per block; Q = 0.
        let mut top = [0f32; LANES];
        for e in 0..m * m {
            for (k, v) in top.iter_mut().enumerate() {
                *v = v.max(s[e * LANES + k]);
            }
        }
        let inv_tau = (1.0 / t.tau) as f32;
        for v in &mut top {
            *v = v.clamp(f32::MIN_POSITIVE, f32::MAX);
        }
        for e in 0..m * m {
            for k in 0..LANES {
                s[e * LANES + k] = s[e * LANES + k] / top[k] * inv_tau;
            }
        }
        q.fill(0.0);
        let log_n = (pattern.n as f32).ln();
        let mut lanes = ([0f32; LANES], [0f32; LANES]);
        for _ in 0..t.iterations {
            for i in 0..m {
                normalise(s, at(i, 0), LANES, m, log_n, &mut lanes);
            }
            for j in 0..m {
                normalise(s, at(0, j), m * LANES, m, log_n, &mut lanes);
            }
            for (v, c) in s.iter_mut().zip(q.iter_mut()) {
                let shifted = *v + *c;
                let clipped = shifted.min(0.0);
                *c = shifted - clipped;
                *v = clipped;
            }
        }
        for v in s.iter_mut() {
            *v = exp(*v);
        }
    }

    /// `log S −= logsumexp − ln N` over the `m` entries at `base + step·r` of every lane (a row
    /// or a column of each block). A function, not a closure, so that it is inlined into, and
    /// compiled with the target features of, its caller.
    #[inline(always)]
    fn normalise(
        s: &mut [f32],
        base: usize,
        step: usize,
        m: usize,
        log_n: f32,
        (mx, sum): &mut ([f32; LANES], [f32; LANES]),
    ) {
        // Each lane group as a fixed-size array: one bounds check per group, not per lane, so
        // the lane loops vectorise.
        let group = |s: &[f32], r: usize| -> [f32; LANES] {
            s[base + r * step..base + r * step + LANES]
                .try_into()
                .expect("LANES values")
        };
        *mx = [f32::NEG_INFINITY; LANES];
        for r in 0..m {
            let g = group(s, r);
            for k in 0..LANES {
                mx[k] = mx[k].max(g[k]);
            }
        }
        *sum = [0.0; LANES];
        for r in 0..m {
            let g = group(s, r);
            for k in 0..LANES {
                sum[k] += exp_sum_term(g[k] - mx[k]);
            }
        }
        for k in 0..LANES {
            sum[k] = ln(sum[k]) + mx[k] - log_n;
        }
        for r in 0..m {
            let o = base + r * step;
            let g: &mut [f32; LANES] = (&mut s[o..o + LANES]).try_into().expect("LANES values");
            for k in 0..LANES {
                g[k] -= sum[k];
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn every_instruction_set_path_gives_the_same_fractions_bitwise() {
            use rand::{Rng, SeedableRng};
            let t = Tsenor::default();
            let mut rng = rand::rngs::StdRng::seed_from_u64(4);
            for (n, m) in [(2, 4), (8, 16), (5, 12)] {
                let pattern = Pattern { n, m };
                let blocks: Vec<f32> = (0..LANES * m * m)
                    .map(|_| rng.random_range(0.0f32..3.0))
                    .collect();
                let run = |path: &dyn Fn(&mut Work)| {
                    let mut w = Work::new(m * m);
                    w.load(&blocks, pattern, 0);
                    path(&mut w);
                    w.s
                };
                let portable = run(&|w| dykstra(&t, pattern, w));
                #[cfg(target_arch = "x86_64")]
                {
                    if std::arch::is_x86_feature_detected!("avx2")
                        && std::arch::is_x86_feature_detected!("fma")
                    {
                        // SAFETY: the CPU reports AVX2 and FMA.
                        let avx2 = run(&|w| unsafe { dykstra_avx2(&t, pattern, w) });
                        assert_eq!(avx2, portable, "{n}:{m} AVX2");
                    }
                    if std::arch::is_x86_feature_detected!("avx512f") {
                        // SAFETY: the CPU reports AVX-512F.
                        let avx512 = run(&|w| unsafe { dykstra_avx512(&t, pattern, w) });
                        assert_eq!(avx512, portable, "{n}:{m} AVX-512");
                    }
                }
                assert!(portable.iter().all(|v| v.is_finite() && *v >= 0.0));
            }
        }

        #[test]
        fn the_fused_iterations_and_masks_match_the_tensor_ones() {
            use rand::{Rng, SeedableRng};
            let t = Tsenor::default();
            let mut rng = rand::rngs::StdRng::seed_from_u64(9);
            for (n, m) in [(2, 4), (4, 8), (8, 16), (16, 32)] {
                let pattern = Pattern { n, m };
                // 37 blocks: two full groups of lanes and a short one.
                let blocks: Vec<f32> = (0..37 * m * m)
                    .map(|_| rng.random_range(0.0f32..1.0).powi(2))
                    .collect();
                let ours = transport(&t, &blocks, pattern);
                let theirs = t
                    .transport(&blocks, pattern, &candle_core::Device::Cpu)
                    .unwrap();
                let d = ours
                    .iter()
                    .zip(&theirs)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(d < 1e-4, "{n}:{m}: max |ΔS| {d}");
                let mut keep = vec![0u8; blocks.len()];
                solve_run(&t, &blocks, pattern, &mut keep);
                let mm = m * m;
                let (mut same, mut kept_ours, mut kept_theirs) = (0, 0.0, 0.0);
                for b in 0..37 {
                    let sc = &blocks[b * mm..(b + 1) * mm];
                    let mut k = vec![0u8; mm];
                    round_block(sc, &theirs[b * mm..(b + 1) * mm], pattern, 8, &mut k);
                    same += (k == keep[b * mm..(b + 1) * mm]) as usize;
                    let kept = |k: &[u8]| -> f64 {
                        sc.iter()
                            .zip(k)
                            .map(|(&s, &k)| f64::from(s) * k as f64)
                            .sum()
                    };
                    kept_theirs += kept(&k);
                    kept_ours += kept(&keep[b * mm..(b + 1) * mm]);
                    let rows = keep[b * mm..(b + 1) * mm].chunks(m);
                    assert!(
                        rows.into_iter()
                            .all(|r| r.iter().filter(|&&x| x == 1).count() == n)
                    );
                }
                assert!(same >= 35, "{n}:{m}: {same} of 37 blocks equal");
                assert!((kept_ours / kept_theirs - 1.0).abs() < 1e-4, "{n}:{m}");
            }
        }
    }
}

/// `log Σ exp(x)` along `dim`, keeping the dimension (max-shifted for stability).
fn logsumexp(x: &Tensor, dim: usize) -> candle_core::Result<Tensor> {
    let max = x.max_keepdim(dim)?;
    let max = max.clamp(-1e30f32, f32::MAX)?;
    x.broadcast_sub(&max)?
        .exp()?
        .sum_keepdim(dim)?
        .log()?
        .broadcast_add(&max)
}

/// Round a fractional block: greedy on `frac`, complete to N per row and column, local search on `scores`.
pub fn round_block(scores: &[f32], frac: &[f32], pattern: Pattern, steps: usize, keep: &mut [u8]) {
    super::greedy::solve_block(frac, pattern, keep);
    complete(scores, pattern, keep);
    local_search(scores, pattern, steps, keep);
}

/// Raise every row and column to exactly N kept by alternating paths (row → unkept column →
/// kept row → …), preferring high scores when choosing the first step.
pub fn complete(scores: &[f32], pattern: Pattern, keep: &mut [u8]) {
    let (m, n) = (pattern.m, pattern.n);
    let count_row =
        |keep: &[u8], i: usize| keep[i * m..(i + 1) * m].iter().filter(|&&k| k == 1).count();
    let count_col = |keep: &[u8], j: usize| (0..m).filter(|&i| keep[i * m + j] == 1).count();
    // Direct additions first: a deficient row and column meeting at a pruned entry, best first.
    loop {
        let mut best: Option<(f32, usize)> = None;
        for i in (0..m).filter(|&i| count_row(keep, i) < n) {
            for j in (0..m).filter(|&j| keep[i * m + j] == 0 && count_col(keep, j) < n) {
                if best.is_none_or(|(s, _)| scores[i * m + j] > s) {
                    best = Some((scores[i * m + j], i * m + j));
                }
            }
        }
        match best {
            Some((_, idx)) => keep[idx] = 1,
            None => break,
        }
    }
    // Then augmenting paths by breadth-first search.
    let mut prev = vec![usize::MAX; 2 * m];
    let mut queue = Vec::with_capacity(2 * m);
    while let Some(start) = (0..m).find(|&i| count_row(keep, i) < n) {
        prev.iter_mut().for_each(|p| *p = usize::MAX);
        queue.clear();
        queue.push(m + start);
        prev[m + start] = m + start;
        let mut head = 0;
        let mut target = usize::MAX;
        while head < queue.len() && target == usize::MAX {
            let u = queue[head];
            head += 1;
            if u >= m {
                let i = u - m;
                for j in 0..m {
                    if keep[i * m + j] == 0 && prev[j] == usize::MAX {
                        prev[j] = u;
                        if count_col(keep, j) < n {
                            target = j;
                            break;
                        }
                        queue.push(j);
                    }
                }
            } else {
                for i in 0..m {
                    if keep[i * m + u] == 1 && prev[m + i] == usize::MAX {
                        prev[m + i] = u;
                        queue.push(m + i);
                    }
                }
            }
        }
        if target == usize::MAX {
            return; // cannot happen for N ≤ M; leave the block under-filled rather than loop
        }
        super::flip_path(keep, m, &prev, target, |v| prev[v] == v);
    }
}

/// Up to `steps` sweeps of 2×2 swaps: for rows i, l and columns j, k with (i,j), (l,k) kept and
/// (i,k), (l,j) pruned, swap when `A_ik + A_lj > A_ij + A_lk`. Row and column counts are kept.
/// Per row pair, the candidate columns are listed first (j kept in i only, k kept in l only:
/// at most N each). The gain separates, `(A_lj − A_ij) + (A_ik − A_lk)`, so when the two maxima
/// add up to less than the rounding of the four-term sum can reach, no swap gains and the pair
/// costs O(M); otherwise the candidates are scanned with the same float expression, order and
/// strict comparison as a full O(M²) scan, whose swaps this makes exactly.
pub fn local_search(scores: &[f32], pattern: Pattern, steps: usize, keep: &mut [u8]) {
    let m = pattern.m;
    // Each of the four terms has rounding error at most ε·|term| ≤ ε·max A, and the sums add up
    // to three roundings of values at most 4·max A: 16ε·max A bounds the difference between
    // the separated sum and the four-term expression.
    let slack = 16.0 * f32::EPSILON * scores.iter().fold(0f32, |a, &b| a.max(b.abs()));
    let mut kept = KeptRows::new(keep, m);
    let (mut js, mut ks) = ([0u8; super::MAX_M], [0u8; super::MAX_M]);
    for _ in 0..steps {
        let mut improved = false;
        for i in 0..m {
            for l in i + 1..m {
                let (nj, nk) = kept.candidates(keep, (i, l), &mut js, &mut ks);
                let pair = Pair { scores, m, i, l };
                if let Some((j, k)) = pair.best_swap(&js[..nj], &ks[..nk], slack) {
                    kept.swap(keep, (i, l), (j, k));
                    improved = true;
                }
            }
        }
        if !improved {
            break;
        }
    }
}

/// Each row's kept columns as bits for M ≤ 64 (else the mask is read directly).
struct KeptRows {
    rows: [u64; 64],
    bits: bool,
    m: usize,
}

impl KeptRows {
    #[inline(always)]
    fn new(keep: &[u8], m: usize) -> Self {
        let mut rows = [0u64; 64];
        let bits = m <= 64;
        if bits {
            for (i, r) in rows.iter_mut().enumerate().take(m) {
                *r = keep[i * m..(i + 1) * m]
                    .iter()
                    .enumerate()
                    .fold(0, |acc, (c, &k)| acc | (u64::from(k) << c));
            }
        }
        KeptRows { rows, bits, m }
    }

    /// The columns kept in row i only (into `js`) and in row l only (into `ks`): their counts.
    #[inline(always)]
    fn candidates(
        &self,
        keep: &[u8],
        (i, l): (usize, usize),
        js: &mut [u8],
        ks: &mut [u8],
    ) -> (usize, usize) {
        let (mut nj, mut nk) = (0, 0);
        if self.bits {
            let (mut jm, mut km) = (self.rows[i] & !self.rows[l], self.rows[l] & !self.rows[i]);
            while jm != 0 {
                js[nj] = jm.trailing_zeros() as u8;
                nj += 1;
                jm &= jm - 1;
            }
            while km != 0 {
                ks[nk] = km.trailing_zeros() as u8;
                nk += 1;
                km &= km - 1;
            }
        } else {
            let m = self.m;
            let (ri, rl) = (&keep[i * m..(i + 1) * m], &keep[l * m..(l + 1) * m]);
            for c in 0..m {
                js[nj] = c as u8;
                nj += (ri[c] == 1 && rl[c] == 0) as usize;
                ks[nk] = c as u8;
                nk += (rl[c] == 1 && ri[c] == 0) as usize;
            }
        }
        (nj, nk)
    }

    /// Swap (i, j), (l, k) kept for (i, k), (l, j).
    #[inline(always)]
    fn swap(&mut self, keep: &mut [u8], (i, l): (usize, usize), (j, k): (usize, usize)) {
        let m = self.m;
        keep[i * m + j] = 0;
        keep[l * m + k] = 0;
        keep[i * m + k] = 1;
        keep[l * m + j] = 1;
        if self.bits {
            let flip = (1u64 << j) | (1u64 << k);
            self.rows[i] ^= flip;
            self.rows[l] ^= flip;
        }
    }
}

/// Rows i < l of one block's scores.
struct Pair<'a> {
    scores: &'a [f32],
    m: usize,
    i: usize,
    l: usize,
}

impl Pair<'_> {
    /// The swap of largest positive gain over the candidates (j from `js`, k from `ks`), first
    /// in scan order among equals; none when the separated bound shows no gain.
    #[inline(always)]
    fn best_swap(&self, js: &[u8], ks: &[u8], slack: f32) -> Option<(usize, usize)> {
        if js.is_empty() || ks.is_empty() {
            return None;
        }
        let (a, m, i, l) = (self.scores, self.m, self.i, self.l);
        let (mut best_u, mut best_v) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
        for &j in js {
            let j = j as usize;
            best_u = best_u.max(a[l * m + j] - a[i * m + j]);
        }
        for &k in ks {
            let k = k as usize;
            best_v = best_v.max(a[i * m + k] - a[l * m + k]);
        }
        if best_u + best_v <= -slack {
            return None;
        }
        let mut best = 0f32;
        let mut swap = None;
        for &j in js {
            let j = j as usize;
            for &k in ks {
                let k = k as usize;
                let gain = a[i * m + k] + a[l * m + j] - a[i * m + j] - a[l * m + k];
                if gain > best {
                    best = gain;
                    swap = Some((j, k));
                }
            }
        }
        swap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The full O(M²) scan the listed-candidates search must equal swap for swap.
    fn local_search_full_scan(scores: &[f32], pattern: Pattern, steps: usize, keep: &mut [u8]) {
        let m = pattern.m;
        for _ in 0..steps {
            let mut improved = false;
            for i in 0..m {
                for l in i + 1..m {
                    let (mut best, mut swap) = (0f32, None);
                    for j in 0..m {
                        if keep[i * m + j] == 0 || keep[l * m + j] == 1 {
                            continue;
                        }
                        for k in 0..m {
                            if keep[l * m + k] == 0 || keep[i * m + k] == 1 {
                                continue;
                            }
                            let gain = scores[i * m + k] + scores[l * m + j]
                                - scores[i * m + j]
                                - scores[l * m + k];
                            if gain > best {
                                best = gain;
                                swap = Some((j, k));
                            }
                        }
                    }
                    if let Some((j, k)) = swap {
                        keep[i * m + j] = 0;
                        keep[l * m + k] = 0;
                        keep[i * m + k] = 1;
                        keep[l * m + j] = 1;
                        improved = true;
                    }
                }
            }
            if !improved {
                break;
            }
        }
    }

    #[test]
    fn the_listed_local_search_makes_the_full_scans_swaps() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut moved = 0;
        for (n, m) in [
            (1, 4),
            (2, 4),
            (4, 8),
            (8, 16),
            (16, 32),
            (3, 7),
            (20, 64),
            (4, 66),
        ] {
            let pattern = Pattern { n, m };
            for _ in 0..40 {
                let scores: Vec<f32> = (0..m * m).map(|_| rng.random_range(0.0f32..1.0)).collect();
                // Start from a poor feasible mask: greedy on a shuffled copy of the scores.
                let noise: Vec<f32> = (0..m * m).map(|_| rng.random_range(0.0f32..1.0)).collect();
                let mut start = vec![0u8; m * m];
                crate::solvers::greedy::solve_block(&noise, pattern, &mut start);
                complete(&noise, pattern, &mut start);
                let (mut a, mut b) = (start.clone(), start.clone());
                local_search(&scores, pattern, 8, &mut a);
                local_search_full_scan(&scores, pattern, 8, &mut b);
                assert_eq!(a, b, "{n}:{m}");
                moved += (a != start) as usize;
            }
        }
        assert!(moved > 100, "the search moved only {moved} masks");
    }
}
