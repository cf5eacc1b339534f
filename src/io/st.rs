//! safetensors reading and writing through candle.

use super::NamedTensor;
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// Read every tensor of a safetensors file as f32.
pub fn read(path: &Path) -> Result<Vec<NamedTensor>> {
    let map = candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        message: format!("not a readable safetensors file: {e}"),
    })?;
    map.into_iter()
        .map(|(name, t)| {
            let shape = t.dims().to_vec();
            let data = t
                .to_dtype(DType::F32)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| Error::Format {
                    path: path.to_path_buf(),
                    message: format!("tensor `{name}`: {e}"),
                })?;
            Ok(NamedTensor { name, shape, data })
        })
        .collect()
}

fn save(path: &Path, map: HashMap<String, Tensor>) -> Result<()> {
    candle_core::safetensors::save(&map, path).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Write f32 tensors.
pub fn write_f32(path: &Path, tensors: &[NamedTensor]) -> Result<()> {
    let mut map = HashMap::new();
    for t in tensors {
        let v = Tensor::from_slice(&t.data, t.shape.as_slice(), &Device::Cpu)
            .map_err(Error::tensor(&t.name))?;
        map.insert(t.name.clone(), v);
    }
    save(path, map)
}
