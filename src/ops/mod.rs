//! The jobs behind commands that measure or transform (above the algorithms and kernels, below
//! the experiment runner): `solve` streams a checkpoint's tensors through a solver; `estimate`
//! applies a gradient estimator to a file's tensors; `gemm` times a training GEMM of a mask type
//! against dense; `step` times a whole training step on compressed kernels against
//! masked-dense and dense steps; `prune` prunes a language model one-shot and measures its
//! perplexity.

pub mod estimate;
pub mod gemm;
pub mod prune;
pub mod solve;
pub mod step;

/// Median of `v` (sorted in place); NaN when empty: the timing summary both jobs report.
pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
