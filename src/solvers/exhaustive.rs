//! `exhaustive`: for M = 4, score every transposable 4×4 pattern at once and take the best.
//!
//! Problem: the optimal transposable N:4 mask of each 4×4 block.
//! Method: enumerate the 4×4 0/1 matrices with all row and column sums N (90 for N = 2, 24 for
//! N = 1 or 3) once; one matrix product `[B, 16] × [16, P]` scores every pattern on every block,
//! and an argmax picks the best (ties: first pattern in enumeration order).
//! Guarantee: exact. Only M = 4; other M is an "unsupported" error.
//! Cost: one `B × 16 × P` GEMM, on any candle device.
//! Source: Hubara et al., NeurIPS 2021 (mask enumeration for 2:4).

use super::{Guarantee, SolveContext, Solver};
use crate::error::{Error, Result};
use crate::mask::Pattern;
use candle_core::Tensor;

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
            let scores = Tensor::from_slice(blocks, (b, 16), dev)?;
            let p = Tensor::from_slice(&flat, (pats.len(), 16), dev)?;
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
