//! Writing a pruned llama checkpoint as Hugging Face safetensors, one tensor at a time, and the
//! test fixtures' writers (a whole model as an HF directory or as a GGUF file).
//!
//! Problem: the pruned checkpoint must keep the input's layout and dtypes, while the pruner holds
//! one decoder layer at a time. Guarantee: from a Hugging Face input, each output shard starts as
//! a byte copy of the input's (header, index and `config.json` copied too), and
//! [`Writer::put`] overwrites one tensor's bytes in place, converted to its stored dtype, so every
//! tensor not put is the input's byte for byte. From a GGUF input, one `model.safetensors` in
//! f32 is laid out from the config up front (the header first, then each tensor's bytes where the
//! header says), with a `config.json`; every tensor must be put before [`Writer::finish`].
//! Memory: one tensor. Cost: a file copy plus each put tensor's bytes.

use super::load::{Checkpoint, Format, hf_files, hf_shapes, norm_names, outer_tensors};
use super::model::{Config, Layer, Llama, Proj};
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Where one tensor's bytes go.
struct Slot {
    file: usize,
    offset: u64,
    dtype: DType,
    shape: Vec<usize>,
}

/// An output checkpoint being written into a directory, tensor by tensor.
pub struct Writer {
    files: Vec<(PathBuf, std::fs::File)>,
    slots: BTreeMap<String, Slot>,
    /// Tensors that must still be put (every tensor for a GGUF input; none for an HF input).
    pending: BTreeSet<String>,
}

