//! `solve` and `solvers`.

use super::*;

#[test]
fn solve_reports_json_writes_masks_and_skips_what_does_not_tile() {
    use masklab::io::{NamedTensor, read_tensors, write_tensors};
    use masklab::mask::{Mask, Pattern};
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("w.safetensors");
    write_tensors(
        &input,
        &[
            NamedTensor {
                name: "layer.weight".into(),
                shape: vec![16, 32],
                data: gaussian(512, 1),
            },
            NamedTensor {
                name: "layer.bias".into(),
                shape: vec![16],
                data: gaussian(16, 2),
            },
            NamedTensor {
                name: "odd.weight".into(),
                shape: vec![6, 8],
                data: gaussian(48, 3),
            },
        ],
    )
    .unwrap();
    let masks = tmp.path().join("m.h5");
    let out = masklab(&[
        "solve",
        "--solver",
        "tsenor",
        "--pattern",
        "4:8",
        "--input",
        input.to_str().unwrap(),
        "--output",
        masks.to_str().unwrap(),
        "--compare-exact",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("skipped `layer.bias`") && stderr.contains("skipped `odd.weight`"),
        "{stderr}"
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    let r = &lines[0];
    assert_eq!(
        (
            r["tensor"].as_str(),
            r["solver"].as_str(),
            r["pattern"].as_str()
        ),
        (Some("layer.weight"), Some("tsenor"), Some("4:8"))
    );
    assert_eq!(r["shape"], serde_json::json!([16, 32]));
    assert_eq!(r["infeasible_blocks"], 0);
    let (kept, opt, gap) = (
        r["kept"].as_f64().unwrap(),
        r["optimum"].as_f64().unwrap(),
        r["kept_gap"].as_f64().unwrap(),
    );
    assert!(
        kept <= opt * (1.0 + 1e-9)
            && (gap - (opt - kept) / opt).abs() < 1e-9
            && r["pruned_excess"].is_number()
    );
    let written = read_tensors(masks.to_str().unwrap()).unwrap();
    assert_eq!(written.len(), 1);
    let mask = Mask::new(16, 32, written[0].data.iter().map(|&v| v as u8).collect()).unwrap();
    assert!(
        mask.is_transposable_nm(Pattern::new(4, 8).unwrap())
            .unwrap()
    );
    // --strict refuses the 1-D tensor; a tensor glob selects.
    let strict = masklab(&[
        "solve",
        "--solver",
        "exact",
        "--pattern",
        "4:8",
        "--input",
        input.to_str().unwrap(),
        "--strict",
    ]);
    assert_eq!(strict.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&strict.stderr).contains("--strict"));
    let glob = format!("{}#layer.*", input.display());
    let g = ok(&[
        "solve",
        "--solver",
        "exhaustive",
        "--pattern",
        "2:4",
        "--input",
        &glob,
        "--json",
    ]);
    assert_eq!(g.lines().count(), 1);
    let bad = masklab(&[
        "solve",
        "--solver",
        "exhaustive",
        "--pattern",
        "4:8",
        "--input",
        &glob,
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("M = 4"));
}

#[test]
fn solvers_lists_the_registry() {
    let out = ok(&["solvers"]);
    for name in [
        "exact",
        "lp",
        "two-approx",
        "greedy",
        "tsenor",
        "exhaustive",
        "bi-nm",
        "max-random",
    ] {
        assert!(out.contains(name), "{name} missing: {out}");
    }
}

/// A sharded bf16/f16 checkpoint (HF layout) is solved tensor by tensor: masks for the tensors
/// that tile, each transposable and optimal on the values as stored; 1-D and non-tiling tensors
/// listed once with their reason; the index file and the directory give the same masks.
#[test]
fn a_sharded_half_precision_checkpoint_is_solved_tensor_by_tensor() {
    use common::{bf16_bytes, f16_bytes, write_raw_safetensors};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ckpt");
    std::fs::create_dir(&dir).unwrap();
    let vals = |n: usize, seed: u64| -> Vec<f32> { gaussian(n, seed) };
    let (a, b) = (vals(64, 1), vals(128, 2));
    write_raw_safetensors(
        &dir.join("model-00001-of-00002.safetensors"),
        &[
            ("a.weight", "BF16", vec![8, 8], bf16_bytes(&a)),
            ("a.bias", "BF16", vec![8], bf16_bytes(&vals(8, 3))),
        ],
    );
    write_raw_safetensors(
        &dir.join("model-00002-of-00002.safetensors"),
        &[
            ("b.weight", "F16", vec![16, 8], f16_bytes(&b)),
            ("odd.weight", "BF16", vec![6, 8], bf16_bytes(&vals(48, 4))),
        ],
    );
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": {
        "a.weight": "model-00001-of-00002.safetensors", "a.bias": "model-00001-of-00002.safetensors",
        "b.weight": "model-00002-of-00002.safetensors", "odd.weight": "model-00002-of-00002.safetensors"}});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let masks = tmp.path().join("m.safetensors");
    let solve = |input: &Path, out: &Path| {
        masklab(&[
            "solve",
            "--solver",
            "greedy",
            "--pattern",
            "4:8",
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--compare-exact",
            "--json",
        ])
    };
    let out = solve(&dir, &masks);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("skipped `a.bias` [8]: 1-D, not 2-D"),
        "{stderr}"
    );
    assert!(
        stderr.contains("skipped `odd.weight` [6, 8]: does not tile into 8x8 blocks"),
        "{stderr}"
    );
    let rows: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = rows.iter().map(|r| r["tensor"].as_str().unwrap()).collect();
    assert_eq!(names, ["a.weight", "b.weight"]);
    assert_eq!(rows[0]["dtype"], "bf16");
    assert_eq!(rows[1]["dtype"], "f16");
    let written = masklab::io::read_tensors(masks.to_str().unwrap()).unwrap();
    assert_eq!(written.len(), 2);
    for (row, (t, stored)) in rows.iter().zip(
        written.iter().zip([
            a.iter()
                .map(|v| half::bf16::from_f32(*v).to_f32())
                .collect::<Vec<_>>(),
            b.iter()
                .map(|v| half::f16::from_f32(*v).to_f32())
                .collect::<Vec<_>>(),
        ]),
    ) {
        let keep: Vec<u8> = t.data.iter().map(|v| *v as u8).collect();
        let m = masklab::mask::Mask::new(t.shape[0], t.shape[1], keep).unwrap();
        assert!(
            m.is_transposable_nm("4:8".parse().unwrap()).unwrap(),
            "{}",
            t.name
        );
        let kept: f64 = stored
            .iter()
            .zip(m.keep())
            .filter(|(_, k)| **k == 1)
            .map(|(v, _)| v.abs() as f64)
            .sum();
        assert!(
            (kept - row["kept"].as_f64().unwrap()).abs() < 1e-4,
            "{} kept {kept} vs {}",
            t.name,
            row["kept"]
        );
        assert!(row["optimum"].as_f64().unwrap() >= kept - 1e-4);
    }
    let again = tmp.path().join("m2.safetensors");
    assert!(
        solve(&dir.join("model.safetensors.index.json"), &again)
            .status
            .success()
    );
    assert_eq!(
        std::fs::read(&masks).unwrap(),
        std::fs::read(&again).unwrap()
    );
    // Selection by name: --exclude, and FILE#GLOB as an include.
    let only_a = ok(&[
        "solve",
        "--solver",
        "exact",
        "--pattern",
        "4:8",
        "--input",
        dir.to_str().unwrap(),
        "--exclude",
        "b.*",
        "--json",
    ]);
    assert_eq!(only_a.lines().count(), 1);
    let glob = format!("{}#b.*", dir.display());
    let only_b = ok(&[
        "solve",
        "--solver",
        "exact",
        "--pattern",
        "4:8",
        "--input",
        &glob,
        "--json",
    ]);
    assert!(
        only_b.contains("b.weight") && !only_b.contains("a.weight"),
        "{only_b}"
    );
}

