//! The jobs behind commands that measure or transform (above the algorithms and kernels, below
//! the experiment runner): `gemm` times a training GEMM of a mask type against dense; `step`
//! times a whole training step on compressed kernels against masked-dense and dense steps.

pub mod gemm;
pub mod step;
