//! Sorting networks for [`super::fixed`]'s order statistics: Batcher's odd–even merge sort on
//! M = 2^k values, run for M lanes at once (one independent sort per lane).
//!
//! Problem: for each of M lanes, the values `x[0..M][lane]` in descending order (the warm start
//! needs each row's and each column's N-th and (N+1)-th largest score).
//! Guarantee: after [`sort_desc`], `x[r][lane]` is the lane's (r+1)-th largest value. Values, not
//! positions, move: equal values are interchangeable. No NaN may be passed.
//! Cost: the network's compare-exchanges (1, 5, 19, 63, 191 and 543 for M = 2, 4, …, 64), each
//! one max and one min of two M-lane rows: O(M² log² M) per M sorts, against O(M³) for ranking
//! every lane's values by counting. The rows are contiguous, so each compare-exchange is `M / 8`
//! (f32) or `M / 4` (f64) AVX2 instructions of each kind.
//! Source: K. E. Batcher, "Sorting networks and their applications", AFIPS 1968.

use crate::lanes::Lanes;

/// The largest network held: M = 64.
const MAX_PAIRS: usize = 543;

/// Batcher's odd–even merge sort network on `m` (a power of two, ≤ 64) inputs: its
/// compare-exchange pairs (i, j), i < j, in the order they run, and how many there are.
const fn batcher(m: usize) -> ([(u8, u8); MAX_PAIRS], usize) {
    let mut pairs = [(0u8, 0u8); MAX_PAIRS];
    let mut count = 0;
    let mut p = 1;
    while p < m {
        let mut k = p;
        while k >= 1 {
            let mut j = k % p;
            while j + k < m {
                let mut i = 0;
                while i < k && i + j + k < m {
                    if (i + j) / (2 * p) == (i + j + k) / (2 * p) {
                        pairs[count] = ((i + j) as u8, (i + j + k) as u8);
                        count += 1;
                    }
                    i += 1;
                }
                j += 2 * k;
            }
            k /= 2;
        }
        p *= 2;
    }
    (pairs, count)
}

/// The networks for M = 2, 4, …, 64, built at compile time.
static NETWORKS: [([(u8, u8); MAX_PAIRS], usize); 6] = [
    batcher(2),
    batcher(4),
    batcher(8),
    batcher(16),
    batcher(32),
    batcher(64),
];

/// The compare-exchange pairs of the network on M inputs (M = 2, 4, …, 64).
#[inline(always)]
fn pairs<const M: usize>() -> &'static [(u8, u8)] {
    let (pairs, count) = &NETWORKS[M.trailing_zeros() as usize - 1];
    &pairs[..*count]
}

/// Values a network sorts: the lane-wise compare-exchange of two rows by [`Lanes`].
pub(super) trait Sortable: Copy {
    /// Lane-wise `(max, min)` of `a` and `b`.
    fn exchange<L: Lanes, const M: usize>(
        lanes: L,
        a: &[Self; M],
        b: &[Self; M],
    ) -> ([Self; M], [Self; M]);
}

impl Sortable for f32 {
    #[inline(always)]
    fn exchange<L: Lanes, const M: usize>(
        lanes: L,
        a: &[f32; M],
        b: &[f32; M],
    ) -> ([f32; M], [f32; M]) {
        lanes.max_min_f32(a, b)
    }
}

impl Sortable for f64 {
    #[inline(always)]
    fn exchange<L: Lanes, const M: usize>(
        lanes: L,
        a: &[f64; M],
        b: &[f64; M],
    ) -> ([f64; M], [f64; M]) {
        lanes.max_min_f64(a, b)
    }
}

