use super::*;
use candle_core::{DType, Device};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

fn randn(shape: (usize, usize), seed: u64) -> Tensor {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f32> = (0..shape.0 * shape.1)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn layer(est: GradEstimator, custom: bool) -> SparseLinear {
    let w = Var::from_tensor(&randn((16, 32), 1)).unwrap();
    let b = Var::from_tensor(&randn((1, 16), 2).squeeze(0).unwrap()).unwrap();
    SparseLinear::new(w, b, est, custom, 7)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    a.sub(b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Loss `Σ y ⊙ r` for a fixed random `r`, so that `g = r`.
fn grads(l: &SparseLinear, x: &Var) -> (Tensor, Tensor, Tensor) {
    let y = l.forward(x.as_tensor()).unwrap();
    let r = randn(y.dims2().unwrap(), 3);
    let loss = y.mul(&r).unwrap().sum_all().unwrap();
    let mut g = loss.backward().unwrap();
    l.collect_grads(&mut g).unwrap();
    (
        g.get(x).unwrap().clone(),
        g.get(&l.weight).unwrap().clone(),
        g.get(&l.bias).unwrap().clone(),
    )
}

#[test]
fn dense_op_gradients_equal_autograd() {
    let x = Var::from_tensor(&randn((8, 32), 4)).unwrap();
    let ones = Mask::new(16, 32, vec![1; 16 * 32]).unwrap();
    let mut custom = layer(GradEstimator::Dense, true);
    custom.set_mask(Some(&ones)).unwrap();
    let plain = layer(GradEstimator::Dense, false);
    let (dx1, dw1, db1) = grads(&custom, &x);
    let (dx2, dw2, db2) = grads(&plain, &x);
    assert!(max_diff(&dx1, &dx2) < 1e-5);
    assert!(max_diff(&dw1, &dw2) < 1e-5);
    assert!(max_diff(&db1, &db2) < 1e-5);
}

#[test]
fn masked_op_gradients_equal_masked_straight_through_autograd() {
    let x = Var::from_tensor(&randn((8, 32), 4)).unwrap();
    let mut custom = layer(GradEstimator::Dense, true);
    let p: Pattern = "4:8".parse().unwrap();
    let mask =
        crate::solvers::greedy::transposable_mask(&custom.weight_scores().unwrap(), p).unwrap();
    custom.set_mask(Some(&mask)).unwrap();
    let (dx1, dw1, _) = grads(&custom, &x);
    // Autograd of x·(W⊙m)ᵀ, taking d/d(W⊙m) as the straight-through gradient of W.
    let wm = Var::from_tensor(&custom.masked_weight().unwrap()).unwrap();
    let y = x
        .as_tensor()
        .matmul(&wm.as_tensor().t().unwrap())
        .unwrap()
        .broadcast_add(custom.bias.as_tensor())
        .unwrap();
    let r = randn(y.dims2().unwrap(), 3);
    let gs = y.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(max_diff(&dx1, gs.get(&x).unwrap()) < 1e-5);
    assert!(max_diff(&dw1, gs.get(&wm).unwrap()) < 1e-5);
    // SR-STE adds exactly λ·(1−m)⊙W.
    let lam = 0.25;
    let custom = custom.with_srste(lam);
    let (_, dw3, _) = grads(&custom, &x);
    let w = custom.weight.as_tensor();
    let expect = w
        .sub(&custom.masked_weight().unwrap())
        .unwrap()
        .affine(lam, 0.0)
        .unwrap();
    assert!(max_diff(&dw3.sub(&dw1).unwrap(), &expect) < 1e-5);
}

#[test]
fn operands_of_all_three_gemms_are_nm() {
    let x = Var::from_tensor(&randn((16, 32), 4)).unwrap();
    let p: Pattern = "4:8".parse().unwrap();
    let mut l = layer(
        GradEstimator::Nm(estimators::by_name("mvue").unwrap(), "2:4".parse().unwrap()),
        true,
    );
    let mask = crate::solvers::greedy::transposable_mask(&l.weight_scores().unwrap(), p).unwrap();
    l.set_mask(Some(&mask)).unwrap();
    grads(&l, &x);
    let fwd = support(&l.masked_weight().unwrap()).unwrap();
    assert!(fwd.is_nm(p).unwrap(), "forward W⊙m is 4:8 along in");
    assert!(fwd.transpose().is_nm(p).unwrap(), "(W⊙m)ᵀ is 4:8");
    let rec = l.recorded();
    let pruned = support(&rec.pruned.as_ref().unwrap().t().unwrap()).unwrap();
    let report = pruned.nm_report("2:4".parse().unwrap()).unwrap();
    assert_eq!(
        report.over, 0,
        "est(g) keeps at most 2 of 4 along the batch axis"
    );
    // g has no zeros, so every group keeps exactly 2.
    assert_eq!(report.under, 0);
}

#[test]
fn compressed_gemms_equal_masked_dense() {
    // Transposable 4:8 weights and an MVUE 2:4 update: the compressed forward, backward data
    // and update GEMMs give the masked-dense outputs and gradients (same seed, same draws),
    // and so does plain N:M, whose backward stays dense. Batch 24: three groups of 8.
    let x = Var::from_tensor(&randn((24, 32), 4)).unwrap();
    let est = GradEstimator::Nm(estimators::by_name("mvue").unwrap(), "2:4".parse().unwrap());
    let p: Pattern = "4:8".parse().unwrap();
    for (kind, expect) in [
        (Structure::Transposable(p), (true, true, true)),
        (Structure::Nm(p), (true, false, true)),
    ] {
        let build = |gemm| {
            let mut l = layer(est, true);
            l.set_gemm(gemm, kind);
            let scores = l.weight_scores().unwrap();
            let mask = match kind {
                Structure::Nm(p) => Mask::nm(&scores, p).unwrap(),
                _ => crate::solvers::greedy::transposable_mask(&scores, p).unwrap(),
            };
            l.set_mask(Some(&mask)).unwrap();
            l
        };
        let (sparse, dense) = (build(GemmMode::Sparse), build(GemmMode::MaskedDense));
        assert_eq!(sparse.compressed_gemms(), expect, "{kind}");
        assert_eq!(dense.compressed_gemms(), (false, false, false));
        let y1 = sparse.forward_relu(x.as_tensor()).unwrap();
        let y2 = dense.forward_relu(x.as_tensor()).unwrap();
        assert!(max_diff(&y1, &y2) < 1e-5, "{kind}: forward");
        let (dx1, dw1, db1) = grads(&sparse, &x);
        let (dx2, dw2, db2) = grads(&dense, &x);
        assert!(max_diff(&dx1, &dx2) < 1e-5, "{kind}: dx");
        assert!(max_diff(&dw1, &dw2) < 1e-5, "{kind}: dW");
        assert!(max_diff(&db1, &db2) < 1e-5, "{kind}: db");
        assert!(
            max_diff(&dw1, &dw1.zeros_like().unwrap()) > 1e-2,
            "{kind}: dW is not 0"
        );
    }
    // Refill: after the weights move, the compressed forward follows them (same mask).
    let mut l = layer(GradEstimator::Dense, true);
    l.set_gemm(GemmMode::Sparse, Structure::Transposable(p));
    let mask = crate::solvers::greedy::transposable_mask(&l.weight_scores().unwrap(), p).unwrap();
    l.set_mask(Some(&mask)).unwrap();
    l.weight
        .set(&l.weight.as_tensor().affine(2.0, 0.5).unwrap())
        .unwrap();
    let y = l.forward(x.as_tensor()).unwrap();
    let expect = x
        .as_tensor()
        .matmul(&l.masked_weight().unwrap().t().unwrap())
        .unwrap()
        .broadcast_add(l.bias.as_tensor())
        .unwrap();
    assert!(max_diff(&y, &expect) < 1e-4);
}

#[test]
fn mvue_weight_gradient_is_unbiased() {
    // E[dW] = gᵀx: mean of K draws within 5 standard errors, elementwise.
    let x = Var::from_tensor(&randn((8, 32), 4)).unwrap();
    let est = GradEstimator::Nm(estimators::by_name("mvue").unwrap(), "2:4".parse().unwrap());
    let l = layer(est, true);
    let (_, exact, _) = grads(&layer(GradEstimator::Dense, true), &x);
    let k = 4000usize;
    let n = 16 * 32;
    let (mut sum, mut sq) = (vec![0f64; n], vec![0f64; n]);
    for _ in 0..k {
        let (_, dw, _) = grads(&l, &x);
        let v = dw
            .to_dtype(DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        for i in 0..n {
            sum[i] += v[i];
            sq[i] += v[i] * v[i];
        }
    }
    let e = exact.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mut worst = 0f64;
    for i in 0..n {
        let mean = sum[i] / k as f64;
        let var = (sq[i] / k as f64 - mean * mean).max(0.0);
        let se = (var / k as f64).sqrt().max(1e-6);
        worst = worst.max((mean - e[i] as f64).abs() / se);
    }
    assert!(worst < 5.0, "worst deviation {worst} standard errors");
    // And the draws really vary (the estimator is random, not the identity).
    let (_, a, _) = grads(&l, &x);
    let (_, b, _) = grads(&l, &x);
    assert!(max_diff(&a, &b) > 1e-3);
}

#[test]
fn a_batch_past_max_compressed_rows_runs_masked_dense_and_says_so() {
    // An im2col-wide operand (more rows than MAX_COMPRESSED_ROWS, whole groups of 8): all three
    // GEMMs run masked-dense — same outputs and gradients as the masked-dense layer — and the
    // layer reports them so; a short batch afterwards runs compressed again.
    let est = GradEstimator::Nm(estimators::by_name("mvue").unwrap(), "2:4".parse().unwrap());
    let p: Pattern = "4:8".parse().unwrap();
    let build = |gemm| {
        let mut l = layer(est, true);
        l.set_gemm(gemm, Structure::Transposable(p));
        let mask =
            crate::solvers::greedy::transposable_mask(&l.weight_scores().unwrap(), p).unwrap();
        l.set_mask(Some(&mask)).unwrap();
        l
    };
    let (sparse, dense) = (build(GemmMode::Sparse), build(GemmMode::MaskedDense));
    assert_eq!(
        sparse.ran_compressed(),
        (true, true, true),
        "as configured before a call"
    );
    let wide = MAX_COMPRESSED_ROWS + 8;
    let x = Var::from_tensor(&randn((wide, 32), 5)).unwrap();
    let (dx1, dw1, _) = grads(&sparse, &x);
    let (dx2, dw2, _) = grads(&dense, &x);
    assert!(max_diff(&dx1, &dx2) < 1e-5 && max_diff(&dw1, &dw2) < 1e-4);
    assert_eq!(sparse.ran_compressed(), (false, false, false));
    let x = Var::from_tensor(&randn((24, 32), 6)).unwrap();
    grads(&sparse, &x);
    assert_eq!(sparse.ran_compressed(), (true, true, true));
}
