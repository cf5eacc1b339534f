//! The `masklab` command line: parses arguments (cli.rs), calls the library, prints.
//! Exit codes: 0 done, 1 a check failed (regression, lost structure), 2 bad input or failure.

mod cli;

use anyhow::{Context, Result, bail};
use clap::Parser;
use cli::{Cli, Command, RunArgs};
use masklab::diversity::{Structure, diversity};
use masklab::estimators::apply::{self as estimate, EstimateRequest};
use masklab::experiment::runner::{self, RunOptions};
use masklab::io::atomic::refuse_overwrite;
use masklab::io::checkpoint::source_files;
use masklab::io::split_source;
use masklab::mask::{Pattern, parse_size};
use masklab::solvers::apply::{SolveJob, TensorReport, solve_checkpoint};
use masklab::train::trainer::{self, TrainConfig};
use std::path::Path;
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

fn run_cli(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::List { dir } => {
            println!(
                "{:<8}  {:<48}  {:<22}  regenerates",
                "id", "title", "profiles"
            );
            for e in masklab::experiment::spec::catalogue(&dir)? {
                let profiles = e.profiles.join(",");
                println!(
                    "{:<8}  {:<48}  {profiles:<22}  {}",
                    e.id, e.title, e.regenerates
                );
            }
        }
        Command::Run { spec, args } => {
            run_spec(&spec, &args)?;
        }
        Command::Reproduce { table, dir, args } => {
            let paths = masklab::experiment::spec::table_specs(&dir, &table)?;
            if paths.len() > 1 && (args.out.is_some() || args.resume.is_some()) {
                let parts: Vec<_> = paths.iter().map(|p| p.display().to_string()).collect();
                bail!(
                    "{table} has {} parts ({}); give --out/--resume to `masklab run` on one part",
                    parts.len(),
                    parts.join(", ")
                );
            }
            for path in paths {
                let dir = run_spec(&path, &args)?;
                print!("{}", read_summary(&dir)?);
            }
        }
        Command::Show { run_dir } => print!("{}", read_summary(&run_dir)?),
        Command::History {
            table,
            append,
            profile,
            file,
            dir,
        } => {
            let paths = masklab::experiment::spec::table_specs(&dir, &table)?;
            if paths.len() > 1 && (append.is_some() || file.is_some()) {
                bail!(
                    "{table} has {} parts; name one (e.g. {table}a)",
                    paths.len()
                );
            }
            for path in paths {
                print!(
                    "{}",
                    runner::history(&path, &profile, append.as_deref(), file.as_deref())?
                );
            }
        }
        Command::Plot { run_dir } => {
            for path in runner::plot_run(&run_dir)? {
                println!("wrote {}", path.display());
            }
        }
        Command::Published { run_dir } => {
            use masklab::results::markdown::fmt_num;
            for r in runner::published_run(&run_dir)? {
                let text = |c: &str| r.get(c).and_then(|v| v.as_str()).unwrap_or("").to_string();
                let num = |c: &str| r.get(c).and_then(|v| v.as_f64());
                let paper = match (num("paper_low"), num("paper_high")) {
                    (Some(lo), Some(hi)) if lo != hi => {
                        format!("{} – {}", fmt_num(lo), fmt_num(hi))
                    }
                    (Some(v), _) => fmt_num(v),
                    _ => "—".into(),
                };
                let mut ours = num("masklab").map(fmt_num).unwrap_or_else(|| "—".into());
                if let Some(r) = num("ratio") {
                    ours += &format!(" ({}× the paper's)", fmt_num(r));
                }
                println!(
                    "#{} {} ({}) {} at {}: paper {paper}, masklab {ours} — {}",
                    r.get("entry").map(|v| v.to_string()).unwrap_or_default(),
                    text("paper"),
                    text("where"),
                    text("metric"),
                    text("point"),
                    text("verdict")
                );
            }
            println!("wrote {}", run_dir.join("published.csv").display());
        }
        Command::Regress {
            run_dir,
            baseline,
            update,
        } => {
            if update {
                let path = runner::update_baseline(&run_dir, baseline.as_deref())?;
                println!("wrote baseline {}", path.display());
                return Ok(ExitCode::SUCCESS);
            }
            let report = runner::regress(&run_dir, baseline.as_deref())?;
            print!("{}", report.render());
            if report.regressed() {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Merge { dirs, out } => {
            let m = runner::merge(&dirs, &out)?;
            let (done, planned) = (m.cells_done, m.cells_planned);
            println!("merged {done} cells of {planned} into {}", out.display());
        }
        Command::Solvers => {
            println!(
                "{:<12}  {:<40}  {:<10}  summary",
                "name", "guarantee", "devices"
            );
            for s in masklab::solvers::REGISTRY {
                let g = s.guarantee().to_string();
                println!(
                    "{:<12}  {g:<40}  {:<10}  {}",
                    s.name(),
                    s.devices(),
                    s.summary()
                );
            }
        }
        Command::Solve(a) => {
            let (request, ctx) = a.request()?;
            let (input, selection) = a.selection()?;
            if let Some(out) = &a.output {
                let mut inputs = source_files(&input);
                inputs.extend(source_files(&split_source(&a.score).0));
                inputs.extend(a.act_norms.clone());
                let inputs: Vec<&Path> = inputs.iter().map(|p| p.as_path()).collect();
                refuse_overwrite("output", out, &inputs)?;
                if input.is_dir() {
                    refuse_overwrite("output", out.parent().unwrap_or(out), &[&input])?;
                }
            }
            let job = SolveJob {
                input: &input,
                selection,
                request,
                output: a.output.as_deref(),
                progress: !a.quiet && !a.json,
                act_norms: a.act_norms.as_deref(),
            };
            let print = |r: &TensorReport| match a.json {
                true => println!("{}", serde_json::to_string(r).unwrap_or_default()),
                false => println!("{r}"),
            };
            let solve = || solve_checkpoint(&job, &ctx, &mut { print });
            let (reports, skipped) = a.compute.pool()?.install(solve)?;
            for s in &skipped {
                eprintln!("skipped `{}` {:?}: {}", s.tensor, s.shape, s.reason);
            }
            if let Some(out) = &a.output {
                eprintln!("wrote {} masks to {}", reports.len(), out.display());
            }
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
            if !infeasible.is_empty() {
                eprintln!(
                    "error: solver {} returned infeasible masks (a row or column keeps more than N) for {}; such blocks count as keeping nothing",
                    a.solver,
                    infeasible.join(", ")
                );
                return Ok(ExitCode::from(1));
            }
        }
        Command::Convert(a) => {
            let (job, ctx) = (a.job()?, a.context()?);
            let print = |r: &masklab::convert::ConvertReport| match a.json {
                true => println!("{}", serde_json::to_string(r).unwrap_or_default()),
                false => println!("{r}"),
            };
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
        }
        Command::Estimate(a) => {
            let (req, pool) = (EstimateRequest::try_from(&a)?, a.compute.pool()?);
            if let Some(out) = &a.output {
                let inputs = source_files(&split_source(&a.input).0);
                let inputs: Vec<&Path> = inputs.iter().map(|p| p.as_path()).collect();
                refuse_overwrite("output", out, &inputs)?;
                let (drawn, warnings) = pool.install(|| estimate::sample_source(&a.input, &req))?;
                warnings.iter().for_each(|w| eprintln!("warning: {w}"));
                masklab::io::write_tensors(out, &drawn)?;
                eprintln!("wrote {} tensors to {}", drawn.len(), out.display());
                return Ok(ExitCode::SUCCESS);
            }
            let (reports, warnings) = pool.install(|| estimate::estimate_source(&a.input, &req))?;
            warnings.iter().for_each(|w| eprintln!("warning: {w}"));
            for r in &reports {
                match a.json {
                    true => println!("{}", serde_json::to_string(r)?),
                    false => println!("{r}"),
                }
            }
        }
        Command::Train(a) => {
            let cfg = TrainConfig::try_from(a.as_ref())?;
            let device = a.compute.device()?;
            let data =
                masklab::train::data::load(&a.dataset, a.data_dir.as_deref(), a.compute.seed())?;
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
        }
        Command::Prune(a) => {
            let job = a.job()?;
            let device = a.compute.device()?;
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} stages, eta {eta} {wide_msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let run = || {
                masklab::ops::prune::run(
                    &job,
                    &device,
                    &mut |s| bar.set_message(s.to_string()),
                    &mut |done, all| {
                        bar.set_length(all as u64);
                        bar.set_position(done as u64);
                    },
                )
            };
            let r = a.compute.pool()?.install(run)?;
            bar.finish_and_clear();
            match a.json {
                true => println!("{}", serde_json::to_string(&r)?),
                false => print!("{r}"),
            }
            if !r.structure_ok {
                eprintln!("error: a pruned projection lost its structure");
                return Ok(ExitCode::from(1));
            }
        }
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
        Command::Diversity {
            structure,
            pattern,
            size,
            block,
            sparsity,
            json,
        } => {
            let pattern = pattern.map(|p| p.parse::<Pattern>()).transpose()?;
            let structure = Structure::from_parts(&structure, pattern, block, sparsity)?;
            let (rows, cols) = parse_size(&size)?;
            let d = diversity(structure, rows, cols)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                print!("{d}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Run one spec with the shared run options; returns the run directory.
fn run_spec(path: &Path, args: &RunArgs) -> Result<std::path::PathBuf> {
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
