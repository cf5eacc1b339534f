//! Sparse linear layer: masked forward, backward and update GEMMs as one candle custom op.
//!
//! Problem: train with dense master weights `W: [out, in]`, a 0/1 mask `m` and a neural-gradient
//! estimator `est`, so that the three GEMMs of a linear layer see N:M operands:
//!
//! - forward `y = x (W⊙m)ᵀ + b` — `W⊙m` is N:M along `in` for an N:M mask;
//! - backward `dx = g (W⊙m)` — the operand `(W⊙m)ᵀ` is N:M too when `m` is transposable;
//! - update `dW = est(g)ᵀ x` — `est` prunes `g: [batch, out]` to N:M along the batch axis, the
//!   reduction dimension of this GEMM (`dense` leaves `g` alone).
//!
//! `dW` reaches the dense master weights unmasked (straight-through), plus the SR-STE term
//! `λ·(1−m)⊙W` when `srste > 0` (Zhou et al. 2021), which decays pruned weights.
//!
//! Guarantee: with the `dense` estimator the gradients are those of autograd on `x (W⊙m)ᵀ` with
//! the mask held constant and the gradient passed straight through to `W` (tested to 1e-5); with
//! an unbiased estimator `E[dW]` equals that gradient (tested statistically).
//!
//! Cost: on the CPU one op does the forward — `W⊙m` formed once, then one gemm call into an
//! output pre-filled with the bias, the ReLU applied in place when asked — and its backward is
//! two GEMMs (one when `x` needs no gradient), the bias sum and one estimator pass over `g`,
//! O(batch·out). On other devices the forward GEMM is candle's on detached operands and
//! `MaskedMatmul` carries the same backward.

use super::kernels::{
    ColumnSums, MatMul, Operand, ReluGrad, f32_slice, fork_transpose, gemm_split, nm_matmul,
    nm_matmul_t,
};
use crate::estimators::{self, Estimator};
use crate::mask::Structure;
use crate::mask::{Mask, Pattern};
use crate::par::join;
use crate::sparse::nm::{NmMatrix, SlotMap};
use crate::sparse::transpose;
use candle_core::backend::BackendStorage;
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor, Var};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// How the update GEMM's neural gradient `g` is pruned.
#[derive(Clone, Copy)]
pub enum GradEstimator {
    /// No pruning.
    Dense,
    /// A registered estimator with its N:M pattern, along the batch axis.
    Nm(&'static dyn Estimator, Pattern),
}

impl std::fmt::Debug for GradEstimator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GradEstimator::Dense => write!(f, "dense"),
            GradEstimator::Nm(e, p) => write!(f, "{}:{}", e.name(), p),
        }
    }
}

impl std::str::FromStr for GradEstimator {
    type Err = crate::Error;
    /// `dense`, or `NAME:N:M` (e.g. `mvue:2:4`, `greedy:2:4`, `mvue_1to2:1:2`).
    fn from_str(s: &str) -> crate::Result<Self> {
        if s == "dense" {
            return Ok(GradEstimator::Dense);
        }
        let (name, pat) = s.split_once(':').ok_or_else(|| {
            crate::Error::invalid(
                "grad-estimator",
                s,
                "expected dense or NAME:N:M, e.g. mvue:2:4",
            )
        })?;
        let est = estimators::by_name(name)?;
        let pattern: Pattern = pat.parse()?;
        est.supports(pattern)
            .map_err(|e| crate::Error::invalid("grad-estimator", s, e))?;
        Ok(GradEstimator::Nm(est, pattern))
    }
}

/// Which kernels run a layer's three GEMMs on the CPU (`masklab train --gemm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GemmMode {
    /// The compressed N:M kernels ([`crate::sparse::nm`]) wherever an operand is N:M: the
    /// forward for an N:M or transposable mask, the backward data GEMM for a transposable one,
    /// the update for an N:M gradient estimator; dense gemm on the masked operand elsewhere.
    #[default]
    Sparse,
    /// Dense gemm on masked operands for all three (the path the kernels are compared with).
    MaskedDense,
}

