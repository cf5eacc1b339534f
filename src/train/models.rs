//! Models built from [`SparseLinear`] layers: an MLP and a LeNet-style CNN for 28×28 images, a
//! small ResNet for CIFAR-10.
//!
//! Convolutions are im2col followed by a sparse linear layer on weights `[out, in·kh·kw]`, so a
//! convolution's three GEMMs use the same masks and estimators as a linear layer's (the update
//! GEMM's reduction runs over batch × positions). Layers whose weights do not tile into the
//! pattern (the 1- or 3-channel stem) and the classifier head stay dense, as in the papers.
//! Initialisation is He-normal from a seeded RNG, so a seed gives the same model on every device.

use super::kernels;
use super::sparse::{GradEstimator, SparseLinear};
use candle_core::backprop::GradStore;
use candle_core::{D, DType, Device, Tensor, Var};
use rand_distr::{Distribution, StandardNormal};
use std::sync::Mutex;

/// How layers are built: which estimator the prunable layers use, and whether the custom op is on.
#[derive(Clone, Copy, Debug)]
pub struct LayerPolicy {
    /// Estimator for prunable layers.
    pub estimator: GradEstimator,
    /// Use the custom op (false: plain autograd everywhere — the dense reference).
    pub custom: bool,
    /// M of the mask pattern (a layer is prunable only if its weights tile by it), or 1.
    pub tile: usize,
    /// SR-STE λ.
    pub srste: f64,
}

/// A trainable model.
pub trait Model {
    /// Logits `[b, classes]` for images `[b, c, h, w]`.
    fn forward(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor>;
    /// All trainable variables.
    fn vars(&self) -> Vec<Var>;
    /// The layers that carry masks and estimators.
    fn sparse_layers(&mut self) -> Vec<&mut SparseLinear>;
    /// Every linear/conv layer, prunable or not (for reports).
    fn layer_names(&self) -> Vec<String>;
    /// Every linear/conv layer, prunable or not, in forward order.
    fn linear_layers(&self) -> Vec<&SparseLinear>;
    /// The gradients of `loss` for every variable: candle's backprop, then each layer's
    /// weight and bias gradients from the fused op ([`SparseLinear::collect_grads`]).
    fn backward(&self, loss: &Tensor) -> candle_core::Result<GradStore> {
        let mut grads = loss.backward()?;
        for l in self.linear_layers() {
            l.collect_grads(&mut grads)?;
        }
        Ok(grads)
    }
}

struct Init {
    rng: rand_chacha::ChaCha8Rng,
    device: Device,
    seed: u64,
    count: u64,
}

impl Init {
    fn new(seed: u64, device: &Device) -> Self {
        Init {
            rng: crate::seed::rng(seed, "weights"),
            device: device.clone(),
            seed,
            count: 0,
        }
    }

    fn he(&mut self, out: usize, fan_in: usize) -> candle_core::Result<Var> {
        let std = (2.0 / fan_in as f64).sqrt() as f32;
        let v: Vec<f32> = (0..out * fan_in)
            .map(|_| {
                std * {
                    let z: f32 = StandardNormal.sample(&mut self.rng);
                    z
                }
            })
            .collect();
        Var::from_tensor(&Tensor::from_vec(v, (out, fan_in), &self.device)?)
    }

    fn constant(&self, n: usize, value: f32) -> candle_core::Result<Var> {
        Var::from_tensor(&Tensor::full(value, n, &self.device)?)
    }

