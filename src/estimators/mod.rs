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
pub mod measure;
pub mod mvue;
pub mod mvue_1to2;

use crate::error::{Error, Result};
use crate::mask::Pattern;
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};

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
    /// CPU path along dim 0: prune one strip of M rows of `cols` values (`inp` → `out`, both
    /// row-major `[M, cols]`), group c being column c with uniforms `uniforms[c·u..]`. The
    /// default gathers columns into contiguous groups a tile at a time ([`prune_strip_tiled`]).
    fn prune_strip(
        &self,
        inp: &[f32],
        out: &mut [f32],
        cols: usize,
        pattern: Pattern,
        uniforms: &[f32],
    ) {
        prune_strip_tiled(self, inp, out, cols, pattern, uniforms)
    }
    /// Tensor path: `groups: [G, M]` → pruned `[G, M]`, with uniforms `[G, k]` on the same device.
    fn prune_tensor(
        &self,
        groups: &Tensor,
        pattern: Pattern,
        uniforms: &Tensor,
    ) -> candle_core::Result<Tensor>;
}

/// Every estimator, by name.
pub static REGISTRY: &[&dyn Estimator] = &[
    &greedy::Greedy,
    &mvue_1to2::Mvue1to2,
    &mvue::Mvue,
    &approx_mvue_2to4::ApproxMvue2to4,
];

/// The estimator called `name`, or an error listing the known names.
pub fn by_name(name: &str) -> Result<&'static dyn Estimator> {
    REGISTRY
        .iter()
        .copied()
        .find(|e| e.name() == name)
        .ok_or_else(|| {
            let known: Vec<_> = REGISTRY.iter().map(|e| e.name()).collect();
            Error::invalid(
                "estimator",
                name,
                format!("known estimators: {}", known.join(", ")),
            )
        })
}

/// Uniforms for `groups` groups, `k` per group, from a seeded RNG (chunked so that it is
/// parallel and independent of the thread count).
pub fn uniforms(groups: usize, k: usize, seed: u64) -> Vec<f32> {
    const CHUNK: usize = 1 << 14;
    let mut u = vec![0f32; groups * k];
    crate::par::chunks_mut(&mut u, CHUNK * k.max(1), |c, out| {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(crate::seed::derive_nth(
            seed,
            "uniforms chunk",
            c as u64,
        ));
        out.iter_mut().for_each(|v| *v = rng.random::<f32>());
    });
    u
}

/// Prune a 2-D tensor along `dim` (0: groups run down columns; 1: along rows) with one draw.
pub fn sample(
    est: &dyn Estimator,
    g: &Tensor,
    pattern: Pattern,
    dim: usize,
    seed: u64,
) -> Result<Tensor> {
    est.supports(pattern)?;
    let (rows, cols) = g
        .dims2()
        .map_err(Error::tensor("estimator input must be 2-D"))?;
    if rows == 0 || cols == 0 {
        return Err(Error::Shape {
            rows,
            cols,
            reason: "the gradient is empty; there is nothing to prune".into(),
        });
    }
    let along = if dim == 0 { rows } else { cols };
    if dim > 1 || along % pattern.m != 0 {
        return Err(Error::Shape {
            rows,
            cols,
            reason: format!(
                "dim {dim} of length {along} is not a multiple of M = {}",
                pattern.m
            ),
        });
    }
    let ctx = Error::tensor(format!("{} on {rows}x{cols}", est.name()));
    let n_groups = rows * cols / pattern.m;
    let k = est.uniforms_per_group();
    // Group order (and so uniform order), row-major: for dim 1 the groups of each row of g; for
    // dim 0 strip by strip (M rows of g), column by column within a strip.
    let u = uniforms(n_groups, k, seed);
    (|| {
        if let Device::Cpu = g.device() {
            let g = g.to_dtype(candle_core::DType::F32)?.contiguous()?;
            return g.apply_op1_no_bwd(&CpuPrune {
                est,
                pattern,
                dim,
                uniforms: &u,
            });
        }
        tensor_path(est, g, pattern, dim, u)
    })()
    .map_err(ctx)
}

