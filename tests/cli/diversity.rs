//! `diversity`.

use super::*;

#[test]
fn diversity_json_has_the_documented_fields() {
    let out = ok(&["diversity", "transposable:4:8", "--size", "8x8", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["structure"], "transposable");
    assert_eq!(v["pattern"], "4:8");
    assert_eq!(v["size"], "8x8");
    assert_eq!(v["exact"], "116963796250");
    assert_eq!(v["method"], "exact");
    assert!((v["log10"].as_f64().unwrap() - 116963796250f64.log10()).abs() < 1e-9);
    assert!(v["closed_form_log10"].as_f64().unwrap() > v["log10"].as_f64().unwrap());
    let approx: Value = serde_json::from_str(&ok(&[
        "diversity",
        "transposable:16:32",
        "--size",
        "64x64",
        "--json",
    ]))
    .unwrap();
    assert_eq!(approx["method"], "approx");
    assert_eq!(approx["exact"], Value::Null);
}
