//! Regression of a run's summary against a committed baseline summary.
//!
//! Rows are matched on the grid axes. Every metric mean the baseline has is compared: numbers
//! within the spec's tolerance for that metric (default: equal to 1e-9 relative), strings and
//! booleans exactly; measured times only when the spec gives them a tolerance. A baseline row
//! the run lacks counts as a regression when the run shares at least one row with the baseline,
//! and so does a metric column the run lacks; rows and columns only the run has are listed
//! (a larger profile adds rows), not counted as regressions.

use crate::results::markdown::fmt_num;
use crate::results::row::Row;
use crate::results::{is_measured_column, is_time_column};

/// A resolved tolerance for one metric.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tolerance {
    /// Absolute difference.
    Abs(f64),
    /// Relative difference.
    Rel(f64),
    /// Ratio upper bound.
    Ratio(f64),
}

impl Tolerance {
    /// Whether moving from `old` to `new` stays within the tolerance.
    pub fn accepts(&self, old: f64, new: f64) -> bool {
        if old.is_nan() && new.is_nan() {
            return true;
        }
        match *self {
            Tolerance::Abs(a) => (new - old).abs() <= a,
            Tolerance::Rel(r) => (new - old).abs() <= r * old.abs(),
            Tolerance::Ratio(q) => new <= q * old || new <= old,
        }
    }
}

/// The summary column with the run's yardstick seconds for workload version 1 (see
/// [`crate::experiment::yardstick`]), read from older runs, baselines and histories.
pub const YARDSTICK: &str = "yardstick_seconds";

/// The same column under its first name, `calibration_seconds`, in summaries, baselines and
/// histories written before it was renamed (read, never written).
pub const LEGACY_YARDSTICK: &str = "calibration_seconds";

/// The summary column with the run's yardstick seconds for workload version 2, what runs write
/// now.
pub const YARDSTICK_V2: &str = "yardstick_v2_seconds";

/// The summary column a yardstick of workload `version` goes under.
pub fn yardstick_column(version: u32) -> &'static str {
    if version <= 1 {
        YARDSTICK
    } else {
        YARDSTICK_V2
    }
}

/// Whether `column` holds a yardstick, under any name or version.
pub fn is_yardstick(column: &str) -> bool {
    column == YARDSTICK || column == LEGACY_YARDSTICK || column == YARDSTICK_V2
}

/// A run's yardstick: the workload's version and its seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Yardstick {
    /// Workload version (1: the exact solver and products; 2: fixed code).
    pub version: u32,
    /// Seconds.
    pub seconds: f64,
}

impl Yardstick {
    /// The divisor's name in a metric label: `yardstick` (version 1) or `yardstick v2`.
    pub fn label(&self) -> String {
        match self.version {
            1 => "yardstick".into(),
            v => format!("yardstick v{v}"),
        }
    }
}

/// A summary row's yardstick, when it has a positive one (the newest version it carries).
pub fn yardstick(row: &Row) -> Option<Yardstick> {
    [(YARDSTICK_V2, 2), (YARDSTICK, 1), (LEGACY_YARDSTICK, 1)]
        .iter()
        .find_map(|(c, version)| {
            let seconds = row.get(*c).and_then(Value::as_f64).filter(|s| *s > 0.0)?;
            Some(Yardstick {
                version: *version,
                seconds,
            })
        })
}
use indexmap::IndexMap;
use serde_json::Value;

/// One compared value that moved.
#[derive(Debug, Clone, PartialEq)]
pub struct Moved {
    /// The grid point.
    pub point: String,
    /// The metric.
    pub metric: String,
    /// Baseline value.
    pub baseline: String,
    /// Run value.
    pub run: String,
    /// Whether the move exceeds the tolerance.
    pub regressed: bool,
    /// Why the values were not compared (times over yardsticks of different workloads).
    pub not_compared: Option<String>,
}

