//! Applying an estimator to the gradients of a file, for `masklab estimate`: which tensors are
//! usable (2-D, non-empty, whole groups along `dim`), the metrics over draws, or one pruned draw.

use crate::error::{Error, Result};
use crate::estimators::Estimator;
use crate::estimators::measure::{Measurement, measure};
use crate::io::{self, NamedTensor};
use crate::mask::Pattern;
use candle_core::{Device, Tensor};
use rand_distr::Distribution;
use serde::Serialize;
use std::path::Path;

/// What to do with the gradients of one file.
#[derive(Clone, Copy)]
pub struct EstimateRequest<'a> {
    /// The estimator.
    pub estimator: &'a dyn Estimator,
    /// The pattern.
    pub pattern: Pattern,
    /// Dimension the groups run along (0: the batch axis, the update GEMM's reduction).
    pub dim: usize,
    /// Draws for the metrics (≥ 1).
    pub draws: usize,
    /// Columns of the random `x` in the GEMM metrics (≥ 1).
    pub in_features: usize,
    /// Seed of the draws and of `x`.
    pub seed: u64,
    /// Refuse (instead of skipping) tensors that cannot be used.
    pub strict: bool,
}

/// One tensor's metrics, as `masklab estimate --json` prints them.
#[derive(Debug, Clone, Serialize)]
pub struct EstimateReport {
    /// Tensor name.
    pub tensor: String,
    /// Tensor shape.
    pub shape: Vec<usize>,
    /// Estimator name.
    pub estimator: String,
    /// Pattern `N:M`.
    pub pattern: String,
    /// Dimension the groups run along.
    pub dim: usize,
    /// Draws, bias, variance and MSE of the tensor and of its update GEMM.
    #[serde(flatten)]
    pub metrics: Measurement,
}

impl EstimateRequest<'_> {
    /// Check the request itself (not the tensors): pattern supported, dim 0 or 1, counts ≥ 1.
    pub fn check(&self) -> Result<()> {
        self.estimator.supports(self.pattern)?;
        if self.dim > 1 {
            return Err(Error::invalid(
                "dim",
                self.dim,
                "gradients are 2-D; use 0 (batch axis) or 1",
            ));
        }
        if self.draws == 0 {
            return Err(Error::invalid("draws", 0, "must be at least 1"));
        }
        if self.in_features == 0 {
            return Err(Error::invalid("in-features", 0, "must be at least 1"));
        }
        Ok(())
    }
}

/// Usable gradients (as read, and as CPU tensors) and a warning for each one skipped.
type Usable = (Vec<(NamedTensor, Tensor)>, Vec<String>);

/// The usable gradients of `source`, and a warning for each one skipped.
fn usable(source: &str, req: &EstimateRequest) -> Result<Usable> {
    req.check()?;
    let (mut out, mut warnings) = (Vec::new(), Vec::new());
    for t in io::read_tensors(source)? {
        let problem = match t.shape.as_slice() {
            [r, c] if *r == 0 || *c == 0 => {
                format!("tensor `{}` of shape {:?} is empty", t.name, t.shape)
            }
            [r, c] if [*r, *c][req.dim] % req.pattern.m != 0 => format!(
                "tensor `{}` of shape {:?}: dim {} of length {} is not a multiple of M = {}",
                t.name,
                t.shape,
                req.dim,
                [*r, *c][req.dim],
                req.pattern.m
            ),
            [r, c] => {
                let g = Tensor::from_vec(t.data.clone(), (*r, *c), &Device::Cpu)
                    .map_err(Error::tensor(&t.name))?;
                out.push((t, g));
                continue;
            }
            _ => format!("tensor `{}` has shape {:?}, not 2-D", t.name, t.shape),
        };
        if req.strict {
            return Err(Error::invalid(
                "tensor",
                &t.name,
                format!("{problem} (refused under --strict)"),
            ));
        }
        warnings.push(format!("skipped {problem}"));
    }
    if out.is_empty() {
        return Err(Error::invalid(
            "input",
            source,
            format!(
                "no usable gradient (2-D, non-empty, groups of {} along dim {}): {}",
                req.pattern.m,
                req.dim,
                warnings.join("; ")
            ),
        ));
    }
    Ok((out, warnings))
}

