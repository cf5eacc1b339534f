//! Elementary functions written so that the compiler vectorises them (exp and ln in plain f32
//! arithmetic, no libm call), and the slice kernels built on them that the language model's
//! forward spends its non-GEMM time in: the causal softmax of attention scores, a row's
//! log-sum-exp (the perplexity's NLL) and SiLU(gate)·up, each compiled for AVX-512F, for
//! AVX2+FMA and portably, and chosen at run time.
//!
//! Problem: libm's `expf` is a call per value; in a 135M-parameter forward at 512 tokens the
//! attention softmax, the SiLU and the NLL make about 40 of them per token and layer-width,
//! all on scalar code paths (measured: 8% of an evaluation's samples on `expf` and the loops
//! around it).
//! Guarantee: [`exp`] and [`ln`] are Cephes' `expf`/`logf` (about 1 ulp; tested against libm
//! to 4e-7 relative); each kernel computes its formula with them, so its results equal the
//! scalar formula with libm's functions to a few ulp (tested); the three instruction-set
//! builds give the same bits (the same operations in the same order, tested). No NaN may be
//! passed (maxima are taken by comparison).
//! Cost: about 20 vector instructions per 16 values for exp (AVX-512), one pass over the data
//! for SiLU·up and two for the softmax and the log-sum-exp.
//! Source: S. L. Moshier, Cephes Mathematical Library (`expf.c`, `logf.c`).

use crate::lanes::Isa;

/// Cephes' `expf` polynomial for `(e^r − 1 − r)/r²` on |r| ≤ ln2/2.
const EXP_POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    5e-1,
];

/// `c₀·x^(k−1) + … + c_(k−1)` by Horner's rule.
#[inline(always)]
fn horner(x: f32, c: &[f32]) -> f32 {
    c[1..].iter().fold(c[0], |p, &c| p * x + c)
}

/// `e^x` for `x ≤ 88.7` (Cephes' `expf`: `x = k·ln2 + r`, a degree-6 polynomial in r;
/// about 1 ulp; subnormal results by scaling in two steps; `x < −104` gives 0).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    exp_with::<true>(x)
}

/// `e^x` for `x ≤ 0` where only the sum of such terms (at least 1) matters: as [`exp`],
/// but `x < −87` gives about 1e−38 instead of a subnormal (one power of two, not two).
#[inline(always)]
pub fn exp_sum_term(x: f32) -> f32 {
    exp_with::<false>(x)
}

/// Cephes' `expf` with `2^k` in two factors when `SUBNORMAL` (inputs down to −104 give
/// subnormals), else in one (inputs clamped at −87).
#[inline(always)]
fn exp_with<const SUBNORMAL: bool>(x: f32) -> f32 {
    let x = x.clamp(if SUBNORMAL { -104.0 } else { -87.0 }, 88.72283);
    // k = round(x·log₂e) by the 1.5·2²³ trick: adding it leaves k in the low mantissa bits,
    // with float operations only (a float→int `as` cast saturates, which the compiler does
    // not vectorise).
    const MAGIC: f32 = 12_582_912.0;
    let shifted = x * std::f32::consts::LOG2_E + MAGIC;
    let k = shifted - MAGIC;
    let r = x - k * 0.693_359_4 - k * -2.121_944_4e-4;
    let y = horner(r, &EXP_POLY) * (r * r) + r + 1.0;
    let k = shifted.to_bits() as i32 - MAGIC.to_bits() as i32;
    let pow = |e: i32| f32::from_bits(((e + 127) as u32) << 23);
    if SUBNORMAL {
        y * pow(k >> 1) * pow(k - (k >> 1))
    } else {
        y * pow(k)
    }
}

