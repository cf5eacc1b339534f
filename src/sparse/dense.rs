//! The dense reference: the `gemm` crate (candle's CPU matmul), multithreaded over the rayon
//! pool, on strided operands so that no operand is copied or transposed first.
//!
//! Problem: `C = A·B` for dense `A: [m, k]`, `B: [k, n]` given by strides. Guarantee: gemm's
//! result (its AVX-512 or AVX2 micro-kernels, chosen at run time). Cost: `m·n·k` multiply-adds.

use crate::error::{Error, Result};

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
    use rayon::prelude::*;
    if a.len() != rows * cols || x.len() != cols || y.len() != rows {
        return Err(Error::invalid(
            "operands",
            format!("[{rows}, {cols}]·[{cols}]"),
            "an operand does not match its shape",
        ));
    }
    let avx512 = crate::sparse::Isa::detect() == crate::sparse::Isa::Avx512;
    y.par_chunks_mut(64).enumerate().for_each(|(i, ys)| {
        for (j, out) in ys.iter_mut().enumerate() {
            let row = &a[(i * 64 + j) * cols..(i * 64 + j + 1) * cols];
            *out = if avx512 {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `avx512` is true only when the CPU has AVX-512F.
                unsafe {
                    dot_avx512(row, x)
                }
                #[cfg(not(target_arch = "x86_64"))]
                dot_body(row, x, |acc, a, b| acc + a * b)
            } else {
                dot_body(row, x, |acc, a, b| acc + a * b)
            };
        }
    });
    Ok(())
}

/// `y = xᵀ·A` for row-major `a: [rows, cols]` (each row scaled by its x and added), the columns
/// split over the rayon pool in blocks of 512: the other orientation of the matrix-vector
/// product (batch-1 backward `dx = dy·W`).
pub fn vecmat(a: &[f32], rows: usize, cols: usize, x: &[f32], y: &mut [f32]) -> Result<()> {
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
fn axpy_body(s: f32, x: &[f32], y: &mut [f32], fma: impl Fn(f32, f32, f32) -> f32 + Copy) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o = fma(*o, s, v);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
// SAFETY: unsafe only for its target feature: callers run it where the CPU has AVX-512F
// (`Isa::check`/`Isa::detect`); every memory access inside is bounds-checked or justified.
unsafe fn axpy_avx512(s: f32, x: &[f32], y: &mut [f32]) {
    axpy_body(s, x, y, |acc, a, b| a.mul_add(b, acc))
}

/// `Σ a_i·b_i` in 64 lanes (four independent chains of 16) plus a scalar tail.
#[inline(always)]
fn dot_body(a: &[f32], b: &[f32], fma: impl Fn(f32, f32, f32) -> f32 + Copy) -> f32 {
    const L: usize = 64;
    let mut acc = [0f32; L];
    let split = a.len() / L * L;
    for (ca, cb) in a[..split].chunks_exact(L).zip(b[..split].chunks_exact(L)) {
        for l in 0..L {
            acc[l] = fma(acc[l], ca[l], cb[l]);
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, y) in a[split..].iter().zip(&b[split..]) {
        sum += x * y;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
// SAFETY: unsafe only for its target feature: callers run it where the CPU has AVX-512F
// (`Isa::check`/`Isa::detect`); every memory access inside is bounds-checked or justified.
unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
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
}
