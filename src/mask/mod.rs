//! Mask structures over a 2-D weight `W: [out, in]`: constructors and validators.
//!
//! A [`Mask`] holds one 0/1 byte per weight, row-major. Standard N:M groups run along `in`
//! (consecutive columns of a row); a transposable N:M mask tiles `W` in M×M blocks and keeps N in
//! every row and every column of every block, so `Wᵀ` is N:M too.
//!
//! ```
//! use masklab::mask::{Mask, Matrix, Pattern};
//! let w = Matrix::new(4, 4, (0..16).map(|i| i as f32).collect())?;
//! let p: Pattern = "2:4".parse()?;
//! let m = masklab::solvers::greedy::transposable_mask(&w.abs(), p)?;
//! assert!(m.is_transposable_nm(p)?);
//! assert_eq!(m.sparsity(), 0.5);
//! # Ok::<(), masklab::Error>(())
//! ```

mod pattern;
pub mod score;
mod structure;
pub mod tile;

pub use pattern::{Pattern, elements, parse_size};
pub use structure::Structure;

use crate::error::{Error, Result};

/// A dense row-major `f32` matrix `[rows, cols]`: weights or scores.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    data: Vec<f32>,
}

impl Matrix {
    /// A matrix from row-major data; `data.len()` must be `rows · cols`.
    pub fn new(rows: usize, cols: usize, data: Vec<f32>) -> Result<Self> {
        if data.len() != elements(rows, cols)? {
            return Err(Error::Shape {
                rows,
                cols,
                reason: format!("{} values given, {} needed", data.len(), rows * cols),
            });
        }
        Ok(Matrix { rows, cols, data })
    }

    /// Number of rows (`out`).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (`in`).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The row-major values.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The row-major values, by value.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// Elementwise absolute value: the default score `|W|`.
    pub fn abs(&self) -> Matrix {
        Matrix {
            rows: self.rows,
            cols: self.cols,
            data: self.data.iter().map(|v| v.abs()).collect(),
        }
    }

    /// Elementwise square: the `square` score.
    pub fn square(&self) -> Matrix {
        Matrix {
            rows: self.rows,
            cols: self.cols,
            data: self.data.iter().map(|v| v * v).collect(),
        }
    }
}

/// How well a mask meets a group-count structure: groups checked, over-full and under-filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupReport {
    /// Groups (or blocks) checked.
    pub groups: usize,
    /// Groups in which some row or column keeps more than N: infeasible.
    pub over: usize,
    /// Feasible groups in which some row or column keeps fewer than N.
    pub under: usize,
}

/// A 0/1 mask over a `[rows, cols]` weight; 1 keeps the weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    rows: usize,
    cols: usize,
    keep: Vec<u8>,
}

impl Mask {
    /// A mask from row-major 0/1 bytes (any non-zero byte counts as kept).
    pub fn new(rows: usize, cols: usize, keep: Vec<u8>) -> Result<Self> {
        if keep.len() != elements(rows, cols)? {
            return Err(Error::Shape {
                rows,
                cols,
                reason: format!("{} mask values given, {} needed", keep.len(), rows * cols),
            });
        }
        Ok(Mask {
            rows,
            cols,
            keep: keep.into_iter().map(|k| (k != 0) as u8).collect(),
        })
    }

    /// Number of rows (`out`).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (`in`).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The row-major 0/1 bytes.
    pub fn keep(&self) -> &[u8] {
        &self.keep
    }

    /// Whether weight `(r, c)` is kept.
    pub fn get(&self, r: usize, c: usize) -> bool {
        self.keep[r * self.cols + c] != 0
    }

    /// The mask transposed to `[cols, rows]`.
    pub fn transpose(&self) -> Mask {
        let mut keep = vec![0u8; self.keep.len()];
        for r in 0..self.rows {
            for c in 0..self.cols {
                keep[c * self.rows + r] = self.keep[r * self.cols + c];
            }
        }
        Mask {
            rows: self.cols,
            cols: self.rows,
            keep,
        }
    }

