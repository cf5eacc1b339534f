//! The `masklab` command line: parses arguments, calls the library, prints. Exit codes: 0 ok,
//! 1 regression found, 2 bad input or failure.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use masklab::diversity::{Structure, diversity};
use masklab::experiment::plan::Plan;
use masklab::experiment::runner::{self, RunOptions};
use masklab::experiment::spec::{self, Spec};
use masklab::mask::{Pattern, parse_size};
use masklab::results::{regress, table};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "masklab",
    version,
    about = "Reproducible benchmark harness for fine-grained N:M sparsity"
)]
#[command(after_help = "Examples:
  masklab list
  masklab reproduce table1
  masklab run experiments/table1.toml --profile smoke --out /tmp/r
  masklab run experiments/table1.toml --resume /tmp/r
  masklab show /tmp/r
  masklab regress /tmp/r
  masklab diversity transposable --pattern 4:8 --size 8x8 --json
  masklab solvers
  masklab solve --solver exact --pattern 8:16 --input model.safetensors --output masks.safetensors --json")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options shared by `run` and `reproduce`.
#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Profile of the spec (smoke, default, full); default: `default`.
    #[arg(long)]
    profile: Option<String>,
    /// Run directory (default: results/runs/<table>/<profile>-<time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Finish an interrupted run in RUN_DIR; finished cells are kept, not redone.
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "out")]
    resume: Option<PathBuf>,
    /// Run every n-th cell starting at i (default: SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT if set).
    #[arg(long, value_name = "i/n")]
    shard: Option<String>,
    /// Cells run at once (timings are cleanest with 1).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Threads for the work inside a cell (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Device: cpu, cuda, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Stop after this many cells (finish later with --resume).
    #[arg(long, value_name = "K")]
    max_cells: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Command {
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
    /// Compare a run with results/baselines/<table>.parquet; exit 1 on regression.
    #[command(
        after_help = "Examples:\n  masklab regress /tmp/r\n  masklab regress /tmp/r --baseline my.parquet"
    )]
    Regress {
        /// The run directory.
        run_dir: PathBuf,
        /// Baseline summary (default: results/baselines/<table>.parquet).
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// Write the run's summary as the new baseline instead of comparing.
        #[arg(long)]
        update: bool,
    },
    /// Join the run directories of shards into one.
    #[command(after_help = "Example:\n  masklab merge /tmp/s0 /tmp/s1 --out /tmp/all")]
    Merge {
        /// Shard run directories.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Output run directory.
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
  masklab solve --solver tsenor --pattern 8:16 --input w.safetensors --option tau=0.01 --option iterations=100")]
    Solve {
        /// Solver name (see `masklab solvers`).
        #[arg(long)]
        solver: String,
        /// N:M pattern.
        #[arg(long)]
        pattern: String,
        /// Weights: FILE.safetensors or FILE.h5, optionally #GLOB to select tensors.
        #[arg(long)]
        input: String,
        /// Where to write the masks (u8 0/1, same tensor names); .safetensors or .h5.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Score: abs (|W|, default), square (W²), or a score file FILE[#GLOB] with the same tensor names (e.g. Wanda |W|·‖x‖).
        #[arg(long, default_value = "abs")]
        score: String,
        /// Also run `exact` and report optimum, kept_gap, pruned_excess.
        #[arg(long)]
        compare_exact: bool,
        /// Refuse tensors that are not 2-D or do not tile, instead of skipping them with a warning.
        #[arg(long)]
        strict: bool,
        /// Solver option NAME=VALUE (e.g. tau=0.02, iterations=60, draws=1000); repeatable.
        #[arg(long = "option", value_name = "NAME=VALUE")]
        options: Vec<String>,
        /// Threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Device: cpu, cuda, cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Seed for solvers that draw random numbers.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Print one JSON object per tensor.
        #[arg(long)]
        json: bool,
    },
    /// Measure a neural-gradient estimator on gradients from a file, or write one pruned draw.
    #[command(after_help = "Examples:
  masklab estimate --estimator mvue --pattern 2:4 --input grads.safetensors --draws 1000 --json
  masklab estimate --estimator greedy --pattern 2:4 --input grads.h5#'fc*' --json
  masklab estimate --estimator mvue --pattern 2:4 --sample --input grads.safetensors --output sparse.safetensors")]
    Estimate {
        /// Estimator: greedy, mvue_1to2, mvue, approx_mvue_2to4.
        #[arg(long)]
        estimator: String,
        /// N:M pattern.
        #[arg(long)]
        pattern: String,
        /// Gradients: FILE.safetensors or FILE.h5, optionally #GLOB.
        #[arg(long)]
        input: String,
        /// Draws K for the metrics.
        #[arg(long, default_value_t = 1000)]
        draws: usize,
        /// Dimension the groups run along (0: the batch axis of g, the update GEMM's reduction).
        #[arg(long, default_value_t = 0)]
        dim: usize,
        /// Columns of the random x in the GEMM metrics.
        #[arg(long, default_value_t = 64)]
        in_features: usize,
        /// Write one pruned draw (same tensor names) instead of measuring.
        #[arg(long, requires = "output")]
        sample: bool,
        /// Output file for --sample (.safetensors or .h5).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Print one JSON object per tensor.
        #[arg(long)]
        json: bool,
    },
    /// Train one model with N:M masks on the forward/backward GEMMs and an estimator on the update GEMM.
    #[command(after_help = "Examples:
  masklab train --model mlp --dataset fashion-mnist --mask transposable:4:8 --solver greedy --every 40 --grad-estimator mvue:2:4 --epochs 2 --seed 0 --json
  masklab train --dataset synthetic --epochs 1 --mask nm:2:4
  masklab train --model lenet --dataset mnist --data-dir ~/data --mask unstructured:0.5
  masklab train --mask transposable:4:8 --grad-estimator mvue:2:4 --capture-grads grads.safetensors
  masklab train --epochs 5 --save dense.safetensors && masklab train --init dense.safetensors --mask transposable:4:8

Masks: dense, unstructured:S, block:B:S, nm:N:M (forward only), transposable:N:M (forward and backward).
Gradient estimators (update GEMM, along the batch axis): dense, greedy:N:M, mvue:N:M, mvue_1to2:1:2, approx_mvue_2to4:2:4.")]
    Train {
        /// Model: mlp, mlp-bn (batch norm after every hidden layer), lenet, resnet.
        #[arg(long, default_value = "mlp")]
        model: String,
        /// Data set: fashion-mnist, mnist, cifar10, synthetic[:N].
        #[arg(long, default_value = "fashion-mnist")]
        dataset: String,
        /// Directory with the data set files (else $MASKLAB_DATA, else the Debian package's).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// MLP hidden widths, comma-separated.
        #[arg(long, default_value = "256,256", value_delimiter = ',')]
        hidden: Vec<usize>,
        /// Mask structure of the prunable layers.
        #[arg(long, default_value = "dense")]
        mask: String,
        /// Solver for transposable masks (see `masklab solvers`).
        #[arg(long, default_value = "greedy")]
        solver: String,
        /// Recompute masks every K steps (0: static, from the initial weights).
        #[arg(long, default_value_t = 0)]
        every: usize,
        /// Estimator of the update GEMM's neural gradient.
        #[arg(long, default_value = "dense")]
        grad_estimator: String,
        /// SR-STE decay on pruned weights (0: off).
        #[arg(long, default_value_t = 0.0)]
        srste: f64,
        /// Epochs.
        #[arg(long, default_value_t = 2)]
        epochs: usize,
        /// Batch size (a multiple of the gradient pattern's M).
        #[arg(long, default_value_t = 128)]
        batch: usize,
        /// Peak learning rate (cosine to 0).
        #[arg(long, default_value_t = 0.05)]
        lr: f64,
        /// SGD momentum.
        #[arg(long, default_value_t = 0.9)]
        momentum: f64,
        /// Weight decay.
        #[arg(long, default_value_t = 5e-4)]
        weight_decay: f64,
        /// Optimiser: sgd or adamw.
        #[arg(long, default_value = "sgd")]
        optimizer: String,
        /// Use only the first N training examples.
        #[arg(long)]
        train_limit: Option<usize>,
        /// Write the last step's neural gradients of the prunable layers (.safetensors or .h5).
        #[arg(long)]
        capture_grads: Option<PathBuf>,
        /// Start from a checkpoint written by --save (a static mask is computed from it).
        #[arg(long)]
        init: Option<PathBuf>,
        /// Write the trained dense master weights (.safetensors or .h5).
        #[arg(long)]
        save: Option<PathBuf>,
        /// Threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Device: cpu, cuda, cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Mask diversity of one structure over one tensor.
    #[command(after_help = "Examples:
  masklab diversity transposable --pattern 4:8 --size 8x8 --json
  masklab diversity nm --pattern 2:4 --size 64x64
  masklab diversity block --block 4 --sparsity 0.5 --size 64x64
  masklab diversity unstructured --sparsity 0.5 --size 4096x4096")]
    Diversity {
        /// unstructured, block, nm or transposable.
        structure: String,
        /// N:M pattern (nm, transposable).
        #[arg(long)]
        pattern: Option<String>,
        /// Tensor size RxC.
        #[arg(long)]
        size: String,
        /// Block side B (block).
        #[arg(long)]
        block: Option<usize>,
        /// Fraction pruned (unstructured, block; default: the pattern's).
        #[arg(long)]
        sparsity: Option<f64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    masklab::memory::keep_freed_memory();
    match run_cli(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::from(2)
        }
    }
}

/// A rayon pool of `threads` threads (default: all cores) for one command.
fn thread_pool(threads: Option<usize>) -> Result<rayon::ThreadPool> {
    Ok(rayon::ThreadPoolBuilder::new()
        .num_threads(threads.unwrap_or(0))
        .build()?)
}

fn run_cli(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::List { dir } => {
            let entries = spec::catalogue(&dir)?;
            println!(
                "{:<8}  {:<48}  {:<22}  regenerates",
                "id", "title", "profiles"
            );
            for e in entries {
                println!(
                    "{:<8}  {:<48}  {:<22}  {}",
                    e.id,
                    e.title,
                    e.profiles.join(","),
                    e.regenerates
                );
            }
        }
        Command::Run { spec, args } => {
            let outcome = run_spec(&spec, args)?;
            report_outcome(&outcome);
        }
        Command::Reproduce { table, dir, args } => {
            let paths = spec::table_specs(&dir, &table)?;
            if paths.len() > 1 && (args.out.is_some() || args.resume.is_some()) {
                bail!(
                    "{table} has {} parts ({}); give --out/--resume to `masklab run` on one part",
                    paths.len(),
                    paths
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            for path in paths {
                let outcome = run_spec(&path, args.clone())?;
                report_outcome(&outcome);
                print!("{}", read_summary(&outcome.dir)?);
            }
        }
        Command::Show { run_dir } => print!("{}", read_summary(&run_dir)?),
        Command::Regress {
            run_dir,
            baseline,
            update,
        } => {
            let (manifest, spec) = runner::spec_of_run(&run_dir)?;
            let baseline = baseline.unwrap_or_else(|| {
                PathBuf::from("results/baselines").join(format!("{}.parquet", manifest.table))
            });
            let mut run = table::read_parquet(&run_dir.join("summary.parquet"))?;
            if update {
                if let Some(parent) = baseline.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| parent.display().to_string())?;
                }
                table::write_parquet(&mut run, &baseline)?;
                println!("wrote baseline {}", baseline.display());
                return Ok(ExitCode::SUCCESS);
            }
            let base = table::read_parquet(&baseline)?;
            let axes: Vec<String> = spec.axes.iter().map(|a| a.name.clone()).collect();
            let report = regress::compare(
                &table::rows_from_frame(&base),
                &table::rows_from_frame(&run),
                &axes,
                &spec.tolerance,
            );
            if report.rows_compared == 0 {
                bail!(
                    "{}: no grid point in common with baseline {} (profile {}; the baseline is usually the smoke profile)",
                    run_dir.display(),
                    baseline.display(),
                    manifest.profile
                );
            }
            print!("{}", report.render());
            if report.regressed() {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Merge { dirs, out } => {
            let m = runner::merge(&dirs, &out)?;
            println!(
                "merged {} cells of {} into {}",
                m.cells_done,
                m.cells_planned,
                out.display()
            );
        }
        Command::Solvers => {
            println!(
                "{:<12}  {:<40}  {:<10}  summary",
                "name", "guarantee", "devices"
            );
            for s in masklab::solvers::REGISTRY {
                println!(
                    "{:<12}  {:<40}  {:<10}  {}",
                    s.name(),
                    s.guarantee().to_string(),
                    s.devices(),
                    s.summary()
                );
            }
        }
        Command::Solve {
            solver,
            pattern,
            input,
            output,
            score,
            compare_exact,
            strict,
            options,
            threads,
            device,
            seed,
            json,
        } => {
            let solver = masklab::solvers::by_name(&solver)?;
            let pattern: Pattern = pattern.parse()?;
            let mut opts = std::collections::BTreeMap::new();
            for o in &options {
                let (k, v) = o
                    .split_once('=')
                    .with_context(|| format!("--option {o}: expected NAME=VALUE"))?;
                let v: f64 = v
                    .parse()
                    .with_context(|| format!("--option {o}: the value is not a number"))?;
                opts.insert(k.to_string(), v);
            }
            masklab::solvers::check_options(solver, &opts)?;
            let ctx = masklab::solvers::SolveContext {
                seed,
                device: masklab::device::parse(&device)?,
                options: opts,
            };
            let req = masklab::solvers::apply::SolveRequest {
                solver,
                pattern,
                score: score.parse()?,
                compare_exact,
                strict,
            };
            let pool = thread_pool(threads)?;
            let (reports, masks, warnings) =
                pool.install(|| masklab::solvers::apply::solve_source(&input, &req, &ctx))?;
            for w in warnings {
                eprintln!("warning: {w}");
            }
            for r in &reports {
                if json {
                    println!("{}", serde_json::to_string(r)?);
                } else {
                    let gap = r
                        .kept_gap
                        .map(|g| {
                            format!(
                                ", kept_gap {g:.3e}, pruned_excess {:.3e}",
                                r.pruned_excess.unwrap_or(f64::NAN)
                            )
                        })
                        .unwrap_or_default();
                    println!(
                        "{} {:?}: {} {} kept {:.6}{gap}; {} blocks, {} infeasible, {} under-filled; {:.3} s",
                        r.tensor,
                        r.shape,
                        r.solver,
                        r.pattern,
                        r.kept,
                        r.blocks,
                        r.infeasible_blocks,
                        r.underfilled_blocks,
                        r.seconds
                    );
                }
            }
            if let Some(out) = output {
                masklab::io::write_masks(&out, &masks)?;
                eprintln!("wrote {} masks to {}", masks.len(), out.display());
            }
        }
        Command::Estimate {
            estimator,
            pattern,
            input,
            draws,
            dim,
            in_features,
            sample,
            output,
            seed,
            json,
        } => {
            use candle_core::{Device, Tensor};
            let est = masklab::estimators::by_name(&estimator)?;
            let pattern: Pattern = pattern.parse()?;
            est.supports(pattern)?;
            if dim > 1 {
                bail!("--dim {dim}: gradients are 2-D; use 0 (batch axis) or 1");
            }
            let tensors = masklab::io::read_tensors(&input)?;
            let mut drawn = Vec::new();
            for t in tensors.iter().filter(|t| t.shape.len() == 2) {
                let g = Tensor::from_vec(t.data.clone(), (t.shape[0], t.shape[1]), &Device::Cpu)?;
                if sample {
                    let out = masklab::estimators::sample(est, &g, pattern, dim, seed)?;
                    let data = out.flatten_all()?.to_vec1::<f32>()?;
                    drawn.push(masklab::io::NamedTensor {
                        name: t.name.clone(),
                        shape: t.shape.clone(),
                        data,
                    });
                    continue;
                }
                // Groups along `dim`: measure on the orientation where they run along dim 0.
                let g_for_dim = if dim == 0 {
                    g.clone()
                } else {
                    g.t()?.contiguous()?
                };
                let batch = g_for_dim.dims()[0];
                let x: Vec<f32> = {
                    use rand::SeedableRng;
                    use rand_distr::Distribution;
                    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                    (0..batch * in_features)
                        .map(|_| rand_distr::StandardNormal.sample(&mut rng))
                        .collect()
                };
                let x_for_dim = Tensor::from_vec(x, (batch, in_features), &Device::Cpu)?;
                let m = masklab::estimators::measure::measure(
                    est, &g_for_dim, &x_for_dim, pattern, 0, draws, seed,
                )?;
                let report = serde_json::json!({
                    "tensor": t.name, "shape": t.shape, "estimator": est.name(), "pattern": pattern.to_string(), "dim": dim,
                    "draws": m.draws, "rel_bias": m.rel_bias, "rel_variance": m.rel_variance, "rel_mse": m.rel_mse,
                    "gemm_rel_bias": m.gemm_rel_bias, "gemm_rel_variance": m.gemm_rel_variance,
                });
                if json {
                    println!("{report}");
                } else {
                    println!(
                        "{} {:?}: {} {} over {} draws: rel_bias {:.3e}, rel_variance {:.3e}, rel_mse {:.3e}; gemm rel_bias {:.3e}, rel_variance {:.3e}",
                        t.name,
                        t.shape,
                        est.name(),
                        pattern,
                        m.draws,
                        m.rel_bias,
                        m.rel_variance,
                        m.rel_mse,
                        m.gemm_rel_bias,
                        m.gemm_rel_variance
                    );
                }
            }
            if let Some(out) = output.filter(|_| sample) {
                masklab::io::write_tensors(&out, &drawn)?;
                eprintln!("wrote {} tensors to {}", drawn.len(), out.display());
            }
        }
        Command::Train {
            model,
            dataset,
            data_dir,
            hidden,
            mask,
            solver,
            every,
            grad_estimator,
            srste,
            epochs,
            batch,
            lr,
            momentum,
            weight_decay,
            optimizer,
            train_limit,
            capture_grads,
            init,
            save,
            threads,
            device,
            seed,
            json,
        } => {
            use masklab::train::trainer::{OptimizerKind, TrainConfig, train};
            let optimizer = match optimizer.as_str() {
                "sgd" => OptimizerKind::Sgd,
                "adamw" => OptimizerKind::AdamW,
                other => bail!("--optimizer {other}: expected sgd or adamw"),
            };
            let cfg = TrainConfig {
                model,
                hidden,
                mask: mask.parse()?,
                solver,
                every,
                grad: grad_estimator.parse()?,
                srste,
                epochs,
                batch,
                lr,
                momentum,
                weight_decay,
                optimizer,
                seed,
                train_limit,
                capture_grads: capture_grads.clone(),
                init,
                save,
                progress: !json,
            };
            let device = masklab::device::parse(&device)?;
            let data = masklab::train::data::load(&dataset, data_dir.as_deref(), seed)?;
            let pool = thread_pool(threads)?;
            let report = pool.install(|| train(&cfg, &data, &device))?;
            if json {
                let mut v = serde_json::to_value(&report)?;
                if let Some(o) = v.as_object_mut() {
                    o.insert("model".into(), cfg.model.clone().into());
                    o.insert("dataset".into(), data.name.clone().into());
                    o.insert("mask".into(), cfg.mask.to_string().into());
                    o.insert("grad_estimator".into(), format!("{:?}", cfg.grad).into());
                    o.insert("seed".into(), seed.into());
                }
                println!("{v}");
            } else {
                println!(
                    "{} on {} ({} mask, {:?} gradients): test accuracy {:.4}, train loss {:.4}, {} steps, {:.2} ms/step, {:.1} s, structure {}",
                    cfg.model,
                    data.name,
                    cfg.mask,
                    cfg.grad,
                    report.test_accuracy,
                    report.train_loss,
                    report.steps,
                    report.step_seconds * 1e3,
                    report.seconds,
                    if report.structure_ok {
                        "ok"
                    } else {
                        "VIOLATED"
                    }
                );
            }
            if let Some(p) = capture_grads {
                eprintln!("wrote neural gradients to {}", p.display());
            }
            if !report.structure_ok {
                bail!("an operand lost its N:M structure");
            }
        }
        Command::Diversity {
            structure,
            pattern,
            size,
            block,
            sparsity,
            json,
        } => {
            let pattern = pattern.map(|p| p.parse::<Pattern>()).transpose()?;
            let structure = Structure::from_parts(&structure, pattern, block, sparsity)?;
            let (rows, cols) = parse_size(&size)?;
            let d = diversity(structure, rows, cols)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                println!(
                    "{structure} over {}: log10(MD) = {:.6} ({:?})",
                    d.size, d.log10, d.method
                );
                if let Some(e) = &d.exact {
                    println!("exact: {e}");
                }
                if let Some(c) = d.closed_form_log10 {
                    println!(
                        "closed form (overcount) log10 = {c:.6}, per tile {}",
                        d.closed_form_per_tile.unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_spec(path: &Path, args: RunArgs) -> Result<runner::RunOutcome> {
    let resume_profile = match &args.resume {
        Some(dir) if args.profile.is_none() => {
            Some(masklab::results::manifest::Manifest::read(dir)?.profile)
        }
        _ => None,
    };
    let profile = args.profile.or(resume_profile).filter(|p| p != "grid");
    let spec = Spec::load(path, profile.as_deref())?;
    let plan = Plan::new(spec)?;
    let shard = match &args.shard {
        Some(s) => Some(runner::parse_shard(s)?),
        None => runner::shard_from_env()?,
    };
    let defaults = RunOptions::default();
    let opts = RunOptions {
        out: args.resume.clone().or(args.out),
        resume: args.resume.is_some(),
        shard,
        jobs: args.jobs.max(1),
        threads: args.threads.unwrap_or(defaults.threads),
        device: masklab::device::parse(&args.device)?,
        max_cells: args.max_cells,
        progress: !args.quiet,
    };
    Ok(runner::run(&plan, &opts)?)
}

fn report_outcome(o: &runner::RunOutcome) {
    let state = if o.complete {
        "complete"
    } else {
        "incomplete (finish with --resume)"
    };
    eprintln!(
        "{}: ran {} cells, {} already done; {state}",
        o.dir.display(),
        o.ran,
        o.skipped
    );
}

fn read_summary(dir: &Path) -> Result<String> {
    let path = dir.join("summary.md");
    std::fs::read_to_string(&path)
        .with_context(|| format!("{}: no summary (is this a run directory?)", path.display()))
}
