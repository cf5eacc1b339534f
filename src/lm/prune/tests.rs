use super::*;
use crate::lm::model::Config;
use crate::mask::Pattern;
use candle_core::Device;

fn tiny() -> Config {
    Config::tiny(64, 96)
}

fn calib() -> Vec<Vec<u32>> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    (0..16)
        .map(|_| (0..48).map(|_| rng.random_range(0..96)).collect())
        .collect()
}

fn run(method: Method, kind: Structure, solver: &str) -> (Llama, Vec<ProjReport>) {
    let mut m = Llama::random(tiny(), 21, &Device::Cpu).unwrap();
    let spec = PruneSpec {
        method,
        kind,
        solver: crate::solvers::by_name(solver).unwrap(),
        seed: 0,
        batch: 4,
    };
    let r = prune(&mut m, &calib(), &spec, &mut |_, _| {}).unwrap();
    (m, r)
}

#[test]
fn sparsegpt_reconstructs_every_projection_at_least_as_well_as_wanda_and_magnitude() {
    for kind in [
        Structure::Unstructured(0.5),
        Structure::Nm(Pattern { n: 2, m: 4 }),
    ] {
        let (_, sg) = run(Method::SparseGpt, kind, "exact");
        let (_, wa) = run(Method::Wanda, kind, "exact");
        let (_, mg) = run(Method::Magnitude, kind, "exact");
        assert_eq!(sg.len(), 14);
        for ((s, w), m) in sg.iter().zip(&wa).zip(&mg) {
            assert!(s.structure_ok && w.structure_ok && m.structure_ok);
            assert!(s.rel_error > 0.0);
            assert!(
                s.rel_error <= w.rel_error && s.rel_error <= m.rel_error,
                "{kind:?} layer {} {}: sparsegpt {} wanda {} magnitude {}",
                s.layer,
                s.proj,
                s.rel_error,
                w.rel_error,
                m.rel_error
            );
        }
    }
}

#[test]
fn alps_reconstructs_every_projection_better_than_wanda_and_magnitude() {
    for kind in [
        Structure::Nm(Pattern { n: 2, m: 4 }),
        Structure::Transposable(Pattern { n: 2, m: 4 }),
    ] {
        let (_, al) = run(Method::Alps, kind, "exact");
        let (_, wa) = run(Method::Wanda, kind, "exact");
        let (_, mg) = run(Method::Magnitude, kind, "exact");
        assert_eq!(al.len(), 14);
        for ((a, w), m) in al.iter().zip(&wa).zip(&mg) {
            assert!(a.structure_ok && (a.sparsity - 0.5).abs() < 0.02);
            assert!(
                a.rel_error > 0.0 && a.rel_error < w.rel_error && a.rel_error < m.rel_error,
                "{kind:?} layer {} {}: alps {} wanda {} magnitude {}",
                a.layer,
                a.proj,
                a.rel_error,
                w.rel_error,
                m.rel_error
            );
        }
    }
}

#[test]
fn transposable_masks_hold_per_tile_and_nothing_else_changes() {
    let p = Pattern { n: 2, m: 4 };
    let dense = Llama::random(tiny(), 21, &Device::Cpu).unwrap();
    for method in [Method::Wanda, Method::SparseGpt] {
        let (m, r) = run(method, Structure::Transposable(p), "greedy");
        for rep in &r {
            assert!(rep.structure_ok, "{method} {} {}", rep.layer, rep.proj);
            assert!((rep.sparsity - 0.5).abs() < 0.02, "{}", rep.sparsity);
            let gap = rep.kept_gap.expect("transposable rows report a kept_gap");
            assert!((0.0..0.2).contains(&gap), "{gap}");
        }
        // Embeddings, norms and the head are untouched.
        let same = |a: &Tensor, b: &Tensor| to_vec2(a).unwrap() == to_vec2(b).unwrap();
        assert!(same(&m.embed, &dense.embed) && same(&m.lm_head, &dense.lm_head));
        assert!(same(&m.norm, &dense.norm));
        for (a, b) in m.layers.iter().zip(&dense.layers) {
            assert!(same(&a.attn_norm, &b.attn_norm) && same(&a.mlp_norm, &b.mlp_norm));
        }
    }
    // The exact solver has no gap.
    let (_, r) = run(Method::Wanda, Structure::Transposable(p), "exact");
    assert!(r.iter().all(|x| x.kept_gap == Some(0.0)));
}

