//! CPU kernels of the training layers, as candle custom ops with their own backward.
//!
//! Problem: a training step built from candle's generic tensor ops spends most of its time
//! outside the GEMMs — im2col as 25 strided narrows and a stack (and a zero-padded copy of the
//! input per narrow in the backward), NHWC→NCHW copies, ReLU and max-pool as chains of
//! elementwise ops, the bias as a broadcast add, and a fresh allocation for each of them. These
//! ops do the same maths in one pass each:
//!
//! - [`im2col`]: `[b, c, h, w]` → rows `[b·ho·wo, c·k·k]` (row `(n, oh, ow)`, column
//!   `(ci, ki, kj)`, zero padding); backward: col2im, the adjoint (sums overlapping patches).
//! - [`relu_max_pool2`]: conv output rows `[b·h·w, c]` (NHWC) → `relu(max over 2×2)` as NCHW
//!   `[b, c, h/2, w/2]` (floor); backward: the gradient goes to the first maximum of each window
//!   when it is positive (candle's `max_pool2d` then `relu` give the same values).
//! - [`sgd_update`]: `v ← μ·v + ∇ + wd·w; w ← w − lr·v` in place, one pass, no allocation.
//! - [`cross_entropy`] (in `loss.rs`): the mean softmax cross-entropy, one pass forward and one
//!   backward.
//!
//! The linear layer's GEMM with its bias and ReLU is in [`super::sparse`] (it carries the masks
//! and estimators); its ReLU backward is `ReluGrad`. Guarantee: each op equals the composition of candle ops it replaces, forward
//! and backward (tested to 1e-5 against them). Cost: one read and one write of each operand.
//! CPU only: on other devices the callers use the candle ops.

mod loss;
pub use loss::{cross_entropy, nll_sum};

use crate::par::{self as fork, fork};
use crate::sparse::nm::NmMatrix;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, InplaceOp2, Layout, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Mutex;

/// The contiguous f32 data of a CPU operand (errors name the op).
pub(crate) fn f32_slice<'a>(
    s: &'a CpuStorage,
    l: &Layout,
    op: &str,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("{op}: expected f32 data, got {:?}", s.dtype())
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("{op}: expected a contiguous operand"),
    }
}

fn f32_slice_mut<'a>(
    s: &'a mut CpuStorage,
    l: &Layout,
    op: &str,
) -> candle_core::Result<&'a mut [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("{op}: expected f32 data")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&mut v[a..b]),
        None => candle_core::bail!("{op}: expected a contiguous operand"),
    }
}

/// Geometry of a square convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Images.
    pub b: usize,
    /// Input channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Kernel side.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on every side.
    pub pad: usize,
}

impl ConvGeometry {
    /// Output height and width.
    pub fn out_hw(&self) -> (usize, usize) {
        let (hp, wp) = (self.h + 2 * self.pad, self.w + 2 * self.pad);
        (
            (hp - self.k) / self.stride + 1,
            (wp - self.k) / self.stride + 1,
        )
    }

    /// Every contiguous run of one image's im2col: `f(col, pixel, len)` for the `len` values
    /// at offset `col` of the image's rows `[ho·wo, c·k·k]` that come from offset `pixel` of the
    /// image `[c, h, w]` (padding is skipped). im2col copies along these runs, col2im adds back.
    fn runs(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (ho, wo) = self.out_hw();
        let cols = self.c * self.k * self.k;
        for oh in 0..ho {
            for ow in 0..wo {
                let (lo, hi, x0) = self.run(ow);
                if hi == lo {
                    continue;
                }
                for ci in 0..self.c {
                    for ki in 0..self.k {
                        if let Some(y) = self.source_row(oh, ki) {
                            f(
                                (oh * wo + ow) * cols + (ci * self.k + ki) * self.k + lo,
                                (ci * self.h + y) * self.w + x0,
                                hi - lo,
                            );
                        }
                    }
                }
            }
        }
    }

    /// The input row read by output row `oh` at kernel row `ki`, if inside the image.
    #[inline]
    fn source_row(&self, oh: usize, ki: usize) -> Option<usize> {
        let y = (oh * self.stride + ki).checked_sub(self.pad)?;
        (y < self.h).then_some(y)
    }

