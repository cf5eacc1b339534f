//! The softmax cross-entropy loss as one op with its own backward.
//!
//! Problem: `candle_nn::loss::cross_entropy` is log-softmax (max, subtract, exp, sum, log,
//! subtract), a gather and a mean — eight small ops forward and as many backward, each with an
//! allocation, on the main thread while the other cores wait (the table4 MLP's loss phase took
//! 12–15 µs of its 1 ms step forward alone; this op's takes 7–8 µs). This op computes the mean
//! loss in one pass over the logits and its gradient `(softmax − onehot)/n` in one more.
//!
//! Guarantee: the same loss and logit gradient as candle's composition, to float rounding
//! (tested to 1e-6); targets outside `0..classes` are an error naming the row. Cost: two passes
//! over the `[n, classes]` logits (forward and backward), one `exp` per logit each.
//! CPU only: on other devices [`cross_entropy`] is candle's composition.

use super::f32_slice;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};

/// The mean softmax cross-entropy of `logits: [n, classes]` against class indices `targets: [n]`
/// (u8, u32 or i64), differentiable in the logits.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
    if !logits.device().is_cpu() || logits.dtype() != candle_core::DType::F32 {
        return candle_nn::loss::cross_entropy(logits, targets);
    }
    logits
        .contiguous()?
        .apply_op2(&targets.contiguous()?, CrossEntropy)
}

/// `Σ −log softmax(logits)[target]` over the rows of `logits: [n, classes]`, summed in f64
/// (each row's log-sum-exp in f32, as candle's log-softmax, by the vectorised
/// [`crate::vmath::log_sum_exp`]), rows in parallel and summed in
/// order (deterministic): one pass over the logits. `None` off the CPU or for other dtypes,
/// where the caller composes candle's ops.
pub fn nll_sum(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Option<f64>> {
    use rayon::prelude::*;
    if !logits.device().is_cpu() || logits.dtype() != candle_core::DType::F32 {
        return Ok(None);
    }
    let (logits, targets) = (logits.contiguous()?, targets.contiguous()?);
    let per_row: Vec<f64> = with_rows(&logits, &targets, |x, _, classes, t| {
        // Rows in parallel, their sum in order: the result does not depend on how rayon splits.
        x.par_chunks(classes.max(1))
            .zip(t.par_iter())
            .map(|(row, &t)| {
                let (max, lse) = crate::vmath::log_sum_exp(row);
                f64::from(lse - (row[t] - max))
            })
            .collect()
    })?;
    Ok(Some(per_row.iter().sum()))
}

/// The class index of each row, checked against `classes` (errors name the row).
fn classes_of(s: &CpuStorage, l: &Layout, classes: usize) -> candle_core::Result<Vec<usize>> {
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("cross-entropy: expected contiguous targets")
    };
    let raw: Vec<i64> = match s {
        CpuStorage::U8(v) => v[a..b].iter().map(|&t| t as i64).collect(),
        CpuStorage::U32(v) => v[a..b].iter().map(|&t| t as i64).collect(),
        CpuStorage::I64(v) => v[a..b].to_vec(),
        other => candle_core::bail!(
            "cross-entropy: targets must be u8, u32 or i64, got {:?}",
            other.dtype()
        ),
    };
    raw.iter()
        .enumerate()
        .map(|(i, &t)| match usize::try_from(t) {
            Ok(t) if t < classes => Ok(t),
            _ => candle_core::bail!("cross-entropy: row {i} has target {t}, not in 0..{classes}"),
        })
        .collect()
}

/// The logits' rows, and their shape checked against the targets'.
fn rows<'a>(
    s: &'a CpuStorage,
    l: &Layout,
    targets: &Layout,
) -> candle_core::Result<(&'a [f32], usize, usize)> {
    let x = f32_slice(s, l, "cross-entropy")?;
    let (n, classes) = l.shape().dims2()?;
    if targets.shape().dims() != [n] {
        candle_core::bail!(
            "cross-entropy: logits [{n}, {classes}] against targets {:?}",
            targets.shape().dims()
        )
    }
    Ok((x, n, classes))
}

/// `f(logits' values, rows, classes, each row's class)` of contiguous CPU operands.
fn with_rows<R>(
    logits: &Tensor,
    targets: &Tensor,
    f: impl FnOnce(&[f32], usize, usize, &[usize]) -> R,
) -> candle_core::Result<R> {
    let (s1, l1) = logits.storage_and_layout();
    let (s2, l2) = targets.storage_and_layout();
    let (candle_core::Storage::Cpu(s1), candle_core::Storage::Cpu(s2)) = (&*s1, &*s2) else {
        candle_core::bail!("cross-entropy: expected CPU operands")
    };
    let (x, n, classes) = rows(s1, l1, l2)?;
    let t = classes_of(s2, l2, classes)?;
    Ok(f(x, n, classes, &t))
}

