//! Result tables: rows → polars frames → `cells.parquet`, `summary.{parquet,csv,md}`; manifests;
//! regression against committed baselines.
//!
//! A row is a JSON object ([`crate::experiment::cells::Row`]) made once from a cell kind's row
//! struct; [`table::frame_from_rows`] infers each column's type from its values, so no column
//! list is kept by hand. Measured-time columns ([`is_time_column`]) are kept out of
//! `summary.csv`, which is byte-identical for the same spec and seed.

pub mod manifest;
pub mod markdown;
pub mod regress;
pub mod summary;
pub mod table;

/// Whether a column holds a measured time (left out of exact comparisons and `summary.csv`):
/// `seconds`, `*_seconds`, `*_per_second`, and their `_std` companions.
pub fn is_time_column(name: &str) -> bool {
    let base = name.strip_suffix("_std").unwrap_or(name);
    base == "seconds"
        || base.ends_with("_seconds")
        || base.ends_with("_per_second")
        || base == "step_ms"
}

#[cfg(test)]
mod tests {
    #[test]
    fn time_columns_are_recognised() {
        assert!(super::is_time_column("seconds") && super::is_time_column("blocks_per_second_std"));
        assert!(!super::is_time_column("kept_gap") && !super::is_time_column("log10"));
    }
}