/// What a comparison found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Rows present in both.
    pub rows_compared: usize,
    /// Values compared.
    pub values_compared: usize,
    /// Values that changed (within tolerance or not).
    pub moved: Vec<Moved>,
    /// Baseline rows the run lacks.
    pub missing: Vec<String>,
    /// Run rows the baseline lacks.
    pub extra: Vec<String>,
    /// Baseline metric columns the run lacks (in any compared row).
    pub missing_columns: Vec<String>,
    /// Run metric columns the baseline lacks.
    pub extra_columns: Vec<String>,
}

impl Report {
    /// Whether anything regressed.
    pub fn regressed(&self) -> bool {
        self.moved.iter().any(|m| m.regressed)
            || !self.missing_columns.is_empty()
            || (self.rows_compared > 0 && !self.missing.is_empty())
    }

    /// A side-by-side text table of what moved and what is missing.
    pub fn render(&self) -> String {
        let mut out = format!(
            "compared {} rows, {} values\n",
            self.rows_compared, self.values_compared
        );
        if !self.moved.is_empty() {
            let w = self
                .moved
                .iter()
                .map(|m| m.point.len())
                .max()
                .unwrap_or(5)
                .max(5);
            let wm = self
                .moved
                .iter()
                .map(|m| m.metric.len())
                .max()
                .unwrap_or(6)
                .max(6);
            out += &format!(
                "{:<w$}  {:<wm$}  {:>14}  {:>14}  status\n",
                "point", "metric", "baseline", "run"
            );
            for m in &self.moved {
                let status = match (&m.not_compared, m.regressed) {
                    (Some(why), _) => why.as_str(),
                    (None, true) => "REGRESSED",
                    (None, false) => "within tolerance",
                };
                out += &format!(
                    "{:<w$}  {:<wm$}  {:>14}  {:>14}  {status}\n",
                    m.point, m.metric, m.baseline, m.run
                );
            }
        }
        for p in &self.missing {
            out += &format!("missing from run: {p}\n");
        }
        for p in &self.extra {
            out += &format!("not in baseline: {p}\n");
        }
        for c in &self.missing_columns {
            out += &format!("column missing from run: {c}\n");
        }
        for c in &self.extra_columns {
            out += &format!("column not in baseline: {c}\n");
        }
        out += if self.regressed() {
            "REGRESSION\n"
        } else {
            "no regression\n"
        };
        out
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::String(s) if s.chars().count() > 14 => {
            format!("{}…", s.chars().take(13).collect::<String>())
        }
        Value::String(s) => s.clone(),
        Value::Number(n) => crate::results::markdown::fmt_num(n.as_f64().unwrap_or(f64::NAN)),
        other => other.to_string(),
    }
}

/// One metric of one grid point against its baseline value (`old` in row `base`, `new_v` in
/// `new`): `None` when equal, else the move, regressed when outside `tol` (no tolerance: equal
/// to 1e-9 for numbers, exactly otherwise). A measured time is compared as a ratio to its run's
/// yardstick when both rows carry one: a slower machine is not a regression, a faster one
/// hides none. Over yardsticks of different workload versions the two ratios are shown and not
/// compared (neither regressed nor within tolerance: the baseline needs refreshing).
fn moved(
    point: &str,
    metric: &str,
    (base, new): (&Row, &Row),
    (old, new_v): (&Value, &Value),
    tol: Option<Tolerance>,
) -> Option<Moved> {
    let scales = (is_time_column(metric) && !is_yardstick(metric))
        .then(|| Some((yardstick(base)?, yardstick(new)?)))
        .flatten();
    let (metric, baseline, run, same, ok) = match (old.as_f64(), new_v.as_f64()) {
        (Some(o), Some(n)) => match scales {
            Some((so, sn)) if so.version != sn.version => {
                return Some(Moved {
                    point: point.to_string(),
                    metric: format!("{metric} ÷ yardstick"),
                    baseline: format!("{} (v{})", fmt_num(o / so.seconds), so.version),
                    run: format!("{} (v{})", fmt_num(n / sn.seconds), sn.version),
                    regressed: false,
                    not_compared: Some(format!(
                        "not compared: yardstick v{} in the baseline, v{} in the run",
                        so.version, sn.version
                    )),
                });
            }
            Some((so, sn)) => {
                let (o, n) = (o / so.seconds, n / sn.seconds);
                let ok = tol.is_none_or(|t| t.accepts(o, n));
                (
                    format!("{metric} ÷ {}", so.label()),
                    fmt_num(o),
                    fmt_num(n),
                    o == n,
                    ok,
                )
            }
            None => {
                let ok = match tol {
                    Some(t) => t.accepts(o, n),
                    None => (n - o).abs() <= 1e-9 * o.abs().max(1.0),
                };
                (metric.to_string(), show(old), show(new_v), o == n, ok)
            }
        },
        _ => (
            metric.to_string(),
            show(old),
            show(new_v),
            old == new_v,
            old == new_v,
        ),
    };
    (!same).then(|| Moved {
        point: point.to_string(),
        metric,
        baseline,
        run,
        regressed: !ok,
        not_compared: None,
    })
}

