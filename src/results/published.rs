//! Published values beside ours: the numbers the papers print for cells masklab computes, each
//! with where it is printed, set against the run's own value.
//!
//! Problem: a reproduction is only read as one when the paper's number sits next to ours. A spec
//! carries `[[published]]` entries — paper, place (table, figure or section, page), the words the
//! number is read from, the metric, the grid point(s) it applies to (`at`), and either a `value`
//! or a `range` (for "1–10%"-style statements) — and every run writes `published.csv` and a
//! "Published values beside ours" section in summary.md: paper value, masklab value, their
//! ratio (a value) or whether ours lies within, below or above (a range).
//!
//! Guarantee: nothing is shown that the spec does not carry — no entry, no row; an entry whose
//! grid point this run (profile) does not have is listed as "not in this run" rather than
//! dropped, so a missing comparison is visible. An entry may compare a ratio of two rows
//! (`speedup_over`: the partner row's metric over this row's, e.g. a solver's wall time against
//! the general LP's) and may read the summary or the rank-correlation table
//! (`table = "correlations"`). Cost: one pass over the rows per entry.

use crate::error::{Error, Result};
use crate::results::markdown::fmt_num;
use crate::results::row::Row;
use crate::results::table::{cell_text, finite};
use crate::toml_value::toml_scalars;
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value;

/// One `[[published]]` entry of a spec, as written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Published {
    /// The paper: authors, year, and the version read (e.g. `arXiv:2505.23949v1`).
    pub paper: String,
    /// Where in it: table, figure or section, and page.
    #[serde(rename = "where")]
    pub location: String,
    /// The words the number is read from, as printed.
    pub quote: String,
    /// The column of the summary (or correlation table) it is compared with.
    pub metric: String,
    /// Which table of the run: the summary (default) or the rank correlations.
    #[serde(default)]
    pub table: PublishedTable,
    /// The grid point(s): column → value or list of values; every matching row is compared.
    #[serde(default)]
    pub at: IndexMap<String, toml::Value>,
    /// The paper's number.
    pub value: Option<f64>,
    /// The paper's range `[low, high]`, for statements such as "1–10% error".
    pub range: Option<[f64; 2]>,
    /// Compare a ratio: the metric of the row with these columns changed, over this row's.
    #[serde(default)]
    pub speedup_over: IndexMap<String, String>,
    /// What differs between the paper's setting and ours (hardware, sizes, definitions).
    pub note: Option<String>,
}

/// The run table an entry reads.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PublishedTable {
    /// `summary.parquet`: one row per grid point.
    #[default]
    Summary,
    /// `correlations.csv`: one row per group of the `[statistics] correlate` test.
    Correlations,
}

impl Published {
    /// A short name for messages: `[[published]] #k (paper)`.
    fn name(&self, k: usize) -> String {
        format!("[[published]] #{} ({})", k + 1, self.paper)
    }

    /// The `at` values as strings, each a list (checked by [`Published::check`]).
    fn wanted(&self) -> Vec<(String, Vec<String>)> {
        self.at
            .iter()
            .map(|(k, v)| (k.clone(), toml_scalars(v).unwrap_or_default()))
            .collect()
    }

    /// Check what can be checked before a run: text fields present, exactly one of `value` and
    /// `range`, and `at`/`speedup_over` naming columns the table has (`summary_columns`: the
    /// grid axes; `correlation_columns`: empty when the spec tests no correlation).
    /// The error names the spec file.
    pub fn check(
        entries: &[Published],
        summary_columns: &[String],
        correlation_columns: &[String],
        spec: &std::path::Path,
    ) -> Result<()> {
        Published::check_all(entries, summary_columns, correlation_columns).map_err(|message| {
            Error::Spec {
                path: spec.to_path_buf(),
                line: None,
                message,
            }
        })
    }

