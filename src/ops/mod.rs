//! The jobs behind commands that measure or transform (above the algorithms and kernels, below
//! the experiment runner): `gemm` times a training GEMM of a mask type against dense.

pub mod gemm;
