//! The stored value types of the operands a kernel reads from memory: `f32`, or `bf16` (the
//! upper half of an `f32`), widened to `f32` as it is loaded. Products accumulate in `f32`
//! either way.
//!
//! bf16 halves the bytes of a stored operand, which is what bounds a product at batch below 16
//! (a matrix–vector product per column); at 16 columns or more the product is bound by its
//! multiply-adds, and the kernels there read `f32` (see [`super::nm::NmMatrix::to_bf16`]).

use half::bf16;

/// A value type the matrix–vector kernels read (`f32` or [`bf16`]).
pub trait Element: Copy + Send + Sync + 'static {
    /// The name in reports: `f32` or `bf16`.
    const NAME: &'static str;

    /// The value as `f32` (exact: bf16 is the upper half of an `f32`).
    fn widen(self) -> f32;

    /// 16 consecutive values from `p`, widened.
    ///
    /// # Safety
    /// `p` points to 16 readable values and the CPU has AVX-512F (the caller is compiled with
    /// it: this is always inlined into it).
    #[cfg(target_arch = "x86_64")]
    // SAFETY: unsafe for the raw read of 16 values and the target feature (the contract above).
    unsafe fn load16(p: *const Self) -> std::arch::x86_64::__m512;

    /// 8 consecutive values from `p`, widened.
    ///
    /// # Safety
    /// `p` points to 8 readable values and the CPU has AVX2 (the caller is compiled with it).
    #[cfg(target_arch = "x86_64")]
    // SAFETY: unsafe for the raw read of 8 values and the target feature (the contract above).
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256;
}

impl Element for f32 {
    const NAME: &'static str = "f32";

    #[inline(always)]
    fn widen(self) -> f32 {
        self
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    // SAFETY: the trait's contract (16 readable values, AVX-512F) is the caller's.
    unsafe fn load16(p: *const Self) -> std::arch::x86_64::__m512 {
        // SAFETY: the caller's contract (16 readable floats, AVX-512F).
        unsafe { std::arch::x86_64::_mm512_loadu_ps(p) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    // SAFETY: the trait's contract (8 readable values, AVX2) is the caller's.
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        // SAFETY: the caller's contract (8 readable floats, AVX2).
        unsafe { std::arch::x86_64::_mm256_loadu_ps(p) }
    }
}

impl Element for bf16 {
    const NAME: &'static str = "bf16";

    /// The bits shifted into the upper half (exact; unlike `half`'s conversion it does not
    /// quiet a signalling NaN, which no kernel here produces, and so it vectorises plainly).
    #[inline(always)]
    fn widen(self) -> f32 {
        f32::from_bits((self.to_bits() as u32) << 16)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    // SAFETY: the trait's contract (16 readable values, AVX-512F) is the caller's.
    unsafe fn load16(p: *const Self) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        // SAFETY: the caller's contract (16 readable bf16 = 32 bytes, AVX-512F).
        unsafe {
            let h = _mm256_loadu_si256(p.cast());
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    // SAFETY: the trait's contract (8 readable values, AVX2) is the caller's.
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // SAFETY: the caller's contract (8 readable bf16 = 16 bytes, AVX2).
        unsafe {
            let h = _mm_loadu_si128(p.cast());
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
        }
    }
}

/// `x` rounded to the nearest bf16 (ties to even), as an `f32`.
pub fn round_bf16(x: f32) -> f32 {
    bf16::from_f32(x).widen()
}

/// A value type of `masklab gemm --dtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// 32-bit floats.
    #[default]
    F32,
    /// bfloat16 storage, f32 accumulation.
    Bf16,
}

impl Dtype {
    /// Bytes of one value.
    pub fn bytes(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::Bf16 => 2,
        }
    }
}

impl std::str::FromStr for Dtype {
    type Err = crate::error::Error;
    fn from_str(s: &str) -> crate::error::Result<Self> {
        match s {
            "f32" => Ok(Dtype::F32),
            "bf16" => Ok(Dtype::Bf16),
            other => Err(crate::error::Error::invalid(
                "dtype",
                other,
                "expected f32 or bf16",
            )),
        }
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dtype::F32 => "f32",
            Dtype::Bf16 => "bf16",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widening_is_exact_and_rounding_ties_to_even() {
        for x in [0.0f32, -0.0, 1.0, -2.5, 3.0e38, 1.0e-38, f32::INFINITY] {
            assert_eq!(
                bf16::from_f32(x).widen().to_bits(),
                bf16::from_f32(x).to_f32().to_bits()
            );
        }
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to the even mantissa, 1.
        assert_eq!(round_bf16(1.0 + 1.0 / 256.0), 1.0);
        // 1 + 3·2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties to 1 + 2^-6.
        assert_eq!(round_bf16(1.0 + 3.0 / 256.0), 1.0 + 1.0 / 64.0);
        assert_eq!("bf16".parse::<Dtype>().ok(), Some(Dtype::Bf16));
        assert!("f16".parse::<Dtype>().is_err());
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_loads_widen_every_lane() {
        let v: Vec<bf16> = (0..16).map(|i| bf16::from_f32(i as f32 * -0.75)).collect();
        let mut out = [0f32; 16];
        if crate::sparse::Isa::Avx512.check().is_ok() {
            // SAFETY: 16 values; AVX-512F checked.
            unsafe { store16(&v, &mut out) };
            let want: Vec<f32> = v.iter().map(|b| b.to_f32()).collect();
            assert_eq!(out.to_vec(), want);
        }
        if crate::sparse::Isa::Avx2.check().is_ok() {
            let mut out8 = [0f32; 8];
            // SAFETY: 8 values; AVX2 checked.
            unsafe { store8(&v[8..], &mut out8) };
            let want: Vec<f32> = v[8..].iter().map(|b| b.to_f32()).collect();
            assert_eq!(out8.to_vec(), want);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    // SAFETY: unsafe for its target feature and raw reads: the test passes 16 values on a CPU
    // with AVX-512F.
    unsafe fn store16(v: &[bf16], out: &mut [f32; 16]) {
        // SAFETY: the caller passes 16 values on an AVX-512F CPU.
        unsafe { std::arch::x86_64::_mm512_storeu_ps(out.as_mut_ptr(), bf16::load16(v.as_ptr())) }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    // SAFETY: unsafe for its target feature and raw reads: the test passes 8 values on a CPU
    // with AVX2.
    unsafe fn store8(v: &[bf16], out: &mut [f32; 8]) {
        // SAFETY: the caller passes 8 values on an AVX2 CPU.
        unsafe { std::arch::x86_64::_mm256_storeu_ps(out.as_mut_ptr(), bf16::load8(v.as_ptr())) }
    }
}
