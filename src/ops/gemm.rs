//! `masklab gemm` and the table7 cell: one training GEMM with one mask type, timed against the
//! dense GEMM of the same shapes in the same process.
//!
//! Problem: for a layer `W: [out, in]`, a batch and one of the three training GEMMs — forward
//! `Y = X·Wᵀ`, backward data `dX = dY·W`, update `dW = ĝᵀ·X` — how much faster is the
//! compressed kernel of a mask type than the dense product, and how close to its limit?
//! Method: seeded N(0,1) operands; the mask from |W| (N:M: top N per group; transposable: the
//! exact solver) or, for the update, from |ĝ| along the batch; the dense reference is
//! [`crate::sparse::dense::matmul`] on the masked operand, read in place through strides; the
//! sparse side includes every transpose its layout needs, so both produce the same output in
//! the same layout. The dense side runs on all threads or on one, whichever its warm-up finds
//! faster (`dense_threads`), so a small product is not handicapped by the split. Runs alternate dense and sparse after a warm-up of each; the median of
//! each is reported. Guarantee: `max_rel_error` compares the two outputs (max |difference| over
//! max |dense|). Cost: the runs (at least 5 each, until 0.2 s of each or 50 runs).

use super::median;
use crate::error::{Error, Result};
use crate::mask::tile::Blocks;
use crate::mask::{Mask, Matrix, Pattern};
use crate::sparse::bsr::BsrMatrix;
use crate::sparse::csr::CsrMatrix;
use crate::sparse::dense::{self, Strided};
use crate::sparse::element::{Dtype, round_bf16};
use crate::sparse::nm::NmMatrix;
use crate::sparse::{Isa, transpose, transpose_par};
use half::bf16;
use serde::Serialize;
use std::time::Instant;

/// One of the three training GEMMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// `Y = X·Wᵀ`.
    Forward,
    /// `dX = dY·W`.
    Backward,
    /// `dW = ĝᵀ·X`, ĝ N:M along the batch.
    Update,
}

impl std::str::FromStr for Op {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "forward" => Ok(Op::Forward),
            "backward" => Ok(Op::Backward),
            "update" => Ok(Op::Update),
            other => Err(Error::invalid(
                "op",
                other,
                "expected forward, backward or update",
            )),
        }
    }
}

/// A mask type of `masklab gemm --mask`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaskType {
    /// No mask: dense against dense (the harness's own noise floor).
    Dense,
    /// N:M along `in` (forward); its `Wᵀ` is not N:M.
    Nm(Pattern),
    /// Transposable N:M: W and Wᵀ both N:M.
    Transposable(Pattern),
    /// Unstructured at this sparsity (the smallest |W| pruned): CSR, for W and Wᵀ alike.
    Unstructured(f64),
    /// Whole `b×b` blocks pruned at this sparsity (smallest block norms): BSR, W and Wᵀ alike.
    Block(usize, f64),
}

impl std::str::FromStr for MaskType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if s == "dense" {
            return Ok(MaskType::Dense);
        }
        if let Some(p) = s.strip_prefix("nm:") {
            return Ok(MaskType::Nm(p.parse()?));
        }
        if let Some(p) = s.strip_prefix("transposable:") {
            return Ok(MaskType::Transposable(p.parse()?));
        }
        let sparsity = |v: &str| -> Result<f64> {
            v.parse::<f64>()
                .ok()
                .filter(|x| (0.0..1.0).contains(x))
                .ok_or_else(|| Error::invalid("mask", s, "the sparsity must be in [0, 1)"))
        };
        if let Some(v) = s.strip_prefix("unstructured:") {
            return Ok(MaskType::Unstructured(sparsity(v)?));
        }
        if let Some((b, v)) = s.strip_prefix("block:").and_then(|r| r.split_once(':')) {
            let b = b
                .parse::<usize>()
                .ok()
                .filter(|&b| b > 0)
                .ok_or_else(|| Error::invalid("mask", s, "the block side must be ≥ 1"))?;
            return Ok(MaskType::Block(b, sparsity(v)?));
        }
        Err(Error::invalid(
            "mask",
            s,
            "expected dense, nm:N:M, transposable:N:M, unstructured:S or block:B:S",
        ))
    }
}

