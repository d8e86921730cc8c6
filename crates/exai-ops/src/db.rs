//! `exai db …`: the databases in the data directory (the knowledge base, and `state.sqlite` with
//! conversation threads and validation runs), verified, compacted, backed up online, restored
//! atomically, migrated and measured.
//!
//! A backup is a directory `exai-backup-<UTC time>` holding a consistent copy of each database
//! (`VACUUM INTO`, which reads one snapshot while the daemon goes on writing) and a
//! `manifest.json` with time, sizes, row counts, schema versions and a BLAKE3 checksum per file.
//! It appears only once complete (written under a `.partial` name, then renamed).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use exai_core::Loaded;
use exai_kb::SqliteStore;
use exai_kb::maintenance::{CompactReport, DbStats, VerifyReport};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::{Deserialize, Serialize};

pub const MANIFEST: &str = "manifest.json";
const BACKUP_PREFIX: &str = "exai-backup-";

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
    #[error(
        "an exai daemon is running (pid {pid}); stop it first with `exai daemon stop`, restore, then `exai daemon start`"
    )]
    DaemonRunning { pid: u32 },
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

/// The databases of this configuration that exist: the knowledge base (`kb.database` or
/// `kb.sqlite`) and every other `*.sqlite` in the data directory.
pub fn databases(loaded: &Loaded) -> Vec<DbFile> {
    let kb = exai_server::knowledge::kb_path(loaded);
    let mut out = Vec::new();
    if kb.exists() {
        out.push(DbFile {
            name: "kb".into(),
            path: kb.clone(),
        });
    }
    let mut others: Vec<PathBuf> = std::fs::read_dir(&loaded.data_dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "sqlite") && *p != kb)
                .collect()
        })
        .unwrap_or_default();
    others.sort();
    for path in others {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        // A file named like the knowledge base but not configured as it keeps its own name.
        let name = if stem == "kb" {
            "kb-unused".into()
        } else {
            stem
        };
        out.push(DbFile { name, path });
    }
    out
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
    let path = exai_server::knowledge::kb_path(loaded);
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
    let (options, _) = exai_server::knowledge::kb_options(loaded);
    exai_kb::ann::refresh(&store, options.ann_min_vectors)?;
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
    let path = exai_server::knowledge::kb_path(loaded);
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
}

