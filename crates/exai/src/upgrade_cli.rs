//! `exai upgrade NEW_BINARY` and `exai upgrade --rollback`. Each step is said as it happens.
//! Nothing changes until the new binary has shown it runs, accepts this configuration and can
//! read these databases; then the daemon stops, the databases are backed up, the binary is
//! swapped (the old one kept as `exai.previous`), migrations run and the new daemon must pass
//! its health check. A failure from the backup on puts back the previous binary, the databases
//! as backed up and the previous daemon.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use exai_core::config::Loaded;
use exai_core::paths::DataPaths;
use exai_ops::upgrade::{self, Binaries, Swap};
use exai_server::daemon;

#[derive(Args)]
pub struct UpgradeArgs {
    /// The new exai binary (it is copied; the file given stays where it is).
    #[arg(required_unless_present = "rollback", conflicts_with = "rollback")]
    binary: Option<PathBuf>,
    /// Put the previous binary (`exai.previous` beside this one) back, by hand, and restart the
    /// daemon on it.
    #[arg(long)]
    rollback: bool,
    /// Seconds the new daemon has to pass its health check.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    wait: u64,
}

/// What every step needs.
struct Ctx {
    env: Vec<(String, String)>,
    pid_path: PathBuf,
    log_file: PathBuf,
    token: Option<String>,
    grace: Duration,
    wait: Duration,
}

/// What has changed so far, so a failure can put it back.
#[derive(Default)]
struct Changed {
    /// The address of the daemon stopped for the upgrade, to start again.
    stopped: Option<String>,
    backup: Option<String>,
    swap: Option<Swap>,
    /// The new binary wrote to the databases (migrations or a started daemon).
    touched: bool,
    /// A daemon this command started from the new binary.
    new_daemon: Option<u32>,
}

fn say(text: impl AsRef<str>) {
    println!("upgrade: {}", text.as_ref());
}

/// A command's output, indented under the step that ran it.
fn relay(out: &upgrade::Output) {
    for line in out.stdout.lines().chain(out.stderr.lines()) {
        if !line.trim().is_empty() {
            println!("  | {line}");
        }
    }
}

const CHECK_LIMIT: Duration = Duration::from_secs(120);
const DATA_LIMIT: Duration = Duration::from_secs(3600);

