//! Weights and masks on disk: safetensors and HDF5, chosen by file extension.
//!
//! Inputs are named `FILE` or `FILE#GLOB` (e.g. `weights.h5#layers/*`); the glob selects
//! tensors by name (HDF5 names are dataset paths without the leading `/`). Values are read as
//! `f32`; NaN or infinite values are an error naming the tensor. Masks are written as `u8` 0/1
//! with the same tensor names.

pub mod atomic;
pub mod checkpoint;
#[cfg(feature = "hdf5")]
mod h5;
mod st;

use crate::error::{Error, Result};
use crate::mask::{Mask, Matrix};
use std::path::{Path, PathBuf};

/// The cache of trained weights and downloaded assets: `$MASKLAB_CACHE`, else `results/cache`.
pub fn default_cache() -> PathBuf {
    std::env::var_os("MASKLAB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("results/cache"))
}

/// A tensor read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    /// Tensor name in the file.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

impl NamedTensor {
    /// The tensor as a `[rows, cols]` matrix, if it is 2-D.
    pub fn matrix(&self) -> Option<Matrix> {
        match self.shape.as_slice() {
            [r, c] => Matrix::new(*r, *c, self.data.clone()).ok(),
            _ => None,
        }
    }
}

/// File formats masklab reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.safetensors`
    Safetensors,
    /// `.h5` / `.hdf5`
    Hdf5,
}

/// The format of `path`, by extension.
pub fn format_of(path: &Path) -> Result<Format> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => Ok(Format::Safetensors),
        Some("h5" | "hdf5") => Ok(Format::Hdf5),
        _ => Err(Error::invalid(
            "file",
            path.display(),
            "expected a .safetensors, .h5 or .hdf5 file",
        )),
    }
}

/// Split `FILE#GLOB` into the file and the glob (`*` when absent). A source that names an
/// existing file as written is that file, `#` and all; otherwise the split is at the last `#`,
/// so a directory or file name holding one can still take a glob.
pub fn split_source(source: &str) -> (PathBuf, String) {
    if Path::new(source).is_file() {
        return (PathBuf::from(source), "*".to_string());
    }
    match source.rsplit_once('#') {
        Some((f, g)) => (
            PathBuf::from(f),
            g.trim_matches('\'').trim_matches('"').to_string(),
        ),
        None => (PathBuf::from(source), "*".to_string()),
    }
}

/// Read every tensor of `FILE#GLOB` whose name matches, in file order (sorted by name).
pub fn read_tensors(source: &str) -> Result<Vec<NamedTensor>> {
    let (path, glob) = split_source(source);
    read_tensors_in(&path, &glob)
}

/// The tensors of the file `path` (a `#` in it is part of the name) whose names match `glob`;
/// errors as [`read_tensors`].
pub fn read_tensors_in(path: &Path, glob: &str) -> Result<Vec<NamedTensor>> {
    let path = path.to_path_buf();
    let pattern = glob::Pattern::new(glob).map_err(|e| Error::invalid("tensor glob", glob, e))?;
    if !path.exists() {
        return Err(Error::io(
            &path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        ));
    }
    let mut tensors = match format_of(&path)? {
        Format::Safetensors => st::read(&path)?,
        Format::Hdf5 => read_hdf5(&path)?,
    };
    tensors.retain(|t| pattern.matches(&t.name));
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    if tensors.is_empty() {
        return Err(Error::Format {
            path,
            message: format!("no tensor matches `{glob}`"),
        });
    }
    for t in &tensors {
        if let Some(i) = t.data.iter().position(|v| !v.is_finite()) {
            return Err(Error::Format {
                path: path.clone(),
                message: format!(
                    "tensor `{}` has a non-finite value ({}) at flat index {i}",
                    t.name, t.data[i]
                ),
            });
        }
    }
    Ok(tensors)
}

