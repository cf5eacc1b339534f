//! Cell kinds: what one cell of a spec computes, chosen by name from [`REGISTRY`].
//!
//! A kind checks a cell before the run starts (bad axis values fail fast, naming the axis) and
//! runs it into one row: a serialisable struct of metrics, one per kind, turned into a
//! [`Row`] once. Time columns are named `seconds`, `*_seconds` or `*_per_second`
//! (see [`crate::results::is_measured_column`]).

pub mod convert;
pub mod diversity;
pub mod estimator;
pub mod gemm;
pub mod lm_prune;
pub mod solver;
pub mod step;
pub mod train;

use super::cell::Cell;
use crate::error::{Error, Result};
use indexmap::IndexMap;
use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use crate::results::row::{Row, columns_of, to_row};
pub use crate::toml_value::{param_str, param_usize, toml_scalar, toml_scalars};

/// Values computed once and shared between cells of a run (e.g. an optimum used by many cells).
#[derive(Default)]
pub struct Shared {
    slots: Mutex<HashMap<String, Slot>>,
}

/// One shared value, filled once by the first cell that needs it.
type Slot = Arc<Mutex<Option<Arc<dyn Any + Send + Sync>>>>;

impl Shared {
    /// The value under `key`, computing it once with `make` (other cells wait for it).
    pub fn get_or_try<T, F>(&self, key: &str, make: F) -> Result<Arc<T>>
    where
        T: Any + Send + Sync,
        F: FnOnce() -> Result<T>,
    {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.entry(key.to_string()).or_default().clone()
        };
        let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = guard.as_ref()
            && let Ok(v) = v.clone().downcast::<T>()
        {
            return Ok(v);
        }
        let v = Arc::new(make()?);
        *guard = Some(v.clone());
        Ok(v)
    }
}

/// What a running cell may use besides its grid values.
pub struct CellContext<'a> {
    /// Seed for the cell's RNG (derived from spec seed and grid point).
    pub rng_seed: u64,
    /// Fixed options from the spec's `[params]`.
    pub params: &'a IndexMap<String, toml::Value>,
    /// Device for tensor work.
    pub device: candle_core::Device,
    /// Values shared across cells of this run.
    pub shared: &'a Shared,
    /// The solvers the run can name (built-ins and the spec's external programs).
    pub solvers: &'a crate::solvers::Catalogue,
}

/// What a cell's check reads besides the cell: the spec's params and the run's solvers.
pub struct Checking<'a> {
    /// Fixed options from the spec's `[params]`.
    pub params: &'a IndexMap<String, toml::Value>,
    /// The solvers the run can name.
    pub solvers: &'a crate::solvers::Catalogue,
}

/// A kind of cell.
pub trait CellKind: Sync + Send {
    /// Registry name used in specs (`kind = "..."`).
    fn name(&self) -> &'static str;
    /// One line saying what a cell measures.
    fn summary(&self) -> &'static str;
    /// The grid axes a cell of this kind reads; a spec axis outside this list is refused.
    fn axes(&self) -> &'static [&'static str];
    /// The metric columns a row of this kind has (checked against the spec's figures and
    /// published values before any cell runs).
    fn columns(&self) -> Vec<String>;
    /// Check a cell's values (and the params, and the solvers it names among those the run
    /// declares) without running it; errors name the axis.
    fn check(&self, cell: &Cell, ctx: &Checking) -> Result<()>;
    /// Run one cell into one row of metrics.
    fn run(&self, cell: &Cell, ctx: &CellContext) -> Result<Row>;
}

/// Every cell kind, by name.
pub static REGISTRY: &[&dyn CellKind] = &[
    &diversity::DiversityCell,
    &solver::SolverCell,
    &estimator::EstimatorCell,
    &train::TrainCell,
    &convert::ConvertCell,
    &gemm::GemmCell,
    &step::StepCell,
    &lm_prune::LmPruneCell,
];

/// The kind called `name`, or an error listing the known kinds.
pub fn by_name(name: &str) -> Result<&'static dyn CellKind> {
    REGISTRY
        .iter()
        .copied()
        .find(|k| k.name() == name)
        .ok_or_else(|| {
            let known: Vec<_> = REGISTRY.iter().map(|k| k.name()).collect();
            Error::invalid(
                "kind",
                name,
                format!("known cell kinds: {}", known.join(", ")),
            )
        })
}
