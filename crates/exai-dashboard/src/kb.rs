//! `/ui/api/kb`, the knowledge-base page's API: sources with their versions and embedding progress, search
//! with every filter `search_docs` takes, whole documents, and index jobs (add, refresh, remove,
//! cancel). Each handler calls the function the MCP tool calls (`exai_server::kb_tools`), so the
//! page and MCP answer alike: the same allowed roots for local paths, the same fetch policy, one
//! job per source, and only the signed-in principal's jobs.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use exai_server::http::Principal;
use exai_server::jobs::{JobState, JobStatus};
use exai_server::kb_tools::{self, GetDocumentArgs, IndexPathArgs, SearchDocsArgs};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::context::Ctx;
use crate::error::{ApiError, ApiResult};

/// The most text a document read returns; a larger document comes as the window around the
/// chunk asked for, and says so.
const DOCUMENT_CHARS: usize = 400_000;

pub(crate) fn routes() -> Router<Ctx> {
    Router::new()
        .route("/sources", get(sources).post(add_source))
        .route("/sources/{name}", axum::routing::delete(remove_source))
        .route("/sources/{name}/refresh", post(refresh_source))
        .route("/search", get(search))
        .route("/document", get(document))
        .route("/jobs", get(jobs))
        .route("/jobs/{id}/cancel", post(cancel_job))
}

/// A tool's error as the page sees it: what the caller can fix is a 400, the rest a 500.
fn tool_error(e: rmcp::ErrorData) -> ApiError {
    if e.code == rmcp::model::ErrorCode::INVALID_PARAMS {
        ApiError::bad_request(e.message.into_owned())
    } else {
        ApiError::internal(e.message.into_owned())
    }
}

fn query_error(e: QueryRejection) -> ApiError {
    ApiError::bad_request(e.body_text())
}

fn body_error(e: JsonRejection) -> ApiError {
    ApiError::bad_request(e.body_text())
}

/// One source as the page lists it.
#[derive(Debug, Serialize)]
struct SourceRow {
    #[serde(flatten)]
    info: exai_kb::SourceInfo,
    /// Every indexed version of its library, newest first (one entry for an unversioned source).
    versions: Vec<String>,
    /// Chunks with a vector, of all chunks: the embedding progress.
    vectors_done: i64,
    vectors_total: i64,
    /// Where it comes from, in one line (`paths /docs`, `web https://…`, `npm:react@18.2.0`).
    #[serde(skip_serializing_if = "Option::is_none")]
    origin_text: Option<String>,
    /// Whether a refresh fetches over the network.
    fetched: bool,
    /// A job of this principal running on it now.
    #[serde(skip_serializing_if = "Option::is_none")]
    job: Option<JobStatus>,
}

