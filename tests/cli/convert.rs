//! `convert`: a checkpoint pruned in one shot, layout and dtypes kept.

use super::*;
use common::{bf16_bytes, f16_bytes, write_raw_safetensors};

/// The must-hold test of issue 14: a sharded bf16 checkpoint with 1-D tensors and one that does
/// not tile comes out with the same shards and a valid index; dtypes kept; tensors not pruned
/// byte-identical; pruned ones transposable 4:8 with every kept weight exactly as stored and every
/// pruned weight zero.
#[test]
fn a_sharded_bf16_checkpoint_converts_with_its_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ckpt");
    std::fs::create_dir(&dir).unwrap();
    let shard = |i: usize| format!("model-0000{i}-of-00002.safetensors");
    write_raw_safetensors(
        &dir.join(shard(1)),
        &[
            (
                "l1.weight",
                "BF16",
                vec![8, 16],
                bf16_bytes(&gaussian(128, 1)),
            ),
            ("l1.bias", "BF16", vec![8], bf16_bytes(&gaussian(8, 2))),
        ],
    );
    write_raw_safetensors(
        &dir.join(shard(2)),
        &[
            (
                "l2.weight",
                "BF16",
                vec![16, 8],
                bf16_bytes(&gaussian(128, 3)),
            ),
            (
                "odd.weight",
                "BF16",
                vec![6, 8],
                bf16_bytes(&gaussian(48, 4)),
            ),
            ("norm", "F16", vec![16], f16_bytes(&gaussian(16, 5))),
        ],
    );
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": {
        "l1.weight": shard(1), "l1.bias": shard(1),
        "l2.weight": shard(2), "odd.weight": shard(2), "norm": shard(2)}});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let out = tmp.path().join("pruned");
    let run = masklab(&[
        "convert",
        "--input",
        dir.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--structure",
        "transposable:4:8",
        "--solver",
        "exact",
        "--compare-exact",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("copied unpruned `odd.weight` [6, 8]: does not tile"),
        "{stderr}"
    );
    let rows: Vec<Value> = String::from_utf8_lossy(&run.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(r["dtype"], "bf16");
        assert_eq!(r["kept_gap"].as_f64(), Some(0.0), "{r}");
        assert!(r["kept_fraction"].as_f64().unwrap() > 0.5);
    }
    // Same files, identical index, valid headers with the same names, dtypes and shapes.
    let names = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&dir), names(&out));
    let idx = "model.safetensors.index.json";
    assert_eq!(
        std::fs::read(dir.join(idx)).unwrap(),
        std::fs::read(out.join(idx)).unwrap()
    );
    let a = masklab::io::checkpoint::Checkpoint::open(&dir).unwrap();
    let b = masklab::io::checkpoint::Checkpoint::open(&out).unwrap();
    assert_eq!(
        a.entries(),
        b.entries(),
        "names, dtypes, shapes and offsets kept"
    );
    let p: masklab::mask::Pattern = "4:8".parse().unwrap();
    for (ea, eb) in a.entries().iter().zip(b.entries()) {
        let (ra, rb) = (a.raw(ea).unwrap(), b.raw(eb).unwrap());
        if ea.name.ends_with("1.weight") || ea.name.ends_with("2.weight") {
            let keep: Vec<u8> = rb.chunks(2).map(|c| (c != [0, 0]) as u8).collect();
            let m = masklab::mask::Mask::new(ea.shape[0], ea.shape[1], keep).unwrap();
            assert!(m.is_transposable_nm(p).unwrap(), "{}", ea.name);
            assert_eq!(m.sparsity(), 0.5, "{}", ea.name);
            for (i, k) in m.keep().iter().enumerate() {
                let want: &[u8] = if *k == 1 {
                    &ra[2 * i..2 * i + 2]
                } else {
                    &[0, 0]
                };
                assert_eq!(&rb[2 * i..2 * i + 2], want, "{} element {i}", ea.name);
            }
        } else {
            assert_eq!(ra, rb, "{} copied byte for byte", ea.name);
        }
    }
    // Never over the input.
    let again = masklab(&[
        "convert",
        "--input",
        dir.to_str().unwrap(),
        "--output",
        dir.to_str().unwrap(),
        "--structure",
        "transposable:4:8",
    ]);
    assert_eq!(again.status.code(), Some(2));
}

/// N:M along `in` on a one-file f16 checkpoint: N of every M consecutive weights kept, as stored.
#[test]
fn nm_conversion_keeps_the_top_n_of_every_group() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("w.safetensors");
    let w = gaussian(4 * 8, 9);
    write_raw_safetensors(&f, &[("w", "F16", vec![4, 8], f16_bytes(&w))]);
    let out = tmp.path().join("p.safetensors");
    ok(&[
        "convert",
        "--input",
        f.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--structure",
        "nm:2:4",
    ]);
    let t = &masklab::io::read_tensors(out.to_str().unwrap()).unwrap()[0];
    for (g, orig) in t.data.chunks(4).zip(w.chunks(4)) {
        let stored: Vec<f32> = orig
            .iter()
            .map(|v| half::f16::from_f32(*v).to_f32())
            .collect();
        let mut order: Vec<usize> = (0..4).collect();
        order.sort_by(|&i, &j| stored[j].abs().total_cmp(&stored[i].abs()));
        for (rank, &i) in order.iter().enumerate() {
            let want = if rank < 2 { stored[i] } else { 0.0 };
            assert_eq!(g[i], want, "group {g:?} from {stored:?}");
        }
    }
}