/// Sort every lane of `x` descending: afterwards `x[r][l]` is lane l's (r+1)-th largest value.
/// M must be a power of two from 2 to 64.
#[inline(always)]
pub(super) fn sort_desc<T: Sortable, L: Lanes, const M: usize>(lanes: L, x: &mut [[T; M]; M]) {
    const { assert!(M.is_power_of_two() && M >= 2 && M <= 64) };
    // A constant per M, so that the small networks (M ≤ 8: at most 19 pairs) unroll with
    // constant row indices and their rows stay in registers; larger ones loop over the table.
    if M <= 8 {
        let (pairs, count) = &const { batcher(M) };
        let mut k = 0;
        repeat32!({
            if k < *count {
                let (i, j) = (pairs[k].0 as usize, pairs[k].1 as usize);
                (x[i], x[j]) = T::exchange(lanes, &x[i], &x[j]);
            }
            k += 1;
        });
    } else {
        for &(i, j) in pairs::<M>() {
            let (i, j) = (i as usize, j as usize);
            (x[i], x[j]) = T::exchange(lanes, &x[i], &x[j]);
        }
    }
}

/// The block given, 32 times in a row.
macro_rules! repeat32 {
    ($b:block) => {
        repeat8!({
            $b;
            $b;
            $b;
            $b;
        });
    };
}
/// The block given, 8 times in a row.
macro_rules! repeat8 {
    ($b:block) => {
        $b;
        $b;
        $b;
        $b;
        $b;
        $b;
        $b;
        $b;
    };
}
use {repeat8, repeat32};

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn networks_have_batchers_sizes_and_sort_every_lane_of_zeros_and_ones() {
        // Batcher's odd–even merge sort sizes: (p² − p + 4)·2^(p−2) − 1 for M = 2^p.
        let sizes: Vec<usize> = NETWORKS.iter().map(|n| n.1).collect();
        assert_eq!(sizes, vec![1, 5, 19, 63, 191, 543]);
        // The 0–1 principle: a network that sorts every 0/1 input sorts every input. Lane l of
        // a 16-wide batch holds the bits of l + 16·batch, covering all 2^16 inputs.
        let mut x = [[0f32; 16]; 16];
        for batch in 0..(1usize << 16) / 16 {
            for (r, row) in x.iter_mut().enumerate() {
                for (l, v) in row.iter_mut().enumerate() {
                    *v = ((l + 16 * batch) >> r & 1) as f32;
                }
            }
            let ones: Vec<f32> = (0..16).map(|l| x.iter().map(|row| row[l]).sum()).collect();
            // The lanes the solver runs on this CPU.
            #[cfg(target_arch = "x86_64")]
            if let Some(avx2) = crate::lanes::Avx2::detect() {
                sort_desc(avx2, &mut x);
            } else {
                sort_desc(crate::lanes::Portable, &mut x);
            }
            #[cfg(not(target_arch = "x86_64"))]
            sort_desc(crate::lanes::Portable, &mut x);
            for l in 0..16 {
                let col: Vec<f32> = x.iter().map(|row| row[l]).collect();
                let want: Vec<f32> = (0..16)
                    .map(|r| ((r as f32) < ones[l]) as u8 as f32)
                    .collect();
                assert_eq!(col, want, "lane {l} of batch {batch}");
            }
        }
    }

    #[test]
    fn every_lane_matches_a_sort_with_ties_and_signed_zeros() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5); // fixed seed
        fn check<const M: usize>(rng: &mut impl Rng) {
            for _ in 0..20 {
                let mut x = [[0f64; M]; M];
                for v in x.iter_mut().flatten() {
                    *v = [rng.random_range(-1.0..1.0), 0.25, -0.0, 0.0][rng.random_range(0..4)];
                }
                let mut want: Vec<Vec<f64>> = (0..M)
                    .map(|l| x.iter().map(|row| row[l]).collect())
                    .collect();
                for w in &mut want {
                    w.sort_by(|a, b| b.total_cmp(a));
                }
                sort_desc(crate::lanes::Portable, &mut x);
                for (l, w) in want.iter().enumerate() {
                    for (r, &w) in w.iter().enumerate() {
                        // Equal as values (−0 = +0: the sign of a zero may differ).
                        assert!(x[r][l] == w, "M = {M}, lane {l}, rank {r}");
                    }
                }
            }
        }
        check::<2>(&mut rng);
        check::<4>(&mut rng);
        check::<8>(&mut rng);
        check::<32>(&mut rng);
        check::<64>(&mut rng);
    }
}
