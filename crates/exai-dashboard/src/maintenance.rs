//! The Maintenance page's API: `exai db verify` and `exai db backup` as actions, and the backups
//! list with each backup's time, size and whether it checks out. The actions are the CLI's own
//! functions (`exai_ops::db`); one runs at a time, since both read every database in full.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use exai_ops::{db, pg};
use serde::{Deserialize, Serialize};

use crate::context::Ctx;
use crate::error::{ApiError, ApiResult};

pub(crate) fn routes() -> Router<Ctx> {
    Router::new()
        .route("/verify", post(verify))
        .route("/backup", post(backup))
        .route("/backups", get(backups))
}

/// What the page keeps ([`crate::Dashboard::maintenance`]): the action running now, and what is
/// known of each backup (a backup never changes once written, so one check holds until it is
/// removed).
#[derive(Default)]
pub(crate) struct Maintenance {
    running: Mutex<Option<&'static str>>,
    checked: Mutex<HashMap<PathBuf, Result<(), String>>>,
}

/// The running action; the slot frees itself when the action ends, however it ends.
struct Slot(Ctx);

impl Drop for Slot {
    fn drop(&mut self) {
        *self
            .0
            .maintenance
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }
}

impl Maintenance {
    fn claim(&self, ctx: &Ctx, action: &'static str) -> Result<Slot, ApiError> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(other) = *running {
            return Err(ApiError::conflict(format!(
                "a database {other} is running; wait for it to finish, then try again"
            )));
        }
        *running = Some(action);
        Ok(Slot(ctx.clone()))
    }

    fn running(&self) -> Option<&'static str> {
        *self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("{what} stopped unexpectedly: {e}")))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyRequest {
    /// SQLite's quick check instead of the complete one, as `exai db verify --quick`.
    #[serde(default)]
    quick: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct Verified {
    /// No database has a problem (warnings allowed), as `exai db verify` exits below 2.
    ok: bool,
    databases: Vec<db::FileCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    postgres: Option<pg::PgCheck>,
}

async fn verify(State(ctx): State<Ctx>, body: Bytes) -> ApiResult<Verified> {
    let VerifyRequest { quick } = crate::error::json_body(
        &body,
        r#"send {} for SQLite's complete check, or {"quick": true} for the quick one"#,
    )?;
    let slot = ctx.maintenance.claim(&ctx, "verify")?;
    let loaded = ctx.state.config();
    let answer = blocking("the database check", move || {
        let _slot = slot;
        let databases = db::verify(&loaded, !quick);
        let postgres = pg::configured(&loaded).map(|url| pg::verify(url, &loaded.config.database));
        let ok = databases.iter().all(|c| c.problems.is_empty())
            && postgres.as_ref().is_none_or(|p| p.status() < 2);
        Verified {
            ok,
            databases,
            postgres,
        }
    })
    .await?;
    Ok(Json(answer))
}

#[derive(Debug, Serialize)]
pub(crate) struct BackedUp {
    #[serde(flatten)]
    report: db::BackupReport,
    keep: usize,
    /// Set when the knowledge base lives in PostgreSQL, which this backup does not cover.
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

async fn backup(State(ctx): State<Ctx>) -> ApiResult<BackedUp> {
    let slot = ctx.maintenance.claim(&ctx, "backup")?;
    let loaded = ctx.state.config();
    let keep = usize::try_from(loaded.config.ops.backup_keep).unwrap_or(usize::MAX);
    let checked = ctx.clone();
    let result = blocking("the backup", move || {
        let _slot = slot;
        let root = db::backup_root(&loaded, None);
        let note = pg::configured(&loaded).map(|_| {
            "the PostgreSQL database is not in this backup: back it up with PostgreSQL's own tools (pg_dump -Fc, or the provider's backups)".to_string()
        });
        let report = db::backup(&loaded, &root, keep)?;
        // A fresh backup is checked now, while its files are in the page cache.
        let check = db::verify_backup(std::path::Path::new(&report.path))
            .map(|_| ())
            .map_err(|e| e.to_string());
        checked
            .maintenance
            .checked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(PathBuf::from(&report.path), check);
        Ok::<_, db::DbError>(BackedUp { report, keep, note })
    })
    .await?;
    match result {
        Ok(done) => Ok(Json(done)),
        // Nothing to back up yet, or a database whose copy fails its check: the operator's to act on.
        Err(e @ db::DbError::Invalid(_)) => Err(ApiError::conflict(e.to_string())),
        Err(e) => Err(ApiError::internal(format!("the backup failed: {e}"))),
    }
}

#[derive(Debug, Serialize)]
struct Backup {
    name: String,
    path: String,
    created_at: String,
    /// Databases and configuration files together.
    bytes: u64,
    databases: Vec<String>,
    config_files: usize,
    /// Whether the backup checks out (`exai db restore --check`); absent while not yet checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Backups {
    root: String,
    keep: u64,
    /// Newest first.
    backups: Vec<Backup>,
    /// The action running now, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    running: Option<&'static str>,
}

/// The backups, newest first. Those not checked yet are checked now, unless an action is
/// running (they are then listed unchecked rather than competing with it for the disk).
async fn backups(State(ctx): State<Ctx>) -> ApiResult<Backups> {
    let loaded = ctx.state.config();
    let answer = blocking("listing the backups", move || {
        let m = &ctx.maintenance;
        let root = db::backup_root(&loaded, None);
        let slot = m.claim(&ctx, "check of the backups").ok();
        let dirs = db::list_backups(&root);
        let mut checked = m.checked.lock().unwrap_or_else(PoisonError::into_inner);
        checked.retain(|p, _| dirs.contains(p));
        let mut list = Vec::with_capacity(dirs.len());
        for dir in dirs.iter().rev() {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let manifest = match db::read_manifest(dir) {
                Ok(m) => m,
                Err(e) => {
                    list.push(Backup {
                        name,
                        path: dir.display().to_string(),
                        created_at: String::new(),
                        bytes: 0,
                        databases: Vec::new(),
                        config_files: 0,
                        verified: Some(false),
                        problem: Some(e.to_string()),
                    });
                    continue;
                }
            };
            if slot.is_some() && !checked.contains_key(dir) {
                let check = db::verify_backup(dir)
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                checked.insert(dir.clone(), check);
            }
            let check = checked.get(dir);
            list.push(Backup {
                name,
                path: dir.display().to_string(),
                created_at: manifest.created_at.clone(),
                bytes: manifest.files.iter().map(|f| f.bytes).sum::<u64>()
                    + manifest.config.iter().map(|c| c.bytes).sum::<u64>(),
                databases: manifest.files.iter().map(|f| f.name.clone()).collect(),
                config_files: manifest.config.len(),
                verified: check.map(Result::is_ok),
                problem: check.and_then(|c| c.as_ref().err().cloned()),
            });
        }
        drop(checked);
        Backups {
            root: root.display().to_string(),
            keep: loaded.config.ops.backup_keep,
            backups: list,
            running: if slot.is_some() { None } else { m.running() },
        }
    })
    .await?;
    Ok(Json(answer))
}

#[cfg(test)]
mod tests {
    use crate::test_support::App;

    #[tokio::test]
    async fn verify_backup_and_the_backups_list() {
        let app = App::new();
        let (status, nothing) = app.post("/maintenance/backup", "").await;
        assert_eq!(status, 409, "{nothing}");
        assert!(
            nothing["error"]
                .as_str()
                .unwrap()
                .contains("nothing to back up")
        );

        exai_validate::track::SqliteTracking::open(&app.home().join("state.sqlite")).unwrap();
        let (status, verified) = app.post("/maintenance/verify", "{}").await;
        assert_eq!(status, 200, "{verified}");
        assert_eq!(verified["ok"], true);
        assert_eq!(verified["databases"][0]["name"], "state");
        assert_eq!(verified["databases"][0]["problems"], serde_json::json!([]));
        let (status, _) = app.post("/maintenance/verify", r#"{"quick": true}"#).await;
        assert_eq!(status, 200);

        let (status, done) = app.post("/maintenance/backup", "").await;
        assert_eq!(status, 200, "{done}");
        assert_eq!(done["keep"], 7);
        assert_eq!(done["manifest"]["files"][0]["name"], "state");
        let (_, list) = app.get("/maintenance/backups").await;
        assert_eq!(list["backups"].as_array().unwrap().len(), 1);
        assert_eq!(list["backups"][0]["path"], done["path"]);
        assert_eq!(list["backups"][0]["verified"], true);
        assert!(list["backups"][0]["bytes"].as_u64().unwrap() > 0);

        // A backup damaged afterwards is caught by the list's own check (a fresh dashboard's).
        let copy = std::path::Path::new(done["path"].as_str().unwrap()).join("state.sqlite");
        std::fs::write(&copy, b"not a database").unwrap();
        let other = App {
            dir: tempfile::tempdir().unwrap(),
            ctx: std::sync::Arc::new(crate::context::Dashboard::new(app.ctx.state.clone())),
        };
        let (_, list) = other.get("/maintenance/backups").await;
        assert_eq!(list["backups"][0]["verified"], false);
        assert!(
            list["backups"][0]["problem"]
                .as_str()
                .unwrap()
                .contains("bytes"),
            "{list}"
        );

        let (status, bad) = app.post("/maintenance/verify", r#"{"full": 1}"#).await;
        assert_eq!(status, 400);
        assert!(
            bad["error"]
                .as_str()
                .unwrap()
                .contains(r#"{"quick": true}"#),
            "{bad}"
        );
    }

    #[tokio::test]
    async fn one_action_at_a_time() {
        let app = App::new();
        let held = app.ctx.maintenance.claim(&app.ctx, "backup").unwrap();
        let (status, busy) = app.post("/maintenance/verify", "").await;
        assert_eq!(status, 409);
        assert!(
            busy["error"]
                .as_str()
                .unwrap()
                .contains("a database backup is running")
        );
        let (_, list) = app.get("/maintenance/backups").await;
        assert_eq!(list["running"], "backup");
        drop(held);
        let (status, _) = app.post("/maintenance/verify", "").await;
        assert_eq!(status, 200);
    }
}
