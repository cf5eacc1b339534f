//! Rows (JSON objects) to polars frames and back, and the file writers.

use crate::error::{Error, Result};
use crate::results::row::Row;
use polars::prelude::*;
use serde_json::Value;
use std::fs::File;
use std::path::Path;

/// Build a frame from rows; column order is first appearance, type inferred from the values
/// (all integers → i64, any float → f64, booleans, else strings; missing → null).
pub fn frame_from_rows(rows: &[Row]) -> Result<DataFrame> {
    let mut names: Vec<String> = Vec::new();
    for row in rows {
        for k in row.keys() {
            if !names.contains(k) {
                names.push(k.clone());
            }
        }
    }
    let mut columns = Vec::with_capacity(names.len());
    for name in &names {
        let values: Vec<&Value> = rows
            .iter()
            .map(|r| r.get(name).unwrap_or(&Value::Null))
            .collect();
        let present = || values.iter().filter(|v| !v.is_null());
        let name_s: PlSmallStr = name.as_str().into();
        let series = if present().count() > 0 && present().all(|v| v.is_boolean()) {
            Series::new(
                name_s,
                values.iter().map(|v| v.as_bool()).collect::<Vec<_>>(),
            )
        } else if present().count() > 0 && present().all(|v| v.is_i64() || v.is_u64()) {
            Series::new(
                name_s,
                values.iter().map(|v| v.as_i64()).collect::<Vec<_>>(),
            )
        } else if present().count() > 0 && present().all(|v| v.is_number()) {
            Series::new(
                name_s,
                values.iter().map(|v| v.as_f64()).collect::<Vec<_>>(),
            )
        } else {
            let strings: Vec<Option<String>> = values
                .iter()
                .map(|v| match v {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                })
                .collect();
            Series::new(name_s, strings)
        };
        columns.push(series.into_column());
    }
    DataFrame::new_infer_height(columns).map_err(Error::table("building a frame from rows"))
}

/// Turn a frame back into rows (for markdown and regression).
pub fn rows_from_frame(df: &DataFrame) -> Vec<Row> {
    let mut rows = vec![Row::new(); df.height()];
    for column in df.columns() {
        let name = column.name().to_string();
        for (i, row) in rows.iter_mut().enumerate() {
            let v = match column.get(i) {
                Ok(AnyValue::Null) | Err(_) => Value::Null,
                Ok(AnyValue::Boolean(b)) => Value::Bool(b),
                Ok(AnyValue::String(s)) => Value::String(s.to_string()),
                Ok(AnyValue::StringOwned(s)) => Value::String(s.to_string()),
                Ok(AnyValue::Float64(f)) => serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .unwrap_or(Value::Null),
                Ok(AnyValue::Float32(f)) => serde_json::Number::from_f64(f as f64)
                    .map(Value::Number)
                    .unwrap_or(Value::Null),
                Ok(AnyValue::Int64(x)) => Value::from(x),
                Ok(AnyValue::Int32(x)) => Value::from(x),
                Ok(AnyValue::UInt32(x)) => Value::from(x),
                Ok(AnyValue::UInt64(x)) => Value::from(x),
                Ok(other) => Value::String(other.to_string()),
            };
            row.insert(name.clone(), v);
        }
    }
    rows
}

/// Write a frame as parquet.
pub fn write_parquet(df: &mut DataFrame, path: &Path) -> Result<()> {
    crate::io::atomic::write_with(path, |tmp| {
        let file = File::create(tmp).map_err(|e| Error::io(tmp, e))?;
        ParquetWriter::new(file)
            .finish(df)
            .map_err(Error::table(format!("writing {}", path.display())))?;
        Ok(())
    })
}

/// Write a frame as CSV.
pub fn write_csv(df: &mut DataFrame, path: &Path) -> Result<()> {
    crate::io::atomic::write_with(path, |tmp| {
        let mut file = File::create(tmp).map_err(|e| Error::io(tmp, e))?;
        CsvWriter::new(&mut file)
            .finish(df)
            .map_err(Error::table(format!("writing {}", path.display())))
    })
}

/// Read a parquet file.
pub fn read_parquet(path: &Path) -> Result<DataFrame> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    ParquetReader::new(file)
        .finish()
        .map_err(Error::table(format!("reading {}", path.display())))
}

/// A row's column as a finite number (`None` when missing, not a number, or not finite).
pub fn finite(row: &Row, column: &str) -> Option<f64> {
    row.get(column)
        .and_then(Value::as_f64)
        .filter(|v| v.is_finite())
}

/// A row value as text: strings as they are, anything else as JSON (`null` when missing).
pub fn cell_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "null".into(),
    }
}

/// Read a CSV file with a header row (column types inferred).
pub fn read_csv(path: &Path) -> Result<DataFrame> {
    CsvReadOptions::default()
        .with_has_header(true)
        .try_into_reader_with_file_path(Some(path.to_path_buf()))
        .and_then(|r| r.finish())
        .map_err(Error::table(format!("reading {}", path.display())))
}

/// A copy of the frame without the measured-time columns.
pub fn without_time_columns(df: &DataFrame) -> Result<DataFrame> {
    let keep: Vec<PlSmallStr> = df
        .get_column_names()
        .into_iter()
        .filter(|n| !super::is_measured_column(n))
        .cloned()
        .collect();
    df.select(keep)
        .map_err(Error::table("dropping time columns"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_round_trip_with_inferred_types() -> Result<()> {
        let rows: Vec<Row> = vec![
            json!({"a": "x", "n": 1, "f": 0.5, "b": true})
                .as_object()
                .unwrap()
                .clone(),
            json!({"a": null, "n": 2, "f": 1, "extra": "e"})
                .as_object()
                .unwrap()
                .clone(),
        ];
        let df = frame_from_rows(&rows)?;
        assert_eq!(df.column("n").unwrap().dtype(), &DataType::Int64);
        assert_eq!(df.column("f").unwrap().dtype(), &DataType::Float64);
        assert_eq!(df.column("b").unwrap().dtype(), &DataType::Boolean);
        let back = rows_from_frame(&df);
        assert_eq!(back[1]["f"], json!(1.0));
        assert_eq!(back[1]["extra"], json!("e"));
        assert_eq!(back[0]["extra"], Value::Null);
        Ok(())
    }
}
