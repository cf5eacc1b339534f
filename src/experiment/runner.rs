//! The runner: runs a plan's cells, appends each finished row to `cells.jsonl` at once (flushed
//! and synced, so a crash loses nothing finished), skips finished cells on `--resume`, and writes
//! the tables and manifest.
//!
//! Safety: a run directory is locked for the whole run (an OS file lock on `.lock`, released
//! when the process dies), so a second run on the same `--out` stops with an error naming the
//! holder. Tables are written atomically (temp file, sync, rename) and the manifest says
//! `finished` only after they are; a resumed run keeps the shard it was started with.
//!
//! Determinism: each cell draws from its own RNG (seeded from the spec seed and grid point) and
//! rows are ordered by plan position, so the cell order, `--jobs` and shards do not change a table.

use super::cell::Cell;
use super::cells::{CellContext, Row, Shared};
use super::plan::Plan;
use super::post_run::{post_process_or_warn, write_tables};
use super::run_dir::{
    CELLS_LOG, MANIFEST, RunLock, check_rows, default_dir, holds_run, prefix, read_log, repair_log,
    require_fresh,
};
use super::spec::Spec;
use crate::error::{Error, Result};
use crate::results::manifest::{self, Manifest};
use indicatif::ProgressBar;
use rayon::prelude::*;
use serde_json::Value;
use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// How to run a plan.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Run directory; `None`: `results/runs/<table>/<profile>-<time>`.
    pub out: Option<PathBuf>,
    /// Finish the run in this directory (skips its finished cells).
    pub resume: bool,
    /// Run shard `i` of `n`.
    pub shard: Option<Shard>,
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

/// Shard `index` of `count` of a plan's cells (`i/n` on the command line and in the manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Which shard, from 0.
    pub index: usize,
    /// How many.
    pub count: usize,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Parse `i/n` (0 ≤ i < n).
pub fn parse_shard(s: &str) -> Result<Shard> {
    let bad = || Error::invalid("shard", s, "expected i/n with 0 <= i < n, e.g. 0/4");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (index, count) = (
        i.trim().parse::<usize>().map_err(|_| bad())?,
        n.trim().parse::<usize>().map_err(|_| bad())?,
    );
    if count == 0 || index >= count {
        return Err(bad());
    }
    Ok(Shard { index, count })
}

/// The shard from `SLURM_ARRAY_TASK_ID` / `SLURM_ARRAY_TASK_COUNT`, when both are set.
pub fn shard_from_env() -> Result<Option<Shard>> {
    match (
        std::env::var("SLURM_ARRAY_TASK_ID"),
        std::env::var("SLURM_ARRAY_TASK_COUNT"),
    ) {
        (Ok(i), Ok(n)) => parse_shard(&format!("{i}/{n}")).map(Some),
        _ => Ok(None),
    }
}

/// Run (or resume) a plan; writes the tables at the end, and returns where.
pub fn run(plan: &Plan, opts: &RunOptions) -> Result<RunOutcome> {
    let dir = opts.out.clone().unwrap_or_else(|| default_dir(&plan.spec));
    let Opened {
        lock: _lock,
        previous,
        shard,
    } = open(plan, opts, &dir)?;
    let logged = read_log(&dir)?;
    check_rows(plan, &logged, &dir.join(CELLS_LOG))?;
    let done: HashSet<String> = logged
        .iter()
        .filter_map(|r| r.get("cell").and_then(Value::as_str).map(String::from))
        .collect();
    let Shard {
        index: shard_i,
        count: shard_n,
    } = shard.unwrap_or(Shard { index: 0, count: 1 });
    let share: Vec<&Cell> = plan.shard(shard_i, shard_n).collect();
    if share.is_empty() {
        return Err(Error::invalid(
            "shard",
            format!("{shard_i}/{shard_n}"),
            format!(
                "holds no cell: the plan has {} cells, so use at most {} shards",
                plan.cells.len(),
                plan.cells.len()
            ),
        ));
    }
    let mut todo: Vec<&Cell> = share
        .iter()
        .copied()
        .filter(|c| !done.contains(&c.key()))
        .collect();
    let skipped = share.len() - todo.len();
    if let Some(k) = opts.max_cells {
        todo.truncate(k);
    }

    let mut manifest = new_manifest(plan, opts, shard, share.len(), skipped, previous.as_ref());
    let timed = plan
        .spec
        .tolerance
        .keys()
        .any(|m| crate::results::is_measured_column(m));
    if timed && manifest.yardstick_seconds.is_none() {
        manifest.yardstick_seconds = Some(super::yardstick::measure(&opts.device)?);
        manifest.yardstick_version = Some(super::yardstick::VERSION);
    }
    manifest.write(&dir)?;
    let result = run_cells(plan, opts, &todo, &dir);
    let ran = read_log(&dir)?.len().saturating_sub(done.len());
    manifest.cells_done = skipped + ran;
    let complete = manifest.cells_done >= share.len();
    // Tables first, then the manifest: it says `finished` only once the tables are on disk;
    // published values and figures after that, so their failure cannot cost the run.
    let tables = write_tables(&dir, &plan.spec)?;
    if complete {
        manifest.finished = Some(manifest::now());
    }
    manifest.write(&dir)?;
    post_process_or_warn(&dir, &plan.spec, tables);
    result?;
    Ok(RunOutcome {
        dir,
        ran,
        skipped,
        complete,
    })
}

