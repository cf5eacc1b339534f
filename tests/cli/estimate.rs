//! `estimate`.

use super::*;

#[test]
fn estimate_measures_and_samples() {
    use masklab::io::{NamedTensor, read_tensors, write_tensors};
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("g.safetensors");
    write_tensors(
        &input,
        &[NamedTensor {
            name: "fc1.grad".into(),
            shape: vec![32, 8],
            data: gaussian(256, 4),
        }],
    )
    .unwrap();
    let inp = input.to_str().unwrap();
    let v: Value = serde_json::from_str(&ok(&[
        "estimate",
        "--estimator",
        "greedy",
        "--pattern",
        "2:4",
        "--input",
        inp,
        "--draws",
        "5",
        "--json",
    ]))
    .unwrap();
    for f in [
        "estimator",
        "pattern",
        "draws",
        "rel_bias",
        "rel_variance",
        "rel_mse",
        "gemm_rel_bias",
        "gemm_rel_variance",
    ] {
        assert!(!v[f].is_null(), "{f} missing: {v}");
    }
    assert_eq!(v["rel_variance"], 0.0);
    assert!(v["rel_bias"].as_f64().unwrap() > 0.05);
    let m: Value = serde_json::from_str(&ok(&[
        "estimate",
        "--estimator",
        "mvue",
        "--pattern",
        "2:4",
        "--input",
        inp,
        "--draws",
        "2000",
        "--json",
    ]))
    .unwrap();
    assert!(
        m["rel_bias"].as_f64().unwrap()
            < 0.01 * m["rel_variance"].as_f64().unwrap().max(1e-12) + 2e-3,
        "{m}"
    );
    let out = tmp.path().join("s.h5");
    ok(&[
        "estimate",
        "--estimator",
        "mvue",
        "--pattern",
        "2:4",
        "--sample",
        "--input",
        inp,
        "--output",
        out.to_str().unwrap(),
    ]);
    let s = &read_tensors(out.to_str().unwrap()).unwrap()[0];
    assert_eq!(
        (s.name.as_str(), s.shape.clone()),
        ("fc1.grad", vec![32, 8])
    );
    // Along dim 0: every group of 4 rows in a column keeps exactly 2.
    for c in 0..8 {
        for r0 in (0..32).step_by(4) {
            assert_eq!((r0..r0 + 4).filter(|r| s.data[r * 8 + c] != 0.0).count(), 2);
        }
    }
    let bad = masklab(&[
        "estimate",
        "--estimator",
        "mvue_1to2",
        "--pattern",
        "2:4",
        "--input",
        inp,
    ]);
    assert_eq!(bad.status.code(), Some(2));
}
