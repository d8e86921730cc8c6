//! The AI tools' logic, transport-free: a conversation turn (chat, thinkdeep), consensus across
//! models, and the workflow-step protocol of analyze, codereview, debug and the rest. The MCP layer
//! parses arguments, passes progress and cancellation in, and renders what comes back.

use exai_core::access::PathPolicy;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use exai_core::TimeoutHierarchy;
use exai_llm::{Call, Category, Completion, Gateway, LlmError, Message, ProgressFn};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::files::{self, FileContext, FileError};
use crate::prompts;
use crate::threads::{NewThread, NewTurn, ThreadError, ThreadStore, ThreadsOf, Turn, TurnUsage};

/// Time kept back from the tool's deadline so the provider call fails first, with its own error.
const DEADLINE_MARGIN: Duration = Duration::from_millis(750);

/// Window assumed for `auto` before a model is chosen: the smallest of the default chains'.
const AUTO_WINDOW: u64 = 128_000;

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(transparent)]
    Llm(#[from] LlmError),
    #[error(transparent)]
    Thread(#[from] ThreadError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{0}")]
    Invalid(String),
}

impl ToolError {
    pub fn kind(&self) -> &'static str {
        match self {
            ToolError::Llm(e) => e.kind(),
            ToolError::Thread(_) => "thread",
            ToolError::File(_) => "file",
            ToolError::Invalid(_) => "invalid_arguments",
        }
    }
}

/// How hard the model should think.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ThinkingMode {
    Minimal,
    Low,
    Medium,
    High,
    Max,
}

/// Per-call context from the transport.
#[derive(Clone)]
pub struct CallCtx {
    pub session: String,
    /// Who is calling: the owner of the threads this call reads and writes.
    pub principal: String,
    pub cancel: CancellationToken,
    pub progress: Option<ProgressFn>,
    pub started: Instant,
}

/// A knowledge-base chunk used to ground an answer.
#[derive(Debug, Clone, Serialize)]
pub struct Grounding {
    pub chunk_id: i64,
    /// The knowledge-base source it was indexed under.
    pub source: String,
    pub title: String,
    pub section: String,
    /// Its document's path in the source, or its URL.
    pub path: String,
    pub score: f32,
    #[serde(skip)]
    pub text: String,
}

/// One conversational turn with a model.
#[derive(Debug, Clone, Default)]
pub struct TurnInput {
    pub tool: String,
    pub prompt: String,
    pub files: Vec<String>,
    pub model: Option<String>,
    pub temperature: Option<f64>,
    pub thinking: Option<ThinkingMode>,
    pub web_search: bool,
    pub continuation_id: Option<String>,
    pub grounding: Vec<Grounding>,
    pub deep: bool,
    /// Extra context placed before the prompt (a git diff, consolidated findings).
    pub context: Option<String>,
    /// The longest answer to ask the model for, in tokens (the caller's budget for it).
    pub max_tokens: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TurnOutput {
    #[serde(flatten)]
    pub completion: Completion,
    pub continuation_id: String,
    pub remaining_turns: u64,
    pub files: FileContext,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub docs_used: Vec<Grounding>,
    pub history_turns: usize,
    /// Set when the given thread was full and the conversation went on in a new child thread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub continued_from: Option<String>,
}

/// A turn to write once the call has answered.
struct OwnedTurn {
    role: &'static str,
    content: String,
    files: Vec<String>,
    tool: String,
    model: Option<String>,
    usage: Option<TurnUsage>,
}

impl OwnedTurn {
    fn borrow(&self) -> NewTurn<'_> {
        NewTurn {
            role: self.role,
            content: &self.content,
            files: &self.files,
            tool: &self.tool,
            model: self.model.as_deref(),
            usage: self.usage,
        }
    }
}

pub struct AiService {
    pub gateway: Arc<Gateway>,
    threads: Result<Arc<ThreadStore>, String>,
    access: PathPolicy,
    max_file_bytes: u64,
    max_turns: u64,
    timeouts: TimeoutHierarchy,
    writes: Arc<PendingWrites>,
}

/// A turn's write to the thread store that the answer did not wait for.
type Write = Shared<BoxFuture<'static, Result<(), String>>>;

