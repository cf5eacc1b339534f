//! `masklab prune` on a tiny random llama written as a Hugging Face directory (bf16).

use super::*;
use masklab::lm::{model, save, tokenizer};

const TEXT: &str = "Now is the winter of our discontent made glorious summer by this sun of York; \
and all the clouds that lour'd upon our house in the deep bosom of the ocean buried. ";

/// A bf16 HF directory with a byte-level tokenizer, and calibration and evaluation texts.
fn fixture(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let config = model::Config::tiny(32, 256);
    let m = model::Llama::random(config, 7, &candle_core::Device::Cpu).unwrap();
    let src = dir.join("tiny");
    save::save_hf(&m, &src, candle_core::DType::BF16).unwrap();
    tokenizer::from_parts(&tokenizer::byte_tokens(), &[], false)
        .unwrap()
        .save(src.join("tokenizer.json"), false)
        .unwrap();
    let (calib, eval) = (dir.join("calib.txt"), dir.join("eval.txt"));
    std::fs::write(&calib, TEXT.repeat(8)).unwrap();
    std::fs::write(&eval, TEXT.repeat(4)).unwrap();
    (src, calib, eval)
}

fn args<'a>(src: &'a str, calib: &'a str, eval: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "prune",
        "--model",
        src,
        "--method",
        "sparsegpt",
        "--structure",
        "transposable:4:8",
        "--solver",
        "greedy",
        "--calib",
        calib,
        "--eval",
        eval,
        "--calib-windows",
        "4",
        "--window",
        "32",
        "--eval-tokens",
        "256",
        "--output",
        out,
        "--json",
    ]
}

#[test]
fn prune_writes_a_transposable_checkpoint_and_copies_the_rest_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (src, calib, eval) = fixture(dir.path());
    let out = dir.path().join("pruned");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (src_s, calib_s, eval_s, out_s) = (s(&src), s(&calib), s(&eval), s(&out));
    let report: Value =
        serde_json::from_str(&ok(&args(&src_s, &calib_s, &eval_s, &out_s))).unwrap();
    assert_eq!(report["structure_ok"], true);
    assert_eq!(report["method"], "sparsegpt");
    assert_eq!(report["layers"].as_array().unwrap().len(), 14);
    assert!(report["dense"]["perplexity"].as_f64().unwrap() > 1.0);
    assert!(report["pruned"]["perplexity"].as_f64().unwrap().is_finite());
    for l in report["layers"].as_array().unwrap() {
        let gap = l["kept_gap"]
            .as_f64()
            .expect("transposable rows report kept_gap");
        assert!((0.0..1.0).contains(&gap));
        assert!((l["sparsity"].as_f64().unwrap() - 0.5).abs() < 0.05);
    }
    for f in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "prune_report.json",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    // Same tensors and dtypes; the projections transposable 4:8 per tile, the rest unchanged.
    let a = std::fs::read(src.join("model.safetensors")).unwrap();
    let b = std::fs::read(out.join("model.safetensors")).unwrap();
    let (a, b) = (
        safetensors::SafeTensors::deserialize(&a).unwrap(),
        safetensors::SafeTensors::deserialize(&b).unwrap(),
    );
    let pruned =
        candle_core::safetensors::load(out.join("model.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    let mut projections = 0;
    for (name, view) in a.tensors() {
        let other = b.tensor(&name).unwrap();
        assert_eq!(other.dtype(), view.dtype(), "{name}");
        if name.ends_with("_proj.weight") {
            projections += 1;
            let t = &pruned[&name];
            let (rows, cols) = t.dims2().unwrap();
            let data = t
                .to_dtype(candle_core::DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap();
            let keep: Vec<u8> = data
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|&v| (v != 0.0) as u8)
                .collect();
            let mask = masklab::mask::Mask::new(rows, cols, keep).unwrap();
            let p = masklab::mask::Pattern { n: 4, m: 8 };
            assert!(mask.is_transposable_nm(p).unwrap(), "{name}");
        } else {
            assert_eq!(other.data(), view.data(), "{name} copied byte for byte");
        }
    }
    assert_eq!(projections, 14);
    // The output loads back and measures with the same tokenizer.
    let again: Value = serde_json::from_str(&ok(&[
        "prune",
        "--model",
        &out_s,
        "--method",
        "magnitude",
        "--structure",
        "dense",
        "--calib",
        &calib_s,
        "--eval",
        &eval_s,
        "--calib-windows",
        "1",
        "--window",
        "32",
        "--eval-tokens",
        "256",
        "--json",
    ]))
    .unwrap();
    let before = report["pruned"]["perplexity"].as_f64().unwrap();
    let after = again["pruned"]["perplexity"].as_f64().unwrap();
    // bf16 rounding of the pruned weights moves the perplexity a little, not more.
    assert!((after / before - 1.0).abs() < 0.05, "{before} vs {after}");
}

#[test]
fn prune_refuses_to_write_into_its_input_and_leaves_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (src, calib, eval) = fixture(dir.path());
    let before = std::fs::read(src.join("model.safetensors")).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (src_s, calib_s, eval_s) = (s(&src), s(&calib), s(&eval));
    let err = common::fails(2, &args(&src_s, &calib_s, &eval_s, &src_s));
    assert!(err.contains("never writes over an input"), "{err}");
    // An output directory that holds the calibration text is refused too.
    let err = common::fails(2, &args(&src_s, &calib_s, &eval_s, &s(dir.path())));
    assert!(err.contains("never writes over an input"), "{err}");
    assert_eq!(
        std::fs::read(src.join("model.safetensors")).unwrap(),
        before
    );
    // A directory of someone's files would be replaced whole: refused, the files kept.
    let notes = dir.path().join("notes");
    std::fs::create_dir_all(&notes).unwrap();
    std::fs::write(notes.join("todo.txt"), "keep me").unwrap();
    let err = common::fails(2, &args(&src_s, &calib_s, &eval_s, &s(&notes)));
    assert!(err.contains("holds no checkpoint"), "{err}");
    assert_eq!(
        std::fs::read_to_string(notes.join("todo.txt")).unwrap(),
        "keep me"
    );
    // A bad structure names the flag.
    let err = common::fails(
        2,
        &[
            "prune",
            "--model",
            &src_s,
            "--method",
            "wanda",
            "--structure",
            "diagonal",
        ],
    );
    assert!(err.contains("structure `diagonal`"), "{err}");
}

#[test]
fn prune_by_alps_keeps_the_structure_and_reconstructs_better_than_magnitude() {
    let dir = tempfile::tempdir().unwrap();
    let (src, calib, eval) = fixture(dir.path());
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (src_s, calib_s, eval_s) = (s(&src), s(&calib), s(&eval));
    let run = |method: &str| -> Value {
        serde_json::from_str(&ok(&[
            "prune",
            "--model",
            &src_s,
            "--method",
            method,
            "--structure",
            "nm:2:4",
            "--calib",
            &calib_s,
            "--eval",
            &eval_s,
            "--calib-windows",
            "4",
            "--window",
            "32",
            "--eval-tokens",
            "256",
            "--skip-dense-eval",
            "--json",
        ]))
        .unwrap()
    };
    let (alps, magnitude) = (run("alps"), run("magnitude"));
    assert_eq!(alps["method"], "alps");
    assert_eq!(alps["structure_ok"], true);
    let err = |r: &Value| r["mean_rel_error"].as_f64().unwrap();
    assert!(
        err(&alps) < err(&magnitude),
        "{} vs {}",
        err(&alps),
        err(&magnitude)
    );
}
