//! Checkpoints read one tensor at a time, whatever their size.
//!
//! A checkpoint is a `.safetensors` file, a Hugging Face sharded layout (a directory holding
//! `model.safetensors.index.json` and its `model-0000X-of-0000Y.safetensors` shards, or the
//! index file itself; a directory without an index: all its `.safetensors` files), or an HDF5
//! file. Safetensors files are memory-mapped (memmap2) and their headers parsed by the
//! safetensors crate; nothing is read until a tensor is asked for. [`Checkpoint::read_f32`]
//! converts one tensor (f32, f16, bf16, f64) to `f32` in parallel and then drops the mapped
//! pages it touched (`MADV_DONTNEED`; the page cache keeps them), so the process holds one
//! tensor's `f32` copy at a time, not the file. HDF5 datasets are read one at a time.
//!
//! [`Selection`] picks the tensors a command works on: `--include`/`--exclude` globs over names,
//! 2-D, non-empty, and whole M×M tiles (or whole groups of M); every other tensor is listed once
//! with its reason.

use crate::error::{Error, Result};
use crate::mask::tile::BlockShape;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Element types masklab reads as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    Bf16,
    /// 64-bit float.
    F64,
    /// Anything else (integers, bools, fp8): copied, never read as numbers.
    Other,
}

impl Dtype {
    fn of(d: safetensors::Dtype) -> Self {
        match d {
            safetensors::Dtype::F32 => Dtype::F32,
            safetensors::Dtype::F16 => Dtype::F16,
            safetensors::Dtype::BF16 => Dtype::Bf16,
            safetensors::Dtype::F64 => Dtype::F64,
            _ => Dtype::Other,
        }
    }

    /// Bytes per element (0 for [`Dtype::Other`]).
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::Bf16 => 2,
            Dtype::F64 => 8,
            Dtype::Other => 0,
        }
    }
}

/// One tensor of a checkpoint: where it is, not its values.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Tensor name (HDF5: the dataset path without the leading `/`).
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: Dtype,
    /// The element type as the file names it (`F32`, `I64`, `int32`, `bool`, …).
    pub stored: String,
    /// The file holding it (index into [`Checkpoint::files`]).
    pub file: usize,
    /// Byte range of its data inside the file (safetensors).
    pub range: std::ops::Range<usize>,
}

impl Entry {
    /// Number of elements.
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes of its data in the file.
    pub fn bytes(&self) -> usize {
        self.range.len()
    }
}

enum Backing {
    Mapped(memmap2::Mmap, usize),
    #[cfg(feature = "hdf5")]
    Hdf5,
}

/// A checkpoint opened for reading tensor by tensor.
pub struct Checkpoint {
    files: Vec<(PathBuf, Backing)>,
    entries: Vec<Entry>,
    /// For a sharded layout: the index file.
    pub index: Option<PathBuf>,
}

/// The HF index file of a sharded layout.
pub const INDEX: &str = "model.safetensors.index.json";

