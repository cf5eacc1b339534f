//! Data sets for training: IDX (MNIST format, gz or raw), CIFAR-10 binary batches, and a seeded
//! synthetic set for smoke runs.
//!
//! Fashion-MNIST is looked up in `--data-dir`, then `$MASKLAB_DATA/fashion-mnist`, then
//! `/usr/share/datasets/fashion-mnist` (Debian package `dataset-fashion-mnist`, which
//! `just setup` installs). MNIST uses the same file names under `DIR` or `DIR/mnist`; CIFAR-10
//! reads `data_batch_{1..5}.bin` and `test_batch.bin` from `DIR` or `DIR/cifar-10-batches-bin`.
//! A missing set is one error naming where it looked and how to get it.

use crate::error::{Error, Result};
use candle_core::{Device, Tensor};
use rand_distr::{Distribution, StandardNormal};
use std::io::Read;
use std::path::{Path, PathBuf};

/// One split: images `[n, c, h, w]` scaled to zero mean, unit variance, and labels `[n]` u32.
pub struct Split {
    /// Images, f32, CPU.
    pub images: Vec<f32>,
    /// Labels.
    pub labels: Vec<u32>,
}

impl Split {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// A data set: train and test splits and the image shape.
pub struct Dataset {
    /// Name (`fashion-mnist`, `mnist`, `cifar10`, `synthetic`).
    pub name: String,
    /// `(channels, height, width)`.
    pub shape: (usize, usize, usize),
    /// Number of classes.
    pub classes: usize,
    /// Training split.
    pub train: Split,
    /// Test split.
    pub test: Split,
}

impl Dataset {
    /// Features per example.
    pub fn features(&self) -> usize {
        self.shape.0 * self.shape.1 * self.shape.2
    }

    /// Examples `idx` of `split` as `([b, c, h, w], [b])` tensors on `device`.
    pub fn batch(
        &self,
        split: &Split,
        idx: &[usize],
        device: &Device,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let f = self.features();
        let mut x = Vec::with_capacity(idx.len() * f);
        let mut y = Vec::with_capacity(idx.len());
        for &i in idx {
            x.extend_from_slice(&split.images[i * f..(i + 1) * f]);
            y.push(split.labels[i]);
        }
        let (c, h, w) = self.shape;
        Ok((
            Tensor::from_vec(x, (idx.len(), c, h, w), device)?,
            Tensor::from_vec(y, idx.len(), device)?,
        ))
    }
}

/// Load a data set by name: `fashion-mnist`, `mnist`, `cifar10`, or `synthetic[:N]`.
pub fn load(name: &str, data_dir: Option<&Path>, seed: u64) -> Result<Dataset> {
    match name {
        "fashion-mnist" => idx_set(
            name,
            &candidates(name, data_dir, "/usr/share/datasets/fashion-mnist"),
        ),
        "mnist" => idx_set(
            name,
            &candidates(name, data_dir, "/usr/share/datasets/mnist"),
        ),
        "cifar10" => cifar10(&candidates(
            "cifar-10-batches-bin",
            data_dir,
            "/usr/share/datasets/cifar10",
        )),
        s if s == "synthetic" || s.starts_with("synthetic:") => {
            let n = match s.strip_prefix("synthetic:") {
                None => 2048,
                Some(v) => v.parse().map_err(|_| {
                    Error::invalid(
                        "dataset",
                        s,
                        "expected synthetic or synthetic:N (N training examples)",
                    )
                })?,
            };
            Ok(synthetic(n, seed))
        }
        other => Err(Error::invalid(
            "dataset",
            other,
            "known data sets: fashion-mnist, mnist, cifar10, synthetic[:N]",
        )),
    }
}

fn candidates(sub: &str, data_dir: Option<&Path>, system: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(d) = data_dir {
        out.push(d.to_path_buf());
        out.push(d.join(sub));
    }
    if let Ok(d) = std::env::var("MASKLAB_DATA") {
        out.push(PathBuf::from(&d).join(sub));
        out.push(PathBuf::from(d));
    }
    out.push(PathBuf::from(system));
    out
}

fn missing(name: &str, looked: &[PathBuf]) -> Error {
    let how = match name {
        "fashion-mnist" => "install it with `just setup` (Debian package dataset-fashion-mnist)",
        "mnist" => "put train-images-idx3-ubyte[.gz] etc. from the MNIST site in --data-dir",
        _ => "put the CIFAR-10 binary version (data_batch_1.bin … test_batch.bin) in --data-dir",
    };
    let looked: Vec<_> = looked.iter().map(|p| p.display().to_string()).collect();
    Error::invalid(
        "dataset",
        name,
        format!("not found in {}; {how}", looked.join(", ")),
    )
}

/// Read a file, gunzipping when it ends in `.gz`; tries `path` then `path.gz`.
fn read_maybe_gz(path: &Path) -> Result<Option<Vec<u8>>> {
    let gz = PathBuf::from(format!("{}.gz", path.display()));
    for p in [path.to_path_buf(), gz] {
        if !p.exists() {
            continue;
        }
        let raw = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
        if p.extension().is_some_and(|e| e == "gz") {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .map_err(|e| Error::io(&p, e))?;
            return Ok(Some(out));
        }
        return Ok(Some(raw));
    }
    Ok(None)
}

/// Parse an IDX file: magic `0 0 type ndim`, big-endian u32 dims, then u8 data.
pub fn parse_idx(bytes: &[u8], path: &Path) -> Result<(Vec<usize>, Vec<u8>)> {
    let bad = |m: &str| Error::Format {
        path: path.to_path_buf(),
        message: format!("not an IDX file of u8: {m}"),
    };
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad("bad magic"));
    }
    if bytes[2] != 0x08 {
        return Err(bad(&format!(
            "element type 0x{:02x}, expected 0x08",
            bytes[2]
        )));
    }
    let ndim = bytes[3] as usize;
    if bytes.len() < 4 + 4 * ndim {
        return Err(bad("truncated header"));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .collect();
    let n = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(&format!("dims {dims:?} multiply beyond any file size")))?;
    let data = &bytes[4 + 4 * ndim..];
    if data.len() != n {
        return Err(bad(&format!("{} data bytes for dims {dims:?}", data.len())));
    }
    Ok((dims, data.to_vec()))
}

