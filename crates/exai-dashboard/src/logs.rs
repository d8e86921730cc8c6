//! The Logs page's API: the log and the activity records as one time-ordered stream, filtered
//! as `exai logs` filters it (level, tool, since), the newest `limit` entries, newest last. The
//! page follows new entries through the `logs` topic and applies the same filters itself.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use exai_ops::logs::{self, Entry, Filter, Level};
use serde::Serialize;

use crate::context::Ctx;
use crate::error::{ApiError, ApiResult};

pub(crate) fn routes() -> Router<Ctx> {
    Router::new().route("/", get(entries))
}

const LIMIT_DEFAULT: usize = 500;
const LIMIT_MAX: usize = 5000;

#[derive(Debug, Serialize)]
pub(crate) struct Logs {
    /// Oldest first.
    entries: Vec<Entry>,
    /// How many matched in all; more than `entries` when the limit cut older ones off.
    matched: usize,
}

/// `level`: this level and more severe; `since`: a duration back from now (`15m`, `1h`, `7d`)
/// or an RFC 3339 time.
fn filter(query: &HashMap<String, String>) -> Result<Filter, ApiError> {
    let get = |k: &str| query.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let max_level = get("level")
        .map(|l| {
            Level::parse(&l.to_ascii_uppercase()).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "level `{l}` is not a log level; use error, warn, info, debug or trace"
                ))
            })
        })
        .transpose()?;
    let since = get("since").map(parse_since).transpose()?;
    Ok(Filter {
        max_level,
        since,
        tool: get("tool").map(str::to_string),
        ..Filter::default()
    })
}

fn parse_since(text: &str) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let back = logs::parse_duration(text)
        .ok()
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "since `{text}` is neither a duration (30s, 15m, 1h, 7d) nor an RFC 3339 time"
            ))
        })?;
    Ok(Utc::now() - back)
}

fn limit(query: &HashMap<String, String>) -> Result<usize, ApiError> {
    match query.get("limit").map(|v| v.trim()) {
        None | Some("") => Ok(LIMIT_DEFAULT),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=LIMIT_MAX).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(format!(
                "limit `{text}` is not a count from 1 to {LIMIT_MAX}"
            ))),
        },
    }
}

async fn entries(
    State(ctx): State<Ctx>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Logs> {
    let filter = filter(&query)?;
    let limit = limit(&query)?;
    let paths = ctx.state.paths.clone();
    let mut entries = tokio::task::spawn_blocking(move || logs::collect(&paths, &filter))
        .await
        .map_err(|e| ApiError::internal(format!("reading the logs failed: {e}")))?;
    let matched = entries.len();
    entries.drain(..matched.saturating_sub(limit));
    Ok(Json(Logs { entries, matched }))
}

#[cfg(test)]
mod tests {
    use crate::test_support::App;

    #[tokio::test]
    async fn filters_like_exai_logs_and_keeps_the_newest() {
        let app = App::new();
        let now = chrono::Utc::now();
        let at = |mins: i64| {
            (now - chrono::Duration::minutes(mins))
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        };
        std::fs::write(
            app.home().join("logs/exai.log"),
            format!(
                "{}  INFO exai: started\n{} ERROR exai: provider failed tool=chat\n{}  WARN exai: slow tool=search_docs\n",
                at(180),
                at(30),
                at(10)
            ),
        )
        .unwrap();
        let record = serde_json::json!({
            "time": at(20), "tool": "chat", "session": "s", "request_id": "1",
            "duration_ms": 12.0, "outcome": "ok", "model": "glm-4.6", "principal": "local"
        });
        std::fs::write(
            app.home().join("logs/activity.jsonl"),
            format!("{record}\n"),
        )
        .unwrap();

        let (status, all) = app.get("/logs").await;
        assert_eq!(status, 200, "{all}");
        let texts: Vec<&str> = all["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["text"].as_str().unwrap())
            .collect();
        assert_eq!(texts.len(), 4, "{texts:?}");
        assert!(
            texts[0].ends_with("started") && texts[3].ends_with("tool=search_docs"),
            "oldest first: {texts:?}"
        );
        assert_eq!(all["entries"][2]["origin"], "activity");
        assert_eq!(all["entries"][2]["record"]["model"], "glm-4.6");

        let (_, errors) = app.get("/logs?level=error").await;
        assert_eq!(errors["matched"], 1);
        let (_, warn) = app.get("/logs?level=WARN").await;
        assert_eq!(warn["matched"], 2);
        let (_, chat) = app.get("/logs?tool=chat").await;
        assert_eq!(chat["matched"], 2);
        let (_, recent) = app.get("/logs?since=1h").await;
        assert_eq!(recent["matched"], 3);
        let (_, last) = app.get("/logs?limit=1").await;
        assert_eq!(last["matched"], 4);
        assert_eq!(last["entries"].as_array().unwrap().len(), 1);
        assert_eq!(last["entries"][0]["level"], "WARN");

        for (uri, says) in [
            ("/logs?level=loud", "error, warn, info, debug or trace"),
            ("/logs?since=yesterday", "30s, 15m, 1h, 7d"),
            ("/logs?limit=0", "from 1 to 5000"),
        ] {
            let (status, body) = app.get(uri).await;
            assert_eq!(status, 400, "{uri}");
            assert!(
                body["error"].as_str().unwrap().contains(says),
                "{uri}: {body}"
            );
        }
    }
}