impl std::fmt::Display for MaskType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaskType::Dense => write!(f, "dense"),
            MaskType::Nm(p) => write!(f, "nm:{p}"),
            MaskType::Transposable(p) => write!(f, "transposable:{p}"),
            MaskType::Unstructured(x) => write!(f, "unstructured:{x}"),
            MaskType::Block(b, x) => write!(f, "block:{b}:{x}"),
        }
    }
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct GemmJob {
    /// The mask type.
    pub mask: MaskType,
    /// Layer rows (`out`).
    pub out: usize,
    /// Layer columns (`in`).
    pub inp: usize,
    /// Batch (tokens).
    pub batch: usize,
    /// Which GEMM.
    pub op: Op,
    /// Seed of the operands.
    pub seed: u64,
    /// Threads for both sides.
    pub threads: usize,
    /// Least seconds of runs per side (at least 5 runs, at most 50).
    pub min_seconds: f64,
    /// Value type of the stored operands (see `Problem::halves` for what bf16 changes).
    pub dtype: Dtype,
}

/// The measurement of one job (`masklab gemm --json`, a table7 row).
#[derive(Debug, Clone, Default, Serialize)]
pub struct GemmReport {
    /// What the sparse side ran: `nm` (compressed N:M), `csr` (unstructured), `bsr` (blocks)
    /// or `dense` (no compressed kernel for this mask and op — a plain N:M mask's backward: the
    /// dense product, so the speedup is 1 by construction).
    pub kernel: String,
    /// Instruction set of the sparse kernel.
    pub isa: String,
    /// Value type of the stored operands: `f32`, or `bf16` (bf16 values widened to f32 as
    /// they are read, f32 products and output; below batch 16 both sides read the weights in
    /// bf16, from 16 on both multiply f32 copies of the same bf16 values).
    pub dtype: Dtype,
    /// Median seconds of the dense product.
    pub dense_seconds: f64,
    /// Median seconds of the sparse side (its transposes included).
    pub sparse_seconds: f64,
    /// `dense_seconds / sparse_seconds`.
    pub speedup: f64,
    /// Dense-equivalent GFLOP/s of the sparse side (`2·out·in·batch / sparse_seconds`).
    pub gflops_dense_equivalent: f64,
    /// GFLOP/s the sparse side executes (kept multiply-adds only).
    pub gflops_executed: f64,
    /// GFLOP/s of the dense product.
    pub gflops_dense: f64,
    /// Bytes the dense product reads and writes (its three operands).
    pub dense_bytes: usize,
    /// Bytes the sparse side reads and writes (compressed operand with its positions).
    pub sparse_bytes: usize,
    /// `dense_bytes / sparse_bytes`: the speedup limit of a memory-bound product.
    pub byte_limit: f64,
    /// `M / N`: the speedup limit of a compute-bound product.
    pub flop_limit: f64,
    /// `speedup` over the limit that binds: `byte_limit` below batch 16, else `flop_limit`.
    pub share_of_limit: f64,
    /// This CPU's multiply-add rate with the B operand read from L1, as the sparse tile
    /// kernels read it, on all of the job's threads (GFLOP/s; [`crate::sparse::probe`]).
    /// `null` where no tile kernel runs: batch below 16 (the matrix-vector kernels), no
    /// compressed kernel, or the scalar path.
    pub l1_operand_gflops: Option<f64>,
    /// The same probe's rate with both operands in registers, as gemm's microkernel runs.
    pub register_gflops: Option<f64>,
    /// `flop_limit · l1_operand_gflops / register_gflops`: the speedup of a sparse side that
    /// runs its kept multiply-adds at the L1-operand rate over a dense product at the register
    /// rate. The large-batch bound on a core whose L1 feeds fewer vectors than its FMA units
    /// take; a dense product below the register rate (`gflops_dense` lower) lets the measured
    /// speedup exceed it. A ratio of two rates timed in alternation, so the machine's drift
    /// cancels. `null` as above.
    pub l1_limit: Option<f64>,
    /// `speedup / l1_limit`.
    pub share_of_l1_limit: Option<f64>,
    /// Max |sparse − dense| over max |dense| of the output.
    pub max_rel_error: f64,
    /// First quartile of the paired ratios dense/sparse (run by run).
    pub speedup_q25: f64,
    /// Third quartile of the paired ratios.
    pub speedup_q75: f64,
    /// Runs timed per side.
    pub runs_per_side: usize,
    /// Threads of the dense reference (all, or one where that was faster in the warm-up).
    pub dense_threads: usize,
    /// Orientation of the dense reference the warm-up chose: `c` (C = A·B) or `ct` (Cᵀ = Bᵀ·Aᵀ,
    /// transposed into place; masklab's matrix-vector kernels at batch 1), with `/wt` where it
    /// read the weights' transposed copy and `/g` where the update read ĝ as `[batch, out]`.
    pub dense_orientation: String,
}

