//! The sources of the experiments' operands: synthetic matrices drawn from the cell's seed
//! (`gaussian:RxC`, `laplace:RxC`), the tensors of a checkpoint (`file:PATH#GLOB`), and the
//! layers of the reference dense model masklab trains once and caches (`trained:MODEL`: table5's
//! reference and table2's trained source), so every table reads its weights from one place; and
//! table3's synthetic neural gradients (`gradient`), which share the Laplace and sign draws.

use crate::error::{Error, Result};
use crate::mask::{Matrix, Structure, parse_size};
use crate::seed::derive as derive_seed;
use crate::train::data::{self, Dataset};
use crate::train::models::{LayerPolicy, build};
use crate::train::sparse::GradEstimator;
use crate::train::trainer::{TrainConfig, load_vars, train};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// A weight source.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Source {
    Gaussian(usize, usize),
    Laplace(usize, usize),
    File(String),
    /// The linear and conv layers of a dense model trained by masklab (table5's reference).
    Trained(String),
}

pub(crate) fn parse_source(s: &str) -> Result<Source> {
    let bad = || {
        Error::invalid(
            "source",
            s,
            "expected gaussian:RxC, laplace:RxC, file:PATH#GLOB or trained:MODEL",
        )
    };
    match s.split_once(':').ok_or_else(bad)? {
        ("gaussian", size) => parse_size(size).map(|(r, c)| Source::Gaussian(r, c)),
        ("laplace", size) => parse_size(size).map(|(r, c)| Source::Laplace(r, c)),
        ("file", path) => Ok(Source::File(path.to_string())),
        ("trained", model @ ("mlp" | "lenet")) => Ok(Source::Trained(model.to_string())),
        _ => Err(bad()),
    }
}

/// Draw the weights of a synthetic source from the (spec seed, source) RNG.
pub(crate) fn synthetic(source: &Source, seed: u64, label: &str) -> Matrix {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(derive_seed(seed, label));
    let (rows, cols, laplace) = match *source {
        Source::Gaussian(r, c) => (r, c, false),
        Source::Laplace(r, c) => (r, c, true),
        Source::File(_) | Source::Trained(_) => {
            unreachable!("file and trained sources are read, not drawn")
        }
    };
    let data: Vec<f32> = (0..rows * cols)
        .map(|_| {
            if laplace {
                let e = laplace_magnitude(&mut rng);
                (random_sign(&mut rng) * e) as f32
            } else {
                let v: f64 = StandardNormal.sample(&mut rng);
                v as f32
            }
        })
        .collect();
    Matrix::new(rows, cols, data).unwrap_or_else(|_| unreachable!("sizes match by construction"))
}

/// |X| for X standard Laplace: an Exp(1) draw by inversion (one uniform).
fn laplace_magnitude(rng: &mut impl Rng) -> f64 {
    -(1.0 - rng.random::<f64>()).ln()
}

/// +1 or −1 with equal odds (one bool).
fn random_sign(rng: &mut impl Rng) -> f64 {
    if rng.random::<bool>() { 1.0 } else { -1.0 }
}

/// table3's neural gradient `g: [rows, cols]` for an `input`: `gaussian`, `laplace` or
/// `lognormal:SIGMA` (signed, drawn from the (seed, input) RNG: per entry a normal, a sign and,
/// for Laplace, a uniform, in that order, whatever the input, so each input's stream is its
/// own), or `file:PATH#GLOB` (the first 2-D tensor whose rows are a multiple of `m`).
pub(crate) fn gradient(
    input: &str,
    (rows, cols): (usize, usize),
    seed: u64,
    m: usize,
) -> Result<candle_core::Tensor> {
    use candle_core::{Device, Tensor};
    if let Some(spec) = input.strip_prefix("file:") {
        let t = crate::io::read_tensors(spec)?
            .into_iter()
            .find(|t| t.shape.len() == 2 && t.shape[0] % m == 0)
            .ok_or_else(|| {
                Error::invalid(
                    "input",
                    input,
                    format!("no 2-D tensor whose first dim is a multiple of {m}"),
                )
            })?;
        return Tensor::from_vec(t.data, (t.shape[0], t.shape[1]), &Device::Cpu)
            .map_err(Error::tensor(input));
    }
    let mut rng =
        rand_chacha::ChaCha8Rng::seed_from_u64(derive_seed(seed, &format!("input {input}")));
    let sigma = input
        .strip_prefix("lognormal:")
        .map(|s| s.trim_start_matches("σ=").parse::<f64>().unwrap_or(2.0));
    let data: Vec<f32> = (0..rows * cols)
        .map(|_| {
            let z: f64 = StandardNormal.sample(&mut rng);
            let sign = random_sign(&mut rng);
            (match (input, sigma) {
                (_, Some(s)) => sign * (s * z).exp(),
                ("laplace", _) => sign * laplace_magnitude(&mut rng),
                _ => z,
            }) as f32
        })
        .collect();
    Tensor::from_vec(data, (rows, cols), &Device::Cpu).map_err(Error::tensor(input))
}

/// A dense model to train (or reuse from the cache).
pub(crate) struct Dense {
    /// The training run.
    pub train: TrainConfig,
    /// Data set name.
    pub dataset: String,
    /// Where the data set lives (else the default).
    pub data_dir: Option<PathBuf>,
    /// Cache directory of trained weights.
    pub cache: PathBuf,
}