    /// Fraction of weights pruned (0 when the mask is empty).
    pub fn sparsity(&self) -> f64 {
        if self.keep.is_empty() {
            return 0.0;
        }
        let kept: usize = self.keep.iter().map(|&k| k as usize).sum();
        1.0 - kept as f64 / self.keep.len() as f64
    }

    /// Sum of `scores` over kept weights (in f64).
    pub fn kept_score(&self, scores: &Matrix) -> f64 {
        self.keep
            .iter()
            .zip(&scores.data)
            .filter(|(k, _)| **k != 0)
            .map(|(_, s)| *s as f64)
            .sum()
    }

    /// Keep the `round(T·(1−sparsity))` largest scores anywhere (ties: lower index first).
    pub fn unstructured(scores: &Matrix, sparsity: f64) -> Result<Mask> {
        check_sparsity(sparsity)?;
        let total = scores.data.len();
        let kept = ((total as f64) * (1.0 - sparsity)).round() as usize;
        let keep = top_k(&scores.data, kept);
        Ok(Mask {
            rows: scores.rows,
            cols: scores.cols,
            keep,
        })
    }

    /// Keep the `b×b` blocks of largest L2 norm, `round(blocks·(1−sparsity))` of them.
    pub fn block(scores: &Matrix, b: usize, sparsity: f64) -> Result<Mask> {
        check_sparsity(sparsity)?;
        let (rows, cols) = (scores.rows, scores.cols);
        if b == 0 || rows % b != 0 || cols % b != 0 {
            return Err(Error::Shape {
                rows,
                cols,
                reason: format!("not a whole number of {b}x{b} blocks"),
            });
        }
        let (br, bc) = (rows / b, cols / b);
        let mut norms = vec![0f32; br * bc];
        for r in 0..rows {
            for c in 0..cols {
                let v = scores.data[r * cols + c];
                norms[(r / b) * bc + c / b] += v * v;
            }
        }
        let kept = ((norms.len() as f64) * (1.0 - sparsity)).round() as usize;
        let block_keep = top_k(&norms, kept);
        let mut keep = vec![0u8; rows * cols];
        for r in 0..rows {
            for c in 0..cols {
                keep[r * cols + c] = block_keep[(r / b) * bc + c / b];
            }
        }
        Ok(Mask { rows, cols, keep })
    }

    /// Keep the N largest scores of every M consecutive weights along `in` (ties: lower index).
    pub fn nm(scores: &Matrix, pattern: Pattern) -> Result<Mask> {
        let (rows, cols) = (scores.rows, scores.cols);
        check_groups(rows, cols, pattern)?;
        let mut keep = vec![0u8; rows * cols];
        for (group, out) in scores
            .data
            .chunks(pattern.m)
            .zip(keep.chunks_mut(pattern.m))
        {
            out.copy_from_slice(&top_k(group, pattern.n));
        }
        Ok(Mask { rows, cols, keep })
    }

    /// Group report of the standard N:M structure along `in`: over = a group keeps more than N.
    pub fn nm_report(&self, pattern: Pattern) -> Result<GroupReport> {
        check_groups(self.rows, self.cols, pattern)?;
        let mut report = GroupReport::default();
        for group in self.keep.chunks(pattern.m) {
            let kept: usize = group.iter().map(|&k| k as usize).sum();
            report.groups += 1;
            report.over += (kept > pattern.n) as usize;
            report.under += (kept < pattern.n) as usize;
        }
        Ok(report)
    }

    /// Whether every group of M along `in` keeps at most N (the hardware-valid N:M structure).
    pub fn is_nm(&self, pattern: Pattern) -> Result<bool> {
        Ok(self.nm_report(pattern)?.over == 0)
    }

