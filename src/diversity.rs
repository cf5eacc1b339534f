//! Mask diversity (MD): how many masks satisfy a sparsity structure over a tensor.
//!
//! Problem: count the 0/1 masks of a `rows × cols` tensor (T elements) that satisfy a structure at
//! a given sparsity — unstructured (any T·(1−s) kept), block (whole b×b blocks), N:M (N of every M
//! along `in`), transposable N:M (N per row and column of every M×M tile).
//!
//! Results: `log10(MD)` always; the exact integer when it has at most [`MAX_EXACT_DIGITS`] digits.
//! Transposable uses the exact number t(M, N) of M×M 0/1 matrices with all row and column sums N
//! (90 for 2:4, 116 963 796 250 for 4:8), by dynamic programming over column-deficit profiles,
//! for M ≤ [`EXACT_MAX_M`]; beyond, the Canfield–McKay asymptotic formula (`approx`). The closed
//! form `M!·(M−1)!⋯(M−N+1)!` per tile, an overcount sometimes quoted, is reported beside it.
//!
//! Cost: binomials in O(1) for `log10` (Stirling series); the transposable DP keeps one residue
//! per modulus for each profile (a multiset of column deficits, a few thousand at M = 16) and
//! rebuilds the integer by the Chinese remainder theorem; M = 16 takes a fraction of a second.
//!
//! Source: Hubara et al., NeurIPS 2021, section "Mask diversity".

use crate::error::{Error, Result};
use crate::mask::Pattern;
use crate::mask::Structure;
use num_bigint::BigUint;
use num_traits::{One, ToPrimitive, Zero};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Largest number of decimal digits for which exact integers are produced.
pub const MAX_EXACT_DIGITS: f64 = 1000.0;
/// Largest M for which the transposable block count is computed exactly.
pub const EXACT_MAX_M: usize = 16;

/// How a count was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Exact arithmetic.
    Exact,
    /// An asymptotic estimate (method named in [`Diversity::approx_method`]).
    Approx,
}

/// The mask diversity of one structure over one tensor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diversity {
    /// Structure name: dense, unstructured, block, nm, transposable.
    pub structure: String,
    /// `N:M` for nm and transposable, block side for block (`BxB`), else null.
    pub pattern: Option<String>,
    /// Tensor size `RxC`.
    pub size: String,
    /// Fraction pruned.
    pub sparsity: f64,
    /// log10 of the number of masks.
    pub log10: f64,
    /// The exact number of masks in decimal, when it has at most [`MAX_EXACT_DIGITS`] digits.
    pub exact: Option<String>,
    /// Whether `log10` is exact or approximate.
    pub method: Method,
    /// The approximation used, when `method` is approx.
    pub approx_method: Option<String>,
    /// Transposable only: masks of one M×M tile, exact (decimal) when known.
    pub per_tile_exact: Option<String>,
    /// Transposable only: log10 of the closed form `(M!·(M−1)!⋯(M−N+1)!)^(T/M²)`.
    pub closed_form_log10: Option<f64>,
    /// Transposable only: the closed form's per-tile value `M!·(M−1)!⋯(M−N+1)!`, exact.
    pub closed_form_per_tile: Option<String>,
}

impl std::fmt::Display for Diversity {
    /// The lines `masklab diversity` prints: log10, the exact count and the closed form.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match (&self.pattern, self.structure.as_str()) {
            (Some(p), "block") => format!("block:{p}:{}", self.sparsity),
            (Some(p), s) => format!("{s}:{p}"),
            (None, s) => format!("{s}:{}", self.sparsity),
        };
        writeln!(
            f,
            "{name} over {}: log10(MD) = {:.6} ({:?})",
            self.size, self.log10, self.method
        )?;
        if let Some(e) = &self.exact {
            writeln!(f, "exact: {e}")?;
        }
        if let Some(c) = self.closed_form_log10 {
            let per_tile = self.closed_form_per_tile.as_deref().unwrap_or_default();
            writeln!(
                f,
                "closed form (overcount) log10 = {c:.6}, per tile {per_tile}"
            )?;
        }
        Ok(())
    }
}

