//! The training loop: masks (static or recomputed every k steps), SGD/AdamW with a cosine
//! schedule, evaluation on the test split, and the end-of-run structure checks of every GEMM
//! operand.
//!
//! Deterministic for a seed on a given device and thread count: initialisation, shuffling and the
//! estimators' draws all come from RNGs derived from the seed. The last partial batch of an epoch
//! is dropped, so that every batch is a multiple of the estimator's M.

use super::data::Dataset;
use super::models::{self, LayerPolicy, Model};
use super::optim::{Optimizer, cosine};
use super::sparse::{GemmMode, GradEstimator, SparseLinear, support};
use crate::error::{Error, Result};
use crate::mask::Mask;
use crate::mask::Structure;
use crate::policy::mask_of;
use candle_core::{D, Device, Tensor};
use rand::seq::SliceRandom;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// Which optimiser (`sgd` or `adamw`, in flags and specs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// SGD with momentum and weight decay.
    Sgd,
    /// AdamW.
    #[value(name = "adamw")]
    AdamW,
}

impl std::fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::AdamW => "adamw",
        })
    }
}

/// Everything one training run needs.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// `mlp`, `lenet` or `resnet`.
    pub model: String,
    /// MLP hidden widths.
    pub hidden: Vec<usize>,
    /// Mask structure of the prunable layers.
    pub mask: Structure,
    /// Solver for transposable masks.
    pub solver: crate::solvers::SolverRef,
    /// Recompute masks every this many steps (0: static, computed once from the initial weights).
    pub every: usize,
    /// Estimator for the update GEMM.
    pub grad: GradEstimator,
    /// Which kernels run the three GEMMs on the CPU: compressed N:M wherever an operand is N:M
    /// (the default), or dense gemm on the masked operands.
    pub gemm: GemmMode,
    /// SR-STE λ (0: off).
    pub srste: f64,
    /// Epochs.
    pub epochs: usize,
    /// Batch size.
    pub batch: usize,
    /// Peak learning rate (cosine to 0).
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Optimiser.
    pub optimizer: OptimizerKind,
    /// Seed.
    pub seed: u64,
    /// Use only the first this many training examples.
    pub train_limit: Option<usize>,
    /// Write the last step's neural gradients `g` of the prunable layers here.
    pub capture_grads: Option<PathBuf>,
    /// Start from the weights in this checkpoint (written by `save`) instead of the seeded init;
    /// a static mask is then computed from these weights.
    pub init: Option<PathBuf>,
    /// Write the trained weights (dense master weights, `paramI`) here.
    pub save: Option<PathBuf>,
    /// Show a progress bar.
    pub progress: bool,
}

/// What a run reports (`masklab train --json`, table4 rows).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TrainReport {
    /// Test-split accuracy at the end.
    pub test_accuracy: f64,
    /// Mean training loss over the last epoch.
    pub train_loss: f64,
    /// Optimiser steps.
    pub steps: usize,
    /// Layers carrying masks and estimators.
    pub sparse_layers: usize,
    /// The mask's nominal sparsity (0 for dense): the level at which structures are compared.
    pub target_sparsity: f64,
    /// Fraction of the prunable layers' weights pruned at the end.
    pub sparsity: f64,
    /// log10 of the number of masks the structure allows over all prunable layers (the sum of
    /// each layer's log10 mask diversity, [`crate::diversity`]); 0 for dense.
    pub log10_mask_diversity: f64,
    /// Every GEMM operand has its structure at the end (forward `W⊙m`, backward `(W⊙m)ᵀ` for
    /// transposable masks, update `est(g)` along the batch axis).
    pub structure_ok: bool,
    /// Times the masks were (re)computed.
    pub mask_updates: usize,
    /// The GEMMs of the prunable layers that ran on compressed N:M kernels
    /// (`forward`, `backward`, `update`, joined by `+`), or `none`.
    pub compressed_gemms: String,
    /// Mean wall time of one training step (forward, backward, update, mask refresh).
    pub step_seconds: f64,
    /// Wall time of the whole run (data already loaded).
    pub seconds: f64,
    /// Peak resident memory of the process in MB (`VmHWM`) since the last
    /// [`crate::memory::reset_peak_rss`] — which the runner calls before each cell when cells run
    /// one at a time; `None` where the OS does not say.
    pub peak_rss_mb: Option<f64>,
}

