//! The command line's arguments (clap) and their conversion into the library's configurations.
//! A module of the `masklab` binary only: parsing here, work in the library, printing in commands.rs.

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};
use masklab::experiment::runner::{self, RunOptions};
use masklab::mask::Pattern;
use masklab::ops::estimate::EstimateRequest;
use masklab::ops::solve::SolveRequest;
use masklab::solvers::{self, SolveContext};
use masklab::train::trainer::TrainConfig;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "masklab",
    version,
    about = "Reproducible benchmark harness for fine-grained N:M sparsity",
    after_help = "Examples:
  masklab list
  masklab reproduce table1
  masklab run experiments/table1.toml --profile smoke --out /tmp/r
  masklab run experiments/table1.toml --resume /tmp/r
  masklab show /tmp/r
  masklab regress /tmp/r
  masklab diversity transposable:4:8 --size 8x8 --json
  masklab solvers
  masklab solve --solver exact --pattern 8:16 --input model.safetensors --output masks.safetensors --json
  masklab gemm --structure transposable:2:4 --shape 4096x4096 --batch 1

Exit codes: 0 done, 1 a check failed (regress found a regression, a structure was lost),
2 bad input or usage."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Where work runs and what it draws: shared by every command that computes.
#[derive(clap::Args, Clone, Debug)]
pub struct ComputeArgs {
    /// Threads for the work (0 or absent: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Device: cpu, cuda, cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Seed of everything drawn (default 0); `run`/`reproduce` take their seeds from the spec.
    #[arg(long)]
    pub seed: Option<u64>,
}

