//! Cell kind `lm_prune`: one-shot pruning of a pretrained language model and its perplexity
//! (table6, TSENOR's experiment at small scale; [`crate::lm`], the job of `masklab prune`).
//!
//! Axes: `method` (`dense`, `magnitude`, `wanda`, `sparsegpt`, `alps`), `structure` (`dense` with the
//! dense method only; `unstructured:S`, `nm:N:M`, `transposable:N:M` with the others), `solver` (transposable structures; the
//! others ignore it). The cell's seed draws the calibration windows. Params (optional): `model`
//! (`smollm2-135m`, the pinned GGUF from `just setup`, default; or `tiny`, a seeded random
//! 2-layer llama with a byte-level tokenizer, for smoke runs), `calib_windows` (default 128),
//! `window` (512), `eval_tokens` (65536), `batch` (8), `cache` (default `$MASKLAB_CACHE`, else
//! `results/cache`). The text is the pinned corpus ([`crate::lm::corpus`]).
//!
//! Columns: `perplexity` and `ppl_ratio` (to the dense model's perplexity on the same windows,
//! measured once per run), `mean_kept_gap` (transposable rows), the mean and largest relative
//! reconstruction error over the projections, `structure_ok`, `prune_seconds`, `peak_rss_mb`;
//! `group` (method and structure, where only the solver varies: the kept_gap → perplexity ρ) and
//! `versus` (a transposable row's standard N:M row of the same pattern and method, for the
//! paired Welch test; `key` names each row).

use super::{CellContext, CellKind, Row};
use crate::error::{Error, Result};
use crate::experiment::cell::Cell;
use crate::lm::corpus::{self, Perplexity};
use crate::lm::model::{Config, Llama};
use crate::lm::prune::{Evaluation, Method, PruneSpec};
use crate::lm::{load, tokenizer};
use crate::mask::Structure;
use indexmap::IndexMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The `lm_prune` cell kind.
pub struct LmPruneCell;

/// The GGUF file `smollm2-135m` names inside the cache.
pub const SMOLLM2: &str = "lm/SmolLM2-135M-Instruct.Q4_1.gguf";

/// An `lm_prune` cell's `[params]`.
#[derive(serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Params {
    model: String,
    calib_windows: usize,
    window: usize,
    eval_tokens: usize,
    batch: usize,
    cache: PathBuf,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            model: "smollm2-135m".into(),
            calib_windows: 128,
            window: 512,
            eval_tokens: 65_536,
            batch: 8,
            cache: crate::io::default_cache(),
        }
    }
}

fn params(p: &IndexMap<String, toml::Value>) -> Result<Params> {
    let out: Params = crate::toml_value::from_params(p)?;
    if out.model != "smollm2-135m" && out.model != "tiny" {
        return Err(Error::invalid(
            "model",
            &out.model,
            "expected smollm2-135m or tiny",
        ));
    }
    for (key, v, min) in [
        ("calib_windows", out.calib_windows, 1),
        ("window", out.window, 2),
        ("batch", out.batch, 1),
    ] {
        if v < min {
            return Err(Error::invalid(key, v, format!("must be at least {min}")));
        }
    }
    if out.window > out.eval_tokens {
        return Err(Error::invalid(
            "eval_tokens",
            out.eval_tokens,
            format!("less than one window of {}", out.window),
        ));
    }
    Ok(out)
}

/// (method, structure, solver) of a cell; `None` method means the dense row.
fn setup(
    cell: &Cell,
    solvers: &crate::solvers::Catalogue,
) -> Result<(Option<Method>, Structure, crate::solvers::SolverRef)> {
    let method = match cell.require("method")? {
        "dense" => None,
        m => Some(m.parse::<Method>()?),
    };
    let kind = match (method, cell.get("structure")) {
        (None, None | Some("dense")) => Structure::Dense,
        (None, Some(s)) => {
            return Err(Error::invalid(
                "structure",
                s,
                "the dense row takes structure `dense` (or none)",
            ));
        }
        (Some(_), Some("dense")) => {
            return Err(Error::invalid(
                "structure",
                "dense",
                "a pruning method needs a sparse structure",
            ));
        }
        (Some(_), Some(s)) => s.parse::<Structure>()?,
        (Some(_), None) => {
            return Err(Error::invalid(
                "structure",
                "(missing)",
                "a pruning method needs a structure",
            ));
        }
    };
    if matches!(kind, Structure::Block(..)) {
        return Err(Error::invalid(
            "structure",
            kind,
            "table6 prunes unstructured, N:M or transposable N:M",
        ));
    }
    let solver = solvers.get(cell.get("solver").unwrap_or("exact"))?;
    Ok((method, kind, solver))
}

/// A model, its tokenized texts and the evaluation windows, shared by the cells of a run.
struct Loaded {
    model: Llama,
    calib: Vec<u32>,
    eval: Vec<Vec<u32>>,
}

