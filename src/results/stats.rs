//! Statistics over seeds (DESIGN.md, Statistics): a mean with its Student-t confidence interval,
//! a difference of means with Welch's t-test, Spearman's rank correlation with its p-value, and
//! the smallest effect a two-sample design can detect.
//!
//! The distributions are statrs's (Student t, normal); only the textbook formulas are written
//! here. Two-sided tests throughout.
//!
//! - CI of a mean: `x̄ ± t(1−α/2, n−1) · s/√n`.
//! - Welch: `t = (x̄₁ − x̄₂)/√(s₁²/n₁ + s₂²/n₂)`, Welch–Satterthwaite degrees of freedom.
//! - Spearman: Pearson's r on average ranks (ties share their mean rank); the p-value from
//!   `t = r·√((n−2)/(1−r²))` on n−2 degrees of freedom (the usual large-sample approximation).
//! - Minimal detectable effect of a two-sample t-test at level α and power 1−β:
//!   `(t(1−α/2, df) + t(1−β, df)) · s·√(1/n₁ + 1/n₂)` with the pooled std s and df = n₁+n₂−2.

use statrs::distribution::{ContinuousCDF, StudentsT};

/// The confidence level of every interval (95%).
pub const LEVEL: f64 = 0.95;

/// Mean, sample std and the half-width of the 95% confidence interval of the mean.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanCi {
    /// Sample size.
    pub n: usize,
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (n − 1); 0 for one value.
    pub std: f64,
    /// Half-width of the 95% CI (Student t); NaN for fewer than two values.
    pub half_width: f64,
}

/// A difference of means `a − b` with its 95% CI and Welch's t-test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Welch {
    /// `mean(a) − mean(b)`.
    pub diff: f64,
    /// Half-width of the 95% CI of the difference (Welch–Satterthwaite t).
    pub half_width: f64,
    /// Degrees of freedom.
    pub df: f64,
    /// Two-sided p-value.
    pub p: f64,
}

/// Spearman's rank correlation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spearman {
    /// Pairs.
    pub n: usize,
    /// ρ.
    pub rho: f64,
    /// Two-sided p-value (t approximation on n − 2 df).
    pub p: f64,
}

fn mean_var(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 {
        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var)
}

/// The `q` quantile of Student's t with `df` degrees of freedom.
fn t_quantile(q: f64, df: f64) -> f64 {
    match StudentsT::new(0.0, 1.0, df) {
        Ok(t) => t.inverse_cdf(q),
        Err(_) => f64::NAN,
    }
}

/// Two-sided p-value of a t statistic on `df` degrees of freedom.
fn t_two_sided(t: f64, df: f64) -> f64 {
    if t.is_infinite() {
        return 0.0;
    }
    match StudentsT::new(0.0, 1.0, df) {
        Ok(d) => f64::min(2.0 * d.cdf(-t.abs()), 1.0),
        Err(_) => f64::NAN,
    }
}

/// Mean with its 95% CI; `None` for no values.
pub fn mean_ci(xs: &[f64]) -> Option<MeanCi> {
    if xs.is_empty() {
        return None;
    }
    let (mean, var) = mean_var(xs);
    let n = xs.len();
    let half_width = if n > 1 {
        t_quantile(0.5 + LEVEL / 2.0, (n - 1) as f64) * (var / n as f64).sqrt()
    } else {
        f64::NAN
    };
    Some(MeanCi {
        n,
        mean,
        std: var.sqrt(),
        half_width,
    })
}

/// Welch's test of `mean(a) = mean(b)`; `None` unless both have at least two values.
///
/// Both samples constant: the difference is exact, so p is 1 when the means agree and 0 when
/// they do not, with a zero-width interval.
pub fn welch(a: &[f64], b: &[f64]) -> Option<Welch> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let (ma, va) = mean_var(a);
    let (mb, vb) = mean_var(b);
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (sa, sb) = (va / na, vb / nb);
    let se2 = sa + sb;
    let diff = ma - mb;
    if se2 == 0.0 {
        return Some(Welch {
            diff,
            half_width: 0.0,
            df: na + nb - 2.0,
            p: if diff == 0.0 { 1.0 } else { 0.0 },
        });
    }
    let df = se2 * se2 / (sa * sa / (na - 1.0) + sb * sb / (nb - 1.0));
    let se = se2.sqrt();
    Some(Welch {
        diff,
        half_width: t_quantile(0.5 + LEVEL / 2.0, df) * se,
        df,
        p: t_two_sided(diff / se, df),
    })
}