impl std::str::FromStr for GemmMode {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "sparse" => Ok(GemmMode::Sparse),
            "masked-dense" => Ok(GemmMode::MaskedDense),
            other => Err(crate::Error::invalid(
                "gemm",
                other,
                "expected sparse or masked-dense",
            )),
        }
    }
}

impl std::fmt::Display for GemmMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GemmMode::Sparse => "sparse",
            GemmMode::MaskedDense => "masked-dense",
        })
    }
}

/// A compressed operand and where its values come from in the dense weights.
struct Compressed {
    /// The operand; its values are refilled in place before each product.
    matrix: Mutex<NmMatrix>,
    /// Each stored value's index in `W` (row-major `[out, in]`).
    map: SlotMap,
}

impl Compressed {
    /// `f` of the operand with its values refilled from the weights `w`.
    fn with_refilled<R>(
        &self,
        w: &[f32],
        f: impl FnOnce(&NmMatrix) -> candle_core::Result<R>,
    ) -> candle_core::Result<R> {
        let mut a = self.matrix.lock().unwrap_or_else(|p| p.into_inner());
        a.refill(w, &self.map).map_err(to_candle)?;
        f(&a)
    }
}

/// The compressed operands of a layer's mask, built when the mask is set: positions fixed,
/// values refilled from the weights before each product ([`NmMatrix::refill`] through a
/// precomputed [`SlotMap`]: one gather, no mask decoding).
struct Layouts {
    /// `W⊙m`, N:M along `in`: the forward operand.
    forward: Compressed,
    /// `(W⊙m)ᵀ`, N:M along `out`: the backward data operand (transposable masks only).
    backward: Option<Compressed>,
}

/// What the op remembers of its last backward pass, for structure checks and gradient capture.
#[derive(Default)]
pub struct Recorded {
    /// `g` as it arrived (the dense neural gradient).
    pub grad: Option<Tensor>,
    /// `est(g)` as used in the update GEMM.
    pub pruned: Option<Tensor>,
}

/// What both ops' backward passes share: the update GEMM `dW = est(g)ᵀx (+ SR-STE)` and the
/// record of what it saw.
struct UpdateGemm {
    mask: Option<Tensor>,
    estimator: GradEstimator,
    /// Run `est(g)ᵀx` by the compressed kernel (the estimator's pattern along the batch).
    sparse: bool,
    srste: f64,
    seed: u64,
    calls: Arc<AtomicU64>,
    record: Arc<Mutex<Recorded>>,
}

impl UpdateGemm {
    /// The estimator's pattern (1:1 for dense, which never runs compressed).
    fn pattern(&self) -> Pattern {
        match self.estimator {
            GradEstimator::Nm(_, p) => p,
            GradEstimator::Dense => Pattern { n: 1, m: 1 },
        }
    }

    /// `est(g)` with a fresh draw per call (seeded from the layer's seed and the call count).
    fn prune(&self, g: &Tensor) -> candle_core::Result<Tensor> {
        match self.estimator {
            GradEstimator::Dense => Ok(g.clone()),
            GradEstimator::Nm(est, pattern) => {
                let call = self.calls.fetch_add(1, Ordering::Relaxed);
                let seed = crate::seed::derive_nth(self.seed, "estimator draw", call);
                estimators::sample(est, g, pattern, 0, seed)
                    .map_err(|e| candle_core::Error::Msg(e.to_string()))
            }
        }
    }

    /// `dw + λ·(1−m)⊙W` when SR-STE is on (detached `w`), else `dw`; then record `g` and
    /// `est(g)`.
    fn finish(
        &self,
        dw: Tensor,
        w: &Tensor,
        g: Tensor,
        pruned: Tensor,
    ) -> candle_core::Result<Tensor> {
        let dw = match (&self.mask, self.srste > 0.0) {
            (Some(m), true) => dw.add(&w.mul(&m.affine(-1.0, 1.0)?)?.affine(self.srste, 0.0)?)?,
            _ => dw,
        };
        let mut rec = self.record.lock().unwrap_or_else(|p| p.into_inner());
        rec.grad = Some(g);
        rec.pruned = Some(pruned);
        Ok(dw)
    }
}

