//! `train`.

use super::*;

#[test]
fn train_prints_json_captures_gradients_that_estimate_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let grads = tmp.path().join("g.safetensors");
    let stdout = ok(&[
        "train",
        "--dataset",
        "synthetic:256",
        "--hidden",
        "32,16",
        "--epochs",
        "1",
        "--batch",
        "32",
        "--structure",
        "transposable:4:8",
        "--solver",
        "exact",
        "--grad-estimator",
        "mvue:2:4",
        "--capture-grads",
        grads.to_str().unwrap(),
        "--json",
    ]);
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    for field in [
        "test_accuracy",
        "train_loss",
        "steps",
        "seconds",
        "structure_ok",
    ] {
        assert!(v.get(field).is_some(), "{field} in {v}");
    }
    assert_eq!(v["steps"], 8);
    assert_eq!(v["structure_ok"], true);
    assert_eq!(v["sparsity"], 0.5);
    // The captured g: [batch, out] of both prunable layers, measured by `estimate`.
    let stdout = ok(&[
        "estimate",
        "--estimator",
        "greedy",
        "--pattern",
        "2:4",
        "--input",
        &format!("{}#layer0.grad", grads.display()),
        "--draws",
        "10",
        "--json",
    ]);
    let v: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(v["shape"], serde_json::json!([32, 32]));
    assert_eq!(v["rel_variance"], 0.0);
    // A missing data set is one line saying how to get it.
    let r = masklab(&[
        "train",
        "--dataset",
        "cifar10",
        "--data-dir",
        tmp.path().to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(2));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("CIFAR-10") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn gemm_sparse_and_masked_dense_train_to_the_same_accuracy() {
    // Issue 22: the compressed kernels change only the order of the sums, so one epoch with the
    // same seed ends at the same test accuracy (to 0.002) as the masked-dense GEMMs.
    let run = |gemm: &str| -> Value {
        let stdout = ok(&[
            "train",
            "--dataset",
            "synthetic:2048",
            "--hidden",
            "64,64",
            "--epochs",
            "1",
            "--batch",
            "32",
            "--structure",
            "transposable:4:8",
            "--solver",
            "exact",
            "--every",
            "16",
            "--grad-estimator",
            "mvue:2:4",
            "--gemm",
            gemm,
            "--json",
        ]);
        serde_json::from_str(stdout.trim()).unwrap()
    };
    let (sparse, dense) = (run("sparse"), run("masked-dense"));
    assert_eq!(sparse["compressed_gemms"], "forward+backward+update");
    assert_eq!(dense["compressed_gemms"], "none");
    assert_eq!(sparse["gemm"], "sparse");
    assert_eq!(sparse["mask_updates"], 4);
    assert_eq!(sparse["structure_ok"], true);
    let (a, b) = (
        sparse["test_accuracy"].as_f64().unwrap(),
        dense["test_accuracy"].as_f64().unwrap(),
    );
    assert!(a > 0.5, "it learns: {a}");
    assert!((a - b).abs() <= 0.002, "sparse {a} vs masked-dense {b}");
    // A bad mode is one line naming the flag's value.
    let r = masklab(&["train", "--dataset", "synthetic:64", "--gemm", "fast"]);
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("fast"));
}
