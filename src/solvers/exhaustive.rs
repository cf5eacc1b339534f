//! `exhaustive`: for M = 4, score every transposable 4×4 pattern at once and take the best.
//!
//! Problem: the optimal transposable N:4 mask of each 4×4 block.
//! Method: enumerate the 4×4 0/1 matrices with all row and column sums N (90 for N = 2, 24 for
//! N = 1 or 3) once; one matrix product `[B, 16] × [16, P]` scores every pattern on every block,
//! and an argmax picks the best (ties: first pattern in enumeration order).
//! Guarantee: exact. Only M = 4; other M is an "unsupported" error.
//! Cost: one `B × 16 × P` GEMM in `f64`, on any candle device. The products are in `f64` so a
//! pattern's score neither overflows (f32 scores near 3e38) nor loses the small entries of a
//! block beside large ones (values spanning 1e6 to 1).
//! Source: Hubara et al., NeurIPS 2021 (mask enumeration for 2:4).

use super::{Guarantee, SolveContext, Solver};
use crate::error::{Error, Result};
use crate::mask::Pattern;
use candle_core::{DType, Tensor};

/// Exhaustive search over all transposable 4×4 patterns.
#[derive(Debug, Default, Clone, Copy)]
pub struct Exhaustive;

/// Every 4×4 0/1 pattern (row-major, as f32) with all row and column sums `n`.
pub fn patterns(n: usize) -> Vec<[f32; 16]> {
    (0u32..1 << 16)
        .filter(|bits| {
            (0..4).all(|r| ((bits >> (4 * r)) & 0xf).count_ones() as usize == n)
                && (0..4).all(|c| (0..4).filter(|r| bits >> (4 * r + c) & 1 == 1).count() == n)
        })
        .map(|bits| std::array::from_fn(|i| ((bits >> i) & 1) as f32))
        .collect()
}

impl Solver for Exhaustive {
    fn name(&self) -> &'static str {
        "exhaustive"
    }

    fn summary(&self) -> &'static str {
        "M = 4 only: score all transposable 4x4 patterns in one matrix product, take the best"
    }

    fn guarantee(&self) -> Guarantee {
        Guarantee::Exact
    }

    fn devices(&self) -> &'static str {
        "cpu, cuda"
    }

    fn solve(&self, blocks: &[f32], pattern: Pattern, ctx: &SolveContext) -> Result<Vec<u8>> {
        if pattern.m != 4 {
            return Err(Error::Unsupported {
                what: format!("solver exhaustive for pattern {pattern}"),
                reason: "it enumerates 4x4 patterns only (M = 4); use exact for other M".into(),
            });
        }
        super::check_blocks(blocks, pattern)?;
        let b = blocks.len() / 16;
        if b == 0 {
            return Ok(Vec::new());
        }
        let pats = patterns(pattern.n);
        let flat: Vec<f32> = pats.iter().flatten().copied().collect();
        let ctx_err = Error::tensor("exhaustive pattern scoring");
        let best: Vec<u32> = (|| {
            let dev = &ctx.device;
            let scores = Tensor::from_slice(blocks, (b, 16), dev)?.to_dtype(DType::F64)?;
            let p = Tensor::from_slice(&flat, (pats.len(), 16), dev)?.to_dtype(DType::F64)?;
            scores.matmul(&p.t()?)?.argmax(1)?.to_vec1::<u32>()
        })()
        .map_err(ctx_err)?;
        let mut keep = vec![0u8; blocks.len()];
        for (out, &k) in keep.chunks_mut(16).zip(&best) {
            for (o, &v) in out.iter_mut().zip(&pats[k as usize]) {
                *o = v as u8;
            }
        }
        Ok(keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The best pattern by brute force, summed in f64.
    fn best_by_brute_force(block: &[f32], n: usize) -> f64 {
        patterns(n)
            .iter()
            .map(|p| {
                block
                    .iter()
                    .zip(p)
                    .map(|(&s, &k)| f64::from(s) * f64::from(k))
                    .sum()
            })
            .fold(f64::MIN, f64::max)
    }

    fn kept(block: &[f32], keep: &[u8]) -> f64 {
        block
            .iter()
            .zip(keep)
            .map(|(&s, &k)| f64::from(s) * f64::from(k))
            .sum()
    }

    /// Issue 21 R7: 3e38 scores overflowed the f32 product to inf (gap 0.5), and values spanning
    /// 1e6 to 1 lost the small entries (gap 4.8e-9); the optimum must be found exactly.
    #[test]
    fn huge_and_widely_spread_scores_still_give_the_optimum() -> Result<()> {
        let pattern = Pattern::new(2, 4)?;
        let ctx = SolveContext::default();
        let huge: Vec<f32> = (0..16).map(|i| 3.0e38 - (i as f32) * 1.0e36).collect();
        let spread: Vec<f32> = (0..16)
            .map(|i| {
                if i % 5 == 0 {
                    1.0e6 + i as f32
                } else {
                    1.0 + i as f32 * 0.1
                }
            })
            .collect();
        for block in [huge, spread] {
            let keep = Exhaustive.solve(&block, pattern, &ctx)?;
            assert_eq!(
                kept(&block, &keep),
                best_by_brute_force(&block, 2),
                "{block:?}"
            );
        }
        Ok(())
    }
}
