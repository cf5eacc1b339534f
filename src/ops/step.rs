//! The training part of table7: one training step of a setup with its GEMMs on the compressed
//! N:M kernels, against the same step on masked-dense GEMMs and against the dense step, timed in
//! the same process; and the cost of recomputing the masks, as a share of the step.
//!
//! Problem: what does a mask type and a gradient estimator buy (or cost) in a whole training
//! step — forward, backward, update, optimiser — on this machine? Method: three training
//! sessions of the same model, data and seed ([`crate::train::trainer::Session`]): `dense`
//! (no mask, dense gradients), `masked-dense` (the setup with `--gemm masked-dense`) and `sparse`
//! (the setup with `--gemm sparse`). After a warm-up of each, they take turns, a few steps
//! each per round, so drift on the machine hits all three alike; each round's mean step time is
//! one sample and the medians are reported, with the quartiles of the per-round ratios. Masks
//! are static during the timing (computed once); the recompute overhead is timed apart: the
//! sparse session's masks recomputed by the setup's solver (median of `recompute_runs`), divided
//! by the refresh period and by the sparse step — Hubara et al.'s "overhead of recomputing the
//! mask every k steps". Guarantee: the three sessions train the same model on the same batches;
//! `compressed_gemms` says which GEMMs really ran compressed. Cost: warm-up plus at least
//! `min_seconds` of each session's steps (and at least 5 rounds), plus the recomputes.

use super::median;
use crate::error::{Error, Result};
use crate::mask::Structure;
use crate::train::data::Dataset;
use crate::train::sparse::{GemmMode, GradEstimator};
use crate::train::trainer::{Session, TrainConfig};
use candle_core::Device;
use serde::Serialize;
use std::time::Instant;

/// One timing job: a model and a setup (mask + estimator).
#[derive(Debug, Clone)]
pub struct StepJob {
    /// The training configuration of the setup (its `gemm` field is ignored: all modes run).
    pub cfg: TrainConfig,
    /// Steps per session per round.
    pub steps_per_round: usize,
    /// Least timed seconds per session.
    pub min_seconds: f64,
    /// Mask refresh period (steps) the recompute overhead is amortised over (Hubara: 40).
    pub every: usize,
    /// Timed mask recomputes.
    pub recompute_runs: usize,
}

/// What one job measures (a table7b row).
#[derive(Debug, Clone, Default, Serialize)]
pub struct StepReport {
    /// Median seconds of one dense step (no mask, dense gradients).
    pub dense_step_seconds: f64,
    /// Median seconds of one step of the setup on masked-dense GEMMs.
    pub masked_dense_step_seconds: f64,
    /// Median seconds of one step of the setup on the compressed kernels.
    pub sparse_step_seconds: f64,
    /// Dense step time over sparse step time (above 1: the sparse step is faster).
    pub speedup_sparse: f64,
    /// First quartile of the per-round ratio dense / sparse.
    pub speedup_sparse_q25: f64,
    /// Third quartile of the per-round ratio dense / sparse.
    pub speedup_sparse_q75: f64,
    /// Dense step time over masked-dense step time (what masking alone costs).
    pub speedup_masked_dense: f64,
    /// Masked-dense step time over sparse step time (what the kernels buy over masking).
    pub speedup_sparse_over_masked: f64,
    /// The GEMMs of the prunable layers that ran compressed (`forward+backward+update`, …).
    pub compressed_gemms: String,
    /// Median seconds of recomputing every layer's mask with the setup's solver (0: no mask).
    pub recompute_seconds: f64,
    /// `recompute_seconds / every / sparse_step_seconds`: the overhead of recomputing the masks
    /// every `every` steps, as a share of the sparse step.
    pub recompute_share: f64,
    /// Timed rounds.
    pub rounds: usize,
}

/// Mean seconds of `k` steps of `s`.
fn time_steps(s: &mut Session, k: usize) -> Result<f64> {
    let t = Instant::now();
    for _ in 0..k {
        s.step()?;
    }
    Ok(t.elapsed().as_secs_f64() / k.max(1) as f64)
}

