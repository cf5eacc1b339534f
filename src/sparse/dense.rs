//! The dense reference: the `gemm` crate (candle's CPU matmul), multithreaded over the rayon
//! pool, on strided operands so that no operand is copied or transposed first.
//!
//! Problem: `C = A·B` for dense `A: [m, k]`, `B: [k, n]` given by strides. Guarantee: gemm's
//! result (its AVX-512 or AVX2 micro-kernels, chosen at run time). Cost: `m·n·k` multiply-adds.

use crate::error::{Error, Result};
use crate::sparse::element::Element;

/// A strided dense operand: element `(i, j)` is `data[i·rs + j·cs]`.
#[derive(Debug, Clone, Copy)]
pub struct Strided<'a> {
    /// The values.
    pub data: &'a [f32],
    /// Row stride.
    pub rs: usize,
    /// Column stride.
    pub cs: usize,
}

impl<'a> Strided<'a> {
    /// A row-major `[_, cols]` matrix.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        Strided {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major `[_, cols]` matrix (no copy).
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        Strided {
            data,
            rs: 1,
            cs: cols,
        }
    }

    fn fits(&self, r: usize, c: usize) -> bool {
        r == 0 || c == 0 || (r - 1) * self.rs + (c - 1) * self.cs < self.data.len()
    }
}

/// `out = a·b` with `out: [m, n]` row-major, `a: [m, k]`, `b: [k, n]`, on `threads` threads.
pub fn matmul(
    (m, n, k): (usize, usize, usize),
    a: Strided<'_>,
    b: Strided<'_>,
    out: &mut [f32],
    threads: usize,
) -> Result<()> {
    if out.len() != m * n || !a.fits(m, k) || !b.fits(k, n) {
        return Err(Error::invalid(
            "operands",
            format!("[{m}, {k}]·[{k}, {n}]"),
            "an operand is smaller than its shape",
        ));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        out.fill(0.0);
        return Ok(());
    }
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the shapes and strides were checked against the slices above; gemm reads `a`
    // and `b` and writes exactly the m·n elements of `out`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_transposes_match_the_plain_product() -> Result<()> {
        // a: [2, 3], b stored as bt: [2 (n), 3 (k)] and read transposed.
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let bt = [1.0, 0.0, -1.0, 2.0, 1.0, 0.5];
        let mut out = [0f32; 4];
        matmul(
            (2, 2, 3),
            Strided::rows(&a, 3),
            Strided::transposed(&bt, 3),
            &mut out,
            2,
        )?;
        assert_eq!(
            out,
            [1.0 - 3.0, 2.0 + 2.0 + 1.5, 4.0 - 6.0, 8.0 + 5.0 + 3.0]
        );
        Ok(())
    }
}

/// `y = A·x` for row-major `a: [rows, cols]` (one dot product per row), rows split over the
/// rayon pool: the matrix-vector product gemm is slow at (its general kernels run it at a
/// third of OpenBLAS's sgemv speed here), so the dense reference at batch 1 is not handicapped.
pub fn matvec(a: &[f32], rows: usize, cols: usize, x: &[f32], y: &mut [f32]) -> Result<()> {
    matvecs(a, rows, cols, x, 1, y)
}

