//! Sparse training: N:M masks on the forward and backward GEMMs, N:M estimators on the update
//! GEMM, and the loop that trains and evaluates a model (table4, `masklab train`).
//!
//! - [`sparse`]: the masked linear layer (custom op with its own backward);
//! - [`models`]: MLP, LeNet-style CNN, small ResNet;
//! - [`data`]: Fashion-MNIST / MNIST (IDX), CIFAR-10, synthetic;
//! - [`optim`]: SGD with momentum and weight decay, AdamW, cosine schedule;
//! - [`trainer`]: the training loop, mask schedule and end-of-run structure checks.

pub mod data;
pub mod models;
pub mod optim;
pub mod sparse;
pub mod trainer;

use crate::error::{Error, Result};
use crate::mask::Pattern;
use std::fmt;
use std::str::FromStr;

/// The mask structure of the prunable layers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaskKind {
    /// No mask.
    Dense,
    /// Keep the largest `1 − sparsity` fraction of each layer.
    Unstructured(f64),
    /// N:M along `in` (forward GEMM only).
    Nm(Pattern),
    /// Transposable N:M (forward and backward GEMMs), found by a registered solver.
    Transposable(Pattern),
}

impl MaskKind {
    /// M of the pattern (1 for dense and unstructured).
    pub fn tile(&self) -> usize {
        match self {
            MaskKind::Nm(p) | MaskKind::Transposable(p) => p.m,
            _ => 1,
        }
    }
}

impl FromStr for MaskKind {
    type Err = Error;
    /// `dense`, `unstructured:SPARSITY`, `nm:N:M` (or `N:M`), `transposable:N:M`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| Error::invalid("mask", s, why);
        if s == "dense" {
            return Ok(MaskKind::Dense);
        }
        if let Some(f) = s.strip_prefix("unstructured:") {
            let f: f64 = f
                .parse()
                .map_err(|_| bad("expected unstructured:SPARSITY, e.g. unstructured:0.5"))?;
            if !(0.0..1.0).contains(&f) {
                return Err(bad("sparsity must be in [0, 1)"));
            }
            return Ok(MaskKind::Unstructured(f));
        }
        if let Some(p) = s.strip_prefix("transposable:") {
            return Ok(MaskKind::Transposable(p.parse()?));
        }
        let p = s.strip_prefix("nm:").unwrap_or(s);
        p.parse()
            .map(MaskKind::Nm)
            .map_err(|_| bad("expected dense, unstructured:S, nm:N:M or transposable:N:M"))
    }
}

impl fmt::Display for MaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaskKind::Dense => write!(f, "dense"),
            MaskKind::Unstructured(s) => write!(f, "unstructured:{s}"),
            MaskKind::Nm(p) => write!(f, "nm:{p}"),
            MaskKind::Transposable(p) => write!(f, "transposable:{p}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_kinds_parse_and_print() -> Result<()> {
        for s in ["dense", "unstructured:0.5", "nm:2:4", "transposable:4:8"] {
            assert_eq!(s.parse::<MaskKind>()?.to_string(), s);
        }
        assert_eq!("2:4".parse::<MaskKind>()?, MaskKind::Nm("2:4".parse()?));
        for bad in ["unstructured:2", "transposable:5:4", "blocky"] {
            assert!(bad.parse::<MaskKind>().is_err(), "{bad}");
        }
        Ok(())
    }
}
