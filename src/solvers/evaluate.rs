//! Checking and scoring a solver's masks: infeasible blocks are counted and never scored;
//! gaps to the optimum are computed over the blocks the mask gets right.
//!
//! `kept_gap = (OPT − kept) / OPT` on the kept score and `pruned_excess = (pruned − pruned_OPT) /
//! pruned_OPT` on the pruned score, both summed over the feasible blocks only.

use crate::mask::Pattern;
use crate::mask::tile::check_block;

/// Per-block scores of a mask batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Kept score of each block; `None` where the block is infeasible.
    pub kept: Vec<Option<f64>>,
    /// Total score of each block.
    pub total: Vec<f64>,
    /// Blocks in which a row or column keeps more than N.
    pub infeasible: usize,
    /// Feasible blocks in which a row or column keeps fewer than N.
    pub underfilled: usize,
}

/// Score and check `keep` (`[B, M, M]` 0/1) against `blocks` (`[B, M, M]` scores).
pub fn evaluate(blocks: &[f32], keep: &[u8], pattern: Pattern) -> Evaluation {
    use rayon::prelude::*;
    let mm = pattern.m * pattern.m;
    let avx2 = has_avx2();
    // Per block, in parallel (order kept): (total, kept if feasible, under-filled).
    let per: Vec<(f64, Option<f64>, bool)> = blocks
        .par_chunks(mm.max(1))
        .zip(keep.par_chunks(mm.max(1)))
        .with_min_len(256)
        .map(|(scores, mask)| score_block(scores, mask, pattern, avx2))
        .collect();
    Evaluation {
        infeasible: per.iter().filter(|p| p.1.is_none()).count(),
        underfilled: per.iter().filter(|p| p.2).count(),
        total: per.iter().map(|p| p.0).collect(),
        kept: per.into_iter().map(|p| p.1).collect(),
    }
}

/// One block: (total, kept if feasible, under-filled), with the AVX2 build of the same code
/// where the CPU has it (the mask bytes widen to `f64` in two instructions instead of a dozen;
/// the lanes and their order are the same, so are the sums).
fn score_block(
    scores: &[f32],
    mask: &[u8],
    pattern: Pattern,
    avx2: bool,
) -> (f64, Option<f64>, bool) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: `avx2` is true only when the CPU reports AVX2 (`has_avx2`).
        return unsafe { score_block_avx2(scores, mask, pattern) };
    }
    let _ = avx2;
    score_block_body(scores, mask, pattern)
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn score_block_avx2(
    scores: &[f32],
    mask: &[u8],
    pattern: Pattern,
) -> (f64, Option<f64>, bool) {
    score_block_body(scores, mask, pattern)
}

#[inline(always)]
fn score_block_body(scores: &[f32], mask: &[u8], pattern: Pattern) -> (f64, Option<f64>, bool) {
    let (total, kept) = block_sums(scores, mask);
    let (over, under) = check_block(mask, pattern);
    (total, (!over).then_some(kept), under && !over)
}

/// A block's total score and kept score (every non-zero mask byte keeps), in `f64`.
///
/// One pass in four lanes, no branch on the mask: a solver's 0/1 mask defeats branch
/// prediction (a branch here made this pass 3× slower on an exact 8:16 mask), and one running
/// sum is bound by the add latency. Multiplying by the mask byte leaves the compiler no select
/// to turn back into a branch; a mask byte above 1 sends the block through the plain sum.
#[inline(always)]
fn block_sums(scores: &[f32], mask: &[u8]) -> (f64, f64) {
    const LANES: usize = 4;
    let (mut total, mut kept, mut widest) = ([0f64; LANES], [0f64; LANES], 0u8);
    let split = scores.len() / LANES * LANES;
    for (s, k) in scores[..split]
        .chunks_exact(LANES)
        .zip(mask[..split].chunks_exact(LANES))
    {
        for l in 0..LANES {
            let v = f64::from(s[l]);
            total[l] += v;
            kept[l] += v * f64::from(k[l]);
            widest = widest.max(k[l]);
        }
    }
    let fold = |lanes: [f64; LANES]| (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
    let (mut total, mut kept) = (fold(total), fold(kept));
    for (&s, &k) in scores[split..].iter().zip(&mask[split..]) {
        total += f64::from(s);
        kept += f64::from(s) * f64::from(k);
        widest = widest.max(k);
    }
    if widest > 1 {
        kept = scores
            .iter()
            .zip(mask)
            .map(|(&s, &k)| if k != 0 { f64::from(s) } else { 0.0 })
            .sum();
    }
    (total, kept)
}

impl Evaluation {
    /// Kept score summed over feasible blocks.
    pub fn kept_total(&self) -> f64 {
        self.kept.iter().flatten().sum()
    }
}

/// A mask's distance from the optimum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gap {
    /// Kept score over the feasible blocks.
    pub kept: f64,
    /// The optimum's kept score over the same blocks.
    pub optimum: f64,
    /// `(OPT − kept) / OPT`.
    pub kept_gap: f64,
    /// `(pruned − pruned_OPT) / pruned_OPT` (0 when both prune nothing).
    pub pruned_excess: f64,
}