/// The operands of one job, built once.
struct Problem {
    /// Dense reference: `(m, n, k)`, A and B as (data, row stride, column stride), owned.
    shape: (usize, usize, usize),
    a: (Vec<f32>, usize, usize),
    b: (Vec<f32>, usize, usize),
    /// The weight operand `B` stored the other way (its transpose, read through strides), made
    /// outside the timing as the sparse side's compressed operand is: gemm is several times
    /// faster with one layout than the other on some shapes (4096² batch 32 backward: 59 against
    /// 170 GFLOP/s), and the dense side gets the faster. `None` for the update (B is data).
    b_alt: Option<(Vec<f32>, usize, usize)>,
    /// The update's `A = ĝᵀ` stored as the estimator leaves it (`ĝ: [batch, out]`, read
    /// through strides), the other layout the dense side may pick; `None` elsewhere.
    a_alt: Option<(Vec<f32>, usize, usize)>,
    /// The sparse side: the compressed operand and how its product is laid out.
    sparse: Option<Sparse>,
    /// For bf16 below batch 16, the weights `b` and `b_alt` stored as bf16: what the dense side
    /// reads there ([`Problem::halves`]).
    halves: Option<(Vec<bf16>, Vec<bf16>)>,
}

/// How the dense reference runs: threads, orientation (`Cᵀ` computed and transposed into
/// place, or masklab's matrix-vector kernels at batch 1) and which layout of the weights.
#[derive(Debug, Clone, Copy)]
struct DenseWay {
    threads: usize,
    swapped: bool,
    alt: bool,
}

/// A compressed operand in the format of its mask type.
enum Compressed {
    Nm(NmMatrix),
    Csr(CsrMatrix),
    Bsr(BsrMatrix),
}

impl Compressed {
    /// The format's name in reports (`nm`, `csr`, `bsr`).
    fn name(&self) -> &'static str {
        match self {
            Compressed::Nm(_) => "nm",
            Compressed::Csr(_) => "csr",
            Compressed::Bsr(_) => "bsr",
        }
    }

    /// `(rows, cols)`.
    fn dims(&self) -> (usize, usize) {
        match self {
            Compressed::Nm(a) => (a.rows(), a.cols()),
            Compressed::Csr(a) => (a.rows(), a.cols()),
            Compressed::Bsr(a) => (a.rows(), a.cols()),
        }
    }

    /// Bytes of the format (values and indices).
    fn bytes(&self) -> usize {
        match self {
            Compressed::Nm(a) => a.bytes(),
            Compressed::Csr(a) => a.bytes(),
            Compressed::Bsr(a) => a.bytes(),
        }
    }

    /// Multiply-adds done over those of the dense product.
    fn density(&self) -> f64 {
        let (r, c) = self.dims();
        let cells = (r * c).max(1) as f64;
        match self {
            Compressed::Nm(a) => a.pattern().n as f64 / a.pattern().m as f64,
            Compressed::Csr(a) => a.nnz() as f64 / cells,
            Compressed::Bsr(a) => a.kept() as f64 / cells,
        }
    }

    /// `out = self · b` (`b: [cols, width]` row-major).
    fn matmul(&self, isa: Isa, b: &[f32], width: usize, out: &mut [f32]) -> Result<()> {
        match self {
            Compressed::Nm(a) => a.matmul_with(isa, b, width, out),
            Compressed::Csr(a) => a.matmul(b, width, out),
            Compressed::Bsr(a) => a.matmul(b, width, out),
        }
    }
}

/// The compressed operand `A` of `Cᵀ`-or-`C` and the dense operand it multiplies.
struct Sparse {
    a: Compressed,
    /// `B` as the kernel needs it (`[K, width]` row-major), or the source to transpose into it.
    b: Vec<f32>,
    /// Whether `b` must be transposed first (from `[width, K]`) and the output transposed back.
    transposed: bool,
    width: usize,
}

/// `n` seeded N(0, 1) values, rounded to bf16 for a bf16 job (so that both sides multiply
/// the same numbers).
fn gaussian(n: usize, seed: u64, label: &str, dtype: Dtype) -> Vec<f32> {
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(crate::seed::derive(seed, label));
    (0..n)
        .map(|_| {
            let x: f32 = StandardNormal.sample(&mut rng);
            match dtype {
                Dtype::F32 => x,
                Dtype::Bf16 => round_bf16(x),
            }
        })
        .collect()
}

/// The mask of `w: [rows, cols]` (|w| scores) for a mask type.
fn mask_of(mask: MaskType, w: &[f32], rows: usize, cols: usize) -> Result<Mask> {
    let scores = Matrix::new(rows, cols, w.iter().map(|v| v.abs()).collect())?;
    match mask {
        MaskType::Dense => Mask::new(rows, cols, vec![1; rows * cols]),
        MaskType::Nm(p) => Mask::nm(&scores, p),
        MaskType::Unstructured(x) => Mask::unstructured(&scores, x),
        MaskType::Block(b, x) => Mask::block(&scores, b, x),
        MaskType::Transposable(p) => {
            let blocks = Blocks::from_matrix_owned(scores, p.m)?;
            let ctx = crate::solvers::SolveContext::default();
            let solved = crate::solvers::apply::solve_blocks(
                &crate::solvers::exact::Exact,
                blocks.data(),
                p,
                &ctx,
            )?;
            blocks.into_mask(solved.keep)
        }
    }
}