    /// A linear layer; prunable (custom op, estimator) when asked and its weights tile by M.
    fn linear(
        &mut self,
        out: usize,
        fan_in: usize,
        prunable: bool,
        p: &LayerPolicy,
    ) -> candle_core::Result<SparseLinear> {
        let w = self.he(out, fan_in)?;
        let b = self.constant(out, 0.0)?;
        self.count += 1;
        let seed = crate::seed::derive_nth(self.seed, "layer", self.count);
        let prunable = prunable && out.is_multiple_of(p.tile) && fan_in.is_multiple_of(p.tile);
        let est = if prunable {
            p.estimator
        } else {
            GradEstimator::Dense
        };
        let custom = p.custom;
        let mut l = SparseLinear::new(w, b, est, custom, seed).with_srste(p.srste);
        l.prunable = prunable;
        Ok(l)
    }
}

/// A multi-layer perceptron: `features → hidden… → classes`, ReLU; the head is dense. With
/// batch normalisation (`mlp-bn`) every hidden layer is linear → batch norm → ReLU, so the
/// neural gradient the update GEMM sees is the one batch norm passes back: dense and summing to
/// zero over the batch, as at the convolutions of a ResNet (Chmiel et al.'s setting).
pub struct Mlp {
    layers: Vec<SparseLinear>,
    norms: Vec<BatchNorm>,
}

impl Mlp {
    /// Build with the given hidden widths, with batch norm after each hidden layer or not.
    pub fn new(
        features: usize,
        hidden: &[usize],
        classes: usize,
        batch_norm: bool,
        p: &LayerPolicy,
        seed: u64,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let mut init = Init::new(seed, device);
        let mut layers = Vec::new();
        let mut norms = Vec::new();
        let mut fan_in = features;
        for &h in hidden {
            layers.push(init.linear(h, fan_in, true, p)?);
            if batch_norm {
                norms.push(BatchNorm::new(&init, h)?);
            }
            fan_in = h;
        }
        layers.push(init.linear(classes, fan_in, false, p)?);
        Ok(Mlp { layers, norms })
    }
}

impl Model for Mlp {
    fn forward(&self, x: &Tensor, _train: bool) -> candle_core::Result<Tensor> {
        let mut h = x.flatten_from(1)?;
        for (i, l) in self.layers.iter().enumerate() {
            h = if i + 1 == self.layers.len() {
                l.forward(&h)?
            } else if let Some(bn) = self.norms.get(i) {
                let y = l.forward(&h)?;
                let (b, c) = y.dims2()?;
                bn.forward(&y.reshape((b, c, 1, 1))?, _train)?
                    .reshape((b, c))?
                    .relu()?
            } else {
                l.forward_relu(&h)?
            };
        }
        Ok(h)
    }
    fn vars(&self) -> Vec<Var> {
        let mut v: Vec<Var> = self.layers.iter().flat_map(|l| l.vars()).collect();
        v.extend(
            self.norms
                .iter()
                .flat_map(|b| [b.gamma.clone(), b.beta.clone()]),
        );
        v
    }
    fn sparse_layers(&mut self) -> Vec<&mut SparseLinear> {
        self.layers.iter_mut().filter(|l| l.prunable).collect()
    }
    fn linear_layers(&self) -> Vec<&SparseLinear> {
        self.layers.iter().collect()
    }
    fn layer_names(&self) -> Vec<String> {
        (0..self.layers.len())
            .map(|i| format!("fc{}", i + 1))
            .collect()
    }
}

/// A convolution as im2col + [`SparseLinear`] on `[out, in·k·k]` weights.
pub struct Conv {
    lin: SparseLinear,
    k: usize,
    stride: usize,
    pad: usize,
}

impl Conv {
    fn new(
        init: &mut Init,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
        p: &LayerPolicy,
    ) -> candle_core::Result<Self> {
        Ok(Conv {
            lin: init.linear(cout, cin * k * k, true, p)?,
            k,
            stride,
            pad,
        })
    }

    /// `[b, c, h, w]` → `[b, out, h', w']`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, _, h, w) = x.dims4()?;
        let (ho, wo) = self.out_hw(h, w);
        let y = self.forward_rows(x)?;
        let out = y.dims()[1];
        y.reshape((b, ho, wo, out))?
            .permute((0, 3, 1, 2))?
            .contiguous()
    }

