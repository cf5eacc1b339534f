//! Result tables: rows → polars frames → `cells.parquet`, `summary.{parquet,csv,md}`; figures;
//! published values beside ours; manifests; regression against committed baselines; the history of nightly runs.
//!
//! A row is a JSON object ([`row::Row`]) made once from a cell kind's row
//! struct; [`table::frame_from_rows`] infers each column's type from its values, so no column
//! list is kept by hand. Measured time and memory columns ([`is_measured_column`]) are kept out of
//! `summary.csv`, which is byte-identical for the same spec and seed.

pub mod figures;
pub mod history;
pub mod manifest;
pub mod markdown;
pub mod published;
pub mod regress;
pub mod row;
pub mod stats;
pub mod summary;
pub mod table;

/// Whether a column holds a measured time, rate or memory figure (left out of exact
/// comparisons and `summary.csv`): `seconds`, `*_seconds`, `*_per_second`, `*_mb`, speedups
/// (`speedup`, `speedup_*`, `share_of_limit`, `recompute_share`), `gflops_*` and `*_gflops`,
/// the L1 bound (`l1_limit`, `share_of_l1_limit`: measured rates), `runs_per_side`,
/// `rounds`, `dense_threads` and `dense_orientation` (chosen by timing), `isa` (the machine's
/// instruction set), and their `_std` companions.
pub fn is_measured_column(name: &str) -> bool {
    let base = name.strip_suffix("_std").unwrap_or(name);
    base == "seconds"
        || base.ends_with("_seconds")
        || base.ends_with("_per_second")
        || base == "step_ms"
        || base.ends_with("_mb")
        || base == "speedup"
        || base.starts_with("speedup_")
        || base == "share_of_limit"
        || base.ends_with("_gflops")
        || base == "l1_limit"
        || base == "share_of_l1_limit"
        || base == "recompute_share"
        || base == "rounds"
        || base.starts_with("gflops_")
        || base == "runs_per_side"
        || base == "dense_threads"
        || base == "dense_orientation"
        || base == "isa"
}

/// Whether a measured column is a duration (`seconds`, `*_seconds`, `step_ms`), which
/// regression and the history take as a ratio to the run's yardstick; rates and memory are not.
pub fn is_time_column(name: &str) -> bool {
    let base = name.strip_suffix("_std").unwrap_or(name);
    base == "seconds" || base.ends_with("_seconds") || base == "step_ms"
}

#[cfg(test)]
mod tests {
    #[test]
    fn time_columns_are_recognised() {
        assert!(
            super::is_measured_column("seconds")
                && super::is_measured_column("blocks_per_second_std")
        );
        assert!(super::is_measured_column("peak_rss_mb"));
        assert!(super::is_measured_column("isa") && super::is_measured_column("recompute_share"));
        assert!(!super::is_measured_column("kept_gap") && !super::is_measured_column("log10"));
        assert!(super::is_time_column("step_seconds") && super::is_time_column("seconds"));
        assert!(
            !super::is_time_column("peak_rss_mb") && !super::is_time_column("blocks_per_second")
        );
    }
}