fn idx_set(name: &str, dirs: &[PathBuf]) -> Result<Dataset> {
    let Some(dir) = dirs.iter().find(|d| {
        d.join("train-images-idx3-ubyte").exists() || d.join("train-images-idx3-ubyte.gz").exists()
    }) else {
        return Err(missing(name, dirs));
    };
    let split = |prefix: &str| -> Result<(Split, (usize, usize))> {
        let ip = dir.join(format!("{prefix}-images-idx3-ubyte"));
        let lp = dir.join(format!("{prefix}-labels-idx1-ubyte"));
        let ib = read_maybe_gz(&ip)?.ok_or_else(|| missing(name, std::slice::from_ref(&ip)))?;
        let lb = read_maybe_gz(&lp)?.ok_or_else(|| missing(name, std::slice::from_ref(&lp)))?;
        let (idims, pixels) = parse_idx(&ib, &ip)?;
        let (ldims, labels) = parse_idx(&lb, &lp)?;
        if idims.len() != 3 || ldims.len() != 1 || idims[0] != ldims[0] {
            return Err(Error::Format {
                path: ip,
                message: format!("images {idims:?} and labels {ldims:?} do not match"),
            });
        }
        if idims[0] == 0 || idims[1] == 0 || idims[2] == 0 {
            return Err(Error::Format {
                path: ip,
                message: format!("no images (dims {idims:?})"),
            });
        }
        check_labels(&labels, 10, &lp)?;
        Ok((
            Split {
                images: pixels.iter().map(|&p| p as f32 / 255.0).collect(),
                labels: labels.iter().map(|&l| l as u32).collect(),
            },
            (idims[1], idims[2]),
        ))
    };
    let (mut train, (h, w)) = split("train")?;
    let (mut test, (th, tw)) = split("t10k")?;
    if (th, tw) != (h, w) {
        return Err(Error::Format {
            path: dir.join("t10k-images-idx3-ubyte"),
            message: format!("test images are {th}x{tw}, training images {h}x{w}"),
        });
    }
    normalise(&mut train, &mut test, 1);
    Ok(Dataset {
        name: name.to_string(),
        shape: (1, h, w),
        classes: 10,
        train,
        test,
    })
}