#[test]
fn dense_structure_changes_nothing() {
    let dense = Llama::random(tiny(), 21, &Device::Cpu).unwrap();
    let (m, r) = run(Method::SparseGpt, Structure::Dense, "exact");
    assert!(r.iter().all(|x| x.rel_error == 0.0 && x.sparsity < 0.01));
    for (a, b) in m.layers.iter().zip(&dense.layers) {
        for p in Proj::ALL {
            assert_eq!(to_vec2(a.weight(p)).unwrap(), to_vec2(b.weight(p)).unwrap());
        }
    }
}

#[test]
fn the_streamed_perplexities_equal_whole_model_ones_and_nothing_is_kept() {
    let dev = Device::Cpu;
    let dense = Llama::random(tiny(), 5, &dev).unwrap();
    let eval: Vec<Vec<u32>> = (0..3)
        .map(|w| (0..12).map(|i| ((w * 31 + i * 7) % 96) as u32).collect())
        .collect();
    let spec = PruneSpec {
        method: Method::Wanda,
        kind: Structure::Nm(Pattern { n: 2, m: 4 }),
        solver: crate::solvers::SolverRef::Builtin(&crate::solvers::exact::Exact),
        seed: 0,
        batch: 2,
    };
    let mut outer = dense.clone();
    outer.layers.clear();
    let (mut pruned_layers, mut asked) = (Vec::new(), Vec::new());
    let outcome = prune_layers(
        &outer,
        &mut |l| {
            asked.push(l);
            Ok(dense.layers[l].clone())
        },
        &calib(),
        Some(Evaluation {
            windows: &eval,
            dense: true,
        }),
        &spec,
        &mut |l, layer| {
            pruned_layers.push((l, layer));
            Ok(())
        },
        &mut |_, _| {},
    )
    .unwrap();
    // Each layer is asked for once, in order, and handed on once.
    assert_eq!(asked, vec![0, 1]);
    assert_eq!(
        pruned_layers.iter().map(|p| p.0).collect::<Vec<_>>(),
        [0, 1]
    );
    let whole_dense = crate::lm::corpus::perplexity(&dense, &eval, &mut |_| {}).unwrap();
    assert_eq!(outcome.dense, Some(whole_dense));
    let mut pruned = outer.clone();
    pruned.layers = pruned_layers.into_iter().map(|p| p.1).collect();
    let whole_pruned = crate::lm::corpus::perplexity(&pruned, &eval, &mut |_| {}).unwrap();
    assert_eq!(outcome.pruned, Some(whole_pruned));
    assert_ne!(whole_pruned, whole_dense);
    // The in-place form prunes to the same weights.
    let mut inplace = dense.clone();
    prune(&mut inplace, &calib(), &spec, &mut |_, _| {}).unwrap();
    for (a, b) in inplace.layers.iter().zip(&pruned.layers) {
        for p in Proj::ALL {
            let (a, b) = (to_vec2(a.weight(p)).unwrap(), to_vec2(b.weight(p)).unwrap());
            assert_eq!(a, b);
        }
    }
    // An outer model alone has no forward.
    assert!(crate::lm::corpus::perplexity(&outer, &eval, &mut |_| {}).is_err());
}

/// The Gram matrix multiplied by blocks above the diagonal equals the full `Σ XᵀX`, for inputs
/// that split into blocks and inputs that do not (100): in f32 by the in-place CPU gemm path
/// (384 = 3 × 128, 768 = 6 × 128), in f64 by candle's block products (384 = 2 × 192,
/// 768 = 3 × 256).
#[test]
fn gram_by_blocks_equals_the_full_product() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    for (dtype, sizes) in [
        (DType::F32, [(384, 3), (768, 6), (100, 1)]),
        (DType::F64, [(384, 2), (768, 3), (100, 1)]),
    ] {
        for (n, blocks) in sizes {
            let batches: Vec<Tensor> = (0..2)
                .map(|_| {
                    let v: Vec<f32> = (0..40 * n).map(|_| rng.random::<f32>() - 0.5).collect();
                    Tensor::from_vec(v, (40, n), &Device::Cpu)
                        .and_then(|t| t.to_dtype(dtype))
                        .unwrap()
                })
                .collect();
            let mut gram = Gram::default();
            for x in &batches {
                gram.add(x).unwrap();
            }
            assert_eq!(
                (gram.nb, gram.cpu.is_empty()),
                (blocks, dtype == DType::F64)
            );
            let got = to_vec2(&gram.assemble().unwrap().unwrap()).unwrap();
            let x = Tensor::cat(&batches, 0).unwrap();
            let want = to_vec2(&x.t().unwrap().matmul(&x).unwrap()).unwrap();
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "n = {n}: worst relative difference {worst}");
            // Symmetric to the bit: each off-diagonal block is written to both triangles.
            for i in 0..n {
                for j in 0..i {
                    assert_eq!(got[i * n + j], got[j * n + i]);
                }
            }
        }
    }
}