fn load_model(p: &Params, device: &candle_core::Device) -> Result<Loaded> {
    let (model, tok) = match p.model.as_str() {
        "tiny" => (
            Llama::random(Config::tiny(64, 256), 0, device)?,
            tokenizer::from_parts(&tokenizer::byte_tokens(), &[], false)
                .map_err(|e| Error::invalid("tokenizer", "byte-level", e))?,
        ),
        _ => {
            let path = p.cache.join(SMOLLM2);
            if !path.is_file() {
                return Err(Error::Format {
                    path,
                    message: "the pinned model is missing: run `just setup`".into(),
                });
            }
            (load::open(&path, device)?.model()?, tokenizer::load(&path)?)
        }
    };
    let (eval, calib) = corpus::split(&corpus::corpus_dir(&p.cache))?;
    let eval_ids = tokenizer::encode(&tok, &eval)?;
    Ok(Loaded {
        model,
        calib: tokenizer::encode(&tok, &calib)?,
        eval: corpus::eval_windows(&eval_ids, p.window, p.eval_tokens)?,
    })
}

/// One table6 row.
#[derive(Debug, Clone, Default, serde::Serialize)]
struct LmPruneRow {
    perplexity: f64,
    ppl_ratio: f64,
    dense_perplexity: f64,
    eval_tokens: usize,
    calib_windows: usize,
    mean_kept_gap: Option<f64>,
    mean_rel_error: f64,
    max_rel_error: f64,
    sparsity: f64,
    structure_ok: bool,
    group: String,
    key: String,
    versus: Option<String>,
    prune_seconds: f64,
    peak_rss_mb: Option<f64>,
}

impl CellKind for LmPruneCell {
    fn name(&self) -> &'static str {
        "lm_prune"
    }

    fn summary(&self) -> &'static str {
        "one-shot pruning of a pretrained language model (magnitude, Wanda, SparseGPT) to unstructured, N:M or transposable N:M, and its perplexity"
    }

    fn axes(&self) -> &'static [&'static str] {
        &["method", "structure", "solver"]
    }

    fn columns(&self) -> Vec<String> {
        super::columns_of(&LmPruneRow::default())
    }

    fn check(&self, cell: &Cell, ctx: &super::Checking) -> Result<()> {
        self::params(ctx.params)?;
        setup(cell, ctx.solvers).map(|_| ())
    }

    fn run(&self, cell: &Cell, ctx: &CellContext) -> Result<Row> {
        let p = params(ctx.params)?;
        let (method, kind, solver) = setup(cell, ctx.solvers)?;
        let key = format!("lm {} window {} eval {}", p.model, p.window, p.eval_tokens);
        let loaded: Arc<Loaded> = ctx
            .shared
            .get_or_try(&key, || load_model(&p, &ctx.device))?;
        let dense: Arc<Perplexity> = ctx.shared.get_or_try(&format!("{key} dense"), || {
            corpus::perplexity(&loaded.model, &loaded.eval, &mut |_| {})
        })?;
        let name = match method {
            None => "dense".to_string(),
            Some(m) => format!("{m} {kind}"),
        };
        let versus = match (method, kind) {
            (Some(m), Structure::Transposable(pat)) => Some(format!("{m} nm:{pat}")),
            _ => None,
        };
        let Some(method) = method else {
            return super::to_row(&LmPruneRow {
                perplexity: dense.perplexity,
                ppl_ratio: 1.0,
                dense_perplexity: dense.perplexity,
                eval_tokens: dense.tokens,
                structure_ok: true,
                group: name.clone(),
                key: name,
                peak_rss_mb: crate::memory::peak_rss_mb(),
                ..Default::default()
            });
        };
        let calib =
            corpus::calibration_windows(&loaded.calib, p.window, p.calib_windows, cell.seed)?;
        let spec = PruneSpec {
            method,
            kind,
            solver,
            seed: cell.seed,
            batch: p.batch,
        };
        // The loaded model stays dense: each pruned layer is dropped once the evaluation
        // streams have passed it.
        let t0 = std::time::Instant::now();
        let outcome = crate::lm::prune::prune_layers(
            &loaded.model,
            &mut |l| Ok(loaded.model.layers[l].clone()),
            &calib,
            Some(Evaluation {
                windows: &loaded.eval,
                dense: false,
            }),
            &spec,
            &mut |_, _| Ok(()),
            &mut |_, _| {},
        )?;
        let prune_seconds = t0.elapsed().as_secs_f64() - outcome.eval_seconds;
        let (layers, ppl) = (
            outcome.reports,
            outcome.pruned.expect("evaluation windows were given"),
        );
        let totals = crate::lm::prune::totals(&layers);
        super::to_row(&LmPruneRow {
            perplexity: ppl.perplexity,
            ppl_ratio: ppl.perplexity / dense.perplexity,
            dense_perplexity: dense.perplexity,
            eval_tokens: ppl.tokens,
            calib_windows: calib.len(),
            mean_kept_gap: totals.mean_kept_gap,
            mean_rel_error: totals.mean_rel_error,
            max_rel_error: totals.max_rel_error,
            sparsity: totals.sparsity,
            structure_ok: totals.structure_ok,
            group: name.clone(),
            key: name,
            versus,
            prune_seconds,
            peak_rss_mb: crate::memory::peak_rss_mb(),
        })
    }
}