/// `yt = A·Xᵀ` for row-major `a: [rows, cols]` stored as `E` (f32, or bf16 widened as it is
/// read) and `width` vectors `x: [width, cols]`, into `yt: [rows, width]`, rows split over the
/// rayon pool. One vector: a dot product per row in four chains. More: two rows at a time (one
/// above 8 vectors), 16 columns at a time, each chunk of A widened once and each vector's chunk
/// loaded once per row pair, blocks of K whose vectors stay in L1. The dense bf16 reference
/// below 16 columns, where the bytes of A bound the product (4096² against 8 vectors: 1.9–2.9
/// ms in bf16, where gemm takes 3.7–5.2 in f32; against 15, 7.6–9 ms, slower than gemm's 4–5.3
/// in f32: one row at a time, each accumulator's multiply-add loads its vector from L1).
pub fn matvecs<E: Element>(
    a: &[E],
    rows: usize,
    cols: usize,
    x: &[f32],
    width: usize,
    yt: &mut [f32],
) -> Result<()> {
    use rayon::prelude::*;
    if a.len() != rows * cols || x.len() != width * cols || yt.len() != rows * width {
        return Err(Error::invalid(
            "operands",
            format!("[{rows}, {cols}]·[{cols}, {width}]"),
            "an operand does not match its shape",
        ));
    }
    if width == 0 || rows == 0 {
        return Ok(());
    }
    let isa = crate::sparse::Isa::detect();
    yt.par_chunks_mut(64 * width)
        .enumerate()
        .for_each(|(i, ys)| {
            let r0 = i * 64;
            let a = &a[r0 * cols..(r0 + ys.len() / width) * cols];
            if width == 1 {
                for (row, out) in a.chunks_exact(cols).zip(ys.iter_mut()) {
                    *out = match isa {
                        #[cfg(target_arch = "x86_64")]
                        // SAFETY: `Isa::detect` found AVX-512F on this CPU.
                        crate::sparse::Isa::Avx512 => unsafe { dot_avx512(row, x) },
                        _ => dot_body(row, x, |acc, a, b| acc + a * b),
                    };
                }
                return;
            }
            macro_rules! by_width {
                ($($w:literal),*) => {
                    match width {
                        $($w => rows_dots::<E, $w>(isa, a, cols, x, ys),)*
                        _ => unreachable!("width {width} is below 16 here"),
                    }
                };
            }
            if width < 16 {
                by_width!(2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            } else {
                for (row, out) in a.chunks_exact(cols).zip(ys.chunks_mut(width)) {
                    for (c, o) in out.iter_mut().enumerate() {
                        *o = dot_body(row, &x[c * cols..(c + 1) * cols], |acc, a, b| acc + a * b);
                    }
                }
            }
        });
    Ok(())
}

/// The rows of `a` (`[_, cols]`) against `W` vectors into `out` (`[_, W]`) on `isa`, block
/// of K by block (the vectors' block stays in L1 while every row uses it), two rows at a time
/// up to 8 vectors.
#[inline(always)]
fn rows_dots<E: Element, const W: usize>(
    isa: crate::sparse::Isa,
    a: &[E],
    cols: usize,
    x: &[f32],
    out: &mut [f32],
) {
    // The vectors' block: at most 32 KiB of L1, at least 512 columns (reductions per block).
    let kb = (8192 / W / 16 * 16).max(512);
    out.fill(0.0);
    for k0 in (0..cols).step_by(kb) {
        let k1 = (k0 + kb).min(cols);
        let xb = &x[k0..];
        let mut rows = a.chunks_exact(cols);
        let mut outs = out.chunks_exact_mut(W);
        while let (Some(r0), Some(o0)) = (rows.next(), outs.next()) {
            // Two rows at a time up to 8 vectors (16 accumulators); above, one (two would
            // spill registers).
            let pair = if W <= 8 {
                (rows.next(), outs.next())
            } else {
                (None, None)
            };
            match pair {
                (Some(r1), Some(o1)) => {
                    let sums = dots_on::<E, 2, W>(isa, [&r0[k0..k1], &r1[k0..k1]], xb, cols);
                    add_to(o0, &sums[0]);
                    add_to(o1, &sums[1]);
                }
                _ => add_to(o0, &dots_on::<E, 1, W>(isa, [&r0[k0..k1]], xb, cols)[0]),
            }
        }
    }
}

/// `out += sums`.
#[inline(always)]
fn add_to(out: &mut [f32], sums: &[f32]) {
    for (o, s) in out.iter_mut().zip(sums) {
        *o += s;
    }
}

/// [`dots_body`] on `isa`.
#[inline(always)]
fn dots_on<E: Element, const R: usize, const W: usize>(
    isa: crate::sparse::Isa,
    rows: [&[E]; R],
    x: &[f32],
    xs: usize,
) -> [[f32; W]; R] {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::detect` found AVX-512F on this CPU.
        crate::sparse::Isa::Avx512 => unsafe { dots_avx512::<E, R, W>(rows, x, xs) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::detect` found AVX2 and FMA on this CPU.
        crate::sparse::Isa::Avx2 => unsafe { dots_avx2::<E, R, W>(rows, x, xs) },
        _ => dots_body::<E, R, W>(rows, x, xs),
    }
}