/// The JSON object `masklab train --json` prints: the report and what was trained.
pub fn json(cfg: &TrainConfig, dataset: &str, r: &TrainReport) -> serde_json::Value {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("model".into(), cfg.model.clone().into());
        o.insert("dataset".into(), dataset.into());
        o.insert("mask".into(), cfg.mask.to_string().into());
        o.insert("grad_estimator".into(), format!("{:?}", cfg.grad).into());
        o.insert("gemm".into(), cfg.gemm.to_string().into());
        o.insert("seed".into(), cfg.seed.into());
    }
    v
}

/// The one-line account `masklab train` prints of a finished run.
pub fn describe(cfg: &TrainConfig, dataset: &str, r: &TrainReport) -> String {
    format!(
        "{} on {dataset} ({} mask, {:?} gradients, {} GEMMs compressed): test accuracy {:.4}, train loss {:.4}, {} steps, {:.2} ms/step, {:.1} s, structure {}",
        cfg.model,
        cfg.mask,
        cfg.grad,
        r.compressed_gemms,
        r.test_accuracy,
        r.train_loss,
        r.steps,
        r.step_seconds * 1e3,
        r.seconds,
        if r.structure_ok { "ok" } else { "VIOLATED" }
    )
}

/// Compute the mask of one layer from `|W|`.
pub fn layer_mask(
    layer: &SparseLinear,
    kind: Structure,
    solver: &dyn crate::solvers::Solver,
    seed: u64,
) -> Result<Option<Mask>> {
    mask_of(&layer.weight_scores()?, kind, solver, seed)
}

/// Check the structure of every GEMM operand of one layer after training.
pub fn layer_structure_ok(layer: &SparseLinear, kind: Structure) -> Result<bool> {
    let wm = layer
        .masked_weight()
        .map_err(Error::tensor("masked weight"))?;
    let fwd = support(&wm)?;
    let weights_ok = match kind {
        Structure::Dense => true,
        Structure::Unstructured(s) | Structure::Block(_, s) => fwd.sparsity() >= s - 1e-9,
        Structure::Nm(p) => fwd.nm_report(p)?.over == 0,
        Structure::Transposable(p) => {
            fwd.nm_report(p)?.over == 0 && fwd.transpose().nm_report(p)?.over == 0
        }
    };
    let grad_ok = match layer.estimator() {
        GradEstimator::Dense => true,
        GradEstimator::Nm(_, p) => match &layer.recorded().pruned {
            // Groups run along the batch axis: check est(g)ᵀ along its rows.
            Some(pruned) => {
                support(&pruned.t().map_err(Error::tensor("est(g)ᵀ"))?)?
                    .nm_report(p)?
                    .over
                    == 0
            }
            None => false,
        },
    };
    Ok(weights_ok && grad_ok)
}

/// A training run in progress: the model, its optimiser and the data order, advanced one
/// optimiser step at a time ([`Session::step`]); [`train`] drives it to the end.
pub struct Session<'a> {
    cfg: &'a TrainConfig,
    data: &'a Dataset,
    device: Device,
    model: Box<dyn Model>,
    opt: Optimizer,
    rng: rand_chacha::ChaCha8Rng,
    order: Vec<usize>,
    per_epoch: usize,
    step: usize,
    mask_updates: usize,
    loss_sum: f64,
    train_loss: f64,
    step_time: f64,
    start: Instant,
}

