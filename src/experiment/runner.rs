//! The runner: runs a plan's cells, appends each finished row to `cells.jsonl` at once (flushed
//! and synced, so a crash loses nothing finished), skips finished cells on `--resume`, and writes
//! the tables and manifest.
//!
//! Determinism: each cell draws from its own RNG (seeded from the spec seed and grid point) and
//! rows are ordered by plan position, so the cell order, `--jobs` and shards do not change a table.

use super::cells::{CellContext, Row, Shared};
use super::plan::{Cell, Plan};
use super::spec::Spec;
use crate::error::{Error, Result};
use crate::results::manifest::{self, Manifest};
use crate::results::{markdown, summary, table};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde_json::Value;
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// The crash-safe log of finished cells, one JSON row per line.
pub const CELLS_LOG: &str = "cells.jsonl";

/// How to run a plan.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Run directory; `None`: `results/runs/<table>/<profile>-<time>`.
    pub out: Option<PathBuf>,
    /// Finish the run in this directory (skips its finished cells).
    pub resume: bool,
    /// Run shard `i` of `n`.
    pub shard: Option<(usize, usize)>,
    /// Cells run at once (1: one after another).
    pub jobs: usize,
    /// Threads for work inside cells (the rayon pool).
    pub threads: usize,
    /// Device for tensor work.
    pub device: candle_core::Device,
    /// Stop after this many newly finished cells (the rest can be resumed).
    pub max_cells: Option<usize>,
    /// Show a progress bar.
    pub progress: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            out: None,
            resume: false,
            shard: None,
            jobs: 1,
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            device: candle_core::Device::Cpu,
            max_cells: None,
            progress: false,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    /// The run directory.
    pub dir: PathBuf,
    /// Cells run now.
    pub ran: usize,
    /// Cells found finished and skipped.
    pub skipped: usize,
    /// Whether every cell of the (shard of the) plan is finished.
    pub complete: bool,
}

/// Parse `i/n` (0 ≤ i < n).
pub fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let bad = || Error::invalid("shard", s, "expected i/n with 0 <= i < n, e.g. 0/4");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n) = (
        i.trim().parse::<usize>().map_err(|_| bad())?,
        n.trim().parse::<usize>().map_err(|_| bad())?,
    );
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

/// The shard from `SLURM_ARRAY_TASK_ID` / `SLURM_ARRAY_TASK_COUNT`, when both are set.
pub fn shard_from_env() -> Result<Option<(usize, usize)>> {
    match (
        std::env::var("SLURM_ARRAY_TASK_ID"),
        std::env::var("SLURM_ARRAY_TASK_COUNT"),
    ) {
        (Ok(i), Ok(n)) => parse_shard(&format!("{i}/{n}")).map(Some),
        _ => Ok(None),
    }
}

/// Read the finished rows of a run directory (a torn last line from a crash is dropped).
pub fn read_log(dir: &Path) -> Result<Vec<Row>> {
    let path = dir.join(CELLS_LOG);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let mut rows = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|e| Error::io(&path, e))?;
        if let Ok(Value::Object(row)) = serde_json::from_str::<Value>(&line) {
            rows.push(row);
        }
    }
    Ok(rows)
}

/// Cut a torn (unterminated) last line off the log so appends start on a fresh line.
fn repair_log(path: &Path) -> Result<()> {
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(());
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(());
    }
    let keep = bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map(|p| p + 1)
        .unwrap_or(0);
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    file.set_len(keep as u64).map_err(|e| Error::io(path, e))
}

fn default_dir(spec: &Spec) -> PathBuf {
    let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S");
    PathBuf::from("results/runs")
        .join(&spec.name)
        .join(format!("{}-{stamp}", spec.profile))
}