    fn check_all(
        entries: &[Published],
        summary_columns: &[String],
        correlation_columns: &[String],
    ) -> std::result::Result<(), String> {
        for (k, e) in entries.iter().enumerate() {
            let name = e.name(k);
            for (field, text) in [
                ("paper", &e.paper),
                ("where", &e.location),
                ("quote", &e.quote),
                ("metric", &e.metric),
            ] {
                if text.trim().is_empty() {
                    return Err(format!("{name}: `{field}` is empty"));
                }
            }
            match (e.value, e.range) {
                (Some(v), None) if v.is_finite() => {}
                (None, Some([lo, hi])) if lo.is_finite() && hi.is_finite() && lo <= hi => {}
                (Some(_), Some(_)) => {
                    return Err(format!("{name}: give `value` or `range`, not both"));
                }
                (None, None) => return Err(format!("{name}: give `value` or `range`")),
                (Some(v), None) => return Err(format!("{name}: value {v} is not finite")),
                (None, Some([lo, hi])) => {
                    return Err(format!(
                        "{name}: range [{lo}, {hi}] must be finite with low ≤ high"
                    ));
                }
            }
            let columns = match e.table {
                PublishedTable::Summary => summary_columns,
                PublishedTable::Correlations if correlation_columns.is_empty() => {
                    return Err(format!(
                        "{name}: table = \"correlations\" but the spec has no [statistics] correlate"
                    ));
                }
                PublishedTable::Correlations => correlation_columns,
            };
            for key in e.at.keys() {
                if !columns.contains(key) {
                    return Err(format!(
                        "{name}: at.{key} is not a column to match on (columns: {})",
                        columns.join(", ")
                    ));
                }
            }
            for (key, value) in &e.at {
                if toml_scalars(value).is_none_or(|v| v.is_empty()) {
                    return Err(format!(
                        "{name}: at.{key} must be a value or a non-empty list of values"
                    ));
                }
            }
            if !e.speedup_over.is_empty() && e.table == PublishedTable::Correlations {
                return Err(format!(
                    "{name}: speedup_over compares two summary rows, not correlations"
                ));
            }
            for key in e.speedup_over.keys() {
                if !summary_columns.contains(key) {
                    return Err(format!(
                        "{name}: speedup_over.{key} is not a grid axis (axes: {})",
                        summary_columns.join(", ")
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Whether a row's value is the wanted one: strings equal, numbers equal as numbers.
fn same(v: Option<&Value>, wanted: &str) -> bool {
    match v {
        Some(Value::String(s)) => s == wanted,
        Some(Value::Number(n)) => match (n.as_f64(), wanted.parse::<f64>()) {
            (Some(a), Ok(b)) => a == b,
            _ => false,
        },
        Some(Value::Bool(b)) => b.to_string() == wanted,
        _ => false,
    }
}

/// Whether row `r` has, in every listed column, one of the listed values.
fn matches(r: &Row, want: &[(String, Vec<String>)]) -> bool {
    want.iter()
        .all(|(col, values)| values.iter().any(|w| same(r.get(col), w)))
}

/// masklab's value for entry `e` at `row`: the metric itself, or with `speedup_over` the
/// metric of the partner row (this row's keys, with the entry's values where it gives them)
/// over this row's (`None` when either is missing or this one is not positive).
fn ours(e: &Published, row: &Row, rows: &[Row], keys: &[String]) -> Option<f64> {
    if e.speedup_over.is_empty() {
        return finite(row, &e.metric);
    }
    let partner_wants: Vec<(String, Vec<String>)> = keys
        .iter()
        .map(|key| {
            let v = e
                .speedup_over
                .get(key)
                .cloned()
                .unwrap_or_else(|| cell_text(row.get(key)));
            (key.clone(), vec![v])
        })
        .collect();
    let partner = rows.iter().find(|r| matches(r, &partner_wants));
    match (
        partner.and_then(|p| finite(p, &e.metric)),
        finite(row, &e.metric),
    ) {
        (Some(p), Some(o)) if o > 0.0 => Some(p / o),
        _ => None,
    }
}

/// Compare every entry with the run's rows. `keys` are the columns that name a summary row (the
/// grid axes) and `correlation_keys` those of a correlation row; both name the grid point in the
/// output. Returns one row per (entry, matching run row), or one "not in this run" row for an
/// entry that matches none. Fails, naming the entry, when its metric is not a column of a
/// table that has rows.
pub fn compare(
    entries: &[Published],
    summary: &[Row],
    correlations: &[Row],
    keys: &[String],
    correlation_keys: &[String],
) -> Result<Vec<Row>> {
    let mut out = Vec::new();
    for (k, e) in entries.iter().enumerate() {
        let (rows, keys) = match e.table {
            PublishedTable::Summary => (summary, keys),
            PublishedTable::Correlations => (correlations, correlation_keys),
        };
        if !rows.is_empty() && !rows.iter().any(|r| r.contains_key(&e.metric)) {
            let columns: Vec<&String> = rows[0].keys().collect();
            return Err(Error::invalid(
                "metric",
                &e.metric,
                format!(
                    "{}: not a column of the run's {} (columns: {})",
                    e.name(k),
                    match e.table {
                        PublishedTable::Summary => "summary",
                        PublishedTable::Correlations => "correlations",
                    },
                    columns
                        .iter()
                        .map(|c| c.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let wanted = e.wanted();
        let matched: Vec<&Row> = rows.iter().filter(|r| matches(r, &wanted)).collect();
        // A listed value no row has is said, as a whole entry matching nothing is.
        let mut missing: Vec<String> = Vec::new();
        for (col, values) in &wanted {
            for v in values {
                if !matched.is_empty() && !matched.iter().any(|r| same(r.get(col), v)) {
                    missing.push(format!("{col}={v}"));
                }
            }
        }
        for row in &matched {
            let ours = ours(e, row, rows, keys);
            let point = keys
                .iter()
                .filter(|key| row.contains_key(key.as_str()))
                .map(|key| format!("{key}={}", cell_text(row.get(key))))
                .collect::<Vec<_>>()
                .join(", ");
            out.push(result_row(k, e, point, ours));
        }
        for point in missing {
            let mut row = result_row(k, e, point, None);
            row.insert("verdict".into(), Value::from("not in this run"));
            out.push(row);
        }
        if matched.is_empty() {
            let point = wanted
                .iter()
                .map(|(c, v)| format!("{c}={}", v.join("|")))
                .collect::<Vec<_>>()
                .join(", ");
            let mut row = result_row(k, e, point, None);
            row.insert("verdict".into(), Value::from("not in this run"));
            out.push(row);
        }
    }
    Ok(out)
}

fn result_row(k: usize, e: &Published, point: String, ours: Option<f64>) -> Row {
    let metric = if e.speedup_over.is_empty() {
        e.metric.clone()
    } else {
        let over = e
            .speedup_over
            .iter()
            .map(|(c, v)| format!("{c}={v}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!("{} speedup over {over}", e.metric)
    };
    let (low, high) = match (e.value, e.range) {
        (Some(v), _) => (v, v),
        (None, Some([lo, hi])) => (lo, hi),
        (None, None) => (f64::NAN, f64::NAN),
    };
    let ratio = match (e.value, ours) {
        (Some(v), Some(o)) if v != 0.0 => Some(o / v),
        _ => None,
    };
    let verdict = match (e.value, ours) {
        (_, None) => "no value in this run".to_string(),
        (Some(v), Some(o)) if o < v => "below the paper's".into(),
        (Some(v), Some(o)) if o > v => "above the paper's".into(),
        (Some(_), Some(_)) => "equal to the paper's".into(),
        (None, Some(o)) if o < low => "below the range".into(),
        (None, Some(o)) if o > high => "above the range".into(),
        (None, Some(_)) => "within the range".into(),
    };
    let mut row = Row::new();
    row.insert("entry".into(), Value::from(k as u64 + 1));
    row.insert("paper".into(), Value::from(e.paper.clone()));
    row.insert("where".into(), Value::from(e.location.clone()));
    row.insert("metric".into(), Value::from(metric));
    row.insert("point".into(), Value::from(point));
    row.insert("paper_low".into(), Value::from(low));
    row.insert("paper_high".into(), Value::from(high));
    row.insert(
        "masklab".into(),
        ours.map(Value::from).unwrap_or(Value::Null),
    );
    row.insert(
        "ratio".into(),
        ratio.map(Value::from).unwrap_or(Value::Null),
    );
    row.insert("verdict".into(), Value::from(verdict));
    row
}

/// The heading of summary.md's section (also where it is found again to be replaced).
pub const HEADING: &str = "\n## Published values beside ours\n";

/// summary.md's section: the comparison table, then each entry's quote and note.
pub fn markdown_section(entries: &[Published], rows: &[Row]) -> String {
    if entries.is_empty() {
        return String::new();
    }
    let mut md = format!(
        "{HEADING}\nEach paper value is printed where the entry says; masklab's is this run's \
         (a range: within, below or above it). Entries and sources: the spec's `[[published]]`.\n\n\
         | # | paper | where | metric | grid point | paper | masklab | masklab ÷ paper | verdict |\n\
         |---|---|---|---|---|---|---|---|---|\n"
    );
    for r in rows {
        let text = |c: &str| r.get(c).and_then(Value::as_str).unwrap_or("").to_string();
        let lo = finite(r, "paper_low").unwrap_or(f64::NAN);
        let hi = finite(r, "paper_high").unwrap_or(f64::NAN);
        let paper = if lo == hi {
            fmt_num(lo)
        } else {
            format!("{} – {}", fmt_num(lo), fmt_num(hi))
        };
        let ours = finite(r, "masklab")
            .map(fmt_num)
            .unwrap_or_else(|| "—".into());
        let ratio = finite(r, "ratio")
            .map(fmt_num)
            .unwrap_or_else(|| "—".into());
        md += &format!(
            "| {} | {} | {} | {} | {} | {paper} | {ours} | {ratio} | {} |\n",
            r.get("entry").map(|v| v.to_string()).unwrap_or_default(),
            text("paper"),
            text("where"),
            text("metric"),
            text("point"),
            text("verdict"),
        );
    }
    let counted = |v: &str| {
        rows.iter()
            .filter(|r| r.get("verdict").and_then(Value::as_str) == Some(v))
            .count()
    };
    let ranged = rows
        .iter()
        .filter(|r| finite(r, "paper_low") != finite(r, "paper_high"))
        .count();
    if ranged > 0 {
        md += &format!(
            "\nAgainst ranges: {} within, {} below, {} above.\n",
            counted("within the range"),
            counted("below the range"),
            counted("above the range")
        );
    }
    md += "\n";
    for (k, e) in entries.iter().enumerate() {
        md += &format!("{}. {} ({}): “{}”", k + 1, e.paper, e.location, e.quote);
        if let Some(n) = &e.note {
            md += &format!(" — {n}");
        }
        md += "\n";
    }
    md
}

/// One row of `published.csv` as `masklab published` prints it: the entry, the paper's value
/// (or range) beside masklab's and the verdict.
pub struct Line<'a>(pub &'a Row);

impl std::fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = self.0;
        let text = |c: &str| r.get(c).and_then(|v| v.as_str()).unwrap_or("");
        let num = |c: &str| r.get(c).and_then(|v| v.as_f64());
        let paper = match (num("paper_low"), num("paper_high")) {
            (Some(lo), Some(hi)) if lo != hi => format!("{} – {}", fmt_num(lo), fmt_num(hi)),
            (Some(v), _) => fmt_num(v),
            _ => "—".into(),
        };
        let mut ours = num("masklab").map(fmt_num).unwrap_or_else(|| "—".into());
        if let Some(x) = num("ratio") {
            ours += &format!(" ({}× the paper's)", fmt_num(x));
        }
        write!(
            f,
            "#{} {} ({}) {} at {}: paper {paper}, masklab {ours} — {}",
            r.get("entry").map(|v| v.to_string()).unwrap_or_default(),
            text("paper"),
            text("where"),
            text("metric"),
            text("point"),
            text("verdict")
        )
    }
}

#[cfg(test)]
mod tests;
