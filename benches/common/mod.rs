//! Inputs shared by the solver benches and `examples/exact_vs_greedy.rs` (which includes this
//! file by path), so that both time the same matrix.

use masklab::mask::Matrix;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

/// An n×n matrix of |N(0, 1)| draws (ChaCha8, seed 7).
pub fn gaussian_abs(n: usize) -> Matrix {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let data = (0..n * n)
        .map(|_| {
            let v: f64 = StandardNormal.sample(&mut rng);
            v.abs() as f32
        })
        .collect();
    Matrix::new(n, n, data).expect("square matrix")
}