impl Checkpoint {
    /// Open `path`: a safetensors file, a sharded directory, its index file, or an HDF5 file.
    /// Entries are sorted by name.
    pub fn open(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            ));
        }
        let mut weight_map = None;
        let (shards, index) = if path.is_dir() {
            let index = path.join(INDEX);
            if index.exists() {
                let (shards, map) = shards_of_index(&index)?;
                weight_map = Some(map);
                (shards, Some(index))
            } else {
                let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                    .map_err(|e| Error::io(path, e))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "safetensors") && p.is_file())
                    .collect();
                files.sort();
                if files.is_empty() {
                    return Err(Error::Format {
                        path: path.to_path_buf(),
                        message: format!("no {INDEX} and no .safetensors file in the directory"),
                    });
                }
                (files, None)
            }
        } else if path.to_string_lossy().ends_with(".index.json") {
            let (shards, map) = shards_of_index(path)?;
            weight_map = Some(map);
            (shards, Some(path.to_path_buf()))
        } else {
            (vec![path.to_path_buf()], None)
        };
        let mut ckpt = Checkpoint {
            files: Vec::new(),
            entries: Vec::new(),
            index,
        };
        for shard in shards {
            match super::format_of(&shard)? {
                super::Format::Safetensors => ckpt.add_safetensors(&shard)?,
                super::Format::Hdf5 => ckpt.add_hdf5(&shard)?,
            }
        }
        ckpt.entries.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(w) = ckpt.entries.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(Error::Format {
                path: path.to_path_buf(),
                message: format!("tensor `{}` appears in two shards", w[0].name),
            });
        }
        if let (Some(map), Some(index)) = (&weight_map, &ckpt.index) {
            ckpt.check_index(index, map)?;
        }
        Ok(ckpt)
    }

    /// The index must say where every tensor is: each tensor it lists is in the shard it
    /// names, and each tensor of a shard is listed (for that shard).
    fn check_index(&self, index: &Path, map: &[(String, PathBuf)]) -> Result<()> {
        let bad = |message: String| Error::Format {
            path: index.to_path_buf(),
            message,
        };
        let listed: std::collections::HashMap<&str, &Path> =
            map.iter().map(|(n, f)| (n.as_str(), f.as_path())).collect();
        for e in &self.entries {
            let file = self.files[e.file].0.as_path();
            match listed.get(e.name.as_str()) {
                None => {
                    return Err(bad(format!(
                        "weight_map does not list tensor `{}` of shard {}",
                        e.name,
                        file.display()
                    )));
                }
                Some(f) if *f != file => {
                    return Err(bad(format!(
                        "weight_map.{} names shard {}, but the tensor is in {}",
                        e.name,
                        f.display(),
                        file.display()
                    )));
                }
                _ => {}
            }
        }
        for (name, file) in map {
            if self
                .entries
                .binary_search_by(|e| e.name.as_str().cmp(name))
                .is_err()
            {
                return Err(bad(format!(
                    "weight_map.{name} names shard {}, which holds no tensor `{name}`",
                    file.display()
                )));
            }
        }
        Ok(())
    }

    fn add_safetensors(&mut self, path: &Path) -> Result<()> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the map is read-only; masklab never writes an input (io::atomic refuses
        // outputs that are inputs), so the file does not change under the map while we run.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let (n, meta) =
            safetensors::SafeTensors::read_metadata(&map).map_err(|e| Error::Format {
                path: path.to_path_buf(),
                message: format!("not a readable safetensors file: {e}"),
            })?;
        let base = 8 + n;
        let file_index = self.files.len();
        for (name, info) in meta.tensors() {
            let (start, end) = info.data_offsets;
            self.entries.push(Entry {
                name,
                shape: info.shape.clone(),
                dtype: Dtype::of(info.dtype),
                stored: format!("{:?}", info.dtype),
                file: file_index,
                range: base + start..base + end,
            });
        }
        self.files
            .push((path.to_path_buf(), Backing::Mapped(map, base)));
        Ok(())
    }

    #[cfg(feature = "hdf5")]
    fn add_hdf5(&mut self, path: &Path) -> Result<()> {
        let file_index = self.files.len();
        for (name, shape, stored) in super::h5::list(path)? {
            // Only float datasets are weights; integer, bool and other datasets are listed and
            // skipped, as integer safetensors tensors are.
            let dtype = match stored.as_str() {
                "float32" => Dtype::F32,
                "float64" => Dtype::F64,
                "float16" => Dtype::F16,
                _ => Dtype::Other,
            };
            self.entries.push(Entry {
                name,
                shape,
                dtype,
                stored,
                file: file_index,
                range: 0..0,
            });
        }
        self.files.push((path.to_path_buf(), Backing::Hdf5));
        Ok(())
    }

    #[cfg(not(feature = "hdf5"))]
    fn add_hdf5(&mut self, path: &Path) -> Result<()> {
        Err(Error::Unsupported {
            what: format!("HDF5 file {}", path.display()),
            reason: "masklab was built without the `hdf5` feature".into(),
        })
    }

    /// Every tensor, sorted by name.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The files (shards) in the order entries refer to them.
    pub fn files(&self) -> Vec<&Path> {
        self.files.iter().map(|(p, _)| p.as_path()).collect()
    }

    /// The raw bytes of a safetensors entry (as stored), or `None` for HDF5.
    pub fn raw(&self, e: &Entry) -> Option<&[u8]> {
        match &self.files[e.file].1 {
            Backing::Mapped(map, _) => {
                // Map the tensor's pages in one call rather than one fault per 64 KiB as it is
                // read (Linux ≥ 5.14; a hint, ignored where unsupported).
                #[cfg(target_os = "linux")]
                let _ =
                    map.advise_range(memmap2::Advice::PopulateRead, e.range.start, e.range.len());
                map.get(e.range.clone())
            }
            #[cfg(feature = "hdf5")]
            Backing::Hdf5 => None,
        }
    }

    /// The header of safetensors file `file` as stored (length prefix and JSON), or `None` for
    /// HDF5.
    pub fn header(&self, file: usize) -> Option<&[u8]> {
        match &self.files.get(file)?.1 {
            Backing::Mapped(map, end) => map.get(..*end),
            #[cfg(feature = "hdf5")]
            Backing::Hdf5 => None,
        }
    }

    /// Let the OS drop the mapped pages of an entry from this process (they stay cached).
    pub fn release(&self, e: &Entry) {
        #[allow(irrefutable_let_patterns)] // without the hdf5 feature, Mapped is the only kind
        if let Backing::Mapped(map, _) = &self.files[e.file].1 {
            // SAFETY: the mapping is a read-only shared file mapping; after DONTNEED a later
            // access reads the same file contents again, so no view of the data changes.
            let _ = unsafe {
                map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    e.range.start,
                    e.range.len(),
                )
            };
        }
    }

    /// One tensor as row-major `f32`; non-finite values are an error naming the tensor.
    pub fn read_f32(&self, e: &Entry) -> Result<Vec<f32>> {
        self.read_f32_map(e, ValueMap::Identity)
    }

    /// [`Checkpoint::read_f32`] with `map` applied to each value in the same pass (e.g. `abs`
    /// for scores); the finiteness check sees the values before `map`.
    pub fn read_f32_map(&self, e: &Entry, map: ValueMap) -> Result<Vec<f32>> {
        self.read_f32_tiled(e, map, None)
    }

    /// [`Checkpoint::read_f32_map`] delivered in the `[B, M, M]` block order of `tiling` (see
    /// [`crate::mask::tile`]): each strip of M rows is decoded and reordered while it is in
    /// cache, instead of a second pass over the whole tensor.
    pub fn read_f32_blocks(
        &self,
        e: &Entry,
        map: ValueMap,
        tiling: BlockShape,
    ) -> Result<Vec<f32>> {
        if tiling.rows * tiling.cols != e.elements() {
            return Err(Error::Shape {
                rows: tiling.rows,
                cols: tiling.cols,
                reason: format!("tensor `{}` has shape {:?}", e.name, e.shape),
            });
        }
        self.read_f32_tiled(e, map, Some(tiling))
    }

    fn read_f32_tiled(
        &self,
        e: &Entry,
        map: ValueMap,
        tiling: Option<BlockShape>,
    ) -> Result<Vec<f32>> {
        let (path, backing) = &self.files[e.file];
        let bad = |message: String| Error::Format {
            path: path.clone(),
            message,
        };
        let non_finite = |i: usize, v: f32| {
            bad(format!(
                "tensor `{}` has a non-finite value ({v}) at flat index {i}",
                e.name
            ))
        };
        match backing {
            #[cfg(feature = "hdf5")]
            Backing::Hdf5 => {
                let mut data = super::h5::read_one(path, &e.name)?;
                if let Some(i) = data.iter().position(|v| !v.is_finite()) {
                    return Err(non_finite(i, data[i]));
                }
                data.iter_mut().for_each(|v| *v = map.apply(*v));
                if let Some(t) = tiling {
                    t.gather_in_place(&mut data);
                }
                Ok(data)
            }
            Backing::Mapped(..) => {
                let bytes = self
                    .raw(e)
                    .ok_or_else(|| bad(format!("tensor `{}`: data beyond the file", e.name)))?;
                if e.dtype == Dtype::Other || bytes.len() != e.elements() * e.dtype.size() {
                    return Err(bad(format!(
                        "tensor `{}`: {:?} data of {} bytes for shape {:?} cannot be read as numbers",
                        e.name,
                        e.dtype,
                        bytes.len(),
                        e.shape
                    )));
                }
                // One monomorphised decode per map, so the map inlines into the loop.
                let out = match map {
                    ValueMap::Identity => decode_mapped(bytes, e.dtype, |v| v, tiling),
                    ValueMap::Abs => decode_mapped(bytes, e.dtype, f32::abs, tiling),
                    ValueMap::Square => decode_mapped(bytes, e.dtype, |v| v * v, tiling),
                };
                if let Some((start, len)) = out.1 {
                    // Decode the offending chunk again, in file order, for the index and value.
                    let size = e.dtype.size();
                    let first = decode_mapped(
                        &bytes[start * size..(start + len) * size],
                        e.dtype,
                        |v| v,
                        None,
                    )
                    .0;
                    if let Some(j) = first.iter().position(|v| !v.is_finite()) {
                        self.release(e);
                        return Err(non_finite(start + j, first[j]));
                    }
                }
                self.release(e);
                Ok(out.0)
            }
        }
    }
}

