//! One function per `masklab` command: each calls the library and prints (main.rs dispatches).

use crate::cli::{self, RunArgs};
use anyhow::{Context, Result};
use masklab::experiment::post_run;
use masklab::experiment::runner::{self, RunOptions};
use masklab::experiment::spec;
use masklab::ops::estimate::{self, EstimateRequest};
use masklab::ops::solve::{SolveJob, TensorReport, infeasible_message, solve_checkpoint};
use masklab::train::trainer::{self, TrainConfig};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Print a report as one JSON line or in its text form.
pub fn emit<T: serde::Serialize + std::fmt::Display>(json: bool, r: &T) -> Result<()> {
    match json {
        true => println!("{}", serde_json::to_string(r)?),
        false => println!("{r}"),
    }
    Ok(())
}

/// `list`: the experiments under `dir`.
pub fn list(dir: &Path) -> Result<()> {
    print!("{}", spec::Catalogue(&spec::catalogue(dir)?));
    Ok(())
}

/// `run`: one spec.
pub fn run(path: &Path, args: &RunArgs) -> Result<()> {
    run_spec(path, args).map(drop)
}

/// `reproduce`: every spec of a table, each summary printed.
pub fn reproduce(table: &str, dir: &Path, args: &RunArgs) -> Result<()> {
    let single = (args.out.is_some() || args.resume.is_some()).then_some("--out/--resume");
    for path in spec::table_specs_for(dir, table, single)? {
        print!("{}", read_summary(&run_spec(&path, args)?)?);
    }
    Ok(())
}

/// `show`: a run's summary.
pub fn show(run_dir: &Path) -> Result<()> {
    print!("{}", read_summary(run_dir)?);
    Ok(())
}

/// `history`: a table's trend (after appending a run, if given).
pub fn history(h: &cli::HistoryArgs) -> Result<()> {
    for path in spec::table_specs_for(&h.dir, &h.table, h.single())? {
        let (append, file) = (h.append.as_deref(), h.file.as_deref());
        print!("{}", post_run::history(&path, &h.profile, append, file)?);
    }
    Ok(())
}

/// `plot`: a run's figures redrawn.
pub fn plot(run_dir: &Path) -> Result<()> {
    for path in post_run::plot_run(run_dir)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// `published`: a run's published values set beside its own again.
pub fn published(run_dir: &Path) -> Result<()> {
    for r in post_run::published_run(run_dir)? {
        println!("{}", masklab::results::published::Line(&r));
    }
    println!("wrote {}", run_dir.join("published.csv").display());
    Ok(())
}

/// `merge`: shards into one run.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<()> {
    let m = post_run::merge(dirs, out)?;
    let (done, planned) = (m.cells_done, m.cells_planned);
    println!("merged {done} cells of {planned} into {}", out.display());
    Ok(())
}

/// `solvers`: the registry.
pub fn solvers() -> Result<()> {
    print!("{}", masklab::solvers::Listing);
    Ok(())
}

/// `gemm`: one sparse GEMM against dense.
pub fn gemm(a: &cli::GemmArgs) -> Result<()> {
    let job = a.job()?;
    let r = masklab::ops::gemm::measure(&job)?;
    match a.json {
        true => println!("{}", serde_json::to_string(&r)?),
        false => println!(
            "{} {} {}x{} batch {}: {r}",
            job.mask, a.op, job.out, job.inp, job.batch
        ),
    }
    Ok(())
}

/// `diversity`: a structure's mask diversity.
pub fn diversity(d: &cli::DiversityArgs) -> Result<()> {
    match (d.compute()?, d.json) {
        (v, true) => println!("{}", serde_json::to_string_pretty(&v)?),
        (v, false) => print!("{v}"),
    }
    Ok(())
}