fn masked(w: &[f32], mask: &Mask) -> Vec<f32> {
    w.iter()
        .zip(mask.keep())
        .map(|(&v, &k)| if k != 0 { v } else { 0.0 })
        .collect()
}

impl Problem {
    fn new(job: &GemmJob) -> Result<Self> {
        let (out, inp, batch) = (job.out, job.inp, job.batch);
        if out == 0 || inp == 0 || batch == 0 {
            return Err(Error::invalid(
                "shape",
                format!("{out}x{inp}, batch {batch}"),
                "every dimension must be at least 1",
            ));
        }
        if job.dtype == Dtype::Bf16
            && let MaskType::Unstructured(_) | MaskType::Block(..) = job.mask
        {
            return Err(Error::invalid(
                "dtype",
                "bf16",
                format!(
                    "bf16 kernels exist for dense, nm and transposable masks; {} (CSR/BSR) is f32 only",
                    job.mask
                ),
            ));
        }
        let mut p = match job.op {
            Op::Forward | Op::Backward => Self::weight_side(job)?,
            Op::Update => Self::update(job)?,
        };
        if job.dtype == Dtype::Bf16 {
            p.sparse = p.sparse.take().map(|s| Sparse {
                a: match s.a {
                    Compressed::Nm(a) => Compressed::Nm(a.to_bf16()),
                    other => other,
                },
                ..s
            });
            if job.op != Op::Update && batch < 16 {
                let half = |v: &[f32]| v.iter().map(|&x| bf16::from_f32(x)).collect::<Vec<_>>();
                let alt = p.b_alt.as_ref().map_or_else(Vec::new, |b| half(&b.0));
                p.halves = Some((half(&p.b.0), alt));
            }
        }
        Ok(p)
    }

    /// bf16 below batch 16, where the bytes of the weights bound both sides: the weights as
    /// bf16 for the dense side's matrix–vector ways, if this problem has them. (From batch 16
    /// on, and for the update, both sides multiply f32 copies of the same bf16-rounded values:
    /// the products are bound by their multiply-adds there, which run in f32 either way.)
    fn halves(&self, alt: bool) -> Option<&[bf16]> {
        self.halves
            .as_ref()
            .map(|(b, b_alt)| if alt { b_alt.as_slice() } else { b.as_slice() })
    }

    /// The forward or backward data GEMM: W (masked by the mask type) against a batch of
    /// activations or output gradients.
    fn weight_side(job: &GemmJob) -> Result<Self> {
        let (out, inp, batch) = (job.out, job.inp, job.batch);
        // The compressed operand of a weight-side GEMM: `m` of `[rows, cols]`, in the mask
        // type's format (`None`: no compressed kernel for it).
        let compress = |wm: &[f32], m: &Mask, rows: usize, cols: usize, along_in: bool| {
            Ok::<_, Error>(match job.mask {
                MaskType::Dense => None,
                MaskType::Nm(p) if along_in => Some(Compressed::Nm(NmMatrix::compress(
                    wm,
                    m.keep(),
                    rows,
                    cols,
                    p,
                )?)),
                MaskType::Nm(_) => None,
                MaskType::Transposable(p) => Some(Compressed::Nm(NmMatrix::compress(
                    wm,
                    m.keep(),
                    rows,
                    cols,
                    p,
                )?)),
                MaskType::Unstructured(_) => Some(Compressed::Csr(CsrMatrix::compress(
                    wm,
                    m.keep(),
                    rows,
                    cols,
                )?)),
                MaskType::Block(b, _) => Some(Compressed::Bsr(BsrMatrix::compress(
                    wm,
                    m.keep(),
                    rows,
                    cols,
                    b,
                )?)),
            })
        };
        let w = gaussian(out * inp, job.seed, "w", job.dtype);
        let mask = mask_of(job.mask, &w, out, inp)?;
        let wm = masked(&w, &mask);
        if job.op == Op::Forward {
            // Y [batch, out] = X [batch, in] · Wᵀ; sparse: Yᵀ = W · Xᵀ.
            let x = gaussian(batch * inp, job.seed, "x", job.dtype);
            let sparse = compress(&wm, &mask, out, inp, true)?.map(|a| Sparse {
                a,
                b: x.clone(),
                transposed: true,
                width: batch,
            });
            let mut wt = vec![0f32; inp * out];
            transpose(&wm, out, inp, &mut wt);
            Ok(Problem {
                shape: (batch, out, inp),
                a: (x, inp, 1),
                b: (wm, 1, inp),
                b_alt: Some((wt, out, 1)),
                a_alt: None,
                sparse,
                halves: None,
            })
        } else {
            // dX [batch, in] = dY [batch, out] · W; sparse: dXᵀ = Wᵀ · dYᵀ, which needs
            // Wᵀ N:M along `out`: a transposable mask (CSR and BSR transpose freely).
            let dy = gaussian(batch * out, job.seed, "dy", job.dtype);
            let mut wt = vec![0f32; inp * out];
            transpose(&wm, out, inp, &mut wt);
            let sparse = compress(&wt, &mask.transpose(), inp, out, false)?.map(|a| Sparse {
                a,
                b: dy.clone(),
                transposed: true,
                width: batch,
            });
            Ok(Problem {
                shape: (batch, inp, out),
                a: (dy, out, 1),
                b: (wm, inp, 1),
                b_alt: Some((wt, 1, out)),
                a_alt: None,
                sparse,
                halves: None,
            })
        }
    }