pub async fn upgrade(args: UpgradeArgs, loaded: &Loaded) -> Result<ExitCode> {
    let current = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .context("cannot find the installed exai binary")?;
    let binaries = Binaries::of(&current);
    let paths = DataPaths::new(loaded.data_dir.clone());
    let ctx = Ctx {
        env: loaded.child_env(),
        pid_path: paths.pid_file(),
        log_file: paths.log_file(),
        token: loaded
            .config
            .server
            .auth_token
            .is_set()
            .then(|| loaded.config.server.auth_token.expose().to_string()),
        grace: loaded.timeouts.shutdown_grace() + Duration::from_secs(2),
        wait: Duration::from_secs(args.wait.max(1)),
    };
    if args.rollback {
        return rollback_by_hand(&ctx, &binaries).await;
    }
    let given = args.binary.context("name the new binary")?;
    let new = given
        .canonicalize()
        .with_context(|| format!("cannot find the new binary {}", given.display()))?;
    if new == current {
        bail!("{} is the installed binary already", new.display());
    }
    let Some((version, migrations)) = preflight(&ctx, &new).await? else {
        return Ok(ExitCode::FAILURE);
    };

    let mut changed = Changed::default();
    if let Some(record) = daemon::running(&ctx.pid_path)? {
        say(format!(
            "stopping the daemon (pid {}, {})",
            record.pid, record.listen
        ));
        let stopped = daemon::stop(&ctx.pid_path, ctx.grace)
            .await
            .context("nothing changed")?;
        if stopped.killed {
            say("it did not stop in time and was killed (SIGKILL)");
        }
        changed.stopped = Some(record.listen);
    } else {
        say(
            "no daemon is running; the new binary's daemon is tried on a free loopback port before it is kept",
        );
    }
    let new = New {
        path: &new,
        version: &version,
        migrations,
    };
    match forward(&ctx, loaded, &binaries, &new, &mut changed).await {
        Ok(()) => {
            if let Some(swap) = changed.swap.take() {
                swap.commit();
            }
            say(format!(
                "done: exai {version} installed at {}; the previous binary (exai {}) is kept as {} (`exai upgrade --rollback` puts it back){}",
                current.display(),
                exai_core::VERSION,
                binaries.previous.display(),
                changed
                    .backup
                    .map(|b| format!("; databases backed up before the upgrade in {b}"))
                    .unwrap_or_default()
            ));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            say(format!("FAILED: {e:#}"));
            roll_back(&ctx, &binaries, changed).await;
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The checks that change nothing: the new binary runs, accepts the configuration and reads the
/// databases. The version and whether it will migrate; `None` when a check failed (said
/// already).
async fn preflight(ctx: &Ctx, new: &Path) -> Result<Option<(String, bool)>> {
    say(format!("checking the new binary {}", new.display()));
    let version = upgrade::version_of(new).await?;
    say(format!(
        "it runs: exai {version} (installed: exai {})",
        exai_core::VERSION
    ));
    let out = upgrade::run(new, &["config", "check"], &ctx.env, CHECK_LIMIT).await?;
    if !out.success() {
        relay(&out);
        say(format!(
            "the new binary refuses this configuration ({}); nothing changed",
            out.ending(CHECK_LIMIT)
        ));
        return Ok(None);
    }
    say("it accepts the configuration (exai config check)");
    say("asking it what it would migrate (exai db migrate --check)");
    let out = upgrade::run(new, &["db", "migrate", "--check"], &ctx.env, CHECK_LIMIT).await?;
    relay(&out);
    // `--check` exits 1 when a migration is pending and says so; any other failure (a schema
    // newer than the new binary knows, an unreadable database) stops here.
    let migrations = match out.code {
        Some(0) => false,
        Some(1) if out.stdout.contains("pending") => true,
        _ => {
            say(format!(
                "the new binary cannot use these databases ({}); nothing changed",
                out.ending(CHECK_LIMIT)
            ));
            return Ok(None);
        }
    };
    say(if migrations {
        "the new binary will migrate the databases; they are backed up first"
    } else {
        "no migration needed"
    });
    Ok(Some((version, migrations)))
}

/// The binary being installed.
struct New<'a> {
    path: &'a Path,
    version: &'a str,
    /// `db migrate --check` reported a pending migration.
    migrations: bool,
}

/// Back up, swap, migrate, start and judge the new daemon.
async fn forward(
    ctx: &Ctx,
    loaded: &Loaded,
    binaries: &Binaries,
    new: &New<'_>,
    changed: &mut Changed,
) -> Result<()> {
    let version = new.version;
    if exai_ops::db::databases(loaded).is_empty() {
        say(format!(
            "no local database in {} yet: nothing to back up",
            loaded.data_dir.display()
        ));
    } else {
        say("backing up the databases (exai db backup)");
        let out = upgrade::run(
            &binaries.current,
            &["db", "backup", "--json"],
            &ctx.env,
            DATA_LIMIT,
        )
        .await?;
        if !out.success() {
            relay(&out);
            bail!("the backup failed ({})", out.ending(DATA_LIMIT));
        }
        let report: serde_json::Value =
            serde_json::from_str(&out.stdout).context("reading `exai db backup --json`")?;
        let path = report["path"]
            .as_str()
            .context("`exai db backup --json` named no backup")?
            .to_string();
        say(format!("backup: {path}"));
        changed.backup = Some(path);
    }

    say(format!(
        "installing the new binary as {} (the replaced one kept as {})",
        binaries.current.display(),
        binaries.previous.display()
    ));
    changed.swap = Some(upgrade::swap_in(binaries, new.path)?);

    if new.migrations {
        say("migrating the databases (exai db migrate)");
        changed.touched = true;
        let out = upgrade::run(&binaries.current, &["db", "migrate"], &ctx.env, DATA_LIMIT).await?;
        relay(&out);
        if !out.success() {
            bail!("the migration failed ({})", out.ending(DATA_LIMIT));
        }
    }

    let (listen, trial) = match &changed.stopped {
        Some(listen) => (listen.clone(), false),
        None => (free_loopback()?, true),
    };
    say(format!(
        "starting the new daemon on {listen}{}",
        if trial { " to check it" } else { "" }
    ));
    changed.touched = true;
    let pid = daemon::spawn_detached(&binaries.current, &listen, &ctx.env)?;
    changed.new_daemon = Some(pid);
    healthy(ctx, pid, &listen, version).await?;
    say(format!(
        "the new daemon (pid {pid}) is healthy: /health ok, version {version}"
    ));
    if trial {
        stop_started(pid, ctx.grace).await;
        say("stopped the trial daemon (none was running before)");
    }
    changed.new_daemon = None;
    Ok(())
}

/// Put back what `forward` changed, saying each step; what cannot be put back is said with
/// what to do.
async fn roll_back(ctx: &Ctx, binaries: &Binaries, changed: Changed) {
    say("rolling back");
    if let Some(pid) = changed.new_daemon
        && stop_started(pid, ctx.grace).await
    {
        say(format!("stopped the new daemon (pid {pid})"));
    }
    if let Some(swap) = changed.swap {
        match swap.undo() {
            Ok(()) => say(format!(
                "the previous binary is back at {}",
                binaries.current.display()
            )),
            Err(e) => {
                say(format!(
                    "CANNOT put the previous binary back ({e}); it is {}: move it over {} by hand",
                    binaries.previous.display(),
                    binaries.current.display()
                ));
                return;
            }
        }
    }
    let mut restored = false;
    if changed.touched
        && let Some(backup) = &changed.backup
    {
        say(format!(
            "restoring the databases the new binary touched from {backup} (exai db restore)"
        ));
        match upgrade::run(
            &binaries.current,
            &["db", "restore", backup],
            &ctx.env,
            DATA_LIMIT,
        )
        .await
        {
            Ok(out) if out.success() => {
                relay(&out);
                restored = true;
            }
            Ok(out) => {
                relay(&out);
                say(format!(
                    "CANNOT restore the databases ({}); restore them by hand: exai db restore {backup}",
                    out.ending(DATA_LIMIT)
                ));
            }
            Err(e) => say(format!(
                "CANNOT restore the databases ({e}); restore them by hand: exai db restore {backup}"
            )),
        }
    }
    let mut daemon_note = String::new();
    if let Some(listen) = &changed.stopped {
        say(format!("starting the previous daemon on {listen}"));
        match restart(ctx, &binaries.current, listen, exai_core::VERSION).await {
            Ok(pid) => daemon_note = format!(", its daemon running again (pid {pid})"),
            Err(e) => say(format!(
                "CANNOT start the previous daemon: {e:#}; see `exai daemon status` and {}",
                ctx.log_file.display()
            )),
        }
    }
    say(format!(
        "rolled back: exai {} is installed{}{daemon_note}",
        exai_core::VERSION,
        if restored {
            ", the databases as they were before the upgrade"
        } else {
            ""
        }
    ));
}

async fn restart(ctx: &Ctx, exe: &Path, listen: &str, version: &str) -> Result<u32> {
    let pid = daemon::spawn_detached(exe, listen, &ctx.env)?;
    if let Err(e) = healthy(ctx, pid, listen, version).await {
        stop_started(pid, ctx.grace).await;
        return Err(e);
    }
    Ok(pid)
}

/// Wait until the daemon `pid` answers `/health` with status ok, its own pid and `version`,
/// and still does a second later (a daemon that dies right after starting fails here).
async fn healthy(ctx: &Ctx, pid: u32, listen: &str, version: &str) -> Result<()> {
    let base = daemon::base_url(listen);
    let deadline = tokio::time::Instant::now() + ctx.wait;
    let exited = || {
        anyhow::anyhow!(
            "the daemon (pid {pid}) exited before passing its health check; its log: {}",
            ctx.log_file.display()
        )
    };
    loop {
        if !daemon::alive(pid) {
            return Err(exited());
        }
        let last = match exai_ops::health::fetch_health(&base, ctx.token.as_deref()).await {
            Ok(h) => {
                let problem = if h["status"] != "ok" {
                    Some(format!("status {}", h["status"]))
                } else if h["version"] != version {
                    Some(format!("version {} instead of {version}", h["version"]))
                } else if h["pid"] != pid {
                    Some(format!("{base} is pid {}, not {pid}", h["pid"]))
                } else {
                    None
                };
                match problem {
                    None => break,
                    Some(p) => p,
                }
            }
            Err(e) => e,
        };
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "the daemon (pid {pid}) failed its health check within {} s: {last}",
                ctx.wait.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    if !daemon::alive(pid) {
        return Err(exited());
    }
    exai_ops::health::fetch_health(&base, ctx.token.as_deref())
        .await
        .map_err(|e| anyhow::anyhow!("the daemon stopped answering its health check: {e}"))?;
    Ok(())
}

/// Stop a daemon this process started. It is this process's unreaped child, so its pid cannot
/// have been given to another process. False when it had ended already.
async fn stop_started(pid: u32, grace: Duration) -> bool {
    use nix::sys::signal::{Signal, kill};
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if !daemon::alive(pid) {
        return false;
    }
    let target = nix::unistd::Pid::from_raw(raw);
    let _ = kill(target, Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + grace;
    while daemon::alive(pid) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if daemon::alive(pid) {
        let _ = kill(target, Signal::SIGKILL);
        say(format!("pid {pid} did not stop in time: killed (SIGKILL)"));
    }
    true
}

fn free_loopback() -> Result<String> {
    let socket = std::net::TcpListener::bind("127.0.0.1:0")
        .context("cannot find a free loopback port for the trial daemon")?;
    Ok(socket.local_addr()?.to_string())
}

/// `exai upgrade --rollback`: the previous binary back in place, the daemon restarted on it.
async fn rollback_by_hand(ctx: &Ctx, binaries: &Binaries) -> Result<ExitCode> {
    if !binaries.previous.is_file() {
        bail!(
            "there is no previous binary to go back to: {} does not exist (`exai upgrade NEW_BINARY` keeps one)",
            binaries.previous.display()
        );
    }
    let running = daemon::running(&ctx.pid_path)?;
    if let Some(record) = &running {
        say(format!(
            "stopping the daemon (pid {}, {})",
            record.pid, record.listen
        ));
        daemon::stop(&ctx.pid_path, ctx.grace).await?;
    }
    let swapped = upgrade::exchange(binaries);
    match &swapped {
        Ok(()) => say(format!(
            "the previous binary is back at {}; the one it replaced is kept as {} (another --rollback swaps them again)",
            binaries.current.display(),
            binaries.previous.display()
        )),
        Err(e) => say(format!("FAILED: {e}; the binaries are as they were")),
    }
    let version = upgrade::version_of(&binaries.current)
        .await
        .map_err(|e| say(format!("warning: {e}")))
        .ok();
    if let Some(v) = &version {
        say(format!("installed: exai {v}"));
    }
    let mut ok = swapped.is_ok();
    if let Some(record) = &running {
        say(format!("starting the daemon on {}", record.listen));
        match restart(
            ctx,
            &binaries.current,
            &record.listen,
            version.as_deref().unwrap_or(""),
        )
        .await
        {
            Ok(pid) => say(format!("the daemon (pid {pid}) is healthy")),
            Err(e) => {
                ok = false;
                say(format!("FAILED: {e:#}"));
            }
        }
    }
    if swapped.is_ok() {
        say(
            "if the newer version migrated the databases, this one may refuse them: restore the backup made before the upgrade (`exai db backups`, then `exai db restore PATH`)",
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
