//! `greedy`: keep the N largest magnitudes of every group of M, no rescaling.
//!
//! Problem: an N:M-sparse ĝ close to g. Guarantee: minimum MSE among N:M masks of g — but
//! biased: `E[ĝ] − g = −(dropped elements)`, exactly, since it is deterministic (zero variance).
//! Cost: O(M log M) per group. Source: Chmiel et al., ICLR 2023 (the "MSE" baseline).

use super::Estimator;
use crate::error::Result;
use crate::mask::Pattern;
use candle_core::{DType, Tensor};

/// Top-N by magnitude.
pub struct Greedy;

impl Estimator for Greedy {
    fn name(&self) -> &'static str {
        "greedy"
    }
    fn summary(&self) -> &'static str {
        "keep the N largest magnitudes per group (minimum MSE, biased)"
    }
    fn unbiased(&self) -> bool {
        false
    }
    fn uniforms_per_group(&self) -> usize {
        0
    }
    fn supports(&self, _pattern: Pattern) -> Result<()> {
        Ok(())
    }
    fn prune_groups(&self, values: &mut [f32], pattern: Pattern, _uniforms: &[f32]) {
        let (m, n) = (pattern.m, pattern.n);
        let mut idx: Vec<usize> = (0..m).collect();
        for group in values.chunks_mut(m) {
            idx.iter_mut().enumerate().for_each(|(i, v)| *v = i);
            idx.sort_by(|&x, &y| group[y].abs().total_cmp(&group[x].abs()).then(x.cmp(&y)));
            for &i in &idx[n..] {
                group[i] = 0.0;
            }
        }
    }
    fn prune_tensor(
        &self,
        groups: &Tensor,
        pattern: Pattern,
        _u: &Tensor,
    ) -> candle_core::Result<Tensor> {
        // Rank of each element by descending magnitude; keep ranks < N.
        let order = groups.abs()?.arg_sort_last_dim(false)?;
        let rank = order.arg_sort_last_dim(true)?;
        let keep = rank.lt(pattern.n as u32)?.to_dtype(groups.dtype())?;
        let _ = DType::F32;
        groups * keep
    }
}