    /// For output column `ow`: the kernel columns `lo..hi` that fall inside the image (the rest
    /// read padding), and the input column `x0` that kernel column `lo` reads. Inside, kernel
    /// column `kj` reads input column `x0 + kj − lo`: a contiguous run.
    #[inline]
    fn run(&self, ow: usize) -> (usize, usize, usize) {
        let start = ow * self.stride; // input column of kj = 0, in padded coordinates
        let lo = self.pad.saturating_sub(start).min(self.k);
        let hi = (self.w + self.pad)
            .saturating_sub(start)
            .min(self.k)
            .max(lo);
        (lo, hi, start + lo - self.pad.min(start + lo))
    }
}

/// `dst ← src` for the short runs of im2col (a kernel row): fixed-size copies up to 8, so a
/// 5-wide run is a few moves, not a call to `memcpy`.
#[inline]
fn copy_run(dst: &mut [f32], src: &[f32]) {
    macro_rules! fixed {
        ($($n:literal)*) => {
            match src.len() {
                $($n => {
                    let s: &[f32; $n] = src.try_into().expect("run length");
                    let d: &mut [f32; $n] = dst.try_into().expect("run length");
                    *d = *s;
                })*
                _ => dst.copy_from_slice(src),
            }
        };
    }
    fixed!(1 2 3 4 5 6 7 8);
}

/// A strided matrix operand of [`gemm_split`]: element `(i, j)` is `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Operand<'a> {
    /// The values.
    pub data: &'a [f32],
    /// Row stride.
    pub rs: usize,
    /// Column stride.
    pub cs: usize,
}

/// `lhs·rhs` as a new row-major `[m, n]` for `lhs: [m, k]`, `rhs: [k, n]`, split evenly over
/// [`fork()`]'s threads, each part one single-threaded gemm call: at the sizes of these layers
/// (batch 128, widths of a few hundred) two independent halves beat gemm's own splitting of one
/// call. The split runs along the output's longer side, so each thread packs half of the larger
/// operand rather than all of it: a linear layer's forward at batch 128 splits its output
/// features (x·Wᵀ, each half of W packed by one thread), 128 × 784 by 784 × 256 in 274 µs a half
/// against 293 µs for half the batch rows. `epilogue(first_column, values)`, when given, runs on
/// each row of a part's output right after its product, on the thread that computed it (a bias
/// and ReLU while the part is in cache). The output is not zeroed first: gemm writes all of it.
pub(crate) fn gemm_split(
    (m, n, k): (usize, usize, usize),
    lhs: Operand<'_>,
    rhs: Operand<'_>,
    epilogue: Option<&Epilogue<'_>>,
) -> candle_core::Result<Vec<f32>> {
    let last = |o: &Operand<'_>, r: usize, c: usize| {
        (r > 0 && c > 0).then(|| (r - 1) * o.rs + (c - 1) * o.cs)
    };
    let fits = |o: &Operand<'_>, r: usize, c: usize| last(o, r, c).is_none_or(|i| i < o.data.len());
    if !fits(&lhs, m, k) || !fits(&rhs, k, n) {
        candle_core::bail!("gemm: operands too small for [{m}, {k}]·[{k}, {n}]")
    }
    if m == 0 || n == 0 || k == 0 {
        let mut dst = vec![0f32; m * n];
        if let Some(f) = epilogue {
            dst.chunks_mut(n.max(1)).for_each(|row| f(0, row));
        }
        return Ok(dst);
    }
    let threads = fork::width(rayon::current_num_threads());
    let by_cols = n > m;
    let side = if by_cols { n } else { m };
    let per = if threads > 1 && m * n * k >= 1 << 18 && side >= 2 * threads {
        side.div_ceil(threads)
    } else {
        side
    };
    let parts = side.div_ceil(per);
    let mut dst: Vec<f32> = Vec::with_capacity(m * n);
    let out = fork::SharedMut::new(dst.spare_capacity_mut());
    let part = |i: usize| {
        let start = i * per;
        let len = per.min(side - start);
        let (rows, cols, d, a, b) = if by_cols {
            (m, len, start, 0, start * rhs.cs)
        } else {
            (len, n, start * n, start * lhs.rs, 0)
        };
        // SAFETY: the bounds of lhs and rhs were checked above and `a`, `b` select rows of lhs or
        // columns of rhs inside them; dst has capacity m·n, and part `i` writes (without reading:
        // read_dst is false) only its rows or columns start..start+len, which no other part
        // touches.
        unsafe {
            gemm::gemm(
                rows,
                cols,
                k,
                out.get().cast::<f32>().add(d),
                1,
                n as isize,
                false,
                lhs.data.as_ptr().add(a),
                lhs.cs as isize,
                lhs.rs as isize,
                rhs.data.as_ptr().add(b),
                rhs.cs as isize,
                rhs.rs as isize,
                1.0f32,
                1.0f32,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        if let Some(f) = epilogue {
            let c0 = if by_cols { start } else { 0 };
            for r in 0..rows {
                // SAFETY: row r of this part, `cols` values from column c0, was just written by
                // gemm and is touched by no other part.
                f(c0, unsafe {
                    std::slice::from_raw_parts_mut(out.get().cast::<f32>().add(d + r * n), cols)
                });
            }
        }
    };
    if parts == 1 {
        part(0);
    } else {
        fork(parts, part);
    }
    // SAFETY: the parts together wrote every one of the m·n values (k > 0).
    unsafe { dst.set_len(m * n) };
    Ok(dst)
}

/// A pass over one row segment of [`gemm_split`]'s output: `(first column, values)`.
pub(crate) type Epilogue<'a> = dyn Fn(usize, &mut [f32]) + Sync + 'a;

/// Transpose row-major `src: [rows, cols]` into `dst: [cols, rows]`, pieces of
/// [`crate::sparse::TRANSPOSE_TILE`] columns split over [`fork()`]'s threads (serial inside a fork).
pub(crate) fn fork_transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    use crate::sparse::{TRANSPOSE_TILE, transpose, transpose_cols};
    if rows * cols < 1 << 17 {
        return transpose(src, rows, cols, dst);
    }
    fork::chunks_mut(&mut dst[..rows * cols], TRANSPOSE_TILE * rows, |i, d| {
        transpose_cols(src, rows, cols, i * TRANSPOSE_TILE, d)
    });
}

