//! Device selection: `cpu` or `cuda[:ORDINAL]` (the latter needs the `cuda` feature).

use crate::error::{Error, Result};
use candle_core::Device;

/// Parse a device name into a candle device.
pub fn parse(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        _ if name == "cuda" || name.starts_with("cuda:") => {
            let ordinal = name
                .strip_prefix("cuda:")
                .map(|o| o.parse::<usize>())
                .transpose()
                .map_err(|_| Error::invalid("device", name, "expected cuda or cuda:ORDINAL"))?;
            Device::new_cuda(ordinal.unwrap_or(0)).map_err(|e| {
                Error::invalid(
                    "device",
                    name,
                    format!(
                        "cannot open the GPU ({e}); build with --features cuda on a CUDA machine"
                    ),
                )
            })
        }
        _ => Err(Error::invalid(
            "device",
            name,
            "expected cpu, cuda or cuda:ORDINAL",
        )),
    }
}

/// A short name for a device (`cpu`, `cuda`).
pub fn label(device: &Device) -> &'static str {
    match device {
        Device::Cpu => "cpu",
        Device::Cuda(_) => "cuda",
        Device::Metal(_) => "metal",
    }
}
