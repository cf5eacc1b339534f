use super::*;
use rand::{Rng, SeedableRng};

#[test]
fn fixed_size_path_and_general_loop_keep_the_same_optimum() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11); // fixed seed
    for (n, m) in [(1, 2), (2, 4), (3, 8), (4, 8), (8, 16), (5, 16), (16, 32)] {
        let p = Pattern::new(n, m).unwrap();
        for ties in [false, true] {
            for _ in 0..40 {
                let a: Vec<f32> = (0..m * m)
                    .map(|_| {
                        if ties {
                            rng.random_range(0..3) as f32
                        } else {
                            rng.random()
                        }
                    })
                    .collect();
                let (mut fast, mut slow) = (vec![0u8; m * m], vec![0u8; m * m]);
                solve_block(&a, p, &mut fast);
                general(&a, p, &mut slow);
                // What CPUs without AVX2 run: the same fixed path, so the same mask.
                let mut portable = vec![0u8; m * m];
                block_solver(p, false)(&a, p, &mut portable);
                assert_eq!(portable, fast, "{p}: portable lanes");
                let kept =
                    |k: &[u8]| -> f64 { a.iter().zip(k).map(|(&s, &k)| s as f64 * k as f64).sum() };
                let (f, s) = (kept(&fast), kept(&slow));
                assert!(
                    (f - s).abs() <= 1e-9 * s.max(1.0),
                    "{p}: fixed {f} general {s}"
                );
                for i in 0..m {
                    let row: usize = (0..m).map(|j| fast[i * m + j] as usize).sum();
                    let col: usize = (0..m).map(|j| fast[j * m + i] as usize).sum();
                    assert_eq!((row, col), (n, n), "{p}: row/column {i}");
                }
            }
        }
    }
}

#[test]
fn prices_are_midpoints_of_the_sorted_rows_then_columns_and_m64_stays_exact() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12); // fixed seed
    // The N-th and (N+1)-th largest of `x`, averaged (the sort orders −0 below +0; the midpoint
    // compares equal either way).
    let midpoint = |x: &mut Vec<f32>, n: usize| {
        x.sort_by(|a, b| b.total_cmp(a));
        0.5 * (x[n - 1] + x[n])
    };
    for _ in 0..200 {
        // Zeros, ties and values that cancel to zero against the prices included.
        let a: Vec<f32> = (0..16 * 16)
            .map(|_| [rng.random_range(0.0..2.0), 0.5, 0.0, 1.0][rng.random_range(0..4)])
            .collect();
        let n = rng.random_range(1..16);
        let mut v = [0f32; 16];
        let at = crate::lanes::Portable.transpose_f32::<16>(&a);
        column_prices(crate::lanes::Portable, &a, &at, n, &mut v);
        // Each round at M = 16: row thresholds against v (first 0), then column thresholds
        // against them.
        let mut want = vec![0f32; 16];
        for _ in 0..price_rounds(16) {
            let u: Vec<f32> = (0..16)
                .map(|i| midpoint(&mut (0..16).map(|j| a[i * 16 + j] - want[j]).collect(), n))
                .collect();
            want = (0..16)
                .map(|j| midpoint(&mut (0..16).map(|i| a[i * 16 + j] - u[i]).collect(), n))
                .collect();
        }
        assert_eq!(v.to_vec(), want, "N = {n}");
    }
    // M = 64 runs three price rounds: the optimum is still the general loop's.
    for n in [8, 32] {
        let p = Pattern::new(n, 64).unwrap();
        for _ in 0..4 {
            let a: Vec<f32> = (0..64 * 64).map(|_| rng.random()).collect();
            let (mut fast, mut slow) = (vec![0u8; 64 * 64], vec![0u8; 64 * 64]);
            solve_block(&a, p, &mut fast);
            general(&a, p, &mut slow);
            let kept =
                |k: &[u8]| -> f64 { a.iter().zip(k).map(|(&s, &k)| s as f64 * k as f64).sum() };
            assert!(
                (kept(&fast) - kept(&slow)).abs() <= 1e-9 * kept(&slow),
                "{p}"
            );
        }
    }
}
