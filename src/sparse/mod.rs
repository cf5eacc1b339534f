//! Sparse GEMM formats and kernels: what each mask type buys.
//!
//! Each mask type gets a storage format and a kernel that skips the pruned weights, next to the
//! dense reference (the `gemm` crate, candle's):
//!
//! | mask | format | kernel |
//! |---|---|---|
//! | dense | row-major `f32` | [`dense::matmul`] (gemm) |
//! | N:M | values `[R, K·N/M]` + packed positions | [`nm::NmMatrix::matmul`] |
//! | unstructured | CSR: values, `u32` columns, row offsets | [`csr::CsrMatrix::matmul`] |
//! | block `b×b` | BSR: kept blocks dense, `u32` block columns | [`bsr::BsrMatrix::matmul`] |
//!
//! Every kernel computes `C = A·B` for the sparse operand `A: [R, K]` (sparse along K, the
//! reduction dimension) and a dense row-major `B: [K, C]`. The three training GEMMs map onto
//! it (`crate::ops::gemm` times each against dense):
//! - forward `Y = X·Wᵀ`: `Yᵀ = W·Xᵀ`, with `W` N:M along `in`;
//! - backward data `dX = dY·W`: `dXᵀ = Wᵀ·dYᵀ`, with `Wᵀ` N:M along `out` — which only a
//!   transposable mask gives (a plain N:M mask's `Wᵀ` is not N:M);
//! - update `dW = ĝᵀ·X`, with `ĝᵀ` N:M along the batch, as the estimators prune it.
//!
//! Instruction sets are chosen at run time ([`Isa::detect`]): AVX-512, else AVX2 with FMA,
//! else plain scalar code; each path is tested where the CPU has it.
//!
//! Value types ([`element`]): f32, or bf16 for the N:M values and the dense weights below 16
//! columns of B (the matrix–vector kernels, where bytes bound the product), widened to f32 as
//! they are read; products accumulate in f32.
//!
//! [`probe`] measures this core's multiply-add rate with an operand from L1 (the sparse tile
//! kernels' mix) against both operands in registers (dense GEMM's): the bound of every
//! broadcast-times-row kernel here at large batch.

pub mod bsr;
mod combine;
pub mod csr;
pub mod dense;
pub mod element;
pub mod nm;
pub mod probe;

use crate::error::{Error, Result};

pub use crate::lanes::Isa;

/// An error unless `b` holds `[cols, width]` and `out` `[rows, width]` values: the operand
/// check every sparse kernel's `matmul` makes for `out = A·b` with `A: [rows, cols]`.
pub(crate) fn check_operands(
    (rows, cols): (usize, usize),
    b_len: usize,
    width: usize,
    out_len: usize,
) -> Result<()> {
    if b_len != cols * width || out_len != rows * width {
        return Err(Error::invalid(
            "operands",
            format!("b {b_len} values, out {out_len} values"),
            format!("expected b [{cols}, {width}] and out [{rows}, {width}]"),
        ));
    }
    Ok(())
}

/// `len` zeros starting 64-byte aligned: the buffer and the start's index in it. A vector load
/// across two cache lines costs two, and a `Vec<f32>` past glibc's mmap threshold starts 16
/// bytes into a page (the packed blocks of the N:M kernels and [`probe`]'s block).
pub(crate) fn aligned_zeros(len: usize) -> (Vec<f32>, usize) {
    let buf = vec![0f32; len + 16];
    let start = buf.as_ptr().align_offset(64).min(16);
    (buf, start)
}

/// [`transpose`] with the rows of `dst` (columns of `src`) split over rayon's threads, for
/// callers that run on the rayon pool (not inside a training step's fork-join).
pub fn transpose_par(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    use rayon::prelude::*;
    if rows * cols < 1 << 16 || rayon::current_num_threads() < 2 {
        return transpose(src, rows, cols, dst);
    }
    dst[..rows * cols]
        .par_chunks_mut(TRANSPOSE_TILE * rows)
        .enumerate()
        .for_each(|(i, d)| transpose_cols(src, rows, cols, i * TRANSPOSE_TILE, d));
}

/// Columns per piece of a split transpose ([`transpose_cols`]).
pub const TRANSPOSE_TILE: usize = 32;

/// Columns `c0..c0 + d.len()/rows` of row-major `src: [rows, cols]` transposed into `d` (those
/// rows of the transpose), in tiles of [`TRANSPOSE_TILE`] rows: one piece of a split transpose.
pub fn transpose_cols(src: &[f32], rows: usize, cols: usize, c0: usize, d: &mut [f32]) {
    let c1 = (c0 + d.len() / rows.max(1)).min(cols);
    for r0 in (0..rows).step_by(TRANSPOSE_TILE) {
        for r in r0..(r0 + TRANSPOSE_TILE).min(rows) {
            for c in c0..c1 {
                d[(c - c0) * rows + r] = src[r * cols + c];
            }
        }
    }
}

/// Transpose row-major `src: [rows, cols]` into `dst: [cols, rows]`, in cache-sized tiles.
pub fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const T: usize = 32;
    for r0 in (0..rows).step_by(T) {
        for c0 in (0..cols).step_by(T) {
            for r in r0..(r0 + T).min(rows) {
                for c in c0..(c0 + T).min(cols) {
                    dst[c * rows + r] = src[r * cols + c];
                }
            }
        }
    }
}