    /// Block report of the transposable structure: per M×M tile, does any row or column keep more
    /// (over) or, if not, fewer (under) than N.
    pub fn transposable_report(&self, pattern: Pattern) -> Result<GroupReport> {
        let blocks = tile::BlockShape::new(self.rows, self.cols, pattern.m)?;
        let keep = blocks.gather(&self.keep);
        Ok(tile::report_blocks(&keep, pattern))
    }

    /// Whether every row and column of every M×M tile keeps at most N.
    pub fn is_transposable_nm(&self, pattern: Pattern) -> Result<bool> {
        Ok(self.transposable_report(pattern)?.over == 0)
    }
}

fn check_sparsity(sparsity: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&sparsity) {
        return Err(Error::invalid("sparsity", sparsity, "must lie in [0, 1]"));
    }
    Ok(())
}

fn check_groups(rows: usize, cols: usize, pattern: Pattern) -> Result<()> {
    if !cols.is_multiple_of(pattern.m) {
        return Err(Error::Shape {
            rows,
            cols,
            reason: format!(
                "in = {cols} is not a multiple of M = {} for pattern {pattern}",
                pattern.m
            ),
        });
    }
    Ok(())
}

/// 0/1 flags keeping the `k` largest values (ties: lower index first; NaN counts as smallest).
pub fn top_k(values: &[f32], k: usize) -> Vec<u8> {
    let mut keep = vec![0u8; values.len()];
    if k >= values.len() {
        keep.iter_mut().for_each(|v| *v = 1);
        return keep;
    }
    if k == 0 {
        return keep;
    }
    let mut idx: Vec<usize> = (0..values.len()).collect();
    let order = |a: &usize, b: &usize| {
        let (va, vb) = (values[*a], values[*b]);
        vb.partial_cmp(&va)
            .unwrap_or_else(|| va.is_nan().cmp(&vb.is_nan()))
            .then(a.cmp(b))
    };
    idx.select_nth_unstable_by(k - 1, order);
    for &i in &idx[..k] {
        keep[i] = 1;
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(rows: usize, cols: usize) -> Matrix {
        Matrix::new(
            rows,
            cols,
            (0..rows * cols).map(|i| ((i * 37) % 101) as f32).collect(),
        )
        .unwrap()
    }

    #[test]
    fn nm_keeps_largest_per_group() -> Result<()> {
        let w = Matrix::new(1, 8, vec![1., 5., 3., 2., 0., 0., 9., 9.])?;
        let m = Mask::nm(&w, Pattern::new(2, 4)?)?;
        assert_eq!(m.keep(), &[0, 1, 1, 0, 0, 0, 1, 1]);
        let r = m.nm_report(Pattern::new(2, 4)?)?;
        assert_eq!(
            r,
            GroupReport {
                groups: 2,
                over: 0,
                under: 0
            }
        );
        assert!(!m.is_nm(Pattern::new(1, 4)?)?);
        Ok(())
    }

    #[test]
    fn shapes_that_do_not_tile_are_errors() {
        let w = ramp(4, 6);
        let err = Mask::nm(&w, Pattern { n: 2, m: 4 })
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("4x6") && err.contains("not a multiple of M = 4"),
            "{err}"
        );
        assert!(Mask::block(&w, 4, 0.5).is_err());
    }

    #[test]
    fn unstructured_and_block_hit_the_sparsity() -> Result<()> {
        let w = ramp(8, 8);
        assert_eq!(Mask::unstructured(&w, 0.25)?.sparsity(), 0.25);
        let b = Mask::block(&w, 2, 0.5)?;
        assert_eq!(b.sparsity(), 0.5);
        // Every 2x2 block is all kept or all pruned.
        for r in (0..8).step_by(2) {
            for c in (0..8).step_by(2) {
                let s = b.get(r, c) as u8
                    + b.get(r + 1, c) as u8
                    + b.get(r, c + 1) as u8
                    + b.get(r + 1, c + 1) as u8;
                assert!(s == 0 || s == 4);
            }
        }
        Ok(())
    }

    #[test]
    fn validators_flag_over_and_under_full_blocks() -> Result<()> {
        let p = Pattern::new(2, 4)?;
        // Block 1 keeps 3 in row 0 (over); block 2 is empty (under).
        let mut keep = vec![0u8; 4 * 8];
        keep[0] = 1;
        keep[1] = 1;
        keep[2] = 1;
        let m = Mask::new(4, 8, keep)?;
        assert_eq!(
            m.transposable_report(p)?,
            GroupReport {
                groups: 2,
                over: 1,
                under: 1
            }
        );
        assert!(!m.is_transposable_nm(p)?);
        Ok(())
    }
}

