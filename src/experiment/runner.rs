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
use super::spec::Spec;
use crate::error::{Error, Result};
use crate::results::manifest::{self, Manifest};
use crate::results::{figures, markdown, published, summary, table};
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

/// Every logged row must be a cell of `plan` (see [`Plan::check_row`]); `log` names the file.
fn check_rows(plan: &Plan, rows: &[Row], log: &Path) -> Result<()> {
    for row in rows {
        plan.check_row(row).map_err(|e| Error::Format {
            path: log.to_path_buf(),
            message: format!("{e}; masklab trusts only rows it wrote for this plan"),
        })?;
    }
    Ok(())
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

/// The first `n` characters of `s` (never splits a character).
fn prefix(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// An exclusive lock on a run directory, held while the value lives (and by the OS until the
/// process exits, whatever way it exits).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Lock `dir` (created if missing), or fail naming the process that holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(".lock");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                return Err(Error::RunLocked {
                    dir: dir.to_path_buf(),
                    holder: holder.trim().to_string(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        let me = format!(
            "pid {} on {}, since {}",
            std::process::id(),
            manifest::host(),
            manifest::now()
        );
        file.set_len(0)
            .and_then(|()| file.write_all(me.as_bytes()))
            .map_err(|e| Error::io(&path, e))?;
        Ok(RunLock { _file: file })
    }
}

/// Run (or resume) a plan; writes the tables at the end, and returns where.
pub fn run(plan: &Plan, opts: &RunOptions) -> Result<RunOutcome> {
    let dir = opts.out.clone().unwrap_or_else(|| default_dir(&plan.spec));
    let (_lock, previous, shard) = open(plan, opts, &dir)?;
    let logged = read_log(&dir)?;
    check_rows(plan, &logged, &dir.join(CELLS_LOG))?;
    let done: HashSet<String> = logged
        .iter()
        .filter_map(|r| r.get("cell").and_then(Value::as_str).map(String::from))
        .collect();
    let (shard_i, shard_n) = shard.unwrap_or((0, 1));
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
    if timed && manifest.calibration_seconds.is_none() {
        manifest.calibration_seconds = Some(super::calibration::measure(&opts.device)?);
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

/// What [`open`] returns: the lock, the previous manifest (on resume), the shard to run.
type Opened = (RunLock, Option<Manifest>, Option<(usize, usize)>);

/// Lock `dir` and check it: a new run needs an empty directory; a resumed one its manifest,
/// the same spec and profile, and keeps its shard (a different `--shard` is refused). Returns
/// the lock, the previous manifest (on resume) and the shard to run.
fn open(plan: &Plan, opts: &RunOptions, dir: &Path) -> Result<Opened> {
    let dir = dir.to_path_buf();
    let log_path = dir.join(CELLS_LOG);
    let mut previous = None;
    let mut shard = opts.shard;
    if opts.resume && !dir.join("manifest.json").exists() {
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
                path: dir.join("manifest.json"),
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
                    path: dir.join("manifest.json"),
                    message: format!(
                        "the run was started as {}, not shard {}/{}; resume it without --shard",
                        was.map(|(i, n)| format!("shard {i}/{n}"))
                            .unwrap_or_else(|| "a whole run".into()),
                        now.0,
                        now.1
                    ),
                });
            }
            _ => {}
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
    } else {
        // Checked again under the lock: another process may have started a run here.
        require_fresh(&dir, "use --resume to finish it or choose another --out")?;
    }
    Ok((lock, previous, shard))
}

/// Whether `dir` holds a run (its log or manifest).
fn holds_run(dir: &Path) -> bool {
    dir.join(CELLS_LOG).exists() || dir.join("manifest.json").exists()
}

/// A new run (or merge) is written only into a missing or empty directory (a lock file left by
/// a run killed before its manifest aside): one holding a run is refused with `hint`, and one
/// holding anything else — a user's own files, which a run would overwrite — naming them.
fn require_fresh(dir: &Path, hint: &str) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        if dir.exists() && !dir.is_dir() {
            return Err(Error::Format {
                path: dir.to_path_buf(),
                message: "is a file, not a run directory; choose another --out".into(),
            });
        }
        return Ok(());
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".lock")
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    if holds_run(dir) {
        return Err(Error::Format {
            path: dir.to_path_buf(),
            message: format!("already holds a run; {hint}"),
        });
    }
    names.sort();
    let more = names.len().saturating_sub(5);
    names.truncate(5);
    Err(Error::Format {
        path: dir.to_path_buf(),
        message: format!(
            "is not empty and not a masklab run (it holds {}{}); a run would overwrite those files, so choose a new or empty directory",
            names.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ),
    })
}