impl ComputeArgs {
    /// The thread count, 0 and absent both meaning all cores.
    pub fn threads(&self) -> usize {
        match self.threads {
            Some(n) if n > 0 => n,
            _ => std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    /// A rayon pool of [`ComputeArgs::threads`] threads.
    pub fn pool(&self) -> Result<rayon::ThreadPool> {
        Ok(rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads())
            .build()?)
    }

    /// The candle device.
    pub fn device(&self) -> Result<candle_core::Device> {
        Ok(masklab::device::parse(&self.device)?)
    }

    /// The seed (0 unless given).
    pub fn seed(&self) -> u64 {
        self.seed.unwrap_or(0)
    }

    /// Refuse `--seed` where the seeds come from elsewhere, and a device the command cannot use.
    pub fn check(&self, command: &str, seeds_from_spec: bool, cpu_only: bool) -> Result<()> {
        if seeds_from_spec && let Some(s) = self.seed {
            bail!(
                "invalid seed `{s}`: `{command}` takes its seeds from the spec's `seeds` (or a profile)"
            );
        }
        if cpu_only && self.device != "cpu" {
            bail!(
                "invalid device `{}`: `{command}` runs on the cpu",
                self.device
            );
        }
        Ok(())
    }
}

/// Options shared by `run` and `reproduce`.
#[derive(clap::Args, Clone)]
pub struct RunArgs {
    /// Profile of the spec (smoke, default, full); default: `default`.
    #[arg(long)]
    pub profile: Option<String>,
    /// Run directory (default: results/runs/<table>/<profile>-<time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Finish an interrupted run in RUN_DIR (same profile and shard); finished cells are kept.
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// Run every n-th cell starting at i (default: SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT if set).
    #[arg(long, value_name = "i/n")]
    pub shard: Option<String>,
    /// Cells run at once (timings are cleanest with 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,
    /// Stop after this many cells (finish later with --resume).
    #[arg(long, value_name = "K")]
    pub max_cells: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

impl TryFrom<&RunArgs> for RunOptions {
    type Error = anyhow::Error;
    fn try_from(a: &RunArgs) -> Result<Self> {
        a.compute.check("run", true, false)?;
        Ok(RunOptions {
            out: a.resume.clone().or_else(|| a.out.clone()),
            resume: a.resume.is_some(),
            shard: a.shard.as_deref().map(runner::parse_shard).transpose()?,
            jobs: a.jobs.into(),
            threads: a.compute.threads(),
            device: a.compute.device()?,
            max_cells: a.max_cells,
            progress: !a.quiet,
        })
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// The table catalogue: id, title, what it regenerates, profiles.
    #[command(after_help = "Example:\n  masklab list")]
    List {
        /// Directory of specs.
        #[arg(long, default_value = "experiments")]
        dir: PathBuf,
    },
    /// Run a spec: every cell of its grid × seeds, writing a run directory.
    #[command(after_help = "Examples:
  masklab run experiments/table1.toml --profile smoke --out /tmp/r
  masklab run experiments/table1.toml --resume /tmp/r
  masklab run experiments/table2.toml --shard 0/4 --out /tmp/s0")]
    Run {
        /// The spec file (TOML).
        spec: PathBuf,
        #[command(flatten)]
        args: RunArgs,
    },
    /// Regenerate a table from experiments/TABLE.toml and print its summary.
    #[command(
        after_help = "Examples:\n  masklab reproduce table1\n  masklab reproduce table2 --profile smoke"
    )]
    Reproduce {
        /// Table id (table1, table2, …).
        table: String,
        /// Directory of specs.
        #[arg(long, default_value = "experiments")]
        dir: PathBuf,
        #[command(flatten)]
        args: RunArgs,
    },
    /// Print a run's summary.md.
    #[command(after_help = "Example:\n  masklab show results/runs/table1/default-20261122-101500")]
    Show {
        /// The run directory.
        run_dir: PathBuf,
    },
    /// Redraw a run's figures (SVG, figures/ in the run directory) from its summary.parquet.
    #[command(
        after_help = "Example:\n  masklab plot results/runs/table2/default-20261122-101500\n\nThe figures are the spec's [[figures]]; summary.md links them."
    )]
    Plot {
        /// The run directory.
        run_dir: PathBuf,
    },
    /// Set the published values a spec carries (`[[published]]`) beside a run's own, again.
    #[command(
        after_help = "Example:\n  masklab published results/runs/table2/default-20261122-101500\n\nWrites published.csv and summary.md's \"Published values beside ours\" section, with the\nentries of the spec file now at the run's spec path (values added later apply to old runs)."
    )]
    Published {
        /// The run directory.
        run_dir: PathBuf,
    },
    /// A table's nightly history: each metric's trend over the runs added to it, drifts flagged.
    #[command(
        after_help = "Examples:\n  masklab history table2 --append results/runs/table2/nightly-20261201-020000\n  masklab history table2\n\nA series drifts when its last 3 steps go the same way, each within the spec's tolerance,\nwhile the three together are not. Times count as ratios to each run's yardstick (the reference workload timed at its start)."
    )]
    History(HistoryArgs),
    /// Compare a complete run with results/baselines/<table>.parquet; exit 1 on regression.
    #[command(
        after_help = "Examples:\n  masklab regress /tmp/r\n  masklab regress /tmp/r --baseline my.parquet"
    )]
    Regress(RegressArgs),
    /// Join the complete run directories of every shard of a run into a new one.
    #[command(after_help = "Example:\n  masklab merge /tmp/s0 /tmp/s1 --out /tmp/all")]
    Merge {
        /// Shard run directories.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Output run directory (new).
        #[arg(long)]
        out: PathBuf,
    },
    /// The transposable solvers: name, what it does, guarantee, devices.
    #[command(after_help = "Example:\n  masklab solvers")]
    Solvers,
    /// Find transposable N:M masks for the 2-D tensors of a safetensors or HDF5 file.
    #[command(after_help = "Examples:
  masklab solve --solver exact --pattern 8:16 --input model.safetensors --output masks.safetensors --json
  masklab solve --solver tsenor --pattern 16:32 --input weights.h5#'layers/*' --output masks.h5 --compare-exact --json
  masklab solve --solver greedy --pattern 2:4 --input w.safetensors --score square
  masklab solve --solver tsenor --pattern 8:16 --input w.safetensors --option tau=0.01 --option iterations=100
  masklab solve --solver random-py --external 'python3 examples/solvers/random_feasible.py' --pattern 4:8 --input w.safetensors --compare-exact")]
    Solve(SolveArgs),
    /// Prune a checkpoint to N:M in one shot: same files, names, dtypes; other tensors copied.
    #[command(after_help = "Examples:
  masklab convert --input model.safetensors --output pruned.safetensors --structure transposable:4:8 --solver greedy
  masklab convert --input ckpt_dir/ --output pruned_dir/ --structure nm:2:4 --exclude '*embed*'
  masklab convert --input model.safetensors --output pruned.safetensors --structure transposable:8:16 --solver exact --act-norms norms.safetensors --json")]
    Convert(ConvertArgs),
    /// Measure a neural-gradient estimator on gradients from a file, or write one pruned draw.
    #[command(after_help = "Examples:
  masklab estimate --estimator mvue --pattern 2:4 --input grads.safetensors --draws 1000 --json
  masklab estimate --estimator greedy --pattern 2:4 --input grads.h5#'fc*' --json
  masklab estimate --estimator mvue --pattern 2:4 --sample --input grads.safetensors --output sparse.safetensors")]
    Estimate(EstimateArgs),
    /// Train one model with N:M masks on the forward/backward GEMMs and an estimator on the update GEMM.
    #[command(after_help = "Examples:
  masklab train --model mlp --dataset fashion-mnist --structure transposable:4:8 --solver greedy --every 40 --grad-estimator mvue:2:4 --epochs 2 --seed 0 --json
  masklab train --dataset synthetic --epochs 1 --structure nm:2:4
  masklab train --model lenet --dataset mnist --data-dir ~/data --structure unstructured:0.5
  masklab train --structure transposable:4:8 --grad-estimator mvue:2:4 --capture-grads grads.safetensors
  masklab train --structure transposable:2:4 --grad-estimator mvue:2:4 --gemm masked-dense --json
  masklab train --epochs 5 --save dense.safetensors && masklab train --init dense.safetensors --structure transposable:4:8

