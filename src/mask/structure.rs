//! The sparsity structure of a weight matrix: one type and one grammar (`dense`,
//! `unstructured[:S]`, `block:B[:S]`, `nm:N:M`, `transposable:N:M`) for diversity counts,
//! training, conversion and language-model pruning.

use super::Pattern;
use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// A sparsity structure of a weight matrix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Structure {
    /// No mask.
    Dense,
    /// Keep the largest `1 − sparsity` fraction of each layer.
    Unstructured(f64),
    /// Keep the `B×B` blocks of largest L2 norm, a `1 − sparsity` fraction of them.
    Block(usize, f64),
    /// N:M along `in` (forward GEMM only).
    Nm(Pattern),
    /// Transposable N:M (forward and backward GEMMs), found by a registered solver.
    Transposable(Pattern),
}

impl Structure {
    /// The side a prunable layer's weights must tile by: M of the pattern, B of blocks, else 1.
    pub fn tile(&self) -> usize {
        match self {
            Structure::Nm(p) | Structure::Transposable(p) => p.m,
            Structure::Block(b, _) => *b,
            _ => 1,
        }
    }

    /// The nominal fraction of a prunable layer's weights that the mask prunes.
    pub fn sparsity(&self) -> f64 {
        match self {
            Structure::Dense => 0.0,
            Structure::Unstructured(s) | Structure::Block(_, s) => *s,
            Structure::Nm(p) | Structure::Transposable(p) => p.sparsity(),
        }
    }
}

impl FromStr for Structure {
    type Err = Error;
    /// `dense`, `unstructured[:S]`, `block:B[:S]` (B or BxB), `nm:N:M` (or `N:M`),
    /// `transposable:N:M`; S defaults to 0.5 and lies in [0, 1].
    fn from_str(s: &str) -> Result<Self> {
        const GRAMMAR: &str =
            "expected dense, unstructured[:S], block:B[:S], nm:N:M or transposable:N:M";
        let bad = |why: &str| Error::invalid("structure", s, why);
        let sparsity = |f: Option<&str>| -> Result<f64> {
            let Some(f) = f else { return Ok(0.5) };
            let f: f64 = f
                .parse()
                .map_err(|_| bad("the sparsity S is not a number (e.g. unstructured:0.5)"))?;
            if !(0.0..=1.0).contains(&f) {
                return Err(bad("the sparsity S must lie in [0, 1]"));
            }
            Ok(f)
        };
        // A bad pattern keeps its own reason (which names it).
        let pattern = |n: &str, m: &str| -> Result<Pattern> {
            format!("{n}:{m}")
                .parse()
                .map_err(|e: Error| bad(&e.to_string()))
        };
        let parts: Vec<&str> = s.trim().split(':').collect();
        match parts.as_slice() {
            ["dense"] => Ok(Structure::Dense),
            ["unstructured", rest @ ..] if rest.len() <= 1 => {
                Ok(Structure::Unstructured(sparsity(rest.first().copied())?))
            }
            ["block", b, rest @ ..] if rest.len() <= 1 => {
                // B or BxB (a square block either way).
                let side = b
                    .split_once('x')
                    .map_or(*b, |(a, c)| if a == c { a } else { "" });
                let b: usize = side
                    .parse()
                    .map_err(|_| bad("the block side is not an integer (block:B or block:BxB)"))?;
                if b == 0 {
                    return Err(bad("the block side B must be at least 1"));
                }
                Ok(Structure::Block(b, sparsity(rest.first().copied())?))
            }
            ["transposable", n, m] => Ok(Structure::Transposable(pattern(n, m)?)),
            ["nm", n, m] => Ok(Structure::Nm(pattern(n, m)?)),
            [n, m] if n.parse::<usize>().is_ok() => Ok(Structure::Nm(pattern(n, m)?)),
            _ => Err(bad(GRAMMAR)),
        }
    }
}

impl fmt::Display for Structure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Structure::Dense => write!(f, "dense"),
            Structure::Unstructured(s) => write!(f, "unstructured:{s}"),
            Structure::Block(b, s) => write!(f, "block:{b}:{s}"),
            Structure::Nm(p) => write!(f, "nm:{p}"),
            Structure::Transposable(p) => write!(f, "transposable:{p}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structures_parse_and_print() -> Result<()> {
        for s in [
            "dense",
            "unstructured:0.5",
            "block:4:0.5",
            "nm:2:4",
            "transposable:4:8",
        ] {
            assert_eq!(s.parse::<Structure>()?.to_string(), s);
        }
        let p24 = "2:4".parse()?;
        assert_eq!("2:4".parse::<Structure>()?, Structure::Nm(p24));
        assert_eq!(
            "unstructured".parse::<Structure>()?,
            Structure::Unstructured(0.5)
        );
        assert_eq!("block:4".parse::<Structure>()?, Structure::Block(4, 0.5));
        assert_eq!(
            "block:4x4:0.25".parse::<Structure>()?,
            Structure::Block(4, 0.25)
        );
        assert_eq!(
            "unstructured:1".parse::<Structure>()?,
            Structure::Unstructured(1.0)
        );
        for bad in [
            "unstructured:2",
            "transposable:5:4",
            "blocky",
            "block:0:0.5",
            "block:4x2",
            "block:4:1.5",
            "nm:2",
            "transposable",
        ] {
            let e = bad.parse::<Structure>().unwrap_err().to_string();
            assert!(e.contains(bad), "{bad}: {e}");
        }
        Ok(())
    }
}