impl<'a> Session<'a> {
    /// Build the model (or load `cfg.init`), compute the first masks and the optimiser.
    pub fn new(cfg: &'a TrainConfig, data: &'a Dataset, device: &Device) -> Result<Self> {
        check(cfg, data)?;
        // Every layer runs the masked-linear op (fused on the CPU), dense ones too; the plain
        // autograd layer is the reference the op is tested against.
        let policy = LayerPolicy {
            estimator: cfg.grad,
            custom: true,
            tile: cfg.mask.tile(),
            srste: cfg.srste,
        };
        let mut model = models::build(
            &cfg.model,
            data.shape,
            data.classes,
            &cfg.hidden,
            &policy,
            cfg.seed,
            device,
        )?;
        let sparse_layers = model.sparse_layers().len();
        for l in model.sparse_layers() {
            l.set_gemm(cfg.gemm, cfg.mask);
        }
        if sparse_layers == 0
            && (cfg.mask != Structure::Dense || !matches!(cfg.grad, GradEstimator::Dense))
        {
            return Err(Error::invalid(
                "mask",
                cfg.mask,
                format!("no layer of {} tiles by M = {}", cfg.model, cfg.mask.tile()),
            ));
        }
        if let Some(path) = &cfg.init {
            load_vars(&model.vars(), path)?;
        }
        let start = Instant::now();
        let vars = model.vars();
        let opt = match cfg.optimizer {
            OptimizerKind::Sgd => Optimizer::sgd(vars, cfg.momentum, cfg.weight_decay),
            OptimizerKind::AdamW => Optimizer::adamw(vars, cfg.lr, cfg.weight_decay)
                .map_err(Error::tensor(format!("training {}: AdamW", cfg.model)))?,
        };
        let n_train = cfg
            .train_limit
            .unwrap_or(data.train.len())
            .min(data.train.len());
        let mut session = Session {
            cfg,
            data,
            device: device.clone(),
            model,
            opt,
            rng: crate::seed::rng(cfg.seed, "batch order"),
            order: (0..n_train).collect(),
            per_epoch: n_train / cfg.batch,
            step: 0,
            mask_updates: 0,
            loss_sum: 0.0,
            train_loss: f64::NAN,
            step_time: 0.0,
            start,
        };
        if cfg.mask != Structure::Dense {
            session.refresh_masks()?;
        }
        Ok(session)
    }

    /// Recompute every prunable layer's mask now (from the current weights, with the run's
    /// solver), as a refresh during training would; for timing the refresh apart.
    pub fn recompute_masks(&mut self) -> Result<()> {
        self.refresh_masks()
    }

    /// The GEMMs of the prunable layers that ran on compressed N:M kernels in the last step (or,
    /// before one, that would): `forward`, `backward`, `update`, joined by `+`, or `none`; with
    /// `(in K of L layers)` when not every layer ran them (wide im2col GEMMs run masked-dense).
    pub fn report_gemms(&mut self) -> String {
        let layers = self.model.sparse_layers();
        let ran: Vec<(bool, bool, bool)> = layers.iter().map(|l| l.ran_compressed()).collect();
        let on: Vec<&str> = [(0, "forward"), (1, "backward"), (2, "update")]
            .into_iter()
            .filter(|&(i, _)| ran.iter().any(|r| [r.0, r.1, r.2][i]))
            .map(|(_, name)| name)
            .collect();
        let any = ran.iter().filter(|r| r.0 || r.1 || r.2).count();
        match (on.is_empty(), ran.windows(2).all(|w| w[0] == w[1])) {
            (true, _) => "none".to_string(),
            (false, true) => on.join("+"),
            (false, false) => format!("{} (in {any} of {} layers)", on.join("+"), ran.len()),
        }
    }

    fn refresh_masks(&mut self) -> Result<()> {
        let (cfg, step) = (self.cfg, self.step);
        for (i, l) in self.model.sparse_layers().into_iter().enumerate() {
            let m = layer_mask(
                l,
                cfg.mask,
                &*cfg.solver,
                crate::seed::derive(cfg.seed, &format!("mask layer {i} step {step}")),
            )?;
            l.set_mask(m.as_ref())?;
        }
        self.mask_updates += 1;
        Ok(())
    }

    /// Optimiser steps in the whole run (`epochs × ⌊examples / batch⌋`).
    pub fn total_steps(&self) -> usize {
        self.per_epoch * self.cfg.epochs
    }

    /// Steps taken so far.
    pub fn steps_done(&self) -> usize {
        self.step
    }

    /// The model being trained.
    pub fn model(&self) -> &dyn Model {
        self.model.as_ref()
    }

