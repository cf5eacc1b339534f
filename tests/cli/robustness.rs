//! Bad input, faults and concurrent runs (issue 13), grouped by command. Each test states the
//! failure it guards (F1–F11 of the issue); each failed on the code before the fix (checked by
//! pointing `MASKLAB_BIN` at that build). Exit codes: 2 bad input, 1 a failed check, 0 done.

use crate::common::{self, fails, masklab, ok, s, write_f32};
use std::path::Path;
use std::process::{Command, Stdio};

/// A spec of `kind` with the given `[grid]` lines and params, in `dir`.
fn spec(dir: &Path, name: &str, kind: &str, grid: &str, params: &str) -> String {
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        "name = \"{name}\"\ntitle = \"t\"\nregenerates = \"test\"\nkind = \"{kind}\"\nseeds = [0, 1]\n\n[grid]\n{grid}\n\n[params]\n{params}\n\n[profiles.default]\n[profiles.other]\n"
    );
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// A train spec with `setups` cells per seed, each a fraction of a second.
fn train_spec(dir: &Path, name: &str, setups: usize, examples: usize) -> String {
    let all = [
        "dense + dense",
        "nm:2:4 + dense",
        "transposable:4:8 + dense",
        "dense + mvue:2:4",
        "unstructured:0.5 + dense",
        "block:4:0.5 + dense",
    ];
    let list: Vec<String> = all[..setups].iter().map(|x| format!("\"{x}\"")).collect();
    spec(
        dir,
        name,
        "train",
        &format!("setup = [{}]", list.join(", ")),
        &format!(
            "dataset = \"synthetic:{examples}\"\nhidden = [64, 32]\nepochs = 1\nbatch = 32\nlr = 0.02"
        ),
    )
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_default()
}

fn cells_logged(dir: &Path) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&read(&dir.join("cells.jsonl")))
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

mod diversity {
    use super::*;

    /// F2: 2^64 elements once wrapped to 0 and reported log10 0, "exact: 1", exit 0.
    #[test]
    fn sizes_whose_element_count_overflows_are_refused() {
        let e = fails(
            2,
            &["diversity", "nm:2:4", "--size", "4294967296x4294967296"],
        );
        assert!(e.contains("18446744073709551616 elements"), "{e}");
    }

    /// F10: `0:4` was accepted (and `N > M`, `M = 0` must stay refused).
    #[test]
    fn patterns_keep_at_least_one_of_at_least_one() {
        for p in ["0:4", "5:4", "1:0", "0:0"] {
            let e = fails(2, &["diversity", &format!("nm:{p}"), "--size", "8x8"]);
            assert!(e.contains(&format!("`{p}`")), "{p}: {e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }
}

mod estimate {
    use super::*;

    /// F3: a 0×0 tensor panicked (chunk size 0).
    #[test]
    fn an_empty_tensor_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("e.safetensors");
        write_f32(&f, &[("e", vec![0, 0], vec![])]);
        let e = fails(
            2,
            &[
                "estimate",
                "--estimator",
                "mvue",
                "--pattern",
                "2:4",
                "--input",
                s(&f),
            ],
        );
        assert!(e.contains("`e`") && e.contains("empty"), "{e}");
    }

    /// F9: 1-D and 3-D tensors only gave exit 0 and no output.
    #[test]
    fn no_usable_tensor_is_an_error_naming_each_skipped_one() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("g.safetensors");
        write_f32(
            &f,
            &[
                ("v", vec![8], vec![1.0; 8]),
                ("c", vec![2, 2, 4], vec![1.0; 16]),
            ],
        );
        let e = fails(
            2,
            &[
                "estimate",
                "--estimator",
                "mvue",
                "--pattern",
                "2:4",
                "--input",
                s(&f),
            ],
        );
        assert!(
            e.contains("`v`") && e.contains("`c`") && e.contains("not 2-D"),
            "{e}"
        );
        let e = fails(
            2,
            &[
                "estimate",
                "--estimator",
                "mvue",
                "--pattern",
                "2:4",
                "--input",
                s(&f),
                "--strict",
            ],
        );
        assert!(e.contains("--strict"), "{e}");
    }

    /// Minor: `--draws 0` silently ran one draw; `--output` without `--sample` was ignored.
    #[test]
    fn zero_draws_and_an_output_without_sample_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("g.safetensors");
        write_f32(
            &f,
            &[("g", vec![8, 4], (0..32).map(|i| i as f32).collect())],
        );
        let base = [
            "estimate",
            "--estimator",
            "mvue",
            "--pattern",
            "2:4",
            "--input",
            s(&f),
        ];
        let e = fails(2, &[&base[..], &["--draws", "0"]].concat());
        assert!(e.contains("draws"), "{e}");
        let out = dir.path().join("o.safetensors");
        let e = fails(2, &[&base[..], &["--output", s(&out)]].concat());
        assert!(e.contains("--sample"), "{e}");
        assert!(!out.exists());
    }

    /// F4: `--sample --output` equal to `--input` (here through a symlink) overwrote the input.
    #[test]
    fn a_sample_is_never_written_over_its_input() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("g.safetensors");
        write_f32(
            &f,
            &[("g", vec![8, 4], (0..32).map(|i| i as f32 + 1.0).collect())],
        );
        let before = read(&f);
        let link = dir.path().join("link.safetensors");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        for out in [&f, &link] {
            let args = [
                "estimate",
                "--estimator",
                "mvue",
                "--pattern",
                "2:4",
                "--input",
                s(&f),
                "--sample",
                "--output",
                s(out),
            ];
            let e = fails(2, &args);
            assert!(e.contains("never writes over an input"), "{e}");
        }
        assert_eq!(read(&f), before);
    }
}

mod solve {
    use super::*;

