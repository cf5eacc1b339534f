//! The N:M compressed format and its "N:M rows × dense" product.
//!
//! Problem: `C = A·B` for `A: [R, K]` whose rows keep N of every M consecutive entries (N:M
//! along the reduction dimension K) and a dense row-major `B: [K, C]`. The three training GEMMs
//! are this product on the right operand (see [`super`]): forward `Yᵀ = (W⊙m)·Xᵀ`, backward
//! `dXᵀ = (W⊙m)ᵀ·dYᵀ` for a transposable mask, update `dW = ĝᵀ·X` with ĝ N:M along the batch.
//!
//! Format: `values: [R, K·N/M]` (the kept entries of each row, group by group, in column order)
//! and, per kept entry, its position inside its group of M, packed in `bits` = 1, 2, 4 or 8 bits
//! (the power of two ≥ ⌈log2 M⌉: 2 bits for M = 4, 4 bits for M = 8 and 16, 8 for M = 32 —
//! powers of two so that 8 or 16 positions unpack with one shift per SIMD lane). A group that
//! keeps fewer than N (an under-filled or an estimator's mask) is padded with zero-valued
//! entries, so every group holds exactly N and the column of entry `k` of a row is
//! `(k / N)·M + position`.
//!
//! Kernels: for `C ≥ 16` columns of B, each kept entry is one broadcast times a contiguous row
//! of B (no gather), over tiles of 128 columns of B (eight FMA chains) and blocks of 64 rows of
//! K packed contiguously into L1 (a K of at most 256 — the update's batch — is one block, so each
//! output is written once); for `C < 16` (batch 1 to 15: a matrix–vector product per column), 16
//! (AVX-512) or 8 (AVX2) kept entries at a time are unpacked, their columns formed, and the
//! matching entries of B's column fetched by one two-register permute (AVX-512, when 16 entries
//! span at most 32 columns: M/N ≤ 2) or a gather; batch 1 runs four such chunks per step into
//! four register accumulators. AVX-512, AVX2+FMA or plain scalar code is
//! chosen at run time ([`Isa::detect`]); all three give the same result up to rounding.
//!
//! Guarantee: equals the dense product `A_dense·B` (with `A_dense` zero off the mask) within
//! f32 rounding (1e-5 relative, property-tested over shapes, patterns and widths of B).
//! Cost: `R·K·N/M·C` multiply-adds; reads `A` once per 128-column tile of B (`4 + bits/8`
//! bytes per kept entry) and packs each block of B once per row chunk. Rows are split over the
//! rayon pool. At 16 or more columns the decoded offsets (4 bytes per kept entry) are kept with
//! the matrix, and so is a block-major copy of values past 1 MiB (both read block by block,
//! contiguously). Each multiply-add reads its B vector from L1, so at large batch the kernel is
//! bound by the core's L1-operand FMA rate, not by its FMA ports ([`super::probe`] measures
//! both; table7's `l1_limit`).

use super::Isa;
use super::element::{Dtype, Element};
use crate::error::{Error, Result};
use crate::mask::Pattern;
use half::bf16;
use rayon::prelude::*;

/// A matrix whose rows are N:M along their columns, compressed (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct NmMatrix {
    rows: usize,
    cols: usize,
    pattern: Pattern,
    bits: usize,
    values: Vec<f32>,
    index: Vec<u8>,
    index_stride: usize,
    /// The positions decoded for the tiled SpMM, made on its first use and kept (the positions
    /// never change; [`NmMatrix::refill`] changes values only): per kept entry, its row in the
    /// packed block of B times the tile width, so the kernel's inner loop reads an offset
    /// instead of unpacking bits. As many bytes as the values: the SpMM runs at 16 or more
    /// columns of B, where the product is bound by its FLOPs, not by these bytes. Block-major
    /// (see [`block_major`]).
    block_offsets: std::sync::OnceLock<Vec<u32>>,
    /// The values in the same block-major order, for a matrix of at least
    /// [`BLOCK_MAJOR_BYTES`] of values that are not transient; made on the tiled SpMM's first
    /// use.
    block_values: std::sync::OnceLock<Vec<f32>>,
    /// The values serve one product or a few (refilled at every training step, or a step's
    /// neural gradient from [`NmMatrix::compress_transposed_nonzero`]): the SpMM reads them as
    /// stored, since a block-major copy costs a pass over them, about what it saves.
    transient: bool,
    /// The values in bf16 (`values` then holds the same numbers widened), read by the
    /// matrix–vector kernels, where bytes bound the product: `Some` after
    /// [`NmMatrix::to_bf16`].
    half: Option<Vec<bf16>>,
}

/// Where entry `k0 + e` of row `r` sits in a block-major array of an [`NmMatrix`] with `rows`
/// rows: the block of the kernel's K blocking that starts at kept entry `k0` (every block
/// before it full) holds all rows' entries of that block, row after row, `nk` each. The tiled
/// SpMM walks each block's rows in order, so these arrays stream contiguously; the row-major
/// values would be read `kept` entries apart (a page apart at 4096 columns): a C model of the
/// kernel (scripts/bench/nm_insitu.c) ran 10–25% faster with block-major streams than with
/// row-major ones prefetched a row group ahead.
fn block_major(rows: usize, r: usize, k0: usize, nk: usize) -> usize {
    k0 * rows + r * nk
}

/// The operands the tiled SpMM reads ([`NmMatrix::tiled`]).
struct Tiled<'a> {
    /// Decoded offsets, block-major.
    offsets: &'a [u32],
    /// The values: block-major (`major`) or as stored.
    values: &'a [f32],
    major: bool,
    rows: usize,
    kept: usize,
}

impl Tiled<'_> {
    /// Start of row `r`'s entries of the block at kept entry `k0` (`nk` long) in `values`.
    #[inline(always)]
    fn value_at(&self, r: usize, k0: usize, nk: usize) -> usize {
        if self.major {
            block_major(self.rows, r, k0, nk)
        } else {
            r * self.kept + k0
        }
    }

    /// The same in `offsets`.
    #[inline(always)]
    fn offset_at(&self, r: usize, k0: usize, nk: usize) -> usize {
        block_major(self.rows, r, k0, nk)
    }
}

/// Bytes of values from which the tiled SpMM keeps a block-major copy of them (unless the
/// matrix is transient): below it the values sit in L2 and the row-major reads cost little.
const BLOCK_MAJOR_BYTES: usize = 1 << 20;

/// For each stored value of an [`NmMatrix`], its index in the dense matrix it is refilled from
/// (`u32::MAX`: a filler that stays zero); see [`NmMatrix::slot_map`].
#[derive(Debug, Clone)]
pub struct SlotMap {
    slots: Vec<u32>,
    /// The order in which [`NmMatrix::refill`] visits the slots: empty for storage order (a
    /// row-major source read along its rows); for a strided source (a transpose) tile by tile,
    /// so that both the reads and the writes stay within a few pages and cache lines.
    order: Vec<u32>,
    /// Entries the dense matrix must have.
    len: usize,
}

/// Bits per packed position for groups of `m` (a power of two ≥ ⌈log2 m⌉).
pub fn index_bits(m: usize) -> usize {
    match m {
        0..=2 => 1,
        3..=4 => 2,
        5..=16 => 4,
        _ => 8,
    }
}

/// Refuses a pattern the kernels do not take (M > 32).
fn supported(pattern: Pattern) -> Result<()> {
    if pattern.m > 32 {
        return Err(Error::Unsupported {
            what: format!("N:M kernels for pattern {pattern}"),
            reason: "M ≤ 32".into(),
        });
    }
    Ok(())
}

/// Bytes per row of packed positions for `kept` entries of `bits` bits, padded so that a SIMD
/// unpack's fixed-size read never leaves the row.
fn index_stride(kept: usize, bits: usize) -> usize {
    ((kept * bits).div_ceil(8) + 16).next_multiple_of(16)
}

impl NmMatrix {
    /// Compress row-major `dense: [rows, cols]` under `mask` (non-zero keeps): each group of
    /// `pattern.m` consecutive entries of a row may keep at most `pattern.n`. Errors: `cols`
    /// not a multiple of M, M > 32, lengths that do not match, a group keeping more than N
    /// (naming its row and column).
    pub fn compress(
        dense: &[f32],
        mask: &[u8],
        rows: usize,
        cols: usize,
        pattern: Pattern,
    ) -> Result<Self> {
        let (n, m) = (pattern.n, pattern.m);
        supported(pattern)?;
        if !cols.is_multiple_of(m) {
            return Err(Error::Shape {
                rows,
                cols,
                reason: format!("{cols} columns are not whole groups of M = {m}"),
            });
        }
        if dense.len() != rows * cols || mask.len() != rows * cols {
            return Err(Error::invalid(
                "matrix",
                format!("{} values, {} mask entries", dense.len(), mask.len()),
                format!("expected {rows}x{cols} = {}", rows * cols),
            ));
        }
        let bits = index_bits(m);
        let kept = cols / m * n;
        let index_stride = index_stride(kept, bits);
        let mut values = vec![0f32; rows * kept];
        let mut index = vec![0u8; rows * index_stride];
        for r in 0..rows {
            let (vrow, irow) = (
                &mut values[r * kept..(r + 1) * kept],
                &mut index[r * index_stride..(r + 1) * index_stride],
            );
            let mut k = 0;
            for g in 0..cols / m {
                let at = r * cols + g * m;
                let group = &mask[at..at + m];
                let on = group.iter().filter(|&&x| x != 0).count();
                if on > n {
                    return Err(Error::invalid(
                        "mask",
                        format!("row {r}, columns {}..{}", g * m, g * m + m),
                        format!("keeps {on}, more than N = {n} of pattern {pattern}"),
                    ));
                }
                // Kept positions, then (for an under-filled group) the first pruned ones as
                // zero-valued fillers, all in column order.
                let mut fill = n - on;
                for (j, &x) in group.iter().enumerate() {
                    let filler = x == 0 && fill > 0;
                    if x != 0 || filler {
                        if filler {
                            fill -= 1;
                        }
                        vrow[k] = if x != 0 { dense[at + j] } else { 0.0 };
                        let bit = k * bits;
                        irow[bit / 8] |= (j as u8) << (bit % 8);
                        k += 1;
                    }
                }
            }
        }
        Ok(NmMatrix {
            rows,
            cols,
            pattern,
            bits,
            values,
            index,
            index_stride,
            block_offsets: std::sync::OnceLock::new(),
            block_values: std::sync::OnceLock::new(),
            transient: false,
            half: None,
        })
    }

