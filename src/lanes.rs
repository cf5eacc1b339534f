//! Extremes of small fixed-size arrays, the first position holding them, and whole-array lane
//! updates: the crate's SIMD leaf, for the block solvers' inner loops (`exact`, `greedy`) and
//! the CPU feature check of the estimators' vectorised paths; and [`Isa`], the instruction set
//! the dispatched kernels (sparse GEMMs, `vmath`, tsenor) run on.
//!
//! Problem: for `[i32; M]` / `[f64; M]` with M ≤ 64, the largest (smallest) value, the lowest
//! index at which a given value occurs, a single-lane set and a shortest-path relaxation; and the
//! lane-wise max and min of two `[f32; M]` or `[f64; M]` (a sorting network's compare-exchange).
//! Guarantee: both implementations return the same results (tested); no NaN may be passed.
//! Cost: O(M). [`Portable`] is plain Rust; [`Avx2`] uses explicit AVX2 intrinsics (8 i32 or 4 f64
//! per instruction, a movemask for the position), because the compiler's own vectorisation of
//! "first index of the extreme" is poor. A solver's fixed-size path is generic over [`Lanes`] and
//! compiled once per implementation; an [`Avx2`] value exists only when the CPU reports AVX2.

use crate::error::{Error, Result};

/// The SIMD instruction set a kernel runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Isa {
    /// Plain Rust, any CPU.
    Scalar,
    /// AVX2 and FMA (x86-64).
    Avx2,
    /// AVX-512F (x86-64).
    Avx512,
}

impl Isa {
    /// The widest instruction set this CPU has (`MASKLAB_ISA=scalar|avx2|avx512` narrows it,
    /// to measure or test another path).
    pub fn detect() -> Isa {
        let best = Isa::best();
        match std::env::var("MASKLAB_ISA").ok().as_deref() {
            Some("scalar") => Isa::Scalar,
            Some("avx2") if best != Isa::Scalar => Isa::Avx2,
            _ => best,
        }
    }

    /// The widest instruction set this CPU has, whatever `MASKLAB_ISA` says.
    pub fn best() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2;
            }
        }
        Isa::Scalar
    }

    /// An error unless this CPU runs `self`.
    pub fn check(self) -> Result<()> {
        let ok = match self {
            Isa::Scalar => true,
            Isa::Avx2 => Isa::best() != Isa::Scalar,
            Isa::Avx512 => Isa::best() == Isa::Avx512,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::Unsupported {
                what: format!("the {self:?} kernels"),
                reason: "this CPU lacks the instructions".into(),
            })
        }
    }
}

/// Lane reductions over arrays of M ≤ 64 elements.
pub trait Lanes: Copy {
    /// The largest element.
    fn max_i32<const M: usize>(self, v: &[i32; M]) -> i32;
    /// The lowest index holding `x` (M when none does).
    fn first_i32<const M: usize>(self, v: &[i32; M], x: i32) -> usize;
    /// The smallest element (no NaN).
    fn min_f64<const M: usize>(self, v: &[f64; M]) -> f64;
    /// The lowest index holding `x` (M when none does).
    fn first_f64<const M: usize>(self, v: &[f64; M], x: f64) -> usize;
    /// `v[at] = x`. [`Avx2`] rewrites the whole array with full-width blends: a single-lane store
    /// followed by a full-width load of the same array cannot be forwarded and stalls the load,
    /// which the solvers' loops would otherwise do on every step.
    fn set_i32<const M: usize>(self, v: &mut [i32; M], at: usize, x: i32);
    /// `v[at] = x`, as [`Lanes::set_i32`].
    fn set_f64<const M: usize>(self, v: &mut [f64; M], at: usize, x: f64);
    /// Where `cand < dist` (a shortest-path relaxation): `dist = open = cand` and `via = from`.
    /// [`Avx2`] blends and stores whole vectors (the compiler's masked stores are slow on some
    /// CPUs and defeat store forwarding).
    fn relax<const M: usize>(
        self,
        cand: &[f64; M],
        dist: &mut [f64; M],
        open: &mut [f64; M],
        via: &mut [u64; M],
        from: u64,
    );
    /// Lane-wise larger and smaller of `a` and `b` (no NaN; equal lanes may return either
    /// zero's sign): a sorting network's compare-exchange. [`Avx2`] uses one `maxps` and one
    /// `minps` per vector, without the NaN fix-ups of `f32::max` and without the masked stores
    /// the compiler makes of a compare-and-select written over one of its operands.
    fn max_min_f32<const M: usize>(self, a: &[f32; M], b: &[f32; M]) -> ([f32; M], [f32; M]);
    /// [`Lanes::max_min_f32`] over f64.
    fn max_min_f64<const M: usize>(self, a: &[f64; M], b: &[f64; M]) -> ([f64; M], [f64; M]);
    /// The M×M row-major `a` (at least M² values) transposed: `t[j][i] = a[i·M + j]`. [`Avx2`]
    /// shuffles 8×8 tiles when M is a multiple of 8 (24 shuffles a tile instead of 64
    /// single-value moves and inserts).
    fn transpose_f32<const M: usize>(self, a: &[f32]) -> [[f32; M]; M];
}

