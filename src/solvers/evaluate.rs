//! Checking and scoring a solver's masks: infeasible blocks are counted, and they keep nothing.
//!
//! `kept_gap = (OPT − kept) / OPT` on the kept score and `pruned_excess = (pruned − pruned_OPT) /
//! pruned_OPT` on the pruned score, over every block. A block whose mask breaks the constraint
//! (a row or column keeping more than N) is not a usable mask, so it is counted as keeping
//! nothing: its whole score is pruned. A solver whose masks are all infeasible therefore has
//! `kept_gap` 1, never the 0 of an optimal solver.
//!
//! Precision: the numerator `OPT − kept` equals `pruned − pruned_OPT` and is summed block by
//! block from each block's *pruned* sum, computed directly (not as total − kept), so one huge
//! kept value (1e20 among N(0,1) scores) cannot swamp the differences of the other blocks.
//! [`Gap::resolution`] bounds the rounding error of `kept_gap`; a gap below it is not resolved.

use crate::mask::Pattern;
use crate::mask::tile::check_block;

/// Per-block scores of a mask batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Kept score of each block; `None` where the block is infeasible.
    pub kept: Vec<Option<f64>>,
    /// Total score of each block.
    pub total: Vec<f64>,
    /// Pruned score of each block, summed directly over the pruned entries (the whole block
    /// where it is infeasible).
    pub pruned: Vec<f64>,
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
    // Per block, in parallel (order kept): (total, kept if feasible, under-filled, pruned).
    let per: Vec<(f64, Option<f64>, bool, f64)> = blocks
        .par_chunks(mm.max(1))
        .zip(keep.par_chunks(mm.max(1)))
        .with_min_len(256)
        .map(|(scores, mask)| score_block(scores, mask, pattern, avx2))
        .collect();
    Evaluation {
        infeasible: per.iter().filter(|p| p.1.is_none()).count(),
        underfilled: per.iter().filter(|p| p.2).count(),
        total: per.iter().map(|p| p.0).collect(),
        pruned: per.iter().map(|p| p.3).collect(),
        kept: per.into_iter().map(|p| p.1).collect(),
    }
}

/// One block: (total, kept if feasible, under-filled, pruned), with the AVX2 build of the same code
/// where the CPU has it (the mask bytes widen to `f64` in two instructions instead of a dozen;
/// the lanes and their order are the same, so are the sums).
fn score_block(
    scores: &[f32],
    mask: &[u8],
    pattern: Pattern,
    avx2: bool,
) -> (f64, Option<f64>, bool, f64) {
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
) -> (f64, Option<f64>, bool, f64) {
    score_block_body(scores, mask, pattern)
}

#[inline(always)]
fn score_block_body(
    scores: &[f32],
    mask: &[u8],
    pattern: Pattern,
) -> (f64, Option<f64>, bool, f64) {
    let (total, kept, pruned) = block_sums(scores, mask);
    let (over, under) = check_block(mask, pattern);
    let pruned = if over { total } else { pruned };
    (total, (!over).then_some(kept), under && !over, pruned)
}