/// `dst ← a·b` for a compressed N:M `a: [R, K]` and row-major `b: [K, width]` (the sparse
/// kernels of [`crate::sparse::nm`]), the rows of `dst` split evenly over [`fork()`]'s threads
/// (serial inside a fork, as in a backward pass's two side-by-side products).
pub(crate) fn nm_matmul(
    a: &NmMatrix,
    b: &[f32],
    width: usize,
    dst: &mut [f32],
) -> candle_core::Result<()> {
    nm_matmul_with(a, b, width, dst, false)
}

/// [`nm_matmul`] with B given by its transpose `bt: [width, K]` (a batch-first activation or
/// gradient as it is; the kernel transposes B's tiles as it packs them).
pub(crate) fn nm_matmul_t(
    a: &NmMatrix,
    bt: &[f32],
    width: usize,
    dst: &mut [f32],
) -> candle_core::Result<()> {
    nm_matmul_with(a, bt, width, dst, true)
}

fn nm_matmul_with(
    a: &NmMatrix,
    b: &[f32],
    width: usize,
    dst: &mut [f32],
    transposed: bool,
) -> candle_core::Result<()> {
    if dst.len() != a.rows() * width || b.len() != a.cols() * width {
        candle_core::bail!(
            "nm-matmul: [{}, {}]·[{}, {width}] into {} values",
            a.rows(),
            a.cols(),
            b.len() / width.max(1),
            dst.len()
        )
    }
    if width == 0 || a.rows() == 0 {
        return Ok(());
    }
    let threads = fork::width(rayon::current_num_threads());
    // Even parts: the kernel takes rows two at a time.
    let rows_per = a.rows().div_ceil(threads).next_multiple_of(2);
    let failed = Mutex::new(None);
    fork::chunks_mut(dst, rows_per * width, |i, d| {
        let r0 = i * rows_per;
        let rows = r0..r0 + d.len() / width;
        let done = if transposed {
            a.matmul_rows_t(b, width, rows, d)
        } else {
            a.matmul_rows(b, width, rows, d)
        };
        if let Err(e) = done {
            *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        }
    });
    match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => candle_core::bail!("nm-matmul: {e}"),
        None => Ok(()),
    }
}

/// `lhs·rhs` (or `lhsᵀ·rhs` with `lhs_t`) of contiguous CPU f32 matrices, by [`gemm_split`].
pub(crate) struct MatMul {
    /// Take the transpose of the first operand.
    pub lhs_t: bool,
}

