//! Cell kind `train`: train one model with one sparsity setup and seed (table4).
//!
//! Axes: `setup` = `"MASK + GRAD"` — the mask of the forward/backward GEMMs (`dense`,
//! `unstructured:S`, `block:B:S`, `nm:N:M`, `transposable:N:M`) and the estimator of the update GEMM
//! (`dense`, `greedy:N:M`, `mvue:N:M`, `mvue_1to2:1:2`, …); optional axes `model` and `dataset`
//! override the params of the same name. Params ([`TrainParams`], defaults written there; an
//! unknown key is an error listing the fields): `model` (`mlp`, `mlp-bn`, `lenet`, `resnet`),
//! `dataset` (`fashion-mnist`; `synthetic[:N]` for smoke runs), `data_dir`, `hidden` (list),
//! `epochs`, `batch`, `lr`,
//! `momentum`, `weight_decay`, `optimizer` (`sgd`/`adamw`), `solver` (for transposable masks),
//! `every` (mask refresh period in steps, 0 = static), `srste`, `train_limit`, `gemm`
//! (`sparse`, the default: compressed N:M kernels where an operand is N:M; `masked-dense`).
//!
//! `structure_ok` is asserted: a run whose GEMM operands lost their structure is an error.
//! The data set is loaded once per run and shared between cells.

use super::{CellContext, CellKind, Row};
use crate::error::{Error, Result};
use crate::experiment::cell::Cell;
use crate::train::data::{self, Dataset};
use crate::train::params::TrainParams;
use crate::train::trainer::{TrainConfig, train};
use indexmap::IndexMap;
use std::path::PathBuf;

/// The `train` cell kind.
pub struct TrainCell;

/// A `train` cell's parameters: the training config, the dataset and where it lives.
struct TrainCellParams {
    cfg: TrainConfig,
    dataset: String,
    data_dir: Option<PathBuf>,
}

/// The spec's `[params]` ([`TrainParams`], unknown keys refused), the `model` and `dataset` axes
/// over them, the `setup` axis (`MASK + GRAD`) and the seed.
fn parse(
    cell: &Cell,
    params: &IndexMap<String, toml::Value>,
    solvers: &crate::solvers::Catalogue,
) -> Result<TrainCellParams> {
    let mut p = TrainParams::from_toml(params)?;
    if let Some(m) = cell.get("model") {
        p.model = m.to_string();
    }
    if let Some(d) = cell.get("dataset") {
        p.dataset = d.to_string();
    }
    let mut cfg = p.config(solvers)?;
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
    Ok(TrainCellParams {
        cfg,
        dataset: p.dataset,
        data_dir: p.data_dir,
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

    fn check(&self, cell: &Cell, ctx: &super::Checking) -> Result<()> {
        parse(cell, ctx.params, ctx.solvers).map(|_| ())
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