    /// F4: `--output` equal to `--input` replaced the weights with masks.
    #[test]
    fn masks_are_never_written_over_the_weights() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("w.safetensors");
        write_f32(
            &f,
            &[("w", vec![8, 8], (0..64).map(|i| (i % 7) as f32).collect())],
        );
        let before = read(&f);
        let hard = dir.path().join("hard.safetensors");
        std::fs::hard_link(&f, &hard).unwrap();
        let dotted = format!("{}/./w.safetensors", s(dir.path()));
        for out in [s(&f), s(&hard), dotted.as_str()] {
            let e = fails(
                2,
                &[
                    "solve",
                    "--solver",
                    "exact",
                    "--pattern",
                    "2:4",
                    "--input",
                    s(&f),
                    "--output",
                    out,
                ],
            );
            assert!(e.contains("never writes over an input"), "{e}");
        }
        assert_eq!(read(&f), before);
        // A different output is written whole, with no temporary left beside it.
        let m = dir.path().join("m.safetensors");
        ok(&[
            "solve",
            "--solver",
            "exact",
            "--pattern",
            "2:4",
            "--input",
            s(&f),
            "--output",
            s(&m),
        ]);
        assert!(m.exists());
        let stray: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(stray.is_empty(), "{stray:?}");
    }

    /// F3: `solve --json | head -1` panicked on the broken pipe.
    #[test]
    fn a_closed_pipe_ends_the_process_quietly() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("w.safetensors");
        let tensors: Vec<_> = (0..400)
            .map(|i| (format!("t{i:03}"), vec![4, 4], vec![1.0f32; 16]))
            .collect();
        let named: Vec<_> = tensors
            .iter()
            .map(|(n, sh, d)| (n.as_str(), sh.clone(), d.clone()))
            .collect();
        write_f32(&f, &named);
        let mut child = Command::new(common::bin())
            .args([
                "solve",
                "--solver",
                "greedy",
                "--pattern",
                "2:4",
                "--input",
                s(&f),
                "--json",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader goes away before the first line
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
        assert_ne!(out.status.code(), Some(101), "{err}");
    }
}

mod train {
    use super::*;

    /// F3: `--batch 0` divided by zero.
    #[test]
    fn batch_zero_is_refused() {
        let e = fails(
            2,
            &[
                "train",
                "--dataset",
                "synthetic:64",
                "--epochs",
                "1",
                "--batch",
                "0",
            ],
        );
        assert!(e.contains("batch"), "{e}");
    }

    /// F1: widths whose weights cannot fit were allocated (abort, exit 134).
    #[test]
    fn a_model_larger_than_memory_is_refused_before_allocating() {
        let e = fails(
            2,
            &[
                "train",
                "--dataset",
                "synthetic:64",
                "--epochs",
                "1",
                "--hidden",
                "4000000000,4000000000",
            ],
        );
        assert!(e.contains("hidden") && e.contains("GiB"), "{e}");
    }

    /// F4: `--capture-grads` (or `--save`) equal to `--init` overwrote the checkpoint.
    #[test]
    fn outputs_never_replace_the_init_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let init = dir.path().join("init.safetensors");
        let base = [
            "train",
            "--dataset",
            "synthetic:128",
            "--epochs",
            "1",
            "--batch",
            "32",
            "--hidden",
            "16",
        ];
        ok(&[&base[..], &["--save", s(&init)]].concat());
        let before = read(&init);
        for flag in ["--capture-grads", "--save"] {
            let e = fails(
                2,
                &[&base[..], &["--init", s(&init), flag, s(&init)]].concat(),
            );
            assert!(e.contains("never writes over an input"), "{flag}: {e}");
        }
        assert_eq!(read(&init), before);
    }

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend_from_slice(data);
        b
    }

    fn mnist(dir: &Path, train: (&[u32], &[u8]), test: (&[u32], &[u8])) -> String {
        for (prefix, (dims, labels)) in [("train", train), ("t10k", test)] {
            let n: u32 = dims.iter().product();
            std::fs::write(
                dir.join(format!("{prefix}-images-idx3-ubyte")),
                idx(dims, &vec![9; n as usize]),
            )
            .unwrap();
            std::fs::write(
                dir.join(format!("{prefix}-labels-idx1-ubyte")),
                idx(&[dims[0]], labels),
            )
            .unwrap();
        }
        let args = [
            "train",
            "--dataset",
            "mnist",
            "--data-dir",
            s(dir),
            "--epochs",
            "1",
            "--batch",
            "1",
        ];
        fails(2, &args)
    }

    /// F3 and minor: an IDX set with 0 images, test images of another size, labels ≥ 10.
    #[test]
    fn bad_data_sets_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = mnist(dir.path(), (&[0, 4, 4], &[]), (&[1, 4, 4], &[0]));
        assert!(e.contains("train-images") && e.contains("no images"), "{e}");
        let e = mnist(dir.path(), (&[2, 4, 4], &[1, 2]), (&[1, 5, 5], &[0]));
        assert!(e.contains("t10k-images") && e.contains("5x5"), "{e}");
        let e = mnist(dir.path(), (&[2, 4, 4], &[1, 2]), (&[2, 4, 4], &[0, 12]));
        assert!(e.contains("t10k-labels") && e.contains("label 12"), "{e}");
    }
}

mod run {
    use super::*;

