//! Experiments: spec (TOML, two stages) → plan (expanded, checked cells) → runner (progress,
//! resume, shards) → rows, through the cell kinds of [`cells`], in a run directory
//! ([`run_dir`]) whose tables, figures and later operations are [`post_run`]'s.

pub mod cell;
pub mod cells;
pub mod plan;
pub mod post_run;
pub mod run_dir;
pub mod runner;
pub mod sources;
pub mod spec;
pub mod yardstick;
