//! Experiments: spec (TOML, two stages) → plan (expanded, checked cells) → runner (progress,
//! resume, shards) → rows, through the cell kinds of [`cells`].

pub mod calibration;
pub mod cell;
pub mod cells;
pub mod plan;
pub mod runner;
pub mod spec;
