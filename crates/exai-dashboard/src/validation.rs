//! The Validation page's API: the recorded runs (pass rate per run, for the history chart), the
//! latest run's results by tool and variation, and running the suite against the built-in mock
//! provider as `exai validate --provider mock` does (the same `exai_validate::run`, recorded in
//! the same tracking store), in the background, one run at a time. Each result is published on
//! the `validation` topic as it finishes; the progress so far is also part of `GET validation`,
//! so a page opened mid-run catches up.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use exai_validate::track::{self, ResultRow, RunRow};
use exai_validate::{CaseResult, Options, ProviderMode, RunReport, ValidateError, report};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::context::Ctx;
use crate::error::{ApiError, ApiResult};

pub(crate) fn routes() -> Router<Ctx> {
    Router::new()
        .route("/", get(overview))
        .route("/run", post(start))
}

const RUNS_DEFAULT: usize = 50;
const RUNS_MAX: usize = 1000;

/// Events a page that reads slowly may fall behind by before it loses the oldest.
const EVENTS: usize = 256;

/// The run in progress, how the last one started from here ended, and the `validation` topic
/// ([`crate::Dashboard::validation`]).
pub(crate) struct Runner {
    state: Mutex<RunnerState>,
    events: broadcast::Sender<Value>,
}

impl Default for Runner {
    fn default() -> Self {
        Runner {
            state: Mutex::default(),
            events: broadcast::channel(EVENTS).0,
        }
    }
}

#[derive(Debug, Default, Clone, Serialize)]
struct RunnerState {
    #[serde(skip_serializing_if = "Option::is_none")]
    running: Option<Progress>,
    /// Why the last run started here could not run or finish.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct Progress {
    started_at: String,
    total: usize,
    results: Vec<CaseResult>,
}

impl Runner {
    /// The `validation` topic: `started`, then one `result` per case, then `finished` or
    /// `failed`.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Value> {
        self.events.subscribe()
    }

    fn publish(&self, event: Value) {
        // Nobody watching is not an error.
        let _ = self.events.send(event);
    }

    fn snapshot(&self) -> RunnerState {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn update(&self, f: impl FnOnce(&mut RunnerState)) {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct Overview {
    /// Newest first, each with its pass rate and its trend against the run before it of the
    /// same kind (as `exai validate history --json`).
    runs: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    latest: Option<Latest>,
    #[serde(flatten)]
    runner: RunnerState,
}

#[derive(Debug, Serialize)]
struct Latest {
    run: RunRow,
    /// In the order the suite ran them.
    results: Vec<ResultRow>,
}

fn runs_limit(query: &HashMap<String, String>) -> Result<usize, ApiError> {
    match query.get("limit").map(|v| v.trim()) {
        None | Some("") => Ok(RUNS_DEFAULT),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=RUNS_MAX).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(format!(
                "limit `{text}` is not a count of runs from 1 to {RUNS_MAX}"
            ))),
        },
    }
}

fn store_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable(format!(
        "{e}; see `exai validate history` and `exai db verify`"
    ))
}

async fn overview(
    State(ctx): State<Ctx>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Overview> {
    let limit = runs_limit(&query)?;
    let loaded = ctx.state.config();
    let (runs, latest) = tokio::task::spawn_blocking(move || {
        let store = track::open(&loaded)?;
        let runs = store.runs(limit.saturating_add(report::TREND_LOOKBACK))?;
        // The newest finished run: one still running has no results worth a table yet.
        let latest = match runs.iter().find(|r| r.finished_at.is_some()) {
            Some(run) => {
                let since = DateTime::parse_from_rfc3339(&run.started_at)
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or_default();
                let results = store
                    .results_since(since)?
                    .into_iter()
                    .filter(|r| r.run_id == run.id)
                    .collect();
                Some(Latest {
                    run: run.clone(),
                    results,
                })
            }
            None => None,
        };
        Ok::<_, track::TrackError>((report::history_json(&runs, limit)["runs"].take(), latest))
    })
    .await
    .map_err(|e| ApiError::internal(format!("reading the validation runs failed: {e}")))?
    .map_err(store_error)?;
    Ok(Json(Overview {
        runs,
        latest,
        runner: ctx.validation.snapshot(),
    }))
}

/// What to run: the whole suite unless narrowed, as `--tools` and `--variations` narrow it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunRequest {
    #[serde(default)]
    tools: Vec<String>,
    #[serde(default)]
    variations: Vec<String>,
}

async fn start(State(ctx): State<Ctx>, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request: RunRequest = crate::error::json_body(
        &body,
        r#"send {} for the whole suite, or {"tools": ["chat"], "variations": ["basic"]}"#,
    )?;
    let options = Options {
        tools: request.tools,
        variations: request.variations,
        provider: ProviderMode::Mock,
        watcher: None,
    };
    let total = exai_validate::select(&options)
        .map_err(|e| ApiError::bad_request(e.to_string()))?
        .len();
    let started_at = track::stored_time(Utc::now());
    {
        let mut state = ctx
            .validation
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = &state.running {
            return Err(ApiError::conflict(format!(
                "a validation run started at {} is still running ({} of {} cases done); wait for it to finish",
                p.started_at,
                p.results.len(),
                p.total
            )));
        }
        state.running = Some(Progress {
            started_at: started_at.clone(),
            total,
            results: Vec::new(),
        });
        state.last_error = None;
    }
    ctx.validation
        .publish(json!({"kind": "started", "started_at": started_at, "total": total}));
    let slot = Slot(ctx.clone());
    tokio::spawn(async move {
        let outcome = run(&ctx, &options, total).await;
        slot.finish(outcome);
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"started_at": started_at, "total": total})),
    ))
}

