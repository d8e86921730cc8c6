//! The daemon's pid file and whether the process it names still lives. The daemon writes it;
//! `exai daemon status|stop`, the shim and the operations toolkit (health, clearing a dead
//! process's leftovers) read it, so it lives here, below all of them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use nix::sys::signal;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// What the pid file says about a running daemon.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PidRecord {
    pub pid: u32,
    pub listen: String,
    pub started_at: String,
    pub version: String,
}

/// The pid file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("pid file {}: {reason}", path.display())]
pub struct PidFileError {
    pub path: PathBuf,
    pub reason: String,
}

/// Read the pid file; `Ok(None)` when there is none.
pub fn read_pid(path: &Path) -> Result<Option<PidRecord>, PidFileError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| PidFileError {
                path: path.to_path_buf(),
                reason: format!("unreadable ({e}); remove it if no daemon runs"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PidFileError {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

/// Write the pid file atomically (a temporary file renamed over it), private to the user.
pub fn write_pid(path: &Path, record: &PidRecord) -> Result<(), PidFileError> {
    let err = |e: std::io::Error| PidFileError {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    if let Some(dir) = path.parent() {
        crate::private::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("pid.tmp");
    let text = serde_json::to_string(record).unwrap_or_default();
    crate::private::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Entries of `dir` named `.{prefix}…{.PID}{suffix}`, the temporary name a process gives work in
/// progress, whose process is gone: what a killed run left behind. Removing them is the caller's
/// choice (a file or a directory).
pub fn abandoned(dir: &Path, prefix: &str, suffix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix('.'))
                .and_then(|n| n.strip_prefix(prefix))
                .and_then(|n| n.strip_suffix(suffix))
                .and_then(|n| n.rsplit_once('.'))
                .and_then(|(_, pid)| pid.parse::<u32>().ok())
                .is_some_and(|pid| !alive(pid))
        })
        .collect()
}

/// Whether a process with this pid exists (signal 0 probes without sending anything).
pub fn alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    match signal::kill(Pid::from_raw(raw), None) {
        Ok(()) => !is_zombie(pid),
        Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('Z')))
        .unwrap_or(false)
}

/// The live daemon's record, removing a stale pid file on the way.
pub fn running(path: &Path) -> Result<Option<PidRecord>, PidFileError> {
    match read_pid(path)? {
        Some(record) if alive(record.pid) => Ok(Some(record)),
        Some(record) => {
            tracing::warn!(
                pid = record.pid,
                "removing stale pid file {}",
                path.display()
            );
            let _ = std::fs::remove_file(path);
            Ok(None)
        }
        None => Ok(None),
    }
}

/// `http://ADDR` for a listen address (IPv6 in brackets; an unspecified IP → loopback).
pub fn base_url(listen: &str) -> String {
    match listen.parse::<SocketAddr>() {
        Ok(addr) if addr.ip().is_unspecified() => {
            let ip = if addr.is_ipv6() { "[::1]" } else { "127.0.0.1" };
            format!("http://{ip}:{}", addr.port())
        }
        Ok(addr) => format!("http://{addr}"),
        Err(_) => format!("http://{listen}"),
    }
}

/// What the process a pid record names turns out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Identity {
    /// An exai daemon started no later than the record: safe to signal.
    Daemon,
    /// Another program, or an exai started after the record was written: the pid was given
    /// to a new process after the daemon ended. Never signalled; the text says what it is.
    Other(String),
    /// Nothing could be read about the process (no `/proc`, no `ps`).
    Unknown(String),
}