    /// The update GEMM: ĝᵀ, N:M along the batch, against the layer's input.
    fn update(job: &GemmJob) -> Result<Self> {
        let (out, inp, batch) = (job.out, job.inp, job.batch);
        let pattern = match job.mask {
            MaskType::Nm(p) | MaskType::Transposable(p) => Some(p),
            _ => None,
        };
        // dW [out, in] = ĝᵀ [out, batch] · X [batch, in], ĝ N:M along the batch.
        let g = gaussian(batch * out, job.seed, "g", job.dtype);
        let x = gaussian(batch * inp, job.seed, "x", job.dtype);
        let mut gt = vec![0f32; out * batch];
        transpose(&g, batch, out, &mut gt);
        if let MaskType::Unstructured(_) | MaskType::Block(..) = job.mask {
            return Err(Error::invalid(
                "op",
                "update",
                format!(
                    "the update GEMM's ĝ is pruned N:M along the batch by an estimator; {} masks are weight masks (forward and backward only)",
                    job.mask
                ),
            ));
        }
        let gm = match pattern {
            Some(p) => {
                if !batch.is_multiple_of(p.m) {
                    return Err(Error::invalid(
                        "batch",
                        batch,
                        format!(
                            "the update GEMM's ĝ is N:M along the batch: a multiple of M = {}",
                            p.m
                        ),
                    ));
                }
                masked(&gt, &mask_of(MaskType::Nm(p), &gt, out, batch)?)
            }
            None => gt,
        };
        // ĝ as the estimator leaves it, `[batch, out]`: the dense side's other layout, and
        // what the sparse side compresses, as a training step does (one pass over it); a
        // step's gradient serves one product, so the kernel reads its values as stored (no
        // block-major copy), as in training.
        let mut g_batch_major = vec![0f32; batch * out];
        transpose(&gm, out, batch, &mut g_batch_major);
        let sparse = match pattern {
            Some(p) => Some(Sparse {
                a: Compressed::Nm(NmMatrix::compress_transposed_nonzero(
                    &g_batch_major,
                    batch,
                    out,
                    p,
                )?),
                b: x.clone(),
                transposed: false,
                width: inp,
            }),
            None => None,
        };
        Ok(Problem {
            shape: (out, inp, batch),
            a: (gm, batch, 1),
            b: (x, inp, 1),
            b_alt: None,
            a_alt: Some((g_batch_major, 1, out)),
            sparse,
            halves: None,
        })
    }

