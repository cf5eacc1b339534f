//! Applying a solver to blocks of scores: the timed, checked solve every caller shares
//! (`masklab solve`'s job in `crate::ops::solve`, conversion, the `solver` cell kind, table7's
//! transposable masks), and the scores of a checkpoint's tensors (|W|, W², a score file, Wanda's
//! |W|·‖x‖) cut into blocks.

use super::evaluate::{Evaluation, evaluate};
use super::{SolveContext, Solver};
use crate::error::{Error, Result};
use crate::io;
use crate::io::checkpoint::{Checkpoint, Entry, ValueMap};
use crate::mask::tile::{BlockShape, Blocks};
use crate::mask::{Matrix, Pattern};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use crate::mask::score::Score;

/// One solve of a batch of blocks: the mask batch, its evaluation and the solver's wall time.
#[derive(Debug, Clone)]
pub struct Solved {
    /// `[B, M, M]` 0/1 masks.
    pub keep: Vec<u8>,
    /// Checks and kept scores.
    pub evaluation: Evaluation,
    /// Seconds spent in the solver (not in checking).
    pub seconds: f64,
}

/// Run `solver` on `[B, M, M]` blocks, time it and check the result.
pub fn solve_blocks(
    solver: &dyn Solver,
    blocks: &[f32],
    pattern: Pattern,
    ctx: &SolveContext,
) -> Result<Solved> {
    let start = Instant::now();
    let keep = solver.solve(blocks, pattern, ctx)?;
    let seconds = start.elapsed().as_secs_f64();
    if keep.len() != blocks.len() {
        return Err(Error::invalid(
            "solver output",
            solver.name(),
            format!("{} mask values for {} scores", keep.len(), blocks.len()),
        ));
    }
    let evaluation = evaluate(blocks, &keep, pattern);
    Ok(Solved {
        keep,
        evaluation,
        seconds,
    })
}

/// A solve error with the tensor it happened in (and, for a non-finite score under `square`,
/// why: W² overflows f32 above |W| = 1.8e19).
pub fn in_tensor(err: Error, tensor: &str, score: &Score) -> Error {
    match err {
        Error::Invalid {
            field,
            value,
            reason,
        } if field == "score" => {
            let why = if *score == Score::Square && value == "inf" {
                " (W² overflows f32 where |W| > 1.8e19; use --score abs)"
            } else {
                ""
            };
            Error::Invalid {
                field,
                value,
                reason: format!("{reason} in tensor `{tensor}`{why}"),
            }
        }
        other => other,
    }
}

/// Scores of a checkpoint's tensors: |W|, W², a score file's tensor of the same name, or Wanda's
/// |W_ij|·‖x_j‖ from per-input-column activation norms (a 1-D tensor of `in` values per weight).
pub struct Scorer {
    score: Score,
    supplied: Option<(String, Checkpoint)>,
    norms: Option<(PathBuf, Checkpoint)>,
}

impl Scorer {
    /// The score kinds a checkpoint's scorer computes (Wanda's come from the activation
    /// norms, `act_norms`).
    pub const KINDS: &'static [&'static str] = &["abs", "square", "file"];

    /// `score` if a scorer computes it: the error says where Wanda's scores come from.
    pub fn check(score: Score) -> Result<Score> {
        score.only(
            Self::KINDS,
            "--score (Wanda's scores come from --act-norms)",
        )
    }

    /// Open the score or norms file the options name.
    pub fn new(score: &Score, act_norms: Option<&Path>) -> Result<Self> {
        let score = Self::check(score.clone())?;
        let supplied = match &score {
            Score::Supplied(s) => Some((s.clone(), Checkpoint::open(&io::split_source(s).0)?)),
            _ => None,
        };
        let norms = match act_norms {
            Some(p) => Some((p.to_path_buf(), Checkpoint::open(p)?)),
            None => None,
        };
        Ok(Scorer {
            score,
            supplied,
            norms,
        })
    }

    /// The scores of 2-D entry `e` of `ckpt`, row-major, finite and non-negative.
    pub fn scores(&self, ckpt: &Checkpoint, e: &Entry) -> Result<Vec<f32>> {
        let mut scores = match &self.supplied {
            Some((file, sc)) => {
                let s = find(sc, &e.name, file, "score")?;
                if s.shape != e.shape {
                    return Err(Error::invalid(
                        "score",
                        file,
                        format!(
                            "tensor `{}` has shape {:?}, weights have {:?}",
                            e.name, s.shape, e.shape
                        ),
                    ));
                }
                let v = sc.read_f32(s)?;
                if v.iter().any(|x| *x < 0.0) {
                    return Err(Error::invalid(
                        "score",
                        file,
                        format!("tensor `{}` has negative scores", e.name),
                    ));
                }
                return Ok(v);
            }
            None => ckpt.read_f32_map(e, self.value_map())?,
        };
        if let Some((file, nc)) = &self.norms {
            let file = file.display().to_string();
            let n = find(nc, &e.name, &file, "act-norms")?;
            let cols = e.shape[1];
            if n.elements() != cols {
                return Err(Error::invalid(
                    "act-norms",
                    &file,
                    format!(
                        "`{}` has {} norms, the weight has {cols} input columns",
                        e.name,
                        n.elements()
                    ),
                ));
            }
            let norms = nc.read_f32(n)?;
            if norms.iter().any(|x| *x < 0.0) {
                return Err(Error::invalid(
                    "act-norms",
                    &file,
                    format!("`{}` has a negative norm", e.name),
                ));
            }
            scores
                .chunks_mut(cols)
                .for_each(|row| row.iter_mut().zip(&norms).for_each(|(s, n)| *s *= n));
        }
        Ok(scores)
    }
}

impl Scorer {
    /// The scores of 2-D entry `e` as a matrix, after checking the work fits in memory.
    pub fn matrix(&self, ckpt: &Checkpoint, e: &Entry) -> Result<Matrix> {
        ensure_fits(e)?;
        Matrix::new(e.shape[0], e.shape[1], self.scores(ckpt, e)?)
    }
}

impl Scorer {
    /// What decoding applies to each weight for a score computed from the weights alone.
    fn value_map(&self) -> ValueMap {
        match self.score {
            Score::Square => ValueMap::Square,
            _ => ValueMap::Abs,
        }
    }

    /// The scores of 2-D entry `e` cut into M×M blocks: decoded straight into block order when
    /// they are |W| or W² (no second pass), else scored as a matrix and tiled in place.
    pub fn blocks(&self, ckpt: &Checkpoint, e: &Entry, m: usize) -> Result<Blocks> {
        if self.supplied.is_some() || self.norms.is_some() {
            return Blocks::from_matrix_owned(self.matrix(ckpt, e)?, m);
        }
        ensure_fits(e)?;
        let shape = BlockShape::new(e.shape[0], e.shape[1], m)?;
        Blocks::from_tiled(shape, ckpt.read_f32_blocks(e, self.value_map(), shape)?)
    }
}

/// The work on entry `e` (scores, blocks, mask: about 9 bytes an element) fits in memory.
fn ensure_fits(e: &Entry) -> Result<()> {
    crate::memory::ensure_fits(
        e.elements() as u128 * 9,
        "input",
        format!("tensor `{}` {:?}", e.name, e.shape),
    )
}

fn find<'a>(c: &'a Checkpoint, name: &str, file: &str, field: &str) -> Result<&'a Entry> {
    c.entries()
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| Error::invalid(field, file, format!("has no tensor named `{name}`")))
}
