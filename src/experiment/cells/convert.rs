//! Cell kind `convert`: one-shot conversion of a trained dense model (table5).
//!
//! Axes: `model` (`mlp`, `lenet`), `structure` (`unstructured:S`, `nm:N:M`, `transposable:N:M`),
//! `solver` (for transposable structures; N:M and unstructured masks are optimal whatever it
//! says), `score` (`abs`, `wanda`). The cell's seed draws the calibration images. Params of the
//! dense training: `dataset`, `data_dir`, `hidden`, `epochs`, `batch`, `lr`, `momentum`,
//! `weight_decay`, `train_limit`; of the conversion: `calibration` (images, default 256) and
//! `cache` (directory of trained weights; default `$MASKLAB_CACHE`, else `results/cache`).
//!
//! The dense model is trained once per run and cached on disk under the hash of everything its
//! training depends on (`<cache>/<model>-<hash>.safetensors`); a rerun, or another spec with the
//! same training params, reuses it. Each cell loads it fresh, converts it
//! ([`crate::convert::oneshot`]) and reports accuracies, drops against the dense model, the
//! mask's kept_gap and the layers' calibration errors. `group` (model, structure, score) is the
//! set of cells whose masks differ only by solver, for the kept_gap → accuracy-drop correlation.

use super::{CellContext, CellKind, Row, param_str, param_usize};
use crate::convert::oneshot::{OneShot, convert_model};
use crate::error::{Error, Result};
use crate::experiment::cell::Cell;
use crate::experiment::sources::{Dense, Trained, load, trained, training_key};
use crate::mask::Structure;
use crate::mask::score::Score;
use crate::train::data::{self, Dataset};
use crate::train::params::TrainParams;
use indexmap::IndexMap;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// The `convert` cell kind.
pub struct ConvertCell;

/// A `convert` cell's parameters: the reference dense training and the one-shot conversion.
struct ConvertParams {
    dense: Dense,
    oneshot: OneShot,
}

fn parse(
    cell: &Cell,
    params: &IndexMap<String, toml::Value>,
    solvers: &crate::solvers::Catalogue,
) -> Result<ConvertParams> {
    // `cache` and `calibration` are the conversion's; every other key is a training param of
    // the dense reference ([`TrainParams`]), of which the sparse-training ones do not apply.
    let mut cache = crate::io::default_cache();
    let mut calibration = 256;
    let mut rest = params.clone();
    if let Some(v) = rest.shift_remove("cache") {
        cache = PathBuf::from(param_str("cache", &v)?);
    }
    if let Some(v) = rest.shift_remove("calibration") {
        calibration = param_usize("calibration", &v, 1)?;
    }
    if let Some(key) = ["model", "solver", "every", "srste", "gemm"]
        .into_iter()
        .find(|k| rest.contains_key(*k))
    {
        return Err(Error::invalid(
            key,
            &rest[key],
            "convert cells train a dense reference (the model is an axis); sparse-training params do not apply",
        ));
    }
    let p = TrainParams::from_toml(&rest)?;
    if p.epochs == 0 {
        return Err(Error::invalid("epochs", 0, "must be at least 1"));
    }
    let mut train = p.config(solvers)?;
    let (dataset, data_dir) = (p.dataset, p.data_dir);
    train.model = cell.require("model")?.to_string();
    if !matches!(train.model.as_str(), "mlp" | "lenet") {
        return Err(Error::invalid(
            "model",
            &train.model,
            "expected mlp or lenet",
        ));
    }
    let structure: Structure = cell.require("structure")?.parse()?;
    if matches!(structure, Structure::Dense | Structure::Block(..)) {
        return Err(Error::invalid(
            "structure",
            structure,
            "expected unstructured:S, nm:N:M or transposable:N:M",
        ));
    }
    let solver = solvers.get(cell.require("solver")?)?;
    let score = cell
        .require("score")?
        .parse::<Score>()?
        .only(OneShot::SCORES, "convert cells")?;
    Ok(ConvertParams {
        dense: Dense {
            train,
            dataset,
            data_dir,
            cache,
        },
        oneshot: OneShot {
            structure,
            solver,
            score,
            calibration,
            seed: cell.seed,
        },
    })
}

/// One row of table5.
#[derive(Default, Serialize)]
struct ConvertRow {
    group: String,
    target_sparsity: f64,
    dense_accuracy: f64,
    pruned_accuracy: f64,
    adaprune_accuracy: f64,
    accuracy_drop: f64,
    adaprune_drop: f64,
    kept_gap: f64,
    recon_error_pruned: f64,
    recon_error_adaprune: f64,
    recon_error_adaprune_max: f64,
    layers: usize,
    calibration: usize,
    mask_seconds: f64,
    adaprune_seconds: f64,
    seconds: f64,
}

impl CellKind for ConvertCell {
    fn name(&self) -> &'static str {
        "convert"
    }

    fn axes(&self) -> &'static [&'static str] {
        &["model", "structure", "solver", "score"]
    }

    fn columns(&self) -> Vec<String> {
        super::columns_of(&ConvertRow::default())
    }

    fn summary(&self) -> &'static str {
        "one-shot conversion of a trained dense model (masks from |W| or Wanda scores, AdaPrune); test accuracy, kept_gap, calibration error"
    }

    fn check(&self, cell: &Cell, ctx: &super::Checking) -> Result<()> {
        parse(cell, ctx.params, ctx.solvers).map(|_| ())
    }

    fn run(&self, cell: &Cell, ctx: &CellContext) -> Result<Row> {
        let start = Instant::now();
        let p = parse(cell, ctx.params, ctx.solvers)?;
        let data = ctx
            .shared
            .get_or_try::<Dataset, _>(&format!("dataset {}", p.dense.dataset), || {
                data::load(&p.dense.dataset, p.dense.data_dir.as_deref(), 0)
            })?;
        let dense = ctx
            .shared
            .get_or_try::<Trained, _>(&format!("trained {}", training_key(&p.dense)), || {
                trained(&p.dense, &data, &ctx.device)
            })?;
        let mut model = load(
            &p.dense,
            &dense.path,
            &data,
            &ctx.device,
            p.oneshot.structure,
        )?;
        let r = convert_model(model.as_mut(), &data, &p.oneshot, &ctx.device)?;
        let structure = cell.require("structure")?;
        let target_sparsity = match p.oneshot.structure {
            Structure::Unstructured(s) => s,
            Structure::Nm(q) | Structure::Transposable(q) => q.sparsity(),
            _ => 0.0,
        };
        super::to_row(&ConvertRow {
            group: format!(
                "{} {} {}",
                p.dense.train.model,
                structure,
                cell.require("score")?
            ),
            target_sparsity,
            dense_accuracy: dense.accuracy,
            pruned_accuracy: r.pruned_accuracy,
            adaprune_accuracy: r.adaprune_accuracy,
            accuracy_drop: dense.accuracy - r.pruned_accuracy,
            adaprune_drop: dense.accuracy - r.adaprune_accuracy,
            kept_gap: r.kept_gap,
            recon_error_pruned: r.recon_error_pruned,
            recon_error_adaprune: r.recon_error_adaprune,
            recon_error_adaprune_max: r.recon_error_adaprune_max,
            layers: r.layers,
            calibration: p.oneshot.calibration,
            mask_seconds: r.mask_seconds,
            adaprune_seconds: r.adaprune_seconds,
            seconds: start.elapsed().as_secs_f64(),
        })
    }
}
