//! End-to-end tests of the `masklab` binary (run from the crate root, like a user would), one
//! module per command, plus bad input and faults (`robustness`) and the peak memory of a
//! streamed solve (`stream_memory`); the helpers they share are here and in `common`. One test
//! binary for all of them; only `tests/memory.rs` has its own, because it installs a counting
//! global allocator and must be alone in its process while it measures.

pub use masklab::results::row::Row;
pub use masklab::results::table;
pub use polars::prelude::*;
pub use serde_json::Value;
pub use std::path::Path;
pub use std::process::{Command, Output};

mod common;
pub use common::{masklab, ok};

mod convert;
mod diversity;
mod errors;
mod estimate;
mod gemm;
mod prune;
mod robustness;
mod run;
mod solve;
mod stream_memory;
mod train;

pub fn run_smoke(table: &str, out: impl AsRef<std::ffi::OsStr>, extra: &[&str]) {
    let spec = format!("experiments/{table}.toml");
    let out = Path::new(out.as_ref()).to_str().unwrap().to_string();
    let mut args = vec![
        "run",
        spec.as_str(),
        "--profile",
        "smoke",
        "--out",
        out.as_str(),
        "--quiet",
    ];
    args.extend_from_slice(extra);
    ok(&args);
}

/// `masklab regress` of a run against the committed baseline exits 0.
pub fn assert_matches_baseline(out: &Path) {
    let r = masklab(&["regress", out.to_str().unwrap()]);
    assert_eq!(
        r.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&r.stdout)
    );
}

pub fn summary_rows(dir: &Path) -> Vec<Row> {
    table::rows_from_frame(&table::read_parquet(&dir.join("summary.parquet")).unwrap())
}

pub fn find<'a>(rows: &'a [Row], structure: &str, size: &str) -> &'a Row {
    rows.iter()
        .find(|r| r["structure"] == structure && r["size"] == size)
        .expect("row present")
}

pub fn gaussian(n: usize, seed: u64) -> Vec<f32> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed); // fixed seed
    (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect()
}
