//! `manifest.json`: what produced a run (spec, hash, commit, version, host, threads, device, times).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The provenance of a run directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Table id (spec `name`).
    pub table: String,
    /// Spec title.
    pub title: String,
    /// Profile applied.
    pub profile: String,
    /// Cell kind.
    pub kind: String,
    /// Path of the spec file as given.
    pub spec_path: String,
    /// Full spec text.
    pub spec: String,
    /// SHA-256 of the spec text.
    pub spec_hash: String,
    /// `git rev-parse HEAD` of the working tree, when available.
    pub git_commit: Option<String>,
    /// masklab version.
    pub masklab_version: String,
    /// Host name.
    pub host: String,
    /// Threads for work inside a cell.
    pub threads: usize,
    /// Cells run at once.
    pub jobs: usize,
    /// Device (`cpu`, `cuda:0`).
    pub device: String,
    /// `i/n` when the run is one shard of a sweep.
    pub shard: Option<String>,
    /// Cells in this run's share of the plan.
    pub cells_planned: usize,
    /// Cells finished.
    pub cells_done: usize,
    /// Start time (RFC 3339, UTC).
    pub started: String,
    /// End time, once the run completed.
    pub finished: Option<String>,
    /// Seconds of the reference workload ([`crate::experiment::yardstick`]), measured when the
    /// spec gives a measured time a tolerance; regression compares times as ratios to it. Read
    /// under its first name, `calibration_seconds`, from runs made before the rename.
    #[serde(
        default,
        alias = "calibration_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub yardstick_seconds: Option<f64>,
    /// Which workload `yardstick_seconds` timed ([`crate::experiment::yardstick::VERSION`]);
    /// absent in runs made before versions were recorded, which timed version 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yardstick_version: Option<u32>,
}

impl Manifest {
    /// Read `manifest.json` from a run directory.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::Format {
            path,
            message: e.to_string(),
        })
    }

    /// Write `manifest.json` into a run directory (atomically: temp file, sync, rename).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join("manifest.json");
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Format {
            path: path.clone(),
            message: e.to_string(),
        })?;
        crate::io::atomic::write_bytes(&path, (text + "\n").as_bytes())
    }
}

/// Current UTC time, RFC 3339.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The git commit of the current directory's repository, if any.
pub fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The host name.
pub fn host() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::Manifest;

    /// A manifest as a run writes it, with the yardstick under the field name `name`.
    fn manifest_json(name: &str) -> String {
        format!(
            r#"{{"table": "table2", "title": "t", "profile": "smoke", "kind": "solver",
               "spec_path": "s.toml", "spec": "", "spec_hash": "h", "git_commit": null,
               "masklab_version": "0.1.0", "host": "h", "threads": 2, "jobs": 1,
               "device": "cpu", "shard": null, "cells_planned": 1, "cells_done": 1,
               "started": "2026-12-01T00:00:00Z", "finished": null, "{name}": 0.25}}"#
        )
    }

    #[test]
    fn the_yardstick_reads_under_its_first_name_and_writes_under_its_own() {
        for name in ["yardstick_seconds", "calibration_seconds"] {
            let m: Manifest = serde_json::from_str(&manifest_json(name)).unwrap();
            assert_eq!(m.yardstick_seconds, Some(0.25), "{name}");
            let text = serde_json::to_string(&m).unwrap();
            assert!(
                text.contains("\"yardstick_seconds\":0.25") && !text.contains("calibration"),
                "{text}"
            );
        }
    }
}