/// The custom op: arguments `(y, x, W)` where `y = x (W⊙m)ᵀ` was computed on detached operands.
struct MaskedMatmul {
    /// The forward operand `W⊙m` (detached), reused by the data gradient.
    wm: Tensor,
    update: UpdateGemm,
}

impl CustomOp3 for MaskedMatmul {
    fn name(&self) -> &'static str {
        "masked-matmul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        Ok((s1.try_clone(l1)?, l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        _: &candle_core::CudaStorage,
        _: &Layout,
        _: &candle_core::CudaStorage,
        _: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        Ok((s1.try_clone(l1)?, l1.shape().clone()))
    }

    fn bwd(
        &self,
        _y: &Tensor,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // Nothing returned here may reach back into the forward graph: candle keeps a
        // variable's gradient as built, and the optimiser must not inherit the step's graph.
        let g = &g.detach();
        let dx = if x.track_op() {
            Some(g.matmul(&self.wm)?)
        } else {
            None
        };
        let pruned = self.update.prune(g)?;
        let dw = pruned.t()?.matmul(&x.detach())?;
        let dw = self.update.finish(dw, &w.detach(), g.clone(), pruned)?;
        Ok((None, dx, Some(dw)))
    }
}

fn to_candle(e: crate::Error) -> candle_core::Error {
    candle_core::Error::Msg(e.to_string())
}

/// `f` of a CPU f32 tensor's values (made contiguous first).
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (s, l) = t.storage_and_layout();
    match &*s {
        candle_core::Storage::Cpu(c) => Ok(f(f32_slice(c, l, "fused-linear")?)),
        _ => candle_core::bail!("fused-linear: expected a CPU tensor"),
    }
}

/// The backward data GEMM by the N:M kernel: `g: [n, out]` → `dx = g·(W⊙m)`, as
/// `dxᵀ = (W⊙m)ᵀ·gᵀ` with the compressed transpose (transposable masks).
struct NmData<'a>(&'a NmMatrix);

impl candle_core::CustomOp1 for NmData<'_> {
    fn name(&self) -> &'static str {
        "nm-data-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = f32_slice(s, l, "nm-data-grad")?;
        let (n, _) = l.shape().dims2()?;
        let inp = self.0.rows();
        let mut dxt = vec![0f32; inp * n];
        nm_matmul_t(self.0, g, n, &mut dxt)?;
        let mut dx = vec![0f32; n * inp];
        fork_transpose(&dxt, inp, n, &mut dx);
        Ok((CpuStorage::F32(dx), Shape::from((n, inp))))
    }
}

/// The update GEMM by the N:M kernel: `(ĝ: [n, out], x: [n, in])` → `dW = ĝᵀ·x`, with `ĝᵀ`
/// compressed along the batch (N:M as the estimator pruned it; a batch that is not whole
/// groups of M falls back to dense gemm).
struct NmUpdate(Pattern);

impl candle_core::CustomOp2 for NmUpdate {
    fn name(&self) -> &'static str {
        "nm-update"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        if !l1.shape().dims2()?.0.is_multiple_of(self.0.m) {
            return MatMul { lhs_t: true }.cpu_fwd(s1, l1, s2, l2);
        }
        let g = f32_slice(s1, l1, "nm-update")?;
        let x = f32_slice(s2, l2, "nm-update")?;
        let (n, out) = l1.shape().dims2()?;
        let (n2, inp) = l2.shape().dims2()?;
        if n != n2 {
            candle_core::bail!("nm-update: ĝ [{n}, {out}] and x [{n2}, {inp}]")
        }
        let a = NmMatrix::compress_transposed_nonzero(g, n, out, self.0).map_err(to_candle)?;
        let mut dw = vec![0f32; out * inp];
        nm_matmul(&a, x, inp, &mut dw)?;
        Ok((CpuStorage::F32(dw), Shape::from((out, inp))))
    }
}

