use super::evaluate::{evaluate, gap};
use super::*;
use rand::{Rng, SeedableRng};

/// Random blocks of the kinds the issue asks for: uniform, ties, zeros, wide magnitudes.
fn blocks(kind: &str, count: usize, m: usize, rng: &mut impl Rng) -> Vec<f32> {
    (0..count * m * m)
        .map(|_| match kind {
            "uniform" => rng.random::<f32>(),
            "ties" => rng.random_range(0..3) as f32,
            "zeros" => {
                if rng.random::<f32>() < 0.7 {
                    0.0
                } else {
                    rng.random::<f32>()
                }
            }
            "wide" => 10f32.powf(rng.random_range(-8.0..8.0)),
            _ => unreachable!(),
        })
        .collect()
}

fn solve(name: &str, b: &[f32], p: Pattern) -> Vec<u8> {
    by_name(name)
        .unwrap()
        .solve(b, p, &SolveContext::default())
        .unwrap()
}

fn kept(b: &[f32], k: &[u8], p: Pattern) -> Vec<f64> {
    evaluate(b, k, p)
        .kept
        .into_iter()
        .map(|v| v.expect("feasible"))
        .collect()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()) + 1e-30
}

#[test]
fn exact_equals_brute_force_on_4x4_blocks() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1); // fixed seed
    for n in 1..=3 {
        let p = Pattern::new(n, 4).unwrap();
        let pats = exhaustive::patterns(n);
        for kind in ["uniform", "ties", "zeros", "wide"] {
            let b = blocks(kind, 300, 4, &mut rng);
            let got = kept(&b, &solve("exact", &b, p), p);
            let ex = kept(&b, &solve("exhaustive", &b, p), p);
            for (i, block) in b.chunks(16).enumerate() {
                let brute = pats
                    .iter()
                    .map(|q| {
                        q.iter()
                            .zip(block)
                            .map(|(&x, &s)| x as f64 * s as f64)
                            .sum::<f64>()
                    })
                    .fold(f64::MIN, f64::max);
                assert!(
                    close(got[i], brute, 1e-6),
                    "{kind} {p} block {i}: exact {} brute {brute}",
                    got[i]
                );
                assert!(close(ex[i], brute, 1e-6), "exhaustive {kind} {p} block {i}");
            }
            let r = evaluate(&b, &solve("exact", &b, p), p);
            assert_eq!((r.infeasible, r.underfilled), (0, 0));
        }
    }
}

#[test]
fn exact_equals_lp_on_8x8_and_16x16_blocks() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2); // fixed seed
    let mut compared = 0;
    for (m, ns, count) in [
        (8, vec![2, 4, 5], 120),
        (16, vec![4, 8, 11], 60),
        (32, vec![7, 16], 4),
    ] {
        for &n in &ns {
            let p = Pattern::new(n, m).unwrap();
            for kind in ["uniform", "ties", "zeros", "wide"] {
                let b = blocks(kind, count, m, &mut rng);
                let e = kept(&b, &solve("exact", &b, p), p);
                let l = kept(&b, &solve("lp", &b, p), p);
                for (i, (x, y)) in e.iter().zip(&l).enumerate() {
                    assert!(
                        close(*x, *y, 1e-5),
                        "{kind} {p} block {i}: exact {x} lp {y}"
                    );
                    compared += 1;
                }
                // Exact is never beaten by any other solver's feasible N-regular mask.
                for other in ["greedy", "tsenor", "bi-nm", "max-random", "two-approx"] {
                    let ev = evaluate(&b, &solve(other, &b, p), p);
                    for (o, x) in ev.kept.iter().zip(&e) {
                        assert!(o.is_some(), "{other} infeasible on {kind} {p}");
                        if ev.underfilled == 0 {
                            assert!(
                                o.unwrap() <= x * (1.0 + 1e-6) + 1e-30,
                                "{other} beat exact on {kind} {p}"
                            );
                        }
                    }
                }
            }
        }
    }
    assert!(compared >= 1000 * 2, "{compared} blocks compared");
}