/// What [`open`] returns.
struct Opened {
    /// Held until the run ends.
    lock: RunLock,
    /// The manifest of the run being resumed.
    previous: Option<Manifest>,
    /// The shard to run (`None`: the whole plan).
    shard: Option<Shard>,
}

/// Lock `dir` and check it: a new run needs an empty directory; a resumed one its manifest,
/// the same spec and profile, and keeps its shard (a different `--shard` is refused). Returns
/// the lock, the previous manifest (on resume) and the shard to run.
fn open(plan: &Plan, opts: &RunOptions, dir: &Path) -> Result<Opened> {
    let dir = dir.to_path_buf();
    let log_path = dir.join(CELLS_LOG);
    let mut previous = None;
    let mut shard = opts.shard;
    if opts.resume && !dir.join(MANIFEST).exists() {
        return Err(Error::Format {
            path: dir.clone(),
            message: "not a run directory (no manifest.json); nothing to resume".into(),
        });
    }
    if !opts.resume && !holds_run(&dir) {
        // A user's own files are refused before the lock file is made beside them; a run
        // directory after the lock, so a live run's holder is named.
        require_fresh(&dir, "use --resume to finish it or choose another --out")?;
    }
    let lock = RunLock::acquire(&dir)?;
    if opts.resume {
        let m = Manifest::read(&dir)?;
        if m.spec_hash != plan.spec.hash() {
            return Err(Error::Format {
                path: dir.join(MANIFEST),
                message: format!(
                    "the spec changed since this run started (hash {} there, {} now); start a new run",
                    prefix(&m.spec_hash, 12),
                    prefix(&plan.spec.hash(), 12)
                ),
            });
        }
        let started_shard = m.shard.as_deref().map(parse_shard).transpose()?;
        match (started_shard, opts.shard) {
            (was, None) => shard = was,
            (was, Some(now)) if was != Some(now) => {
                return Err(Error::Format {
                    path: dir.join(MANIFEST),
                    message: format!(
                        "the run was started as {}, not shard {now}; resume it without --shard",
                        was.map(|s| format!("shard {s}"))
                            .unwrap_or_else(|| "a whole run".into()),
                    ),
                });
            }
            _ => {}
        }
        if m.profile != plan.spec.profile {
            return Err(Error::Format {
                path: dir.join(MANIFEST),
                message: format!(
                    "the run used profile `{}`, not `{}`",
                    m.profile, plan.spec.profile
                ),
            });
        }
        repair_log(&log_path)?;
        previous = Some(m);
    } else {
        // Checked again under the lock: another process may have started a run here.
        require_fresh(&dir, "use --resume to finish it or choose another --out")?;
    }
    Ok(Opened {
        lock,
        previous,
        shard,
    })
}

