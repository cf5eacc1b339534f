use super::*;

/// A 48×64 job with no minimum time, on two threads.
fn job(mask: MaskType, op: Op, batch: usize, seed: u64) -> GemmJob {
    GemmJob {
        mask,
        out: 48,
        inp: 64,
        batch,
        op,
        seed,
        threads: 2,
        min_seconds: 0.0,
        dtype: Dtype::F32,
    }
}

/// bf16: every op of the N:M and dense masks gives the dense product of the same rounded
/// values (to f32 rounding), below batch 16 the dense side reads its weights as bf16 (and
/// every such way gives the same product), the bytes count 2 per input value, and CSR and
/// BSR masks are refused naming the dtype.
#[test]
fn bf16_matches_dense_and_halves_the_bytes() -> Result<()> {
    for mask in ["dense", "nm:2:4", "transposable:4:8"] {
        for op in [Op::Forward, Op::Backward, Op::Update] {
            for batch in [1, 8, 32] {
                let mut j = job(mask.parse()?, op, batch, 6);
                j.dtype = Dtype::Bf16;
                if op == Op::Update && batch == 1 && mask != "dense" {
                    continue;
                }
                let r = measure(&j)?;
                assert!(r.max_rel_error < 1e-5, "{mask} {op:?} {batch}: {r:?}");
                assert_eq!(r.dtype, Dtype::Bf16);
                let (m, n, k) = Problem::new(&j)?.shape;
                assert_eq!(r.dense_bytes, 2 * (m * k + k * n) + 4 * m * n);
                let p = Problem::new(&j)?;
                let ways = dense_ways(&p, 2);
                assert_eq!(p.halves.is_some(), op != Op::Update && batch < 16);
                if p.halves.is_some() {
                    // The bf16 kernels on both layouts at batch 1 (dot products, row sums),
                    // one above; widening for gemm on both; one thread and two each.
                    assert_eq!(ways.len(), if batch == 1 { 8 } else { 6 }, "{ways:?}");
                    let mut first: Option<Vec<f32>> = None;
                    let mut scratch = Vec::new();
                    for w in ways {
                        let mut out = vec![f32::NAN; m * n];
                        p.dense(&mut out, w, &mut scratch)?;
                        let f = first.get_or_insert_with(|| out.clone());
                        for (x, y) in f.iter().zip(&out) {
                            assert!((x - y).abs() <= 1e-4 * (1.0 + x.abs()), "{w:?}");
                        }
                    }
                }
            }
        }
    }
    for mask in ["unstructured:0.5", "block:8:0.5"] {
        let mut j = job(mask.parse()?, Op::Forward, 1, 6);
        j.dtype = Dtype::Bf16;
        let e = measure(&j).map(|_| ()).unwrap_err().to_string();
        assert!(e.contains("bf16") && e.contains(mask), "{e}");
    }
    Ok(())
}

/// Every op and mask type gives the dense product (to f32 rounding), with the kernel it
/// should use: the compressed one except the backward of a plain N:M mask (no N:M Wᵀ).
#[test]
fn every_op_matches_dense_and_uses_the_right_kernel() -> Result<()> {
    for mask in ["dense", "nm:2:4", "transposable:2:4", "transposable:4:8"] {
        for op in [Op::Forward, Op::Backward, Op::Update] {
            for batch in [1, 8, 32] {
                let job = job(mask.parse()?, op, batch, 3);
                if op == Op::Update && batch == 1 && mask != "dense" {
                    assert!(measure(&job).is_err(), "batch 1 is no group of M");
                    continue;
                }
                let r = measure(&job)?;
                assert!(r.max_rel_error < 1e-5, "{mask} {op:?} {batch}: {r:?}");
                let want = match (mask, op) {
                    ("dense", _) | ("nm:2:4", Op::Backward) => "dense",
                    _ => "nm",
                };
                assert_eq!(r.kernel, want, "{mask} {op:?}");
                assert!(r.runs_per_side >= 5);
                // The L1 bound: where a tile kernel runs (width ≥ 16) on a vector path,
                // M/N times the probe's rate ratio; null elsewhere, never a made-up value.
                let width = if op == Op::Update { 64 } else { batch };
                let tiled = want != "dense"
                    && width >= 16
                    && crate::sparse::Isa::detect() != crate::sparse::Isa::Scalar;
                match (tiled, r.l1_limit, r.l1_operand_gflops, r.register_gflops) {
                    (true, Some(l), Some(l1), Some(reg)) => {
                        assert!((l - r.flop_limit * l1 / reg).abs() < 1e-9, "{r:?}");
                        assert!(l1 > 0.0 && reg > 0.0, "{r:?}");
                    }
                    (false, None, None, None) => {}
                    _ => panic!("{mask} {op:?} {batch}: L1 bound fields {r:?}"),
                }
            }
        }
    }
    Ok(())
}

/// Every way the dense reference can run (threads, orientation, weight layout) gives the
/// same product, so whichever the warm-up picks is the product the sparse side is checked
/// against; CSR and BSR masks use their kernels and update is refused for them.
#[test]
fn every_dense_way_gives_the_same_product_and_csr_bsr_match_it() -> Result<()> {
    for op in [Op::Forward, Op::Backward, Op::Update] {
        for batch in [1, 5, 32] {
            let job = job(MaskType::Dense, op, batch, 4);
            let p = Problem::new(&job)?;
            let (m, n, _) = p.shape;
            let mut first: Option<Vec<f32>> = None;
            let mut scratch = Vec::new();
            for alt in [false, true] {
                for swapped in [false, true] {
                    for threads in [1, 2] {
                        let mut out = vec![f32::NAN; m * n];
                        let way = DenseWay {
                            threads,
                            swapped,
                            alt,
                        };
                        p.dense(&mut out, way, &mut scratch)?;
                        match &first {
                            None => first = Some(out),
                            Some(f) => {
                                for (x, y) in f.iter().zip(&out) {
                                    assert!(
                                        (x - y).abs() <= 1e-4 * (1.0 + x.abs()),
                                        "{op:?} {batch} {way:?}"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    for (mask, kernel) in [("unstructured:0.5", "csr"), ("block:8:0.75", "bsr")] {
        for op in [Op::Forward, Op::Backward] {
            for batch in [1, 20] {
                let job = job(mask.parse()?, op, batch, 5);
                let r = measure(&job)?;
                assert_eq!(r.kernel, kernel);
                assert!(r.max_rel_error < 1e-5, "{mask} {op:?} {batch}: {r:?}");
            }
        }
        let job = job(mask.parse()?, Op::Update, 8, 5);
        assert!(measure(&job).is_err());
    }
    Ok(())
}
