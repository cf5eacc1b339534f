//! `tsenor`: entropy-regularised optimal transport by Dykstra's algorithm, then rounding.
//!
//! Problem: a transposable N:M mask of every M×M block with near-optimal kept score.
//! Method (Meng, Makni & Mazumder 2025): relax the mask to `0 ≤ S ≤ 1` with row and column sums
//! N and maximise `⟨S, A⟩ + τ·H(S)`. The solution is `exp(A/τ)` projected (in KL) onto the
//! intersection of three sets — row sums N, column sums N, the box `S ≤ 1` — which Dykstra's
//! algorithm reaches by cyclic projections: row scaling, column scaling, and clipping at 1 with
//! its dual correction Q (needed because the box is not affine). Everything runs in the log
//! domain on a `[B, M, M]` candle tensor (stable for any score scale; scores are divided by
//! each block's maximum, so τ is relative), on `Device::Cpu` or CUDA unchanged.
//! Rounding: greedy on the fractional solution (descending S), completion of rows and columns
//! that keep fewer than N by alternating paths, then local search: 2×2 swaps that strictly
//! raise the kept score, up to `local_search_steps` sweeps.
//! Guarantee: feasible and exactly N per row and column; no proven bound (near-optimal in
//! practice). Cost: `iterations` × O(B·M²) tensor work, plus O(M²·N²) per local-search sweep.
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
        "entropy-regularised OT by Dykstra (candle tensors), greedy rounding + local search (TSENOR)"
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
        let fractional = this
            .transport(blocks, pattern, &ctx.device)
            .map_err(Error::tensor("tsenor Dykstra iterations"))?;
        let steps = this.local_search_steps;
        let mm = pattern.m * pattern.m;
        Ok(super::per_block(blocks, pattern, ctx, |block, out, b| {
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
    /// The fractional solution `S` (`[B, M, M]`, flattened) after the Dykstra iterations.
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
        let mut v = target;
        while prev[v] != v {
            let u = prev[v];
            if v < m {
                keep[(u - m) * m + v] = 1;
            } else {
                keep[(v - m) * m + u] = 0;
            }
            v = u;
        }
    }
}

/// Up to `steps` sweeps of 2×2 swaps: for rows i, l and columns j, k with (i,j), (l,k) kept and
/// (i,k), (l,j) pruned, swap when `A_ik + A_lj > A_ij + A_lk`. Row and column counts are kept.
pub fn local_search(scores: &[f32], pattern: Pattern, steps: usize, keep: &mut [u8]) {
    let m = pattern.m;
    for _ in 0..steps {
        let mut improved = false;
        for i in 0..m {
            for l in i + 1..m {
                let mut best = 0f32;
                let mut swap = None;
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
