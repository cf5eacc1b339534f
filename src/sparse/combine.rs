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
/// `out` unless `first`. `w ≤ RTILE`.
#[inline(always)]
fn body(
    entries: impl Iterator<Item = (f32, usize)>,
    b: &[f32],
    width: usize,
    c0: usize,
    out: &mut [f32],
    first: bool,
    fma: impl Fn(f32, f32, f32) -> f32,
) {
    let w = out.len();
    let mut acc = [0f32; RTILE];
    if !first {
        acc[..w].copy_from_slice(out);
    }
    if w == RTILE {
        for (v, k) in entries {
            let at = k * width + c0;
            let row: &[f32; RTILE] = b[at..at + RTILE].try_into().expect("a whole tile");
            for (a, &x) in acc.iter_mut().zip(row) {
                *a = fma(*a, v, x);
            }
        }
    } else {
        for (v, k) in entries {
            let at = k * width + c0;
            for (a, &x) in acc[..w].iter_mut().zip(&b[at..at + w]) {
                *a = fma(*a, v, x);
            }
        }
    }
    out.copy_from_slice(&acc[..w]);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
// SAFETY: unsafe only for its target feature: `combine` calls it where the CPU has AVX-512F.
unsafe fn body_avx512(
    e: impl Iterator<Item = (f32, usize)>,
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
    e: impl Iterator<Item = (f32, usize)>,
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
    entries: impl Iterator<Item = (f32, usize)>,
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
