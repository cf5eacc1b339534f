use super::*;
use serde_json::json;

fn row(v: Value) -> Row {
    v.as_object().unwrap().clone().into_iter().collect()
}

fn entry(text: &str) -> Published {
    toml::from_str(text).unwrap()
}

fn solver_rows() -> Vec<Row> {
    vec![
        row(json!({"pattern": "2:4", "solver": "tsenor", "kept_gap": 0.002, "seconds": 2.0})),
        row(json!({"pattern": "2:4", "solver": "lp", "kept_gap": 0.0, "seconds": 8.0})),
        row(json!({"pattern": "8:16", "solver": "tsenor", "kept_gap": 0.05, "seconds": 1.0})),
        row(json!({"pattern": "8:16", "solver": "lp", "kept_gap": 0.0, "seconds": 30.0})),
        row(json!({"pattern": "16:32", "solver": "tsenor", "kept_gap": 0.2, "seconds": 1.0})),
    ]
}

const KEYS: &[&str] = &["pattern", "solver"];

fn keys() -> Vec<String> {
    KEYS.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_range_says_within_below_or_above_for_every_matching_row() {
    let e = entry(
        r#"paper = "P"
           where = "abstract, p. 1"
           quote = "1-10% error"
           metric = "kept_gap"
           at = { solver = "tsenor" }
           range = [0.01, 0.10]"#,
    );
    let out = compare(&[e], &solver_rows(), &[], &keys(), &[]).unwrap();
    let verdicts: Vec<&str> = out.iter().map(|r| r["verdict"].as_str().unwrap()).collect();
    assert_eq!(
        verdicts,
        ["below the range", "within the range", "above the range"]
    );
    assert_eq!(out[1]["point"], "pattern=8:16, solver=tsenor");
    assert_eq!(out[1]["masklab"], 0.05);
    assert!(out[1]["ratio"].is_null());
}

#[test]
fn a_value_gives_the_ratio_and_speedup_over_divides_the_partner_row_by_this_one() {
    let e = entry(
        r#"paper = "P"
           where = "Table 1, p. 7"
           quote = "up to 100x"
           metric = "seconds"
           at = { solver = "tsenor", pattern = ["2:4", "8:16", "16:32"] }
           speedup_over = { solver = "lp" }
           value = 100.0"#,
    );
    let out = compare(&[e], &solver_rows(), &[], &keys(), &[]).unwrap();
    assert_eq!(out.len(), 3);
    assert_eq!(out[0]["masklab"], 4.0); // 8 s / 2 s
    assert_eq!(out[0]["ratio"], 0.04);
    assert_eq!(out[0]["verdict"], "below the paper's");
    assert_eq!(out[1]["masklab"], 30.0);
    // 16:32 has no lp row: no value, said so.
    assert!(out[2]["masklab"].is_null());
    assert_eq!(out[2]["verdict"], "no value in this run");
    assert_eq!(out[0]["metric"], "seconds speedup over solver=lp");
}

#[test]
fn an_entry_matching_no_row_is_listed_not_dropped_and_numbers_match_as_numbers() {
    let missing = entry(
        r#"paper = "P"
           where = "Fig. 3"
           quote = "q"
           metric = "kept_gap"
           at = { pattern = "4:8" }
           value = 0.1"#,
    );
    let corr = entry(
        r#"paper = "H"
           where = "abstract"
           quote = "correlates"
           metric = "spearman_rho"
           table = "correlations"
           at = { target_sparsity = [0.75, 0.9] }
           range = [0.0, 1.0]"#,
    );
    let correlations = vec![
        row(json!({"target_sparsity": 0.5, "spearman_rho": 0.08})),
        row(json!({"target_sparsity": 0.75, "spearman_rho": -0.64})),
    ];
    let ck = vec!["target_sparsity".to_string()];
    let out = compare(
        &[missing, corr],
        &solver_rows(),
        &correlations,
        &keys(),
        &ck,
    )
    .unwrap();
    assert_eq!(out.len(), 3);
    assert_eq!(out[0]["verdict"], "not in this run");
    assert_eq!(out[0]["point"], "pattern=4:8");
    assert_eq!(out[1]["verdict"], "below the range");
    assert_eq!(out[1]["point"], "target_sparsity=0.75");
    // The listed value no row has is said too.
    assert_eq!(out[2]["verdict"], "not in this run");
    assert_eq!(out[2]["point"], "target_sparsity=0.9");
}

#[test]
fn an_unknown_metric_is_an_error_naming_the_entry_and_the_columns() {
    let e = entry(
        r#"paper = "TSENOR"
           where = "abstract"
           quote = "q"
           metric = "kept_gapp"
           value = 0.1"#,
    );
    let err = compare(&[e], &solver_rows(), &[], &keys(), &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("[[published]] #1 (TSENOR)") && err.contains("kept_gapp"));
    assert!(
        err.contains("columns: pattern, solver, kept_gap, seconds"),
        "{err}"
    );
}

#[test]
fn checks_name_the_entry_and_field() {
    let base = r#"paper = "P"
        where = "p. 1"
        quote = "q"
        metric = "kept_gap"
    "#;
    let cases = [
        ("", "give `value` or `range`"),
        ("value = 1.0\nrange = [0.0, 1.0]", "not both"),
        ("range = [0.2, 0.1]", "low ≤ high"),
        (
            "value = 1.0\nat = { solvr = \"x\" }",
            "at.solvr is not a column",
        ),
        (
            "value = 1.0\nspeedup_over = { size = \"x\" }",
            "speedup_over.size",
        ),
        (
            "value = 1.0\ntable = \"correlations\"",
            "no [statistics] correlate",
        ),
        ("value = 1.0\nat = { solver = [] }", "non-empty list"),
    ];
    let spec = std::path::Path::new("t.toml");
    for (extra, expected) in cases {
        let e = entry(&format!("{base}{extra}"));
        let err = Published::check(&[e], &keys(), &[], spec)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("t.toml: [[published]] #1 (P)"), "{err}");
        assert!(err.contains(expected), "{extra}: {err}");
    }
    let blank = entry(&base.replace("quote = \"q\"", "quote = \" \""));
    let blank = Published {
        value: Some(1.0),
        ..blank
    };
    assert!(
        Published::check(&[blank], &keys(), &[], spec)
            .unwrap_err()
            .to_string()
            .contains("`quote` is empty")
    );
    let ok = entry(&format!(
        "{base}value = 1.0\nat = {{ solver = \"tsenor\" }}"
    ));
    assert!(Published::check(&[ok], &keys(), &[], spec).is_ok());
}

#[test]
fn the_section_prints_paper_and_ours_side_by_side_with_quotes() {
    let e = entry(
        r#"paper = "TSENOR 2025"
           where = "abstract, p. 1"
           quote = "1-10% error"
           metric = "kept_gap"
           at = { solver = "tsenor" }
           range = [0.01, 0.10]
           note = "GPU""#,
    );
    let out = compare(std::slice::from_ref(&e), &solver_rows(), &[], &keys(), &[]).unwrap();
    let md = markdown_section(&[e], &out);
    assert!(md.starts_with(HEADING));
    assert!(md.contains(
        "| 1 | TSENOR 2025 | abstract, p. 1 | kept_gap | pattern=8:16, solver=tsenor | 0.01000 – 0.1000 | 0.05000 | — | within the range |"
    ), "{md}");
    assert!(md.contains("Against ranges: 1 within, 1 below, 1 above."));
    assert!(md.contains("1. TSENOR 2025 (abstract, p. 1): “1-10% error” — GPU"));
}