    /// Output height and width for an `h × w` input.
    fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        let (hp, wp) = (h + 2 * self.pad, w + 2 * self.pad);
        (
            (hp - self.k) / self.stride + 1,
            (wp - self.k) / self.stride + 1,
        )
    }

    /// `[b, c, h, w]` → rows `[b·h'·w', out]` (NHWC order), before any activation.
    pub fn forward_rows(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let cols = if matches!(x.device(), Device::Cpu) && x.dtype() == DType::F32 {
            kernels::im2col(x, self.k, self.stride, self.pad)?
        } else {
            self.im2col_device(x)?
        };
        self.lin.forward(&cols)
    }

    /// im2col by candle ops (narrow, stack, permute): the device-generic path.
    fn im2col_device(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let (k, s) = (self.k, self.stride);
        let x = if self.pad > 0 {
            x.pad_with_zeros(2, self.pad, self.pad)?
                .pad_with_zeros(3, self.pad, self.pad)?
        } else {
            x.clone()
        };
        let (hp, wp) = (h + 2 * self.pad, w + 2 * self.pad);
        let (ho, wo) = ((hp - k) / s + 1, (wp - k) / s + 1);
        let mut cols = Vec::with_capacity(k * k);
        for i in 0..k {
            for j in 0..k {
                let mut patch = x
                    .narrow(2, i, (ho - 1) * s + 1)?
                    .narrow(3, j, (wo - 1) * s + 1)?;
                if s > 1 {
                    // Every s-th row and column: pad to a multiple of s, fold, take offset 0.
                    patch = patch
                        .pad_with_zeros(2, 0, s - 1)?
                        .pad_with_zeros(3, 0, s - 1)?;
                    patch = patch
                        .reshape((b, c, ho, s, wo, s))?
                        .narrow(3, 0, 1)?
                        .narrow(5, 0, 1)?
                        .reshape((b, c, ho, wo))?;
                }
                cols.push(patch);
            }
        }
        // [b, c, k·k, ho, wo] → [b, ho, wo, c, k·k] → [b·ho·wo, c·k·k] (weight order c, kh, kw).
        Tensor::stack(&cols, 2)?
            .permute((0, 3, 4, 1, 2))?
            .reshape((b * ho * wo, c * k * k))
    }

    /// `relu(max_pool2d(conv(x), 2))` as NCHW `[b, out, h'/2, w'/2]` (fused on the CPU).
    pub fn forward_relu_pool(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, _, h, w) = x.dims4()?;
        let (ho, wo) = self.out_hw(h, w);
        let y = self.forward_rows(x)?;
        if matches!(y.device(), Device::Cpu) && y.dtype() == DType::F32 {
            return kernels::relu_max_pool2(&y, b, ho, wo);
        }
        let out = y.dims()[1];
        y.reshape((b, ho, wo, out))?
            .permute((0, 3, 1, 2))?
            .contiguous()?
            .max_pool2d(2)?
            .relu()
    }
}

/// LeNet-style CNN for 1×28×28: conv5(16) → pool → conv5(32) → pool → fc(128) → fc(classes).
pub struct LeNet {
    c1: Conv,
    c2: Conv,
    f1: SparseLinear,
    f2: SparseLinear,
}

impl LeNet {
    /// Build.
    pub fn new(
        classes: usize,
        p: &LayerPolicy,
        seed: u64,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let mut init = Init::new(seed, device);
        Ok(LeNet {
            c1: Conv::new(&mut init, 1, 16, 5, 1, 2, p)?,
            c2: Conv::new(&mut init, 16, 32, 5, 1, 0, p)?,
            f1: init.linear(128, 32 * 5 * 5, true, p)?,
            f2: init.linear(classes, 128, false, p)?,
        })
    }
}

impl Model for LeNet {
    fn forward(&self, x: &Tensor, _train: bool) -> candle_core::Result<Tensor> {
        let h = self.c1.forward_relu_pool(x)?;
        let h = self.c2.forward_relu_pool(&h)?;
        let h = self.f1.forward_relu(&h.flatten_from(1)?)?;
        self.f2.forward(&h)
    }
    fn vars(&self) -> Vec<Var> {
        self.linear_layers().iter().flat_map(|l| l.vars()).collect()
    }
    fn linear_layers(&self) -> Vec<&SparseLinear> {
        vec![&self.c1.lin, &self.c2.lin, &self.f1, &self.f2]
    }
    fn sparse_layers(&mut self) -> Vec<&mut SparseLinear> {
        [
            &mut self.c1.lin,
            &mut self.c2.lin,
            &mut self.f1,
            &mut self.f2,
        ]
        .into_iter()
        .filter(|l| l.prunable)
        .collect()
    }
    fn layer_names(&self) -> Vec<String> {
        ["conv1", "conv2", "fc1", "fc2"].map(String::from).to_vec()
    }
}