Structures: dense, unstructured[:S], block:B[:S], nm:N:M (forward only), transposable:N:M (forward and backward).
Gradient estimators (update GEMM, along the batch axis): dense, greedy:N:M, mvue:N:M, mvue_1to2:1:2, approx_mvue_2to4:2:4.")]
    Train(Box<TrainArgs>),
    /// Mask diversity of one structure over one tensor.
    #[command(after_help = "Examples:
  masklab diversity transposable:4:8 --size 8x8 --json
  masklab diversity nm:2:4 --size 64x64
  masklab diversity block:4:0.5 --size 64x64
  masklab diversity unstructured:0.5 --size 4096x4096")]
    Diversity(DiversityArgs),
    /// Time one training GEMM of a mask type against the dense GEMM of the same shapes, in
    /// the same process: median seconds of each, speedup, its share of the byte or FLOP limit,
    /// GFLOP/s, bytes and the error against the dense masked product.
    #[command(after_help = "Examples:
  masklab gemm --structure nm:2:4 --shape 4096x4096 --batch 1
  masklab gemm --structure transposable:2:4 --shape 4096x4096 --batch 128 --op backward --json
  masklab gemm --structure nm:1:4 --shape 1024x1024 --batch 8 --op forward
  masklab gemm --structure nm:2:4 --shape 4096x4096 --batch 1 --dtype bf16
  masklab gemm --structure transposable:4:8 --shape 1024x4096 --batch 256 --op update
  masklab gemm --structure unstructured:0.75 --shape 4096x4096 --batch 32
  masklab gemm --structure block:16:0.5 --shape 4096x4096 --batch 128 --op backward

--shape is the layer's OUTxIN (W: [out, in]); forward is Y = X·Wᵀ, backward dX = dY·W
(compressed only for a transposable mask among the N:M ones: a plain N:M mask's Wᵀ is not N:M,
so its backward runs dense; CSR and BSR transpose into CSR and BSR), update dW = ĝᵀ·X with ĝ
N:M along the batch (a multiple of M; N:M masks only).
MASKLAB_ISA=avx2|scalar runs the narrower kernels.")]
    Gemm(GemmArgs),
    /// One-shot pruning of a llama-family language model: every q/k/v/o/gate/up/down
    /// projection, layer by layer on calibration text, by magnitude, Wanda, SparseGPT or ALPS, to
    /// unstructured, N:M or transposable N:M; perplexity before and after, a Hugging Face
    /// safetensors checkpoint and a JSON report.
    #[command(after_help = "Examples:
  masklab prune --model results/cache/lm/SmolLM2-135M-Instruct.Q4_1.gguf --method wanda --structure nm:2:4 --output pruned-2to4
  masklab prune --model my-llama/ --method sparsegpt --structure transposable:16:32 --solver tsenor --calib calib.txt --eval wiki.txt --output pruned
  masklab prune --model my-llama/ --method magnitude --structure unstructured:0.5 --calib-windows 16 --eval-tokens 8192 --json