    /// Compress the transpose of row-major `g: [rows, cols]` — `gᵀ: [cols, rows]`, N:M along
    /// `g`'s rows, as a neural-gradient estimator prunes the batch — keeping `g`'s non-zero
    /// entries: the update GEMM's operand, made once per training step. One pass over `g`
    /// (column tiles of 64, strip of M rows by strip) with no mask array; 2:4 on AVX-512 makes a
    /// transposed copy first and then compresses 16 values per register compress. Under-filled
    /// groups are padded as [`NmMatrix::compress`] pads them. Errors: `rows` not a multiple of M,
    /// M > 32, `g` of another length, a group with more than N non-zeros (naming its column and
    /// rows).
    pub fn compress_transposed_nonzero(
        g: &[f32],
        rows: usize,
        cols: usize,
        pattern: Pattern,
    ) -> Result<Self> {
        Self::compress_transposed_nonzero_on(Isa::detect(), g, rows, cols, pattern)
    }

    /// [`NmMatrix::compress_transposed_nonzero`] on the given instruction set (the tests run
    /// each; `isa` must be one this CPU has).
    fn compress_transposed_nonzero_on(
        isa: Isa,
        g: &[f32],
        rows: usize,
        cols: usize,
        pattern: Pattern,
    ) -> Result<Self> {
        let (n, m) = (pattern.n, pattern.m);
        supported(pattern)?;
        if !rows.is_multiple_of(m) || g.len() != rows * cols {
            return Err(Error::Shape {
                rows,
                cols,
                reason: format!(
                    "{} values; the rows must be whole groups of M = {m} (the N:M axis)",
                    g.len()
                ),
            });
        }
        let bits = index_bits(m);
        let kept = rows / m * n;
        let index_stride = index_stride(kept, bits);
        let mut values = vec![0f32; cols * kept];
        let mut index = vec![0u8; cols * index_stride];
        let over = |c: usize, s: usize, count: usize| {
            Error::invalid(
                "gradient",
                format!("column {c}, rows {}..{}", s * m, s * m + m),
                format!("{count} non-zeros, more than N = {n} of pattern {pattern}"),
            )
        };
        // The estimators' 2:4 on AVX-512: transposed once (contiguous groups), then 16 values at
        // a time; else group by group down the columns of `g`, in column tiles.
        if !compress_2of4_fast(
            isa,
            pattern,
            g,
            rows,
            cols,
            &mut values,
            &mut index,
            index_stride,
        )
        .map_err(|(c, s, count)| over(c, s, count))?
        {
            const COLS: usize = 64;
            for c0 in (0..cols).step_by(COLS) {
                for c in c0..(c0 + COLS).min(cols) {
                    let (vrow, irow) = (
                        &mut values[c * kept..(c + 1) * kept],
                        &mut index[c * index_stride..(c + 1) * index_stride],
                    );
                    for s in 0..rows / m {
                        put_group(|i| g[(s * m + i) * cols + c], pattern, bits, s, vrow, irow)
                            .map_err(|count| over(c, s, count))?;
                    }
                }
            }
        }
        Ok(NmMatrix {
            rows: cols,
            cols: rows,
            pattern,
            bits,
            values,
            index,
            index_stride,
            block_offsets: std::sync::OnceLock::new(),
            block_values: std::sync::OnceLock::new(),
            transient: true,
            half: None,
        })
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns (the reduction dimension K).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The pattern.
    pub fn pattern(&self) -> Pattern {
        self.pattern
    }

    /// Kept entries per row (`K·N/M`).
    pub fn kept_per_row(&self) -> usize {
        self.cols / self.pattern.m * self.pattern.n
    }

    /// Bits per packed position.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// Bytes of the compressed operand as a kernel streams it: values and packed positions
    /// (without the row padding of the position array).
    pub fn bytes(&self) -> usize {
        self.values.len() * self.dtype().bytes()
            + self.rows * (self.kept_per_row() * self.bits).div_ceil(8)
    }

    /// The value type the matrix–vector kernels read.
    pub fn dtype(&self) -> Dtype {
        if self.half.is_some() {
            Dtype::Bf16
        } else {
            Dtype::F32
        }
    }

    /// The same matrix with its values rounded to bf16 (ties to even) and stored as bf16 for
    /// the matrix–vector kernels (below 16 columns of B, where the bytes of A bound the
    /// product: 2 bytes a value instead of 4). The tiled kernel (16 columns or more, bound by
    /// its multiply-adds) reads the rounded values as `f32`, which the matrix keeps too.
    pub fn to_bf16(mut self) -> Self {
        let mut half = vec![bf16::ZERO; self.values.len()];
        round_to_bf16(&mut self.values, &mut half);
        self.half = Some(half);
        self.block_values.take();
        self
    }

    /// Position inside its group of kept entry `k` of row `r`.
    #[inline(always)]
    fn position(&self, r: usize, k: usize) -> usize {
        let bit = k * self.bits;
        let byte = self.index[r * self.index_stride + bit / 8];
        ((byte >> (bit % 8)) as usize) & ((1 << self.bits) - 1)
    }

    /// Column of kept entry `k` of row `r`.
    #[inline(always)]
    fn column(&self, r: usize, k: usize) -> usize {
        k / self.pattern.n * self.pattern.m + self.position(r, k)
    }

    /// The dense matrix (zeros off the mask), row-major.
    pub fn to_dense(&self) -> Vec<f32> {
        let kept = self.kept_per_row();
        let mut out = vec![0f32; self.rows * self.cols];
        for r in 0..self.rows {
            for k in 0..kept {
                out[r * self.cols + self.column(r, k)] += self.values[r * kept + k];
            }
        }
        out
    }

    /// Where each stored value comes from in a dense matrix whose entry `(r, c)` is at
    /// `r·rs + c·cs` (`rs = cols, cs = 1` for the row-major matrix this one was compressed from;
    /// `rs = 1, cs = rows` for its transpose), given that matrix's 0/1 `keep` mask (same layout):
    /// a filler slot of an under-filled group maps to nothing and stays zero. With the map,
    /// [`NmMatrix::refill`] refreshes the values after the dense matrix changes (a training
    /// step) without recomputing the mask. Errors when `keep` is too short for the strides or
    /// the matrix has 2³² entries or more.
    pub fn slot_map(&self, keep: &[f32], rs: usize, cs: usize) -> Result<SlotMap> {
        let len = if self.rows == 0 || self.cols == 0 {
            0
        } else {
            (self.rows - 1) * rs + (self.cols - 1) * cs + 1
        };
        if len > keep.len() || len >= u32::MAX as usize {
            return Err(Error::invalid(
                "matrix",
                format!("{} mask entries", keep.len()),
                format!(
                    "expected {}x{} at strides ({rs}, {cs}), fewer than 2^32 entries",
                    self.rows, self.cols
                ),
            ));
        }
        let (n, m) = (self.pattern.n, self.pattern.m);
        let kept = self.kept_per_row();
        let mut slots = Vec::with_capacity(self.values.len());
        for r in 0..self.rows {
            let mut group_col = 0;
            for k in 0..kept {
                let at = r * rs + (group_col + self.position(r, k)) * cs;
                slots.push(if keep[at] != 0.0 { at as u32 } else { u32::MAX });
                if (k + 1) % n == 0 {
                    group_col += m;
                }
            }
        }
        // A strided source read in storage order jumps a page per entry: visit 32×32 tiles,
        // band of REFILL_BAND rows by band (so that a band's slots are a contiguous run of
        // `order` and of the values, and bands can be refilled in parallel).
        let mut order = Vec::new();
        if cs != 1 && self.rows > 0 && kept > 0 {
            const T: usize = REFILL_BAND;
            order.reserve(slots.len());
            let mut cursor: Vec<usize> = (0..self.rows).map(|r| r * kept).collect();
            for r0 in (0..self.rows).step_by(T) {
                for col_end in (1..=self.cols.div_ceil(T)).map(|b| (b * T).min(self.cols)) {
                    for (r, cur) in cursor.iter_mut().enumerate().skip(r0).take(T) {
                        while *cur < (r + 1) * kept && self.column(r, *cur - r * kept) < col_end {
                            order.push(*cur as u32);
                            *cur += 1;
                        }
                    }
                }
            }
        }
        Ok(SlotMap { slots, order, len })
    }

    /// Refresh the stored values from `dense` through `map` (from [`NmMatrix::slot_map`] of
    /// this matrix): positions unchanged, each value read from its dense entry, fillers zero.
    /// Errors when the map is another matrix's or `dense` is shorter than the map's layout.
    pub fn refill(&mut self, dense: &[f32], map: &SlotMap) -> Result<()> {
        if map.slots.len() != self.values.len() || dense.len() < map.len {
            return Err(Error::invalid(
                "matrix",
                format!("{} values, map of {} slots", dense.len(), map.slots.len()),
                format!(
                    "expected {} values and {} slots",
                    map.len,
                    self.values.len()
                ),
            ));
        }
        // A refilled matrix (a training step's weights) streams its values as stored: remaking
        // the block-major copy at every step costs a pass over the values, about what it saves.
        self.block_values.take();
        self.transient = true;
        // `at < map.len ≤ dense.len()` for every mapped slot (checked when the map was made).
        let value = |at: u32| {
            if at == u32::MAX {
                0.0
            } else {
                dense[at as usize]
            }
        };
        // Bands of REFILL_BAND rows, split over the fork's threads (serial inside a fork): a
        // band's values are one contiguous run, and so are its slots in `order`.
        let band = REFILL_BAND * self.kept_per_row().max(1);
        if map.order.is_empty() {
            crate::par::chunks_mut(&mut self.values, band, |i, vals| {
                for (v, &at) in vals.iter_mut().zip(&map.slots[i * band..]) {
                    *v = value(at);
                }
            });
        } else {
            crate::par::chunks_mut(&mut self.values, band, |i, vals| {
                let base = i * band;
                for &s in &map.order[base..base + vals.len()] {
                    vals[s as usize - base] = value(map.slots[s as usize]);
                }
            });
        }
        if let Some(half) = &mut self.half {
            round_to_bf16(&mut self.values, half);
        }
        Ok(())
    }

    /// Columns per K block of the tiled SpMM (a short K, up to [`SHORT_K`], is one block,
    /// written once per tile).
    fn kblock(&self) -> usize {
        if self.cols <= SHORT_K {
            self.cols
        } else {
            KBLOCK
        }
    }

    /// Kept entries per K block of the tiled SpMM.
    fn kblock_kept(&self) -> usize {
        self.kblock() / self.pattern.m * self.pattern.n
    }

    /// The values in [`block_major`] order into `out` (as long as the values), a block per
    /// piece of work over the fork's threads (serial inside one: the training step's).
    fn fill_block_major(&self, out: &mut [f32]) {
        let (kept, kbk) = (self.kept_per_row(), self.kblock_kept());
        if kept == 0 {
            return;
        }
        crate::par::chunks_mut(out, self.rows * kbk, |b, block| {
            let k0 = b * kbk;
            let nk = kbk.min(kept - k0);
            for r in 0..self.rows {
                let at = block_major(self.rows, r, k0, nk) - k0 * self.rows;
                block[at..at + nk].copy_from_slice(&self.values[r * kept + k0..r * kept + k0 + nk]);
            }
        });
    }

    /// The tiled SpMM's operands: the decoded offsets (made on first use) and the values,
    /// block-major where the matrix keeps a copy ([`BLOCK_MAJOR_BYTES`], not transient).
    fn tiled(&self) -> Tiled<'_> {
        let (kept, kbk) = (self.kept_per_row(), self.kblock_kept());
        let offsets = self.block_offsets.get_or_init(|| {
            let mut o = vec![0u32; self.rows * kept];
            let mut k0 = 0;
            while k0 < kept {
                let nk = kbk.min(kept - k0);
                for r in 0..self.rows {
                    let at = block_major(self.rows, r, k0, nk);
                    block_offsets(self, r, k0, &mut o[at..at + nk]);
                }
                k0 += nk;
            }
            o
        });
        let major = (self.values.len() * 4 >= BLOCK_MAJOR_BYTES && !self.transient).then(|| {
            self.block_values.get_or_init(|| {
                let mut v = vec![0f32; self.values.len()];
                self.fill_block_major(&mut v);
                v
            })
        });
        Tiled {
            offsets,
            values: major.map_or(&self.values, |v| v.as_slice()),
            major: major.is_some(),
            rows: self.rows,
            kept,
        }
    }