/// `ln x` for normal positive x (Cephes' `logf`: `x = m·2^e`, a degree-9 polynomial in
/// `m − 1`; about 1 ulp).
#[inline(always)]
pub fn ln(x: f32) -> f32 {
    let bits = x.to_bits();
    let e = ((bits >> 23) & 0xff) as i32 - 126;
    let m = f32::from_bits((bits & 0x807f_ffff) | 0x3f00_0000);
    let small = m < std::f32::consts::FRAC_1_SQRT_2;
    let e = (e - small as i32) as f32;
    let m = m - 1.0 + if small { m } else { 0.0 };
    let z = m * m;
    let y = horner(
        m,
        &[
            7.037_683_6e-2,
            -1.151_461e-1,
            1.167_699_9e-1,
            -1.242_014_1e-1,
            1.424_932_3e-1,
            -1.666_805_8e-1,
            2.000_071_4e-1,
            -2.499_999_4e-1,
            3.333_333e-1,
        ],
    ) * m
        * z;
    let y = y + e * -2.121_944_4e-4 - 0.5 * z;
    m + y + e * 0.693_359_4
}

/// The instruction set the kernels run on: [`Isa::detect`] once (so `MASKLAB_ISA` narrows it as
/// it does the sparse kernels).
fn isa() -> Isa {
    use std::sync::OnceLock;
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(Isa::detect)
}

/// Defines `pub fn $name($args) -> $ret`, running `$body` (an `#[inline(always)]` function of
/// the same arguments) compiled for the best [`Isa`] of this CPU.
macro_rules! dispatched {
    ($(#[$doc:meta])* $name:ident => $body:ident ($($arg:ident : $ty:ty),*) -> $ret:ty) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                match isa() {
                    // SAFETY: `isa()` reported AVX-512F, the only feature `avx512` enables.
                    Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: `isa()` reported AVX2 and FMA, the features `avx2` enables.
                    Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    Isa::Scalar => {}
                }
            }
            $body($($arg),*)
        }
    };
}

/// Values per step of the kernels' loops: one AVX-512 register, two AVX2 ones.
const STEP: usize = 16;

/// The largest value of `x` (−∞ when empty), by comparisons (no NaN).
#[inline(always)]
fn max_of(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; STEP];
    let chunks = x.chunks_exact(STEP);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    let mut m = tail
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, |a, v| if v > a { v } else { a });
    for a in acc {
        m = if a > m { a } else { m };
    }
    m
}

/// `x = exp(x − shift)` in place, returning the sum of the new values (STEP partial sums,
/// then the tail, in a fixed order).
#[inline(always)]
fn exp_shifted_sum(x: &mut [f32], shift: f32) -> f32 {
    let mut acc = [0f32; STEP];
    let mut chunks = x.chunks_exact_mut(STEP);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c.iter_mut()) {
            *v = exp(*v - shift);
            *a += *v;
        }
    }
    let mut sum = 0f32;
    for v in chunks.into_remainder() {
        *v = exp(*v - shift);
        sum += *v;
    }
    acc.iter().sum::<f32>() + sum
}

/// [`softmax_prefix`]'s body.
#[inline(always)]
fn softmax_prefix_body(row: &mut [f32], upto: usize) {
    let (head, rest) = row.split_at_mut(upto.min(row.len()));
    let max = max_of(head);
    let inv = 1.0 / exp_shifted_sum(head, max);
    for v in head.iter_mut() {
        *v *= inv;
    }
    rest.fill(0.0);
}

dispatched! {
    /// The softmax of `row[..upto]` in place (max-shifted), and `row[upto..]` set to 0: one
    /// causal attention row.
    softmax_prefix => softmax_prefix_body(row: &mut [f32], upto: usize) -> ()
}

/// [`log_sum_exp`]'s body.
#[inline(always)]
fn log_sum_exp_body(row: &[f32]) -> (f32, f32) {
    let max = max_of(row);
    let mut acc = [0f32; STEP];
    let chunks = row.chunks_exact(STEP);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += exp_sum_term(v - max);
        }
    }
    let sum = acc.iter().sum::<f32>() + tail.iter().map(|&v| exp_sum_term(v - max)).sum::<f32>();
    (max, ln(sum))
}

dispatched! {
    /// `(max, ln Σ exp(x − max))` of a row (non-empty): its log-sum-exp is their sum.
    log_sum_exp => log_sum_exp_body(row: &[f32]) -> (f32, f32)
}

/// [`silu_mul`]'s body.
#[inline(always)]
fn silu_mul_body(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = g / (1.0 + exp(-g)) * u;
    }
}

