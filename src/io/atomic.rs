//! Outputs that never destroy an input and never leave a half-written file.
//!
//! Every file masklab writes goes through [`write_with`]: the writer fills a temporary file in
//! the destination's directory (same file system, so the rename is atomic), the file is synced,
//! renamed over the destination and the directory synced. A kill at any point leaves either the
//! old file or the new one, plus at worst a stray `.NAME.PID.tmp`. [`refuse_overwrite`] stops an
//! output that is one of the command's inputs (after resolving links, and hard links by inode).
//!
//! A directory output (a sharded checkpoint) goes through [`write_dir_with`]: it is built in a
//! staging directory beside the destination and swapped into place only when complete, so a
//! kill leaves the previous complete output (or none), never a mix of old and new files.

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

/// Whether `name` is a temporary sibling that [`write_with`] fills for a file named `of`
/// (`.{of}.{pid}.tmp`, from this process or another).
pub fn is_temp_of(name: &str, of: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|n| n.strip_prefix(of))
        .and_then(|n| n.strip_prefix('.'))
        .and_then(|n| n.strip_suffix(".tmp"))
        .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
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
    sync_parent(path);
    Ok(())
}

/// Sync the directory holding `path`: a rename is durable once the directory entry is.
fn sync_parent(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The staging directory of `path` for this process: `.NAME.staging.PID` beside it.
fn staging_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    path.with_file_name(format!(".{name}.staging.{}", std::process::id()))
}

/// Whether process `pid` is alive on this machine.
fn alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        // SAFETY: signal 0 only checks that the process exists; nothing is sent.
        let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// Remove the staging directories of `path` left by processes that died (killed conversions).
fn remove_stale_staging(path: &Path) {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let prefix = format!(".{}.staging.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = n.strip_prefix(&prefix).and_then(|p| p.parse::<u32>().ok())
            && !alive(pid)
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Build the directory `path` atomically: `write` fills an empty staging directory beside it
/// (same file system); every file in it is synced, and the staging directory is then swapped
/// with `path` (Linux `renameat2(RENAME_EXCHANGE)`, else two renames) and the old contents
/// removed. A kill or an error at any point leaves the previous `path` (or none, between the
/// two renames of the fallback), never a partial one; a failed build's staging is removed at
/// once, a killed one's by the next build of the same `path`.
pub fn write_dir_with<F>(path: &Path, write: F) -> Result<()>
where
    F: FnOnce(&Path) -> Result<()>,
{
    remove_stale_staging(path);
    let staging = staging_path(path);
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    let built = write(&staging).and_then(|()| sync_tree(&staging));
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    if path.exists() {
        if !exchange(&staging, path) {
            // No atomic exchange here: move the old output aside first (a kill in between
            // leaves no output, never a mixed one).
            let old = path.with_file_name(format!(
                ".{}.old.{}",
                path.file_name().unwrap_or_default().to_string_lossy(),
                std::process::id()
            ));
            std::fs::rename(path, &old).map_err(|e| Error::io(path, e))?;
            std::fs::rename(&staging, path).map_err(|e| Error::io(path, e))?;
            let _ = std::fs::remove_dir_all(&old);
        } else {
            let _ = std::fs::remove_dir_all(&staging);
        }
    } else {
        std::fs::rename(&staging, path).map_err(|e| Error::io(path, e))?;
    }
    sync_parent(path);
    Ok(())
}

/// Sync every regular file directly in `dir`, then `dir` itself.
fn sync_tree(dir: &Path) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let p = e.map_err(|e| Error::io(dir, e))?.path();
        if p.is_file() {
            File::open(&p)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(&p, e))?;
        }
    }
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(dir, e))
}

