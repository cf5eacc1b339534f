//! Applying a solver to weight matrices: scores, tiling, timing, validation and gaps, in one
//! place for `masklab solve` and the `solver` cell kind.

use super::evaluate::{Evaluation, Gap, evaluate, gap};
use super::{SolveContext, Solver};
use crate::error::{Error, Result};
use crate::io::{self, NamedTensor};
use crate::mask::tile::Blocks;
use crate::mask::{Mask, Matrix, Pattern};
use serde::Serialize;
use std::time::Instant;

/// How scores are made from weights.
#[derive(Debug, Clone, PartialEq)]
pub enum Score {
    /// `|W|` (the default).
    Abs,
    /// `W²`.
    Square,
    /// Scores read from a file (`FILE#GLOB`), matched to weights by tensor name.
    Supplied(String),
}

impl std::str::FromStr for Score {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "abs" => Score::Abs,
            "square" => Score::Square,
            other if other.contains('.') => Score::Supplied(other.to_string()),
            other => {
                return Err(Error::invalid(
                    "score",
                    other,
                    "expected abs, square or a score file FILE[#GLOB]",
                ));
            }
        })
    }
}

/// One solve of a batch of blocks: the mask batch, its evaluation and the solver's wall time.
#[derive(Debug, Clone)]
pub struct Solved {
    /// `[B, M, M]` 0/1 masks.
    pub keep: Vec<u8>,
    /// Checks and kept scores.
    pub evaluation: Evaluation,
    /// Seconds spent in the solver (not in checking).
    pub seconds: f64,
}

/// Run `solver` on `[B, M, M]` blocks, time it and check the result.
pub fn solve_blocks(
    solver: &dyn Solver,
    blocks: &[f32],
    pattern: Pattern,
    ctx: &SolveContext,
) -> Result<Solved> {
    let start = Instant::now();
    let keep = solver.solve(blocks, pattern, ctx)?;
    let seconds = start.elapsed().as_secs_f64();
    if keep.len() != blocks.len() {
        return Err(Error::invalid(
            "solver output",
            solver.name(),
            format!("{} mask values for {} scores", keep.len(), blocks.len()),
        ));
    }
    let evaluation = evaluate(blocks, &keep, pattern);
    Ok(Solved {
        keep,
        evaluation,
        seconds,
    })
}

/// The report `masklab solve --json` prints for one tensor.
#[derive(Debug, Clone, Serialize)]
pub struct TensorReport {
    /// Tensor name.
    pub tensor: String,
    /// Tensor shape.
    pub shape: Vec<usize>,
    /// Solver name.
    pub solver: String,
    /// Pattern `N:M`.
    pub pattern: String,
    /// Kept score over the feasible blocks.
    pub kept: f64,
    /// Optimal kept score over the same blocks (with `--compare-exact`).
    pub optimum: Option<f64>,
    /// `(OPT − kept)/OPT` (with `--compare-exact`).
    pub kept_gap: Option<f64>,
    /// `(pruned − pruned_OPT)/pruned_OPT` (with `--compare-exact`).
    pub pruned_excess: Option<f64>,
    /// Blocks in which a row or column keeps more than N.
    pub infeasible_blocks: usize,
    /// Feasible blocks in which a row or column keeps fewer than N.
    pub underfilled_blocks: usize,
    /// Blocks solved.
    pub blocks: usize,
    /// Solver wall time.
    pub seconds: f64,
}

/// What to do with one input file.
#[derive(Clone)]
pub struct SolveRequest<'a> {
    /// The solver.
    pub solver: &'a dyn Solver,
    /// The pattern.
    pub pattern: Pattern,
    /// Score kind.
    pub score: Score,
    /// Also run `exact` and report gaps.
    pub compare_exact: bool,
    /// Refuse (instead of skipping) tensors that are not 2-D or do not tile.
    pub strict: bool,
}

/// What [`solve_source`] returns: one report and one named mask per tensor, and warnings.
pub type Solutions = (Vec<TensorReport>, Vec<(String, Mask)>, Vec<String>);

