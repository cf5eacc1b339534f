//! Helpers shared by the end-to-end tests: run the binary, write small inputs.

use std::path::Path;
use std::process::{Command, Output};

/// The binary under test: `$MASKLAB_BIN` when set (to check a test fails on another build),
/// else the one cargo built.
pub fn bin() -> String {
    std::env::var("MASKLAB_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_masklab").to_string())
}

/// Run masklab with `args` from the crate root.
pub fn masklab(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .output()
        .expect("masklab runs")
}

/// stdout of a run that must succeed.
pub fn ok(args: &[&str]) -> String {
    let out = masklab(args);
    assert!(
        out.status.success(),
        "masklab {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr of a run that must fail with exit code `code` and no panic.
pub fn fails(code: i32, args: &[&str]) -> String {
    let out = masklab(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "masklab {args:?}: {err}");
    assert!(
        !err.contains("panicked"),
        "masklab {args:?} panicked: {err}"
    );
    err
}

/// A safetensors file of f32 tensors `(name, shape, values)`.
pub fn write_f32(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
    let named: Vec<_> = tensors
        .iter()
        .map(|(n, s, d)| masklab::io::NamedTensor {
            name: n.to_string(),
            shape: s.clone(),
            data: d.clone(),
        })
        .collect();
    masklab::io::write_tensors(path, &named).expect("write fixture");
}

/// A path as &str.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A safetensors file written byte by byte: `(name, dtype, shape, little-endian data)`.
pub fn write_raw_safetensors(path: &Path, tensors: &[(&str, &str, Vec<usize>, Vec<u8>)]) {
    let mut header = serde_json::Map::new();
    let mut offset = 0;
    for (name, dtype, shape, data) in tensors {
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + data.len()]}),
        );
        offset += data.len();
    }
    let text = serde_json::Value::Object(header).to_string();
    let mut bytes = (text.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(text.as_bytes());
    for (_, _, _, data) in tensors {
        bytes.extend_from_slice(data);
    }
    std::fs::write(path, bytes).expect("write safetensors");
}

/// Values as little-endian bf16 bytes.
pub fn bf16_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
        .collect()
}

/// Values as little-endian f16 bytes.
pub fn f16_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
        .collect()
}

/// `n` seeded standard-normal f32 values as little-endian bytes.
pub fn gaussian_bytes(n: usize, seed: u64) -> Vec<u8> {
    use rand::SeedableRng;
    use rand_distr::Distribution;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .flat_map(|_| {
            let v: f32 = rand_distr::StandardNormal.sample(&mut rng);
            v.to_le_bytes()
        })
        .collect()
}
