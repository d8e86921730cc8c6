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