/// What [`Checkpoint::read_f32_map`] applies to each value as it decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueMap {
    /// The value itself.
    Identity,
    /// `|v|`.
    Abs,
    /// `v²`.
    Square,
}

impl ValueMap {
    /// The map applied to one value.
    pub fn apply(self, v: f32) -> f32 {
        match self {
            ValueMap::Identity => v,
            ValueMap::Abs => v.abs(),
            ValueMap::Square => v * v,
        }
    }
}

/// Values per parallel chunk when decoding.
const DECODE_CHUNK: usize = 1 << 16;

/// Decode little-endian `dtype` bytes to f32 with `map` applied, in parallel chunks (strips of
/// M rows reordered into blocks with `tiling`); also the first chunk (start, length in elements)
/// holding a non-finite value before `map`, if any.
fn decode_mapped<F: Fn(f32) -> f32 + Sync>(
    bytes: &[u8],
    dtype: Dtype,
    map: F,
    tiling: Option<BlockShape>,
) -> (Vec<f32>, Option<(usize, usize)>) {
    let size = dtype.size();
    let n = bytes.len() / size;
    let mut out = vec![0f32; n];
    crate::memory::advise_huge_pages(&mut out);
    let chunk = tiling
        .map(|t| t.m * t.cols)
        .filter(|c| *c > 0)
        .unwrap_or(DECODE_CHUNK);
    let first_bad = std::sync::atomic::AtomicUsize::new(usize::MAX);
    out.par_chunks_mut(chunk)
        .zip(bytes.par_chunks(chunk * size))
        .enumerate()
        .for_each_init(
            || tiling.map(|_| vec![0f32; chunk]),
            |scratch, (i, (o, b))| {
                let bad = match (scratch, tiling) {
                    (Some(strip), Some(t)) => {
                        let strip = &mut strip[..o.len()];
                        let bad = decode(strip, b, dtype, &map);
                        t.gather_strip(strip, o);
                        bad
                    }
                    _ => decode(o, b, dtype, &map),
                };
                if bad {
                    first_bad.fetch_min(i, std::sync::atomic::Ordering::Relaxed);
                }
            },
        );
    let c = first_bad.into_inner();
    let bad = (c != usize::MAX).then(|| (c * chunk, chunk.min(n - c * chunk)));
    (out, bad)
}

