//! External solvers: any program that speaks masklab's block protocol joins the comparison.
//!
//! Problem: reference implementations in this field are Python; a solver should not have to be
//! ported to Rust to be compared with the built-ins.
//!
//! Protocol (one call per batch): masklab writes the `[B, M, M]` non-negative scores as a NumPy
//! `.npy` file (`<f4`, C order) and runs `COMMAND… SCORES.npy MASKS.npy N M` in the working
//! directory. The program writes `MASKS.npy`: shape `[B, M, M]`, dtype `|u1`, `|b1`, `<i8`,
//! `<i4`, `<f4` or `<f8`, every value 0 or 1, with at most N kept in every row and column of
//! every block; it exits 0. It may print, as the last line of its standard output, a JSON object
//! `{"seconds": S}` — its own solve time, reported beside masklab's round-trip time. Standard
//! error is passed through to the error message when the program fails.
//!
//! Guarantee: a program that exits non-zero, runs past its timeout (then it is killed), writes
//! no file, a malformed one, the wrong shape or dtype, or values other than 0/1 is an error
//! naming the program and what was wrong; feasibility and scores are checked by the caller like
//! any solver's ([`super::apply::solve_blocks`]). Cost: one write and one read of the batch
//! (5·B·M² bytes) and a process start, plus the program's own time.

use super::{Guarantee, SolveContext, Solver};
use crate::error::{Error, Result};
use crate::mask::Pattern;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A program declared as a solver.
pub struct External {
    name: String,
    command: Vec<String>,
    timeout: Duration,
    reported: Mutex<Option<f64>>,
}

impl std::fmt::Debug for External {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.command.join(" "))
    }
}

impl External {
    /// The program `command` as the solver `name`, killed after `timeout_seconds`.
    pub fn new(name: &str, command: &[String], timeout_seconds: f64) -> Result<Self> {
        if command.is_empty() {
            return Err(Error::invalid(
                "command",
                name,
                "an external solver needs a command",
            ));
        }
        if !(timeout_seconds > 0.0 && timeout_seconds.is_finite()) {
            return Err(Error::invalid(
                "timeout_seconds",
                timeout_seconds,
                "must be positive",
            ));
        }
        Ok(External {
            name: name.to_string(),
            command: command.to_vec(),
            timeout: Duration::from_secs_f64(timeout_seconds),
            reported: Mutex::new(None),
        })
    }

    /// The program's own seconds for the last call, when it printed them.
    pub fn reported_seconds(&self) -> Option<f64> {
        *self.reported.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fail(&self, what: impl std::fmt::Display) -> Error {
        Error::invalid(
            "external solver",
            format!("{} ({})", self.name, self.command.join(" ")),
            what,
        )
    }
}

/// Bytes of a version-1 `.npy` file holding `data` as `<f4` with `shape`.
fn npy_f32(data: &[f32], shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n', padded to a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// The 0/1 values of a `.npy` file, checked against `shape`; the error says what is wrong.
fn read_npy_mask(bytes: &[u8], shape: &[usize]) -> std::result::Result<Vec<u8>, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("the masks file is not a .npy file".into());
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = bytes
        .get(start..start + hlen)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("the .npy header is truncated")?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let descr = field("descr")
        .and_then(|r| r.strip_prefix('\'').and_then(|r| r.split('\'').next()))
        .ok_or("the .npy header has no descr")?;
    // Column-major writers (Julia, R, MATLAB, Fortran, numpy's order='F') are read too.
    let fortran = field("fortran_order").is_some_and(|r| r.starts_with("True"));
    let got: Vec<usize> = field("shape")
        .and_then(|r| r.strip_prefix('(').and_then(|r| r.split(')').next()))
        .ok_or("the .npy header has no shape")?
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad shape entry `{s}`"))
        })
        .collect::<std::result::Result<_, _>>()?;
    if got != shape {
        return Err(format!("masks have shape {got:?}, expected {shape:?}"));
    }
    let n: usize = shape.iter().product();
    let body = &bytes[start + hlen..];
    let size = match descr {
        "|u1" | "|b1" | "<u1" => 1,
        "<i4" | "<f4" => 4,
        "<i8" | "<f8" => 8,
        other => {
            return Err(format!(
                "masks have dtype `{other}`; use uint8, bool, int or float"
            ));
        }
    };
    if body.len() != n * size {
        return Err(format!(
            "masks hold {} bytes, expected {}",
            body.len(),
            n * size
        ));
    }
    let value = |c: &[u8]| -> f64 {
        match descr {
            "<i4" => i32::from_le_bytes(c.try_into().unwrap_or([0; 4])) as f64,
            "<f4" => f32::from_le_bytes(c.try_into().unwrap_or([0; 4])) as f64,
            "<i8" => i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f64,
            "<f8" => f64::from_le_bytes(c.try_into().unwrap_or([0; 8])),
            _ => c[0] as f64,
        }
    };
    let stored: Vec<u8> = body
        .chunks_exact(size)
        .enumerate()
        .map(|(i, c)| {
            let v = value(c);
            if v == 0.0 || v == 1.0 {
                Ok(v as u8)
            } else {
                Err(format!("mask value {v} at flat index {i}; masks are 0/1"))
            }
        })
        .collect::<std::result::Result<_, _>>()?;
    Ok(if fortran {
        c_order_of_fortran(&stored, shape)
    } else {
        stored
    })
}

