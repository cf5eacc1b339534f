//! The summary of a run: rows grouped by grid point, mean and std over seeds of every numeric
//! metric (`<metric>` holds the mean, `<metric>_std` the sample std), `seeds` counts rows.
//!
//! With a spec's `[statistics]` ([`with_statistics`]), each named metric also gets
//! `<metric>_ci95` (half-width of the 95% Student-t CI of the mean) and, against the reference
//! row, `<metric>_diff` (mean − reference mean), `<metric>_diff_ci95` and `<metric>_p` (Welch's
//! two-sided p-value, uncorrected); a declared relation is tested by Spearman's ρ over cells.

use crate::error::{Error, Result};
use crate::results::markdown::fmt_num;
use crate::results::row::Row;
use crate::results::stats;
use indexmap::IndexMap;
use polars::prelude::*;
use serde_json::Value;

/// Columns that pair rows with their own reference rows (a spec's `[statistics] paired`).
#[derive(Debug, Clone, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Paired {
    /// Column naming each row.
    pub key: String,
    /// Column naming the row a row is compared with (null: none).
    pub versus: String,
}

/// A relation `x → y` tested by Spearman's ρ over cells, separately for each value of `by`.
#[derive(Debug, Clone, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Correlate {
    /// Column of the explanatory value (e.g. `log10_mask_diversity`).
    pub x: String,
    /// Column of the outcome (e.g. `test_accuracy`).
    pub y: String,
    /// Column whose values split the cells into groups (e.g. `target_sparsity`); none: one group.
    pub by: Option<String>,
}

/// Resolved `[statistics]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Statistics {
    /// Metrics with CI, difference to the reference and p-value.
    pub metrics: Vec<String>,
    /// The reference row's axis values (empty: no comparison).
    pub reference: Vec<(String, String)>,
    /// The rank correlation to test.
    pub correlate: Option<Correlate>,
    /// Per-row references.
    pub paired: Option<Paired>,
}

/// Suffixes of the columns derived from a metric's per-seed values: its spread, the difference
/// to a reference row and the paired test against the `versus` row (regression compares the
/// metric itself, under its tolerance, not these).
pub const DERIVED_SUFFIXES: [&str; 8] = [
    "_std",
    "_ci95",
    "_diff",
    "_diff_ci95",
    "_p",
    "_vs_diff",
    "_vs_diff_ci95",
    "_vs_p",
];

/// Whether `column` of `row` is derived from another metric of the row (`<metric><suffix>`).
pub fn is_derived(column: &str, row: &Row) -> bool {
    DERIVED_SUFFIXES.iter().any(|suffix| {
        column
            .strip_suffix(suffix)
            .is_some_and(|base| row.contains_key(base))
    })
}

/// Columns that are bookkeeping, not metrics or keys.
pub const BOOKKEEPING: [&str; 3] = ["index", "cell", "seed"];

/// Group `cells` by `keys` (grid axes) plus every other non-numeric column, in first-seen order,
/// and aggregate numeric columns: `seeds` (rows in the group), `<metric>` (the mean of its
/// non-null values, null without any) and `<metric>_std` (their sample std, 0 with fewer than
/// two). Eager and by hand: a summary has a few hundred rows, and polars' lazy engine was a
/// large share of the cold build for this one group-by.
pub fn summarise(cells: &DataFrame, axes: &[String]) -> Result<DataFrame> {
    let mut keys: Vec<String> = axes.to_vec();
    let mut metrics: Vec<String> = Vec::new();
    for column in cells.columns() {
        let name = column.name().to_string();
        if BOOKKEEPING.contains(&name.as_str()) || keys.contains(&name) {
            continue;
        }
        if column.dtype().is_primitive_numeric() {
            metrics.push(name);
        } else {
            keys.push(name);
        }
    }
    // Groups in first-seen order: each row's key is its key columns' values as text (the
    // value's type included, so a null and the string "null" differ).
    let key_columns: Vec<&Column> = keys
        .iter()
        .map(|k| cells.column(k))
        .collect::<PolarsResult<_>>()
        .map_err(Error::table("summarising cells"))?;
    let mut groups: IndexMap<Vec<String>, Vec<usize>> = IndexMap::new();
    for i in 0..cells.height() {
        let key = key_columns
            .iter()
            .map(|c| c.get(i).map(|v| format!("{v:?}")).unwrap_or_default())
            .collect();
        groups.entry(key).or_default().push(i);
    }
    let first: Vec<IdxSize> = groups.values().map(|rows| rows[0] as IdxSize).collect();
    let first = IdxCa::from_vec("first".into(), first);
    let mut columns: Vec<Column> = Vec::with_capacity(keys.len() + 1 + 2 * metrics.len());
    for c in &key_columns {
        columns.push(c.take(&first).map_err(Error::table("summarising cells"))?);
    }
    let seeds: Vec<i64> = groups.values().map(|rows| rows.len() as i64).collect();
    columns.push(Column::new("seeds".into(), seeds));
    for m in &metrics {
        let values = cells
            .column(m)
            .and_then(|c| c.cast(&DataType::Float64))
            .map_err(Error::table(format!("summarising column {m}")))?;
        let values = values
            .f64()
            .map_err(Error::table(format!("summarising column {m}")))?;
        let (mut means, mut stds) = (Vec::new(), Vec::new());
        for rows in groups.values() {
            let present: Vec<f64> = rows.iter().filter_map(|&i| values.get(i)).collect();
            let (mean, std) = mean_and_std(&present);
            means.push(mean);
            stds.push(std);
        }
        columns.push(Column::new(m.as_str().into(), means));
        columns.push(Column::new(format!("{m}_std").into(), stds));
    }
    DataFrame::new(groups.len(), columns).map_err(Error::table("summarising cells"))
}

