//! A run directory: its files (names as constants), the lock held for the whole run, the
//! crash-safe log of finished cells (read back, checked and repaired on `--resume`), the
//! manifest a new run starts with, and the checks that a run is complete before anything reads
//! its tables.

use super::cells::Row;
use super::plan::Plan;
use super::spec::Spec;
use crate::error::{Error, Result};
use crate::results::manifest::{self, Manifest};
use serde_json::Value;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// The run's manifest: spec, profile, shard, state.
pub const MANIFEST: &str = "manifest.json";
/// The lock file held while a process runs the directory.
pub const LOCK: &str = ".lock";
/// Every finished row, as a table.
pub const CELLS_PARQUET: &str = "cells.parquet";
/// The summary rows (means, CIs, tests), as a table and as CSV.
pub const SUMMARY_PARQUET: &str = "summary.parquet";
/// The summary rows as CSV.
pub const SUMMARY_CSV: &str = "summary.csv";
/// The summary as Markdown (tables, notes, figures, published values).
pub const SUMMARY_MD: &str = "summary.md";
/// The spec's correlations.
pub const CORRELATIONS_CSV: &str = "correlations.csv";
/// Published values beside the run's.
pub const PUBLISHED_CSV: &str = "published.csv";

/// The crash-safe log of finished cells, one JSON row per line.
pub const CELLS_LOG: &str = "cells.jsonl";

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
pub(super) fn check_rows(plan: &Plan, rows: &[Row], log: &Path) -> Result<()> {
    for row in rows {
        plan.check_row(row).map_err(|e| Error::Format {
            path: log.to_path_buf(),
            message: format!("{e}; masklab trusts only rows it wrote for this plan"),
        })?;
    }
    Ok(())
}

/// Cut a torn (unterminated) last line off the log so appends start on a fresh line.
pub(super) fn repair_log(path: &Path) -> Result<()> {
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

pub(super) fn default_dir(spec: &Spec) -> PathBuf {
    let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S");
    PathBuf::from("results/runs")
        .join(&spec.name)
        .join(format!("{}-{stamp}", spec.profile))
}

/// The first `n` characters of `s` (never splits a character).
pub(super) fn prefix(s: &str, n: usize) -> String {
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
        let path = dir.join(LOCK);
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

/// Whether `dir` holds a run (its log or manifest).
pub(super) fn holds_run(dir: &Path) -> bool {
    dir.join(CELLS_LOG).exists() || dir.join(MANIFEST).exists()
}

/// A new run (or merge) is written only into a missing or empty directory (a lock file and a
/// manifest being written — a live run's, or one killed before its manifest was in place —
/// aside: the lock then names a live holder): one holding a run is refused with `hint`, and one
/// holding anything else — a user's own files, which a run would overwrite — naming them.
pub(super) fn require_fresh(dir: &Path, hint: &str) -> Result<()> {
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
        .filter(|n| n != LOCK && !crate::io::atomic::is_temp_of(n, MANIFEST))
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

/// The spec of a run directory, re-resolved from its manifest.
pub fn spec_of_run(dir: &Path) -> Result<(Manifest, Spec)> {
    let m = Manifest::read(dir)?;
    let profile = (m.profile != "grid").then_some(m.profile.as_str());
    let spec = Spec::from_text(Path::new(&m.spec_path), &m.spec, profile)?;
    Ok((m, spec))
}

/// The manifest of a run whose tables are complete, or an error saying what is missing.
/// An error unless the run in `dir` (manifest `m`) finished all its cells; `then` ends the
/// message's advice (what the caller was about to do).
pub(super) fn require_finished(m: &Manifest, dir: &Path, then: &'static str) -> Result<()> {
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

pub(super) fn complete_run(dir: &Path) -> Result<(Manifest, Spec)> {
    let (m, spec) = spec_of_run(dir)?;
    // The manifest's table and profile name the baseline file: nothing outside the baselines.
    let manifest_path = dir.join(MANIFEST);
    super::spec::check_name(&manifest_path, "table", &m.table)?;
    super::spec::check_name(&manifest_path, "profile", &m.profile)?;
    require_finished(&m, dir, "before comparing")?;
    Ok((m, spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second run that looks while the first is writing its manifest sees the lock and the
    /// staging file: the directory counts as fresh, so the lock decides (naming its holder).
    /// Anything of the user's is refused by name.
    #[test]
    fn a_lock_and_a_manifest_being_written_count_as_fresh_a_users_file_does_not() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let d = dir.path();
        require_fresh(&d.join("missing"), "h")?;
        std::fs::write(d.join(LOCK), "pid 1").map_err(|e| Error::io(d, e))?;
        std::fs::write(d.join(".manifest.json.6643.tmp"), "{").map_err(|e| Error::io(d, e))?;
        require_fresh(d, "h")?;
        std::fs::write(d.join("notes.txt"), "mine").map_err(|e| Error::io(d, e))?;
        let e = require_fresh(d, "h").unwrap_err().to_string();
        assert!(e.contains("holds notes.txt)"), "{e}");
        std::fs::write(d.join(MANIFEST), "{}").map_err(|e| Error::io(d, e))?;
        let e = require_fresh(d, "the hint").unwrap_err().to_string();
        assert!(e.contains("already holds a run; the hint"), "{e}");
        Ok(())
    }
}