#[test]
fn every_solver_is_feasible_and_the_approximations_keep_their_bounds() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3); // fixed seed
    // Adversarial blocks: greedy's ½ (take 1+ε, then forced to 0) and near-ties.
    let eps = 1e-3f32;
    let adversarial = vec![1.0 + eps, 1.0, 1.0, 0.0];
    let p12 = Pattern::new(1, 2).unwrap();
    let opt = evaluate(&adversarial, &solve("exact", &adversarial, p12), p12);
    let greedy = evaluate(&adversarial, &solve("greedy", &adversarial, p12), p12);
    let g = gap(&greedy, &opt);
    assert!(
        g.kept_gap > 0.49 && g.kept_gap <= 0.5,
        "greedy is tight at ½ here: {g:?}"
    );
    // The 2-approximation is tight at 2 here: it prunes 1 + 1 where the optimum prunes 1 + ε.
    let tight = vec![eps, 1.0, 1.0, 1.0 + 2.0 * eps];
    let two = gap(
        &evaluate(&tight, &solve("two-approx", &tight, p12), p12),
        &evaluate(&tight, &solve("exact", &tight, p12), p12),
    );
    assert!(two.pruned_excess <= 1.0 + 1e-6, "{two:?}");
    for (m, n) in [
        (2, 1),
        (4, 1),
        (4, 2),
        (4, 3),
        (8, 4),
        (8, 3),
        (16, 8),
        (32, 16),
    ] {
        let p = Pattern::new(n, m).unwrap();
        for kind in ["uniform", "ties", "zeros", "wide"] {
            let b = blocks(kind, if m == 32 { 10 } else { 100 }, m, &mut rng);
            let opt = evaluate(&b, &solve("exact", &b, p), p);
            for s in REGISTRY
                .iter()
                .filter(|s| !(s.name() == "exhaustive" && m != 4 || s.name() == "lp" && m > 16))
            {
                let e = evaluate(&b, &s.solve(&b, p, &SolveContext::default()).unwrap(), p);
                assert_eq!(e.infeasible, 0, "{} infeasible on {kind} {p}", s.name());
                for (i, (k, o)) in e.kept.iter().zip(&opt.kept).enumerate() {
                    let (k, o, t) = (k.unwrap(), o.unwrap(), e.total[i]);
                    match s.guarantee() {
                        Guarantee::Exact => assert!(
                            close(k, o, 1e-5),
                            "{} not optimal on {kind} {p} block {i}",
                            s.name()
                        ),
                        Guarantee::HalfKept => assert!(
                            k >= 0.5 * o * (1.0 - 1e-6),
                            "{} below ½ on {kind} {p}",
                            s.name()
                        ),
                        Guarantee::TwoApprox => {
                            assert!(
                                t - k <= 2.0 * (t - o) * (1.0 + 1e-6) + 1e-9 * t,
                                "{} pruned > 2×OPT on {kind} {p} block {i}",
                                s.name()
                            )
                        }
                        Guarantee::Heuristic => {}
                    }
                }
                if matches!(
                    s.name(),
                    "exact" | "lp" | "tsenor" | "max-random" | "exhaustive"
                ) {
                    assert_eq!(e.underfilled, 0, "{} under-filled on {kind} {p}", s.name());
                }
            }
        }
    }
}

#[test]
fn exhaustive_refuses_other_m_and_bad_scores_are_errors() {
    let p = Pattern::new(4, 8).unwrap();
    let e = by_name("exhaustive")
        .unwrap()
        .solve(&[0.0; 64], p, &SolveContext::default())
        .unwrap_err();
    assert!(e.to_string().contains("M = 4"), "{e}");
    let e = by_name("exact")
        .unwrap()
        .solve(&[f32::NAN; 64], p, &SolveContext::default())
        .unwrap_err();
    assert!(e.to_string().contains("finite"), "{e}");
    assert!(
        by_name("nope")
            .unwrap_err()
            .to_string()
            .contains("exact, lp")
    );
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4); // fixed seed
    let p = Pattern::new(4, 8).unwrap();
    let b = blocks("uniform", 500, 8, &mut rng);
    for name in ["max-random", "tsenor", "exact"] {
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| solve(name, &b, p));
        let two = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap()
            .install(|| solve(name, &b, p));
        assert_eq!(one, two, "{name}");
    }
}
