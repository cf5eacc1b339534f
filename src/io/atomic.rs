//! Outputs that never destroy an input and never leave a half-written file.
//!
//! Every file masklab writes goes through [`write_with`]: the writer fills a temporary file in
//! the destination's directory (same file system, so the rename is atomic), the file is synced,
//! renamed over the destination and the directory synced. A kill at any point leaves either the
//! old file or the new one, plus at worst a stray `.NAME.PID.tmp`. [`refuse_overwrite`] stops an
//! output that is one of the command's inputs (after resolving links, and hard links by inode).

use crate::error::{Error, Result};
use std::fs::File;
use std::path::{Path, PathBuf};

/// The temporary sibling of `path` a writer fills before the rename.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Write `path` atomically: `write` fills the temporary path given to it, which is then synced
/// and renamed over `path`. On error the temporary file is removed and `path` is untouched.
pub fn write_with<F>(path: &Path, write: F) -> Result<()>
where
    F: FnOnce(&Path) -> Result<()>,
{
    let tmp = temp_path(path);
    // Some writers create their file private (0600, as temporary files are); the output gets
    // the mode of the file it replaces, or the usual 0644.
    let mode = std::fs::metadata(path).map(|m| m.permissions());
    let result = write(&tmp).and_then(|()| {
        if let Some(perms) = mode.ok().or_else(default_permissions) {
            std::fs::set_permissions(&tmp, perms).map_err(|e| Error::io(&tmp, e))?;
        }
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    // The rename is durable once the directory entry is.
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(unix)]
fn default_permissions() -> Option<std::fs::Permissions> {
    use std::os::unix::fs::PermissionsExt;
    Some(std::fs::Permissions::from_mode(0o644))
}

#[cfg(not(unix))]
fn default_permissions() -> Option<std::fs::Permissions> {
    None
}

/// Write `bytes` to `path` atomically (see [`write_with`]).
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with(path, |tmp| {
        std::fs::write(tmp, bytes).map_err(|e| Error::io(tmp, e))
    })
}

/// Whether `a` and `b` name the same file: the same inode when both exist, else the same
/// canonical path (a missing file's parent resolved, its name appended).
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return ma.dev() == mb.dev() && ma.ino() == mb.ino();
        }
    }
    match (resolve(a), resolve(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

fn resolve(p: &Path) -> Option<PathBuf> {
    if let Ok(c) = p.canonicalize() {
        return Some(c);
    }
    let parent = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Some(parent.canonicalize().ok()?.join(p.file_name()?))
}

/// Refuse to write `output` (named by the option `field`) when it is one of `inputs`.
pub fn refuse_overwrite(field: &str, output: &Path, inputs: &[&Path]) -> Result<()> {
    for input in inputs {
        if same_file(output, input) {
            return Err(Error::invalid(
                field,
                output.display(),
                format!(
                    "is the input {}; masklab never writes over an input (choose another file)",
                    input.display()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_writer_leaves_the_old_file_and_no_temporary() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let path = dir.path().join("t.csv");
        write_bytes(&path, b"old")?;
        let err = write_with(&path, |tmp| {
            std::fs::write(tmp, b"half").map_err(|e| Error::io(tmp, e))?;
            Err(Error::invalid("x", 1, "writer failed"))
        });
        assert!(err.is_err());
        assert_eq!(
            std::fs::read(&path).map_err(|e| Error::io(&path, e))?,
            b"old"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .map_err(|e| Error::io(dir.path(), e))?
            .collect();
        assert_eq!(left.len(), 1, "only t.csv remains");
        write_bytes(&path, b"new")?;
        assert_eq!(
            std::fs::read(&path).map_err(|e| Error::io(&path, e))?,
            b"new"
        );
        Ok(())
    }

    #[test]
    fn links_and_relative_names_are_the_same_file() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let a = dir.path().join("a.safetensors");
        write_bytes(&a, b"x")?;
        let sym = dir.path().join("s.safetensors");
        let hard = dir.path().join("h.safetensors");
        std::os::unix::fs::symlink(&a, &sym).map_err(|e| Error::io(&sym, e))?;
        std::fs::hard_link(&a, &hard).map_err(|e| Error::io(&hard, e))?;
        let dotted = dir.path().join(".").join("a.safetensors");
        for p in [&sym, &hard, &dotted] {
            assert!(same_file(p, &a), "{}", p.display());
            assert!(refuse_overwrite("--output", p, &[&a]).is_err());
        }
        let other = dir.path().join("missing.safetensors");
        assert!(!same_file(&other, &a));
        assert!(refuse_overwrite("--output", &other, &[&a]).is_ok());
        Ok(())
    }
}