/// Tensor names an HDF5 file can hold as dataset paths: non-empty `/`-separated parts, each
/// name once, and no name that is also the group of another (`a` beside `a/b`). Checked
/// before anything is written; the error names the output file and the tensors.
pub fn check_hdf5_names<'a>(out: &Path, names: impl Iterator<Item = &'a str>) -> Result<()> {
    let names: Vec<&str> = names.collect();
    let bad = |message: String| Error::Format {
        path: out.to_path_buf(),
        message,
    };
    let mut seen = std::collections::HashSet::new();
    for name in &names {
        let trimmed = name.strip_prefix('/').unwrap_or(name);
        if trimmed.is_empty() || trimmed.split('/').any(str::is_empty) {
            return Err(bad(format!(
                "tensor name `{name}` cannot be an HDF5 dataset path (empty, or an empty part between `/`); write safetensors instead"
            )));
        }
        if !seen.insert(trimmed) {
            return Err(bad(format!("tensor `{name}` is named twice")));
        }
    }
    for name in &seen {
        let group = format!("{name}/");
        if let Some(other) = seen.iter().find(|o| o.starts_with(&group)) {
            return Err(bad(format!(
                "tensors `{name}` and `{other}` clash in HDF5 (`{name}` would be both a dataset and the group holding `{other}`); write safetensors instead"
            )));
        }
    }
    Ok(())
}

/// Write named `f32` tensors (e.g. test fixtures, captured gradients), by extension (atomically).
pub fn write_tensors(path: &Path, tensors: &[NamedTensor]) -> Result<()> {
    let format = format_of(path)?;
    if format == Format::Hdf5 {
        check_hdf5_names(path, tensors.iter().map(|t| t.name.as_str()))?;
    }
    atomic::write_with(path, |tmp| match format {
        Format::Safetensors => st::write_f32(tmp, tensors),
        Format::Hdf5 => write_f32_hdf5(tmp, tensors),
    })
}

/// A masks file written one mask at a time, in the order announced when it was created: for
/// safetensors the header (names, shapes, offsets) goes first and each mask's bytes follow as
/// they come, so no mask is held longer than it takes to write it.
pub enum MaskSink {
    /// A safetensors file being filled.
    Safetensors {
        /// The file.
        file: std::io::BufWriter<std::fs::File>,
        /// Names and shapes still to come, in order.
        pending: std::collections::VecDeque<(String, Vec<usize>)>,
        /// Where it is written.
        path: PathBuf,
    },
    /// An HDF5 file.
    #[cfg(feature = "hdf5")]
    Hdf5(h5::MaskFile),
}

/// Write `bytes` in 1 MiB `write(2)` calls. One call with a large buffer is much slower on
/// Linux: measured here, 64 MiB to the page cache in one call 0.26–0.35 s, in 1 MiB calls
/// 0.025 s.
pub fn write_in_pieces(w: &mut impl std::io::Write, bytes: &[u8]) -> std::io::Result<()> {
    bytes
        .chunks(1 << 20)
        .try_for_each(|piece| w.write_all(piece))
}

impl MaskSink {
    /// Create `path` (format by extension of `format_path`) for masks of these names and shapes.
    pub fn create(
        path: &Path,
        format_path: &Path,
        planned: &[(String, Vec<usize>)],
    ) -> Result<Self> {
        match format_of(format_path)? {
            Format::Safetensors => {
                let mut header = serde_json::Map::new();
                let mut offset = 0usize;
                for (name, shape) in planned {
                    let len: usize = shape.iter().product();
                    header.insert(
                        name.clone(),
                        serde_json::json!({"dtype": "U8", "shape": shape, "data_offsets": [offset, offset + len]}),
                    );
                    offset += len;
                }
                let mut text = serde_json::Value::Object(header).to_string();
                while !text.len().is_multiple_of(8) {
                    text.push(' ');
                }
                use std::io::Write;
                let f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
                let mut file = std::io::BufWriter::with_capacity(1 << 20, f);
                file.write_all(&(text.len() as u64).to_le_bytes())
                    .and_then(|()| file.write_all(text.as_bytes()))
                    .map_err(|e| Error::io(path, e))?;
                Ok(MaskSink::Safetensors {
                    file,
                    pending: planned.iter().cloned().collect(),
                    path: path.to_path_buf(),
                })
            }
            #[cfg(feature = "hdf5")]
            Format::Hdf5 => {
                check_hdf5_names(format_path, planned.iter().map(|(n, _)| n.as_str()))?;
                Ok(MaskSink::Hdf5(h5::MaskFile::create(path)?))
            }
            #[cfg(not(feature = "hdf5"))]
            Format::Hdf5 => Err(no_hdf5(path)),
        }
    }