/// `R` rows (each `cols` long) against `W` vectors (`x: [W, cols]`): `[r][c]` = row r · x_c,
/// 16 columns at a time in 16 lanes, then a scalar tail (the plain path; the vector paths
/// keep the accumulators in registers).
fn dots_body<E: Element, const R: usize, const W: usize>(
    rows: [&[E]; R],
    x: &[f32],
    xs: usize,
) -> [[f32; W]; R] {
    const L: usize = 16;
    let cols = rows[0].len();
    let mut acc = [[[0f32; L]; W]; R];
    let split = cols / L * L;
    for k0 in (0..split).step_by(L) {
        let a: [[f32; L]; R] = std::array::from_fn(|r| {
            let chunk: &[E; L] = rows[r][k0..k0 + L].try_into().expect("a whole chunk");
            std::array::from_fn(|l| chunk[l].widen())
        });
        for c in 0..W {
            let xc: &[f32; L] = x[c * xs + k0..c * xs + k0 + L]
                .try_into()
                .expect("a whole chunk");
            for r in 0..R {
                for l in 0..L {
                    acc[r][c][l] += a[r][l] * xc[l];
                }
            }
        }
    }
    std::array::from_fn(|r| {
        std::array::from_fn(|c| {
            let mut sum: f32 = acc[r][c].iter().sum();
            for k in split..cols {
                sum += rows[r][k].widen() * x[c * xs + k];
            }
            sum
        })
    })
}

/// Adds columns `split..` of each row's dot products (the part past the whole vectors).
#[inline(always)]
fn tail_sums<E: Element, const R: usize, const W: usize>(
    sums: &mut [[f32; W]; R],
    rows: [&[E]; R],
    x: &[f32],
    xs: usize,
    split: usize,
) -> [[f32; W]; R] {
    let cols = rows[0].len();
    for (r, row) in rows.iter().enumerate() {
        for (c, sum) in sums[r].iter_mut().enumerate() {
            for k in split..cols {
                *sum += row[k].widen() * x[c * xs + k];
            }
        }
    }
    *sums
}

/// The multi-vector dot kernel on one instruction set: `R·W` accumulators in registers, one
/// load of each vector's chunk per `R` multiply-adds, then [`tail_sums`].
macro_rules! dots_isa {
    ($(#[$doc:meta])* $name:ident, $feature:literal, $lanes:literal, $zero:ident, $load:ident,
     $loadx:ident, $fma:ident, $reduce:ident) => {
        $(#[$doc])*
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        // SAFETY: unsafe only for its target features: callers run it where `Isa::detect` found
        // them; the raw reads below stay inside the asserted lengths.
        unsafe fn $name<E: Element, const R: usize, const W: usize>(
            rows: [&[E]; R],
            x: &[f32],
            xs: usize,
        ) -> [[f32; W]; R] {
            use std::arch::x86_64::*;
            let cols = rows[0].len();
            assert!(rows.iter().all(|r| r.len() == cols) && x.len() >= (W - 1) * xs + cols);
            let mut acc = [[$zero(); W]; R];
            let split = cols / $lanes * $lanes;
            let mut k0 = 0;
            while k0 < split {
                let mut a = [$zero(); R];
                for r in 0..R {
                    // SAFETY: k0 + lanes ≤ cols, the row's length.
                    a[r] = unsafe { E::$load(rows[r].as_ptr().add(k0)) };
                }
                // Indexed: `c` picks both the vector and the accumulator column.
                #[allow(clippy::needless_range_loop)]
                for c in 0..W {
                    // SAFETY: c·xs + k0 + lanes ≤ (W − 1)·xs + cols ≤ x.len().
                    let xc = unsafe { $loadx(x.as_ptr().add(c * xs + k0)) };
                    for r in 0..R {
                        acc[r][c] = $fma(a[r], xc, acc[r][c]);
                    }
                }
                k0 += $lanes;
            }
            // Plain loops, not closures: a closure over `acc` keeps it in memory, and the loop
            // above then stores every accumulator at every step.
            let mut sums = [[0f32; W]; R];
            for r in 0..R {
                for c in 0..W {
                    sums[r][c] = $reduce(acc[r][c]);
                }
            }
            tail_sums(&mut sums, rows, x, xs, split)
        }
    };
}

dots_isa!(
    /// [`dots_body`] with AVX-512 registers.
    dots_avx512,
    "avx512f",
    16,
    _mm512_setzero_ps,
    load16,
    _mm512_loadu_ps,
    _mm512_fmadd_ps,
    _mm512_reduce_add_ps
);
dots_isa!(
    /// [`dots_body`] with AVX2 registers (8 lanes).
    dots_avx2,
    "avx2,fma",
    8,
    _mm256_setzero_ps,
    load8,
    _mm256_loadu_ps,
    _mm256_fmadd_ps,
    reduce8
);

/// The sum of an AVX2 register's 8 lanes, pairwise.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn reduce8(v: std::arch::x86_64::__m256) -> f32 {
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds 8 floats.
    unsafe { std::arch::x86_64::_mm256_storeu_ps(lanes.as_mut_ptr(), v) };
    ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
        + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]))
}

