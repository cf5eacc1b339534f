use super::*;
use proptest::prelude::*;

/// A random N:M mask (some groups under-filled) and values, from a seed.
fn case(rows: usize, cols: usize, p: Pattern, seed: u64) -> (Vec<f32>, Vec<u8>) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let dense: Vec<f32> = (0..rows * cols)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let mut mask = vec![0u8; rows * cols];
    for g in mask.chunks_mut(p.m) {
        let keep = if rng.random_bool(0.1) {
            rng.random_range(0..=p.n)
        } else {
            p.n
        };
        let mut idx: Vec<usize> = (0..p.m).collect();
        for i in 0..keep {
            let j = rng.random_range(i..p.m);
            idx.swap(i, j);
            g[idx[i]] = 1;
        }
    }
    (dense, mask)
}

fn reference(
    dense: &[f32],
    mask: &[u8],
    rows: usize,
    cols: usize,
    b: &[f32],
    w: usize,
) -> Vec<f64> {
    let mut out = vec![0f64; rows * w];
    for r in 0..rows {
        for k in 0..cols {
            if mask[r * cols + k] != 0 {
                let a = dense[r * cols + k] as f64;
                for c in 0..w {
                    out[r * w + c] += a * b[k * w + c] as f64;
                }
            }
        }
    }
    out
}

fn isas() -> Vec<Isa> {
    [Isa::Scalar, Isa::Avx2, Isa::Avx512]
        .into_iter()
        .filter(|i| i.check().is_ok())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// The update GEMM's one-pass compression of `gᵀ` stores exactly what compressing the
    /// transposed copy under its non-zero mask stores: values, positions and fillers.
    #[test]
    fn transposed_compression_equals_compressing_the_transpose(
        (n, m) in prop::sample::select(vec![(1usize, 2usize), (2, 4), (1, 4), (3, 8), (8, 16), (5, 32)]),
        groups in 1usize..13,
        cols in 1usize..140,
        seed in 0u64..1000,
    ) {
        let p = Pattern { n, m };
        let rows = groups * m;
        // gᵀ: [cols, rows], N:M along its rows (some groups under-filled).
        let (dense, mask) = case(cols, rows, p, seed);
        let gt: Vec<f32> = dense.iter().zip(&mask).map(|(&v, &k)| if k != 0 { v } else { 0.0 }).collect();
        let mut g = vec![0f32; rows * cols];
        super::super::transpose(&gt, cols, rows, &mut g);
        let keep: Vec<u8> = gt.iter().map(|&v| u8::from(v != 0.0)).collect();
        let want = NmMatrix::compress(&gt, &keep, cols, rows, p).unwrap();
        // Every instruction set this CPU has (2:4 has its own AVX-512 path).
        for isa in isas() {
            let got = NmMatrix::compress_transposed_nonzero_on(isa, &g, rows, cols, p).unwrap();
            prop_assert_eq!((got.rows, got.cols, got.index_stride), (want.rows, want.cols, want.index_stride));
            prop_assert_eq!(&got.values, &want.values);
            prop_assert_eq!(&got.index, &want.index);
        }
    }
}

#[test]
fn transposed_compression_refuses_a_group_over_n() {
    // Three non-zeros in one group of a 2:4 pattern: column 1, rows 0..4 of 8; and past one
    // 16-value step of the AVX-512 path, column 2, rows 16..20 of 32.
    for (rows, col, r0, want) in [
        (8, 1, 0, "column 1, rows 0..4"),
        (32, 2, 16, "column 2, rows 16..20"),
    ] {
        let mut g = vec![0f32; rows * 3];
        for r in r0..r0 + 3 {
            g[r * 3 + col] = 1.0;
        }
        for isa in isas() {
            let err =
                NmMatrix::compress_transposed_nonzero_on(isa, &g, rows, 3, Pattern { n: 2, m: 4 })
                    .unwrap_err()
                    .to_string();
            assert!(err.contains(want), "{err}");
        }
    }
    let g = vec![0f32; 24];
    assert!(NmMatrix::compress_transposed_nonzero(&g, 6, 4, Pattern { n: 2, m: 4 }).is_err());
}