    /// Write the next mask (it must be the next one announced).
    pub fn push(&mut self, name: &str, mask: &Mask) -> Result<()> {
        match self {
            MaskSink::Safetensors {
                file,
                pending,
                path,
            } => {
                let Some((want, shape)) = pending.pop_front() else {
                    return Err(Error::invalid("mask", name, "more masks than announced"));
                };
                if want != name || shape != [mask.rows(), mask.cols()] {
                    return Err(Error::invalid(
                        "mask",
                        name,
                        format!("expected `{want}` of shape {shape:?} next"),
                    ));
                }
                write_in_pieces(file, mask.keep()).map_err(|e| Error::io(&*path, e))
            }
            #[cfg(feature = "hdf5")]
            MaskSink::Hdf5(f) => f.push(name, mask),
        }
    }

    /// Flush; every announced mask must have been written.
    pub fn finish(self) -> Result<()> {
        match self {
            MaskSink::Safetensors {
                file,
                pending,
                path,
            } => {
                if let Some((name, _)) = pending.front() {
                    return Err(Error::invalid("mask", name, "announced but never written"));
                }
                file.into_inner()
                    .map_err(|e| Error::io(&path, e.into_error()))?
                    .sync_all()
                    .map_err(|e| Error::io(&path, e))
            }
            #[cfg(feature = "hdf5")]
            MaskSink::Hdf5(_) => Ok(()),
        }
    }
}

#[cfg(feature = "hdf5")]
fn read_hdf5(path: &Path) -> Result<Vec<NamedTensor>> {
    h5::read(path)
}
#[cfg(feature = "hdf5")]
fn write_f32_hdf5(path: &Path, tensors: &[NamedTensor]) -> Result<()> {
    h5::write_f32(path, tensors)
}
#[cfg(not(feature = "hdf5"))]
fn no_hdf5(path: &Path) -> Error {
    Error::Unsupported {
        what: format!("HDF5 file {}", path.display()),
        reason: "masklab was built without the `hdf5` feature".into(),
    }
}
#[cfg(not(feature = "hdf5"))]
fn read_hdf5(path: &Path) -> Result<Vec<NamedTensor>> {
    Err(no_hdf5(path))
}
#[cfg(not(feature = "hdf5"))]
fn write_f32_hdf5(path: &Path, _: &[NamedTensor]) -> Result<()> {
    Err(no_hdf5(path))
}

/// A bar over the bytes of `chosen` (hidden unless `show`; indicatif hides it off a terminal).
pub fn progress_bar(show: bool, chosen: &[&checkpoint::Entry]) -> indicatif::ProgressBar {
    let total: u64 = chosen.iter().map(|e| e.bytes().max(1) as u64).sum();
    bar(
        show,
        total,
        "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} ({binary_bytes_per_sec}), eta {eta} {wide_msg}",
    )
}