/// Whether M splits into whole `width`-lane vectors and its lanes fit a 64-bit mask.
#[inline(always)]
const fn whole<const M: usize>(width: usize) -> bool {
    M.is_multiple_of(width) && M <= 64
}

/// Plain Rust, any CPU.
#[derive(Debug, Clone, Copy)]
pub struct Portable;

/// The lowest set bit of a lane mask (M ≤ 64 lanes), or M when none is set.
#[inline(always)]
fn lowest(mask: u64, m: usize) -> usize {
    (mask.trailing_zeros() as usize).min(m)
}

impl Lanes for Portable {
    #[inline(always)]
    fn max_i32<const M: usize>(self, v: &[i32; M]) -> i32 {
        v.iter().fold(i32::MIN, |a, &b| a.max(b))
    }

    #[inline(always)]
    fn first_i32<const M: usize>(self, v: &[i32; M], x: i32) -> usize {
        v.iter().position(|&e| e == x).unwrap_or(M)
    }

    #[inline(always)]
    fn min_f64<const M: usize>(self, v: &[f64; M]) -> f64 {
        v.iter()
            .fold(f64::INFINITY, |a, &b| if b < a { b } else { a })
    }

    #[inline(always)]
    fn first_f64<const M: usize>(self, v: &[f64; M], x: f64) -> usize {
        v.iter().position(|&e| e == x).unwrap_or(M)
    }

    #[inline(always)]
    fn set_i32<const M: usize>(self, v: &mut [i32; M], at: usize, x: i32) {
        v[at] = x;
    }

    #[inline(always)]
    fn set_f64<const M: usize>(self, v: &mut [f64; M], at: usize, x: f64) {
        v[at] = x;
    }

    #[inline(always)]
    fn relax<const M: usize>(
        self,
        cand: &[f64; M],
        dist: &mut [f64; M],
        open: &mut [f64; M],
        via: &mut [u64; M],
        from: u64,
    ) {
        for i in 0..M {
            if cand[i] < dist[i] {
                (dist[i], open[i], via[i]) = (cand[i], cand[i], from);
            }
        }
    }

    #[inline(always)]
    fn max_min_f32<const M: usize>(self, a: &[f32; M], b: &[f32; M]) -> ([f32; M], [f32; M]) {
        (
            std::array::from_fn(|l| a[l].max(b[l])),
            std::array::from_fn(|l| a[l].min(b[l])),
        )
    }

    #[inline(always)]
    fn max_min_f64<const M: usize>(self, a: &[f64; M], b: &[f64; M]) -> ([f64; M], [f64; M]) {
        (
            std::array::from_fn(|l| a[l].max(b[l])),
            std::array::from_fn(|l| a[l].min(b[l])),
        )
    }

    #[inline(always)]
    fn transpose_f32<const M: usize>(self, a: &[f32]) -> [[f32; M]; M] {
        let mut t = [[0f32; M]; M];
        for (i, row) in a[..M * M].chunks_exact(M).enumerate() {
            for (j, &s) in row.iter().enumerate() {
                t[j][i] = s;
            }
        }
        t
    }
}

/// AVX2 intrinsics; obtained only through [`Avx2::detect`].
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy)]
pub struct Avx2(());

#[cfg(target_arch = "x86_64")]
impl Avx2 {
    /// `Some` when the CPU reports AVX2.
    pub fn detect() -> Option<Avx2> {
        std::arch::is_x86_feature_detected!("avx2").then_some(Avx2(()))
    }

