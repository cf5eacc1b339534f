//! Block sparse row (BSR) storage of a block mask, and its "sparse rows × dense" kernel.
//!
//! Problem: `C = A·B` for `A: [R, K]` tiled in `b×b` blocks of which some are kept whole (a
//! block mask) and a dense row-major `B: [K, W]`. Format: per block row, the kept blocks'
//! column indices (`u32`) and their `b×b` values, dense and row-major, plus block-row offsets —
//! `4·b²` bytes of values and 4 of index per kept block. Kernel: with 16 or more columns of `B`,
//! each row of a kept block combines its `b` contiguous rows of `B` into the output row's tile
//! of 128 columns held in registers (AVX-512, AVX2+FMA or plain code, chosen at run time), over
//! blocks of K whose rows of `B` stay in L1 while the block row uses them; below 16 columns, `B` is transposed once and each output entry is a sum of
//! contiguous dot products of length `b`. Block rows are split over rayon's threads.
//! Guarantee: the product equals the dense product of the masked matrix up to float rounding.
//! Cost: `2·kept·W` flops; the index is one `u32` per `b²` values, so the byte limit is nearly
//! the density's inverse.

use super::combine::{KB, RTILE, combine};
use crate::error::{Error, Result};
use rayon::prelude::*;

/// An `[rows, cols]` matrix in BSR form with `b×b` blocks.
#[derive(Debug, Clone)]
pub struct BsrMatrix {
    rows: usize,
    cols: usize,
    b: usize,
    offsets: Vec<usize>,
    block_cols: Vec<u32>,
    values: Vec<f32>,
}