fn cifar10(dirs: &[PathBuf]) -> Result<Dataset> {
    let Some(dir) = dirs.iter().find(|d| d.join("test_batch.bin").exists()) else {
        return Err(missing("cifar10", dirs));
    };
    let read = |files: &[String]| -> Result<Split> {
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        for f in files {
            let p = dir.join(f);
            let b = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
            if b.len() % 3073 != 0 {
                return Err(Error::Format {
                    path: p,
                    message: format!(
                        "{} bytes is not a multiple of 3073 (label + 3×32×32)",
                        b.len()
                    ),
                });
            }
            for rec in b.chunks(3073) {
                labels.push(rec[0] as u32);
                images.extend(rec[1..].iter().map(|&v| v as f32 / 255.0));
            }
            check_labels(&b.chunks(3073).map(|r| r[0]).collect::<Vec<_>>(), 10, &p)?;
        }
        if labels.is_empty() {
            return Err(Error::Format {
                path: dir.to_path_buf(),
                message: format!("no images in {}", files.join(", ")),
            });
        }
        Ok(Split { images, labels })
    };
    let mut train = read(
        &(1..=5)
            .map(|i| format!("data_batch_{i}.bin"))
            .collect::<Vec<_>>(),
    )?;
    let mut test = read(&["test_batch.bin".to_string()])?;
    normalise(&mut train, &mut test, 3);
    Ok(Dataset {
        name: "cifar10".into(),
        shape: (3, 32, 32),
        classes: 10,
        train,
        test,
    })
}

/// Every label must name one of `classes` classes; the error gives the first that does not.
fn check_labels(labels: &[u8], classes: usize, path: &Path) -> Result<()> {
    match labels.iter().position(|&l| l as usize >= classes) {
        None => Ok(()),
        Some(i) => Err(Error::Format {
            path: path.to_path_buf(),
            message: format!(
                "label {} at example {i} is not a class (expected 0..{})",
                labels[i],
                classes - 1
            ),
        }),
    }
}

/// Per-channel standardisation with the training split's statistics.
fn normalise(train: &mut Split, test: &mut Split, channels: usize) {
    let per = train.images.len() / train.len().max(1) / channels;
    for c in 0..channels {
        let (mut s, mut s2, mut n) = (0f64, 0f64, 0f64);
        for img in train.images.chunks(per * channels) {
            for &v in &img[c * per..(c + 1) * per] {
                s += v as f64;
                s2 += (v as f64) * (v as f64);
                n += 1.0;
            }
        }
        let mean = s / n.max(1.0);
        let std = (s2 / n.max(1.0) - mean * mean).max(1e-12).sqrt();
        for split in [&mut *train, &mut *test] {
            for img in split.images.chunks_mut(per * channels) {
                for v in &mut img[c * per..(c + 1) * per] {
                    *v = ((*v as f64 - mean) / std) as f32;
                }
            }
        }
    }
}

