//! HDF5 reading and writing (hdf5-metno against the system libhdf5).

use super::NamedTensor;
use crate::error::{Error, Result};
use crate::mask::Mask;
use hdf5_metno as hdf5;
use std::path::Path;

fn err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Format {
        path: path.to_path_buf(),
        message: format!("HDF5: {e}"),
    }
}

/// Read every dataset (recursively) as f32; names are paths without the leading `/`.
pub fn read(path: &Path) -> Result<Vec<NamedTensor>> {
    let file = hdf5::File::open(path).map_err(|e| err(path, e))?;
    let mut out = Vec::new();
    visit(path, &file, &mut out)?;
    Ok(out)
}

fn visit(path: &Path, group: &hdf5::Group, out: &mut Vec<NamedTensor>) -> Result<()> {
    for name in group.member_names().map_err(|e| err(path, e))? {
        if let Ok(ds) = group.dataset(&name) {
            let full = ds.name().trim_start_matches('/').to_string();
            let data = ds
                .read_raw::<f32>()
                .map_err(|e| err(path, format!("dataset `{full}`: {e}")))?;
            out.push(NamedTensor {
                name: full,
                shape: ds.shape(),
                data,
            });
        } else if let Ok(sub) = group.group(&name) {
            visit(path, &sub, out)?;
        }
    }
    Ok(())
}

/// The group that will hold dataset `name`, creating intermediate groups.
fn parent<'a>(path: &Path, file: &hdf5::File, name: &'a str) -> Result<(hdf5::Group, &'a str)> {
    let mut group: hdf5::Group = (**file).clone();
    let (dirs, leaf) = name.rsplit_once('/').unwrap_or(("", name));
    for part in dirs.split('/').filter(|p| !p.is_empty()) {
        group = if group.link_exists(part) {
            group.group(part)
        } else {
            group.create_group(part)
        }
        .map_err(|e| err(path, e))?;
    }
    Ok((group, leaf))
}

/// Write masks as u8 datasets.
pub fn write_masks(path: &Path, masks: &[(String, Mask)]) -> Result<()> {
    let file = hdf5::File::create(path).map_err(|e| err(path, e))?;
    for (name, m) in masks {
        let (group, leaf) = parent(path, &file, name)?;
        let ds = group
            .new_dataset::<u8>()
            .shape((m.rows(), m.cols()))
            .create(leaf)
            .map_err(|e| err(path, e))?;
        ds.write_raw(m.keep()).map_err(|e| err(path, e))?;
    }
    Ok(())
}

/// Write f32 datasets.
pub fn write_f32(path: &Path, tensors: &[NamedTensor]) -> Result<()> {
    let file = hdf5::File::create(path).map_err(|e| err(path, e))?;
    for t in tensors {
        let (group, leaf) = parent(path, &file, &t.name)?;
        let ds = group
            .new_dataset::<f32>()
            .shape(t.shape.clone())
            .create(leaf)
            .map_err(|e| err(path, e))?;
        ds.write_raw(&t.data).map_err(|e| err(path, e))?;
    }
    Ok(())
}
