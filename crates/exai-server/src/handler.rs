//! The MCP server handler: the tools, and the one wrapper every call goes through (deadline,
//! cancellation, in-flight accounting, metrics, activity record).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorCode,
    Implementation, ProgressNotificationParam, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::health::HealthReport;
use crate::metrics::Outcome;
use crate::registry::{self, Profile, TimeoutClass};
use crate::state::AppState;

/// One MCP session's handler. Cheap to create: all heavy state is shared in [`AppState`].
#[derive(Clone)]
pub struct ExaiServer {
    pub(crate) state: Arc<AppState>,
    tool_router: ToolRouter<Self>,
    /// What `tools/list` shows this session, beyond what `enable_tools` added.
    profile: Profile,
    /// Tools this session asked to see through `enable_tools`.
    shown: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnableToolsArgs {
    /// Tool names, or `kb`, `ai` or `all`, to list from now on; without it, what is available.
    pub enable: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PingArgs {
    /// How long to wait before answering, in milliseconds (0–600000; the simple tool timeout
    /// still applies).
    #[serde(default)]
    pub delay_ms: u64,
    /// Progress notifications to send while waiting (0–1000), if the client asked for progress.
    #[serde(default)]
    pub progress_steps: u32,
    /// Text to send back.
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

#[tool_router]
impl ExaiServer {
    /// A session with the configured profile (`tools.profile`).
    pub fn new(state: Arc<AppState>) -> Self {
        let profile = state.loaded.config.tools.profile;
        Self::with_profile(state, profile)
    }

    /// A session that lists `profile`'s tools.
    pub fn with_profile(state: Arc<AppState>, profile: Profile) -> Self {
        let mut tool_router = Self::tool_router() + Self::kb_router() + Self::ai_router();
        let names: Vec<String> = tool_router
            .list_all()
            .iter()
            .map(|t| t.name.to_string())
            .collect();
        for name in names {
            let keep =
                registry::spec(&name).is_some_and(|s| registry::enabled(s, &state.loaded.config));
            if !keep {
                tool_router.remove_route(&name);
            }
        }
        Self {
            state,
            tool_router,
            profile,
            shown: Arc::default(),
        }
    }

    /// The tools `tools/list` shows now, in the lean schema form.
    pub fn listed_tools(&self) -> Vec<rmcp::model::Tool> {
        let shown = self.shown.lock().map(|s| s.clone()).unwrap_or_default();
        self.tool_router
            .list_all()
            .iter()
            .filter(|t| {
                shown.contains(t.name.as_ref())
                    || registry::spec(&t.name).is_some_and(|s| registry::lists(self.profile, s))
            })
            .map(crate::schema::lean_tool)
            .collect()
    }

    /// The tools this session does not list yet, with the first sentence of each description.
    fn hidden_tools(&self) -> Vec<(String, &'static str, String)> {
        let listed: Vec<String> = self
            .listed_tools()
            .iter()
            .map(|t| t.name.to_string())
            .collect();
        self.tool_router
            .list_all()
            .iter()
            .filter(|t| {
                t.name != registry::ENABLE_TOOLS && !listed.iter().any(|l| l == t.name.as_ref())
            })
            .map(|t| {
                let family = registry::spec(&t.name).map_or("core", |s| s.family.as_str());
                let description = t.description.as_deref().unwrap_or_default();
                let first = description
                    .split_once(". ")
                    .map_or(description, |(first, _)| first)
                    .trim_end_matches('.');
                (t.name.to_string(), family, format!("{first}."))
            })
            .collect()
    }

    /// Names of the tools this server offers, sorted; `enable_tools`, which only lists others,
    /// aside.
    pub fn tool_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .tool_router
            .list_all()
            .iter()
            .map(|t| t.name.to_string())
            .filter(|n| n != registry::ENABLE_TOOLS)
            .collect();
        names.sort();
        names
    }

    #[tool(
        description = "List exai's other tools (code review, debugging, planning, indexing, …) and show the ones you need: `enable` takes tool names or `kb`, `ai`, `all`.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn enable_tools(
        &self,
        Parameters(args): Parameters<EnableToolsArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let hidden = self.hidden_tools();
        let Some(asked) = args.enable.filter(|a| !a.is_empty()) else {
            let lines: Vec<String> = hidden
                .iter()
                .map(|(name, family, what)| format!("- {name} ({family}): {what}"))
                .collect();
            let text = if lines.is_empty() {
                "Every tool is listed already.".to_string()
            } else {
                format!(
                    "Tools not listed yet (call enable_tools with `enable` to list them; each is also callable as it is):\n{}",
                    lines.join("\n")
                )
            };
            return Ok(CallToolResult::success(vec![ContentBlock::text(text)]));
        };
        let mut picked = Vec::new();
        for name in &asked {
            let matching: Vec<&String> = hidden
                .iter()
                .filter(|(tool, family, _)| {
                    name == "all" || tool == name || *family == name.as_str()
                })
                .map(|(tool, _, _)| tool)
                .collect();
            let known = name == "all"
                || ["kb", "ai", "core", "diag"].contains(&name.as_str())
                || self.tool_router.has_route(name);
            if !known {
                let off = registry::spec(name).is_some();
                return Err(ErrorData::invalid_params(
                    if off {
                        format!(
                            "`{name}` is switched off in this server's configuration (tools.disabled, tools.disabled_families)"
                        )
                    } else {
                        format!(
                            "unknown tool `{name}`; call enable_tools without arguments for the list"
                        )
                    },
                    None,
                ));
            }
            picked.extend(matching.into_iter().cloned());
        }
        picked.sort();
        picked.dedup();
        if let Ok(mut shown) = self.shown.lock() {
            shown.extend(picked.iter().cloned());
        }
        if !picked.is_empty() {
            // The client asks for the list again; one that does not still may call them.
            let _ = context.peer.notify_tool_list_changed().await;
        }
        let text = if picked.is_empty() {
            "Those tools are listed already.".to_string()
        } else {
            format!("Listed from now on: {}.", picked.join(", "))
        };
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]))
    }

    #[tool(
        description = "exai's version, build and MCP protocol details. Always available.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn version(
        &self,
        Parameters(_): Parameters<NoArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let info = serde_json::json!({
            "name": "exai",
            "version": exai_core::VERSION,
            "transport": self.state.transport.as_str(),
            "protocol_versions": rmcp::model::ProtocolVersion::KNOWN_VERSIONS.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
            "target": std::env::consts::ARCH.to_string() + "-" + std::env::consts::OS,
            "debug_build": cfg!(debug_assertions),
            "tools": self.tool_names(),
        });
        Ok(CallToolResult::structured(info))
    }

    #[tool(
        description = "Health of this exai server: status, uptime, pid, data directory, timeout hierarchy, providers configured, tools on. Always available.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn health(&self, Parameters(_): Parameters<NoArgs>) -> Result<CallToolResult, ErrorData> {
        let report = HealthReport::collect(&self.state, self.tool_names());
        let value = serde_json::to_value(&report)
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        Ok(CallToolResult::structured(value))
    }

    #[tool(
        description = "Diagnostics: wait delay_ms, sending progress_steps progress notifications, then answer. For testing clients, shims, progress and timeouts.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn ping(
        &self,
        Parameters(args): Parameters<PingArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        if args.delay_ms > 600_000 || args.progress_steps > 1000 {
            return Err(ErrorData::invalid_params(
                "delay_ms must be at most 600000 and progress_steps at most 1000",
                None,
            ));
        }
        let steps = args.progress_steps.max(1);
        let slice = Duration::from_millis(args.delay_ms) / steps;
        let token = context.meta.get_progress_token();
        for step in 0..steps {
            tokio::time::sleep(slice).await;
            if let (Some(token), true) = (&token, args.progress_steps > 0) {
                let _ = context
                    .peer
                    .notify_progress(
                        ProgressNotificationParam::new(token.clone(), f64::from(step + 1))
                            .with_total(f64::from(steps))
                            .with_message(format!("step {} of {steps}", step + 1)),
                    )
                    .await;
            }
        }
        Ok(CallToolResult::structured(serde_json::json!({
            "pong": args.message.unwrap_or_else(|| "pong".into()),
            "delay_ms": args.delay_ms,
            "progress_steps": args.progress_steps,
        })))
    }
}

