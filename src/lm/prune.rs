//! One-shot layer-wise pruning of a language model's projections: magnitude, Wanda, SparseGPT
//! and ALPS, to unstructured, N:M or transposable N:M structures.
//!
//! Problem: make every q/k/v/o/gate/up/down projection sparse in the chosen structure while the
//! model's outputs on calibration text move least. Embeddings, norms and the output head stay
//! dense. Order: projections are pruned in forward order, stage by stage inside each decoder
//! layer (q, k, v; then o; then gate, up; then down); each stage's statistics come from a pass
//! over the calibration windows through the model as pruned so far, so every projection sees
//! the inputs produced by the already-pruned projections before it.
//!
//! Scores: magnitude `|W|`; Wanda `|W_ij|·‖x_j‖₂` (‖x_j‖ over every calibration token);
//! SparseGPT ([`super::sparsegpt`]) its own saliency and update; ALPS ([`super::alps`]) its
//! operator splitting and refit. Unstructured masks: per layer for magnitude and ALPS, per output
//! row for Wanda (as its paper does), per column block for SparseGPT.
//! N:M masks run along `in`; transposable masks take each M×M tile's mask from the chosen
//! solver, and the exact solver on the same scores gives the kept_gap.
//!
//! Reported per projection: the relative reconstruction error `‖XWᵀ − XŴᵀ‖/‖XWᵀ‖` over the
//! calibration tokens (X the projection's input in the pruned model), the kept_gap, and whether
//! the pruned weight has the structure. Cost: about one forward of each layer over the
//! calibration windows (each stage's input is computed once and kept until its projections are
//! pruned; gate and up run twice only when their outputs would take more than
//! `KEEP_MLP_BYTES`), the errors from each stage's Gram matrix where it has one, plus
//! SparseGPT's `O(in³ + out·in²)` or ALPS's `O(in³)` and `out·in²` per iteration. Memory: the
//! residual stream of every calibration window, twice, plus the MLP's inner activations of
//! every window while they fit in `KEEP_MLP_BYTES`.

use super::alps;
use super::corpus::Perplexity;
use super::model::{Layer, Llama, Proj, Stage};
use super::sparsegpt::{self, KeptScores, Settings};
use crate::error::{Error, Result};
use crate::mask::Structure;
use crate::mask::{Mask, Matrix};
use candle_core::{DType, Tensor};
use std::str::FromStr;

/// A pruning method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// `|W|`.
    Magnitude,
    /// `|W|·‖x‖`.
    Wanda,
    /// SparseGPT's OBS updates.
    SparseGpt,
    /// ALPS's operator splitting and refit.
    Alps,
}

impl Method {
    /// Whether the method reads every stage's Gram matrix `XᵀX`.
    fn needs_gram(self) -> bool {
        matches!(self, Method::SparseGpt | Method::Alps)
    }
}

impl FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "magnitude" => Ok(Method::Magnitude),
            "wanda" => Ok(Method::Wanda),
            "sparsegpt" => Ok(Method::SparseGpt),
            "alps" => Ok(Method::Alps),
            _ => Err(Error::invalid(
                "method",
                s,
                "expected magnitude, wanda, sparsegpt or alps",
            )),
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Magnitude => "magnitude",
            Method::Wanda => "wanda",
            Method::SparseGpt => "sparsegpt",
            Method::Alps => "alps",
        })
    }
}

/// What to prune and how.
#[derive(Debug, Clone)]
pub struct PruneSpec {
    /// The method.
    pub method: Method,
    /// The structure (`Dense` prunes nothing).
    pub kind: Structure,
    /// The transposable solver.
    pub solver: crate::solvers::SolverRef,
    /// Seed for solvers that draw.
    pub seed: u64,
    /// Calibration windows per forward batch.
    pub batch: usize,
}

/// What pruning did to one projection.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProjReport {
    /// Decoder layer.
    pub layer: usize,
    /// Projection (`q`, …, `down`).
    pub proj: &'static str,
    /// `[out, in]`.
    pub shape: [usize; 2],
    /// Fraction of weights that are zero after pruning.
    pub sparsity: f64,
    /// `‖XWᵀ − XŴᵀ‖/‖XWᵀ‖` over the calibration tokens.
    pub rel_error: f64,
    /// `1 − kept/kept_exact` of the transposable mask's score (None for other structures).
    pub kept_gap: Option<f64>,
    /// The pruned weight has the structure.
    pub structure_ok: bool,
}