/// A block's total, kept and pruned scores (every non-zero mask byte keeps), in `f64`.
///
/// One pass in four lanes, no branch on the mask: a solver's 0/1 mask defeats branch
/// prediction (a branch here made this pass 3× slower on an exact 8:16 mask), and one running
/// sum is bound by the add latency. Multiplying by the mask byte (clamped to 1, so any non-zero
/// byte keeps) leaves the compiler no select to turn back into a branch.
#[inline(always)]
fn block_sums(scores: &[f32], mask: &[u8]) -> (f64, f64, f64) {
    const LANES: usize = 4;
    let (mut total, mut kept, mut pruned) = ([0f64; LANES], [0f64; LANES], [0f64; LANES]);
    let split = scores.len() / LANES * LANES;
    for (s, k) in scores[..split]
        .chunks_exact(LANES)
        .zip(mask[..split].chunks_exact(LANES))
    {
        for l in 0..LANES {
            let v = f64::from(s[l]);
            let k = f64::from(k[l].min(1));
            total[l] += v;
            kept[l] += v * k;
            pruned[l] += v * (1.0 - k);
        }
    }
    let fold = |lanes: [f64; LANES]| (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
    let (mut total, mut kept, mut pruned) = (fold(total), fold(kept), fold(pruned));
    for (&s, &k) in scores[split..].iter().zip(&mask[split..]) {
        let k = f64::from(k.min(1));
        total += f64::from(s);
        kept += f64::from(s) * k;
        pruned += f64::from(s) * (1.0 - k);
    }
    (total, kept, pruned)
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
    /// Kept score (an infeasible block keeps nothing).
    pub kept: f64,
    /// The optimum's kept score over the same blocks.
    pub optimum: f64,
    /// `(OPT − kept) / OPT`.
    pub kept_gap: f64,
    /// `(pruned − pruned_OPT) / pruned_OPT` (0 when both prune nothing).
    pub pruned_excess: f64,
    /// Bound on the rounding error of `kept_gap`: a `kept_gap` below it is not resolved.
    pub resolution: f64,
}

/// Compare `e` with the optimum's evaluation `opt` over every block; a block infeasible in `e`
/// keeps nothing (see the module doc). Blocks where `opt` itself is infeasible are left out.
pub fn gap(e: &Evaluation, opt: &Evaluation) -> Gap {
    let (mut kept, mut best, mut excess, mut pruned_opt, mut error) =
        (0f64, 0f64, 0f64, 0f64, 0f64);
    let per = e
        .kept
        .iter()
        .zip(&e.pruned)
        .zip(opt.kept.iter().zip(&opt.pruned));
    for ((k, p), (o, po)) in per {
        let Some(o) = o else { continue };
        kept += k.unwrap_or(0.0);
        best += o;
        excess += p - po;
        pruned_opt += po;
        // Each pruned sum has at most M² ≤ 1024 terms: relative rounding ≤ 1024·2⁻⁵³ each.
        error += 1024.0 * f64::EPSILON / 2.0 * (p.abs() + po.abs());
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
    Gap {
        kept,
        optimum: best,
        kept_gap: ratio(excess, best),
        pruned_excess: ratio(excess, pruned_opt),
        resolution: ratio(error, best),
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
        assert_eq!(e.pruned, vec![60.0 - want, 188.0]);
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
            let (total, kept, pruned) = block_sums(&scores, &mask);
            assert!(
                (total - kept - pruned).abs() <= 1e-12 * total.max(1.0),
                "len {len}"
            );
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

    /// Issue 21 R5: masks infeasible in every block once scored `kept 0`, `optimum 0` and
    /// `kept_gap 0`, reading like the exact solver's; they keep nothing, so the gap is 1.
    #[test]
    fn all_infeasible_masks_keep_nothing_and_read_as_the_worst_gap() {
        let pattern = Pattern::new(2, 4).unwrap();
        let scores: Vec<f32> = (0..32).map(|i| 1.0 + i as f32).collect();
        let opt_mask = [1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1];
        let opt_keep: Vec<u8> = opt_mask.iter().chain(&opt_mask).copied().collect();
        let opt = evaluate(&scores, &opt_keep, pattern);
        let bad = evaluate(&scores, &[1u8; 32], pattern);
        assert_eq!(bad.infeasible, 2);
        let g = gap(&bad, &opt);
        assert_eq!(g.kept, 0.0);
        assert_eq!(g.optimum, opt.kept_total());
        assert_eq!(g.kept_gap, 1.0);
        assert!(g.pruned_excess > 0.0);
        assert_eq!(gap(&opt, &opt).kept_gap, 0.0);
    }

    /// Issue 21 R6: one 1e20 among N(0,1)-sized scores swamped the global sums, and an
    /// under-filling mask read `kept_gap 0`, `pruned_excess 0`. The pruned sums resolve it.
    #[test]
    fn one_huge_score_does_not_hide_the_gap_of_the_other_blocks() {
        let pattern = Pattern::new(2, 4).unwrap();
        let mut scores: Vec<f32> = (0..16 * 64)
            .map(|i| 0.5 + ((i * 37) % 11) as f32 / 10.0)
            .collect();
        scores[0] = 1e20;
        let opt_mask = [1u8, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1];
        let full: Vec<u8> = opt_mask.iter().cycle().take(16 * 64).copied().collect();
        // Drop one kept entry in every block (under-filled, still feasible), keep the 1e20.
        let mut under = full.clone();
        for b in 0..64 {
            under[b * 16 + 15] = 0;
        }
        let (e, opt) = (
            evaluate(&scores, &under, pattern),
            evaluate(&scores, &full, pattern),
        );
        assert_eq!(e.underfilled, 64);
        let g = gap(&e, &opt);
        let lost: f64 = (0..64).map(|b| f64::from(scores[b * 16 + 15])).sum();
        assert!(g.kept_gap > 0.0 && g.kept_gap > g.resolution, "{g:?}");
        assert!(
            (g.kept_gap - lost / g.optimum).abs() <= 1e-6 * g.kept_gap,
            "{g:?}"
        );
        let pruned_opt: f64 = opt.pruned.iter().sum();
        assert!(
            (g.pruned_excess - lost / pruned_opt).abs() <= 1e-12,
            "{g:?}"
        );
    }
}
