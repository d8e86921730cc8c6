//! The file side of `exai upgrade`: asking a binary what it is, running its commands, and
//! replacing the installed binary with the previous one kept beside it as `<name>.previous`,
//! so that either can be put back with one atomic rename. (The daemon side, stopping and
//! starting it and judging its health, is the command's: crates/exai/src/upgrade_cli.rs.)

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("{0}")]
    Refused(String),
    #[error("{step}: {}: {source}", path.display())]
    Io {
        step: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(step: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> UpgradeError {
    let path = path.to_path_buf();
    move |source| UpgradeError::Io { step, path, source }
}

/// The installed binary and where its predecessor is kept.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub current: PathBuf,
    pub previous: PathBuf,
}

impl Binaries {
    /// `current` and `<current>.previous` beside it.
    pub fn of(current: &Path) -> Binaries {
        let mut name = current
            .file_name()
            .unwrap_or_else(|| OsStr::new("exai"))
            .to_os_string();
        name.push(".previous");
        Binaries {
            current: current.to_path_buf(),
            previous: current.with_file_name(name),
        }
    }

    /// A name beside the binary for a file this process stages (same directory, so a rename
    /// moves it without copying).
    fn beside(&self, what: &str) -> PathBuf {
        let name = self
            .current
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "exai".into());
        self.current
            .with_file_name(format!(".{name}.{what}-{}", std::process::id()))
    }
}

/// What a command printed and how it ended.
#[derive(Debug, Clone)]
pub struct Output {
    /// The exit code; `None` when a signal ended it or it was killed at the time limit.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// How it ended, for a message: `exit 1`, `killed after 60 s`, …
    pub fn ending(&self, limit: Duration) -> String {
        match (self.code, self.timed_out) {
            (_, true) => format!("no answer within {} s (killed)", limit.as_secs()),
            (Some(c), _) => format!("exit {c}"),
            (None, _) => "ended by a signal".into(),
        }
    }
}

/// Run `exe args…` with `env` added, killed if it has not finished within `limit`.
pub async fn run(
    exe: &Path,
    args: &[&str],
    env: &[(String, String)],
    limit: Duration,
) -> Result<Output, UpgradeError> {
    let child = tokio::process::Command::new(exe)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(io("running the binary", exe))?;
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(Ok(out)) => Ok(Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            timed_out: false,
        }),
        Ok(Err(e)) => Err(io("running the binary", exe)(e)),
        Err(_) => Ok(Output {
            code: None,
            stdout: String::new(),
            stderr: String::new(),
            timed_out: true,
        }),
    }
}

/// The version a binary reports (`exai 0.9.0` → `0.9.0`); refused unless it runs and says it
/// is exai.
pub async fn version_of(exe: &Path) -> Result<String, UpgradeError> {
    let limit = Duration::from_secs(20);
    let out = run(exe, &["--version"], &[], limit).await?;
    let line = out.stdout.lines().next().unwrap_or("").trim().to_string();
    match line.split_once(' ') {
        Some(("exai", version)) if out.success() && !version.trim().is_empty() => {
            Ok(version.trim().to_string())
        }
        _ => Err(UpgradeError::Refused(format!(
            "{} --version did not answer `exai VERSION` ({}; printed {:?}{})",
            exe.display(),
            out.ending(limit),
            line,
            first_line(&out.stderr)
                .map(|e| format!(", error: {e}"))
                .unwrap_or_default()
        ))),
    }
}

/// The first non-empty line of a command's output, for a one-line message.
pub fn first_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).find(|l| !l.is_empty())
}

/// An installed new binary, the replaced one kept as `previous`. Until `commit`, `undo` puts
/// everything back as it was, the older `previous` included.
#[derive(Debug)]
pub struct Swap {
    binaries: Binaries,
    /// An earlier upgrade's `previous`, set aside while this one is judged.
    aside: Option<PathBuf>,
}

