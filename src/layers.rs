//! The crate's layers, lowest first. A module may use the modules of lower layers and itself,
//! never one of its own layer or above: the pipeline reads bottom-up (masks and formats → solvers,
//! estimators and result tables → training → conversion and language models → the command jobs
//! → experiments), and the binary (`main.rs`, `cli.rs`, `commands.rs`) sits on top.
//! docs/DESIGN.md shows the same table; the test below reads every library source file and fails
//! on a `crate::` path that goes against it.

/// Top-level modules by layer, lowest first.
pub const LAYERS: &[&[&str]] = &[
    &["error", "seed", "par"],
    &["device", "memory", "toml_value", "lanes", "mask"],
    &["io", "diversity", "sparse", "vmath"],
    &["solvers", "results"],
    &["estimators", "policy"],
    &["train"],
    &["convert", "lm"],
    &["ops"],
    &["experiment"],
];

/// The layer of top-level module `module`, if the table has it.
pub fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The `crate::` paths in `source` (a file of top-level module `module`) that go against the
/// table, as (line, module used); comment lines are skipped. `crate::Error`/`Result` are the
/// error layer's re-exports.
pub fn violations(module: &str, source: &str) -> Vec<(usize, String)> {
    let own = layer_of(module);
    let mut out = Vec::new();
    for (n, line) in source.lines().enumerate() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        for (at, _) in line.match_indices("crate::") {
            let used: String = line[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if used == module || used == "Error" || used == "Result" {
                continue;
            }
            let ok = matches!((own, layer_of(&used)), (Some(a), Some(b)) if b < a);
            if !ok {
                out.push((n + 1, used));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    #[test]
    fn no_library_file_imports_against_the_layers() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        let mut bad = Vec::new();
        let mut seen = 0;
        for f in &files {
            let rel = f.strip_prefix(&src).unwrap();
            let first = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy();
            let module = first.trim_end_matches(".rs").to_string();
            if ["main", "cli", "commands", "lib", "layers"].contains(&module.as_str()) {
                continue;
            }
            assert!(
                layer_of(&module).is_some(),
                "{module} is missing from LAYERS"
            );
            seen += 1;
            let text = std::fs::read_to_string(f).unwrap();
            for (line, used) in violations(&module, &text) {
                bad.push(format!("{}:{line} uses crate::{used}", rel.display()));
            }
        }
        assert!(seen > 80, "only {seen} files read");
        assert!(
            bad.is_empty(),
            "imports against the layers:\n{}",
            bad.join("\n")
        );
    }

    #[test]
    fn an_upward_or_sideways_import_is_caught() {
        let upward = "use crate::error::Result;\nuse crate::experiment::cell::Cell;\n";
        assert_eq!(
            violations("solvers", upward),
            vec![(2, "experiment".into())]
        );
        let sideways = "    let r = crate::results::row::to_row(&x)?;";
        assert_eq!(violations("solvers", sideways), vec![(1, "results".into())]);
        assert_eq!(violations("mask", "// crate::train in a comment"), vec![]);
        assert!(violations("experiment", "use crate::solvers::greedy;").is_empty());
    }
}
