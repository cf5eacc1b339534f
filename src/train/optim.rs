//! Optimisers: SGD with momentum and (coupled) weight decay, and candle-nn's AdamW; a cosine
//! learning-rate schedule.
//!
//! SGD step (PyTorch's convention): `d = ∇ + wd·w; v ← μ·v + d; w ← w − lr·v` — on the CPU in
//! place by [`kernels::sgd_update`], elsewhere by tensor ops.
//!
//! Memory: everything an optimiser keeps across steps is detached from the autograd graph. A
//! variable's gradient in candle's `GradStore` still carries the backward graph that built it
//! (candle detaches interior gradients only), which reaches the step's forward activations; a
//! momentum buffer built from it without `detach` would keep every step's graph alive.

use super::kernels;
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::Optimizer as _;

/// Learning rate at `step` of `total` under a cosine schedule from `lr` to 0.
pub fn cosine(lr: f64, step: usize, total: usize) -> f64 {
    let t = step as f64 / total.max(1) as f64;
    0.5 * lr * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
}

/// A momentum buffer: plain memory beside a CPU variable (updated in place with it), else a
/// tensor (always detached).
pub enum Velocity {
    /// For a CPU f32 variable.
    Cpu(Vec<f32>),
    /// For any other variable.
    Tensor(Tensor),
}

/// An optimiser over a fixed set of variables.
pub enum Optimizer {
    /// SGD with momentum and weight decay.
    Sgd {
        /// Variables.
        vars: Vec<Var>,
        /// Momentum buffers (lazily created).
        velocity: Vec<Option<Velocity>>,
        /// μ.
        momentum: f64,
        /// Weight decay.
        weight_decay: f64,
    },
    /// candle-nn's AdamW.
    AdamW(Box<candle_nn::AdamW>),
}

impl Optimizer {
    /// SGD with momentum.
    pub fn sgd(vars: Vec<Var>, momentum: f64, weight_decay: f64) -> Self {
        let velocity = (0..vars.len()).map(|_| None).collect();
        Optimizer::Sgd {
            vars,
            velocity,
            momentum,
            weight_decay,
        }
    }

    /// AdamW with candle-nn's defaults for the betas.
    pub fn adamw(vars: Vec<Var>, lr: f64, weight_decay: f64) -> candle_core::Result<Self> {
        let p = candle_nn::ParamsAdamW {
            lr,
            weight_decay,
            ..Default::default()
        };
        Ok(Optimizer::AdamW(Box::new(candle_nn::AdamW::new(vars, p)?)))
    }

    /// One step at learning rate `lr`.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> candle_core::Result<()> {
        match self {
            Optimizer::Sgd {
                vars,
                velocity,
                momentum,
                weight_decay,
            } => {
                for (var, v) in vars.iter().zip(velocity.iter_mut()) {
                    let Some(g) = grads.get(var) else { continue };
                    let g = g.detach();
                    if matches!(var.device(), Device::Cpu) && var.dtype() == DType::F32 {
                        // In place, no allocation: the buffer starts at 0, so the first step
                        // is v = ∇ + wd·w as below.
                        if v.is_none() {
                            *v = Some(Velocity::Cpu(vec![0.0; var.elem_count()]));
                        }
                        if let Some(Velocity::Cpu(buf)) = v.as_mut() {
                            kernels::sgd_update(
                                var.as_tensor(),
                                buf,
                                &g,
                                lr,
                                *momentum,
                                *weight_decay,
                            )?;
                            continue;
                        }
                    }
                    let w = var.as_tensor().detach();
                    let d = if *weight_decay > 0.0 {
                        (g + (&w * *weight_decay)?)?
                    } else {
                        g
                    };
                    let nv = match v.take() {
                        Some(Velocity::Tensor(old)) => ((old * *momentum)? + d)?,
                        _ => d,
                    };
                    var.set(&(w - (&nv * lr)?)?)?;
                    *v = Some(Velocity::Tensor(nv.detach()));
                }
                Ok(())
            }
            Optimizer::AdamW(opt) => {
                opt.set_learning_rate(lr);
                opt.step(grads)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn cosine_ends_at_zero_and_sgd_matches_the_formula() -> candle_core::Result<()> {
        assert_eq!(cosine(0.1, 0, 10), 0.1);
        assert!((cosine(0.1, 5, 10) - 0.05).abs() < 1e-12);
        assert!(cosine(0.1, 10, 10).abs() < 1e-12);
        // Loss w²/2 from w = 1: ∇ = w. Two steps by hand with μ = 0.9, wd = 0.1, lr = 0.5.
        let w = Var::new(&[1f32], &Device::Cpu)?;
        let mut opt = Optimizer::sgd(vec![w.clone()], 0.9, 0.1);
        let (mut ww, mut v) = (1f64, 0f64);
        for _ in 0..2 {
            let loss = (w.as_tensor().sqr()? * 0.5)?.sum_all()?;
            opt.step(&loss.backward()?, 0.5)?;
            v = 0.9 * v + (ww + 0.1 * ww);
            ww -= 0.5 * v;
        }
        let got = w.as_tensor().to_vec1::<f32>()?[0] as f64;
        assert!((got - ww).abs() < 1e-6, "{got} vs {ww}");
        Ok(())
    }
}
