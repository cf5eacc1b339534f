//! masklab: a reproducible benchmark harness for fine-grained N:M sparsity.
//!
//! The pipeline: an experiment spec ([`experiment::spec`]) expands into a plan of cells
//! ([`experiment::plan`]); the runner ([`experiment::runner`]) runs each cell through its cell
//! kind, writes one row per cell as soon as it ends, and the results module ([`results`]) turns
//! rows into polars tables, summaries and regression reports.

pub mod convert;
pub mod device;
pub mod diversity;
pub mod error;
pub mod estimators;
pub mod mask;
pub mod memory;
pub mod ops;
mod par;
pub mod policy;
pub mod seed;
pub mod solvers;
pub mod sparse;
pub mod toml_value;

pub use error::{Error, Result};
pub mod experiment;
pub mod io;
pub mod lanes;
pub mod layers;
pub mod lm;
pub mod results;
pub mod train;
pub mod vmath;