/// Batch normalisation over `[b, c, h, w]` (batch statistics in training, running ones in eval).
struct BatchNorm {
    gamma: Var,
    beta: Var,
    running: Mutex<(Tensor, Tensor)>,
}

impl BatchNorm {
    fn new(init: &Init, c: usize) -> candle_core::Result<Self> {
        Ok(BatchNorm {
            gamma: init.constant(c, 1.0)?,
            beta: init.constant(c, 0.0)?,
            running: Mutex::new((
                Tensor::zeros((1, c, 1, 1), DType::F32, &init.device)?,
                Tensor::ones((1, c, 1, 1), DType::F32, &init.device)?,
            )),
        })
    }

    fn forward(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let c = x.dims()[1];
        let (mean, var) = if train {
            let mean = x.mean_keepdim(0)?.mean_keepdim(2)?.mean_keepdim(3)?;
            let centred = x.broadcast_sub(&mean)?;
            let var = centred
                .sqr()?
                .mean_keepdim(0)?
                .mean_keepdim(2)?
                .mean_keepdim(3)?;
            let mut r = self.running.lock().unwrap_or_else(|p| p.into_inner());
            r.0 = ((&r.0 * 0.9)? + (mean.detach() * 0.1)?)?;
            r.1 = ((&r.1 * 0.9)? + (var.detach() * 0.1)?)?;
            (mean, var)
        } else {
            let r = self.running.lock().unwrap_or_else(|p| p.into_inner());
            (r.0.clone(), r.1.clone())
        };
        let xn = x
            .broadcast_sub(&mean)?
            .broadcast_div(&(var + 1e-5)?.sqrt()?)?;
        xn.broadcast_mul(&self.gamma.as_tensor().reshape((1, c, 1, 1))?)?
            .broadcast_add(&self.beta.as_tensor().reshape((1, c, 1, 1))?)
    }
}

struct Block {
    c1: Conv,
    b1: BatchNorm,
    c2: Conv,
    b2: BatchNorm,
    short: Option<(Conv, BatchNorm)>,
}

/// A small ResNet for 3×32×32: stem conv3(16), three stages (16, 32, 64 channels, one basic
/// block each, stride 1, 2, 2), global average pool, fc(classes).
pub struct ResNet {
    stem: Conv,
    bn: BatchNorm,
    blocks: Vec<Block>,
    head: SparseLinear,
}

impl ResNet {
    /// Build.
    pub fn new(
        channels: usize,
        classes: usize,
        p: &LayerPolicy,
        seed: u64,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let mut init = Init::new(seed, device);
        let stem = Conv::new(&mut init, channels, 16, 3, 1, 1, p)?;
        let bn = BatchNorm::new(&init, 16)?;
        let mut blocks = Vec::new();
        let mut cin = 16;
        for (cout, stride) in [(16, 1), (32, 2), (64, 2)] {
            let short = if stride != 1 || cin != cout {
                Some((
                    Conv::new(&mut init, cin, cout, 1, stride, 0, p)?,
                    BatchNorm::new(&init, cout)?,
                ))
            } else {
                None
            };
            blocks.push(Block {
                c1: Conv::new(&mut init, cin, cout, 3, stride, 1, p)?,
                b1: BatchNorm::new(&init, cout)?,
                c2: Conv::new(&mut init, cout, cout, 3, 1, 1, p)?,
                b2: BatchNorm::new(&init, cout)?,
                short,
            });
            cin = cout;
        }
        let head = init.linear(classes, cin, false, p)?;
        Ok(ResNet {
            stem,
            bn,
            blocks,
            head,
        })
    }

    fn convs(&self) -> Vec<&SparseLinear> {
        let mut v = vec![&self.stem.lin];
        for b in &self.blocks {
            v.push(&b.c1.lin);
            v.push(&b.c2.lin);
            if let Some((c, _)) = &b.short {
                v.push(&c.lin);
            }
        }
        v.push(&self.head);
        v
    }
}

