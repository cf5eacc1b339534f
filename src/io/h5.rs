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

/// A dataset: name, shape and element type.
type Listed = (String, Vec<usize>, String);

/// Every dataset's name, shape and element type (`float32`, `int64`, `bool`, …; recursively),
/// without reading data.
pub fn list(path: &Path) -> Result<Vec<Listed>> {
    fn walk(path: &Path, g: &hdf5::Group, out: &mut Vec<Listed>) -> Result<()> {
        for name in g.member_names().map_err(|e| err(path, e))? {
            if let Ok(ds) = g.dataset(&name) {
                let full = ds.name().trim_start_matches('/').to_string();
                // A type hdf5-metno cannot describe is listed (and skipped), not an error.
                let stored = ds
                    .dtype()
                    .and_then(|t| t.to_descriptor())
                    .map(|d| d.to_string())
                    .unwrap_or_else(|e| format!("unreadable-type ({e})"));
                out.push((full, ds.shape(), stored));
            } else if let Ok(sub) = g.group(&name) {
                walk(path, &sub, out)?;
            }
        }
        Ok(())
    }
    let file = hdf5::File::open(path).map_err(|e| err(path, e))?;
    let mut out = Vec::new();
    walk(path, &file, &mut out)?;
    Ok(out)
}

/// One dataset as f32.
pub fn read_one(path: &Path, name: &str) -> Result<Vec<f32>> {
    let file = hdf5::File::open(path).map_err(|e| err(path, e))?;
    file.dataset(name)
        .and_then(|ds| ds.read_raw::<f32>())
        .map_err(|e| err(path, format!("dataset `{name}`: {e}")))
}

/// A masks file written one dataset at a time.
pub struct MaskFile {
    path: std::path::PathBuf,
    file: hdf5::File,
}

impl MaskFile {
    /// Create (truncate) `path`.
    pub fn create(path: &Path) -> Result<Self> {
        let file = hdf5::File::create(path).map_err(|e| err(path, e))?;
        Ok(MaskFile {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Add one mask as a u8 dataset.
    pub fn push(&mut self, name: &str, mask: &Mask) -> Result<()> {
        let (group, leaf) = parent(&self.path, &self.file, name)?;
        group
            .new_dataset::<u8>()
            .shape((mask.rows(), mask.cols()))
            .create(leaf)
            .and_then(|ds| ds.write_raw(mask.keep()))
            .map_err(|e| err(&self.path, format!("dataset `{name}`: {e}")))?;
        Ok(())
    }
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