    /// One optimiser step (shuffling at the start of an epoch, refreshing masks when due);
    /// returns the batch's loss. An error once [`Session::total_steps`] are done.
    pub fn step(&mut self) -> Result<f64> {
        let cfg = self.cfg;
        let total = self.total_steps();
        if self.step >= total {
            return Err(Error::invalid(
                "epochs",
                cfg.epochs,
                format!("all {total} steps are done"),
            ));
        }
        let b = self.step % self.per_epoch;
        if b == 0 {
            self.order.shuffle(&mut self.rng);
            self.loss_sum = 0.0;
        }
        let t0 = Instant::now();
        if cfg.every > 0
            && self.step > 0
            && self.step.is_multiple_of(cfg.every)
            && cfg.mask != Structure::Dense
        {
            self.refresh_masks()?;
        }
        let tctx = |what: &str| Error::tensor(format!("training {}: {what}", cfg.model));
        let (x, y) = self
            .data
            .batch(
                &self.data.train,
                &self.order[b * cfg.batch..(b + 1) * cfg.batch],
                &self.device,
            )
            .map_err(tctx("batch"))?;
        let lr = cosine(cfg.lr, self.step, total);
        let l = train_step(self.model.as_ref(), &mut self.opt, &x, &y, lr).map_err(tctx("step"))?;
        if !l.is_finite() {
            return Err(Error::invalid(
                "lr",
                cfg.lr,
                format!("training diverged at step {} (loss {l})", self.step),
            ));
        }
        self.loss_sum += l;
        self.step += 1;
        self.step_time += t0.elapsed().as_secs_f64();
        if b + 1 == self.per_epoch {
            self.train_loss = self.loss_sum / self.per_epoch.max(1) as f64;
        }
        Ok(l)
    }

    /// Evaluate, check every GEMM operand's structure, write `capture_grads`/`save`, report.
    pub fn finish(mut self) -> Result<TrainReport> {
        let cfg = self.cfg;
        let tctx = |what: &str| Error::tensor(format!("training {}: {what}", cfg.model));
        let test_accuracy = evaluate(self.model.as_ref(), self.data, &self.device)?;
        let compressed_gemms = self.report_gemms();
        let mut structure_ok = true;
        let (mut pruned, mut weights) = (0f64, 0f64);
        let layers = self.model.sparse_layers();
        let sparse_layers = layers.len();
        let shapes: Vec<(usize, usize)> = layers.iter().map(|l| l.dims()).collect();
        for l in layers {
            structure_ok &= layer_structure_ok(l, cfg.mask)?;
            let s = support(&l.masked_weight().map_err(tctx("masked weight"))?)?;
            pruned += s.sparsity() * (s.rows() * s.cols()) as f64;
            weights += (s.rows() * s.cols()) as f64;
        }
        if let Some(path) = &cfg.capture_grads {
            capture(self.model.as_mut(), path)?;
        }
        if let Some(path) = &cfg.save {
            save_vars(&self.model.vars(), path)?;
        }
        Ok(TrainReport {
            test_accuracy,
            train_loss: self.train_loss,
            steps: self.step,
            sparse_layers,
            target_sparsity: cfg.mask.sparsity(),
            sparsity: if weights > 0.0 { pruned / weights } else { 0.0 },
            log10_mask_diversity: crate::diversity::log10_model_diversity(cfg.mask, &shapes)?,
            structure_ok,
            mask_updates: self.mask_updates,
            compressed_gemms,
            step_seconds: self.step_time / self.step.max(1) as f64,
            seconds: self.start.elapsed().as_secs_f64(),
            peak_rss_mb: crate::memory::peak_rss_mb(),
        })
    }
}

/// Train a model on `data` and evaluate it.
pub fn train(cfg: &TrainConfig, data: &Dataset, device: &Device) -> Result<TrainReport> {
    let mut session = Session::new(cfg, data, device)?;
    let total = session.total_steps();
    let bar = crate::io::bar(
        cfg.progress,
        total as u64,
        "{spinner} epoch {msg} [{bar:30}] {pos}/{len} steps, ETA {eta}",
    );
    let per_epoch = session.per_epoch;
    let (mut last_acc, mut loss_sum) = (String::new(), 0f64);
    while session.steps_done() < total {
        let (epoch, b) = (session.step / per_epoch, session.step % per_epoch);
        if b == 0 {
            loss_sum = 0.0;
        }
        loss_sum += session.step()?;
        bar.inc(1);
        if b % 20 == 0 {
            bar.set_message(format!(
                "{}/{} loss {:.3}{last_acc}",
                epoch + 1,
                cfg.epochs,
                loss_sum / (b + 1) as f64
            ));
        }
        if cfg.progress && b + 1 == per_epoch && epoch + 1 < cfg.epochs {
            // Shown only: evaluation draws nothing, so the run stays the same with or without it.
            last_acc = format!(", test acc {:.4}", evaluate(session.model(), data, device)?);
        }
    }
    bar.finish_and_clear();
    session.finish()
}

