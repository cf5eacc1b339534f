//! Bad input across commands: one line, exit code 2.

use super::*;

#[test]
fn bad_input_is_a_one_line_error_with_exit_code_2() {
    let tmp = tempfile::tempdir().unwrap();
    let bad_toml = tmp.path().join("bad.toml");
    std::fs::write(&bad_toml, "name = \"x\"\ntitle = [unclosed\n").unwrap();
    let bad_pattern = tmp.path().join("pattern.toml");
    let spec = std::fs::read_to_string("experiments/table1.toml")
        .unwrap()
        .replace("\"nm:1:2\"", "\"nm:5:4\"");
    std::fs::write(&bad_pattern, spec).unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["run", "no/such/spec.toml"], "no/such/spec.toml"),
        (vec!["run", bad_toml.to_str().unwrap()], "bad.toml:2"),
        (vec!["run", bad_pattern.to_str().unwrap()], "grid.structure"),
        (
            vec!["diversity", "nm:2:4", "--size", "4x6"],
            "does not tile",
        ),
        (vec!["diversity", "nm:5:4", "--size", "4x4"], "5:4"),
        (vec!["show", "/no/such/run"], "/no/such/run"),
        (vec!["reproduce", "table99"], "table99"),
        // One score type: a command refuses the kinds it cannot compute, saying which it takes.
        (
            vec![
                "solve",
                "--solver",
                "exact",
                "--pattern",
                "2:4",
                "--input",
                "w.safetensors",
                "--score",
                "wanda",
            ],
            "--act-norms",
        ),
    ];
    for (args, needle) in cases {
        let out = masklab(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: one line expected: {err}"
        );
        assert!(err.contains(needle), "{args:?}: {err} lacks {needle}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
