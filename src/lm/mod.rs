//! Language models for one-shot pruning (table6, `masklab prune`): a llama-family decoder on
//! candle ([`model`], its fused CPU attention [`attention`]), its checkpoints ([`load`]: GGUF or Hugging Face safetensors, read a layer at a time; [`save`]: written back a tensor at a time), its tokenizer
//! ([`tokenizer`]), text and perplexity ([`corpus`]), and the layer-wise pruners ([`prune`],
//! with [`sparsegpt`] and [`alps`]).

pub mod alps;
pub mod attention;
pub mod corpus;
pub mod load;
pub mod model;
pub mod prune;
pub mod save;
pub mod sparsegpt;
pub mod tokenizer;
