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
}