impl CustomOp2 for MatMul {
    fn name(&self) -> &'static str {
        "matmul-rows"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let a = f32_slice(s1, l1, "matmul-rows")?;
        let b = f32_slice(s2, l2, "matmul-rows")?;
        let (r1, c1) = l1.shape().dims2()?;
        let (k, n) = l2.shape().dims2()?;
        let (m, lhs) = if self.lhs_t {
            (
                c1,
                Operand {
                    data: a,
                    rs: 1,
                    cs: c1,
                },
            )
        } else {
            (
                r1,
                Operand {
                    data: a,
                    rs: c1,
                    cs: 1,
                },
            )
        };
        if (if self.lhs_t { r1 } else { c1 }) != k {
            candle_core::bail!("matmul-rows: [{r1}, {c1}] and [{k}, {n}] do not chain")
        }
        let out = gemm_split(
            (m, n, k),
            lhs,
            Operand {
                data: b,
                rs: n,
                cs: 1,
            },
            None,
        )?;
        Ok((CpuStorage::F32(out), Shape::from((m, n))))
    }
}

/// Sums over the rows of `[n, c]`: `[c]` (the bias gradient), one pass in row order.
pub(crate) struct ColumnSums;

impl CustomOp1 for ColumnSums {
    fn name(&self) -> &'static str {
        "column-sums"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "column-sums")?;
        let (_, c) = l.shape().dims2()?;
        let mut acc = vec![0f32; c];
        for row in x.chunks_exact(c.max(1)) {
            for (a, v) in acc.iter_mut().zip(row) {
                *a += v;
            }
        }
        Ok((CpuStorage::F32(acc), Shape::from(c)))
    }
}

struct Im2col(ConvGeometry);

impl CustomOp1 for Im2col {
    fn name(&self) -> &'static str {
        "im2col"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.0;
        let x = f32_slice(s, l, "im2col")?;
        let (ho, wo) = g.out_hw();
        let cols = g.c * g.k * g.k;
        let per_image = ho * wo * cols;
        let mut out = vec![0f32; g.b * per_image];
        let image = g.c * g.h * g.w;
        out.par_chunks_mut(per_image)
            .enumerate()
            .for_each(|(n, dst)| {
                let img = &x[n * image..(n + 1) * image];
                g.runs(|col, pixel, len| {
                    copy_run(&mut dst[col..col + len], &img[pixel..pixel + len])
                });
            });
        Ok((CpuStorage::F32(out), Shape::from((g.b * ho * wo, cols))))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&Col2im(self.0))?))
    }
}

struct Col2im(ConvGeometry);

impl CustomOp1 for Col2im {
    fn name(&self) -> &'static str {
        "col2im"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.0;
        let cols_data = f32_slice(s, l, "col2im")?;
        let (ho, wo) = g.out_hw();
        let cols = g.c * g.k * g.k;
        let per_image = g.c * g.h * g.w;
        let mut out = vec![0f32; g.b * per_image];
        out.par_chunks_mut(per_image)
            .enumerate()
            .for_each(|(n, img)| {
                let src = &cols_data[n * ho * wo * cols..(n + 1) * ho * wo * cols];
                g.runs(|col, pixel, len| {
                    for (d, v) in img[pixel..pixel + len].iter_mut().zip(&src[col..col + len]) {
                        *d += v;
                    }
                });
            });
        Ok((CpuStorage::F32(out), Shape::from((g.b, g.c, g.h, g.w))))
    }
}

/// im2col of a CPU `[b, c, h, w]` f32 tensor: rows `[b·ho·wo, c·k·k]`, differentiable.
pub fn im2col(x: &Tensor, k: usize, stride: usize, pad: usize) -> candle_core::Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    if h + 2 * pad < k || w + 2 * pad < k || stride == 0 {
        candle_core::bail!("im2col: kernel {k} does not fit {h}×{w} with padding {pad}")
    }
    let g = ConvGeometry {
        b,
        c,
        h,
        w,
        k,
        stride,
        pad,
    };
    x.contiguous()?.apply_op1(Im2col(g))
}

/// Shape of a 2×2 pool over conv output rows.
#[derive(Clone, Copy, Debug)]
struct PoolShape {
    b: usize,
    h: usize,
    w: usize,
    c: usize,
}