    /// The token without the check, for code compiled with `target_feature(enable = "avx2")`.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    pub unsafe fn assume() -> Avx2 {
        Avx2(())
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Largest of M (a multiple of 8) i32.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub fn max_i32<const M: usize>(v: &[i32; M]) -> i32 {
        let p = v.as_ptr() as *const __m256i;
        // SAFETY: M is a multiple of 8, so every 8-lane load is inside `v`.
        let mut acc = unsafe { _mm256_loadu_si256(p) };
        for c in 1..M / 8 {
            acc = _mm256_max_epi32(acc, unsafe { _mm256_loadu_si256(p.add(c)) });
        }
        let x = _mm_max_epi32(
            _mm256_castsi256_si128(acc),
            _mm256_extracti128_si256::<1>(acc),
        );
        let x = _mm_max_epi32(x, _mm_shuffle_epi32::<0b01_00_11_10>(x));
        let x = _mm_max_epi32(x, _mm_shuffle_epi32::<0b10_11_00_01>(x));
        _mm_cvtsi128_si32(x)
    }

    /// Equality mask of M (a multiple of 8) i32 against `x`, one bit per lane.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub fn eq_i32<const M: usize>(v: &[i32; M], x: i32) -> u64 {
        let p = v.as_ptr() as *const __m256i;
        let b = _mm256_set1_epi32(x);
        let mut mask = 0u64;
        for c in 0..M / 8 {
            // SAFETY: M is a multiple of 8, so every 8-lane load is inside `v`.
            let e = _mm256_cmpeq_epi32(unsafe { _mm256_loadu_si256(p.add(c)) }, b);
            mask |= (_mm256_movemask_ps(_mm256_castsi256_ps(e)) as u32 as u64) << (8 * c);
        }
        mask
    }

    /// Smallest of M (a multiple of 4) f64 without NaN.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub fn min_f64<const M: usize>(v: &[f64; M]) -> f64 {
        let p = v.as_ptr();
        // SAFETY: M is a multiple of 4, so every 4-lane load is inside `v`.
        let mut acc = unsafe { _mm256_loadu_pd(p) };
        for c in 1..M / 4 {
            acc = _mm256_min_pd(acc, unsafe { _mm256_loadu_pd(p.add(4 * c)) });
        }
        let x = _mm_min_pd(_mm256_castpd256_pd128(acc), _mm256_extractf128_pd::<1>(acc));
        let x = _mm_min_sd(x, _mm_unpackhi_pd(x, x));
        _mm_cvtsd_f64(x)
    }

    /// Equality mask of M (a multiple of 4) f64 against `x`, one bit per lane.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub fn eq_f64<const M: usize>(v: &[f64; M], x: f64) -> u64 {
        let p = v.as_ptr();
        let b = _mm256_set1_pd(x);
        let mut mask = 0u64;
        for c in 0..M / 4 {
            // SAFETY: M is a multiple of 4, so every 4-lane load is inside `v`.
            let e = _mm256_cmp_pd::<_CMP_EQ_OQ>(unsafe { _mm256_loadu_pd(p.add(4 * c)) }, b);
            mask |= (_mm256_movemask_pd(e) as u32 as u64) << (4 * c);
        }
        mask
    }

    /// `v[at] = x` over M (a multiple of 8) i32 by full-width blends.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub fn set_i32<const M: usize>(v: &mut [i32; M], at: usize, x: i32) {
        let p = v.as_mut_ptr() as *mut __m256i;
        let (b, lane) = (_mm256_set1_epi32(x), _mm256_set1_epi32(at as i32));
        let mut index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        for c in 0..M / 8 {
            let hit = _mm256_cmpeq_epi32(index, lane);
            // SAFETY: M is a multiple of 8, so every 8-lane access is inside `v`.
            unsafe {
                let old = _mm256_loadu_si256(p.add(c));
                _mm256_storeu_si256(p.add(c), _mm256_blendv_epi8(old, b, hit));
            }
            index = _mm256_add_epi32(index, _mm256_set1_epi32(8));
        }
    }

    /// `v[at] = x` over M (a multiple of 4) f64 by full-width blends.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub fn set_f64<const M: usize>(v: &mut [f64; M], at: usize, x: f64) {
        let p = v.as_mut_ptr();
        let (b, lane) = (_mm256_set1_pd(x), _mm256_set1_epi64x(at as i64));
        let mut index = _mm256_setr_epi64x(0, 1, 2, 3);
        for c in 0..M / 4 {
            let hit = _mm256_castsi256_pd(_mm256_cmpeq_epi64(index, lane));
            // SAFETY: M is a multiple of 4, so every 4-lane access is inside `v`.
            unsafe {
                let old = _mm256_loadu_pd(p.add(4 * c));
                _mm256_storeu_pd(p.add(4 * c), _mm256_blendv_pd(old, b, hit));
            }
            index = _mm256_add_epi64(index, _mm256_set1_epi64x(4));
        }
    }

    /// [`super::Lanes::relax`] over M (a multiple of 4) lanes by full-width blends.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub fn relax<const M: usize>(
        cand: &[f64; M],
        dist: &mut [f64; M],
        open: &mut [f64; M],
        via: &mut [u64; M],
        from: u64,
    ) {
        let f = _mm256_castsi256_pd(_mm256_set1_epi64x(from as i64));
        let (c, d, o, v) = (
            cand.as_ptr(),
            dist.as_mut_ptr(),
            open.as_mut_ptr(),
            via.as_mut_ptr() as *mut f64,
        );
        for k in (0..M).step_by(4) {
            // SAFETY: M is a multiple of 4, so every 4-lane access is inside the arrays.
            unsafe {
                let (nc, nd) = (_mm256_loadu_pd(c.add(k)), _mm256_loadu_pd(d.add(k)));
                let better = _mm256_cmp_pd::<_CMP_LT_OQ>(nc, nd);
                _mm256_storeu_pd(d.add(k), _mm256_blendv_pd(nd, nc, better));
                let no = _mm256_loadu_pd(o.add(k));
                _mm256_storeu_pd(o.add(k), _mm256_blendv_pd(no, nc, better));
                let nv = _mm256_loadu_pd(v.add(k));
                _mm256_storeu_pd(v.add(k), _mm256_blendv_pd(nv, f, better));
            }
        }
    }

    /// Lane-wise max and min over M (a multiple of 8) f32.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub fn max_min_f32<const M: usize>(a: &[f32; M], b: &[f32; M]) -> ([f32; M], [f32; M]) {
        let (mut hi, mut lo) = ([0f32; M], [0f32; M]);
        for k in (0..M).step_by(8) {
            // SAFETY: M is a multiple of 8, so every 8-lane access is inside the arrays.
            unsafe {
                let (x, y) = (
                    _mm256_loadu_ps(a.as_ptr().add(k)),
                    _mm256_loadu_ps(b.as_ptr().add(k)),
                );
                _mm256_storeu_ps(hi.as_mut_ptr().add(k), _mm256_max_ps(x, y));
                _mm256_storeu_ps(lo.as_mut_ptr().add(k), _mm256_min_ps(x, y));
            }
        }
        (hi, lo)
    }

    /// The M×M row-major `a` (M a multiple of 8, at least M² values) transposed, 8×8 tile by
    /// tile: each tile's rows unpacked, shuffled, then their 128-bit halves swapped.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub fn transpose_f32<const M: usize>(a: &[f32]) -> [[f32; M]; M] {
        assert!(a.len() >= M * M && M.is_multiple_of(8));
        let mut t = [[0f32; M]; M];
        for bi in (0..M).step_by(8) {
            for bj in (0..M).step_by(8) {
                // Rows bi..bi + 8 of `a` hold columns bj..bj + 8 (M² values, M a multiple of 8,
                // asserted above), and rows bj..bj + 8 of `t` columns bi..bi + 8.
                // SAFETY: so every 8-lane load and store is inside `a` and `t`.
                unsafe {
                    let src = a.as_ptr().add(bi * M + bj);
                    let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(src.add(M * i)));
                    let lo = |x, y| _mm256_unpacklo_ps(x, y);
                    let hi = |x, y| _mm256_unpackhi_ps(x, y);
                    let u = [
                        lo(r[0], r[1]),
                        hi(r[0], r[1]),
                        lo(r[2], r[3]),
                        hi(r[2], r[3]),
                        lo(r[4], r[5]),
                        hi(r[4], r[5]),
                        lo(r[6], r[7]),
                        hi(r[6], r[7]),
                    ];
                    let v = [
                        _mm256_shuffle_ps::<0x44>(u[0], u[2]),
                        _mm256_shuffle_ps::<0xEE>(u[0], u[2]),
                        _mm256_shuffle_ps::<0x44>(u[1], u[3]),
                        _mm256_shuffle_ps::<0xEE>(u[1], u[3]),
                        _mm256_shuffle_ps::<0x44>(u[4], u[6]),
                        _mm256_shuffle_ps::<0xEE>(u[4], u[6]),
                        _mm256_shuffle_ps::<0x44>(u[5], u[7]),
                        _mm256_shuffle_ps::<0xEE>(u[5], u[7]),
                    ];
                    for k in 0..4 {
                        let (low, high) = (
                            _mm256_permute2f128_ps::<0x20>(v[k], v[k + 4]),
                            _mm256_permute2f128_ps::<0x31>(v[k], v[k + 4]),
                        );
                        _mm256_storeu_ps(t[bj + k].as_mut_ptr().add(bi), low);
                        _mm256_storeu_ps(t[bj + k + 4].as_mut_ptr().add(bi), high);
                    }
                }
            }
        }
        t
    }

    /// Lane-wise max and min over M (a multiple of 4) f64.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub fn max_min_f64<const M: usize>(a: &[f64; M], b: &[f64; M]) -> ([f64; M], [f64; M]) {
        let (mut hi, mut lo) = ([0f64; M], [0f64; M]);
        for k in (0..M).step_by(4) {
            // SAFETY: M is a multiple of 4, so every 4-lane access is inside the arrays.
            unsafe {
                let (x, y) = (
                    _mm256_loadu_pd(a.as_ptr().add(k)),
                    _mm256_loadu_pd(b.as_ptr().add(k)),
                );
                _mm256_storeu_pd(hi.as_mut_ptr().add(k), _mm256_max_pd(x, y));
                _mm256_storeu_pd(lo.as_mut_ptr().add(k), _mm256_min_pd(x, y));
            }
        }
        (hi, lo)
    }
}