/// Values stored column-major (first index fastest) for `shape`, in row-major order.
fn c_order_of_fortran(stored: &[u8], shape: &[usize]) -> Vec<u8> {
    let mut out = Vec::with_capacity(stored.len());
    let mut index = vec![0usize; shape.len()];
    for _ in 0..stored.len() {
        // Fortran offset of the current (row-major) multi-index.
        let mut offset = 0;
        for d in (0..shape.len()).rev() {
            offset = offset * shape[d] + index[d];
        }
        out.push(stored[offset]);
        // Next multi-index in row-major order (last index fastest).
        for d in (0..shape.len()).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    out
}

impl Solver for External {
    fn name(&self) -> &str {
        &self.name
    }
    fn summary(&self) -> &'static str {
        "an external program speaking the .npy block protocol"
    }
    fn guarantee(&self) -> Guarantee {
        Guarantee::Heuristic
    }
    fn solve(&self, blocks: &[f32], pattern: Pattern, _ctx: &SolveContext) -> Result<Vec<u8>> {
        let mm = pattern.m * pattern.m;
        let b = blocks.len() / mm.max(1);
        let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
        let (scores, masks) = (dir.path().join("scores.npy"), dir.path().join("masks.npy"));
        let shape = [b, pattern.m, pattern.m];
        std::fs::write(&scores, npy_f32(blocks, &shape)).map_err(|e| Error::io(&scores, e))?;
        let out = run(self, &scores, &masks, pattern)?;
        let reported = out
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .and_then(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
            .and_then(|v| v.get("seconds").and_then(|s| s.as_f64()));
        *self.reported.lock().unwrap_or_else(|p| p.into_inner()) = reported;
        let bytes = std::fs::read(&masks)
            .map_err(|_| self.fail("exited 0 but wrote no masks file (the second argument)"))?;
        read_npy_mask(&bytes, &shape).map_err(|e| self.fail(e))
    }
}

/// Run the program to completion or its timeout; its standard output.
fn run(s: &External, scores: &Path, masks: &Path, pattern: Pattern) -> Result<String> {
    let mut child = Command::new(&s.command[0])
        .args(&s.command[1..])
        .arg(scores)
        .arg(masks)
        .arg(pattern.n.to_string())
        .arg(pattern.m.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| s.fail(format!("cannot start: {e}")))?;
    // Drain both pipes on their own threads so a chatty program cannot block on a full pipe.
    let drain = |p: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = String::new();
            if let Some(mut p) = p {
                let _ = p.read_to_string(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > s.timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(s.fail(format!(
                    "ran past its timeout of {:.1} s and was killed",
                    s.timeout.as_secs_f64()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(s.fail(format!("cannot wait for it: {e}"))),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if !status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(s.fail(format!("exited with {status}: {}", tail.join(" | "))));
    }
    Ok(stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into(), "sh".into()]
    }

    /// Issue 21 R16: a valid column-major `.npy` (Julia, R, MATLAB, numpy order='F') was
    /// refused ("masks must be in C order"); it is read and reordered.
    #[test]
    fn fortran_order_masks_are_read_in_row_major_order() {
        // A [2, 2, 3] array whose row-major values are 0..12 mod 2, written column-major.
        let shape = [2usize, 2, 3];
        let c: Vec<u8> = (0..12).map(|i| ((i * 7) % 5 % 2) as u8).collect();
        let mut f = vec![0u8; 12];
        for i0 in 0..2 {
            for i1 in 0..2 {
                for i2 in 0..3 {
                    f[i0 + 2 * (i1 + 2 * i2)] = c[(i0 * 2 + i1) * 3 + i2];
                }
            }
        }
        let header = "{'descr': '|u1', 'fortran_order': True, 'shape': (2, 2, 3), }";
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(header.as_bytes());
        bytes.extend(&f);
        assert_ne!(f, c, "the two orders differ for this array");
        assert_eq!(read_npy_mask(&bytes, &shape).unwrap(), c);
    }

    #[test]
    fn npy_round_trip_and_header_alignment() {
        let bytes = npy_f32(&[0.0, 1.0, 1.0, 0.0], &[1, 2, 2]);
        assert_eq!((bytes.len() - 16) % 64, 0);
        // The f32 file read back as a mask (values 0/1 only).
        assert_eq!(read_npy_mask(&bytes, &[1, 2, 2]).unwrap(), vec![0, 1, 1, 0]);
        assert!(
            read_npy_mask(&bytes, &[2, 2, 1])
                .unwrap_err()
                .contains("shape")
        );
        let half = npy_f32(&[0.5, 1.0, 1.0, 0.0], &[1, 2, 2]);
        assert!(
            read_npy_mask(&half, &[1, 2, 2])
                .unwrap_err()
                .contains("0.5")
        );
        assert!(read_npy_mask(b"junk", &[1]).is_err());
    }

    #[test]
    fn failures_name_the_program_and_what_went_wrong() {
        let p: Pattern = "2:4".parse().unwrap();
        let blocks = vec![2.0f32; 32];
        let ctx = SolveContext::default();
        let cases = [
            (
                "fails-exit",
                sh("echo broken >&2; exit 3"),
                5.0,
                "exit status: 3",
            ),
            ("fails-nofile", sh("true"), 5.0, "wrote no masks file"),
            ("fails-slow", sh("sleep 5"), 0.2, "timeout"),
            ("fails-shape", sh("cp \"$1\" \"$2\""), 5.0, "mask value"),
        ];
        let mut catalogue = super::super::Catalogue::default();
        for (name, cmd, timeout, want) in cases {
            catalogue.declare(name, &cmd, timeout).unwrap();
            let s = catalogue.get(name).unwrap();
            let e = s.solve(&blocks, p, &ctx).unwrap_err().to_string();
            assert!(e.contains(name) && e.contains(want), "{name}: {e}");
        }
        // The broken program's stderr reaches the message.
        let e = catalogue
            .get("fails-exit")
            .unwrap()
            .solve(&blocks, p, &ctx)
            .unwrap_err();
        assert!(e.to_string().contains("broken"));
        // A built-in's name, a name declared twice, an empty command and a bad timeout are
        // refused, naming what was wrong.
        let refused = |name: &str, cmd: &[String], t: f64| {
            catalogue
                .clone()
                .declare(name, cmd, t)
                .unwrap_err()
                .to_string()
        };
        assert!(refused("exact", &sh("true"), 1.0).contains("built-in"));
        assert!(refused("fails-exit", &sh("false"), 1.0).contains("declared twice"));
        assert!(refused("new", &[], 1.0).contains("needs a command"));
        assert!(refused("new", &sh("true"), 0.0).contains("timeout_seconds"));
        // Another catalogue does not know them: nothing is process-wide.
        assert!(super::super::by_name("fails-exit").is_err());
    }
}