/// The manifest of a run starting (or resuming) now, `finished` unset.
fn new_manifest(
    plan: &Plan,
    opts: &RunOptions,
    shard: Option<(usize, usize)>,
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
        shard: shard.map(|(i, n)| format!("{i}/{n}")),
        cells_planned: planned,
        cells_done: done,
        started: previous
            .map(|m| m.started.clone())
            .unwrap_or_else(manifest::now),
        finished: None,
        calibration_seconds: previous.and_then(|m| m.calibration_seconds),
    }
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
    let failed: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    let run_one = |cell: &Cell| -> Result<()> {
        bar.set_message(cell.point());
        let ctx = CellContext {
            rng_seed: cell.rng_seed(),
            params: &plan.spec.params,
            device: opts.device.clone(),
            shared: &shared,
        };
        // A cell's `peak_rss_mb` is its own when cells run one at a time: the peak restarts
        // from the resident size (what earlier cells left shared) before each cell.
        if opts.jobs <= 1 {
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
    result?;
    let failed = failed.into_inner().unwrap_or_else(|p| p.into_inner());
    match failed.as_slice() {
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

/// Write `cells.parquet` and the summaries from the run directory's log (`None`: no row yet).
pub fn write_tables(dir: &Path, spec: &Spec) -> Result<Option<Tables>> {
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
        return Ok(None);
    }
    let mut cells = table::frame_from_rows(&rows)?;
    table::write_parquet(&mut cells, &dir.join("cells.parquet"))?;
    let axes: Vec<String> = spec.axes.iter().map(|a| a.name.clone()).collect();
    let mut summary = summary::summarise(&cells, &axes)?;
    let mut summary_rows = table::rows_from_frame(&summary);
    // The run's calibration beside its times, so a baseline made from this summary carries it.
    if let Some(c) = Manifest::read(dir).ok().and_then(|m| m.calibration_seconds) {
        for row in &mut summary_rows {
            row.insert(crate::results::regress::CALIBRATION.into(), Value::from(c));
        }
        summary = table::frame_from_rows(&summary_rows)?;
    }
    let mut notes = Vec::new();
    let mut correlations = Vec::new();
    if let Some(st) = &spec.statistics {
        let (with, report) = summary::with_statistics(&summary_rows, &rows, &axes, st);
        summary_rows = with;
        summary = table::frame_from_rows(&summary_rows)?;
        if !report.correlations.is_empty() {
            let mut corr = table::frame_from_rows(&report.correlations)?;
            table::write_csv(&mut corr, &dir.join("correlations.csv"))?;
        }
        notes = report.notes;
        correlations = report.correlations;
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
    // Tables first: a figure or comparison that cannot be made must not cost the run its summary.
    crate::io::atomic::write_bytes(&dir.join("summary.md"), md.as_bytes())?;
    Ok(Some(Tables {
        md,
        summary_rows,
        correlations,
    }))
}

/// What [`write_tables`] wrote, for the post-processing after it.
pub struct Tables {
    md: String,
    summary_rows: Vec<Row>,
    correlations: Vec<Row>,
}

/// After the tables (and the manifest saying `finished`): the spec's published values and
/// figures, added to summary.md. A failure here leaves a complete, usable run; `masklab
/// published RUN` and `masklab plot RUN` redo these steps once the spec is fixed.
pub fn post_process(dir: &Path, spec: &Spec, tables: Tables) -> Result<()> {
    let Tables {
        mut md,
        summary_rows,
        correlations,
    } = tables;
    md += &write_published(dir, spec, &summary_rows, &correlations)?.1;
    crate::io::atomic::write_bytes(&dir.join("summary.md"), md.as_bytes())?;
    let links = figures::write_all(dir, &spec.figures, &summary_rows)?;
    md += &figures::markdown_section(&links);
    crate::io::atomic::write_bytes(&dir.join("summary.md"), md.as_bytes())
}

/// [`post_process`] with its failure said on stderr: the run stays complete.
fn post_process_or_warn(dir: &Path, spec: &Spec, tables: Option<Tables>) {
    if let Some(t) = tables
        && let Err(e) = post_process(dir, spec, t)
    {
        eprintln!(
            "warning: {}: the tables and manifest are complete, but the published values or figures failed: {e} (fix the spec, then `masklab published {}` / `masklab plot {}`)",
            dir.display(),
            dir.display(),
            dir.display()
        );
    }
}

/// Compare the spec's `[[published]]` entries with a run's rows: writes `published.csv` (none
/// when the spec carries no entry) and returns summary.md's section.
fn write_published(
    dir: &Path,
    spec: &Spec,
    summary_rows: &[Row],
    correlations: &[Row],
) -> Result<(Vec<Row>, String)> {
    if spec.published.is_empty() {
        return Ok((Vec::new(), String::new()));
    }
    let axes: Vec<String> = spec.axes.iter().map(|a| a.name.clone()).collect();
    let correlation_keys: Vec<String> = spec
        .statistics
        .as_ref()
        .and_then(|s| s.correlate.as_ref())
        .map(|c| c.by.iter().cloned().collect())
        .unwrap_or_default();
    let rows = published::compare(
        &spec.published,
        summary_rows,
        correlations,
        &axes,
        &correlation_keys,
    )?;
    let mut frame = table::frame_from_rows(&rows)?;
    table::write_csv(&mut frame, &dir.join("published.csv"))?;
    let section = published::markdown_section(&spec.published, &rows);
    Ok((rows, section))
}

/// Rewrite a run's comparison with published values from its summary (and correlations), with
/// the `[[published]]` entries of the spec file now at the manifest's path — values are facts
/// about the papers, so entries added after a run apply to it — or, when that file cannot be
/// read, of the run's own spec. Returns the comparison rows.
pub fn published_run(dir: &Path) -> Result<Vec<Row>> {
    let (manifest, own) = spec_of_run(dir)?;
    let profile = (manifest.profile != "grid").then_some(manifest.profile.as_str());
    let spec = match Spec::load(Path::new(&manifest.spec_path), profile) {
        Ok(now) if !now.published.is_empty() => now,
        _ => own,
    };
    if spec.published.is_empty() {
        return Err(Error::invalid(
            "run",
            dir.display(),
            format!(
                "spec `{}` carries no [[published]] values",
                manifest.spec_path
            ),
        ));
    }
    let summary = table::rows_from_frame(&table::read_parquet(&dir.join("summary.parquet"))?);
    let corr_path = dir.join("correlations.csv");
    let correlations = if corr_path.exists() {
        table::rows_from_frame(&table::read_csv(&corr_path)?)
    } else {
        Vec::new()
    };
    let (rows, section) = write_published(dir, &spec, &summary, &correlations)?;
    replace_summary_section(dir, published::HEADING, &section)?;
    Ok(rows)
}

/// Replace one of summary.md's trailing sections — the published values or the figures, in
/// that order after the tables — keeping the other (`heading`: the section's heading constant).
fn replace_summary_section(dir: &Path, heading: &str, section: &str) -> Result<()> {
    let md_path = dir.join("summary.md");
    let md = std::fs::read_to_string(&md_path).map_err(|e| Error::io(&md_path, e))?;
    let (rest, figures_part) = match md.split_once(figures::HEADING) {
        Some((rest, f)) => (rest, format!("{}{f}", figures::HEADING)),
        None => (md.as_str(), String::new()),
    };
    let (body, published_part) = match rest.split_once(published::HEADING) {
        Some((body, p)) => (body, format!("{}{p}", published::HEADING)),
        None => (rest, String::new()),
    };
    let md = if heading == figures::HEADING {
        format!("{body}{published_part}{section}")
    } else {
        format!("{body}{section}{figures_part}")
    };
    crate::io::atomic::write_bytes(&md_path, md.as_bytes())
}

/// Redraw a run's figures from its `summary.parquet` (the spec's `[[figures]]`, or those of the
/// spec file now at the manifest's path when the run's own spec declares none) and relink
/// them from summary.md. Returns the figure files written.
pub fn plot_run(dir: &Path) -> Result<Vec<PathBuf>> {
    let (manifest, spec) = spec_of_run(dir)?;
    let mut declared = spec.figures.clone();
    if declared.is_empty() {
        let profile = (manifest.profile != "grid").then_some(manifest.profile.as_str());
        if let Ok(now) = Spec::load(Path::new(&manifest.spec_path), profile) {
            declared = now.figures;
        }
    }
    if declared.is_empty() {
        return Err(Error::invalid(
            "run",
            dir.display(),
            format!("spec `{}` declares no [[figures]]", manifest.spec_path),
        ));
    }
    let summary = table::read_parquet(&dir.join("summary.parquet"))?;
    let rows = table::rows_from_frame(&summary);
    let links = figures::write_all(dir, &declared, &rows)?;
    replace_summary_section(dir, figures::HEADING, &figures::markdown_section(&links))?;
    Ok(links.iter().map(|(_, p)| dir.join(p)).collect())
}

/// The spec of a run directory, re-resolved from its manifest.
pub fn spec_of_run(dir: &Path) -> Result<(Manifest, Spec)> {
    let m = Manifest::read(dir)?;
    let profile = (m.profile != "grid").then_some(m.profile.as_str());
    let spec = Spec::from_text(Path::new(&m.spec_path), &m.spec, profile)?;
    Ok((m, spec))
}

/// Append the cells of shard `dir` to `lines`, recording which shard owns each. The shard must
/// be finished and of the same run as `first` (its manifest `like`: spec hash and profile), its
/// rows must fit the plan, and no cell may already belong to another shard.
fn collect_shard<'a>(
    dir: &'a Path,
    (first, like): (&Path, &Manifest),
    plan: &Plan,
    owner: &mut std::collections::HashMap<String, &'a Path>,
    lines: &mut String,
) -> Result<()> {
    let m = Manifest::read(dir)?;
    let manifest_path = dir.join("manifest.json");
    if m.spec_hash != like.spec_hash || m.profile != like.profile {
        return Err(Error::Format {
            path: manifest_path,
            message: format!(
                "spec {} / profile `{}` differs from {} (spec {} / profile `{}`); cannot merge different runs",
                prefix(&m.spec_hash, 12),
                m.profile,
                first.display(),
                prefix(&like.spec_hash, 12),
                like.profile
            ),
        });
    }
    require_finished(&m, dir, "first")?;
    let rows = read_log(dir)?;
    check_rows(plan, &rows, &dir.join(CELLS_LOG))?;
    for row in rows {
        let key = row
            .get("cell")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if let Some(other) = owner.get(&key) {
            return Err(Error::Format {
                path: dir.join(CELLS_LOG),
                message: format!(
                    "cell `{key}` is also in {}; shards must not overlap",
                    other.display()
                ),
            });
        }
        owner.insert(key, dir);
        *lines += &(Value::Object(row).to_string() + "\n");
    }
    Ok(())
}

/// Join the logs of shard runs into one new run directory `out`.
///
/// Refused: an `out` that is one of the shards or already holds a run; a shard that is not
/// complete; shards of different specs or profiles; shards that overlap (a cell in two of
/// them); shards that together miss cells of the plan.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<Manifest> {
    let first = dirs
        .first()
        .ok_or_else(|| Error::invalid("merge", "(none)", "give at least one run directory"))?;
    for dir in dirs {
        if crate::io::atomic::same_file(out, dir) {
            return Err(Error::invalid(
                "out",
                out.display(),
                format!("is the shard {}; merge into a new directory", dir.display()),
            ));
        }
    }
    require_fresh(out, "merge into a new directory")?;
    let (mut manifest, spec) = spec_of_run(first)?;
    let plan = Plan::new(spec.clone())?;
    let mut owner: std::collections::HashMap<String, &Path> = std::collections::HashMap::new();
    let mut lines = String::new();
    for dir in dirs {
        collect_shard(dir, (first, &manifest), &plan, &mut owner, &mut lines)?;
    }
    let missing: Vec<String> = plan
        .cells
        .iter()
        .map(Cell::key)
        .filter(|k| !owner.contains_key(k))
        .collect();
    if let Some(example) = missing.first() {
        return Err(Error::invalid(
            "merge",
            format!("{} shards", dirs.len()),
            format!(
                "together they miss {} of the plan's {} cells (e.g. `{example}`); give every shard",
                missing.len(),
                plan.cells.len()
            ),
        ));
    }
    let _lock = RunLock::acquire(out)?;
    crate::io::atomic::write_bytes(&out.join(CELLS_LOG), lines.as_bytes())?;
    manifest.shard = None;
    manifest.cells_planned = plan.cells.len();
    manifest.cells_done = owner.len();
    manifest.finished = None;
    manifest.write(out)?;
    let tables = write_tables(out, &spec)?;
    manifest.finished = Some(manifest::now());
    manifest.write(out)?;
    post_process_or_warn(out, &spec, tables);
    Ok(manifest)
}

/// The baseline a run is compared with (`given`, else in `results/baselines/`): the smoke
/// profile's is `<table>.parquet`; another profile's is `<table>.<profile>.parquet`, which
/// `regress` falls back from to the smoke baseline while it does not exist (`update` writes it).
pub fn baseline_path(manifest: &Manifest, given: Option<&Path>, update: bool) -> PathBuf {
    if let Some(p) = given {
        return p.to_path_buf();
    }
    let dir = PathBuf::from("results/baselines");
    let smoke = dir.join(format!("{}.parquet", manifest.table));
    if manifest.profile == "smoke" {
        return smoke;
    }
    let own = dir.join(format!("{}.{}.parquet", manifest.table, manifest.profile));
    if update || own.exists() { own } else { smoke }
}

/// The manifest of a run whose tables are complete, or an error saying what is missing.
/// An error unless the run in `dir` (manifest `m`) finished all its cells; `then` ends the
/// message's advice (what the caller was about to do).
fn require_finished(m: &Manifest, dir: &Path, then: &'static str) -> Result<()> {
    match m.finished {
        Some(_) => Ok(()),
        None => Err(Error::RunIncomplete {
            dir: dir.to_path_buf(),
            done: m.cells_done,
            planned: m.cells_planned,
            then,
        }),
    }
}

fn complete_run(dir: &Path) -> Result<(Manifest, Spec)> {
    let (m, spec) = spec_of_run(dir)?;
    // The manifest's table and profile name the baseline file: nothing outside the baselines.
    let manifest_path = dir.join("manifest.json");
    super::spec::check_name(&manifest_path, "table", &m.table)?;
    super::spec::check_name(&manifest_path, "profile", &m.profile)?;
    require_finished(&m, dir, "before comparing")?;
    Ok((m, spec))
}

/// Compare a complete run's summary with its baseline (see [`baseline_path`]).
pub fn regress(dir: &Path, baseline: Option<&Path>) -> Result<crate::results::regress::Report> {
    let (m, spec) = complete_run(dir)?;
    let baseline = baseline_path(&m, baseline, false);
    let run = table::read_parquet(&dir.join("summary.parquet"))?;
    let base = table::read_parquet(&baseline)?;
    let axes: Vec<String> = spec.axes.iter().map(|a| a.name.clone()).collect();
    let report = crate::results::regress::compare(
        &table::rows_from_frame(&base),
        &table::rows_from_frame(&run),
        &axes,
        &spec.tolerance,
    );
    if report.rows_compared == 0 {
        return Err(Error::invalid(
            "baseline",
            baseline.display(),
            format!(
                "no grid point in common with the run {} (profile {}; the baseline is usually the smoke profile)",
                dir.display(),
                m.profile
            ),
        ));
    }
    Ok(report)
}

/// A table's history under `profile` (its trends as text): with `append`, the complete run
/// there is added first. The history file is `file`, else `results/history/<table>.parquet`.
pub fn history(
    spec_path: &Path,
    profile: &str,
    append: Option<&Path>,
    file: Option<&Path>,
) -> Result<String> {
    use crate::results::history;
    let spec = Spec::load(spec_path, Some(profile))?;
    let path = file
        .map(Path::to_path_buf)
        .unwrap_or_else(|| history::default_path(&spec.name));
    let mut said = String::new();
    if let Some(run) = append {
        let m = Manifest::read(run)?;
        if m.table != spec.name || m.profile != profile {
            return Err(Error::invalid(
                "run",
                run.display(),
                format!(
                    "is a {} run of profile {}, not {} {profile}",
                    m.table, m.profile, spec.name
                ),
            ));
        }
        let axes: Vec<String> = spec.axes.iter().map(|a| a.name.clone()).collect();
        let added = history::append(run, &path, &axes)?;
        said += &match added {
            0 => format!("{} is already in {}\n", run.display(), path.display()),
            n => format!(
                "added {n} rows of {} to {}\n",
                run.display(),
                path.display()
            ),
        };
    }
    if !path.exists() {
        return Ok(said + &format!("{}: no history yet ({})\n", spec.name, path.display()));
    }
    let rows: Vec<Row> = table::rows_from_frame(&table::read_parquet(&path)?)
        .into_iter()
        .filter(|r| r.get("profile").and_then(Value::as_str) == Some(profile))
        .collect();
    let runs: HashSet<&str> = rows
        .iter()
        .filter_map(|r| r.get("run").and_then(Value::as_str))
        .collect();
    let axes: Vec<String> = spec.axes.iter().map(|a| a.name.clone()).collect();
    let trends = history::trends(&rows, &axes, &spec.tolerance);
    Ok(said + &history::render(&spec.name, runs.len(), &trends))
}

/// Write a complete run's summary as its baseline; returns the baseline's path.
pub fn update_baseline(dir: &Path, baseline: Option<&Path>) -> Result<PathBuf> {
    let (m, _) = complete_run(dir)?;
    let baseline = baseline_path(&m, baseline, true);
    let mut run = table::read_parquet(&dir.join("summary.parquet"))?;
    if let Some(parent) = baseline.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    table::write_parquet(&mut run, &baseline)?;
    Ok(baseline)
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
