//! Reading a llama-family checkpoint (a GGUF file, or a Hugging Face directory of safetensors,
//! sharded or not, in f32, f16 or bf16) into an f32 [`Llama`], and writing one back as a Hugging
//! Face safetensors checkpoint.
//!
//! GGUF: the weights are dequantized to f32 by candle; llama.cpp stores q and k with the rows
//! of each head permuted for its interleaved rotary embedding, and the loader permutes them back
//! to the Hugging Face layout (`rotate_half`), so that a transposable mask's tiles are the
//! checkpoint's own. Safetensors: every tensor keeps its stored dtype on the way out; only the
//! pruned projections are converted (back from f32), the rest are copied as read.

use super::model::{Config, Layer, Llama, Proj};
use crate::error::{Error, Result};
use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A loaded checkpoint: the model, where it came from, and how to write it back.
pub struct Checkpoint {
    /// The model in f32.
    pub model: Llama,
    /// The file or directory it was read from.
    pub path: PathBuf,
    /// What the checkpoint is.
    pub format: Format,
    /// Every tensor of the input as stored (HF name → dtype), for writing back.
    pub dtypes: BTreeMap<String, DType>,
    /// The files the checkpoint consists of (refused as outputs).
    pub files: Vec<PathBuf>,
}

/// The kinds of checkpoint read.
#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    /// A GGUF file (its tokenizer in the metadata).
    Gguf,
    /// A Hugging Face directory with `config.json`, safetensors and (optionally) `tokenizer.json`.
    HfDir,
}

