//! Training parameters: one struct read by `masklab train` (clap flags), the `train` cells of
//! table4 (a spec's `[params]`, serde with unknown keys refused) and the reference training of
//! table5's `convert` cells, so each default is written once ([`TrainParams::default`]).

use super::trainer::{OptimizerKind, TrainConfig};
use crate::error::{Error, Result};
use crate::solvers::Catalogue;
use serde::Deserialize;
use std::path::PathBuf;

/// The training hyper-parameters and data of one run (the mask structure, gradient estimator
/// and seed come from elsewhere: flags, or a cell's axes).
#[derive(Debug, Clone, PartialEq, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct TrainParams {
    /// Model: mlp, mlp-bn (batch norm after every hidden layer), lenet, resnet.
    #[arg(long, default_value_t = TrainParams::default().model)]
    pub model: String,
    /// Data set: fashion-mnist, mnist, cifar10, synthetic or synthetic:N.
    #[arg(long, default_value_t = TrainParams::default().dataset)]
    pub dataset: String,
    /// Directory with the data set files (else $MASKLAB_DATA, else the Debian package's).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// MLP hidden widths, comma-separated.
    #[arg(long, default_values_t = TrainParams::default().hidden, value_delimiter = ',')]
    pub hidden: Vec<usize>,
    /// Solver for transposable masks (see `masklab solvers`).
    #[arg(long, default_value_t = TrainParams::default().solver)]
    pub solver: String,
    /// Recompute masks every K steps (0: static, from the initial weights).
    #[arg(long, default_value_t = TrainParams::default().every)]
    pub every: usize,
    /// SR-STE decay on pruned weights (0: off).
    #[arg(long, default_value_t = TrainParams::default().srste)]
    pub srste: f64,
    /// GEMM kernels: sparse (compressed N:M kernels wherever an operand is N:M: the forward of
    /// nm/transposable masks, the backward of transposable ones, the update of N:M estimators;
    /// a product over more than 4096 batch rows — a convolution's im2col — runs masked-dense,
    /// where the kernels lose, and the report says which layers ran compressed) or
    /// masked-dense (dense gemm on the masked operands, for comparison).
    #[arg(long, default_value_t = TrainParams::default().gemm)]
    pub gemm: String,
    /// Epochs.
    #[arg(long, default_value_t = TrainParams::default().epochs)]
    pub epochs: usize,
    /// Batch size (a multiple of the gradient pattern's M).
    #[arg(long, default_value_t = TrainParams::default().batch)]
    pub batch: usize,
    /// Peak learning rate (cosine to 0).
    #[arg(long, default_value_t = TrainParams::default().lr)]
    pub lr: f64,
    /// SGD momentum.
    #[arg(long, default_value_t = TrainParams::default().momentum)]
    pub momentum: f64,
    /// Weight decay.
    #[arg(long, default_value_t = TrainParams::default().weight_decay)]
    pub weight_decay: f64,
    /// Optimiser.
    #[arg(long, value_enum, default_value_t = TrainParams::default().optimizer)]
    pub optimizer: OptimizerKind,
    /// Use only the first N training examples.
    #[arg(long)]
    pub train_limit: Option<usize>,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            model: "mlp".into(),
            dataset: "fashion-mnist".into(),
            data_dir: None,
            hidden: vec![256, 256],
            solver: "greedy".into(),
            every: 0,
            srste: 0.0,
            gemm: "sparse".into(),
            epochs: 2,
            batch: 128,
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 5e-4,
            optimizer: OptimizerKind::Sgd,
            train_limit: None,
        }
    }
}

impl Default for TrainConfig {
    /// [`TrainParams::default`]'s run (the defaults are written there once), dense.
    fn default() -> Self {
        TrainParams::default()
            .config(&Catalogue::default())
            .expect("the default training params are valid")
    }
}

impl TrainParams {
    /// Read a spec's `[params]`: a key that is not a field is an error naming it and the fields.
    pub fn from_toml(params: &indexmap::IndexMap<String, toml::Value>) -> Result<Self> {
        crate::toml_value::from_params(params)
    }

    /// The run's configuration (solver and kernels resolved by name; dense structure and
    /// estimator, seed 0, no files: the caller's to set). A zero batch, width or limit is refused by
    /// name.
    pub fn config(&self, solvers: &Catalogue) -> Result<TrainConfig> {
        if self.batch == 0 {
            return Err(Error::invalid("batch", 0, "must be at least 1"));
        }
        if self.hidden.contains(&0) || self.train_limit == Some(0) {
            return Err(Error::invalid(
                "hidden/train_limit",
                format!("{:?} / {:?}", self.hidden, self.train_limit),
                "widths and limits must be at least 1",
            ));
        }
        Ok(TrainConfig {
            model: self.model.clone(),
            hidden: self.hidden.clone(),
            solver: solvers.get(&self.solver)?,
            every: self.every,
            gemm: self.gemm.parse()?,
            srste: self.srste,
            epochs: self.epochs,
            batch: self.batch,
            lr: self.lr,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            optimizer: self.optimizer,
            train_limit: self.train_limit,
            mask: crate::mask::Structure::Dense,
            grad: super::sparse::GradEstimator::Dense,
            seed: 0,
            capture_grads: None,
            init: None,
            save: None,
            progress: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(text: &str) -> indexmap::IndexMap<String, toml::Value> {
        text.parse::<toml::Table>().unwrap().into_iter().collect()
    }

    #[test]
    fn spec_params_fill_the_fields_and_unknown_keys_are_refused_with_the_list() {
        let p = TrainParams::from_toml(&params(
            "epochs = 3\nhidden = [64, 32]\noptimizer = \"adamw\"\nlr = 0.01",
        ))
        .unwrap();
        assert_eq!(p.epochs, 3);
        assert_eq!(p.hidden, vec![64, 32]);
        assert_eq!(p.optimizer, OptimizerKind::AdamW);
        assert_eq!(p.batch, TrainParams::default().batch);
        let e = TrainParams::from_toml(&params("epoch = 3"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("epoch") && e.contains("epochs"), "{e}");
        let e = TrainParams::from_toml(&params("epochs = \"many\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("epochs"), "{e}");
        let e = TrainParams::from_toml(&params("optimizer = \"lion\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("lion"), "{e}");
    }

    #[test]
    fn the_flags_default_to_the_same_values_as_the_spec() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            p: TrainParams,
        }
        assert_eq!(Cli::parse_from(["x"]).p, TrainParams::default());
        let c = Cli::parse_from(["x", "--hidden", "8,4", "--optimizer", "adamw"]).p;
        assert_eq!((c.hidden, c.optimizer), (vec![8, 4], OptimizerKind::AdamW));
    }

    #[test]
    fn the_config_resolves_names_and_refuses_a_zero_batch() {
        let cfg = TrainParams::default()
            .config(&Catalogue::default())
            .unwrap();
        assert_eq!(cfg.solver.name(), "greedy");
        assert_eq!((cfg.epochs, cfg.batch), (2, 128));
        let zero = TrainParams {
            batch: 0,
            ..TrainParams::default()
        };
        assert!(
            zero.config(&Catalogue::default())
                .unwrap_err()
                .to_string()
                .contains("batch")
        );
        let bad = TrainParams {
            solver: "nope".into(),
            ..TrainParams::default()
        };
        assert!(bad.config(&Catalogue::default()).is_err());
    }
}