/// `DIR/w.safetensors` with one Gaussian tensor `w: [rows, cols]`.
fn one_gaussian_tensor(dir: &Path, rows: usize, cols: usize) -> std::path::PathBuf {
    let input = dir.join("w.safetensors");
    masklab::io::write_tensors(
        &input,
        &[masklab::io::NamedTensor {
            name: "w".into(),
            shape: vec![rows, cols],
            data: gaussian(rows * cols, 5),
        }],
    )
    .unwrap();
    input
}

/// `DIR/NAME.toml`: a one-seed `solver` spec called NAME with `body` (its grid and the rest).
fn solver_spec(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    let spec = dir.join(format!("{name}.toml"));
    let head = format!(
        "name = \"{name}\"\ntitle = \"{name}\"\nregenerates = \"-\"\nkind = \"solver\"\nseeds = [0]\n"
    );
    std::fs::write(&spec, head + body).unwrap();
    spec
}

/// Whether `python3` with numpy is here (the external-solver example needs both).
fn python_with_numpy() -> bool {
    Command::new("python3")
        .args(["-c", "import numpy"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn the_numpy_example_joins_as_an_external_solver_in_solve_and_in_a_spec() {
    if !python_with_numpy() {
        eprintln!("skipped: python3 with numpy is not installed (the example solver needs it)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let input = one_gaussian_tensor(tmp.path(), 32, 64);
    let out = ok(&[
        "solve",
        "--solver",
        "random-py",
        "--external",
        "python3 examples/solvers/random_feasible.py",
        "--pattern",
        "2:8",
        "--input",
        input.to_str().unwrap(),
        "--compare-exact",
        "--json",
        "--quiet",
    ]);
    let r: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(r["solver"], "random-py");
    assert_eq!(r["infeasible_blocks"], 0);
    assert_eq!(r["blocks"], 32);
    // Feasible but blind to the scores: well below the optimum.
    assert!(r["kept_gap"].as_f64().unwrap() > 0.05, "{r}");
    // In a spec: declared once, compared with a built-in on the same blocks, its own time apart.
    let spec = solver_spec(
        tmp.path(),
        "ext",
        r#"[grid]
source = ["gaussian:64x64"]
pattern = ["2:4"]
solver = ["greedy", "random-py"]
[solvers.external.random-py]
command = ["python3", "examples/solvers/random_feasible.py"]
timeout_seconds = 120
"#,
    );
    let run = tmp.path().join("r");
    ok(&[
        "run",
        spec.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    let rows = summary_rows(&run);
    let row = |s: &str| rows.iter().find(|r| r["solver"] == s).unwrap().clone();
    let (ext, greedy) = (row("random-py"), row("greedy"));
    assert_eq!(ext["infeasible_blocks"].as_f64().unwrap(), 0.0);
    assert!(ext["kept_gap"].as_f64().unwrap() > greedy["kept_gap"].as_f64().unwrap());
    let own = ext["program_seconds"].as_f64().unwrap();
    assert!(
        own > 0.0 && own <= ext["seconds"].as_f64().unwrap(),
        "{ext:?}"
    );
}

#[test]
fn an_external_program_that_fails_is_named_with_its_error() {
    let tmp = tempfile::tempdir().unwrap();
    let input = one_gaussian_tensor(tmp.path(), 8, 8);
    let err = super::common::fails(
        2,
        &[
            "solve",
            "--solver",
            "broken",
            "--external",
            "sh -c exit",
            "--pattern",
            "2:4",
            "--input",
            input.to_str().unwrap(),
            "--quiet",
        ],
    );
    assert!(
        err.contains("broken") && err.contains("masks file"),
        "{err}"
    );
}

#[test]
fn a_failing_external_solver_fails_its_cells_and_the_sweep_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = solver_spec(
        tmp.path(),
        "bad",
        r#"[grid]
source = ["gaussian:32x32"]
pattern = ["2:4", "4:8"]
solver = ["broken", "greedy"]
[solvers.external.broken]
command = ["sh", "-c", "echo no solution >&2; exit 4"]
"#,
    );
    let run = tmp.path().join("r");
    let err = super::common::fails(
        2,
        &[
            "run",
            spec.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
            "--quiet",
        ],
    );
    assert!(
        err.contains("broken") && err.contains("exit status: 4") && err.contains("no solution"),
        "{err}"
    );
    assert!(
        err.contains("1 more cells failed") && err.contains("--resume"),
        "{err}"
    );
    // Both greedy cells ran and were saved; the run is incomplete, so regress refuses it.
    let log = std::fs::read_to_string(run.join("cells.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 2, "{log}");
    assert!(log.lines().all(|l| l.contains("\"solver\":\"greedy\"")));
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["finished"], Value::Null);
}