#[test]
fn wide_window_permutes_equal_the_dense_product() -> Result<()> {
    // 1:4 and 2:8 at batch 1 to 8 take the 64-float permute window (AVX-512); 4:8 the
    // 32-float one; 1:8 the gather. Rows long enough for many chunks, and lengths whose
    // last window would pass the row (the remainder runs plainly).
    for (n, m) in [(1, 4), (2, 8), (4, 8), (1, 8)] {
        let p = Pattern::new(n, m)?;
        for cols in [256, 64 * 3 + 8 * m, 16 * m] {
            let rows = 5;
            let (dense, mask) = case(rows, cols, p, (cols + m) as u64);
            let a = NmMatrix::compress(&dense, &mask, rows, cols, p)?;
            for width in 1..=8 {
                let b: Vec<f32> = (0..cols * width)
                    .map(|i| ((i * 31) % 97) as f32 / 50.0 - 1.0)
                    .collect();
                let want = reference(&dense, &mask, rows, cols, &b, width);
                for isa in isas() {
                    let mut out = vec![f32::NAN; rows * width];
                    a.matmul_with(isa, &b, width, &mut out)?;
                    for (g, e) in out.iter().zip(&want) {
                        assert!(
                            (*g as f64 - e).abs() <= 1e-4 * (1.0 + e.abs()),
                            "{isa:?} {p} {cols} {width}: {g} vs {e}"
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

/// A matrix with at least BLOCK_MAJOR_BYTES of values takes the block-major copy on the AVX-512
/// tiled path: the product equals the reference at tile widths with a masked tail and a second
/// tile, over a last K block shorter than the others and a row count no multiple of the row
/// group; a refill drops the copy, and the next products read the new values as stored.
#[test]
fn the_block_major_copy_gives_the_product_and_follows_a_refill() -> Result<()> {
    let p = Pattern::new(2, 4)?;
    let (rows, cols) = (530, 1000);
    let (w0, mask) = case(rows, cols, p, 11);
    let mut a = NmMatrix::compress(&w0, &mask, rows, cols, p)?;
    assert!(
        a.values.len() * 4 >= BLOCK_MAJOR_BYTES,
        "the case must be past the size"
    );
    let check = |a: &NmMatrix, w: &[f32], width: usize| -> Result<()> {
        let b: Vec<f32> = (0..cols * width)
            .map(|i| ((i * 7) % 23) as f32 / 11.0 - 1.0)
            .collect();
        let want = reference(w, &mask, rows, cols, &b, width);
        let mut out = vec![f32::NAN; rows * width];
        a.matmul(&b, width, &mut out)?;
        let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
        for (i, (&g, &x)) in out.iter().zip(&want).enumerate() {
            assert!(
                (g as f64 - x).abs() <= 1e-5 * scale,
                "width {width}, entry {i}: {g} against {x}"
            );
        }
        Ok(())
    };
    for width in [17, 130] {
        check(&a, &w0, width)?;
    }
    let avx512 = Isa::detect() == Isa::Avx512;
    assert_eq!(a.block_values.get().is_some(), avx512);
    let w1: Vec<f32> = w0.iter().map(|v| 0.5 - v).collect();
    let keep: Vec<f32> = mask.iter().map(|&k| f32::from(k)).collect();
    let map = a.slot_map(&keep, cols, 1)?;
    a.refill(&w1, &map)?;
    assert!(
        a.block_values.get().is_none(),
        "a refill drops the copy for good"
    );
    check(&a, &w1, 130)?;
    assert!(
        a.block_values.get().is_none(),
        "a refilled matrix makes no copy again"
    );
    Ok(())
}

#[test]
fn refill_through_a_slot_map_equals_compressing_again() -> Result<()> {
    // A row-major source and a transposed (strided, tiled order) one, over shapes that are
    // not whole 32×32 tiles: refilled values equal those of compressing the new matrix.
    for (n, m, rows, cols) in [(2, 4, 68, 44), (4, 8, 40, 96), (1, 4, 8, 8), (3, 8, 40, 16)] {
        let p = Pattern::new(n, m)?;
        let (w0, mask) = case(rows, cols, p, 5);
        let w1: Vec<f32> = w0.iter().map(|v| 2.0 * v + 0.25).collect();
        let keep: Vec<f32> = mask.iter().map(|&k| f32::from(k)).collect();
        let mut a = NmMatrix::compress(&w0, &mask, rows, cols, p)?;
        let map = a.slot_map(&keep, cols, 1)?;
        a.refill(&w1, &map)?;
        assert_eq!(
            a.values,
            NmMatrix::compress(&w1, &mask, rows, cols, p)?.values
        );
        // The transpose, N:M along the rows of the source: take a mask N:M along columns.
        let (wt0, mt) = case(cols, rows, p, 6);
        let src1: Vec<f32> = wt0.iter().map(|v| v - 1.0).collect();
        let mut msrc = vec![0u8; rows * cols];
        for (i, &k) in mt.iter().enumerate() {
            msrc[(i % rows) * cols + i / rows] = k;
        }
        let mut src1t = vec![0f32; rows * cols];
        crate::sparse::transpose(&src1, cols, rows, &mut src1t);
        let keep: Vec<f32> = msrc.iter().map(|&k| f32::from(k)).collect();
        let mut b = NmMatrix::compress(&wt0, &mt, cols, rows, p)?;
        let map = b.slot_map(&keep, 1, cols)?;
        b.refill(&src1t, &map)?;
        assert_eq!(
            b.values,
            NmMatrix::compress(&src1, &mt, cols, rows, p)?.values
        );
        assert!(b.refill(&src1t[1..], &map).is_err());
    }
    Ok(())
}

#[test]
fn positions_round_trip_and_a_full_group_is_refused() -> Result<()> {
    for (n, m) in [
        (1, 2),
        (2, 4),
        (1, 4),
        (4, 8),
        (2, 8),
        (8, 16),
        (16, 32),
        (3, 8),
    ] {
        let p = Pattern::new(n, m)?;
        let (dense, mask) = case(5, 4 * m, p, (n * 100 + m) as u64);
        let a = NmMatrix::compress(&dense, &mask, 5, 4 * m, p)?;
        let want: Vec<f32> = dense
            .iter()
            .zip(&mask)
            .map(|(&d, &k)| if k != 0 { d } else { 0.0 })
            .collect();
        assert_eq!(a.to_dense(), want, "{p}");
        assert_eq!(
            a.bytes(),
            5 * (4 * n) * 4 + 5 * (4 * n * index_bits(m)).div_ceil(8)
        );
    }
    let p = Pattern::new(2, 4)?;
    let e = NmMatrix::compress(&[1.0; 8], &[1, 1, 1, 0, 1, 1, 0, 0], 2, 4, p).unwrap_err();
    assert!(
        e.to_string().contains("row 0") && e.to_string().contains("keeps 3"),
        "{e}"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]
    /// Every path equals the dense masked product within 1e-5 relative (to the sum of
    /// |terms|), over patterns, shapes (groups not a multiple of the vector width) and
    /// widths of B (the matrix-vector path below 16, the tiled path above, tile remainders).
    #[test]
    fn every_path_equals_the_dense_masked_product(
        pi in 0usize..8,
        rows in 1usize..40,
        groups in 1usize..40,
        width in prop_oneof![1usize..=17, 60usize..=70, Just(32usize), Just(130usize), Just(160usize)],
        seed in 0u64..1000,
    ) {
        let (n, m) = [(1, 2), (2, 4), (1, 4), (4, 8), (2, 8), (8, 16), (16, 32), (3, 8)][pi];
        let p = Pattern::new(n, m).unwrap();
        let cols = groups * m;
        let (dense, mask) = case(rows, cols, p, seed);
        let a = NmMatrix::compress(&dense, &mask, rows, cols, p).unwrap();
        let b: Vec<f32> = (0..cols * width).map(|i| ((i * 7919 + seed as usize) % 2001) as f32 / 1000.0 - 1.0).collect();
        let want = reference(&dense, &mask, rows, cols, &b, width);
        // Scale of each output: Σ|a·b| over its terms.
        let mut scale = vec![0f64; rows * width];
        for r in 0..rows {
            for k in 0..cols {
                if mask[r * cols + k] != 0 {
                    for c in 0..width {
                        scale[r * width + c] += (dense[r * cols + k] as f64 * b[k * width + c] as f64).abs();
                    }
                }
            }
        }
        // B given by its transpose: the same packed tiles, so the same sums, bit for bit.
        let mut bt = vec![0f32; cols * width];
        super::super::transpose(&b, cols, width, &mut bt);
        for isa in isas() {
            let mut out = vec![f32::NAN; rows * width];
            a.matmul_with(isa, &b, width, &mut out).unwrap();
            for i in 0..out.len() {
                let err = (out[i] as f64 - want[i]).abs();
                prop_assert!(err <= 1e-5 * scale[i].max(1e-30), "{isa:?} {p} {rows}x{cols}·{width}: [{i}] {} vs {}", out[i], want[i]);
            }
            let mut out_t = vec![f32::NAN; rows * width];
            a.matmul_t_with(isa, &bt, width, &mut out_t).unwrap();
            prop_assert!(out.iter().zip(&out_t).all(|(x, y)| x.to_bits() == y.to_bits()), "{isa:?} {p} {rows}x{cols}·{width}: Bᵀ operand differs");
        }
        // Row ranges on this thread, B either way.
        let (r0, r1) = (rows / 3, rows);
        let mut part = vec![f32::NAN; (r1 - r0) * width];
        let mut part_t = vec![f32::NAN; (r1 - r0) * width];
        a.matmul_rows(&b, width, r0..r1, &mut part).unwrap();
        a.matmul_rows_t(&bt, width, r0..r1, &mut part_t).unwrap();
        prop_assert!(part.iter().zip(&part_t).all(|(x, y)| x.to_bits() == y.to_bits()));
        let mut full = vec![0f32; rows * width];
        a.matmul(&b, width, &mut full).unwrap();
        prop_assert!(part.iter().zip(&full[r0 * width..]).all(|(x, y)| x.to_bits() == y.to_bits()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, .. ProptestConfig::default() })]
    /// A bf16 matrix multiplies exactly as the f32 matrix of the same (bf16-rounded) values:
    /// the matrix–vector kernels read the bf16 copy, widen it and add in the same order, so
    /// every path gives the same bits; the tiled path reads the rounded f32 values. Its bytes
    /// count 2 per value, and a refill keeps both copies in step.
    #[test]
    fn bf16_values_give_the_f32_product_of_the_rounded_values(
        pi in 0usize..6,
        rows in 1usize..24,
        groups in 1usize..24,
        width in prop_oneof![1usize..=17, Just(40usize)],
        seed in 0u64..1000,
    ) {
        let (n, m) = [(2, 4), (1, 4), (4, 8), (8, 16), (16, 32), (3, 8)][pi];
        let p = Pattern::new(n, m).unwrap();
        let cols = groups * m;
        let (dense, mask) = case(rows, cols, p, seed);
        let rounded: Vec<f32> = dense.iter().map(|&x| crate::sparse::element::round_bf16(x)).collect();
        let a16 = NmMatrix::compress(&dense, &mask, rows, cols, p).unwrap().to_bf16();
        let a32 = NmMatrix::compress(&rounded, &mask, rows, cols, p).unwrap();
        prop_assert_eq!(a16.dtype(), Dtype::Bf16);
        prop_assert_eq!(a16.to_dense(), a32.to_dense());
        prop_assert_eq!(a32.bytes() - a16.bytes(), 2 * rows * (cols / m * n));
        let b: Vec<f32> = (0..cols * width).map(|i| ((i * 7919 + seed as usize) % 2001) as f32 / 1000.0 - 1.0).collect();
        for isa in isas() {
            let (mut x, mut y) = (vec![f32::NAN; rows * width], vec![f32::NAN; rows * width]);
            a16.matmul_with(isa, &b, width, &mut x).unwrap();
            a32.matmul_with(isa, &b, width, &mut y).unwrap();
            prop_assert!(x.iter().zip(&y).all(|(u, v)| u.to_bits() == v.to_bits()), "{isa:?} {p} {rows}x{cols}·{width}");
        }
        // Refilled from other values: the same as compressing those and rounding.
        let keep: Vec<f32> = mask.iter().map(|&k| k as f32).collect();
        let map = a16.slot_map(&keep, cols, 1).unwrap();
        let other: Vec<f32> = dense.iter().map(|x| x * -1.7).collect();
        let mut refilled = a16.clone();
        refilled.refill(&other, &map).unwrap();
        let want = NmMatrix::compress(&other, &mask, rows, cols, p).unwrap().to_bf16();
        prop_assert_eq!(refilled.to_dense(), want.to_dense());
        let b3: Vec<f32> = (0..cols * 3).map(|i| (i % 13) as f32 / 6.0 - 1.0).collect();
        let (mut x, mut y) = (vec![0f32; rows * 3], vec![0f32; rows * 3]);
        refilled.matmul(&b3, 3, &mut x).unwrap();
        want.matmul(&b3, 3, &mut y).unwrap();
        prop_assert_eq!(x, y);
    }
}
