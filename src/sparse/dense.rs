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
