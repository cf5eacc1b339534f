//! Tiling a `[out, in]` matrix into M×M blocks (`[B, M, M]`, row-major tiles) and back.
//!
//! This is the one place that knows the block order: tiles run row-major over the tile grid,
//! each tile row-major inside. Solvers see only the `[B, M, M]` batch.

use super::{GroupReport, Mask, Matrix, Pattern};
use crate::error::{Error, Result};

/// The tiling of a `[rows, cols]` matrix into `m×m` blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockShape {
    /// Rows of the matrix.
    pub rows: usize,
    /// Columns of the matrix.
    pub cols: usize,
    /// Block side M.
    pub m: usize,
}

impl BlockShape {
    /// The tiling, or an error if `rows` or `cols` is not a multiple of `m`.
    pub fn new(rows: usize, cols: usize, m: usize) -> Result<Self> {
        if m == 0 || !rows.is_multiple_of(m) || !cols.is_multiple_of(m) {
            return Err(Error::Shape {
                rows,
                cols,
                reason: format!("transposable blocks need out and in to be multiples of M = {m}"),
            });
        }
        Ok(BlockShape { rows, cols, m })
    }

    /// Number of blocks B.
    pub fn count(&self) -> usize {
        (self.rows / self.m) * (self.cols / self.m)
    }

    /// Reorder row-major matrix values into `[B, M, M]` blocks. A strip of M matrix rows is the
    /// same contiguous range in both layouts, so strips are reordered in parallel.
    pub fn gather<T: Copy + Default + Send + Sync>(&self, values: &[T]) -> Vec<T> {
        self.reorder(values, true)
    }

    /// Inverse of [`BlockShape::gather`].
    pub fn scatter<T: Copy + Default + Send + Sync>(&self, blocks: &[T]) -> Vec<T> {
        self.reorder(blocks, false)
    }

    fn reorder<T: Copy + Default + Send + Sync>(&self, from: &[T], to_blocks: bool) -> Vec<T> {
        use rayon::prelude::*;
        let (m, cols) = (self.m, self.cols);
        let mut out = vec![T::default(); from.len()];
        if m == 0 || cols == 0 {
            return out;
        }
        let strip = m * cols;
        out.par_chunks_mut(strip)
            .zip(from.par_chunks(strip))
            .for_each(|(o, f)| {
                for b in 0..cols / m {
                    for i in 0..m {
                        let row = i * cols + b * m;
                        let blk = b * m * m + i * m;
                        if to_blocks {
                            o[blk..blk + m].copy_from_slice(&f[row..row + m]);
                        } else {
                            o[row..row + m].copy_from_slice(&f[blk..blk + m]);
                        }
                    }
                }
            });
        out
    }
}

/// A `[B, M, M]` batch of score blocks cut from a matrix, remembering where they came from.
#[derive(Debug, Clone)]
pub struct Blocks {
    shape: BlockShape,
    data: Vec<f32>,
}

impl Blocks {
    /// Cut `scores` into M×M blocks.
    pub fn from_matrix(scores: &Matrix, m: usize) -> Result<Self> {
        let shape = BlockShape::new(scores.rows(), scores.cols(), m)?;
        Ok(Blocks {
            shape,
            data: shape.gather(scores.data()),
        })
    }

    /// The tiling.
    pub fn shape(&self) -> BlockShape {
        self.shape
    }

    /// The `[B, M, M]` values.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Turn a `[B, M, M]` 0/1 block mask back into a matrix mask.
    pub fn to_mask(&self, keep: &[u8]) -> Result<Mask> {
        Mask::new(self.shape.rows, self.shape.cols, self.shape.scatter(keep))
    }
}

/// Check one M×M 0/1 block: `(over, under)` — some row/column keeps more / fewer than N.
pub fn check_block(keep: &[u8], pattern: Pattern) -> (bool, bool) {
    let m = pattern.m;
    let (mut over, mut under) = (false, false);
    for i in 0..m {
        let row: usize = keep[i * m..(i + 1) * m]
            .iter()
            .map(|&k| (k != 0) as usize)
            .sum();
        let col: usize = (0..m).map(|j| (keep[j * m + i] != 0) as usize).sum();
        over |= row > pattern.n || col > pattern.n;
        under |= row < pattern.n || col < pattern.n;
    }
    (over, under)
}

/// Report over a `[B, M, M]` batch of 0/1 blocks: over-full blocks are infeasible; under-filled
/// counts the feasible blocks that keep fewer than N somewhere.
pub fn report_blocks(keep: &[u8], pattern: Pattern) -> GroupReport {
    let mut report = GroupReport::default();
    for block in keep.chunks(pattern.m * pattern.m) {
        let (over, under) = check_block(block, pattern);
        report.groups += 1;
        report.over += over as usize;
        report.under += (!over && under) as usize;
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_then_scatter_is_identity_and_blocks_are_tiles() -> Result<()> {
        let shape = BlockShape::new(4, 8, 2)?;
        let values: Vec<u32> = (0..32).collect();
        let blocks = shape.gather(&values);
        // Second tile is rows 0..2, cols 2..4.
        assert_eq!(&blocks[4..8], &[2, 3, 10, 11]);
        assert_eq!(shape.scatter(&blocks), values);
        assert_eq!(shape.count(), 8);
        Ok(())
    }
}
