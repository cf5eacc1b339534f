//! A llama-family decoder (RMSNorm, rotary attention with grouped key/value heads, SwiGLU MLP)
//! with f32 weights on candle, run layer by layer so that a pruner can read each projection's
//! input and replace its weight in between.
//!
//! Problem: the logits of a causal language model, and the inputs of each of its linear layers,
//! for batches of token windows. Guarantee: the Hugging Face llama forward (`rotate_half` rotary
//! embedding on the HF weight layout, repeated key/value heads, causal softmax attention), in
//! f32; the GGUF loader converts llama.cpp's permuted q/k rows back to that layout, which the
//! tests check against candle-transformers' quantized llama. Cost: per token and layer,
//! `2·(4·h·h_attn + 3·h·f)` FLOPs in the projections plus `4·T·h_attn` in attention (about half
//! that on the CPU, whose fused pass skips the masked half of the scores); the logits add
//! `2·h·vocab` per token.

use crate::error::{Error, Result};
use candle_core::{D, DType, Device, Tensor};

/// The shapes and constants of a llama-family model.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Config {
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than the query heads).
    pub num_key_value_heads: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Rotary base.
    pub rope_theta: f64,
    /// Tokens in the vocabulary.
    pub vocab_size: usize,
    /// Whether the output projection is the embedding matrix.
    #[serde(default)]
    pub tie_word_embeddings: bool,
}

impl Config {
    /// A tiny llama for tests and smoke runs: 2 layers of width `hidden` (MLP 2×), 4 query heads
    /// over 2 key/value heads, untied head.
    pub fn tiny(hidden: usize, vocab: usize) -> Self {
        Config {
            hidden_size: hidden,
            intermediate_size: 2 * hidden,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            vocab_size: vocab,
            tie_word_embeddings: false,
        }
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Check the shapes fit together (heads divide the width, key/value heads the query heads).
    pub fn validate(&self) -> Result<()> {
        let bad =
            |field: &str, value: usize, reason: &str| Err(Error::invalid(field, value, reason));
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return bad(
                "num_attention_heads",
                self.num_attention_heads,
                "must divide hidden_size",
            );
        }
        if self.num_key_value_heads == 0
            || !self
                .num_attention_heads
                .is_multiple_of(self.num_key_value_heads)
        {
            return bad(
                "num_key_value_heads",
                self.num_key_value_heads,
                "must divide num_attention_heads",
            );
        }
        if !self.head_dim().is_multiple_of(2) {
            return bad("head_dim", self.head_dim(), "must be even (rotary pairs)");
        }
        Ok(())
    }
}

/// The seven projections of a decoder layer, in forward order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proj {
    /// Query.
    Q,
    /// Key.
    K,
    /// Value.
    V,
    /// Attention output.
    O,
    /// MLP gate.
    Gate,
    /// MLP up.
    Up,
    /// MLP down.
    Down,
}

impl Proj {
    /// All seven, in forward order.
    pub const ALL: [Proj; 7] = [
        Proj::Q,
        Proj::K,
        Proj::V,
        Proj::O,
        Proj::Gate,
        Proj::Up,
        Proj::Down,
    ];

    /// The Hugging Face tensor name inside layer `l`.
    pub fn hf_name(self, l: usize) -> String {
        let part = match self {
            Proj::Q => "self_attn.q_proj",
            Proj::K => "self_attn.k_proj",
            Proj::V => "self_attn.v_proj",
            Proj::O => "self_attn.o_proj",
            Proj::Gate => "mlp.gate_proj",
            Proj::Up => "mlp.up_proj",
            Proj::Down => "mlp.down_proj",
        };
        format!("model.layers.{l}.{part}.weight")
    }

    /// `[out, in]` in a model of `c`.
    pub fn shape(self, c: &Config) -> [usize; 2] {
        let (h, f) = (c.hidden_size, c.intermediate_size);
        let kv = c.num_key_value_heads * c.head_dim();
        match self {
            Proj::Q | Proj::O => [h, h],
            Proj::K | Proj::V => [kv, h],
            Proj::Gate | Proj::Up => [f, h],
            Proj::Down => [h, f],
        }
    }

    /// The stage whose input this projection reads.
    pub fn stage(self) -> Stage {
        match self {
            Proj::Q | Proj::K | Proj::V => Stage::Attn,
            Proj::O => Stage::AttnOut,
            Proj::Gate | Proj::Up => Stage::Mlp,
            Proj::Down => Stage::MlpOut,
        }
    }

