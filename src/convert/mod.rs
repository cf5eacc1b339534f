//! One-shot conversion of a checkpoint: every selected weight pruned to N:M (transposable or
//! along `in`), everything else copied byte for byte, the layout kept.
//!
//! Problem: given a safetensors checkpoint (one file, or an HF sharded directory with its
//! index), write the same checkpoint with each selected 2-D weight `W` replaced by `S ⊙ W`,
//! `S` the mask a solver finds on the scores (|W|, W², a score file, or Wanda |W|·‖x‖).
//! Guarantee: the output has the input's files, headers, names, dtypes, shapes and byte
//! offsets — the headers are copied verbatim, since pruning changes no tensor's size — the
//! index file is copied, kept weights keep their exact bytes and pruned ones become zero bytes
//! (+0 in every float format), and tensors not selected are copied byte for byte; a sharded
//! input's other files (config.json, tokenizer.json, …) are copied too. A one-file output is
//! written to a temporary file and renamed; a sharded output is built in a staging directory
//! and swapped into place when complete. Every input file (each shard, the index, the score
//! and norms files) is compared with the output before anything is solved, never written over.
//! Cost: one pass over the input; memory about two copies of the largest selected tensor in
//! f32 (scores and their M×M tiles), whatever the checkpoint's size.

pub mod adaprune;
pub mod oneshot;

use crate::error::{Error, Result};
use crate::io::checkpoint::{
    Checkpoint, Dtype, Entry, INDEX, Selection, Skipped, Tiling, source_files,
};
use crate::mask::Mask;
use crate::mask::Structure;
use crate::mask::tile::Blocks;
use crate::solvers::SolveContext;
use crate::solvers::apply::{Score, Scorer, solve_blocks};
use crate::solvers::evaluate::gap;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A conversion.
pub struct ConvertJob<'a> {
    /// Input checkpoint (file, sharded directory or its index).
    pub input: &'a Path,
    /// Output: a file for a one-file input, a directory for a sharded one.
    pub output: &'a Path,
    /// Which tensors are pruned.
    pub selection: Selection,
    /// The structure: `nm:N:M` (N of M along `in`) or `transposable:N:M` (N in every row and
    /// column of every M×M tile).
    pub structure: Structure,
    /// Solver for transposable masks.
    pub solver: crate::solvers::SolverRef,
    /// Scores.
    pub score: Score,
    /// Wanda activation norms.
    pub act_norms: Option<&'a Path>,
    /// Also solve exactly and report the gap.
    pub compare_exact: bool,
    /// Refuse tensors skipped for their shape or type.
    pub strict: bool,
    /// Show a progress bar over the checkpoint's bytes.
    pub progress: bool,
}

/// One pruned tensor.
#[derive(Debug, Clone, Serialize)]
pub struct ConvertReport {
    /// Tensor name.
    pub tensor: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Element type (kept in the output).
    pub dtype: Dtype,
    /// Structure name (`transposable`, `nm`).
    pub structure: &'static str,
    /// Solver (`top-n` for N:M along `in`).
    pub solver: String,
    /// Pattern.
    pub pattern: String,
    /// Kept share of the total score.
    pub kept_fraction: f64,
    /// `(OPT − kept)/OPT` where the exact solver ran (0 for N:M along `in`: top-N is optimal).
    pub kept_gap: Option<f64>,
    /// Seconds for this tensor (read, score, solve, write).
    pub seconds: f64,
}

impl std::fmt::Display for ConvertReport {
    /// One line: tensor, structure, solver, kept share of the score, gap, time.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:?} {:?}: {} {} {}, kept {:.4} of the score",
            self.tensor,
            self.shape,
            self.dtype,
            self.structure,
            self.solver,
            self.pattern,
            self.kept_fraction
        )?;
        if let Some(g) = self.kept_gap {
            write!(f, ", kept_gap {g:.3e}")?;
        }
        write!(f, "; {:.3} s", self.seconds)
    }
}