impl BsrMatrix {
    /// Compress row-major `dense: [rows, cols]` keeping every `b×b` block that has a non-zero
    /// entry of `mask` (whole, so a block mask's blocks exactly). Errors unless `b` tiles both
    /// sides or on mismatched lengths.
    pub fn compress(
        dense: &[f32],
        mask: &[u8],
        rows: usize,
        cols: usize,
        b: usize,
    ) -> Result<Self> {
        if dense.len() != rows * cols
            || mask.len() != rows * cols
            || b == 0
            || !rows.is_multiple_of(b)
            || !cols.is_multiple_of(b)
        {
            return Err(Error::invalid(
                "matrix",
                format!(
                    "{} values, {} mask entries, blocks of {b}",
                    dense.len(),
                    mask.len()
                ),
                format!("expected {rows}x{cols} of each, tiled by {b}x{b} blocks"),
            ));
        }
        let (brows, bcols) = (rows / b, cols / b);
        let mut offsets = Vec::with_capacity(brows + 1);
        let (mut block_cols, mut values) = (Vec::new(), Vec::new());
        offsets.push(0);
        for br in 0..brows {
            for bc in 0..bcols {
                let at = |i: usize, j: usize| (br * b + i) * cols + bc * b + j;
                let kept = (0..b).any(|i| (0..b).any(|j| mask[at(i, j)] != 0));
                if kept {
                    block_cols.push(bc as u32);
                    for i in 0..b {
                        values.extend_from_slice(&dense[at(i, 0)..at(i, 0) + b]);
                    }
                }
            }
            offsets.push(block_cols.len());
        }
        Ok(BsrMatrix {
            rows,
            cols,
            b,
            offsets,
            block_cols,
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

    /// Kept blocks.
    pub fn blocks(&self) -> usize {
        self.block_cols.len()
    }

    /// Stored values (`b²` per kept block).
    pub fn kept(&self) -> usize {
        self.values.len()
    }

    /// Bytes of the format: values, block column indices and block-row offsets (as `u32`).
    pub fn bytes(&self) -> usize {
        4 * self.values.len() + 4 * self.blocks() + 4 * (self.rows / self.b + 1)
    }

    /// `out = self · b` for row-major `b: [cols, width]`, `out: [rows, width]`.
    pub fn matmul(&self, bm: &[f32], width: usize, out: &mut [f32]) -> Result<()> {
        super::check_operands((self.rows, self.cols), bm.len(), width, out.len())?;
        if width == 0 || self.rows == 0 {
            return Ok(());
        }
        let b = self.b;
        // Detected once here, not per piece (it reads the environment).
        let isa = super::Isa::detect();
        if width >= 16 {
            out.par_chunks_mut(b * width)
                .enumerate()
                .for_each(|(br, dst)| self.wide(isa, bm, width, br, dst));
        } else {
            let mut bt = vec![0f32; width * self.cols];
            super::transpose(bm, self.cols, width, &mut bt);
            out.par_chunks_mut(b * width)
                .enumerate()
                .for_each(|(br, dst)| {
                    dst.fill(0.0);
                    for e in self.offsets[br]..self.offsets[br + 1] {
                        let c0 = self.block_cols[e] as usize * b;
                        let block = &self.values[e * b * b..(e + 1) * b * b];
                        for (i, o) in dst.chunks_mut(width).enumerate() {
                            let vals = &block[i * b..(i + 1) * b];
                            for (w, o) in o.iter_mut().enumerate() {
                                let x = &bt[w * self.cols + c0..w * self.cols + c0 + b];
                                *o += vals.iter().zip(x).map(|(v, x)| v * x).sum::<f32>();
                            }
                        }
                    }
                });
        }
        Ok(())
    }

    /// Block row `br` of the wide product into `dst` (its `b` rows): column tiles of
    /// [`RTILE`], each row's tile accumulated in registers over all its kept blocks
    /// ([`combine`]; the block row's rows of B, `kept blocks × b`, are reused by its `b` rows).
    fn wide(&self, isa: super::Isa, bm: &[f32], width: usize, br: usize, dst: &mut [f32]) {
        let b = self.b;
        let (e0, e1) = (self.offsets[br], self.offsets[br + 1]);
        // Blocks of K a whole number of b-wide block columns, near KB rows of B.
        let kb = KB.div_ceil(b) * b;
        let mut c0 = 0;
        while c0 < width {
            let c1 = (c0 + RTILE).min(width);
            let (mut from, mut k0) = (e0, 0);
            loop {
                let k1 = (k0 + kb).min(self.cols);
                let mut to = from;
                while to < e1 && (self.block_cols[to] as usize) * b < k1 {
                    to += 1;
                }
                for (i, o) in dst.chunks_mut(width).enumerate() {
                    let entries = (from..to).flat_map(|e| {
                        let k = self.block_cols[e] as usize * b;
                        let row = &self.values[e * b * b + i * b..e * b * b + (i + 1) * b];
                        row.iter().enumerate().map(move |(j, &v)| (v, k + j))
                    });
                    combine(isa, entries, bm, width, c0, &mut o[c0..c1], k0 == 0);
                }
                from = to;
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

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]
        #[test]
        fn bsr_equals_the_dense_masked_product(
            b in prop::sample::select(vec![1usize, 2, 4, 8, 16]), br in 1usize..6, bc in 1usize..24,
            w in prop::sample::select(vec![1usize, 5, 15, 16, 17, 40, 300]),
            density in 0.0f64..1.0, seed in 0u64..1000,
        ) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let (r, k) = (br * b, bc * b);
            let a: Vec<f32> = (0..r * k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let blocks: Vec<bool> = (0..br * bc).map(|_| rng.random_bool(density)).collect();
            let mask: Vec<u8> = (0..r * k)
                .map(|i| u8::from(blocks[(i / k / b) * bc + (i % k) / b]))
                .collect();
            let x: Vec<f32> = (0..k * w).map(|_| rng.random_range(-1.0..1.0)).collect();
            let m = BsrMatrix::compress(&a, &mask, r, k, b).unwrap();
            prop_assert_eq!(m.blocks(), blocks.iter().filter(|&&k| k).count());
            let mut out = vec![f32::NAN; r * w];
            m.matmul(&x, w, &mut out).unwrap();
            let mut want = vec![0f64; r * w];
            for i in 0..r {
                for j in 0..k {
                    if mask[i * k + j] != 0 {
                        for c in 0..w {
                            want[i * w + c] += a[i * k + j] as f64 * x[j * w + c] as f64;
                        }
                    }
                }
            }
            let scale = want.iter().fold(1e-3f64, |s, v| s.max(v.abs()));
            for (g, e) in out.iter().zip(&want) {
                prop_assert!((*g as f64 - e).abs() <= 1e-5 * scale, "{} vs {}", g, e);
            }
        }
    }

    #[test]
    fn blocks_that_do_not_tile_are_refused() {
        assert!(BsrMatrix::compress(&[0.0; 12], &[1; 12], 3, 4, 2).is_err());
        let m = BsrMatrix::compress(&[1.0; 16], &[1; 16], 4, 4, 2).unwrap();
        assert_eq!((m.blocks(), m.bytes()), (4, 4 * 16 + 4 * 4 + 4 * 3));
    }
}