impl ExaiServer {
    /// The tool's deadline; a call naming a model with a timeout multiplier gets its share.
    fn deadline(&self, tool: &str, model: Option<&str>) -> Duration {
        let t = &self.state.config().timeouts;
        match registry::spec(tool).map(|s| s.timeout) {
            Some(TimeoutClass::Workflow) => t.workflow_tool_for(model),
            _ => t.simple_tool_for(model),
        }
    }

    fn record(
        &self,
        tool: &str,
        context: &RequestContext<RoleServer>,
        started: Instant,
        outcome: Outcome,
        error_kind: Option<String>,
    ) {
        self.record_with(tool, context, started, outcome, error_kind, None);
    }

    /// Record a call in the metrics and the activity log; an AI tool's structured result gives
    /// the model, provider, tokens and cost.
    fn record_with(
        &self,
        tool: &str,
        context: &RequestContext<RoleServer>,
        started: Instant,
        outcome: Outcome,
        error_kind: Option<String>,
        result: Option<&serde_json::Value>,
    ) {
        let elapsed = started.elapsed();
        self.state.metrics.record_call(tool, outcome, elapsed);
        let watched = self.state.events.is_watched();
        if self.state.activity.is_none() && !watched {
            return;
        }
        let session = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.headers.get("mcp-session-id"))
            .and_then(|v| v.to_str().ok())
            .map_or_else(|| self.state.transport.as_str().to_string(), str::to_string);
        let client = context.peer.peer_info();
        let record = exai_core::activity::ActivityRecord {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            tool: tool.to_string(),
            session,
            request_id: context.id.to_string(),
            duration_ms: (elapsed.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
            outcome: outcome.as_str().to_string(),
            error_kind,
            model: result.and_then(|v| v["model"].as_str()).map(str::to_string),
            provider: result
                .and_then(|v| v["provider"].as_str())
                .map(str::to_string),
            tokens_in: result.and_then(|v| v["usage"]["prompt_tokens"].as_u64()),
            tokens_out: result.and_then(|v| v["usage"]["completion_tokens"].as_u64()),
            cost_usd: result.and_then(|v| v["cost_usd"].as_f64()),
            route: result.and_then(|v| v["route"].as_str()).map(str::to_string),
            client: client.as_ref().map(|c| clip(&c.client_info.name)),
            client_version: client.as_ref().map(|c| clip(&c.client_info.version)),
            principal: Some(crate::http::Principal::of(context).name().to_string()),
            search: search_activity(tool, result, self.state.loaded.config.logging.log_queries),
        };
        if let Some(log) = &self.state.activity {
            log.record(&record);
        }
        if watched {
            self.state
                .events
                .publish(crate::events::ServerEvent::Call(Arc::new(record)));
        }
    }
}