/// `(dW, db)` of a layer's fused backward passes since its last forward, waiting for
/// [`SparseLinear::collect_grads`].
type PendingGrads = Arc<Mutex<Option<(Tensor, Tensor)>>>;

/// The CPU op: arguments `(x, W, b)`; `y = x (W⊙m)ᵀ + b` (then ReLU when `relu`) as one gemm
/// call on a bias-filled output, `W⊙m` formed once and kept for the data gradient.
///
/// Its backward hands `dW` and `db` to the layer's [`PendingGrads`] instead of returning them:
/// candle's backprop would add each returned gradient to a fresh zero tensor, two extra passes
/// over every weight gradient (in candle's spinning thread pool for the large ones, which then
/// competes with the next GEMMs for the cores).
struct FusedLinear {
    mask: Option<Arc<Vec<f32>>>,
    /// The compressed layouts of the mask (`--gemm sparse` with an N:M or transposable mask).
    layouts: Option<Arc<Layouts>>,
    /// What the last calls ran compressed ([`Ran`]).
    ran: Arc<Ran>,
    relu: bool,
    wm: Mutex<Option<Tensor>>,
    update: UpdateGemm,
    pending: PendingGrads,
}

impl CustomOp3 for FusedLinear {
    fn name(&self) -> &'static str {
        "fused-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, "fused-linear")?;
        let w = f32_slice(s2, l2, "fused-linear")?;
        let b = f32_slice(s3, l3, "fused-linear")?;
        let (n, k) = l1.shape().dims2()?;
        let (out, k2) = l2.shape().dims2()?;
        if k != k2 || b.len() != out {
            candle_core::bail!(
                "fused-linear: x [{n}, {k}], W [{out}, {k2}], b [{}]",
                b.len()
            )
        }
        // y ← y + b, then ReLU, on a row segment starting at column c0.
        let relu = self.relu;
        let finish = |c0: usize, row: &mut [f32]| {
            for (v, b) in row.iter_mut().zip(&b[c0..]) {
                *v = if relu { (*v + b).max(0.0) } else { *v + b };
            }
        };
        // The compressed kernels run only where they pay ([`compresses`]); the backward data
        // GEMM needs the dense `W⊙m` unless it runs compressed (same rows, same decision).
        let layouts = self.layouts.as_ref().filter(|_| compresses(n));
        let needs_wm = self.mask.is_some() && layouts.is_none_or(|l| l.backward.is_none());
        self.ran
            .set(Ran::FORWARD, layouts.is_some() && self.mask.is_some());
        let wm_owned: Option<Vec<f32>> = if needs_wm {
            self.mask
                .as_ref()
                .map(|m| w.iter().zip(m.iter()).map(|(a, m)| a * m).collect())
        } else {
            None
        };
        let y = match (layouts, &self.mask) {
            (Some(l), Some(_)) => {
                // Yᵀ = (W⊙m)·Xᵀ by the N:M kernel (x read as Xᵀ's transpose), then y = Y + b.
                let mut yt = vec![0f32; out * n];
                l.forward
                    .with_refilled(w, |wc| nm_matmul_t(wc, x, n, &mut yt))?;
                let mut y = vec![0f32; n * out];
                fork_transpose(&yt, out, n, &mut y);
                y.chunks_mut(out).for_each(|row| finish(0, row));
                y
            }
            _ => {
                let wm: &[f32] = wm_owned.as_deref().unwrap_or(w);
                // y = x · (W⊙m)ᵀ: rhs(j, o) = wm[o·k + j]; each part adds b and applies the
                // ReLU to its own rows or columns.
                gemm_split(
                    (n, out, k),
                    Operand {
                        data: x,
                        rs: k,
                        cs: 1,
                    },
                    Operand {
                        data: wm,
                        rs: 1,
                        cs: k,
                    },
                    Some(&finish),
                )?
            }
        };
        if let Some(v) = wm_owned {
            let t = Tensor::from_vec(v, (out, k), &candle_core::Device::Cpu)?;
            *self.wm.lock().unwrap_or_else(|p| p.into_inner()) = Some(t);
        }
        Ok((CpuStorage::F32(y), Shape::from((n, out))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        y: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // Nothing returned here may reach back into the forward graph (see MaskedMatmul::bwd).
        let mut g = g.detach().contiguous()?;
        if self.relu {
            g = y.detach().apply_op2_no_bwd(&g, &ReluGrad)?;
        }
        let wm = self
            .wm
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_else(|| w.detach());
        let x_needs_grad = x.track_op();
        let x = x.detach().contiguous()?;
        let wide_ok = compresses(g.dims2()?.0);
        let sparse_update = self.update.sparse && wide_ok;
        let backward = self
            .layouts
            .as_deref()
            .and_then(|l| l.backward.as_ref())
            .filter(|_| wide_ok && self.mask.is_some() && x_needs_grad);
        if x_needs_grad {
            self.ran.set(Ran::BACKWARD, backward.is_some());
        }
        self.ran.set(Ran::UPDATE, sparse_update);
        let update = || -> candle_core::Result<(Tensor, Tensor)> {
            let pruned = self.update.prune(&g)?;
            let pruned = pruned.contiguous()?;
            let dw = if sparse_update {
                pruned.apply_op2_no_bwd(&x, &NmUpdate(self.update.pattern()))?
            } else {
                pruned.apply_op2_no_bwd(&x, &MatMul { lhs_t: true })?
            };
            Ok((dw, pruned))
        };
        let data = || -> candle_core::Result<Tensor> {
            match backward {
                Some(bt) => {
                    // (W⊙m)ᵀ refilled from the weights: entry (i, o) is w[o·in + i].
                    with_f32(&w.detach(), |wv| {
                        bt.with_refilled(wv, |wt| g.apply_op1_no_bwd(&NmData(wt)))
                    })?
                }
                None => g.apply_op2_no_bwd(&wm, &MatMul { lhs_t: false }),
            }
        };
        // With both products to do, each runs whole on one thread, side by side (each operand
        // packed once, one fork instead of two; a GEMM inside a fork is one call); else the one
        // product is split over the threads.
        let (dx, (dw, pruned)) = if x_needs_grad {
            let (dx, up) = join(data, update);
            (Some(dx?), up?)
        } else {
            (None, update()?)
        };
        let db = g.apply_op1_no_bwd(&ColumnSums)?;
        let dw = self.update.finish(dw, &w.detach(), g, pruned)?;
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        *pending = Some(match pending.take() {
            // The layer ran more than once in this graph: its gradients add up.
            Some((w0, b0)) => (w0.add(&dw)?, b0.add(&db)?),
            None => (dw, db),
        });
        Ok((dx, None, None))
    }
}

/// Rows of the batch operand (the batch, or batch × positions of a convolution's im2col) up to
/// which the fused op runs a layer's GEMMs on the compressed kernels. Past it they run
/// masked-dense: an im2col operand is wide and the weight short (LeNet's second convolution:
/// 32 × 400 weights against 12,800 rows at batch 128), so the kernel packs a block of B for few
/// weight rows and transposes a wide output, which cost more than the skipped multiply-adds —
/// table7b's default run had LeNet's transposable 2:4 step at 0.073 s compressed against 0.052 s
/// masked-dense. Every MLP batch of table4 and table7b is below it.
const MAX_COMPRESSED_ROWS: usize = 4096;

/// Whether a product over `rows` batch rows runs compressed (see [`MAX_COMPRESSED_ROWS`]).
fn compresses(rows: usize) -> bool {
    rows <= MAX_COMPRESSED_ROWS
}

/// Which GEMMs a layer's last fused calls ran on the compressed kernels, set by the op itself:
/// per GEMM a bit for "ran compressed" and one for "has run" (the first layer's backward data
/// GEMM never runs).
#[derive(Default)]
struct Ran(std::sync::atomic::AtomicU8);

impl Ran {
    const FORWARD: u8 = 0;
    const BACKWARD: u8 = 1;
    const UPDATE: u8 = 2;

