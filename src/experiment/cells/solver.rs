//! Cell kind `solver`: one transposable solver on one weight source and pattern (table2).
//!
//! Axes: `pattern` (`N:M`), `solver` (registry name), `source` (`gaussian:RxC`, `laplace:RxC`,
//! `file:PATH#GLOB`, every 2-D tensor that tiles, or `trained:MODEL` — the tiling linear and conv
//! weights of masklab's reference-trained dense `mlp` or `lenet`, the models of table5, trained
//! on first use and cached). Params (optional): `score` (`abs` or
//! `square`) and solver options by name (`tau`, `iterations`, `local_search_steps`, `draws`):
//! a bare name applies to every solver of the grid and each must read it (as `masklab solve
//! --option` checks), `SOLVER.NAME` (e.g. `tsenor.tau`) to that solver's cells only.
//! The weights of a (source, seed) and the optimum of a (source, pattern, seed) — from `exact` —
//! are computed once per run and shared by every solver's cell; only the solver's own call is
//! timed.

use super::{CellContext, CellKind, Row};
use crate::error::{Error, Result};
use crate::experiment::cell::Cell;
use crate::experiment::sources::{Source, parse_source};
use crate::mask::score::Score;
use crate::mask::tile::Blocks;
use crate::mask::{Matrix, Pattern};
use crate::solvers::apply::solve_blocks;
use crate::solvers::evaluate::{Evaluation, gap};
use crate::solvers::{self, SolveContext};
use indexmap::IndexMap;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The `solver` cell kind.
pub struct SolverCell;

/// One table2 row.
#[derive(Debug, Default, Serialize)]
struct SolverRow {
    blocks: usize,
    /// Infeasible blocks keep nothing (so an all-infeasible solver reads 1, never 0).
    kept_gap: f64,
    pruned_excess: f64,
    /// Rounding bound of `kept_gap` (a smaller gap is not resolved).
    gap_resolution: f64,
    infeasible_blocks: usize,
    underfilled_blocks: usize,
    seconds: f64,
    blocks_per_second: f64,
    /// An external solver's own seconds, as it reported them (the round trip is `seconds`).
    #[serde(skip_serializing_if = "Option::is_none")]
    program_seconds: Option<f64>,
    /// The options this cell's solver ran with (`name=value`, comma-separated, by name), where
    /// the spec set any for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    solver_options: Option<String>,
}