#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    pub path: String,
    pub manifest: Manifest,
    pub seconds: f64,
    /// Older backups removed to keep the newest `keep`.
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
/// only the newest `keep` backups there.
pub fn backup(loaded: &Loaded, root: &Path, keep: usize) -> Result<BackupReport> {
    let started = std::time::Instant::now();
    let dbs = databases(loaded);
    if dbs.is_empty() {
        return Err(DbError::Invalid(format!(
            "nothing to back up: no database in {} yet",
            loaded.data_dir.display()
        )));
    }
    std::fs::create_dir_all(root).map_err(io(root))?;
    let now = chrono::Utc::now();
    let mut name = format!("{BACKUP_PREFIX}{}", now.format("%Y%m%dT%H%M%S%.3fZ"));
    while root.join(&name).exists() {
        name.push('_');
    }
    let partial = root.join(format!(".{name}.partial"));
    std::fs::create_dir_all(&partial).map_err(io(&partial))?;
    let result = (|| -> Result<Manifest> {
        let mut files = Vec::new();
        for db in &dbs {
            let file = format!("{}.sqlite", db.name);
            let dest = partial.join(&file);
            let conn = open_ro(&db.path)?;
            conn.execute("VACUUM INTO ?1", [dest.to_string_lossy().as_ref()])
                .map_err(sql(&db.path))?;
            drop(conn);
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
                file,
                original: db.path.display().to_string(),
                bytes: std::fs::metadata(&dest).map_err(io(&dest))?.len(),
                blake3: checksum(&dest)?,
                schema_version: schema_version(&copy, &dest)?,
                tables: table_counts(&copy, &dest)?,
            });
        }
        let manifest = Manifest {
            format: 1,
            created_at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            exai_version: env!("CARGO_PKG_VERSION").into(),
            data_dir: loaded.data_dir.display().to_string(),
            files,
        };
        let text =
            serde_json::to_string_pretty(&manifest).map_err(|e| DbError::Invalid(e.to_string()))?;
        let mpath = partial.join(MANIFEST);
        std::fs::write(&mpath, text).map_err(io(&mpath))?;
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
    let pruned = prune_backups(root, keep)?;
    Ok(BackupReport {
        path: final_dir.display().to_string(),
        manifest,
        seconds: started.elapsed().as_secs_f64(),
        pruned,
    })
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

pub fn read_manifest(backup: &Path) -> Result<Manifest> {
    let path = if backup.is_dir() {
        backup.join(MANIFEST)
    } else {
        backup.to_path_buf()
    };
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    serde_json::from_str(&text).map_err(|e| {
        DbError::Invalid(format!(
            "{}: not an exai backup manifest ({e})",
            path.display()
        ))
    })
}

/// Check a backup without touching the live databases: every file present with its size and
/// checksum, and passing SQLite's full integrity check.
pub fn verify_backup(backup: &Path) -> Result<Manifest> {
    let manifest = read_manifest(backup)?;
    let dir = if backup.is_dir() {
        backup.to_path_buf()
    } else {
        backup.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    for f in &manifest.files {
        let path = dir.join(&f.file);
        let bytes = std::fs::metadata(&path).map_err(io(&path))?.len();
        if bytes != f.bytes {
            return Err(DbError::Invalid(format!(
                "{}: {} bytes, the manifest says {}; the backup is damaged",
                path.display(),
                bytes,
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
    Ok(manifest)
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoredFile {
    pub name: String,
    pub path: String,
    /// Where the replaced database was kept, if there was one.
    pub kept: Option<String>,
}

/// Restore a backup: verify it first, refuse while a daemon runs, then swap each database in
/// atomically (rename over the live name), keeping the replaced file (and its WAL) beside it as
/// `<name>.replaced-<time>`.
pub fn restore(loaded: &Loaded, backup: &Path) -> Result<Vec<RestoredFile>> {
    let manifest = verify_backup(backup)?;
    let pid_file = exai_core::paths::DataPaths::new(loaded.data_dir.clone()).pid_file();
    if let Ok(Some(record)) = exai_server::daemon::running(&pid_file) {
        return Err(DbError::DaemonRunning { pid: record.pid });
    }
    let dir = if backup.is_dir() {
        backup.to_path_buf()
    } else {
        backup.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let kb = exai_server::knowledge::kb_path(loaded);
    let mut out = Vec::new();
    for f in &manifest.files {
        let target = if f.name == "kb" {
            kb.clone()
        } else {
            loaded.data_dir.join(&f.file)
        };
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let staged = with_suffix(&target, ".restoring");
        std::fs::copy(dir.join(&f.file), &staged).map_err(io(&staged))?;
        std::fs::File::open(&staged)
            .and_then(|file| file.sync_all())
            .map_err(io(&staged))?;
        let kept = if target.exists() {
            let keep = with_suffix(&target, &format!(".replaced-{stamp}"));
            // The WAL and shared-memory files belong to the replaced database: move them with it
            // so the restored file never sees them.
            for suffix in ["-wal", "-shm"] {
                let from = with_suffix(&target, suffix);
                if from.exists() {
                    let to = with_suffix(&keep, suffix);
                    std::fs::rename(&from, &to).map_err(io(&from))?;
                }
            }
            std::fs::hard_link(&target, &keep).map_err(io(&keep))?;
            Some(keep.display().to_string())
        } else {
            None
        };
        std::fs::rename(&staged, &target).map_err(io(&target))?;
        out.push(RestoredFile {
            name: f.name.clone(),
            path: target.display().to_string(),
            kept,
        });
    }
    Ok(out)
}
