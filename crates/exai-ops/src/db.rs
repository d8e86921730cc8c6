//! `exai db …`: the databases in the data directory (the knowledge base, and `state.sqlite` with
//! conversation threads and validation runs), verified, compacted, backed up online, restored
//! atomically, migrated and measured.
//!
//! A backup is a directory `exai-backup-<UTC time>` holding a consistent copy of each database
//! (`VACUUM INTO`, which reads one snapshot while the daemon goes on writing) and a
//! `manifest.json` with time, sizes, row counts, schema versions and a BLAKE3 checksum per file.
//! It appears only once complete (written under a `.partial` name, then renamed); the `.partial`
//! directory a killed backup leaves behind is removed by the next backup. The configuration
//! files travel in the same manifest (see `config_files`); a restore puts them back only when
//! asked.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use exai_core::Loaded;
use exai_core::private;
use exai_kb::SqliteStore;
use exai_kb::maintenance::{CompactReport, DbStats, VerifyReport};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::{Deserialize, Serialize};

mod config_files;
pub use config_files::{ConfigEntry, ConfigKind, RestoredConfig, SkippedConfig};

pub const MANIFEST: &str = "manifest.json";
/// The manifest format this version writes: 2 added the configuration files; a format 1
/// manifest (databases only) still restores.
const MANIFEST_FORMAT: u32 = 2;
const BACKUP_PREFIX: &str = "exai-backup-";
const PARTIAL_SUFFIX: &str = ".partial";

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Kb(#[from] exai_kb::KbError),
    #[error(transparent)]
    Pg(#[from] exai_pg::PgError),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Lock(#[from] exai_core::lock::LockError),
    #[error("restoring {}: {step} failed ({source}); {outcome}", target.display())]
    Restore {
        target: PathBuf,
        step: &'static str,
        source: std::io::Error,
        outcome: String,
    },
}

type Result<T> = std::result::Result<T, DbError>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DbError + '_ {
    move |source| DbError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn sql(path: &Path) -> impl FnOnce(rusqlite::Error) -> DbError + '_ {
    move |source| DbError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

/// One database file exai keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbFile {
    /// `kb`, `state`, …: the file's stem.
    pub name: String,
    pub path: PathBuf,
}

impl DbFile {
    pub fn is_kb(&self) -> bool {
        self.name == "kb"
    }
}

/// The databases exai keeps, each with the one file name a backup holds it under: the knowledge
/// base, and `state.sqlite` with conversation threads and validation runs. Backups hold these
/// and nothing else; restore refuses a manifest naming anything else, so a backup can never
/// write outside the data directory or over a file exai does not own.
pub const KNOWN_DATABASES: [(&str, &str); 2] = [("kb", "kb.sqlite"), ("state", "state.sqlite")];

/// The file a backup holds database `name` under, if exai keeps such a database.
fn backup_file_name(name: &str) -> Option<&'static str> {
    KNOWN_DATABASES
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, file)| *file)
}

/// Where this configuration keeps database `name` (`kb.database` for the knowledge base).
fn live_path(loaded: &Loaded, name: &str) -> Option<PathBuf> {
    match name {
        "kb" => Some(exai_kb::config::sqlite_path(loaded)),
        _ => backup_file_name(name).map(|file| loaded.data_dir.join(file)),
    }
}

/// The databases of this configuration that exist.
pub fn databases(loaded: &Loaded) -> Vec<DbFile> {
    KNOWN_DATABASES
        .iter()
        .filter_map(|(name, _)| {
            let path = live_path(loaded, name)?;
            path.exists().then(|| DbFile {
                name: (*name).to_string(),
                path,
            })
        })
        .collect()
}

fn open_ro(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql(path))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(sql(path))?;
    Ok(conn)
}

fn open_rw(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql(path))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(sql(path))?;
    Ok(conn)
}

/// Bytes of the file and its WAL.
pub fn file_bytes(path: &Path) -> u64 {
    [path.to_path_buf(), with_suffix(path, "-wal")]
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum()
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Rows per ordinary table (FTS shadow tables and SQLite's own left out).
fn table_counts(conn: &Connection, path: &Path) -> Result<BTreeMap<String, u64>> {
    let names: Vec<String> = {
        let mut stmt = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND sql NOT LIKE 'CREATE VIRTUAL%'
                 AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '%_fts_%' ORDER BY name",
            )
            .map_err(sql(path))?;
        stmt.query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(sql(path))?
    };
    let mut out = BTreeMap::new();
    for name in names {
        let n: i64 = conn
            .query_row(&format!("SELECT count(*) FROM \"{name}\""), [], |r| {
                r.get(0)
            })
            .map_err(sql(path))?;
        out.insert(name, u64::try_from(n).unwrap_or(0));
    }
    Ok(out)
}

/// The knowledge base's `meta.schema_version`, else SQLite's `user_version`.
fn schema_version(conn: &Connection, path: &Path) -> Result<i64> {
    let has_meta: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql(path))?;
    if has_meta.is_some() {
        let v: Option<String> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql(path))?;
        return Ok(v.and_then(|s| s.parse().ok()).unwrap_or(0));
    }
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql(path))
}

fn integrity(conn: &Connection, path: &Path, full: bool) -> Result<Vec<String>> {
    let pragma = if full {
        "integrity_check"
    } else {
        "quick_check"
    };
    let mut stmt = conn
        .prepare(&format!("PRAGMA {pragma}"))
        .map_err(sql(path))?;
    let lines: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(sql(path))?;
    Ok(if lines == ["ok"] { Vec::new() } else { lines })
}

