//! Cell kind `step`: a whole training step of one setup on the compressed kernels against the
//! masked-dense and the dense step, timed in the same process, and the mask-recompute overhead
//! (the training part of table7, `experiments/table7b.toml`; [`crate::ops::step`]).
//!
//! Axes: `setup` = `"MASK + GRAD"` as in the `train` kind; `model` = `mlp:W1,W2,…` (an MLP with
//! those hidden widths) or `lenet`; optional `batch` and `solver` (the transposable solver that
//! computes and recomputes the masks; default `greedy`). Params (optional): `batch` (default
//! 128), `solver`, `every` (the refresh period the recompute is amortised over; default 40,
//! Hubara et al.'s), `steps_per_round` (default 2), `min_seconds` (default 0.5),
//! `recompute_runs` (default 3), `dataset` (default `synthetic:4096`: step time does not depend
//! on the pixels, only on the shapes). Speedups are ratios within the cell, never absolute times.

use super::{CellContext, CellKind, Row};
use crate::error::{Error, Result};
use crate::experiment::cell::Cell;
use crate::ops::step::{StepJob, StepReport, measure};

use crate::train::data::{self, Dataset};
use crate::train::trainer::TrainConfig;
use indexmap::IndexMap;

/// The `step` cell kind.
pub struct StepCell;

/// A `step` cell's `[params]`.
#[derive(serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Params {
    batch: usize,
    solver: String,
    every: usize,
    steps_per_round: usize,
    recompute_runs: usize,
    dataset: String,
    min_seconds: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            batch: TrainConfig::default().batch,
            solver: "greedy".into(),
            every: 40,
            steps_per_round: 2,
            recompute_runs: 3,
            dataset: "synthetic:4096".into(),
            min_seconds: 0.5,
        }
    }
}

/// The `model` axis: `mlp:W1,W2,…` (hidden widths) or `lenet`, as (model, hidden widths).
fn model_of(model: &str) -> Result<(String, Vec<usize>)> {
    match model.split_once(':') {
        Some(("mlp", widths)) => {
            let hidden = widths
                .split(',')
                .map(|w| w.trim().parse::<usize>().ok().filter(|&w| w > 0))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    Error::invalid("model", model, "expected mlp:W1,W2,… with widths ≥ 1")
                })?;
            Ok(("mlp".into(), hidden))
        }
        None if model == "lenet" => Ok(("lenet".into(), TrainConfig::default().hidden)),
        _ => Err(Error::invalid(
            "model",
            model,
            "expected mlp:W1,W2,… (hidden widths) or lenet",
        )),
    }
}

fn job(
    cell: &Cell,
    params: &IndexMap<String, toml::Value>,
    solvers: &crate::solvers::Catalogue,
) -> Result<(StepJob, String)> {
    let p: Params = crate::toml_value::from_params(params)?;
    for (key, v) in [
        ("batch", p.batch),
        ("every", p.every),
        ("steps_per_round", p.steps_per_round),
        ("recompute_runs", p.recompute_runs),
    ] {
        if v == 0 {
            return Err(Error::invalid(key, v, "must be at least 1"));
        }
    }
    if !(0.0..=600.0).contains(&p.min_seconds) {
        return Err(Error::invalid(
            "min_seconds",
            p.min_seconds,
            "expected 0 to 600 seconds",
        ));
    }
    let mut cfg = TrainConfig {
        batch: p.batch,
        solver: solvers.get(&p.solver)?,
        ..TrainConfig::default()
    };
    let mut job = StepJob {
        cfg: TrainConfig::default(),
        steps_per_round: p.steps_per_round,
        min_seconds: p.min_seconds,
        every: p.every,
        recompute_runs: p.recompute_runs,
    };
    let dataset = p.dataset;
    (cfg.model, cfg.hidden) = model_of(cell.require("model")?)?;
    if let Some(b) = cell.get("batch") {
        cfg.batch = b
            .parse()
            .ok()
            .filter(|&b: &usize| b > 0)
            .ok_or_else(|| Error::invalid("batch", b, "expected a whole number ≥ 1"))?;
    }
    if let Some(s) = cell.get("solver") {
        cfg.solver = solvers.get(s)?;
    }
    let setup = cell.require("setup")?;
    let (mask, grad) = setup.split_once('+').ok_or_else(|| {
        Error::invalid(
            "setup",
            setup,
            "expected \"MASK + GRAD\", e.g. \"transposable:2:4 + mvue:2:4\"",
        )
    })?;
    cfg.mask = mask.trim().parse()?;
    cfg.grad = grad.trim().parse()?;
    job.cfg = cfg;
    Ok((job, dataset))
}

impl CellKind for StepCell {
    fn name(&self) -> &'static str {
        "step"
    }

    fn summary(&self) -> &'static str {
        "a training step on compressed N:M kernels against masked-dense and dense steps, and the mask-recompute overhead"
    }

    fn axes(&self) -> &'static [&'static str] {
        &["setup", "model", "batch", "solver"]
    }

    fn columns(&self) -> Vec<String> {
        super::columns_of(&StepReport::default())
    }

    fn check(&self, cell: &Cell, ctx: &super::Checking) -> Result<()> {
        job(cell, ctx.params, ctx.solvers).map(|_| ())
    }

    fn run(&self, cell: &Cell, ctx: &CellContext) -> Result<Row> {
        let (mut job, dataset) = job(cell, ctx.params, ctx.solvers)?;
        job.cfg.seed = cell.seed;
        let data = ctx
            .shared
            .get_or_try::<Dataset, _>(&format!("dataset {dataset}"), || {
                data::load(&dataset, None, 0)
            })?;
        super::to_row(&measure(&job, &data, &ctx.device)?)
    }
}