--model is a GGUF file (its tokenizer from the metadata) or a Hugging Face directory
(config.json, model.safetensors or its sharded index, tokenizer.json; f32, f16 or bf16).
Without --calib/--eval the pinned corpus from `just setup` is used (Shakespeare and Milton:
evaluation on four held-out plays, calibration on the other works). Perplexity: non-overlapping
windows of --window tokens, each from an empty context. Embeddings, norms and the output head
stay dense. The output holds the checkpoint in the input's layout and dtypes (shards, index,
config.json, tokenizer.json; from GGUF: model.safetensors in f32) and prune_report.json; it is
built beside the destination and renamed into place, and never written over an input.")]
    Prune(Box<PruneArgs>),
}

/// `masklab prune`.
#[derive(clap::Args)]
pub struct PruneArgs {
    /// GGUF file or Hugging Face directory.
    #[arg(long)]
    pub model: std::path::PathBuf,
    /// magnitude, wanda, sparsegpt or alps.
    #[arg(long)]
    pub method: String,
    /// dense, unstructured[:S] (S pruned, default 0.5), nm:N:M or transposable:N:M.
    #[arg(long)]
    pub structure: String,
    /// Transposable solver (`masklab solvers` lists them).
    #[arg(long, default_value = "exact")]
    pub solver: String,
    /// Calibration text (UTF-8); default: the pinned corpus's calibration split.
    #[arg(long)]
    pub calib: Option<std::path::PathBuf>,
    /// Evaluation text (UTF-8); default: the pinned corpus's evaluation split.
    #[arg(long)]
    pub eval: Option<std::path::PathBuf>,
    /// Calibration windows drawn at random offsets.
    #[arg(long, default_value_t = 128)]
    pub calib_windows: usize,
    /// Tokens per window.
    #[arg(long, default_value_t = 512)]
    pub window: usize,
    /// At most this many evaluation tokens.
    #[arg(long, default_value_t = 65536)]
    pub eval_tokens: usize,
    /// Calibration windows per forward batch.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Skip the dense model's perplexity.
    #[arg(long)]
    pub skip_dense_eval: bool,
    /// Directory for the pruned checkpoint (omit to only measure).
    #[arg(long)]
    pub output: Option<std::path::PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

impl PruneArgs {
    /// The job these arguments describe.
    pub fn job(&self) -> Result<masklab::ops::prune::PruneJob> {
        let kind = self.structure.parse()?;
        if self.window < 2 || self.calib_windows == 0 || self.batch == 0 {
            bail!(
                "--window {} / --calib-windows {} / --batch {}: need a window of at least 2 tokens and at least one window per batch",
                self.window,
                self.calib_windows,
                self.batch
            );
        }
        Ok(masklab::ops::prune::PruneJob {
            model: self.model.clone(),
            method: self.method.parse()?,
            kind,
            solver: masklab::solvers::by_name(&self.solver)?,
            calib: self.calib.clone(),
            eval: self.eval.clone(),
            cache: masklab::io::default_cache(),
            calib_windows: self.calib_windows,
            window: self.window,
            eval_tokens: self.eval_tokens,
            seed: self.compute.seed.unwrap_or(0),
            batch: self.batch,
            skip_dense_eval: self.skip_dense_eval,
            output: self.output.clone(),
            progress: !self.json,
        })
    }
}

/// `masklab gemm`.
#[derive(clap::Args)]
pub struct GemmArgs {
    /// Structure: dense, nm:N:M, transposable:N:M, unstructured:S (CSR) or block:B:S (BSR).
    #[arg(long, alias = "mask")]
    pub structure: String,
    /// Layer shape OUTxIN.
    #[arg(long)]
    pub shape: String,
    /// Batch (tokens): the width of the dense operand.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// The GEMM: forward, backward or update.
    #[arg(long, default_value = "forward")]
    pub op: String,
    /// Value type of the stored operands: f32, or bf16 (widened as read, f32 products; the
    /// weights' bytes halve below batch 16; dense, nm and transposable masks).
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Least seconds of timed runs per side (at least 5 runs each, at most 50).
    #[arg(long, default_value_t = 0.2)]
    pub min_seconds: f64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

impl GemmArgs {
    /// The job these arguments describe.
    pub fn job(&self) -> Result<masklab::ops::gemm::GemmJob> {
        if !(self.min_seconds.is_finite() && (0.0..=60.0).contains(&self.min_seconds)) {
            bail!("--min-seconds {}: expected 0 to 60", self.min_seconds);
        }
        let (out, inp) = masklab::mask::parse_size(&self.shape)?;
        Ok(masklab::ops::gemm::GemmJob {
            mask: self.structure.parse()?,
            out,
            inp,
            batch: self.batch,
            op: self.op.parse()?,
            seed: self.compute.seed.unwrap_or(0),
            threads: self.compute.threads(),
            min_seconds: self.min_seconds,
            dtype: self.dtype.parse()?,
        })
    }
}

/// `masklab solve`.
#[derive(clap::Args)]
pub struct SolveArgs {
    /// Solver name (see `masklab solvers`), or the name given to --external.
    #[arg(long)]
    pub solver: String,
    /// Run the program CMD (split at spaces) as the solver named by --solver, speaking the
    /// external-solver protocol: `CMD SCORES.npy MASKS.npy N M` (see the README).
    #[arg(long, value_name = "CMD")]
    pub external: Option<String>,
    /// Seconds an --external program may take per call before it is killed.
    #[arg(long, default_value_t = 600.0)]
    pub timeout_seconds: f64,
    /// N:M pattern.
    #[arg(long)]
    pub pattern: String,
    /// Weights: FILE.safetensors, FILE.h5, a sharded directory or its model.safetensors.index.json;
    /// FILE#GLOB is FILE with --include GLOB.
    #[arg(long)]
    pub input: String,
    /// Only tensors whose names match GLOB (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Never tensors whose names match GLOB (repeatable), e.g. '*.bias'.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Where to write the masks (u8 0/1, same tensor names); .safetensors or .h5; never an input.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Score: abs (|W|, default), square (W²), or a score file FILE[#GLOB] with the same tensor names (e.g. Wanda |W|·‖x‖).
    #[arg(long, default_value = "abs")]
    pub score: String,
    /// Also run `exact` and report optimum, kept_gap, pruned_excess.
    #[arg(long)]
    pub compare_exact: bool,
    /// Wanda scores |W_ij|·‖x_j‖: a safetensors file of per-input-column activation norms, one
    /// 1-D tensor per weight name.
    #[arg(long, value_name = "FILE")]
    pub act_norms: Option<PathBuf>,
    /// Refuse tensors that are not 2-D, empty or do not tile, instead of skipping them.
    #[arg(long)]
    pub strict: bool,
    /// Solver option NAME=VALUE (e.g. tau=0.02, iterations=60, draws=1000); repeatable.
    #[arg(long = "option", value_name = "NAME=VALUE")]
    pub options: Vec<String>,
    /// Print one JSON object per tensor.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

impl SolveArgs {
    /// The input path and the selection (`FILE#GLOB` adds GLOB to the includes).
    pub fn selection(&self) -> Result<(PathBuf, masklab::io::checkpoint::Selection)> {
        let (path, glob) = masklab::io::split_source(&self.input);
        let mut include = self.include.clone();
        if self.input.contains('#') {
            include.push(glob);
        }
        Ok((
            path,
            masklab::io::checkpoint::Selection::new(&include, &self.exclude)?,
        ))
    }

