//! Bad input, faults and concurrent runs (issue 13), grouped by command. Each test states the
//! failure it guards (F1–F11 of the issue); each failed on the code before the fix (checked by
//! pointing `MASKLAB_BIN` at that build). Exit codes: 2 bad input, 1 a failed check, 0 done.

mod common;

use common::{fails, masklab, ok, s, write_f32};
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
            &[
                "diversity",
                "nm",
                "--pattern",
                "2:4",
                "--size",
                "4294967296x4294967296",
            ],
        );
        assert!(e.contains("18446744073709551616 elements"), "{e}");
    }

    /// F10: `0:4` was accepted (and `N > M`, `M = 0` must stay refused).
    #[test]
    fn patterns_keep_at_least_one_of_at_least_one() {
        for p in ["0:4", "5:4", "1:0", "0:0"] {
            let e = fails(2, &["diversity", "nm", "--pattern", p, "--size", "8x8"]);
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
