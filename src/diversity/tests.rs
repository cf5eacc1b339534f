use super::*;
use crate::mask::Mask;
use crate::mask::Structure;

fn p(n: usize, m: usize) -> Pattern {
    Pattern::new(n, m).unwrap()
}

#[test]
fn known_transposable_counts() {
    assert_eq!(
        transposable_tile_count(p(2, 4)).unwrap(),
        BigUint::from(90u32)
    );
    assert_eq!(
        transposable_tile_count(p(4, 8)).unwrap(),
        BigUint::from(116_963_796_250u64)
    );
    // OEIS A001501 (3 ones per row and column): 6x6 → 297200.
    assert_eq!(
        transposable_tile_count(p(3, 6)).unwrap(),
        BigUint::from(297_200u32)
    );
    // Permutation matrices: M!.
    assert_eq!(transposable_tile_count(p(1, 7)).unwrap(), factorial(7));
    assert_eq!(transposable_tile_count(p(6, 7)).unwrap(), factorial(7));
}

#[test]
fn moduli_are_prime() {
    fn is_prime(n: u64) -> bool {
        let mulmod = |a: u64, b: u64| (a as u128 * b as u128 % n as u128) as u64;
        let powmod = |mut a: u64, mut e: u64| {
            let mut r = 1u64;
            while e > 0 {
                if e & 1 == 1 {
                    r = mulmod(r, a);
                }
                a = mulmod(a, a);
                e >>= 1;
            }
            r
        };
        let (mut d, mut s) = (n - 1, 0);
        while d % 2 == 0 {
            d /= 2;
            s += 1;
        }
        // These bases are a deterministic Miller–Rabin test for all 64-bit n.
        [2u64, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37]
            .iter()
            .all(|&a| {
                let mut x = powmod(a, d);
                if x == 1 || x == n - 1 {
                    return true;
                }
                for _ in 1..s {
                    x = mulmod(x, x);
                    if x == n - 1 {
                        return true;
                    }
                }
                false
            })
    }
    assert!(!is_prime(561) && is_prime(1_000_000_007));
    assert!(MODULI.iter().all(|&q| is_prime(q)));
}

/// Count all 0/1 masks of a rows×cols tensor that a validator accepts with exactly N kept.
fn brute_force(rows: usize, cols: usize, accept: impl Fn(&Mask) -> bool) -> u64 {
    let t = rows * cols;
    (0u64..1 << t)
        .filter(|bits| {
            let keep = (0..t).map(|i| ((bits >> i) & 1) as u8).collect();
            accept(&Mask::new(rows, cols, keep).unwrap())
        })
        .count() as u64
}

#[test]
fn nm_and_transposable_counts_match_brute_force_for_every_m_up_to_4() -> Result<()> {
    for m in 1..=4 {
        for n in 1..=m {
            let pat = p(n, m);
            // N:M over a 2×M tensor (two groups) and a 1×2M tensor.
            for (rows, cols) in [(2, m), (1, 2 * m)] {
                let want = brute_force(rows, cols, |k| {
                    let r = k.nm_report(pat).unwrap();
                    r.over == 0 && r.under == 0
                });
                let got = diversity(Structure::Nm(pat), rows, cols)?;
                assert_eq!(
                    got.exact,
                    Some(want.to_string()),
                    "nm {pat} on {rows}x{cols}"
                );
            }
            // Transposable over one M×M tile.
            let want = brute_force(m, m, |k| {
                let r = k.transposable_report(pat).unwrap();
                r.over == 0 && r.under == 0
            });
            let got = diversity(Structure::Transposable(pat), m, m)?;
            assert_eq!(got.exact, Some(want.to_string()), "transposable {pat}");
            assert!((got.log10 - (want as f64).log10()).abs() < 1e-9);
        }
    }
    // Two 2×2 tiles side by side: the count squares.
    let want = brute_force(2, 4, |k| {
        let r = k.transposable_report(p(1, 2)).unwrap();
        r.over == 0 && r.under == 0
    });
    assert_eq!(want, 4);
    assert_eq!(
        diversity(Structure::Transposable(p(1, 2)), 2, 4)?.exact,
        Some("4".into())
    );
    Ok(())
}

#[test]
fn unstructured_and_block_counts_match_brute_force() -> Result<()> {
    let want = brute_force(4, 4, |k| k.sparsity() == 0.5);
    assert_eq!(
        diversity(Structure::Unstructured(0.5), 4, 4)?.exact,
        Some(want.to_string())
    );
    assert_eq!(want, 12870);
    let block = diversity(Structure::Block(2, 0.5), 4, 4)?;
    assert_eq!(block.exact.as_deref(), Some("6"));
    Ok(())
}

#[test]
fn approximation_is_within_one_percent_at_m16() {
    for n in [4, 8, 12] {
        let pat = p(n, 16);
        let exact = log10_big(&transposable_tile_count(pat).unwrap());
        let approx = log10_tile_count_canfield_mckay(pat);
        assert!(
            ((approx - exact) / exact).abs() < 0.01,
            "{pat}: exact {exact}, approx {approx}"
        );
    }
}

#[test]
fn closed_form_overcounts_and_large_tensors_give_log10_only() -> Result<()> {
    let d = diversity(Structure::Transposable(p(2, 4)), 8, 8)?;
    assert_eq!(d.exact.as_deref(), Some("65610000")); // 90^4
    assert_eq!(d.closed_form_per_tile.as_deref(), Some("144"));
    assert!((d.closed_form_log10.unwrap() - 4.0 * 144f64.log10()).abs() < 1e-9);
    let big = diversity(Structure::Transposable(p(8, 16)), 4096, 4096)?;
    assert!(big.exact.is_none() && big.method == Method::Exact);
    let tile = log10_big(&transposable_tile_count(p(8, 16)).unwrap());
    assert!((big.log10 - 65536.0 * tile).abs() < 1e-6 * big.log10);
    let approx = diversity(Structure::Transposable(p(16, 32)), 64, 64)?;
    assert_eq!(approx.method, Method::Approx);
    assert_eq!(approx.approx_method.as_deref(), Some("canfield-mckay"));
    // log10 C(T, T/2) by Stirling agrees with the exact binomial.
    let exact = log10_big(&binomial(1000, 500));
    assert!((log10_binomial(1000, 500) - exact).abs() < 1e-9);
    Ok(())
}

#[test]
fn model_diversity_is_the_sum_over_layers_and_orders_the_structures() -> Result<()> {
    let shapes = [(8, 8), (8, 16)];
    let md = |s: &str| log10_model_diversity(s.parse()?, &shapes);
    // Transposable 2:4 on 8×8 is 4 tiles of 90 masks each, on 8×16 eight tiles: 90^12.
    assert!((md("transposable:2:4")? - 12.0 * 90f64.log10()).abs() < 1e-9);
    // 2:4 is C(4,2) = 6 per group of four: 48 groups.
    assert!((md("nm:2:4")? - 48.0 * 6f64.log10()).abs() < 1e-9);
    // Dense: one mask.
    assert_eq!(md("dense")?, 0.0);
    assert_eq!(
        diversity(Structure::Dense, 8, 8)?.exact.as_deref(),
        Some("1")
    );
    // Hubara's ordering at 50%: unstructured > 2:4 > transposable 2:4 > 4×4 blocks.
    let (u, nm, t, b) = (
        md("unstructured:0.5")?,
        md("nm:2:4")?,
        md("transposable:2:4")?,
        md("block:4:0.5")?,
    );
    assert!(u > nm && nm > t && t > b, "{u} {nm} {t} {b}");
    Ok(())
}
