//! One cell of an experiment: a grid point (axis → value) and a seed, with the accessors a cell
//! kind reads its axes through. Made by [`super::plan`], run by [`super::cells`].

use crate::error::{Error, Result};

/// One cell: a grid point and a seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// Position in the plan (stable for a given spec and profile).
    pub index: usize,
    /// `(axis, value)` pairs in axis order.
    pub values: Vec<(String, String)>,
    /// The spec seed this cell runs with.
    pub seed: u64,
}

impl Cell {
    /// The value of `axis`, if the grid has it.
    pub fn get(&self, axis: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(a, _)| a == axis)
            .map(|(_, v)| v.as_str())
    }

    /// The value of a required axis, or an error naming it.
    pub fn require(&self, axis: &str) -> Result<&str> {
        self.get(axis).ok_or_else(|| {
            Error::invalid(
                axis,
                "(missing)",
                format!("this cell kind needs a grid axis `{axis}`"),
            )
        })
    }

    /// Parse a required axis; errors (including bad patterns) name the axis.
    pub fn parse_axis<T: std::str::FromStr<Err = Error>>(&self, axis: &str) -> Result<T> {
        self.require(axis)?.parse().map_err(|e: Error| match e {
            Error::Pattern { value, reason } => Error::invalid(axis, value, reason),
            Error::Invalid { value, reason, .. } => Error::invalid(axis, value, reason),
            other => other,
        })
    }

    /// The grid point without the seed, e.g. `pattern=2:4 solver=exact`.
    pub fn point(&self) -> String {
        self.values
            .iter()
            .map(|(a, v)| format!("{a}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The unique key of the cell: grid point and seed.
    pub fn key(&self) -> String {
        format!("{} seed={}", self.point(), self.seed)
    }

    /// The RNG seed for this cell, derived from the spec seed and the grid point.
    pub fn rng_seed(&self) -> u64 {
        crate::seed::derive(self.seed, &self.point())
    }
}
