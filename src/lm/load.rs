//! Reading a llama-family checkpoint: a GGUF file, or a Hugging Face directory of safetensors
//! (sharded or not, in f32, f16 or bf16), as f32 tensors on a device, one decoder layer at a time.
//!
//! Problem: a pruner needs one layer's weights at a time, and a user's checkpoint may not fit in
//! memory as f32. [`open`] reads only the header (config, tensor names, dtypes); [`Checkpoint::outer`]
//! loads the embeddings, final norm and output head, and [`Checkpoint::layer`] one decoder layer,
//! so that memory holds one layer besides the outer tensors. [`Checkpoint::model`] loads it all.
//!
//! GGUF: the weights are dequantized to f32 by candle; llama.cpp stores q and k with the rows
//! of each head permuted for its interleaved rotary embedding, and the loader permutes them back
//! to the Hugging Face layout (`rotate_half`), so that a transposable mask's tiles are the
//! checkpoint's own. Safetensors: the files are memory-mapped and each tensor converted to f32
//! when it is loaded. Writing back is [`super::save`].

use super::model::{Config, Layer, Llama, Proj};
use crate::error::{Error, Result};
use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// An opened checkpoint: its config and tensor list, read lazily.
pub struct Checkpoint {
    /// The file or directory it was read from.
    pub path: PathBuf,
    /// What the checkpoint is.
    pub format: Format,
    /// The model's shapes and constants.
    pub config: Config,
    /// Every tensor of the input as stored (HF name → dtype), for writing back.
    pub dtypes: BTreeMap<String, DType>,
    /// The files the checkpoint consists of (refused as outputs).
    pub files: Vec<PathBuf>,
    device: Device,
    reader: Reader,
}

/// Where the tensors come from.
enum Reader {
    /// A GGUF file's header (tensors are read from the file at `Checkpoint::path`).
    Gguf(gguf_file::Content),
    /// Memory-mapped safetensors files.
    Hf(candle_core::safetensors::MmapedSafetensors),
}

/// The kinds of checkpoint read.
#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    /// A GGUF file (its tokenizer in the metadata).
    Gguf,
    /// A Hugging Face directory with `config.json`, safetensors and (optionally) `tokenizer.json`.
    HfDir,
}

/// Open a GGUF file or a Hugging Face directory (headers only) for loading onto `device`.
pub fn open(path: &Path, device: &Device) -> Result<Checkpoint> {
    if path.is_dir() {
        open_hf(path, device)
    } else {
        open_gguf(path, device)
    }
}