    /// `out = self · b` for row-major `b: [cols, width]`, `out: [rows, width]`, on the best
    /// instruction set here.
    pub fn matmul(&self, b: &[f32], width: usize, out: &mut [f32]) -> Result<()> {
        self.matmul_with(Isa::detect(), b, width, out)
    }

    /// [`NmMatrix::matmul`] on a given instruction set (tests and benchmarks of each path; an
    /// `isa` the CPU lacks is an error).
    pub fn matmul_with(&self, isa: Isa, b: &[f32], width: usize, out: &mut [f32]) -> Result<()> {
        self.product(isa, Dense::Rows(b), width, out)
    }

    /// `out = self · btᵀ` for `bt: [width, cols]` (B given by its transpose, row-major: a
    /// training step's activations or gradients as they are, batch first), on `isa`. The wide
    /// kernel transposes B's tiles as it packs them, so no transposed copy is made; below 16
    /// columns `bt` is what the matrix-vector kernels read anyway.
    pub fn matmul_t_with(&self, isa: Isa, bt: &[f32], width: usize, out: &mut [f32]) -> Result<()> {
        self.product(isa, Dense::Transposed(bt), width, out)
    }

    fn product(&self, isa: Isa, b: Dense<'_>, width: usize, out: &mut [f32]) -> Result<()> {
        super::check_operands((self.rows, self.cols), b.data().len(), width, out.len())?;
        isa.check()?;
        if width == 0 || self.rows == 0 {
            return Ok(());
        }
        if width >= 16 {
            self.spmm(isa, b, width, out);
        } else {
            // Columns of B contiguous, then a matrix-vector product per column, all columns
            // in one pass over A.
            let bt = self.columns_of(b, width);
            self.spmv(isa, &bt, width, out);
        }
        Ok(())
    }

    /// B's columns as rows (`[width, cols]`): `b` itself when given transposed.
    fn columns_of<'b>(&self, b: Dense<'b>, width: usize) -> std::borrow::Cow<'b, [f32]> {
        match b {
            Dense::Transposed(bt) => std::borrow::Cow::Borrowed(bt),
            Dense::Rows(b) => {
                let mut bt = vec![0f32; width * self.cols];
                super::transpose(b, self.cols, width, &mut bt);
                std::borrow::Cow::Owned(bt)
            }
        }
    }

    /// Rows `rows` of `self · b` into `out` (`[rows.len(), width]`) on the calling thread
    /// alone, on the best instruction set here: for callers that split the work themselves (a
    /// training step's fork-join, where a rayon loop must not run).
    pub fn matmul_rows(
        &self,
        b: &[f32],
        width: usize,
        rows: std::ops::Range<usize>,
        out: &mut [f32],
    ) -> Result<()> {
        self.rows_of_product(Dense::Rows(b), width, rows, out)
    }

    /// [`NmMatrix::matmul_rows`] with B given by its transpose `bt: [width, cols]` (see
    /// [`NmMatrix::matmul_t_with`]).
    pub fn matmul_rows_t(
        &self,
        bt: &[f32],
        width: usize,
        rows: std::ops::Range<usize>,
        out: &mut [f32],
    ) -> Result<()> {
        self.rows_of_product(Dense::Transposed(bt), width, rows, out)
    }

    fn rows_of_product(
        &self,
        b: Dense<'_>,
        width: usize,
        rows: std::ops::Range<usize>,
        out: &mut [f32],
    ) -> Result<()> {
        let len = b.data().len();
        if len != self.cols * width || rows.end > self.rows || out.len() != rows.len() * width {
            return Err(Error::invalid(
                "operands",
                format!("b {len} values, rows {rows:?}, out {} values", out.len()),
                format!(
                    "expected b [{}, {width}], rows within 0..{} and out [rows, {width}]",
                    self.cols, self.rows
                ),
            ));
        }
        let isa = Isa::detect();
        if width == 0 || rows.is_empty() {
            return Ok(());
        }
        if width >= 16 {
            self.spmm_part(isa, b, width, rows.start, rows.len(), out);
        } else {
            let bt = self.columns_of(b, width);
            for (j, o) in out.chunks_mut(width).enumerate() {
                self.spmv_one(isa, rows.start + j, &bt, o);
            }
        }
        Ok(())
    }

    /// Rows per parallel task: enough work to amortise the split.
    fn row_chunk(&self, work_per_row: usize) -> usize {
        let threads = rayon::current_num_threads().max(1);
        let by_threads = self.rows.div_ceil(threads * 4);
        let min_rows = (1 << 16) / work_per_row.max(1);
        by_threads.max(min_rows).clamp(1, self.rows.max(1))
    }

    /// `C ≥ 16`: tiles of 64 columns of B, blocks of K, one broadcast-multiply-add per kept
    /// entry and 16 columns.
    fn spmm(&self, isa: Isa, b: Dense<'_>, width: usize, out: &mut [f32]) {
        let kept = self.kept_per_row();
        let chunk = self.row_chunk(kept * width);
        out.par_chunks_mut(chunk * width)
            .enumerate()
            .for_each(|(i, dst)| self.spmm_part(isa, b, width, i * chunk, dst.len() / width, dst));
    }

    /// Rows `r0..r0+rows` of the tiled SpMM into `dst`, on this thread.
    fn spmm_part(
        &self,
        isa: Isa,
        b: Dense<'_>,
        width: usize,
        r0: usize,
        rows: usize,
        dst: &mut [f32],
    ) {
        match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: callers checked (`Isa::check`) or detected AVX-512F on this CPU.
            Isa::Avx512 => unsafe { spmm_avx512(self, b, width, r0, rows, dst) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: callers checked (`Isa::check`) or detected AVX2 and FMA on this CPU.
            Isa::Avx2 => unsafe { spmm_avx2(self, b, width, r0, rows, dst) },
            _ => spmm_body(self, b, width, r0, rows, dst, |a, v, x| a + v * x),
        }
    }

    /// `C < 16`: per row, kept entries 16 (or 8) at a time against each column of B (`bt`:
    /// B's columns as rows).
    fn spmv(&self, isa: Isa, bt: &[f32], width: usize, out: &mut [f32]) {
        let kept = self.kept_per_row();
        let chunk = self.row_chunk(kept * width);
        out.par_chunks_mut(chunk * width)
            .enumerate()
            .for_each(|(i, dst)| {
                for (j, o) in dst.chunks_mut(width).enumerate() {
                    self.spmv_one(isa, i * chunk + j, bt, o);
                }
            });
    }

    /// Row `r` against every column of B (`bt`: B's columns as rows) into `o`, on this thread,
    /// reading the values in bf16 where the matrix has them.
    fn spmv_one(&self, isa: Isa, r: usize, bt: &[f32], o: &mut [f32]) {
        match &self.half {
            Some(half) => self.spmv_one_in(isa, half, r, bt, o),
            None => self.spmv_one_in(isa, &self.values, r, bt, o),
        }
    }

    /// [`NmMatrix::spmv_one`] reading the values from `vals` (this matrix's, in one type).
    fn spmv_one_in<E: Element>(&self, isa: Isa, vals: &[E], r: usize, bt: &[f32], o: &mut [f32]) {
        match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: callers checked (`Isa::check`) or detected AVX-512F on this CPU.
            Isa::Avx512 => unsafe {
                // Batches 1 to 8 have their own kernels where the pattern allows; 9 to 15
                // run as 8 and the rest (two passes over the row instead of four).
                let done = if o.len() > 8 {
                    let (o8, rest) = o.split_at_mut(8);
                    spmv_cols_up_to_8(self, vals, r, &bt[..8 * self.cols], o8)
                        && spmv_cols_up_to_8(self, vals, r, &bt[8 * self.cols..], rest)
                } else {
                    spmv_cols_up_to_8(self, vals, r, bt, o)
                };
                if !done {
                    spmv_row_avx512(self, vals, r, bt, o)
                }
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: callers checked (`Isa::check`) or detected AVX2 and FMA on this CPU.
            Isa::Avx2 => unsafe { spmv_row_avx2(self, vals, r, bt, o) },
            _ => spmv_row_scalar(self, vals, r, 0, bt, o),
        }
    }
}

