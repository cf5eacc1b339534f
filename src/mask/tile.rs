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

    /// [`BlockShape::gather`] in place: no second copy of the matrix, one strip of scratch per
    /// thread (a large fresh allocation costs more than the reorder itself).
    pub fn gather_in_place<T: Copy + Default + Send + Sync>(&self, values: &mut [T]) {
        self.reorder_in_place(values, true)
    }

    /// [`BlockShape::scatter`] in place.
    pub fn scatter_in_place<T: Copy + Default + Send + Sync>(&self, blocks: &mut [T]) {
        self.reorder_in_place(blocks, false)
    }

    fn reorder<T: Copy + Default + Send + Sync>(&self, from: &[T], to_blocks: bool) -> Vec<T> {
        use rayon::prelude::*;
        let mut out = vec![T::default(); from.len()];
        if self.m == 0 || self.cols == 0 {
            return out;
        }
        let strip = self.m * self.cols;
        out.par_chunks_mut(strip)
            .zip(from.par_chunks(strip))
            .for_each(|(o, f)| self.reorder_strip(f, o, to_blocks));
        out
    }

    fn reorder_in_place<T: Copy + Default + Send + Sync>(&self, data: &mut [T], to_blocks: bool) {
        use rayon::prelude::*;
        if self.m == 0 || self.cols == 0 {
            return;
        }
        let strip = self.m * self.cols;
        data.par_chunks_mut(strip).for_each_init(
            || vec![T::default(); strip],
            |scratch, s| {
                scratch.copy_from_slice(s);
                self.reorder_strip(scratch, s, to_blocks);
            },
        );
    }

    /// One strip of M rows (`m · cols` values, a whole strip of the matrix), row-major `from`
    /// into block order `to`: the piece of [`BlockShape::gather`] a strip-wise reader uses.
    pub fn gather_strip<T: Copy>(&self, from: &[T], to: &mut [T]) {
        self.reorder_strip(from, to, true)
    }

    /// One strip of M rows: row-major `from` into blocks `to` (or back).
    fn reorder_strip<T: Copy>(&self, from: &[T], to: &mut [T], to_blocks: bool) {
        let (m, cols) = (self.m, self.cols);
        for b in 0..cols / m {
            for i in 0..m {
                let row = i * cols + b * m;
                let blk = b * m * m + i * m;
                if to_blocks {
                    to[blk..blk + m].copy_from_slice(&from[row..row + m]);
                } else {
                    to[row..row + m].copy_from_slice(&from[blk..blk + m]);
                }
            }
        }
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

    /// Blocks already in `[B, M, M]` order for `shape` (e.g. from
    /// [`crate::io::checkpoint::Checkpoint::read_f32_blocks`]).
    pub fn from_tiled(shape: BlockShape, data: Vec<f32>) -> Result<Self> {
        if data.len() != shape.rows * shape.cols {
            return Err(Error::Shape {
                rows: shape.rows,
                cols: shape.cols,
                reason: format!("{} values for the blocks", data.len()),
            });
        }
        Ok(Blocks { shape, data })
    }

    /// Cut `scores` into M×M blocks in place, reusing its buffer.
    pub fn from_matrix_owned(scores: Matrix, m: usize) -> Result<Self> {
        let shape = BlockShape::new(scores.rows(), scores.cols(), m)?;
        let mut data = scores.into_data();
        shape.gather_in_place(&mut data);
        Ok(Blocks { shape, data })
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

    /// [`Blocks::to_mask`] reusing `keep`'s buffer; the scores are dropped first.
    pub fn into_mask(self, mut keep: Vec<u8>) -> Result<Mask> {
        let shape = self.shape;
        drop(self);
        if keep.len() != shape.rows * shape.cols {
            return Err(Error::Shape {
                rows: shape.rows,
                cols: shape.cols,
                reason: format!("{} mask values for {} blocks", keep.len(), shape.count()),
            });
        }
        shape.scatter_in_place(&mut keep);
        Mask::new(shape.rows, shape.cols, keep)
    }
}

/// Check one M×M 0/1 block: `(over, under)` — some row/column keeps more / fewer than N.
#[inline]
pub fn check_block(keep: &[u8], pattern: Pattern) -> (bool, bool) {
    let m = pattern.m;
    if m > 64 {
        return check_block_wide(keep, pattern);
    }
    // One row-major pass: row counts as they complete, column counts in a small array.
    let (mut over, mut under) = (false, false);
    let mut cols = [0u32; 64];
    for row in keep.chunks_exact(m.max(1)).take(m) {
        let mut kept = 0u32;
        for (c, &k) in cols.iter_mut().zip(row) {
            let k = (k != 0) as u32;
            *c += k;
            kept += k;
        }
        over |= kept as usize > pattern.n;
        under |= (kept as usize) < pattern.n;
    }
    for &c in &cols[..m] {
        over |= c as usize > pattern.n;
        under |= (c as usize) < pattern.n;
    }
    (over, under)
}

/// [`check_block`] for M > 64.
fn check_block_wide(keep: &[u8], pattern: Pattern) -> (bool, bool) {
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
        let mut in_place = values.clone();
        shape.gather_in_place(&mut in_place);
        assert_eq!(in_place, blocks);
        shape.scatter_in_place(&mut in_place);
        assert_eq!(in_place, values);
        Ok(())
    }

    #[test]
    fn block_check_agrees_with_the_wide_check_on_every_small_block() -> Result<()> {
        // Every 0/1 3×3 block (512) for N = 1, 2: the one-pass check and the per-line check.
        for n in 1..=2 {
            let pattern = Pattern::new(n, 3)?;
            for bits in 0u32..512 {
                let keep: Vec<u8> = (0..9).map(|i| ((bits >> i) & 1) as u8).collect();
                assert_eq!(
                    check_block(&keep, pattern),
                    check_block_wide(&keep, pattern)
                );
            }
        }
        // A 2:4 block that is over-full in one column only.
        let pattern = Pattern::new(2, 4)?;
        let keep = [1, 1, 0, 0, 1, 0, 1, 0, 1, 0, 0, 1, 0, 1, 1, 0];
        assert_eq!(check_block(&keep, pattern), (true, true));
        Ok(())
    }

    #[test]
    fn owned_tiling_round_trips_a_mask() -> Result<()> {
        let scores = Matrix::new(4, 8, (0..32).map(|v| v as f32).collect())?;
        let copy = Blocks::from_matrix(&scores, 2)?;
        let owned = Blocks::from_matrix_owned(scores, 2)?;
        assert_eq!(owned.data(), copy.data());
        let keep: Vec<u8> = (0..32).map(|i| (i % 3 == 0) as u8).collect();
        assert_eq!(owned.into_mask(keep.clone())?, copy.to_mask(&keep)?);
        Ok(())
    }
}