impl Model for ResNet {
    fn forward(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let mut h = self.bn.forward(&self.stem.forward(x)?, train)?.relu()?;
        for b in &self.blocks {
            let y = b.b1.forward(&b.c1.forward(&h)?, train)?.relu()?;
            let y = b.b2.forward(&b.c2.forward(&y)?, train)?;
            let s = match &b.short {
                Some((c, bn)) => bn.forward(&c.forward(&h)?, train)?,
                None => h.clone(),
            };
            h = (y + s)?.relu()?;
        }
        let pooled = h.mean(D::Minus1)?.mean(D::Minus1)?;
        self.head.forward(&pooled)
    }
    fn vars(&self) -> Vec<Var> {
        let mut v: Vec<Var> = self.convs().iter().flat_map(|l| l.vars()).collect();
        let mut bns = vec![&self.bn];
        for b in &self.blocks {
            bns.push(&b.b1);
            bns.push(&b.b2);
            if let Some((_, bn)) = &b.short {
                bns.push(bn);
            }
        }
        v.extend(bns.iter().flat_map(|b| [b.gamma.clone(), b.beta.clone()]));
        v
    }
    fn sparse_layers(&mut self) -> Vec<&mut SparseLinear> {
        let mut v = vec![&mut self.stem.lin];
        for b in &mut self.blocks {
            v.push(&mut b.c1.lin);
            v.push(&mut b.c2.lin);
            if let Some((c, _)) = &mut b.short {
                v.push(&mut c.lin);
            }
        }
        v.push(&mut self.head);
        v.into_iter().filter(|l| l.prunable).collect()
    }
    fn linear_layers(&self) -> Vec<&SparseLinear> {
        self.convs()
    }
    fn layer_names(&self) -> Vec<String> {
        (0..self.convs().len())
            .map(|i| format!("layer{i}"))
            .collect()
    }
}

/// Build a model by name (`mlp`, `mlp-bn`, `lenet`, `resnet`) for images `(c, h, w)`.
pub fn build(
    name: &str,
    shape: (usize, usize, usize),
    classes: usize,
    hidden: &[usize],
    p: &LayerPolicy,
    seed: u64,
    device: &Device,
) -> crate::Result<Box<dyn Model>> {
    let ctx = crate::Error::tensor(format!("building model {name}"));
    let (c, h, w) = shape;
    Ok(match name {
        "mlp" | "mlp-bn" => Box::new(
            Mlp::new(
                c * h * w,
                hidden,
                classes,
                name == "mlp-bn",
                p,
                seed,
                device,
            )
            .map_err(ctx)?,
        ),
        "lenet" | "cnn" if (c, h, w) == (1, 28, 28) => {
            Box::new(LeNet::new(classes, p, seed, device).map_err(ctx)?)
        }
        "resnet" => Box::new(ResNet::new(c, classes, p, seed, device).map_err(ctx)?),
        "lenet" | "cnn" => {
            return Err(crate::Error::invalid(
                "model",
                name,
                format!("LeNet takes 1×28×28 images, the data set has {c}×{h}×{w}"),
            ));
        }
        other => {
            return Err(crate::Error::invalid(
                "model",
                other,
                "known models: mlp, mlp-bn, lenet, resnet",
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_by_im2col_equals_candle_conv2d() -> candle_core::Result<()> {
        let p = LayerPolicy {
            estimator: GradEstimator::Dense,
            custom: true,
            tile: 1,
            srste: 0.0,
        };
        let dev = Device::Cpu;
        let mut init = Init::new(3, &dev);
        let x = init.he(2 * 3 * 9, 9)?.as_tensor().reshape((2, 3, 9, 9))?;
        for (k, s, pad) in [(3, 1, 1), (3, 2, 1), (1, 2, 0), (5, 1, 0)] {
            let conv = Conv::new(&mut init, 3, 8, k, s, pad, &p)?;
            let ours = conv.forward(&x)?;
            let w = conv.lin.weight.as_tensor().reshape((8, 3, k, k))?;
            let theirs = x
                .conv2d(&w, pad, s, 1, 1)?
                .broadcast_add(&conv.lin.bias.as_tensor().reshape((1, 8, 1, 1))?)?;
            assert_eq!(ours.dims(), theirs.dims(), "k={k} s={s}");
            let d = (ours - theirs)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(d < 1e-4, "k={k} s={s} pad={pad}: {d}");
        }
        Ok(())
    }
}