/// `half` = `values` rounded to bf16, and `values` the same numbers widened back.
fn round_to_bf16(values: &mut [f32], half: &mut [bf16]) {
    for (v, h) in values.iter_mut().zip(half) {
        *h = bf16::from_f32(*v);
        *v = h.widen();
    }
}

/// The dense operand B of a product `A·B`: row-major `[K, width]`, or given by its transpose
/// (`[width, K]`, row-major).
#[derive(Clone, Copy)]
enum Dense<'a> {
    Rows(&'a [f32]),
    Transposed(&'a [f32]),
}

impl Dense<'_> {
    fn data(&self) -> &[f32] {
        match self {
            Dense::Rows(d) | Dense::Transposed(d) => d,
        }
    }

    /// Rows `col0..col1` of B, columns `c0..c0+w`, into `packed` ([`TILE`] floats a row), each
    /// row zero-filled from `w` to `fill` (≥ `w`). B's rows are `k` long in the transposed
    /// layout, `width` long in the row-major one.
    #[inline(always)]
    fn pack(
        &self,
        k: usize,
        width: usize,
        (c0, w): (usize, usize),
        (col0, col1): (usize, usize),
        packed: &mut [f32],
        fill: usize,
    ) {
        let rows = col1 - col0;
        match *self {
            Dense::Rows(b) => {
                for (i, col) in (col0..col1).enumerate() {
                    let row = &mut packed[i * TILE..i * TILE + fill];
                    row[..w].copy_from_slice(&b[col * width + c0..col * width + c0 + w]);
                    row[w..].fill(0.0);
                }
            }
            Dense::Transposed(bt) => {
                // 16×16 pieces through a local square: sixteen 64-byte reads along B's rows, then
                // sixteen 64-byte writes along the packed rows (element by element, both sides'
                // strides fall into a few cache sets and evict each other).
                let mut square = [[0f32; 16]; 16];
                for j0 in (0..w).step_by(16) {
                    let jn = (w - j0).min(16);
                    for i0 in (0..rows).step_by(16) {
                        let ind = (rows - i0).min(16);
                        for (jj, line) in square.iter_mut().enumerate().take(jn) {
                            let at = (c0 + j0 + jj) * k + col0 + i0;
                            line[..ind].copy_from_slice(&bt[at..at + ind]);
                        }
                        for ii in 0..ind {
                            let dst =
                                &mut packed[(i0 + ii) * TILE + j0..(i0 + ii) * TILE + j0 + jn];
                            for (jj, d) in dst.iter_mut().enumerate() {
                                *d = square[jj][ii];
                            }
                        }
                    }
                }
                if fill > w {
                    for i in 0..rows {
                        packed[i * TILE + w..i * TILE + fill].fill(0.0);
                    }
                }
            }
        }
    }
}

/// Group `s` of a compressed row (`x(i)`, i < M: the group's values in order) into entries
/// `s·N..s·N+N` of `vrow` and their packed positions in `irow`: the non-zeros, then the first zero
/// positions as fillers (so positions ascend as in [`NmMatrix::compress`]). `Err(count)` when
/// more than N are non-zero. `irow` starts zeroed.
#[inline(always)]
fn put_group(
    x: impl Fn(usize) -> f32,
    pattern: Pattern,
    bits: usize,
    s: usize,
    vrow: &mut [f32],
    irow: &mut [u8],
) -> std::result::Result<(), usize> {
    let (n, m) = (pattern.n, pattern.m);
    let mut on = 0u32;
    for i in 0..m {
        if x(i) != 0.0 {
            on |= 1 << i;
        }
    }
    let count = on.count_ones() as usize;
    if count > n {
        return Err(count);
    }
    for _ in count..n {
        on |= 1 << (!on).trailing_zeros();
    }
    let mut k = s * n;
    while on != 0 {
        let i = on.trailing_zeros() as usize;
        on &= on - 1;
        vrow[k] = x(i);
        let bit = k * bits;
        irow[bit / 8] |= (i as u8) << (bit % 8);
        k += 1;
    }
    Ok(())
}

