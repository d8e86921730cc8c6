//! `exai health`, `exai logs`, `exai stats` and `exai db …`: argument parsing and printing over
//! exai-ops.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use exai_core::config::Loaded;
use exai_core::lock::{DataLock, LockError};
use exai_core::paths::DataPaths;
use exai_ops::health::{Status, human_bytes};
use exai_ops::{copy, db, logs, pg, stats};

/// How long a starting process waits for a running `exai db restore` to finish.
const RESTORE_WAIT: Duration = Duration::from_secs(30);

/// Whether `command` opens the databases, and so must hold the data directory's lock shared
/// for as long as it runs. The match names every command, so a new one must choose. `db
/// restore` takes the lock exclusively itself; commands that only talk to a daemon, read logs
/// or print configuration take none.
fn opens_databases(command: &crate::Command) -> bool {
    use crate::Command as C;
    match command {
        C::Serve { .. }
        | C::Daemon { action: None, .. }
        | C::Index(_)
        | C::Refresh(_)
        | C::Search(_)
        | C::Sources { .. }
        | C::Eval(_)
        | C::Validate(_)
        | C::Health(_) => true,
        C::Db { action } => !matches!(action, DbAction::Restore { .. }),
        C::Daemon {
            action: Some(_), ..
        }
        | C::Shim { .. }
        | C::MockLlm { .. }
        | C::Logs(_)
        | C::Config { .. }
        | C::Models { .. }
        | C::Service { .. } => false,
        // It runs the binaries' own commands, and `db restore` on a rollback needs the lock
        // exclusively.
        C::Upgrade(_) => false,
        C::Stats(args) => args.reads_databases(),
    }
}

/// For a command that opens the databases: make the data directory private (0700, and what
/// earlier versions left readable in it narrowed to 0600) and hold its lock shared until the
/// process ends (see `exai_core::lock`). A restore in progress is waited for, saying so.
pub fn hold_data_lock(command: &crate::Command, loaded: &Loaded) -> Result<Option<DataLock>> {
    if !opens_databases(command) {
        return Ok(None);
    }
    let dir = &loaded.data_dir;
    let lock = match DataLock::shared(dir, Duration::ZERO) {
        Err(LockError::Restoring { pid, .. }) => {
            eprintln!(
                "exai: waiting up to {} s for `exai db restore`{} to finish",
                RESTORE_WAIT.as_secs(),
                pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
            );
            DataLock::shared(dir, RESTORE_WAIT)
        }
        other => other,
    };
    let lock = match lock {
        // A data directory this user cannot write (a read-only mount, another owner's files)
        // cannot be restored into either; reading it needs no lock.
        Err(LockError::Io { path, source })
            if matches!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            eprintln!(
                "exai: warning: cannot create the lock file {} ({source}); going on without it",
                path.display()
            );
            return Ok(None);
        }
        other => other?,
    };
    for problem in exai_core::private::tighten(dir) {
        eprintln!("exai: warning: {problem}");
    }
    Ok(Some(lock))
}

#[derive(Args)]
pub struct HealthArgs {
    #[arg(long)]
    json: bool,
    /// Also send one tiny request to each configured provider.
    #[arg(long)]
    live: bool,
}

pub async fn health(args: HealthArgs, loaded: &Loaded) -> Result<ExitCode> {
    let mut report = exai_ops::health::run(loaded, args.live).await;
    report.add(exai_ops::monitor::slo_check(
        loaded,
        &crate::monitor_cli::is_workflow,
    ));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "exai {} health — {} — {}",
            report.version, report.data_dir, report.time
        );
        let width = report
            .checks
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(0);
        for c in &report.checks {
            println!("{:<4}  {:<width$}  {}", c.status.label(), c.name, c.detail);
        }
        println!(
            "overall: {}",
            match report.status {
                Status::Ok => "ok",
                Status::Warn => "warnings (exit 1)",
                Status::Fail => "FAILED (exit 2)",
            }
        );
    }
    Ok(ExitCode::from(report.status.exit_code()))
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct LogsArgs {
    /// Errors only (log lines at ERROR, failed tool calls).
    #[arg(long, conflicts_with = "warnings")]
    errors: bool,
    /// Warnings and errors.
    #[arg(long)]
    warnings: bool,
    /// Only entries matching this regular expression.
    #[arg(long, value_name = "RE")]
    grep: Option<String>,
    /// Only entries from this long ago on: 30m, 1h, 7d…
    #[arg(long, value_name = "DURATION")]
    since: Option<String>,
    /// Only this tool's calls and log lines.
    #[arg(long, value_name = "NAME")]
    tool: Option<String>,
    /// Only the activity log (one record per tool call).
    #[arg(long, conflicts_with = "log_only")]
    activity: bool,
    /// Only the text log.
    #[arg(long = "log")]
    log_only: bool,
    /// Keep printing new entries as they are written (Ctrl-C stops).
    #[arg(long, short)]
    follow: bool,
    /// At most this many entries (the newest).
    #[arg(long, short = 'n', value_name = "N")]
    lines: Option<usize>,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// Read the compressed archives in logs/archives/ too (`exai logs archive` writes them).
    #[arg(long, conflicts_with = "follow")]
    archived: bool,
    #[command(subcommand)]
    action: Option<LogsAction>,
}

