//! Readings of this process and its host. CPU time (`getrusage`), the file descriptor limit
//! (`getrlimit`) and free disk (`statvfs`) come from POSIX calls and work on Linux and macOS.
//! Resident memory, open descriptors and the host's memory come from `/proc` on Linux; on macOS
//! open descriptors are counted in `/dev/fd`, and resident memory and the host's memory are not
//! read (they need Mach calls that safe Rust does not offer): those readings are `None` and
//! [`UNAVAILABLE`] says so.

use std::path::Path;

/// What this platform does not measure, for reports; `None` where everything is read.
pub const UNAVAILABLE: Option<&str> = if cfg!(target_os = "linux") {
    None
} else {
    Some(
        "resident memory and the host's memory are read from /proc on Linux only; on this system they are not recorded",
    )
};

/// This process now.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Process {
    pub rss_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
    pub open_fds: Option<u64>,
    /// The soft limit on open descriptors; `None` when unlimited.
    pub max_fds: Option<u64>,
}

pub fn this_process() -> Process {
    Process {
        rss_bytes: rss_bytes(),
        cpu_seconds: cpu_seconds(),
        open_fds: open_fds(),
        max_fds: max_fds(),
    }
}

fn rss_bytes() -> Option<u64> {
    if cfg!(target_os = "linux") {
        crate::health::rss_bytes(std::process::id())
    } else {
        None
    }
}

fn cpu_seconds() -> Option<f64> {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Some(secs(usage.user_time()) + secs(usage.system_time()))
}

fn open_fds() -> Option<u64> {
    let dir = if cfg!(target_os = "linux") {
        "/proc/self/fd"
    } else {
        "/dev/fd"
    };
    // Listing the directory opens one descriptor, which the listing shows too.
    let listed = std::fs::read_dir(dir).ok()?.count() as u64;
    Some(listed.saturating_sub(1))
}

fn max_fds() -> Option<u64> {
    use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit};
    let (soft, _hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    (soft != RLIM_INFINITY).then_some(soft)
}

/// The host's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostMemory {
    pub total_bytes: u64,
    /// What the kernel estimates can be had without swapping (`MemAvailable`).
    pub available_bytes: u64,
}

impl HostMemory {
    pub fn used_percent(&self) -> f64 {
        if self.total_bytes == 0 {
            return 0.0;
        }
        self.total_bytes.saturating_sub(self.available_bytes) as f64 * 100.0
            / self.total_bytes as f64
    }
}

/// The host's memory from `/proc/meminfo` (Linux); `None` elsewhere or when unreadable.
pub fn host_memory() -> Option<HostMemory> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo(&text)
}

fn parse_meminfo(text: &str) -> Option<HostMemory> {
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line[name.len()..]
            .trim_start_matches(':')
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(kib * 1024)
    };
    Some(HostMemory {
        total_bytes: field("MemTotal")?,
        available_bytes: field("MemAvailable")?,
    })
}

/// The file system holding a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disk {
    /// Available to this (unprivileged) user.
    pub free_bytes: u64,
    pub total_bytes: u64,
}

impl Disk {
    pub fn used_percent(&self) -> f64 {
        if self.total_bytes == 0 {
            return 0.0;
        }
        self.total_bytes.saturating_sub(self.free_bytes) as f64 * 100.0 / self.total_bytes as f64
    }
}

/// The file system of `path`, or of `/` while `path` does not exist yet.
pub fn disk(path: &Path) -> Option<Disk> {
    let probe = if path.exists() { path } else { Path::new("/") };
    let s = nix::sys::statvfs::statvfs(probe).ok()?;
    let block = s.fragment_size();
    Some(Disk {
        free_bytes: s.blocks_available().saturating_mul(block),
        total_bytes: s.blocks().saturating_mul(block),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_fields_are_read_in_kib() {
        let text = "MemTotal:       16303092 kB\nMemFree:         1234567 kB\nMemAvailable:    8151546 kB\n";
        let m = parse_meminfo(text).unwrap();
        assert_eq!(m.total_bytes, 16303092 * 1024);
        assert_eq!(m.available_bytes, 8151546 * 1024);
        assert!((m.used_percent() - 50.0).abs() < 0.01);
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn this_process_reads_what_the_platform_offers() {
        let p = this_process();
        assert!(p.cpu_seconds.is_some_and(|s| s >= 0.0));
        assert!(p.open_fds.is_some_and(|n| n >= 1), "{p:?}");
        if cfg!(target_os = "linux") {
            assert!(p.rss_bytes.is_some_and(|b| b > 1 << 20), "{p:?}");
            assert!(host_memory().is_some_and(|h| h.total_bytes > 0));
        }
        let d = disk(Path::new("/")).unwrap();
        assert!(d.total_bytes >= d.free_bytes && d.total_bytes > 0);
    }
}