/// What a pruned model's projection reports add up to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Totals {
    /// Mean kept_gap over the projections that have one (transposable structures).
    pub mean_kept_gap: Option<f64>,
    /// Mean relative reconstruction error.
    pub mean_rel_error: f64,
    /// Largest relative reconstruction error.
    pub max_rel_error: f64,
    /// Fraction of zero weights over all projections (weighted by size).
    pub sparsity: f64,
    /// Every projection has its structure.
    pub structure_ok: bool,
}

/// The [`Totals`] of `reports`.
pub fn totals(reports: &[ProjReport]) -> Totals {
    let gaps: Vec<f64> = reports.iter().filter_map(|r| r.kept_gap).collect();
    let size = |r: &ProjReport| (r.shape[0] * r.shape[1]) as f64;
    let weights: f64 = reports.iter().map(size).sum();
    Totals {
        mean_kept_gap: (!gaps.is_empty()).then(|| gaps.iter().sum::<f64>() / gaps.len() as f64),
        mean_rel_error: reports.iter().map(|r| r.rel_error).sum::<f64>()
            / reports.len().max(1) as f64,
        max_rel_error: reports.iter().map(|r| r.rel_error).fold(0.0, f64::max),
        sparsity: reports.iter().map(|r| r.sparsity * size(r)).sum::<f64>() / weights.max(1.0),
        structure_ok: reports.iter().all(|r| r.structure_ok),
    }
}

/// Per-stage statistics of the inputs: the Gram matrix `XᵀX` where it is cheap or needed
/// (every stage of width h; the MLP's output stage for SparseGPT and ALPS only), else Σ x_j².
struct Stats {
    /// Σ x_j² per input, when there is no Gram matrix.
    sq: Option<Tensor>,
    /// Σ x xᵀ, by blocks while accumulating.
    gram: Option<Gram>,
    /// The assembled Σ x xᵀ (after [`Stats::finish`]).
    g: Option<Tensor>,
}

impl Stats {
    fn new(stage: Stage, method: Method) -> Self {
        Stats {
            sq: None,
            gram: (method.needs_gram() || stage != Stage::MlpOut).then(Gram::default),
            g: None,
        }
    }

    fn add(&mut self, x: &Tensor) -> Result<()> {
        if let Some(gram) = &mut self.gram {
            return gram.add(x);
        }
        let sq = x
            .sqr()
            .and_then(|s| s.sum(0))
            .map_err(Error::tensor("norms"))?;
        add_into(&mut self.sq, sq)
    }

    /// Assemble the Gram matrix once every input is added.
    fn finish(mut self) -> Result<Self> {
        if let Some(gram) = self.gram.take() {
            self.g = gram.assemble()?;
        }
        Ok(self)
    }

    /// Σ x_j² per input (the Gram matrix's diagonal where there is one).
    fn squares(&self) -> Result<Option<Vec<f32>>> {
        if let Some(g) = &self.g {
            let n = g.dim(0).map_err(Error::tensor("gram matrix"))?;
            let v = to_vec2(g)?;
            return Ok(Some((0..n).map(|i| v[i * n + i]).collect()));
        }
        self.sq.as_ref().map(to_vec2).transpose()
    }
}

/// `slot += v` (`v` when the slot is empty): the running sums of the statistics.
fn add_into(slot: &mut Option<Tensor>, v: Tensor) -> Result<()> {
    *slot = Some(match slot.take() {
        None => v,
        Some(a) => a.add(&v).map_err(Error::tensor("statistics"))?,
    });
    Ok(())
}