/// Build the three sessions, time them in turns, time the recompute (see the module doc).
pub fn measure(job: &StepJob, data: &Dataset, device: &Device) -> Result<StepReport> {
    if job.steps_per_round == 0 || job.every == 0 {
        return Err(Error::invalid(
            "steps_per_round/every",
            format!("{}/{}", job.steps_per_round, job.every),
            "both must be at least 1",
        ));
    }
    // Enough epochs that no session runs out of steps, whatever the timing asks.
    let mut base = job.cfg.clone();
    base.every = 0;
    base.progress = false;
    base.epochs = 1_000_000;
    let dense = TrainConfig {
        mask: Structure::Dense,
        grad: GradEstimator::Dense,
        gemm: GemmMode::MaskedDense,
        ..base.clone()
    };
    let masked = TrainConfig {
        gemm: GemmMode::MaskedDense,
        ..base.clone()
    };
    let sparse = TrainConfig {
        gemm: GemmMode::Sparse,
        ..base
    };
    let mut sessions = [
        Session::new(&dense, data, device)?,
        Session::new(&masked, data, device)?,
        Session::new(&sparse, data, device)?,
    ];
    let k = job.steps_per_round;
    for s in sessions.iter_mut() {
        time_steps(s, k.max(2))?;
    }
    let mut times: [Vec<f64>; 3] = Default::default();
    let mut spent = [0f64; 3];
    while times[0].len() < 5 || spent.iter().any(|&t| t < job.min_seconds) {
        if times[0].len() >= 500 {
            break;
        }
        for (i, s) in sessions.iter_mut().enumerate() {
            let t = time_steps(s, k)?;
            spent[i] += t * k as f64;
            times[i].push(t);
        }
    }
    let rounds = times[0].len();
    let mut ratios: Vec<f64> = times[0].iter().zip(&times[2]).map(|(d, s)| d / s).collect();
    ratios.sort_by(f64::total_cmp);
    let quartile = |q: f64| ratios[((ratios.len() - 1) as f64 * q).round() as usize];
    let [mut td, mut tm, mut ts] = times;
    let (d, m, s) = (median(&mut td), median(&mut tm), median(&mut ts));
    let mut recompute = Vec::new();
    if job.cfg.mask != Structure::Dense {
        let sp = &mut sessions[2];
        for _ in 0..job.recompute_runs.max(1) {
            let t = Instant::now();
            sp.recompute_masks()?;
            recompute.push(t.elapsed().as_secs_f64());
        }
    }
    let recompute_seconds = if recompute.is_empty() {
        0.0
    } else {
        median(&mut recompute)
    };
    let report = sessions[2].report_gemms();
    Ok(StepReport {
        dense_step_seconds: d,
        masked_dense_step_seconds: m,
        sparse_step_seconds: s,
        speedup_sparse: d / s,
        speedup_sparse_q25: quartile(0.25),
        speedup_sparse_q75: quartile(0.75),
        speedup_masked_dense: d / m,
        speedup_sparse_over_masked: m / s,
        compressed_gemms: report,
        recompute_seconds,
        recompute_share: recompute_seconds / job.every as f64 / s,
        rounds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_sessions_time_and_report_compressed_gemms() -> Result<()> {
        let data = crate::train::data::synthetic(256, 0);
        let cfg = TrainConfig {
            hidden: vec![32, 32],
            batch: 32,
            mask: "transposable:4:8".parse()?,
            grad: "mvue:2:4".parse()?,
            solver: crate::solvers::SolverRef::Builtin(&crate::solvers::exact::Exact),
            ..Default::default()
        };
        let job = StepJob {
            cfg,
            steps_per_round: 1,
            min_seconds: 0.0,
            every: 40,
            recompute_runs: 2,
        };
        let r = measure(&job, &data, &Device::Cpu)?;
        assert_eq!(r.rounds, 5);
        assert_eq!(r.compressed_gemms, "forward+backward+update");
        assert!(r.recompute_seconds > 0.0);
        let share = r.recompute_seconds / 40.0 / r.sparse_step_seconds;
        assert!((r.recompute_share - share).abs() <= 1e-12 * share);
        for v in [
            r.dense_step_seconds,
            r.masked_dense_step_seconds,
            r.sparse_step_seconds,
        ] {
            assert!(v > 0.0 && v.is_finite());
        }
        // A dense setup compresses nothing and recomputes nothing.
        let dense = StepJob {
            cfg: TrainConfig {
                hidden: vec![32],
                batch: 32,
                ..Default::default()
            },
            ..job
        };
        let r = measure(&dense, &data, &Device::Cpu)?;
        assert_eq!(r.compressed_gemms, "none");
        assert_eq!((r.recompute_seconds, r.recompute_share), (0.0, 0.0));
        Ok(())
    }
}