/// `name=value,...` of `options` (by name), or `None` for none.
fn options_text(options: &BTreeMap<String, f64>) -> Option<String> {
    (!options.is_empty()).then(|| {
        options
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// A `solver` cell's parameters, read from its axes and the spec's params.
struct SolveParams {
    pattern: Pattern,
    solver: solvers::SolverRef,
    source: Source,
    /// abs or square.
    score: Score,
    options: BTreeMap<String, f64>,
}

/// The `score` param and the solver options of a cell running `solver`: `SOLVER.OPTION` keys
/// for another solver of the grid are checked against it and left out; an option `solver` does
/// not read is an error (as `masklab solve --option` checks them).
fn score_and_options(
    params: &IndexMap<String, toml::Value>,
    solver: &solvers::SolverRef,
    catalogue: &crate::solvers::Catalogue,
) -> Result<(Score, BTreeMap<String, f64>)> {
    let mut score = Score::Abs;
    let mut options = BTreeMap::new();
    for (k, v) in params {
        match (k.as_str(), v) {
            ("score", toml::Value::String(s)) => {
                score = s
                    .parse::<Score>()?
                    .only(&["abs", "square"], "solver cells")?
            }
            ("score", other) => {
                return Err(Error::invalid(
                    "score",
                    other,
                    "expected \"abs\" or \"square\"",
                ));
            }
            (key, value) => {
                let x = value
                    .as_float()
                    .or(value.as_integer().map(|i| i as f64))
                    .ok_or_else(|| Error::invalid(key, value, "solver options are numbers"))?;
                // `SOLVER.OPTION` sets an option for that solver's cells only (a grid of several
                // solvers); a bare `OPTION` is for every solver of the grid, so each must read it.
                let (target, name) = match key.split_once('.') {
                    Some((s, o)) => (Some(catalogue.get(s)?), o),
                    None => (None, key),
                };
                solvers::check_option_value(name, x)?;
                match target {
                    Some(t) if t.name() != solver.name() => {
                        // Another solver's option: checked against that solver, not used here.
                        solvers::check_options(&*t, &BTreeMap::from([(name.to_string(), x)]))?
                    }
                    _ => {
                        options.insert(name.to_string(), x);
                    }
                }
            }
        }
    }
    // As `masklab solve --option` checks them (the same check, with a hint for grids): an option
    // this cell's solver does not read is an error, not dropped.
    if let Some(name) = options
        .keys()
        .find(|k| !solver.options().contains(&k.as_str()))
    {
        let reads = match solver.options() {
            [] => "no options".to_string(),
            o => o.join(", "),
        };
        return Err(Error::invalid(
            "solver option",
            name,
            format!(
                "solver {} reads: {reads}; set an option for one solver of the grid as \"SOLVER.OPTION\" (e.g. \"tsenor.tau\")",
                solver.name()
            ),
        ));
    }
    Ok((score, options))
}

fn parse(
    cell: &Cell,
    params: &IndexMap<String, toml::Value>,
    catalogue: &crate::solvers::Catalogue,
) -> Result<SolveParams> {
    let pattern: Pattern = cell.parse_axis("pattern")?;
    let solver = catalogue.get(cell.require("solver")?)?;
    let source = parse_source(cell.require("source")?)?;
    if let Source::Gaussian(r, c) | Source::Laplace(r, c) = source {
        // Weights, scores (f32) and two masks (u8), plus the optimum's mask: ~14 bytes a weight.
        crate::memory::ensure_fits(
            r as u128 * c as u128 * 14,
            "source",
            cell.require("source")?,
        )?;
    }
    if let Source::Gaussian(r, c) | Source::Laplace(r, c) = source
        && (r % pattern.m != 0 || c % pattern.m != 0)
    {
        return Err(Error::invalid(
            "source",
            cell.require("source")?,
            format!("{r}x{c} does not tile into {0}x{0} blocks", pattern.m),
        ));
    }
    if solver.name() == "exhaustive" && pattern.m != 4 {
        return Err(Error::invalid(
            "solver",
            "exhaustive",
            format!(
                "works for M = 4 only, not {pattern}; leave it out of this grid point with [[exclude]]"
            ),
        ));
    }
    let (score, options) = score_and_options(params, &solver, catalogue)?;
    Ok(SolveParams {
        pattern,
        solver,
        source,
        score,
        options,
    })
}

/// Score blocks `[B, M, M]` of the source (all tiling 2-D tensors for files).
fn source_blocks(
    source: &Source,
    label: &str,
    seed: u64,
    pattern: Pattern,
    score: &Score,
    device: &candle_core::Device,
) -> Result<Vec<f32>> {
    let tiles =
        |m: &Matrix| m.rows().is_multiple_of(pattern.m) && m.cols().is_multiple_of(pattern.m);
    let matrices: Vec<Matrix> = crate::experiment::sources::matrices(source, label, seed, device)?
        .into_iter()
        .filter(tiles)
        .collect();
    if matrices.is_empty() {
        return Err(Error::invalid(
            "source",
            label,
            format!("no 2-D tensor tiles into {0}x{0} blocks", pattern.m),
        ));
    }
    let mut blocks = Vec::new();
    for m in matrices {
        let scores = match score {
            Score::Square => m.square(),
            _ => m.abs(),
        };
        blocks.extend_from_slice(Blocks::from_matrix(&scores, pattern.m)?.data());
    }
    Ok(blocks)
}

impl CellKind for SolverCell {
    fn name(&self) -> &'static str {
        "solver"
    }

    fn axes(&self) -> &'static [&'static str] {
        &["pattern", "solver", "source"]
    }

    fn columns(&self) -> Vec<String> {
        super::columns_of(&SolverRow {
            program_seconds: Some(0.0),
            solver_options: Some(String::new()),
            ..SolverRow::default()
        })
    }

    fn summary(&self) -> &'static str {
        "one transposable solver on one source and pattern: kept_gap, pruned_excess, feasibility, time"
    }

    fn check(&self, cell: &Cell, ctx: &super::Checking) -> Result<()> {
        parse(cell, ctx.params, ctx.solvers).map(|_| ())
    }

    fn run(&self, cell: &Cell, ctx: &CellContext) -> Result<Row> {
        let p = parse(cell, ctx.params, ctx.solvers)?;
        let label = cell.require("source")?.to_string();
        let blocks_key = format!("blocks|{label}|{}|{}|{}", p.pattern, cell.seed, p.score);
        let blocks: Arc<Vec<f32>> = ctx.shared.get_or_try(&blocks_key, || {
            source_blocks(
                &p.source,
                &label,
                cell.seed,
                p.pattern,
                &p.score,
                &ctx.device,
            )
        })?;
        let solve_ctx = SolveContext {
            seed: cell.rng_seed(),
            device: ctx.device.clone(),
            options: p.options.clone(),
        };
        let opt: Arc<Evaluation> = ctx.shared.get_or_try(&format!("opt|{blocks_key}"), || {
            let exact_ctx = SolveContext {
                options: BTreeMap::new(),
                ..solve_ctx.clone()
            };
            Ok(solve_blocks(&solvers::exact::Exact, &blocks, p.pattern, &exact_ctx)?.evaluation)
        })?;
        let solved = solve_blocks(&*p.solver, &blocks, p.pattern, &solve_ctx)?;
        let g = gap(&solved.evaluation, &opt);
        let n = solved.evaluation.kept.len();
        super::to_row(&SolverRow {
            blocks: n,
            kept_gap: g.kept_gap,
            pruned_excess: g.pruned_excess,
            gap_resolution: g.resolution,
            infeasible_blocks: solved.evaluation.infeasible,
            underfilled_blocks: solved.evaluation.underfilled,
            seconds: solved.seconds,
            blocks_per_second: n as f64 / solved.seconds.max(1e-9),
            program_seconds: p.solver.reported_seconds(),
            solver_options: options_text(&p.options),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params_of(solver: &str, params: &str) -> Result<SolveParams> {
        let cell = Cell {
            index: 0,
            values: vec![
                ("pattern".into(), "2:4".into()),
                ("solver".into(), solver.into()),
                ("source".into(), "gaussian:8x8".into()),
            ],
            seed: 0,
        };
        let table: toml::Table = params.parse().expect("toml");
        parse(
            &cell,
            &table.into_iter().collect(),
            &solvers::Catalogue::default(),
        )
    }

    #[test]
    fn a_qualified_option_reaches_its_solver_only_and_a_bare_one_every_solver() -> Result<()> {
        let p = params_of("tsenor", "\"tsenor.tau\" = 0.05\n\"max-random.draws\" = 10")?;
        assert_eq!(p.options, BTreeMap::from([("tau".to_string(), 0.05)]));
        let p = params_of(
            "max-random",
            "\"tsenor.tau\" = 0.05\n\"max-random.draws\" = 10",
        )?;
        assert_eq!(p.options, BTreeMap::from([("draws".to_string(), 10.0)]));
        let p = params_of("tsenor", "iterations = 5\n\"tsenor.tau\" = 0.05")?;
        assert_eq!(
            p.options,
            BTreeMap::from([("iterations".to_string(), 5.0), ("tau".to_string(), 0.05)])
        );
        // What a row records of them.
        assert_eq!(
            options_text(&p.options).as_deref(),
            Some("iterations=5,tau=0.05")
        );
        assert_eq!(options_text(&BTreeMap::new()), None);
        // A bare option the cell's solver does not read, or a qualified one its solver does not
        // read, is an error naming it.
        let e = params_of("exact", "iterations = 5")
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("exact") && e.contains("iterations"), "{e}");
        let e = params_of("exact", "\"tsenor.draws\" = 5")
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("draws") && e.contains("tau"), "{e}");
        Ok(())
    }
}