/// [`NmMatrix::compress_transposed_nonzero`]'s fast path: for 2:4 on AVX-512, `g: [rows, cols]`
/// transposed once and its rows compressed by [`compress_rows_2of4_avx512`]. `Ok(false)` (nothing
/// written) for other patterns or instruction sets; `Err((column, group, count))` as that
/// function's.
#[allow(clippy::too_many_arguments)]
fn compress_2of4_fast(
    isa: Isa,
    pattern: Pattern,
    g: &[f32],
    rows: usize,
    cols: usize,
    values: &mut [f32],
    index: &mut [u8],
    stride: usize,
) -> std::result::Result<bool, (usize, usize, usize)> {
    #[cfg(target_arch = "x86_64")]
    if (pattern.n, pattern.m) == (2, 4) && isa == Isa::Avx512 {
        let mut gt = vec![0f32; rows * cols];
        super::transpose(g, rows, cols, &mut gt);
        // SAFETY: AVX-512F was detected on this CPU (`isa`); `gt` is `[cols, rows]` with `rows`
        // whole groups of 4 (checked by the caller), `values` and `index` hold `cols` rows of
        // `rows/2` values and `stride` bytes.
        unsafe { compress_rows_2of4_avx512(&gt, rows, cols, values, index, stride) }?;
        return Ok(true);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (isa, pattern, g, rows, cols, values, index, stride);
    Ok(false)
}

/// 2:4 rows of `gt: [cols, rows]` (groups contiguous along each row) compressed by their
/// non-zeros into `values: [cols, rows/2]` and `index` (`stride` bytes a row, zeroed): 16 values
/// (four groups) per step, the eight non-zeros packed by one compress and stored, their positions
/// by a table, when every group has exactly two; other groups (fillers, or an error) and a
/// row's last groups go through [`put_group`]. `Err((column, group, count))` for a group with
/// more than two non-zeros.
///
/// # Safety
/// The CPU must have AVX-512F; `gt.len() ≥ rows·cols`, `rows` a multiple of 4, `values` at least
/// `cols·rows/2` long and `index` `cols·stride`, `stride ≥ rows/4` bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
// SAFETY: unsafe for its target feature (callers detect AVX-512F) and its one raw load and one
// raw store, each justified where it is made; every other access is bounds-checked.
unsafe fn compress_rows_2of4_avx512(
    gt: &[f32],
    rows: usize,
    cols: usize,
    values: &mut [f32],
    index: &mut [u8],
    stride: usize,
) -> std::result::Result<(), (usize, usize, usize)> {
    use std::arch::x86_64::*;
    // Packed positions (2 bits each) of a group's two set bits, by its 4-bit non-zero mask.
    const fn lut() -> [u16; 16] {
        let mut t = [0u16; 16];
        let mut k = 0;
        while k < 16 {
            if (k as u32).count_ones() == 2 {
                let p0 = (k as u32).trailing_zeros();
                let p1 = ((k & (k - 1)) as u32).trailing_zeros();
                t[k] = (p0 | (p1 << 2)) as u16;
            }
            k += 1;
        }
        t
    }
    const LUT: [u16; 16] = lut();
    let pattern = Pattern { n: 2, m: 4 };
    let kept = rows / 2;
    for c in 0..cols {
        let src = &gt[c * rows..(c + 1) * rows];
        let vrow = &mut values[c * kept..(c + 1) * kept];
        let irow = &mut index[c * stride..(c + 1) * stride];
        let mut q = 0;
        while 16 * (q + 1) <= rows {
            // SAFETY: values 16q..16q+16 of this row are inside `src` (loop condition).
            let v = unsafe { _mm512_loadu_ps(src.as_ptr().add(16 * q)) };
            let k: u16 = _mm512_cmpneq_ps_mask(v, _mm512_setzero_ps());
            // Non-zeros per group, one nibble each.
            let x = k - ((k >> 1) & 0x5555);
            let x = (x & 0x3333) + ((x >> 2) & 0x3333);
            if x == 0x2222 {
                // The eight kept values packed in a register, then one 256-bit store (a
                // compress straight to memory is microcoded and slow on AMD's AVX-512 cores).
                let packed = _mm512_castps512_ps256(_mm512_maskz_compress_ps(k, v));
                // SAFETY: eight floats at 8q..8q+8 ≤ kept (as 16q + 16 ≤ rows).
                unsafe { _mm256_storeu_ps(vrow.as_mut_ptr().add(8 * q), packed) };
                let idx = LUT[(k & 15) as usize]
                    | (LUT[((k >> 4) & 15) as usize] << 4)
                    | (LUT[((k >> 8) & 15) as usize] << 8)
                    | (LUT[(k >> 12) as usize] << 12);
                irow[2 * q..2 * q + 2].copy_from_slice(&idx.to_le_bytes());
            } else {
                for s in 4 * q..4 * q + 4 {
                    put_group(|i| src[s * 4 + i], pattern, 2, s, vrow, irow)
                        .map_err(|count| (c, s, count))?;
                }
            }
            q += 1;
        }
        for s in 4 * q..rows / 4 {
            put_group(|i| src[s * 4 + i], pattern, 2, s, vrow, irow)
                .map_err(|count| (c, s, count))?;
        }
    }
    Ok(())
}

/// Rows per band of [`NmMatrix::refill`] (and of a strided slot map's tile order).
const REFILL_BAND: usize = 32;

/// Rows of A the AVX-512 SpMM takes at once (3 × 8 accumulators of 16 lanes).
const ROWS_AT_ONCE: usize = 3;
/// Columns of B per register tile (8 AVX-512 accumulators: eight independent FMA chains).
const TILE: usize = 128;
/// Columns of K per block (a multiple of every M ≤ 32): the block's B rows, one tile wide, are
/// packed into 32 KiB (L1) before the rows use them.
const KBLOCK: usize = 64;
/// K up to which the whole of K is one block. Equal to [`KBLOCK`], so that the packed block of B
/// always fits L1: a whole K of 256 (128 KiB, in L2) measured slower with the three-row AVX-512
/// kernel (256×784 batch-128 update, K = 128: 0.73× → 0.83–0.96× of dense), and no different
/// on the AVX2 path.
const SHORT_K: usize = 64;

/// The tiled SpMM over rows `r0..r0+rows` into `dst` (those rows of the output), with `fma`
/// the multiply-add of the instruction set it is compiled for (the AVX2 and scalar paths). For
/// each tile of [`TILE`] columns of B and block of [`KBLOCK`] rows of B, that block is first
/// packed contiguously and 64-byte aligned: rows of B read in place lie a whole row of B apart,
/// and at power-of-two widths they fall into the same few cache sets and evict each other. Each
/// row then reads its kept entries' values and decoded offsets as the AVX-512 kernel does
/// ([`NmMatrix::tiled`]: no bit unpacking per entry), one row at a time. Decoding per entry and
/// handling only tile widths 16, 32, 64 and 128 in registers, this path ran 0.32–0.47× of
/// (AVX-512) dense at 4096², batch 32–128; with the offsets and all widths 0.66–0.93×.
#[inline(always)]
fn spmm_body(
    a: &NmMatrix,
    b: Dense<'_>,
    width: usize,
    r0: usize,
    rows: usize,
    dst: &mut [f32],
    fma: impl Fn(f32, f32, f32) -> f32 + Copy,
) {
    let kept = a.kept_per_row();
    let (kblock, kblock_kept) = (a.kblock(), a.kblock_kept());
    let t = a.tiled();
    let (mut packed_buf, align) = super::aligned_zeros(kblock * TILE);
    let packed = &mut packed_buf[align..align + kblock * TILE];
    let mut c0 = 0;
    while c0 < width {
        let w = (width - c0).min(TILE);
        let mut k0 = 0;
        let mut col0 = 0;
        while k0 < kept {
            let k1 = (k0 + kblock_kept).min(kept);
            let nk = k1 - k0;
            let col1 = (col0 + kblock).min(a.cols);
            b.pack(a.cols, width, (c0, w), (col0, col1), packed, w);
            for j in 0..rows {
                let r = r0 + j;
                let vals = &t.values[t.value_at(r, k0, nk)..][..nk];
                let offs = &t.offsets[t.offset_at(r, k0, nk)..][..nk];
                let out = &mut dst[j * width + c0..j * width + c0 + w];
                // The next row's values and offsets for this block, on their way to L1 while
                // this row computes (row-major values lie a whole row apart).
                #[cfg(target_arch = "x86_64")]
                if j + 1 < rows {
                    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
                    let next_v = &t.values[t.value_at(r + 1, k0, nk)..][..nk];
                    let next_o = &t.offsets[t.offset_at(r + 1, k0, nk)..][..nk];
                    for line in (0..nk).step_by(16) {
                        // SAFETY: prefetches of addresses inside `next_v` and `next_o`; a
                        // prefetch reads nothing.
                        unsafe {
                            _mm_prefetch::<_MM_HINT_T0>(next_v[line..].as_ptr().cast());
                            _mm_prefetch::<_MM_HINT_T0>(next_o[line..].as_ptr().cast());
                        }
                    }
                }
                // The first block starts from zero (the output is not read before it is written).
                tile_row(vals, offs, packed, col0 == 0, out, fma);
            }
            k0 = k1;
            col0 = col1;
        }
        c0 += w;
    }
}

/// One row's kept entries of a block (`vals`, with their packed-row offsets `offs`) against the
/// packed B rows into `out` (`w ≤ TILE` columns; `first`: the output starts from zero): the
/// CSR/BSR register tile ([`super::combine`]) with each entry's packed row at its offset.
#[inline(always)]
fn tile_row(
    vals: &[f32],
    offs: &[u32],
    packed: &[f32],
    first: bool,
    out: &mut [f32],
    fma: impl Fn(f32, f32, f32) -> f32 + Copy,
) {
    let entries = vals.iter().zip(offs).map(|(&v, &o)| (v, o as usize));
    super::combine::body(entries, packed, 1, 0, out, first, fma)
}

/// The tiled SpMM with AVX-512 intrinsics: the same loop as [`spmm_body`] (tiles of 128
/// columns of B, blocks of K packed into L1), but [`ROWS_AT_ONCE`] rows at a time (24 register
/// accumulators, so as many independent FMA chains), the positions read as offsets of the
/// packed B rows decoded once per matrix (`block_offsets`), the next rows' values, offsets and
/// output prefetched, and each kept entry one broadcast and `W/16` FMAs whose B operand is read
/// straight from L1. A tile narrower than 128 takes `⌈w/16⌉` vectors, the last one masked.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
// SAFETY: unsafe only for its target feature: callers run it where the CPU has AVX-512F
// (`Isa::check`/`Isa::detect`); every raw access inside is justified where it is made.
unsafe fn spmm_avx512(
    a: &NmMatrix,
    b: Dense<'_>,
    width: usize,
    r0: usize,
    rows: usize,
    dst: &mut [f32],
) {
    let kept = a.kept_per_row();
    let (kblock, kblock_kept) = (a.kblock(), a.kblock_kept());
    let (mut packed_buf, align) = super::aligned_zeros(kblock * TILE);
    let packed = &mut packed_buf[align..align + kblock * TILE];
    let t = a.tiled();
    let mut c0 = 0;
    while c0 < width {
        let w = (width - c0).min(TILE);
        let vecs = w.div_ceil(16);
        // Lanes of the last vector that belong to the tile.
        let tail: u16 = if w.is_multiple_of(16) {
            0xffff
        } else {
            (1u16 << (w % 16)) - 1
        };
        let (mut k0, mut col0) = (0, 0);
        while k0 < kept {
            let k1 = (k0 + kblock_kept).min(kept);
            let col1 = (col0 + kblock).min(a.cols);
            b.pack(a.cols, width, (c0, w), (col0, col1), packed, vecs * 16);
            let nk = k1 - k0;
            let first = col0 == 0;
            let mut j = 0;
            while j < rows {
                let pair = (rows - j).min(ROWS_AT_ONCE);
                // The next pair's values and offsets in this block: row-major values sit
                // `kept` entries apart (often 4 KiB or more), which the hardware prefetchers
                // do not follow (block-major ones are contiguous, and this costs little).
                for i in pair..2 * pair {
                    if j + i < rows {
                        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
                        let r = r0 + j + i;
                        let (at_v, at_o) = (t.value_at(r, k0, nk), t.offset_at(r, k0, nk));
                        for e in (0..nk).step_by(16) {
                            // Entries `at + e` (e < nk) of row r's block are inside both arrays.
                            // SAFETY: prefetches of in-bounds addresses; a prefetch reads nothing.
                            unsafe {
                                _mm_prefetch::<_MM_HINT_T0>(t.values.as_ptr().add(at_v + e).cast());
                                _mm_prefetch::<_MM_HINT_T0>(
                                    t.offsets.as_ptr().add(at_o + e).cast(),
                                );
                            }
                        }
                        if !first {
                            // And its output tile, read back as the accumulators' start.
                            let out = (j + i) * width + c0;
                            for v in 0..vecs {
                                // Inside row j + i of `dst`, within the tile (`16·v < w`).
                                // SAFETY: an in-bounds prefetch; it reads nothing.
                                unsafe {
                                    _mm_prefetch::<_MM_HINT_T0>(
                                        dst.as_ptr().add(out + 16 * v).cast(),
                                    )
                                };
                            }
                        }
                    }
                }
                // Meets tile_avx512's contract: rows r0+j..r0+j+pair have `nk` values and
                // decoded offsets for this block at `t.value_at` and `t.offset_at`; every offset
                // is (row of the block)·TILE with that row below kblock, so `offset + vecs·16 ≤
                // packed.len()`; the output pointers address `w` floats of rows j..j+pair of
                // `dst` at column c0.
                // SAFETY: the pointers and the kernel call stay within those bounds (above).
                unsafe {
                    let vals = |i: usize| t.values.as_ptr().add(t.value_at(r0 + j + i, k0, nk));
                    let offp = |i: usize| t.offsets.as_ptr().add(t.offset_at(r0 + j + i, k0, nk));
                    let base = dst.as_mut_ptr();
                    let outp = |i: usize| base.add((j + i) * width + c0);
                    let ctx = Tile {
                        nk,
                        packed: packed.as_ptr(),
                        tail,
                        first,
                    };
                    // `RR` rows' pointers, then the tile kernel for the tile's vector count.
                    macro_rules! rows {
                        ($rr:literal) => {{
                            let v: [*const f32; $rr] = std::array::from_fn(vals);
                            let o: [*const u32; $rr] = std::array::from_fn(offp);
                            let d: [*mut f32; $rr] = std::array::from_fn(outp);
                            match vecs {
                                8 => tile_avx512::<8, $rr>(&ctx, v, o, d),
                                7 => tile_avx512::<7, $rr>(&ctx, v, o, d),
                                6 => tile_avx512::<6, $rr>(&ctx, v, o, d),
                                5 => tile_avx512::<5, $rr>(&ctx, v, o, d),
                                4 => tile_avx512::<4, $rr>(&ctx, v, o, d),
                                3 => tile_avx512::<3, $rr>(&ctx, v, o, d),
                                2 => tile_avx512::<2, $rr>(&ctx, v, o, d),
                                _ => tile_avx512::<1, $rr>(&ctx, v, o, d),
                            }
                        }};
                    }
                    match pair {
                        3 => rows!(3),
                        2 => rows!(2),
                        _ => rows!(1),
                    }
                }
                j += pair;
            }
            k0 = k1;
            col0 = col1;
        }
        c0 += w;
    }
}

/// Offsets into the packed B block (`(group row + position)·TILE`) of row `r`'s kept entries
/// `k0..k0+out.len()` (`k0` a whole number of groups).
#[inline(always)]
fn block_offsets(a: &NmMatrix, r: usize, k0: usize, out: &mut [u32]) {
    let (n, m) = (a.pattern.n, a.pattern.m);
    let bits = a.bits;
    let index = &a.index[r * a.index_stride..(r + 1) * a.index_stride];
    let mask = (1usize << bits) - 1;
    let (mut group_row, mut in_group) = (0, 0);
    let mut bit = k0 * bits;
    for o in out.iter_mut() {
        let pos = (index[bit / 8] as usize >> (bit % 8)) & mask;
        *o = ((group_row + pos) * TILE) as u32;
        bit += bits;
        in_group += 1;
        if in_group == n {
            in_group = 0;
            group_row += m;
        }
    }
}

/// What the rows of one tile and block share in [`tile_avx512`].
#[cfg(target_arch = "x86_64")]
struct Tile {
    /// Kept entries in the block.
    nk: usize,
    /// The packed B block (`TILE` floats a row).
    packed: *const f32,
    /// Lanes of the last vector inside the tile.
    tail: u16,
    /// The output starts from zero (first block) instead of being read.
    first: bool,
}

/// `RR` rows' kept entries of one block against the packed B rows, `V` vectors of the tile in
/// registers per row.
///
/// # Safety
/// The CPU has AVX-512F; for each row `t`, `vals[t]` and `offs[t]` hold `ctx.nk` entries,
/// `ctx.packed + offs[t][e]` holds `16·V` floats, and `out[t]` addresses the tile's `16·(V−1)`
/// floats plus the `tail` lanes of the last vector.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
// SAFETY: unsafe for its target feature and raw pointers: callers meet the contract above.
unsafe fn tile_avx512<const V: usize, const RR: usize>(
    ctx: &Tile,
    vals: [*const f32; RR],
    offs: [*const u32; RR],
    out: [*mut f32; RR],
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); V]; RR];
    // SAFETY: every raw access is within the bounds of the function's contract.
    unsafe {
        if !ctx.first {
            for (row, o) in acc.iter_mut().zip(out) {
                for (v, a) in row.iter_mut().enumerate() {
                    *a = if v + 1 == V {
                        _mm512_maskz_loadu_ps(ctx.tail, o.add(16 * v))
                    } else {
                        _mm512_loadu_ps(o.add(16 * v))
                    };
                }
            }
        }
        for e in 0..ctx.nk {
            for t in 0..RR {
                let p = ctx.packed.add(*offs[t].add(e) as usize);
                let x = _mm512_set1_ps(*vals[t].add(e));
                for (v, a) in acc[t].iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(x, _mm512_loadu_ps(p.add(16 * v)), *a);
                }
            }
        }
        for (row, o) in acc.iter().zip(out) {
            for (v, &a) in row.iter().enumerate() {
                if v + 1 == V {
                    _mm512_mask_storeu_ps(o.add(16 * v), ctx.tail, a);
                } else {
                    _mm512_storeu_ps(o.add(16 * v), a);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
// SAFETY: unsafe only for its target feature: callers run it where the CPU has AVX2 and FMA
// (`Isa::check`/`Isa::detect`); every memory access inside is bounds-checked or justified.
unsafe fn spmm_avx2(
    a: &NmMatrix,
    b: Dense<'_>,
    width: usize,
    r0: usize,
    rows: usize,
    dst: &mut [f32],
) {
    spmm_body(a, b, width, r0, rows, dst, |acc, v, x| v.mul_add(x, acc))
}

/// Row `r` against every column of B (`bt` rows), kept entries from `from` on, plainly; adds
/// into `out` (one value per column) when `from > 0`, else writes it.
fn spmv_row_scalar<E: Element>(
    a: &NmMatrix,
    vals: &[E],
    r: usize,
    from: usize,
    bt: &[f32],
    out: &mut [f32],
) {
    let kept = a.kept_per_row();
    let vals = &vals[r * kept..(r + 1) * kept];
    for (c, o) in out.iter_mut().enumerate() {
        let x = &bt[c * a.cols..(c + 1) * a.cols];
        let mut acc = 0f32;
        for (k, &v) in vals.iter().enumerate().skip(from) {
            acc += v.widen() * x[a.column(r, k)];
        }
        *o = if from > 0 { *o + acc } else { acc };
    }
}

/// Row `r` against every column of B with AVX-512: 16 kept entries at a time, their columns'
/// values of B fetched by a two-register permute (16 entries within 32 columns) or a gather.
/// Alternate chunks go to two accumulators (two FMA chains), the chunk's first column
/// advanced by addition, the value stream prefetched ahead.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
// SAFETY: unsafe only for its target feature: callers run it where the CPU has AVX-512F
// (`Isa::check`/`Isa::detect`); every memory access inside is bounds-checked or justified.
unsafe fn spmv_row_avx512<E: Element>(
    a: &NmMatrix,
    vals: &[E],
    r: usize,
    bt: &[f32],
    out: &mut [f32],
) {
    use std::arch::x86_64::*;
    const MAX_RHS: usize = 4;
    let (n, m) = (a.pattern.n, a.pattern.m);
    let kept = a.kept_per_row();
    let width = out.len();
    // Lanes of one chunk: group offsets relative to the chunk's first group (N | 16 or 16 | N).
    let lane_groups = n <= 16 && 16 % n == 0 || n % 16 == 0;
    if !lane_groups || kept < 16 {
        return spmv_row_scalar(a, vals, r, 0, bt, out);
    }
    let off: [i32; 16] = std::array::from_fn(|l| if n <= 16 { (l / n * m) as i32 } else { 0 });
    // SAFETY: `off` holds 16 i32.
    let off = unsafe { _mm512_loadu_si512(off.as_ptr().cast()) };
    // Columns one chunk advances (16 entries: 16/N groups of M, or 16/N of a group when 16 | N
    // — then only every N/16-th chunk starts a new group).
    let chunks_per_group = if n > 16 { n / 16 } else { 1 };
    let step = if n <= 16 { 16 / n * m } else { m };
    let span = if n <= 16 { step } else { m };
    let permute = span <= 32;
    let bits = a.bits;
    let shifts: [i32; 16] = position_shifts(bits);
    // SAFETY: `shifts` holds 16 i32.
    let shifts = unsafe { _mm512_loadu_si512(shifts.as_ptr().cast()) };
    let pos_mask = _mm512_set1_epi32((1 << bits) - 1);
    let vp = vals[r * kept..(r + 1) * kept].as_ptr();
    let index = a.index[r * a.index_stride..(r + 1) * a.index_stride].as_ptr();
    let chunks = kept / 16;
    let full = chunks * 16;
    // SAFETY (for every raw read below): chunk `ci < chunks` reads values `16ci..16ci+16` (all
    // below `kept`), position bytes `2·bits·ci .. 2·bits·ci + 16` (inside the row: its stride
    // holds 16 bytes beyond the packed positions), and B entries `base..base+32` (or the
    // gathered kept columns), all below `cols` since `base + span ≤ cols` for a full chunk.
    let positions = |ci: usize| {
        // SAFETY: called only with ci < chunks, whose 16 position bytes lie in the row (above);
        // this function runs with AVX-512F.
        unsafe { unpack_positions(index.add(2 * bits * ci), bits, shifts, pos_mask) }
    };
    for c0 in (0..width).step_by(MAX_RHS) {
        let cw = (width - c0).min(MAX_RHS);
        let xs: [*const f32; MAX_RHS] =
            std::array::from_fn(|c| bt[(c0 + c.min(cw - 1)) * a.cols..].as_ptr());
        let mut acc = [[_mm512_setzero_ps(); 2]; MAX_RHS];
        let mut base = 0usize;
        for ci in 0..chunks {
            if ci % 8 == 0 {
                _mm_prefetch::<_MM_HINT_T0>(vp.wrapping_add(16 * ci + 256).cast());
            }
            let rel = _mm512_add_epi32(off, positions(ci));
            let v = unsafe { E::load16(vp.add(16 * ci)) };
            let slot = ci & 1;
            for c in 0..cw {
                let x = unsafe { xs[c].add(base) };
                let xv = if permute {
                    let (lo, hi) = unsafe { (_mm512_loadu_ps(x), _mm512_loadu_ps(x.add(16))) };
                    _mm512_permutex2var_ps(lo, rel, hi)
                } else {
                    unsafe { _mm512_i32gather_ps::<4>(rel, x.cast()) }
                };
                acc[c][slot] = _mm512_fmadd_ps(v, xv, acc[c][slot]);
            }
            if (ci + 1) % chunks_per_group == 0 {
                base += step;
            }
        }
        for c in 0..cw {
            out[c0 + c] = _mm512_reduce_add_ps(_mm512_add_ps(acc[c][0], acc[c][1]));
        }
    }
    if full < kept {
        spmv_row_scalar(a, vals, r, full, bt, out);
    }
}

/// Each lane's shift for [`unpack_positions`]: `l·bits`, or for 4 bits `(l mod 8)·4` (lanes 8–15
/// come from the second 32-bit word); unused for byte positions.
#[cfg(target_arch = "x86_64")]
fn position_shifts(bits: usize) -> [i32; 16] {
    std::array::from_fn(|l| if bits == 4 { l % 8 * 4 } else { l * bits } as i32)
}

/// The 16 positions packed at `p` as i32 lanes: `bits` wide (1, 2 or 4, lane `l` at bit
/// `shifts[l]` of the word holding it, kept by `mask`) or one byte each (any other width).
///
/// # Safety
/// `p` has 16 readable bytes (a row's stride holds 16 beyond its packed positions), and the CPU
/// has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
// SAFETY: unsafe for its target feature and its raw reads: callers pass 16 readable bytes at `p`
// and run on a CPU with AVX-512F (see `# Safety`).
unsafe fn unpack_positions(
    p: *const u8,
    bits: usize,
    shifts: std::arch::x86_64::__m512i,
    mask: std::arch::x86_64::__m512i,
) -> std::arch::x86_64::__m512i {
    use std::arch::x86_64::*;
    let packed = match bits {
        4 => {
            // SAFETY: 8 of the 16 readable bytes.
            let w = unsafe { p.cast::<u64>().read_unaligned() };
            _mm512_inserti64x4(
                _mm512_set1_epi32(w as i32),
                _mm256_set1_epi32((w >> 32) as i32),
                1,
            )
        }
        // SAFETY: 4 of the 16 readable bytes (16 or 32 bits used).
        1 | 2 => _mm512_set1_epi32(unsafe { p.cast::<u32>().read_unaligned() } as i32),
        // SAFETY: the 16 readable bytes.
        _ => return _mm512_cvtepu8_epi32(unsafe { _mm_loadu_si128(p.cast()) }),
    };
    _mm512_and_si512(_mm512_srlv_epi32(packed, shifts), mask)
}

/// One row's kept entries, 16 at a time, as the batch 1–8 kernels read them: for N dividing 16
/// and positions of at most 4 bits (1:2, 2:4, 4:8, 8:16 by a two-register permute, as 16
/// entries span at most 32 columns; 1:4, 2:8, 1:8, … by a gather).
#[cfg(target_arch = "x86_64")]
struct Chunks16<E> {
    /// Each lane's column offset from its chunk's first group.
    off: std::arch::x86_64::__m512i,
    /// Each lane's shift into the packed positions.
    shifts: std::arch::x86_64::__m512i,
    /// `(1 << bits) - 1`.
    mask: std::arch::x86_64::__m512i,
    bits: usize,
    /// Columns one chunk advances.
    step: usize,
    /// B's entries come by permutes of a window of 32 floats (two registers, `step ≤ 32`) or 64
    /// (four registers and a blend, `step ≤ 64`: 1:4, 2:8), else by a gather.
    permute: bool,
    /// The window is 64 floats.
    wide: bool,
    vals: *const E,
    index: *const u8,
    /// Full chunks whose reads stay inside the row (see [`Chunks16::new`]).
    chunks: usize,
}

#[cfg(target_arch = "x86_64")]
impl<E: Element> Chunks16<E> {
    /// Row `r` of `a`, or `None` for a pattern these kernels do not take.
    ///
    /// The reads of chunk `ci < chunks` stay in bounds: values `16ci..16ci+16` (below `kept`),
    /// position bytes `2·bits·ci ..+8` (a row's stride holds 16 bytes beyond its packed
    /// positions), and B entries `step·ci .. step·ci + window` (32 or 64) for a permute
    /// (`chunks` stops before a window that would pass `cols`) or exactly the kept columns for
    /// a gather.
    #[target_feature(enable = "avx512f")]
    fn new(a: &NmMatrix, vals: &[E], r: usize) -> Option<Self> {
        use std::arch::x86_64::*;
        let (n, m) = (a.pattern.n, a.pattern.m);
        let (kept, bits) = (a.kept_per_row(), a.bits);
        if n > 16 || 16 % n != 0 || bits > 4 || kept < 16 {
            return None;
        }
        let step = 16 / n * m;
        let permute = step <= 64;
        let wide = step > 32;
        let window = if wide { 64 } else { 32 };
        let off: [i32; 16] = std::array::from_fn(|l| (l / n * m) as i32);
        let shift = position_shifts(bits);
        // SAFETY: both arrays hold 16 i32.
        let (off, shifts) = unsafe {
            (
                _mm512_loadu_si512(off.as_ptr().cast()),
                _mm512_loadu_si512(shift.as_ptr().cast()),
            )
        };
        let chunks = if permute {
            if a.cols < window {
                0
            } else {
                (kept / 16).min((a.cols - window) / step + 1)
            }
        } else {
            kept / 16
        };
        Some(Chunks16 {
            off,
            shifts,
            mask: _mm512_set1_epi32((1 << bits) - 1),
            bits,
            step,
            permute,
            wide,
            vals: vals[r * kept..(r + 1) * kept].as_ptr(),
            index: a.index[r * a.index_stride..(r + 1) * a.index_stride].as_ptr(),
            chunks,
        })
    }

    /// Chunk `ci`'s values and its columns relative to `step·ci`.
    ///
    /// # Safety
    /// `ci < self.chunks` and the CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn chunk(&self, ci: usize) -> (std::arch::x86_64::__m512, std::arch::x86_64::__m512i) {
        use std::arch::x86_64::*;
        // SAFETY: in bounds for ci < chunks (see `new`).
        let (pos, v) = unsafe {
            (
                unpack_positions(
                    self.index.add(2 * self.bits * ci),
                    self.bits,
                    self.shifts,
                    self.mask,
                ),
                E::load16(self.vals.add(16 * ci)),
            )
        };
        (v, _mm512_add_epi32(self.off, pos))
    }

    /// The entries of column `x` (a row of Bᵀ) at chunk `ci`'s columns `rel`.
    ///
    /// # Safety
    /// `ci < self.chunks`, `x` is a row of `cols` floats, and the CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn fetch(
        &self,
        x: *const f32,
        ci: usize,
        rel: std::arch::x86_64::__m512i,
    ) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        // SAFETY: in bounds for ci < chunks (see `new`).
        let xp = unsafe { x.add(self.step * ci) };
        if self.permute && self.wide {
            // SAFETY: the 64-float window is inside the row (see `new`).
            let (x0, x1, x2, x3) = unsafe {
                (
                    _mm512_loadu_ps(xp),
                    _mm512_loadu_ps(xp.add(16)),
                    _mm512_loadu_ps(xp.add(32)),
                    _mm512_loadu_ps(xp.add(48)),
                )
            };
            // Each half permutes by the low five bits; bit 5 picks the half.
            let low = _mm512_permutex2var_ps(x0, rel, x1);
            let high = _mm512_permutex2var_ps(x2, rel, x3);
            let upper = _mm512_test_epi32_mask(rel, _mm512_set1_epi32(32));
            _mm512_mask_blend_ps(upper, low, high)
        } else if self.permute {
            // SAFETY: the 32-float window is inside the row (see `new`).
            let (lo, hi) = unsafe { (_mm512_loadu_ps(xp), _mm512_loadu_ps(xp.add(16))) };
            _mm512_permutex2var_ps(lo, rel, hi)
        } else {
            // SAFETY: every lane reads a kept column, below `cols`.
            unsafe { _mm512_i32gather_ps::<4>(rel, xp.cast()) }
        }
    }
}