    /// F11: an unknown `[grid]` axis was accepted and silently ignored.
    #[test]
    fn an_axis_the_kind_does_not_read_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let sp = spec(
            dir.path(),
            "t",
            "diversity",
            "structure = [\"nm:2:4\"]\nsize = [\"8x8\"]\nsizes = [\"8x8\"]",
            "",
        );
        let e = fails(
            2,
            &["run", &sp, "--out", s(&dir.path().join("o")), "--quiet"],
        );
        assert!(
            e.contains("grid.sizes") && e.contains("structure, size"),
            "{e}"
        );
    }

    /// F7: two runs on one `--out` both wrote, duplicating cells.
    #[test]
    fn a_second_run_on_a_locked_directory_stops_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let sp = train_spec(dir.path(), "lock", 4, 16384);
        let out = dir.path().join("o");
        let mut first = Command::new(common::bin())
            .args(["run", &sp, "--out", s(&out), "--quiet"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lock = out.join(".lock");
        let t0 = std::time::Instant::now();
        while !String::from_utf8_lossy(&read(&lock)).contains("pid") {
            assert!(
                t0.elapsed().as_secs() < 60,
                "the first run never took the lock"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let second = masklab(&["run", &sp, "--out", s(&out), "--quiet"]);
        let status = first.wait().unwrap();
        assert!(status.success());
        let err = String::from_utf8_lossy(&second.stderr);
        assert_eq!(second.status.code(), Some(2), "{err}");
        assert!(err.contains(&format!("pid {}", first.id())), "{err}");
        assert_eq!(cells_logged(&out).len(), 8, "each cell once");
        // The lock dies with its process: a later resume gets it.
        ok(&["run", &sp, "--resume", s(&out), "--quiet"]);
    }

    /// F5: `--resume` ran the whole plan instead of the shard the run was started with.
    #[test]
    fn resume_keeps_the_shard_and_refuses_another() {
        let dir = tempfile::tempdir().unwrap();
        let sp = spec(
            dir.path(),
            "sh",
            "diversity",
            "structure = [\"nm:2:4\", \"nm:1:2\", \"nm:4:8\"]\nsize = [\"8x8\", \"16x16\"]",
            "",
        );
        let out = dir.path().join("o");
        ok(&[
            "run",
            &sp,
            "--shard",
            "1/3",
            "--max-cells",
            "1",
            "--out",
            s(&out),
            "--quiet",
        ]);
        ok(&["run", &sp, "--resume", s(&out), "--quiet"]);
        let idx: Vec<u64> = cells_logged(&out)
            .iter()
            .map(|r| r["index"].as_u64().unwrap())
            .collect();
        assert_eq!(idx, vec![1, 4, 7, 10], "shard 1/3 of 12 cells");
        let e = fails(
            2,
            &["run", &sp, "--resume", s(&out), "--shard", "0/3", "--quiet"],
        );
        assert!(e.contains("shard 1/3"), "{e}");
    }

    /// F3: a short spec hash in an edited manifest panicked (`&hash[..12]`).
    #[test]
    fn an_edited_manifest_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let sp = spec(
            dir.path(),
            "m",
            "diversity",
            "structure = [\"nm:2:4\"]\nsize = [\"8x8\"]",
            "",
        );
        let out = dir.path().join("o");
        ok(&["run", &sp, "--out", s(&out), "--quiet"]);
        let mpath = out.join("manifest.json");
        let mut m: serde_json::Value = serde_json::from_slice(&read(&mpath)).unwrap();
        m["spec_hash"] = "ab".into();
        std::fs::write(&mpath, m.to_string()).unwrap();
        let e = fails(2, &["run", &sp, "--resume", s(&out), "--quiet"]);
        assert!(e.contains("spec changed") && e.contains("hash ab"), "{e}");
    }
}

mod errors {
    use super::*;

    /// Minor: a library error's cause was printed twice (`path: No such file: No such file`).
    #[test]
    fn each_cause_is_printed_once() {
        let e = fails(
            2,
            &[
                "solve",
                "--solver",
                "exact",
                "--pattern",
                "2:4",
                "--input",
                "/no/such/w.safetensors",
            ],
        );
        assert_eq!(e.matches("no such file").count(), 1, "{e}");
        assert!(e.contains("/no/such/w.safetensors"), "{e}");
    }

    /// One ComputeArgs (threads, device, seed) everywhere: `--seed` is refused where the spec
    /// gives the seeds, and a device a command cannot use is refused, not ignored.
    #[test]
    fn compute_options_mean_one_thing_or_are_refused() {
        let e = fails(
            2,
            &[
                "run",
                "experiments/table1.toml",
                "--profile",
                "smoke",
                "--seed",
                "3",
            ],
        );
        assert!(e.contains("seed") && e.contains("spec"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("g.safetensors");
        write_f32(&f, &[("g", vec![8, 4], vec![1.0; 32])]);
        let e = fails(
            2,
            &[
                "estimate",
                "--estimator",
                "mvue",
                "--pattern",
                "2:4",
                "--input",
                s(&f),
                "--device",
                "cuda",
            ],
        );
        assert!(e.contains("device") && e.contains("cpu"), "{e}");
        for threads in ["0", "1"] {
            ok(&[
                "estimate",
                "--estimator",
                "mvue",
                "--pattern",
                "2:4",
                "--input",
                s(&f),
                "--draws",
                "4",
                "--threads",
                threads,
            ]);
        }
    }

    /// F1: a spec whose synthetic weights cannot fit is refused before any cell runs.
    #[test]
    fn a_spec_size_beyond_memory_is_refused_at_planning() {
        let dir = tempfile::tempdir().unwrap();
        let sp = spec(
            dir.path(),
            "big",
            "solver",
            "pattern = [\"2:4\"]\nsolver = [\"greedy\"]\nsource = [\"gaussian:4000000x4000000\"]",
            "",
        );
        let out = dir.path().join("o");
        let e = fails(2, &["run", &sp, "--out", s(&out), "--quiet"]);
        assert!(
            e.contains("gaussian:4000000x4000000") && e.contains("GiB"),
            "{e}"
        );
        assert!(!out.join("cells.jsonl").exists());
    }

    /// A solver option in a spec is checked as `masklab solve --option` checks it: one that a
    /// solver of the grid does not read is refused at planning (it was dropped for that solver's
    /// cells); `SOLVER.OPTION` sets it for one solver, and is checked against that solver.
    #[test]
    fn solver_options_a_solver_does_not_read_are_refused_not_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let grid =
            "pattern = [\"2:4\"]\nsolver = [\"exact\", \"tsenor\"]\nsource = [\"gaussian:8x8\"]";
        for (params, named) in [
            ("tau = 0.05", ["exact", "tsenor.tau"]),
            ("\"exact.tau\" = 0.05", ["exact", "tau"]),
            ("\"tsenor.taux\" = 0.05", ["tsenor", "taux"]),
            ("\"lp2.tau\" = 0.05", ["lp2", "known solvers"]),
        ] {
            let sp = spec(dir.path(), "opts", "solver", grid, params);
            let out = dir.path().join("refused");
            let e = fails(2, &["run", &sp, "--out", s(&out), "--quiet"]);
            assert!(named.iter().all(|n| e.contains(n)), "{params}: {e}");
            assert!(!out.join("cells.jsonl").exists(), "{params}");
        }
        let sp = spec(dir.path(), "opts", "solver", grid, "\"tsenor.tau\" = 0.05");
        let out = dir.path().join("o");
        ok(&["run", &sp, "--out", s(&out), "--quiet"]);
        let cells = std::fs::read_to_string(out.join("cells.jsonl")).unwrap();
        assert_eq!(cells.lines().count(), 4, "two solvers × two seeds");
    }
}

mod regress {
    use super::*;

    /// F6: `regress` on an incomplete run (or one with a 0-byte table) said "no regression".
    #[test]
    fn an_incomplete_or_damaged_run_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o");
        ok(&[
            "run",
            "experiments/table1.toml",
            "--profile",
            "smoke",
            "--max-cells",
            "3",
            "--out",
            s(&out),
            "--quiet",
        ]);
        let e = fails(2, &["regress", s(&out)]);
        assert!(e.contains("not complete") && e.contains("--resume"), "{e}");
        ok(&[
            "run",
            "experiments/table1.toml",
            "--resume",
            s(&out),
            "--quiet",
        ]);
        assert!(ok(&["regress", s(&out)]).contains("no regression"));
        std::fs::write(out.join("summary.parquet"), b"").unwrap();
        fails(2, &["regress", s(&out)]);
    }
}

mod merge {
    use super::*;

    /// F8: merge accepted incomplete, overlapping, partial or mismatched shards, and its own input
    /// as output.
    #[test]
    fn only_the_complete_disjoint_shards_of_one_run_merge() {
        let dir = tempfile::tempdir().unwrap();
        let sp = spec(
            dir.path(),
            "mg",
            "diversity",
            "structure = [\"nm:2:4\", \"nm:1:2\"]\nsize = [\"8x8\", \"16x16\"]",
            "",
        );
        let d = |n: &str| s(&dir.path().join(n)).to_string();
        for (i, name) in [(0, "s0"), (1, "s1")] {
            ok(&[
                "run",
                &sp,
                "--shard",
                &format!("{i}/2"),
                "--out",
                &d(name),
                "--quiet",
            ]);
        }
        ok(&[
            "run",
            &sp,
            "--shard",
            "1/2",
            "--max-cells",
            "1",
            "--out",
            &d("part"),
            "--quiet",
        ]);
        ok(&[
            "run",
            &sp,
            "--profile",
            "other",
            "--shard",
            "1/2",
            "--out",
            &d("other"),
            "--quiet",
        ]);
        let cases: [(&[&str], &str); 5] = [
            (&["s0", "part"], "not complete"),
            (&["s0", "s0"], "overlap"),
            (&["s0"], "miss 4 of the plan's 8 cells"),
            (&["s0", "other"], "profile"),
            (
                &["s0", "s1", "--out-is-input"],
                "merge into a new directory",
            ),
        ];
        for (inputs, want) in cases {
            let mut args = vec!["merge".to_string()];
            let mut out = d("m");
            for i in inputs {
                if *i == "--out-is-input" {
                    out = d("s1");
                } else {
                    args.push(d(i));
                }
            }
            args.extend(["--out".into(), out]);
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let e = fails(2, &argv);
            assert!(e.contains(want), "{inputs:?}: {e}");
        }
        assert!(!dir.path().join("m").join("cells.jsonl").exists());
        assert!(
            ok(&["merge", &d("s0"), &d("s1"), "--out", &d("m")]).contains("merged 8 cells of 8")
        );
        assert!(
            ok(&[
                "regress",
                &d("m"),
                "--baseline",
                &format!("{}/summary.parquet", d("m"))
            ])
            .contains("no regression")
        );
    }
}

/// Item 3: a sweep killed (SIGKILL) at random points, tables being written included, then
/// resumed, ends with the tables of an uninterrupted run; after every kill, `regress` on a run
/// that is not complete refuses, and a run that says complete has its final tables.
#[test]
fn killed_at_random_points_and_resumed_gives_the_same_tables() {
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let sp = train_spec(dir.path(), "fault", 6, 2048);
    let whole = dir.path().join("whole");
    let t0 = std::time::Instant::now();
    ok(&["run", &sp, "--out", s(&whole), "--quiet"]);
    // Kill delays are drawn against the expected length of what is left to run (the whole run's
    // time × the share of cells not yet logged): the first eight rounds inside it, later ones
    // around its end, where the tables and the manifest are written.
    let span = t0.elapsed().as_secs_f64();
    let want = read(&whole.join("summary.csv"));
    assert!(!want.is_empty());
    let out = dir.path().join("killed");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(13);
    let (mut kills, mut rounds) = (0, 0);
    loop {
        rounds += 1;
        assert!(rounds < 200, "never completed");
        let mut args = vec!["run", sp.as_str(), "--quiet"];
        let target = s(&out).to_string();
        if out.join("manifest.json").exists() {
            args.extend(["--resume", target.as_str()]);
        } else {
            args.extend(["--out", target.as_str()]);
        }
        let mut child = Command::new(common::bin())
            .args(&args)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let left = (12 - cells_logged(&out).len().min(12)) as f64 / 12.0;
        let at = if rounds <= 8 {
            rng.random_range(0.05..0.6)
        } else {
            rng.random_range(0.8..1.2)
        };
        let expected = span * left.max(0.15);
        std::thread::sleep(std::time::Duration::from_secs_f64(at * expected));
        let finished_alone = child.try_wait().unwrap().is_some();
        if !finished_alone {
            let _ = child.kill();
            kills += 1;
        }
        let status = child.wait().unwrap();
        let manifest: Option<serde_json::Value> =
            serde_json::from_slice(&read(&out.join("manifest.json"))).ok();
        let complete = manifest.as_ref().is_some_and(|m| !m["finished"].is_null());
        if complete {
            assert_eq!(
                read(&out.join("summary.csv")),
                want,
                "complete means the final tables"
            );
        } else if manifest.is_some() {
            let r = masklab(&[
                "regress",
                s(&out),
                "--baseline",
                s(&whole.join("summary.parquet")),
            ]);
            assert_eq!(
                r.status.code(),
                Some(2),
                "regress on an incomplete run must refuse"
            );
        }
        if finished_alone && status.success() && complete {
            break;
        }
    }
    assert!(
        kills >= 3,
        "only {kills} kills in {rounds} rounds: the sweep is too fast to test"
    );
    let keys: Vec<String> = cells_logged(&out)
        .iter()
        .map(|r| r["cell"].as_str().unwrap().to_string())
        .collect();
    let unique: std::collections::HashSet<_> = keys.iter().collect();
    assert_eq!(keys.len(), 12, "every cell once");
    assert_eq!(unique.len(), 12);
}

/// Issue 21 (R1–R18): hostile inputs found after issue 13. Each test names its item and failed
/// on 10a41c4 (checked with `MASKLAB_BIN` pointing at that build).
mod issue21 {
    use super::*;
    use common::fails;

    /// Seeded N(0,1) f32 values.
    fn gaussian(n: usize, seed: u64) -> Vec<f32> {
        common::gaussian_bytes(n, seed)
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    /// A two-shard HF checkpoint in `dir` (2 tensors of 8×8 per shard), with its index and a
    /// config.json; returns the shard paths.
    fn sharded(dir: &Path) -> Vec<std::path::PathBuf> {
        std::fs::create_dir_all(dir).unwrap();
        let shard = |i: usize| format!("model-0000{i}-of-00002.safetensors");
        let mut map = serde_json::Map::new();
        for i in 1..=2 {
            let names = [format!("l{i}a.weight"), format!("l{i}b.weight")];
            let tensors: Vec<(&str, Vec<usize>, Vec<f32>)> = names
                .iter()
                .enumerate()
                .map(|(j, n)| (n.as_str(), vec![8, 8], gaussian(64, (i * 10 + j) as u64)))
                .collect();
            common::write_f32(&dir.join(shard(i)), &tensors);
            for n in &names {
                map.insert(n.clone(), serde_json::Value::from(shard(i)));
            }
        }
        let index = serde_json::json!({"metadata": {}, "weight_map": map});
        std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
        std::fs::write(dir.join("config.json"), b"{\"model_type\": \"llama\"}").unwrap();
        (1..=2).map(|i| dir.join(shard(i))).collect()
    }

    fn one_file(dir: &Path, name: &str, seed: u64) -> std::path::PathBuf {
        let p = dir.join(name);
        common::write_f32(&p, &[("w", vec![8, 8], gaussian(64, seed))]);
        p
    }

    /// R1: `convert --output` equal to the `--score` or `--act-norms` file replaced it.
    #[test]
    fn r1_convert_never_writes_over_the_score_or_norms_file() {
        let dir = tempfile::tempdir().unwrap();
        let w = one_file(dir.path(), "w.safetensors", 1);
        let scores = one_file(dir.path(), "scores.safetensors", 2);
        let norms = dir.path().join("norms.safetensors");
        common::write_f32(&norms, &[("w", vec![8], vec![1.0; 8])]);
        for (flag, file) in [("--score", &scores), ("--act-norms", &norms)] {
            let before = read(file);
            let e = fails(
                2,
                &[
                    "convert",
                    "--input",
                    s(&w),
                    "--output",
                    s(file),
                    flag,
                    s(file),
                    "--structure",
                    "transposable:2:4",
                ],
            );
            assert!(e.contains("never writes over an input"), "{flag}: {e}");
            assert_eq!(read(file), before, "{flag}: the file is unchanged");
        }
    }

    /// R2: `solve --input INDEX --output SHARD` turned the shard into u8 masks; the same
    /// with a score index.
    #[test]
    fn r2_solve_never_writes_over_a_shard_an_index_names() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = dir.path().join("ckpt");
        let shards = sharded(&ckpt);
        let index = ckpt.join("model.safetensors.index.json");
        let before = read(&shards[1]);
        let e = fails(
            2,
            &[
                "solve",
                "--solver",
                "exact",
                "--input",
                s(&index),
                "--output",
                s(&shards[1]),
                "--pattern",
                "2:4",
                "--quiet",
            ],
        );
        assert!(e.contains("never writes over an input"), "{e}");
        assert_eq!(read(&shards[1]), before);
        let w = one_file(dir.path(), "w.safetensors", 3);
        let e = fails(
            2,
            &[
                "solve",
                "--solver",
                "exact",
                "--input",
                s(&w),
                "--score",
                s(&index),
                "--output",
                s(&shards[0]),
                "--pattern",
                "2:4",
                "--quiet",
            ],
        );
        assert!(e.contains("never writes over an input"), "{e}");
    }

    /// R3: `run --out DIR` over a directory holding the user's own files overwrote them.
    #[test]
    fn r3_a_run_refuses_a_non_empty_directory_that_is_not_a_run() {
        let dir = tempfile::tempdir().unwrap();
        let sp = spec(
            dir.path(),
            "d",
            "diversity",
            "structure = [\"nm:2:4\"]\nsize = [\"8x8\"]",
            "",
        );
        let out = dir.path().join("mine");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("summary.md"), b"my notes").unwrap();
        let e = fails(2, &["run", &sp, "--out", s(&out), "--quiet"]);
        assert!(e.contains("not empty") && e.contains("summary.md"), "{e}");
        assert_eq!(read(&out.join("summary.md")), b"my notes");
        assert!(!out.join(".lock").exists(), "nothing written into it");
    }

    /// R4: a convert that fails partway (a NaN in shard 2) left shard 1 beside the old output's
    /// shard 2 and index; a kill did the same. The old output must stay whole.
    #[test]
    fn r4_a_failed_sharded_convert_leaves_the_previous_output_whole() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = dir.path().join("ckpt");
        let shards = sharded(&ckpt);
        // The unpruned weights in another format must not be copied beside the pruned ones.
        std::fs::write(ckpt.join("pytorch_model.bin"), b"unpruned").unwrap();
        let out = dir.path().join("out");
        let convert = |pattern: &str| {
            masklab(&[
                "convert",
                "--input",
                s(&ckpt),
                "--output",
                s(&out),
                "--structure",
                &format!("nm:{pattern}"),
                "--quiet",
            ])
        };
        assert!(convert("2:4").status.success());
        let snapshot = |d: &Path| -> Vec<(String, Vec<u8>)> {
            let mut v: Vec<_> = std::fs::read_dir(d)
                .unwrap()
                .flatten()
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        read(&e.path()),
                    )
                })
                .collect();
            v.sort();
            v
        };
        let first = snapshot(&out);
        assert!(
            first.iter().any(|(n, _)| n == "config.json"),
            "R17: config.json copied"
        );
        assert!(
            !first.iter().any(|(n, _)| n == "pytorch_model.bin"),
            "no unpruned weights"
        );
        // Shard 2 gets a NaN: the second conversion fails after writing shard 1.
        let mut bad = gaussian(64, 20);
        bad[5] = f32::NAN;
        common::write_f32(
            &shards[1],
            &[
                ("l2a.weight", vec![8, 8], bad),
                ("l2b.weight", vec![8, 8], gaussian(64, 21)),
            ],
        );
        let r = convert("1:4");
        assert_eq!(
            r.status.code(),
            Some(2),
            "{}",
            String::from_utf8_lossy(&r.stderr)
        );
        assert_eq!(snapshot(&out), first, "the previous output, whole");
        let stray: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(stray.is_empty(), "no staging left: {stray:?}");
    }

    /// R4 (kill): SIGKILL at random points of a sharded convert into an existing output leaves
    /// either the previous complete conversion or the new complete one, never a mix; and
    /// `solve` reads whatever is there as a complete checkpoint.
    #[test]
    fn r4_convert_killed_at_random_points_leaves_old_or_new_never_a_mix() {
        use rand::{Rng, SeedableRng};
        let dir = tempfile::tempdir().unwrap();
        let ckpt = dir.path().join("ckpt");
        // Larger shards so a conversion takes long enough to be killed inside it.
        std::fs::create_dir_all(&ckpt).unwrap();
        let shard = |i: usize| format!("model-0000{i}-of-00003.safetensors");
        let mut map = serde_json::Map::new();
        for i in 1..=3 {
            let name = format!("l{i}.weight");
            common::write_f32(
                &ckpt.join(shard(i)),
                &[(name.as_str(), vec![512, 512], gaussian(512 * 512, i as u64))],
            );
            map.insert(name, serde_json::Value::from(shard(i)));
        }
        std::fs::write(
            ckpt.join("model.safetensors.index.json"),
            serde_json::json!({"weight_map": map}).to_string(),
        )
        .unwrap();
        let out = dir.path().join("out");
        let args = |pattern: &'static str| -> Vec<String> {
            [
                "convert",
                "--input",
                s(&ckpt),
                "--output",
                s(&out),
                "--structure",
                &format!("transposable:{pattern}"),
                "--solver",
                "exact",
                "--quiet",
            ]
            .iter()
            .map(|x| x.to_string())
            .collect()
        };
        let t0 = std::time::Instant::now();
        assert!(
            Command::new(common::bin())
                .args(args("2:4"))
                .status()
                .unwrap()
                .success()
        );
        let span = t0.elapsed().as_secs_f64();
        let digest = |d: &Path| -> Vec<(String, Vec<u8>)> {
            let mut v: Vec<_> = std::fs::read_dir(d)
                .map(|r| {
                    r.flatten()
                        .map(|e| {
                            (
                                e.file_name().to_string_lossy().into_owned(),
                                read(&e.path()),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        };
        let old = digest(&out);
        let new_dir = dir.path().join("new");
        let mut a = args("4:8");
        a[4] = s(&new_dir).to_string();
        assert!(
            Command::new(common::bin())
                .args(&a)
                .status()
                .unwrap()
                .success()
        );
        let new = digest(&new_dir);
        assert_ne!(old, new);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(21);
        let mut kills = 0;
        for _ in 0..12 {
            let mut child = Command::new(common::bin())
                .args(args("4:8"))
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(std::time::Duration::from_secs_f64(
                rng.random_range(0.0..1.1) * span,
            ));
            if child.try_wait().unwrap().is_none() {
                let _ = child.kill();
                kills += 1;
            }
            let _ = child.wait();
            let now = digest(&out);
            assert!(
                now == old || now == new,
                "a mix of old and new files: {:?}",
                now.iter().map(|x| &x.0).collect::<Vec<_>>()
            );
            // Put the old output back for the next round.
            if now == new {
                let _ = std::fs::remove_dir_all(&out);
                std::fs::create_dir(&out).unwrap();
                for (n, bytes) in &old {
                    std::fs::write(out.join(n), bytes).unwrap();
                }
            }
        }
        assert!(
            kills >= 3,
            "only {kills} kills: the conversion is too fast to test"
        );
    }

    /// R5: an external solver whose masks are all infeasible read `kept_gap 0.0` and exit 0.
    #[test]
    fn r5_all_infeasible_masks_are_the_worst_gap_and_fail_the_solve() {
        let dir = tempfile::tempdir().unwrap();
        let w = one_file(dir.path(), "w.safetensors", 5);
        // Writes an all-ones [4, 4, 4] uint8 mask: every row keeps 4 of 4, infeasible for 2:4.
        let script = dir.path().join("ones.py");
        std::fs::write(
            &script,
            "import sys\nh = \"{'descr': '|u1', 'fortran_order': False, 'shape': (4, 4, 4), }\"\nh += ' ' * (118 - len(h)) + '\\n'\nopen(sys.argv[2], 'wb').write(b'\\x93NUMPY\\x01\\x00' + len(h).to_bytes(2, 'little') + h.encode() + b'\\x01' * 64)\n",
        )
        .unwrap();
        let cmd = format!("python3 {}", s(&script));
        let out = masklab(&[
            "solve",
            "--solver",
            "ones",
            "--external",
            &cmd,
            "--pattern",
            "2:4",
            "--input",
            s(&w),
            "--compare-exact",
            "--json",
            "--quiet",
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
        assert_eq!(r["infeasible_blocks"], 4);
        assert_eq!(r["kept_gap"], 1.0, "{r}");
        assert!(r["optimum"].as_f64().unwrap() > 0.0, "{r}");
    }

    /// R8: a row edited into cells.jsonl was trusted by merge and resume.
    #[test]
    fn r8_rows_not_in_the_plan_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sp = spec(
            dir.path(),
            "d",
            "diversity",
            "structure = [\"nm:2:4\", \"nm:1:2\"]\nsize = [\"8x8\"]",
            "",
        );
        let run = dir.path().join("run");
        ok(&["run", &sp, "--out", s(&run), "--quiet"]);
        let log = run.join("cells.jsonl");
        let mut text = String::from_utf8(read(&log)).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        let mut forged = first.clone();
        forged["structure"] = "zzz".into();
        forged["cell"] = "structure=zzz size=8x8 seed=0".into();
        forged["index"] = 9.into();
        text += &(forged.to_string() + "\n");
        std::fs::write(&log, text).unwrap();
        let e = fails(2, &["run", &sp, "--resume", s(&run), "--quiet"]);
        assert!(e.contains("structure=zzz"), "{e}");
        let e = fails(2, &["merge", s(&run), "--out", s(&dir.path().join("m"))]);
        assert!(e.contains("structure=zzz"), "{e}");
    }

    /// R9: `history --append` of a run whose summary belongs to another table added null axes.
    #[test]
    fn r9_history_refuses_a_summary_of_another_table() {
        let dir = tempfile::tempdir().unwrap();
        let a = spec(
            dir.path(),
            "ta",
            "diversity",
            "structure = [\"nm:2:4\"]\nsize = [\"8x8\"]",
            "",
        );
        let b = spec(
            dir.path(),
            "tb",
            "solver",
            "pattern = [\"2:4\"]\nsolver = [\"exact\"]\nsource = [\"gaussian:8x8\"]",
            "",
        );
        let (ra, rb) = (dir.path().join("ra"), dir.path().join("rb"));
        ok(&[
            "run",
            &a,
            "--out",
            s(&ra),
            "--quiet",
            "--profile",
            "default",
        ]);
        ok(&[
            "run",
            &b,
            "--out",
            s(&rb),
            "--quiet",
            "--profile",
            "default",
        ]);
        std::fs::copy(rb.join("summary.parquet"), ra.join("summary.parquet")).unwrap();
        let hist = dir.path().join("h.parquet");
        let e = fails(
            2,
            &[
                "history",
                "ta",
                "--dir",
                s(dir.path()),
                "--profile",
                "default",
                "--append",
                s(&ra),
                "--file",
                s(&hist),
            ],
        );
        assert!(e.contains("axis `structure`"), "{e}");
        assert!(!hist.exists());
    }

    /// R10: integer and u8 HDF5 datasets were solved as f32 weights.
    #[cfg(feature = "hdf5")]
    #[test]
    fn r10_integer_hdf5_datasets_are_skipped_naming_their_type() {
        let dir = tempfile::tempdir().unwrap();
        let h5 = dir.path().join("w.h5");
        {
            use hdf5_metno as hdf5;
            let f = hdf5::File::create(&h5).unwrap();
            let ints: Vec<i32> = (0..64).collect();
            f.new_dataset::<i32>()
                .shape([8, 8])
                .create("ints")
                .unwrap()
                .write_raw(&ints)
                .unwrap();
            let flags = vec![1u8; 64];
            f.new_dataset::<u8>()
                .shape([8, 8])
                .create("flags")
                .unwrap()
                .write_raw(&flags)
                .unwrap();
            let w = vec![1f32; 64];
            f.new_dataset::<f32>()
                .shape([8, 8])
                .create("w")
                .unwrap()
                .write_raw(&w)
                .unwrap();
        }
        let out = ok(&[
            "solve",
            "--solver",
            "exact",
            "--pattern",
            "2:4",
            "--input",
            s(&h5),
            "--json",
            "--quiet",
        ]);
        let names: Vec<String> = out
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["tensor"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(names, vec!["w".to_string()]);
        let e = String::from_utf8_lossy(
            &masklab(&[
                "solve",
                "--solver",
                "exact",
                "--pattern",
                "2:4",
                "--input",
                s(&h5),
                "--quiet",
            ])
            .stderr,
        )
        .into_owned();
        assert!(e.contains("`ints`") && e.contains("int32"), "{e}");
    }

    /// R12: a grid of 10⁹ cells aborted on a 40 GB allocation.
    #[test]
    fn r12_a_huge_grid_is_refused_with_its_count() {
        let dir = tempfile::tempdir().unwrap();
        let values = |n: usize| {
            (0..n)
                .map(|i| format!("\"{i}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let sp = spec(
            dir.path(),
            "huge",
            "diversity",
            &format!("structure = [{}]\nsize = [{}]", values(1000), values(10000)),
            "",
        );
        let e = fails(
            2,
            &["run", &sp, "--out", s(&dir.path().join("r")), "--quiet"],
        );
        assert!(e.contains("20000000 cells"), "{e}");
    }

    /// R13: `iterations=1e12` hung, `iterations=2.9` became 2, `draws=-3` became 1.
    #[test]
    fn r13_solver_options_are_checked_for_type_and_range() {
        let dir = tempfile::tempdir().unwrap();
        let w = one_file(dir.path(), "w.safetensors", 13);
        for (solver, option) in [
            ("tsenor", "iterations=1e12"),
            ("tsenor", "iterations=2.9"),
            ("tsenor", "iterations=-5"),
            ("tsenor", "iterations=nan"),
            ("max-random", "draws=1e15"),
            ("max-random", "draws=-3"),
        ] {
            let e = fails(
                2,
                &[
                    "solve",
                    "--solver",
                    solver,
                    "--pattern",
                    "2:4",
                    "--input",
                    s(&w),
                    "--option",
                    option,
                    "--quiet",
                ],
            );
            let name = option.split('=').next().unwrap();
            assert!(e.contains(&format!("invalid {name}")), "{option}: {e}");
        }
    }

    /// R14: a spec name with `/` or `..` made run directories outside results/runs.
    #[test]
    fn r14_names_that_leave_results_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["../escape", "a/b", "/abs", ".."] {
            let path = dir.path().join("x.toml");
            std::fs::write(
                &path,
                format!("name = \"{name}\"\ntitle = \"t\"\nregenerates = \"r\"\nkind = \"diversity\"\nseeds = [0]\n[grid]\nstructure = [\"nm:2:4\"]\nsize = [\"8x8\"]\n"),
            )
            .unwrap();
            let e = fails(2, &["run", s(&path), "--quiet"]);
            assert!(e.contains("not a usable name"), "{name}: {e}");
        }
    }

    /// R15: a figure naming a column the table lacks lost the whole run (never finished, and
    /// the fixed spec could not resume it). It is now refused when the plan is made, before any
    /// cell runs; and a figure that fails after the cells (here forced by editing the plan)
    /// leaves a finished run with its tables.
    #[test]
    fn r15_a_bad_figure_is_refused_at_planning_and_never_costs_a_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.toml");
        let text = |y: &str| {
            format!(
                "name = \"f\"\ntitle = \"t\"\nregenerates = \"r\"\nkind = \"diversity\"\nseeds = [0]\n[grid]\nstructure = [\"nm:2:4\"]\nsize = [\"8x8\"]\n[[figures]]\nfile = \"x\"\ntitle = \"x\"\nkind = \"dots\"\nx = \"structure\"\ny = [\"{y}\"]\nx_label = \"a\"\ny_label = \"b\"\n"
            )
        };
        std::fs::write(&path, text("no_such_column")).unwrap();
        let out = dir.path().join("run");
        let e = fails(2, &["run", s(&path), "--out", s(&out), "--quiet"]);
        assert!(
            e.contains("no_such_column") && e.contains("[[figures]]"),
            "{e}"
        );
        assert!(!out.exists(), "nothing ran");
        // A post-processing failure after the cells: the run is still complete.
        std::fs::write(&path, text("log10")).unwrap();
        let spec = masklab::experiment::spec::Spec::load(&path, None).unwrap();
        let mut plan = masklab::experiment::plan::Plan::new(spec).unwrap();
        plan.spec.figures[0].y = vec!["no_such_column".into()];
        let opts = masklab::experiment::runner::RunOptions {
            out: Some(out.clone()),
            ..Default::default()
        };
        let o = masklab::experiment::runner::run(&plan, &opts).unwrap();
        assert!(o.complete);
        let m: serde_json::Value =
            serde_json::from_slice(&read(&out.join("manifest.json"))).unwrap();
        assert!(!m["finished"].is_null(), "the run is complete");
        assert!(out.join("summary.parquet").exists() && out.join("summary.md").exists());
    }

    /// R17: an index naming a tensor no shard holds, or the wrong shard, was accepted.
    #[test]
    fn r17_an_index_that_disagrees_with_the_shards_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = dir.path().join("ckpt");
        sharded(&ckpt);
        let index = ckpt.join("model.safetensors.index.json");
        let good: serde_json::Value = serde_json::from_slice(&read(&index)).unwrap();
        let mut wrong = good.clone();
        wrong["weight_map"]["l1a.weight"] = "model-00002-of-00002.safetensors".into();
        let mut ghost = good.clone();
        ghost["weight_map"]["ghost.weight"] = "model-00001-of-00002.safetensors".into();
        for (bad, want) in [(wrong, "l1a.weight"), (ghost, "ghost.weight")] {
            std::fs::write(&index, bad.to_string()).unwrap();
            let e = fails(
                2,
                &[
                    "solve",
                    "--solver",
                    "exact",
                    "--pattern",
                    "2:4",
                    "--input",
                    s(&ckpt),
                    "--quiet",
                ],
            );
            assert!(e.contains(want) && e.contains("index"), "{e}");
        }
    }

    /// R18: messages that named the wrong thing or came too late.
    #[test]
    fn r18_messages_name_the_tensor_field_and_file() {
        let dir = tempfile::tempdir().unwrap();
        // W² overflows: the tensor is named.
        let big = dir.path().join("big.safetensors");
        common::write_f32(&big, &[("huge", vec![4, 4], vec![1e20; 16])]);
        let e = fails(
            2,
            &[
                "solve",
                "--solver",
                "exact",
                "--pattern",
                "2:4",
                "--input",
                s(&big),
                "--score",
                "square",
                "--quiet",
            ],
        );
        assert!(e.contains("`huge`") && e.contains("overflow"), "{e}");
        // weight decay is named, not lr.
        let e = fails(
            2,
            &[
                "train",
                "--dataset",
                "synthetic:256",
                "--weight-decay",
                "inf",
                "--epochs",
                "1",
            ],
        );
        assert!(e.contains("weight-decay"), "{e}");
        // A single-file convert into an existing directory fails before solving.
        let w = one_file(dir.path(), "w.safetensors", 18);
        let outdir = dir.path().join("outdir");
        std::fs::create_dir(&outdir).unwrap();
        let e = fails(
            2,
            &[
                "convert",
                "--input",
                s(&w),
                "--output",
                s(&outdir),
                "--structure",
                "transposable:2:4",
            ],
        );
        assert!(e.contains("is a directory"), "{e}");
        // Duplicate seeds and axis values; bad tolerances.
        for (grid, extra, want) in [
            (
                "structure = [\"nm:2:4\"]\nsize = [\"8x8\", \"8x8\"]",
                "",
                "given twice",
            ),
            (
                "structure = [\"nm:2:4\"]\nsize = [\"8x8\"]",
                "[tolerance]\nlog10 = { abs = nan }\n",
                "not a tolerance",
            ),
            (
                "structure = [\"nm:2:4\"]\nsize = [\"8x8\"]",
                "[tolerance]\nlog10 = { rel = -1 }\n",
                "not a tolerance",
            ),
            (
                "structure = [\"nm:2:4\"]\nsize = [\"8x8\"]",
                "[tolerance]\nlog10 = { abs = inf }\n",
                "not a tolerance",
            ),
        ] {
            let path = dir.path().join("dup.toml");
            std::fs::write(
                &path,
                format!("name = \"dup\"\ntitle = \"t\"\nregenerates = \"r\"\nkind = \"diversity\"\nseeds = [0]\n[grid]\n{grid}\n{extra}"),
            )
            .unwrap();
            let e = fails(
                2,
                &[
                    "run",
                    s(&path),
                    "--out",
                    s(&dir.path().join("never")),
                    "--quiet",
                ],
            );
            assert!(e.contains(want), "{want}: {e}");
        }
        let path = dir.path().join("seeds.toml");
        std::fs::write(
            &path,
            "name = \"seeds\"\ntitle = \"t\"\nregenerates = \"r\"\nkind = \"diversity\"\nseeds = [0, 0, 1]\n[grid]\nstructure = [\"nm:2:4\"]\nsize = [\"8x8\"]\n",
        )
        .unwrap();
        let e = fails(
            2,
            &[
                "run",
                s(&path),
                "--out",
                s(&dir.path().join("never")),
                "--quiet",
            ],
        );
        assert!(e.contains("seeds: 0 is given twice"), "{e}");
        // An empty shard is refused, not "complete" without a summary.
        let sp = spec(
            dir.path(),
            "two",
            "diversity",
            "structure = [\"nm:2:4\"]\nsize = [\"8x8\"]",
            "",
        );
        let e = fails(
            2,
            &[
                "run",
                &sp,
                "--shard",
                "3/4",
                "--out",
                s(&dir.path().join("s3")),
                "--quiet",
            ],
        );
        assert!(e.contains("holds no cell"), "{e}");
        // HDF5 masks for tensors `a` and `a/b`: refused before solving, naming the output.
        let clash = dir.path().join("clash.safetensors");
        common::write_f32(
            &clash,
            &[
                ("a", vec![4, 4], vec![1.0; 16]),
                ("a/b", vec![4, 4], vec![1.0; 16]),
            ],
        );
        let h5 = dir.path().join("m.h5");
        let e = fails(
            2,
            &[
                "solve",
                "--solver",
                "exact",
                "--pattern",
                "2:4",
                "--input",
                s(&clash),
                "--output",
                s(&h5),
                "--quiet",
            ],
        );
        assert!(
            e.contains("m.h5:") && e.contains("`a/b`") && !e.contains(".m.h5."),
            "{e}"
        );
        // A directory named like a safetensors file, inside a checkpoint directory: not a shard.
        let ck = dir.path().join("ck");
        std::fs::create_dir(&ck).unwrap();
        one_file(&ck, "a.safetensors", 4);
        std::fs::create_dir(ck.join("x.safetensors")).unwrap();
        let out = ok(&[
            "solve",
            "--solver",
            "exact",
            "--pattern",
            "2:4",
            "--input",
            s(&ck),
            "--json",
            "--quiet",
        ]);
        assert_eq!(out.lines().count(), 1, "{out}");
    }
}
