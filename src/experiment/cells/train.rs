//! Cell kind `train`: train one model with one sparsity setup and seed (table4).
//!
//! Axes: `setup` = `"MASK + GRAD"` — the mask of the forward/backward GEMMs (`dense`,
//! `unstructured:S`, `nm:N:M`, `transposable:N:M`) and the estimator of the update GEMM
//! (`dense`, `greedy:N:M`, `mvue:N:M`, `mvue_1to2:1:2`, …); optional axes `model` and `dataset`
//! override the params of the same name. Params: `model` (`mlp`), `dataset` (`fashion-mnist`;
//! `synthetic[:N]` for smoke runs), `data_dir`, `hidden` (list), `epochs`, `batch`, `lr`,
//! `momentum`, `weight_decay`, `optimizer` (`sgd`/`adamw`), `solver` (for transposable masks),
//! `every` (mask refresh period in steps, 0 = static), `srste`, `train_limit`.
//!
//! `structure_ok` is asserted: a run whose GEMM operands lost their structure is an error.
//! The data set is loaded once per run and shared between cells.

use super::{CellContext, CellKind, Row};
use crate::error::{Error, Result};
use crate::experiment::plan::Cell;
use crate::train::data::{self, Dataset};
use crate::train::trainer::{OptimizerKind, TrainConfig, train};
use indexmap::IndexMap;
use std::path::PathBuf;

/// The `train` cell kind.
pub struct TrainCell;

struct Parsed {
    cfg: TrainConfig,
    dataset: String,
    data_dir: Option<PathBuf>,
}

fn int(k: &str, v: &toml::Value) -> Result<usize> {
    v.as_integer()
        .filter(|i| *i >= 0)
        .map(|i| i as usize)
        .ok_or_else(|| Error::invalid(k, v, "expected a non-negative integer"))
}

fn float(k: &str, v: &toml::Value) -> Result<f64> {
    v.as_float()
        .or_else(|| v.as_integer().map(|i| i as f64))
        .ok_or_else(|| Error::invalid(k, v, "expected a number"))
}

fn string(k: &str, v: &toml::Value) -> Result<String> {
    v.as_str()
        .map(String::from)
        .ok_or_else(|| Error::invalid(k, v, "expected a string"))
}

fn parse(cell: &Cell, params: &IndexMap<String, toml::Value>) -> Result<Parsed> {
    let mut cfg = TrainConfig::default();
    let mut dataset = "fashion-mnist".to_string();
    let mut data_dir = None;
    for (k, v) in params {
        match k.as_str() {
            "model" => cfg.model = string(k, v)?,
            "dataset" => dataset = string(k, v)?,
            "data_dir" => data_dir = Some(PathBuf::from(string(k, v)?)),
            "hidden" => {
                cfg.hidden = v
                    .as_array()
                    .ok_or_else(|| Error::invalid(k, v, "expected a list of widths"))?
                    .iter()
                    .map(|w| int(k, w))
                    .collect::<Result<_>>()?
            }
            "epochs" => cfg.epochs = int(k, v)?,
            "batch" => cfg.batch = int(k, v)?,
            "lr" => cfg.lr = float(k, v)?,
            "momentum" => cfg.momentum = float(k, v)?,
            "weight_decay" => cfg.weight_decay = float(k, v)?,
            "optimizer" => {
                cfg.optimizer = match v.as_str() {
                    Some("sgd") => OptimizerKind::Sgd,
                    Some("adamw") => OptimizerKind::AdamW,
                    _ => return Err(Error::invalid(k, v, "expected \"sgd\" or \"adamw\"")),
                }
            }
            "solver" => cfg.solver = string(k, v)?,
            "every" => cfg.every = int(k, v)?,
            "srste" => cfg.srste = float(k, v)?,
            "train_limit" => cfg.train_limit = Some(int(k, v)?),
            other => {
                return Err(Error::invalid(
                    other,
                    v,
                    "train cells take model, dataset, data_dir, hidden, epochs, batch, lr, momentum, weight_decay, optimizer, solver, every, srste, train_limit",
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
    if let crate::train::MaskKind::Transposable(_) = cfg.mask {
        crate::solvers::by_name(&cfg.solver)?;
    }
    Ok(Parsed {
        cfg,
        dataset,
        data_dir,
    })
}

impl CellKind for TrainCell {
    fn name(&self) -> &'static str {
        "train"
    }

    fn summary(&self) -> &'static str {
        "train a model with N:M forward/backward masks and an N:M update-GEMM estimator; test accuracy"
    }

    fn check(&self, cell: &Cell, params: &IndexMap<String, toml::Value>) -> Result<()> {
        parse(cell, params).map(|_| ())
    }

    fn run(&self, cell: &Cell, ctx: &CellContext) -> Result<Row> {
        let p = parse(cell, ctx.params)?;
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