    /// Short name (`q`, `k`, …, `down`).
    pub fn short(self) -> &'static str {
        match self {
            Proj::Q => "q",
            Proj::K => "k",
            Proj::V => "v",
            Proj::O => "o",
            Proj::Gate => "gate",
            Proj::Up => "up",
            Proj::Down => "down",
        }
    }
}

/// The four points of a decoder layer where projections read their input, in forward order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// The normed residual stream, read by q, k and v.
    Attn,
    /// The attention heads' output, read by o.
    AttnOut,
    /// The normed residual stream after attention, read by gate and up.
    Mlp,
    /// `silu(gate)·up`, read by down.
    MlpOut,
}

impl Stage {
    /// All four, in forward order.
    pub const ALL: [Stage; 4] = [Stage::Attn, Stage::AttnOut, Stage::Mlp, Stage::MlpOut];

    /// The projections reading this stage's input.
    pub fn projections(self) -> &'static [Proj] {
        match self {
            Stage::Attn => &[Proj::Q, Proj::K, Proj::V],
            Stage::AttnOut => &[Proj::O],
            Stage::Mlp => &[Proj::Gate, Proj::Up],
            Stage::MlpOut => &[Proj::Down],
        }
    }
}

/// One decoder layer's weights (projections `[out, in]`).
#[derive(Debug, Clone)]
pub struct Layer {
    /// Norm before attention.
    pub attn_norm: Tensor,
    /// Norm before the MLP.
    pub mlp_norm: Tensor,
    /// The projections, indexed as [`Proj::ALL`].
    pub proj: [Tensor; 7],
}

impl Layer {
    /// The weight of projection `p`.
    pub fn weight(&self, p: Proj) -> &Tensor {
        &self.proj[p as usize]
    }

    /// Replace the weight of projection `p` (same shape).
    pub fn set_weight(&mut self, p: Proj, w: Tensor) -> Result<()> {
        if w.dims() != self.proj[p as usize].dims() {
            return Err(Error::invalid(
                "weight",
                format!("{:?}", w.dims()),
                format!(
                    "projection {} is {:?}",
                    p.short(),
                    self.proj[p as usize].dims()
                ),
            ));
        }
        self.proj[p as usize] = w;
        Ok(())
    }
}

/// A llama-family model in f32.
#[derive(Debug, Clone)]
pub struct Llama {
    /// Shapes and constants.
    pub config: Config,
    /// Token embeddings `[vocab, hidden]`.
    pub embed: Tensor,
    /// Decoder layers.
    pub layers: Vec<Layer>,
    /// Final norm.
    pub norm: Tensor,
    /// Output projection `[vocab, hidden]` (the embeddings when tied).
    pub lm_head: Tensor,
    rope: (Tensor, Tensor),
}

/// Positions for which the rotary tables are built.
const MAX_POSITIONS: usize = 4096;

impl Llama {
    /// Assemble a model from its weights (HF layout), checking every shape against `config`.
    pub fn new(
        config: Config,
        embed: Tensor,
        layers: Vec<Layer>,
        norm: Tensor,
        lm_head: Option<Tensor>,
    ) -> Result<Self> {
        let mut model = Llama::outer(config, embed, norm, lm_head)?;
        if layers.len() != model.config.num_hidden_layers {
            return Err(Error::invalid(
                "layers",
                layers.len(),
                format!("config says {}", model.config.num_hidden_layers),
            ));
        }
        for (l, layer) in layers.iter().enumerate() {
            model.check_layer(l, layer)?;
        }
        model.layers = layers;
        Ok(model)
    }

    /// The model without its decoder layers (embeddings, final norm, output head, rotary
    /// tables): the stage methods take each layer as an argument, so a pipeline can hold one
    /// layer at a time ([`Llama::forward`] needs them all).
    pub fn outer(
        config: Config,
        embed: Tensor,
        norm: Tensor,
        lm_head: Option<Tensor>,
    ) -> Result<Self> {
        config.validate()?;
        let (h, v) = (config.hidden_size, config.vocab_size);
        check_shape("embed_tokens", &embed, &[v, h])?;
        check_shape("norm", &norm, &[h])?;
        let lm_head = lm_head.unwrap_or_else(|| embed.clone());
        check_shape("lm_head", &lm_head, &[v, h])?;
        let rope = rope_tables(&config, embed.device())?;
        Ok(Llama {
            config,
            embed,
            layers: Vec::new(),
            norm,
            lm_head,
            rope,
        })
    }