/// Thread writes still running, by owner and thread id, and those that failed and were not
/// reported yet. A call that reads a thread first waits for that thread's writes, so answering
/// before the write lands never shows a later turn an older conversation. Keyed by owner too, so
/// one principal never learns of (or consumes) another's failed write.
#[derive(Default)]
struct PendingWrites {
    running: Mutex<HashMap<ThreadKey, Vec<(u64, Write)>>>,
    failed: Mutex<HashMap<ThreadKey, String>>,
    seq: AtomicU64,
}

/// (owner, thread id).
type ThreadKey = (String, String);

/// Failed writes remembered for the next call on their thread; beyond this (a store that is down
/// for a long time) the oldest reports are dropped, the failures are still in the log.
const FAILED_WRITES_KEPT: usize = 256;

impl AiService {
    pub fn new(
        gateway: Arc<Gateway>,
        threads_path: PathBuf,
        access: PathPolicy,
        config: &exai_core::Config,
        timeouts: TimeoutHierarchy,
    ) -> AiService {
        let ttl = Duration::from_secs_f64(config.threads.ttl_hours * 3600.0);
        // With `database.url`, threads live in PostgreSQL, shared by every daemon on it. That
        // store connects on first use (on the blocking pool, like every thread call): this may
        // run on an async worker, and a database that is down now is tried again later.
        let threads = match config.database.postgres_url() {
            Some(_) => Ok(Arc::new(ThreadStore::postgres_from_config(
                config.database.clone(),
                ttl,
                config.threads.max_turns,
            ))),
            None => ThreadStore::open(&threads_path, ttl, config.threads.max_turns)
                .map(Arc::new)
                .map_err(|e| format!("{} ({})", e, threads_path.display())),
        };
        // Expired threads are never read again; drop them once per process, off the caller.
        if let Ok(store) = &threads {
            let store = Arc::clone(store);
            let purge = move || match store.purge_expired() {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "removed expired conversation threads"),
                Err(e) => tracing::warn!(
                    "cannot remove expired conversation threads ({}): {e}",
                    store.backend_name()
                ),
            };
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(purge)),
                Err(_) => purge(),
            }
        }
        if let Err(e) = &threads {
            tracing::error!("conversation threads are unavailable: {e}");
        }
        AiService {
            gateway,
            threads,
            access,
            max_file_bytes: config.providers.max_file_bytes,
            max_turns: config.threads.max_turns,
            timeouts,
            writes: Arc::default(),
        }
    }

    /// The service for a reloaded configuration: a new gateway (keys, models, limits) and
    /// timeouts, over the same conversation store and its writes in flight, so a call after the
    /// reload still waits for a turn a call before it was writing. Thread settings and file
    /// access stay as the process started (they need a restart).
    pub fn reconfigured(
        &self,
        gateway: Arc<Gateway>,
        config: &exai_core::Config,
        timeouts: TimeoutHierarchy,
    ) -> AiService {
        AiService {
            gateway,
            threads: self.threads.clone(),
            access: self.access.clone(),
            max_file_bytes: config.providers.max_file_bytes,
            max_turns: self.max_turns,
            timeouts,
            writes: self.writes.clone(),
        }
    }

    /// Write a turn's rows on the blocking pool without waiting for them: the answer goes out
    /// while SQLite (or PostgreSQL) commits. [`AiService::settled`] orders later reads after it.
    fn record_in_background(
        &self,
        owner: &str,
        id: String,
        new: Option<NewThread>,
        turns: Vec<OwnedTurn>,
    ) -> Result<(), ToolError> {
        let store = Arc::clone(self.threads()?);
        let (write_owner, write_id) = (owner.to_string(), id.clone());
        let task = tokio::task::spawn_blocking(move || {
            let turns: Vec<NewTurn<'_>> = turns.iter().map(OwnedTurn::borrow).collect();
            store
                .of(&write_owner)
                .record(&write_id, new.as_ref(), &turns)
                .map(|_| ())
        });
        let write: Write = async move {
            match task.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(format!("conversation store task failed: {e}")),
            }
        }
        .boxed()
        .shared();
        let seq = self.writes.seq.fetch_add(1, Ordering::Relaxed);
        let key: ThreadKey = (owner.to_string(), id);
        if let Ok(mut running) = self.writes.running.lock() {
            running
                .entry(key.clone())
                .or_default()
                .push((seq, write.clone()));
        }
        let writes = Arc::clone(&self.writes);
        tokio::spawn(async move {
            let outcome = write.await;
            if let Ok(mut running) = writes.running.lock()
                && let Some(list) = running.get_mut(&key)
            {
                list.retain(|(s, _)| *s != seq);
                if list.is_empty() {
                    running.remove(&key);
                }
            }
            if let Err(e) = outcome {
                tracing::error!(thread = %key.1, "a conversation turn was not saved: {e}");
                if let Ok(mut failed) = writes.failed.lock() {
                    if failed.len() >= FAILED_WRITES_KEPT
                        && let Some(old) = failed.keys().next().cloned()
                    {
                        failed.remove(&old);
                    }
                    failed.insert(key, e);
                }
            }
        });
        Ok(())
    }

    /// Wait until the writes to `owner`'s thread `id` that answers have not waited for are done;
    /// a failed one is reported (once) to the owner's call that continues the thread.
    pub async fn settled(&self, owner: &str, id: &str) -> Result<(), ToolError> {
        let key: ThreadKey = (owner.to_string(), id.to_string());
        self.written(&key).await;
        let failure = self
            .writes
            .failed
            .lock()
            .ok()
            .and_then(|mut f| f.remove(&key));
        match failure {
            Some(e) => Err(ToolError::Thread(ThreadError::Unavailable(format!(
                "the last turn of conversation `{id}` was not saved ({e}); call again to continue \
                 from the turns that were"
            )))),
            None => Ok(()),
        }
    }

    /// Wait until the writes to thread `key` that answers have not waited for are done (a failure
    /// is logged, and reported by [`AiService::settled`] to the call that continues the thread).
    async fn written(&self, key: &ThreadKey) {
        let running: Vec<Write> = self
            .writes
            .running
            .lock()
            .ok()
            .and_then(|m| {
                m.get(key)
                    .map(|l| l.iter().map(|(_, w)| w.clone()).collect())
            })
            .unwrap_or_default();
        for write in running {
            let _ = write.await;
        }
    }

    /// Wait for every write of `owner`'s that answers have not waited for (before listing
    /// their threads).
    pub async fn settled_all(&self, owner: &str) {
        let running: Vec<Write> = self
            .writes
            .running
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|((o, _), _)| o == owner)
                    .flat_map(|(_, l)| l.iter().map(|(_, w)| w.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for write in running {
            let _ = write.await;
        }
    }

    pub fn threads(&self) -> Result<&Arc<ThreadStore>, ToolError> {
        self.threads
            .as_ref()
            .map_err(|e| ToolError::Invalid(format!("conversation threads are unavailable: {e}")))
    }

    /// Work on `owner`'s threads on the blocking pool, so SQLite never stalls the async workers.
    pub async fn in_threads<T, F>(&self, owner: &str, f: F) -> Result<T, ToolError>
    where
        T: Send + 'static,
        F: FnOnce(ThreadsOf<'_>) -> Result<T, ToolError> + Send + 'static,
    {
        let store = Arc::clone(self.threads()?);
        let owner = owner.to_string();
        tokio::task::spawn_blocking(move || f(store.of(&owner)))
            .await
            .map_err(|e| ToolError::Invalid(format!("conversation store task failed: {e}")))?
    }

    fn window(&self, model: Option<&str>) -> (u64, u64) {
        match model
            .filter(|m| !m.eq_ignore_ascii_case("auto"))
            .and_then(|m| self.gateway.registry().get(m))
        {
            Some(info) => (
                info.context_window,
                info.max_output.min(info.context_window / 4),
            ),
            None => (AUTO_WINDOW, 16_384),
        }
    }

    /// The provider deadline of a call started at `ctx.started`, for a workflow-class tool.
    pub fn deadline(&self, ctx: &CallCtx, model: Option<&str>, expert: bool) -> Instant {
        let budget = if expert {
            self.timeouts.expert_for(model)
        } else {
            self.timeouts.workflow_tool_for(model)
        };
        let tool_end = ctx.started + self.timeouts.workflow_tool_for(model);
        (ctx.started + budget).min(tool_end) - DEADLINE_MARGIN
    }

    /// A model turn inside a conversation thread: history, files, grounding, then the prompt.
    pub async fn turn(
        &self,
        input: TurnInput,
        ctx: &CallCtx,
        expert: bool,
    ) -> Result<TurnOutput, ToolError> {
        if input.prompt.trim().is_empty() {
            return Err(ToolError::Invalid("`prompt` must not be empty".into()));
        }
        let model_name = input
            .model
            .clone()
            .unwrap_or_else(|| self.gateway.default_model().to_string());
        let thread = self.thread_for(&input, ctx).await?;
        let (file_ctx, kept) = self.fit_context(&input, &model_name, &thread.history)?;
        let history_turns = kept.len();
        let call = Call {
            model: model_name.clone(),
            category: input.category(),
            messages: turn_messages(&input, &kept, &file_ctx),
            temperature: input.temperature,
            max_tokens: input.max_tokens,
            thinking: input.thinks(),
            web_search: input.web_search,
            session: ctx.session.clone(),
            deadline: self.deadline(ctx, Some(&model_name), expert),
            progress: ctx.progress.clone(),
            cancel: ctx.cancel.clone(),
            cache_key: Some(format!("{}:{}", thread.id, input.tool)),
        };
        let completion = self.gateway.complete(call).await?;
        let (thread_id, remaining_turns) =
            self.record_turn(&input, ctx, thread, &completion).await?;
        let continued_from = input
            .continuation_id
            .clone()
            .filter(|given| *given != thread_id);
        Ok(TurnOutput {
            continued_from,
            remaining_turns,
            continuation_id: thread_id,
            completion,
            files: file_ctx,
            docs_used: input.grounding,
            history_turns,
        })
    }

    /// The thread a turn goes to and the history it continues. Nothing is written before the
    /// model answers: a new thread and both turns go to the store in one transaction afterwards,
    /// so a failed call leaves no empty thread behind.
    async fn thread_for(&self, input: &TurnInput, ctx: &CallCtx) -> Result<Place, ToolError> {
        let title: String = input.prompt.chars().take(80).collect();
        let Some(id) = &input.continuation_id else {
            let new = NewThread {
                parent: None,
                tool: input.tool.clone(),
                title,
            };
            return Ok(Place {
                id: ThreadStore::new_id(),
                new: Some(new),
                history: Vec::new(),
                remaining: self.max_turns,
            });
        };
        self.settled(&ctx.principal, id).await?;
        let given = id.clone();
        let (history, remaining) = self
            .in_threads(&ctx.principal, move |t| Ok(t.resume(&given)?))
            .await?;
        if remaining >= 2 {
            return Ok(Place {
                id: id.clone(),
                new: None,
                history,
                remaining,
            });
        }
        // A full thread continues in a child that inherits its history, rather than failing the
        // call: the agent gets the new id with the answer.
        let child = NewThread {
            parent: Some(id.clone()),
            tool: input.tool.clone(),
            title,
        };
        Ok(Place {
            id: ThreadStore::new_id(),
            new: Some(child),
            history,
            remaining: self.max_turns,
        })
    }

    /// What goes to the model besides the prompt, within its window: files in two fifths of what
    /// the prompt leaves, then the newest history turns in three quarters of what the files leave.
    fn fit_context<'h>(
        &self,
        input: &TurnInput,
        model: &str,
        history: &'h [Turn],
    ) -> Result<(FileContext, Vec<&'h Turn>), ToolError> {
        let (window, output_reserve) = self.window(Some(model));
        let usable = window.saturating_sub(output_reserve);
        let prompt_tokens = (input.prompt.len() as u64
            + input.context.as_ref().map_or(0, String::len) as u64)
            .div_ceil(files::CHARS_PER_TOKEN);
        let file_budget = (usable.saturating_sub(prompt_tokens)) * 2 / 5;
        let file_ctx = files::gather(
            &files_to_send(input, history),
            &self.access,
            self.max_file_bytes,
            file_budget,
        )?;
        let history_budget = usable
            .saturating_sub(prompt_tokens)
            .saturating_sub(file_ctx.tokens)
            .saturating_mul(3)
            / 4;
        Ok((file_ctx, newest_within(history, history_budget)))
    }

    /// Store the prompt and the answer as the turn's two rows without waiting for them (on a
    /// shared store, waiting); returns the thread's id and the turns left in it.
    async fn record_turn(
        &self,
        input: &TurnInput,
        ctx: &CallCtx,
        thread: Place,
        completion: &Completion,
    ) -> Result<(String, u64), ToolError> {
        // The answer does not wait for the store: what the write would return is known, and a
        // thread too small for a turn fails here as the write would.
        if thread.remaining < 2 {
            return Err(ThreadError::Full {
                id: thread.id,
                max: self.max_turns,
            }
            .into());
        }
        let turns = vec![
            OwnedTurn {
                role: "user",
                content: input.prompt.clone(),
                files: input.files.clone(),
                tool: input.tool.clone(),
                model: None,
                usage: None,
            },
            OwnedTurn {
                role: "assistant",
                content: completion.content.clone(),
                files: Vec::new(),
                tool: input.tool.clone(),
                model: Some(completion.model.clone()),
                usage: Some(TurnUsage {
                    tokens_in: completion.usage.prompt_tokens,
                    tokens_out: completion.usage.completion_tokens,
                    cost_usd: completion.cost_usd,
                }),
            },
        ];
        self.record_in_background(&ctx.principal, thread.id.clone(), thread.new, turns)?;
        // Other daemons read a shared store: the next call of this conversation may reach one of
        // them, so there the answer waits for its turn to be stored.
        if self.threads()?.shared() {
            self.written(&(ctx.principal.clone(), thread.id.clone()))
                .await;
        }
        Ok((thread.id, thread.remaining - 2))
    }

    /// Several models assess one proposal, each from its stance, concurrently; one failing does
    /// not fail the rest. A synthesis follows when at least one answered.
    pub async fn consensus(
        &self,
        input: ConsensusInput,
        ctx: &CallCtx,
    ) -> Result<ConsensusOutput, ToolError> {
        check_panel(&input.models)?;
        let (window, reserve) = self.window(None);
        let file_ctx = files::gather(
            &input.files,
            &self.access,
            self.max_file_bytes,
            window.saturating_sub(reserve) / 3,
        )?;
        let opinions = self.opinions(&input, &file_ctx, ctx).await?;
        let synthesis = self.synthesis(&input, &opinions, ctx).await?;
        let summary = match &synthesis {
            Some(Ok(c)) => c.content.clone(),
            _ => opinions
                .iter()
                .filter_map(|o| {
                    o.completion
                        .as_ref()
                        .map(|c| format!("{}: {}", o.model, c.content))
                })
                .collect::<Vec<_>>()
                .join("\n\n"),
        };
        let id = self.record_consensus(&input, ctx, summary).await?;
        Ok(ConsensusOutput {
            continuation_id: id,
            opinions,
            synthesis: synthesis.as_ref().and_then(|s| s.as_ref().ok().cloned()),
            synthesis_error: synthesis.and_then(|s| s.err()),
            files: file_ctx,
        })
    }

    /// Every model's assessment from its stance, asked concurrently. A model that fails gives an
    /// opinion that carries its error; cancellation ends the call.
    async fn opinions(
        &self,
        input: &ConsensusInput,
        file_ctx: &FileContext,
        ctx: &CallCtx,
    ) -> Result<Vec<Opinion>, ToolError> {
        let tasks: Vec<_> = input
            .models
            .iter()
            .map(|entry| {
                let stance = entry.stance.unwrap_or(Stance::Neutral);
                let call = self.opinion_call(entry, stance, &input.prompt, file_ctx, ctx);
                let gateway = self.gateway.clone();
                async move { (gateway.complete(call).await, stance) }
            })
            .collect();
        let results = futures::future::join_all(tasks).await;
        input
            .models
            .iter()
            .zip(results)
            .map(|(entry, (result, stance))| match result {
                Ok(c) => Ok(Opinion {
                    model: c.model.clone(),
                    stance,
                    status: "ok".into(),
                    error: None,
                    completion: Some(c),
                }),
                Err(LlmError::Cancelled) => Err(LlmError::Cancelled.into()),
                Err(e) => Ok(Opinion {
                    model: entry.model.clone(),
                    stance,
                    status: e.kind().into(),
                    error: Some(e.to_string()),
                    completion: None,
                }),
            })
            .collect()
    }

    /// One panel model's call: the files, its stance, then the proposal.
    fn opinion_call(
        &self,
        entry: &ConsensusModel,
        stance: Stance,
        proposal: &str,
        file_ctx: &FileContext,
        ctx: &CallCtx,
    ) -> Call {
        let stance_text = entry
            .stance_prompt
            .clone()
            .unwrap_or_else(|| stance.instruction().to_string());
        let mut user = String::new();
        if !file_ctx.text.is_empty() {
            user.push_str("Files:\n\n");
            user.push_str(&file_ctx.text);
        }
        user.push_str(&format!(
            "Your stance: {stance_text}\n\nProposal:\n{proposal}"
        ));
        Call {
            model: entry.model.clone(),
            category: Category::Deep,
            messages: vec![
                Message::system(prompts::system("consensus")),
                Message::user(user),
            ],
            temperature: Some(0.2),
            max_tokens: None,
            thinking: true,
            web_search: false,
            session: ctx.session.clone(),
            deadline: self.deadline(ctx, Some(&entry.model), true),
            progress: None,
            cancel: ctx.cancel.clone(),
            cache_key: None,
        }
    }

    /// One model's synthesis of the opinions that answered: by `synthesis_model`, else the first
    /// model that answered. `None` when none answered or none was asked for; its failure is
    /// reported beside the opinions, not as the call's error (cancellation still ends the call).
    async fn synthesis(
        &self,
        input: &ConsensusInput,
        opinions: &[Opinion],
        ctx: &CallCtx,
    ) -> Result<Option<Result<Completion, String>>, ToolError> {
        let answered: Vec<&Opinion> = opinions.iter().filter(|o| o.completion.is_some()).collect();
        if answered.is_empty() || !input.synthesize {
            return Ok(None);
        }
        let mut text = format!("Proposal:\n{}\n\n", input.prompt);
        for o in &answered {
            if let Some(c) = &o.completion {
                text.push_str(&format!(
                    "--- {} (stance: {:?}) ---\n{}\n\n",
                    o.model, o.stance, c.content
                ));
            }
        }
        let model = input
            .synthesis_model
            .clone()
            .or_else(|| {
                answered
                    .first()
                    .and_then(|o| o.completion.as_ref())
                    .map(|c| c.model.clone())
            })
            .unwrap_or_else(|| "auto".into());
        let call = Call {
            model: model.clone(),
            category: Category::Deep,
            messages: vec![
                Message::system(prompts::system("consensus_synthesis")),
                Message::user(text),
            ],
            temperature: Some(0.2),
            max_tokens: None,
            thinking: false,
            web_search: false,
            session: ctx.session.clone(),
            deadline: self.deadline(ctx, Some(&model), false),
            progress: ctx.progress.clone(),
            cancel: ctx.cancel.clone(),
            cache_key: None,
        };
        match self.gateway.complete(call).await {
            Ok(c) => Ok(Some(Ok(c))),
            Err(LlmError::Cancelled) => Err(LlmError::Cancelled.into()),
            Err(e) => Ok(Some(Err(e.to_string()))),
        }
    }

    /// Store the proposal and the summary (when there is one) in the given thread or a new one;
    /// returns its id.
    async fn record_consensus(
        &self,
        input: &ConsensusInput,
        ctx: &CallCtx,
        summary: String,
    ) -> Result<String, ToolError> {
        if let Some(given) = &input.continuation_id {
            self.settled(&ctx.principal, given).await?;
        }
        let (given, prompt, files) = (
            input.continuation_id.clone(),
            input.prompt.clone(),
            input.files.clone(),
        );
        self.in_threads(&ctx.principal, move |t| {
            let (id, new) = NewThread::or_continue(given, "consensus", &prompt);
            let mut turns = vec![NewTurn {
                role: "user",
                content: &prompt,
                files: &files,
                tool: "consensus",
                model: None,
                usage: None,
            }];
            if !summary.is_empty() {
                turns.push(NewTurn {
                    role: "assistant",
                    content: &summary,
                    files: &[],
                    tool: "consensus",
                    model: None,
                    usage: None,
                });
            }
            t.record(&id, new.as_ref(), &turns)?;
            Ok(id)
        })
        .await
    }
}

