//! The data directory's process lock, `exai.lock`. Every exai process that opens the databases
//! (server, daemon, index, search, `db` commands, validate…) holds it shared for its whole life;
//! `exai db restore` takes it exclusively, so a database is never replaced under a process that
//! would go on writing to the file it had open. The pid file only knows about the daemon; this
//! lock knows about every process, including the `exai serve` each MCP client starts.
//!
//! It is an advisory `flock` (std's `File::lock_shared` / `try_lock`), released by the kernel
//! when the process ends however it ends, so a crash never leaves a stale lock behind. The file
//! holds the pid of the last process that took it, which names the holder in messages where
//! `/proc/locks` cannot.

use std::fs::{File, TryLockError};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::private;

pub const LOCK_FILE: &str = "exai.lock";

/// How often a shared taker looks again while a restore holds the lock.
const POLL: Duration = Duration::from_millis(50);

/// A held lock; dropping it (or ending the process) releases it.
#[derive(Debug)]
pub struct DataLock {
    _file: File,
    path: PathBuf,
    exclusive: bool,
}

/// A process holding the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// Its command line (`exai serve`), when the system tells.
    pub command: Option<String>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.command {
            Some(c) => write!(f, "pid {}: {c}", self.pid),
            None => write!(f, "pid {}", self.pid),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot use the lock file {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}", in_use_message(dir, holders))]
    InUse { dir: PathBuf, holders: Vec<Holder> },
    #[error(
        "`exai db restore`{} is replacing the databases in {}; run this again when it has finished",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        dir.display()
    )]
    Restoring { dir: PathBuf, pid: Option<u32> },
}

fn in_use_message(dir: &Path, holders: &[Holder]) -> String {
    let who = match holders {
        [] => "an exai process has".to_string(),
        [one] => format!("an exai process ({one}) has"),
        many => format!(
            "exai processes ({}) have",
            many.iter()
                .map(Holder::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ),
    };
    let daemon = holders
        .iter()
        .any(|h| h.command.as_deref().is_some_and(|c| c.contains(" daemon")));
    format!(
        "{who} the databases in {} open; stop {} first{}",
        dir.display(),
        if holders.len() > 1 { "them" } else { "it" },
        if daemon {
            " (`exai daemon stop` for the daemon; an `exai serve` ends with the MCP client that started it)"
        } else {
            " (an `exai serve` ends with the MCP client that started it)"
        }
    )
}

impl DataLock {
    /// Hold the lock shared, as every process that opens the databases does. While a restore
    /// holds it, wait up to `wait` for the restore to finish.
    pub fn shared(data_dir: &Path, wait: Duration) -> Result<Self, LockError> {
        let (file, path) = open(data_dir)?;
        let deadline = Instant::now() + wait;
        loop {
            match file.try_lock_shared() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(POLL);
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(LockError::Restoring {
                        dir: data_dir.to_path_buf(),
                        pid: recorded_pid(&file),
                    });
                }
                Err(TryLockError::Error(source)) => return Err(LockError::Io { path, source }),
            }
        }
        record_pid(&file);
        Ok(Self {
            _file: file,
            path,
            exclusive: false,
        })
    }

    /// Hold the lock exclusively (`exai db restore`); refuses at once, naming the processes
    /// that hold it, when any does.
    pub fn exclusive(data_dir: &Path) -> Result<Self, LockError> {
        let (file, path) = open(data_dir)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holders = holders(&file);
                if holders.is_empty()
                    && let Some(pid) = recorded_pid(&file)
                {
                    holders.push(Holder {
                        pid,
                        command: command_line(pid),
                    });
                }
                return Err(LockError::InUse {
                    dir: data_dir.to_path_buf(),
                    holders,
                });
            }
            Err(TryLockError::Error(source)) => return Err(LockError::Io { path, source }),
        }
        record_pid(&file);
        Ok(Self {
            _file: file,
            path,
            exclusive: true,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }
}

/// The lock file, created 0600 in a 0700 data directory. A data directory this process may
/// not write still gets a shared lock through a read-only handle, if the file exists.
fn open(data_dir: &Path) -> Result<(File, PathBuf), LockError> {
    let path = data_dir.join(LOCK_FILE);
    let err = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    let writable = private::create_dir_all(data_dir).and_then(|()| {
        private::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
    });
    let file = match writable {
        Ok(file) => file,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            File::open(&path).map_err(|_| err(e))?
        }
        Err(e) => return Err(err(e)),
    };
    Ok((file, path))
}

/// Best effort: a read-only handle or a full disk only cost the holder's name in messages.
fn record_pid(file: &File) {
    let line = format!("{:<10}\n", std::process::id());
    let _ = file.write_at(line.as_bytes(), 0);
}

