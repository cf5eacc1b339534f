//! Applying a solver to weight matrices: scores, tiling, timing, validation and gaps, in one
//! place for `masklab solve` and the `solver` cell kind.

use super::evaluate::{Evaluation, Gap, evaluate, gap};
use super::{SolveContext, Solver};
use crate::error::{Error, Result};
use crate::io::checkpoint::{Checkpoint, Dtype, Entry, Selection, Skipped, Tiling, ValueMap};
use crate::io::{self, MaskSink};
use crate::mask::tile::{BlockShape, Blocks};
use crate::mask::{Mask, Matrix, Pattern};
use serde::Serialize;
use std::path::{Path, PathBuf};
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

/// A solve error with the tensor it happened in (and, for a non-finite score under `square`,
/// why: W² overflows f32 above |W| = 1.8e19).
pub fn in_tensor(err: Error, tensor: &str, score: &Score) -> Error {
    match err {
        Error::Invalid {
            field,
            value,
            reason,
        } if field == "score" => {
            let why = if *score == Score::Square && value == "inf" {
                " (W² overflows f32 where |W| > 1.8e19; use --score abs)"
            } else {
                ""
            };
            Error::Invalid {
                field,
                value,
                reason: format!("{reason} in tensor `{tensor}`{why}"),
            }
        }
        other => other,
    }
}

/// The report `masklab solve --json` prints for one tensor.
#[derive(Debug, Clone, Serialize)]
pub struct TensorReport {
    /// Tensor name.
    pub tensor: String,
    /// Tensor shape.
    pub shape: Vec<usize>,
    /// Element type in the file.
    pub dtype: Dtype,
    /// Solver name.
    pub solver: String,
    /// Pattern `N:M`.
    pub pattern: String,
    /// Kept score over the feasible blocks (an infeasible block keeps nothing).
    pub kept: f64,
    /// Optimal kept score (with `--compare-exact`).
    pub optimum: Option<f64>,
    /// `(OPT − kept)/OPT`, infeasible blocks keeping nothing (with `--compare-exact`).
    pub kept_gap: Option<f64>,
    /// `(pruned − pruned_OPT)/pruned_OPT` (with `--compare-exact`).
    pub pruned_excess: Option<f64>,
    /// Rounding bound of `kept_gap`: a smaller gap is not resolved (with `--compare-exact`).
    pub gap_resolution: Option<f64>,
    /// Blocks in which a row or column keeps more than N.
    pub infeasible_blocks: usize,
    /// Feasible blocks in which a row or column keeps fewer than N.
    pub underfilled_blocks: usize,
    /// Blocks solved.
    pub blocks: usize,
    /// Solver wall time.
    pub seconds: f64,
    /// Reading, converting, scoring and tiling the tensor.
    pub read_seconds: f64,
    /// The whole tensor: read, solve, check, mask (not the write).
    pub total_seconds: f64,
    /// Peak resident memory of the process so far, in MB (`VmHWM`; Linux).
    pub peak_rss_mb: Option<f64>,
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

/// A streamed solve of one checkpoint (`masklab solve`).
pub struct SolveJob<'a> {
    /// The checkpoint: a file, a sharded directory or its index (see [`Checkpoint::open`]).
    pub input: &'a Path,
    /// Which tensors.
    pub selection: Selection,
    /// Solver, pattern, score, comparison, strictness.
    pub request: SolveRequest<'a>,
    /// Where the masks go (u8 0/1, same names), written as they are found.
    pub output: Option<&'a Path>,
    /// Show a progress bar over bytes and tensors (on a terminal only).
    pub progress: bool,
    /// Wanda: per-input-column activation norms by weight name (scores become |W|·‖x‖).
    pub act_norms: Option<&'a Path>,
}

/// The error `masklab solve` reports when `solver` returned infeasible masks (a row or column
/// keeping more than N) for any tensor, naming each and its count of such blocks.
pub fn infeasible_message(reports: &[TensorReport], solver: &str) -> Option<String> {
    let infeasible: Vec<String> = reports
        .iter()
        .filter(|r| r.infeasible_blocks > 0)
        .map(|r| {
            format!(
                "`{}` ({} of {} blocks)",
                r.tensor, r.infeasible_blocks, r.blocks
            )
        })
        .collect();
    (!infeasible.is_empty()).then(|| {
        format!(
            "solver {solver} returned infeasible masks (a row or column keeps more than N) for {}; such blocks count as keeping nothing",
            infeasible.join(", ")
        )
    })
}

