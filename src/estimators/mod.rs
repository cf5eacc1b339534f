//! Neural-gradient N:M estimators, behind one trait and chosen by name.
//!
//! An estimator prunes a gradient tensor `g` to N:M along one dimension — by default the
//! reduction dimension of the update GEMM `dW = gᵀ x`, i.e. the batch/token axis (dim 0) of
//! `g: [batch, out]` — keeping at most N non-zeros in every group of M. Random choices come from
//! uniforms drawn by a seeded ChaCha RNG (one or two per group, in group order), so a seed gives
//! the same draw on every device and thread count.
//!
//! Each estimator has a CPU path (plain loops over contiguous groups, parallel over chunks) and
//! a tensor path (candle ops only, for CUDA); both consume the same uniforms and give the same
//! result.

pub mod approx_mvue_2to4;
pub mod greedy;
pub mod mvue;
pub mod mvue_1to2;

use crate::error::{Error, Result};
use crate::mask::Pattern;
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

/// A neural-gradient N:M estimator.
pub trait Estimator: Sync + Send {
    /// Registry name.
    fn name(&self) -> &'static str;
    /// One line saying what it does.
    fn summary(&self) -> &'static str;
    /// Whether `E[ĝ] = g`.
    fn unbiased(&self) -> bool;
    /// Uniforms consumed per group.
    fn uniforms_per_group(&self) -> usize;
    /// Patterns it supports (an error says why not).
    fn supports(&self, pattern: Pattern) -> Result<()>;
    /// CPU path: prune contiguous groups of `pattern.m` in place, with `u` uniforms per group.
    fn prune_groups(&self, values: &mut [f32], pattern: Pattern, uniforms: &[f32]);
    /// Tensor path: `groups: [G, M]` → pruned `[G, M]`, with uniforms `[G, k]` on the same device.
    fn prune_tensor(&self, groups: &Tensor, pattern: Pattern, uniforms: &Tensor) -> candle_core::Result<Tensor>;
}

/// Every estimator, by name.
pub static REGISTRY: &[&dyn Estimator] =
    &[&greedy::Greedy, &mvue_1to2::Mvue1to2, &mvue::Mvue, &approx_mvue_2to4::ApproxMvue2to4];

/// The estimator called `name`, or an error listing the known names.
pub fn by_name(name: &str) -> Result<&'static dyn Estimator> {
    REGISTRY.iter().copied().find(|e| e.name() == name).ok_or_else(|| {
        let known: Vec<_> = REGISTRY.iter().map(|e| e.name()).collect();
        Error::invalid("estimator", name, format!("known estimators: {}", known.join(", ")))
    })
}

/// Uniforms for `groups` groups, `k` per group, from a seeded RNG (chunked so that it is
/// parallel and independent of the thread count).
pub fn uniforms(groups: usize, k: usize, seed: u64) -> Vec<f32> {
    const CHUNK: usize = 1 << 14;
    let mut u = vec![0f32; groups * k];
    u.par_chunks_mut(CHUNK * k.max(1)).enumerate().for_each(|(c, out)| {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ (c as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        out.iter_mut().for_each(|v| *v = rng.random::<f32>());
    });
    u
}

/// Prune a 2-D tensor along `dim` (0: groups run down columns; 1: along rows) with one draw.
pub fn sample(est: &dyn Estimator, g: &Tensor, pattern: Pattern, dim: usize, seed: u64) -> Result<Tensor> {
    est.supports(pattern)?;
    let (rows, cols) = g.dims2().map_err(Error::tensor("estimator input must be 2-D"))?;
    let along = if dim == 0 { rows } else { cols };
    if dim > 1 || along % pattern.m != 0 {
        return Err(Error::Shape { rows, cols, reason: format!("dim {dim} of length {along} is not a multiple of M = {}", pattern.m) });
    }
    let ctx = Error::tensor(format!("{} on {rows}x{cols}", est.name()));
    (|| {
        let grouped = if dim == 0 { g.t()?.contiguous()? } else { g.contiguous()? };
        let n_groups = rows * cols / pattern.m;
        let k = est.uniforms_per_group();
        let u = uniforms(n_groups, k, seed);
        let out = match g.device() {
            Device::Cpu => {
                let mut values = grouped.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
                prune_parallel(est, &mut values, pattern, &u);
                Tensor::from_vec(values, grouped.dims(), &Device::Cpu)?
            }
            device => {
                let groups = grouped.reshape((n_groups, pattern.m))?;
                let ut = Tensor::from_vec(u, (n_groups, k), device)?;
                est.prune_tensor(&groups, pattern, &ut)?.reshape(grouped.dims())?
            }
        };
        if dim == 0 {
            out.t()?.contiguous()
        } else {
            Ok(out)
        }
    })()
    .map_err(ctx)
}

/// The CPU path over many groups, in parallel chunks.
pub fn prune_parallel(est: &dyn Estimator, values: &mut [f32], pattern: Pattern, uniforms: &[f32]) {
    let k = est.uniforms_per_group();
    let groups_per_chunk = 1 << 12;
    values.par_chunks_mut(groups_per_chunk * pattern.m).enumerate().for_each(|(c, v)| {
        let start = (c * groups_per_chunk * k).min(uniforms.len());
        let end = (start + groups_per_chunk * k).min(uniforms.len());
        est.prune_groups(v, pattern, &uniforms[start..end])
    });
}
