//! The summary of a run: rows grouped by grid point, mean and std over seeds of every numeric
//! metric (`<metric>` holds the mean, `<metric>_std` the sample std), `seeds` counts rows.

use crate::error::{Error, Result};
use polars::prelude::*;

/// Columns that are bookkeeping, not metrics or keys.
pub const BOOKKEEPING: [&str; 3] = ["index", "cell", "seed"];

/// Group `cells` by `keys` (grid axes) plus every other non-numeric column, in first-seen order,
/// and aggregate numeric columns.
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
    let mut aggs: Vec<Expr> = vec![len().cast(DataType::Int64).alias("seeds")];
    for m in &metrics {
        aggs.push(
            col(m.as_str())
                .cast(DataType::Float64)
                .mean()
                .alias(m.as_str()),
        );
        aggs.push(
            col(m.as_str())
                .cast(DataType::Float64)
                .std(1)
                .fill_null(lit(0.0))
                .alias(format!("{m}_std")),
        );
    }
    let key_exprs: Vec<Expr> = keys.iter().map(|k| col(k.as_str())).collect();
    cells
        .clone()
        .lazy()
        .group_by_stable(key_exprs)
        .agg(aggs)
        .collect()
        .map_err(Error::table("summarising cells"))
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
}