/// Decode `b` into `o` with `map`; whether any value (before `map`) is not finite.
fn decode<F: Fn(f32) -> f32>(o: &mut [f32], b: &[u8], dtype: Dtype, map: &F) -> bool {
    let size = dtype.size();
    let items = o.iter_mut().zip(b.chunks_exact(size));
    let mut bad = false;
    let mut put = |v: &mut f32, x: f32| {
        bad |= !x.is_finite();
        *v = map(x);
    };
    match dtype {
        Dtype::F32 => items.for_each(|(v, c)| put(v, f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
        Dtype::F16 => {
            items.for_each(|(v, c)| put(v, half::f16::from_le_bytes([c[0], c[1]]).to_f32()))
        }
        Dtype::Bf16 => {
            items.for_each(|(v, c)| put(v, half::bf16::from_le_bytes([c[0], c[1]]).to_f32()))
        }
        Dtype::F64 => items.for_each(|(v, c)| {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            put(v, f64::from_le_bytes(a) as f32)
        }),
        Dtype::Other => {}
    }
    bad
}

/// Every file a checkpoint source reads: the file itself, or for a sharded layout (a directory
/// or its index) the index and every shard it names (a directory without an index: its
/// `.safetensors` files). A source that cannot be resolved yields its own path, so checks
/// against outputs never fail open on it. `FILE#GLOB` sources are split first.
pub fn source_files(source: &Path) -> Vec<PathBuf> {
    let index = if source.is_dir() {
        source.join(INDEX)
    } else {
        source.to_path_buf()
    };
    let mut files = vec![source.to_path_buf()];
    if index.to_string_lossy().ends_with(".index.json") && index.is_file() {
        if let Ok((shards, _)) = shards_of_index(&index) {
            files.push(index);
            files.extend(shards);
        }
    } else if source.is_dir()
        && let Ok(rd) = std::fs::read_dir(source)
    {
        files.extend(
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "safetensors") && p.is_file()),
        );
    }
    files
}