/// Property tests of the constructors and validators over random shapes, 0 and 1 included; its
/// strategies serve the solvers' property tests too.
#[cfg(test)]
pub(crate) mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Patterns N:M with M ≤ 4.
    pub(crate) fn pattern() -> impl Strategy<Value = Pattern> {
        (1usize..=4).prop_flat_map(|m| (1..=m).prop_map(move |n| Pattern { n, m }))
    }

    /// Score matrices up to 9×9, empty ones included.
    pub(crate) fn scores() -> impl Strategy<Value = Matrix> {
        (0usize..=9, 0usize..=9).prop_flat_map(|(r, c)| {
            proptest::collection::vec(0f32..10.0, r * c)
                .prop_map(move |d| Matrix::new(r, c, d).expect("sized"))
        })
    }

    proptest! {
        #[test]
        fn nm_masks_exist_exactly_when_rows_tile_and_keep_n_per_group(w in scores(), p in pattern()) {
            let m = Mask::nm(&w, p);
            prop_assert_eq!(m.is_ok(), w.cols() % p.m == 0);
            if let Ok(m) = m {
                let r = m.nm_report(p)?;
                prop_assert_eq!((r.over, r.under), (0, 0));
                prop_assert_eq!(r.groups, w.rows() * w.cols() / p.m);
                prop_assert!(m.is_nm(p)?);
            }
        }

        #[test]
        fn unstructured_and_block_masks_keep_the_asked_share(
            w in scores(), s in 0.0f64..=1.0, b in 1usize..=4,
        ) {
            let t = w.rows() * w.cols();
            let kept = |m: &Mask| m.keep().iter().filter(|&&k| k == 1).count();
            let u = Mask::unstructured(&w, s)?;
            prop_assert_eq!(kept(&u), ((t as f64) * (1.0 - s)).round() as usize);
            let blk = Mask::block(&w, b, s);
            prop_assert_eq!(blk.is_ok(), w.rows() % b == 0 && w.cols() % b == 0);
            if let Ok(m) = blk {
                let blocks = t / (b * b);
                let kept_blocks = ((blocks as f64) * (1.0 - s)).round() as usize;
                prop_assert_eq!(kept(&m), kept_blocks * b * b);
            }
            prop_assert!(Mask::unstructured(&w, s + 1.5).is_err());
        }

        #[test]
        fn validators_accept_only_their_shapes_and_never_panic(
            rows in 0usize..=9, cols in 0usize..=9, len in 0usize..=100, p in pattern(),
            bits in proptest::collection::vec(0u8..=1, 81),
        ) {
            prop_assert_eq!(Mask::new(rows, cols, vec![1; len]).is_ok(), len == rows * cols);
            let m = Mask::new(rows, cols, bits[..rows * cols].to_vec())?;
            let nm = m.nm_report(p);
            prop_assert_eq!(nm.is_ok(), cols % p.m == 0);
            let tr = m.transposable_report(p);
            prop_assert_eq!(tr.is_ok(), rows % p.m == 0 && cols % p.m == 0);
            if let Ok(r) = tr {
                prop_assert_eq!(r.groups, rows * cols / (p.m * p.m));
            }
        }
    }
}
