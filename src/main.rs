//! The `masklab` command line: parses arguments (cli.rs), calls the library, prints.
//! Exit codes: 0 done, 1 a check failed (regression, lost structure), 2 bad input or failure.

mod cli;

use anyhow::{Context, Result};
use clap::Parser;
use cli::{Cli, Command, RunArgs};
use masklab::experiment::runner::{self, RunOptions};
use masklab::experiment::spec;
use masklab::ops::estimate::{self, EstimateRequest};
use masklab::ops::solve::{SolveJob, TensorReport, infeasible_message, solve_checkpoint};
use masklab::train::trainer::{self, TrainConfig};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`masklab solve --json | head -1`), as Unix tools do,
    // instead of panicking in println!.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    masklab::memory::keep_freed_memory();
    match run_cli(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", message(&e));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes on one line, each cause once (library errors already name theirs).
fn message(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out += &format!(": {c}");
        }
    }
    out.replace('\n', " ")
}

/// Print a report as one JSON line or in its text form.
fn emit<T: serde::Serialize + std::fmt::Display>(json: bool, r: &T) -> Result<()> {
    match json {
        true => println!("{}", serde_json::to_string(r)?),
        false => println!("{r}"),
    }
    Ok(())
}

fn run_cli(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::List { dir } => print!("{}", spec::Catalogue(&spec::catalogue(&dir)?)),
        Command::Run { spec, args } => drop(run_spec(&spec, &args)?),
        Command::Reproduce { table, dir, args } => {
            let single = (args.out.is_some() || args.resume.is_some()).then_some("--out/--resume");
            for path in spec::table_specs_for(&dir, &table, single)? {
                print!("{}", read_summary(&run_spec(&path, &args)?)?);
            }
        }
        Command::Show { run_dir } => print!("{}", read_summary(&run_dir)?),
        Command::History(h) => {
            for path in spec::table_specs_for(&h.dir, &h.table, h.single())? {
                let (append, file) = (h.append.as_deref(), h.file.as_deref());
                print!("{}", runner::history(&path, &h.profile, append, file)?);
            }
        }
        Command::Plot { run_dir } => {
            for path in runner::plot_run(&run_dir)? {
                println!("wrote {}", path.display());
            }
        }
        Command::Published { run_dir } => {
            for r in runner::published_run(&run_dir)? {
                println!("{}", masklab::results::published::Line(&r));
            }
            println!("wrote {}", run_dir.join("published.csv").display());
        }
        Command::Regress(r) => return regress(&r.run_dir, r.baseline.as_deref(), r.update),
        Command::Merge { dirs, out } => {
            let m = runner::merge(&dirs, &out)?;
            let (done, planned) = (m.cells_done, m.cells_planned);
            println!("merged {done} cells of {planned} into {}", out.display());
        }
        Command::Solvers => print!("{}", masklab::solvers::Listing),
        Command::Solve(a) => return solve(&a),
        Command::Convert(a) => convert(&a)?,
        Command::Estimate(a) => estimate(&a)?,
        Command::Train(a) => return train(&a),
        Command::Prune(a) => return prune(&a),
        Command::Gemm(a) => {
            let job = a.job()?;
            let r = masklab::ops::gemm::measure(&job)?;
            match a.json {
                true => println!("{}", serde_json::to_string(&r)?),
                false => println!(
                    "{} {} {}x{} batch {}: {r}",
                    job.mask, a.op, job.out, job.inp, job.batch
                ),
            }
        }
        Command::Diversity(d) => match (d.compute()?, d.json) {
            (v, true) => println!("{}", serde_json::to_string_pretty(&v)?),
            (v, false) => print!("{v}"),
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// `regress`: compare with the baseline (exit 1 on a regression), or rewrite it.
fn regress(run_dir: &Path, baseline: Option<&Path>, update: bool) -> Result<ExitCode> {
    if update {
        let path = runner::update_baseline(run_dir, baseline)?;
        println!("wrote baseline {}", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    let report = runner::regress(run_dir, baseline)?;
    print!("{}", report.render());
    Ok(if report.regressed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `solve`: masks of a checkpoint's tensors (exit 1 when a solver returned infeasible blocks).
fn solve(a: &cli::SolveArgs) -> Result<ExitCode> {
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
fn convert(a: &cli::ConvertArgs) -> Result<()> {
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
fn estimate(a: &cli::EstimateArgs) -> Result<()> {
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
fn train(a: &cli::TrainArgs) -> Result<ExitCode> {
    let cfg = TrainConfig::try_from(a)?;
    let device = a.compute.device()?;
    let data = masklab::train::data::load(&a.dataset, a.data_dir.as_deref(), a.compute.seed())?;
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
fn prune(a: &cli::PruneArgs) -> Result<ExitCode> {
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