fn format_err(path: &Path, message: impl ToString) -> Error {
    Error::Format {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// The GGUF header and metadata of `path`.
pub fn gguf_content(path: &Path) -> Result<gguf_file::Content> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    gguf_file::Content::read(&mut f).map_err(|e| format_err(path, format!("not a GGUF file: {e}")))
}

/// GGUF names of a layer's projections, in [`Proj::ALL`]'s order.
pub const GGUF_PROJ: [&str; 7] = [
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
];

fn open_gguf(path: &Path, device: &Device) -> Result<Checkpoint> {
    let content = gguf_content(path)?;
    let md = &content.metadata;
    let get = |key: &str| {
        md.get(key)
            .ok_or_else(|| format_err(path, format!("metadata `{key}` is missing")))
    };
    let arch = get("general.architecture")?
        .to_string()
        .map_err(|e| format_err(path, e))?
        .clone();
    if arch != "llama" {
        return Err(format_err(
            path,
            format!("general.architecture is `{arch}`; only llama-family models are read"),
        ));
    }
    let num = |key: &str| -> Result<usize> {
        get(key)?
            .to_u32()
            .map(|v| v as usize)
            .map_err(|e| format_err(path, format!("`{key}`: {e}")))
    };
    let float = |key: &str, default: f64| -> Result<f64> {
        match md.get(key) {
            None => Ok(default),
            Some(v) => v
                .to_f32()
                .map(f64::from)
                .map_err(|e| format_err(path, format!("`{key}`: {e}"))),
        }
    };
    let heads = num("llama.attention.head_count")?;
    let kv_heads = match md.get("llama.attention.head_count_kv") {
        Some(_) => num("llama.attention.head_count_kv")?,
        None => heads,
    };
    let embed = content
        .tensor_infos
        .get("token_embd.weight")
        .ok_or_else(|| format_err(path, "tensor `token_embd.weight` is missing"))?;
    let config = Config {
        hidden_size: num("llama.embedding_length")?,
        intermediate_size: num("llama.feed_forward_length")?,
        num_hidden_layers: num("llama.block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: kv_heads,
        rms_norm_eps: float("llama.attention.layer_norm_rms_epsilon", 1e-5)?,
        rope_theta: float("llama.rope.freq_base", 10_000.0)?,
        // candle gives the shape outermost first: [vocab, hidden].
        vocab_size: *embed.shape.dims().first().unwrap_or(&0),
        tie_word_embeddings: !content.tensor_infos.contains_key("output.weight"),
    };
    config.validate()?;
    let dtypes = hf_names(&config)
        .into_iter()
        .map(|n| (n, DType::F32))
        .collect();
    Ok(Checkpoint {
        path: path.to_path_buf(),
        format: Format::Gguf,
        config,
        dtypes,
        files: vec![path.to_path_buf()],
        device: device.clone(),
        reader: Reader::Gguf(content),
    })
}

/// Hugging Face name of the token embeddings.
pub const EMBED: &str = "model.embed_tokens.weight";
/// Hugging Face name of the final norm.
pub const NORM: &str = "model.norm.weight";
/// Hugging Face name of an untied output head.
pub const LM_HEAD: &str = "lm_head.weight";

/// The model's tensors outside its decoder layers under their HF names (the head only when
/// untied).
pub fn outer_tensors(model: &Llama) -> Vec<(&'static str, &Tensor)> {
    let mut t = vec![(EMBED, &model.embed), (NORM, &model.norm)];
    if !model.config.tie_word_embeddings {
        t.push((LM_HEAD, &model.lm_head));
    }
    t
}

/// The shape of each tensor of a model of `config`, by HF name.
pub fn hf_shapes(config: &Config) -> BTreeMap<String, Vec<usize>> {
    let (h, v) = (config.hidden_size, config.vocab_size);
    let mut m = BTreeMap::new();
    m.insert(EMBED.to_string(), vec![v, h]);
    m.insert(NORM.to_string(), vec![h]);
    if !config.tie_word_embeddings {
        m.insert(LM_HEAD.to_string(), vec![v, h]);
    }
    for l in 0..config.num_hidden_layers {
        for name in norm_names(l) {
            m.insert(name, vec![h]);
        }
        for p in Proj::ALL {
            m.insert(p.hf_name(l), p.shape(config).to_vec());
        }
    }
    m
}

/// Every tensor name of a model of `config` in Hugging Face's naming.
pub fn hf_names(config: &Config) -> Vec<String> {
    hf_shapes(config).into_keys().collect()
}

/// Hugging Face names of layer `l`'s two norms (before attention, before the MLP).
pub fn norm_names(l: usize) -> [String; 2] {
    [
        format!("model.layers.{l}.input_layernorm.weight"),
        format!("model.layers.{l}.post_attention_layernorm.weight"),
    ]
}

impl Checkpoint {
    /// One tensor as f32 on the device, by its name in the checkpoint's own naming.
    fn tensor(&self, name: &str) -> Result<Tensor> {
        let loaded = match &self.reader {
            Reader::Gguf(content) => {
                let mut file =
                    std::fs::File::open(&self.path).map_err(|e| Error::io(&self.path, e))?;
                content
                    .tensor(&mut file, name, &self.device)
                    .and_then(|q| q.dequantize(&self.device))
            }
            Reader::Hf(st) => st
                .load(name, &self.device)
                .and_then(|t| t.to_dtype(DType::F32)),
        };
        loaded.map_err(|e| format_err(&self.path, format!("tensor `{name}`: {e}")))
    }

    /// The model without its decoder layers ([`Llama::outer`]).
    pub fn outer(&self) -> Result<Llama> {
        let (embed, norm, head) = match self.format {
            Format::Gguf => ("token_embd.weight", "output_norm.weight", "output.weight"),
            Format::HfDir => (EMBED, NORM, LM_HEAD),
        };
        let lm_head = match self.config.tie_word_embeddings {
            true => None,
            false => Some(self.tensor(head)?),
        };
        Llama::outer(
            self.config.clone(),
            self.tensor(embed)?,
            self.tensor(norm)?,
            lm_head,
        )
    }

    /// Decoder layer `l`, in the Hugging Face layout, checked against the config.
    pub fn layer(&self, l: usize) -> Result<Layer> {
        let layer = match self.format {
            Format::Gguf => {
                let t = |suffix: &str| self.tensor(&format!("blk.{l}.{suffix}.weight"));
                let p = |i: usize| t(GGUF_PROJ[i]);
                Layer {
                    attn_norm: t("attn_norm")?,
                    mlp_norm: t("ffn_norm")?,
                    proj: [
                        unpermute(&p(0)?, self.config.num_attention_heads)?,
                        unpermute(&p(1)?, self.config.num_key_value_heads)?,
                        p(2)?,
                        p(3)?,
                        p(4)?,
                        p(5)?,
                        p(6)?,
                    ],
                }
            }
            Format::HfDir => {
                let [a, m] = norm_names(l);
                let p = |p: Proj| self.tensor(&p.hf_name(l));
                Layer {
                    attn_norm: self.tensor(&a)?,
                    mlp_norm: self.tensor(&m)?,
                    proj: [
                        p(Proj::Q)?,
                        p(Proj::K)?,
                        p(Proj::V)?,
                        p(Proj::O)?,
                        p(Proj::Gate)?,
                        p(Proj::Up)?,
                        p(Proj::Down)?,
                    ],
                }
            }
        };
        Ok(layer)
    }

    /// The whole model in f32.
    pub fn model(&self) -> Result<Llama> {
        let mut model = self.outer()?;
        for l in 0..self.config.num_hidden_layers {
            let layer = self.layer(l)?;
            model.check_layer(l, &layer)?;
            model.layers.push(layer);
        }
        Ok(model)
    }
}

/// llama.cpp's q/k row order (per head: rotary pairs interleaved) back to Hugging Face's (per
/// head: first halves, then second halves).
fn unpermute(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (out, inp) = w.dims2().map_err(Error::tensor("q/k"))?;
    let hd = out / heads;
    w.reshape((heads, hd / 2, 2, inp))
        .and_then(|w| w.transpose(1, 2))
        .and_then(|w| w.reshape((out, inp)))
        .and_then(|w| w.contiguous())
        .map_err(Error::tensor("q/k unpermute"))
}

/// Hugging Face's order back to llama.cpp's (the inverse of [`unpermute`]), for writing GGUF
/// test models.
pub fn permute(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (out, inp) = w.dims2().map_err(Error::tensor("q/k"))?;
    let hd = out / heads;
    w.reshape((heads, 2, hd / 2, inp))
        .and_then(|w| w.transpose(1, 2))
        .and_then(|w| w.reshape((out, inp)))
        .and_then(|w| w.contiguous())
        .map_err(Error::tensor("q/k permute"))
}

/// The safetensors files of a Hugging Face directory: `model.safetensors`, or the shards named
/// by `model.safetensors.index.json`.
pub fn hf_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format_err(&index, e))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| format_err(&index, "no `weight_map` object"))?;
    let mut files: Vec<PathBuf> = map
        .values()
        .filter_map(|f| f.as_str())
        .map(|f| dir.join(f))
        .collect();
    files.sort();
    files.dedup();
    Ok(files)
}

