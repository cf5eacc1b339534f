//! Cell kind `gemm`: one training GEMM of one mask type against dense, timed in the same
//! process (table7; [`crate::ops::gemm`]).
//!
//! Axes: `mask` (`dense`, `nm:N:M`, `transposable:N:M`), `shape` (`OUTxIN`), `batch`, `op`
//! (`forward`, `backward`, `update`) and optionally `dtype` (`f32`, the default, or `bf16`). Params (optional): `min_seconds` (least timed seconds per
//! side, default 0.2) and `threads` (default: the run's). The update op needs a batch that is a
//! multiple of M (ĝ is N:M along it): other cells are refused when the plan is made (leave them
//! out with `[[exclude]]`). Speedups are ratios within the cell, never absolute times.

use super::{CellContext, CellKind, Row};
use crate::error::{Error, Result};
use crate::experiment::cell::Cell;
use crate::mask::parse_size;
use crate::ops::gemm::{GemmJob, GemmReport, MaskType, Op, measure};
use indexmap::IndexMap;

/// The `gemm` cell kind.
pub struct GemmCell;

/// A `gemm` cell's `[params]`.
#[derive(serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Params {
    min_seconds: f64,
    threads: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            min_seconds: 0.2,
            threads: rayon::current_num_threads(),
        }
    }
}

fn job(cell: &Cell, params: &IndexMap<String, toml::Value>) -> Result<GemmJob> {
    let mask: MaskType = cell.parse_axis("mask")?;
    let (out, inp) = parse_size(cell.require("shape")?)?;
    let batch: usize = cell.require("batch")?.parse().map_err(|_| {
        Error::invalid(
            "batch",
            cell.get("batch").unwrap_or(""),
            "expected a whole number ≥ 1",
        )
    })?;
    let op: Op = cell.parse_axis("op")?;
    let Params {
        min_seconds,
        threads,
    } = crate::toml_value::from_params(params)?;
    if !(0.0..=60.0).contains(&min_seconds) {
        return Err(Error::invalid(
            "min_seconds",
            min_seconds,
            "expected 0 to 60 seconds",
        ));
    }
    if threads == 0 {
        return Err(Error::invalid("threads", 0, "must be at least 1"));
    }
    if batch == 0 {
        return Err(Error::invalid("batch", 0, "must be at least 1"));
    }
    if let (Op::Update, MaskType::Nm(p) | MaskType::Transposable(p)) = (op, mask)
        && !batch.is_multiple_of(p.m)
    {
        return Err(Error::invalid(
            "batch",
            batch,
            format!(
                "the update's ĝ is N:M along the batch, so it must be a multiple of M = {}",
                p.m
            ),
        ));
    }
    if let MaskType::Nm(p) | MaskType::Transposable(p) = mask {
        let tiles = match (mask, op) {
            (MaskType::Transposable(_), _) => out.is_multiple_of(p.m) && inp.is_multiple_of(p.m),
            (_, Op::Forward) => inp.is_multiple_of(p.m),
            _ => true,
        };
        if !tiles {
            return Err(Error::invalid(
                "shape",
                format!("{out}x{inp}"),
                format!("does not tile into the groups of {mask}"),
            ));
        }
    }
    let dtype = match cell.get("dtype") {
        Some(d) => d.parse()?,
        None => Default::default(),
    };
    Ok(GemmJob {
        mask,
        out,
        inp,
        batch,
        op,
        seed: 0,
        threads,
        min_seconds,
        dtype,
    })
}

impl CellKind for GemmCell {
    fn name(&self) -> &'static str {
        "gemm"
    }

    fn summary(&self) -> &'static str {
        "one training GEMM (forward, backward, update) of a mask type against dense: speedup, share of its limit, GFLOP/s, bytes"
    }

    fn axes(&self) -> &'static [&'static str] {
        &["mask", "shape", "batch", "op", "dtype"]
    }

    fn columns(&self) -> Vec<String> {
        super::columns_of(&GemmReport::default())
    }

    fn check(&self, cell: &Cell, ctx: &super::Checking) -> Result<()> {
        job(cell, ctx.params).map(|_| ())
    }

    fn run(&self, cell: &Cell, ctx: &CellContext) -> Result<Row> {
        let mut job = job(cell, ctx.params)?;
        job.seed = ctx.rng_seed;
        super::to_row(&measure(&job)?)
    }
}