/// One step: forward, cross-entropy, backward, optimiser update; returns the loss.
pub fn train_step(
    model: &dyn Model,
    opt: &mut Optimizer,
    x: &Tensor,
    y: &Tensor,
    lr: f64,
) -> candle_core::Result<f64> {
    let logits = model.forward(x, true)?;
    let loss = super::kernels::cross_entropy(&logits, y)?;
    let grads = model.backward(&loss)?;
    opt.step(&grads, lr)?;
    Ok(loss.to_scalar::<f32>()? as f64)
}

/// Refuse a run that cannot go, naming the flag: the data, the output files, the model size
/// and the optimisation numbers.
fn check(cfg: &TrainConfig, data: &Dataset) -> Result<()> {
    if data.test.is_empty() {
        return Err(Error::invalid(
            "dataset",
            &data.name,
            "the test split has no examples",
        ));
    }
    check_outputs(cfg)?;
    check_mlp_size(cfg, data)?;
    check_optimisation(cfg, data)
}

/// The output files: never an input (the `--init` checkpoint's files), never each other.
fn check_outputs(cfg: &TrainConfig) -> Result<()> {
    let inputs: Vec<std::path::PathBuf> = cfg
        .init
        .iter()
        .flat_map(|p| crate::io::checkpoint::source_files(p))
        .collect();
    let inputs: Vec<&std::path::Path> = inputs.iter().map(|p| p.as_path()).collect();
    for (field, out) in [("capture-grads", &cfg.capture_grads), ("save", &cfg.save)] {
        if let Some(out) = out {
            crate::io::atomic::refuse_overwrite(field, out, &inputs)?;
        }
    }
    if let (Some(a), Some(b)) = (&cfg.capture_grads, &cfg.save)
        && crate::io::atomic::same_file(a, b)
    {
        return Err(Error::invalid(
            "save",
            b.display(),
            "is also the --capture-grads file; give two different files",
        ));
    }
    Ok(())
}

/// An MLP's widths: none zero, and its training state fits in memory.
fn check_mlp_size(cfg: &TrainConfig, data: &Dataset) -> Result<()> {
    if !cfg.model.starts_with("mlp") {
        return Ok(());
    }
    if let Some(i) = cfg.hidden.iter().position(|&w| w == 0) {
        return Err(Error::invalid(
            "hidden",
            format!("{:?}", cfg.hidden),
            format!("width {i} is 0; every hidden layer needs at least one unit"),
        ));
    }
    let widths: Vec<u128> = std::iter::once(data.features())
        .chain(cfg.hidden.iter().copied())
        .chain(std::iter::once(data.classes))
        .map(|w| w as u128)
        .collect();
    let params: u128 = widths.windows(2).map(|w| w[0] * w[1]).sum();
    let activations: u128 = widths.iter().sum::<u128>() * cfg.batch as u128;
    // Weights, gradient, momentum or Adam moments, mask and masked copy: ~8 f32 per
    // parameter; activations and their gradients with the layers' buffers: ~8 per unit.
    crate::memory::ensure_fits(
        (params + activations) * 32,
        "hidden",
        format!("{:?} at batch {}", cfg.hidden, cfg.batch),
    )
}

