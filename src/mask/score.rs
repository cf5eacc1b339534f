//! How weights become the scores a mask keeps the largest of: one type for every command and
//! cell kind, each of which takes the kinds it can compute ([`Score::only`]).

use crate::error::{Error, Result};

/// A weight score.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Score {
    /// `|W|` (`abs`, or `magnitude`).
    Abs,
    /// `W²`.
    Square,
    /// Wanda: `|W_ij|·‖x_j‖₂` over calibration inputs.
    Wanda,
    /// Scores read from a file (`FILE[#GLOB]`), matched to weights by tensor name.
    Supplied(String),
}

impl Score {
    /// The kind's name: `abs`, `square`, `wanda` or `file`.
    pub fn kind(&self) -> &'static str {
        match self {
            Score::Abs => "abs",
            Score::Square => "square",
            Score::Wanda => "wanda",
            Score::Supplied(_) => "file",
        }
    }

    /// `self` if its kind is one of `kinds`, else an error naming the value, `place` and the
    /// kinds it takes.
    pub fn only(self, kinds: &[&str], place: &str) -> Result<Self> {
        if kinds.contains(&self.kind()) {
            return Ok(self);
        }
        let listed: Vec<String> = kinds
            .iter()
            .map(|k| match *k {
                "file" => "a score file FILE[#GLOB]".to_string(),
                k => k.to_string(),
            })
            .collect();
        Err(Error::invalid(
            "score",
            self,
            format!("{place} takes {}", listed.join(", ")),
        ))
    }
}

impl std::str::FromStr for Score {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "abs" | "magnitude" => Score::Abs,
            "square" => Score::Square,
            "wanda" => Score::Wanda,
            other if other.contains('.') => Score::Supplied(other.to_string()),
            other => {
                return Err(Error::invalid(
                    "score",
                    other,
                    "expected abs, square, wanda or a score file FILE[#GLOB]",
                ));
            }
        })
    }
}

impl std::fmt::Display for Score {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Score::Supplied(s) => f.write_str(s),
            other => f.write_str(other.kind()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_prints_and_is_refused_where_not_taken() -> Result<()> {
        for (text, kind) in [
            ("abs", "abs"),
            ("magnitude", "abs"),
            ("square", "square"),
            ("wanda", "wanda"),
            ("scores.safetensors#layer.*", "file"),
        ] {
            let s: Score = text.parse()?;
            assert_eq!(s.kind(), kind);
            assert_eq!(s.to_string().parse::<Score>()?, s);
        }
        assert!("l1".parse::<Score>().is_err());
        let e = Score::Wanda
            .only(&["abs", "square"], "solver cells")
            .unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("wanda") && e.contains("solver cells") && e.contains("abs, square"),
            "{e}"
        );
        assert_eq!(Score::Square.only(&["abs", "square"], "x")?, Score::Square);
        Ok(())
    }
}