fn checksum(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

// ---------------------------------------------------------------------------------------------
// verify

/// One database's check.
#[derive(Debug, Clone, Serialize)]
pub struct FileCheck {
    pub name: String,
    pub path: String,
    pub bytes: u64,
    /// The knowledge base's detailed report, when this is the knowledge base and it opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kb: Option<VerifyReport>,
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

/// Check every database; `full` runs SQLite's complete integrity check (slower) instead of the
/// quick one. A file that cannot be opened or read is a problem, not an error.
pub fn verify(loaded: &Loaded, full: bool) -> Vec<FileCheck> {
    databases(loaded)
        .into_iter()
        .map(|db| verify_file(&db, full))
        .collect()
}

pub fn verify_file(db: &DbFile, full: bool) -> FileCheck {
    let mut check = FileCheck {
        name: db.name.clone(),
        path: db.path.display().to_string(),
        bytes: file_bytes(&db.path),
        kb: None,
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    if db.is_kb() {
        let store =
            SqliteStore::open_for_check(&db.path).or_else(|_| SqliteStore::open_readonly(&db.path));
        match store.and_then(|s| s.verify(full)) {
            Ok(report) => {
                check.problems.extend(report.problems.iter().cloned());
                check.warnings.extend(report.warnings.iter().cloned());
                check.kb = Some(report);
            }
            Err(e) => check.problems.push(e.to_string()),
        }
        return check;
    }
    let result = open_ro(&db.path).and_then(|conn| {
        let mut problems = integrity(&conn, &db.path, full)?;
        let fk: i64 = conn
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })
            .map_err(sql(&db.path))?;
        if fk > 0 {
            problems.push(format!("{fk} row(s) violate foreign keys"));
        }
        Ok(problems)
    });
    match result {
        Ok(problems) => check.problems = problems,
        Err(e) => check.problems.push(format!(
            "cannot read the database ({e}); it is corrupt or not a database: restore a backup (`exai db restore`)"
        )),
    }
    check
}

// ---------------------------------------------------------------------------------------------
// compact, reindex, stats, migrate

#[derive(Debug, Clone, Serialize)]
pub struct Compacted {
    pub name: String,
    pub bytes_before: u64,
    pub bytes_after: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kb: Option<CompactReport>,
}

/// VACUUM and optimise every database; the knowledge base also drops vectors no chunk uses and
/// merges its keyword index.
pub fn compact(loaded: &Loaded) -> Result<Vec<Compacted>> {
    let mut out = Vec::new();
    for db in databases(loaded) {
        let bytes_before = file_bytes(&db.path);
        let kb = if db.is_kb() {
            Some(SqliteStore::open(&db.path)?.compact()?)
        } else {
            let conn = open_rw(&db.path)?;
            conn.execute_batch("PRAGMA optimize; VACUUM;")
                .map_err(sql(&db.path))?;
            let _: Option<i64> = conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
                .optional()
                .map_err(sql(&db.path))?;
            None
        };
        out.push(Compacted {
            name: db.name,
            bytes_before,
            bytes_after: file_bytes(&db.path),
            kb,
        });
    }
    Ok(out)
}

/// Rebuild the knowledge base's derived indexes (keyword index, SQLite indexes, statistics).
pub fn reindex(loaded: &Loaded) -> Result<u64> {
    let path = exai_kb::config::sqlite_path(loaded);
    if !path.exists() {
        return Err(DbError::Invalid(format!(
            "no knowledge base at {} yet; `exai index PATH --source NAME` creates it",
            path.display()
        )));
    }
    let mut store = SqliteStore::open(&path)?;
    let rows = store.reindex()?;
    // The ANN index is derived too: drop it and build it again from the vectors.
    exai_kb::ann::remove(&path)?;
    let options = exai_kb::KbOptions::from_config(loaded);
    exai_kb::vectors::refresh_ann(&store, &path, options.ann_min_vectors)?;
    Ok(rows)
}

#[derive(Debug, Clone, Serialize)]
pub struct FileStats {
    pub name: String,
    pub path: String,
    pub bytes: u64,
    pub wal_bytes: u64,
    pub schema_version: i64,
    pub tables: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kb: Option<DbStats>,
}

pub fn stats(loaded: &Loaded) -> Result<Vec<FileStats>> {
    let mut out = Vec::new();
    for db in databases(loaded) {
        let conn = open_ro(&db.path)?;
        let wal = with_suffix(&db.path, "-wal");
        out.push(FileStats {
            name: db.name.clone(),
            path: db.path.display().to_string(),
            bytes: std::fs::metadata(&db.path).map_or(0, |m| m.len()),
            wal_bytes: std::fs::metadata(&wal).map_or(0, |m| m.len()),
            schema_version: schema_version(&conn, &db.path)?,
            tables: table_counts(&conn, &db.path)?,
            kb: if db.is_kb() {
                Some(SqliteStore::open_readonly(&db.path)?.stats()?)
            } else {
                None
            },
        });
    }
    Ok(out)
}

#[derive(Debug, Clone, Serialize)]
pub struct Migration {
    pub name: String,
    /// `sqlite` (a file in the data directory) or `postgres` (`database.url`).
    pub backend: String,
    pub from: i64,
    pub to: i64,
    /// Whether this run applied it (false for `--check`).
    pub applied: bool,
    /// How this component migrates when this command does not do it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Migration {
    pub fn pending(&self) -> bool {
        self.from < self.to && !self.applied
    }
}

/// The knowledge base's schema against this build's; `check` only reports. (The conversation
/// and tracking stores migrate themselves when they open.)
pub fn migrate(loaded: &Loaded, check: bool) -> Result<Vec<Migration>> {
    let path = exai_kb::config::sqlite_path(loaded);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let from = SqliteStore::open_readonly(&path)?.schema_version()?;
    let to = exai_kb::store::SCHEMA_VERSION;
    let applied = !check && from < to;
    if applied {
        SqliteStore::open(&path)?;
    }
    Ok(vec![Migration {
        name: "kb".into(),
        backend: "sqlite".into(),
        from,
        to,
        applied,
        note: None,
    }])
}

// ---------------------------------------------------------------------------------------------
// backup and restore

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestFile {
    pub name: String,
    /// File name inside the backup directory.
    pub file: String,
    /// Where it came from.
    pub original: String,
    pub bytes: u64,
    pub blake3: String,
    pub schema_version: i64,
    pub tables: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: u32,
    pub created_at: String,
    pub exai_version: String,
    pub data_dir: String,
    pub files: Vec<ManifestFile>,
    /// The configuration files (absent from manifests of format 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<ConfigEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    pub path: String,
    pub manifest: Manifest,
    pub seconds: f64,
    /// Older backups removed to keep the newest `keep`, and unfinished ones killed backups left.
    pub pruned: Vec<String>,
}

/// The backups directory: `PATH` when given, else `ops.backup_dir`, else `backups/` in the
/// data directory.
pub fn backup_root(loaded: &Loaded, given: Option<&Path>) -> PathBuf {
    if let Some(p) = given {
        return p.to_path_buf();
    }
    let configured = loaded.config.ops.backup_dir.trim();
    if configured.is_empty() {
        loaded.data_dir.join("backups")
    } else {
        PathBuf::from(configured)
    }
}

/// Take a consistent online copy of every database into a new directory under `root`, then keep
/// only the newest `keep` backups there. Directories and files are created private (0700/0600).
pub fn backup(loaded: &Loaded, root: &Path, keep: usize) -> Result<BackupReport> {
    let started = std::time::Instant::now();
    let dbs = databases(loaded);
    if dbs.is_empty() {
        return Err(DbError::Invalid(format!(
            "nothing to back up: no database in {} yet",
            loaded.data_dir.display()
        )));
    }
    private::create_dir_all(root).map_err(io(root))?;
    let abandoned = remove_abandoned(root);
    let now = chrono::Utc::now();
    let mut name = format!("{BACKUP_PREFIX}{}", now.format("%Y%m%dT%H%M%S%.3fZ"));
    while root.join(&name).exists() {
        name.push('_');
    }
    // The pid in the name tells a later backup whether this one is still running.
    let partial = root.join(format!(".{name}.{}{PARTIAL_SUFFIX}", std::process::id()));
    private::create_dir_all(&partial).map_err(io(&partial))?;
    let result = (|| -> Result<Manifest> {
        // First: a wrong `ops.backup_extra` fails before the long database copies.
        let config = config_files::back_up(loaded, &partial)?;
        let mut files = Vec::new();
        for db in &dbs {
            let file = backup_file_name(&db.name).ok_or_else(|| {
                DbError::Invalid(format!("{}: not a database exai keeps", db.name))
            })?;
            let dest = partial.join(file);
            // VACUUM INTO writes into an empty file as into a new one, and keeps its mode.
            private::prepare_sqlite(&dest).map_err(io(&dest))?;
            let conn = open_ro(&db.path)?;
            conn.execute("VACUUM INTO ?1", [dest.to_string_lossy().as_ref()])
                .map_err(sql(&db.path))?;
            drop(conn);
            self_contained(&dest)?;
            let copy = open_ro(&dest)?;
            let problems = integrity(&copy, &dest, false)?;
            if !problems.is_empty() {
                return Err(DbError::Invalid(format!(
                    "the copy of {} fails its integrity check ({}); the source may be corrupt: run `exai db verify`",
                    db.path.display(),
                    problems.join("; ")
                )));
            }
            files.push(ManifestFile {
                name: db.name.clone(),
                file: file.to_string(),
                original: db.path.display().to_string(),
                bytes: std::fs::metadata(&dest).map_err(io(&dest))?.len(),
                blake3: checksum(&dest)?,
                schema_version: schema_version(&copy, &dest)?,
                tables: table_counts(&copy, &dest)?,
            });
        }
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            created_at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            exai_version: env!("CARGO_PKG_VERSION").into(),
            data_dir: loaded.data_dir.display().to_string(),
            files,
            config,
        };
        let text =
            serde_json::to_string_pretty(&manifest).map_err(|e| DbError::Invalid(e.to_string()))?;
        let mpath = partial.join(MANIFEST);
        private::write(&mpath, text).map_err(io(&mpath))?;
        Ok(manifest)
    })();
    let manifest = match result {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(e);
        }
    };
    let final_dir = root.join(&name);
    std::fs::rename(&partial, &final_dir).map_err(io(&final_dir))?;
    let mut pruned = abandoned;
    pruned.extend(prune_backups(root, keep)?);
    Ok(BackupReport {
        path: final_dir.display().to_string(),
        manifest,
        seconds: started.elapsed().as_secs_f64(),
        pruned,
    })
}