/// The shard files an HF index names, in first-seen order, resolved next to the index, and
/// the `weight_map` (tensor name → shard path).
#[allow(clippy::type_complexity)]
fn shards_of_index(index: &Path) -> Result<(Vec<PathBuf>, Vec<(String, PathBuf)>)> {
    let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
    let bad = |m: &str| Error::Format {
        path: index.to_path_buf(),
        message: m.to_string(),
    };
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(&format!("not JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("no `weight_map` object"))?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut shards: Vec<PathBuf> = Vec::new();
    let mut weight_map = Vec::new();
    for (name, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| bad(&format!("weight_map.{name}: expected a file name")))?;
        if file.contains('/') || file.contains("..") {
            return Err(bad(&format!(
                "weight_map.{name}: `{file}` is not a file beside the index"
            )));
        }
        let p = dir.join(file);
        weight_map.push((name.clone(), p.clone()));
        if !shards.contains(&p) {
            shards.push(p);
        }
    }
    if shards.is_empty() {
        return Err(bad("`weight_map` is empty"));
    }
    Ok((shards, weight_map))
}

/// Why a tensor is not worked on.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Skipped {
    /// Tensor name.
    pub tensor: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// The reason, e.g. "1-D", "does not tile into 8x8 blocks", "excluded by `*.bias`".
    pub reason: String,
    /// Skipped by name (`--include`/`--exclude`), not for its shape or type.
    #[serde(skip)]
    pub by_name: bool,
}

/// Which tensors a command works on.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only names matching one of these (none: all).
    pub include: Vec<glob::Pattern>,
    /// Never names matching one of these.
    pub exclude: Vec<glob::Pattern>,
}

/// What a selection needs of a tensor's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tiling {
    /// Both dimensions multiples of M (transposable masks).
    Square(usize),
    /// The last dimension a multiple of M (N:M along `in`).
    Rows(usize),
}