/// Compare run summary rows with baseline summary rows.
pub fn compare(
    baseline: &[Row],
    run: &[Row],
    axes: &[String],
    tolerance: &IndexMap<String, Tolerance>,
) -> Report {
    let point = |r: &Row| {
        axes.iter()
            .map(|a| match r.get(a) {
                Some(Value::String(s)) => format!("{a}={s}"),
                Some(v) => format!("{a}={v}"),
                None => format!("{a}=null"),
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let by_point: IndexMap<String, &Row> = run.iter().map(|r| (point(r), r)).collect();
    let base_points: std::collections::HashSet<String> = baseline.iter().map(&point).collect();
    let mut report = Report {
        extra: by_point
            .keys()
            .filter(|p| !base_points.contains(*p))
            .cloned()
            .collect(),
        ..Report::default()
    };
    let compared = |metric: &str, row: &Row| {
        !(axes.iter().any(|a| a == metric)
            || metric == "seeds"
            || crate::results::summary::is_derived(metric, row)
            || (is_measured_column(metric) && !tolerance.contains_key(metric)))
    };
    for base in baseline {
        let p = point(base);
        let Some(new) = by_point.get(&p) else {
            report.missing.push(p);
            continue;
        };
        report.rows_compared += 1;
        for metric in new.keys() {
            if !base.contains_key(metric)
                && compared(metric, new)
                && !report.extra_columns.contains(metric)
            {
                report.extra_columns.push(metric.clone());
            }
        }
        for (metric, old) in base {
            if !compared(metric, base) {
                continue;
            }
            let tol = tolerance.get(metric).copied();
            let Some(new_v) = new.get(metric) else {
                if !report.missing_columns.contains(metric) {
                    report.missing_columns.push(metric.clone());
                }
                continue;
            };
            report.values_compared += 1;
            report
                .moved
                .extend(moved(&p, metric, (base, new), (old, new_v), tol));
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: f64, secs: f64) -> Row {
        json!({"p": "2:4", "seeds": 1, "kept_gap": v, "kept_gap_std": 0.0, "seconds": secs})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn detects_moves_beyond_tolerance_only() {
        let axes = vec!["p".to_string()];
        let mut tol = IndexMap::new();
        tol.insert("kept_gap".to_string(), Tolerance::Abs(0.01));
        let same = compare(&[row(0.1, 1.0)], &[row(0.105, 9.0)], &axes, &tol);
        assert!(!same.regressed() && same.moved.len() == 1 && same.values_compared == 1);
        let worse = compare(&[row(0.1, 1.0)], &[row(0.2, 1.0)], &axes, &tol);
        assert!(worse.regressed());
        assert!(worse.render().contains("REGRESSED"));
        tol.insert("seconds".to_string(), Tolerance::Ratio(3.0));
        assert!(compare(&[row(0.1, 1.0)], &[row(0.1, 9.0)], &axes, &tol).regressed());
        let mut other = row(0.1, 1.0);
        other.insert("p".into(), json!("4:8"));
        // With yardsticks, times compare as ratios to them: 9 s on a machine 4× slower than
        // the baseline's is 2.25× the baseline's 1 s, within 3×; on an equal machine it is not.
        let cal = |r: Row, c: f64| {
            let mut r = r;
            r.insert(YARDSTICK.into(), json!(c));
            r
        };
        let slower = compare(
            &[cal(row(0.1, 1.0), 0.1)],
            &[cal(row(0.1, 9.0), 0.4)],
            &axes,
            &tol,
        );
        assert!(!slower.regressed(), "{}", slower.render());
        assert!(slower.render().contains("seconds ÷ yardstick"));
        let same_machine = compare(
            &[cal(row(0.1, 1.0), 0.1)],
            &[cal(row(0.1, 9.0), 0.1)],
            &axes,
            &tol,
        );
        assert!(same_machine.regressed());
        // Yardsticks of different workloads: the ratios are shown, not compared (9 s against
        // 1 s would regress on one machine), until the baseline is refreshed; two v2 rows
        // compare as before, labelled by their version.
        let v2 = |r: Row, c: f64| {
            let mut r = r;
            r.insert(YARDSTICK_V2.into(), json!(c));
            r
        };
        let changed = compare(
            &[cal(row(0.1, 1.0), 0.1)],
            &[v2(row(0.1, 9.0), 0.1)],
            &axes,
            &tol,
        );
        assert!(!changed.regressed(), "{}", changed.render());
        let text = changed.render();
        assert!(text.contains("10 (v1)"), "{text}");
        assert!(
            text.contains("90 (v2)  not compared: yardstick v1 in the baseline, v2 in the run"),
            "{text}"
        );
        let both_v2 = compare(
            &[v2(row(0.1, 1.0), 0.1)],
            &[v2(row(0.1, 9.0), 0.1)],
            &axes,
            &tol,
        );
        assert!(both_v2.regressed());
        assert!(both_v2.render().contains("seconds ÷ yardstick v2"));
        let disjoint = compare(&[row(0.1, 1.0)], &[other], &axes, &tol);
        assert_eq!(disjoint.rows_compared, 0);
        assert!(!disjoint.regressed());
    }

    /// Regression test: grid values longer than the display width once collapsed into one point.
    #[test]
    fn long_axis_values_stay_distinct() {
        let axes = vec!["p".to_string()];
        let r = |p: &str, v: f64| json!({"p": p, "log10": v}).as_object().unwrap().clone();
        let base = [r("transposable:4:8", 1.0), r("transposable:8:16", 2.0)];
        let report = compare(&base, &base, &axes, &IndexMap::new());
        assert_eq!((report.rows_compared, report.moved.len()), (2, 0));
    }

    #[test]
    fn rows_and_columns_missing_from_either_side_are_reported() {
        let axes = vec!["p".to_string()];
        let tol = IndexMap::new();
        let mut lacking = row(0.1, 1.0);
        lacking.remove("kept_gap");
        lacking.insert("new_metric".into(), json!(3.0));
        let r = compare(&[row(0.1, 1.0)], &[lacking], &axes, &tol);
        assert_eq!(r.missing_columns, vec!["kept_gap".to_string()]);
        assert_eq!(r.extra_columns, vec!["new_metric".to_string()]);
        assert!(r.regressed(), "a metric the run lacks is a regression");
        let mut more = row(0.1, 1.0);
        more.insert("p".into(), json!("4:8"));
        let r = compare(&[row(0.1, 1.0)], &[row(0.1, 1.0), more], &axes, &tol);
        assert_eq!(r.extra, vec!["p=4:8".to_string()]);
        assert!(
            !r.regressed(),
            "extra rows (a larger profile) are listed only"
        );
        assert!(r.render().contains("not in baseline: p=4:8"));
        // Multi-byte values are shortened by characters, never split.
        assert_eq!(show(&json!("αβγδεζηθικλμνξο")), "αβγδεζηθικλμν…");
    }
}
