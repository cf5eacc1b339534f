//! The N:M pattern: keep N of every M consecutive weights.

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// An N:M sparsity pattern: `n` of every `m` consecutive weights are kept (2:4 keeps 2 of 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pattern {
    /// Weights kept per group.
    pub n: usize,
    /// Group size.
    pub m: usize,
}

impl Pattern {
    /// A pattern keeping `n` of `m`; `1 ≤ n ≤ m`, else an [`Error::Pattern`].
    pub fn new(n: usize, m: usize) -> Result<Self> {
        let bad = |reason: &str| Error::Pattern {
            value: format!("{n}:{m}"),
            reason: reason.into(),
        };
        if m == 0 {
            return Err(bad("M (group size) must be at least 1"));
        }
        if n == 0 {
            return Err(bad(
                "N (weights kept) must be at least 1; 0:M would prune every weight",
            ));
        }
        if n > m {
            return Err(bad("N (weights kept) must not exceed M (group size)"));
        }
        Ok(Pattern { n, m })
    }

    /// The fraction of weights the pattern prunes, `1 − N/M`.
    pub fn sparsity(&self) -> f64 {
        1.0 - self.n as f64 / self.m as f64
    }
}

impl FromStr for Pattern {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: &str| Error::Pattern {
            value: s.to_string(),
            reason: reason.into(),
        };
        let (n, m) = s
            .trim()
            .split_once(':')
            .ok_or_else(|| bad("expected N:M, e.g. 2:4"))?;
        let n = n
            .trim()
            .parse::<usize>()
            .map_err(|_| bad("N is not a non-negative integer"))?;
        let m = m
            .trim()
            .parse::<usize>()
            .map_err(|_| bad("M is not a positive integer"))?;
        Pattern::new(n, m)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.n, self.m)
    }
}

/// Parse `RxC` (e.g. `4096x4096`) into `(rows, cols)`.
pub fn parse_size(s: &str) -> Result<(usize, usize)> {
    let bad = || {
        Error::invalid(
            "size",
            s,
            "expected ROWSxCOLS with positive integers, e.g. 64x64",
        )
    };
    let (r, c) = s.trim().split_once(['x', 'X']).ok_or_else(bad)?;
    let r = r.trim().parse::<usize>().map_err(|_| bad())?;
    let c = c.trim().parse::<usize>().map_err(|_| bad())?;
    if r == 0 || c == 0 {
        return Err(bad());
    }
    elements(r, c)?;
    Ok((r, c))
}

/// `rows · cols`, or an error when the product overflows (more elements than a `usize` counts).
pub fn elements(rows: usize, cols: usize) -> Result<usize> {
    rows.checked_mul(cols).ok_or_else(|| {
        Error::invalid(
            "size",
            format!("{rows}x{cols}"),
            format!(
                "{} elements is more than the {} a tensor can have here",
                rows as u128 * cols as u128,
                usize::MAX
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() -> Result<()> {
        assert_eq!("2:4".parse::<Pattern>()?, Pattern { n: 2, m: 4 });
        let err = "5:4".parse::<Pattern>().unwrap_err().to_string();
        assert!(
            err.contains("5:4") && err.contains("must not exceed"),
            "{err}"
        );
        assert!("2-4".parse::<Pattern>().is_err());
        for bad in ["1:0", "0:0", "0:4", "5:4", "-1:4", "2:", ":4", "2:4:8"] {
            let e = bad.parse::<Pattern>().expect_err(bad).to_string();
            assert!(e.contains(bad), "{bad}: {e}");
        }
        assert_eq!(parse_size("8x16")?, (8, 16));
        // 2^64 elements: the product overflows u64 and is refused, not wrapped to 0.
        let e = parse_size("4294967296x4294967296").unwrap_err().to_string();
        assert!(e.contains("18446744073709551616 elements"), "{e}");
        assert!(parse_size("8x0").is_err());
        Ok(())
    }
}