/// What a client says about itself is recorded for `exai stats --by-client`, at most this long.
const CLIENT_INFO_BYTES: usize = 100;

fn clip(text: &str) -> String {
    exai_core::text::clip(text, CLIENT_INFO_BYTES).to_string()
}

/// Characters per token used to turn `tools.max_output_tokens` into a size.
const CHARS_PER_TOKEN: u64 = 4;

/// Cut text content to `max_chars` in total, with a note saying so; drop structured content that
/// alone exceeds the cap. Returns whether anything was cut. A long answer is never a protocol error.
fn cap_output(result: &mut CallToolResult, max_chars: usize) -> bool {
    let mut cut = false;
    if result
        .structured_content
        .as_ref()
        .is_some_and(|v| json_len_exceeds(v, max_chars))
    {
        result.structured_content = None;
        cut = true;
    }
    let total: usize = result
        .content
        .iter()
        .filter_map(|c| c.as_text())
        .map(|t| t.text.chars().count())
        .sum();
    if total <= max_chars {
        return cut;
    }
    let mut budget = max_chars;
    for block in &mut result.content {
        if let Some(text) = block.as_text() {
            let len = text.text.chars().count();
            let keep = len.min(budget);
            if keep < len {
                let kept: String = text.text.chars().take(keep).collect();
                *block = ContentBlock::text(kept);
            }
            budget -= keep;
        }
    }
    result.content.push(ContentBlock::text(format!(
        "\n[output truncated: {max_chars} of {total} characters shown; raise MAX_MCP_OUTPUT_TOKENS (tools.max_output_tokens) for more]"
    )));
    true
}

