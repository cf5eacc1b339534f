//! Compressed sparse row (CSR) storage of an unstructured mask, and its "sparse rows × dense"
//! kernel.
//!
//! Problem: `C = A·B` for `A: [R, K]` with an arbitrary set of kept entries (an unstructured
//! mask) and a dense row-major `B: [K, W]`. Format: per row, the kept entries' values and
//! columns (`u32`), and the row offsets (`R + 1` of them) — `8·nnz + 4·(R+1)` bytes against
//! `4·R·K` dense. Kernel: with 16 or more columns of `B`, each kept value scales a contiguous
//! row of `B` into the output row's tile of 128 columns held in registers (AVX-512, AVX2+FMA or
//! plain code, chosen at run time), over blocks of 64 rows of `B` whose tile stays in L1 while
//! every row of `A` uses it; below 16 columns, `B` is transposed once and each output entry is a dot
//! product of the row's values with the entries of `B` its columns pick (a gather). Rows are
//! split over rayon's threads. Guarantee: the product equals the dense product of the masked
//! matrix up to float rounding (the sums run in column order). Cost: `2·nnz·W` flops, no work
//! on pruned entries; an index per kept value, so at 50% density it reads as many bytes as the
//! dense matrix and its limit is the FLOP saving alone.

use super::combine::{KB, RTILE, combine};
use crate::error::{Error, Result};
use rayon::prelude::*;

/// An `[rows, cols]` matrix in CSR form.
#[derive(Debug, Clone)]
pub struct CsrMatrix {
    rows: usize,
    cols: usize,
    offsets: Vec<usize>,
    columns: Vec<u32>,
    values: Vec<f32>,
}