/// Convert `job.input` into `job.output`; `on_report` sees each pruned tensor as it is written.
pub fn convert(
    job: &ConvertJob,
    ctx: &SolveContext,
    on_report: &mut dyn FnMut(&ConvertReport),
) -> Result<(Vec<ConvertReport>, Vec<Skipped>)> {
    let tiling = match job.structure {
        Structure::Transposable(p) => Tiling::Square(p.m),
        Structure::Nm(p) => Tiling::Rows(p.m),
        other => {
            return Err(Error::invalid(
                "structure",
                other,
                "a conversion makes nm:N:M or transposable:N:M",
            ));
        }
    };
    let ckpt = Checkpoint::open(job.input)?;
    let (chosen, skipped) = job
        .selection
        .choose(ckpt.entries(), tiling, job.strict, job.input)?;
    let files = ckpt.files();
    let sharded = files.len() > 1 || job.input.is_dir() || ckpt.index.is_some();
    check_outputs(job, sharded)?;
    let scorer = Scorer::new(&job.score, job.act_norms)?;
    let all: Vec<&Entry> = ckpt.entries().iter().collect();
    let bar = crate::io::progress_bar(job.progress, &all);
    let mut reports = Vec::new();
    let mut write_files = |dir: Option<&Path>| -> Result<()> {
        for (fi, file) in files.iter().enumerate() {
            let header = ckpt.header(fi).ok_or_else(|| Error::Unsupported {
                what: format!("converting {}", file.display()),
                reason: "convert reads safetensors checkpoints".into(),
            })?;
            let mut in_file: Vec<&Entry> = ckpt.entries().iter().filter(|e| e.file == fi).collect();
            in_file.sort_by_key(|e| e.range.start);
            let out = match dir {
                Some(d) => d.join(file.file_name().unwrap_or_default()),
                None => job.output.to_path_buf(),
            };
            crate::io::atomic::write_with(&out, |tmp| {
                let f = std::fs::File::create(tmp).map_err(|e| Error::io(tmp, e))?;
                let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
                w.write_all(header).map_err(|e| Error::io(tmp, e))?;
                for e in in_file {
                    let raw = ckpt.raw(e).ok_or_else(|| Error::Format {
                        path: file.to_path_buf(),
                        message: format!("tensor `{}`: data beyond the file", e.name),
                    })?;
                    if chosen.iter().any(|c| std::ptr::eq(*c, e)) {
                        let start = std::time::Instant::now();
                        let (mask, mut report) = prune(&ckpt, e, &scorer, job, ctx)?;
                        write_masked(&mut w, raw, e.dtype.size(), mask.keep())
                            .map_err(|x| Error::io(tmp, x))?;
                        report.seconds = start.elapsed().as_secs_f64();
                        on_report(&report);
                        reports.push(report);
                    } else {
                        crate::io::write_in_pieces(&mut w, raw).map_err(|x| Error::io(tmp, x))?;
                    }
                    ckpt.release(e);
                    bar.set_message(e.name.clone());
                    bar.inc(e.bytes().max(1) as u64);
                }
                w.into_inner()
                    .map_err(|x| Error::io(tmp, x.into_error()))?
                    .sync_all()
                    .map_err(|x| Error::io(tmp, x))
            })?;
        }
        if let Some(d) = dir {
            if let Some(index) = &ckpt.index {
                let text = std::fs::read(index).map_err(|e| Error::io(index, e))?;
                crate::io::atomic::write_bytes(&d.join(INDEX), &text)?;
            }
            copy_other_files(job.input, &files, ckpt.index.as_deref(), d)?;
        }
        Ok(())
    };
    if sharded {
        // Built beside the output and swapped into place whole: a kill or a failure leaves the
        // previous complete output (or none), never new shards beside old ones.
        crate::io::atomic::write_dir_with(job.output, |staging| write_files(Some(staging)))?;
    } else {
        write_files(None)?;
    }
    bar.finish_and_clear();
    Ok((reports, skipped))
}

/// Every file the job reads: the checkpoint's files (each shard and the index), the score
/// file(s) and the activation norms.
fn input_files(job: &ConvertJob) -> Vec<PathBuf> {
    let mut inputs = source_files(job.input);
    if let Score::Supplied(source) = &job.score {
        inputs.extend(source_files(&crate::io::split_source(source).0));
    }
    inputs.extend(job.act_norms.map(Path::to_path_buf));
    inputs
}

/// Refuse, before anything is solved, an output that would destroy an input or a user's
/// files: a one-file output that is an input or an existing directory; a sharded output that is
/// an input, holds an input (it is replaced whole), or is an existing file or a non-empty
/// directory that is not a checkpoint.
fn check_outputs(job: &ConvertJob, sharded: bool) -> Result<()> {
    let inputs = input_files(job);
    let refs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    if !sharded {
        crate::io::atomic::refuse_overwrite("output", job.output, &refs)?;
        if job.output.is_dir() {
            return Err(Error::invalid(
                "output",
                job.output.display(),
                "is a directory; a one-file checkpoint converts into a file (give a file name)",
            ));
        }
        return Ok(());
    }
    crate::io::atomic::refuse_dir_output("output", job.output, &refs)
}