/// Run `todo` (one after another, or `opts.jobs` at once), appending each finished row to the
/// log at once (written and synced); a progress bar counts the cells. A cell that fails is
/// reported and the sweep goes on; the failures come back as one error at the end (the run is
/// then incomplete, and `--resume` retries exactly the failed cells). Writing the log stops it.
fn run_cells(plan: &Plan, opts: &RunOptions, todo: &[&Cell], dir: &Path) -> Result<()> {
    let log_path = dir.join(CELLS_LOG);
    let log = Mutex::new(
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| Error::io(&log_path, e))?,
    );
    let bar = cell_bar(opts.progress, todo.len());
    let shared = Shared::default();
    let failed: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    let run_one = |cell: &Cell| -> Result<()> {
        bar.set_message(cell.point());
        let ctx = CellContext {
            rng_seed: cell.rng_seed(),
            params: &plan.spec.params,
            device: opts.device.clone(),
            shared: &shared,
            solvers: &plan.solvers,
        };
        // A cell's `peak_rss_mb` is its own when cells run one at a time: the heap's free
        // memory goes back to the OS and the peak restarts from the resident size (what earlier
        // cells left shared) before each cell.
        if opts.jobs <= 1 {
            crate::memory::release_freed_memory();
            crate::memory::reset_peak_rss();
        }
        let metrics = match plan.kind.run(cell, &ctx) {
            Ok(m) => m,
            Err(e) => {
                bar.suspend(|| eprintln!("cell {} failed: {e}", cell.key()));
                let mut f = failed.lock().unwrap_or_else(|p| p.into_inner());
                f.push((cell.key(), e.to_string()));
                bar.inc(1);
                return Ok(());
            }
        };
        let line = log_line(cell, metrics)?;
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
    result?;
    failures(&failed.into_inner().unwrap_or_else(|p| p.into_inner()), dir)
}

/// The progress bar over a run's cells (hidden without `progress`).
fn cell_bar(progress: bool, cells: usize) -> ProgressBar {
    let bar = crate::io::bar(
        progress,
        cells as u64,
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} cells, eta {eta} {wide_msg}",
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// One line of the cells log: index, key, axis values and seed, then the cell's metrics.
fn log_line(cell: &Cell, metrics: Row) -> Result<String> {
    let mut row = Row::new();
    row.insert("index".into(), Value::from(cell.index));
    row.insert("cell".into(), Value::from(cell.key()));
    for (axis, value) in &cell.values {
        row.insert(axis.clone(), Value::from(value.clone()));
    }
    row.insert("seed".into(), Value::from(cell.seed));
    row.extend(metrics);
    Ok(serde_json::to_string(&row).map_err(|e| Error::invalid("row", cell.key(), e))? + "\n")
}

/// The run's outcome from its failed cells (key, error): an error naming the first and counting
/// the rest, with how to retry them.
fn failures(failed: &[(String, String)], dir: &Path) -> Result<()> {
    match failed {
        [] => Ok(()),
        [(key, e), rest @ ..] => Err(Error::Invalid {
            field: "cell".into(),
            value: key.clone(),
            reason: format!(
                "{e}{} (the other cells ran and are saved; fix and rerun with --resume {} to retry the failed ones)",
                if rest.is_empty() {
                    String::new()
                } else {
                    format!("; {} more cells failed, listed above", rest.len())
                },
                dir.display()
            ),
        }),
    }
}

/// Load the spec at `path` for `profile` and run it: on `--resume` the profile defaults to
/// the run's own, and the shard to `SLURM_ARRAY_TASK_ID/COUNT` when neither is given.
pub fn run_spec(path: &Path, profile: Option<&str>, mut opts: RunOptions) -> Result<RunOutcome> {
    let resumed_profile = match (&opts.out, opts.resume, profile) {
        (Some(dir), true, None) => Some(Manifest::read(dir)?.profile),
        _ => None,
    };
    let profile = profile
        .map(str::to_string)
        .or(resumed_profile)
        .filter(|p| p != "grid");
    let plan = Plan::new(Spec::load(path, profile.as_deref())?)?;
    if opts.shard.is_none() && !opts.resume {
        opts.shard = shard_from_env()?;
    }
    run(&plan, &opts)
}

/// The manifest of a run starting (or resuming) now, `finished` unset.
fn new_manifest(
    plan: &Plan,
    opts: &RunOptions,
    shard: Option<Shard>,
    planned: usize,
    done: usize,
    previous: Option<&Manifest>,
) -> Manifest {
    Manifest {
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
        shard: shard.map(|s| s.to_string()),
        cells_planned: planned,
        cells_done: done,
        started: previous
            .map(|m| m.started.clone())
            .unwrap_or_else(manifest::now),
        finished: None,
        yardstick_seconds: previous.and_then(|m| m.yardstick_seconds),
        yardstick_version: previous.and_then(|m| m.yardstick_version),
    }
}