/// Whether `record`'s pid is still the daemon that wrote it, so that a pid the kernel has since
/// handed to another process is never signalled: the command line must be an exai binary
/// running `daemon` in the foreground, and the process must have started before the record
/// was written.
pub fn identify(record: &PidRecord) -> Identity {
    let Some(args) = command_line(record.pid) else {
        return Identity::Unknown(format!(
            "cannot read pid {}'s command line (`ps -p {0} -o args=` shows it)",
            record.pid
        ));
    };
    let shown = args.join(" ");
    if !is_foreground_daemon(&args) {
        return Identity::Other(format!("pid {} runs `{shown}`", record.pid));
    }
    let recorded = chrono::DateTime::parse_from_rfc3339(&record.started_at).ok();
    if let (Some(started), Some(recorded)) = (process_start(record.pid), recorded) {
        // The daemon writes its record after it starts; clock steps and tick rounding get a
        // few seconds' slack.
        let slack = chrono::Duration::seconds(5);
        if started > recorded.with_timezone(&chrono::Utc) + slack {
            return Identity::Other(format!(
                "pid {} runs `{shown}` but started at {}, after the daemon that wrote the pid file ({})",
                record.pid,
                started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                record.started_at
            ));
        }
    }
    Identity::Daemon
}

/// `exai [global options] daemon [--listen ADDR]`: an exai binary (its file name starts with
/// `exai`, as `exai.previous` after an upgrade does) whose only subcommand is `daemon`.
fn is_foreground_daemon(args: &[String]) -> bool {
    let Some(program) = args.first() else {
        return false;
    };
    let name = Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.starts_with("exai") {
        return false;
    }
    let mut words = Vec::new();
    let mut rest = args[1..].iter();
    while let Some(arg) = rest.next() {
        if matches!(arg.as_str(), "--config" | "--env-file" | "--listen") {
            rest.next();
        } else if !arg.starts_with('-') {
            words.push(arg.as_str());
        }
    }
    words == ["daemon"]
}

#[cfg(target_os = "linux")]
fn command_line(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    (!args.is_empty()).then_some(args)
}

/// Elsewhere `ps` prints the arguments joined by spaces: a path with a space in it splits, which
/// only makes the check stricter.
#[cfg(not(target_os = "linux"))]
fn command_line(pid: u32) -> Option<Vec<String>> {
    let out = std::process::Command::new("ps")
        .args(["-p", &pid.to_string(), "-o", "args="])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let args: Vec<String> = text.split_whitespace().map(str::to_string).collect();
    (out.status.success() && !args.is_empty()).then_some(args)
}

/// When the process started: boot time plus its start in clock ticks since boot.
#[cfg(target_os = "linux")]
fn process_start(pid: u32) -> Option<chrono::DateTime<chrono::Utc>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces and parentheses; the start time is
    // field 22 of the whole line, the 20th after the name.
    let (_, rest) = stat.rsplit_once(") ")?;
    let ticks: u64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let boot: i64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let per_sec = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|t| *t > 0)?;
    let millis = i64::try_from(ticks.saturating_mul(1000) / per_sec).ok()?;
    chrono::DateTime::from_timestamp_millis(boot.saturating_mul(1000).saturating_add(millis))
}

#[cfg(not(target_os = "linux"))]
fn process_start(_pid: u32) -> Option<chrono::DateTime<chrono::Utc>> {
    None
}

#[cfg(test)]
mod identity_tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn only_a_foreground_daemon_counts() {
        assert!(is_foreground_daemon(&args("/usr/local/bin/exai daemon")));
        assert!(is_foreground_daemon(&args(
            "/opt/exai.previous --config /etc/exai.toml daemon --listen 127.0.0.1:8079"
        )));
        assert!(!is_foreground_daemon(&args("/usr/bin/exai daemon stop")));
        assert!(!is_foreground_daemon(&args("/usr/bin/exai serve")));
        assert!(!is_foreground_daemon(&args("/bin/sleep daemon")));
        assert!(!is_foreground_daemon(&args("python3 -m exai daemon")));
    }

    #[test]
    fn this_test_process_is_not_a_daemon_and_a_later_start_is_refused() {
        let me = PidRecord {
            pid: std::process::id(),
            listen: "127.0.0.1:1".into(),
            started_at: "2000-01-01T00:00:00Z".into(),
            version: "0".into(),
        };
        assert!(
            matches!(identify(&me), Identity::Other(_)),
            "{:?}",
            identify(&me)
        );
        let started = process_start(std::process::id());
        if cfg!(target_os = "linux") {
            let started = started.expect("/proc gives the start time");
            let now = chrono::Utc::now();
            assert!(
                started <= now && started > now - chrono::Duration::hours(1),
                "{started}"
            );
        }
    }
}