/// Run (or resume) a plan; writes the tables at the end, and returns where.
pub fn run(plan: &Plan, opts: &RunOptions) -> Result<RunOutcome> {
    let dir = opts.out.clone().unwrap_or_else(|| default_dir(&plan.spec));
    let log_path = dir.join(CELLS_LOG);
    let mut previous = None;
    if opts.resume {
        let m = Manifest::read(&dir)?;
        if m.spec_hash != plan.spec.hash() {
            return Err(Error::Format {
                path: dir.join("manifest.json"),
                message: format!(
                    "the spec changed since this run started (hash {} there, {} now); start a new run",
                    &m.spec_hash[..12],
                    &plan.spec.hash()[..12]
                ),
            });
        }
        if m.profile != plan.spec.profile {
            return Err(Error::Format {
                path: dir.join("manifest.json"),
                message: format!(
                    "the run used profile `{}`, not `{}`",
                    m.profile, plan.spec.profile
                ),
            });
        }
        repair_log(&log_path)?;
        previous = Some(m);
    } else if log_path.exists() {
        return Err(Error::Format {
            path: dir.clone(),
            message: "already holds a run; use --resume to finish it or choose another --out"
                .into(),
        });
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;

    let done: HashSet<String> = read_log(&dir)?
        .iter()
        .filter_map(|r| r.get("cell").and_then(Value::as_str).map(String::from))
        .collect();
    let (shard_i, shard_n) = opts.shard.unwrap_or((0, 1));
    let share: Vec<&Cell> = plan.shard(shard_i, shard_n).collect();
    let mut todo: Vec<&Cell> = share
        .iter()
        .copied()
        .filter(|c| !done.contains(&c.key()))
        .collect();
    let skipped = share.len() - todo.len();
    if let Some(k) = opts.max_cells {
        todo.truncate(k);
    }

    let mut manifest = Manifest {
        table: plan.spec.name.clone(),
        title: plan.spec.title.clone(),
        profile: plan.spec.profile.clone(),
        kind: plan.spec.kind.clone(),
        spec_path: plan.spec.path.display().to_string(),
        spec: plan.spec.text.clone(),
        spec_hash: plan.spec.hash(),
        git_commit: manifest::git_commit(),
        masklab_version: env!("CARGO_PKG_VERSION").to_string(),
        host: manifest::host(),
        threads: opts.threads,
        jobs: opts.jobs,
        device: crate::device::label(&opts.device).to_string(),
        shard: opts.shard.map(|(i, n)| format!("{i}/{n}")),
        cells_planned: share.len(),
        cells_done: skipped,
        started: previous
            .as_ref()
            .map(|m| m.started.clone())
            .unwrap_or_else(manifest::now),
        finished: None,
    };
    manifest.write(&dir)?;

    let log = Mutex::new(
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| Error::io(&log_path, e))?,
    );
    let bar = if opts.progress {
        ProgressBar::new(todo.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} cells, eta {eta} {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let shared = Shared::default();
    let run_one = |cell: &Cell| -> Result<()> {
        bar.set_message(cell.point());
        let ctx = CellContext {
            rng_seed: cell.rng_seed(),
            params: &plan.spec.params,
            device: opts.device.clone(),
            shared: &shared,
        };
        let metrics = plan.kind.run(cell, &ctx).map_err(|e| Error::Invalid {
            field: "cell".into(),
            value: cell.key(),
            reason: format!(
                "{e} (finished cells are saved; fix and rerun with --resume {})",
                dir.display()
            ),
        })?;
        let mut row = Row::new();
        row.insert("index".into(), Value::from(cell.index));
        row.insert("cell".into(), Value::from(cell.key()));
        for (axis, value) in &cell.values {
            row.insert(axis.clone(), Value::from(value.clone()));
        }
        row.insert("seed".into(), Value::from(cell.seed));
        row.extend(metrics);
        let line =
            serde_json::to_string(&row).map_err(|e| Error::invalid("row", cell.key(), e))? + "\n";
        let mut file = log.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(line.as_bytes())
            .and_then(|_| file.sync_data())
            .map_err(|e| Error::io(&log_path, e))?;
        bar.inc(1);
        Ok(())
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads.max(1))
        .build()
        .map_err(|e| Error::invalid("threads", opts.threads, e))?;
    let result = pool.install(|| {
        if opts.jobs > 1 {
            todo.par_iter().with_max_len(1).try_for_each(|c| run_one(c))
        } else {
            todo.iter().try_for_each(|c| run_one(c))
        }
    });
    bar.finish_and_clear();
    let ran = read_log(&dir)?.len().saturating_sub(done.len());
    manifest.cells_done = skipped + ran;
    let complete = manifest.cells_done >= share.len();
    if complete {
        manifest.finished = Some(manifest::now());
    }
    manifest.write(&dir)?;
    write_tables(&dir, &plan.spec)?;
    result?;
    Ok(RunOutcome {
        dir,
        ran,
        skipped,
        complete,
    })
}

/// Write `cells.parquet` and the summaries from the run directory's log.
pub fn write_tables(dir: &Path, spec: &Spec) -> Result<()> {
    let mut rows = read_log(dir)?;
    let mut seen = HashSet::new();
    rows.retain(|r| {
        seen.insert(
            r.get("cell")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        )
    });
    rows.sort_by_key(|r| r.get("index").and_then(Value::as_u64).unwrap_or(u64::MAX));
    if rows.is_empty() {
        return Ok(());
    }
    let mut cells = table::frame_from_rows(&rows)?;
    table::write_parquet(&mut cells, &dir.join("cells.parquet"))?;
    let axes: Vec<String> = spec.axes.iter().map(|a| a.name.clone()).collect();
    let mut summary = summary::summarise(&cells, &axes)?;
    let mut summary_rows = table::rows_from_frame(&summary);
    let mut notes = Vec::new();
    if let Some(st) = &spec.statistics {
        let (with, report) = summary::with_statistics(&summary_rows, &rows, &axes, st);
        summary_rows = with;
        summary = table::frame_from_rows(&summary_rows)?;
        if !report.correlations.is_empty() {
            let mut corr = table::frame_from_rows(&report.correlations)?;
            table::write_csv(&mut corr, &dir.join("correlations.csv"))?;
        }
        notes = report.notes;
    }
    table::write_parquet(&mut summary, &dir.join("summary.parquet"))?;
    table::write_csv(
        &mut table::without_time_columns(&summary)?,
        &dir.join("summary.csv"),
    )?;
    let title = format!("{} — {} (profile {})", spec.name, spec.title, spec.profile);
    let mut md = markdown::render(&title, &summary_rows);
    if !notes.is_empty() {
        md += "\n## Statistics\n\n";
        for n in &notes {
            md += &format!("- {n}\n");
        }
    }
    let md_path = dir.join("summary.md");
    std::fs::write(&md_path, md).map_err(|e| Error::io(&md_path, e))
}

/// The spec of a run directory, re-resolved from its manifest.
pub fn spec_of_run(dir: &Path) -> Result<(Manifest, Spec)> {
    let m = Manifest::read(dir)?;
    let profile = (m.profile != "grid").then_some(m.profile.as_str());
    let spec = Spec::from_text(Path::new(&m.spec_path), &m.spec, profile)?;
    Ok((m, spec))
}

/// Join the logs of shard runs (same spec and profile) into one run directory.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<Manifest> {
    let first = dirs
        .first()
        .ok_or_else(|| Error::invalid("merge", "(none)", "give at least one run directory"))?;
    let (mut manifest, spec) = spec_of_run(first)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut seen = HashSet::new();
    let mut lines = String::new();
    let mut finished = true;
    for dir in dirs {
        let m = Manifest::read(dir)?;
        if m.spec_hash != manifest.spec_hash || m.profile != manifest.profile {
            return Err(Error::Format {
                path: dir.join("manifest.json"),
                message: format!(
                    "spec or profile differs from {} (cannot merge different runs)",
                    first.display()
                ),
            });
        }
        finished &= m.finished.is_some();
        for row in read_log(dir)? {
            if seen.insert(
                row.get("cell")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            ) {
                lines += &(Value::Object(row).to_string() + "\n");
            }
        }
    }
    let log = out.join(CELLS_LOG);
    std::fs::write(&log, lines).map_err(|e| Error::io(&log, e))?;
    let plan = Plan::new(spec.clone())?;
    manifest.shard = None;
    manifest.cells_planned = plan.cells.len();
    manifest.cells_done = seen.len();
    manifest.finished = (finished && seen.len() == plan.cells.len()).then(manifest::now);
    manifest.write(out)?;
    write_tables(out, &spec)?;
    Ok(manifest)
}
