//! Transposable N:M solvers behind one trait, chosen by name from a registry.
//!
//! A solver takes a `[B, M, M]` batch of non-negative scores (row-major blocks, see
//! [`crate::mask::tile`]) and N, and returns a `[B, M, M]` batch of 0/1 masks in which every row
//! and column of every block should keep N (never more). The harness checks every returned mask
//! ([`crate::mask::tile::report_blocks`]); an infeasible block is reported, never scored.
//!
//! Adding a solver: write `src/solvers/<name>.rs` with a type implementing [`Solver`], declare the
//! module below, and add one line to [`REGISTRY`].

/// The block solver for `$m`: `$fixed::<M, L>` for M ∈ {2, 4, 8, 16, 32, 64}, with
/// [`crate::lanes::Avx2`] through `$avx2::<M>` (a `target_feature(enable = "avx2")` wrapper) when
/// `$use_avx2` and the CPU reports AVX2, else with [`crate::lanes::Portable`]; `$other` for any other M.
/// All are [`BlockFn`]s.
macro_rules! fixed_m_block_fn {
    ($m:expr, $use_avx2:expr, $fixed:ident, $avx2:ident, $other:expr) => {{
        let _use_avx2: bool = $use_avx2; // read on x86_64 only
        macro_rules! pick {
            ($k:literal) => {{
                #[cfg(target_arch = "x86_64")]
                if _use_avx2 && $crate::lanes::Avx2::detect().is_some() {
                    let f: $crate::solvers::BlockFn = |a, p, keep| {
                        // SAFETY: only chosen when the CPU reports AVX2.
                        unsafe { $avx2::<$k>(a, p.n, keep) }
                    };
                    return f;
                }
                let f: $crate::solvers::BlockFn =
                    |a, p, keep| $fixed::<$k, _>($crate::lanes::Portable, a, p.n, keep);
                return f;
            }};
        }
        match $m {
            2 => pick!(2),
            4 => pick!(4),
            8 => pick!(8),
            16 => pick!(16),
            32 => pick!(32),
            64 => pick!(64),
            _ => {
                let f: $crate::solvers::BlockFn = $other;
                f
            }
        }
    }};
}

pub mod apply;
pub mod bi_nm;
pub mod evaluate;
pub mod exact;
pub mod exhaustive;
pub mod external;
pub mod greedy;
pub mod lp;
pub mod max_random;
pub mod tsenor;
pub mod two_approx;

use crate::error::{Error, Result};
use crate::mask::Pattern;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::fmt;

/// What a solver promises about its masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarantee {
    /// The optimal kept score.
    Exact,
    /// Pruned score ≤ 2 × the optimal pruned score.
    TwoApprox,
    /// Kept score ≥ ½ × the optimal kept score.
    HalfKept,
    /// No proven bound.
    Heuristic,
}

/// The registry as `masklab solvers` prints it: name, guarantee, devices and summary.
pub struct Listing;

impl fmt::Display for Listing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<12}  {:<40}  {:<10}  summary",
            "name", "guarantee", "devices"
        )?;
        for s in REGISTRY {
            let g = s.guarantee().to_string();
            writeln!(
                f,
                "{:<12}  {g:<40}  {:<10}  {}",
                s.name(),
                s.devices(),
                s.summary()
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for Guarantee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Guarantee::Exact => "exact",
            Guarantee::TwoApprox => "2-approx (pruned <= 2 x optimal pruned)",
            Guarantee::HalfKept => "1/2-approx (kept >= 1/2 x optimum)",
            Guarantee::Heuristic => "heuristic",
        })
    }
}

/// What a solve may depend on besides the scores: a seed, the device, and solver options.
#[derive(Debug, Clone)]
pub struct SolveContext {
    /// Seed for any random choice (derived from the spec seed and cell key).
    pub seed: u64,
    /// The candle device for tensor solvers.
    pub device: candle_core::Device,
    /// Solver options by name (e.g. `tau`, `iterations`, `draws`); see [`Solver::options`].
    pub options: BTreeMap<String, f64>,
}

impl Default for SolveContext {
    fn default() -> Self {
        SolveContext {
            seed: 0,
            device: candle_core::Device::Cpu,
            options: BTreeMap::new(),
        }
    }
}

impl SolveContext {
    /// The option `name`, or `default`.
    pub fn option(&self, name: &str, default: f64) -> f64 {
        self.options.get(name).copied().unwrap_or(default)
    }
}

/// A transposable N:M solver.
pub trait Solver: Sync + Send {
    /// Registry name (`exact`, `greedy`, …).
    fn name(&self) -> &str;
    /// One line saying what it does.
    fn summary(&self) -> &'static str;
    /// What it guarantees.
    fn guarantee(&self) -> Guarantee;
    /// Devices it runs on.
    fn devices(&self) -> &'static str {
        "cpu"
    }
    /// Option names the solver reads from [`SolveContext::options`].
    fn options(&self) -> &'static [&'static str] {
        &[]
    }
    /// Solve a `[B, M, M]` batch of non-negative scores; returns `[B, M, M]` 0/1 masks.
    fn solve(&self, blocks: &[f32], pattern: Pattern, ctx: &SolveContext) -> Result<Vec<u8>>;
}

