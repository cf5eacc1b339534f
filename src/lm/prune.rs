//! One-shot layer-wise pruning of a language model's projections: magnitude, Wanda and
//! SparseGPT, to unstructured, N:M or transposable N:M structures.
//!
//! Problem: make every q/k/v/o/gate/up/down projection sparse in the chosen structure while the
//! model's outputs on calibration text move least. Embeddings, norms and the output head stay
//! dense. Order: projections are pruned in forward order, stage by stage inside each decoder
//! layer (q, k, v; then o; then gate, up; then down); each stage's statistics come from a pass
//! over the calibration windows through the model as pruned so far, so every projection sees
//! the inputs produced by the already-pruned projections before it.
//!
//! Scores: magnitude `|W|`; Wanda `|W_ij|·‖x_j‖₂` (‖x_j‖ over every calibration token);
//! SparseGPT ([`super::sparsegpt`]) its own saliency and update. Unstructured masks: per layer
//! for magnitude, per output row for Wanda (as its paper does), per column block for SparseGPT.
//! N:M masks run along `in`; transposable masks take each M×M tile's mask from the chosen
//! solver, and the exact solver on the same scores gives the kept_gap.
//!
//! Reported per projection: the relative reconstruction error `‖XWᵀ − XŴᵀ‖/‖XWᵀ‖` over the
//! calibration tokens (X the projection's input in the pruned model), the kept_gap, and whether
//! the pruned weight has the structure. Cost: five passes over the calibration windows per
//! decoder layer (four stages stopping early, one whole), plus SparseGPT's `O(in³ + out·in²)`.

use super::model::{Llama, Proj, Stage};
use super::sparsegpt::{self, KeptScores, Settings};
use crate::error::{Error, Result};
use crate::mask::{Mask, Matrix};
use crate::train::MaskKind;
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
}

impl FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "magnitude" => Ok(Method::Magnitude),
            "wanda" => Ok(Method::Wanda),
            "sparsegpt" => Ok(Method::SparseGpt),
            _ => Err(Error::invalid(
                "method",
                s,
                "expected magnitude, wanda or sparsegpt",
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
        })
    }
}

/// What to prune and how.
#[derive(Debug, Clone)]
pub struct PruneSpec {
    /// The method.
    pub method: Method,
    /// The structure (`Dense` prunes nothing).
    pub kind: MaskKind,
    /// The transposable solver.
    pub solver: String,
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

/// Per-stage statistics of the inputs.
struct Stats {
    /// Σ x_j² per input (Wanda).
    sq: Option<Tensor>,
    /// Σ x xᵀ (SparseGPT).
    h: Option<Tensor>,
}

impl Stats {
    fn new() -> Self {
        Stats { sq: None, h: None }
    }

