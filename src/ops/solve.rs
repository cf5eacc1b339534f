//! `masklab solve`'s job: every selected tensor of a checkpoint streamed through a solver —
//! read, score, tile, solve (and the exact solver for the gaps), check, write its mask — with
//! the output refused where it would write over any input, and a report per tensor.

use crate::error::{Error, Result};
use crate::io::checkpoint::{Checkpoint, Dtype, Entry, Selection, Skipped, Tiling};
use crate::io::{self, MaskSink, progress_bar};
use crate::mask::{Mask, Pattern};
use crate::solvers::SolveContext;
use crate::solvers::apply::{Score, Scorer, in_tensor, solve_blocks};
use crate::solvers::evaluate::{Gap, gap};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

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
pub struct SolveRequest {
    /// The solver.
    pub solver: crate::solvers::SolverRef,
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
    pub request: SolveRequest,
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
    let solved = solve_blocks(&*req.solver, blocks.data(), req.pattern, ctx)
        .map_err(|x| in_tensor(x, &e.name, &req.score))?;
    let g: Option<Gap> = if req.compare_exact {
        let opt = solve_blocks(
            &crate::solvers::exact::Exact,
            blocks.data(),
            req.pattern,
            ctx,
        )?;
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