/// The mean (`None` without values) and the sample standard deviation (`n − 1` in the
/// denominator; 0 with fewer than two values) of `values`.
fn mean_and_std(values: &[f64]) -> (Option<f64>, f64) {
    if values.is_empty() {
        return (None, 0.0);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (Some(mean), 0.0);
    }
    // Welford's update: equal values give exactly 0 (a two-pass sum around a rounded mean
    // need not).
    let (mut running, mut m2) = (0.0, 0.0);
    for (k, &v) in values.iter().enumerate() {
        let delta = v - running;
        running += delta / (k + 1) as f64;
        m2 += delta * (v - running);
    }
    (Some(mean), (m2 / (n - 1.0)).sqrt())
}

/// What [`with_statistics`] adds beyond the per-row columns.
#[derive(Debug, Default)]
pub struct StatisticsReport {
    /// One row per group of the declared correlation: `by` value, `x`, `y`, `n`,
    /// `spearman_rho`, `p`.
    pub correlations: Vec<Row>,
    /// Sentences for summary.md: which rows differ from the reference, and the smallest effect
    /// the design could detect.
    pub notes: Vec<String>,
}

fn key_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "null".into(),
        Some(other) => other.to_string(),
    }
}

fn number(v: f64) -> Value {
    serde_json::Number::from_f64(v)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

fn point_label(axes: &[String], row: &Row) -> String {
    axes.iter()
        .map(|a| key_string(row.get(a)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Welch's test of one metric between `rows` (one grid point's cells) and the cells whose
/// `key` column is the rows' `versus` value.
fn paired_welch(rows: &[&Row], cells: &[Row], pr: &Paired, m: &str) -> Option<stats::Welch> {
    let v = rows.first()?.get(&pr.versus)?.as_str()?;
    let paired: Vec<&Row> = cells
        .iter()
        .filter(|c| c.get(&pr.key).and_then(Value::as_str) == Some(v))
        .collect();
    let (xs, refs) = (metric_values(rows, m), metric_values(&paired, m));
    if refs.is_empty() {
        return None;
    }
    stats::welch(&xs, &refs)
}

/// Add the `[statistics]` columns to summary rows (grouped by `axes`), from the per-seed cells,
/// and the report's sentences: each row against its paired row, each row against the reference
/// with the design's power, and the declared rank correlation.
pub fn with_statistics(
    summary: &[Row],
    cells: &[Row],
    axes: &[String],
    st: &Statistics,
) -> (Vec<Row>, StatisticsReport) {
    let g = Groups::new(cells, axes, st);
    let out = summary
        .iter()
        .map(|row| g.row_with_statistics(row))
        .collect();
    let mut report = StatisticsReport::default();
    if let Some(pr) = &st.paired {
        report.notes.extend(g.paired_notes(pr));
    }
    report.notes.extend(g.reference_notes());
    if let Some(c) = &st.correlate {
        let (rows, notes) = g.correlations(c);
        report.correlations = rows;
        report.notes.extend(notes);
    }
    (out, report)
}

/// The values of metric `m` over `rows` (rows without it skipped).
fn metric_values(rows: &[&Row], m: &str) -> Vec<f64> {
    rows.iter()
        .filter_map(|r| r.get(m).and_then(Value::as_f64))
        .collect()
}

/// The per-seed cells of one statistics pass, grouped by grid point, with the reference's.
struct Groups<'a> {
    axes: &'a [String],
    st: &'a Statistics,
    cells: &'a [Row],
    /// Grid point (the axes' values) → its cells, in first-seen order.
    groups: IndexMap<Vec<String>, Vec<&'a Row>>,
    /// The cells of the reference row.
    reference_cells: Vec<&'a Row>,
}

impl<'a> Groups<'a> {
    fn new(cells: &'a [Row], axes: &'a [String], st: &'a Statistics) -> Self {
        let mut g = Groups {
            axes,
            st,
            cells,
            groups: IndexMap::new(),
            reference_cells: Vec::new(),
        };
        for c in cells {
            g.groups.entry(g.point(c)).or_default().push(c);
        }
        g.reference_cells = cells.iter().filter(|c| g.is_reference(c)).collect();
        g
    }

    /// A row's grid point: its values of the axes.
    fn point(&self, r: &Row) -> Vec<String> {
        self.axes.iter().map(|a| key_string(r.get(a))).collect()
    }

    /// Whether `r` is (a cell of) the reference row.
    fn is_reference(&self, r: &Row) -> bool {
        !self.st.reference.is_empty()
            && self
                .st
                .reference
                .iter()
                .all(|(a, v)| key_string(r.get(a.as_str())) == *v)
    }

    /// A summary row with its CI column after each metric's `_std`, the Welch columns against
    /// the reference, and those against its paired row.
    fn row_with_statistics(&self, row: &Row) -> Row {
        let st = self.st;
        let members: &[&Row] = self
            .groups
            .get(&self.point(row))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let mut new = Row::new();
        for (k, v) in row {
            new.insert(k.clone(), v.clone());
            let Some(m) = k
                .strip_suffix("_std")
                .filter(|m| st.metrics.iter().any(|x| x == m))
            else {
                continue;
            };
            let xs = metric_values(members, m);
            let ci = stats::mean_ci(&xs).map_or(f64::NAN, |c| c.half_width);
            new.insert(format!("{m}_ci95"), number(ci));
            if st.reference.is_empty() {
                continue;
            }
            let w = (!self.is_reference(row))
                .then(|| stats::welch(&xs, &metric_values(&self.reference_cells, m)))
                .flatten();
            new.insert(format!("{m}_diff"), number(w.map_or(f64::NAN, |w| w.diff)));
            new.insert(
                format!("{m}_diff_ci95"),
                number(w.map_or(f64::NAN, |w| w.half_width)),
            );
            new.insert(format!("{m}_p"), number(w.map_or(f64::NAN, |w| w.p)));
        }
        if let Some(pr) = &st.paired {
            for m in &st.metrics {
                let Some(w) = paired_welch(members, self.cells, pr, m) else {
                    continue;
                };
                new.insert(format!("{m}_vs_diff"), number(w.diff));
                new.insert(format!("{m}_vs_diff_ci95"), number(w.half_width));
                new.insert(format!("{m}_vs_p"), number(w.p));
            }
        }
        new
    }

    /// Per metric, one sentence with each row against its paired row.
    fn paired_notes(&self, pr: &Paired) -> Vec<String> {
        let mut notes = Vec::new();
        for m in &self.st.metrics {
            let mut lines = Vec::new();
            for rows in self.groups.values() {
                let Some(v) = rows[0].get(&pr.versus).and_then(Value::as_str) else {
                    continue;
                };
                // A metric the paired rows do not have (a kept_gap of standard N:M rows).
                let has = |r: &Row| r.get(m).and_then(Value::as_f64).is_some();
                let paired_has = self
                    .cells
                    .iter()
                    .any(|c| c.get(&pr.key).and_then(Value::as_str) == Some(v) && has(c));
                if !paired_has {
                    continue;
                }
                lines.push(match paired_welch(rows, self.cells, pr, m) {
                    Some(w) => format!(
                        "{} against {v}: {}{} ± {} (p = {}{})",
                        point_label(self.axes, rows[0]),
                        if w.diff > 0.0 { "+" } else { "" },
                        fmt_num(w.diff),
                        fmt_num(w.half_width),
                        fmt_num(w.p),
                        if w.p < 0.05 {
                            ", differs"
                        } else {
                            ", cannot be told apart"
                        }
                    ),
                    None => format!(
                        "{} against {v}: not testable (too few seeds, or no such row)",
                        point_label(self.axes, rows[0])
                    ),
                });
            }
            if !lines.is_empty() {
                notes.push(format!(
                    "{m}, each row against its paired row (difference with its 95% CI; Welch's t-test at 5%, uncorrected): {}.",
                    lines.join("; ")
                ));
            }
        }
        notes
    }

    /// Per metric: which rows differ from the reference, and what the design could have
    /// detected (without a reference, the design alone).
    fn reference_notes(&self) -> Vec<String> {
        let (st, axes) = (self.st, self.axes);
        let mut notes = Vec::new();
        for m in &st.metrics {
            let per_row: Vec<(String, Vec<f64>, bool)> = self
                .groups
                .values()
                .map(|rows| {
                    (
                        point_label(axes, rows[0]),
                        metric_values(rows, m),
                        self.is_reference(rows[0]),
                    )
                })
                .collect();
            let n_min = per_row.iter().map(|(_, v, _)| v.len()).min().unwrap_or(0);
            let variances: Vec<f64> = per_row
                .iter()
                .filter_map(|(_, v, _)| {
                    stats::mean_ci(v).filter(|c| c.n > 1).map(|c| c.std * c.std)
                })
                .collect();
            let pooled = (variances.iter().sum::<f64>() / variances.len().max(1) as f64).sqrt();
            let mde = stats::min_detectable_effect(pooled, n_min, n_min);
            let design = match mde {
                Some(e) => format!(
                    "with {n_min} seeds per row and a pooled std of {}, a difference of {} or more is detected at the 5% level with 80% power",
                    fmt_num(pooled),
                    fmt_num(e)
                ),
                None => format!("with {n_min} seed(s) per row no difference can be tested"),
            };
            if st.reference.is_empty() {
                notes.push(format!("{m}: {design}."));
                continue;
            }
            let reference = point_label(
                axes,
                &st.reference.iter().fold(Row::new(), |mut r, (a, v)| {
                    r.insert(a.clone(), Value::String(v.clone()));
                    r
                }),
            );
            let ref_values = metric_values(&self.reference_cells, m);
            let (mut differ, mut tie) = (Vec::new(), Vec::new());
            for (label, xs, is_ref) in &per_row {
                if *is_ref {
                    continue;
                }
                match stats::welch(xs, &ref_values) {
                    Some(w) if w.p < 0.05 => differ.push(format!(
                        "{label} ({}{}, p = {})",
                        if w.diff > 0.0 { "+" } else { "" },
                        fmt_num(w.diff),
                        fmt_num(w.p)
                    )),
                    _ => tie.push(label.clone()),
                }
            }
            let differ_text = if differ.is_empty() {
                "no row differs".to_string()
            } else {
                format!(
                    "{} of {} rows differ: {}",
                    differ.len(),
                    differ.len() + tie.len(),
                    differ.join("; ")
                )
            };
            let tie_text = if tie.is_empty() {
                String::new()
            } else {
                format!(
                    " Cannot be told apart from the reference: {}.",
                    tie.join("; ")
                )
            };
            notes.push(format!(
                "{m} against the reference ({reference}), Welch's t-test at 5% (uncorrected): {differ_text}.{tie_text} Power: {design}."
            ));
        }
        notes
    }

    /// The declared rank correlation, per group: its rows and sentences. The unit is the grid
    /// point, where x varies: seeds of one point repeat its x (a structure's diversity, a |W|
    /// mask), so they are averaged into one point rather than counted as independent ones.
    fn correlations(&self, c: &Correlate) -> (Vec<Row>, Vec<String>) {
        let mut points: IndexMap<String, (String, Vec<f64>, Vec<f64>)> = IndexMap::new();
        for cell in self.cells.iter().filter(|c| !self.is_reference(c)) {
            let (Some(x), Some(y)) = (
                cell.get(&c.x).and_then(Value::as_f64),
                cell.get(&c.y).and_then(Value::as_f64),
            ) else {
                continue;
            };
            let g =
                c.by.as_ref()
                    .map_or_else(|| "all".to_string(), |b| key_string(cell.get(b)));
            let e = points
                .entry(format!("{g}\u{1f}{}", point_label(self.axes, cell)))
                .or_insert_with(|| (g, Vec::new(), Vec::new()));
            e.1.push(x);
            e.2.push(y);
        }
        let mut by_group: IndexMap<String, (Vec<f64>, Vec<f64>, usize)> = IndexMap::new();
        for (g, xs, ys) in points.into_values() {
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            let e = by_group.entry(g).or_default();
            e.0.push(mean(&xs));
            e.1.push(mean(&ys));
            e.2 += xs.len();
        }
        let (mut rows, mut notes) = (Vec::new(), Vec::new());
        for (g, (xs, ys, n_cells)) in &by_group {
            let sp = stats::spearman(xs, ys);
            let mut distinct: Vec<f64> = xs.clone();
            distinct.sort_by(f64::total_cmp);
            distinct.dedup();
            let mut r = Row::new();
            r.insert(
                c.by.clone().unwrap_or_else(|| "group".into()),
                Value::String(g.clone()),
            );
            r.insert("x".into(), Value::String(c.x.clone()));
            r.insert("y".into(), Value::String(c.y.clone()));
            r.insert("n".into(), Value::from(xs.len()));
            r.insert("distinct_x".into(), Value::from(distinct.len()));
            r.insert("cells".into(), Value::from(*n_cells));
            r.insert(
                "spearman_rho".into(),
                number(sp.map_or(f64::NAN, |s| s.rho)),
            );
            r.insert("p".into(), number(sp.map_or(f64::NAN, |s| s.p)));
            notes.push(match sp {
                Some(s) => format!(
                    "Spearman ρ({}, {}) at {} = {g}: {} over n = {} grid points ({} distinct x; each the mean of its seeds, {} cells in all) (p = {}){}.",
                    c.x,
                    c.y,
                    c.by.as_deref().unwrap_or("group"),
                    fmt_num(s.rho),
                    s.n,
                    distinct.len(),
                    n_cells,
                    fmt_num(s.p),
                    if s.p < 0.05 {
                        ""
                    } else {
                        ": no significant rank correlation"
                    }
                ),
                None => format!(
                    "Spearman ρ({}, {}) at {} = {g}: not defined ({} grid points, {} distinct x; it needs 3 points and neither side constant).",
                    c.x,
                    c.y,
                    c.by.as_deref().unwrap_or("group"),
                    xs.len(),
                    distinct.len()
                ),
            });
            rows.push(r);
        }
        (rows, notes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::table::{frame_from_rows, rows_from_frame};
    use serde_json::json;

    #[test]
    fn mean_and_std_over_seeds() -> Result<()> {
        let rows: Vec<_> = [(0, "a", 1.0), (1, "a", 3.0), (0, "b", 5.0)]
            .iter()
            .map(|(s, p, v)| {
                json!({"cell": "k", "p": p, "seed": s, "v": v, "note": "n"})
                    .as_object()
                    .unwrap()
                    .clone()
            })
            .collect();
        let df = summarise(&frame_from_rows(&rows)?, &["p".to_string()])?;
        let out = rows_from_frame(&df);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0]["p"], json!("a"));
        assert_eq!(out[0]["seeds"], json!(2));
        assert_eq!(out[0]["v"], json!(2.0));
        assert!((out[0]["v_std"].as_f64().unwrap() - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(out[1]["v_std"], json!(0.0));
        Ok(())
    }

    #[test]
    fn statistics_compare_rows_with_the_reference_and_correlate() {
        // Three setups × 5 seeds: the reference, one equal in distribution, one shifted by +1.
        let noise = [-0.2, -0.1, 0.0, 0.1, 0.2];
        let mut cells = Vec::new();
        for (setup, shift, x) in [("ref", 0.0, 0.0), ("same", 0.0, 1.0), ("up", 1.0, 2.0)] {
            for (seed, e) in noise.iter().enumerate() {
                cells.push(
                    json!({"cell": format!("{setup}/{seed}"), "setup": setup, "seed": seed,
                           "acc": 10.0 + shift + e, "md": x, "level": "a"})
                    .as_object()
                    .unwrap()
                    .clone(),
                );
            }
        }
        let axes = vec!["setup".to_string()];
        let summary =
            rows_from_frame(&summarise(&frame_from_rows(&cells).unwrap(), &axes).unwrap());
        let st = Statistics {
            metrics: vec!["acc".into()],
            reference: vec![("setup".into(), "ref".into())],
            correlate: Some(Correlate {
                x: "md".into(),
                y: "acc".into(),
                by: Some("level".into()),
            }),
            paired: None,
        };
        let (rows, report) = with_statistics(&summary, &cells, &axes, &st);
        // CI half-width: t(0.975, 4) · std/√5 with std = √0.025.
        let half = 2.776445 * (0.025f64 / 5.0).sqrt();
        assert!((rows[0]["acc_ci95"].as_f64().unwrap() - half).abs() < 1e-5);
        assert_eq!(
            rows[0]["acc_diff"],
            Value::Null,
            "the reference has no difference"
        );
        assert!(rows[1]["acc_diff"].as_f64().unwrap().abs() < 1e-12);
        assert!(rows[1]["acc_p"].as_f64().unwrap() > 0.99);
        assert!((rows[2]["acc_diff"].as_f64().unwrap() - 1.0).abs() < 1e-12);
        assert!(rows[2]["acc_p"].as_f64().unwrap() < 1e-4);
        // The columns sit after the metric's std, in this order.
        let keys: Vec<&String> = rows[2].keys().collect();
        let at = keys.iter().position(|k| *k == "acc_std").unwrap();
        assert_eq!(
            keys[at + 1..at + 5],
            ["acc_ci95", "acc_diff", "acc_diff_ci95", "acc_p"]
        );
        assert!(
            report.notes[0].contains("1 of 2 rows differ: up"),
            "{}",
            report.notes[0]
        );
        assert!(
            report.notes[0].contains("told apart from the reference: same"),
            "{}",
            report.notes[0]
        );
        // Issue 21 R11: the 10 non-reference cells are 2 grid points (seeds repeat x), so the
        // correlation has n = 2 (once 10, with a p-value that counted repeats) and is undefined.
        assert_eq!(report.correlations.len(), 1);
        assert_eq!(report.correlations[0]["n"], json!(2));
        assert_eq!(report.correlations[0]["distinct_x"], json!(2));
        assert_eq!(report.correlations[0]["cells"], json!(10));
        assert!(
            report.correlations[0]["spearman_rho"]
                .as_f64()
                .is_none_or(f64::is_nan)
        );
        assert!(is_derived("acc_ci95", &rows[2]) && !is_derived("acc", &rows[2]));
    }

    /// The paired test's columns are derived from their metric, so regression compares the
    /// metric under its tolerance rather than the test's p-value to the last bit.
    #[test]
    fn paired_test_columns_are_derived() {
        let row =
            json!({"ppl": 10.0, "ppl_vs_diff": 1.0, "ppl_vs_diff_ci95": 0.5, "ppl_vs_p": 0.01})
                .as_object()
                .unwrap()
                .clone();
        for c in ["ppl_vs_diff", "ppl_vs_diff_ci95", "ppl_vs_p"] {
            assert!(is_derived(c, &row), "{c}");
        }
        assert!(!is_derived("ppl", &row) && !is_derived("loss_vs_p", &row));
    }

    #[test]
    fn paired_rows_are_tested_against_the_row_their_versus_names() {
        // Two rows, three seeds each: `t` names `n` as its pair and is 1.0 higher.
        let mut cells = Vec::new();
        for (row, base, versus) in [("n", 10.0, None), ("t", 11.0, Some("n"))] {
            for (i, noise) in [-0.1, 0.0, 0.1].iter().enumerate() {
                let mut r = Row::new();
                r.insert("structure".into(), Value::String(row.into()));
                r.insert("seed".into(), Value::from(i));
                r.insert("ppl".into(), number(base + noise));
                r.insert("key".into(), Value::String(row.into()));
                r.insert(
                    "versus".into(),
                    versus.map_or(Value::Null, |v| Value::String(v.into())),
                );
                cells.push(r);
            }
        }
        let axes = vec!["structure".to_string()];
        let summary =
            rows_from_frame(&summarise(&frame_from_rows(&cells).unwrap(), &axes).unwrap());
        let st = Statistics {
            metrics: vec!["ppl".into()],
            reference: vec![],
            correlate: None,
            paired: Some(Paired {
                key: "key".into(),
                versus: "versus".into(),
            }),
        };
        let (rows, report) = with_statistics(&summary, &cells, &axes, &st);
        let t = rows.iter().find(|r| r["structure"] == "t").unwrap();
        assert!((t["ppl_vs_diff"].as_f64().unwrap() - 1.0).abs() < 1e-9);
        assert!(t["ppl_vs_p"].as_f64().unwrap() < 0.01);
        let n = rows.iter().find(|r| r["structure"] == "n").unwrap();
        assert!(n.get("ppl_vs_p").is_none());
        assert!(
            report
                .notes
                .iter()
                .any(|l| l.contains("t against n: +1") && l.contains("differs"))
        );
    }
}
