//! Language models for one-shot pruning (table6, `masklab prune`): a llama-family decoder on
//! candle ([`model`]), its checkpoints ([`load`]: GGUF or Hugging Face safetensors), its tokenizer
//! ([`tokenizer`]), text and perplexity ([`corpus`]), and the layer-wise pruners ([`prune`],
//! with [`sparsegpt`]).

pub mod corpus;
pub mod load;
pub mod model;
pub mod prune;
pub mod sparsegpt;
pub mod tokenizer;