/// The run in progress: whatever ends it (its end, a failure, the task dropped when the daemon
/// stops), the slot is free again and watchers hear how it ended.
struct Slot(Ctx);

impl Slot {
    fn finish(self, outcome: Result<RunReport, String>) {
        let event = match &outcome {
            Ok(report) => json!({
                "kind": "finished",
                "run_id": report.run_id,
                "pass_rate": report.totals.pass_rate(),
                "totals": report.totals,
            }),
            Err(message) => {
                tracing::warn!("the dashboard's validation run failed: {message}");
                json!({"kind": "failed", "error": message})
            }
        };
        self.0.validation.update(|s| {
            s.running = None;
            s.last_error = outcome.err();
        });
        self.0.validation.publish(event);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.validation.update(|s| {
            if s.running.take().is_some() {
                s.last_error = Some("the run stopped before it finished".into());
            }
        });
    }
}

/// Run the suite as `exai validate --provider mock` does, publishing each result.
async fn run(ctx: &Ctx, options: &Options, total: usize) -> Result<RunReport, String> {
    let loaded = ctx.state.config();
    let opened = {
        let loaded = loaded.clone();
        tokio::task::spawn_blocking(move || track::open(&loaded))
    };
    let mut store = opened
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let runner = &ctx.validation;
    exai_validate::run(&loaded, options, store.as_mut(), |result, _grade| {
        let mut result = result.clone();
        // The output is for the watcher; the page shows the status and the detail.
        result.output = None;
        let mut done = 0;
        runner.update(|s| {
            if let Some(p) = &mut s.running {
                p.results.push(result.clone());
                done = p.results.len();
            }
        });
        runner.publish(json!({"kind": "result", "result": result, "done": done, "total": total}));
    })
    .await
    .map_err(|e| match e {
        ValidateError::Usage(m) | ValidateError::Setup(m) => m,
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::App;

    #[tokio::test]
    async fn runs_the_mock_suite_once_at_a_time_and_records_it() {
        let app = App::new();
        let (status, empty) = app.get("/validation").await;
        assert_eq!(status, 200, "{empty}");
        assert_eq!(empty["runs"], json!([]));
        assert!(empty.get("latest").is_none() && empty.get("running").is_none());

        let mut events = app.ctx.validation.subscribe();
        let (status, started) = app
            .post(
                "/validation/run",
                r#"{"tools": ["version", "chat"], "variations": ["basic"]}"#,
            )
            .await;
        assert_eq!(status, 202, "{started}");
        assert_eq!(started["total"], 2);
        // While it runs, a second run is refused and the progress is part of the answer.
        let running = app.get("/validation").await.1;
        if running.get("running").is_some() {
            let (status, busy) = app.post("/validation/run", "{}").await;
            assert_eq!(status, 409);
            assert!(
                busy["error"].as_str().unwrap().contains("still running"),
                "{busy}"
            );
        }
        let mut kinds = Vec::new();
        loop {
            let event = tokio::time::timeout(std::time::Duration::from_secs(120), events.recv())
                .await
                .expect("the run ends within two minutes")
                .unwrap();
            kinds.push(event["kind"].as_str().unwrap().to_string());
            if event["kind"] == "finished" || event["kind"] == "failed" {
                assert_eq!(event["kind"], "finished", "{event}");
                assert_eq!(event["pass_rate"], 1.0, "{event}");
                break;
            }
        }
        assert_eq!(kinds, ["started", "result", "result", "finished"]);

        let (_, done) = app.get("/validation").await;
        assert!(done.get("running").is_none(), "{done}");
        assert_eq!(done["runs"][0]["provider"], "mock");
        assert_eq!(done["runs"][0]["pass_rate"], 1.0);
        let results = done["latest"]["results"].as_array().unwrap();
        let cases: Vec<(&str, &str, &str)> = results
            .iter()
            .map(|r| {
                (
                    r["tool"].as_str().unwrap(),
                    r["variation"].as_str().unwrap(),
                    r["status"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            cases,
            [("version", "basic", "PASS"), ("chat", "basic", "PASS")]
        );
    }

    #[tokio::test]
    async fn a_second_run_waits_for_the_first() {
        let app = App::new();
        app.ctx.validation.update(|s| {
            s.running = Some(Progress {
                started_at: "2026-12-07T00:00:00.000Z".into(),
                total: 48,
                results: Vec::new(),
            })
        });
        let (status, busy) = app.post("/validation/run", "").await;
        assert_eq!(status, 409);
        assert!(
            busy["error"]
                .as_str()
                .unwrap()
                .contains("0 of 48 cases done"),
            "{busy}"
        );
        assert_eq!(app.get("/validation").await.1["running"]["total"], 48);
    }

    #[tokio::test]
    async fn bad_requests_say_what_to_send() {
        let app = App::new();
        for (body, says) in [
            (r#"{"tools": ["nope"]}"#, "no tool `nope`"),
            (r#"{"tool": "chat"}"#, r#"{"tools": ["chat"]"#),
            ("[", "send {} for the whole suite"),
        ] {
            let (status, e) = app.post("/validation/run", body).await;
            assert_eq!(status, 400, "{body}");
            assert!(e["error"].as_str().unwrap().contains(says), "{body}: {e}");
        }
        let (status, e) = app.get("/validation?limit=0").await;
        assert_eq!(status, 400);
        assert!(e["error"].as_str().unwrap().contains("from 1 to 1000"));
    }
}