#[cfg(target_arch = "x86_64")]
impl Lanes for Avx2 {
    #[inline(always)]
    fn max_i32<const M: usize>(self, v: &[i32; M]) -> i32 {
        if !whole::<M>(8) {
            return Portable.max_i32(v);
        }
        // SAFETY: an `Avx2` value exists only when the CPU reports AVX2.
        unsafe { avx2::max_i32(v) }
    }

    #[inline(always)]
    fn first_i32<const M: usize>(self, v: &[i32; M], x: i32) -> usize {
        if !whole::<M>(8) {
            return Portable.first_i32(v, x);
        }
        // SAFETY: as above.
        lowest(unsafe { avx2::eq_i32(v, x) }, M)
    }

    #[inline(always)]
    fn min_f64<const M: usize>(self, v: &[f64; M]) -> f64 {
        if !whole::<M>(4) {
            return Portable.min_f64(v);
        }
        // SAFETY: as above.
        unsafe { avx2::min_f64(v) }
    }

    #[inline(always)]
    fn first_f64<const M: usize>(self, v: &[f64; M], x: f64) -> usize {
        if !whole::<M>(4) {
            return Portable.first_f64(v, x);
        }
        // SAFETY: as above.
        lowest(unsafe { avx2::eq_f64(v, x) }, M)
    }

