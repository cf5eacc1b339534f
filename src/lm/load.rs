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

/// The GGUF header and metadata of `path`, parsed from a memory map: the metadata is a long run
/// of small fields (the vocabulary alone is 49,152 strings in SmolLM2), which read from the file
/// took about 500,000 `read` and 200,000 `lseek` calls (0.7 s per load).
pub fn gguf_content(path: &Path) -> Result<gguf_file::Content> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the map is read-only; masklab never writes an input (io::atomic refuses outputs
    // that are inputs), so the file does not change under the map while we run.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    gguf_file::Content::read(&mut std::io::Cursor::new(&map[..]))
        .map_err(|e| format_err(path, format!("not a GGUF file: {e}")))
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

/// Hugging Face's order back to llama.cpp's (the inverse of `unpermute`), for writing GGUF
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
mod tests;
