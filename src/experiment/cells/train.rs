//! Cell kind `train`: train one model with one sparsity setup and seed (table4).
//!
//! Axes: `setup` = `"MASK + GRAD"` — the mask of the forward/backward GEMMs (`dense`,
//! `unstructured:S`, `block:B:S`, `nm:N:M`, `transposable:N:M`) and the estimator of the update GEMM
//! (`dense`, `greedy:N:M`, `mvue:N:M`, `mvue_1to2:1:2`, …); optional axes `model` and `dataset`
//! override the params of the same name. Params: `model` (`mlp`, `mlp-bn`, `lenet`, `resnet`),
//! `dataset` (`fashion-mnist`; `synthetic[:N]` for smoke runs), `data_dir`, `hidden` (list),
//! `epochs`, `batch`, `lr`,
//! `momentum`, `weight_decay`, `optimizer` (`sgd`/`adamw`), `solver` (for transposable masks),
//! `every` (mask refresh period in steps, 0 = static), `srste`, `train_limit`, `gemm`
//! (`sparse`, the default: compressed N:M kernels where an operand is N:M; `masked-dense`).
//!
//! `structure_ok` is asserted: a run whose GEMM operands lost their structure is an error.
//! The data set is loaded once per run and shared between cells.

use super::{CellContext, CellKind, Row, param_f64, param_str, param_usize};
use crate::error::{Error, Result};
use crate::experiment::cell::Cell;
use crate::train::data::{self, Dataset};
use crate::train::trainer::{OptimizerKind, TrainConfig, train};
use indexmap::IndexMap;
use std::path::PathBuf;

/// The `train` cell kind.
pub struct TrainCell;

/// A `train` cell's parameters: the training config, the dataset and where it lives.
struct TrainParams {
    cfg: TrainConfig,
    dataset: String,
    data_dir: Option<PathBuf>,
}

/// Set the dense-training param `k` of `cfg` (`hidden`, `epochs`, `batch`, `lr`, `momentum`,
/// `weight_decay`, `train_limit`) from `v`, counts at least `min`; `false` when `k` is not one.
/// Shared by the `train` and `convert` cells.
pub(super) fn training_param(
    cfg: &mut TrainConfig,
    k: &str,
    v: &toml::Value,
    min: usize,
) -> Result<bool> {
    match k {
        "hidden" => {
            cfg.hidden = v
                .as_array()
                .ok_or_else(|| Error::invalid(k, v, "expected a list of widths"))?
                .iter()
                .map(|w| param_usize(k, w, min))
                .collect::<Result<_>>()?
        }
        "epochs" => cfg.epochs = param_usize(k, v, min)?,
        "batch" => cfg.batch = param_usize(k, v, min)?,
        "lr" => cfg.lr = param_f64(k, v)?,
        "momentum" => cfg.momentum = param_f64(k, v)?,
        "weight_decay" => cfg.weight_decay = param_f64(k, v)?,
        "train_limit" => cfg.train_limit = Some(param_usize(k, v, min)?),
        _ => return Ok(false),
    }
    Ok(true)
}

fn parse(
    cell: &Cell,
    params: &IndexMap<String, toml::Value>,
    solvers: &crate::solvers::Catalogue,
) -> Result<TrainParams> {
    let mut cfg = TrainConfig::default();
    let mut dataset = "fashion-mnist".to_string();
    let mut data_dir = None;
    for (k, v) in params {
        match k.as_str() {
            "model" => cfg.model = param_str(k, v)?.to_string(),
            "dataset" => dataset = param_str(k, v)?.to_string(),
            "data_dir" => data_dir = Some(PathBuf::from(param_str(k, v)?)),
            k if training_param(&mut cfg, k, v, 0)? => {}
            "optimizer" => {
                cfg.optimizer = match v.as_str() {
                    Some("sgd") => OptimizerKind::Sgd,
                    Some("adamw") => OptimizerKind::AdamW,
                    _ => return Err(Error::invalid(k, v, "expected \"sgd\" or \"adamw\"")),
                }
            }
            "solver" => cfg.solver = solvers.get(param_str(k, v)?)?,
            "every" => cfg.every = param_usize(k, v, 0)?,
            "srste" => cfg.srste = param_f64(k, v)?,
            "gemm" => cfg.gemm = param_str(k, v)?.parse()?,
            other => {
                return Err(Error::invalid(
                    other,
                    v,
                    "train cells take model, dataset, data_dir, hidden, epochs, batch, lr, momentum, weight_decay, optimizer, solver, every, srste, gemm, train_limit",
                ));
            }
        }
    }
    if let Some(m) = cell.get("model") {
        cfg.model = m.to_string();
    }
    if let Some(d) = cell.get("dataset") {
        dataset = d.to_string();
    }
    let setup = cell.require("setup")?;
    let (mask, grad) = setup.split_once('+').ok_or_else(|| {
        Error::invalid(
            "setup",
            setup,
            "expected \"MASK + GRAD\", e.g. \"transposable:4:8 + mvue:2:4\"",
        )
    })?;
    cfg.mask = mask.trim().parse()?;
    cfg.grad = grad.trim().parse()?;
    cfg.seed = cell.seed;
    Ok(TrainParams {
        cfg,
        dataset,
        data_dir,
    })
}

impl CellKind for TrainCell {
    fn name(&self) -> &'static str {
        "train"
    }

    fn axes(&self) -> &'static [&'static str] {
        &["setup", "model", "dataset"]
    }

    fn columns(&self) -> Vec<String> {
        super::columns_of(&crate::train::trainer::TrainReport::default())
    }

    fn summary(&self) -> &'static str {
        "train a model with N:M forward/backward masks and an N:M update-GEMM estimator; test accuracy"
    }

    fn check(
        &self,
        cell: &Cell,
        params: &IndexMap<String, toml::Value>,
        solvers: &crate::solvers::Catalogue,
    ) -> Result<()> {
        parse(cell, params, solvers).map(|_| ())
    }

    fn run(&self, cell: &Cell, ctx: &CellContext) -> Result<Row> {
        let p = parse(cell, ctx.params, ctx.solvers)?;
        // Synthetic data depends on the seed only through the spec: use a fixed data seed.
        let data = ctx
            .shared
            .get_or_try::<Dataset, _>(&format!("dataset {}", p.dataset), || {
                data::load(&p.dataset, p.data_dir.as_deref(), 0)
            })?;
        let report = train(&p.cfg, &data, &ctx.device)?;
        if !report.structure_ok {
            return Err(Error::invalid(
                "setup",
                cell.require("setup")?,
                "a GEMM operand lost its N:M structure during training",
            ));
        }
        super::to_row(&report)
    }
}