    /// The dense product into `out`; `swapped` computes it another way where C is one row or
    /// one column (a matrix-vector product, which gemm runs at a third of OpenBLAS's speed
    /// here): masklab's own dot-product or row-combination kernel where the layout fits, else
    /// gemm on `Cᵀ = Bᵀ·Aᵀ` (the same memory); `alt` reads the weights' other layout.
    fn dense(&self, out: &mut [f32], way: DenseWay, scratch: &mut Vec<f32>) -> Result<()> {
        let DenseWay {
            threads,
            swapped,
            alt,
        } = way;
        let (m, n, k) = self.shape;
        let b = match (&self.b_alt, alt) {
            (Some(b), true) => b,
            _ => &self.b,
        };
        let a = match (&self.a_alt, alt) {
            (Some(a), true) => a,
            _ => &self.a,
        };
        // bf16 below batch 16: the weights read as bf16, n dot products per input row (B
        // stored as rows of its transpose), or at batch 1 the rows of B scaled and added; or
        // (not `swapped`) widened to f32 and multiplied by gemm, candle's way, the widening
        // timed with it.
        if let Some(half) = self.halves(alt) {
            if !swapped {
                use crate::sparse::element::Element;
                use rayon::prelude::*;
                scratch.resize(half.len(), 0.0);
                scratch
                    .par_chunks_mut(1 << 16)
                    .zip(half.par_chunks(1 << 16))
                    .for_each(|(w, h)| w.iter_mut().zip(h).for_each(|(w, h)| *w = h.widen()));
                let wide = Strided {
                    data: scratch,
                    rs: b.1,
                    cs: b.2,
                };
                let a = Strided {
                    data: &a.0,
                    rs: a.1,
                    cs: a.2,
                };
                return dense::matmul((m, n, k), a, wide, out, threads);
            }
            if dots_layout(b, k) {
                if m == 1 {
                    return dense::matvecs(half, n, k, &a.0[..k], 1, out);
                }
                scratch.resize(m * n, 0.0);
                dense::matvecs(half, n, k, &a.0[..m * k], m, scratch)?;
                transpose_par(scratch, n, m, out);
                return Ok(());
            }
            if m == 1 && rows_layout(b, n) {
                return dense::vecmat(half, k, n, &a.0[..k], out);
            }
        }
        // One output row against a B stored as contiguous rows of its transpose: n dot
        // products, the matrix-vector kernel (batch-1 forward).
        if swapped && m == 1 && dots_layout(b, k) {
            return dense::matvec(&b.0, n, k, &a.0[..k], out);
        }
        // One output row against a row-major B: the rows of B scaled and added (batch-1
        // backward).
        if swapped && m == 1 && rows_layout(b, n) {
            return dense::vecmat(&b.0, k, n, &a.0[..k], out);
        }
        // An operand (data, row stride, column stride), as it is or transposed.
        fn view(o: &(Vec<f32>, usize, usize), t: bool) -> Strided<'_> {
            let (rs, cs) = if t { (o.2, o.1) } else { (o.1, o.2) };
            Strided { data: &o.0, rs, cs }
        }
        if swapped {
            let (at, bt) = (view(b, true), view(a, true));
            if m == 1 || n == 1 {
                return dense::matmul((n, m, k), at, bt, out, threads);
            }
            // Cᵀ, then transposed into place (the transpose is timed with it).
            scratch.resize(m * n, 0.0);
            dense::matmul((n, m, k), at, bt, scratch, threads)?;
            transpose_par(scratch, n, m, out);
            return Ok(());
        }
        let (a, b) = (view(a, false), view(b, false));
        dense::matmul((m, n, k), a, b, out, threads)
    }

    /// The sparse side into `out` (the dense side's layout); `scratch` holds the transposes.
    fn sparse(
        &self,
        s: &Sparse,
        isa: Isa,
        out: &mut [f32],
        scratch: &mut (Vec<f32>, Vec<f32>),
    ) -> Result<()> {
        let (rows, k) = s.a.dims();
        if s.transposed {
            let (bt, ct) = scratch;
            transpose_par(&s.b, s.width, k, bt);
            s.a.matmul(isa, bt, s.width, ct)?;
            transpose_par(ct, rows, s.width, out);
            Ok(())
        } else {
            s.a.matmul(isa, &s.b, s.width, out)
        }
    }
}

/// Build, check and time one job (see the module doc).
pub fn measure(job: &GemmJob) -> Result<GemmReport> {
    let p = Problem::new(job)?;
    let isa = Isa::detect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(job.threads.max(1))
        .build()
        .map_err(|e| Error::invalid("threads", job.threads, e))?;
    let runs = time_pairs(&p, job, isa, &pool)?;
    Ok(report(job, &p, isa, runs))
}

/// The timed runs of one job: per-run seconds of each side (alternated), the dense way the
/// warm-up chose and the outputs' largest difference over the dense output's largest entry.
struct Runs {
    dense: Vec<f64>,
    sparse: Vec<f64>,
    way: DenseWay,
    max_rel_error: f64,
}

/// Whether an operand `B: [k, n]` (data, row stride, column stride) is stored as the rows of its
/// transpose: the layout of `n` dot products over `k`.
fn dots_layout(b: &(Vec<f32>, usize, usize), k: usize) -> bool {
    b.1 == 1 && b.2 == k
}

/// Whether `B: [k, n]` is stored row-major: the layout of `k` scaled rows of `n` added up.
fn rows_layout(b: &(Vec<f32>, usize, usize), n: usize) -> bool {
    b.1 == n && b.2 == 1
}

