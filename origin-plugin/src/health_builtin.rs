//! Built-in host checks: free disk space on a path ([`DiskSpaceCheck`]) and memory
//! headroom ([`MemoryCheck`]: the kernel's `MemAvailable`, bounded by the cgroup v2 limit
//! when the process runs in a container). The judging is pure (`judge_*`, `headroom`);
//! only `check()` reads the system. Usually added as warn-only checks: a full disk should
//! page someone without taking every replica out of the load balancer at once.

use std::path::PathBuf;

use super::{BoxFuture, HealthCheck};

/// Fails when the filesystem holding `path` has less than a minimum free space left.
#[derive(Debug, Clone)]
pub struct DiskSpaceCheck {
    name: String,
    path: PathBuf,
    min_free_bytes: u64,
    min_free_ratio: f64,
}

impl DiskSpaceCheck {
    /// Check named `disk` on `path`: at least 1 GiB and 5 % free by default.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            name: "disk".to_owned(),
            path: path.into(),
            min_free_bytes: 1 << 30,
            min_free_ratio: 0.05,
        }
    }
    /// Another name (several volumes).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
    /// Least free bytes (available to unprivileged users).
    pub fn min_free_bytes(mut self, bytes: u64) -> Self {
        self.min_free_bytes = bytes;
        self
    }
    /// Least free share of the filesystem, 0.0–1.0.
    pub fn min_free_ratio(mut self, ratio: f64) -> Self {
        self.min_free_ratio = ratio.clamp(0.0, 1.0);
        self
    }
}

/// Verdict on free space: `free` and `total` bytes against both minimums.
pub(crate) fn judge_disk(
    path: &str,
    free: u64,
    total: u64,
    min_bytes: u64,
    min_ratio: f64,
) -> Result<(), String> {
    let ratio = if total == 0 {
        1.0
    } else {
        free as f64 / total as f64
    };
    if free < min_bytes || ratio < min_ratio {
        return Err(format!(
            "{path}: {} MiB free of {} MiB ({:.1} %), below {} MiB or {:.1} %",
            free >> 20,
            total >> 20,
            ratio * 100.0,
            min_bytes >> 20,
            min_ratio * 100.0
        ));
    }
    Ok(())
}

/// Free (for unprivileged users) and total bytes of the filesystem holding `path`.
#[cfg(unix)]
fn statvfs(path: &std::path::Path) -> Result<(u64, u64), String> {
    let st = nix::sys::statvfs::statvfs(path)
        .map_err(|e| format!("{}: statvfs failed: {e}", path.display()))?;
    let frsize = st.fragment_size() as u64;
    Ok((
        (st.blocks_available() as u64).saturating_mul(frsize),
        (st.blocks() as u64).saturating_mul(frsize),
    ))
}

#[cfg(not(unix))]
fn statvfs(path: &std::path::Path) -> Result<(u64, u64), String> {
    Err(format!(
        "{}: disk space check is only supported on Unix",
        path.display()
    ))
}

impl HealthCheck for DiskSpaceCheck {
    fn name(&self) -> &str {
        &self.name
    }
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let path = self.path.clone();
            let (free, total) = tokio::task::spawn_blocking(move || statvfs(&path))
                .await
                .map_err(|e| e.to_string())??;
            judge_disk(
                &self.path.display().to_string(),
                free,
                total,
                self.min_free_bytes,
                self.min_free_ratio,
            )
        })
    }
}

/// Fails when less than a minimum of memory is left for the process: the smaller of the
/// kernel's `MemAvailable` and, in a cgroup v2 container, `memory.max − memory.current`.
#[derive(Debug, Clone)]
pub struct MemoryCheck {
    name: String,
    min_available_bytes: u64,
}

impl MemoryCheck {
    /// Check named `memory` with at least `min_available_bytes` left.
    pub fn new(min_available_bytes: u64) -> Self {
        Self {
            name: "memory".to_owned(),
            min_available_bytes,
        }
    }
    /// Another name.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

/// `MemAvailable` in bytes from the text of `/proc/meminfo`.
pub(crate) fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// Memory left: `MemAvailable`, bounded by the cgroup's limit less its usage when a
/// limit is set (`memory.max` is `max` when unlimited).
pub(crate) fn headroom(
    mem_available: Option<u64>,
    cgroup_max: Option<&str>,
    cgroup_current: Option<&str>,
) -> Option<u64> {
    let cgroup = match (cgroup_max.map(str::trim), cgroup_current.map(str::trim)) {
        (Some(max), Some(cur)) if max != "max" => {
            let max: u64 = max.parse().ok()?;
            let cur: u64 = cur.parse().ok()?;
            Some(max.saturating_sub(cur))
        }
        _ => None,
    };
    match (mem_available, cgroup) {
        (Some(a), Some(c)) => Some(a.min(c)),
        (a, c) => a.or(c),
    }
}

impl HealthCheck for MemoryCheck {
    fn name(&self) -> &str {
        &self.name
    }
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let read = |p: &str| std::fs::read_to_string(p).ok();
            let meminfo = read("/proc/meminfo");
            let left = headroom(
                meminfo.as_deref().and_then(mem_available),
                read("/sys/fs/cgroup/memory.max").as_deref(),
                read("/sys/fs/cgroup/memory.current").as_deref(),
            )
            .ok_or("cannot read available memory (/proc/meminfo, cgroup v2 memory.max)")?;
            if left < self.min_available_bytes {
                return Err(format!(
                    "{} MiB of memory available, below {} MiB",
                    left >> 20,
                    self.min_available_bytes >> 20
                ));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_verdict_needs_both_minimums() {
        let gib = 1u64 << 30;
        assert!(judge_disk("/", 10 * gib, 100 * gib, gib, 0.05).is_ok());
        assert!(judge_disk("/", gib / 2, 100 * gib, gib, 0.0).is_err());
        let e = judge_disk("/data", 2 * gib, 100 * gib, gib, 0.05)
            .err()
            .unwrap_or_default();
        assert!(e.contains("/data") && e.contains("2048 MiB free"), "{e}");
    }

    #[test]
    fn memory_headroom_is_the_tighter_of_host_and_cgroup() {
        let meminfo = "MemTotal:  16384000 kB\nMemFree: 100 kB\nMemAvailable:   8192000 kB\n";
        assert_eq!(mem_available(meminfo), Some(8_192_000 * 1024));
        assert_eq!(
            headroom(Some(8 << 30), Some("1073741824\n"), Some("536870912\n")),
            Some(512 << 20)
        );
        assert_eq!(
            headroom(Some(8 << 30), Some("max\n"), Some("5")),
            Some(8 << 30)
        );
        assert_eq!(headroom(None, None, None), None);
    }
}