impl CsrMatrix {
    /// Compress row-major `dense: [rows, cols]` keeping the entries where `mask` is non-zero
    /// (a kept zero is stored, so the positions are the mask's). Errors on mismatched lengths or
    /// 2³² columns or more.
    pub fn compress(dense: &[f32], mask: &[u8], rows: usize, cols: usize) -> Result<Self> {
        if dense.len() != rows * cols || mask.len() != rows * cols || cols > u32::MAX as usize {
            return Err(Error::invalid(
                "matrix",
                format!("{} values, {} mask entries", dense.len(), mask.len()),
                format!("expected {rows}x{cols} of each, fewer than 2^32 columns"),
            ));
        }
        let mut offsets = Vec::with_capacity(rows + 1);
        let (mut columns, mut values) = (Vec::new(), Vec::new());
        offsets.push(0);
        for (drow, mrow) in dense.chunks(cols.max(1)).zip(mask.chunks(cols.max(1))) {
            for (c, (&v, &k)) in drow.iter().zip(mrow).enumerate() {
                if k != 0 {
                    columns.push(c as u32);
                    values.push(v);
                }
            }
            offsets.push(values.len());
        }
        offsets.resize(rows + 1, values.len());
        Ok(CsrMatrix {
            rows,
            cols,
            offsets,
            columns,
            values,
        })
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Kept entries.
    pub fn nnz(&self) -> usize {
        self.values.len()
    }

    /// Bytes of the format: values, column indices and row offsets (as `u32`).
    pub fn bytes(&self) -> usize {
        8 * self.nnz() + 4 * (self.rows + 1)
    }

    /// `out = self · b` for row-major `b: [cols, width]`, `out: [rows, width]`.
    pub fn matmul(&self, b: &[f32], width: usize, out: &mut [f32]) -> Result<()> {
        super::check_operands((self.rows, self.cols), b.len(), width, out.len())?;
        if width == 0 || self.rows == 0 {
            return Ok(());
        }
        let threads = rayon::current_num_threads().max(1);
        let chunk = self.rows.div_ceil(4 * threads).max(1);
        // Detected once here, not per piece (it reads the environment).
        let isa = super::Isa::detect();
        if width >= 16 {
            out.par_chunks_mut(chunk * width)
                .enumerate()
                .for_each(|(i, dst)| self.wide(isa, b, width, i * chunk, dst));
        } else {
            let mut bt = vec![0f32; width * self.cols];
            super::transpose(b, self.cols, width, &mut bt);
            out.par_chunks_mut(chunk * width)
                .enumerate()
                .for_each(|(i, dst)| {
                    for (j, o) in dst.chunks_mut(width).enumerate() {
                        let r = i * chunk + j;
                        let (lo, hi) = (self.offsets[r], self.offsets[r + 1]);
                        let (cols, vals) = (&self.columns[lo..hi], &self.values[lo..hi]);
                        for (w, o) in o.iter_mut().enumerate() {
                            let x = &bt[w * self.cols..(w + 1) * self.cols];
                            *o = cols
                                .iter()
                                .zip(vals)
                                .map(|(&c, &v)| v * x[c as usize])
                                .sum();
                        }
                    }
                });
        }
        Ok(())
    }

    /// Rows `r0..` of the wide product into `dst` (whole rows): column tiles of
    /// [`RTILE`], blocks of [`KB`] rows of B, each row's entries in the block by a cursor (the
    /// columns of a row ascend), accumulated in registers ([`combine`]).
    fn wide(&self, isa: super::Isa, b: &[f32], width: usize, r0: usize, dst: &mut [f32]) {
        let rows = dst.len() / width;
        let mut cursor = vec![0usize; rows];
        let mut c0 = 0;
        while c0 < width {
            let c1 = (c0 + RTILE).min(width);
            for (j, cur) in cursor.iter_mut().enumerate() {
                *cur = self.offsets[r0 + j];
            }
            let mut k0 = 0;
            loop {
                let k1 = (k0 + KB).min(self.cols);
                for (j, o) in dst.chunks_mut(width).enumerate() {
                    let end = self.offsets[r0 + j + 1];
                    let from = cursor[j];
                    let mut to = from;
                    while to < end && (self.columns[to] as usize) < k1 {
                        to += 1;
                    }
                    cursor[j] = to;
                    let entries = self.values[from..to]
                        .iter()
                        .zip(&self.columns[from..to])
                        .map(|(&v, &c)| (v, c as usize));
                    combine(isa, entries, b, width, c0, &mut o[c0..c1], k0 == 0);
                }
                if k1 >= self.cols {
                    break;
                }
                k0 = k1;
            }
            c0 = c1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The dense masked product in f64.
    fn reference(a: &[f32], mask: &[u8], b: &[f32], (r, k, w): (usize, usize, usize)) -> Vec<f64> {
        let mut out = vec![0f64; r * w];
        for i in 0..r {
            for j in 0..k {
                if mask[i * k + j] != 0 {
                    for c in 0..w {
                        out[i * w + c] += a[i * k + j] as f64 * b[j * w + c] as f64;
                    }
                }
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn csr_equals_the_dense_masked_product(
            r in 1usize..40, k in 1usize..70, w in prop::sample::select(vec![1usize, 3, 8, 15, 16, 17, 33, 300]),
            density in 0.0f64..1.0, seed in 0u64..1000,
        ) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let a: Vec<f32> = (0..r * k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mask: Vec<u8> = (0..r * k).map(|_| u8::from(rng.random_bool(density))).collect();
            let b: Vec<f32> = (0..k * w).map(|_| rng.random_range(-1.0..1.0)).collect();
            let m = CsrMatrix::compress(&a, &mask, r, k).unwrap();
            prop_assert_eq!(m.nnz(), mask.iter().filter(|&&x| x != 0).count());
            let mut out = vec![f32::NAN; r * w];
            m.matmul(&b, w, &mut out).unwrap();
            let want = reference(&a, &mask, &b, (r, k, w));
            let scale = want.iter().fold(1e-3f64, |s, v| s.max(v.abs()));
            for (g, e) in out.iter().zip(&want) {
                prop_assert!((*g as f64 - e).abs() <= 1e-5 * scale, "{} vs {}", g, e);
            }
        }
    }

    #[test]
    fn bad_shapes_are_refused() {
        assert!(CsrMatrix::compress(&[1.0; 6], &[1; 5], 2, 3).is_err());
        let m = CsrMatrix::compress(&[1.0; 6], &[1; 6], 2, 3).unwrap();
        assert_eq!(m.bytes(), 8 * 6 + 4 * 3);
        assert!(m.matmul(&[0.0; 5], 2, &mut [0.0; 4]).is_err());
    }
}