/// The mask diversity of `structure` over a `rows × cols` tensor.
pub fn diversity(structure: Structure, rows: usize, cols: usize) -> Result<Diversity> {
    let t = crate::mask::elements(rows, cols)? as u64;
    let shape_err = |reason: String| Error::Shape { rows, cols, reason };
    let mut d = Diversity {
        structure: String::new(),
        pattern: None,
        size: format!("{rows}x{cols}"),
        sparsity: structure.sparsity(),
        log10: 0.0,
        exact: None,
        method: Method::Exact,
        approx_method: None,
        per_tile_exact: None,
        closed_form_log10: None,
        closed_form_per_tile: None,
    };
    match structure {
        Structure::Dense => {
            d.structure = "dense".into();
            d.exact = Some("1".into());
        }
        Structure::Unstructured(sparsity) => {
            d.structure = "unstructured".into();
            let k = ((t as f64) * (1.0 - sparsity)).round() as u64;
            d.log10 = log10_binomial(t, k);
            d.exact = (d.log10 <= MAX_EXACT_DIGITS).then(|| binomial(t, k).to_string());
        }
        Structure::Block(b, sparsity) => {
            d.structure = "block".into();
            d.pattern = Some(format!("{b}x{b}"));
            if !rows.is_multiple_of(b) || !cols.is_multiple_of(b) {
                return Err(shape_err(format!("not a whole number of {b}x{b} blocks")));
            }
            let blocks = t / (b as u64).saturating_mul(b as u64);
            let k = ((blocks as f64) * (1.0 - sparsity)).round() as u64;
            d.log10 = log10_binomial(blocks, k);
            d.exact = (d.log10 <= MAX_EXACT_DIGITS).then(|| binomial(blocks, k).to_string());
        }
        Structure::Nm(p) => {
            d.structure = "nm".into();
            d.pattern = Some(p.to_string());
            if !cols.is_multiple_of(p.m) {
                return Err(shape_err(format!(
                    "in = {cols} is not a multiple of M = {}",
                    p.m
                )));
            }
            let groups = t / p.m as u64;
            let per_group = binomial(p.m as u64, p.n as u64);
            d.log10 = groups as f64 * log10_binomial(p.m as u64, p.n as u64);
            d.exact =
                (d.log10 <= MAX_EXACT_DIGITS).then(|| per_group.pow(groups as u32).to_string());
        }
        Structure::Transposable(p) => {
            d.structure = "transposable".into();
            d.pattern = Some(p.to_string());
            if !rows.is_multiple_of(p.m) || !cols.is_multiple_of(p.m) {
                return Err(shape_err(format!(
                    "out and in must be multiples of M = {}",
                    p.m
                )));
            }
            let tiles = t / (p.m * p.m) as u64;
            let closed: BigUint = (0..p.n).map(|i| factorial(p.m - i)).product();
            d.closed_form_log10 = Some(tiles as f64 * log10_big(&closed));
            d.closed_form_per_tile = Some(closed.to_string());
            match transposable_tile_count(p) {
                Some(count) => {
                    d.log10 = tiles as f64 * log10_big(&count);
                    d.exact =
                        (d.log10 <= MAX_EXACT_DIGITS).then(|| count.pow(tiles as u32).to_string());
                    d.per_tile_exact = Some(count.to_string());
                }
                None => {
                    d.log10 = tiles as f64 * log10_tile_count_canfield_mckay(p);
                    d.method = Method::Approx;
                    d.approx_method = Some("canfield-mckay".into());
                }
            }
        }
    }
    Ok(d)
}