/// `(max, log Σ exp(x − max))` of one row, by libm's exp: the training loss keeps it so that
/// trained models do not move with [`crate::vmath::log_sum_exp`]'s last bits (the perplexity's
/// NLL, evaluated once per token, uses that one).
fn log_sum_exp(row: &[f32]) -> (f32, f32) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    (max, row.iter().map(|&v| (v - max).exp()).sum::<f32>().ln())
}

/// The op: arguments `(logits, targets)`, result the mean loss (a scalar).
struct CrossEntropy;

impl CustomOp2 for CrossEntropy {
    fn name(&self) -> &'static str {
        "cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, n, classes) = rows(s1, l1, l2)?;
        let t = classes_of(s2, l2, classes)?;
        let total: f32 = x
            .chunks(classes.max(1))
            .zip(&t)
            .map(|(row, &t)| {
                let (max, lse) = log_sum_exp(row);
                lse - (row[t] - max)
            })
            .sum();
        Ok((CpuStorage::F32(vec![total / n as f32]), Shape::from(())))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _loss: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let scale = g.to_scalar::<f32>()?;
        let (dx, n, classes) = with_rows(logits, targets, |x, n, classes, t| {
            let per = scale / n as f32;
            let mut dx = Vec::with_capacity(x.len());
            for (row, &t) in x.chunks(classes.max(1)).zip(t) {
                let (max, lse) = log_sum_exp(row);
                let start = dx.len();
                dx.extend(row.iter().map(|&v| (v - max - lse).exp() * per));
                dx[start + t] -= per;
            }
            (dx, n, classes)
        })?;
        let dx = Tensor::from_vec(dx, (n, classes), logits.device())?;
        Ok((Some(dx), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// The fused NLL sum against candle's log-softmax and gather, on a vocabulary of 5000 with
    /// logits up to ±40; a target outside the vocabulary is an error naming its row.
    #[test]
    fn nll_sum_equals_log_softmax_and_gather() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let (n, c) = (23, 5000);
        let x = (Tensor::rand(-1f32, 1.0, (n, c), &dev)? * 40.0)?;
        let t: Vec<u32> = (0..n as u32).map(|i| (i * 997 + 13) % c as u32).collect();
        let targets = Tensor::new(t.as_slice(), &dev)?;
        let got = nll_sum(&x, &targets)?.expect("CPU f32");
        let want = -candle_nn::ops::log_softmax(&x, 1)?
            .gather(&targets.unsqueeze(1)?, 1)?
            .to_dtype(candle_core::DType::F64)?
            .sum_all()?
            .to_scalar::<f64>()?;
        assert!((got - want).abs() <= 1e-6 * want.abs(), "{got} vs {want}");
        let bad = Tensor::new(&[0u32, 5000], &dev)?;
        let e = nll_sum(&x.narrow(0, 0, 2)?, &bad).unwrap_err().to_string();
        assert!(e.contains("row 1 has target 5000"), "{e}");
        Ok(())
    }

    #[test]
    fn equals_candles_composition_in_value_and_gradient() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let (n, c) = (37, 10);
        // Spread logits (up to ±40) so the max subtraction matters.
        let v: Vec<f32> = (0..n * c)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.8)
            .collect();
        for targets in [
            Tensor::from_vec((0..n as u32).map(|i| i * 7 % 10).collect(), n, &dev)?,
            Tensor::from_vec((0..n as i64).map(|i| i * 3 % 10).collect(), n, &dev)?,
        ] {
            let a = Var::from_vec(v.clone(), (n, c), &dev)?;
            let b = Var::from_vec(v.clone(), (n, c), &dev)?;
            // A factor after the loss checks that the incoming gradient scales the result.
            let ours = (cross_entropy(a.as_tensor(), &targets)? * 3.0)?;
            let theirs = (candle_nn::loss::cross_entropy(b.as_tensor(), &targets)? * 3.0)?;
            let (lo, lt) = (ours.to_scalar::<f32>()?, theirs.to_scalar::<f32>()?);
            assert!((lo - lt).abs() <= 1e-6 * lt.abs().max(1.0), "{lo} vs {lt}");
            let go = ours.backward()?.get(a.as_tensor()).cloned().expect("grad");
            let gt = theirs
                .backward()?
                .get(b.as_tensor())
                .cloned()
                .expect("grad");
            let diff = (go - gt)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-6, "gradient differs by {diff}");
        }
        Ok(())
    }

    #[test]
    fn a_target_out_of_range_names_its_row() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let logits = Tensor::zeros((3, 4), candle_core::DType::F32, &dev)?;
        let targets = Tensor::new(&[0u32, 4, 1], &dev)?;
        let e = cross_entropy(&logits, &targets).unwrap_err().to_string();
        assert!(e.contains("row 1 has target 4, not in 0..4"), "{e}");
        let short = Tensor::new(&[0u32, 1], &dev)?;
        assert!(cross_entropy(&logits, &short).is_err());
        Ok(())
    }
}