impl Selection {
    /// A selection from glob strings; a bad glob is an error naming it.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self> {
        let parse = |field: &str, gs: &[String]| -> Result<Vec<glob::Pattern>> {
            gs.iter()
                .map(|g| glob::Pattern::new(g).map_err(|e| Error::invalid(field, g, e)))
                .collect()
        };
        Ok(Selection {
            include: parse("include", include)?,
            exclude: parse("exclude", exclude)?,
        })
    }

    /// [`Selection::apply`], then: under `strict` a tensor skipped for its shape or type is an
    /// error, and so is selecting nothing (naming `input` and every skipped tensor).
    pub fn choose<'a>(
        &self,
        entries: &'a [Entry],
        tiling: Tiling,
        strict: bool,
        input: &Path,
    ) -> Result<(Vec<&'a Entry>, Vec<Skipped>)> {
        let (chosen, skipped) = self.apply(entries, tiling);
        if strict && let Some(s) = skipped.iter().find(|s| !s.by_name) {
            return Err(Error::invalid(
                "tensor",
                &s.tensor,
                format!("shape {:?}: {} (refused under --strict)", s.shape, s.reason),
            ));
        }
        if chosen.is_empty() {
            let why: Vec<String> = skipped
                .iter()
                .map(|s| format!("`{}` {}", s.tensor, s.reason))
                .collect();
            return Err(Error::invalid(
                "input",
                input.display(),
                format!("no tensor to work on ({})", why.join("; ")),
            ));
        }
        Ok((chosen, skipped))
    }

    /// Split `entries` into those selected and the skipped ones with their reasons.
    pub fn apply<'a>(
        &self,
        entries: &'a [Entry],
        tiling: Tiling,
    ) -> (Vec<&'a Entry>, Vec<Skipped>) {
        let (mut chosen, mut skipped) = (Vec::new(), Vec::new());
        for e in entries {
            let unmatched =
                !self.include.is_empty() && !self.include.iter().any(|g| g.matches(&e.name));
            let excluded = self.exclude.iter().find(|g| g.matches(&e.name));
            let by_name = unmatched || excluded.is_some();
            let reason = if unmatched {
                Some("not matched by --include".to_string())
            } else if let Some(g) = excluded {
                Some(format!("excluded by `{}`", g.as_str()))
            } else if e.dtype == Dtype::Other {
                Some(format!("a {} tensor, not floating-point", e.stored))
            } else if e.shape.len() != 2 {
                Some(format!("{}-D, not 2-D", e.shape.len()))
            } else if e.shape[0] == 0 || e.shape[1] == 0 {
                Some("empty".to_string())
            } else {
                match tiling {
                    Tiling::Square(m) if e.shape[0] % m != 0 || e.shape[1] % m != 0 => {
                        Some(format!("does not tile into {m}x{m} blocks"))
                    }
                    Tiling::Rows(m) if e.shape[1] % m != 0 => {
                        Some(format!("in = {} is not a multiple of M = {m}", e.shape[1]))
                    }
                    _ => None,
                }
            };
            match reason {
                None => chosen.push(e),
                Some(reason) => skipped.push(Skipped {
                    tensor: e.name.clone(),
                    shape: e.shape.clone(),
                    by_name,
                    reason,
                }),
            }
        }
        (chosen, skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_read_applies_the_map_and_names_the_first_non_finite_index() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let path = dir.path().join("w.safetensors");
        // Three conversion chunks; negative values so that `abs` shows.
        let n = 2 * DECODE_CHUNK + 10;
        let mut data: Vec<f32> = (0..n).map(|i| -(i as f32) / n as f32).collect();
        let t = |data: Vec<f32>| super::super::NamedTensor {
            name: "w".into(),
            shape: vec![n],
            data,
        };
        super::super::st::write_f32(&path, &[t(data.clone())])?;
        let c = Checkpoint::open(&path)?;
        let got = c.read_f32_map(&c.entries()[0], ValueMap::Abs)?;
        assert!(got.iter().zip(&data).all(|(g, d)| *g == d.abs()));
        // A NaN in the second chunk and an infinity in the third: the NaN's index is named.
        let at = DECODE_CHUNK + 7;
        data[at] = f32::NAN;
        data[2 * DECODE_CHUNK + 1] = f32::INFINITY;
        let bad = dir.path().join("bad.safetensors");
        super::super::st::write_f32(&bad, &[t(data)])?;
        let c = Checkpoint::open(&bad)?;
        let e = c
            .read_f32_map(&c.entries()[0], ValueMap::Abs)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("flat index {at}")) && e.contains("NaN"),
            "{e}"
        );
        Ok(())
    }

    #[test]
    fn block_order_read_equals_tiling_the_plain_read_and_names_non_finite_values() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let (rows, cols) = (24, 40);
        let mut data: Vec<f32> = (0..rows * cols).map(|i| (i as f32 * 0.37).sin()).collect();
        let t = |data: Vec<f32>| super::super::NamedTensor {
            name: "w".into(),
            shape: vec![rows, cols],
            data,
        };
        let path = dir.path().join("w.safetensors");
        super::super::st::write_f32(&path, &[t(data.clone())])?;
        let c = Checkpoint::open(&path)?;
        let e = &c.entries()[0];
        for m in [4, 8] {
            let shape = BlockShape::new(rows, cols, m)?;
            let want = shape.gather(&c.read_f32_map(e, ValueMap::Square)?);
            assert_eq!(c.read_f32_blocks(e, ValueMap::Square, shape)?, want);
        }
        assert!(
            c.read_f32_blocks(e, ValueMap::Abs, BlockShape::new(8, 8, 4)?)
                .is_err()
        );
        // The index named is the file's flat index, not a position in block order.
        let at = 13 * cols + 29;
        data[at] = f32::INFINITY;
        let bad = dir.path().join("bad.safetensors");
        super::super::st::write_f32(&bad, &[t(data)])?;
        let c = Checkpoint::open(&bad)?;
        let err = c
            .read_f32_blocks(
                &c.entries()[0],
                ValueMap::Abs,
                BlockShape::new(rows, cols, 8)?,
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("flat index {at}")) && err.contains("inf"),
            "{err}"
        );
        Ok(())
    }
}
