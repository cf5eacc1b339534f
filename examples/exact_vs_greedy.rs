//! `exact` against `greedy` on an 8192×8192 |Gaussian| matrix (the criterion group
//! `exact_vs_greedy`'s input), the two solves alternating within one process: round r runs
//! exact then greedy, round r + 1 greedy then exact, so drift in the machine's speed and the
//! cost of freshly mapped output pages fall on both alike. Prints, per pattern, each solver's
//! median seconds and the quartiles of the per-round ratio exact ÷ greedy (below 1: exact is
//! faster), with the kept sums to show exact's optimum is at least the greedy's.
//! Run: `cargo run --release --example exact_vs_greedy -- [ROUNDS] [PATTERN ...]`
//! (default 11 rounds, patterns 2:4 4:8 8:16 16:32).

use masklab::mask::Pattern;
use masklab::mask::tile::Blocks;
use masklab::solvers::{SolveContext, by_name};
use std::time::Instant;

#[path = "../benches/common/mod.rs"]
mod common;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds: usize = args.first().map_or(11, |r| r.parse().expect("ROUNDS"));
    let patterns: Vec<&str> = if args.len() > 1 {
        args[1..].iter().map(|s| s.as_str()).collect()
    } else {
        vec!["2:4", "4:8", "8:16", "16:32"]
    };
    let matrix = common::gaussian_abs(8192);
    let ctx = SolveContext::default();
    let (exact, greedy) = (by_name("exact").unwrap(), by_name("greedy").unwrap());
    println!("pattern  exact_s  greedy_s  ratio[q25 median q75]  kept_exact  kept_greedy");
    for p in patterns {
        let pattern: Pattern = p.parse().expect("pattern");
        let blocks = Blocks::from_matrix(&matrix, pattern.m).expect("tiles");
        let kept = |keep: &[u8]| -> f64 {
            blocks
                .data()
                .iter()
                .zip(keep)
                .map(|(&s, &k)| s as f64 * k as f64)
                .sum()
        };
        let time = |solver: &masklab::solvers::SolverRef| {
            let t = Instant::now();
            let keep = solver.solve(blocks.data(), pattern, &ctx).expect("solves");
            (t.elapsed().as_secs_f64(), keep)
        };
        // One warm-up solve each.
        let (_, ke) = time(&exact);
        let (_, kg) = time(&greedy);
        let (mut te, mut tg) = (Vec::new(), Vec::new());
        for r in 0..rounds {
            if r % 2 == 0 {
                te.push(time(&exact).0);
                tg.push(time(&greedy).0);
            } else {
                tg.push(time(&greedy).0);
                te.push(time(&exact).0);
            }
        }
        let mut ratio: Vec<f64> = te.iter().zip(&tg).map(|(e, g)| e / g).collect();
        let q = |v: &mut Vec<f64>, f: f64| {
            v.sort_by(f64::total_cmp);
            v[((v.len() - 1) as f64 * f).round() as usize]
        };
        println!(
            "{p:7}  {:.4}   {:.4}    [{:.3} {:.3} {:.3}]   {:.6e}  {:.6e}",
            q(&mut te, 0.5),
            q(&mut tg, 0.5),
            q(&mut ratio, 0.25),
            q(&mut ratio, 0.5),
            q(&mut ratio, 0.75),
            kept(&ke),
            kept(&kg)
        );
    }
}
