//! `masklab gemm` and table7: a mask type's GEMM against dense in the same process.

use super::*;

/// `--json` prints one object whose deterministic fields are what the shapes say: bytes of
/// the compressed operand (values + 2-bit positions), the limits, the kernel used, the error.
#[test]
fn gemm_json_reports_bytes_limits_and_matches_the_dense_product() {
    let out = ok(&[
        "gemm",
        "--structure",
        "transposable:2:4",
        "--shape",
        "64x128",
        "--batch",
        "1",
        "--op",
        "backward",
        "--min-seconds",
        "0",
        "--json",
    ]);
    let r: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["kernel"], "nm");
    // Backward: dX [1, 128] = dY [1, 64] · W [64, 128]; the compressed operand is Wᵀ [128, 64]:
    // 128 rows × 32 kept × (4 bytes + 2 bits).
    let dense = 4 * (64 + 64 * 128 + 128);
    let sparse = 4 * (64 + 128) + 128 * 32 * 4 + 128 * 32 * 2 / 8;
    assert_eq!(r["dense_bytes"], dense);
    assert_eq!(r["sparse_bytes"], sparse);
    assert_eq!(r["flop_limit"], 2.0);
    assert!(r["max_rel_error"].as_f64().unwrap() < 1e-5, "{r}");
    assert!(r["speedup"].as_f64().unwrap() > 0.0);
    // A plain N:M mask has no N:M Wᵀ: its backward runs dense and says so.
    let out = ok(&[
        "gemm",
        "--structure",
        "nm:2:4",
        "--shape",
        "64x128",
        "--op",
        "backward",
        "--min-seconds",
        "0",
        "--json",
    ]);
    let r: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["kernel"], "dense");
}

/// `--dtype bf16` stores the weights as bf16 on both sides: 2 bytes a value in the byte counts,
/// and the same product as dense to f32 rounding.
#[test]
fn gemm_bf16_counts_two_bytes_a_weight() {
    let out = ok(&[
        "gemm",
        "--structure",
        "nm:2:4",
        "--shape",
        "64x128",
        "--dtype",
        "bf16",
        "--min-seconds",
        "0",
        "--json",
    ]);
    let r: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["dtype"], "bf16");
    assert_eq!(r["kernel"], "nm");
    // Forward: Y [1, 64] = X [1, 128] · Wᵀ; inputs 2 bytes, output 4; W: 64 rows × 64 kept ×
    // (2 bytes + 2 bits).
    assert_eq!(r["dense_bytes"], 2 * (128 + 64 * 128) + 4 * 64);
    assert_eq!(
        r["sparse_bytes"],
        2 * 128 + 4 * 64 + 64 * 64 * 2 + 64 * 64 * 2 / 8
    );
    assert!(r["max_rel_error"].as_f64().unwrap() < 1e-5, "{r}");
}

/// Bad input names the option and value.
#[test]
fn gemm_refuses_what_it_cannot_run() {
    for (args, want) in [
        (
            vec!["--structure", "nm:2:4", "--shape", "64x6"],
            "does not tile",
        ),
        (
            vec![
                "--structure",
                "nm:2:4",
                "--shape",
                "64x64",
                "--op",
                "update",
                "--batch",
                "3",
            ],
            "multiple of M",
        ),
        (
            vec![
                "--structure",
                "nm:2:4",
                "--shape",
                "64x64",
                "--op",
                "sideways",
            ],
            "sideways",
        ),
        (
            vec![
                "--structure",
                "unstructured:0.5",
                "--shape",
                "64x64",
                "--op",
                "update",
                "--batch",
                "8",
            ],
            "weight masks",
        ),
        (
            vec!["--structure", "unstructured:1.5", "--shape", "64x64"],
            "[0, 1)",
        ),
        (
            vec!["--structure", "block:8:0.5", "--shape", "60x64"],
            "8x8 blocks",
        ),
        (
            vec![
                "--structure",
                "unstructured:0.5",
                "--shape",
                "64x64",
                "--dtype",
                "bf16",
            ],
            "f32 only",
        ),
        (
            vec![
                "--structure",
                "nm:2:4",
                "--shape",
                "64x64",
                "--dtype",
                "f16",
            ],
            "expected f32 or bf16",
        ),
    ] {
        let mut all = vec!["gemm"];
        all.extend(args);
        all.extend(["--min-seconds", "0"]);
        let e = super::common::fails(2, &all);
        assert!(e.contains(want), "{all:?}: {e}");
    }
}

/// table7's smoke profile: every cell ran, the kernels are the expected ones, the outputs
/// equal the dense product, and it matches its committed baseline.
#[test]
fn table7_smoke_runs_every_mask_and_op_and_matches_its_baseline() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r");
    run_smoke("table7", &out, &[]);
    let rows = summary_rows(&out);
    // 27 f32 cells, and 7 bf16 ones at batch 1 (dense, 2:4, transposable 2:4 forward and
    // backward, 1:4 forward).
    assert_eq!(rows.len(), 34);
    assert_eq!(rows.iter().filter(|r| r["dtype"] == "bf16").count(), 7);
    for r in &rows {
        assert!(r["max_rel_error"].as_f64().unwrap() < 1e-5, "{r:?}");
        let mask = r["mask"].as_str().unwrap();
        let want = if mask == "dense" || (mask == "nm:2:4" && r["op"] == "backward") {
            "dense"
        } else if mask.starts_with("unstructured") {
            "csr"
        } else if mask.starts_with("block") {
            "bsr"
        } else {
            "nm"
        };
        assert_eq!(r["kernel"], want, "{r:?}");
    }
    assert_matches_baseline(&out);
}

/// table7b's smoke profile: three sessions per cell, the GEMMs that ran compressed are the ones
/// the setup makes N:M, the recompute share is the recompute over the period and the step, and
/// it matches its committed baseline.
#[test]
fn table7b_smoke_times_sparse_masked_and_dense_steps_and_matches_its_baseline() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r");
    run_smoke("table7b", &out, &[]);
    let rows = summary_rows(&out);
    assert_eq!(rows.len(), 3);
    for r in &rows {
        let want = match r["setup"].as_str().unwrap() {
            "dense + dense" => "none",
            "nm:2:4 + dense" => "forward",
            _ => "forward+backward+update",
        };
        assert_eq!(r["compressed_gemms"], want, "{r:?}");
        let f = |k: &str| r[k].as_f64().unwrap();
        assert!(f("rounds") >= 5.0, "{r:?}");
        let share = f("recompute_seconds") / 40.0 / f("sparse_step_seconds");
        assert!(
            (f("recompute_share") - share).abs() <= 1e-9 * share.max(1e-12),
            "{r:?}"
        );
        assert!(
            (f("speedup_sparse") - f("dense_step_seconds") / f("sparse_step_seconds")).abs()
                < 1e-9 * f("speedup_sparse")
        );
    }
    assert_matches_baseline(&out);
}