/// `regress`: compare with the baseline (exit 1 on a regression), or rewrite it.
pub fn regress(run_dir: &Path, baseline: Option<&Path>, update: bool) -> Result<ExitCode> {
    if update {
        let path = post_run::update_baseline(run_dir, baseline)?;
        println!("wrote baseline {}", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    let report = post_run::regress(run_dir, baseline)?;
    print!("{}", report.render());
    Ok(if report.regressed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `solve`: masks of a checkpoint's tensors (exit 1 when a solver returned infeasible blocks).
pub fn solve(a: &cli::SolveArgs) -> Result<ExitCode> {
    let (request, ctx) = a.request()?;
    let (input, selection) = a.selection()?;
    let job = SolveJob {
        input: &input,
        selection,
        request,
        output: a.output.as_deref(),
        progress: !a.quiet && !a.json,
        act_norms: a.act_norms.as_deref(),
    };
    let print = |r: &TensorReport| emit(a.json, r).unwrap_or(());
    let solve = || solve_checkpoint(&job, &ctx, &mut { print });
    let (reports, skipped) = a.compute.pool()?.install(solve)?;
    for s in &skipped {
        eprintln!("skipped `{}` {:?}: {}", s.tensor, s.shape, s.reason);
    }
    if let Some(out) = &a.output {
        eprintln!("wrote {} masks to {}", reports.len(), out.display());
    }
    if let Some(message) = infeasible_message(&reports, &a.solver) {
        eprintln!("error: {message}");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// `convert`: a pruned copy of a checkpoint.
pub fn convert(a: &cli::ConvertArgs) -> Result<()> {
    let (job, ctx) = (a.job()?, a.context()?);
    let print = |r: &masklab::convert::ConvertReport| emit(a.json, r).unwrap_or(());
    let run = || masklab::convert::convert(&job, &ctx, &mut { print });
    let (reports, skipped) = a.compute.pool()?.install(run)?;
    for s in &skipped {
        eprintln!("copied unpruned `{}` {:?}: {}", s.tensor, s.shape, s.reason);
    }
    eprintln!(
        "pruned {} tensors into {}",
        reports.len(),
        a.output.display()
    );
    Ok(())
}

/// `estimate`: an estimator's bias and variance on gradients, or one pruned draw written out.
pub fn estimate(a: &cli::EstimateArgs) -> Result<()> {
    let (req, pool) = (EstimateRequest::try_from(a)?, a.compute.pool()?);
    if let Some(out) = &a.output {
        let (n, warnings) = pool.install(|| estimate::write_samples(&a.input, &req, out))?;
        warnings.iter().for_each(|w| eprintln!("warning: {w}"));
        eprintln!("wrote {n} tensors to {}", out.display());
        return Ok(());
    }
    let (reports, warnings) = pool.install(|| estimate::estimate_source(&a.input, &req))?;
    warnings.iter().for_each(|w| eprintln!("warning: {w}"));
    reports.iter().try_for_each(|r| emit(a.json, r))
}

/// `train`: one model (exit 1 when an operand lost its N:M structure).
pub fn train(a: &cli::TrainArgs) -> Result<ExitCode> {
    let cfg = TrainConfig::try_from(a)?;
    let device = a.compute.device()?;
    let data = masklab::train::data::load(
        &a.params.dataset,
        a.params.data_dir.as_deref(),
        a.compute.seed(),
    )?;
    let report = a
        .compute
        .pool()?
        .install(|| trainer::train(&cfg, &data, &device))?;
    match a.json {
        true => println!("{}", trainer::json(&cfg, &data.name, &report)),
        false => println!("{}", trainer::describe(&cfg, &data.name, &report)),
    }
    if let Some(p) = &cfg.capture_grads {
        eprintln!("wrote neural gradients to {}", p.display());
    }
    if !report.structure_ok {
        eprintln!("error: an operand lost its N:M structure");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// `prune`: a language model pruned one-shot (exit 1 when a projection lost its structure).
pub fn prune(a: &cli::PruneArgs) -> Result<ExitCode> {
    let (job, device) = (a.job()?, a.compute.device()?);
    let r = a
        .compute
        .pool()?
        .install(|| masklab::ops::prune::run(&job, &device))?;
    match a.json {
        true => println!("{}", serde_json::to_string(&r)?),
        false => print!("{r}"),
    }
    if !r.structure_ok {
        eprintln!("error: a pruned projection lost its structure");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Run one spec with the shared run options; returns the run directory.
fn run_spec(path: &Path, args: &RunArgs) -> Result<PathBuf> {
    let opts = RunOptions::try_from(args)?;
    let o = runner::run_spec(path, args.profile.as_deref(), opts)?;
    let state = if o.complete {
        "complete"
    } else {
        "incomplete (finish with --resume)"
    };
    let (dir, ran, skipped) = (o.dir.display(), o.ran, o.skipped);
    eprintln!("{dir}: ran {ran} cells, {skipped} already done; {state}");
    Ok(o.dir)
}

fn read_summary(dir: &Path) -> Result<String> {
    let path = dir.join("summary.md");
    std::fs::read_to_string(&path)
        .with_context(|| format!("{}: no summary (is this a run directory?)", path.display()))
}