    /// The request and the solver context.
    pub fn request(&self) -> Result<(SolveRequest, SolveContext)> {
        let mut catalogue = solvers::Catalogue::default();
        if let Some(cmd) = &self.external {
            let command: Vec<String> = cmd.split_whitespace().map(String::from).collect();
            catalogue.declare(&self.solver, &command, self.timeout_seconds)?;
        }
        let solver = catalogue.get(&self.solver)?;
        let mut options = std::collections::BTreeMap::new();
        for o in &self.options {
            let Some((k, v)) = o.split_once('=') else {
                bail!("--option {o}: expected NAME=VALUE");
            };
            let Ok(v) = v.parse::<f64>() else {
                bail!("--option {o}: the value is not a number");
            };
            options.insert(k.to_string(), v);
        }
        solvers::check_options(&*solver, &options)?;
        let req = SolveRequest {
            solver,
            pattern: self.pattern.parse()?,
            score: masklab::solvers::apply::Scorer::check(self.score.parse()?)?,
            compare_exact: self.compare_exact,
            strict: self.strict,
        };
        let ctx = SolveContext {
            seed: self.compute.seed(),
            device: self.compute.device()?,
            options,
        };
        Ok((req, ctx))
    }
}

/// `masklab convert`.
#[derive(clap::Args)]
pub struct ConvertArgs {
    /// Checkpoint: FILE.safetensors, a sharded directory or its model.safetensors.index.json.
    #[arg(long)]
    pub input: PathBuf,
    /// Output: a file for a one-file input, a directory for a sharded one; never the input.
    #[arg(long)]
    pub output: PathBuf,
    /// transposable:N:M (N in every row and column of every M×M tile) or nm:N:M (N of M along
    /// `in`).
    #[arg(long)]
    pub structure: String,
    /// Solver for transposable masks (see `masklab solvers`).
    #[arg(long, default_value = "greedy")]
    pub solver: String,
    /// Score: abs, square or a score file with the same tensor names.
    #[arg(long, default_value = "abs")]
    pub score: String,
    /// Wanda: per-input-column activation norms (one 1-D tensor per weight name).
    #[arg(long, value_name = "FILE")]
    pub act_norms: Option<PathBuf>,
    /// Only tensors whose names match GLOB (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Never tensors whose names match GLOB (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Also solve exactly and report each tensor's kept_gap.
    #[arg(long)]
    pub compare_exact: bool,
    /// Refuse tensors that are not 2-D, empty or do not tile, instead of copying them unpruned.
    #[arg(long)]
    pub strict: bool,
    /// Print one JSON object per pruned tensor.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

impl ConvertArgs {
    /// The library's conversion job.
    pub fn job(&self) -> Result<masklab::convert::ConvertJob<'_>> {
        Ok(masklab::convert::ConvertJob {
            input: &self.input,
            output: &self.output,
            selection: masklab::io::checkpoint::Selection::new(&self.include, &self.exclude)?,
            structure: self.structure.parse()?,
            solver: solvers::by_name(&self.solver)?,
            score: masklab::solvers::apply::Scorer::check(self.score.parse()?)?,
            act_norms: self.act_norms.as_deref(),
            compare_exact: self.compare_exact,
            strict: self.strict,
            progress: !self.quiet && !self.json,
        })
    }

