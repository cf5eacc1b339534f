//! `run`, `reproduce`, `regress`, `merge`, `list`: every table's smoke profile end to end.

use super::*;

#[test]
fn table1_smoke_runs_and_summary_parquet_has_the_known_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r");
    run_smoke("table1", out.to_str().unwrap(), &[]);
    let rows = summary_rows(&out);
    assert_eq!(rows.len(), 20); // 10 structures × 2 sizes
    let t24 = find(&rows, "transposable:2:4", "8x8");
    assert_eq!(t24["exact"], "65610000"); // 90^4
    assert!((t24["log10"].as_f64().unwrap() - 4.0 * 90f64.log10()).abs() < 1e-9);
    assert!((t24["closed_form_log10"].as_f64().unwrap() - 4.0 * 144f64.log10()).abs() < 1e-9);
    let t48 = find(&rows, "transposable:4:8", "8x8");
    assert_eq!(t48["exact"], "116963796250");
    assert_eq!(find(&rows, "nm:2:4", "8x8")["exact"], "2821109907456"); // 6^(64/4)
    let t816 = find(&rows, "transposable:8:16", "8x8");
    assert_eq!(t816["log10"], Value::Null);
    assert!(t816["note"].as_str().unwrap().contains("does not tile"));
    // Unstructured keeps more freedom than N:M, N:M more than transposable.
    let log = |s: &str| find(&rows, s, "64x64")["log10"].as_f64().unwrap();
    assert!(log("unstructured:0.5") > log("nm:8:16") && log("nm:8:16") > log("nm:2:4"));
    assert!(
        log("nm:2:4") > log("transposable:2:4")
            && log("transposable:4:8") > log("transposable:2:4")
    );
    for f in [
        "cells.parquet",
        "summary.csv",
        "summary.md",
        "manifest.json",
        "cells.jsonl",
    ] {
        assert!(out.join(f).exists(), "{f} written");
    }
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["profile"], "smoke");
    assert_eq!(manifest["cells_done"], 20);
    assert!(
        manifest["finished"].is_string() && manifest["spec_hash"].as_str().unwrap().len() == 64
    );
    assert!(ok(&["show", out.to_str().unwrap()]).contains("| transposable:4:8 | 8x8 |"));
}

#[test]
fn a_run_draws_its_figures_links_them_and_plot_redraws_them_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r");
    run_smoke("table1", out.to_str().unwrap(), &[]);
    let svg_path = out.join("figures/diversity.svg");
    let svg = std::fs::read_to_string(&svg_path).expect("figure written with the run");
    // One panel per size of the smoke profile, one label per structure in each.
    assert!(svg.contains("size = 8x8") && svg.contains("size = 64x64"));
    let labelled = |text: &str| svg.lines().filter(|l| l.trim() == text).count();
    assert_eq!(labelled("transposable:4:8"), 2);
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("](figures/diversity.svg)"), "{md}");
    std::fs::remove_file(&svg_path).unwrap();
    let said = ok(&["plot", out.to_str().unwrap()]);
    assert!(said.contains("diversity.svg"), "{said}");
    assert_eq!(std::fs::read_to_string(&svg_path).unwrap(), svg);
    // Redrawing does not repeat the link.
    let md2 = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert_eq!(md2, md);
    // table1 carries no published values (none could be sourced): said, nothing written.
    let err = crate::common::fails(2, &["published", out.to_str().unwrap()]);
    assert!(err.contains("carries no [[published]] values"), "{err}");
    assert!(!out.join("published.csv").exists());
}