/// Whether `v` as JSON is longer than `max` bytes, found without building the text: the writer
/// only counts, and stops the serialisation as soon as the limit is passed.
fn json_len_exceeds(v: &serde_json::Value, max: usize) -> bool {
    struct Counter {
        n: usize,
        max: usize,
    }
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.n += buf.len();
            if self.n > self.max {
                return Err(std::io::Error::other("over the limit"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter { n: 0, max };
    serde_json::to_writer(&mut counter, v).is_err()
}

/// A search's mode and hit count from `search_docs`' structured result, with its text only when
/// `logging.log_queries` is on.
fn search_activity(
    tool: &str,
    result: Option<&serde_json::Value>,
    with_query: bool,
) -> Option<exai_core::activity::SearchActivity> {
    let result = result.filter(|_| tool == "search_docs")?;
    let shown = result["hits"].as_array().map_or(0, Vec::len) as u64;
    Some(exai_core::activity::SearchActivity {
        mode: result["mode"].as_str()?.to_string(),
        hits: shown + result["omitted"].as_u64().unwrap_or(0),
        query: with_query
            .then(|| result["query"].as_str())
            .flatten()
            .map(|q| exai_core::text::clip_with_ellipsis(q, 500)),
    })
}

fn error_kind(e: &ErrorData) -> String {
    match e.code {
        ErrorCode::INVALID_PARAMS if e.message.contains("not found") => "unknown_tool".into(),
        ErrorCode::INVALID_PARAMS => "invalid_params".into(),
        ErrorCode::METHOD_NOT_FOUND => "method_not_found".into(),
        ErrorCode::INTERNAL_ERROR => "internal".into(),
        other => format!("code_{}", other.0),
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for ExaiServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
            .with_server_info(
                Implementation::new("exai", exai_core::VERSION)
                    .with_title("exai")
                    .with_description("Multi-model AI tools and a local documentation knowledge base"),
            )
            .with_instructions(
                "exai: consult other AI models and search indexed documentation. Call `health` to see what is configured.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListToolsResult, ErrorData> {
        Ok(rmcp::model::ListToolsResult {
            tools: self.listed_tools(),
            ..Default::default()
        })
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        use futures::FutureExt;
        let started = Instant::now();
        let tool = request.name.to_string();
        // Every request gets an answer: a bug that panics on some input becomes an error reply
        // and a log line, instead of a call the client waits on until its own timeout.
        let call = std::panic::AssertUnwindSafe(self.call_tool_guarded(request, context.clone()));
        match call.catch_unwind().await {
            Ok(answer) => answer,
            Err(payload) => {
                let message = exai_core::text::panic_message(payload.as_ref());
                tracing::error!(tool = %tool, panic = %message, "tool call panicked");
                self.record(
                    &tool,
                    &context,
                    started,
                    Outcome::Error,
                    Some("internal".into()),
                );
                Ok(CallToolResponse::Complete(CallToolResult::error(vec![
                    ContentBlock::text(format!(
                        "`{tool}` failed on an internal error, a bug in exai; the details are in \
                         its log (`exai logs --errors`). Please report it."
                    )),
                ])))
            }
        }
    }
}

impl ExaiServer {
    async fn call_tool_guarded(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let started = Instant::now();
        let tool = request.name.to_string();
        if let Some((kind, refusal)) = self.refusal(&tool, &request) {
            self.record(&tool, &context, started, Outcome::Error, Some(kind.into()));
            return refusal;
        }
        let _inflight = self.state.enter();
        let model = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("model"))
            .and_then(|m| m.as_str())
            .map(str::to_string);
        let deadline = self.deadline(&tool, model.as_deref());
        let ct = context.ct.clone();
        let call_context = context.clone();
        let call = self
            .tool_router
            .call(ToolCallContext::new(self, request, call_context));
        let result = tokio::select! {
            r = tokio::time::timeout(deadline, call) => r,
            () = ct.cancelled() => {
                self.record(&tool, &context, started, Outcome::Cancelled, None);
                return Err(ErrorData::new(ErrorCode::INTERNAL_ERROR, "cancelled by the client", None));
            }
        };
        match result {
            Ok(Ok(response)) => Ok(self.answered(&tool, &context, started, response)),
            Ok(Err(e)) => {
                self.record(
                    &tool,
                    &context,
                    started,
                    Outcome::Error,
                    Some(error_kind(&e)),
                );
                Err(e)
            }
            Err(_) => {
                self.record(
                    &tool,
                    &context,
                    started,
                    Outcome::Timeout,
                    Some("timeout".into()),
                );
                Ok(timed_out(&tool, deadline))
            }
        }
    }

    /// A call answered before it runs, with the error kind it is recorded under: every call
    /// while the daemon drains, and arguments that do not fit the tool's schema.
    fn refusal(
        &self,
        tool: &str,
        request: &CallToolRequestParams,
    ) -> Option<(&'static str, Result<CallToolResponse, ErrorData>)> {
        if self.state.is_draining() {
            return Some((
                "shutting_down",
                Err(ErrorData::new(
                    ErrorCode::INTERNAL_ERROR,
                    "exai is shutting down and accepts no new calls; retry once it has restarted",
                    None,
                )),
            ));
        }
        let spec = self.tool_router.get(tool)?;
        let message =
            crate::argcheck::check(tool, &spec.input_schema, request.arguments.as_ref()).err()?;
        Some((
            "invalid_arguments",
            Ok(CallToolResponse::Complete(CallToolResult::error(vec![
                ContentBlock::text(message),
            ]))),
        ))
    }

    /// A tool's answer capped at `tools.max_output_tokens`, recorded as a success or as the
    /// error kind the tool put in its structured content.
    fn answered(
        &self,
        tool: &str,
        context: &RequestContext<RoleServer>,
        started: Instant,
        mut response: CallToolResponse,
    ) -> CallToolResponse {
        let tokens = self.state.loaded.config.tools.max_output_tokens;
        let max_chars = usize::try_from(tokens * CHARS_PER_TOKEN).unwrap_or(usize::MAX);
        if let CallToolResponse::Complete(result) = &mut response
            && cap_output(result, max_chars)
        {
            tracing::info!(tool = %tool, max_chars, "tool output truncated");
        }
        let is_error =
            matches!(&response, CallToolResponse::Complete(r) if r.is_error == Some(true));
        let structured = match &response {
            CallToolResponse::Complete(r) => r.structured_content.as_ref(),
            _ => None,
        };
        let (outcome, kind) = if is_error {
            let kind = structured
                .and_then(|v| v["error"].as_str())
                .unwrap_or("tool_error");
            (Outcome::Error, Some(kind.to_string()))
        } else {
            (Outcome::Ok, None)
        };
        self.record_with(tool, context, started, outcome, kind, structured);
        response
    }
}

/// The answer to a call that ran out of time, naming the setting that bounds it.
fn timed_out(tool: &str, deadline: Duration) -> CallToolResponse {
    let key = match registry::spec(tool).map(|s| s.timeout) {
        Some(TimeoutClass::Workflow) => "timeouts.workflow_tool_secs",
        _ => "timeouts.simple_tool_secs",
    };
    CallToolResponse::Complete(CallToolResult::error(vec![ContentBlock::text(format!(
        "`{tool}` did not finish within its {:.1} s timeout ({key}); the work was stopped",
        deadline.as_secs_f64()
    ))]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_capped_with_a_note() {
        let mut r = CallToolResult::success(vec![
            ContentBlock::text("a".repeat(30)),
            ContentBlock::text("b".repeat(30)),
        ]);
        r.structured_content = Some(serde_json::json!({ "x": "y".repeat(100) }));
        assert!(cap_output(&mut r, 40));
        assert!(r.structured_content.is_none());
        let texts: Vec<String> = r
            .content
            .iter()
            .filter_map(|c| c.as_text())
            .map(|t| t.text.clone())
            .collect();
        assert_eq!(texts[0].len(), 30);
        assert_eq!(texts[1], "b".repeat(10));
        assert!(texts[2].contains("40 of 60 characters"));
        let v = serde_json::json!({ "x": "y".repeat(100) });
        let len = v.to_string().len();
        assert!(!json_len_exceeds(&v, len));
        assert!(json_len_exceeds(&v, len - 1));
        let mut small = CallToolResult::success(vec![ContentBlock::text("ok")]);
        assert!(!cap_output(&mut small, 40));
        assert_eq!(small.content.len(), 1);
    }

    #[test]
    fn every_tool_method_is_registered() {
        for tool in (ExaiServer::tool_router() + ExaiServer::kb_router() + ExaiServer::ai_router())
            .list_all()
        {
            assert!(
                registry::spec(&tool.name).is_some(),
                "{} is not in registry::TOOLS",
                tool.name
            );
        }
    }
}