    /// The solver context (seed, device).
    pub fn context(&self) -> Result<SolveContext> {
        Ok(SolveContext {
            seed: self.compute.seed(),
            device: self.compute.device()?,
            options: Default::default(),
        })
    }
}

/// `masklab estimate`.
#[derive(clap::Args)]
pub struct EstimateArgs {
    /// Estimator: greedy, mvue_1to2, mvue, approx_mvue_2to4.
    #[arg(long)]
    pub estimator: String,
    /// N:M pattern.
    #[arg(long)]
    pub pattern: String,
    /// Gradients: FILE.safetensors or FILE.h5, optionally #GLOB.
    #[arg(long)]
    pub input: String,
    /// Draws K for the metrics (at least 1).
    #[arg(long, default_value_t = 1000)]
    pub draws: usize,
    /// Dimension the groups run along (0: the batch axis of g, the update GEMM's reduction).
    #[arg(long, default_value_t = 0)]
    pub dim: usize,
    /// Columns of the random x in the GEMM metrics.
    #[arg(long, default_value_t = 64)]
    pub in_features: usize,
    /// Write one pruned draw (same tensor names) instead of measuring.
    #[arg(long, requires = "output")]
    pub sample: bool,
    /// Output file for --sample (.safetensors or .h5); never the input.
    #[arg(long, requires = "sample")]
    pub output: Option<PathBuf>,
    /// Refuse tensors that are not 2-D, empty or not whole groups, instead of skipping them.
    #[arg(long)]
    pub strict: bool,
    /// Print one JSON object per tensor.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

impl TryFrom<&EstimateArgs> for EstimateRequest<'static> {
    type Error = anyhow::Error;
    fn try_from(a: &EstimateArgs) -> Result<Self> {
        a.compute.check("estimate", false, true)?;
        let pattern: Pattern = a.pattern.parse()?;
        let req = EstimateRequest {
            estimator: masklab::estimators::by_name(&a.estimator)?,
            pattern,
            dim: a.dim,
            draws: a.draws,
            in_features: a.in_features,
            seed: a.compute.seed(),
            strict: a.strict,
        };
        req.check()?;
        Ok(req)
    }
}

/// `masklab train`.
#[derive(clap::Args)]
pub struct TrainArgs {
    /// The hyper-parameters and data (shared with table4's train cells).
    #[command(flatten)]
    pub params: masklab::train::params::TrainParams,
    /// Structure of the prunable layers' masks: dense, unstructured[:S], block:B[:S], nm:N:M or
    /// transposable:N:M.
    #[arg(long, alias = "mask", default_value = "dense")]
    pub structure: String,
    /// Estimator of the update GEMM's neural gradient.
    #[arg(long, default_value = "dense")]
    pub grad_estimator: String,
    /// Write the last step's neural gradients of the prunable layers (.safetensors or .h5).
    #[arg(long)]
    pub capture_grads: Option<PathBuf>,
    /// Start from a checkpoint written by --save (a static mask is computed from it).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Write the trained dense master weights (.safetensors or .h5); never the --init file.
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

impl TryFrom<&TrainArgs> for TrainConfig {
    type Error = anyhow::Error;
    fn try_from(a: &TrainArgs) -> Result<Self> {
        Ok(TrainConfig {
            mask: a.structure.parse()?,
            grad: a.grad_estimator.parse()?,
            seed: a.compute.seed(),
            capture_grads: a.capture_grads.clone(),
            init: a.init.clone(),
            save: a.save.clone(),
            progress: !a.json,
            ..a.params.config(&solvers::Catalogue::default())?
        })
    }
}

/// `masklab history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Table id (a spec name in --dir; table4 means table4a and table4b).
    pub table: String,
    /// Add this complete run to the history first.
    #[arg(long)]
    pub append: Option<PathBuf>,
    /// Profile whose runs to follow.
    #[arg(long, default_value = "nightly")]
    pub profile: String,
    /// History file (default results/history/<table>.parquet).
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Directory of specs.
    #[arg(long, default_value = "experiments")]
    pub dir: PathBuf,
}

impl HistoryArgs {
    /// The option that applies to one spec only, when given (a table of parts is refused then).
    pub fn single(&self) -> Option<&'static str> {
        (self.append.is_some() || self.file.is_some()).then_some("--append/--file")
    }
}

/// `masklab regress`.
#[derive(Debug, Args)]
pub struct RegressArgs {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Baseline summary (default: results/baselines/<table>.parquet).
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Write the run's summary as the new baseline instead of comparing.
    #[arg(long)]
    pub update: bool,
}

/// `masklab diversity`.
#[derive(Debug, Args)]
pub struct DiversityArgs {
    /// dense, unstructured[:S], block:B[:S], nm:N:M or transposable:N:M (S pruned, default 0.5).
    pub structure: String,
    /// Tensor size RxC.
    #[arg(long)]
    pub size: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

impl DiversityArgs {
    /// The diversity of the structure on the tensor size.
    pub fn compute(&self) -> Result<masklab::diversity::Diversity> {
        let structure = self.structure.parse()?;
        let (rows, cols) = masklab::mask::parse_size(&self.size)?;
        Ok(masklab::diversity::diversity(structure, rows, cols)?)
    }
}