/// The device path of [`sample`] (candle ops only; what CUDA runs), with the same uniforms.
pub fn tensor_path(
    est: &dyn Estimator,
    g: &Tensor,
    pattern: Pattern,
    dim: usize,
    u: Vec<f32>,
) -> candle_core::Result<Tensor> {
    let (rows, cols) = g.dims2()?;
    let m = pattern.m;
    let n_groups = rows * cols / m;
    let grouped = if dim == 0 {
        // [rows, cols] → [strips, M, cols] → [strips, cols, M]
        g.reshape((rows / m, m, cols))?
            .transpose(1, 2)?
            .contiguous()?
    } else {
        g.contiguous()?
    };
    let groups = grouped.reshape((n_groups, m))?;
    let ut = Tensor::from_vec(u, (n_groups, est.uniforms_per_group()), g.device())?;
    let out = est.prune_tensor(&groups, pattern, &ut)?;
    if dim == 0 {
        out.reshape((rows / m, cols, m))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((rows, cols))
    } else {
        out.reshape((rows, cols))
    }
}

/// The CPU path of [`sample`] as a candle op: one pass that reads `g` and writes the pruned
/// copy, in parallel ([`crate::par::chunks_mut`]) over strips of M rows (dim 0) or runs of groups (dim 1). For dim 0, columns
/// of a strip are gathered into groups a tile at a time (small enough to stay in cache), pruned
/// and scattered into the output; group `(strip b, column c)` uses the uniforms of group
/// `b·cols + c`.
struct CpuPrune<'a> {
    est: &'a dyn Estimator,
    pattern: Pattern,
    dim: usize,
    uniforms: &'a [f32],
}

impl candle_core::CustomOp1 for CpuPrune<'_> {
    fn name(&self) -> &'static str {
        "nm-estimator"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let candle_core::CpuStorage::F32(all) = storage else {
            candle_core::bail!("nm-estimator: expected f32");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("nm-estimator: expected a contiguous tensor");
        };
        let inp = &all[start..end];
        let (rows, cols) = layout.shape().dims2()?;
        let (m, k) = (self.pattern.m, self.est.uniforms_per_group());
        let mut out = vec![0f32; inp.len()];
        if self.dim == 1 {
            const GROUPS: usize = 1 << 12;
            let len = GROUPS * m;
            crate::par::chunks_mut(&mut out, len, |c, o| {
                o.copy_from_slice(&inp[c * len..c * len + o.len()]);
                let from = c * GROUPS * k;
                let u = &self.uniforms[from..from + o.len() / m * k];
                self.est.prune_groups(o, self.pattern, u);
            });
        } else {
            debug_assert_eq!(rows % m, 0);
            let len = m * cols;
            crate::par::chunks_mut(&mut out, len, |b, ostrip| {
                let istrip = &inp[b * len..(b + 1) * len];
                let u = &self.uniforms[b * cols * k..(b + 1) * cols * k];
                self.est.prune_strip(istrip, ostrip, cols, self.pattern, u);
            });
        }
        Ok((candle_core::CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// [`Estimator::prune_strip`] for any estimator: columns of the strip are gathered into
/// contiguous groups a 256-column tile at a time (in cache), pruned by
/// [`Estimator::prune_groups`], and scattered back.
pub fn prune_strip_tiled<E: Estimator + ?Sized>(
    est: &E,
    inp: &[f32],
    out: &mut [f32],
    cols: usize,
    pattern: Pattern,
    uniforms: &[f32],
) {
    const TILE: usize = 256;
    let (m, k) = (pattern.m, est.uniforms_per_group());
    let mut buf = vec![0f32; TILE * m];
    for c0 in (0..cols).step_by(TILE) {
        let w = TILE.min(cols - c0);
        for i in 0..m {
            let row = &inp[i * cols + c0..i * cols + c0 + w];
            for (j, &v) in row.iter().enumerate() {
                buf[j * m + i] = v;
            }
        }
        est.prune_groups(&mut buf[..w * m], pattern, &uniforms[c0 * k..(c0 + w) * k]);
        for i in 0..m {
            let row = &mut out[i * cols + c0..i * cols + c0 + w];
            for (j, v) in row.iter_mut().enumerate() {
                *v = buf[j * m + i];
            }
        }
    }
}

#[cfg(test)]
mod tests;