fn open_hf(dir: &Path, device: &Device) -> Result<Checkpoint> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
    let mut config: Config = serde_json::from_str(&text).map_err(|e| format_err(&cfg_path, e))?;
    config.validate()?;
    let files = hf_files(dir)?;
    // SAFETY: the files are mapped read-only and not modified while mapped (masklab never
    // writes over an input).
    let st = unsafe { candle_core::safetensors::MmapedSafetensors::multi(&files) }
        .map_err(|e| format_err(dir, format!("safetensors: {e}")))?;
    let dtypes: BTreeMap<String, DType> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let dt = match view.dtype() {
                safetensors::Dtype::F32 => Ok(DType::F32),
                safetensors::Dtype::F16 => Ok(DType::F16),
                safetensors::Dtype::BF16 => Ok(DType::BF16),
                other => Err(format_err(
                    dir,
                    format!("tensor `{name}` is {other:?}; f32, f16 or bf16 are read"),
                )),
            }?;
            Ok((name, dt))
        })
        .collect::<Result<_>>()?;
    config.tie_word_embeddings = !dtypes.contains_key(LM_HEAD);
    if let Some(missing) = hf_names(&config)
        .into_iter()
        .find(|n| !dtypes.contains_key(n))
    {
        return Err(format_err(
            dir,
            format!("tensor `{missing}` is missing from the safetensors files"),
        ));
    }
    let mut all = files.clone();
    for extra in [
        "config.json",
        "model.safetensors.index.json",
        "tokenizer.json",
    ] {
        if dir.join(extra).is_file() {
            all.push(dir.join(extra));
        }
    }
    Ok(Checkpoint {
        path: dir.to_path_buf(),
        format: Format::HfDir,
        config,
        dtypes,
        files: all,
        device: device.clone(),
        reader: Reader::Hf(st),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::save::{Writer, save_hf, write_gguf};
    use candle_core::IndexOp;

    fn tiny() -> Config {
        Config::tiny(32, 64)
    }

    fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
        a.sub(b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn gguf_logits_equal_candle_transformers_quantized_llama() {
        // The loader's q/k un-permutation and the forward (rotate_half on the HF layout) against
        // candle-transformers' llama on the GGUF layout (interleaved rotary embedding).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        let dev = Device::Cpu;
        let model = Llama::random(tiny(), 11, &dev).unwrap();
        write_gguf(&model, &path).unwrap();
        let ck = open(&path, &dev).unwrap();
        assert_eq!(ck.format, Format::Gguf);
        // GGUF stores ε in f32.
        let eps = model.config.rms_norm_eps;
        assert!((ck.config.rms_norm_eps - eps).abs() < 1e-12);
        let same = Config {
            rms_norm_eps: eps,
            ..ck.config.clone()
        };
        assert_eq!(same, model.config);
        let ours = ck.model().unwrap();
        let prompt = Tensor::new(&[[3u32, 14, 15, 9, 26, 5, 35, 8, 9, 7]], &dev).unwrap();
        let logits = ours.forward(&prompt).unwrap();
        let last = logits.i((0, 9)).unwrap();
        let mut f = std::fs::File::open(&path).unwrap();
        let content = gguf_file::Content::read(&mut f).unwrap();
        let mut theirs = candle_transformers::models::quantized_llama::ModelWeights::from_gguf(
            content, &mut f, &dev,
        )
        .unwrap();
        let reference = theirs.forward(&prompt, 0).unwrap().i(0).unwrap();
        let d = max_abs(&last, &reference);
        assert!(d < 1e-4, "max |Δlogit| {d}");
        // And the weights read back in the HF layout are the ones written.
        assert_eq!(
            max_abs(
                ours.layers[1].weight(Proj::Q),
                model.layers[1].weight(Proj::Q)
            ),
            0.0
        );
        assert_eq!(
            max_abs(
                ours.layers[0].weight(Proj::K),
                model.layers[0].weight(Proj::K)
            ),
            0.0
        );
    }

    #[test]
    fn a_sharded_checkpoint_is_written_back_in_its_shards() {
        let dir = tempfile::tempdir().unwrap();
        let (src, out) = (dir.path().join("src"), dir.path().join("out"));
        std::fs::create_dir_all(&out).unwrap();
        let dev = Device::Cpu;
        let model = Llama::random(tiny(), 13, &dev).unwrap();
        save_hf(&model, &src, DType::F16).unwrap();
        // Split model.safetensors into two shards with an index, as HF does.
        let all = candle_core::safetensors::load(src.join("model.safetensors"), &dev).unwrap();
        std::fs::remove_file(src.join("model.safetensors")).unwrap();
        let (mut a, mut b, mut map) = (
            std::collections::HashMap::new(),
            std::collections::HashMap::new(),
            serde_json::Map::new(),
        );
        for (name, t) in all {
            let shard = if name.contains("layers.1.") {
                "model-00002-of-00002.safetensors"
            } else {
                "model-00001-of-00002.safetensors"
            };
            map.insert(name.clone(), serde_json::json!(shard));
            if shard.contains("00001") {
                a.insert(name, t);
            } else {
                b.insert(name, t);
            }
        }
        candle_core::safetensors::save(&a, src.join("model-00001-of-00002.safetensors")).unwrap();
        candle_core::safetensors::save(&b, src.join("model-00002-of-00002.safetensors")).unwrap();
        let index = serde_json::json!({"metadata": {}, "weight_map": map}).to_string();
        std::fs::write(src.join("model.safetensors.index.json"), &index).unwrap();
        let ck = open(&src, &dev).unwrap();
        let q1 = Proj::Q.hf_name(1);
        let mut w = Writer::create(&ck, &out).unwrap();
        w.put(&q1, ck.layer(1).unwrap().weight(Proj::Q)).unwrap();
        w.finish().unwrap();
        for f in [
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
        ] {
            let (x, y) = (
                std::fs::read(src.join(f)).unwrap(),
                std::fs::read(out.join(f)).unwrap(),
            );
            let (x, y) = (
                safetensors::SafeTensors::deserialize(&x).unwrap(),
                safetensors::SafeTensors::deserialize(&y).unwrap(),
            );
            let mut names_x = x.names();
            let mut names_y = y.names();
            names_x.sort();
            names_y.sort();
            assert_eq!(names_x, names_y, "{f} holds the same tensors");
            for (name, v) in x.tensors() {
                assert_eq!(y.tensor(&name).unwrap().dtype(), v.dtype());
                // Unchanged here, so equal even where replaced (f16 → f32 → f16 is exact).
                assert_eq!(y.tensor(&name).unwrap().data(), v.data(), "{name}");
            }
        }
        assert_eq!(
            std::fs::read_to_string(out.join("model.safetensors.index.json")).unwrap(),
            index
        );
        assert!(!out.join("model.safetensors").exists());
        assert!(open(&out, &dev).and_then(|c| c.model()).is_ok());
    }

    #[test]
    fn hf_write_back_converts_only_the_replaced_tensors() {
        let dir = tempfile::tempdir().unwrap();
        let (src, out) = (dir.path().join("src"), dir.path().join("out"));
        std::fs::create_dir_all(&out).unwrap();
        let dev = Device::Cpu;
        let model = Llama::random(tiny(), 12, &dev).unwrap();
        save_hf(&model, &src, DType::BF16).unwrap();
        let ck = open(&src, &dev).unwrap();
        assert!(ck.dtypes.values().all(|d| *d == DType::BF16));
        let q = Proj::Q.hf_name(0);
        let zeros = ck.layer(0).unwrap().weight(Proj::Q).zeros_like().unwrap();
        let mut w = Writer::create(&ck, &out).unwrap();
        assert!(!w.is_pending(&q), "an HF output starts as the input's copy");
        // A wrong shape is refused, naming the tensor.
        let e = w.put(&q, &zeros.t().unwrap().narrow(0, 0, 4).unwrap());
        assert!(e.unwrap_err().to_string().contains(&q));
        w.put(&q, &zeros).unwrap();
        w.finish().unwrap();
        let a = std::fs::read(src.join("model.safetensors")).unwrap();
        let b = std::fs::read(out.join("model.safetensors")).unwrap();
        let (a, b) = (
            safetensors::SafeTensors::deserialize(&a).unwrap(),
            safetensors::SafeTensors::deserialize(&b).unwrap(),
        );
        for (name, view) in a.tensors() {
            let other = b.tensor(&name).unwrap();
            assert_eq!(other.dtype(), view.dtype(), "{name}");
            if name == q {
                assert!(other.data().iter().all(|&x| x == 0), "{name} is zeroed");
            } else {
                assert_eq!(other.data(), view.data(), "{name} is copied byte for byte");
            }
        }
    }

    #[test]
    fn a_gguf_input_is_written_tensor_by_tensor_and_reads_back_equal() {
        let dir = tempfile::tempdir().unwrap();
        let (path, out) = (dir.path().join("m.gguf"), dir.path().join("out"));
        std::fs::create_dir_all(&out).unwrap();
        let dev = Device::Cpu;
        let model = Llama::random(tiny(), 17, &dev).unwrap();
        write_gguf(&model, &path).unwrap();
        let ck = open(&path, &dev).unwrap();
        let mut w = Writer::create(&ck, &out).unwrap();
        w.put_outer(&ck.outer().unwrap()).unwrap();
        w.put_layer(0, &ck.layer(0).unwrap()).unwrap();
        // Layer 1 never written: finishing is an error naming one of its tensors.
        let err = w.finish().unwrap_err().to_string();
        assert!(err.contains("model.layers.1."), "{err}");
        let mut w = Writer::create(&ck, &out).unwrap();
        w.put_outer(&ck.outer().unwrap()).unwrap();
        for l in 0..2 {
            w.put_layer(l, &ck.layer(l).unwrap()).unwrap();
        }
        w.finish().unwrap();
        let back = open(&out, &dev).unwrap().model().unwrap();
        assert_eq!(back.config.hidden_size, model.config.hidden_size);
        assert_eq!(
            back.config.tie_word_embeddings,
            model.config.tie_word_embeddings
        );
        for (a, b) in back.layers.iter().zip(&model.layers) {
            for p in Proj::ALL {
                assert_eq!(max_abs(a.weight(p), b.weight(p)), 0.0);
            }
            assert_eq!(max_abs(&a.attn_norm, &b.attn_norm), 0.0);
        }
        assert_eq!(max_abs(&back.embed, &model.embed), 0.0);
    }

    #[test]
    fn a_checkpoint_missing_a_tensor_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let dev = Device::Cpu;
        let model = Llama::random(tiny(), 18, &dev).unwrap();
        save_hf(&model, dir.path(), DType::F32).unwrap();
        let path = dir.path().join("model.safetensors");
        let mut all = candle_core::safetensors::load(&path, &dev).unwrap();
        all.remove("model.layers.1.mlp.up_proj.weight");
        candle_core::safetensors::save(&all, &path).unwrap();
        let err = open(dir.path(), &dev).err().unwrap().to_string();
        assert!(err.contains("model.layers.1.mlp.up_proj.weight"), "{err}");
    }
}
