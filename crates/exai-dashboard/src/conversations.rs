//! `/ui/api/conversations`, the conversations page's API: the signed-in principal's live threads, each with its tool,
//! models, turns, tokens and cost, and one thread turn by turn. Every read goes through the
//! threads store's view of that principal (`ThreadStore::of`), as the chat tools' do, so
//! another principal's thread reads as one that does not exist.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Extension, Json, Router};
use exai_server::http::Principal;
use exai_tools::ToolError;
use exai_tools::threads::{ThreadError, ThreadSummary, Turn};
use serde::{Deserialize, Serialize};

use crate::context::Ctx;
use crate::error::{ApiError, ApiResult};

/// Threads listed at most.
const MAX_LISTED: usize = 200;

pub(crate) fn routes() -> Router<Ctx> {
    Router::new()
        .route("/", get(list))
        .route("/{id}", get(show))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Default 50, at most [`MAX_LISTED`].
    limit: Option<usize>,
    /// Only threads of this tool (`chat`, `thinkdeep`, …).
    tool: Option<String>,
}

/// What a conversation's turns add up to.
#[derive(Debug, Default, Serialize)]
struct Totals {
    /// Every model that answered, in the order they first did.
    models: Vec<String>,
    tokens_in: u64,
    tokens_out: u64,
    cost_usd: f64,
    /// Assistant turns written before exai recorded usage (or with none to record): the totals
    /// leave them out.
    turns_without_usage: usize,
}

impl Totals {
    fn of(turns: &[Turn]) -> Totals {
        let mut t = Totals::default();
        for turn in turns {
            if let Some(model) = &turn.model
                && !t.models.contains(model)
            {
                t.models.push(model.clone());
            }
            match turn.usage {
                Some(u) => {
                    t.tokens_in += u.tokens_in;
                    t.tokens_out += u.tokens_out;
                    t.cost_usd += u.cost_usd;
                }
                None if turn.role == "assistant" => t.turns_without_usage += 1,
                None => {}
            }
        }
        t
    }
}

#[derive(Debug, Serialize)]
struct Listed {
    #[serde(flatten)]
    thread: ThreadSummary,
    /// The first prompt of the conversation (its parents' included), clipped.
    first_prompt: String,
    #[serde(flatten)]
    totals: Totals,
}

/// `GET /conversations`: the principal's live threads, most recently used first.
async fn list(
    State(ctx): State<Ctx>,
    Extension(principal): Extension<Principal>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<serde_json::Value> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_LISTED).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "`limit` is {limit}; give 1 to {MAX_LISTED}"
        )));
    }
    let tool = q.tool.filter(|t| !t.is_empty());
    let ai = ctx.state.ai();
    // Turns still being written show up, as list_threads waits for them too.
    ai.settled_all(principal.name()).await;
    let listed = ai
        .in_threads(principal.name(), move |t| {
            let mut listed = Vec::new();
            for thread in t.list(limit, tool.as_deref())? {
                // A thread that expired since the listing is left out.
                let turns = match t.history(&thread.continuation_id) {
                    Ok(turns) => turns,
                    Err(ThreadError::NotFound(_) | ThreadError::Expired { .. }) => continue,
                    Err(e) => return Err(e.into()),
                };
                let first_prompt = turns
                    .iter()
                    .find(|turn| turn.role == "user")
                    .map(|turn| exai_core::text::clip_with_ellipsis(&turn.content, 200))
                    .unwrap_or_default();
                listed.push(Listed {
                    totals: Totals::of(&turns),
                    first_prompt,
                    thread,
                });
            }
            Ok(listed)
        })
        .await
        .map_err(store_error)?;
    Ok(Json(serde_json::json!({ "threads": listed })))
}

/// One turn as the page shows it.
#[derive(Debug, Serialize)]
struct ShownTurn {
    role: String,
    text: String,
    files: Vec<String>,
    tool: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    /// RFC 3339.
    time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens_in: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens_out: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cost_usd: Option<f64>,
}

impl From<Turn> for ShownTurn {
    fn from(t: Turn) -> ShownTurn {
        let time = chrono::DateTime::from_timestamp_millis(t.time)
            .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default();
        ShownTurn {
            role: t.role,
            text: t.content,
            files: t.files,
            tool: t.tool,
            model: t.model,
            time,
            tokens_in: t.usage.map(|u| u.tokens_in),
            tokens_out: t.usage.map(|u| u.tokens_out),
            cost_usd: t.usage.map(|u| u.cost_usd),
        }
    }
}

/// `GET /conversations/{id}`: every turn of the thread and its parents, oldest first.
async fn show(
    State(ctx): State<Ctx>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<serde_json::Value> {
    let ai = ctx.state.ai();
    ai.settled(principal.name(), &id)
        .await
        .map_err(store_error)?;
    let wanted = id.clone();
    let turns = ai
        .in_threads(principal.name(), move |t| Ok(t.history(&wanted)?))
        .await
        .map_err(store_error)?;
    let totals = Totals::of(&turns);
    let turns: Vec<ShownTurn> = turns.into_iter().map(ShownTurn::from).collect();
    Ok(Json(serde_json::json!({
        "continuation_id": id,
        "turns": turns,
        "totals": totals,
    })))
}

/// A thread that does not exist (or is another principal's) or has expired is a 404 with the
/// store's own explanation; a store that cannot be read is a 503.
fn store_error(e: ToolError) -> ApiError {
    match e {
        ToolError::Thread(ThreadError::NotFound(id)) => ApiError::not_found(format!(
            "conversation `{id}` does not exist (or has expired); the list shows the live ones"
        )),
        ToolError::Thread(e @ ThreadError::Expired { .. }) => ApiError::not_found(e.to_string()),
        ToolError::Invalid(message) => ApiError::unavailable(message),
        other => ApiError::unavailable(other.to_string()),
    }
}

#[cfg(test)]
mod tests;
