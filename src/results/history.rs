//! History of a table's runs: every nightly run's summary rows appended to
//! `results/history/<table>.parquet` with the run's commit, date, host and profile, and the
//! trend of each metric over them.
//!
//! Per-run regression compares one run with a baseline under a tolerance; a metric that moves a
//! little the same way night after night passes every comparison and still drifts. A series
//! (one metric at one grid point) is flagged as drifting when its last [`DRIFT_STEPS`] steps all
//! move the same way, each within the tolerance, while the move over those steps together is
//! not. As in regression, measured times are taken as ratios to each run's yardstick, and
//! measured figures without a tolerance (times, memory) are left out.

use crate::error::{Error, Result};
use crate::results::manifest::Manifest;
use crate::results::markdown::fmt_num;
use crate::results::regress::Tolerance;
use crate::results::row::Row;
use crate::results::table::cell_text;
use crate::results::{is_measured_column, is_time_column, regress, summary, table};
use indexmap::IndexMap;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Steps in one direction that make a drift (when their sum exceeds the tolerance).
pub const DRIFT_STEPS: usize = 3;

/// Columns the history adds to each summary row.
pub const META: [&str; 5] = ["run", "commit", "date", "host", "profile"];

/// `results/history/<table>.parquet`.
pub fn default_path(table: &str) -> PathBuf {
    PathBuf::from("results/history").join(format!("{table}.parquet"))
}