/// Reports, masks and warnings for every selected tensor of `source` (`FILE#GLOB`).
pub fn solve_source(source: &str, req: &SolveRequest, ctx: &SolveContext) -> Result<Solutions> {
    let tensors = io::read_tensors(source)?;
    let supplied = match &req.score {
        Score::Supplied(s) => Some(io::read_tensors(s)?),
        _ => None,
    };
    let (mut reports, mut masks, mut warnings) = (Vec::new(), Vec::new(), Vec::new());
    for t in &tensors {
        let Some(weights) = usable(t, req.pattern, req.strict, &mut warnings)? else {
            continue;
        };
        let scores = match (&req.score, &supplied) {
            (Score::Abs, _) => weights.abs(),
            (Score::Square, _) => weights.square(),
            (Score::Supplied(file), Some(all)) => {
                let s = all.iter().find(|s| s.name == t.name).ok_or_else(|| {
                    Error::invalid("score", file, format!("has no tensor named `{}`", t.name))
                })?;
                let m = s
                    .matrix()
                    .filter(|m| m.rows() == weights.rows() && m.cols() == weights.cols())
                    .ok_or_else(|| {
                        Error::invalid(
                            "score",
                            file,
                            format!(
                                "tensor `{}` has shape {:?}, weights have {:?}",
                                t.name, s.shape, t.shape
                            ),
                        )
                    })?;
                if m.data().iter().any(|v| *v < 0.0) {
                    return Err(Error::invalid(
                        "score",
                        file,
                        format!("tensor `{}` has negative scores", t.name),
                    ));
                }
                m
            }
            (Score::Supplied(_), None) => unreachable!("supplied scores are read above"),
        };
        let blocks = Blocks::from_matrix(&scores, req.pattern.m)?;
        let solved = solve_blocks(req.solver, blocks.data(), req.pattern, ctx)?;
        let g: Option<Gap> = if req.compare_exact {
            let opt = solve_blocks(&super::exact::Exact, blocks.data(), req.pattern, ctx)?;
            Some(gap(&solved.evaluation, &opt.evaluation))
        } else {
            None
        };
        reports.push(TensorReport {
            tensor: t.name.clone(),
            shape: t.shape.clone(),
            solver: req.solver.name().to_string(),
            pattern: req.pattern.to_string(),
            kept: solved.evaluation.kept_total(),
            optimum: g.map(|g| g.optimum),
            kept_gap: g.map(|g| g.kept_gap),
            pruned_excess: g.map(|g| g.pruned_excess),
            infeasible_blocks: solved.evaluation.infeasible,
            underfilled_blocks: solved.evaluation.underfilled,
            blocks: solved.evaluation.kept.len(),
            seconds: solved.seconds,
        });
        masks.push((t.name.clone(), blocks.to_mask(&solved.keep)?));
    }
    if reports.is_empty() {
        return Err(Error::invalid(
            "input",
            source,
            "no 2-D tensor that tiles into M x M blocks",
        ));
    }
    Ok((reports, masks, warnings))
}

/// The tensor as a matrix that tiles, or a warning (an error under `strict`).
fn usable(
    t: &NamedTensor,
    pattern: Pattern,
    strict: bool,
    warnings: &mut Vec<String>,
) -> Result<Option<Matrix>> {
    let problem = match t.matrix() {
        None => format!("tensor `{}` has shape {:?}, not 2-D", t.name, t.shape),
        Some(m) if m.rows() == 0 || m.cols() == 0 => {
            format!("tensor `{}` of shape {:?} is empty", t.name, t.shape)
        }
        Some(m) if m.rows() % pattern.m != 0 || m.cols() % pattern.m != 0 => {
            format!(
                "tensor `{}` of shape {}x{} does not tile into {}x{} blocks",
                t.name,
                m.rows(),
                m.cols(),
                pattern.m,
                pattern.m
            )
        }
        Some(m) => return Ok(Some(m)),
    };
    if strict {
        return Err(Error::invalid(
            "tensor",
            &t.name,
            format!("{problem} (refused under --strict)"),
        ));
    }
    warnings.push(format!("skipped {problem}"));
    Ok(None)
}

impl std::fmt::Display for TensorReport {
    /// One line: tensor, solver, kept score, gaps when known, block counts, time.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:?}: {} {} kept {:.6}",
            self.tensor, self.shape, self.solver, self.pattern, self.kept
        )?;
        if let Some(g) = self.kept_gap {
            let excess = self.pruned_excess.unwrap_or(f64::NAN);
            write!(f, ", kept_gap {g:.3e}, pruned_excess {excess:.3e}")?;
        }
        write!(
            f,
            "; {} blocks, {} infeasible, {} under-filled; {:.3} s",
            self.blocks, self.infeasible_blocks, self.underfilled_blocks, self.seconds
        )
    }
}