/// log10 of the number of masks `structure` allows over weights of the given shapes (the sum
/// of each layer's log10 mask diversity); 0 for dense (one mask).
pub fn log10_model_diversity(structure: Structure, shapes: &[(usize, usize)]) -> Result<f64> {
    shapes
        .iter()
        .map(|&(r, c)| diversity(structure, r, c).map(|d| d.log10))
        .sum()
}

/// The exact number of M×M 0/1 matrices with every row and column sum N, for M ≤ [`EXACT_MAX_M`];
/// `None` beyond. Memoised.
pub fn transposable_tile_count(p: Pattern) -> Option<BigUint> {
    if p.m > EXACT_MAX_M {
        return None;
    }
    static CACHE: OnceLock<Mutex<HashMap<Pattern, BigUint>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().ok()?.get(&p) {
        return Some(v.clone());
    }
    let count = count_binary_matrices(p.m, p.n);
    cache.lock().ok()?.insert(p, count.clone());
    Some(count)
}

/// Moduli for the residue DP: primes just below powers of two (checked by a test).
const MODULI: [u64; 8] = [
    18446744073709551557, // 2^64 − 59
    9223372036854775783,  // 2^63 − 25
    4611686018427387847,  // 2^62 − 57
    2305843009213693951,  // 2^61 − 1
    1152921504606846883,  // 2^60 − 93
    576460752303423433,   // 2^59 − 55
    288230376151711717,   // 2^58 − 27
    144115188075855859,   // 2^57 − 13
];

/// Count M×M 0/1 matrices with all row and column sums N by DP over rows.
///
/// State: how many columns still need d more ones, for d = 0..N (a multiset, so column order is
/// factored out). A row puts its N ones on `j_d` columns of each deficit class d, in
/// `Π C(c_d, j_d)` ways. Counts are kept modulo several primes whose product exceeds the
/// bound `C(M, N)^M`, then rebuilt by the Chinese remainder theorem.
fn count_binary_matrices(m: usize, n: usize) -> BigUint {
    let n = n.min(m - n); // complementing every entry maps sums N to M − N
    if n == 0 {
        return BigUint::one();
    }
    let bound_bits = m as f64 * log10_binomial(m as u64, n as u64) / 2f64.log10() + 2.0;
    let mut k = 0;
    let mut bits = 0.0;
    while bits < bound_bits {
        bits += (MODULI[k] as f64).log2().floor();
        k += 1;
    }
    let moduli = &MODULI[..k];
    let binom: Vec<Vec<u64>> = (0..=m)
        .map(|a| {
            (0..=m)
                .map(|b| binomial(a as u64, b as u64).to_u64().unwrap_or(0))
                .collect()
        })
        .collect();
    type State = Vec<u8>;
    let mut level: HashMap<State, Vec<u64>> = HashMap::new();
    let mut start = vec![0u8; n + 1];
    start[n] = m as u8;
    level.insert(start, vec![1; k]);
    for _row in 0..m {
        let mut next: HashMap<State, Vec<u64>> = HashMap::with_capacity(level.len() * 2);
        for (state, residues) in &level {
            let mut take = vec![0u8; n + 1];
            enumerate_rows(state, n, n, 1, &binom, &mut take, &mut |take, weight| {
                let mut new = state.clone();
                for d in 1..=n {
                    new[d] -= take[d];
                    new[d - 1] += take[d];
                }
                let entry = next.entry(new).or_insert_with(|| vec![0; k]);
                for ((e, r), q) in entry.iter_mut().zip(residues).zip(moduli) {
                    let add = (*r as u128 * (weight % q) as u128 % *q as u128) as u64;
                    *e = ((*e as u128 + add as u128) % *q as u128) as u64;
                }
            });
        }
        level = next;
    }
    let mut done = vec![0u8; n + 1];
    done[0] = m as u8;
    let residues = level.get(&done).cloned().unwrap_or_else(|| vec![0; k]);
    crt(&residues, moduli)
}