#[test]
fn history_appends_a_run_once_and_prints_its_trends() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let file = tmp.path().join("h/table1.parquet");
    run_smoke("table1", a.to_str().unwrap(), &[]);
    run_smoke("table1", b.to_str().unwrap(), &[]);
    let history = |extra: &[&str]| {
        let mut args = vec![
            "history",
            "table1",
            "--profile",
            "smoke",
            "--file",
            file.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        ok(&args)
    };
    let said = history(&["--append", a.to_str().unwrap()]);
    assert!(said.contains("added 20 rows"), "{said}");
    assert!(history(&["--append", a.to_str().unwrap()]).contains("is already in"));
    let said = history(&["--append", b.to_str().unwrap()]);
    // Two runs of a deterministic table: every series flat, nothing moved or drifting.
    assert!(said.contains("table1: 2 runs in the history"), "{said}");
    assert!(said.contains(", 0 moved, 0 drifting"), "{said}");
    let rows = table::rows_from_frame(&table::read_parquet(&file).unwrap());
    assert_eq!(rows.len(), 40);
    assert!(
        rows.iter()
            .all(|r| r["profile"] == "smoke" && r["host"].is_string())
    );
    // A run of another table is refused, naming it.
    let err = crate::common::fails(
        2,
        &[
            "history",
            "table2",
            "--profile",
            "smoke",
            "--file",
            file.to_str().unwrap(),
            "--append",
            a.to_str().unwrap(),
        ],
    );
    assert!(err.contains("is a table1 run"), "{err}");
}

#[test]
fn same_spec_and_seed_give_byte_identical_summary_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    run_smoke("table1", a.to_str().unwrap(), &[]);
    run_smoke("table1", b.to_str().unwrap(), &["--jobs", "2"]);
    let (ca, cb) = (
        std::fs::read(a.join("summary.csv")).unwrap(),
        std::fs::read(b.join("summary.csv")).unwrap(),
    );
    assert!(!ca.is_empty());
    assert_eq!(ca, cb);
}

#[test]
fn resumed_run_ends_with_exactly_the_cells_of_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (whole, parts) = (tmp.path().join("whole"), tmp.path().join("parts"));
    run_smoke("table1", whole.to_str().unwrap(), &[]);
    run_smoke("table1", parts.to_str().unwrap(), &["--max-cells", "7"]);
    let partial = std::fs::read_to_string(parts.join("cells.jsonl")).unwrap();
    assert_eq!(partial.lines().count(), 7);
    // A crash mid-write leaves a torn line; resume must drop it and carry on.
    std::fs::write(parts.join("cells.jsonl"), partial + "{\"index\": 99, \"cel").unwrap();
    let out = masklab(&[
        "run",
        "experiments/table1.toml",
        "--resume",
        parts.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("ran 13 cells, 7 already done"));
    let cells = |d: &Path| table::read_parquet(&d.join("cells.parquet")).unwrap();
    let (w, p) = (cells(&whole), cells(&parts));
    assert_eq!(w.height(), 20);
    assert!(w.equals_missing(&p), "cells differ:\n{w}\n{p}");
    assert_eq!(
        std::fs::read(whole.join("summary.csv")).unwrap(),
        std::fs::read(parts.join("summary.csv")).unwrap()
    );
    // Resuming a finished run does nothing.
    let again = masklab(&[
        "run",
        "experiments/table1.toml",
        "--resume",
        parts.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("ran 0 cells, 20 already done"));
}

#[test]
fn shards_merge_into_the_whole_run() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n).to_str().unwrap().to_string();
    run_smoke("table1", d("whole"), &[]);
    run_smoke("table1", d("s0"), &["--shard", "0/2"]);
    run_smoke("table1", d("s1"), &["--shard", "1/2"]);
    assert!(ok(&["merge", &d("s0"), &d("s1"), "--out", &d("m")]).contains("merged 20 cells of 20"));
    let csv = |n: &str| std::fs::read(Path::new(&d(n)).join("summary.csv")).unwrap();
    assert_eq!(csv("whole"), csv("m"));
}

#[test]
fn regress_exits_1_beyond_tolerance_and_0_otherwise() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r");
    let base = tmp.path().join("base.parquet");
    run_smoke("table1", out.to_str().unwrap(), &[]);
    ok(&[
        "regress",
        out.to_str().unwrap(),
        "--baseline",
        base.to_str().unwrap(),
        "--update",
    ]);
    let same = masklab(&[
        "regress",
        out.to_str().unwrap(),
        "--baseline",
        base.to_str().unwrap(),
    ]);
    assert_eq!(
        same.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&same.stdout)
    );
    // Move one log10 by 1e-12 relative (inside rel = 1e-9), then by 1e-3 (outside).
    for (factor, code) in [(1.0 + 1e-12, 0), (1.001, 1)] {
        let mut df = table::read_parquet(&base).unwrap();
        let moved: Vec<Option<f64>> = df
            .column("log10")
            .unwrap()
            .f64()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, v)| if i == 3 { v.map(|x| x * factor) } else { v })
            .collect();
        df.with_column(Column::new("log10".into(), moved)).unwrap();
        let edited = tmp.path().join(format!("edited-{code}.parquet"));
        table::write_parquet(&mut df, &edited).unwrap();
        let r = masklab(&[
            "regress",
            out.to_str().unwrap(),
            "--baseline",
            edited.to_str().unwrap(),
        ]);
        let stdout = String::from_utf8_lossy(&r.stdout);
        assert_eq!(r.status.code(), Some(code), "{stdout}");
        if code == 1 {
            assert!(
                stdout.contains("REGRESSED") && stdout.contains("log10"),
                "{stdout}"
            );
        }
    }
}