/// Swap two directory entries atomically (Linux ≥ 3.15); false where unsupported.
fn exchange(a: &Path, b: &Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let (Ok(ca), Ok(cb)) = (
            std::ffi::CString::new(a.as_os_str().as_bytes()),
            std::ffi::CString::new(b.as_os_str().as_bytes()),
        ) else {
            return false;
        };
        // SAFETY: both are valid NUL-terminated paths; renameat2 reads them and nothing else.
        let r = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                ca.as_ptr(),
                libc::AT_FDCWD,
                cb.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        r == 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (a, b);
        false
    }
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

/// Refuse a directory output (named by the option `field`) that [`write_dir_with`] would
/// replace whole at the cost of an input or a user's files: one that is an input or holds one,
/// is a file, or is a non-empty directory holding no checkpoint (no `*.safetensors`, no
/// `model.safetensors.index.json`).
pub fn refuse_dir_output(field: &str, output: &Path, inputs: &[&Path]) -> Result<()> {
    refuse_overwrite(field, output, inputs)?;
    let refuse = |why: String| Err(Error::invalid(field, output.display(), why));
    for input in inputs {
        let parent = input.parent().filter(|p| !p.as_os_str().is_empty());
        if parent.is_some_and(|p| same_file(p, output)) {
            return refuse(format!(
                "holds the input {}; masklab never writes over an input, and the output directory is replaced whole, so give a new directory",
                input.display()
            ));
        }
    }
    if !output.exists() {
        return Ok(());
    }
    if !output.is_dir() {
        return refuse("is a file; the output is a directory".into());
    }
    let names: Vec<String> = std::fs::read_dir(output)
        .map_err(|e| Error::io(output, e))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let checkpoint = names
        .iter()
        .any(|n| n == "model.safetensors.index.json" || n.ends_with(".safetensors"));
    if !names.is_empty() && !checkpoint {
        let mut shown = names;
        shown.sort();
        shown.truncate(5);
        return refuse(format!(
            "is a non-empty directory that holds no checkpoint ({}); it would be replaced whole, so give a new or empty directory",
            shown.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporaries_are_recognised_by_name_only_for_their_file() {
        let tmp = temp_path(Path::new("/d/manifest.json"));
        let name = tmp.file_name().unwrap().to_string_lossy().into_owned();
        assert!(is_temp_of(&name, "manifest.json"), "{name}");
        assert!(is_temp_of(".manifest.json.6643.tmp", "manifest.json"));
        assert!(!is_temp_of(".manifest.json.6643.tmp", "cells.jsonl"));
        assert!(!is_temp_of(".manifest.json..tmp", "manifest.json"));
        assert!(!is_temp_of(".manifest.json.x1.tmp", "manifest.json"));
        assert!(!is_temp_of("manifest.json.6643.tmp", "manifest.json"));
        assert!(!is_temp_of(".manifest.json.6643", "manifest.json"));
    }

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
    fn a_directory_is_replaced_whole_or_not_at_all() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let out = dir.path().join("ckpt");
        write_dir_with(&out, |d| write_bytes(&d.join("a"), b"1"))?;
        write_dir_with(&out, |d| write_bytes(&d.join("b"), b"2"))?;
        let names = |p: &Path| -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(p)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        // The second build replaced the first whole: no `a` left beside `b`.
        assert_eq!(names(&out), vec!["b".to_string()]);
        // A failed build leaves the previous output and no staging directory.
        let failed = write_dir_with(&out, |d| {
            write_bytes(&d.join("c"), b"3")?;
            Err(Error::invalid("x", 1, "writer failed"))
        });
        assert!(failed.is_err());
        assert_eq!(names(&out), vec!["b".to_string()]);
        assert_eq!(names(dir.path()), vec!["ckpt".to_string()]);
        // A killed build's staging (a dead pid) is removed by the next build.
        let stale = dir.path().join(".ckpt.staging.999999999");
        std::fs::create_dir(&stale).map_err(|e| Error::io(&stale, e))?;
        write_dir_with(&out, |d| write_bytes(&d.join("d"), b"4"))?;
        assert_eq!(names(dir.path()), vec!["ckpt".to_string()]);
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