/// Enumerate ways to spread `left` ones over deficit classes `d..=1` (from class `d` down).
fn enumerate_rows(
    state: &[u8],
    d: usize,
    left: usize,
    weight: u64,
    binom: &[Vec<u64>],
    take: &mut Vec<u8>,
    emit: &mut dyn FnMut(&[u8], u64),
) {
    if d == 0 {
        if left == 0 {
            emit(take, weight);
        }
        return;
    }
    let avail = state[d] as usize;
    // Classes below d can absorb at most this many ones.
    let below: usize = state[1..d].iter().map(|&c| c as usize).sum();
    let lo = left.saturating_sub(below);
    for j in lo..=avail.min(left) {
        take[d] = j as u8;
        enumerate_rows(
            state,
            d - 1,
            left - j,
            weight * binom[avail][j],
            binom,
            take,
            emit,
        );
    }
    take[d] = 0;
}

/// The integer below `Π moduli` with the given residues (Chinese remainder theorem).
fn crt(residues: &[u64], moduli: &[u64]) -> BigUint {
    let product: BigUint = moduli.iter().map(|&q| BigUint::from(q)).product();
    let mut x = BigUint::zero();
    for (&r, &q) in residues.iter().zip(moduli) {
        let rest = &product / q;
        let rest_mod = (&rest % q).to_u64().unwrap_or(0);
        let inv = mod_inverse(rest_mod, q);
        let coef = (r as u128 * inv as u128 % q as u128) as u64;
        x += rest * coef;
    }
    x % product
}

fn mod_inverse(a: u64, q: u64) -> u64 {
    let (mut t, mut new_t, mut r, mut new_r) = (0i128, 1i128, q as i128, a as i128);
    while new_r != 0 {
        let quot = r / new_r;
        (t, new_t) = (new_t, t - quot * new_t);
        (r, new_r) = (new_r, r - quot * new_r);
    }
    t.rem_euclid(q as i128) as u64
}

/// log10 of the tile count by the Canfield–McKay formula for dense 0/1 matrices with equal
/// margins: `C(M,N)^(2M) / C(M², N·M) · e^(−1/2)`.
pub fn log10_tile_count_canfield_mckay(p: Pattern) -> f64 {
    let (m, n) = (p.m as u64, p.n as u64);
    2.0 * m as f64 * log10_binomial(m, n)
        - log10_binomial(m * m, n * m)
        - 0.5 / std::f64::consts::LN_10
}

/// `C(n, k)` exactly.
pub fn binomial(n: u64, k: u64) -> BigUint {
    if k > n {
        return BigUint::zero();
    }
    let k = k.min(n - k);
    let mut acc = BigUint::one();
    for i in 0..k {
        acc *= n - i;
        acc /= i + 1;
    }
    acc
}

fn factorial(n: usize) -> BigUint {
    (1..=n as u64).map(BigUint::from).product()
}

/// `log10(C(n, k))` in O(1).
pub fn log10_binomial(n: u64, k: u64) -> f64 {
    if k > n {
        return f64::NEG_INFINITY;
    }
    (ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k)) / std::f64::consts::LN_10
}

/// `ln(n!)`: a sum for small n, the Stirling series beyond.
fn ln_factorial(n: u64) -> f64 {
    if n < 256 {
        return (2..=n).map(|i| (i as f64).ln()).sum();
    }
    let x = n as f64;
    x * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI * x).ln() + 1.0 / (12.0 * x)
        - 1.0 / (360.0 * x.powi(3))
        + 1.0 / (1260.0 * x.powi(5))
}

/// `log10` of a big integer (exact to f64 precision).
pub fn log10_big(v: &BigUint) -> f64 {
    let bits = v.bits();
    if bits <= 1000 {
        return v.to_f64().map(f64::log10).unwrap_or(f64::NEG_INFINITY);
    }
    let shift = bits - 64;
    let top = (v >> shift).to_f64().unwrap_or(0.0);
    top.log10() + shift as f64 * 2f64.log10()
}

#[cfg(test)]
mod tests;
