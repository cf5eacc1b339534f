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
