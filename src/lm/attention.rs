//! Causal grouped-query attention on the CPU in one fused pass, for the decoder of [`super::model`].
//!
//! Problem: `softmax(q·kᵀ + causal mask)·v` for every window and query head, where query head
//! `h` reads key/value head `h / (heads / kv_heads)`, from projections laid out as the linear
//! layers write them (`[B·T, heads·d]`, each head a column range), into the same layout.
//!
//! Guarantee: the value of the composed tensor path ([`super::model`]'s generic attention:
//! repeated key/value heads, the full `T×T` score matrix, the causal softmax) up to the order
//! of floating-point sums (a unit test holds them to 1e-5). The softmax is the same pass: the
//! row's maximum over its visible columns, `exp(s − max)`, the sum, one multiply
//! ([`crate::vmath::softmax_prefix`], vectorised).
//!
//! Cost: the queries of one head go in blocks of [`ROWS`]; a block reads only the keys up to
//! its last row (so about half of the `T²` scores and products are skipped for long windows),
//! the key/value heads are read in place rather than repeated, the scores of a block live in
//! a `ROWS×T` scratch buffer (128 KB at T = 512, in L2) instead of a `heads×T×T` tensor, and
//! the output is written straight into `[B·T, heads·d]` (no transposes). Work:
//! `≈ 2·T²·d` FLOPs per window and head (half of the full product's `4·T²·d`); blocks run in
//! parallel over rayon's threads, each calling gemm single-threaded.

use crate::train::kernels::f32_slice;
use candle_core::{CpuStorage, CustomOp3, Layout, Shape};
use rayon::prelude::*;

/// Query rows per block: one block's scores are `ROWS × T` floats.
pub const ROWS: usize = 64;

/// The shape of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heads {
    /// Windows in the batch.
    pub windows: usize,
    /// Tokens per window.
    pub tokens: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (dividing `heads`).
    pub kv_heads: usize,
    /// Width of one head.
    pub dim: usize,
}

/// The fused attention as a candle op on `q: [B·T, heads·d]` (rotated and scaled),
/// `k, v: [B·T, kv_heads·d]`, all contiguous f32 on the CPU.
pub struct CausalAttention(pub Heads);

impl CustomOp3 for CausalAttention {
    fn name(&self) -> &'static str {
        "causal-gqa-attention"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        lq: &Layout,
        k: &CpuStorage,
        lk: &Layout,
        v: &CpuStorage,
        lv: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = "causal attention";
        let (q, k, v) = (
            f32_slice(q, lq, op)?,
            f32_slice(k, lk, op)?,
            f32_slice(v, lv, op)?,
        );
        let out = attend(q, k, v, self.0)?;
        let h = self.0;
        Ok((
            CpuStorage::F32(out),
            Shape::from((h.windows * h.tokens, h.heads * h.dim)),
        ))
    }
}

/// `softmax(q·kᵀ + causal)·v` per window and head (see the module doc); errors when the
/// slices' lengths do not match `h`.
pub fn attend(q: &[f32], k: &[f32], v: &[f32], h: Heads) -> candle_core::Result<Vec<f32>> {
    let Heads {
        windows: b,
        tokens: t,
        heads: nh,
        kv_heads: nkv,
        dim: d,
    } = h;
    if nkv == 0 || nh % nkv != 0 {
        candle_core::bail!("attention: {nh} query heads over {nkv} key/value heads");
    }
    let (qs, ks) = (nh * d, nkv * d);
    if q.len() != b * t * qs || k.len() != b * t * ks || v.len() != b * t * ks {
        candle_core::bail!(
            "attention: q, k, v hold {}, {}, {} values, expected {}, {}, {}",
            q.len(),
            k.len(),
            v.len(),
            b * t * qs,
            b * t * ks,
            b * t * ks
        );
    }
    let mut out = vec![0f32; b * t * qs];
    if out.is_empty() || d == 0 {
        return Ok(out);
    }
    let group = nh / nkv;
    let blocks = t.div_ceil(ROWS);
    let dst = crate::par::SharedMut::new(&mut out);
    (0..b * nh * blocks).into_par_iter().for_each_init(
        || vec![0f32; ROWS * t],
        |scores, task| {
            let (w, rest) = (task / (nh * blocks), task % (nh * blocks));
            let (head, block) = (rest / blocks, rest % blocks);
            let (i0, i1) = (block * ROWS, ((block + 1) * ROWS).min(t));
            let (rows, cols) = (i1 - i0, i1);
            let kv = head / group;
            let q_at = (w * t + i0) * qs + head * d;
            let kv_at = w * t * ks + kv * d;
            let s = &mut scores[..rows * cols];
            // the operands were checked above to hold b·t rows of their widths; this
            // block reads q rows i0..i1 and k/v rows 0..i1 of window w, columns of one head,
            // all inside them, and writes `s`, rows·cols values it owns.
            // SAFETY: by the bounds and ownership just stated.
            unsafe {
                gemm::gemm(
                    rows,
                    cols,
                    d,
                    s.as_mut_ptr(),
                    1,
                    cols as isize,
                    false,
                    q.as_ptr().add(q_at),
                    1,
                    qs as isize,
                    k.as_ptr().add(kv_at),
                    ks as isize,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            for (r, row) in s.chunks_mut(cols).enumerate() {
                crate::vmath::softmax_prefix(row, i0 + r + 1);
            }
            // `s` is rows×cols; v rows 0..i1 of window w lie inside `v` (checked above);
            // the output rows i0..i1 of window w, columns head·d..(head+1)·d, lie inside `out`
            // (b·t rows of qs) and are written by this task only: tasks differ in window, head
            // or row block.
            // SAFETY: by the bounds and ownership just stated.
            unsafe {
                gemm::gemm(
                    rows,
                    d,
                    cols,
                    dst.get().add(q_at),
                    1,
                    qs as isize,
                    false,
                    s.as_ptr(),
                    1,
                    cols as isize,
                    v.as_ptr().add(kv_at),
                    1,
                    ks as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        },
    );
    Ok(out)
}