impl PoolShape {
    /// Row index (in `[b·h·w, c]`) of the input at window `(ph, pw)` offset `(dy, dx)`.
    #[inline]
    fn row(&self, n: usize, ph: usize, pw: usize, dy: usize, dx: usize) -> usize {
        (n * self.h + 2 * ph + dy) * self.w + 2 * pw + dx
    }
}

struct ReluMaxPool(PoolShape);

impl CustomOp1 for ReluMaxPool {
    fn name(&self) -> &'static str {
        "relu-max-pool2"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let p = self.0;
        let y = f32_slice(s, l, "relu-max-pool2")?;
        let (ph, pw) = (p.h / 2, p.w / 2);
        let per_image = p.c * ph * pw;
        let mut out = vec![0f32; p.b * per_image];
        out.par_chunks_mut(per_image)
            .enumerate()
            .for_each(|(n, dst)| {
                for i in 0..ph {
                    for j in 0..pw {
                        let rows = [
                            p.row(n, i, j, 0, 0),
                            p.row(n, i, j, 0, 1),
                            p.row(n, i, j, 1, 0),
                            p.row(n, i, j, 1, 1),
                        ];
                        for ch in 0..p.c {
                            let mut m = 0f32;
                            for r in rows {
                                m = m.max(y[r * p.c + ch]);
                            }
                            dst[(ch * ph + i) * pw + j] = m;
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((p.b, p.c, ph, pw))))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(arg.detach().apply_op2_no_bwd(
            &grad.contiguous()?,
            &PoolGrad(self.0),
        )?))
    }
}

/// Backward of [`ReluMaxPool`]: `(y rows, ∂out NCHW)` → `∂y rows`.
struct PoolGrad(PoolShape);

impl CustomOp2 for PoolGrad {
    fn name(&self) -> &'static str {
        "relu-max-pool2-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let p = self.0;
        let y = f32_slice(s1, l1, "relu-max-pool2-grad")?;
        let g = f32_slice(s2, l2, "relu-max-pool2-grad")?;
        let (ph, pw) = (p.h / 2, p.w / 2);
        let per_image = p.h * p.w * p.c;
        let mut out = vec![0f32; p.b * per_image];
        out.par_chunks_mut(per_image)
            .enumerate()
            .for_each(|(n, dst)| {
                let base = n * p.h * p.w;
                for i in 0..ph {
                    for j in 0..pw {
                        let rows = [
                            p.row(n, i, j, 0, 0),
                            p.row(n, i, j, 0, 1),
                            p.row(n, i, j, 1, 0),
                            p.row(n, i, j, 1, 1),
                        ];
                        for ch in 0..p.c {
                            // First maximum, as a forward that scans the window in order.
                            let mut best = rows[0];
                            for &r in &rows[1..] {
                                if y[r * p.c + ch] > y[best * p.c + ch] {
                                    best = r;
                                }
                            }
                            if y[best * p.c + ch] > 0.0 {
                                dst[(best - base) * p.c + ch] =
                                    g[((n * p.c + ch) * ph + i) * pw + j];
                            }
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((p.b * p.h * p.w, p.c))))
    }
}

/// `relu(max_pool2d(·, 2))` of conv output rows `y: [b·h·w, c]` (NHWC), as NCHW
/// `[b, c, h/2, w/2]`; differentiable, CPU f32.
pub fn relu_max_pool2(y: &Tensor, b: usize, h: usize, w: usize) -> candle_core::Result<Tensor> {
    let (rows, c) = y.dims2()?;
    if rows != b * h * w {
        candle_core::bail!("relu-max-pool2: {rows} rows are not {b}×{h}×{w}")
    }
    y.contiguous()?
        .apply_op1(ReluMaxPool(PoolShape { b, h, w, c }))
}

/// `g ⊙ [y > 0]`: the gradient through a ReLU whose output is `y` (arguments `y`, `g`).
pub(crate) struct ReluGrad;

impl CustomOp2 for ReluGrad {
    fn name(&self) -> &'static str {
        "relu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let y = f32_slice(s1, l1, "relu-grad")?;
        let g = f32_slice(s2, l2, "relu-grad")?;
        if y.len() != g.len() {
            candle_core::bail!("relu-grad: operand sizes differ")
        }
        let out: Vec<f32> = y
            .iter()
            .zip(g)
            .map(|(&y, &g)| if y > 0.0 { g } else { 0.0 })
            .collect();
        Ok((CpuStorage::F32(out), l2.shape().clone()))
    }
}

/// One thread's share of an SGD update: weights, velocity, gradient.
type SgdPart<'a> = Mutex<(&'a mut [f32], &'a mut [f32], &'a [f32])>;

/// One SGD step on `w` in place (argument `g`), with the velocity `v` beside it:
/// `v ← μ·v + (g + wd·w); w ← w − lr·v`, one pass over the three, split by [`fork()`].
struct SgdStep<'a> {
    v: std::sync::Mutex<&'a mut [f32]>,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
}