/// The metrics of `req.estimator` on every usable tensor of `source`, and warnings.
pub fn estimate_source(
    source: &str,
    req: &EstimateRequest,
) -> Result<(Vec<EstimateReport>, Vec<String>)> {
    let (tensors, warnings) = usable(source, req)?;
    let mut reports = Vec::new();
    for (t, g) in tensors {
        // Measure on the orientation where the groups run along dim 0.
        let g = if req.dim == 0 {
            g
        } else {
            g.t()
                .and_then(|g| g.contiguous())
                .map_err(Error::tensor(&t.name))?
        };
        let batch = g.dims()[0];
        let cols = g.dims()[1];
        // g, x, a draw, both GEMMs and the f64 running sums of both metrics.
        crate::memory::ensure_fits(
            (batch as u128 * (cols + req.in_features) as u128
                + cols as u128 * req.in_features as u128)
                * 40,
            "input",
            format!(
                "{} {:?} with --in-features {}",
                t.name, t.shape, req.in_features
            ),
        )?;
        let mut rng = crate::seed::rng(req.seed, "x");
        let x: Vec<f32> = (0..batch * req.in_features)
            .map(|_| rand_distr::StandardNormal.sample(&mut rng))
            .collect();
        let x = Tensor::from_vec(x, (batch, req.in_features), &Device::Cpu)
            .map_err(Error::tensor(&t.name))?;
        let m = measure(req.estimator, &g, &x, req.pattern, 0, req.draws, req.seed)?;
        reports.push(EstimateReport {
            tensor: t.name,
            shape: t.shape,
            estimator: req.estimator.name().to_string(),
            pattern: req.pattern.to_string(),
            dim: req.dim,
            metrics: m,
        });
    }
    Ok((reports, warnings))
}

/// One pruned draw of every usable tensor of `source` (same names and shapes), and warnings.
pub fn sample_source(
    source: &str,
    req: &EstimateRequest,
) -> Result<(Vec<NamedTensor>, Vec<String>)> {
    let (tensors, warnings) = usable(source, req)?;
    let mut drawn = Vec::new();
    for (t, g) in tensors {
        let out = crate::estimators::sample(req.estimator, &g, req.pattern, req.dim, req.seed)?;
        let data = out
            .flatten_all()
            .and_then(|o| o.to_vec1::<f32>())
            .map_err(Error::tensor(&t.name))?;
        drawn.push(NamedTensor {
            name: t.name,
            shape: t.shape,
            data,
        });
    }
    Ok((drawn, warnings))
}

/// [`sample_source`] written to `out` (refused when it names an input); returns the tensors
/// written and the warnings.
pub fn write_samples(
    source: &str,
    req: &EstimateRequest,
    out: &Path,
) -> Result<(usize, Vec<String>)> {
    let inputs = io::checkpoint::source_files(&io::split_source(source).0);
    let inputs: Vec<&Path> = inputs.iter().map(|p| p.as_path()).collect();
    io::atomic::refuse_overwrite("output", out, &inputs)?;
    let (drawn, warnings) = sample_source(source, req)?;
    io::write_tensors(out, &drawn)?;
    Ok((drawn.len(), warnings))
}

impl std::fmt::Display for EstimateReport {
    /// One line: tensor, estimator, draws and the relative bias, variance and MSE.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:?}: {} {} over {} draws: rel_bias {:.3e}, rel_variance {:.3e}, rel_mse {:.3e}; gemm rel_bias {:.3e}, rel_variance {:.3e}",
            self.tensor,
            self.shape,
            self.estimator,
            self.pattern,
            self.metrics.draws,
            self.metrics.rel_bias,
            self.metrics.rel_variance,
            self.metrics.rel_mse,
            self.metrics.gemm_rel_bias,
            self.metrics.gemm_rel_variance
        )
    }
}