impl fmt::Debug for dyn Solver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Every solver, by name. Adding a solver is one line here.
pub static REGISTRY: &[&dyn Solver] = &[
    &exact::Exact,
    &lp::Lp,
    &two_approx::TwoApprox,
    &greedy::Greedy,
    &tsenor::Tsenor {
        tau: 0.02,
        iterations: 60,
        local_search_steps: 8,
    },
    &exhaustive::Exhaustive,
    &bi_nm::BiNm,
    &max_random::MaxRandom { draws: 1000 },
];

/// A solver as a value: a built-in (a static) or an external program (shared).
#[derive(Clone)]
pub enum SolverRef {
    /// One of [`REGISTRY`].
    Builtin(&'static dyn Solver),
    /// A program declared by a spec or on the command line.
    External(std::sync::Arc<external::External>),
}

impl std::ops::Deref for SolverRef {
    type Target = dyn Solver;
    fn deref(&self) -> &(dyn Solver + 'static) {
        match self {
            SolverRef::Builtin(s) => *s,
            SolverRef::External(e) => &**e,
        }
    }
}

impl fmt::Debug for SolverRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl SolverRef {
    /// The external program's own seconds for its last call (`None` for built-ins, or when it
    /// printed none).
    pub fn reported_seconds(&self) -> Option<f64> {
        match self {
            SolverRef::Builtin(_) => None,
            SolverRef::External(e) => e.reported_seconds(),
        }
    }
}

/// The solvers a run or a command can name: the built-ins and the external programs it
/// declared. A value, passed to what resolves solver names (no process-wide registry).
#[derive(Clone, Debug, Default)]
pub struct Catalogue {
    external: Vec<std::sync::Arc<external::External>>,
}

impl Catalogue {
    /// Declare `command` as the solver `name`; a built-in's name, or a name declared twice, is
    /// an error.
    pub fn declare(&mut self, name: &str, command: &[String], timeout_seconds: f64) -> Result<()> {
        if REGISTRY.iter().any(|s| s.name() == name) {
            return Err(Error::invalid(
                "external solver",
                name,
                "is the name of a built-in solver; choose another",
            ));
        }
        if self.external.iter().any(|e| e.name() == name) {
            return Err(Error::invalid("external solver", name, "is declared twice"));
        }
        let e = external::External::new(name, command, timeout_seconds)?;
        self.external.push(std::sync::Arc::new(e));
        Ok(())
    }

