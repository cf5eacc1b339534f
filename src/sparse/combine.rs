//! The register-tiled inner loop the CSR and BSR kernels share: one output row's tile of
//! [`RTILE`] columns as a sum of scaled rows of B, the accumulators held in registers across
//! the entries (one load of B per multiply-add, no load or store of the output per entry), on
//! the widest instruction set the CPU has (the same loop compiled for AVX-512, AVX2+FMA or
//! plain code, chosen by [`super::Isa`]).

use super::Isa;

/// Columns of B per register tile (8 AVX-512 or 16 AVX2 accumulators).
pub const RTILE: usize = 128;

/// Rows of B per block of K: a block's tile of B (`KB × RTILE` floats, 32 KiB) stays in L1
/// while the rows of A use it.
pub const KB: usize = 64;

/// `out[..w] (+)= Σ v·b[k·width + c0 ..][..w]` over `entries` (`(v, k)`), accumulating into
/// `out` unless `first` (the N:M tile passes packed offsets as `k` with `width` 1). `w ≤ RTILE`.
/// The whole vectors of the tile run with a width known at compile time ([`tile`]: the
/// accumulators stay in registers; with a width known only at run time they live on the stack,
/// a load and a store per multiply-add, which made a 32-wide product slower than a 128-wide
/// one), the last `w mod 16` columns in a second pass.
#[inline(always)]
pub(super) fn body(
    entries: impl Iterator<Item = (f32, usize)> + Clone,
    b: &[f32],
    width: usize,
    c0: usize,
    out: &mut [f32],
    first: bool,
    fma: impl Fn(f32, f32, f32) -> f32 + Copy,
) {
    let w = out.len();
    let whole = w / 16 * 16;
    let (head, rest) = out.split_at_mut(whole);
    macro_rules! whole {
        ($($n:literal),*) => {
            match whole {
                $($n => tile::<$n>(entries.clone(), b, width, c0, head, first, fma),)*
                _ => {}
            }
        };
    }
    whole!(16, 32, 48, 64, 80, 96, 112, 128);
    if !rest.is_empty() {
        let mut acc = [0f32; 16];
        let acc = &mut acc[..rest.len()];
        if !first {
            acc.copy_from_slice(rest);
        }
        for (v, k) in entries {
            let at = k * width + c0 + whole;
            for (a, &x) in acc.iter_mut().zip(&b[at..at + rest.len()]) {
                *a = fma(*a, v, x);
            }
        }
        rest.copy_from_slice(acc);
    }
}

/// [`body`] on a tile of exactly `W` columns.
#[inline(always)]
fn tile<const W: usize>(
    entries: impl Iterator<Item = (f32, usize)>,
    b: &[f32],
    width: usize,
    c0: usize,
    out: &mut [f32],
    first: bool,
    fma: impl Fn(f32, f32, f32) -> f32,
) {
    let mut acc = [0f32; W];
    if !first {
        acc.copy_from_slice(out);
    }
    for (v, k) in entries {
        let at = k * width + c0;
        let row: &[f32; W] = b[at..at + W].try_into().expect("a whole tile");
        for (a, &x) in acc.iter_mut().zip(row) {
            *a = fma(*a, v, x);
        }
    }
    out.copy_from_slice(&acc);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
// SAFETY: unsafe only for its target feature: `combine` calls it where the CPU has AVX-512F.
unsafe fn body_avx512(
    e: impl Iterator<Item = (f32, usize)> + Clone,
    b: &[f32],
    width: usize,
    c0: usize,
    out: &mut [f32],
    first: bool,
) {
    body(e, b, width, c0, out, first, |a, v, x| v.mul_add(x, a))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
// SAFETY: unsafe only for its target features: `combine` calls it where the CPU has AVX2, FMA.
unsafe fn body_avx2(
    e: impl Iterator<Item = (f32, usize)> + Clone,
    b: &[f32],
    width: usize,
    c0: usize,
    out: &mut [f32],
    first: bool,
) {
    body(e, b, width, c0, out, first, |a, v, x| v.mul_add(x, a))
}

/// One output tile (see [`body`]) on `isa` (detected or checked by the caller).
pub fn combine(
    isa: Isa,
    entries: impl Iterator<Item = (f32, usize)> + Clone,
    b: &[f32],
    width: usize,
    c0: usize,
    out: &mut [f32],
    first: bool,
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::detect` found AVX-512F on this CPU.
        Isa::Avx512 => unsafe { body_avx512(entries, b, width, c0, out, first) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::detect` found AVX2 and FMA on this CPU.
        Isa::Avx2 => unsafe { body_avx2(entries, b, width, c0, out, first) },
        _ => body(entries, b, width, c0, out, first, |a, v, x| a + v * x),
    }
}