/// Compare `e` with the optimum's evaluation `opt` over the blocks `e` keeps feasible.
pub fn gap(e: &Evaluation, opt: &Evaluation) -> Gap {
    let (mut kept, mut best, mut total) = (0f64, 0f64, 0f64);
    for ((k, o), t) in e.kept.iter().zip(&opt.kept).zip(&e.total) {
        if let (Some(k), Some(o)) = (k, o) {
            kept += k;
            best += o;
            total += t;
        }
    }
    let ratio = |num: f64, den: f64| {
        if den > 0.0 {
            num / den
        } else if num.abs() > 0.0 {
            f64::INFINITY
        } else {
            0.0
        }
    };
    let (pruned, pruned_opt) = (total - kept, total - best);
    Gap {
        kept,
        optimum: best,
        kept_gap: ratio(best - kept, best),
        pruned_excess: ratio(pruned - pruned_opt, pruned_opt),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_and_total_are_the_plain_sums_and_wide_mask_bytes_count_as_kept() {
        // Two 2:4 blocks: the first feasible (two per row and column), the second over-full.
        let pattern = Pattern::new(2, 4).unwrap();
        let scores: Vec<f32> = (0..32).map(|i| i as f32 * 0.5).collect();
        let feasible = [1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1];
        let mut keep: Vec<u8> = feasible.to_vec();
        keep.extend([1u8; 16]);
        let e = evaluate(&scores, &keep, pattern);
        let want: f64 = (0..16)
            .filter(|&i| feasible[i] == 1)
            .map(|i| i as f64 * 0.5)
            .sum();
        assert_eq!(e.kept, vec![Some(want), None]);
        assert_eq!(e.total, vec![60.0, 188.0]);
        assert_eq!((e.infeasible, e.underfilled), (1, 0));
        // Any non-zero byte keeps: 255 in place of 1 scores the same.
        let wide: Vec<u8> = keep.iter().map(|&k| k * 255).collect();
        assert_eq!(evaluate(&scores, &wide, pattern), e);
    }

    #[test]
    fn lane_sums_match_plain_sums_for_every_block_length() {
        // Lengths 1..=40 cover the remainder after the four lanes; values are not exact in
        // binary, so lane order shows as rounding only (1e-12 relative).
        for len in 1..=40usize {
            let scores: Vec<f32> = (0..len).map(|i| ((i * 7919) % 101) as f32 / 13.0).collect();
            let mask: Vec<u8> = (0..len).map(|i| ((i * 31) % 3 == 0) as u8).collect();
            let (total, kept) = block_sums(&scores, &mask);
            let plain: f64 = scores.iter().map(|&s| f64::from(s)).sum();
            let plain_kept: f64 = scores
                .iter()
                .zip(&mask)
                .filter(|(_, k)| **k != 0)
                .map(|(&s, _)| f64::from(s))
                .sum();
            assert!((total - plain).abs() <= 1e-12 * plain.max(1.0), "len {len}");
            assert!(
                (kept - plain_kept).abs() <= 1e-12 * plain.max(1.0),
                "len {len}"
            );
        }
    }
}
