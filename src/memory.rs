//! Process memory as the OS reports it: peak resident set size (`VmHWM` in `/proc/self/status`)
//! and its reset (`/proc/self/clear_refs`), for the `peak_rss_mb` column of training reports.
//!
//! Linux only; elsewhere the peak is `None` and the reset does nothing. The peak is the
//! process's, so cells that run in parallel in one process share it.
//!
//! [`keep_freed_memory`] tunes glibc's allocator for training: a step frees and reallocates the
//! same tensors (up to tens of MB each) every step, and by default glibc hands such blocks back
//! to the OS (`mmap`/`munmap`, heap trimming), so every step pays page faults and page clearing
//! again (a fifth of a LeNet step, measured with perf). Kept, they are reused; the resident size
//! stays at the peak of one step instead of returning to the OS between steps.
//!
//! [`ensure_fits`] is the guard every size a user gives passes before anything is allocated:
//! the bytes a command will need against what the machine has available (`MemAvailable`), so an
//! impossible size is one line naming it instead of an allocation failure (exit 134) or swap.

use crate::error::{Error, Result};

/// Ask for transparent huge pages over a large, not yet touched buffer (Linux `madvise`; a
/// hint, ignored where unsupported). Filling 256 MiB in 4 KiB pages takes 65 536 page faults.
pub fn advise_huge_pages<T>(buf: &mut [T]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = buf.as_mut_ptr() as usize;
        let end = start + std::mem::size_of_val(buf);
        let first = start.div_ceil(HUGE) * HUGE;
        let last = end / HUGE * HUGE;
        if last > first {
            // SAFETY: the range lies inside `buf`, which this call borrows mutably; MADV_HUGEPAGE
            // changes how pages are backed, never their contents.
            unsafe {
                libc::madvise(
                    first as *mut libc::c_void,
                    last - first,
                    libc::MADV_HUGEPAGE,
                );
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buf;
}

/// Bytes of memory available for new allocations (`MemAvailable` in `/proc/meminfo`), or
/// `None` if the OS does not say.
pub fn available_bytes() -> Option<u128> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u128 = line["MemAvailable:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Refuse work that needs more than the available memory: `bytes` is what the work will hold
/// at once, `field` and `value` name the input that asks for it (e.g. `--size`, `8x8`). Where
/// the OS does not say what is available, nothing is refused.
pub fn ensure_fits(bytes: u128, field: &str, value: impl std::fmt::Display) -> Result<()> {
    let Some(avail) = available_bytes() else {
        return Ok(());
    };
    if bytes <= avail {
        return Ok(());
    }
    let gib = |b: u128| b as f64 / (1u128 << 30) as f64;
    Err(Error::invalid(
        field,
        value,
        format!(
            "needs about {:.1} GiB of memory, but {:.1} GiB is available",
            gib(bytes),
            gib(avail)
        ),
    ))
}

/// Peak resident set size of this process in MB (10⁶ bytes), or `None` if the OS does not say.
pub fn peak_rss_mb() -> Option<f64> {
    status_kb("VmHWM:").map(|kb| kb as f64 * 1024.0 / 1e6)
}

/// Current resident set size of this process in MB, or `None` if the OS does not say.
pub fn rss_mb() -> Option<f64> {
    status_kb("VmRSS:").map(|kb| kb as f64 * 1024.0 / 1e6)
}

/// Reset the peak to the current resident size (Linux ≥ 4.0); `false` if that is not possible.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Hand the heap's free memory back to the OS (glibc's `malloc_trim`; elsewhere nothing), so that
/// the resident size counts live memory only: what [`keep_freed_memory`] keeps for one cell's reuse
/// would otherwise stay in the next cell's peak.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the heap to the OS; live blocks are untouched.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Keep freed blocks of up to 32 MiB in the heap for reuse instead of returning them to the OS
/// (glibc on Linux; elsewhere nothing). Call once, at start-up, before the work allocates.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before other threads
    // allocate, and a rejected value leaves the default in place.
    unsafe {
        // 32 MiB is the largest mmap threshold glibc accepts on 64-bit targets.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}

fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_is_at_least_the_current_size() {
        // Current first: the peak, read after, is at least any size the process had before.
        // (That the peak follows a touched allocation is checked in tests/memory.rs, where no
        // other test runs beside it.)
        let (Some(now), Some(peak)) = (rss_mb(), peak_rss_mb()) else {
            return; // not Linux: nothing to read
        };
        assert!(peak >= now, "peak {peak} < current {now}");
    }

    #[test]
    fn sizes_beyond_the_machine_are_refused_naming_the_field() {
        let Some(avail) = available_bytes() else {
            return; // not Linux: nothing is refused
        };
        assert!(ensure_fits(1 << 20, "--size", "512x512").is_ok());
        let e = ensure_fits(avail * 2, "--size", "1000000x1000000")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--size") && e.contains("1000000x1000000") && e.contains("GiB"),
            "{e}"
        );
    }
}