fn recorded_pid(file: &File) -> Option<u32> {
    let mut buf = [0u8; 32];
    let n = file.read_at(&mut buf, 0).ok()?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// The processes holding a lock on `file`, from Linux's `/proc/locks` (empty elsewhere).
fn holders(file: &File) -> Vec<Holder> {
    let Ok(meta) = file.metadata() else {
        return Vec::new();
    };
    let Ok(table) = std::fs::read_to_string("/proc/locks") else {
        return Vec::new();
    };
    let mut pids = lock_holders(&table, meta.dev(), meta.ino());
    pids.sort_unstable();
    pids.dedup();
    pids.into_iter()
        .map(|pid| Holder {
            pid,
            command: command_line(pid),
        })
        .collect()
}

/// Pids in a `/proc/locks` table that hold (not wait for) a lock on the inode `ino` of device
/// `dev`. Lines look like `3: FLOCK  ADVISORY  READ 3160 fe:00:10133507 0 EOF`; waiters carry
/// a `->` before the type.
fn lock_holders(table: &str, dev: u64, ino: u64) -> Vec<u32> {
    let (major, minor) = (
        ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff),
        ((dev >> 12) & 0xffff_ff00) | (dev & 0xff),
    );
    let mut same_inode = Vec::new();
    let mut exact = Vec::new();
    for line in table.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) == Some(&"->") || fields.len() < 6 {
            continue;
        }
        let (Ok(pid), Some(id)) = (fields[4].parse::<u32>(), fields.get(5)) else {
            continue;
        };
        let mut parts = id.split(':');
        let (Some(maj), Some(min), Some(inode)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if inode.parse::<u64>().ok() != Some(ino) {
            continue;
        }
        same_inode.push(pid);
        if u64::from_str_radix(maj, 16).ok() == Some(major)
            && u64::from_str_radix(min, 16).ok() == Some(minor)
        {
            exact.push(pid);
        }
    }
    // Overlay file systems report a different device in stat than in /proc/locks.
    if exact.is_empty() { same_inode } else { exact }
}

/// `exai serve`, from `/proc/PID/cmdline` with the program's directory left out.
fn command_line(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let mut args = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned());
    let program = args.next()?;
    let program = Path::new(&program)
        .file_name()
        .map_or(program.clone(), |n| n.to_string_lossy().into_owned());
    let mut line = std::iter::once(program)
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ");
    if line.chars().count() > 120 {
        line = line.chars().take(117).collect::<String>() + "...";
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_locks_coexist_and_exclude_a_restore() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let a = DataLock::shared(&dir, Duration::ZERO).unwrap();
        let b = DataLock::shared(&dir, Duration::ZERO).unwrap();
        assert!(!a.is_exclusive());
        assert_eq!(private::mode(&dir).unwrap(), 0o700);
        assert_eq!(private::mode(a.path()).unwrap(), 0o600);

        let err = DataLock::exclusive(&dir).unwrap_err();
        let LockError::InUse { holders, .. } = &err else {
            panic!("{err:?}")
        };
        // This process holds both shared locks; on Linux /proc/locks names it.
        let me = std::process::id();
        assert_eq!(holders.iter().map(|h| h.pid).collect::<Vec<_>>(), [me]);
        let text = err.to_string();
        assert!(
            text.contains(&format!("an exai process (pid {me}"))
                && text.contains("has the databases in")
                && text.contains("stop it first"),
            "{text}"
        );

        drop(a);
        assert!(DataLock::exclusive(&dir).is_err(), "b still holds it");
        drop(b);
        let restore = DataLock::exclusive(&dir).unwrap();
        assert!(restore.is_exclusive());

        let started = Instant::now();
        let err = DataLock::shared(&dir, Duration::from_millis(200)).unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(
            matches!(err, LockError::Restoring { pid: Some(p), .. } if p == me),
            "{err:?}"
        );
        assert!(err.to_string().contains("`exai db restore`"), "{err}");
        drop(restore);
        DataLock::shared(&dir, Duration::ZERO).unwrap();
    }

    #[test]
    fn a_shared_taker_waits_for_the_restore_to_end() {
        let tmp = tempfile::tempdir().unwrap();
        let restore = DataLock::exclusive(tmp.path()).unwrap();
        let dir = tmp.path().to_path_buf();
        let waiter =
            std::thread::spawn(move || DataLock::shared(&dir, Duration::from_secs(10)).is_ok());
        std::thread::sleep(Duration::from_millis(150));
        drop(restore);
        assert!(waiter.join().unwrap());
    }

    #[test]
    fn proc_locks_lines() {
        let table = "1: FLOCK  ADVISORY  WRITE 3840 fe:00:5309166 0 EOF\n\
                     2: FLOCK  ADVISORY  READ 3841 fe:00:77 0 EOF\n\
                     3: -> FLOCK  ADVISORY  WRITE 3842 fe:00:77 0 EOF\n\
                     4: FLOCK  ADVISORY  READ 3843 fe:00:77 0 EOF\n\
                     5: FLOCK  ADVISORY  READ 3844 08:01:77 0 EOF\n\
                     garbage\n";
        // st_dev 0xfe00 is major 0xfe, minor 0.
        assert_eq!(lock_holders(table, 0xfe00, 77), [3841, 3843]);
        // No line on the stat device (overlay): every holder of the inode.
        assert_eq!(lock_holders(table, 0x0900, 77), [3841, 3843, 3844]);
        assert!(lock_holders(table, 0xfe00, 78).is_empty());
    }

    #[test]
    fn message_names_every_holder_and_the_daemon_remedy() {
        let holders = vec![
            Holder {
                pid: 10,
                command: Some("exai serve".into()),
            },
            Holder {
                pid: 11,
                command: Some("exai daemon --listen 127.0.0.1:8079".into()),
            },
        ];
        let text = in_use_message(Path::new("/d"), &holders);
        assert!(
            text.starts_with("exai processes (pid 10: exai serve; pid 11: exai daemon")
                && text.contains("stop them first")
                && text.contains("`exai daemon stop`"),
            "{text}"
        );
    }
}