/// Average ranks (1-based; ties share the mean of their ranks).
pub fn ranks(xs: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..xs.len()).collect();
    order.sort_by(|&i, &j| xs[i].total_cmp(&xs[j]));
    let mut r = vec![0.0; xs.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && xs[order[j + 1]] == xs[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Spearman's ρ of paired values; `None` for fewer than three pairs or a constant side.
pub fn spearman(x: &[f64], y: &[f64]) -> Option<Spearman> {
    let n = x.len().min(y.len());
    if n < 3 {
        return None;
    }
    let (rx, ry) = (ranks(&x[..n]), ranks(&y[..n]));
    let (mx, vx) = mean_var(&rx);
    let (my, vy) = mean_var(&ry);
    if vx == 0.0 || vy == 0.0 {
        return None;
    }
    let cov = rx
        .iter()
        .zip(&ry)
        .map(|(a, b)| (a - mx) * (b - my))
        .sum::<f64>()
        / (n - 1) as f64;
    let rho = (cov / (vx * vy).sqrt()).clamp(-1.0, 1.0);
    let df = (n - 2) as f64;
    let p = if rho.abs() >= 1.0 {
        0.0
    } else {
        t_two_sided(rho * (df / (1.0 - rho * rho)).sqrt(), df)
    };
    Some(Spearman { n, rho, p })
}

/// The smallest difference of means a two-sided two-sample t-test at level 5% detects with
/// 80% power, for samples of `na` and `nb` with pooled std `std`; `None` for fewer than 3 values.
pub fn min_detectable_effect(std: f64, na: usize, nb: usize) -> Option<f64> {
    if na + nb < 3 || na == 0 || nb == 0 {
        return None;
    }
    let df = (na + nb - 2) as f64;
    let z = t_quantile(0.975, df) + t_quantile(0.80, df);
    Some(z * std * (1.0 / na as f64 + 1.0 / nb as f64).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidence_interval_matches_the_t_table() {
        // n = 5: t(0.975, 4) = 2.776445 (standard table value).
        let xs = [1.0, 2.0, 3.0, 4.0, 5.0];
        let ci = mean_ci(&xs).unwrap();
        assert_eq!(ci.mean, 3.0);
        assert!((ci.std - 2.5f64.sqrt()).abs() < 1e-12);
        let want = 2.776445 * (2.5f64 / 5.0).sqrt();
        assert!((ci.half_width - want).abs() < 1e-5, "{}", ci.half_width);
        assert!(mean_ci(&[1.0]).unwrap().half_width.is_nan());
        assert!(mean_ci(&[]).is_none());
    }

    #[test]
    fn welch_matches_a_worked_example() {
        // Equal variances 2.5, n = 5 each, shifted by 4: se = 1, df = 8 (t tables).
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        let b = [5.0, 6.0, 7.0, 8.0, 9.0];
        let w = welch(&a, &b).unwrap();
        assert_eq!(w.diff, -4.0);
        assert!((w.df - 8.0).abs() < 1e-9, "{}", w.df);
        // t = −4 on 8 df: two-sided p = 0.003949; half-width t(0.975, 8)·se = 2.306004.
        assert!((w.p - 0.003949).abs() < 2e-5, "{}", w.p);
        assert!((w.half_width - 2.306004).abs() < 1e-5, "{}", w.half_width);
        // Identical constants: no difference, p = 1; different constants: p = 0.
        assert_eq!(welch(&[1.0, 1.0], &[1.0, 1.0]).unwrap().p, 1.0);
        assert_eq!(welch(&[1.0, 1.0], &[2.0, 2.0]).unwrap().p, 0.0);
        assert!(welch(&[1.0], &[1.0, 2.0]).is_none());
    }

    #[test]
    fn spearman_ranks_ties_and_monotone_relations() {
        assert_eq!(ranks(&[10.0, 20.0, 20.0, 5.0]), vec![2.0, 3.5, 3.5, 1.0]);
        // Any strictly increasing transform gives ρ = 1, p = 0.
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let y: Vec<f64> = x.iter().map(|v: &f64| v.exp()).collect();
        let s = spearman(&x, &y).unwrap();
        assert_eq!(s.rho, 1.0);
        assert_eq!(s.p, 0.0);
        // A known case: ranks (1..5) vs (2,1,4,3,5): Σd² = 4, ρ = 1 − 6·4/(5·24) = 0.8;
        // t = 0.8·√(3/0.36) = 2.3094 on 3 df: p = 0.1041.
        let s = spearman(&[1.0, 2.0, 3.0, 4.0, 5.0], &[2.0, 1.0, 4.0, 3.0, 5.0]).unwrap();
        assert!((s.rho - 0.8).abs() < 1e-12, "{}", s.rho);
        assert!((s.p - 0.1041).abs() < 1e-3, "{}", s.p);
        assert!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).is_none());
    }

    #[test]
    fn detectable_effect_shrinks_with_more_seeds() {
        // n = 5 per arm, df = 8: (t(0.975, 8) + t(0.80, 8))·s·√(2/5) = (2.306004 + 0.888938)·0.632456.
        let e5 = min_detectable_effect(1.0, 5, 5).unwrap();
        assert!(
            (e5 - (2.306004 + 0.888938) * 0.4f64.sqrt()).abs() < 1e-4,
            "{e5}"
        );
        let e20 = min_detectable_effect(1.0, 20, 20).unwrap();
        assert!(e20 < e5 / 1.8);
        assert!(min_detectable_effect(1.0, 1, 1).is_none());
    }
}