/// The reference dense training — table5's default params: Fashion-MNIST, hidden 256-256 for
/// the MLP, 3 epochs, batch 128, lr 0.05, momentum 0.9, weight decay 5e-4, seed 0. table2's
/// `trained:MODEL` sources use it, so both tables share one cached model.
pub(crate) fn reference(model: &str) -> Dense {
    Dense {
        train: TrainConfig {
            model: model.to_string(),
            hidden: vec![256, 256],
            epochs: 3,
            batch: 128,
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 5e-4,
            ..TrainConfig::default()
        },
        dataset: "fashion-mnist".into(),
        data_dir: None,
        cache: crate::io::default_cache(),
    }
}

/// The 2-D weights of every linear and conv layer (`[out, in]`, conv as `[out, c·k·k]`) of the
/// reference-trained `model` (`mlp`, `lenet`), training it first if it is not cached.
pub fn trained_weights(
    model: &str,
    device: &candle_core::Device,
) -> Result<Vec<crate::mask::Matrix>> {
    if !matches!(model, "mlp" | "lenet") {
        return Err(Error::invalid("model", model, "expected mlp or lenet"));
    }
    let d = reference(model);
    let data = data::load(&d.dataset, d.data_dir.as_deref(), 0)?;
    let path = cached(&d, &data, device)?;
    let m = load(&d, &path, &data, device, Structure::Dense)?;
    m.linear_layers()
        .iter()
        .map(|l| {
            let (r, c) = l.dims();
            let v = l
                .weight
                .as_tensor()
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(Error::tensor("trained weights"))?;
            crate::mask::Matrix::new(r, c, v)
        })
        .collect()
}

/// A trained dense model on disk, with its test accuracy.
pub(crate) struct Trained {
    /// The cached weights.
    pub path: PathBuf,
    /// Its test accuracy.
    pub accuracy: f64,
}

/// Everything the dense training depends on, as one line (hashed for the cache name).
pub(crate) fn training_key(p: &Dense) -> String {
    let t = &p.train;
    format!(
        "masklab {} dense training v1: model={} dataset={} hidden={:?} epochs={} batch={} lr={} momentum={} weight_decay={} train_limit={:?} seed={}",
        env!("CARGO_PKG_VERSION"),
        t.model,
        p.dataset,
        t.hidden,
        t.epochs,
        t.batch,
        t.lr,
        t.momentum,
        t.weight_decay,
        t.train_limit,
        t.seed
    )
}

pub(crate) fn policy(structure: Structure) -> LayerPolicy {
    LayerPolicy {
        estimator: GradEstimator::Dense,
        custom: true,
        tile: structure.tile(),
        srste: 0.0,
    }
}

/// Train the dense model, or reuse the cached weights; the accuracy is measured either way.
pub(crate) fn trained(p: &Dense, data: &Dataset, device: &candle_core::Device) -> Result<Trained> {
    let path = cached(p, data, device)?;
    let accuracy = dense_accuracy(p, &path, data, device)?;
    Ok(Trained { path, accuracy })
}

/// The cached weights of `p`'s training, trained and written (atomically) when missing.
pub(crate) fn cached(p: &Dense, data: &Dataset, device: &candle_core::Device) -> Result<PathBuf> {
    let key = training_key(p);
    let hash = Sha256::digest(key.as_bytes());
    let hex: String = hash.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let path = p.cache.join(format!("{}-{hex}.safetensors", p.train.model));
    if !path.exists() {
        std::fs::create_dir_all(&p.cache).map_err(|e| Error::io(&p.cache, e))?;
        let mut cfg = p.train.clone();
        cfg.save = Some(path.clone());
        train(&cfg, data, device)?;
        std::fs::write(path.with_extension("txt"), format!("{key}\n"))
            .map_err(|e| Error::io(path.with_extension("txt"), e))?;
    }
    Ok(path)
}

pub(crate) fn dense_accuracy(
    p: &Dense,
    path: &std::path::Path,
    data: &Dataset,
    device: &candle_core::Device,
) -> Result<f64> {
    let model = load(p, path, data, device, Structure::Dense)?;
    crate::train::trainer::evaluate(model.as_ref(), data, device)
}

pub(crate) fn load(
    p: &Dense,
    path: &std::path::Path,
    data: &Dataset,
    device: &candle_core::Device,
    structure: Structure,
) -> Result<Box<dyn crate::train::models::Model>> {
    let model = build(
        &p.train.model,
        data.shape,
        data.classes,
        &p.train.hidden,
        &policy(structure),
        p.train.seed,
        device,
    )?;
    load_vars(&model.vars(), path)?;
    Ok(model)
}

/// The matrices of a source: drawn (synthetic), read (every 2-D tensor of a file) or the
/// reference model's layers (trained).
pub(crate) fn matrices(
    source: &Source,
    label: &str,
    seed: u64,
    device: &candle_core::Device,
) -> Result<Vec<Matrix>> {
    Ok(match source {
        Source::File(spec) => crate::io::read_tensors(spec)?
            .iter()
            .filter_map(|t| t.matrix())
            .collect(),
        Source::Trained(model) => trained_weights(model, device)?,
        other => vec![synthetic(other, seed, label)],
    })
}