/// Every way the dense reference may run for `p` on up to `threads` threads: one thread or
/// all, `C` or `Cᵀ`, and the weights' other layout where the problem made one.
fn dense_ways(p: &Problem, threads: usize) -> Vec<DenseWay> {
    let thread_counts = if threads > 1 {
        vec![1, threads]
    } else {
        vec![1]
    };
    let layouts = if p.b_alt.is_some() || p.a_alt.is_some() {
        vec![false, true]
    } else {
        vec![false]
    };
    let mut ways = Vec::new();
    for &alt in &layouts {
        for swapped in [false, true] {
            for &threads in &thread_counts {
                ways.push(DenseWay {
                    threads,
                    swapped,
                    alt,
                });
            }
        }
    }
    if p.halves.is_some() {
        // bf16 below batch 16: only the ways that read the weights as bf16 — `swapped`, the
        // bf16 kernels (dot products on the layout whose rows are B's columns, the row-sum
        // way at batch 1 only), else widening them for gemm.
        let (m, ..) = p.shape;
        ways.retain(|w| {
            let b = if w.alt { p.b_alt.as_ref() } else { Some(&p.b) };
            !w.swapped || b.is_some_and(|b| dots_layout(b, p.shape.2) || m == 1)
        });
    }
    ways
}

/// Choose the dense way by a warm-up, then time dense and sparse in alternation (so drift
/// hits both sides alike) until each side has at least 5 runs and `min_seconds`, at most 50.
fn time_pairs(p: &Problem, job: &GemmJob, isa: Isa, pool: &rayon::ThreadPool) -> Result<Runs> {
    let (m, n, _) = p.shape;
    let mut want = vec![0f32; m * n];
    let mut got = vec![0f32; m * n];
    let mut scratch = match &p.sparse {
        Some(s) => (vec![0f32; s.b.len()], vec![0f32; s.a.dims().0 * s.width]),
        None => (Vec::new(), Vec::new()),
    };
    // The dense reference at its best: gemm on all threads or on one (small products lose
    // more to the split than they gain), in either orientation (C, or Cᵀ transposed into
    // place; masklab's matrix-vector kernels at batch 1), whichever the warm-up finds fastest.
    let dense_scratch = std::cell::RefCell::new(Vec::new());
    let time_dense = |out: &mut [f32], way: DenseWay| -> Result<f64> {
        let mut guard = dense_scratch.borrow_mut();
        let scratch: &mut Vec<f32> = &mut guard;
        let t = Instant::now();
        pool.install(|| p.dense(out, way, scratch))?;
        Ok(t.elapsed().as_secs_f64())
    };
    let choices = dense_ways(p, job.threads);
    let mut best = (f64::INFINITY, choices[0]);
    for _ in 0..2 {
        for &c in &choices {
            let s = time_dense(&mut want, c)?;
            if s < best.0 {
                best = (s, c);
            }
        }
    }
    let way = best.1;
    let run_dense = |out: &mut [f32]| time_dense(out, way);
    let mut run_sparse = |out: &mut [f32]| -> Result<f64> {
        let t = Instant::now();
        match &p.sparse {
            Some(s) => pool.install(|| p.sparse(s, isa, out, &mut scratch))?,
            None => {
                let mut guard = dense_scratch.borrow_mut();
                let scratch: &mut Vec<f32> = &mut guard;
                pool.install(|| p.dense(out, way, scratch))?
            }
        }
        Ok(t.elapsed().as_secs_f64())
    };
    // Warm-up (caches, pages, the pool), then alternate.
    run_dense(&mut want)?;
    run_sparse(&mut got)?;
    let (mut dense, mut sparse) = (Vec::new(), Vec::new());
    let (mut spent_d, mut spent_s) = (0.0, 0.0);
    while dense.len() < 50
        && (dense.len() < 5 || spent_d < job.min_seconds || spent_s < job.min_seconds)
    {
        let d = run_dense(&mut want)?;
        let s = run_sparse(&mut got)?;
        spent_d += d;
        spent_s += s;
        dense.push(d);
        sparse.push(s);
    }
    let scale = want.iter().fold(0f32, |a, v| a.max(v.abs())) as f64;
    let diff = want
        .iter()
        .zip(&got)
        .fold(0f64, |a, (x, y)| a.max((x - y).abs() as f64));
    Ok(Runs {
        dense,
        sparse,
        way,
        max_rel_error: if scale > 0.0 { diff / scale } else { diff },
    })
}