    #[inline(always)]
    fn set_i32<const M: usize>(self, v: &mut [i32; M], at: usize, x: i32) {
        if !whole::<M>(8) {
            return Portable.set_i32(v, at, x);
        }
        // SAFETY: as above.
        unsafe { avx2::set_i32(v, at, x) }
    }

    #[inline(always)]
    fn set_f64<const M: usize>(self, v: &mut [f64; M], at: usize, x: f64) {
        if !whole::<M>(4) {
            return Portable.set_f64(v, at, x);
        }
        // SAFETY: as above.
        unsafe { avx2::set_f64(v, at, x) }
    }

    #[inline(always)]
    fn relax<const M: usize>(
        self,
        cand: &[f64; M],
        dist: &mut [f64; M],
        open: &mut [f64; M],
        via: &mut [u64; M],
        from: u64,
    ) {
        if !whole::<M>(4) {
            return Portable.relax(cand, dist, open, via, from);
        }
        // SAFETY: as above.
        unsafe { avx2::relax(cand, dist, open, via, from) }
    }

    #[inline(always)]
    fn max_min_f32<const M: usize>(self, a: &[f32; M], b: &[f32; M]) -> ([f32; M], [f32; M]) {
        if !whole::<M>(8) {
            return Portable.max_min_f32(a, b);
        }
        // SAFETY: as above.
        unsafe { avx2::max_min_f32(a, b) }
    }