    /// Record that GEMM `gemm` (0, 1, 2) ran, compressed or not.
    fn set(&self, gemm: u8, compressed: bool) {
        let (on, seen) = (1 << gemm, 8 << gemm);
        self.0.fetch_or(seen, Ordering::Relaxed);
        if compressed {
            self.0.fetch_or(on, Ordering::Relaxed);
        } else {
            self.0.fetch_and(!on, Ordering::Relaxed);
        }
    }

    /// Per GEMM, whether its last run was compressed; `None` if it has not run.
    fn get(&self) -> [Option<bool>; 3] {
        let b = self.0.load(Ordering::Relaxed);
        [0, 1, 2].map(|g| (b & (8 << g) != 0).then_some(b & (1 << g) != 0))
    }
}

/// A linear layer `y = x (W⊙m)ᵀ + b` with dense master weights, a mask and a gradient estimator.
pub struct SparseLinear {
    /// Master weights `[out, in]`.
    pub weight: Var,
    /// Bias `[out]`.
    pub bias: Var,
    /// The mask `[out, in]` as f32 0/1 on the weights' device (`None`: dense).
    mask: Option<Tensor>,
    /// The same mask as CPU values, for the fused CPU op.
    mask_cpu: Option<Arc<Vec<f32>>>,
    /// Which kernels the fused CPU op runs.
    gemm: GemmMode,
    /// The mask structure, when its operands compress (N:M, transposable N:M).
    structure: Structure,
    /// The compressed layouts of the current mask (`gemm` sparse and an N:M structure).
    layouts: Option<Arc<Layouts>>,
    /// Estimator for the update GEMM.
    estimator: GradEstimator,
    /// SR-STE decay λ on pruned weights (0: off).
    srste: f64,
    /// Whether the custom op is used (`false`: plain autograd, the dense reference).
    custom: bool,
    /// Whether the layer takes masks (the models leave the stem and the head dense).
    pub prunable: bool,
    seed: u64,
    calls: Arc<AtomicU64>,
    record: Arc<Mutex<Recorded>>,
    pending: PendingGrads,
    ran: Arc<Ran>,
    /// The input of the last forward, kept while capturing (for calibration).
    captured: Mutex<Option<Tensor>>,
    capturing: std::sync::atomic::AtomicBool,
}

impl SparseLinear {
    /// A layer from its parameters; `custom = false` gives the plain autograd layer.
    pub fn new(weight: Var, bias: Var, estimator: GradEstimator, custom: bool, seed: u64) -> Self {
        SparseLinear {
            weight,
            bias,
            mask: None,
            mask_cpu: None,
            gemm: GemmMode::MaskedDense,
            structure: Structure::Dense,
            layouts: None,
            estimator,
            srste: 0.0,
            custom,
            prunable: true,
            seed,
            calls: Arc::new(AtomicU64::new(0)),
            record: Arc::new(Mutex::new(Recorded::default())),
            pending: Arc::new(Mutex::new(None)),
            ran: Arc::new(Ran::default()),
            captured: Mutex::new(None),
            capturing: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Keep (or stop keeping) the input of each forward, `[rows, in]` detached — for a conv
    /// layer its im2col rows; read it with [`SparseLinear::take_input`].
    pub fn capture_inputs(&self, on: bool) {
        self.capturing.store(on, Ordering::Relaxed);
        if !on {
            *self.captured.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }

    /// The input of the last forward while capturing.
    pub fn take_input(&self) -> Option<Tensor> {
        self.captured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Moves the weight and bias gradients of the fused CPU op's backward into `grads` (adding
    /// to what is there). Call after `loss.backward()`; [`super::models::Model::backward`] does
    /// both. The other paths leave their gradients in `grads` themselves.
    pub fn collect_grads(&self, grads: &mut GradStore) -> candle_core::Result<()> {
        let taken = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((dw, db)) = taken {
            for (var, g) in [(&self.weight, dw), (&self.bias, db)] {
                let g = match grads.remove(var.as_tensor()) {
                    Some(old) => old.add(&g)?,
                    None => g,
                };
                grads.insert(var.as_tensor(), g);
            }
        }
        Ok(())
    }

    /// Set the SR-STE decay λ.
    pub fn with_srste(mut self, lambda: f64) -> Self {
        self.srste = lambda;
        self
    }

    /// The trainable variables: weight and bias.
    pub fn vars(&self) -> [Var; 2] {
        [self.weight.clone(), self.bias.clone()]
    }

    /// `[out, in]` of the weights.
    pub fn dims(&self) -> (usize, usize) {
        let d = self.weight.dims();
        (d[0], d[1])
    }

    /// Choose the kernels of the fused CPU op, and the structure the layer's masks will have
    /// (with [`GemmMode::Sparse`], an N:M or transposable structure runs its forward, and a
    /// transposable one its backward data GEMM, compressed; an N:M estimator its update). Set
    /// before the first mask.
    pub fn set_gemm(&mut self, gemm: GemmMode, structure: Structure) {
        self.gemm = gemm;
        self.structure = structure;
    }

    /// Which kernels each GEMM runs now: `(forward, backward data, update)`, each `true` when
    /// compressed.
    pub fn compressed_gemms(&self) -> (bool, bool, bool) {
        let l = self.layouts.as_ref();
        (
            l.is_some(),
            l.is_some_and(|l| l.backward.is_some()),
            self.sparse_update(),
        )
    }

    /// Which GEMMs the last training step ran compressed, `(forward, backward data, update)`:
    /// [`SparseLinear::compressed_gemms`] less those past `MAX_COMPRESSED_ROWS` (a GEMM that
    /// has not run yet, or never runs, as configured).
    pub fn ran_compressed(&self) -> (bool, bool, bool) {
        let [f, b, u] = self.ran.get();
        let (cf, cb, cu) = self.compressed_gemms();
        (f.unwrap_or(cf), b.unwrap_or(cb), u.unwrap_or(cu))
    }

    fn sparse_update(&self) -> bool {
        self.gemm == GemmMode::Sparse && matches!(self.estimator, GradEstimator::Nm(..))
    }

    /// Replace the mask (`None`: dense). With [`GemmMode::Sparse`] and an N:M structure the
    /// compressed layouts are rebuilt from it (an error if the mask is not of that structure).
    pub fn set_mask(&mut self, mask: Option<&Mask>) -> crate::Result<()> {
        (self.mask, self.mask_cpu) = match mask {
            None => (None, None),
            Some(m) => {
                let data: Vec<f32> = m.keep().iter().map(|&k| k as f32).collect();
                let t = Tensor::from_slice(&data, (m.rows(), m.cols()), self.weight.device())
                    .map_err(crate::Error::tensor("mask to device"))?;
                (Some(t), Some(Arc::new(data)))
            }
        };
        self.layouts = match (mask, self.gemm, self.structure) {
            (Some(m), GemmMode::Sparse, Structure::Nm(p) | Structure::Transposable(p))
                if self.weight.device().is_cpu() =>
            {
                let (r, c) = (m.rows(), m.cols());
                let w = self
                    .weight
                    .as_tensor()
                    .flatten_all()
                    .and_then(|t| t.to_vec1::<f32>())
                    .map_err(crate::Error::tensor("weights to CPU"))?;
                let keep: Vec<f32> = m.keep().iter().map(|&k| f32::from(k)).collect();
                let a = NmMatrix::compress(&w, m.keep(), r, c, p)?;
                let forward = Compressed {
                    map: a.slot_map(&keep, c, 1)?,
                    matrix: Mutex::new(a),
                };
                let backward = if matches!(self.structure, Structure::Transposable(_)) {
                    let mut wt = vec![0f32; r * c];
                    transpose(&w, r, c, &mut wt);
                    let a = NmMatrix::compress(&wt, m.transpose().keep(), c, r, p)?;
                    // Entry (i, o) of (W⊙m)ᵀ is w[o·in + i].
                    Some(Compressed {
                        map: a.slot_map(&keep, 1, c)?,
                        matrix: Mutex::new(a),
                    })
                } else {
                    None
                };
                Some(Arc::new(Layouts { forward, backward }))
            }
            _ => None,
        };
        Ok(())
    }

    /// `|W|` as a CPU matrix (the default mask score).
    pub fn weight_scores(&self) -> crate::Result<crate::mask::Matrix> {
        let (r, c) = self.dims();
        let data = self
            .weight
            .as_tensor()
            .abs()
            .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
            .map_err(crate::Error::tensor("weights to CPU"))?;
        crate::mask::Matrix::new(r, c, data)
    }

    /// The forward operand `W⊙m` (or `W`).
    pub fn masked_weight(&self) -> candle_core::Result<Tensor> {
        match &self.mask {
            Some(m) => self.weight.as_tensor().mul(m),
            None => Ok(self.weight.as_tensor().clone()),
        }
    }

    /// What the last backward pass saw and used.
    pub fn recorded(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The estimator of the update GEMM.
    pub fn estimator(&self) -> GradEstimator {
        self.estimator
    }

    fn update_gemm(&self) -> UpdateGemm {
        UpdateGemm {
            mask: self.mask.clone(),
            estimator: self.estimator,
            sparse: self.sparse_update(),
            srste: self.srste,
            seed: self.seed,
            calls: self.calls.clone(),
            record: self.record.clone(),
        }
    }

    /// `x: [batch, in]` → `[batch, out]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_with(x, false)
    }

    /// `relu(x (W⊙m)ᵀ + b)`: the layer and its activation (fused on the CPU).
    pub fn forward_relu(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_with(x, true)
    }

    fn forward_with(&self, x: &Tensor, relu: bool) -> candle_core::Result<Tensor> {
        if self.capturing.load(Ordering::Relaxed) {
            *self.captured.lock().unwrap_or_else(|p| p.into_inner()) = Some(x.detach());
        }
        let fused = self.custom
            && matches!(x.device(), candle_core::Device::Cpu)
            && x.dtype() == candle_core::DType::F32;
        if fused {
            // A backward whose gradients were never collected must not leak into the next step.
            // (Several forwards before one backward are fine: each backward adds to the slot.)
            *self.pending.lock().unwrap_or_else(|p| p.into_inner()) = None;
            let op = FusedLinear {
                mask: self.mask_cpu.clone(),
                layouts: self.layouts.clone(),
                ran: self.ran.clone(),
                relu,
                wm: Mutex::new(None),
                update: self.update_gemm(),
                pending: self.pending.clone(),
            };
            return x.contiguous()?.apply_op3_arc(
                self.weight.as_tensor(),
                self.bias.as_tensor(),
                Arc::new(Box::new(op)),
            );
        }
        let y = self.forward_device(x)?;
        if relu { y.relu() } else { Ok(y) }
    }

    /// The device-generic path (candle ops and [`MaskedMatmul`]; what CUDA runs).
    fn forward_device(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = if self.custom {
            let wm = self.masked_weight()?.detach();
            let y0 = x.detach().matmul(&wm.t()?)?;
            let op = MaskedMatmul {
                wm,
                update: self.update_gemm(),
            };
            y0.apply_op3_arc(x, self.weight.as_tensor(), Arc::new(Box::new(op)))?
        } else {
            x.matmul(&self.masked_weight()?.t()?)?
        };
        y.broadcast_add(self.bias.as_tensor())
    }
}

/// The 0/1 pattern of a tensor's non-zeros as a mask (`[rows, cols]`).
pub fn support(t: &Tensor) -> crate::Result<Mask> {
    let (r, c) = t.dims2().map_err(crate::Error::tensor("support"))?;
    let v = t
        .flatten_all()
        .and_then(|t| t.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>())
        .map_err(crate::Error::tensor("support"))?;
    Mask::new(r, c, v.iter().map(|&x| (x != 0.0) as u8).collect())
}

#[cfg(test)]
mod tests;