impl InplaceOp2 for SgdStep<'_> {
    fn name(&self) -> &'static str {
        "sgd-step"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let w = f32_slice_mut(s1, l1, "sgd-step")?;
        let g = f32_slice(s2, l2, "sgd-step")?;
        let mut v = self.v.lock().unwrap_or_else(|p| p.into_inner());
        if v.len() != w.len() || g.len() != w.len() {
            candle_core::bail!("sgd-step: operand sizes differ")
        }
        let (lr, mu, wd) = (self.lr, self.momentum, self.weight_decay);
        let isa = crate::sparse::Isa::detect();
        let step = |w: &mut [f32], v: &mut [f32], g: &[f32]| sgd_pass(isa, w, v, g, lr, mu, wd);
        // Two or more parts only where the pass is long enough to pay for the fork.
        const MIN_PART: usize = 16 * 1024;
        let parts = fork::width(w.len() / MIN_PART);
        if parts <= 1 {
            step(w, &mut v, g);
            return Ok(());
        }
        let len = w.len().div_ceil(parts);
        let chunks: Vec<SgdPart> = w
            .chunks_mut(len)
            .zip(v.chunks_mut(len))
            .zip(g.chunks(len))
            .map(|((w, v), g)| Mutex::new((w, v, g)))
            .collect();
        fork(chunks.len(), |i| {
            let mut c = chunks[i].lock().unwrap_or_else(|p| p.into_inner());
            let (w, v, g) = &mut *c;
            step(w, v, g);
        });
        Ok(())
    }
}

/// `v ← μ·v + (g + wd·w); w ← w − lr·v` over the slices, compiled for the widest instruction
/// set here (the same expression, so every path gives the same bits).
fn sgd_pass(
    isa: crate::sparse::Isa,
    w: &mut [f32],
    v: &mut [f32],
    g: &[f32],
    lr: f32,
    mu: f32,
    wd: f32,
) {
    #[inline(always)]
    fn body(w: &mut [f32], v: &mut [f32], g: &[f32], lr: f32, mu: f32, wd: f32) {
        for ((w, v), &g) in w.iter_mut().zip(v.iter_mut()).zip(g) {
            *v = mu * *v + (g + wd * *w);
            *w -= lr * *v;
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    // SAFETY: unsafe only for its target feature: called where `Isa::detect` found AVX-512F.
    unsafe fn body_avx512(w: &mut [f32], v: &mut [f32], g: &[f32], lr: f32, mu: f32, wd: f32) {
        body(w, v, g, lr, mu, wd)
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    // SAFETY: unsafe only for its target feature: called where `Isa::detect` found AVX2.
    unsafe fn body_avx2(w: &mut [f32], v: &mut [f32], g: &[f32], lr: f32, mu: f32, wd: f32) {
        body(w, v, g, lr, mu, wd)
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::detect` found AVX-512F on this CPU.
        crate::sparse::Isa::Avx512 => unsafe { body_avx512(w, v, g, lr, mu, wd) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::detect` found AVX2 on this CPU.
        crate::sparse::Isa::Avx2 => unsafe { body_avx2(w, v, g, lr, mu, wd) },
        _ => body(w, v, g, lr, mu, wd),
    }
}

/// One SGD step in place on a CPU f32 tensor `w` with its velocity `v` (same length, starts at
/// 0): `v ← μ·v + g + wd·w; w ← w − lr·v`.
pub fn sgd_update(
    w: &Tensor,
    v: &mut [f32],
    g: &Tensor,
    lr: f64,
    momentum: f64,
    weight_decay: f64,
) -> candle_core::Result<()> {
    let g = g.contiguous()?;
    w.inplace_op2(
        &g,
        &SgdStep {
            v: std::sync::Mutex::new(v),
            lr: lr as f32,
            momentum: momentum as f32,
            weight_decay: weight_decay as f32,
        },
    )
}

#[cfg(test)]
mod tests;