#[derive(Subcommand)]
enum LogsAction {
    /// Delete rotated log and activity files older than a duration.
    Prune {
        #[arg(long, value_name = "DURATION")]
        older_than: String,
    },
    /// Compress rotated log and activity files (not the live ones) into logs/archives/, then
    /// delete archives older than the retention.
    Archive {
        /// Keep archives this many days (default: logging.archive_keep_days).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=36_500))]
        keep_days: Option<u64>,
        /// Only say what would be archived and deleted.
        #[arg(long)]
        dry_run: bool,
    },
}

fn logs_archive(
    paths: &DataPaths,
    keep_days: Option<u64>,
    dry_run: bool,
    loaded: &Loaded,
) -> Result<ExitCode> {
    let days = keep_days.unwrap_or(loaded.config.logging.archive_keep_days);
    let keep = Duration::from_secs(days.saturating_mul(86_400));
    let report = logs::archive::archive(paths, keep, dry_run).context("archiving logs")?;
    let would = if dry_run { "would " } else { "" };
    for p in &report.abandoned {
        println!("removed unfinished archive {}", p.display());
    }
    for a in &report.archived {
        let files: Vec<String> = a.files.iter().map(|f| f.display().to_string()).collect();
        if dry_run {
            println!(
                "would archive {} ({}) into {}",
                files.join(", "),
                human_bytes(a.bytes_in),
                a.path.display()
            );
        } else {
            println!(
                "archived {} ({} -> {}) into {}",
                files.join(", "),
                human_bytes(a.bytes_in),
                human_bytes(a.bytes_out),
                a.path.display()
            );
        }
    }
    for (p, n) in &report.expired {
        println!(
            "{would}delete {} ({}): older than {days} day(s)",
            p.display(),
            human_bytes(*n)
        );
    }
    if report.archived.is_empty() && report.expired.is_empty() {
        println!(
            "nothing to archive: no rotated file in {} and no archive older than {days} day(s)",
            paths.logs().display()
        );
    }
    if dry_run {
        println!("dry run: nothing was changed");
    }
    Ok(ExitCode::SUCCESS)
}

/// Archives `exai logs` did not read, said once so a search that found nothing is not taken
/// for the whole history.
fn note_unread_archives(paths: &DataPaths) {
    let archives = logs::archive::list(&logs::archive::archives_dir(paths));
    if !archives.is_empty() {
        let bytes: u64 = archives.iter().map(|(_, m)| m.len()).sum();
        eprintln!(
            "note: {} archive(s) ({}) in {} not read; add --archived to include them",
            archives.len(),
            human_bytes(bytes),
            logs::archive::archives_dir(paths).display()
        );
    }
}

fn print_entry(e: &logs::Entry, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(e)?);
    } else if e.origin == logs::Origin::Activity {
        let time = e
            .time
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default();
        println!("{time} CALL  {}", e.text);
    } else {
        println!("{}", e.text);
    }
    Ok(())
}