    #[inline(always)]
    fn max_min_f64<const M: usize>(self, a: &[f64; M], b: &[f64; M]) -> ([f64; M], [f64; M]) {
        if !whole::<M>(4) {
            return Portable.max_min_f64(a, b);
        }
        // SAFETY: as above.
        unsafe { avx2::max_min_f64(a, b) }
    }

    #[inline(always)]
    fn transpose_f32<const M: usize>(self, a: &[f32]) -> [[f32; M]; M] {
        if !whole::<M>(8) {
            return Portable.transpose_f32(a);
        }
        // SAFETY: as above.
        unsafe { avx2::transpose_f32(a) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn agree<const M: usize>(lanes: impl Lanes, rng: &mut impl Rng) {
        for _ in 0..200 {
            let i: [i32; M] = std::array::from_fn(|_| rng.random_range(-1..4));
            let f: [f64; M] =
                std::array::from_fn(|_| [0.0, 1.5, 2.0, f64::INFINITY][rng.random_range(0..4)]);
            let (mi, mf) = (Portable.max_i32(&i), Portable.min_f64(&f));
            assert_eq!(lanes.max_i32(&i), mi, "{i:?}");
            assert_eq!(lanes.min_f64(&f), mf, "{f:?}");
            for x in [-1, 0, 3, 7] {
                assert_eq!(
                    lanes.first_i32(&i, x),
                    Portable.first_i32(&i, x),
                    "{i:?} {x}"
                );
            }
            for x in [0.0, 2.0, f64::INFINITY, 9.0] {
                assert_eq!(
                    lanes.first_f64(&f, x),
                    Portable.first_f64(&f, x),
                    "{f:?} {x}"
                );
            }
            assert_eq!(Portable.first_i32(&i, 7), M);
            let at = rng.random_range(0..M);
            let (mut a, mut b) = (i, i);
            lanes.set_i32(&mut a, at, 9);
            b[at] = 9;
            assert_eq!(a, b);
            let (mut a, mut b) = (f, f);
            lanes.set_f64(&mut a, at, 0.25);
            b[at] = 0.25;
            assert_eq!(a, b);
            let cand: [f64; M] = std::array::from_fn(|_| rng.random_range(0.0..3.0));
            let via: [u64; M] = std::array::from_fn(|k| k as u64);
            let (mut d1, mut o1, mut v1) = (f, i.map(|x| x as f64), via);
            let (mut d2, mut o2, mut v2) = (d1, o1, v1);
            lanes.relax(&cand, &mut d1, &mut o1, &mut v1, 99);
            Portable.relax(&cand, &mut d2, &mut o2, &mut v2, 99);
            assert_eq!((d1, o1, v1), (d2, o2, v2));
            let g: [f64; M] = std::array::from_fn(|_| rng.random_range(-1.0..1.0));
            assert_eq!(lanes.max_min_f64(&f, &g), Portable.max_min_f64(&f, &g));
            let (f32s, g32) = (f.map(|x| x as f32), g.map(|x| x as f32));
            assert_eq!(
                lanes.max_min_f32(&f32s, &g32),
                Portable.max_min_f32(&f32s, &g32)
            );
            let square: Vec<f32> = (0..M * M).map(|_| rng.random_range(-1.0..1.0)).collect();
            assert_eq!(
                lanes.transpose_f32::<M>(&square),
                Portable.transpose_f32::<M>(&square)
            );
            let t = Portable.transpose_f32::<M>(&square);
            assert_eq!(t[M - 1][0], square[M - 1], "t[j][i] = a[i·M + j]");
            assert!(v1.contains(&99) || cand.iter().zip(&f).all(|(c, d)| c >= d));
            assert_eq!(i[Portable.first_i32(&i, mi)], mi);
        }
    }

    #[test]
    fn avx2_and_portable_lanes_agree() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(13); // fixed seed
        #[cfg(target_arch = "x86_64")]
        if let Some(avx2) = Avx2::detect() {
            agree::<2>(avx2, &mut rng);
            agree::<4>(avx2, &mut rng);
            agree::<8>(avx2, &mut rng);
            agree::<16>(avx2, &mut rng);
            agree::<32>(avx2, &mut rng);
            agree::<64>(avx2, &mut rng);
            return;
        }
        agree::<16>(Portable, &mut rng);
    }
}
