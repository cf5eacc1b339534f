//! Sparse training: N:M masks on the forward and backward GEMMs, N:M estimators on the update
//! GEMM, and the loop that trains and evaluates a model (table4, `masklab train`).
//!
//! - [`sparse`]: the masked linear layer (custom op with its own backward);
//! - [`models`]: MLP, LeNet-style CNN, small ResNet;
//! - [`data`]: Fashion-MNIST / MNIST (IDX), CIFAR-10, synthetic;
//! - [`optim`]: SGD with momentum and weight decay, AdamW, cosine schedule;
//! - [`trainer`]: the training loop, mask schedule and end-of-run structure checks.

pub mod data;

pub mod kernels;
pub mod models;
pub mod optim;
pub mod params;
pub mod sparse;
pub mod trainer;