/// Make a database copy one self-contained file: in rollback-journal mode a copy never needs a
/// `-wal` beside it, so it cannot be separated from one (SQLite folds any WAL in and removes
/// it when it leaves WAL mode; a copy already in that mode is not written to).
fn self_contained(path: &Path) -> Result<()> {
    let conn = open_rw(path)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
        .map_err(sql(path))?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(DbError::Invalid(format!(
            "{}: cannot leave journal mode {mode}",
            path.display()
        )));
    }
    Ok(())
}

/// A backup killed mid-way leaves its `.partial` directory behind, as large as the databases it
/// was copying. Remove those whose process is gone; one still running keeps its own (the name
/// carries the pid). A leftover only costs space, so a failure here never stops a backup.
fn remove_abandoned(root: &Path) -> Vec<String> {
    exai_core::pidfile::abandoned(root, BACKUP_PREFIX, PARTIAL_SUFFIX)
        .into_iter()
        .filter(|path| std::fs::remove_dir_all(path).is_ok())
        .map(|path| path.display().to_string())
        .collect()
}

/// Complete backups under `root`, oldest first.
pub fn list_backups(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(BACKUP_PREFIX))
                        && p.join(MANIFEST).is_file()
                })
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

fn prune_backups(root: &Path, keep: usize) -> Result<Vec<String>> {
    let all = list_backups(root);
    let excess = all.len().saturating_sub(keep.max(1));
    let mut pruned = Vec::new();
    for dir in all.into_iter().take(excess) {
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        pruned.push(dir.display().to_string());
    }
    Ok(pruned)
}

/// A manifest lists a few files; anything bigger is not one.
const MANIFEST_MAX_BYTES: u64 = 1 << 20;

/// The backup directory of `backup` (the directory itself or its `manifest.json`).
fn backup_dir(backup: &Path) -> PathBuf {
    if backup.is_dir() {
        backup.to_path_buf()
    } else {
        backup.parent().map(Path::to_path_buf).unwrap_or_default()
    }
}