/// `Σ XᵀX` over batches `X: [tokens, n]`, multiplied by blocks of columns on and above the
/// diagonal only (the matrix is symmetric) and mirrored at the end.
///
/// On the CPU in f32 each block `(i, j)` is accumulated in place by one single-threaded gemm
/// call, the blocks spread over rayon's threads: blocks of 128 (or 96, 64) columns, so for
/// n = 1536 78 of 144 block products (54%), for n = 576 21 of 36 (58%), and no temporary per
/// batch. Elsewhere candle multiplies and adds blocks of 256 (or 192, 128) columns.
#[derive(Default)]
struct Gram {
    /// Columns per block (divides n).
    b: usize,
    /// Blocks per side.
    nb: usize,
    /// The device of the batches.
    device: Option<candle_core::Device>,
    /// The CPU accumulator, `n × n` row-major, its blocks on and above the diagonal summed.
    cpu: Vec<f32>,
    /// Elsewhere: block `(i, j)`, `i ≤ j`, at `i·nb + j`.
    blocks: Vec<Option<Tensor>>,
}

impl Gram {
    /// Columns per block for `n` inputs: the first of `sizes` that divides n into at least two
    /// blocks, else n.
    fn block_size(n: usize, sizes: [usize; 3]) -> usize {
        sizes
            .into_iter()
            .find(|&b| n.is_multiple_of(b) && n / b >= 2)
            .unwrap_or(n)
    }

    fn add(&mut self, x: &Tensor) -> Result<()> {
        let n = x.dim(1).map_err(Error::tensor("gram matrix"))?;
        let on_cpu = x.device().is_cpu() && x.dtype() == DType::F32;
        if self.b == 0 {
            self.b = Self::block_size(
                n,
                if on_cpu {
                    [128, 96, 64]
                } else {
                    [256, 192, 128]
                },
            );
            self.nb = n / self.b;
            self.device = Some(x.device().clone());
            if on_cpu {
                self.cpu = vec![0f32; n * n];
            } else {
                self.blocks = vec![None; self.nb * self.nb];
            }
        }
        if !self.cpu.is_empty() {
            return self.add_cpu(x, n);
        }
        let (b, nb) = (self.b, self.nb);
        let cols: Vec<Tensor> = (0..nb)
            .map(|i| x.narrow(1, i * b, b))
            .collect::<candle_core::Result<_>>()
            .map_err(Error::tensor("gram matrix"))?;
        for i in 0..nb {
            let xt = cols[i].t().map_err(Error::tensor("gram matrix"))?;
            for (j, cj) in cols.iter().enumerate().skip(i) {
                let p = xt.matmul(cj).map_err(Error::tensor("gram matrix"))?;
                add_into(&mut self.blocks[i * nb + j], p)?;
            }
        }
        Ok(())
    }