pub async fn logs(args: LogsArgs, loaded: &Loaded) -> Result<ExitCode> {
    let paths = DataPaths::new(loaded.data_dir.clone());
    if let Some(LogsAction::Prune { older_than }) = args.action {
        let age = logs::parse_duration(&older_than).map_err(anyhow::Error::msg)?;
        let removed = logs::prune(&paths, age).context("pruning logs")?;
        let bytes: u64 = removed.iter().map(|r| r.1).sum();
        for (p, n) in &removed {
            println!("removed {} ({})", p.display(), human_bytes(*n));
        }
        println!(
            "{} file(s), {} freed; live files rotate by size (logging.max_bytes)",
            removed.len(),
            human_bytes(bytes)
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(LogsAction::Archive { keep_days, dry_run }) = args.action {
        return logs_archive(&paths, keep_days, dry_run, loaded);
    }
    let filter = logs::Filter {
        max_level: if args.errors {
            Some(logs::Level::Error)
        } else if args.warnings {
            Some(logs::Level::Warn)
        } else {
            None
        },
        grep: args
            .grep
            .as_deref()
            .map(regex::Regex::new)
            .transpose()
            .context("--grep is not a valid regular expression")?,
        since: match &args.since {
            Some(s) => {
                let d = logs::parse_duration(s).map_err(anyhow::Error::msg)?;
                Some(chrono::Utc::now() - chrono::Duration::from_std(d)?)
            }
            None => None,
        },
        tool: args.tool.clone(),
        origin: if args.activity {
            Some(logs::Origin::Activity)
        } else if args.log_only {
            Some(logs::Origin::Log)
        } else {
            None
        },
    };
    let entries = if args.archived {
        let (entries, problems) = logs::collect_with_archives(&paths, &filter);
        for p in problems {
            eprintln!("warning: cannot read the archive {p}");
        }
        entries
    } else {
        note_unread_archives(&paths);
        logs::collect(&paths, &filter)
    };
    let skip = args.lines.map_or(0, |n| entries.len().saturating_sub(n));
    for e in &entries[skip..] {
        print_entry(e, args.json)?;
    }
    if !args.follow {
        if entries.is_empty() && !args.json {
            eprintln!("no matching entries in {}", paths.logs().display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut follower = logs::Follower::new(&paths);
    let mut stop = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(ExitCode::SUCCESS),
            () = tokio::time::sleep(Duration::from_millis(500)) => {
                for e in follower.poll().iter().filter(|e| filter.matches(e)) {
                    print_entry(e, args.json)?;
                }
            }
        }
    }
}

#[derive(Args)]
pub struct StatsArgs {
    /// Only calls from this long ago on: 1h, 24h, 7d… (default: everything kept; 24h for
    /// --resources and --slo).
    #[arg(long, value_name = "DURATION")]
    since: Option<String>,
    /// Per MCP client (name and version from its `initialize`) and per principal (the named
    /// bearer token of server.tokens, or `local`) instead of per tool, provider and model.
    #[arg(long)]
    by_client: bool,
    #[arg(long)]
    json: bool,
    /// The daemon's resources over time (resident memory, CPU, open files, host memory, free
    /// disk, database sizes): minimum, maximum, latest and trend of each series.
    #[arg(long, conflicts_with_all = ["slo", "queries"])]
    resources: bool,
    /// Check the service targets (`ops.slo_*`: uptime, p95 latency of simple and workflow
    /// tools, error rate); exit 1 when one is missed.
    #[arg(long, conflicts_with = "queries")]
    slo: bool,
    /// The most frequent and the slowest knowledge-base queries (their text is recorded only
    /// with `logging.log_queries`).
    #[arg(long)]
    queries: bool,
    /// Queries listed with --queries.
    #[arg(long, default_value_t = 10, requires = "queries")]
    limit: usize,
}

impl StatsArgs {
    /// `--resources` and `--slo` read the resource history in the databases.
    pub fn reads_databases(&self) -> bool {
        self.resources || self.slo
    }
}

fn print_rows(title: &str, rows: &[stats::Row]) {
    if rows.is_empty() {
        return;
    }
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    println!(
        "\n{title:<width$}  {:>7} {:>7} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10}",
        "calls", "errors", "p50 ms", "p95 ms", "p99 ms", "tokens in", "tokens out", "cost USD"
    );
    for r in rows {
        println!(
            "{:<width$}  {:>7} {:>6.1}% {:>9.1} {:>9.1} {:>9.1} {:>10} {:>10} {:>10.4}",
            r.name,
            r.calls,
            r.error_rate * 100.0,
            r.p50_ms,
            r.p95_ms,
            r.p99_ms,
            r.tokens_in,
            r.tokens_out,
            r.cost_usd
        );
    }
}

pub fn stats(args: StatsArgs, loaded: &Loaded) -> Result<ExitCode> {
    let since = args.since.as_deref();
    if args.resources {
        return crate::monitor_cli::resources(since, args.json, loaded);
    }
    if args.slo {
        return crate::monitor_cli::slo(since, args.json, loaded);
    }
    if args.queries {
        return crate::monitor_cli::queries(since, args.limit, args.json, loaded);
    }
    let paths = DataPaths::new(loaded.data_dir.clone());
    let since = match &args.since {
        Some(s) => {
            let d = logs::parse_duration(s).map_err(anyhow::Error::msg)?;
            Some(chrono::Utc::now() - chrono::Duration::from_std(d)?)
        }
        None => None,
    };
    let records = logs::activity_records(&paths);
    if args.by_client {
        return print_by_client(&stats::by_client(&records, since), args.json);
    }
    let s = stats::compute(&records, since);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(ExitCode::SUCCESS);
    }
    if s.total.calls == 0 {
        println!(
            "no tool calls recorded{} in {}",
            args.since
                .as_ref()
                .map(|d| format!(" in the last {d}"))
                .unwrap_or_default(),
            paths.activity_file().display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} call(s) from {} to {}: {:.1}% errors, p50 {:.1} ms, p99 {:.1} ms, {} + {} tokens, ${:.4}",
        s.total.calls,
        s.first.as_deref().unwrap_or("?"),
        s.last.as_deref().unwrap_or("?"),
        s.total.error_rate * 100.0,
        s.total.p50_ms,
        s.total.p99_ms,
        s.total.tokens_in,
        s.total.tokens_out,
        s.total.cost_usd
    );
    print_rows("tool", &s.by_tool);
    print_rows("provider", &s.by_provider);
    print_rows("model", &s.by_model);
    Ok(ExitCode::SUCCESS)
}

fn print_by_client(s: &stats::ClientStats, json: bool) -> Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(s)?);
    } else if s.by_client.is_empty() {
        println!("no tool calls recorded");
    } else {
        print_rows("client", &s.by_client);
        print_rows("principal", &s.by_principal);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand)]
