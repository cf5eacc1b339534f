//! A result row: a cell kind's metrics as one JSON object, column name → value in column order,
//! made once from the kind's serialisable row struct.

use crate::error::{Error, Result};

/// One result row: column name → JSON value, in column order.
pub type Row = serde_json::Map<String, serde_json::Value>;

/// The keys of a row struct serialised (a kind's `CellKind::columns` from a sample row).
pub fn columns_of<T: serde::Serialize>(sample: &T) -> Vec<String> {
    to_row(sample)
        .map(|r| r.keys().cloned().collect())
        .unwrap_or_default()
}

/// Serialise a row struct into a [`Row`].
pub fn to_row<T: serde::Serialize>(row: &T) -> Result<Row> {
    match serde_json::to_value(row) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(other) => Err(Error::invalid(
            "row",
            other,
            "a row must serialise to an object",
        )),
        Err(e) => Err(Error::invalid("row", "(struct)", e)),
    }
}