/// Install `new` as the current binary, keeping the current one as `previous`. The current
/// path always names a complete binary: the new one is copied beside it first and renamed
/// over it in one step.
pub fn swap_in(binaries: &Binaries, new: &Path) -> Result<Swap, UpgradeError> {
    use std::os::unix::fs::PermissionsExt;
    let staged = binaries.beside("upgrade");
    std::fs::copy(new, &staged).map_err(io("copying the new binary", &staged))?;
    let mode = std::fs::metadata(&binaries.current)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o755);
    let prepared = std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))
        .and_then(|()| std::fs::File::open(&staged)?.sync_all());
    if let Err(e) = prepared {
        let _ = std::fs::remove_file(&staged);
        return Err(io("preparing the new binary", &staged)(e));
    }
    let aside = binaries.beside("previous-before-upgrade");
    let aside = match std::fs::rename(&binaries.previous, &aside) {
        Ok(()) => Some(aside),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            let _ = std::fs::remove_file(&staged);
            return Err(io(
                "setting the older previous binary aside",
                &binaries.previous,
            )(e));
        }
    };
    let swap = Swap {
        binaries: binaries.clone(),
        aside,
    };
    let kept = keep_copy(&binaries.current, &binaries.previous)
        .and_then(|()| std::fs::rename(&staged, &binaries.current));
    if let Err(e) = kept {
        let _ = std::fs::remove_file(&staged);
        let _ = std::fs::remove_file(&binaries.previous);
        swap.restore_aside();
        return Err(io("installing the new binary", &binaries.current)(e));
    }
    sync_dir(&binaries.current);
    Ok(swap)
}

/// `to` becomes the same file as `from`: a hard link (the very inode a running daemon was
/// started from), or a copy where the file system has no links.
fn keep_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        Err(_) => std::fs::copy(from, to).map(drop),
    }
}

fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
}

impl Swap {
    pub fn binaries(&self) -> &Binaries {
        &self.binaries
    }

    /// Keep the new binary: the older `previous` set aside is dropped.
    pub fn commit(self) {
        if let Some(aside) = &self.aside {
            let _ = std::fs::remove_file(aside);
        }
    }

    /// Put the previous binary back in place (one rename) and the older `previous` back beside
    /// it.
    pub fn undo(self) -> Result<(), UpgradeError> {
        let b = &self.binaries;
        std::fs::rename(&b.previous, &b.current)
            .map_err(io("putting the previous binary back", &b.current))?;
        self.restore_aside();
        sync_dir(&b.current);
        Ok(())
    }

    fn restore_aside(&self) {
        if let Some(aside) = &self.aside {
            let _ = std::fs::rename(aside, &self.binaries.previous);
        }
    }
}

/// `exai upgrade --rollback`: the previous binary and the current one trade places, so a second
/// rollback undoes the first. The current path never lacks a binary.
pub fn exchange(binaries: &Binaries) -> Result<(), UpgradeError> {
    if !binaries.previous.is_file() {
        return Err(UpgradeError::Refused(format!(
            "there is no previous binary to go back to ({} does not exist; `exai upgrade NEW_BINARY` keeps one)",
            binaries.previous.display()
        )));
    }
    let held = binaries.beside("rollback");
    keep_copy(&binaries.current, &held).map_err(io("keeping the current binary", &held))?;
    if let Err(e) = std::fs::rename(&binaries.previous, &binaries.current) {
        let _ = std::fs::remove_file(&held);
        return Err(io("putting the previous binary back", &binaries.current)(e));
    }
    std::fs::rename(&held, &binaries.previous)
        .map_err(io("keeping the replaced binary", &binaries.previous))?;
    sync_dir(&binaries.current);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> (tempfile::TempDir, Binaries) {
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join("exai");
        std::fs::write(&current, "old").unwrap();
        let b = Binaries::of(&current);
        (dir, b)
    }

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap()
    }

    #[test]
    fn swap_keeps_the_previous_and_undo_restores_everything() {
        let (dir, b) = fixture();
        assert_eq!(b.previous, dir.path().join("exai.previous"));
        std::fs::write(&b.previous, "older").unwrap();
        let new = dir.path().join("new");
        std::fs::write(&new, "new").unwrap();

        let swap = swap_in(&b, &new).unwrap();
        assert_eq!(
            (read(&b.current), read(&b.previous)),
            ("new".into(), "old".into())
        );
        swap.undo().unwrap();
        assert_eq!(
            (read(&b.current), read(&b.previous)),
            ("old".into(), "older".into())
        );
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["exai", "exai.previous", "new"]);

        swap_in(&b, &new).unwrap().commit();
        assert_eq!(
            (read(&b.current), read(&b.previous)),
            ("new".into(), "old".into())
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
    }

    #[test]
    fn exchange_trades_places_and_needs_a_previous() {
        let (_dir, b) = fixture();
        assert!(matches!(exchange(&b), Err(UpgradeError::Refused(_))));
        std::fs::write(&b.previous, "older").unwrap();
        exchange(&b).unwrap();
        assert_eq!(
            (read(&b.current), read(&b.previous)),
            ("older".into(), "old".into())
        );
        exchange(&b).unwrap();
        assert_eq!(
            (read(&b.current), read(&b.previous)),
            ("old".into(), "older".into())
        );
    }
}