/// A seeded 10-class problem on 1×28×28 "images": class prototypes plus Gaussian noise, so a
/// model can learn it in seconds; `n` training and `n/4` test examples.
pub fn synthetic(n: usize, seed: u64) -> Dataset {
    let (classes, f) = (10usize, 28 * 28);
    let mut rng = crate::seed::rng(seed, "synthetic data");
    let protos: Vec<f32> = (0..classes * f)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    let mut make = |count: usize| {
        let mut images = Vec::with_capacity(count * f);
        let mut labels = Vec::with_capacity(count);
        for i in 0..count {
            let c = i % classes;
            labels.push(c as u32);
            for j in 0..f {
                let noise: f32 = StandardNormal.sample(&mut rng);
                images.push(0.5 * protos[c * f + j] + 1.5 * noise);
            }
        }
        Split { images, labels }
    };
    let train = make(n);
    let test = make((n / 4).max(classes));
    Dataset {
        name: "synthetic".into(),
        shape: (1, 28, 28),
        classes,
        train,
        test,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend_from_slice(data);
        b
    }

    /// Write an IDX set (train and t10k) into `dir`: images `[n, h, w]`, labels as given.
    fn write_set(dir: &Path, train: (&[u32], &[u8]), test: (&[u32], &[u8])) {
        for (prefix, (dims, labels)) in [("train", train), ("t10k", test)] {
            let n: u32 = dims.iter().product();
            std::fs::write(
                dir.join(format!("{prefix}-images-idx3-ubyte")),
                idx(dims, &vec![3u8; n as usize]),
            )
            .unwrap();
            std::fs::write(
                dir.join(format!("{prefix}-labels-idx1-ubyte")),
                idx(&[dims[0]], labels),
            )
            .unwrap();
        }
    }

    #[test]
    fn empty_mismatched_and_mislabelled_sets_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = |train: (&[u32], &[u8]), test: (&[u32], &[u8])| {
            write_set(dir.path(), train, test);
            load("mnist", Some(dir.path()), 0)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let e = err((&[0, 4, 4], &[]), (&[1, 4, 4], &[0]));
        assert!(e.contains("train-images") && e.contains("no images"), "{e}");
        let e = err((&[1, 4, 4], &[0]), (&[1, 4, 5], &[0]));
        assert!(e.contains("t10k-images") && e.contains("4x5"), "{e}");
        let e = err((&[2, 4, 4], &[3, 10]), (&[1, 4, 4], &[0]));
        assert!(
            e.contains("train-labels") && e.contains("label 10 at example 1"),
            "{e}"
        );
        // Dims whose product overflows are refused, not wrapped.
        let mut huge = idx(&[u32::MAX, u32::MAX, u32::MAX], &[]);
        huge.push(0);
        let e = parse_idx(&huge, Path::new("x")).unwrap_err().to_string();
        assert!(e.contains("multiply"), "{e}");
        assert!(err((&[1, 4, 4], &[9]), (&[1, 4, 4], &[0])).is_empty());
    }

    #[test]
    fn idx_files_raw_and_gz_load_and_bad_ones_are_named() -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let pix: Vec<u8> = (0..3 * 4 * 4).map(|i| i as u8).collect();
        for prefix in ["train", "t10k"] {
            std::fs::write(
                dir.path().join(format!("{prefix}-images-idx3-ubyte")),
                idx(&[3, 4, 4], &pix),
            )
            .unwrap();
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&idx(&[3], &[7, 1, 2])).unwrap();
            std::fs::write(
                dir.path().join(format!("{prefix}-labels-idx1-ubyte.gz")),
                gz.finish().unwrap(),
            )
            .unwrap();
        }
        let d = load("mnist", Some(dir.path()), 0)?;
        assert_eq!(d.shape, (1, 4, 4));
        assert_eq!(d.train.labels, vec![7, 1, 2]);
        assert_eq!(d.test.images.len(), 48);
        let mean: f32 = d.train.images.iter().sum::<f32>() / 48.0;
        assert!(mean.abs() < 1e-5);
        // A truncated image file is a format error naming the file.
        std::fs::write(
            dir.path().join("train-images-idx3-ubyte"),
            idx(&[3, 4, 4], &pix[..10]),
        )
        .unwrap();
        let e = load("mnist", Some(dir.path()), 0)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("train-images-idx3-ubyte") && e.contains("data bytes"),
            "{e}"
        );
        // A missing set says where it looked and how to get it.
        let empty = tempfile::tempdir().unwrap();
        let e = load("cifar10", Some(empty.path()), 0)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("CIFAR-10") && e.contains(&empty.path().display().to_string()),
            "{e}"
        );
        Ok(())
    }

    #[test]
    fn synthetic_is_seeded() {
        let a = synthetic(64, 1);
        let b = synthetic(64, 1);
        let c = synthetic(64, 2);
        assert_eq!(a.train.images, b.train.images);
        assert_ne!(a.train.images, c.train.images);
        assert_eq!(a.test.len(), 16);
    }
}