    /// [`Gram::add`] on the CPU: every block on or above the diagonal `+= X_iᵀ X_j` in place.
    fn add_cpu(&mut self, x: &Tensor, n: usize) -> Result<()> {
        use rayon::prelude::*;
        if self.cpu.len() != n * n {
            return Err(Error::invalid(
                "gram matrix",
                format!("a batch of width {n}"),
                format!("the first batch had {}", self.b * self.nb),
            ));
        }
        let x = x.contiguous().map_err(Error::tensor("gram matrix"))?;
        let (storage, layout) = x.storage_and_layout();
        let candle_core::Storage::Cpu(cpu) = &*storage else {
            return Err(Error::invalid(
                "gram matrix",
                "a batch",
                "expected a CPU tensor",
            ));
        };
        let data = crate::train::kernels::f32_slice(cpu, layout, "gram matrix")
            .map_err(Error::tensor("gram matrix"))?;
        let rows = data.len() / n.max(1);
        if rows == 0 {
            return Ok(());
        }
        let (b, nb) = (self.b, self.nb);
        let pairs: Vec<(usize, usize)> =
            (0..nb).flat_map(|i| (i..nb).map(move |j| (i, j))).collect();
        let dst = crate::par::SharedMut::new(&mut self.cpu);
        pairs.into_par_iter().for_each(|(i, j)| {
            // `data` holds rows·n values and the accumulator n·n; block (i, j) reads
            // columns i·b..(i+1)·b and j·b..(j+1)·b of every row and reads and writes the
            // accumulator's rows i·b.., columns j·b.. (b×b values, row stride n), which no other
            // pair touches.
            // SAFETY: by the bounds and ownership just stated.
            unsafe {
                gemm::gemm(
                    b,
                    b,
                    rows,
                    dst.get().add(i * b * n + j * b),
                    1,
                    n as isize,
                    true,
                    data.as_ptr().add(i * b),
                    n as isize,
                    1,
                    data.as_ptr().add(j * b),
                    1,
                    n as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        });
        Ok(())
    }

    /// The full symmetric `n × n` matrix (none before the first batch).
    fn assemble(self) -> Result<Option<Tensor>> {
        let (b, nb) = (self.b, self.nb);
        let n = b * nb;
        let Some(device) = self.device else {
            return Ok(None);
        };
        let full = if self.cpu.is_empty() {
            let mut full = vec![0f32; n * n];
            for i in 0..nb {
                for j in i..nb {
                    let Some(t) = &self.blocks[i * nb + j] else {
                        return Ok(None);
                    };
                    let v = to_vec2(t)?;
                    for r in 0..b {
                        for c in 0..b {
                            let x = v[r * b + c];
                            full[(i * b + r) * n + j * b + c] = x;
                            full[(j * b + c) * n + i * b + r] = x;
                        }
                    }
                }
            }
            full
        } else {
            let mut full = self.cpu;
            // The blocks below the diagonal, and the lower half of the diagonal blocks, mirror
            // the upper ones (a diagonal block's own product is symmetric only up to rounding).
            for r in 0..n {
                for c in 0..r {
                    full[r * n + c] = full[c * n + r];
                }
            }
            full
        };
        Tensor::from_vec(full, (n, n), &device)
            .map(Some)
            .map_err(Error::tensor("gram matrix"))
    }
}

/// Running sums of the reconstruction error of one stage's projections.
#[derive(Default, Clone, Copy)]
struct ErrSum {
    diff: f64,
    base: f64,
}

fn to_vec2(t: &Tensor) -> Result<Vec<f32>> {
    t.to_dtype(DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(Error::tensor("to host"))
}

/// Perplexity to measure during the pruning pass.
#[derive(Debug, Clone, Copy)]
pub struct Evaluation<'a> {
    /// The evaluation windows (run in the batches of [`super::corpus::perplexity`]).
    pub windows: &'a [Vec<u32>],
    /// Measure the dense model's perplexity too.
    pub dense: bool,
}

/// What a pruning pass produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Per projection, in forward order.
    pub reports: Vec<ProjReport>,
    /// The dense model's perplexity (when asked for).
    pub dense: Option<Perplexity>,
    /// The pruned model's perplexity (when there were evaluation windows).
    pub pruned: Option<Perplexity>,
    /// Seconds spent on evaluation (carrying the evaluation streams, the final logits).
    pub eval_seconds: f64,
}

/// Prune every projection of `model` in place on the calibration windows; `progress` gets
/// (steps done, steps in all), one step per stage of each layer.
pub fn prune(
    model: &mut Llama,
    calib: &[Vec<u32>],
    spec: &PruneSpec,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<ProjReport>> {
    let dense = std::mem::take(&mut model.layers);
    let mut pruned = Vec::with_capacity(dense.len());
    let outcome = prune_layers(
        model,
        &mut |l| Ok(dense[l].clone()),
        calib,
        None,
        spec,
        &mut |_, layer| {
            pruned.push(layer);
            Ok(())
        },
        progress,
    );
    model.layers = match outcome {
        Ok(_) => pruned,
        Err(_) => dense,
    };
    outcome.map(|o| o.reports)
}

/// Prune a model held one decoder layer at a time. `outer` gives the embeddings, norms and
/// head (its own layers, if any, are not used); `dense(l)` gives layer `l` as it is; `sink(l, ŵ)`
/// takes layer `l` pruned, after which the pass keeps nothing of it. With `eval`, each
/// evaluation window's residual stream is carried through the pruned layers (and the dense
/// ones when asked), so the perplexities come from the same pass. Memory: one layer (dense and
/// pruned), the calibration streams, and the evaluation streams (`tokens · hidden` f32 each).
pub fn prune_layers(
    outer: &Llama,
    dense: &mut dyn FnMut(usize) -> Result<Layer>,
    calib: &[Vec<u32>],
    eval: Option<Evaluation>,
    spec: &PruneSpec,
    sink: &mut dyn FnMut(usize, Layer) -> Result<()>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Outcome> {
    if calib.is_empty() {
        return Err(Error::invalid(
            "calibration",
            "0 windows",
            "at least one needed",
        ));
    }
    let dev = outer.device().clone();
    let mut hidden: Vec<Tensor> = Vec::new();
    for chunk in calib.chunks(spec.batch.max(1)) {
        let t = chunk[0].len();
        let flat: Vec<u32> = chunk.iter().flatten().copied().collect();
        let tokens =
            Tensor::from_vec(flat, (chunk.len(), t), &dev).map_err(Error::tensor("tokens"))?;
        hidden.push(outer.embed(&tokens)?);
    }
    let eval_windows = eval.map_or(&[][..], |e| e.windows);
    let eval_tokens: Vec<Tensor> = super::corpus::eval_batches(eval_windows)
        .into_iter()
        .map(|ws| super::corpus::batch_tensor(ws, &dev))
        .collect::<Result<_>>()?;
    let mut eval_pruned: Vec<Tensor> = eval_tokens
        .iter()
        .map(|t| outer.embed(t))
        .collect::<Result<_>>()?;
    let mut eval_dense = match eval {
        Some(e) if e.dense => Some(eval_pruned.clone()),
        _ => None,
    };
    let layers = outer.config.num_hidden_layers;
    let steps = layers * (Stage::ALL.len() + 1);
    let (mut reports, mut eval_seconds) = (Vec::new(), 0.0);
    for l in 0..layers {
        let d = dense(l)?;
        outer.check_layer(l, &d)?;
        if let Some(streams) = &mut eval_dense {
            eval_seconds += carry(outer, &d, streams)?;
        }
        let mut step = l * (Stage::ALL.len() + 1);
        let mut done = || {
            step += 1;
            progress(step, steps);
        };
        let pruned = prune_layer(outer, l, &d, &mut hidden, spec, &mut done, &mut reports)?;
        drop(d);
        eval_seconds += carry(outer, &pruned, &mut eval_pruned)?;
        sink(l, pruned)?;
        // The layer's temporaries go back to the OS rather than stay in the heap's free lists
        // (kept for reuse by `keep_freed_memory`): the resident size stays the live streams.
        crate::memory::release_freed_memory();
    }
    let ppl = |streams: &[Tensor]| -> Result<Option<Perplexity>> {
        if eval.is_none() {
            return Ok(None);
        }
        let (mut sum, mut count) = (0.0, 0);
        for (x, t) in streams.iter().zip(&eval_tokens) {
            let (s, n) = super::model::nll_of_stream(outer, x, t)?;
            sum += s;
            count += n;
        }
        Perplexity::from_nll(sum, count, eval_windows.len()).map(Some)
    };
    let t0 = std::time::Instant::now();
    let dense = match &eval_dense {
        Some(streams) => ppl(streams)?,
        None => None,
    };
    let pruned = ppl(&eval_pruned)?;
    Ok(Outcome {
        reports,
        dense,
        pruned,
        eval_seconds: eval_seconds + t0.elapsed().as_secs_f64(),
    })
}

/// Carry each evaluation stream through `layer`; the seconds it took.
fn carry(outer: &Llama, layer: &Layer, streams: &mut [Tensor]) -> Result<f64> {
    let t0 = std::time::Instant::now();
    for x in streams.iter_mut() {
        *x = outer.layer_output(layer, x)?;
    }
    Ok(t0.elapsed().as_secs_f64())
}

/// The most memory the MLP's inner activations (`tokens × intermediate` f32) may take to be
/// kept between the down projection's statistics pass and its output pass; beyond it gate and
/// up run again. 128 windows of 512 tokens of a 135M model's width 1536 take 403 MB.
const KEEP_MLP_BYTES: usize = 512 << 20;

/// Prune one decoder layer: `dense` is its weights, `hidden` the calibration streams entering
/// it (left as the streams leaving the pruned layer); its reports are appended to `reports`.
fn prune_layer(
    outer: &Llama,
    l: usize,
    dense: &Layer,
    hidden: &mut Vec<Tensor>,
    spec: &PruneSpec,
    done: &mut dyn FnMut(),
    reports: &mut Vec<ProjReport>,
) -> Result<Layer> {
    let mut layer = dense.clone();
    let mut errs = [ErrSum::default(); 7];
    let mut gaps: [Option<KeptScores>; 7] = [None; 7];
    // Each stage's input is computed once per calibration batch, from the model as pruned
    // so far, and kept (attention outputs, then the stream after attention) until the
    // stage's projections are pruned; the projections' errors are measured on the pass
    // that follows their pruning, on the same inputs.
    let mut stats = Stats::new(Stage::Attn, spec.method);
    for x in hidden.iter() {
        stats.add(&outer.attn_input(&layer, x)?)?;
    }
    let stats = stats.finish()?;
    prune_stage(&mut layer, Stage::Attn, &stats, spec, &mut gaps)?;
    gram_errors(&mut errs, Stage::Attn, &stats, dense, &layer)?;
    done();
    let (mut stats, mut atts) = (
        Stats::new(Stage::AttnOut, spec.method),
        Vec::with_capacity(hidden.len()),
    );
    for x in hidden.iter() {
        let xn = outer.attn_input(&layer, x)?;
        let b = x.dim(0).map_err(Error::tensor("hidden state"))?;
        let att = outer.attention(&layer, &xn, b)?;
        stats.add(&att)?;
        atts.push(att);
    }
    let stats = stats.finish()?;
    prune_stage(&mut layer, Stage::AttnOut, &stats, spec, &mut gaps)?;
    gram_errors(&mut errs, Stage::AttnOut, &stats, dense, &layer)?;
    done();
    let (mut stats, mut streams) = (
        Stats::new(Stage::Mlp, spec.method),
        Vec::with_capacity(hidden.len()),
    );
    for (x, att) in hidden.iter().zip(atts) {
        let x2 = outer.attn_residual(&layer, x, &att)?;
        stats.add(&outer.mlp_input(&layer, &x2)?)?;
        streams.push(x2);
    }
    hidden.clear();
    let stats = stats.finish()?;
    prune_stage(&mut layer, Stage::Mlp, &stats, spec, &mut gaps)?;
    gram_errors(&mut errs, Stage::Mlp, &stats, dense, &layer)?;
    done();
    let mut stats = Stats::new(Stage::MlpOut, spec.method);
    // The MLP's inner activations are kept for the pass after `down` is pruned when they fit
    // in `KEEP_MLP_BYTES` (gate and up then run once per layer, not twice).
    let f = outer.config.intermediate_size;
    let tokens: usize =
        streams.iter().map(|x| x.elem_count()).sum::<usize>() / outer.config.hidden_size.max(1);
    let keep = tokens * f * std::mem::size_of::<f32>() <= KEEP_MLP_BYTES;
    let mut kept = Vec::with_capacity(if keep { streams.len() } else { 0 });
    for x2 in &streams {
        let m = outer.swiglu(&layer, &outer.mlp_input(&layer, x2)?)?;
        stats.add(&m)?;
        if keep {
            kept.push(m);
        }
    }
    let stats = stats.finish()?;
    prune_stage(&mut layer, Stage::MlpOut, &stats, spec, &mut gaps)?;
    let measured = gram_errors(&mut errs, Stage::MlpOut, &stats, dense, &layer)?;
    drop(stats);
    done();
    let mut kept = kept.into_iter();
    for x2 in &streams {
        let m = match kept.next() {
            Some(m) => m,
            None => outer.swiglu(&layer, &outer.mlp_input(&layer, x2)?)?,
        };
        if !measured {
            accumulate_errors(&mut errs, Stage::MlpOut, &m, dense, &layer)?;
        }
        hidden.push(outer.mlp_residual(&layer, x2, &m)?);
    }
    drop(streams);
    done();
    for p in Proj::ALL {
        let w = layer.weight(p);
        let (rows, cols) = w.dims2().map_err(Error::tensor("weight"))?;
        let data = to_vec2(w)?;
        let e = errs[p as usize];
        reports.push(ProjReport {
            layer: l,
            proj: p.short(),
            shape: [rows, cols],
            sparsity: data.iter().filter(|&&v| v == 0.0).count() as f64 / data.len() as f64,
            rel_error: if e.base > 0.0 {
                (e.diff / e.base).sqrt()
            } else {
                0.0
            },
            kept_gap: gaps[p as usize].map(|k| k.gap()),
            structure_ok: has_structure(&data, rows, cols, spec.kind)?,
        });
    }
    Ok(layer)
}

/// Prune the projections of `layer` reading `stage` from the stage's statistics.
fn prune_stage(
    layer: &mut Layer,
    stage: Stage,
    stats: &Stats,
    spec: &PruneSpec,
    gaps: &mut [Option<KeptScores>; 7],
) -> Result<()> {
    // What the method needs from the stage's statistics, made once for all its projections:
    // Wanda's input norms, SparseGPT's factor of the inverse Hessian.
    let weighting = match spec.method {
        _ if spec.kind == Structure::Dense => Weighting::Magnitude,
        Method::Magnitude => Weighting::Magnitude,
        Method::Wanda => {
            let sq = stats
                .squares()?
                .ok_or_else(|| Error::invalid("statistics", "none", "Wanda needs ‖x‖"))?;
            Weighting::Wanda(sq.into_iter().map(|v| v.max(0.0).sqrt()).collect())
        }
        Method::SparseGpt | Method::Alps => {
            let g = stats.g.as_ref().ok_or_else(|| {
                Error::invalid("statistics", "none", format!("{} needs XᵀX", spec.method))
            })?;
            let n = g.dim(0).map_err(Error::tensor("hessian"))?;
            let h: Vec<f64> = to_vec2(g)?.into_iter().map(f64::from).collect();
            if spec.method == Method::Alps {
                Weighting::Alps(alps::Basis::new(&h, n, 0.01, g.device())?)
            } else {
                Weighting::SparseGpt(sparsegpt::Factor::new(&h, n, 0.01)?)
            }
        }
    };
    for &p in stage.projections() {
        let (w, gap) = prune_one(layer.weight(p), &weighting, spec)?;
        gaps[p as usize] = gap;
        layer.set_weight(p, w)?;
    }
    Ok(())
}

/// Add each projection of `stage`'s errors from the stage's Gram matrix `G = XᵀX`:
/// `‖X·ΔWᵀ‖² = Σ (ΔW·G)⊙ΔW` and `‖X·Wᵀ‖² = Σ (W·G)⊙W`. False when the stage has no Gram
/// matrix (the errors are then measured on the inputs).
fn gram_errors(
    errs: &mut [ErrSum; 7],
    stage: Stage,
    stats: &Stats,
    dense: &Layer,
    pruned: &Layer,
) -> Result<bool> {
    let Some(g) = &stats.g else {
        return Ok(false);
    };
    let quad = |w: &Tensor| {
        w.matmul(g)
            .and_then(|wg| wg.mul(w))
            .and_then(|t| t.to_dtype(DType::F64))
            .and_then(|t| t.sum_all())
            .and_then(|t| t.to_scalar::<f64>())
            .map_err(Error::tensor("error from the gram matrix"))
    };
    for &p in stage.projections() {
        let d = dense
            .weight(p)
            .sub(pruned.weight(p))
            .map_err(Error::tensor("difference"))?;
        errs[p as usize].diff += quad(&d)?.max(0.0);
        errs[p as usize].base += quad(dense.weight(p))?;
    }
    Ok(true)
}

/// Add `‖inp·(W−Ŵ)ᵀ‖²` and `‖inp·Wᵀ‖²` for each projection reading stage `s`.
fn accumulate_errors(
    errs: &mut [ErrSum; 7],
    s: Stage,
    inp: &Tensor,
    dense: &Layer,
    pruned: &Layer,
) -> Result<()> {
    for &p in s.projections() {
        let y = super::model::linear(inp, dense.weight(p))?;
        let d = dense
            .weight(p)
            .sub(pruned.weight(p))
            .map_err(Error::tensor("difference"))?;
        let yd = super::model::linear(inp, &d)?;
        let sq = |t: &Tensor| {
            t.sqr()
                .and_then(|t| t.to_dtype(DType::F64))
                .and_then(|t| t.sum_all())
                .and_then(|t| t.to_scalar::<f64>())
                .map_err(Error::tensor("error norm"))
        };
        errs[p as usize].diff += sq(&yd)?;
        errs[p as usize].base += sq(&y)?;
    }
    Ok(())
}

/// A stage's statistics as its method uses them.
enum Weighting {
    /// Scores `|W|`.
    Magnitude,
    /// Scores `|W_ij|·‖x_j‖`, with these `‖x_j‖`.
    Wanda(Vec<f32>),
    /// SparseGPT with this factor.
    SparseGpt(sparsegpt::Factor),
    /// ALPS with this basis.
    Alps(alps::Basis),
}

/// The pruned weight of one projection and its transposable kept scores.
fn prune_one(
    w: &Tensor,
    weighting: &Weighting,
    spec: &PruneSpec,
) -> Result<(Tensor, Option<KeptScores>)> {
    if spec.kind == Structure::Dense {
        return Ok((w.clone(), None));
    }
    let (rows, cols) = w.dims2().map_err(Error::tensor("weight"))?;
    let mut data = to_vec2(w)?;
    let transposable = matches!(spec.kind, Structure::Transposable(_));
    let gap = match weighting {
        Weighting::SparseGpt(factor) => {
            let settings = Settings {
                kind: spec.kind,
                solver: spec.solver.clone(),
                seed: spec.seed,
                damp: 0.01,
                block: 128,
            };
            let (_, kept) = sparsegpt::prune_factored(&mut data, rows, cols, factor, &settings)?;
            transposable.then_some(kept)
        }
        Weighting::Alps(basis) => {
            let settings = alps::Settings::new(spec.kind, spec.solver.clone(), spec.seed);
            alps::prune(&mut data, rows, cols, basis, &settings)?.1
        }
        Weighting::Magnitude | Weighting::Wanda(_) => {
            let norms = match weighting {
                Weighting::Wanda(n) => Some(n),
                _ => None,
            };
            let scores: Vec<f32> = data
                .iter()
                .enumerate()
                .map(|(i, v)| v.abs() * norms.as_ref().map_or(1.0, |n| n[i % cols]))
                .collect();
            let scores = Matrix::new(rows, cols, scores)?;
            let (mask, gap) = match spec.kind {
                Structure::Unstructured(s) if spec.method == Method::Wanda => {
                    (per_row_unstructured(&scores, s)?, None)
                }
                Structure::Transposable(_) => {
                    let (m, k) = sparsegpt::transposable_with_gap(
                        &scores,
                        spec.kind,
                        &*spec.solver,
                        spec.seed,
                    )?;
                    (m, Some(k))
                }
                _ => (
                    crate::policy::mask_of(&scores, spec.kind, &*spec.solver, spec.seed)?
                        .expect("a sparse structure has a mask"),
                    None,
                ),
            };
            for (v, &k) in data.iter_mut().zip(mask.keep()) {
                if k == 0 {
                    *v = 0.0;
                }
            }
            gap
        }
    };
    let t = Tensor::from_vec(data, (rows, cols), w.device()).map_err(Error::tensor("weight"))?;
    Ok((t, gap))
}

/// Keep the `round(cols·(1−s))` largest scores of each row.
fn per_row_unstructured(scores: &Matrix, s: f64) -> Result<Mask> {
    let (rows, cols) = (scores.rows(), scores.cols());
    let k = ((cols as f64) * (1.0 - s)).round() as usize;
    let keep: Vec<u8> = scores
        .data()
        .chunks(cols)
        .flat_map(|row| crate::mask::top_k(row, k))
        .collect();
    Mask::new(rows, cols, keep)
}

/// Whether the zeros of `w` give the structure (N:M along `in`, transposable per tile, or at
/// least the unstructured sparsity).
pub fn has_structure(w: &[f32], rows: usize, cols: usize, kind: Structure) -> Result<bool> {
    let keep: Vec<u8> = w.iter().map(|&v| (v != 0.0) as u8).collect();
    let mask = Mask::new(rows, cols, keep)?;
    Ok(match kind {
        Structure::Dense => true,
        Structure::Unstructured(s) | Structure::Block(_, s) => mask.sparsity() >= s - 1e-3,
        Structure::Nm(p) => mask.is_nm(p)?,
        Structure::Transposable(p) => mask.is_transposable_nm(p)?,
    })
}

#[cfg(test)]
mod tests;