/// `y = xᵀ·A` for row-major `a: [rows, cols]` (each row scaled by its x and added), the columns
/// split over the rayon pool in blocks of 512: the other orientation of the matrix-vector
/// product (batch-1 backward `dx = dy·W`).
pub fn vecmat<E: Element>(
    a: &[E],
    rows: usize,
    cols: usize,
    x: &[f32],
    y: &mut [f32],
) -> Result<()> {
    use rayon::prelude::*;
    if a.len() != rows * cols || x.len() != rows || y.len() != cols {
        return Err(Error::invalid(
            "operands",
            format!("[{rows}]·[{rows}, {cols}]"),
            "an operand does not match its shape",
        ));
    }
    const BLOCK: usize = 512;
    let avx512 = crate::sparse::Isa::detect() == crate::sparse::Isa::Avx512;
    y.par_chunks_mut(BLOCK).enumerate().for_each(|(i, ys)| {
        ys.fill(0.0);
        let c0 = i * BLOCK;
        for (r, &xr) in x.iter().enumerate() {
            let row = &a[r * cols + c0..r * cols + c0 + ys.len()];
            if avx512 {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `avx512` is true only when the CPU has AVX-512F.
                unsafe {
                    axpy_avx512(xr, row, ys)
                }
            } else {
                axpy_body(xr, row, ys, |acc, a, b| acc + a * b);
            }
        }
    });
    Ok(())
}

/// `y += s·x`.
#[inline(always)]
fn axpy_body<E: Element>(
    s: f32,
    x: &[E],
    y: &mut [f32],
    fma: impl Fn(f32, f32, f32) -> f32 + Copy,
) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o = fma(*o, s, v.widen());
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
// SAFETY: unsafe only for its target feature: callers run it where the CPU has AVX-512F
// (`Isa::check`/`Isa::detect`); every memory access inside is bounds-checked or justified.
unsafe fn axpy_avx512<E: Element>(s: f32, x: &[E], y: &mut [f32]) {
    axpy_body(s, x, y, |acc, a, b| a.mul_add(b, acc))
}