    /// Check layer `l`'s shapes against the config.
    pub fn check_layer(&self, l: usize, layer: &Layer) -> Result<()> {
        let h = self.config.hidden_size;
        check_shape(
            &format!("layer {l} input_layernorm"),
            &layer.attn_norm,
            &[h],
        )?;
        check_shape(
            &format!("layer {l} post_attention_layernorm"),
            &layer.mlp_norm,
            &[h],
        )?;
        for p in Proj::ALL {
            check_shape(&p.hf_name(l), layer.weight(p), &p.shape(&self.config))?;
        }
        Ok(())
    }

    /// A model of `config` with random weights (uniform, scaled by `1/√in`; norms near 1), for
    /// tests and fixtures.
    pub fn random(config: Config, seed: u64, device: &Device) -> Result<Self> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut mat = |rows: usize, cols: usize, scale: f32| -> Result<Tensor> {
            let v: Vec<f32> = (0..rows * cols)
                .map(|_| rng.random_range(-1.0f32..1.0) * scale)
                .collect();
            Tensor::from_vec(v, (rows, cols), device).map_err(Error::tensor("random weight"))
        };
        let (h, f, v) = (
            config.hidden_size,
            config.intermediate_size,
            config.vocab_size,
        );
        let kv = config.num_key_value_heads * config.head_dim();
        let norm = |m: &mut dyn FnMut(usize, usize, f32) -> Result<Tensor>| -> Result<Tensor> {
            m(1, h, 0.1)?
                .affine(1.0, 1.0)
                .and_then(|t| t.reshape(h))
                .map_err(Error::tensor("random norm"))
        };
        let embed = mat(v, h, 1.0)?;
        let mut layers = Vec::new();
        for _ in 0..config.num_hidden_layers {
            let (sh, sf) = (1.0 / (h as f32).sqrt(), 1.0 / (f as f32).sqrt());
            layers.push(Layer {
                attn_norm: norm(&mut mat)?,
                mlp_norm: norm(&mut mat)?,
                proj: [
                    mat(h, h, sh)?,
                    mat(kv, h, sh)?,
                    mat(kv, h, sh)?,
                    mat(h, h, sh)?,
                    mat(f, h, sh)?,
                    mat(f, h, sh)?,
                    mat(h, f, sf)?,
                ],
            });
        }
        let final_norm = norm(&mut mat)?;
        let lm_head = match config.tie_word_embeddings {
            true => None,
            false => Some(mat(v, h, 1.0 / (h as f32).sqrt())?),
        };
        Llama::new(config, embed, layers, final_norm, lm_head)
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        self.embed.device()
    }

    /// Embeddings of `tokens: [B, T]` (u32): the residual stream entering layer 0, `[B, T, h]`.
    pub fn embed(&self, tokens: &Tensor) -> Result<Tensor> {
        let (b, t) = tokens.dims2().map_err(Error::tensor("tokens"))?;
        let flat = tokens.flatten_all().map_err(Error::tensor("tokens"))?;
        self.embed
            .index_select(&flat, 0)
            .and_then(|e| e.reshape((b, t, self.config.hidden_size)))
            .map_err(Error::tensor("embedding"))
    }

    /// Stage [`Stage::Attn`]'s input: the normed residual stream `x: [B, T, h]` as `[B·T, h]`.
    pub fn attn_input(&self, layer: &Layer, x: &Tensor) -> Result<Tensor> {
        let (b, t, h) = x.dims3().map_err(Error::tensor("hidden state"))?;
        candle_nn::ops::rms_norm(x, &layer.attn_norm, self.config.rms_norm_eps as f32)
            .and_then(|y| y.reshape((b * t, h)))
            .map_err(Error::tensor("attention norm"))
    }

    /// Stage [`Stage::AttnOut`]'s input: the attention heads' output `[B·T, h]` from the normed
    /// stream `xn: [B·T, h]` of `b` windows. On the CPU in f32 the heads are attended in one
    /// fused pass ([`super::attention`]); elsewhere by [`Llama::attention_composed`].
    pub fn attention(&self, layer: &Layer, xn: &Tensor, b: usize) -> Result<Tensor> {
        if !(xn.device().is_cpu() && xn.dtype() == DType::F32) {
            return self.attention_composed(layer, xn, b);
        }
        let c = &self.config;
        let t = xn.dim(0).map_err(Error::tensor("input"))? / b.max(1);
        let (nh, nkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim());
        let err = |what: &str| Error::tensor(format!("attention: {what}"));
        let (cos, sin) = self.rope_for(t)?;
        // Rotated in the projections' own layout `[B, T, heads, d]`: no transposes.
        let rotated = |p: Proj, n: usize| -> Result<Tensor> {
            linear(xn, layer.weight(p))?
                .reshape((b, t, n, hd))
                .and_then(|y| candle_nn::rotary_emb::rope_thd(&y, &cos, &sin))
                .map_err(err("rope"))
        };
        // The 1/√d scale on q (B·T·h values) rather than on the scores.
        let q = rotated(Proj::Q, nh)?
            .affine(1.0 / (hd as f64).sqrt(), 0.0)
            .map_err(err("scale"))?;
        let k = rotated(Proj::K, nkv)?;
        let v = linear(xn, layer.weight(Proj::V))?;
        let heads = super::attention::Heads {
            windows: b,
            tokens: t,
            heads: nh,
            kv_heads: nkv,
            dim: hd,
        };
        q.apply_op3_no_bwd(&k, &v, &super::attention::CausalAttention(heads))
            .map_err(err("attention"))
    }

    /// The rotary tables' first `t` positions.
    fn rope_for(&self, t: usize) -> Result<(Tensor, Tensor)> {
        let narrow = |table: &Tensor| {
            table
                .narrow(0, 0, t)
                .map_err(Error::tensor("attention: rope"))
        };
        Ok((narrow(&self.rope.0)?, narrow(&self.rope.1)?))
    }

    /// [`Llama::attention`] composed of candle's tensor ops (any device): heads transposed to
    /// `[B, heads, T, d]`, key/value heads repeated, the full `T×T` scores, the causal softmax.
    pub fn attention_composed(&self, layer: &Layer, xn: &Tensor, b: usize) -> Result<Tensor> {
        let c = &self.config;
        let t = xn.dim(0).map_err(Error::tensor("input"))? / b.max(1);
        let (nh, nkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim());
        let err = |what: &str| Error::tensor(format!("attention: {what}"));
        let heads = |p: Proj, n: usize| -> Result<Tensor> {
            linear(xn, layer.weight(p))?
                .reshape((b, t, n, hd))
                .and_then(|y| y.transpose(1, 2))
                .and_then(|y| y.contiguous())
                .map_err(err("heads"))
        };
        let (cos, sin) = self.rope_for(t)?;
        // The 1/√d scale on q (B·T·h values) rather than on the scores (B·heads·T² values).
        let q = candle_nn::rotary_emb::rope(&heads(Proj::Q, nh)?, &cos, &sin)
            .and_then(|q| q.affine(1.0 / (hd as f64).sqrt(), 0.0))
            .map_err(err("rope"))?;
        let k =
            candle_nn::rotary_emb::rope(&heads(Proj::K, nkv)?, &cos, &sin).map_err(err("rope"))?;
        let v = heads(Proj::V, nkv)?;
        let (k, v) = (repeat_kv(&k, nh / nkv)?, repeat_kv(&v, nh / nkv)?);
        let scores = q
            .matmul(&k.t().map_err(err("kᵀ"))?)
            .map_err(err("scores"))?;
        let probs = causal_softmax(&scores).map_err(err("softmax"))?;
        probs
            .matmul(&v)
            .and_then(|a| a.transpose(1, 2))
            .and_then(|a| a.reshape((b * t, nh * hd)))
            .map_err(err("attention"))
    }

    /// The residual stream after attention: `x + att·Oᵀ` (`x: [B, T, h]`, `att: [B·T, h]`).
    pub fn attn_residual(&self, layer: &Layer, x: &Tensor, att: &Tensor) -> Result<Tensor> {
        let o = linear(att, layer.weight(Proj::O))?;
        o.reshape(x.shape())
            .and_then(|o| x.add(&o))
            .map_err(Error::tensor("attention residual"))
    }

    /// Stage [`Stage::Mlp`]'s input: the normed stream after attention as `[B·T, h]`.
    pub fn mlp_input(&self, layer: &Layer, x: &Tensor) -> Result<Tensor> {
        let (b, t, h) = x.dims3().map_err(Error::tensor("hidden state"))?;
        candle_nn::ops::rms_norm(x, &layer.mlp_norm, self.config.rms_norm_eps as f32)
            .and_then(|y| y.reshape((b * t, h)))
            .map_err(Error::tensor("MLP norm"))
    }

    /// Stage [`Stage::MlpOut`]'s input: `silu(xn·Gateᵀ)·(xn·Upᵀ)`.
    pub fn swiglu(&self, layer: &Layer, xn: &Tensor) -> Result<Tensor> {
        let g = linear(xn, layer.weight(Proj::Gate))?;
        let u = linear(xn, layer.weight(Proj::Up))?;
        silu_mul(&g, &u).map_err(Error::tensor("swiglu"))
    }

    /// The layer's output: `x + m·Downᵀ` (`x: [B, T, h]` after attention, `m: [B·T, f]`).
    pub fn mlp_residual(&self, layer: &Layer, x: &Tensor, m: &Tensor) -> Result<Tensor> {
        let d = linear(m, layer.weight(Proj::Down))?;
        d.reshape(x.shape())
            .and_then(|d| x.add(&d))
            .map_err(Error::tensor("MLP residual"))
    }

    /// `layer` on the residual stream `x: [B, T, h]`. `tap` sees each stage's input (what the
    /// stage's projections multiply) as `[B·T, in]`; with `stop`, the layer returns `None` right
    /// after tapping that stage, without computing the rest.
    pub fn layer_forward(
        &self,
        layer: &Layer,
        x: &Tensor,
        stop: Option<Stage>,
        tap: &mut dyn FnMut(Stage, &Tensor) -> Result<()>,
    ) -> Result<Option<Tensor>> {
        let b = x.dim(0).map_err(Error::tensor("hidden state"))?;
        let xn = self.attn_input(layer, x)?;
        tap(Stage::Attn, &xn)?;
        if stop == Some(Stage::Attn) {
            return Ok(None);
        }
        let att = self.attention(layer, &xn, b)?;
        tap(Stage::AttnOut, &att)?;
        if stop == Some(Stage::AttnOut) {
            return Ok(None);
        }
        let x = self.attn_residual(layer, x, &att)?;
        let xn = self.mlp_input(layer, &x)?;
        tap(Stage::Mlp, &xn)?;
        if stop == Some(Stage::Mlp) {
            return Ok(None);
        }
        let m = self.swiglu(layer, &xn)?;
        tap(Stage::MlpOut, &m)?;
        if stop == Some(Stage::MlpOut) {
            return Ok(None);
        }
        Ok(Some(self.mlp_residual(layer, &x, &m)?))
    }

    /// Logits `[B, T, vocab]` from the residual stream leaving the last layer.
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, h) = x.dims3().map_err(Error::tensor("hidden state"))?;
        let xn = candle_nn::ops::rms_norm(x, &self.norm, self.config.rms_norm_eps as f32)
            .and_then(|x| x.reshape((b * t, h)))
            .map_err(Error::tensor("final norm"))?;
        linear(&xn, &self.lm_head)?
            .reshape((b, t, self.config.vocab_size))
            .map_err(Error::tensor("logits"))
    }

    /// The whole forward: logits of `tokens: [B, T]`. Errors on a model without its layers
    /// ([`Llama::outer`]).
    pub fn forward(&self, tokens: &Tensor) -> Result<Tensor> {
        self.logits(&self.stream(tokens)?)
    }

    /// The residual stream leaving the last layer for `tokens: [B, T]`. Errors on a model
    /// without its layers ([`Llama::outer`]).
    pub fn stream(&self, tokens: &Tensor) -> Result<Tensor> {
        if self.layers.len() != self.config.num_hidden_layers {
            return Err(Error::invalid(
                "model",
                format!("{} layers held", self.layers.len()),
                format!("the forward needs all {}", self.config.num_hidden_layers),
            ));
        }
        let mut x = self.embed(tokens)?;
        for layer in &self.layers {
            x = self.layer_output(layer, &x)?;
        }
        Ok(x)
    }

    /// `layer`'s output on the residual stream `x: [B, T, h]`.
    pub fn layer_output(&self, layer: &Layer, x: &Tensor) -> Result<Tensor> {
        Ok(self
            .layer_forward(layer, x, None, &mut |_, _| Ok(()))?
            .expect("no stop: the layer returns its output"))
    }
}