/// Append a complete run's summary rows to the history file at `path` (created if missing),
/// each with the run's directory, commit, finish date, host and profile. A run already in the
/// history is not added twice. Returns the rows added (0 for a repeat).
pub fn append(run: &Path, path: &Path, axes: &[String]) -> Result<usize> {
    let m = Manifest::read(run)?;
    let Some(date) = m.finished.clone() else {
        return Err(Error::Format {
            path: run.join("manifest.json"),
            message: "the run is not complete; finish it with --resume before adding it".into(),
        });
    };
    let id = format!("{}@{}", run.display(), m.started);
    let mut rows = if path.exists() {
        table::rows_from_frame(&table::read_parquet(path)?)
    } else {
        Vec::new()
    };
    if rows
        .iter()
        .any(|r| r.get("run").and_then(Value::as_str) == Some(id.as_str()))
    {
        return Ok(0);
    }
    let summary_path = run.join("summary.parquet");
    let summary = table::rows_from_frame(&table::read_parquet(&summary_path)?);
    // The summary must be this table's: every row names a value of every axis of the spec (a
    // summary of another table would add series whose axes are null).
    for (i, row) in summary.iter().enumerate() {
        if let Some(axis) = axes
            .iter()
            .find(|a| row.get(a.as_str()).is_none_or(Value::is_null))
        {
            let mut columns: Vec<&str> = row.keys().map(String::as_str).collect();
            columns.truncate(8);
            return Err(Error::Format {
                path: summary_path,
                message: format!(
                    "row {i} has no value of the spec's axis `{axis}` (columns: {}…); is this summary from another table?",
                    columns.join(", ")
                ),
            });
        }
    }
    let added = summary.len();
    for mut row in summary {
        let meta = [
            id.clone(),
            m.git_commit.clone().unwrap_or_default(),
            date.clone(),
            m.host.clone(),
            m.profile.clone(),
        ];
        for (k, v) in META.iter().zip(meta) {
            row.insert((*k).to_string(), Value::from(v));
        }
        rows.push(row);
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    table::write_parquet(&mut table::frame_from_rows(&rows)?, path)?;
    Ok(added)
}

/// One metric at one grid point over the runs of the history.
#[derive(Debug, Clone, PartialEq)]
pub struct Trend {
    /// Profile and grid point, e.g. `nightly pattern=2:4 solver=greedy`.
    pub point: String,
    /// The metric (`÷ yardstick` for measured times).
    pub metric: String,
    /// Values in history order.
    pub values: Vec<f64>,
    /// Whether the last steps drift (see the module doc).
    pub drift: bool,
}

/// The trends of every numeric metric in `rows` (history order), per profile and grid point
/// (`axes`); `tolerance` as in the spec (default: equal to 1e-9 relative).
pub fn trends(
    rows: &[Row],
    axes: &[String],
    tolerance: &IndexMap<String, Tolerance>,
) -> Vec<Trend> {
    let mut series: IndexMap<(String, String), Vec<f64>> = IndexMap::new();
    for row in rows {
        let point = std::iter::once(cell_text(row.get("profile")))
            .chain(
                axes.iter()
                    .map(|a| format!("{a}={}", cell_text(row.get(a)))),
            )
            .collect::<Vec<_>>()
            .join(" ");
        let yardstick = regress::yardstick(row);
        for (metric, value) in row {
            let skip = axes.contains(metric)
                || META.contains(&metric.as_str())
                || summary::BOOKKEEPING.contains(&metric.as_str())
                || metric == "seeds"
                || regress::is_yardstick(metric)
                || summary::is_derived(metric, row)
                // Measured figures without a tolerance are noise, as in regression.
                || (is_measured_column(metric) && !tolerance.contains_key(metric));
            let Some(v) = value.as_f64().filter(|v| !skip && v.is_finite()) else {
                continue;
            };
            // Each workload version is a series of its own: ratios to different yardsticks
            // do not compare.
            let (name, v) = match (is_time_column(metric), yardstick) {
                (true, Some(c)) => (format!("{metric} ÷ {}", c.label()), v / c.seconds),
                _ => (metric.clone(), v),
            };
            series.entry((point.clone(), name)).or_default().push(v);
        }
    }
    series
        .into_iter()
        .map(|((point, metric), values)| {
            let base = metric.split(" ÷ yardstick").next().unwrap_or(&metric);
            let accepts = |o: f64, n: f64| match tolerance.get(base) {
                Some(t) => t.accepts(o, n),
                None => (n - o).abs() <= 1e-9 * o.abs().max(1.0),
            };
            let drift = drifts(&values, accepts);
            Trend {
                point,
                metric,
                values,
                drift,
            }
        })
        .collect()
}

/// Whether the last [`DRIFT_STEPS`] steps of `values` go the same way, each accepted by
/// `accepts(old, new)`, while the whole move over them is not.
fn drifts(values: &[f64], accepts: impl Fn(f64, f64) -> bool) -> bool {
    if values.len() <= DRIFT_STEPS {
        return false;
    }
    let tail = &values[values.len() - DRIFT_STEPS - 1..];
    let steps: Vec<f64> = tail.windows(2).map(|w| w[1] - w[0]).collect();
    let one_way = steps.iter().all(|d| *d > 0.0) || steps.iter().all(|d| *d < 0.0);
    let each_ok = tail.windows(2).all(|w| accepts(w[0], w[1]));
    one_way && each_ok && !accepts(tail[0], tail[DRIFT_STEPS])
}

/// The trends as text: the series that moved, drifting ones first and marked, then a count of
/// the series that did not move.
pub fn render(table: &str, runs: usize, trends: &[Trend]) -> String {
    let moved: Vec<&Trend> = trends
        .iter()
        .filter(|t| t.values.windows(2).any(|w| w[0] != w[1]))
        .collect();
    let drifting = moved.iter().filter(|t| t.drift).count();
    let mut out = format!(
        "{table}: {runs} runs in the history, {} series, {} moved, {drifting} drifting\n",
        trends.len(),
        moved.len()
    );
    let mut ordered = moved.clone();
    ordered.sort_by_key(|t| !t.drift);
    for t in ordered {
        let arrows: String = t
            .values
            .windows(2)
            .map(|w| match w[1].partial_cmp(&w[0]) {
                Some(std::cmp::Ordering::Greater) => '↑',
                Some(std::cmp::Ordering::Less) => '↓',
                _ => '·',
            })
            .collect();
        out += &format!(
            "{}{}  {}: {} → {}  {}\n",
            if t.drift { "DRIFT  " } else { "       " },
            t.point,
            t.metric,
            fmt_num(t.values[0]),
            fmt_num(*t.values.last().unwrap_or(&f64::NAN)),
            arrows
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A summary row; a negative `cal` puts the yardstick under its legacy name.
    fn row(profile: &str, p: &str, gap: f64, secs: f64, cal: f64) -> Row {
        let column = if cal < 0.0 {
            regress::LEGACY_YARDSTICK
        } else {
            regress::YARDSTICK
        };
        let mut r = json!({"profile": profile, "pattern": p, "seeds": 1, "kept_gap": gap,
               "kept_gap_std": 0.0, "seconds": secs, "run": "r", "peak_rss_mb": 100.0 + secs})
        .as_object()
        .unwrap()
        .clone();
        r.insert(column.into(), json!(cal.abs()));
        r
    }

    #[test]
    fn small_steps_one_way_drift_and_noise_does_not() {
        let abs = |a: f64| move |o: f64, n: f64| (n - o).abs() <= a;
        // Each step 0.004 within 0.005, three together 0.012 beyond it.
        assert!(drifts(&[0.100, 0.104, 0.108, 0.112], abs(0.005)));
        // The same steps with one reversal, or a single step too large (regress catches that).
        assert!(!drifts(&[0.100, 0.104, 0.102, 0.106], abs(0.005)));
        assert!(!drifts(&[0.100, 0.101, 0.102, 0.110], abs(0.005)));
        // Too short a history, or a total move within the tolerance.
        assert!(!drifts(&[0.100, 0.104, 0.108], abs(0.005)));
        assert!(!drifts(&[0.100, 0.101, 0.102, 0.103], abs(0.005)));
    }

    #[test]
    fn trends_follow_each_point_and_scale_times_by_yardstick() {
        let mut tol = IndexMap::new();
        tol.insert("kept_gap".to_string(), Tolerance::Abs(0.005));
        tol.insert("seconds".to_string(), Tolerance::Ratio(1.5));
        let rows = vec![
            // A history that spans the rename: the first runs name the yardstick
            // `calibration_seconds`.
            row("nightly", "2:4", 0.100, 1.0, -0.10),
            row("nightly", "4:8", 0.200, 2.0, -0.10),
            row("nightly", "2:4", 0.104, 2.0, -0.20),
            row("nightly", "4:8", 0.200, 2.0, 0.10),
            row("nightly", "2:4", 0.108, 3.0, 0.30),
            row("nightly", "4:8", 0.200, 2.0, 0.10),
            row("nightly", "2:4", 0.112, 4.0, 0.40),
            row("nightly", "4:8", 0.200, 2.0, 0.10),
        ];
        let t = trends(&rows, &["pattern".to_string()], &tol);
        let find = |p: &str, m: &str| {
            t.iter()
                .find(|t| t.point == format!("nightly pattern={p}") && t.metric == m)
                .unwrap()
        };
        assert!(find("2:4", "kept_gap").drift);
        assert!(!find("4:8", "kept_gap").drift);
        // Times grew 4× with the yardstick: the ratio did not move.
        assert_eq!(find("2:4", "seconds ÷ yardstick").values, vec![10.0; 4]);
        assert_eq!(
            t.len(),
            4,
            "no series for seeds, std or the yardstick itself"
        );
        let text = render("table2", 4, &t);
        assert!(text.contains("1 moved, 1 drifting"), "{text}");
        // Runs timed against the version 2 workload start series of their own.
        let mut later = rows.clone();
        for secs in [5.0, 6.0] {
            let mut r = row("nightly", "2:4", 0.112, secs, 0.1);
            r.remove(regress::YARDSTICK);
            r.insert(regress::YARDSTICK_V2.into(), json!(0.5));
            later.push(r);
        }
        let t = trends(&later, &["pattern".to_string()], &tol);
        let series = |m: &str| {
            t.iter()
                .find(|t| t.point == "nightly pattern=2:4" && t.metric == m)
                .map(|t| t.values.clone())
        };
        assert_eq!(series("seconds ÷ yardstick"), Some(vec![10.0; 4]));
        assert_eq!(series("seconds ÷ yardstick v2"), Some(vec![10.0, 12.0]));
        assert!(
            text.contains("DRIFT  nightly pattern=2:4  kept_gap: 0.1000 → 0.1120  ↑↑↑"),
            "{text}"
        );
    }
}