/// `Σ a_i·b_i` in 64 lanes (four independent chains of 16) plus a scalar tail.
#[inline(always)]
fn dot_body<E: Element>(a: &[E], b: &[f32], fma: impl Fn(f32, f32, f32) -> f32 + Copy) -> f32 {
    const L: usize = 64;
    let mut acc = [0f32; L];
    let split = a.len() / L * L;
    for (ca, cb) in a[..split].chunks_exact(L).zip(b[..split].chunks_exact(L)) {
        for l in 0..L {
            acc[l] = fma(acc[l], ca[l].widen(), cb[l]);
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, y) in a[split..].iter().zip(&b[split..]) {
        sum += x.widen() * y;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
// SAFETY: unsafe only for its target feature: callers run it where the CPU has AVX-512F
// (`Isa::check`/`Isa::detect`); every memory access inside is bounds-checked or justified.
unsafe fn dot_avx512<E: Element>(a: &[E], b: &[f32]) -> f32 {
    dot_body(a, b, |acc, x, y| x.mul_add(y, acc))
}

#[cfg(test)]
mod matvec_tests {
    use super::*;

    #[test]
    fn matvec_equals_gemm_for_lengths_around_the_vector_width() -> Result<()> {
        for (rows, cols) in [(1, 1), (3, 63), (70, 64), (5, 130)] {
            let a: Vec<f32> = (0..rows * cols)
                .map(|i| ((i * 37) % 19) as f32 - 9.0)
                .collect();
            let x: Vec<f32> = (0..cols).map(|i| ((i * 11) % 7) as f32 - 3.0).collect();
            let (mut y, mut want) = (vec![0f32; rows], vec![0f32; rows]);
            matvec(&a, rows, cols, &x, &mut y)?;
            matmul(
                (rows, 1, cols),
                Strided::rows(&a, cols),
                Strided::rows(&x, 1),
                &mut want,
                1,
            )?;
            assert_eq!(y, want, "{rows}x{cols}");
            let xr: Vec<f32> = (0..rows).map(|i| ((i * 5) % 9) as f32 - 4.0).collect();
            let (mut z, mut want) = (vec![0f32; cols], vec![0f32; cols]);
            vecmat(&a, rows, cols, &xr, &mut z)?;
            matmul(
                (1, cols, rows),
                Strided::rows(&xr, rows),
                Strided::rows(&a, cols),
                &mut want,
                1,
            )?;
            assert_eq!(z, want, "{rows}x{cols} vecmat");
        }
        Ok(())
    }

    /// The multi-vector kernel on every instruction set this CPU has equals gemm, for 2 to 15
    /// vectors (two rows at a time and one), rows and columns not multiples of the lanes, and
    /// K longer than one block.
    #[test]
    fn multi_vector_dots_equal_gemm_on_every_isa() -> Result<()> {
        use crate::sparse::Isa;
        let isas = [Isa::Scalar, Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|i| i.check().is_ok());
        for isa in isas {
            for (rows, cols) in [(5, 37), (4, 2100)] {
                let a: Vec<f32> = (0..rows * cols)
                    .map(|i| ((i * 37) % 19) as f32 / 9.0 - 1.0)
                    .collect();
                macro_rules! each {
                    ($($w:literal),*) => {$({
                        let x: Vec<f32> = (0..$w * cols).map(|i| ((i * 11) % 13) as f32 / 6.0 - 1.0).collect();
                        let mut got = vec![f32::NAN; rows * $w];
                        rows_dots::<f32, $w>(isa, &a, cols, &x, &mut got);
                        let mut want = vec![0f32; rows * $w];
                        matmul((rows, $w, cols), Strided::rows(&a, cols), Strided::transposed(&x, cols), &mut want, 1)?;
                        for (g, r) in got.iter().zip(&want) {
                            assert!((g - r).abs() <= 1e-4 * (1.0 + r.abs()), "{isa:?} {rows}x{cols}·{}: {g} vs {r}", $w);
                        }
                    })*};
                }
                each!(2, 3, 8, 9, 15);
            }
        }
        Ok(())
    }

    /// With A stored as bf16, the matrix-vector kernels give the bits of the f32 kernels on
    /// the widened values (the same sums in the same order), for 1 to 5 vectors at once.
    #[test]
    fn bf16_rows_give_the_f32_product_of_the_widened_values() -> Result<()> {
        use Element;
        use half::bf16;
        for (rows, cols) in [(1, 1), (3, 63), (70, 64), (5, 130)] {
            let a: Vec<bf16> = (0..rows * cols)
                .map(|i| bf16::from_f32(((i * 37) % 19) as f32 / 7.0 - 1.3))
                .collect();
            let wide: Vec<f32> = a.iter().map(|v| v.widen()).collect();
            for width in 1..=5 {
                let x: Vec<f32> = (0..width * cols)
                    .map(|i| ((i * 11) % 7) as f32 / 3.0 - 1.0)
                    .collect();
                let (mut y, mut want) = (vec![0f32; rows * width], vec![0f32; rows * width]);
                matvecs(&a, rows, cols, &x, width, &mut y)?;
                matvecs(&wide, rows, cols, &x, width, &mut want)?;
                assert_eq!(y, want, "{rows}x{cols}·{width}");
                // And the product itself: gemm on the widened values, [rows, width].
                let mut reference = vec![0f32; rows * width];
                matmul(
                    (rows, width, cols),
                    Strided::rows(&wide, cols),
                    Strided::transposed(&x, cols),
                    &mut reference,
                    1,
                )?;
                for (g, r) in y.iter().zip(&reference) {
                    assert!(
                        (g - r).abs() <= 1e-5 * (1.0 + r.abs()),
                        "{rows}x{cols}·{width}: {g} vs {r}"
                    );
                }
            }
            let xr: Vec<f32> = (0..rows).map(|i| ((i * 5) % 9) as f32 - 4.0).collect();
            let (mut z, mut want) = (vec![0f32; cols], vec![0f32; cols]);
            vecmat(&a, rows, cols, &xr, &mut z)?;
            vecmat(&wide, rows, cols, &xr, &mut want)?;
            assert_eq!(z, want, "{rows}x{cols} vecmat");
        }
        Ok(())
    }
}
