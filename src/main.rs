//! The `masklab` command line: parses arguments (cli.rs), calls the library, prints.
//! Exit codes: 0 done, 1 a check failed (regression, lost structure), 2 bad input or failure.

mod cli;
mod commands;

use anyhow::Result;
use clap::Parser;
use cli::{Cli, Command};
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

/// One command: its function in `commands`; those that can fail a check return their exit code.
fn run_cli(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::List { dir } => commands::list(&dir)?,
        Command::Run { spec, args } => commands::run(&spec, &args)?,
        Command::Reproduce { table, dir, args } => commands::reproduce(&table, &dir, &args)?,
        Command::Show { run_dir } => commands::show(&run_dir)?,
        Command::History(h) => commands::history(&h)?,
        Command::Plot { run_dir } => commands::plot(&run_dir)?,
        Command::Published { run_dir } => commands::published(&run_dir)?,
        Command::Regress(r) => {
            return commands::regress(&r.run_dir, r.baseline.as_deref(), r.update);
        }
        Command::Merge { dirs, out } => commands::merge(&dirs, &out)?,
        Command::Solvers => commands::solvers()?,
        Command::Solve(a) => return commands::solve(&a),
        Command::Convert(a) => commands::convert(&a)?,
        Command::Estimate(a) => commands::estimate(&a)?,
        Command::Train(a) => return commands::train(&a),
        Command::Prune(a) => return commands::prune(&a),
        Command::Gemm(a) => commands::gemm(&a)?,
        Command::Diversity(d) => commands::diversity(&d)?,
    }
    Ok(ExitCode::SUCCESS)
}
