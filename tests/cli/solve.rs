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
        stderr.contains("skipped tensor `layer.bias`")
            && stderr.contains("skipped tensor `odd.weight`"),
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