/// [`spmv_cols_avx512`] for `out.len()` columns (1 to 8; false for more, or for a pattern it
/// does not take).
///
/// # Safety
/// As [`spmv_cols_avx512`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
// SAFETY: unsafe only for its target feature: callers run it where the CPU has AVX-512F.
unsafe fn spmv_cols_up_to_8<E: Element>(
    a: &NmMatrix,
    vals: &[E],
    r: usize,
    bt: &[f32],
    out: &mut [f32],
) -> bool {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        match out.len() {
            1 => spmv_cols_avx512::<1, E>(a, vals, r, bt, out),
            2 => spmv_cols_avx512::<2, E>(a, vals, r, bt, out),
            3 => spmv_cols_avx512::<3, E>(a, vals, r, bt, out),
            4 => spmv_cols_avx512::<4, E>(a, vals, r, bt, out),
            5 => spmv_cols_avx512::<5, E>(a, vals, r, bt, out),
            6 => spmv_cols_avx512::<6, E>(a, vals, r, bt, out),
            7 => spmv_cols_avx512::<7, E>(a, vals, r, bt, out),
            8 => spmv_cols_avx512::<8, E>(a, vals, r, bt, out),
            _ => false,
        }
    }
}

/// One row against `C` columns of B (batch 1 to 8), for the patterns [`Chunks16`] takes: each
/// chunk of 16 kept entries is unpacked once and multiplied into one register accumulator per
/// column; batch 1 runs four chunks per step into four accumulators, so that four value loads
/// are in flight. Returns false (having done nothing) for other patterns.
///
/// # Safety
/// The CPU has AVX-512F; `bt` holds `C` rows of `cols` floats and `out` `C` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
// SAFETY: unsafe only for its target feature: callers run it where the CPU has AVX-512F
// (`Isa::check`/`Isa::detect`); every memory access inside is bounds-checked or justified.
unsafe fn spmv_cols_avx512<const C: usize, E: Element>(
    a: &NmMatrix,
    vals: &[E],
    r: usize,
    bt: &[f32],
    out: &mut [f32],
) -> bool {
    use std::arch::x86_64::*;
    let Some(ch) = Chunks16::new(a, vals, r) else {
        return false;
    };
    if out.len() != C || bt.len() < C * a.cols {
        return false;
    }
    let xs: [*const f32; C] = std::array::from_fn(|c| bt[c * a.cols..(c + 1) * a.cols].as_ptr());
    // SAFETY (the calls below): every `ci` is below `ch.chunks`, every `xs[c]` a row of `cols`.
    let mut ci = 0;
    if C == 1 {
        let mut acc = [_mm512_setzero_ps(); 4];
        while ci + 4 <= ch.chunks {
            // A prefetch reads nothing; the addresses may run past the row.
            // Two lines 2 KiB ahead of the chunk (512 floats or 1024 bf16).
            let ahead = ch
                .vals
                .cast::<u8>()
                .wrapping_add(16 * ci * size_of::<E>() + 2048);
            _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64).cast());
            for (j, acc) in acc.iter_mut().enumerate() {
                let (v, rel) = unsafe { ch.chunk(ci + j) };
                *acc = _mm512_fmadd_ps(v, unsafe { ch.fetch(xs[0], ci + j, rel) }, *acc);
            }
            ci += 4;
        }
        while ci < ch.chunks {
            let (v, rel) = unsafe { ch.chunk(ci) };
            acc[0] = _mm512_fmadd_ps(v, unsafe { ch.fetch(xs[0], ci, rel) }, acc[0]);
            ci += 1;
        }
        let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
        out[0] = _mm512_reduce_add_ps(sum);
    } else {
        let mut acc = [_mm512_setzero_ps(); C];
        while ci < ch.chunks {
            let (v, rel) = unsafe { ch.chunk(ci) };
            for c in 0..C {
                acc[c] = _mm512_fmadd_ps(v, unsafe { ch.fetch(xs[c], ci, rel) }, acc[c]);
            }
            ci += 1;
        }
        for c in 0..C {
            out[c] = _mm512_reduce_add_ps(acc[c]);
        }
    }
    if 16 * ch.chunks < a.kept_per_row() {
        spmv_row_scalar(a, vals, r, 16 * ch.chunks, bt, out);
    }
    true
}