/// Solve every selected tensor of the job's checkpoint one at a time: read and convert it,
/// score, tile, solve (and the exact solver with `compare_exact`), check, write its mask, drop
/// it. `on_report` sees each report as soon as its tensor is done. Returns the reports and the
/// tensors skipped, each with its reason; under `strict` a tensor skipped for its shape or
/// dtype is an error. Memory: about two copies of the largest selected tensor in `f32`.
pub fn solve_checkpoint(
    job: &SolveJob,
    ctx: &SolveContext,
    on_report: &mut dyn FnMut(&TensorReport),
) -> Result<(Vec<TensorReport>, Vec<Skipped>)> {
    let req = &job.request;
    if let Some(out) = job.output {
        // Every file read (each shard an index names, the score files, the norms) against the
        // output, before anything is solved.
        let mut inputs = io::checkpoint::source_files(job.input);
        if let Score::Supplied(source) = &req.score {
            inputs.extend(io::checkpoint::source_files(&io::split_source(source).0));
        }
        inputs.extend(job.act_norms.map(Path::to_path_buf));
        let refs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
        io::atomic::refuse_overwrite("output", out, &refs)?;
        if job.input.is_dir() {
            // Nor inside a sharded input's directory.
            io::atomic::refuse_overwrite("output", out.parent().unwrap_or(out), &[job.input])?;
        }
        if out.is_dir() {
            return Err(Error::invalid(
                "output",
                out.display(),
                "is a directory; masks are written to one file (give a file name)",
            ));
        }
    }
    let ckpt = Checkpoint::open(job.input)?;
    let (chosen, skipped) = job.selection.choose(
        ckpt.entries(),
        Tiling::Square(req.pattern.m),
        req.strict,
        job.input,
    )?;
    let scorer = Scorer::new(&req.score, job.act_norms)?;
    let bar = progress_bar(job.progress, &chosen);
    let mut reports = Vec::new();
    let mut solve_all = |sink: &mut Option<MaskSink>| -> Result<()> {
        for e in &chosen {
            bar.set_message(e.name.clone());
            let (report, mask) = solve_entry(&ckpt, e, &scorer, req, ctx)?;
            if let Some(sink) = sink.as_mut() {
                sink.push(&e.name, &mask)?;
            }
            on_report(&report);
            reports.push(report);
            bar.inc(e.bytes().max(1) as u64);
        }
        Ok(())
    };
    match job.output {
        Some(out) => {
            let planned: Vec<(String, Vec<usize>)> = chosen
                .iter()
                .map(|e| (e.name.clone(), e.shape.clone()))
                .collect();
            io::atomic::write_with(out, |tmp| {
                let mut sink = Some(MaskSink::create(tmp, out, &planned)?);
                solve_all(&mut sink)?;
                sink.map_or(Ok(()), MaskSink::finish)
            })?;
        }
        None => solve_all(&mut None)?,
    }
    bar.finish_and_clear();
    Ok((reports, skipped))
}

