//! How fast this core multiplies when one operand comes from L1, against when both are in
//! registers: the bound of the broadcast-times-row sparse kernels at large batch.
//!
//! Problem: every sparse kernel here ([`super::nm`], [`super::csr`], [`super::bsr`]) computes
//! a row of C as kept value × row of B, one broadcast and one fused multiply-add per vector of
//! B, whose B vector is read from L1 by that multiply-add: a kept entry's B row differs from
//! row to row of A, so no loaded vector serves two rows. The dense GEMM (gemm's 6-row ×
//! 4-vector microkernel) reads 4 vectors of B and 6 broadcasts per 24 multiply-adds. On a core
//! whose L1 delivers fewer vectors a cycle than its FMA units consume (this machine's Xeon
//! reads one 64-byte vector a cycle and retires two 512-bit FMAs), the sparse kernels run at
//! the L1's rate, not the FMA units', and N:M 2:4 at batch 128 can at best match dense: its
//! FLOP limit M/N = 2 times the rate ratio ≈ 0.45.
//!
//! Method: two loops with the sparse and dense kernels' instruction mix, each run for a fixed
//! count of multiply-adds on data in L1, timed three times in alternation; the fastest time of
//! each gives its rate. `l1_operand`: 3 rows × 8 vectors (AVX-512; 4 of 8 lanes on AVX2), each
//! multiply-add reading its B vector from a 32 KiB block at an offset read from a table, as
//! `spmm_avx512` does. `register`: 6 rows × 4 vectors (AVX-512; 2 on AVX2), 4 vectors loaded
//! and reused by 6 broadcasts, as gemm's microkernel does.
//! Guarantee: both loops compute what `reference` computes (tested), so neither is optimised
//! away; the rates are one core's (the probe runs on the calling thread).
//! Cost: about 50 ms per call, once per process ([`rates`] caches it).

use super::Isa;
use std::sync::OnceLock;
use std::time::Instant;

/// One core's multiply-add rates, in GFLOP/s (2 FLOPs per multiply-add per lane).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FmaRates {
    /// Both operands in registers (B vectors reused by 6 rows): the dense kernel's mix.
    pub register_gflops: f64,
    /// The B operand read from L1 by every multiply-add: the sparse kernels' mix.
    pub l1_operand_gflops: f64,
}

impl FmaRates {
    /// `l1_operand_gflops / register_gflops`: how much of the dense rate a sparse kernel can
    /// reach, so `M/N` times this bounds an N:M kernel's speedup at large batch.
    pub fn ratio(&self) -> f64 {
        self.l1_operand_gflops / self.register_gflops
    }
}

/// Floats in the probe's B block: 64 rows of 128, 32 KiB, as the N:M kernel packs.
const BLOCK: usize = 64 * 128;
/// Offsets in the table the L1-operand loop cycles through.
const OFFSETS: usize = 1024;
/// Iterations per timed run (24 multiply-adds of one vector each per iteration).
const ITERS: usize = 1 << 21;
/// Broadcast values (a power of two, so the loops index them with a mask, not a division).
const VALUES: usize = 4096;

/// The probe's data: the B block, row offsets into it and broadcast values.
struct Data {
    /// The block, from `start` on: 64-byte aligned, as the N:M kernel aligns its packed block
    /// (a 512-bit load across two cache lines costs two: unaligned, the L1-operand loop ran at
    /// half its rate).
    buf: Vec<f32>,
    start: usize,
    offsets: Vec<u32>,
    values: Vec<f32>,
}

impl Data {
    fn new() -> Data {
        let (mut buf, start) = super::aligned_zeros(BLOCK + 128);
        for (i, x) in buf[start..start + BLOCK + 128].iter_mut().enumerate() {
            *x = (i % 13) as f32 * 1e-3 - 6e-3;
        }
        Data {
            buf,
            start,
            // Rows 0..61 of the block (so row + 2 < 64), scattered as kept positions are.
            offsets: (0..OFFSETS as u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) % 61 * 128)
                .collect(),
            values: (0..VALUES).map(|i| (i % 7) as f32 * 1e-3).collect(),
        }
    }

    /// The aligned block: `BLOCK + 128` floats.
    fn block(&self) -> &[f32] {
        &self.buf[self.start..self.start + BLOCK + 128]
    }
}