pub fn read_manifest(backup: &Path) -> Result<Manifest> {
    let path = if backup.is_dir() {
        backup.join(MANIFEST)
    } else {
        backup.to_path_buf()
    };
    let mut text = String::new();
    std::fs::File::open(&path)
        .and_then(|f| f.take(MANIFEST_MAX_BYTES + 1).read_to_string(&mut text))
        .map_err(io(&path))?;
    if text.len() as u64 > MANIFEST_MAX_BYTES {
        return Err(DbError::Invalid(format!(
            "{}: larger than {MANIFEST_MAX_BYTES} bytes; not an exai backup manifest",
            path.display()
        )));
    }
    serde_json::from_str(&text).map_err(|e| {
        DbError::Invalid(format!(
            "{}: not an exai backup manifest ({e})",
            path.display()
        ))
    })
}

/// Refuse a manifest that lists anything but the databases exai keeps, each once, under its
/// own file name: a name from the manifest never becomes a path.
fn check_manifest_names(manifest: &Manifest, backup: &Path) -> Result<()> {
    let known = KNOWN_DATABASES
        .iter()
        .map(|(name, file)| format!("{name} ({file})"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut seen = Vec::new();
    for f in &manifest.files {
        if backup_file_name(&f.name) != Some(f.file.as_str()) {
            return Err(DbError::Invalid(format!(
                "{}: the manifest lists {:?} as {:?}, which is not a database exai keeps; a backup holds only {known}. Refusing this backup (nothing was changed): it was not written by exai or has been altered",
                backup.display(),
                f.file,
                f.name
            )));
        }
        if seen.contains(&f.name) {
            return Err(DbError::Invalid(format!(
                "{}: the manifest lists {:?} twice; refusing this backup (nothing was changed)",
                backup.display(),
                f.name
            )));
        }
        seen.push(f.name.clone());
    }
    if manifest.files.is_empty() {
        return Err(DbError::Invalid(format!(
            "{}: the manifest lists no database",
            backup.display()
        )));
    }
    check_format_and_config(manifest, backup)
}

/// A manifest from a newer exai may hold what this one would restore wrongly; configuration
/// entries follow their own naming rules.
fn check_format_and_config(manifest: &Manifest, backup: &Path) -> Result<()> {
    if manifest.format > MANIFEST_FORMAT {
        return Err(DbError::Invalid(format!(
            "{}: manifest format {} was written by a newer exai ({}); this one reads up to format {MANIFEST_FORMAT}: restore it with that version",
            backup.display(),
            manifest.format,
            manifest.exai_version
        )));
    }
    config_files::check_names(&manifest.config, backup)
}

/// Check a backup without touching the live databases: only databases exai keeps, every file
/// present as a regular file with its size and checksum, and passing SQLite's full integrity
/// check.
pub fn verify_backup(backup: &Path) -> Result<Manifest> {
    let manifest = read_manifest(backup)?;
    check_manifest_names(&manifest, backup)?;
    let dir = backup_dir(backup);
    for f in &manifest.files {
        let path = dir.join(&f.file);
        let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
        if !meta.is_file() {
            return Err(DbError::Invalid(format!(
                "{}: not a regular file; the backup is damaged",
                path.display()
            )));
        }
        if meta.len() != f.bytes {
            return Err(DbError::Invalid(format!(
                "{}: {} bytes, the manifest says {}; the backup is damaged",
                path.display(),
                meta.len(),
                f.bytes
            )));
        }
        let sum = checksum(&path)?;
        if sum != f.blake3 {
            return Err(DbError::Invalid(format!(
                "{}: checksum mismatch; the backup is damaged",
                path.display()
            )));
        }
        let problems = integrity(&open_ro(&path)?, &path, true)?;
        if !problems.is_empty() {
            return Err(DbError::Invalid(format!(
                "{}: integrity check failed: {}",
                path.display(),
                problems.join("; ")
            )));
        }
    }
    config_files::verify(&manifest.config, &dir)?;
    Ok(manifest)
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoredFile {
    pub name: String,
    pub path: String,
    /// Where the replaced database was kept, if there was one.
    pub kept: Option<String>,
}

/// A database file's companions: SQLite's write-ahead log and its index. They belong to the
/// database file beside them; a database paired with another file's WAL is corrupt.
const COMPANIONS: [&str; 2] = ["-wal", "-shm"];

/// Files a rolled-back journal-mode open may leave beside a staged copy.
const STAGED_LEFTOVERS: [&str; 4] = ["", "-wal", "-shm", "-journal"];

/// One database to restore.
struct Planned {
    name: String,
    /// The verified file in the backup, and its checksum.
    source: PathBuf,
    blake3: String,
    /// The live database.
    target: PathBuf,
    /// The copy beside the target, renamed over it in the swap.
    staged: PathBuf,
    /// The name the replaced database (and its WAL) is kept under.
    keep: PathBuf,
}

/// Restore a backup. In order, each step changing nothing live until the one before succeeded:
/// refuse a manifest naming anything but exai's databases; take the data directory's lock
/// exclusively (refused while any exai process has the databases open); verify the backup;
/// stage every database beside its live file as one self-contained file; then swap each in (the
/// live database and its WAL kept together under `<name>.replaced-<time>`). A failed swap puts
/// back what it changed, and the databases swapped before it, so a restore applies completely
/// or not at all.
pub fn restore(loaded: &Loaded, backup: &Path) -> Result<Vec<RestoredFile>> {
    restore_with_config(loaded, backup, false).map(|r| r.databases)
}

/// What a restore put back.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    pub databases: Vec<RestoredFile>,
    /// Configuration files written back (`with_config` only).
    pub config: Vec<RestoredConfig>,
    /// Configuration files in the backup that were not written back, and why.
    pub config_skipped: Vec<SkippedConfig>,
}

/// [`restore`], and with `with_config` the backup's configuration files too, after the
/// databases and under the same rule: if writing one fails, the configuration files written so
/// far and the databases are put back as they were.
pub fn restore_with_config(loaded: &Loaded, backup: &Path, with_config: bool) -> Result<Restored> {
    let manifest = read_manifest(backup)?;
    check_manifest_names(&manifest, backup)?;
    let _lock = exai_core::lock::DataLock::exclusive(&loaded.data_dir)?;
    verify_backup(backup)?;
    let dir = backup_dir(backup);
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let (config_plan, config_skipped) = if with_config {
        config_files::plan(loaded, &manifest.config, &dir)
    } else {
        (Vec::new(), Vec::new())
    };
    let mut plan = Vec::new();
    for f in &manifest.files {
        let target = live_path(loaded, &f.name)
            .ok_or_else(|| DbError::Invalid(format!("{}: not a database exai keeps", f.name)))?;
        plan.push(Planned {
            name: f.name.clone(),
            source: dir.join(&f.file),
            blake3: f.blake3.clone(),
            staged: with_suffix(&target, ".restoring"),
            keep: unique_keep(&target, &stamp),
            target,
        });
    }

    for p in &plan {
        if let Err(e) = stage(&p.source, &p.staged, &p.blake3) {
            plan.iter().for_each(|p| remove_staged(&p.staged));
            return Err(e);
        }
    }

    let mut done: Vec<Swapped> = Vec::new();
    for p in &plan {
        match swap_in(&p.staged, &p.target, &p.keep) {
            Ok(swapped) => done.push(swapped),
            Err(failure) => {
                let mut undo: Vec<String> = failure.undo.err().into_iter().collect();
                for swapped in done.iter().rev() {
                    if let Err(e) = swapped.undo() {
                        undo.push(e);
                    }
                }
                plan.iter().for_each(|p| remove_staged(&p.staged));
                return Err(DbError::Restore {
                    target: p.target.clone(),
                    step: failure.step,
                    source: failure.source,
                    outcome: if undo.is_empty() {
                        "everything was put back as it was; no database changed".into()
                    } else {
                        format!(
                            "putting the previous files back failed too: {}",
                            undo.join("; ")
                        )
                    },
                });
            }
        }
    }
    let config = match config_files::apply(&config_plan, &stamp) {
        Ok(config) => config,
        Err(failed) => return Err(undo_config_restore(failed, &done)),
    };
    Ok(Restored {
        databases: plan
            .iter()
            .zip(done)
            .map(|(p, swapped)| RestoredFile {
                name: p.name.clone(),
                path: p.target.display().to_string(),
                kept: swapped.keep.map(|k| k.display().to_string()),
            })
            .collect(),
        config,
        config_skipped,
    })
}

/// A configuration file could not be written: put back the ones written and the databases.
fn undo_config_restore(failed: config_files::Failed, swapped: &[Swapped]) -> DbError {
    let config_files::Failed { error, written } = failed;
    let mut undo: Vec<String> = Vec::new();
    for w in written.iter().rev() {
        if let Err(e) = w.undo() {
            undo.push(e);
        }
    }
    for s in swapped.iter().rev() {
        if let Err(e) = s.undo() {
            undo.push(e);
        }
    }
    let outcome = if undo.is_empty() {
        "the databases and configuration files were put back as they were; nothing changed".into()
    } else {
        format!(
            "putting the previous files back failed too: {}",
            undo.join("; ")
        )
    };
    DbError::Invalid(format!(
        "restoring the configuration failed ({error}); {outcome}"
    ))
}

/// The newest complete backup under `root` (`exai db restore latest`).
pub fn latest_backup(root: &Path) -> Result<PathBuf> {
    list_backups(root).pop().ok_or_else(|| {
        DbError::Invalid(format!(
            "no complete backup in {}; `exai db backup` makes one (or name a backup directory)",
            root.display()
        ))
    })
}

/// `<target>.replaced-<stamp>`, with a counter when an earlier restore in the same second took
/// that name.
fn unique_keep(target: &Path, stamp: &str) -> PathBuf {
    let taken = |keep: &Path| {
        std::iter::once("")
            .chain(COMPANIONS)
            .any(|s| with_suffix(keep, s).symlink_metadata().is_ok())
    };
    let mut keep = with_suffix(target, &format!(".replaced-{stamp}"));
    let mut n = 1;
    while taken(&keep) {
        keep = with_suffix(target, &format!(".replaced-{stamp}-{n}"));
        n += 1;
    }
    keep
}

/// Copy a verified backup file beside its target, private, checked against the manifest's
/// checksum, self-contained and on disk.
fn stage(source: &Path, staged: &Path, blake3: &str) -> Result<()> {
    // A leftover from a restore that was killed; the exclusive lock says none is running.
    remove_staged(staged);
    if let Some(parent) = staged.parent().filter(|p| !p.as_os_str().is_empty()) {
        private::create_dir_all(parent).map_err(io(parent))?;
    }
    fault().map_err(io(staged))?;
    let mut from = std::fs::File::open(source).map_err(io(source))?;
    let mut to = private::options()
        .write(true)
        .create_new(true)
        .open(staged)
        .map_err(io(staged))?;
    std::io::copy(&mut from, &mut to).map_err(io(staged))?;
    to.sync_all().map_err(io(staged))?;
    drop(to);
    if checksum(staged)? != blake3 {
        return Err(DbError::Invalid(format!(
            "{}: the copy of {} does not match the backup's checksum; is the disk failing?",
            staged.display(),
            source.display()
        )));
    }
    fault().map_err(io(staged))?;
    self_contained(staged)?;
    std::fs::File::open(staged)
        .and_then(|f| f.sync_all())
        .map_err(io(staged))
}

fn remove_staged(staged: &Path) {
    for suffix in STAGED_LEFTOVERS {
        let _ = std::fs::remove_file(with_suffix(staged, suffix));
    }
}

/// A database swapped in, with what it takes to put the previous one back.
struct Swapped {
    target: PathBuf,
    /// The previous database's name now, when there was one.
    keep: Option<PathBuf>,
    /// The previous database's companions (`-wal`, `-shm`) that existed.
    companions: Vec<&'static str>,
}

/// A failed swap: which step, why, and whether its own changes were put back.
struct SwapFailure {
    step: &'static str,
    source: std::io::Error,
    undo: std::result::Result<(), String>,
}

/// Put `staged` in place of `target`. The live database and its companions get a second name
/// first (hard links: nothing changes under the live names), the companions are then removed
/// from the live names (`-shm` first: without its WAL it is only a stale index), and finally
/// one rename puts the restored file in place. So the live database is never paired with
/// another file's WAL, and each failure undoes exactly what was done before it.
fn swap_in(staged: &Path, target: &Path, keep: &Path) -> std::result::Result<Swapped, SwapFailure> {
    let exists = |p: &Path| p.symlink_metadata().is_ok();
    let had_database = exists(target);
    let companions: Vec<&'static str> = COMPANIONS
        .into_iter()
        .filter(|s| exists(&with_suffix(target, s)))
        .collect();
    let members: Vec<&'static str> = had_database
        .then_some("")
        .into_iter()
        .chain(companions.iter().copied())
        .collect();

    let mut linked: Vec<&'static str> = Vec::new();
    for suffix in &members {
        let linking = fault().and_then(|()| {
            std::fs::hard_link(with_suffix(target, suffix), with_suffix(keep, suffix))
        });
        if let Err(source) = linking {
            return Err(SwapFailure {
                step: "keeping the replaced files",
                source,
                undo: unlink(keep, &linked),
            });
        }
        linked.push(suffix);
    }

    let mut retired: Vec<&'static str> = Vec::new();
    for suffix in companions.iter().rev() {
        let removing = fault().and_then(|()| std::fs::remove_file(with_suffix(target, suffix)));
        if let Err(source) = removing {
            return Err(SwapFailure {
                step: "setting the replaced WAL aside",
                source,
                undo: relink(keep, target, &retired).and_then(|()| unlink(keep, &linked)),
            });
        }
        retired.push(suffix);
    }

    if let Err(source) = fault().and_then(|()| std::fs::rename(staged, target)) {
        return Err(SwapFailure {
            step: "renaming the restored database into place",
            source,
            undo: relink(keep, target, &retired).and_then(|()| unlink(keep, &linked)),
        });
    }
    sync_parent(target);
    Ok(Swapped {
        target: target.to_path_buf(),
        keep: had_database.then(|| keep.to_path_buf()),
        companions,
    })
}

impl Swapped {
    /// Put the previous database back (another database of the same restore failed): the
    /// database first, in one rename over the restored file, then its companions, which never
    /// meet the restored file.
    fn undo(&self) -> std::result::Result<(), String> {
        let Some(keep) = &self.keep else {
            return fault()
                .and_then(|()| std::fs::remove_file(&self.target))
                .map_err(|e| {
                    format!(
                        "{} was restored but there was no database before; remove it by hand ({e})",
                        self.target.display()
                    )
                });
        };
        let moved = std::iter::once("")
            .chain(self.companions.iter().copied())
            .try_for_each(|suffix| {
                fault().and_then(|()| {
                    std::fs::rename(with_suffix(keep, suffix), with_suffix(&self.target, suffix))
                })
            });
        sync_parent(&self.target);
        moved.map_err(|e| {
            format!(
                "{e}; the previous {} is kept as {} (with {} beside it): move those back to {} by hand",
                self.target.display(),
                keep.display(),
                self.companions
                    .iter()
                    .map(|s| with_suffix(keep, s).display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                self.target.display()
            )
        })
    }
}

/// Remove the second names made so far.
fn unlink(keep: &Path, suffixes: &[&str]) -> std::result::Result<(), String> {
    for suffix in suffixes {
        let path = with_suffix(keep, suffix);
        fault()
            .and_then(|()| std::fs::remove_file(&path))
            .map_err(|e| {
                format!(
                    "cannot remove {} ({e}); it is a spare name, delete it by hand",
                    path.display()
                )
            })?;
    }
    Ok(())
}

/// Give retired companions their live names back.
fn relink(keep: &Path, target: &Path, suffixes: &[&str]) -> std::result::Result<(), String> {
    for suffix in suffixes {
        let (from, to) = (with_suffix(keep, suffix), with_suffix(target, suffix));
        fault()
            .and_then(|()| std::fs::hard_link(&from, &to))
            .map_err(|e| {
                format!(
                    "cannot put {} back as {} ({e}); {} still belongs with {}: move {} to {} by hand before anything opens the database",
                    from.display(),
                    to.display(),
                    from.display(),
                    target.display(),
                    from.display(),
                    to.display()
                )
            })?;
    }
    Ok(())
}

/// Make renames in `path`'s directory durable; best effort, a failure here loses no data that
/// the next successful sync would not save.
fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all())
    {
        tracing::warn!(dir = %dir.display(), "cannot sync the directory: {e}");
    }
}

/// Failure injection for the restore's unit tests: every file-system step of staging and
/// swapping asks here first, and a test makes the n-th ask fail.
#[cfg(test)]
mod faults {
    use std::cell::RefCell;

    thread_local! {
        static PLAN: RefCell<(usize, Vec<usize>)> = const { RefCell::new((0, Vec::new())) };
    }

    /// Fail the steps with these numbers (counted from 0 from now on).
    pub fn fail_at(steps: &[usize]) {
        PLAN.with(|p| *p.borrow_mut() = (0, steps.to_vec()));
    }

    /// Steps asked since `fail_at`.
    pub fn steps() -> usize {
        PLAN.with(|p| p.borrow().0)
    }

    pub fn check() -> std::io::Result<()> {
        PLAN.with(|p| {
            let mut p = p.borrow_mut();
            let n = p.0;
            p.0 += 1;
            if p.1.contains(&n) {
                Err(std::io::Error::other(format!(
                    "injected failure at step {n}"
                )))
            } else {
                Ok(())
            }
        })
    }
}

#[inline]
fn fault() -> std::io::Result<()> {
    #[cfg(test)]
    return faults::check();
    #[cfg(not(test))]
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    use exai_core::config::{Inputs, load};

    struct Fixture {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        home: PathBuf,
        loaded: Loaded,
        backup: PathBuf,
    }

    fn loaded_for(home: &Path) -> Loaded {
        load(&Inputs {
            env: vec![("EXAI_HOME".into(), home.display().to_string())],
            ..Default::default()
        })
        .unwrap()
    }

    fn rows(path: &Path) -> Vec<String> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let mut stmt = conn.prepare("SELECT v FROM t ORDER BY rowid").unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap()
    }

    /// A database at `path` in WAL mode whose last commit is only in its `-wal` (as a process
    /// killed mid-run leaves it): copied, with its WAL and index, from one still open.
    fn live_database(path: &Path, scratch: &Path) {
        std::fs::create_dir_all(scratch).unwrap();
        let db = scratch.join("db.sqlite");
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
             CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('live');
             PRAGMA wal_checkpoint(TRUNCATE); INSERT INTO t VALUES ('only in the wal');",
        )
        .unwrap();
        for suffix in ["", "-wal", "-shm"] {
            std::fs::copy(with_suffix(&db, suffix), with_suffix(path, suffix)).unwrap();
        }
        drop(conn);
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let home = root.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let loaded = loaded_for(&home);
        for (name, file) in KNOWN_DATABASES {
            let conn = Connection::open(home.join(file)).unwrap();
            conn.execute_batch(&format!(
                "CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('{name} from the backup');"
            ))
            .unwrap();
        }
        let backup = PathBuf::from(backup(&loaded, &root.join("backups"), 5).unwrap().path);
        for (name, file) in KNOWN_DATABASES {
            std::fs::remove_file(home.join(file)).unwrap();
            live_database(&home.join(file), &root.join("scratch").join(name));
        }
        Fixture {
            _tmp: tmp,
            root,
            home,
            loaded,
            backup,
        }
    }

    /// Every file under `dir`: path, content hash and inode.
    fn tree(dir: &Path) -> BTreeMap<PathBuf, (String, u64)> {
        let mut out = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                let meta = std::fs::symlink_metadata(&path).unwrap();
                if meta.is_dir() {
                    stack.push(path);
                } else {
                    let hash = blake3::hash(&std::fs::read(&path).unwrap());
                    out.insert(path, (hash.to_hex().to_string(), meta.ino()));
                }
            }
        }
        out
    }

    fn edit_manifest(backup: &Path, edit: impl FnOnce(&mut Manifest)) {
        let mut manifest = read_manifest(backup).unwrap();
        edit(&mut manifest);
        std::fs::write(
            backup.join(MANIFEST),
            serde_json::to_string(&manifest).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn hostile_manifests_are_refused_before_anything_changes() {
        let f = fixture();
        // A file the hostile entries point at, with the right size and checksum, so only the
        // name check stands between it and the restore.
        let genuine = read_manifest(&f.backup).unwrap().files[0].clone();
        let planted = f.root.join("evil");
        std::fs::copy(f.backup.join(&genuine.file), &planted).unwrap();
        let entry = |name: &str, file: String| ManifestFile {
            name: name.into(),
            file,
            ..genuine.clone()
        };
        let hostile: Vec<(&str, ManifestFile)> = vec![
            ("escape", entry("evil", "../../evil".into())),
            (
                "escape under a known name",
                entry("kb", "../../evil".into()),
            ),
            ("absolute path", entry("kb", planted.display().to_string())),
            ("unknown name", entry("other", "other.sqlite".into())),
            ("known file, other name", entry("other", "kb.sqlite".into())),
            (
                "state under the kb name",
                entry("kb", "state.sqlite".into()),
            ),
        ];
        let pristine = read_manifest(&f.backup).unwrap();
        for (what, bad) in hostile {
            edit_manifest(&f.backup, |m| {
                *m = pristine.clone();
                m.files.push(bad);
            });
            let before = tree(&f.root);
            let err = restore(&f.loaded, &f.backup).unwrap_err().to_string();
            assert!(
                err.contains("not a database exai keeps") && err.contains("nothing was changed"),
                "{what}: {err}"
            );
            let check = verify_backup(&f.backup).unwrap_err().to_string();
            assert!(
                check.contains("not a database exai keeps"),
                "{what}: {check}"
            );
            assert_eq!(tree(&f.root), before, "{what}: something changed");
        }
        edit_manifest(&f.backup, |m| {
            *m = pristine.clone();
            m.files.push(pristine.files[0].clone());
        });
        let err = restore(&f.loaded, &f.backup).unwrap_err().to_string();
        assert!(err.contains("twice"), "{err}");
        assert!(
            !f.home.join("exai.lock").exists(),
            "refused before the lock"
        );
    }

    #[test]
    fn restore_swaps_in_and_keeps_each_replaced_database_with_its_wal() {
        let f = fixture();
        let restored = restore(&f.loaded, &f.backup).unwrap();
        assert_eq!(
            restored.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["kb", "state"]
        );
        for (r, (name, file)) in restored.iter().zip(KNOWN_DATABASES) {
            let live = f.home.join(file);
            assert_eq!(rows(&live), [format!("{name} from the backup")]);
            assert_eq!(private::mode(&live).unwrap(), 0o600);
            for suffix in COMPANIONS {
                assert!(!with_suffix(&live, suffix).exists(), "{name}{suffix}");
            }
            // The replaced database, with the commit only its WAL held.
            let kept = PathBuf::from(r.kept.as_deref().unwrap());
            assert!(with_suffix(&kept, "-wal").exists());
            assert_eq!(rows(&kept), ["live", "only in the wal"]);
            assert!(!with_suffix(&live, ".restoring").exists());
        }
        // A second restore in the same second does not reuse the kept names.
        let again = restore(&f.loaded, &f.backup).unwrap();
        assert_ne!(again[0].kept, restored[0].kept);
    }

    #[test]
    fn restore_refuses_while_a_process_holds_the_databases() {
        let f = fixture();
        let server = exai_core::lock::DataLock::shared(&f.home, Duration::ZERO).unwrap();
        let before = tree(&f.root);
        let err = restore(&f.loaded, &f.backup).unwrap_err();
        assert!(matches!(err, DbError::Lock(_)), "{err}");
        assert!(err.to_string().contains("stop it first"), "{err}");
        let mut after = tree(&f.root);
        // The lock file is the one thing the attempt may touch (it records the last taker).
        let lock = f.home.join(exai_core::lock::LOCK_FILE);
        after.insert(lock.clone(), before[&lock].clone());
        assert_eq!(after, before);
        drop(server);
        restore(&f.loaded, &f.backup).unwrap();
    }

    /// Inject a failure at every file-system step of staging and swapping in turn: each failed
    /// restore leaves every live database exactly as it was, with its own WAL, and no stray
    /// files; the run after the last step succeeds.
    #[test]
    fn every_failed_step_leaves_each_database_with_its_own_wal() {
        let mut failures = 0;
        for step in 0.. {
            let f = fixture();
            let live: Vec<PathBuf> = KNOWN_DATABASES
                .iter()
                .flat_map(|(_, file)| {
                    ["", "-wal", "-shm"].map(|s| with_suffix(&f.home.join(file), s))
                })
                .collect();
            let inodes: Vec<u64> = live
                .iter()
                .map(|p| std::fs::metadata(p).unwrap().ino())
                .collect();
            let home_before = tree(&f.home);
            faults::fail_at(&[step]);
            let result = restore(&f.loaded, &f.backup);
            let asked = faults::steps();
            faults::fail_at(&[]);
            let Err(err) = result else {
                assert_eq!(
                    step, asked,
                    "succeeded with a fault injected at step {step}"
                );
                break;
            };
            failures += 1;
            let text = err.to_string();
            assert!(
                text.contains(&format!("injected failure at step {step}")),
                "{text}"
            );
            let after: Vec<u64> = live
                .iter()
                .map(|p| std::fs::metadata(p).map_or(0, |m| m.ino()))
                .collect();
            assert_eq!(after, inodes, "step {step}: a live file moved ({text})");
            let mut home_after = tree(&f.home);
            home_after.retain(|p, _| !p.ends_with(exai_core::lock::LOCK_FILE));
            assert_eq!(
                home_after, home_before,
                "step {step}: stray or changed files"
            );
            if matches!(err, DbError::Restore { .. }) {
                assert!(text.contains("no database changed"), "{text}");
            }
            for (_, file) in KNOWN_DATABASES {
                assert_eq!(rows(&f.home.join(file)), ["live", "only in the wal"]);
            }
        }
        // Two databases: staging and swapping each takes several steps.
        assert!(failures >= 12, "only {failures} steps were tried");
    }

    #[test]
    fn a_failed_undo_names_where_the_previous_database_and_its_wal_are() {
        let f = fixture();
        faults::fail_at(&[usize::MAX]);
        restore(&f.loaded, &f.backup).unwrap();
        let steps = faults::steps();
        faults::fail_at(&[]);

        let f = fixture();
        // The last step is the rename of the second database (state); undoing its own swap
        // takes five steps (two relinks, three unlinks); the step after those is the first
        // rename that puts the knowledge base back.
        faults::fail_at(&[steps - 1, steps + 5]);
        let err = restore(&f.loaded, &f.backup).unwrap_err().to_string();
        faults::fail_at(&[]);
        assert!(
            err.contains("putting the previous files back failed too") && err.contains("by hand"),
            "{err}"
        );
        // The knowledge base stayed restored; its predecessor is kept whole, WAL included.
        let kb = f.home.join("kb.sqlite");
        assert_eq!(rows(&kb), ["kb from the backup"]);
        let kept: Vec<PathBuf> = std::fs::read_dir(&f.home)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                name.starts_with("kb.sqlite.replaced-")
                    && !name.ends_with("-wal")
                    && !name.ends_with("-shm")
            })
            .collect();
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert!(err.contains(&kept[0].display().to_string()), "{err}");
        assert!(with_suffix(&kept[0], "-wal").exists());
        assert_eq!(rows(&kept[0]), ["live", "only in the wal"]);
        // The state database was put back with its WAL.
        assert_eq!(
            rows(&f.home.join("state.sqlite")),
            ["live", "only in the wal"]
        );
    }

    #[test]
    fn backups_are_private_self_contained_and_hold_only_known_databases() {
        let f = fixture();
        std::fs::write(f.home.join("notes.sqlite"), "not exai's").unwrap();
        let report = backup(&f.loaded, &f.root.join("backups"), 5).unwrap();
        let dir = PathBuf::from(&report.path);
        assert_eq!(
            report
                .manifest
                .files
                .iter()
                .map(|m| m.file.as_str())
                .collect::<Vec<_>>(),
            ["kb.sqlite", "state.sqlite"]
        );
        assert_eq!(private::mode(&f.root.join("backups")).unwrap(), 0o700);
        assert_eq!(private::mode(&dir).unwrap(), 0o700);
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(private::mode(&path).unwrap(), 0o600, "{}", path.display());
            names.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
        names.sort();
        assert_eq!(names, ["kb.sqlite", "manifest.json", "state.sqlite"]);
        // Rollback-journal mode: the copy needs no WAL (header bytes 18 and 19 are 1).
        let header = std::fs::read(dir.join("kb.sqlite")).unwrap();
        assert_eq!(&header[18..20], [1, 1]);
        // The live commit that only the WAL held is in the copy.
        assert_eq!(rows(&dir.join("kb.sqlite")), ["live", "only in the wal"]);
    }

    #[test]
    fn a_later_backup_removes_what_killed_ones_left_but_not_a_running_ones() {
        let root = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap(); // reaped: its pid names no process now
        let partial = |pid: &str| {
            root.path().join(format!(
                ".{BACKUP_PREFIX}20260101T000000.000Z{pid}{PARTIAL_SUFFIX}"
            ))
        };
        let killed = partial(&format!(".{}", child.id()));
        let running = partial(&format!(".{}", std::process::id()));
        let no_pid = partial("");
        let complete = root
            .path()
            .join(format!("{BACKUP_PREFIX}20260101T000000.000Z"));
        for dir in [&killed, &running, &no_pid, &complete] {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join("kb.sqlite"), b"half a copy").unwrap();
        }
        assert_eq!(
            remove_abandoned(root.path()),
            vec![killed.display().to_string()]
        );
        assert!(!killed.exists());
        assert!(running.exists() && no_pid.exists() && complete.exists());
    }
}
