//! The knowledge-base tools (family `kb`): search, exact retrieval, listings, and indexing as a
//! background job with progress notifications.
//!
//! What a tool does lives in the `pub` functions over [`AppState`] below, which the tools call;
//! the daemon's dashboard calls the same functions, so both answer alike (the allowed roots,
//! the fetch policy, one job per source, each principal's own jobs).

use std::sync::Arc;
use std::time::{Duration, Instant};

use exai_kb::{DocType, Filters, KbError, Mode, SearchRequest};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ProgressNotificationParam};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::handler::ExaiServer;
use crate::jobs::{Job, JobState, JobStatus};
use crate::state::AppState;

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModeArg {
    Hybrid,
    Keyword,
    Semantic,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DocTypeArg {
    Text,
    Code,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchDocsArgs {
    /// A question, keywords, an identifier or an error message.
    pub query: String,
    /// Default 10.
    #[schemars(range(min = 1, max = 100))]
    pub limit: Option<u32>,
    /// hybrid (default: keyword and semantic fused), keyword (exact identifiers, error
    /// messages) or semantic (meaning rather than wording).
    pub mode: Option<ModeArg>,
    /// See list_sources; a library name means its newest version.
    pub source: Option<String>,
    /// The source's version: exact or a semver range like ^18.
    pub version: Option<String>,
    pub technology: Option<String>,
    pub category: Option<String>,
    pub path_prefix: Option<String>,
    pub doc_type: Option<DocTypeArg>,
    /// Drop hits scoring lower (hybrid 0–1, semantic cosine, keyword BM25).
    pub min_score: Option<f32>,
    /// Neighbouring chunks of the section to add on each side.
    #[schemars(range(min = 0, max = 3))]
    pub context: Option<u32>,
    /// Only the best chunk of each document.
    pub group_by_document: Option<bool>,
    /// Tokens the answer may take (default MAX_MCP_OUTPUT_TOKENS); whole hits fill it.
    #[schemars(range(min = 100))]
    pub max_tokens: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetChunkArgs {
    /// A chunk_id from search_docs.
    pub chunk_id: i64,
    /// Neighbouring chunks of the same section to include on each side, 0–5.
    #[schemars(range(min = 0, max = 5))]
    pub context: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetDocumentArgs {
    /// A doc_id from search_docs.
    pub doc_id: Option<i64>,
    /// Or the document's path within its source.
    pub path: Option<String>,
    /// The source, when looking up by path.
    pub source: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveLibraryArgs {
    /// A library name, e.g. react.
    pub library: String,
    /// Exact or a semver range; default the newest.
    pub version: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IndexPathArgs {
    /// File or directory under the allowed roots, a site's URL, npm:|pypi:|crate:NAME@RANGE or
    /// REPO.git#REF; omit to refresh the source.
    pub path: Option<String>,
    /// Name to file the documents under, e.g. `react`; for a URL, package or repository
    /// default its host, NAME@VERSION or REPO@REF.
    pub source: Option<String>,
    /// Default: the source name.
    pub technology: Option<String>,
    /// Globs, e.g. ["*.md", "docs/**"].
    pub include: Option<Vec<String>>,
    pub exclude: Option<Vec<String>>,
    /// Remove documents whose files are gone.
    pub prune: Option<bool>,
    /// Seconds to wait with progress (default 20); the job runs on after.
    pub wait_secs: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobArgs {
    /// The job_id index_path returned.
    pub job_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveSourceArgs {
    /// The source to remove with all its documents.
    pub source: String,
}

/// Errors the caller can act on become tool errors (the model sees them); the rest are internal.
fn kb_error(e: KbError) -> ErrorData {
    match e {
        KbError::UnknownValue { .. }
        | KbError::Invalid(_)
        | KbError::NotFound(_)
        | KbError::ModelMismatch { .. } => ErrorData::invalid_params(e.to_string(), None),
        other => ErrorData::internal_error(other.to_string(), None),
    }
}

fn json<T: serde::Serialize>(value: &T) -> Result<CallToolResult, ErrorData> {
    serde_json::to_value(value)
        .map(CallToolResult::structured)
        .map_err(|e| ErrorData::internal_error(e.to_string(), None))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, KbError> + Send + 'static,
) -> Result<T, ErrorData> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ErrorData::internal_error(format!("task failed: {e}"), None))?
        .map_err(kb_error)
}

/// The knowledge base, opened on first use.
pub async fn open_kb(state: &AppState) -> Result<Arc<exai_kb::Kb>, ErrorData> {
    state
        .knowledge
        .get()
        .await
        .map_err(|e| ErrorData::internal_error(format!("knowledge base unavailable: {e}"), None))
}

/// Run a search as `search_docs` does (its metrics, its slow-query log, a note when semantic
/// search is off), returning every hit; rendering within a token budget is the caller's.
pub async fn search(
    state: &AppState,
    args: SearchDocsArgs,
) -> Result<exai_kb::SearchResponse, ErrorData> {
    let kb = open_kb(state).await?;
    let mut req = SearchRequest::new(args.query);
    req.limit = args.limit.unwrap_or(10) as usize;
    req.mode = match args.mode {
        Some(ModeArg::Keyword) => Mode::Keyword,
        Some(ModeArg::Semantic) => Mode::Semantic,
        _ => Mode::Hybrid,
    };
    req.filters = Filters {
        sources: args.source.into_iter().collect(),
        technologies: args.technology.into_iter().collect(),
        categories: args.category.into_iter().collect(),
        path_prefix: args.path_prefix,
        doc_type: args.doc_type.map(|d| match d {
            DocTypeArg::Text => DocType::Text,
            DocTypeArg::Code => DocType::Code,
        }),
    };
    req.min_score = args.min_score;
    req.context = args.context.unwrap_or(0) as usize;
    req.group_by_document = args.group_by_document.unwrap_or(false);
    req.version = args.version;
    let started = Instant::now();
    let mut response = blocking(move || kb.search(&req)).await?;
    let elapsed = started.elapsed();
    // By the mode that ran: hybrid without an embedder runs as keyword.
    state.metrics.record_search(response.mode, elapsed);
    crate::knowledge::log_if_slow(&state.loaded.config, &response, elapsed);
    if let Some(problem) = state.knowledge.embed_problem() {
        response
            .notes
            .push(format!("semantic search is off: {problem}"));
    }
    Ok(response)
}

/// A whole document by doc_id, or by path (and source).
pub async fn get_document(
    state: &AppState,
    args: GetDocumentArgs,
) -> Result<exai_kb::DocumentWithChunks, ErrorData> {
    if args.doc_id.is_none() && args.path.is_none() {
        return Err(ErrorData::invalid_params(
            "give doc_id, or path (and source)",
            None,
        ));
    }
    let kb = open_kb(state).await?;
    blocking(move || kb.get_document(args.doc_id, args.source.as_deref(), args.path.as_deref()))
        .await
}

/// What `list_sources` answers: the sources, the knowledge base's status, and why semantic
/// search is off (if it is).
pub async fn list_sources(
    state: &AppState,
) -> Result<(Vec<exai_kb::SourceInfo>, exai_kb::KbStatus, Option<String>), ErrorData> {
    let kb = open_kb(state).await?;
    let problem = state.knowledge.embed_problem();
    let (sources, status) = blocking(move || Ok((kb.sources()?, kb.status()?))).await?;
    Ok((sources, status, problem))
}

/// The source `index_path` files into: the one named, or a fetched spec's default.
async fn source_name(state: &AppState, args: &IndexPathArgs) -> Result<String, ErrorData> {
    if let Some(source) = &args.source {
        return Ok(source.clone());
    }
    let needs = || {
        ErrorData::invalid_params(
            "give `source`, the name to file the documents under (it may be left out only for a URL, a package or a repository)",
            None,
        )
    };
    let Some(spec) = args.path.clone().filter(|p| exai_sources::is_remote(p)) else {
        return Err(needs());
    };
    let settings = exai_sources::Settings::from_loaded(&state.loaded);
    blocking(move || exai_sources::default_source_name(&spec, &settings))
        .await?
        .ok_or_else(needs)
}

/// A refresh over MCP reads what the source's origin names: local roots only where
/// `index_path` could read them itself (the CLI may have indexed them from anywhere).
async fn check_refresh_allowed(state: &AppState, source: &str) -> Result<(), ErrorData> {
    let kb = open_kb(state).await?;
    let sources = blocking(move || kb.sources()).await?;
    let Some(found) = sources.iter().find(|s| s.name == source) else {
        return Err(kb_error(KbError::UnknownValue {
            kind: "source",
            value: source.to_string(),
            hint: None,
            valid: sources.into_iter().map(|s| s.name).collect(),
        }));
    };
    let origin = exai_sources::Origin::of(found);
    let roots = match origin {
        Some(exai_sources::Origin::Paths { roots, .. }) => roots,
        Some(exai_sources::Origin::Git(g)) => exai_sources::local_repository(&g.spec)
            .map(|p| vec![p.display().to_string()])
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    for root in roots {
        state.access.resolve(&root).map_err(|e| {
            ErrorData::invalid_params(
                format!("cannot refresh `{source}` over MCP: {e}; refresh it with `exai refresh {source}`"),
                None,
            )
        })?;
    }
    Ok(())
}

/// Start `principal`'s index job for `source` over `root`, refused while one runs for that
/// source (here or, with PostgreSQL, in any daemon on the database), and run it on the
/// blocking pool.
async fn start_index(
    state: &AppState,
    args: &IndexPathArgs,
    source: &str,
    root: Option<std::path::PathBuf>,
    principal: &str,
) -> Result<Arc<Job>, ErrorData> {
    let jobs = &state.knowledge.jobs;
    // Refused before the knowledge base opens (that may load a model); the start below
    // checks again, atomically across daemons.
    if let Some(running) = jobs.running_for(source).await {
        return Err(ErrorData::invalid_params(
            crate::jobs::StartError::busy(running, principal).to_string(),
            None,
        ));
    }
    let kb = open_kb(state).await?;
    let roots: Vec<String> = root.iter().map(|r| r.display().to_string()).collect();
    let job = jobs
        .start_exclusive("index", source, roots.clone(), principal)
        .await
        .map_err(|e| match e {
            crate::jobs::StartError::Store(_) => ErrorData::internal_error(e.to_string(), None),
            _ => ErrorData::invalid_params(e.to_string(), None),
        })?;
    let request = exai_sources::Request {
        specs: roots,
        source: Some(source.to_string()),
        technology: args.technology.clone(),
        include: args.include.clone().unwrap_or_default(),
        exclude: args.exclude.clone().unwrap_or_default(),
        prune: args.prune.unwrap_or(false),
        ..Default::default()
    };
    let worker = job.clone();
    let settings = exai_sources::Settings::from_loaded(&state.loaded);
    tokio::task::spawn_blocking(move || {
        let progress = |p: &exai_kb::Progress| worker.progress(p);
        // A panic inside indexing must still finish the job, or it reads "running" forever.
        let run = || match request.specs.is_empty() {
            true => exai_sources::refresh(
                &kb,
                &request.source.clone().unwrap_or_default(),
                &settings,
                false,
                &progress,
                &worker.cancel,
            ),
            false => exai_sources::index(&kb, &request, &settings, &progress, &worker.cancel),
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
            .unwrap_or_else(|payload| {
                let message = exai_core::text::panic_message(payload.as_ref());
                tracing::error!(panic = %message, "index job panicked");
                Err(KbError::Invalid(format!(
                    "indexing stopped on an internal error (a bug in exai; details in its log): {message}"
                )))
            });
        worker.finish(result);
    });
    Ok(job)
}

/// Start the job `index_path` starts for `args` on behalf of `principal`: a path only under
/// the allowed roots, a URL, package or repository under the fetch policy (a repository on this
/// machine only from where a path could be read), a refresh (no path) only of a source whose
/// local origin is readable so. Returns at once; the job runs on.
pub async fn start_index_job(
    state: &AppState,
    args: &IndexPathArgs,
    principal: &str,
) -> Result<Arc<Job>, ErrorData> {
    let source = source_name(state, args).await?;
    let root = match &args.path {
        // Fetched under the fetch policy (kb.fetch_allowed_hosts); a repository on this
        // machine only from where index_path may read.
        Some(address) if exai_sources::is_remote(address) => {
            if let Some(repo) = exai_sources::local_repository(address) {
                state
                    .access
                    .resolve(&repo.display().to_string())
                    .map_err(|e| ErrorData::invalid_params(e, None))?;
            }
            Some(address.into())
        }
        Some(path) => Some(
            state
                .access
                .resolve(path)
                .map_err(|e| ErrorData::invalid_params(e, None))?,
        ),
        None => {
            check_refresh_allowed(state, &source).await?;
            None
        }
    };
    start_index(state, args, &source, root, principal).await
}

/// The status of `principal`'s job, as `job_status` answers it.
pub async fn job_status(
    state: &AppState,
    job_id: &str,
    principal: &str,
) -> Result<JobStatus, ErrorData> {
    let jobs = &state.knowledge.jobs;
    match jobs.status(job_id, principal).await {
        Ok(Some(status)) => Ok(status),
        Ok(None) => Err(ErrorData::invalid_params(
            format!(
                "unknown job `{job_id}`; known jobs: {}",
                jobs.known_ids(principal).await.join(", ")
            ),
            None,
        )),
        Err(e) => Err(ErrorData::internal_error(
            format!("cannot read job `{job_id}`: {e}"),
            None,
        )),
    }
}

/// Cancel `principal`'s job, as `cancel_job` does (waiting up to 10 s for it to stop).
pub async fn cancel_job(
    state: &AppState,
    job_id: &str,
    principal: &str,
) -> Result<JobStatus, ErrorData> {
    match state
        .knowledge
        .jobs
        .cancel(job_id, Duration::from_secs(10), principal)
        .await
    {
        Ok(Some(status)) => Ok(status),
        Ok(None) => Err(ErrorData::invalid_params(
            format!("unknown job `{job_id}`"),
            None,
        )),
        Err(e) => Err(ErrorData::internal_error(
            format!("cannot cancel job `{job_id}`: {e}"),
            None,
        )),
    }
}

/// Remove a source and its documents, as `remove_source` does: refused while a job indexes
/// it. Returns how many documents went.
pub async fn remove_source(
    state: &AppState,
    source: &str,
    principal: &str,
) -> Result<u64, ErrorData> {
    if let Some(running) = state.knowledge.jobs.running_for(source).await {
        // Only the job's own principal can cancel it; anyone else can only wait.
        let message = match crate::jobs::StartError::busy(running, principal) {
            crate::jobs::StartError::Busy(job) => format!(
                "source `{}` is being indexed by {}; cancel it with cancel_job (or wait for it to finish), then remove the source",
                job.source, job.job_id
            ),
            other => other.to_string(),
        };
        return Err(ErrorData::invalid_params(message, None));
    }
    let kb = open_kb(state).await?;
    let source = source.to_string();
    blocking(move || kb.remove_source(&source)).await
}

impl ExaiServer {
    async fn kb(&self) -> Result<Arc<exai_kb::Kb>, ErrorData> {
        open_kb(&self.state).await
    }
}

/// Wait up to `wait` for `job` to finish (less if the client cancels), sending the client a
/// progress notification whenever the counts move, when it asked for progress.
async fn follow_job(job: &crate::jobs::Job, wait: Duration, context: &RequestContext<RoleServer>) {
    let token = context.meta.get_progress_token();
    let deadline = tokio::time::Instant::now() + wait;
    let mut last = (usize::MAX, usize::MAX);
    loop {
        let finished = job
            .wait(
                Duration::from_millis(500)
                    .min(deadline.saturating_duration_since(tokio::time::Instant::now())),
            )
            .await;
        let s = job.status();
        if let Some(token) = &token {
            let (done, total, what) = if s.phase == "embedding" {
                (s.embedded, s.embed_total, "texts embedded")
            } else {
                (s.files_done, s.files_total, "files read")
            };
            if (done, total) != last {
                last = (done, total);
                let _ = context
                    .peer
                    .notify_progress(
                        ProgressNotificationParam::new(token.clone(), done as f64)
                            .with_total(total.max(1) as f64)
                            .with_message(format!("{}: {done}/{total} {what}", s.phase)),
                    )
                    .await;
            }
        }
        if finished || tokio::time::Instant::now() >= deadline || context.ct.is_cancelled() {
            break;
        }
    }
}

#[tool_router(router = kb_router, vis = "pub(crate)")]
impl ExaiServer {
    #[tool(
        description = "Search the indexed documentation (keyword + semantic). Hits give title, section, path and snippet; get_chunk or get_document for the full text.",
        annotations(read_only_hint = true, open_world_hint = false),
        output_schema = crate::answer::search_output_schema()
    )]
    async fn search_docs(
        &self,
        Parameters(args): Parameters<SearchDocsArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let budget = args
            .max_tokens
            .map_or(self.state.loaded.config.tools.max_output_tokens, u64::from);
        let response = search(&self.state, args).await?;
        let answer =
            crate::answer::search_answer(&response, usize::try_from(budget).unwrap_or(usize::MAX));
        let mut result =
            CallToolResult::success(vec![rmcp::model::ContentBlock::text(answer.text)]);
        result.structured_content = Some(answer.structured);
        Ok(result)
    }

    #[tool(
        description = "The full text of one chunk by chunk_id, optionally with neighbouring chunks of the same section.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_chunk(
        &self,
        Parameters(args): Parameters<GetChunkArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let kb = self.kb().await?;
        let context = args.context.unwrap_or(0) as usize;
        json(&blocking(move || kb.get_chunk(args.chunk_id, context)).await?)
    }

    #[tool(
        description = "A whole document (metadata and all its chunks in order) by doc_id, or by path (and source).",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_document(
        &self,
        Parameters(args): Parameters<GetDocumentArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        json(&get_document(&self.state, args).await?)
    }

    #[tool(
        description = "Indexed sources with document and chunk counts, chunks still waiting for vectors, and the knowledge base's status (model, search modes).",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_sources(
        &self,
        Parameters(_): Parameters<NoArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let (sources, status, problem) = list_sources(&self.state).await?;
        json(
            &serde_json::json!({ "sources": sources, "status": status, "semantic_search_problem": problem }),
        )
    }

    #[tool(
        description = "The indexed version of a library that a version or range names (default the newest), as the source for search_docs, with every indexed version.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn resolve_library(
        &self,
        Parameters(args): Parameters<ResolveLibraryArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let kb = self.kb().await?;
        let resolved =
            blocking(move || kb.resolve_library(&args.library, args.version.as_deref())).await?;
        json(&resolved)
    }

    #[tool(
        description = "Technologies in the knowledge base with document and chunk counts (values for search_docs' technology filter).",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_technologies(
        &self,
        Parameters(_): Parameters<NoArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let kb = self.kb().await?;
        let counts = blocking(move || kb.counts("technology")).await?;
        json(&serde_json::json!({ "technologies": counts }))
    }

    #[tool(
        description = "Categories in the knowledge base with counts (values for search_docs' category filter), and every category the classifier knows.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_categories(
        &self,
        Parameters(_): Parameters<NoArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let kb = self.kb().await?;
        let known = kb.categories_map().names();
        let counts = blocking(move || kb.counts("category")).await?;
        json(&serde_json::json!({ "categories": counts, "known": known }))
    }

    #[tool(
        description = "Index a file, directory or web site (Markdown, HTML, PDF, text, code) into a source as a background job, or refresh a source (no path); returns its status after wait_secs, then poll job_status. Unchanged files are skipped.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    async fn index_path(
        &self,
        Parameters(args): Parameters<IndexPathArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let principal = crate::http::Principal::of(&context);
        let job = start_index_job(&self.state, &args, principal.name()).await?;
        // Wait for the job within the tool's own deadline, telling the client how it goes.
        let ceiling = self
            .state
            .loaded
            .timeouts
            .workflow_tool_for(None)
            .saturating_sub(Duration::from_secs(3));
        let wait = Duration::from_secs(u64::from(args.wait_secs.unwrap_or(20))).min(ceiling);
        follow_job(&job, wait, &context).await;
        let status = job.status();
        if status.state == JobState::Failed {
            return Ok(CallToolResult::error(vec![
                rmcp::model::ContentBlock::text(format!(
                    "indexing failed: {}",
                    status.error.clone().unwrap_or_default()
                )),
            ]));
        }
        json(&status)
    }

    #[tool(
        description = "Status of a background job started by index_path: state, phase, files and embeddings done, and the report when finished.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn job_status(
        &self,
        Parameters(args): Parameters<JobArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let principal = crate::http::Principal::of(&context);
        json(&job_status(&self.state, &args.job_id, principal.name()).await?)
    }

    #[tool(
        description = "Cancel a running index job. What it committed stays; indexing the same path again resumes.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = false
        )
    )]
    async fn cancel_job(
        &self,
        Parameters(args): Parameters<JobArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let principal = crate::http::Principal::of(&context);
        json(&cancel_job(&self.state, &args.job_id, principal.name()).await?)
    }

    #[tool(
        description = "Remove a source and all its documents from the knowledge base.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            open_world_hint = false
        )
    )]
    async fn remove_source(
        &self,
        Parameters(args): Parameters<RemoveSourceArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let principal = crate::http::Principal::of(&context);
        let removed = remove_source(&self.state, &args.source, principal.name()).await?;
        json(&serde_json::json!({ "source": args.source, "documents_removed": removed }))
    }
}