/// A progress bar of `len` steps drawn with the indicatif `template` (hidden unless `show`; a
/// template indicatif refuses falls back to its default bar).
pub fn bar(show: bool, len: u64, template: &str) -> indicatif::ProgressBar {
    let bar = if show {
        indicatif::ProgressBar::new(len)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Write named tensors as `u8` 0/1 masks, by the extension of `path` (atomically), through
    /// the same [`MaskSink`] the streamed solve uses.
    fn write_masks(path: &Path, masks: &[(String, Mask)]) -> Result<()> {
        let planned: Vec<(String, Vec<usize>)> = masks
            .iter()
            .map(|(n, m)| (n.clone(), vec![m.rows(), m.cols()]))
            .collect();
        atomic::write_with(path, |tmp| {
            let mut sink = MaskSink::create(tmp, path, &planned)?;
            for (name, m) in masks {
                sink.push(name, m)?;
            }
            sink.finish()
        })
    }

    fn fixture() -> Vec<NamedTensor> {
        vec![
            NamedTensor {
                name: "layers/0/weight".into(),
                shape: vec![2, 4],
                data: (0..8).map(|i| i as f32 - 3.5).collect(),
            },
            NamedTensor {
                name: "layers/0/bias".into(),
                shape: vec![2],
                data: vec![0.5, 1.5],
            },
            NamedTensor {
                name: "head".into(),
                shape: vec![4, 4],
                data: vec![1.0; 16],
            },
        ]
    }

    #[test]
    fn a_hash_in_a_file_name_is_part_of_the_name() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let sub = dir.path().join("run#3");
        std::fs::create_dir(&sub).map_err(|e| Error::io("tmp", e))?;
        let path = sub.join("w#1.safetensors");
        write_tensors(&path, &fixture())?;
        assert_eq!(read_tensors_in(&path, "*")?.len(), 3);
        // The file as written, and with a glob after the last `#`.
        let whole = path.to_str().unwrap();
        assert_eq!(read_tensors(whole)?.len(), 3);
        let some = read_tensors(&format!("{whole}#layers/*"))?;
        assert!(!some.is_empty() && some.len() < 3, "{} tensors", some.len());
        assert_eq!(split_source(&format!("{whole}#layers/*")).0, path);
        Ok(())
    }

    #[test]
    fn round_trip_and_glob_in_both_formats() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        for ext in ["safetensors", "h5"] {
            let path = dir.path().join(format!("w.{ext}"));
            write_tensors(&path, &fixture())?;
            let all = read_tensors(path.to_str().unwrap())?;
            assert_eq!(all.len(), 3, "{ext}");
            let layers = read_tensors(&format!("{}#layers/*", path.display()))?;
            assert_eq!(
                layers.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
                vec!["layers/0/bias", "layers/0/weight"]
            );
            assert_eq!(layers[1].shape, vec![2, 4]);
            assert_eq!(layers[1].data, fixture()[0].data);
            let mask = Mask::new(2, 4, vec![1, 0, 1, 0, 0, 1, 0, 1])?;
            let mpath = dir.path().join(format!("m.{ext}"));
            write_masks(&mpath, &[("layers/0/weight".into(), mask)])?;
            let back = read_tensors(mpath.to_str().unwrap())?;
            assert_eq!(back[0].data, vec![1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0]);
        }
        Ok(())
    }

    /// Issue 21 R18: an empty name or `a` beside `a/b` gave "unknown library error" naming the
    /// temporary file; they are refused up front, naming the output and the tensors.
    #[test]
    fn hdf5_names_that_cannot_be_dataset_paths_are_refused() {
        let out = Path::new("masks.h5");
        let check = |names: &[&str]| check_hdf5_names(out, names.iter().copied());
        assert!(check(&["a", "b/c", "/d"]).is_ok());
        for (names, want) in [
            (&["", "x"][..], "``"),
            (&["a//b"][..], "`a//b`"),
            (&["a", "a/b"][..], "`a/b`"),
            (&["x", "/x"][..], "twice"),
        ] {
            let e = check(names).unwrap_err().to_string();
            assert!(e.contains("masks.h5") && e.contains(want), "{names:?}: {e}");
        }
    }

    #[test]
    fn non_finite_values_name_the_tensor() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let path = dir.path().join("bad.safetensors");
        let mut t = fixture();
        t[2].data[5] = f32::NAN;
        write_tensors(&path, &t)?;
        let e = read_tensors(path.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("`head`") && e.contains("non-finite"), "{e}");
        assert!(
            read_tensors("nope.safetensors")
                .unwrap_err()
                .to_string()
                .contains("nope.safetensors")
        );
        Ok(())
    }
}