/// `GET /kb/sources`: every source, the knowledge base's status, and the values the search
/// filters take (technologies and categories with their counts).
async fn sources(
    State(ctx): State<Ctx>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Value> {
    let state = &ctx.state;
    let (sources, status, problem) = kb_tools::list_sources(state).await.map_err(tool_error)?;
    let kb = kb_tools::open_kb(state).await.map_err(tool_error)?;
    let (technologies, categories, known) = tokio::task::spawn_blocking(move || {
        Ok::<_, exai_kb::KbError>((
            kb.counts("technology")?,
            kb.counts("category")?,
            kb.categories_map().names(),
        ))
    })
    .await
    .map_err(|e| ApiError::internal(format!("knowledge base task failed: {e}")))?
    .map_err(|e| ApiError::internal(e.to_string()))?;
    let named: Vec<(String, String)> = sources
        .iter()
        .map(|s| (s.name.clone(), s.updated_at.clone()))
        .collect();
    let libraries = exai_kb::versions::libraries(&named);
    let running = running_jobs(&ctx, principal.name());
    let rows: Vec<SourceRow> = sources
        .into_iter()
        .map(|info| {
            let versions = libraries
                .iter()
                .find(|l| l.name == info.library)
                .map(|l| l.versions.clone())
                .unwrap_or_default();
            let origin = exai_sources::Origin::of(&info);
            let job = running.iter().find(|j| j.source == info.name).cloned();
            SourceRow {
                versions,
                vectors_done: (info.chunks - info.chunks_without_vectors).max(0),
                vectors_total: info.chunks,
                origin_text: origin.as_ref().map(exai_sources::Origin::describe),
                fetched: origin
                    .as_ref()
                    .is_some_and(exai_sources::Origin::is_fetched),
                job,
                info,
            }
        })
        .collect();
    Ok(Json(json!({
        "sources": rows,
        "status": status,
        "semantic_search_problem": problem,
        "technologies": technologies,
        "categories": categories,
        "known_categories": known,
    })))
}

/// This principal's running jobs of this daemon.
fn running_jobs(ctx: &Ctx, principal: &str) -> Vec<JobStatus> {
    let jobs = &ctx.state.knowledge.jobs;
    jobs.ids(principal)
        .iter()
        .filter_map(|id| jobs.get(id, principal))
        .map(|job| job.status())
        .filter(|s| s.state == JobState::Running)
        .collect()
}

/// `GET /kb/search?query=…&mode=…&source=…`: the arguments of `search_docs` as query
/// parameters; every hit, ranked, with its snippet, score and location.
async fn search(
    State(ctx): State<Ctx>,
    query: Result<Query<SearchDocsArgs>, QueryRejection>,
) -> ApiResult<exai_kb::SearchResponse> {
    let Query(args) = query.map_err(query_error)?;
    if args.query.trim().is_empty() {
        return Err(ApiError::bad_request(
            "give `query`: a question, keywords, an identifier or an error message",
        ));
    }
    if let Some(limit) = args.limit
        && !(1..=100).contains(&limit)
    {
        return Err(ApiError::bad_request(format!(
            "`limit` is {limit}; give 1 to 100"
        )));
    }
    if let Some(context) = args.context
        && context > 3
    {
        return Err(ApiError::bad_request(format!(
            "`context` is {context}; give 0 to 3 neighbouring chunks"
        )));
    }
    kb_tools::search(&ctx.state, args)
        .await
        .map(Json)
        .map_err(tool_error)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DocumentQuery {
    doc_id: Option<i64>,
    source: Option<String>,
    path: Option<String>,
    /// The chunk to keep in the window when the document is longer than the page shows.
    chunk_id: Option<i64>,
}

/// One section of a document: its heading and its chunks in order.
#[derive(Debug, Serialize)]
struct Section {
    section: String,
    chunks: Vec<DocChunk>,
}

#[derive(Debug, Serialize)]
struct DocChunk {
    chunk_id: i64,
    position: i64,
    /// `text` or `code`: prose reads in the body font, code in a monospaced one.
    doc_type: exai_kb::DocType,
    text: String,
}

/// `GET /kb/document?doc_id=…` (or `source=…&path=…`): the whole document as `get_document`
/// reads it, its chunks grouped into sections, at most [`DOCUMENT_CHARS`] of text.
async fn document(
    State(ctx): State<Ctx>,
    query: Result<Query<DocumentQuery>, QueryRejection>,
) -> ApiResult<Value> {
    let Query(q) = query.map_err(query_error)?;
    let found = kb_tools::get_document(
        &ctx.state,
        GetDocumentArgs {
            doc_id: q.doc_id,
            path: q.path,
            source: q.source,
        },
    )
    .await
    .map_err(tool_error)?;
    let total = found.chunks.len();
    let (first, last) = window(&found.chunks, q.chunk_id, DOCUMENT_CHARS);
    let mut sections: Vec<Section> = Vec::new();
    for chunk in found.chunks.into_iter().skip(first).take(last - first) {
        let piece = DocChunk {
            chunk_id: chunk.id,
            position: chunk.position,
            doc_type: chunk.doc_type,
            text: chunk.text,
        };
        match sections.last_mut() {
            Some(s) if s.section == chunk.section => s.chunks.push(piece),
            _ => sections.push(Section {
                section: chunk.section,
                chunks: vec![piece],
            }),
        }
    }
    Ok(Json(json!({
        "document": found.document,
        "sections": sections,
        "chunks_total": total,
        "chunks_before": first,
        "chunks_after": total - last,
    })))
}

/// The chunks `[first, last)` shown of a document: all of them when their text fits `cap`, else
/// a run that fits, starting a little before `focus` (when given and found) so the chunk asked
/// for is in view with what leads to it.
fn window(chunks: &[exai_kb::ChunkRecord], focus: Option<i64>, cap: usize) -> (usize, usize) {
    let total: usize = chunks.iter().map(|c| c.text.len()).sum();
    if total <= cap {
        return (0, chunks.len());
    }
    let at = focus
        .and_then(|id| chunks.iter().position(|c| c.id == id))
        .unwrap_or(0);
    // A quarter of the room goes to what comes before the focus.
    let mut first = at;
    let mut used = 0;
    while first > 0 && used + chunks[first - 1].text.len() <= cap / 4 {
        first -= 1;
        used += chunks[first].text.len();
    }
    let mut last = at;
    while last < chunks.len() && (last == at || used + chunks[last].text.len() <= cap) {
        used += chunks[last].text.len();
        last += 1;
    }
    // Near the end, the room left goes to what comes before.
    while first > 0 && used + chunks[first - 1].text.len() <= cap {
        first -= 1;
        used += chunks[first].text.len();
    }
    (first, last)
}

/// What the add form sends: `index_path`'s options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddSource {
    /// A file or directory under the allowed roots, a site's URL, `npm:`/`pypi:`/`crate:` spec
    /// or a git repository (`REPO.git#REF`).
    path: String,
    source: Option<String>,
    technology: Option<String>,
    include: Option<Vec<String>>,
    exclude: Option<Vec<String>>,
    prune: Option<bool>,
}

/// Empty text from a form field means "not given".
fn given(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn given_list(value: Option<Vec<String>>) -> Option<Vec<String>> {
    let list: Vec<String> = value
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    (!list.is_empty()).then_some(list)
}

/// `POST /kb/sources`: start indexing a path, URL, package or repository as `index_path`
/// does; returns the job's status at once (progress follows on the `jobs` topic).
async fn add_source(
    State(ctx): State<Ctx>,
    Extension(principal): Extension<Principal>,
    body: Result<Json<AddSource>, JsonRejection>,
) -> ApiResult<JobStatus> {
    let Json(add) = body.map_err(body_error)?;
    let Some(path) = given(Some(add.path)) else {
        return Err(ApiError::bad_request(
            "give `path`: a file or directory under the allowed roots, a site's URL, npm:|pypi:|crate:NAME@RANGE or REPO.git#REF",
        ));
    };
    let args = IndexPathArgs {
        path: Some(path),
        source: given(add.source),
        technology: given(add.technology),
        include: given_list(add.include),
        exclude: given_list(add.exclude),
        prune: add.prune,
        wait_secs: None,
    };
    start(&ctx, &args, &principal).await
}

/// `POST /kb/sources/{name}/refresh`: index the source again from its recorded origin.
async fn refresh_source(
    State(ctx): State<Ctx>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult<JobStatus> {
    let args = IndexPathArgs {
        path: None,
        source: Some(name),
        technology: None,
        include: None,
        exclude: None,
        prune: None,
        wait_secs: None,
    };
    start(&ctx, &args, &principal).await
}

async fn start(ctx: &Ctx, args: &IndexPathArgs, principal: &Principal) -> ApiResult<JobStatus> {
    let job = kb_tools::start_index_job(&ctx.state, args, principal.name())
        .await
        .map_err(tool_error)?;
    Ok(Json(job.status()))
}

/// `DELETE /kb/sources/{name}`: remove the source and its documents (refused while indexing).
async fn remove_source(
    State(ctx): State<Ctx>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult<Value> {
    let removed = kb_tools::remove_source(&ctx.state, &name, principal.name())
        .await
        .map_err(tool_error)?;
    Ok(Json(
        json!({ "source": name, "documents_removed": removed }),
    ))
}

/// `GET /kb/jobs`: this principal's jobs (running and recently finished), newest first: what
/// the `jobs` topic sends.
async fn jobs(
    State(ctx): State<Ctx>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Value> {
    let mut found = crate::events::jobs(&ctx, &principal).await;
    found.sort_by(|a, b| b["started_at"].as_str().cmp(&a["started_at"].as_str()));
    Ok(Json(json!({ "jobs": found })))
}

/// `POST /kb/jobs/{id}/cancel`: cancel this principal's job (what it committed stays).
async fn cancel_job(
    State(ctx): State<Ctx>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<JobStatus> {
    kb_tools::cancel_job(&ctx.state, &id, principal.name())
        .await
        .map(Json)
        .map_err(tool_error)
}

#[cfg(test)]
pub(crate) mod tests;