fn format_err(path: &Path, message: impl ToString) -> Error {
    Error::Format {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

fn dtype_of(path: &Path, name: &str, d: safetensors::Dtype) -> Result<DType> {
    match d {
        safetensors::Dtype::F32 => Ok(DType::F32),
        safetensors::Dtype::F16 => Ok(DType::F16),
        safetensors::Dtype::BF16 => Ok(DType::BF16),
        other => Err(format_err(
            path,
            format!("tensor `{name}` is {other:?}; f32, f16 or bf16 are written"),
        )),
    }
}

impl Writer {
    /// Start writing `ckpt`'s pruned form into `dir` (an existing, empty staging directory).
    pub fn create(ckpt: &Checkpoint, dir: &Path) -> Result<Writer> {
        match ckpt.format {
            Format::HfDir => Writer::copy_hf(&ckpt.path, dir),
            Format::Gguf => {
                let w = Writer::lay_out(&ckpt.config, &dir.join("model.safetensors"))?;
                write_config(&ckpt.config, dir)?;
                Ok(w)
            }
        }
    }

    /// Copies of an HF directory's shards, index and config, with each tensor's place read from
    /// the copied headers.
    fn copy_hf(src: &Path, dir: &Path) -> Result<Writer> {
        let mut w = Writer {
            files: Vec::new(),
            slots: BTreeMap::new(),
            pending: BTreeSet::new(),
        };
        for from in hf_files(src)? {
            let to = dir.join(from.file_name().unwrap_or_default());
            std::fs::copy(&from, &to).map_err(|e| Error::io(&from, e))?;
            let mut f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&to)
                .map_err(|e| Error::io(&to, e))?;
            let mut len = [0u8; 8];
            f.read_exact(&mut len).map_err(|e| Error::io(&to, e))?;
            let n = u64::from_le_bytes(len);
            if n > 100 << 20 {
                return Err(format_err(
                    &from,
                    format!("safetensors header of {n} bytes"),
                ));
            }
            let mut header = vec![0u8; n as usize];
            f.read_exact(&mut header).map_err(|e| Error::io(&to, e))?;
            let meta: safetensors::tensor::Metadata = serde_json::from_slice(&header)
                .map_err(|e| format_err(&from, format!("safetensors header: {e}")))?;
            for (name, info) in meta.tensors() {
                let slot = Slot {
                    file: w.files.len(),
                    offset: 8 + n + info.data_offsets.0 as u64,
                    dtype: dtype_of(&from, &name, info.dtype)?,
                    shape: info.shape.clone(),
                };
                w.slots.insert(name, slot);
            }
            w.files.push((to, f));
        }
        for extra in ["config.json", "model.safetensors.index.json"] {
            let from = src.join(extra);
            if from.is_file() {
                std::fs::copy(&from, dir.join(extra)).map_err(|e| Error::io(&from, e))?;
            }
        }
        Ok(w)
    }

    /// A new f32 safetensors file at `path` for every tensor of a model of `config`: the header
    /// written, the data to be put.
    fn lay_out(config: &Config, path: &Path) -> Result<Writer> {
        let shapes = hf_shapes(config);
        let mut infos = Vec::with_capacity(shapes.len());
        let mut offset = 0usize;
        for (name, shape) in &shapes {
            let bytes = 4 * shape.iter().product::<usize>();
            infos.push((
                name.clone(),
                safetensors::tensor::TensorInfo {
                    dtype: safetensors::Dtype::F32,
                    shape: shape.clone(),
                    data_offsets: (offset, offset + bytes),
                },
            ));
            offset += bytes;
        }
        let meta = safetensors::tensor::Metadata::new(None, infos)
            .map_err(|e| format_err(path, format!("safetensors layout: {e}")))?;
        let mut header = serde_json::to_vec(&meta).map_err(|e| format_err(path, e))?;
        header.resize(header.len().next_multiple_of(8), b' ');
        let n = header.len() as u64;
        let mut f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
        f.write_all(&n.to_le_bytes())
            .and_then(|_| f.write_all(&header))
            .and_then(|_| f.set_len(8 + n + offset as u64))
            .map_err(|e| Error::io(path, e))?;
        let mut w = Writer {
            files: Vec::new(),
            slots: BTreeMap::new(),
            pending: BTreeSet::new(),
        };
        for (name, info) in meta.tensors() {
            w.slots.insert(
                name.clone(),
                Slot {
                    file: 0,
                    offset: 8 + n + info.data_offsets.0 as u64,
                    dtype: DType::F32,
                    shape: info.shape.clone(),
                },
            );
            w.pending.insert(name);
        }
        w.files.push((path.to_path_buf(), f));
        Ok(w)
    }

    /// Whether tensor `name` must still be put.
    pub fn is_pending(&self, name: &str) -> bool {
        self.pending.contains(name)
    }

    /// Write tensor `name` (converted to its stored dtype) into its place.
    pub fn put(&mut self, name: &str, t: &Tensor) -> Result<()> {
        let slot = self
            .slots
            .get(name)
            .ok_or_else(|| Error::invalid("tensor", name, "not in the output checkpoint"))?;
        if t.dims() != slot.shape.as_slice() {
            return Err(Error::invalid(
                name,
                format!("{:?}", t.dims()),
                format!("the checkpoint stores {:?}", slot.shape),
            ));
        }
        let bytes = to_bytes(t, slot.dtype).map_err(Error::tensor(name))?;
        let (path, f) = &mut self.files[slot.file];
        f.seek(SeekFrom::Start(slot.offset))
            .and_then(|_| f.write_all(&bytes))
            .map_err(|e| Error::io(&*path, e))?;
        self.pending.remove(name);
        Ok(())
    }

    /// Write the model's outer tensors where they are pending (a GGUF input's).
    pub fn put_outer(&mut self, model: &Llama) -> Result<()> {
        for (name, t) in outer_tensors(model) {
            if self.is_pending(name) {
                self.put(name, t)?;
            }
        }
        Ok(())
    }

    /// Write layer `l`: the projections always, the norms where they are pending.
    pub fn put_layer(&mut self, l: usize, layer: &Layer) -> Result<()> {
        let [a, m] = norm_names(l);
        for (name, t) in [(a, &layer.attn_norm), (m, &layer.mlp_norm)] {
            if self.is_pending(&name) {
                self.put(&name, t)?;
            }
        }
        for p in Proj::ALL {
            self.put(&p.hf_name(l), layer.weight(p))?;
        }
        Ok(())
    }

    /// Flush every file; an error names a tensor that was never put.
    pub fn finish(self) -> Result<()> {
        if let Some(name) = self.pending.first() {
            return Err(Error::invalid(
                "output checkpoint",
                name,
                format!("{} tensors were never written", self.pending.len()),
            ));
        }
        for (path, f) in &self.files {
            f.sync_all().map_err(|e| Error::io(path, e))?;
        }
        Ok(())
    }
}

/// The little-endian bytes of `t` in `dtype`.
fn to_bytes(t: &Tensor, dtype: DType) -> candle_core::Result<Vec<u8>> {
    let t = t.to_device(&Device::Cpu)?.to_dtype(dtype)?.flatten_all()?;
    Ok(match dtype {
        DType::F16 => t
            .to_vec1::<half::f16>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::BF16 => t
            .to_vec1::<half::bf16>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        _ => t
            .to_vec1::<f32>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
    })
}

/// The model's tensors under their HF names.
fn named_tensors(model: &Llama) -> BTreeMap<String, Tensor> {
    let mut m: BTreeMap<String, Tensor> = outer_tensors(model)
        .into_iter()
        .map(|(name, t)| (name.to_string(), t.clone()))
        .collect();
    for (l, layer) in model.layers.iter().enumerate() {
        let [a, n] = norm_names(l);
        m.insert(a, layer.attn_norm.clone());
        m.insert(n, layer.mlp_norm.clone());
        for p in Proj::ALL {
            m.insert(p.hf_name(l), layer.weight(p).clone());
        }
    }
    m
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
    let out: std::collections::HashMap<String, Tensor> = named_tensors(model)
        .into_iter()
        .map(|(k, t)| {
            let t = t
                .to_device(&Device::Cpu)
                .and_then(|t| t.to_dtype(dtype))
                .map_err(Error::tensor(&k))?;
            Ok((k, t))
        })
        .collect::<Result<_>>()?;
    let path = dir.join("model.safetensors");
    candle_core::safetensors::save(&out, &path).map_err(|e| format_err(&path, e))?;
    write_config(&model.config, dir)
}

/// Write `model` as a GGUF file in llama.cpp's conventions (f32 tensors, q/k rows permuted for
/// the interleaved rotary embedding), for fixtures and tests.
pub fn write_gguf(model: &Llama, path: &Path) -> Result<()> {
    use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
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
    for (l, layer) in model.layers.iter().enumerate() {
        tensors.push((format!("blk.{l}.attn_norm.weight"), q(&layer.attn_norm)?));
        tensors.push((format!("blk.{l}.ffn_norm.weight"), q(&layer.mlp_norm)?));
        for (p, name) in Proj::ALL.into_iter().zip(super::load::GGUF_PROJ) {
            let w = match p {
                Proj::Q => super::load::permute(layer.weight(p), c.num_attention_heads)?,
                Proj::K => super::load::permute(layer.weight(p), c.num_key_value_heads)?,
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