    fn add(&mut self, method: Method, x: &Tensor) -> Result<()> {
        let acc = |slot: &mut Option<Tensor>, v: Tensor| -> Result<()> {
            *slot = Some(match slot.take() {
                None => v,
                Some(a) => a.add(&v).map_err(Error::tensor("statistics"))?,
            });
            Ok(())
        };
        match method {
            Method::Magnitude => Ok(()),
            Method::Wanda => acc(
                &mut self.sq,
                x.sqr()
                    .and_then(|s| s.sum(0))
                    .map_err(Error::tensor("norms"))?,
            ),
            Method::SparseGpt => acc(
                &mut self.h,
                x.t()
                    .and_then(|xt| xt.matmul(x))
                    .map_err(Error::tensor("hessian"))?,
            ),
        }
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

/// Prune every projection of `model` in place on the calibration windows; `progress` gets
/// (steps done, steps in all), one step per stage of each layer.
pub fn prune(
    model: &mut Llama,
    calib: &[Vec<u32>],
    spec: &PruneSpec,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<ProjReport>> {
    if calib.is_empty() {
        return Err(Error::invalid(
            "calibration",
            "0 windows",
            "at least one needed",
        ));
    }
    let dev = model.device().clone();
    let mut hidden: Vec<Tensor> = Vec::new();
    for chunk in calib.chunks(spec.batch.max(1)) {
        let t = chunk[0].len();
        let flat: Vec<u32> = chunk.iter().flatten().copied().collect();
        let tokens =
            Tensor::from_vec(flat, (chunk.len(), t), &dev).map_err(Error::tensor("tokens"))?;
        hidden.push(model.embed(&tokens)?);
    }
    let layers = model.layers.len();
    let steps = layers * (Stage::ALL.len() + 1);
    let mut reports = Vec::new();
    for l in 0..layers {
        let dense = model.layers[l].clone();
        let mut errs = [ErrSum::default(); 7];
        let mut gaps: [Option<KeptScores>; 7] = [None; 7];
        let mut prev: Option<Stage> = None;
        for (si, stage) in Stage::ALL.into_iter().enumerate() {
            let mut stats = Stats::new();
            for x in &hidden {
                let m: &Llama = model;
                m.layer_forward(l, x, Some(stage), &mut |s, inp| {
                    if Some(s) == prev {
                        accumulate_errors(&mut errs, s, inp, &dense, &m.layers[l])?;
                    }
                    if s == stage {
                        stats.add(spec.method, inp)?;
                    }
                    Ok(())
                })?;
            }
            for &p in stage.projections() {
                let (w, gap) = prune_one(model.layers[l].weight(p), &stats, spec)?;
                gaps[p as usize] = gap;
                model.layers[l].set_weight(p, w)?;
            }
            prev = Some(stage);
            progress(l * (Stage::ALL.len() + 1) + si + 1, steps);
        }
        let mut next = Vec::with_capacity(hidden.len());
        for x in &hidden {
            let m: &Llama = model;
            let y = m.layer_forward(l, x, None, &mut |s, inp| {
                if s == Stage::MlpOut {
                    accumulate_errors(&mut errs, s, inp, &dense, &m.layers[l])?;
                }
                Ok(())
            })?;
            next.push(y.expect("no stop: the layer returns its output"));
        }
        hidden = next;
        progress((l + 1) * (Stage::ALL.len() + 1), steps);
        for p in Proj::ALL {
            let w = model.layers[l].weight(p);
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
    }
    Ok(reports)
}

/// Add `‖inp·(W−Ŵ)ᵀ‖²` and `‖inp·Wᵀ‖²` for each projection reading stage `s`.
fn accumulate_errors(
    errs: &mut [ErrSum; 7],
    s: Stage,
    inp: &Tensor,
    dense: &super::model::Layer,
    pruned: &super::model::Layer,
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

/// The pruned weight of one projection and its transposable kept scores.
fn prune_one(w: &Tensor, stats: &Stats, spec: &PruneSpec) -> Result<(Tensor, Option<KeptScores>)> {
    if spec.kind == MaskKind::Dense {
        return Ok((w.clone(), None));
    }
    let (rows, cols) = w.dims2().map_err(Error::tensor("weight"))?;
    let mut data = to_vec2(w)?;
    let transposable = matches!(spec.kind, MaskKind::Transposable(_));
    let gap = match spec.method {
        Method::SparseGpt => {
            let h = stats
                .h
                .as_ref()
                .ok_or_else(|| Error::invalid("statistics", "none", "SparseGPT needs XᵀX"))?;
            let h: Vec<f64> = to_vec2(h)?.into_iter().map(f64::from).collect();
            let settings = Settings {
                kind: spec.kind,
                solver: spec.solver.clone(),
                seed: spec.seed,
                damp: 0.01,
                block: 128,
            };
            let (_, kept) = sparsegpt::prune(&mut data, rows, cols, &h, &settings)?;
            transposable.then_some(kept)
        }
        Method::Magnitude | Method::Wanda => {
            let norms: Option<Vec<f32>> = match (spec.method, &stats.sq) {
                (Method::Wanda, Some(sq)) => {
                    Some(to_vec2(sq)?.into_iter().map(|v| v.sqrt()).collect())
                }
                (Method::Wanda, None) => {
                    return Err(Error::invalid("statistics", "none", "Wanda needs ‖x‖"));
                }
                _ => None,
            };
            let scores: Vec<f32> = data
                .iter()
                .enumerate()
                .map(|(i, v)| v.abs() * norms.as_ref().map_or(1.0, |n| n[i % cols]))
                .collect();
            let scores = Matrix::new(rows, cols, scores)?;
            let (mask, gap) = match spec.kind {
                MaskKind::Unstructured(s) if spec.method == Method::Wanda => {
                    (per_row_unstructured(&scores, s)?, None)
                }
                MaskKind::Transposable(_) => {
                    let (m, k) = sparsegpt::transposable_with_gap(
                        &scores,
                        spec.kind,
                        &spec.solver,
                        spec.seed,
                    )?;
                    (m, Some(k))
                }
                _ => (
                    crate::train::trainer::mask_of(&scores, spec.kind, &spec.solver, spec.seed)?
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
pub fn has_structure(w: &[f32], rows: usize, cols: usize, kind: MaskKind) -> Result<bool> {
    let keep: Vec<u8> = w.iter().map(|&v| (v != 0.0) as u8).collect();
    let mask = Mask::new(rows, cols, keep)?;
    Ok(match kind {
        MaskKind::Dense => true,
        MaskKind::Unstructured(s) | MaskKind::Block(_, s) => mask.sparsity() >= s - 1e-3,
        MaskKind::Nm(p) => mask.is_nm(p)?,
        MaskKind::Transposable(p) => mask.is_transposable_nm(p)?,
    })
}