#[test]
fn committed_baseline_matches_a_fresh_smoke_run() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r");
    run_smoke("table1", out.to_str().unwrap(), &[]);
    assert_matches_baseline(&out);
}

#[test]
fn list_shows_the_catalogue() {
    let out = ok(&["list"]);
    assert!(
        out.contains("table1")
            && out.contains("Mask diversity")
            && out.contains("smoke,default,nightly,full"),
        "{out}"
    );
}

#[test]
fn table2_smoke_runs_and_matches_its_baseline() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r");
    run_smoke("table2", out.to_str().unwrap(), &[]);
    let rows = summary_rows(&out);
    // 4 patterns × 7 solvers (exhaustive at 2:4 only, so 3 × 7 + 8) × 2 sources.
    assert_eq!(rows.len(), 2 * (3 * 7 + 8));
    for r in &rows {
        assert_eq!(r["infeasible_blocks"], 0.0, "{r:?}");
        let gap = r["kept_gap"].as_f64().unwrap();
        match r["solver"].as_str().unwrap() {
            "exact" | "lp" | "exhaustive" => assert!(gap.abs() < 1e-6, "{r:?}"),
            _ => assert!((-1e-9..0.5).contains(&gap), "{r:?}"),
        }
        assert!(
            r["seconds"].as_f64().unwrap() >= 0.0 && r["blocks_per_second"].as_f64().unwrap() > 0.0
        );
    }
    assert_matches_baseline(&out);
    // The spec's published values sit beside the run's own: TSENOR's abstract range against
    // every tsenor row (8 here), its speedup claim against lp's time over tsenor's.
    let published = table::rows_from_frame(&table::read_csv(&out.join("published.csv")).unwrap());
    let gaps: Vec<&Row> = published.iter().filter(|p| p["entry"] == 1).collect();
    assert_eq!(gaps.len(), 2 * 4);
    for p in &gaps {
        let point = p["point"].as_str().unwrap();
        let r = rows
            .iter()
            .find(|r| {
                point
                    == format!(
                        "source={}, pattern={}, solver=tsenor",
                        r["source"].as_str().unwrap(),
                        r["pattern"].as_str().unwrap()
                    )
                    && r["solver"] == "tsenor"
            })
            .expect("a summary row for each comparison");
        let (ours, gap) = (
            p["masklab"].as_f64().unwrap(),
            r["kept_gap"].as_f64().unwrap(),
        );
        assert_eq!(ours, gap, "{point}");
        let verdict = if gap < 0.01 {
            "below the range"
        } else if gap > 0.1 {
            "above the range"
        } else {
            "within the range"
        };
        assert_eq!(p["verdict"], verdict, "{point}");
    }
    // The 1024² sources the speedup entry also names are not in the smoke run: said, not dropped.
    let absent: Vec<&str> = published
        .iter()
        .filter(|p| p["verdict"] == "not in this run")
        .map(|p| p["point"].as_str().unwrap())
        .collect();
    assert_eq!(
        absent,
        ["source=gaussian:1024x1024", "source=laplace:1024x1024"]
    );
    let speedups = published
        .iter()
        .filter(|p| p["entry"] == 2 && p["verdict"] != "not in this run");
    assert_eq!(speedups.clone().count(), 8);
    for p in speedups {
        let point = p["point"].as_str().unwrap();
        let time = |solver: &str| {
            rows.iter()
                .find(|r| {
                    point.starts_with(&format!(
                        "source={}, pattern={},",
                        r["source"].as_str().unwrap(),
                        r["pattern"].as_str().unwrap()
                    )) && r["solver"] == solver
                })
                .map(|r| r["seconds"].as_f64().unwrap())
                .unwrap()
        };
        let speedup = time("lp") / time("tsenor");
        assert!(
            (p["masklab"].as_f64().unwrap() - speedup).abs() <= 1e-9 * speedup,
            "{point}"
        );
        assert!((p["ratio"].as_f64().unwrap() - speedup / 100.0).abs() <= 1e-9 * speedup);
    }
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    let heading = "## Published values beside ours";
    assert_eq!(md.matches(heading).count(), 1);
    assert!(md.find(heading).unwrap() < md.find("## Figures").unwrap());
    assert!(
        md.contains("“achieving up to 100× speedup with only 1-10% error"),
        "{md}"
    );
    // `masklab published` sets them again from the spec: the same section, said once, figures kept.
    let said = ok(&["published", out.to_str().unwrap()]);
    assert_eq!(
        said.lines().filter(|l| l.starts_with("#1 ")).count(),
        8,
        "{said}"
    );
    assert_eq!(std::fs::read_to_string(out.join("summary.md")).unwrap(), md);
}