/// At least one model and at most eight on a consensus panel.
fn check_panel(models: &[ConsensusModel]) -> Result<(), ToolError> {
    if models.is_empty() {
        return Err(ToolError::Invalid(
            "`models` needs at least one entry, e.g. [{\"model\": \"kimi-k2-0905-preview\", \"stance\": \"for\"}, {\"model\": \"glm-4.6\", \"stance\": \"against\"}]".into(),
        ));
    }
    if models.len() > 8 {
        return Err(ToolError::Invalid(
            "`models` takes at most 8 entries".into(),
        ));
    }
    Ok(())
}

/// Where a turn goes: the thread it continues (or the new one it starts, with the row to create)
/// and what came before.
struct Place {
    id: String,
    new: Option<NewThread>,
    history: Vec<Turn>,
    /// Turns the thread still takes.
    remaining: u64,
}

impl TurnInput {
    fn category(&self) -> Category {
        if self.deep {
            Category::Deep
        } else {
            Category::Fast
        }
    }

    /// Whether the model should think: as asked, else for a deep turn.
    fn thinks(&self) -> bool {
        self.thinking.unwrap_or(if self.deep {
            ThinkingMode::High
        } else {
            ThinkingMode::Low
        }) >= ThinkingMode::Medium
    }
}

/// The files a turn sends: its own first, then those earlier turns referred to, newest first,
/// once each.
fn files_to_send(input: &TurnInput, history: &[Turn]) -> Vec<String> {
    let mut file_list = input.files.clone();
    for turn in history.iter().rev() {
        for f in &turn.files {
            if !file_list.contains(f) {
                file_list.push(f.clone());
            }
        }
    }
    file_list
}

