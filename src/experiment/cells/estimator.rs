//! Cell kind `estimator`: bias, variance and MSE of one neural-gradient estimator (table3).
//!
//! Axes: `estimator` (registry name), `pattern` (`N:M`), `input` (`gaussian`, `laplace`,
//! `lognormal:SIGMA` — heavy-tailed like real neural gradients — or `file:PATH#GLOB`, the first
//! matching 2-D tensor, e.g. gradients captured in training). Params: `size` (`RxC` of the
//! synthetic gradient `g: [batch, out]`, default `256x256`), `draws` (K, default 1000),
//! `in_features` (columns of the random `x` in `dW = gᵀx`, default 64). Groups run along the
//! batch axis (dim 0). The same seeds give the same draws for every estimator.

use super::{CellContext, CellKind, Row};
use crate::error::{Error, Result};
use crate::estimators::{self, measure::measure};
use crate::experiment::cell::Cell;
use crate::mask::{Pattern, parse_size};
use crate::seed::derive as derive_seed;
use candle_core::Tensor;
use indexmap::IndexMap;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use serde::Serialize;
use std::time::Instant;

/// The `estimator` cell kind.
pub struct EstimatorCell;

/// One table3 row.
#[derive(Debug, Default, Serialize)]
struct EstimatorRow {
    unbiased: bool,
    draws: usize,
    rel_bias: f64,
    rel_variance: f64,
    rel_mse: f64,
    gemm_rel_bias: f64,
    gemm_rel_variance: f64,
    seconds: f64,
}

struct Params {
    rows: usize,
    cols: usize,
    draws: usize,
    in_features: usize,
}

/// An `estimator` cell's `[params]` as written (`size` as "RxC").
#[derive(serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawParams {
    size: String,
    draws: usize,
    in_features: usize,
}

impl Default for RawParams {
    fn default() -> Self {
        RawParams {
            size: "256x256".into(),
            draws: 1000,
            in_features: 64,
        }
    }
}

fn params(p: &IndexMap<String, toml::Value>) -> Result<Params> {
    let raw: RawParams = crate::toml_value::from_params(p)?;
    let (rows, cols) = parse_size(&raw.size)?;
    for (key, v) in [("draws", raw.draws), ("in_features", raw.in_features)] {
        if v == 0 {
            return Err(Error::invalid(key, v, "must be at least 1"));
        }
    }
    Ok(Params {
        rows,
        cols,
        draws: raw.draws,
        in_features: raw.in_features,
    })
}

fn parse(
    cell: &Cell,
    p: &IndexMap<String, toml::Value>,
) -> Result<(&'static dyn estimators::Estimator, Pattern, Params)> {
    let est = estimators::by_name(cell.require("estimator")?)?;
    let pattern: Pattern = cell.parse_axis("pattern")?;
    est.supports(pattern)
        .map_err(|e| Error::invalid("estimator", est.name(), e))?;
    let input = cell.require("input")?;
    let ok = matches!(input, "gaussian" | "laplace")
        || input.starts_with("file:")
        || input
            .strip_prefix("lognormal:")
            .is_some_and(|s| s.trim_start_matches("σ=").parse::<f64>().is_ok());
    if !ok {
        return Err(Error::invalid(
            "input",
            input,
            "expected gaussian, laplace, lognormal:SIGMA or file:PATH#GLOB",
        ));
    }
    let params = params(p)?;
    // g, x, one draw and the running sums (f64) of the metrics: ~40 bytes per element.
    let elements = params.rows as u128 * (params.cols as u128 + params.in_features as u128);
    crate::memory::ensure_fits(
        elements * 40,
        "size",
        format!("{}x{}", params.rows, params.cols),
    )?;
    if !input.starts_with("file:") && params.rows % pattern.m != 0 {
        return Err(Error::invalid(
            "pattern",
            pattern,
            format!("batch {} is not a multiple of M", params.rows),
        ));
    }
    Ok((est, pattern, params))
}

impl CellKind for EstimatorCell {
    fn name(&self) -> &'static str {
        "estimator"
    }

    fn axes(&self) -> &'static [&'static str] {
        &["estimator", "pattern", "input"]
    }

    fn columns(&self) -> Vec<String> {
        super::columns_of(&EstimatorRow::default())
    }

    fn summary(&self) -> &'static str {
        "bias, variance and MSE of a neural-gradient N:M estimator, and of the update GEMM"
    }

    fn check(&self, cell: &Cell, ctx: &super::Checking) -> Result<()> {
        parse(cell, ctx.params).map(|_| ())
    }

    fn run(&self, cell: &Cell, ctx: &CellContext) -> Result<Row> {
        let (est, pattern, p) = parse(cell, ctx.params)?;
        let input = cell.require("input")?;
        let g =
            crate::experiment::sources::gradient(input, (p.rows, p.cols), cell.seed, pattern.m)?
                .to_device(&ctx.device)
                .map_err(Error::tensor("g to device"))?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(derive_seed(cell.seed, "x"));
        let batch = g.dims()[0];
        let x: Vec<f32> = (0..batch * p.in_features)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        let x =
            Tensor::from_vec(x, (batch, p.in_features), &ctx.device).map_err(Error::tensor("x"))?;
        let start = Instant::now();
        // Same draw seeds for every estimator of a (pattern, input, seed).
        let m = measure(
            est,
            &g,
            &x,
            pattern,
            0,
            p.draws,
            derive_seed(cell.seed, &format!("draws {input} {pattern}")),
        )?;
        super::to_row(&EstimatorRow {
            unbiased: est.unbiased(),
            draws: m.draws,
            rel_bias: m.rel_bias,
            rel_variance: m.rel_variance,
            rel_mse: m.rel_mse,
            gemm_rel_bias: m.gemm_rel_bias,
            gemm_rel_variance: m.gemm_rel_variance,
            seconds: start.elapsed().as_secs_f64(),
        })
    }
}