#[test]
fn table3_smoke_shows_greedy_biased_and_mvue_unbiased() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r");
    run_smoke("table3", out.to_str().unwrap(), &[]);
    let rows = summary_rows(&out);
    assert_eq!(rows.len(), 3 * (3 + 3 + 1 + 1)); // inputs × (greedy, mvue at 3 patterns; mvue_1to2; approx)
    for r in &rows {
        let (bias, var) = (
            r["rel_bias"].as_f64().unwrap(),
            r["rel_variance"].as_f64().unwrap(),
        );
        if r["estimator"] == "greedy" {
            assert_eq!(var, 0.0, "{r:?}");
            assert!(
                bias > if r["input"] == "gaussian" { 0.05 } else { 0.0 },
                "{r:?}"
            );
        } else {
            // Unbiased: the measured bias is the mean's own variance, about variance / K.
            assert!(bias < 10.0 * var / 200.0 + 1e-9, "{r:?}");
        }
    }
    assert_matches_baseline(&out);
}

#[test]
fn table4a_smoke_trains_every_structure_with_statistics_and_matches_its_baseline() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r");
    run_smoke("table4a", &out, &[]);
    let rows = summary_rows(&out);
    assert_eq!(rows.len(), 5);
    for r in &rows {
        assert_eq!(r["structure_ok"], Value::Bool(true), "{r:?}");
        assert_eq!(r["seeds"], 2, "{r:?}");
        assert_eq!(r["steps"].as_f64().unwrap(), 64.0, "{r:?}"); // 2 epochs × 1024 / 32
        let acc = r["test_accuracy"].as_f64().unwrap();
        assert!(
            acc > 0.5,
            "learns the synthetic problem (chance 0.1): {r:?}"
        );
        assert!(r["peak_rss_mb"].as_f64().unwrap() > 1.0, "{r:?}");
        let sparsity = r["sparsity"].as_f64().unwrap();
        if r["setup"] == "dense + dense" {
            assert_eq!(sparsity, 0.0);
            assert_eq!(r["log10_mask_diversity"], 0.0);
            // The reference has no difference to itself.
            assert_eq!(r["test_accuracy_diff"], Value::Null);
        } else {
            // The exact solver and the other structures prune exactly half.
            assert!((sparsity - 0.5).abs() < 1e-9, "{r:?}");
            assert!(r["log10_mask_diversity"].as_f64().unwrap() > 100.0, "{r:?}");
            let p = r["test_accuracy_p"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&p), "{r:?}");
            assert!(r["test_accuracy_ci95"].as_f64().unwrap() >= 0.0, "{r:?}");
        }
    }
    // Mask diversity orders the structures as Hubara's table does.
    let md = |setup: &str| {
        rows.iter().find(|r| r["setup"] == setup).unwrap()["log10_mask_diversity"]
            .as_f64()
            .unwrap()
    };
    assert!(md("unstructured:0.5 + dense") > md("nm:2:4 + dense"));
    assert!(md("nm:2:4 + dense") > md("transposable:4:8 + dense"));
    assert!(md("transposable:4:8 + dense") > md("block:4:0.5 + dense"));
    // The correlation of diversity and accuracy at 50%, over the 4 non-reference structures
    // (each the mean of its 2 seeds: the seeds repeat the structure's diversity, issue 21 R11).
    let corr = std::fs::read_to_string(out.join("correlations.csv")).unwrap();
    assert!(
        corr.starts_with("target_sparsity,x,y,n,distinct_x,cells,spearman_rho,p"),
        "{corr}"
    );
    assert!(
        corr.contains("0.5,log10_mask_diversity,test_accuracy,4,4,8,"),
        "{corr}"
    );
    let md_text = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md_text.contains("## Statistics"), "{md_text}");
    assert!(md_text.contains("test_accuracy (± 95% CI)"), "{md_text}");
    assert!(
        md_text.contains("Spearman ρ(log10_mask_diversity, test_accuracy)"),
        "{md_text}"
    );
    assert_matches_baseline(&out);
}