/// The newest history turns that fit in `budget` tokens, in conversation order.
fn newest_within(history: &[Turn], mut budget: u64) -> Vec<&Turn> {
    let mut kept = Vec::new();
    for turn in history.iter().rev() {
        let t = (turn.content.len() as u64).div_ceil(files::CHARS_PER_TOKEN) + 4;
        if t > budget {
            break;
        }
        budget -= t;
        kept.push(turn);
    }
    kept.reverse();
    kept
}

/// The system prompt, the kept history, then one user message: files, documentation excerpts,
/// extra context and the prompt.
fn turn_messages(input: &TurnInput, kept: &[&Turn], file_ctx: &FileContext) -> Vec<Message> {
    let mut system = prompts::system(&input.tool);
    if !input.grounding.is_empty() {
        system.push_str("\n\n");
        system.push_str(prompts::GROUNDING_NOTE);
    }
    let mut messages = vec![Message::system(system)];
    for turn in kept {
        messages.push(if turn.role == "assistant" {
            Message::assistant(turn.content.clone())
        } else {
            Message::user(turn.content.clone())
        });
    }
    let mut user = String::new();
    if !file_ctx.text.is_empty() {
        user.push_str("Files:\n\n");
        user.push_str(&file_ctx.text);
    }
    for (i, g) in input.grounding.iter().enumerate() {
        user.push_str(&prompts::quoted_document(
            i + 1,
            &g.source,
            &g.path,
            &g.title,
            &g.section,
            &g.text,
        ));
    }
    if let Some(c) = &input.context {
        user.push_str(c);
        user.push_str("\n\n");
    }
    user.push_str(&input.prompt);
    messages.push(Message::user(user));
    messages
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Stance {
    For,
    Against,
    Neutral,
}

impl Stance {
    fn instruction(self) -> &'static str {
        match self {
            Stance::For => {
                "argue for the proposal: make the strongest honest case, but say so when it is truly a bad idea"
            }
            Stance::Against => {
                "argue against the proposal: find its real weaknesses and risks, but acknowledge what is truly good"
            }
            Stance::Neutral => "be neutral: weigh benefits and drawbacks evenly",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConsensusModel {
    pub model: String,
    pub stance: Option<Stance>,
    pub stance_prompt: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ConsensusInput {
    pub prompt: String,
    pub models: Vec<ConsensusModel>,
    pub files: Vec<String>,
    pub synthesize: bool,
    pub synthesis_model: Option<String>,
    pub continuation_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Opinion {
    pub model: String,
    pub stance: Stance,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion: Option<Completion>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConsensusOutput {
    pub continuation_id: String,
    pub opinions: Vec<Opinion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synthesis: Option<Completion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synthesis_error: Option<String>,
    pub files: FileContext,
}