/// An error naming `name` when `t`'s shape is not `want`.
fn check_shape(name: &str, t: &Tensor, want: &[usize]) -> Result<()> {
    if t.dims() == want {
        Ok(())
    } else {
        Err(Error::invalid(
            name,
            format!("{:?}", t.dims()),
            format!("expected {want:?} from the config"),
        ))
    }
}

/// `x·wᵀ` for `x: [N, in]`, `w: [out, in]`.
pub fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    x.matmul(&w.t().map_err(Error::tensor("wᵀ"))?)
        .map_err(Error::tensor("linear"))
}

/// Each of `n` key/value heads repeated `rep` times in place (`[B, n, T, d]` → `[B, n·rep, T, d]`).
fn repeat_kv(x: &Tensor, rep: usize) -> Result<Tensor> {
    if rep == 1 {
        return Ok(x.clone());
    }
    let (b, n, t, d) = x.dims4().map_err(Error::tensor("kv heads"))?;
    x.unsqueeze(2)
        .and_then(|x| x.expand((b, n, rep, t, d)))
        .and_then(|x| x.reshape((b, n * rep, t, d)))
        .map_err(Error::tensor("repeat kv"))
}

/// Softmax of each row of `scores: [.., T, T]` over the columns up to its own (causal
/// attention); the columns after it get 0. On the CPU one fused pass over the rows, in parallel
/// (masking and normalising as separate tensor ops cost four passes over B·heads·T² values,
/// half of a 135M model's forward); elsewhere the same with candle's ops.
fn causal_softmax(scores: &Tensor) -> candle_core::Result<Tensor> {
    if scores.device().is_cpu() && scores.dtype() == DType::F32 {
        return scores.contiguous()?.apply_op1_no_bwd(&CausalSoftmax);
    }
    let t = scores.dim(D::Minus1)?;
    let m: Vec<f32> = (0..t * t)
        .map(|i| {
            if i % t > i / t {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::from_vec(m, (t, t), scores.device())?;
    candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&mask)?)
}

/// `silu(g)·u` elementwise: on the CPU (f32) one vectorised pass in parallel
/// ([`crate::vmath::silu_mul`]: one exp per value without a libm call, no intermediate tensor);
/// elsewhere candle's two ops.
fn silu_mul(g: &Tensor, u: &Tensor) -> candle_core::Result<Tensor> {
    if g.device().is_cpu() && g.dtype() == DType::F32 && u.dtype() == DType::F32 {
        return g.contiguous()?.apply_op2_no_bwd(&u.contiguous()?, &SiluMul);
    }
    g.silu()?.mul(u)
}

/// The fused CPU op of [`silu_mul`].
struct SiluMul;

impl candle_core::CustomOp2 for SiluMul {
    fn name(&self) -> &'static str {
        "silu-mul"
    }

    fn cpu_fwd(
        &self,
        s1: &candle_core::CpuStorage,
        l1: &candle_core::Layout,
        s2: &candle_core::CpuStorage,
        l2: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use rayon::prelude::*;
        if l1.shape() != l2.shape() {
            candle_core::bail!(
                "silu-mul: shapes {:?} and {:?} differ",
                l1.shape(),
                l2.shape()
            );
        }
        let g = crate::train::kernels::f32_slice(s1, l1, "silu-mul gate")?;
        let u = crate::train::kernels::f32_slice(s2, l2, "silu-mul up")?;
        let mut out = vec![0f32; g.len()];
        // Pieces of 16 Ki values: enough to amortise a task, many per core.
        const PIECE: usize = 1 << 14;
        out.par_chunks_mut(PIECE)
            .zip(g.par_chunks(PIECE).zip(u.par_chunks(PIECE)))
            .for_each(|(o, (g, u))| crate::vmath::silu_mul(g, u, o));
        Ok((candle_core::CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// The fused CPU causal softmax of [`causal_softmax`].
struct CausalSoftmax;

impl candle_core::CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "causal-softmax"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use rayon::prelude::*;
        let candle_core::CpuStorage::F32(data) = storage else {
            candle_core::bail!("causal softmax: f32 scores only");
        };
        let Some((from, to)) = layout.contiguous_offsets() else {
            candle_core::bail!("causal softmax: contiguous scores only");
        };
        let t = *layout.dims().last().unwrap_or(&1);
        let data = &data[from..to];
        let mut out = vec![0f32; data.len()];
        out.par_chunks_mut(t)
            .zip(data.par_chunks(t))
            .enumerate()
            .for_each(|(row, (o, s))| {
                o.copy_from_slice(s);
                crate::vmath::softmax_prefix(o, row % t + 1);
            });
        Ok((candle_core::CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// cos and sin tables `[MAX_POSITIONS, head_dim/2]` for the `rotate_half` rotary embedding.
fn rope_tables(c: &Config, device: &Device) -> Result<(Tensor, Tensor)> {
    let hd = c.head_dim();
    let inv: Vec<f32> = (0..hd / 2)
        .map(|i| 1.0 / c.rope_theta.powf(2.0 * i as f64 / hd as f64) as f32)
        .collect();
    let inv = Tensor::from_vec(inv, (1, hd / 2), device).map_err(Error::tensor("rope"))?;
    let pos = Tensor::arange(0u32, MAX_POSITIONS as u32, device)
        .and_then(|p| p.to_dtype(DType::F32))
        .and_then(|p| p.reshape((MAX_POSITIONS, 1)))
        .map_err(Error::tensor("rope"))?;
    let f = pos.broadcast_mul(&inv).map_err(Error::tensor("rope"))?;
    Ok((
        f.cos().map_err(Error::tensor("rope"))?,
        f.sin().map_err(Error::tensor("rope"))?,
    ))
}

/// Logits held at once by [`nll_of_stream`] (f32: 64 MB): with a vocabulary of 49152, 341
/// positions of one window, so the output head is read twice per window of 512, not once per
/// position.
const NLL_LOGITS: usize = 1 << 24;

/// Mean negative log-likelihood of each window's next tokens, summed over windows: returns
/// (sum of −log p over predicted tokens, predicted tokens). `tokens: [B, T]`; positions 0..T−1
/// predict 1..T.
pub fn nll(model: &Llama, tokens: &Tensor) -> Result<(f64, usize)> {
    nll_of_stream(model, &model.stream(tokens)?, tokens)
}

/// [`nll`] from the residual stream `x: [B, T, h]` leaving the last layer; the logits are made
/// a chunk of positions at a time (at most `NLL_LOGITS` values, at least one position), and
/// on the CPU the log-softmax and the pick are one pass ([`crate::train::kernels::nll_sum`]).
pub fn nll_of_stream(model: &Llama, x: &Tensor, tokens: &Tensor) -> Result<(f64, usize)> {
    nll_in_chunks(model, x, tokens, NLL_LOGITS)
}

/// [`nll_of_stream`] holding at most `budget` logits at once.
fn nll_in_chunks(
    model: &Llama,
    x: &Tensor,
    tokens: &Tensor,
    budget: usize,
) -> Result<(f64, usize)> {
    let (b, t) = tokens.dims2().map_err(Error::tensor("tokens"))?;
    let predicted = t.saturating_sub(1);
    let chunk = (budget / (b * model.config.vocab_size).max(1)).max(1);
    let mut picked = 0.0;
    for start in (0..predicted).step_by(chunk) {
        let len = chunk.min(predicted - start);
        let xs = x
            .narrow(1, start, len)
            .and_then(|x| x.contiguous())
            .map_err(Error::tensor("hidden state"))?;
        let logits = model.logits(&xs)?;
        let target = tokens
            .narrow(1, start + 1, len)
            .and_then(|x| x.contiguous())
            .map_err(Error::tensor("targets"))?;
        let flat = (
            logits
                .reshape((b * len, model.config.vocab_size))
                .map_err(Error::tensor("logits"))?,
            target.flatten_all().map_err(Error::tensor("targets"))?,
        );
        if let Some(nll) =
            crate::train::kernels::nll_sum(&flat.0, &flat.1).map_err(Error::tensor("nll"))?
        {
            picked -= nll;
            continue;
        }
        let lp = candle_nn::ops::log_softmax(&logits, D::Minus1)
            .map_err(Error::tensor("log-softmax"))?;
        picked += target
            .unsqueeze(2)
            .and_then(|target| lp.gather(&target, 2))
            .and_then(|p| p.to_dtype(DType::F64))
            .and_then(|p| p.sum_all())
            .and_then(|p| p.to_scalar::<f64>())
            .map_err(Error::tensor("gather"))?;
    }
    Ok((-picked, b * predicted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::IndexOp;

    fn tiny_config() -> Config {
        Config::tiny(32, 64)
    }

    #[test]
    fn logits_are_causal_and_the_layer_taps_see_every_stage() {
        let m = Llama::random(tiny_config(), 3, &Device::Cpu).unwrap();
        let a = Tensor::new(&[[1u32, 5, 9, 2, 7, 7]], &Device::Cpu).unwrap();
        let b = Tensor::new(&[[1u32, 5, 9, 60, 3, 0]], &Device::Cpu).unwrap();
        let (la, lb) = (m.forward(&a).unwrap(), m.forward(&b).unwrap());
        // The first three positions see the same tokens: the same logits; the fourth differs.
        let diff = |t: usize| {
            la.i((0, t))
                .unwrap()
                .sub(&lb.i((0, t)).unwrap())
                .unwrap()
                .abs()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        for t in 0..3 {
            assert!(diff(t) < 1e-5, "position {t}: {}", diff(t));
        }
        assert!(diff(3) > 1e-3);
        let x = m.embed(&a).unwrap();
        let mut seen = Vec::new();
        let y = m
            .layer_forward(&m.layers[0], &x, None, &mut |s, inp| {
                seen.push((s, inp.dims().to_vec()));
                Ok(())
            })
            .unwrap()
            .unwrap();
        assert_eq!(
            seen,
            vec![
                (Stage::Attn, vec![6, 32]),
                (Stage::AttnOut, vec![6, 32]),
                (Stage::Mlp, vec![6, 32]),
                (Stage::MlpOut, vec![6, 64]),
            ]
        );
        assert_eq!(y.dims(), &[1, 6, 32]);
        let stopped = m
            .layer_forward(&m.layers[0], &x, Some(Stage::Mlp), &mut |_, _| Ok(()))
            .unwrap();
        assert!(stopped.is_none());
    }

    #[test]
    fn fused_silu_mul_equals_candles_silu_then_mul() {
        // 3 × 20000 values: more than one parallel piece, and a ragged last one.
        let g = Tensor::randn(0f32, 4.0, (3, 20_000), &Device::Cpu).unwrap();
        let u = Tensor::randn(0f32, 1.0, (3, 20_000), &Device::Cpu).unwrap();
        let fused = silu_mul(&g, &u).unwrap();
        let composed = g.silu().unwrap().mul(&u).unwrap();
        assert_eq!(fused.dims(), &[3, 20_000]);
        let (f, c) = (
            fused.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            composed.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        let worst = f
            .iter()
            .zip(&c)
            .map(|(a, b)| (a - b).abs() / (b.abs() + 1e-6))
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "worst relative difference {worst}");
        let other = Tensor::zeros((2, 5), DType::F32, &Device::Cpu).unwrap();
        assert!(silu_mul(&g, &other).is_err(), "shapes must agree");
    }

    /// The fused CPU attention against the composed tensor path: windows of 1, 63, 64 and 150
    /// tokens (one partial block, one exact block, three blocks with a partial last), two
    /// windows, four query heads over two key/value heads and over one.
    #[test]
    fn fused_attention_equals_the_composed_path() {
        for kv in [2, 1] {
            let mut c = Config::tiny(32, 64);
            c.num_key_value_heads = kv;
            let m = Llama::random(c, 7, &Device::Cpu).unwrap();
            for t in [1, 63, 64, 150] {
                let xn = Tensor::randn(0f32, 1.0, (2 * t, 32), &Device::Cpu).unwrap();
                let fused = m.attention(&m.layers[1], &xn, 2).unwrap();
                let composed = m.attention_composed(&m.layers[1], &xn, 2).unwrap();
                assert_eq!(fused.dims(), &[2 * t, 32]);
                let d = fused
                    .sub(&composed)
                    .and_then(|d| d.abs())
                    .and_then(|d| d.flatten_all())
                    .and_then(|d| d.max(0))
                    .and_then(|d| d.to_scalar::<f32>())
                    .unwrap();
                let scale = composed
                    .abs()
                    .and_then(|d| d.flatten_all())
                    .and_then(|d| d.max(0))
                    .and_then(|d| d.to_scalar::<f32>())
                    .unwrap();
                assert!(
                    scale > 0.1,
                    "kv {kv}, t {t}: a non-trivial output ({scale})"
                );
                assert!(d < 1e-5 * scale.max(1.0), "kv {kv}, t {t}: max |Δ| {d}");
            }
        }
    }

    #[test]
    fn nll_of_a_uniform_model_is_log_vocab() {
        // All-zero output head: uniform predictions, −log p = ln 64 for every predicted token.
        let mut m = Llama::random(tiny_config(), 4, &Device::Cpu).unwrap();
        m.lm_head = m.lm_head.zeros_like().unwrap();
        let t = Tensor::new(&[[1u32, 2, 3, 4], [5, 6, 7, 8]], &Device::Cpu).unwrap();
        let (s, n) = nll(&m, &t).unwrap();
        assert_eq!(n, 6);
        assert!((s / n as f64 - 64f64.ln()).abs() < 1e-5);
    }

    #[test]
    fn nll_in_chunks_equals_the_whole_log_softmax() {
        // 300 positions: three chunks of 128 positions' logits, the last partial.
        let m = Llama::random(tiny_config(), 6, &Device::Cpu).unwrap();
        let ids: Vec<u32> = (0..301u32).map(|i| (i * 37 + 11) % 64).collect();
        let t = Tensor::from_vec(ids.clone(), (1, 301), &Device::Cpu).unwrap();
        let x = m.stream(&t).unwrap();
        let (s, n) = nll_in_chunks(&m, &x, &t, 128 * 64).unwrap();
        assert_eq!(
            (s, n),
            nll(&m, &t).unwrap(),
            "one chunk or three: the same sum"
        );
        assert_eq!(n, 300);
        let lp = candle_nn::ops::log_softmax(&m.forward(&t).unwrap(), D::Minus1).unwrap();
        let lp = lp.i(0).unwrap().to_vec2::<f32>().unwrap();
        let whole: f64 = (0..300)
            .map(|i| -f64::from(lp[i][ids[i + 1] as usize]))
            .sum();
        // Each row's log-sum-exp is f32 by Cephes' exp here and libm's in candle: a few ulp.
        assert!((s - whole).abs() < 1e-7 * whole, "{s} vs {whole}");
    }
}