/// Read a GGUF file or a Hugging Face directory.
pub fn load(path: &Path, device: &Device) -> Result<Checkpoint> {
    if path.is_dir() {
        load_hf(path, device)
    } else {
        load_gguf(path, device)
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

fn load_gguf(path: &Path, device: &Device) -> Result<Checkpoint> {
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
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut tensor = |name: &str| -> Result<Tensor> {
        content
            .tensor(&mut file, name, device)
            .and_then(|q| q.dequantize(device))
            .map_err(|e| format_err(path, format!("tensor `{name}`: {e}")))
    };
    let heads = num("llama.attention.head_count")?;
    let kv_heads = match md.get("llama.attention.head_count_kv") {
        Some(_) => num("llama.attention.head_count_kv")?,
        None => heads,
    };
    let embed = tensor("token_embd.weight")?;
    let config = Config {
        hidden_size: num("llama.embedding_length")?,
        intermediate_size: num("llama.feed_forward_length")?,
        num_hidden_layers: num("llama.block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: kv_heads,
        rms_norm_eps: float("llama.attention.layer_norm_rms_epsilon", 1e-5)?,
        rope_theta: float("llama.rope.freq_base", 10_000.0)?,
        vocab_size: embed.dim(0).map_err(Error::tensor("embedding"))?,
        tie_word_embeddings: !content.tensor_infos.contains_key("output.weight"),
    };
    config.validate()?;
    let mut layers = Vec::with_capacity(config.num_hidden_layers);
    for l in 0..config.num_hidden_layers {
        let t = |suffix: &str| format!("blk.{l}.{suffix}.weight");
        let q = unpermute(&tensor(&t("attn_q"))?, heads)?;
        let k = unpermute(&tensor(&t("attn_k"))?, kv_heads)?;
        layers.push(Layer {
            attn_norm: tensor(&t("attn_norm"))?,
            mlp_norm: tensor(&t("ffn_norm"))?,
            proj: [
                q,
                k,
                tensor(&t("attn_v"))?,
                tensor(&t("attn_output"))?,
                tensor(&t("ffn_gate"))?,
                tensor(&t("ffn_up"))?,
                tensor(&t("ffn_down"))?,
            ],
        });
    }
    let norm = tensor("output_norm.weight")?;
    let lm_head = match config.tie_word_embeddings {
        true => None,
        false => Some(tensor("output.weight")?),
    };
    let model = Llama::new(config, embed, layers, norm, lm_head)?;
    let dtypes = named_tensors(&model)
        .into_keys()
        .map(|n| (n, DType::F32))
        .collect();
    Ok(Checkpoint {
        model,
        path: path.to_path_buf(),
        format: Format::Gguf,
        dtypes,
        files: vec![path.to_path_buf()],
    })
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
fn hf_files(dir: &Path) -> Result<Vec<PathBuf>> {
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

fn load_hf(dir: &Path, device: &Device) -> Result<Checkpoint> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
    let config: Config = serde_json::from_str(&text).map_err(|e| format_err(&cfg_path, e))?;
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
    let tensor = |name: &str| -> Result<Tensor> {
        st.load(name, device)
            .and_then(|t| t.to_dtype(DType::F32))
            .map_err(|e| format_err(dir, format!("tensor `{name}`: {e}")))
    };
    let mut layers = Vec::with_capacity(config.num_hidden_layers);
    for l in 0..config.num_hidden_layers {
        let p = |p: Proj| tensor(&p.hf_name(l));
        layers.push(Layer {
            attn_norm: tensor(&format!("model.layers.{l}.input_layernorm.weight"))?,
            mlp_norm: tensor(&format!("model.layers.{l}.post_attention_layernorm.weight"))?,
            proj: [
                p(Proj::Q)?,
                p(Proj::K)?,
                p(Proj::V)?,
                p(Proj::O)?,
                p(Proj::Gate)?,
                p(Proj::Up)?,
                p(Proj::Down)?,
            ],
        });
    }
    let lm_head = match dtypes.contains_key("lm_head.weight") {
        true => Some(tensor("lm_head.weight")?),
        false => None,
    };
    let mut config = config;
    config.tie_word_embeddings = lm_head.is_none();
    let model = Llama::new(
        config,
        tensor("model.embed_tokens.weight")?,
        layers,
        tensor("model.norm.weight")?,
        lm_head,
    )?;
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
        model,
        path: dir.to_path_buf(),
        format: Format::HfDir,
        dtypes,
        files: all,
    })
}

/// The model's tensors under their HF names (f32).
pub fn named_tensors(model: &Llama) -> BTreeMap<String, Tensor> {
    let mut m = BTreeMap::new();
    m.insert("model.embed_tokens.weight".to_string(), model.embed.clone());
    m.insert("model.norm.weight".to_string(), model.norm.clone());
    if !model.config.tie_word_embeddings {
        m.insert("lm_head.weight".to_string(), model.lm_head.clone());
    }
    for (l, layer) in model.layers.iter().enumerate() {
        m.insert(
            format!("model.layers.{l}.input_layernorm.weight"),
            layer.attn_norm.clone(),
        );
        m.insert(
            format!("model.layers.{l}.post_attention_layernorm.weight"),
            layer.mlp_norm.clone(),
        );
        for p in Proj::ALL {
            m.insert(p.hf_name(l), layer.weight(p).clone());
        }
    }
    m
}

/// Write `model` into `dir` as a Hugging Face checkpoint. From an HF input: the same files
/// (each shard with the same tensors, the index and `config.json` copied), tensors named in
/// `replaced` from the model converted to their stored dtype, every other tensor copied as stored
/// (same dtype, same bytes). From a GGUF input: `model.safetensors` with every tensor from the
/// model in f32, and a `config.json` made from the model's config.
pub fn write_hf(ckpt: &Checkpoint, model: &Llama, replaced: &[String], dir: &Path) -> Result<()> {
    let ours = named_tensors(model);
    match ckpt.format {
        Format::Gguf => {
            save_tensors(&ours.into_iter().collect(), &dir.join("model.safetensors"))?;
            write_config(&model.config, dir)
        }
        Format::HfDir => {
            for file in hf_files(&ckpt.path)? {
                // SAFETY: a read-only map of the input, which nothing writes while it is open.
                let st = unsafe { candle_core::safetensors::MmapedSafetensors::new(&file) }
                    .map_err(|e| format_err(&file, format!("safetensors: {e}")))?;
                let mut out: std::collections::HashMap<String, Tensor> = Default::default();
                for (name, _) in st.tensors() {
                    let t = match (replaced.contains(&name), ckpt.dtypes.get(&name)) {
                        (true, Some(dt)) => ours
                            .get(&name)
                            .ok_or_else(|| Error::invalid("tensor", &name, "not in the model"))?
                            .to_dtype(*dt)
                            .map_err(Error::tensor(&name))?,
                        _ => st
                            .load(&name, &Device::Cpu)
                            .map_err(|e| format_err(&file, format!("tensor `{name}`: {e}")))?,
                    };
                    out.insert(name, t);
                }
                let name = file.file_name().unwrap_or_default();
                save_tensors(&out, &dir.join(name))?;
            }
            for extra in ["config.json", "model.safetensors.index.json"] {
                let from = ckpt.path.join(extra);
                if from.is_file() {
                    std::fs::copy(&from, dir.join(extra)).map_err(|e| Error::io(&from, e))?;
                }
            }
            Ok(())
        }
    }
}

fn save_tensors(out: &std::collections::HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let out: std::collections::HashMap<String, Tensor> = out
        .iter()
        .map(|(k, t)| {
            Ok((
                k.clone(),
                t.to_device(&Device::Cpu).map_err(Error::tensor("to cpu"))?,
            ))
        })
        .collect::<Result<_>>()?;
    candle_core::safetensors::save(&out, path).map_err(|e| format_err(path, e))
}

/// `config.json` in Hugging Face's form.
fn write_config(config: &Config, dir: &Path) -> Result<()> {
    let mut cfg = serde_json::to_value(config).map_err(|e| format_err(dir, e))?;
    if let Some(o) = cfg.as_object_mut() {
        o.insert(
            "architectures".into(),
            serde_json::json!(["LlamaForCausalLM"]),
        );
        o.insert("model_type".into(), serde_json::json!("llama"));
        o.insert("hidden_act".into(), serde_json::json!("silu"));
        o.insert("torch_dtype".into(), serde_json::json!("float32"));
    }
    let cfg_path = dir.join("config.json");
    std::fs::write(
        &cfg_path,
        serde_json::to_string_pretty(&cfg).map_err(|e| format_err(&cfg_path, e))?,
    )
    .map_err(|e| Error::io(&cfg_path, e))
}

/// Write `model` as a Hugging Face directory (`config.json`, `model.safetensors` in `dtype`),
/// for fixtures and tests.
pub fn save_hf(model: &Llama, dir: &Path, dtype: DType) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let out = named_tensors(model)
        .into_iter()
        .map(|(k, t)| Ok((k.clone(), t.to_dtype(dtype).map_err(Error::tensor(&k))?)))
        .collect::<Result<_>>()?;
    save_tensors(&out, &dir.join("model.safetensors"))?;
    write_config(&model.config, dir)
}

/// Write `model` as a GGUF file in llama.cpp's conventions (f32 tensors, q/k rows permuted for
/// the interleaved rotary embedding), for fixtures and tests.
pub fn write_gguf(model: &Llama, path: &Path) -> Result<()> {
    use candle_core::quantized::{GgmlDType, QTensor};
    let c = &model.config;
    let q = |t: &Tensor| {
        QTensor::quantize(
            &t.to_device(&Device::Cpu).map_err(Error::tensor("to cpu"))?,
            GgmlDType::F32,
        )
        .map_err(Error::tensor("gguf tensor"))
    };
    let mut tensors: Vec<(String, QTensor)> = vec![
        ("token_embd.weight".into(), q(&model.embed)?),
        ("output_norm.weight".into(), q(&model.norm)?),
    ];
    if !c.tie_word_embeddings {
        tensors.push(("output.weight".into(), q(&model.lm_head)?));
    }
    let names = [
        "attn_q",
        "attn_k",
        "attn_v",
        "attn_output",
        "ffn_gate",
        "ffn_up",
        "ffn_down",
    ];
    for (l, layer) in model.layers.iter().enumerate() {
        tensors.push((format!("blk.{l}.attn_norm.weight"), q(&layer.attn_norm)?));
        tensors.push((format!("blk.{l}.ffn_norm.weight"), q(&layer.mlp_norm)?));
        for (p, name) in Proj::ALL.into_iter().zip(names) {
            let w = match p {
                Proj::Q => permute(layer.weight(p), c.num_attention_heads)?,
                Proj::K => permute(layer.weight(p), c.num_key_value_heads)?,
                _ => layer.weight(p).clone(),
            };
            tensors.push((format!("blk.{l}.{name}.weight"), q(&w)?));
        }
    }
    use gguf_file::Value;
    let u = |v: usize| Value::U32(v as u32);
    let md: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        ("llama.block_count", u(c.num_hidden_layers)),
        ("llama.embedding_length", u(c.hidden_size)),
        ("llama.feed_forward_length", u(c.intermediate_size)),
        ("llama.attention.head_count", u(c.num_attention_heads)),
        ("llama.attention.head_count_kv", u(c.num_key_value_heads)),
        ("llama.rope.dimension_count", u(c.head_dim())),
        (
            "llama.attention.layer_norm_rms_epsilon",
            Value::F32(c.rms_norm_eps as f32),
        ),
        ("llama.rope.freq_base", Value::F32(c.rope_theta as f32)),
    ];
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    let mut f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    gguf_file::write(&mut f, &md_refs, &t_refs).map_err(|e| format_err(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let ours = load(&path, &dev).unwrap();
        assert_eq!(ours.format, Format::Gguf);
        let prompt = Tensor::new(&[[3u32, 14, 15, 9, 26, 5, 35, 8, 9, 7]], &dev).unwrap();
        let logits = ours.model.forward(&prompt).unwrap();
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
                ours.model.layers[1].weight(Proj::Q),
                model.layers[1].weight(Proj::Q)
            ),
            0.0
        );
        assert_eq!(
            max_abs(
                ours.model.layers[0].weight(Proj::K),
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
        let ck = load(&src, &dev).unwrap();
        let q1 = Proj::Q.hf_name(1);
        write_hf(&ck, &ck.model, std::slice::from_ref(&q1), &out).unwrap();
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
        assert!(load(&out, &dev).is_ok());
    }

    #[test]
    fn hf_write_back_converts_only_the_replaced_tensors() {
        let dir = tempfile::tempdir().unwrap();
        let (src, out) = (dir.path().join("src"), dir.path().join("out"));
        std::fs::create_dir_all(&out).unwrap();
        let dev = Device::Cpu;
        let model = Llama::random(tiny(), 12, &dev).unwrap();
        save_hf(&model, &src, DType::BF16).unwrap();
        let ck = load(&src, &dev).unwrap();
        assert!(ck.dtypes.values().all(|d| *d == DType::BF16));
        let mut pruned = ck.model.clone();
        let q = Proj::Q.hf_name(0);
        let zeros = pruned.layers[0].weight(Proj::Q).zeros_like().unwrap();
        pruned.layers[0].set_weight(Proj::Q, zeros).unwrap();
        write_hf(&ck, &pruned, std::slice::from_ref(&q), &out).unwrap();
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
}
