//! The AI tools (family `ai`): chat, thinkdeep, consensus, challenge, planner, the workflow tools,
//! listmodels, list_threads and glm_web_search. Arguments come from schemars types; the logic
//! lives in exai-tools and exai-llm; this layer wires progress, cancellation and rendering.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use exai_llm::ProgressFn;
use exai_tools::ai::{ConsensusInput, ConsensusModel, Stance, ToolError};
use exai_tools::planner::PlanStep;
use exai_tools::workflow::{Confidence, Issue, Step, StepOptions};
use exai_tools::{AiService, CallCtx, Grounding, ThinkingMode, TurnInput};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, ProgressNotificationParam};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::handler::ExaiServer;
use crate::http::Principal;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatArgs {
    /// The request, with the context the other model needs.
    pub prompt: String,
    /// Files or directories to send (under the allowed roots).
    pub files: Option<Vec<String>>,
    /// From listmodels, or "auto" (the default).
    pub model: Option<String>,
    #[schemars(range(min = 0.0, max = 2.0))]
    pub temperature: Option<f64>,
    /// medium and above turn on a model's reasoning mode.
    pub thinking_mode: Option<ThinkingMode>,
    /// Web search (GLM).
    pub use_websearch: Option<bool>,
    /// From an earlier answer or list_threads.
    pub continuation_id: Option<String>,
    /// Send knowledge-base chunks matching this query along.
    pub docs_query: Option<String>,
    /// Chunks to send with docs_query (default 5).
    #[schemars(range(min = 1, max = 10))]
    pub docs_limit: Option<u32>,
    /// Tokens the answer may take; the model is asked to answer within it.
    #[schemars(range(min = 100))]
    pub max_tokens: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ThinkDeepArgs {
    /// The problem, your current analysis and what you want examined.
    pub prompt: String,
    /// Aspects to focus on, e.g. ["performance", "security"].
    pub focus_areas: Option<Vec<String>>,
    pub files: Option<Vec<String>>,
    pub model: Option<String>,
    #[schemars(range(min = 0.0, max = 2.0))]
    pub temperature: Option<f64>,
    /// Default high.
    pub thinking_mode: Option<ThinkingMode>,
    pub use_websearch: Option<bool>,
    pub continuation_id: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsensusModelArg {
    pub model: String,
    /// Default neutral.
    pub stance: Option<Stance>,
    /// Replaces the stance's standard instruction.
    pub stance_prompt: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsensusArgs {
    /// The proposal or question to assess.
    pub prompt: String,
    /// 1–8 models, each with a stance.
    pub models: Vec<ConsensusModelArg>,
    pub files: Option<Vec<String>>,
    /// Default true.
    pub synthesize: Option<bool>,
    /// Default: the first model that answered.
    pub synthesis_model: Option<String>,
    pub continuation_id: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChallengeArgs {
    /// The statement to examine critically (often the user's pushback on your answer).
    pub prompt: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlannerArgs {
    /// This step of the plan.
    pub step: String,
    /// 1-based.
    #[schemars(range(min = 1))]
    pub step_number: u32,
    /// Current estimate; may change.
    #[schemars(range(min = 1))]
    pub total_steps: u32,
    /// False on the last step.
    pub next_step_required: bool,
    pub is_step_revision: Option<bool>,
    pub revises_step_number: Option<u32>,
    pub is_branch_point: Option<bool>,
    pub branch_from_step: Option<u32>,
    pub branch_id: Option<String>,
    pub continuation_id: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueArg {
    /// critical, high, medium, low.
    pub severity: String,
    pub description: String,
}

/// The step protocol shared by analyze, codereview, debug, refactor, secaudit, testgen, tracer
/// and docgen.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowArgs {
    // The fields are explained once, in the first step's guidance (`exai_tools::workflow`), not
    // in every workflow tool's schema: each definition sits in the client's context all session.
    /// On step 1: the task and its scope.
    pub step: String,
    #[schemars(range(min = 1))]
    pub step_number: u32,
    #[schemars(range(min = 1))]
    pub total_steps: u32,
    pub next_step_required: bool,
    pub findings: String,
    pub files_checked: Option<Vec<String>>,
    pub relevant_files: Option<Vec<String>>,
    pub issues_found: Option<Vec<IssueArg>>,
    pub hypothesis: Option<String>,
    pub confidence: Option<Confidence>,
    pub backtrack_from_step: Option<u32>,
    pub use_assistant_model: Option<bool>,
    pub continuation_id: Option<String>,
    pub model: Option<String>,
    #[schemars(range(min = 0.0, max = 2.0))]
    pub temperature: Option<f64>,
    pub thinking_mode: Option<ThinkingMode>,
}

/// precommit: the step protocol plus the git changes to validate.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrecommitArgs {
    #[serde(flatten)]
    pub workflow: WorkflowArgs,
    /// Repository (or a directory inside it) whose changes to validate; default the working directory.
    pub path: Option<String>,
    /// Compare against this ref (branch, tag, commit) instead of staged/unstaged changes.
    pub compare_to: Option<String>,
    /// Include staged changes (default true).
    pub include_staged: Option<bool>,
    /// Include unstaged changes (default true).
    pub include_unstaged: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListThreadsArgs {
    /// Most threads to list, 1–100 (default 20).
    #[schemars(range(min = 1, max = 100))]
    pub limit: Option<u32>,
    /// Only threads started by this tool.
    pub tool: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebSearchArgs {
    /// What to search the web for.
    pub query: String,
    /// Results, 1–10 (default 5).
    #[schemars(range(min = 1, max = 10))]
    pub count: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KimiFilesArgs {
    /// The question about the files.
    pub prompt: String,
    /// Files for Kimi to extract text from on its side (PDF, Word, slides, text…), under the
    /// allowed roots, each at most providers.max_file_bytes.
    pub files: Vec<String>,
    /// A Kimi model (default kimi-k2-0905-preview).
    pub model: Option<String>,
    pub continuation_id: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoAiArgs {}

fn tool_error(e: &ToolError) -> CallToolResult {
    let mut structured = json!({ "error": e.kind(), "message": e.to_string() });
    if let ToolError::Llm(l) = e
        && let Some(after) = l.retry_after()
    {
        structured["retry_after_secs"] = json!(after.as_secs_f64().ceil());
    }
    let mut r = CallToolResult::error(vec![ContentBlock::text(e.to_string())]);
    r.structured_content = Some(structured);
    r
}

fn render(text: String, structured: Value) -> CallToolResult {
    let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
    r.structured_content = Some(structured);
    r
}

/// What the footer under an answer (model, tokens, cost, continuation) takes of a budget.
const FOOTER_TOKENS: u64 = 80;

fn footer(v: &Value) -> String {
    let mut lines = Vec::new();
    if v["finish_reason"].as_str() == Some("length") {
        lines.push(
            "the answer stopped at its token limit (max_tokens, or the model's own): continue the \
             conversation for the rest"
                .to_string(),
        );
    }
    if let (Some(model), Some(provider)) = (v["model"].as_str(), v["provider"].as_str()) {
        lines.push(format!(
            "model: {model} ({provider}); tokens in/out: {}/{}; cost: ${:.6}",
            v["usage"]["prompt_tokens"],
            v["usage"]["completion_tokens"],
            v["cost_usd"].as_f64().unwrap_or(0.0)
        ));
    }
    if let Some(id) = v["continuation_id"].as_str() {
        lines.push(format!(
            "continuation_id: {id} (pass it to continue this conversation; {} turns left)",
            v["remaining_turns"]
        ));
    }
    if let Some(used) = v["files"]["used"].as_array().filter(|u| !u.is_empty()) {
        let names: Vec<&str> = used.iter().filter_map(|u| u["path"].as_str()).collect();
        lines.push(format!("files sent: {}", names.join(", ")));
    }
    if let Some(skipped) = v["files"]["skipped"].as_array().filter(|u| !u.is_empty()) {
        for s in skipped {
            lines.push(format!(
                "file left out: {} ({})",
                s["path"].as_str().unwrap_or(""),
                s["reason"].as_str().unwrap_or("")
            ));
        }
    }
    if let Some(docs) = v["docs_used"].as_array().filter(|d| !d.is_empty()) {
        for (i, d) in docs.iter().enumerate() {
            lines.push(format!(
                "[doc {}] chunk {}: {} — {} ({}: {})",
                i + 1,
                d["chunk_id"],
                d["title"].as_str().unwrap_or(""),
                d["section"].as_str().unwrap_or(""),
                d["source"].as_str().unwrap_or(""),
                d["path"].as_str().unwrap_or("")
            ));
        }
    }
    if let Some(fallbacks) = v["fallbacks"].as_array().filter(|f| !f.is_empty()) {
        for f in fallbacks {
            lines.push(format!(
                "fell back from {}: {}",
                f["model"].as_str().unwrap_or(""),
                f["error"].as_str().unwrap_or("")
            ));
        }
    }
    lines.join("\n")
}

/// Streams the model's progress to the client as MCP progress notifications, at most every
/// 250 ms, and lets the caller wait until every notification is out before it answers.
struct ProgressPump {
    callback: Option<ProgressFn>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ProgressPump {
    fn start(context: &RequestContext<RoleServer>) -> ProgressPump {
        let Some(token) = context.meta.get_progress_token() else {
            return ProgressPump {
                callback: None,
                task: None,
            };
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
        let last = Arc::new(Mutex::new(None::<Instant>));
        let callback: ProgressFn = Arc::new(move |chars| {
            let Ok(mut last) = last.lock() else { return };
            if last.is_none_or(|t| t.elapsed() >= Duration::from_millis(250)) {
                *last = Some(Instant::now());
                let _ = tx.send(chars);
            }
        });
        let peer = context.peer.clone();
        let task = tokio::spawn(async move {
            while let Some(chars) = rx.recv().await {
                let _ = peer
                    .notify_progress(
                        ProgressNotificationParam::new(token.clone(), chars as f64)
                            .with_message(format!("received {chars} characters from the model")),
                    )
                    .await;
            }
        });
        ProgressPump {
            callback: Some(callback),
            task: Some(task),
        }
    }

    async fn finish(mut self) {
        self.callback = None;
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
    }
}

impl ExaiServer {
    fn ai(&self) -> Arc<AiService> {
        self.state.ai()
    }

    fn call_ctx(
        &self,
        context: &RequestContext<RoleServer>,
        progress: Option<ProgressFn>,
    ) -> CallCtx {
        let session = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.headers.get("mcp-session-id"))
            .and_then(|v| v.to_str().ok())
            .map_or_else(|| self.state.transport.as_str().to_string(), str::to_string);
        CallCtx {
            session,
            principal: Principal::of(context).name().to_string(),
            cancel: context.ct.clone(),
            progress,
            started: Instant::now(),
        }
    }

    async fn grounding(&self, query: &str, limit: usize) -> Result<Vec<Grounding>, ErrorData> {
        let kb = self.state.knowledge.get().await.map_err(|e| {
            ErrorData::internal_error(format!("knowledge base unavailable: {e}"), None)
        })?;
        let query = query.to_string();
        let found =
            tokio::task::spawn_blocking(move || -> Result<Vec<Grounding>, exai_kb::KbError> {
                let mut req = exai_kb::SearchRequest::new(query);
                req.limit = limit;
                let response = kb.search(&req)?;
                let mut out = Vec::new();
                for hit in response.hits {
                    let text = kb.get_chunk(hit.chunk_id, 0)?.chunk.text;
                    out.push(Grounding {
                        chunk_id: hit.chunk_id,
                        source: hit.source,
                        title: hit.title,
                        section: hit.section,
                        // A page's URL says where it came from; a local file's absolute path
                        // would tell the provider about the user's machine.
                        path: hit
                            .uri
                            .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
                            .unwrap_or(hit.path),
                        score: hit.score,
                        text,
                    });
                }
                Ok(out)
            })
            .await
            .map_err(|e| ErrorData::internal_error(format!("task failed: {e}"), None))?;
        found.map_err(|e| {
            ErrorData::internal_error(format!("knowledge base search failed: {e}"), None)
        })
    }

    async fn run_turn(
        &self,
        input: TurnInput,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let pump = ProgressPump::start(context);
        let ctx = self.call_ctx(context, pump.callback.clone());
        let result = self.ai().turn(input, &ctx, false).await;
        drop(ctx);
        pump.finish().await;
        Ok(match result {
            Ok(out) => {
                let v = serde_json::to_value(&out).unwrap_or(Value::Null);
                let text = format!("{}\n\n---\n{}", out.completion.content, footer(&v));
                render(text, v)
            }
            Err(e) => tool_error(&e),
        })
    }

    async fn run_workflow(
        &self,
        tool: &str,
        args: WorkflowArgs,
        extra: Option<String>,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let step = Step {
            step: args.step,
            step_number: args.step_number,
            total_steps: args.total_steps,
            next_step_required: args.next_step_required,
            findings: args.findings,
            files_checked: args.files_checked.unwrap_or_default(),
            relevant_files: args.relevant_files.unwrap_or_default(),
            issues_found: args
                .issues_found
                .unwrap_or_default()
                .into_iter()
                .map(|i| Issue {
                    severity: i.severity,
                    description: i.description,
                })
                .collect(),
            hypothesis: args.hypothesis,
            confidence: args.confidence,
            backtrack_from_step: args.backtrack_from_step,
        };
        let options = StepOptions {
            continuation_id: args.continuation_id,
            model: args.model,
            thinking: args.thinking_mode,
            use_assistant_model: args.use_assistant_model.unwrap_or(true),
            temperature: args.temperature,
            context: extra,
        };
        let pump = ProgressPump::start(context);
        let ctx = self.call_ctx(context, pump.callback.clone());
        let result = self.ai().workflow_step(tool, step, options, &ctx).await;
        drop(ctx);
        pump.finish().await;
        Ok(match result {
            Ok(out) => {
                let mut v = serde_json::to_value(&out).unwrap_or(Value::Null);
                let mut text = format!(
                    "{tool}: {} (step {} of {})\n{}",
                    out.status, out.step_number, out.total_steps, out.guidance
                );
                for a in &out.required_actions {
                    text.push_str(&format!("\n- {a}"));
                }
                if let Some(expert) = &out.expert_analysis {
                    text.push_str(&format!(
                        "\n\nExpert analysis:\n{}",
                        expert.completion.content
                    ));
                    // Lift the expert call's accounting to the top for the activity record.
                    let e = serde_json::to_value(expert).unwrap_or(Value::Null);
                    for key in ["model", "provider", "usage", "cost_usd", "route"] {
                        v[key] = e[key].clone();
                    }
                    text.push_str(&format!("\n\n---\n{}", footer(&e)));
                }
                text.push_str(&format!("\ncontinuation_id: {}", out.continuation_id));
                render(text, v)
            }
            Err(e) => tool_error(&e),
        })
    }
}

/// Run git in a repository the caller named, which may be a freshly cloned stranger's: its own
/// configuration must not run anything (an external diff or textconv driver, an fsmonitor
/// hook, a pager), and its output is read up to `cap` bytes (then git is stopped).
async fn run_git(dir: &std::path::Path, args: &[String], cap: usize) -> Result<String, String> {
    use tokio::io::AsyncReadExt;
    let mut command = tokio::process::Command::new("git");
    command
        .args([
            "-c",
            "core.fsmonitor=false",
            "-c",
            "core.hooksPath=/dev/null",
        ])
        .args(["--no-pager", "-C"])
        .arg(dir);
    match args.split_first() {
        Some((diff, rest)) if diff == "diff" => {
            command
                .args(["diff", "--no-ext-diff", "--no-textconv", "--no-color"])
                .args(rest);
        }
        _ => {
            command.args(args);
        }
    }
    command
        .env_remove("GIT_EXTERNAL_DIFF")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run git: {e}"))?;
    let mut stdout = Vec::new();
    if let Some(out) = child.stdout.take() {
        out.take(cap as u64 + 1)
            .read_to_end(&mut stdout)
            .await
            .map_err(|e| format!("cannot read git's output: {e}"))?;
    }
    if stdout.len() > cap {
        // Enough to show; the rest is not worth waiting for.
        let _ = child.kill().await;
        return Ok(String::from_utf8_lossy(&stdout).into_owned());
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`git {}` failed: {}",
            args.join(" "),
            exai_core::text::clip_with_ellipsis(String::from_utf8_lossy(&out.stderr).trim(), 2000)
        ));
    }
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

/// The changes precommit validates: `git diff` of staged and unstaged changes, or against a ref.
async fn git_changes(
    dir: &std::path::Path,
    compare_to: Option<&str>,
    staged: bool,
    unstaged: bool,
) -> Result<String, String> {
    const MAX_DIFF: usize = 400_000;
    let run = |args: Vec<String>| {
        let dir = dir.to_path_buf();
        async move {
            let out = run_git(&dir, &args, MAX_DIFF).await?;
            Ok::<String, String>(out)
        }
    };
    // Outside a repository `git diff` falls back to comparing two paths (--no-index) and
    // answers with its usage text, so ask first.
    run(vec!["rev-parse".into(), "--git-dir".into()])
        .await
        .map_err(|_| {
            format!(
                "`{}` is not inside a git repository; give precommit a `path` inside one",
                dir.display()
            )
        })?;
    let mut text = String::new();
    if let Some(reference) = compare_to {
        if reference.starts_with('-') {
            return Err(format!("`{reference}` is not a git ref"));
        }
        let diff = run(vec!["diff".into(), reference.into(), "--".into()]).await?;
        text.push_str(&format!("Changes against {reference}:\n{diff}\n"));
    } else {
        if staged {
            let diff = run(vec!["diff".into(), "--cached".into()]).await?;
            text.push_str(&format!("Staged changes:\n{diff}\n"));
        }
        if unstaged {
            let diff = run(vec!["diff".into()]).await?;
            text.push_str(&format!("Unstaged changes:\n{diff}\n"));
        }
    }
    if text.len() > MAX_DIFF {
        text = exai_core::text::clip(&text, MAX_DIFF).to_string();
        text.push_str("\n[diff truncated]\n");
    }
    Ok(text)
}

#[tool_router(router = ai_router, vis = "pub(crate)")]
impl ExaiServer {
    #[tool(
        description = "Ask another AI model (Kimi, GLM or any configured model) for a second opinion, ideas or an answer about code, with files, a conversation to continue, knowledge-base grounding and web search.",
        annotations(read_only_hint = true, open_world_hint = true)
    )]
    async fn chat(
        &self,
        Parameters(args): Parameters<ChatArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let grounding = match &args.docs_query {
            Some(q) if !q.trim().is_empty() => {
                self.grounding(q, args.docs_limit.unwrap_or(5).clamp(1, 10) as usize)
                    .await?
            }
            _ => Vec::new(),
        };
        let input = TurnInput {
            max_tokens: args
                .max_tokens
                .map(|t| u64::from(t).saturating_sub(FOOTER_TOKENS).max(1)),
            tool: "chat".into(),
            prompt: args.prompt,
            files: args.files.unwrap_or_default(),
            model: args.model,
            temperature: args.temperature,
            thinking: args.thinking_mode,
            web_search: args.use_websearch.unwrap_or(false),
            continuation_id: args.continuation_id,
            grounding,
            deep: false,
            context: None,
        };
        self.run_turn(input, &context).await
    }

    #[tool(
        description = "Deep reasoning by another model on a hard problem: it extends your analysis, explores alternatives and edge cases, and ends with a recommendation. Thinking mode high by default.",
        annotations(read_only_hint = true, open_world_hint = true)
    )]
    async fn thinkdeep(
        &self,
        Parameters(args): Parameters<ThinkDeepArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let context_text = args
            .focus_areas
            .filter(|f| !f.is_empty())
            .map(|f| format!("Focus on: {}", f.join(", ")));
        let input = TurnInput {
            max_tokens: None,
            tool: "thinkdeep".into(),
            prompt: args.prompt,
            files: args.files.unwrap_or_default(),
            model: args.model,
            temperature: args.temperature,
            thinking: Some(args.thinking_mode.unwrap_or(ThinkingMode::High)),
            web_search: args.use_websearch.unwrap_or(false),
            continuation_id: args.continuation_id,
            grounding: Vec::new(),
            deep: true,
            context: context_text,
        };
        self.run_turn(input, &context).await
    }

    #[tool(
        description = "Consult several models on one proposal, each with a stance (for, against, neutral), concurrently, then synthesise. A model that fails is reported; the others still answer.",
        annotations(read_only_hint = true, open_world_hint = true)
    )]
    async fn consensus(
        &self,
        Parameters(args): Parameters<ConsensusArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let input = ConsensusInput {
            prompt: args.prompt,
            models: args
                .models
                .into_iter()
                .map(|m| ConsensusModel {
                    model: m.model,
                    stance: m.stance,
                    stance_prompt: m.stance_prompt,
                })
                .collect(),
            files: args.files.unwrap_or_default(),
            synthesize: args.synthesize.unwrap_or(true),
            synthesis_model: args.synthesis_model,
            continuation_id: args.continuation_id,
        };
        let pump = ProgressPump::start(&context);
        let ctx = self.call_ctx(&context, pump.callback.clone());
        let result = self.ai().consensus(input, &ctx).await;
        drop(ctx);
        pump.finish().await;
        Ok(match result {
            Ok(out) => {
                let mut v = serde_json::to_value(&out).unwrap_or(Value::Null);
                let mut text = String::new();
                let (mut tin, mut tout, mut cost) = (0u64, 0u64, 0f64);
                for o in &out.opinions {
                    match &o.completion {
                        Some(c) => {
                            tin += c.usage.prompt_tokens;
                            tout += c.usage.completion_tokens;
                            cost += c.cost_usd;
                            text.push_str(&format!(
                                "## {} ({:?})\n{}\n\n",
                                o.model, o.stance, c.content
                            ));
                        }
                        None => text.push_str(&format!(
                            "## {} ({:?}): failed\n{}\n\n",
                            o.model,
                            o.stance,
                            o.error.as_deref().unwrap_or("")
                        )),
                    }
                }
                if let Some(s) = &out.synthesis {
                    tin += s.usage.prompt_tokens;
                    tout += s.usage.completion_tokens;
                    cost += s.cost_usd;
                    text.push_str(&format!("## Synthesis ({})\n{}\n\n", s.model, s.content));
                }
                if let Some(e) = &out.synthesis_error {
                    text.push_str(&format!("## Synthesis failed\n{e}\n\n"));
                }
                text.push_str(&format!(
                    "---\ncontinuation_id: {}; tokens in/out: {tin}/{tout}; cost: ${cost:.6}",
                    out.continuation_id
                ));
                let models: Vec<&str> = out.opinions.iter().map(|o| o.model.as_str()).collect();
                v["model"] = json!(models.join(","));
                v["usage"] = json!({ "prompt_tokens": tin, "completion_tokens": tout });
                v["cost_usd"] = json!(cost);
                render(text, v)
            }
            Err(e) => tool_error(&e),
        })
    }

    #[tool(
        description = "Examine a statement critically instead of agreeing by reflex: returns instructions to re-check it against the evidence and say plainly if it is wrong. No model call.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn challenge(
        &self,
        Parameters(args): Parameters<ChallengeArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        if args.prompt.trim().is_empty() {
            return Err(ErrorData::invalid_params(
                "`prompt` must not be empty",
                None,
            ));
        }
        let instructions = format!(
            "CRITICAL REASSESSMENT. Do not simply agree. Evaluate this statement against the code, the facts and your earlier reasoning:\n\n\"{}\"\n\nIs it correct? If it is, say why and what changes. If it is not, or only partly, explain exactly where it goes wrong, with evidence. Then state your position plainly.",
            args.prompt
        );
        Ok(render(
            instructions.clone(),
            json!({ "status": "challenge_accepted", "original_statement": args.prompt, "challenge_prompt": instructions }),
        ))
    }

    #[tool(
        description = "Plan a task step by step, with revisions and branches; the plan is kept in a conversation thread (continuation_id) and returned whole at the last step. No model call.",
        annotations(read_only_hint = false, open_world_hint = false)
    )]
    async fn planner(
        &self,
        Parameters(args): Parameters<PlannerArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let step = PlanStep {
            step: args.step,
            step_number: args.step_number,
            total_steps: args.total_steps,
            next_step_required: args.next_step_required,
            is_step_revision: args.is_step_revision.unwrap_or(false),
            revises_step_number: args.revises_step_number,
            is_branch_point: args.is_branch_point.unwrap_or(false),
            branch_from_step: args.branch_from_step,
            branch_id: args.branch_id,
        };
        let ai = self.ai();
        let continuation = args.continuation_id;
        let principal = Principal::of(&context);
        let result = ai.plan_step(step, continuation, principal.name()).await;
        Ok(match result {
            Ok(plan) => {
                let mut text = format!(
                    "{} (step {} of {})\n",
                    plan.status, plan.step_number, plan.total_steps
                );
                for (i, s) in plan.steps.iter().enumerate() {
                    text.push_str(&format!("{}. {s}\n", i + 1));
                }
                for (id, (from, steps)) in &plan.branches {
                    text.push_str(&format!("branch {id} (from step {from}):\n"));
                    for s in steps {
                        text.push_str(&format!("  - {s}\n"));
                    }
                }
                text.push_str(&format!(
                    "{}\ncontinuation_id: {}",
                    plan.guidance, plan.continuation_id
                ));
                render(text, serde_json::to_value(&plan).unwrap_or(Value::Null))
            }
            Err(e) => tool_error(&e),
        })
    }

    #[tool(
        description = "Step-by-step code analysis (architecture, patterns, scalability, technical debt); the final step consults an expert model. Step 1's answer explains the step fields.",
        annotations(read_only_hint = true, open_world_hint = true)
    )]
    async fn analyze(
        &self,
        Parameters(args): Parameters<WorkflowArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run_workflow("analyze", args, None, &context).await
    }
    #[tool(
        description = "Step-by-step code review recording issues by severity; the final step has an expert model review your findings.",
        annotations(read_only_hint = true, open_world_hint = true)
    )]
    async fn codereview(
        &self,
        Parameters(args): Parameters<WorkflowArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run_workflow("codereview", args, None, &context).await
    }
    #[tool(
        description = "Step-by-step root-cause analysis testing hypotheses; the final step has an expert model weigh the evidence.",
        annotations(read_only_hint = true, open_world_hint = true)
    )]
    async fn debug(
        &self,
        Parameters(args): Parameters<WorkflowArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run_workflow("debug", args, None, &context).await
    }
    #[tool(
        description = "Step-by-step refactoring analysis: code smells, decomposition and modernisation opportunities; the final step consults an expert model.",
        annotations(read_only_hint = true, open_world_hint = true)
    )]
    async fn refactor(
        &self,
        Parameters(args): Parameters<WorkflowArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run_workflow("refactor", args, None, &context).await
    }
    #[tool(
        description = "Step-by-step security audit (OWASP Top 10, auth, secrets, input validation); the final step consults an expert model with your findings.",
        annotations(read_only_hint = true, open_world_hint = true)
    )]
    async fn secaudit(
        &self,
        Parameters(args): Parameters<WorkflowArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run_workflow("secaudit", args, None, &context).await
    }
    #[tool(
        description = "Step-by-step test generation: find behaviours and edge cases worth testing; the final step has an expert model write the tests.",
        annotations(read_only_hint = true, open_world_hint = true)
    )]
    async fn testgen(
        &self,
        Parameters(args): Parameters<WorkflowArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run_workflow("testgen", args, None, &context).await
    }
    #[tool(
        description = "Step-by-step code tracing: call flow and dependencies of a function or module; the final step consults an expert model.",
        annotations(read_only_hint = true, open_world_hint = true)
    )]
    async fn tracer(
        &self,
        Parameters(args): Parameters<WorkflowArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run_workflow("tracer", args, None, &context).await
    }
    #[tool(
        description = "Step-by-step documentation generation for code; the final step has an expert model write the documentation.",
        annotations(read_only_hint = true, open_world_hint = true)
    )]
    async fn docgen(
        &self,
        Parameters(args): Parameters<WorkflowArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run_workflow("docgen", args, None, &context).await
    }

    #[tool(
        description = "Validate git changes before commit in steps; the final step sends the diff and your findings to an expert model.",
        annotations(read_only_hint = true, open_world_hint = true)
    )]
    async fn precommit(
        &self,
        Parameters(args): Parameters<PrecommitArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let extra = if args.workflow.next_step_required {
            None
        } else {
            let path = args.path.clone().unwrap_or_else(|| ".".into());
            let dir = self
                .state
                .access
                .resolve(&path)
                .map_err(|e| ErrorData::invalid_params(e, None))?;
            let diff = git_changes(
                &dir,
                args.compare_to.as_deref(),
                args.include_staged.unwrap_or(true),
                args.include_unstaged.unwrap_or(true),
            )
            .await
            .map_err(|e| ErrorData::invalid_params(e, None))?;
            Some(diff)
        };
        self.run_workflow("precommit", args.workflow, extra, &context)
            .await
    }

    #[tool(
        description = "The models exai can call, with window, capabilities and prices, and why an unavailable one is unavailable.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn listmodels(
        &self,
        Parameters(_): Parameters<NoAiArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let listing = self.ai().gateway.listing();
        Ok(render(listing.text, listing.json))
    }

    #[tool(
        description = "Recent conversation threads (continuation_id, tool, title, turns, expiry), newest first: find a lost continuation_id.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_threads(
        &self,
        Parameters(args): Parameters<ListThreadsArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let ai = self.ai();
        let principal = Principal::of(&context);
        ai.settled_all(principal.name()).await;
        let limit = args.limit.unwrap_or(20).clamp(1, 100) as usize;
        let result = tokio::task::spawn_blocking(move || {
            ai.threads().and_then(|t| {
                t.of(principal.name())
                    .list(limit, args.tool.as_deref())
                    .map_err(ToolError::from)
            })
        })
        .await
        .map_err(|e| ErrorData::internal_error(format!("task failed: {e}"), None))?;
        Ok(match result {
            Ok(threads) => {
                let mut text = format!("{} live threads\n", threads.len());
                for t in &threads {
                    text.push_str(&format!(
                        "- {} [{}] {} ({} turns, updated {}, expires {})\n",
                        t.continuation_id, t.tool, t.title, t.turns, t.updated_at, t.expires_at
                    ));
                }
                render(text, json!({ "threads": threads }))
            }
            Err(e) => tool_error(&e),
        })
    }

    #[tool(
        description = "Chat with Kimi about documents it extracts itself (PDF, Word, slides). Needs KIMI_API_KEY.",
        annotations(read_only_hint = true, open_world_hint = true)
    )]
    async fn kimi_chat_with_files(
        &self,
        Parameters(args): Parameters<KimiFilesArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        if args.files.is_empty() || args.files.len() > 20 {
            return Err(ErrorData::invalid_params(
                "`files` takes 1 to 20 files",
                None,
            ));
        }
        let ai = self.ai();
        let model = args.model.unwrap_or_else(|| "kimi-k2-0905-preview".into());
        let info = ai.gateway.registry().get(&model).cloned();
        let Some(info) = info.filter(|m| m.capabilities.files) else {
            return Ok(tool_error(&ToolError::Llm(
                exai_llm::LlmError::Unsupported {
                    model,
                    capability: "file extraction".into(),
                    hint: "; use a Kimi model such as kimi-k2-0905-preview".into(),
                },
            )));
        };
        let Some(kimi) = ai.gateway.provider(&info.provider) else {
            return Ok(tool_error(&ToolError::Llm(
                exai_llm::LlmError::ProviderNotConfigured {
                    model: info.name.clone(),
                    provider: info.provider.clone(),
                    variables: "KIMI_API_KEY (or MOONSHOT_API_KEY)".into(),
                },
            )));
        };
        let config = &self.state.loaded.config;
        let ctx = self.call_ctx(&context, None);
        let attempt = exai_llm::Attempt {
            idempotency_key: uuid::Uuid::new_v4().to_string(),
            deadline: ai.deadline(&ctx, Some(&info.name), false),
            progress: None,
            cache_key: None,
        };
        let mut extracted = String::new();
        for given in &args.files {
            let path = self
                .state
                .access
                .resolve(given)
                .map_err(|e| ErrorData::invalid_params(e, None))?;
            let cap = config.providers.max_file_bytes;
            let too_large = || {
                ErrorData::invalid_params(
                    format!(
                        "`{given}` must be a file of at most {cap} bytes (providers.max_file_bytes)"
                    ),
                    None,
                )
            };
            if !path.is_file() {
                return Err(too_large());
            }
            let read = path.clone();
            let bytes =
                tokio::task::spawn_blocking(move || exai_core::access::read_capped(&read, cap))
                    .await
                    .map_err(|e| ErrorData::internal_error(format!("file read failed: {e}"), None))?
                    .map_err(|e| ErrorData::invalid_params(format!("`{given}`: {e}"), None))?
                    .ok_or_else(too_large)?;
            let name = path
                .file_name()
                .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
            let text = tokio::select! {
                r = kimi.kimi_extract(&name, bytes, &attempt) => r,
                () = ctx.cancel.cancelled() => Err(exai_llm::LlmError::Cancelled),
            };
            match text {
                Ok(t) => extracted.push_str(&format!("Extracted from {given}:\n{t}\n\n")),
                Err(e) => return Ok(tool_error(&ToolError::Llm(e))),
            }
        }
        drop(ctx);
        let input = TurnInput {
            max_tokens: None,
            tool: "kimi_chat_with_files".into(),
            prompt: args.prompt,
            files: Vec::new(),
            model: Some(info.name),
            temperature: None,
            thinking: None,
            web_search: false,
            continuation_id: args.continuation_id,
            grounding: Vec::new(),
            deep: false,
            context: Some(extracted),
        };
        self.run_turn(input, &context).await
    }

    #[tool(
        description = "Search the web with GLM's web search API (needs GLM_API_KEY): titles, links and summaries.",
        annotations(read_only_hint = true, open_world_hint = true)
    )]
    async fn glm_web_search(
        &self,
        Parameters(args): Parameters<WebSearchArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        if args.query.trim().is_empty() {
            return Err(ErrorData::invalid_params("`query` must not be empty", None));
        }
        let ai = self.ai();
        let Some(glm) = ai.gateway.provider("glm") else {
            return Ok(tool_error(&ToolError::Llm(
                exai_llm::LlmError::ProviderNotConfigured {
                    model: "glm_web_search".into(),
                    provider: "glm".into(),
                    variables: "GLM_API_KEY (or ZHIPUAI_API_KEY)".into(),
                },
            )));
        };
        let ctx = self.call_ctx(&context, None);
        let attempt = exai_llm::Attempt {
            idempotency_key: uuid::Uuid::new_v4().to_string(),
            deadline: ai.deadline(&ctx, None, false),
            progress: None,
            cache_key: None,
        };
        let count = args.count.unwrap_or(5).clamp(1, 10);
        let result = tokio::select! {
            r = glm.glm_web_search(&args.query, count, &attempt) => r,
            () = ctx.cancel.cancelled() => Err(exai_llm::LlmError::Cancelled),
        };
        Ok(match result {
            Ok(results) => {
                let mut text = format!("{} results for \"{}\"\n", results.len(), args.query);
                for r in &results {
                    text.push_str(&format!(
                        "- {} <{}>\n  {}\n",
                        r["title"].as_str().unwrap_or(""),
                        r["link"].as_str().unwrap_or(""),
                        r["content"].as_str().unwrap_or("")
                    ));
                }
                render(
                    text,
                    json!({ "query": args.query, "results": results, "provider": "glm" }),
                )
            }
            Err(e) => tool_error(&ToolError::Llm(e)),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A cloned repository's own configuration names programs for diff and fsmonitor; reading
    /// its changes must run none of them.
    #[tokio::test]
    async fn a_repositorys_diff_and_fsmonitor_programs_never_run() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let marker = dir.path().join("ran");
        std::fs::create_dir(&repo).unwrap();
        let git = |args: &[&str]| {
            let ok = std::process::Command::new("git")
                .arg("-C")
                .arg(&repo)
                .args(args)
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .status()
                .unwrap()
                .success();
            assert!(ok, "git {args:?}");
        };
        git(&["init", "-q"]);
        git(&["config", "user.email", "t@example.com"]);
        git(&["config", "user.name", "t"]);
        std::fs::write(repo.join("a.txt"), "one\n").unwrap();
        git(&["add", "a.txt"]);
        git(&["commit", "-qm", "one"]);
        let script = dir.path().join("evil.sh");
        std::fs::write(&script, format!("#!/bin/sh\ntouch {}\n", marker.display())).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let evil = script.display().to_string();
        git(&["config", "diff.external", &evil]);
        git(&["config", "core.fsmonitor", &evil]);
        git(&["config", "diff.evil.textconv", &evil]);
        git(&["config", "core.pager", &evil]);
        std::fs::write(repo.join(".gitattributes"), "*.txt diff=evil\n").unwrap();
        std::fs::write(repo.join("a.txt"), "two\n").unwrap();
        let diff = git_changes(&repo, None, true, true).await.unwrap();
        assert!(diff.contains("-one") && diff.contains("+two"), "{diff}");
        let against = git_changes(&repo, Some("HEAD"), true, true).await.unwrap();
        assert!(against.contains("+two"), "{against}");
        assert!(
            !marker.exists(),
            "a program from the repository's config ran"
        );
    }

    #[tokio::test]
    async fn git_output_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let out = run_git(dir.path(), &["--version".to_string()], 4)
            .await
            .unwrap();
        assert_eq!(out.len(), 5, "{out}");
    }
}