    /// The solver called `name`, or an error listing the known names.
    pub fn get(&self, name: &str) -> Result<SolverRef> {
        if let Some(s) = REGISTRY.iter().copied().find(|s| s.name() == name) {
            return Ok(SolverRef::Builtin(s));
        }
        if let Some(e) = self.external.iter().find(|e| e.name() == name) {
            return Ok(SolverRef::External(e.clone()));
        }
        let known: Vec<_> = REGISTRY
            .iter()
            .map(|s| s.name())
            .chain(self.external.iter().map(|e| e.name()))
            .collect();
        Err(Error::invalid(
            "solver",
            name,
            format!(
                "known solvers: {} (or a program declared as [solvers.external.{name}])",
                known.join(", ")
            ),
        ))
    }
}

/// The built-in solver called `name`, or an error listing the known names.
pub fn by_name(name: &str) -> Result<SolverRef> {
    Catalogue::default().get(name)
}

/// Check a batch before solving: whole blocks, M ≤ [`MAX_M`], scores finite and non-negative.
pub fn check_blocks(blocks: &[f32], pattern: Pattern) -> Result<()> {
    let mm = pattern.m * pattern.m;
    if pattern.m > MAX_M {
        return Err(Error::Unsupported {
            what: format!("pattern {pattern}"),
            reason: format!("solvers take M <= {MAX_M}"),
        });
    }
    if !blocks.len().is_multiple_of(mm) {
        return Err(Error::invalid(
            "blocks",
            blocks.len(),
            format!("not a whole number of {}x{} blocks", pattern.m, pattern.m),
        ));
    }
    // A branch-free parallel scan first; the position is looked up only when something is wrong.
    let ok = blocks.par_chunks(1 << 16).all(|c| {
        c.iter()
            .fold(true, |ok, s| ok & (0.0..=f32::MAX).contains(s))
    });
    if ok {
        return Ok(());
    }
    if let Some(i) = blocks.iter().position(|s| !s.is_finite() || *s < 0.0) {
        return Err(Error::invalid(
            "score",
            blocks[i],
            format!(
                "block {} entry {}: scores must be finite and non-negative",
                i / mm,
                i % mm
            ),
        ));
    }
    Ok(())
}

/// The type and range of each solver option: `(name, integer, min, max)`, both ends inclusive
/// (`tau` must also be above 0). The caps keep a typo (`iterations=1e12`) from running for days.
pub const OPTION_RANGES: &[(&str, bool, f64, f64)] = &[
    ("tau", false, 0.0, 1e6),
    ("iterations", true, 1.0, 100_000.0),
    ("local_search_steps", true, 0.0, 100_000.0),
    ("draws", true, 1.0, 1_000_000.0),
];

/// Check one option's value against [`OPTION_RANGES`]: finite, an integer where one is meant,
/// in range. An error names the option, the value and the range.
pub fn check_option_value(name: &str, value: f64) -> Result<()> {
    let Some(&(_, integer, min, max)) = OPTION_RANGES.iter().find(|r| r.0 == name) else {
        return match value.is_finite() {
            true => Ok(()),
            false => Err(Error::invalid(name, value, "must be a finite number")),
        };
    };
    let kind = if integer { "an integer" } else { "a number" };
    let fits = value.is_finite()
        && (!integer || value.fract() == 0.0)
        && value >= min
        && value <= max
        && (name != "tau" || value > 0.0);
    if fits {
        Ok(())
    } else {
        let low = if name == "tau" {
            "above 0".to_string()
        } else {
            format!("from {min}")
        };
        Err(Error::invalid(
            name,
            value,
            format!("must be {kind} {low} to {max}"),
        ))
    }
}

/// Check that every option given is one the solver reads, with a value in its range.
pub fn check_options(solver: &dyn Solver, options: &BTreeMap<String, f64>) -> Result<()> {
    for (key, &value) in options {
        check_option_value(key, value)?;
        if !solver.options().contains(&key.as_str()) {
            return Err(Error::invalid(
                "solver option",
                key,
                format!(
                    "solver {} reads: {}",
                    solver.name(),
                    if solver.options().is_empty() {
                        "no options".to_string()
                    } else {
                        solver.options().join(", ")
                    }
                ),
            ));
        }
    }
    Ok(())
}

/// Largest block side the solvers accept.
pub const MAX_M: usize = 256;

/// Blocks per parallel task.
const CHUNK: usize = 64;

/// Run `f(blocks, keep, first_block_index)` on runs of up to `CHUNK` consecutive M×M blocks in
/// parallel and collect the masks.
pub fn per_chunk<F>(blocks: &[f32], pattern: Pattern, f: F) -> Vec<u8>
where
    F: Fn(&[f32], &mut [u8], usize) + Sync,
{
    let mm = pattern.m * pattern.m;
    let mut keep = vec![0u8; blocks.len()];
    crate::memory::advise_huge_pages(&mut keep);
    keep.par_chunks_mut(mm * CHUNK)
        .zip(blocks.par_chunks(mm * CHUNK))
        .enumerate()
        .for_each(|(chunk, (out, inp))| f(inp, out, chunk * CHUNK));
    keep
}

/// Run `f(block, keep, block_index)` on every M×M block in parallel and collect the masks.
pub fn per_block<F>(blocks: &[f32], pattern: Pattern, f: F) -> Vec<u8>
where
    F: Fn(&[f32], &mut [u8], usize) + Sync,
{
    let mm = pattern.m * pattern.m;
    per_chunk(blocks, pattern, |inp, out, first| {
        for (i, (o, b)) in out.chunks_mut(mm).zip(inp.chunks(mm)).enumerate() {
            f(b, o, first + i);
        }
    })
}

/// A block solver: `(scores, pattern, keep)`, scores and keep row-major M×M (one block, or for
/// [`per_chunk`] users, consecutive blocks).
pub type BlockFn = fn(&[f32], Pattern, &mut [u8]);

/// Flip the entries along an alternating path of a search over columns `0..m` and rows `m..2m`
/// of one M×M block (`prev[v]`: the node v was reached from), walking back from `target` until
/// a node with `root(v)`: a row → column step keeps the entry, a column → row step drops it.
/// Returns the root.
pub(crate) fn flip_path(
    keep: &mut [u8],
    m: usize,
    prev: &[usize],
    target: usize,
    root: impl Fn(usize) -> bool,
) -> usize {
    let mut v = target;
    while !root(v) {
        let u = prev[v];
        if v < m {
            // u is a row, v a column: keep (row, v).
            keep[(u - m) * m + v] = 1;
        } else {
            // u is a column, v a row: drop (v, u).
            keep[(v - m) * m + u] = 0;
        }
        v = u;
    }
    v
}

/// Order key of a score: its bit pattern, which orders non-negative finite floats numerically;
/// negative values and −0.0 count as 0 (the solvers' inputs are checked non-negative).
#[inline(always)]
pub fn score_bits(s: f32) -> i32 {
    (s.to_bits() as i32).max(0)
}

/// Sort keys of `scores` (non-negative, finite) into `keys`: descending score, ties by lower
/// index; a key's low 32 bits are the index. No allocation: the caller owns `keys`.
pub fn descending_keys(scores: &[f32], keys: &mut [u64]) {
    for (k, (i, &s)) in keys.iter_mut().zip(scores.iter().enumerate()) {
        *k = ((!(score_bits(s) as u32) as u64) << 32) | i as u64;
    }
    keys.sort_unstable();
}

#[cfg(test)]
mod tests;
