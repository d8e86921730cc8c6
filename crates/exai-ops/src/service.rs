//! `exai service install|uninstall`: a systemd unit that starts the daemon at boot (or login)
//! and restarts it after a crash, sandboxed to what the daemon needs: it writes only its data
//! directory (and the knowledge base or backups directory when those live elsewhere) and reads
//! the rest of the system. The unit names the data directory and configuration file this
//! command resolved, so the service serves the same data as the command line.

use std::path::{Path, PathBuf};

use exai_core::Source;
use exai_core::config::Loaded;

/// The unit's file name.
pub const UNIT_NAME: &str = "exai.service";

/// The first line of every unit this module writes: `uninstall` removes only such a file.
const MARKER: &str = "# Installed by `exai service install`; remove with `exai service uninstall`.";

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(
        "systemd units are for Linux; on macOS run the daemon under launchd with the plist in docs/OPERATIONS.md (\"Start at login on macOS\")"
    )]
    NotLinux,
    #[error(
        "writing {} needs root: run it with sudo, or install a unit for your user with `exai service install --user`",
        path.display()
    )]
    NeedsRoot { path: PathBuf },
    #[error("{0}")]
    Invalid(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Everything the unit says.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitSpec {
    /// The exai binary the service runs.
    pub exe: PathBuf,
    pub data_dir: PathBuf,
    /// `EXAI_HOME`, `EXAI_CONFIG`, `EXAI_ENV_FILE` as the command line resolved them.
    pub environment: Vec<(String, String)>,
    /// Directories the daemon writes besides the data directory.
    pub writable: Vec<PathBuf>,
    /// A per-user unit (`systemctl --user`) rather than a system one.
    pub user_unit: bool,
    /// The account a system unit runs as (the data directory's owner, when not root).
    pub run_as: Option<String>,
    /// How long systemd waits after SIGTERM: the daemon's drain plus a margin.
    pub stop_timeout_secs: u64,
}

/// Where the unit goes and what it holds.
#[derive(Debug, Clone)]
pub struct Plan {
    pub path: PathBuf,
    pub spec: UnitSpec,
    /// Settings this shell's environment sets, which the service will not see.
    pub shell_only: Vec<String>,
}

/// `~/.config/systemd/user/exai.service` (`$XDG_CONFIG_HOME` when set) or
/// `/etc/systemd/system/exai.service`.
pub fn unit_path(user_unit: bool) -> Result<PathBuf, ServiceError> {
    if !user_unit {
        return Ok(PathBuf::from("/etc/systemd/system").join(UNIT_NAME));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .ok_or_else(|| ServiceError::Invalid("neither XDG_CONFIG_HOME nor HOME is set".into()))?;
    Ok(config.join("systemd/user").join(UNIT_NAME))
}

/// The unit for this configuration, running `exe`.
pub fn plan(loaded: &Loaded, exe: &Path, user_unit: bool) -> Result<Plan, ServiceError> {
    if !cfg!(target_os = "linux") {
        return Err(ServiceError::NotLinux);
    }
    let data_dir = loaded.data_dir.clone();
    let mut writable = Vec::new();
    let kb_dir = exai_kb::config::sqlite_path(loaded)
        .parent()
        .map(Path::to_path_buf);
    let backup_dir = crate::db::backup_root(loaded, None);
    for dir in kb_dir.into_iter().chain([backup_dir]) {
        if !dir.starts_with(&data_dir) && !writable.contains(&dir) {
            writable.push(dir);
        }
    }
    let run_as = if user_unit {
        None
    } else {
        owner_name(&data_dir).filter(|n| n != "root")
    };
    let shell_only = loaded
        .rows()
        .into_iter()
        .filter_map(|(key, _, source)| match source {
            Source::Env(var) => Some(format!("{key} ({var})")),
            _ => None,
        })
        .collect();
    Ok(Plan {
        path: unit_path(user_unit)?,
        spec: UnitSpec {
            exe: exe.to_path_buf(),
            data_dir,
            environment: loaded.child_env(),
            writable,
            user_unit,
            run_as,
            stop_timeout_secs: loaded.timeouts.shutdown_grace().as_secs() + 5,
        },
        shell_only,
    })
}

fn owner_name(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata(path).ok()?.uid();
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// One word of a unit file: double-quoted (C escapes for `\` and `"`) and with `%` doubled, so
/// a path with spaces or specifier characters reaches the daemon unchanged.
fn word(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('%', "%%");
    format!("\"{escaped}\"")
}

/// The unit file's text.
pub fn unit_text(spec: &UnitSpec) -> Result<String, ServiceError> {
    for path in [&spec.exe, &spec.data_dir]
        .into_iter()
        .chain(&spec.writable)
    {
        let text = path.to_string_lossy();
        if !path.is_absolute() || text.chars().any(char::is_control) {
            return Err(ServiceError::Invalid(format!(
                "{} cannot go into a unit file: it must be an absolute path without control characters",
                path.display()
            )));
        }
    }
    let dir = spec.data_dir.to_string_lossy();
    let mut u = vec![
        MARKER.to_string(),
        "[Unit]".into(),
        format!("Description=exai MCP daemon ({})", dir.replace('%', "%%")),
        "After=network-online.target".into(),
        "Wants=network-online.target".into(),
        // Four failed starts in five minutes: stop trying and leave the unit failed, for
        // `systemctl status` and `exai health` to show.
        "StartLimitIntervalSec=300".into(),
        "StartLimitBurst=4".into(),
        String::new(),
        "[Service]".into(),
        "Type=simple".into(),
        format!("ExecStart={} daemon", word(&spec.exe.to_string_lossy())),
    ];
    for (name, value) in &spec.environment {
        u.push(format!("Environment={}", word(&format!("{name}={value}"))));
    }
    // Variables exai reads from this file itself are passed to the process too, so that a
    // custom provider's key variable (`api_key_env`) kept there is found. `-`: it may not exist.
    let env_file = spec.data_dir.join(".env");
    u.push(format!(
        "EnvironmentFile=-{}",
        env_file.to_string_lossy().replace('%', "%%")
    ));
    if let Some(user) = &spec.run_as {
        u.push(format!("User={user}"));
    }
    u.extend(["Restart=on-failure", "RestartSec=5"].map(String::from));
    u.push(format!("TimeoutStopSec={}", spec.stop_timeout_secs));
    u.push("UMask=0077".into());
    u.push("NoNewPrivileges=yes".into());
    u.push("PrivateTmp=yes".into());
    u.push("PrivateDevices=yes".into());
    u.push("ProtectSystem=strict".into());
    // Read-only rather than hidden: indexing reads documentation under home directories.
    u.push("ProtectHome=read-only".into());
    let mut writable = vec![word(&dir)];
    // `-`: a directory that does not exist yet is skipped instead of failing the start.
    writable.extend(
        spec.writable
            .iter()
            .map(|p| word(&format!("-{}", p.to_string_lossy()))),
    );
    u.push(format!("ReadWritePaths={}", writable.join(" ")));
    u.extend(
        [
            "ProtectKernelTunables=yes",
            "ProtectKernelModules=yes",
            "ProtectKernelLogs=yes",
            "ProtectControlGroups=yes",
            "ProtectClock=yes",
            "ProtectHostname=yes",
            "RestrictSUIDSGID=yes",
            "RestrictRealtime=yes",
            "RestrictNamespaces=yes",
            "LockPersonality=yes",
            "SystemCallArchitectures=native",
            "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
            "",
            "[Install]",
        ]
        .map(String::from),
    );
    u.push(if spec.user_unit {
        "WantedBy=default.target".into()
    } else {
        "WantedBy=multi-user.target".into()
    });
    Ok(u.join("\n") + "\n")
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Write the unit (and create the data directory, which `ReadWritePaths` needs to exist).
pub fn install(plan: &Plan) -> Result<(), ServiceError> {
    let text = unit_text(&plan.spec)?;
    if !plan.spec.user_unit && !is_root() {
        return Err(ServiceError::NeedsRoot {
            path: plan.path.clone(),
        });
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ServiceError::Io { path, source }
    };
    exai_core::private::create_dir_all(&plan.spec.data_dir).map_err(io(&plan.spec.data_dir))?;
    if let Some(dir) = plan.path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    // Renamed into place, so systemd never reads half a unit; 0644 as units are.
    let tmp = plan.path.with_extension("service.tmp");
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &plan.path).map_err(io(&plan.path))
}

/// Remove the unit this command wrote. `Ok(false)`: there was none. A file there that this
/// command did not write is left alone.
pub fn uninstall(user_unit: bool) -> Result<(PathBuf, bool), ServiceError> {
    let path = unit_path(user_unit)?;
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((path, false)),
        Err(source) => return Err(ServiceError::Io { path, source }),
    };
    if !text.starts_with(MARKER) {
        return Err(ServiceError::Invalid(format!(
            "{} was not written by `exai service install`; remove it yourself if it should go",
            path.display()
        )));
    }
    if !user_unit && !is_root() {
        return Err(ServiceError::NeedsRoot { path });
    }
    std::fs::remove_file(&path).map_err(|source| ServiceError::Io {
        path: path.clone(),
        source,
    })?;
    Ok((path, true))
}

/// `systemctl` or `systemctl --user`, with `args`.
pub fn systemctl(user_unit: bool, args: &[&str]) -> Vec<String> {
    let mut cmd = vec!["systemctl".to_string()];
    if user_unit {
        cmd.push("--user".into());
    }
    cmd.extend(args.iter().map(|a| a.to_string()));
    cmd
}

/// Whether `systemctl` is on the PATH.
pub fn have_systemctl() -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join("systemctl").is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> UnitSpec {
        UnitSpec {
            exe: "/opt/exai/bin/exai".into(),
            data_dir: "/home/ann/.local/share/exai 100%".into(),
            environment: vec![(
                "EXAI_HOME".into(),
                "/home/ann/.local/share/exai 100%".into(),
            )],
            writable: vec!["/srv/backups".into()],
            user_unit: true,
            run_as: None,
            stop_timeout_secs: 66,
        }
    }

    #[test]
    fn unit_quotes_paths_and_sandboxes_to_the_data_directory() {
        let text = unit_text(&spec()).unwrap();
        assert!(text.starts_with(MARKER), "{text}");
        assert!(
            text.contains("ExecStart=\"/opt/exai/bin/exai\" daemon\n"),
            "{text}"
        );
        assert!(
            text.contains("Environment=\"EXAI_HOME=/home/ann/.local/share/exai 100%%\"\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "ReadWritePaths=\"/home/ann/.local/share/exai 100%%\" \"-/srv/backups\"\n"
            ),
            "{text}"
        );
        for line in [
            "Restart=on-failure",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=read-only",
            "PrivateTmp=yes",
            "TimeoutStopSec=66",
            "WantedBy=default.target",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(!text.contains("User="), "{text}");
    }

    #[test]
    fn system_unit_runs_as_the_owner_and_relative_paths_are_refused() {
        let mut s = spec();
        s.user_unit = false;
        s.run_as = Some("ann".into());
        let text = unit_text(&s).unwrap();
        assert!(text.contains("\nUser=ann\n") && text.contains("WantedBy=multi-user.target"));
        s.writable = vec!["backups".into()];
        assert!(matches!(unit_text(&s), Err(ServiceError::Invalid(_))));
    }
}