/// The report of `runs`: medians and quartiles of the paired ratios, rates, bytes, the byte,
/// FLOP and L1 limits.
fn report(job: &GemmJob, p: &Problem, isa: Isa, runs: Runs) -> GemmReport {
    let Runs {
        dense: mut dense_t,
        sparse: mut sparse_t,
        way,
        max_rel_error,
    } = runs;
    let (m, n, k) = p.shape;
    let mut ratios: Vec<f64> = dense_t.iter().zip(&sparse_t).map(|(d, s)| d / s).collect();
    ratios.sort_by(f64::total_cmp);
    let quartile = |q: f64| ratios[((ratios.len() - 1) as f64 * q).round() as usize];
    let (speedup_q25, speedup_q75) = (quartile(0.25), quartile(0.75));
    let (dense_seconds, sparse_seconds) = (median(&mut dense_t), median(&mut sparse_t));
    let flops = 2.0 * (m * n * k) as f64;
    // Inputs in the job's type, the output in f32.
    let value = job.dtype.bytes();
    let dense_bytes = value * (m * k + k * n) + 4 * m * n;
    let (kernel, sparse_bytes, density) = match &p.sparse {
        Some(s) => {
            let (r, c) = s.a.dims();
            let dense_a = r * c * value;
            (
                s.a.name().to_string(),
                dense_bytes - dense_a + s.a.bytes(),
                s.a.density(),
            )
        }
        None => ("dense".to_string(), dense_bytes, 1.0),
    };
    let byte_limit = dense_bytes as f64 / sparse_bytes as f64;
    let flop_limit = 1.0 / density;
    let speedup = dense_seconds / sparse_seconds;
    let limit = if job.batch < 16 {
        byte_limit
    } else {
        flop_limit
    };
    // The L1-operand bound applies where the tile kernels run (width ≥ 16: every sparse
    // side at batch ≥ 16, and the update, whose width is `in`).
    let rates = match &p.sparse {
        Some(s) if s.width >= 16 => crate::sparse::probe::rates(isa),
        _ => None,
    };
    let threads = job.threads.max(1) as f64;
    let l1_operand_gflops = rates.map(|r| r.l1_operand_gflops * threads);
    let l1_limit = rates.map(|r| flop_limit * r.ratio());
    GemmReport {
        kernel,
        isa: format!("{isa:?}").to_lowercase(),
        dtype: job.dtype,
        dense_seconds,
        sparse_seconds,
        speedup,
        gflops_dense_equivalent: flops / sparse_seconds / 1e9,
        gflops_executed: flops * density / sparse_seconds / 1e9,
        gflops_dense: flops / dense_seconds / 1e9,
        dense_bytes,
        sparse_bytes,
        byte_limit,
        flop_limit,
        share_of_limit: speedup / limit,
        l1_operand_gflops,
        register_gflops: rates.map(|r| r.register_gflops * threads),
        l1_limit,
        share_of_l1_limit: l1_limit.map(|l| speedup / l),
        max_rel_error,
        speedup_q25,
        speedup_q75,
        runs_per_side: dense_t.len(),
        dense_threads: way.threads,
        dense_orientation: format!(
            "{}{}",
            if way.swapped { "ct" } else { "c" },
            match (way.alt, p.a_alt.is_some()) {
                (false, _) => "",
                (true, false) => "/wt",
                (true, true) => "/g",
            }
        ),
    }
}

impl std::fmt::Display for GemmReport {
    /// One paragraph: both times, the speedup against its limit, rates, bytes, error.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} dense {:.3} ms, sparse ({} kernel, {}) {:.3} ms: speedup {:.2}x (run by run {:.2}–{:.2}x, quartiles; {:.0}% of its limit; bytes {:.2}x, flops {:.2}x)",
            self.dtype,
            self.dense_seconds * 1e3,
            self.kernel,
            self.isa,
            self.sparse_seconds * 1e3,
            self.speedup,
            self.speedup_q25,
            self.speedup_q75,
            self.share_of_limit * 100.0,
            self.byte_limit,
            self.flop_limit
        )?;
        write!(
            f,
            "GFLOP/s: dense {:.1}, sparse {:.1} dense-equivalent ({:.1} executed); bytes {} dense, {} sparse; max_rel_error {:.2e}; median of {} runs each",
            self.gflops_dense,
            self.gflops_dense_equivalent,
            self.gflops_executed,
            self.dense_bytes,
            self.sparse_bytes,
            self.max_rel_error,
            self.runs_per_side
        )?;
        if let (Some(limit), Some(l1), Some(reg)) =
            (self.l1_limit, self.l1_operand_gflops, self.register_gflops)
        {
            write!(
                f,
                "\nL1 bound: this CPU multiplies at {l1:.0} GFLOP/s with B read from L1 (the sparse kernels' mix) against {reg:.0} with both operands in registers, so the sparse side can reach {limit:.2}x of a dense product at the register rate ({:.0}% reached; dense ran at {:.0}% of that rate)",
                self.speedup / limit * 100.0,
                self.gflops_dense / reg * 100.0
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