#[test]
fn table4b_smoke_trains_a_deep_model_with_every_estimator_and_matches_its_baseline() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r");
    run_smoke("table4b", &out, &[]);
    let rows = summary_rows(&out);
    assert_eq!(rows.len(), 4);
    for r in &rows {
        assert_eq!(r["structure_ok"], Value::Bool(true), "{r:?}");
        // Six hidden layers, each with its update GEMM pruned (the head stays dense).
        assert_eq!(r["sparse_layers"].as_f64().unwrap(), 6.0, "{r:?}");
    }
    assert_matches_baseline(&out);
}

#[test]
fn reproduce_table4_runs_both_parts() {
    // An unknown table names the tables there are; table4 resolves to its two parts.
    let r = masklab(&["reproduce", "table9", "--profile", "smoke"]);
    assert_eq!(r.status.code(), Some(2));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("table4a") && err.contains("table4b"), "{err}");
    let parts = masklab::experiment::spec::table_specs(Path::new("experiments"), "table4").unwrap();
    assert_eq!(
        parts,
        vec![
            Path::new("experiments").join("table4a.toml"),
            Path::new("experiments").join("table4b.toml")
        ]
    );
}

#[test]
fn table5_smoke_converts_a_cached_model_and_matches_its_baseline() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let run = |out: &Path| {
        let spec = "experiments/table5.toml";
        let r = Command::new(super::common::bin())
            .args(["run", spec, "--profile", "smoke", "--quiet", "--out"])
            .arg(out)
            .env("MASKLAB_CACHE", &cache)
            .output()
            .unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    };
    let first = tmp.path().join("a");
    run(&first);
    // One cached dense model, with the training params it was trained with.
    let cached: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        cached
            .iter()
            .filter(|n| n.ends_with(".safetensors"))
            .count(),
        1,
        "{cached:?}"
    );
    let rows = summary_rows(&first);
    // Per score: nm:2:4 (exact only) + 2 transposable patterns × 3 solvers.
    assert_eq!(rows.len(), 14);
    for r in &rows {
        let f = |k: &str| r[k].as_f64().unwrap();
        assert!(
            f("recon_error_adaprune") <= f("recon_error_pruned"),
            "{r:?}"
        );
        assert_eq!(f("layers"), 2.0, "{r:?}");
        if r["solver"] == "exact" {
            assert!(f("kept_gap").abs() < 1e-12, "{r:?}");
        }
        assert!(
            (f("accuracy_drop") - (f("dense_accuracy") - f("pruned_accuracy"))).abs() < 1e-9,
            "{r:?}"
        );
    }
    // two-approx is a 2-approximation: further from the optimum than greedy on these weights.
    let gap = |solver: &str| {
        rows.iter()
            .find(|r| {
                r["solver"] == solver && r["structure"] == "transposable:2:4" && r["score"] == "abs"
            })
            .unwrap()["kept_gap"]
            .as_f64()
            .unwrap()
    };
    assert!(gap("two-approx") > gap("greedy") && gap("greedy") > 0.0);
    assert_matches_baseline(&first);
    // A second run reuses the cached model: same rows.
    let second = tmp.path().join("b");
    run(&second);
    let again = summary_rows(&second);
    assert_eq!(rows.len(), again.len());
    for (a, b) in rows.iter().zip(&again) {
        assert_eq!(a["pruned_accuracy"], b["pruned_accuracy"]);
        assert_eq!(a["kept_gap"], b["kept_gap"]);
    }
}