/// Epochs, batch (a multiple of the gradient pattern's M, at most the training examples) and
/// the optimiser's numbers.
fn check_optimisation(cfg: &TrainConfig, data: &Dataset) -> Result<()> {
    if cfg.epochs == 0 {
        return Err(Error::invalid("epochs", 0, "must be at least 1"));
    }
    if cfg.batch == 0 {
        return Err(Error::invalid("batch", 0, "must be at least 1"));
    }
    if let GradEstimator::Nm(_, p) = cfg.grad
        && !cfg.batch.is_multiple_of(p.m)
    {
        return Err(Error::invalid(
            "batch",
            cfg.batch,
            format!("must be a multiple of the gradient pattern's M = {}", p.m),
        ));
    }
    let n = cfg
        .train_limit
        .unwrap_or(data.train.len())
        .min(data.train.len());
    if n < cfg.batch {
        return Err(Error::invalid(
            "batch",
            cfg.batch,
            format!("larger than the {n} training examples"),
        ));
    }
    if !(cfg.lr > 0.0 && cfg.lr.is_finite()) {
        return Err(Error::invalid("lr", cfg.lr, "must be positive"));
    }
    if !(cfg.weight_decay >= 0.0 && cfg.weight_decay.is_finite()) {
        return Err(Error::invalid(
            "weight-decay",
            cfg.weight_decay,
            "must be a finite number ≥ 0",
        ));
    }
    if !(0.0..1.0).contains(&cfg.momentum) {
        return Err(Error::invalid(
            "momentum",
            cfg.momentum,
            "must be in [0, 1)",
        ));
    }
    Ok(())
}

/// Test-split accuracy, in batches of 1000.
pub fn evaluate(model: &dyn Model, data: &Dataset, device: &Device) -> Result<f64> {
    let n = data.test.len();
    let mut correct = 0usize;
    for start in (0..n).step_by(1000) {
        let idx: Vec<usize> = (start..(start + 1000).min(n)).collect();
        let ctx = Error::tensor("evaluating");
        let c = (|| {
            let (x, y) = data.batch(&data.test, &idx, device)?;
            let pred = model.forward(&x, false)?.argmax(D::Minus1)?;
            pred.eq(&y)?
                .to_dtype(candle_core::DType::F32)?
                .sum_all()?
                .to_scalar::<f32>()
        })()
        .map_err(ctx)?;
        correct += c as usize;
    }
    Ok(correct as f64 / n.max(1) as f64)
}

/// Write the model's variables as `param0`, `param1`, … (.safetensors or .h5).
pub fn save_vars(vars: &[candle_core::Var], path: &std::path::Path) -> Result<()> {
    let mut out = Vec::new();
    for (i, v) in vars.iter().enumerate() {
        let data = v
            .as_tensor()
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(Error::tensor("saving weights"))?;
        out.push(crate::io::NamedTensor {
            name: format!("param{i}"),
            shape: v.dims().to_vec(),
            data,
        });
    }
    crate::io::write_tensors(path, &out)
}

/// Set the model's variables from a checkpoint written by [`save_vars`]; a missing tensor or a
/// shape that differs is an error naming the file and the tensor.
pub fn load_vars(vars: &[candle_core::Var], path: &std::path::Path) -> Result<()> {
    let tensors = crate::io::read_tensors_in(path, "*")?;
    for (i, v) in vars.iter().enumerate() {
        let name = format!("param{i}");
        let t = tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| Error::Format {
                path: path.to_path_buf(),
                message: format!(
                    "no tensor `{name}` (the model has {} parameters)",
                    vars.len()
                ),
            })?;
        if t.shape != v.dims() {
            return Err(Error::Format {
                path: path.to_path_buf(),
                message: format!(
                    "tensor `{name}` has shape {:?}, the model needs {:?}",
                    t.shape,
                    v.dims()
                ),
            });
        }
        Tensor::from_vec(t.data.clone(), v.dims(), v.device())
            .and_then(|n| v.set(&n))
            .map_err(Error::tensor(format!("loading {name}")))?;
    }
    Ok(())
}

/// Write the last step's `g` of every prunable layer (named `layerI.grad`, `[batch, out]`).
fn capture(model: &mut dyn Model, path: &std::path::Path) -> Result<()> {
    let mut out = Vec::new();
    for (i, l) in model.sparse_layers().into_iter().enumerate() {
        let Some(g) = l.recorded().grad.clone() else {
            continue;
        };
        let t: Tensor = g;
        let shape = t.dims().to_vec();
        let data = t
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(Error::tensor("captured gradient"))?;
        out.push(crate::io::NamedTensor {
            name: format!("layer{i}.grad"),
            shape,
            data,
        });
    }
    crate::io::write_tensors(path, &out)
}

#[cfg(test)]
mod tests;