/// Row `r` against every column of B with AVX2: 8 kept entries at a time, gathered.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
// SAFETY: unsafe only for its target feature: callers run it where the CPU has AVX2 and FMA
// (`Isa::check`/`Isa::detect`); every memory access inside is bounds-checked or justified.
unsafe fn spmv_row_avx2<E: Element>(
    a: &NmMatrix,
    vals: &[E],
    r: usize,
    bt: &[f32],
    out: &mut [f32],
) {
    use std::arch::x86_64::*;
    const MAX_RHS: usize = 8;
    let (n, m) = (a.pattern.n, a.pattern.m);
    let kept = a.kept_per_row();
    let width = out.len();
    let lane_groups = n <= 8 && 8 % n == 0 || n % 8 == 0;
    if !lane_groups || kept < 8 {
        return spmv_row_scalar(a, vals, r, 0, bt, out);
    }
    let off: [i32; 8] = std::array::from_fn(|l| if n <= 8 { (l / n * m) as i32 } else { 0 });
    // SAFETY: `off` holds 8 i32.
    let off = unsafe { _mm256_loadu_si256(off.as_ptr().cast()) };
    let b = a.bits as i32;
    let shifts = _mm256_setr_epi32(0, b, 2 * b, 3 * b, 4 * b, 5 * b, 6 * b, 7 * b);
    let mask = _mm256_set1_epi32((1 << a.bits) - 1);
    let row = &vals[r * kept..(r + 1) * kept];
    let full = kept / 8 * 8;
    for c0 in (0..width).step_by(MAX_RHS) {
        let cw = (width - c0).min(MAX_RHS);
        let mut acc = [_mm256_setzero_ps(); MAX_RHS];
        for k0 in (0..full).step_by(8) {
            let at = r * a.index_stride + k0 * a.bits / 8;
            let pos = if a.bits == 8 {
                // SAFETY: the index row holds 8 bytes here (8 positions of 8 bits).
                _mm256_cvtepu8_epi32(unsafe { _mm_loadl_epi64(a.index.as_ptr().add(at).cast()) })
            } else {
                let bytes = &a.index[at..at + 4];
                let word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as i32;
                _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(word), shifts), mask)
            };
            let rel = _mm256_add_epi32(off, pos);
            let base = k0 / n * m;
            // SAFETY: k0 + 8 ≤ kept.
            let v = unsafe { E::load8(row.as_ptr().add(k0)) };
            for (c, acc) in acc.iter_mut().enumerate().take(cw) {
                let x = &bt[(c0 + c) * a.cols..(c0 + c + 1) * a.cols];
                // SAFETY: every lane's column base + rel < cols (a kept entry's column).
                let xv = unsafe { _mm256_i32gather_ps::<4>(x.as_ptr().add(base), rel) };
                *acc = _mm256_fmadd_ps(v, xv, *acc);
            }
        }
        for (c, acc) in acc.iter().enumerate().take(cw) {
            let mut lanes = [0f32; 8];
            // SAFETY: `lanes` holds 8 floats.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), *acc) };
            out[c0 + c] = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
                + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
        }
    }
    if full < kept {
        spmv_row_scalar(a, vals, r, full, bt, out);
    }
}

#[cfg(test)]
mod tests;
