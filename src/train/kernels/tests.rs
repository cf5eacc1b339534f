use super::*;
use candle_core::{D, Device, Var};

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    a.sub(b)
        .and_then(|d| d.abs()?.flatten_all()?.max(D::Minus1)?.to_scalar::<f32>())
        .unwrap()
}

/// im2col by candle ops (narrow, stack, permute), the reference.
fn im2col_ref(x: &Tensor, k: usize, s: usize, pad: usize) -> Tensor {
    let (b, c, h, w) = x.dims4().unwrap();
    let x = x
        .pad_with_zeros(2, pad, pad)
        .unwrap()
        .pad_with_zeros(3, pad, pad)
        .unwrap();
    let g = ConvGeometry {
        b,
        c,
        h,
        w,
        k,
        stride: s,
        pad,
    };
    let (ho, wo) = g.out_hw();
    let mut cols = Vec::new();
    for i in 0..k {
        for j in 0..k {
            let mut rows = Vec::new();
            for oh in 0..ho {
                let mut line = Vec::new();
                for ow in 0..wo {
                    line.push(
                        x.narrow(2, oh * s + i, 1)
                            .unwrap()
                            .narrow(3, ow * s + j, 1)
                            .unwrap(),
                    );
                }
                rows.push(Tensor::cat(&line, 3).unwrap());
            }
            cols.push(Tensor::cat(&rows, 2).unwrap());
        }
    }
    Tensor::stack(&cols, 2)
        .unwrap()
        .permute((0, 3, 4, 1, 2))
        .unwrap()
        .reshape((b * ho * wo, c * k * k))
        .unwrap()
}

#[test]
fn im2col_and_its_backward_equal_candle_ops() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    for (k, s, pad) in [(3, 1, 1), (3, 2, 1), (1, 2, 0), (5, 1, 2), (5, 1, 0)] {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 9, 7), &dev)?)?;
        let ours = im2col(x.as_tensor(), k, s, pad)?;
        let theirs = im2col_ref(x.as_tensor(), k, s, pad);
        assert_eq!(ours.dims(), theirs.dims(), "k={k} s={s} pad={pad}");
        assert!(max_diff(&ours, &theirs) < 1e-6);
        // Backward of Σ r ⊙ cols for a fixed r: col2im is the adjoint.
        let r = Tensor::randn(0f32, 1.0, ours.dims(), &dev)?;
        let g1 = ours.mul(&r)?.sum_all()?.backward()?;
        let g2 = theirs.mul(&r)?.sum_all()?.backward()?;
        assert!(max_diff(g1.get(&x).unwrap(), g2.get(&x).unwrap()) < 1e-5);
    }
    Ok(())
}

#[test]
fn relu_max_pool_and_its_backward_equal_candle_ops() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let (b, h, w, c) = (2, 6, 5, 3);
    // Rounded values make ties inside windows likely; the first maximum takes the gradient.
    let y0 = (Tensor::randn(0f32, 2.0, (b * h * w, c), &dev)?.round()? * 0.5)?;
    let y = Var::from_tensor(&y0)?;
    let ours = relu_max_pool2(y.as_tensor(), b, h, w)?;
    let nchw = y
        .as_tensor()
        .reshape((b, h, w, c))?
        .permute((0, 3, 1, 2))?
        .contiguous()?;
    let theirs = nchw.max_pool2d(2)?.relu()?;
    assert_eq!(ours.dims(), &[b, c, h / 2, w / 2]);
    assert!(max_diff(&ours, &theirs) < 1e-6);
    let r = Tensor::randn(0f32, 1.0, ours.dims(), &dev)?;
    let g1 = ours.mul(&r)?.sum_all()?.backward()?;
    let g1 = g1.get(&y).unwrap();
    // Reference gradient by hand: the first maximum of each window, when positive.
    let yv = y0.to_vec2::<f32>()?;
    let rv = r.flatten_all()?.to_vec1::<f32>()?;
    let mut want = vec![vec![0f32; c]; b * h * w];
    for n in 0..b {
        for i in 0..h / 2 {
            for j in 0..w / 2 {
                for ch in 0..c {
                    let cand = [(0, 0), (0, 1), (1, 0), (1, 1)]
                        .map(|(dy, dx)| (n * h + 2 * i + dy) * w + 2 * j + dx);
                    let mut best = cand[0];
                    for &q in &cand[1..] {
                        if yv[q][ch] > yv[best][ch] {
                            best = q;
                        }
                    }
                    if yv[best][ch] > 0.0 {
                        want[best][ch] = rv[((n * c + ch) * (h / 2) + i) * (w / 2) + j];
                    }
                }
            }
        }
    }
    let want = Tensor::new(want, &dev)?;
    assert!(max_diff(g1, &want) < 1e-6);
    Ok(())
}

#[test]
fn gemm_split_over_threads_equals_the_naive_product() -> candle_core::Result<()> {
    // Large enough to be split (m·n·k ≥ 2^18) in a pool of 3 threads (uneven parts), along the
    // rows (m ≥ n) and along the columns (n > m), with a transposed right operand and a bias
    // epilogue, as the linear layer's forward uses it.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .expect("pool");
    for (m, n, k) in [(67, 61, 64), (61, 97, 64), (5, 7, 0)] {
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 8.0)
            .collect();
        let bt: Vec<f32> = (0..n * k)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) / 4.0)
            .collect();
        let bias: Vec<f32> = (0..n).map(|j| (j % 3) as f32 - 1.0).collect();
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let add_bias = |c0: usize, row: &mut [f32]| {
            calls.fetch_add(row.len(), std::sync::atomic::Ordering::Relaxed);
            row.iter_mut().zip(&bias[c0..]).for_each(|(v, b)| *v += b);
        };
        let lhs = Operand {
            data: &a,
            rs: k,
            cs: 1,
        };
        let rhs = Operand {
            data: &bt,
            rs: 1,
            cs: k,
        };
        let dst = pool.install(|| gemm_split((m, n, k), lhs, rhs, Some(&add_bias)))?;
        assert_eq!(dst.len(), m * n);
        // The epilogue saw every value exactly once.
        assert_eq!(calls.into_inner(), m * n);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = bias[j] + (0..k).map(|t| a[i * k + t] * bt[j * k + t]).sum::<f32>();
                assert!((dst[i * n + j] - want).abs() < 1e-3, "({i}, {j})");
            }
        }
        // Too-small operands are an error, not a read out of bounds.
        if k > 0 {
            let short = Operand {
                data: &a[..10],
                rs: k,
                cs: 1,
            };
            assert!(gemm_split((m, n, k), short, rhs, None).is_err());
        }
    }
    Ok(())
}

#[test]
fn sgd_update_equals_the_formula() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let w = Tensor::new(&[1f32, -2.0, 0.5], &dev)?;
    let mut v = vec![0.1f32, 0.0, -0.3];
    let g = Tensor::new(&[0.2f32, 0.4, -1.0], &dev)?;
    sgd_update(&w, &mut v, &g, 0.5, 0.9, 0.1)?;
    let (w0, v0, g0) = ([1f32, -2.0, 0.5], [0.1f32, 0.0, -0.3], [0.2f32, 0.4, -1.0]);
    let vv: Vec<f32> = (0..3)
        .map(|i| 0.9 * v0[i] + (g0[i] + 0.1 * w0[i]))
        .collect();
    let ww: Vec<f32> = (0..3).map(|i| w0[i] - 0.5 * vv[i]).collect();
    assert_eq!(v, vv);
    assert_eq!(w.to_vec1::<f32>()?, ww);
    Ok(())
}