/// A bar over the bytes of `chosen` (hidden unless `show`; indicatif hides it off a terminal).
pub fn progress_bar(show: bool, chosen: &[&Entry]) -> indicatif::ProgressBar {
    let total: u64 = chosen.iter().map(|e| e.bytes().max(1) as u64).sum();
    let bar = if show {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} ({binary_bytes_per_sec}), eta {eta} {wide_msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// Scores of a checkpoint's tensors: |W|, W², a score file's tensor of the same name, or Wanda's
/// |W_ij|·‖x_j‖ from per-input-column activation norms (a 1-D tensor of `in` values per weight).
pub struct Scorer {
    score: Score,
    supplied: Option<(String, Checkpoint)>,
    norms: Option<(PathBuf, Checkpoint)>,
}

impl Scorer {
    /// Open the score or norms file the options name.
    pub fn new(score: &Score, act_norms: Option<&Path>) -> Result<Self> {
        let supplied = match score {
            Score::Supplied(s) => Some((s.clone(), Checkpoint::open(&io::split_source(s).0)?)),
            _ => None,
        };
        let norms = match act_norms {
            Some(p) => Some((p.to_path_buf(), Checkpoint::open(p)?)),
            None => None,
        };
        Ok(Scorer {
            score: score.clone(),
            supplied,
            norms,
        })
    }

    /// The scores of 2-D entry `e` of `ckpt`, row-major, finite and non-negative.
    pub fn scores(&self, ckpt: &Checkpoint, e: &Entry) -> Result<Vec<f32>> {
        let mut scores = match &self.supplied {
            Some((file, sc)) => {
                let s = find(sc, &e.name, file, "score")?;
                if s.shape != e.shape {
                    return Err(Error::invalid(
                        "score",
                        file,
                        format!(
                            "tensor `{}` has shape {:?}, weights have {:?}",
                            e.name, s.shape, e.shape
                        ),
                    ));
                }
                let v = sc.read_f32(s)?;
                if v.iter().any(|x| *x < 0.0) {
                    return Err(Error::invalid(
                        "score",
                        file,
                        format!("tensor `{}` has negative scores", e.name),
                    ));
                }
                return Ok(v);
            }
            None => ckpt.read_f32_map(e, self.value_map())?,
        };
        if let Some((file, nc)) = &self.norms {
            let file = file.display().to_string();
            let n = find(nc, &e.name, &file, "act-norms")?;
            let cols = e.shape[1];
            if n.elements() != cols {
                return Err(Error::invalid(
                    "act-norms",
                    &file,
                    format!(
                        "`{}` has {} norms, the weight has {cols} input columns",
                        e.name,
                        n.elements()
                    ),
                ));
            }
            let norms = nc.read_f32(n)?;
            if norms.iter().any(|x| *x < 0.0) {
                return Err(Error::invalid(
                    "act-norms",
                    &file,
                    format!("`{}` has a negative norm", e.name),
                ));
            }
            scores
                .chunks_mut(cols)
                .for_each(|row| row.iter_mut().zip(&norms).for_each(|(s, n)| *s *= n));
        }
        Ok(scores)
    }
}

impl Scorer {
    /// The scores of 2-D entry `e` as a matrix, after checking the work fits in memory.
    pub fn matrix(&self, ckpt: &Checkpoint, e: &Entry) -> Result<Matrix> {
        ensure_fits(e)?;
        Matrix::new(e.shape[0], e.shape[1], self.scores(ckpt, e)?)
    }
}

impl Scorer {
    /// What decoding applies to each weight for a score computed from the weights alone.
    fn value_map(&self) -> ValueMap {
        match self.score {
            Score::Square => ValueMap::Square,
            _ => ValueMap::Abs,
        }
    }

    /// The scores of 2-D entry `e` cut into M×M blocks: decoded straight into block order when
    /// they are |W| or W² (no second pass), else scored as a matrix and tiled in place.
    pub fn blocks(&self, ckpt: &Checkpoint, e: &Entry, m: usize) -> Result<Blocks> {
        if self.supplied.is_some() || self.norms.is_some() {
            return Blocks::from_matrix_owned(self.matrix(ckpt, e)?, m);
        }
        ensure_fits(e)?;
        let shape = BlockShape::new(e.shape[0], e.shape[1], m)?;
        Blocks::from_tiled(shape, ckpt.read_f32_blocks(e, self.value_map(), shape)?)
    }
}

/// The work on entry `e` (scores, blocks, mask: about 9 bytes an element) fits in memory.
fn ensure_fits(e: &Entry) -> Result<()> {
    crate::memory::ensure_fits(
        e.elements() as u128 * 9,
        "input",
        format!("tensor `{}` {:?}", e.name, e.shape),
    )
}

fn find<'a>(c: &'a Checkpoint, name: &str, file: &str, field: &str) -> Result<&'a Entry> {
    c.entries()
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| Error::invalid(field, file, format!("has no tensor named `{name}`")))
}

/// One tensor: read, score, tile, solve, check; the report and the mask.
fn solve_entry(
    ckpt: &Checkpoint,
    e: &Entry,
    scorer: &Scorer,
    req: &SolveRequest,
    ctx: &SolveContext,
) -> Result<(TensorReport, Mask)> {
    let start = Instant::now();
    let blocks = scorer.blocks(ckpt, e, req.pattern.m)?;
    let read_seconds = start.elapsed().as_secs_f64();
    let solved = solve_blocks(req.solver, blocks.data(), req.pattern, ctx)
        .map_err(|x| in_tensor(x, &e.name, &req.score))?;
    let g: Option<Gap> = if req.compare_exact {
        let opt = solve_blocks(&super::exact::Exact, blocks.data(), req.pattern, ctx)?;
        Some(gap(&solved.evaluation, &opt.evaluation))
    } else {
        None
    };
    let report = TensorReport {
        tensor: e.name.clone(),
        shape: e.shape.clone(),
        dtype: e.dtype,
        solver: req.solver.name().to_string(),
        pattern: req.pattern.to_string(),
        kept: solved.evaluation.kept_total(),
        optimum: g.map(|g| g.optimum),
        kept_gap: g.map(|g| g.kept_gap),
        pruned_excess: g.map(|g| g.pruned_excess),
        gap_resolution: g.map(|g| g.resolution),
        infeasible_blocks: solved.evaluation.infeasible,
        underfilled_blocks: solved.evaluation.underfilled,
        blocks: solved.evaluation.kept.len(),
        seconds: solved.seconds,
        read_seconds,
        total_seconds: 0.0,
        peak_rss_mb: None,
    };
    let mask = blocks.into_mask(solved.keep)?;
    let report = TensorReport {
        peak_rss_mb: crate::memory::peak_rss_mb(),
        total_seconds: start.elapsed().as_secs_f64(),
        ..report
    };
    Ok((report, mask))
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