pub enum DbAction {
    /// Check every database: integrity, keyword index against chunks, vectors. Exit 0 ok,
    /// 1 warnings, 2 problems.
    Verify {
        /// SQLite's quick check instead of the full integrity check.
        #[arg(long)]
        quick: bool,
        #[arg(long)]
        json: bool,
    },
    /// Remove orphans, merge the keyword index, VACUUM; prints the bytes reclaimed.
    Compact {
        #[arg(long)]
        json: bool,
    },
    /// Consistent online copy of every database with a manifest; keeps the newest
    /// `ops.backup_keep` in the backups directory.
    Backup {
        /// Backups directory (default: ops.backup_dir, else backups/ in the data directory).
        path: Option<PathBuf>,
        /// Keep this many backups (default: ops.backup_keep).
        #[arg(long, value_name = "N")]
        keep: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// List the backups in the backups directory, with what each holds.
    Backups { path: Option<PathBuf> },
    /// Verify a backup, then swap it in atomically, keeping the replaced files.
    Restore {
        /// The backup directory (or its manifest.json), or `latest`: the newest complete backup
        /// in the backups directory.
        path: PathBuf,
        /// Only verify the backup; change nothing.
        #[arg(long)]
        check: bool,
        /// Also put back the configuration files the backup holds (exai.toml, the data
        /// directory's .env, ops.backup_extra files), keeping the current ones aside.
        #[arg(long)]
        with_config: bool,
        /// Where `latest` looks (default: ops.backup_dir, else backups/ in the data directory).
        #[arg(long, value_name = "DIR")]
        backups: Option<PathBuf>,
    },
    /// Bring the knowledge base's schema up to this version (`--check`: report only; exit 1
    /// when a migration is pending).
    Migrate {
        #[arg(long)]
        check: bool,
    },
    /// Sizes, row counts and schema versions.
    Stats {
        #[arg(long)]
        json: bool,
        /// Each database's size per day and its growth, from the daemon's resource samples.
        #[arg(long)]
        history: bool,
        /// With --history: from this long ago on (default 30d).
        #[arg(long, value_name = "DURATION", requires = "history")]
        since: Option<String>,
    },
    /// Rebuild derived indexes: the keyword index from the stored chunks, SQLite indexes and
    /// statistics; running daemons rebuild their vector index.
    Reindex,
    /// Copy a knowledge base between SQLite and PostgreSQL (either direction), then verify it:
    /// counts, checksums, and the top results of sample queries on both sides.
    Copy {
        /// Where from: sqlite:PATH (or a path), a postgres:// URL, or `database` (database.url).
        #[arg(long, value_name = "SRC")]
        from: String,
        /// Where to: sqlite:PATH (or a path), a postgres:// URL, or `database` (database.url).
        #[arg(long, value_name = "DST")]
        to: String,
        /// Replace the destination's knowledge base when it holds one.
        #[arg(long)]
        force: bool,
        /// Sample queries the verification compares.
        #[arg(long, value_name = "N", default_value_t = 20)]
        queries: usize,
        #[arg(long)]
        json: bool,
    },
}

/// A terminal bar for `db copy`, or a line per phase and every few seconds otherwise.
struct CopyReporter {
    bar: Option<indicatif::ProgressBar>,
    last: std::sync::Mutex<(Option<copy::Phase>, std::time::Instant)>,
}

impl CopyReporter {
    fn new(quiet: bool) -> Self {
        use std::io::IsTerminal;
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {msg:<10} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        });
        Self {
            bar,
            last: std::sync::Mutex::new((None, std::time::Instant::now())),
        }
    }

    fn update(&self, p: &copy::Progress) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let changed = last.0 != Some(p.phase);
        if let Some(bar) = &self.bar {
            if changed {
                bar.reset();
                bar.set_message(p.phase.label());
            }
            bar.set_length(p.total);
            bar.set_position(p.done);
            *last = (Some(p.phase), std::time::Instant::now());
            return;
        }
        if changed
            || last.1.elapsed() >= Duration::from_secs(5)
            || (p.done == p.total && p.total > 0)
        {
            eprintln!("{}: {}/{}", p.phase.label(), p.done, p.total);
            *last = (Some(p.phase), std::time::Instant::now());
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `database` stands for the configured `database.url` (so a password in `.env` never has to
/// be typed on a command line).
fn endpoint(given: &str, loaded: &Loaded) -> Result<copy::Endpoint> {
    if given.trim() == "database" {
        let url = pg::configured(loaded)
            .context("`database` stands for database.url, which is not set (EXAI_DATABASE_URL)")?;
        return Ok(copy::Endpoint::Postgres(url.to_string()));
    }
    Ok(copy::Endpoint::parse(given)?)
}

fn print_copy(report: &copy::CopyReport) {
    let v = &report.verification;
    println!(
        "copied {} -> {} in {:.1} s: {}{}",
        report.from,
        report.to,
        report.seconds,
        report.copied.describe(),
        report
            .embed_model
            .as_ref()
            .map(|m| if report.embed_backends.is_empty() {
                format!("; model {m}")
            } else {
                format!("; model {m} ({})", report.embed_backends.join("+"))
            })
            .unwrap_or_default()
    );
    if let Some(r) = &report.replaced {
        println!("  (--force replaced {} in the destination)", r.describe());
    }
    let mark = |ok: bool| if ok { "ok  " } else { "FAIL" };
    println!("verification:");
    println!(
        "  {}  counts    source {}; destination {}",
        mark(v.counts_equal),
        v.from.describe(),
        v.to.describe()
    );
    println!(
        "  {}  content   checksum of documents and chunks {}; of vectors {}",
        mark(v.content_equal && v.vectors_equal),
        if v.content_equal { "equal" } else { "DIFFERS" },
        if v.vectors_equal { "equal" } else { "DIFFERS" }
    );
    println!(
        "  {}  model     {}",
        mark(v.model_equal),
        if v.model_equal {
            "the same identity and back ends on both sides"
        } else {
            "DIFFERS"
        }
    );
    let show = |kind: &str, c: &copy::Comparison| {
        let label = match &c.required {
            Some(_) => mark(c.passed),
            None => "info",
        };
        println!(
            "  {label}  {kind:<8}  {} sample queries: top 10 identical for {}, overlap@10 {:.2} on average (lowest {:.2}){}",
            c.queries,
            c.identical,
            c.mean_overlap,
            c.min_overlap,
            match &c.required {
                Some(r) => format!("; required: {r}"),
                None => "; reported only".into(),
            }
        );
        if c.required.is_some() && !c.passed {
            for d in &c.differences {
                println!("        {:?} (overlap {:.2})", d.query, d.overlap);
                println!("          source:      {}", d.from.join(", "));
                println!("          destination: {}", d.to.join(", "));
            }
        }
    };
    if let Some(k) = &v.keyword {
        show("keyword", k);
    }
    if let Some(s) = &v.semantic {
        show("semantic", s);
    }
    for n in &v.notes {
        println!("  note: {n}");
    }
}

/// Printed by the commands that cover local SQLite files only when PostgreSQL holds the
/// shared data.
fn postgres_note(loaded: &Loaded, what: &str) {
    if let Some(url) = pg::configured(loaded) {
        eprintln!(
            "note: the knowledge base, conversation threads, validation tracking and index jobs live in PostgreSQL ({}); {what}",
            pg::redact(url)
        );
    }
}

fn print_pg_check(c: &pg::PgCheck) {
    let label = match c.status() {
        0 => "ok",
        1 => "WARN",
        _ => "FAIL",
    };
    println!("{label:<4}  postgres ({})", c.target);
    if let Some(s) = &c.server {
        println!("      {}", s.describe());
        println!("      schema {}", s.describe_components());
    }
    if let Some(kb) = &c.kb {
        println!(
            "      kb: schema {}, {} documents, {} chunks, {} vectors{}{}, {} chunks without vectors, {} embeddings without chunks; HNSW index {}",
            kb.schema_version,
            kb.documents,
            kb.chunks,
            kb.vectors,
            kb.expected_dim
                .map(|d| format!(" of dimension {d}"))
                .unwrap_or_default(),
            kb.column_dim
                .map(|d| format!(" (column {d})"))
                .unwrap_or_default(),
            kb.chunks_without_vectors,
            kb.orphan_vectors,
            match kb.hnsw_valid {
                Some(true) => "valid",
                Some(false) => "INVALID",
                None if kb.embed_model.is_some() => "MISSING",
                None => "not built yet (no model claimed)",
            }
        );
    }
    for p in &c.problems {
        println!("      problem: {p}");
    }
    for w in &c.warnings {
        println!("      warning: {w}");
    }
}

pub fn db(action: DbAction, loaded: &Loaded) -> Result<ExitCode> {
    match action {
        DbAction::Verify { quick, json } => db_verify(quick, json, loaded),
        DbAction::Compact { json } => db_compact(json, loaded),
        DbAction::Backup { path, keep, json } => db_backup(path, keep, json, loaded),
        DbAction::Backups { path } => db_backups(path, loaded),
        DbAction::Restore {
            path,
            check,
            with_config,
            backups,
        } => {
            let path = resolve_backup(path, backups, loaded)?;
            db_restore(path, check, with_config, loaded)
        }
        DbAction::Migrate { check } => db_migrate(check, loaded),
        DbAction::Stats {
            json,
            history: true,
            since,
        } => crate::monitor_cli::db_history(since.as_deref(), json, loaded),
        DbAction::Stats { json, .. } => db_stats(json, loaded),
        DbAction::Reindex => db_reindex(loaded),
        DbAction::Copy {
            from,
            to,
            force,
            queries,
            json,
        } => db_copy(from, to, force, queries, json, loaded),
    }
}

fn db_verify(quick: bool, json: bool, loaded: &Loaded) -> Result<ExitCode> {
    let checks = db::verify(loaded, !quick);
    let postgres = pg::configured(loaded).map(|url| pg::verify(url, &loaded.config.database));
    let status = checks
        .iter()
        .map(|c| {
            if !c.problems.is_empty() {
                2
            } else if !c.warnings.is_empty() {
                1
            } else {
                0
            }
        })
        .chain(postgres.as_ref().map(pg::PgCheck::status))
        .max()
        .unwrap_or(0);
    if json {
        let mut out = serde_json::json!({ "ok": status < 2, "databases": checks });
        if let Some(p) = &postgres {
            out["postgres"] = serde_json::to_value(p)?;
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if checks.is_empty() && postgres.is_none() {
        println!("no database in {} yet", loaded.data_dir.display());
    } else {
        if let Some(p) = &postgres {
            print_pg_check(p);
        }
        checks.iter().for_each(print_file_check);
    }
    Ok(ExitCode::from(status))
}

fn print_file_check(c: &db::FileCheck) {
    let label = if !c.problems.is_empty() {
        "FAIL"
    } else if !c.warnings.is_empty() {
        "WARN"
    } else {
        "ok"
    };
    println!(
        "{label:<4}  {} ({}, {})",
        c.name,
        c.path,
        human_bytes(c.bytes)
    );
    if let Some(kb) = &c.kb {
        println!(
            "      schema {}, {} check; {} documents, {} chunks, {} keyword rows, {} vectors{}, {} chunks without vectors",
            kb.schema_version,
            kb.integrity,
            kb.documents,
            kb.chunks,
            kb.fts_rows,
            kb.vectors,
            kb.expected_dim
                .map(|d| format!(" of dimension {d}"))
                .unwrap_or_default(),
            kb.chunks_without_vectors
        );
        println!("      ANN index: {}", kb.ann.describe(kb.generation));
    }
    for p in &c.problems {
        println!("      problem: {p}");
    }
    for w in &c.warnings {
        println!("      warning: {w}");
    }
}

fn db_compact(json: bool, loaded: &Loaded) -> Result<ExitCode> {
    postgres_note(
        loaded,
        "PostgreSQL reclaims space itself (autovacuum; `VACUUM (ANALYZE)` by hand after removing a large source). Compacting the local SQLite files only",
    );
    let done = db::compact(loaded)?;
    if done.is_empty() && !json {
        println!(
            "no local SQLite database in {} yet",
            loaded.data_dir.display()
        );
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&done)?);
    } else {
        for c in &done {
            println!(
                "{}: {} -> {} ({} reclaimed){}",
                c.name,
                human_bytes(c.bytes_before),
                human_bytes(c.bytes_after),
                human_bytes(c.bytes_before.saturating_sub(c.bytes_after)),
                c.kb.as_ref()
                    .map(|k| format!(", {} orphan vector(s) removed", k.orphan_vectors_removed))
                    .unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn db_backup(
    path: Option<PathBuf>,
    keep: Option<usize>,
    json: bool,
    loaded: &Loaded,
) -> Result<ExitCode> {
    let root = db::backup_root(loaded, path.as_deref());
    let keep = keep.unwrap_or(usize::try_from(loaded.config.ops.backup_keep)?);
    if pg::configured(loaded).is_some() {
        postgres_note(
            loaded,
            "back it up with PostgreSQL's own tools (`pg_dump -Fc`, or the provider's backups and point-in-time recovery). `exai db backup` covers the local SQLite files only",
        );
        if db::databases(loaded).is_empty() {
            println!(
                "no local SQLite database in {} to back up",
                loaded.data_dir.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
    }
    let report = db::backup(loaded, &root, keep)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("backup: {} ({:.2} s)", report.path, report.seconds);
        for f in &report.manifest.files {
            let rows: Vec<String> = f
                .tables
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(t, n)| format!("{t} {n}"))
                .collect();
            println!(
                "  {}: {} schema {}, blake3 {}…; {}",
                f.name,
                human_bytes(f.bytes),
                f.schema_version,
                &f.blake3[..16],
                rows.join(", ")
            );
        }
        for c in &report.manifest.config {
            println!(
                "  {} {}: {}, blake3 {}…{}",
                c.kind.label(),
                c.original,
                human_bytes(c.bytes),
                &c.blake3[..16],
                c.link_target
                    .as_ref()
                    .map(|t| format!(" (a symbolic link; the copy holds {t})"))
                    .unwrap_or_default()
            );
        }
        for p in &report.pruned {
            println!("  removed old backup {p}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn db_backups(path: Option<PathBuf>, loaded: &Loaded) -> Result<ExitCode> {
    let root = db::backup_root(loaded, path.as_deref());
    let all = db::list_backups(&root);
    if all.is_empty() {
        println!("no backups in {}", root.display());
    }
    for dir in all {
        let m = db::read_manifest(&dir)?;
        let bytes: u64 = m.files.iter().map(|f| f.bytes).sum::<u64>()
            + m.config.iter().map(|c| c.bytes).sum::<u64>();
        println!(
            "{}  {}  {}  {}",
            m.created_at,
            human_bytes(bytes),
            backup_contents(&m),
            dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `latest` names the newest complete backup; anything else is a path.
fn resolve_backup(path: PathBuf, backups: Option<PathBuf>, loaded: &Loaded) -> Result<PathBuf> {
    if path.as_os_str() != "latest" {
        return Ok(path);
    }
    let root = db::backup_root(loaded, backups.as_deref());
    let latest = db::latest_backup(&root)?;
    println!("latest backup: {}", latest.display());
    Ok(latest)
}

/// What a backup holds, in one line: `kb+state; config: exai.toml, .env, 1 extra`.
fn backup_contents(m: &db::Manifest) -> String {
    let dbs = m
        .files
        .iter()
        .map(|f| f.name.as_str())
        .collect::<Vec<_>>()
        .join("+");
    if m.config.is_empty() {
        return dbs;
    }
    let config: Vec<String> = m
        .config
        .iter()
        .map(|c| match c.kind {
            db::ConfigKind::Extra => c.original.clone(),
            _ => c.file.clone(),
        })
        .collect();
    format!("{dbs}; config: {}", config.join(", "))
}

fn db_restore(path: PathBuf, check: bool, with_config: bool, loaded: &Loaded) -> Result<ExitCode> {
    if check {
        let m = db::verify_backup(&path)?;
        println!(
            "backup of {} verified: {} database(s) and {} configuration file(s), checksums and integrity ok",
            m.created_at,
            m.files.len(),
            m.config.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    postgres_note(
        loaded,
        "restore it with PostgreSQL's own tools (`pg_restore`, or the provider's point-in-time recovery). `exai db restore` restores the local SQLite files only",
    );
    let restored = db::restore_with_config(loaded, &path, with_config)?;
    for r in &restored.databases {
        match &r.kept {
            Some(k) => println!(
                "restored {} -> {} (replaced file kept as {k})",
                r.name, r.path
            ),
            None => println!("restored {} -> {}", r.name, r.path),
        }
    }
    Ok(print_config_restore(&restored, with_config, &path))
}

/// The configuration part of a restore; exit 1 when a file the backup holds was not put back.
fn print_config_restore(
    restored: &db::Restored,
    with_config: bool,
    backup: &std::path::Path,
) -> ExitCode {
    if !with_config {
        if let Ok(m) = db::read_manifest(backup)
            && !m.config.is_empty()
        {
            println!(
                "the backup also holds {} configuration file(s); they were left as they are (--with-config restores them)",
                m.config.len()
            );
        }
        return ExitCode::SUCCESS;
    }
    if restored.config.is_empty() && restored.config_skipped.is_empty() {
        println!("the backup holds no configuration files (it was made by an earlier version)");
    }
    for c in &restored.config {
        match (&c.kept, c.unchanged) {
            (_, true) => println!("{} {}: unchanged", c.kind.label(), c.path),
            (Some(k), _) => println!(
                "restored {} {} (replaced file kept as {k})",
                c.kind.label(),
                c.path
            ),
            (None, _) => println!("restored {} {}", c.kind.label(), c.path),
        }
    }
    for s in &restored.config_skipped {
        println!(
            "NOT restored: {} {}: {}; its copy is {}",
            s.kind.label(),
            s.original,
            s.reason,
            s.in_backup
        );
    }
    if restored.config_skipped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn db_migrate(check: bool, loaded: &Loaded) -> Result<ExitCode> {
    let mut done = db::migrate(loaded, check)?;
    match pg::configured(loaded) {
        Some(url) => done.extend(pg::migrate(url, &loaded.config.database, check)?),
        None if done.is_empty() => {
            println!("no knowledge base yet; it is created at the current schema");
        }
        None => {}
    }
    let mut pending = false;
    for m in &done {
        let name = format!("{} ({})", m.name, m.backend);
        let note = m
            .note
            .as_ref()
            .map(|n| format!("; {n}"))
            .unwrap_or_default();
        if m.applied {
            println!("{name}: migrated schema {} -> {}{note}", m.from, m.to);
        } else if m.from < m.to {
            pending = true;
            println!(
                "{name}: schema {}, migration to {} pending (`exai db migrate`){note}",
                m.from, m.to
            );
        } else if m.from > m.to {
            bail!(
                "{name}: schema {} is newer than this exai knows ({}); upgrade exai",
                m.from,
                m.to
            );
        } else if m.from == 0 {
            println!("{name}: not created yet{note}");
        } else {
            println!("{name}: schema {} (current){note}", m.from);
        }
    }
    Ok(if pending && check {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn db_stats(json: bool, loaded: &Loaded) -> Result<ExitCode> {
    let all = db::stats(loaded)?;
    let postgres = pg::configured(loaded)
        .map(|url| pg::stats(url, &loaded.config.database))
        .transpose()?;
    if json {
        let out = stats_json(&all, postgres.as_ref())?;
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(p) = &postgres {
        print_pg_stats(p);
    }
    if all.is_empty() && postgres.is_none() {
        println!("no database in {} yet", loaded.data_dir.display());
    }
    for s in &all {
        print_file_stats(s);
    }
    Ok(ExitCode::SUCCESS)
}

/// The local files' statistics, with PostgreSQL's as one more entry shaped like them.
fn stats_json(
    all: &[db::FileStats],
    postgres: Option<&pg::PgStatsReport>,
) -> Result<serde_json::Value> {
    let mut out = serde_json::to_value(all)?;
    if let (Some(p), Some(list)) = (postgres, out.as_array_mut()) {
        let mut entry = serde_json::json!({
            "name": "postgres",
            "backend": "postgres",
            "path": p.server.target,
            "bytes": p.tables.values().map(|t| t.bytes).sum::<u64>(),
            "schema_version": p.server.kb_schema(),
        });
        if let (Some(e), serde_json::Value::Object(more)) =
            (entry.as_object_mut(), serde_json::to_value(p)?)
        {
            e.extend(more);
        }
        list.push(entry);
    }
    Ok(out)
}

fn print_pg_stats(p: &pg::PgStatsReport) {
    println!("postgres: {}", p.server.describe());
    println!("  schema {}", p.server.describe_components());
    match &p.kb {
        Some(kb) => println!(
            "  kb: {} sources, {} documents, {} chunks, {} vectors ({} without), {}; HNSW index {}; model {}; generation {}",
            kb.sources,
            kb.documents,
            kb.chunks,
            kb.vectors,
            kb.chunks_without_vectors,
            human_bytes(kb.bytes),
            match (kb.hnsw_valid, kb.hnsw_bytes) {
                (Some(true), Some(b)) => format!("valid, {}", human_bytes(b)),
                (Some(true), None) => "valid".into(),
                (Some(false), _) => "INVALID".into(),
                (None, _) => "not built".into(),
            },
            kb.embed_model.as_deref().unwrap_or("none yet"),
            kb.generation
        ),
        None => println!("  kb: not created yet"),
    }
    let rows: Vec<String> = p
        .tables
        .iter()
        .map(|(t, s)| format!("{t} {} ({})", s.rows, human_bytes(s.bytes)))
        .collect();
    println!("  tables (rows): {}", rows.join(", "));
}

fn print_file_stats(s: &db::FileStats) {
    println!(
        "{} ({}): {} + {} WAL, schema {}",
        s.name,
        s.path,
        human_bytes(s.bytes),
        human_bytes(s.wal_bytes),
        s.schema_version
    );
    if let Some(kb) = &s.kb {
        println!(
            "  {} sources, {} documents, {} chunks ({} distinct texts, {}), {} vectors; {} of {} pages free; model {}",
            kb.sources,
            kb.documents,
            kb.chunks,
            kb.distinct_chunk_texts,
            human_bytes(kb.text_bytes),
            kb.vectors,
            kb.free_pages,
            kb.pages,
            kb.embed_model.as_deref().unwrap_or("none yet")
        );
    } else {
        let rows: Vec<String> = s.tables.iter().map(|(t, n)| format!("{t} {n}")).collect();
        println!("  {}", rows.join(", "));
    }
}

fn db_reindex(loaded: &Loaded) -> Result<ExitCode> {
    if let Some(url) = pg::configured(loaded) {
        println!(
            "the knowledge base is in PostgreSQL ({}), which keeps its keyword (GIN) and vector (HNSW) indexes current itself; nothing to rebuild here (if `exai db verify` reports the HNSW index invalid: `REINDEX INDEX CONCURRENTLY kb_embeddings_hnsw;`)",
            pg::redact(url)
        );
        return Ok(ExitCode::SUCCESS);
    }
    let n = db::reindex(loaded)?;
    println!("keyword index rebuilt from {n} chunks; indexes and statistics refreshed");
    Ok(ExitCode::SUCCESS)
}

fn db_copy(
    from: String,
    to: String,
    force: bool,
    queries: usize,
    json: bool,
    loaded: &Loaded,
) -> Result<ExitCode> {
    let (from, to) = (endpoint(&from, loaded)?, endpoint(&to, loaded)?);
    let options = copy::CopyOptions {
        force,
        queries: queries.max(1),
        ..Default::default()
    };
    let reporter = CopyReporter::new(false);
    let report = copy::copy(&from, &to, &loaded.config.database, &options, &|p| {
        reporter.update(p)
    });
    reporter.finish();
    let report = report?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_copy(&report);
    }
    let v = &report.verification;
    if !v.ok {
        eprintln!(
            "error: verification FAILED: {}; the destination is not a faithful copy (copy again with --force)",
            v.problems.join("; ")
        );
        return Ok(ExitCode::from(2));
    }
    if !json {
        println!("verified: {} holds the same knowledge base", report.to);
    }
    Ok(ExitCode::SUCCESS)
}