/// This core's rates on the widest vector path `isa` has (`None` on the scalar path, which
/// no sparse kernel here bounds this way). Measured once per process and instruction set.
pub fn rates(isa: Isa) -> Option<FmaRates> {
    static AVX512: OnceLock<Option<FmaRates>> = OnceLock::new();
    static AVX2: OnceLock<Option<FmaRates>> = OnceLock::new();
    match isa {
        Isa::Scalar => None,
        Isa::Avx2 => *AVX2.get_or_init(|| measure(Isa::Avx2)),
        Isa::Avx512 => *AVX512.get_or_init(|| measure(Isa::Avx512)),
    }
}

/// Lanes per vector of `isa`.
fn lanes(isa: Isa) -> usize {
    match isa {
        Isa::Avx512 => 16,
        Isa::Avx2 => 8,
        Isa::Scalar => 1,
    }
}

fn measure(isa: Isa) -> Option<FmaRates> {
    isa.check().ok()?;
    let data = Data::new();
    let (mut best_l1, mut best_reg) = (f64::INFINITY, f64::INFINITY);
    // A warm-up of each (the core's clock and the caches), then three timed runs each.
    std::hint::black_box(run(isa, Mix::L1Operand, &data, ITERS));
    std::hint::black_box(run(isa, Mix::Register, &data, ITERS));
    for _ in 0..3 {
        let t = Instant::now();
        std::hint::black_box(run(isa, Mix::L1Operand, &data, ITERS));
        best_l1 = best_l1.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        std::hint::black_box(run(isa, Mix::Register, &data, ITERS));
        best_reg = best_reg.min(t.elapsed().as_secs_f64());
    }
    let flops = (2 * 24 * lanes(isa) * ITERS) as f64;
    Some(FmaRates {
        register_gflops: flops / best_reg / 1e9,
        l1_operand_gflops: flops / best_l1 / 1e9,
    })
}

/// Which instruction mix a probe loop runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mix {
    /// 3 rows × 8 vectors, every B vector read from L1 by its multiply-add.
    L1Operand,
    /// 6 rows × 4 vectors, 4 B vectors loaded per iteration and reused by the 6 rows.
    Register,
}

/// The probe loop `mix` on `isa` for `iters` iterations: the sum of its accumulators' lanes.
fn run(isa: Isa, mix: Mix, data: &Data, iters: usize) -> f32 {
    let data = std::hint::black_box(data);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `rates` only measures an instruction set that `Isa::check` accepted, and the
        // tests call `run` only after the same check.
        Isa::Avx512 => unsafe { x86::run_avx512(mix, data, iters) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, for AVX2 and FMA.
        Isa::Avx2 => unsafe { x86::run_avx2(mix, data, iters) },
        _ => reference(isa, mix, data, iters),
    }
}