/// Whether a file name is a weight file in another format (or its index), which would put the
/// unpruned weights beside the pruned ones: `.safetensors` not named by the index, `.bin`,
/// `.pt`, `.pth`, `.ckpt`, `.h5`, `.msgpack`, `.gguf`, `.onnx`, `*.bin.index.json`.
fn unpruned_weights(name: &str) -> bool {
    const WEIGHTS: [&str; 9] = [
        ".safetensors",
        ".bin",
        ".pt",
        ".pth",
        ".ckpt",
        ".h5",
        ".msgpack",
        ".gguf",
        ".onnx",
    ];
    WEIGHTS.iter().any(|ext| name.ends_with(ext)) || name.ends_with(".bin.index.json")
}

/// Copy the files of a sharded input directory that are not tensors (config.json,
/// tokenizer.json, generation_config.json, …) into the output directory `out`, so the output
/// loads as the input did. Hidden files, subdirectories and weight files of other formats
/// ([`unpruned_weights`]) are not copied.
fn copy_other_files(
    input: &Path,
    shards: &[&Path],
    index: Option<&Path>,
    out: &Path,
) -> Result<()> {
    let dir = if input.is_dir() {
        input.to_path_buf()
    } else {
        match input.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    };
    let taken = |p: &Path| {
        shards.iter().any(|s| crate::io::atomic::same_file(s, p))
            || index.is_some_and(|i| crate::io::atomic::same_file(i, p))
    };
    for e in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
        let path = e.map_err(|e| Error::io(&dir, e))?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with('.') || !path.is_file() || taken(&path) || unpruned_weights(&name) {
            continue;
        }
        let target = out.join(path.file_name().unwrap_or_default());
        if target.exists() {
            continue;
        }
        std::fs::copy(&path, &target).map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}

/// The mask of one tensor and its report (time filled in by the caller).
fn prune(
    ckpt: &Checkpoint,
    e: &Entry,
    scorer: &Scorer,
    job: &ConvertJob,
    ctx: &SolveContext,
) -> Result<(Mask, ConvertReport)> {
    let scores = scorer.matrix(ckpt, e)?;
    let total: f64 = scores.data().iter().map(|&v| v as f64).sum();
    let (name, pattern) = match job.structure {
        Structure::Nm(p) => ("nm", p),
        Structure::Transposable(p) => ("transposable", p),
        other => return Err(Error::invalid("structure", other, "not an N:M structure")),
    };
    let (mask, solver, kept_gap, kept) = match job.structure {
        Structure::Nm(_) => {
            let mask = Mask::nm(&scores, pattern)?;
            let kept = mask.kept_score(&scores);
            (mask, "top-n".to_string(), Some(0.0), kept)
        }
        _ => {
            let blocks = Blocks::from_matrix_owned(scores, pattern.m)?;
            let solved = solve_blocks(&*job.solver, blocks.data(), pattern, ctx)
                .map_err(|x| crate::solvers::apply::in_tensor(x, &e.name, &job.score))?;
            if solved.evaluation.infeasible > 0 {
                return Err(Error::invalid(
                    "solver",
                    job.solver.name(),
                    format!(
                        "{} infeasible blocks in `{}`",
                        solved.evaluation.infeasible, e.name
                    ),
                ));
            }
            let g = if job.compare_exact {
                let opt = solve_blocks(&crate::solvers::exact::Exact, blocks.data(), pattern, ctx)?;
                Some(gap(&solved.evaluation, &opt.evaluation).kept_gap)
            } else {
                None
            };
            let kept = solved.evaluation.kept_total();
            (
                blocks.into_mask(solved.keep)?,
                job.solver.name().to_string(),
                g,
                kept,
            )
        }
    };
    let report = ConvertReport {
        tensor: e.name.clone(),
        shape: e.shape.clone(),
        dtype: e.dtype,
        structure: name,
        solver,
        pattern: pattern.to_string(),
        kept_fraction: if total > 0.0 { kept / total } else { 1.0 },
        kept_gap,
        seconds: 0.0,
    };
    Ok((mask, report))
}

/// `raw` (elements of `size` bytes) with every element whose mask is 0 written as zero bytes.
fn write_masked(w: &mut impl Write, raw: &[u8], size: usize, keep: &[u8]) -> std::io::Result<()> {
    const RUN: usize = 1 << 16;
    let mut buf = Vec::with_capacity(RUN * size);
    for (chunk, k) in raw.chunks(RUN * size).zip(keep.chunks(RUN)) {
        buf.clear();
        buf.extend_from_slice(chunk);
        for (v, &keep) in buf.chunks_exact_mut(size).zip(k) {
            if keep == 0 {
                v.fill(0);
            }
        }
        w.write_all(&buf)?;
    }
    Ok(())
}