dispatched! {
    /// `out = silu(gate) · up` elementwise, `silu(g) = g / (1 + e^−g)` (the three the same
    /// length).
    silu_mul => silu_mul_body(gate: &[f32], up: &[f32], out: &mut [f32]) -> ()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn exp_and_ln_agree_with_libm_to_a_few_ulp() {
        let mut worst = (0f32, 0f32);
        for i in 0..200_000 {
            let x = -103.0 + 190.0 * i as f32 / 200_000.0;
            let (a, b) = (exp(x), x.exp());
            let rel = ((a - b) / b).abs();
            if b > f32::MIN_POSITIVE && rel > worst.0 {
                worst.0 = rel;
            }
            let y = 1.0 + 300.0 * i as f32 / 200_000.0;
            let (c, d) = (ln(y), y.ln());
            let err = (c - d).abs() / d.abs().max(1e-3);
            worst.1 = worst.1.max(err);
        }
        assert!(worst.0 < 4e-7, "exp: worst relative error {}", worst.0);
        assert!(worst.1 < 4e-7, "ln: worst relative error {}", worst.1);
        for i in 0..10_000 {
            let x = -87.0 * i as f32 / 10_000.0;
            assert!(((exp_sum_term(x) - x.exp()) / x.exp()).abs() < 4e-7, "{x}");
        }
        assert_eq!(exp(-200.0), 0.0);
        assert!(exp(-95.0) > 0.0, "subnormal results are kept");
    }

    /// Each kernel's body compiled portably (what `Isa::Scalar` runs) against the dispatched
    /// build, bit for bit, and against the scalar formula with libm to a few ulp.
    #[test]
    fn kernels_match_libm_and_every_build_gives_the_same_bits() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3); // fixed seed
        for len in [1usize, 7, 16, 33, 512, 1000] {
            let x: Vec<f32> = (0..len).map(|_| rng.random_range(-30.0..30.0)).collect();
            // softmax of a prefix
            let upto = rng.random_range(1..=len);
            let (mut fast, mut portable) = (x.clone(), x.clone());
            softmax_prefix(&mut fast, upto);
            softmax_prefix_body(&mut portable, upto);
            assert_eq!(fast, portable, "softmax bits, len {len}");
            let max = x[..upto].iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f64> = x[..upto]
                .iter()
                .map(|&v| f64::from(v - max).exp())
                .collect();
            let total: f64 = e.iter().sum();
            for (i, (&got, want)) in fast.iter().zip(e.iter().map(|v| v / total)).enumerate() {
                assert!(
                    (f64::from(got) - want).abs() <= 2e-6 * want + 1e-30,
                    "softmax {i}"
                );
            }
            assert!(fast[upto..].iter().all(|&v| v == 0.0));
            // log-sum-exp
            let (m, l) = log_sum_exp(&x);
            assert_eq!((m, l), log_sum_exp_body(&x), "lse bits, len {len}");
            let want = x.iter().map(|&v| f64::from(v - m).exp()).sum::<f64>().ln();
            assert!(
                (f64::from(l) - want).abs() <= 2e-6 * want.abs().max(1.0),
                "lse len {len}"
            );
            // silu · up
            let u: Vec<f32> = (0..len).map(|_| rng.random_range(-2.0..2.0)).collect();
            let (mut fast, mut portable) = (vec![0f32; len], vec![0f32; len]);
            silu_mul(&x, &u, &mut fast);
            silu_mul_body(&x, &u, &mut portable);
            assert_eq!(fast, portable, "silu bits, len {len}");
            for ((&got, &g), &u) in fast.iter().zip(&x).zip(&u) {
                let want = f64::from(g) / (1.0 + (-f64::from(g)).exp()) * f64::from(u);
                assert!(
                    (f64::from(got) - want).abs() <= 1e-6 * want.abs() + 1e-30,
                    "silu {g}"
                );
            }
        }
        // Extremes: exp's clamps keep SiLU finite and the softmax of a wide row exact at 0.
        let mut out = [0f32; 2];
        silu_mul(&[-200.0, 200.0], &[1.0, 1.0], &mut out);
        assert!(
            out[0] <= 0.0 && out[0] > -1e-30 && out[1] == 200.0,
            "{out:?}"
        );
        let mut row = [0.0, -1000.0, 5.0];
        softmax_prefix(&mut row, 3);
        assert_eq!(row[1], 0.0);
    }
}