/// What [`run`] computes, in plain scalar code, lane by lane (for the tests).
fn reference(isa: Isa, mix: Mix, data: &Data, iters: usize) -> f32 {
    let l = lanes(isa);
    let vecs = match (mix, isa) {
        (Mix::L1Operand, Isa::Avx512) => 8,
        (Mix::L1Operand, _) => 4,
        (Mix::Register, Isa::Avx512) => 4,
        (Mix::Register, _) => 2,
    };
    let rows = match mix {
        Mix::L1Operand => 3,
        Mix::Register => 6,
    };
    let mut acc = vec![0f32; rows * vecs * l];
    for it in 0..iters {
        for r in 0..rows {
            let (x, base) = match mix {
                Mix::L1Operand => (
                    data.values[(it * 3 + r) % VALUES],
                    data.offsets[it % OFFSETS] as usize + r * 128,
                ),
                Mix::Register => (data.values[(it * 6 + r) % VALUES], (it % 64) * 128),
            };
            for v in 0..vecs {
                for lane in 0..l {
                    let a = &mut acc[(r * vecs + v) * l + lane];
                    *a = x.mul_add(data.block()[base + v * l + lane], *a);
                }
            }
        }
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Data, Mix, OFFSETS, VALUES};
    use std::arch::x86_64::*;

    /// The AVX-512 probe loop `mix` (see [`super::reference`] for what it computes). Each mix
    /// is a function of its own, never inlined: in one body LLVM kept half the accumulators on
    /// the stack.
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    // SAFETY: unsafe for its target feature only: callers run it where `Isa::check` found
    // AVX-512F.
    pub(super) unsafe fn run_avx512(mix: Mix, data: &Data, iters: usize) -> f32 {
        // SAFETY: the caller's contract.
        let acc = unsafe {
            match mix {
                Mix::L1Operand => l1_avx512(data, iters),
                Mix::Register => register_avx512(data, iters),
            }
        };
        let mut lanes = [0f32; 16];
        let mut total = 0f32;
        for a in acc {
            // SAFETY: a 16-float store into a 16-float array.
            unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), a) };
            total += lanes.iter().sum::<f32>();
        }
        total
    }

    /// 3 rows × 8 vectors, each B vector read from L1 by its multiply-add.
    #[target_feature(enable = "avx512f")]
    #[inline(never)]
    // SAFETY: unsafe for its target feature; `run_avx512` calls it under its own contract.
    unsafe fn l1_avx512(data: &Data, iters: usize) -> [__m512; 24] {
        let b = data.block().as_ptr();
        let mut acc = [_mm512_setzero_ps(); 24];
        // SAFETY: offsets are below 61·128, so `offset + r·128 + 16·v + 16 ≤ 64·128` floats of
        // the block (which holds 128 more); value indices are taken modulo their length.
        unsafe {
            for it in 0..iters {
                let off = *data.offsets.get_unchecked(it % OFFSETS) as usize;
                for r in 0..3 {
                    let x = _mm512_set1_ps(*data.values.get_unchecked((it * 3 + r) % VALUES));
                    let p = b.add(off + r * 128);
                    for v in 0..8 {
                        acc[r * 8 + v] =
                            _mm512_fmadd_ps(x, _mm512_loadu_ps(p.add(16 * v)), acc[r * 8 + v]);
                    }
                }
            }
        }
        acc
    }

    /// 6 rows × 4 vectors, the 4 B vectors loaded once and reused by the 6 rows.
    #[target_feature(enable = "avx512f")]
    #[inline(never)]
    // SAFETY: unsafe for its target feature; `run_avx512` calls it under its own contract.
    unsafe fn register_avx512(data: &Data, iters: usize) -> [__m512; 24] {
        let b = data.block().as_ptr();
        let mut acc = [_mm512_setzero_ps(); 24];
        // SAFETY: rows `(it mod 64)·128 + 64` floats are inside the block; value indices are
        // taken modulo their length.
        unsafe {
            for it in 0..iters {
                let p = b.add((it % 64) * 128);
                let row: [__m512; 4] = std::array::from_fn(|v| _mm512_loadu_ps(p.add(16 * v)));
                for r in 0..6 {
                    let x = _mm512_set1_ps(*data.values.get_unchecked((it * 6 + r) % VALUES));
                    for v in 0..4 {
                        acc[r * 4 + v] = _mm512_fmadd_ps(x, row[v], acc[r * 4 + v]);
                    }
                }
            }
        }
        acc
    }

    /// The AVX2 probe loop `mix`: half the vectors of the AVX-512 ones, each of 8 lanes.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    // SAFETY: unsafe for its target features only: callers run it where `Isa::check` found
    // AVX2 and FMA.
    pub(super) unsafe fn run_avx2(mix: Mix, data: &Data, iters: usize) -> f32 {
        // SAFETY: the caller's contract.
        let acc = unsafe {
            match mix {
                Mix::L1Operand => l1_avx2(data, iters),
                Mix::Register => register_avx2(data, iters),
            }
        };
        let mut lanes = [0f32; 8];
        let mut total = 0f32;
        for a in acc {
            // SAFETY: an 8-float store into an 8-float array.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), a) };
            total += lanes.iter().sum::<f32>();
        }
        total
    }

    /// 3 rows × 4 vectors of 8 lanes, each B vector read from L1 by its multiply-add.
    #[target_feature(enable = "avx2,fma")]
    #[inline(never)]
    // SAFETY: unsafe for its target features; `run_avx2` calls it under its own contract.
    unsafe fn l1_avx2(data: &Data, iters: usize) -> [__m256; 12] {
        let b = data.block().as_ptr();
        let mut acc = [_mm256_setzero_ps(); 12];
        // SAFETY: as in `l1_avx512`, with fewer floats read per row.
        unsafe {
            for it in 0..iters {
                let off = *data.offsets.get_unchecked(it % OFFSETS) as usize;
                for r in 0..3 {
                    let x = _mm256_set1_ps(*data.values.get_unchecked((it * 3 + r) % VALUES));
                    let p = b.add(off + r * 128);
                    for v in 0..4 {
                        acc[r * 4 + v] =
                            _mm256_fmadd_ps(x, _mm256_loadu_ps(p.add(8 * v)), acc[r * 4 + v]);
                    }
                }
            }
        }
        acc
    }

    /// 6 rows × 2 vectors of 8 lanes, the 2 B vectors reused by the 6 rows.
    #[target_feature(enable = "avx2,fma")]
    #[inline(never)]
    // SAFETY: unsafe for its target features; `run_avx2` calls it under its own contract.
    unsafe fn register_avx2(data: &Data, iters: usize) -> [__m256; 12] {
        let b = data.block().as_ptr();
        let mut acc = [_mm256_setzero_ps(); 12];
        // SAFETY: as in `register_avx512`.
        unsafe {
            for it in 0..iters {
                let p = b.add((it % 64) * 128);
                let row: [__m256; 2] = std::array::from_fn(|v| _mm256_loadu_ps(p.add(8 * v)));
                for r in 0..6 {
                    let x = _mm256_set1_ps(*data.values.get_unchecked((it * 6 + r) % VALUES));
                    for v in 0..2 {
                        acc[r * 2 + v] = _mm256_fmadd_ps(x, row[v], acc[r * 2 + v]);
                    }
                }
            }
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each vector loop computes its scalar reference (so the timed work is the stated work),
    /// on every path this CPU has.
    #[test]
    fn each_probe_loop_computes_its_reference() {
        let data = Data::new();
        for isa in [Isa::Avx2, Isa::Avx512] {
            if isa.check().is_err() {
                continue;
            }
            for mix in [Mix::L1Operand, Mix::Register] {
                let want = reference(isa, mix, &data, 2000);
                let got = run(isa, mix, &data, 2000);
                assert!(
                    (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                    "{isa:?} {mix:?}: {got} against {want}"
                );
                assert!(want != 0.0, "the reference sum must not be trivially 0");
            }
        }
    }

    #[test]
    fn the_scalar_path_has_no_rates_and_vector_paths_do() {
        assert_eq!(rates(Isa::Scalar), None);
        if Isa::Avx2.check().is_ok() {
            let r = rates(Isa::Avx2).expect("AVX2 rates");
            assert!(
                r.register_gflops > 0.0 && r.l1_operand_gflops > 0.0,
                "{r:?}"
            );
            assert!(r.register_gflops.is_finite() && r.l1_operand_gflops.is_finite());
        }
    }
}
