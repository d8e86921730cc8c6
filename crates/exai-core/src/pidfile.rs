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
