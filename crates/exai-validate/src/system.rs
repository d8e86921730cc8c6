//! The system under test: an exai server in this process, serving Streamable HTTP on a loopback
//! port, built from the operator's configuration (live) or pointed at the built-in mock provider
//! (mock), with its own scratch data directory and fixture files; and an rmcp client session to
//! it, so every case travels the real MCP path (HTTP guard, argument check, deadline, tool).
//!
//! The scratch directory keeps a validation run from touching the operator's conversation
//! threads or knowledge base, and lets each case control its fixtures. The server's allowed
//! roots are the fixture directory; its knowledge base searches by keyword only, so no embedding
//! model has to load (semantic search is `exai health`'s and `exai eval`'s business).

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use exai_core::Loaded;
use exai_core::config::{Inputs, Secret};
use exai_llm::mock::{MockServer, Recorded};
use exai_server::{AppState, Transport};
use rmcp::model::{
    CallToolRequestParams, ClientRequest, JsonRpcMessage, JsonRpcNotification, ProgressToken,
    Request, ServerNotification, ServerResult,
};
use rmcp::service::{
    PeerRequestOptions, RunningService, RxJsonRpcMessage, ServiceError, TxJsonRpcMessage,
};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, Transport as McpTransport};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Map, Value};
use tokio::sync::OnceCell;

use crate::check::Problem;

/// Which providers the server under test calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderMode {
    /// The built-in mock provider, configured as Kimi and GLM.
    Mock,
    /// The providers the operator configured.
    Live,
}

impl ProviderMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderMode::Mock => "mock",
            ProviderMode::Live => "live",
        }
    }
}

const MOCK_KEY: &str = "exai-validate-mock-key";

/// Progress values received, by progress token.
type ProgressLog = Arc<Mutex<HashMap<ProgressToken, Vec<f64>>>>;

/// The client transport, noting progress notifications in the receive loop itself: the SDK
/// completes a request straight from that loop but hands notifications to tasks of their own,
/// so only here is every progress of a call known by the time its answer arrives.
struct ProgressTap<T> {
    inner: T,
    seen: ProgressLog,
}

impl<T: McpTransport<RoleClient>> McpTransport<RoleClient> for ProgressTap<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        let message = self.inner.receive().await?;
        if let JsonRpcMessage::Notification(JsonRpcNotification {
            notification: ServerNotification::ProgressNotification(n),
            ..
        }) = &message
            && let Ok(mut seen) = self.seen.lock()
        {
            seen.entry(n.params.progress_token.clone())
                .or_default()
                .push(n.params.progress);
        }
        Some(message)
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

/// A tool's answer as a case sees it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub tool: String,
    /// False for a tool error result and for a JSON-RPC error.
    pub ok: bool,
    /// True when the server answered with a JSON-RPC error rather than a tool result.
    pub protocol_error: bool,
    /// The text content, or the JSON-RPC error message.
    pub text: String,
    /// The structured content (`Null` when there is none).
    pub json: Value,
    /// Progress values received for this call, in order.
    pub progress: Vec<f64>,
    pub elapsed: Duration,
}

impl Reply {
    /// The value at a JSON pointer such as `/usage/prompt_tokens`.
    pub fn at(&self, pointer: &str) -> &Value {
        self.json.pointer(pointer).unwrap_or(&Value::Null)
    }

    pub fn str(&self, pointer: &str) -> &str {
        self.at(pointer).as_str().unwrap_or("")
    }

    /// The successful answer, or a failure quoting the error.
    pub fn success(self) -> Result<Reply, Problem> {
        if self.ok {
            Ok(self)
        } else {
            Err(Problem::Fail(format!(
                "`{}` answered with an error: {}",
                self.tool,
                crate::check::clip(&self.text, 300)
            )))
        }
    }

    /// The error text, or a failure when the call succeeded.
    pub fn refusal(self) -> Result<Reply, Problem> {
        if self.ok {
            Err(Problem::Fail(format!(
                "`{}` should have refused but answered: {}",
                self.tool,
                crate::check::clip(&self.text, 200)
            )))
        } else {
            Ok(self)
        }
    }
}

/// Model calls and the last output of the case running now.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub provider: Option<String>,
    pub model: Option<String>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd: f64,
    pub output: Option<String>,
}

impl Tally {
    fn add(&mut self, reply: &Reply) {
        let v = &reply.json;
        self.tokens_in += v["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
        self.tokens_out += v["usage"]["completion_tokens"].as_u64().unwrap_or(0);
        self.cost_usd += v["cost_usd"].as_f64().unwrap_or(0.0);
        if let Some(m) = v["model"].as_str() {
            self.model = Some(m.to_string());
        }
        if let Some(p) = v["provider"].as_str() {
            self.provider = Some(p.to_string());
        }
        self.output = Some(reply.text.clone());
    }
}

/// One in-process exai server and a client session to it.
pub struct Server {
    pub state: Arc<AppState>,
    pub url: String,
    client: RunningService<RoleClient, ()>,
    progress: ProgressLog,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    /// How long the client waits for any one answer.
    call_limit: Duration,
}

impl Server {
    async fn start(loaded: Loaded) -> Result<Server, String> {
        let call_limit = loaded.timeouts.client_timeout();
        let state = AppState::new(loaded, Transport::Http, None);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot listen on loopback: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("no local address: {e}"))?;
        let state = state.with_listen(addr);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = state.clone();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(e) = exai_server::http::serve(serving, listener, shutdown).await {
                tracing::error!("validation server stopped: {e}");
            }
        });
        let url = format!("http://{addr}/mcp");
        let progress = ProgressLog::default();
        let mut config = StreamableHttpClientTransportConfig::with_uri(url.clone());
        let token = &state.loaded.config.server.auth_token;
        if token.is_set() {
            config = config.auth_header(token.expose().to_string());
        }
        let transport = ProgressTap {
            inner: StreamableHttpClientTransport::from_config(config),
            seen: progress.clone(),
        };
        let client = tokio::time::timeout(Duration::from_secs(10), ().serve(transport))
            .await
            .map_err(|_| format!("{url} did not complete the MCP handshake within 10 s"))?
            .map_err(|e| format!("cannot connect to {url}: {e}"))?;
        Ok(Server {
            state,
            url,
            client,
            progress,
            stop: Some(stop),
            task,
            call_limit,
        })
    }

    /// The tools this server lists over MCP.
    pub async fn tool_names(&self) -> Result<Vec<String>, String> {
        let tools = self
            .client
            .peer()
            .list_all_tools()
            .await
            .map_err(|e| format!("tools/list failed: {e}"))?;
        let mut names: Vec<String> = tools.into_iter().map(|t| t.name.to_string()).collect();
        names.sort();
        Ok(names)
    }

    /// Call a tool over MCP. Only a transport failure or no answer in time is an `Err`.
    pub async fn call(&self, tool: &str, args: Value) -> Result<Reply, Problem> {
        let mut params = CallToolRequestParams::new(tool.to_string());
        if let Value::Object(map) = args {
            params = params.with_arguments(map);
        } else {
            params = params.with_arguments(Map::new());
        }
        let started = Instant::now();
        let handle = self
            .client
            .peer()
            .send_cancellable_request(
                ClientRequest::CallToolRequest(Request::new(params)),
                PeerRequestOptions::no_options(),
            )
            .await
            .map_err(|e| Problem::Error(format!("cannot send `{tool}`: {e}")))?;
        let token = handle.progress_token.clone();
        let answer = tokio::time::timeout(self.call_limit, handle.await_response()).await;
        let elapsed = started.elapsed();
        let progress = self
            .progress
            .lock()
            .ok()
            .and_then(|mut m| m.remove(&token))
            .unwrap_or_default();
        let reply = |ok: bool, protocol_error: bool, text: String, json: Value| Reply {
            tool: tool.to_string(),
            ok,
            protocol_error,
            text,
            json,
            progress: progress.clone(),
            elapsed,
        };
        match answer {
            Err(_) => Err(Problem::Error(format!(
                "`{tool}` did not answer within {:.0} s",
                self.call_limit.as_secs_f64()
            ))),
            Ok(Ok(ServerResult::CallToolResult(r))) => {
                let text = r
                    .content
                    .iter()
                    .filter_map(|c| c.as_text())
                    .map(|t| t.text.as_str())
                    .collect::<Vec<_>>()
                    .join("\n");
                Ok(reply(
                    r.is_error != Some(true),
                    false,
                    text,
                    r.structured_content.unwrap_or(Value::Null),
                ))
            }
            Ok(Ok(other)) => Err(Problem::Error(format!(
                "`{tool}` answered with an unexpected message: {other:?}"
            ))),
            Ok(Err(ServiceError::McpError(e))) => {
                Ok(reply(false, true, e.message.to_string(), Value::Null))
            }
            Ok(Err(e)) => Err(Problem::Error(format!("`{tool}` failed in transport: {e}"))),
        }
    }

    async fn stop(mut self) {
        let _ = self.client.cancel().await;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

/// Models the cases use, chosen from what is configured.
#[derive(Debug, Clone, Default)]
pub struct Models {
    /// The cheapest available model: the workhorse of the suite.
    pub primary: Option<String>,
    /// An available model of another provider than `primary`'s.
    pub secondary: Option<String>,
    /// A GLM model with web search.
    pub web_search: Option<String>,
    /// A Kimi model with file extraction.
    pub files: Option<String>,
    /// A model with a reasoning mode.
    pub thinking: Option<String>,
    /// A model whose provider has no key.
    pub unconfigured: Option<(String, String)>,
}

impl Models {
    fn choose(state: &AppState, mode: ProviderMode) -> Models {
        if mode == ProviderMode::Mock {
            return Models {
                primary: Some("glm-4.6".into()),
                secondary: Some("kimi-k2-0905-preview".into()),
                web_search: Some("glm-4.6".into()),
                files: Some("kimi-k2-0905-preview".into()),
                thinking: Some("glm-4.6".into()),
                unconfigured: Some(("gpt-4.1".into(), "OPENAI_API_KEY".into())),
            };
        }
        let ai = state.ai();
        let gw = &ai.gateway;
        let mut available: Vec<&exai_llm::ModelInfo> = gw
            .registry()
            .all()
            .filter(|m| gw.unavailable_reason(m).is_none())
            .collect();
        available.sort_by(|a, b| (a.price_in + a.price_out).total_cmp(&(b.price_in + b.price_out)));
        let primary = available.first().map(|m| (*m).clone());
        let secondary = primary.as_ref().and_then(|p| {
            available
                .iter()
                .find(|m| m.provider != p.provider)
                .map(|m| m.name.clone())
        });
        let pick = |f: &dyn Fn(&exai_llm::ModelInfo) -> bool| {
            available.iter().find(|m| f(m)).map(|m| m.name.clone())
        };
        // With no provider at all every call fails alike (no_provider); a keyless model is
        // only a distinct case next to a working one.
        let unconfigured = gw
            .registry()
            .all()
            .find_map(|m| gw.unavailable_reason(m).map(|r| (m.name.clone(), r)))
            .filter(|_| primary.is_some());
        Models {
            primary: primary.map(|m| m.name),
            secondary,
            web_search: pick(&|m| m.provider == "glm" && m.capabilities.web_search),
            files: pick(&|m| m.provider == "kimi" && m.capabilities.files),
            thinking: pick(&|m| m.capabilities.thinking),
            unconfigured,
        }
    }
}

/// The knowledge-base fixture every kb case searches: two sources indexed through `index_path`.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// (source, technology, documents)
    pub sources: Vec<(String, String, u64)>,
}

pub struct System {
    pub mode: ProviderMode,
    scratch: tempfile::TempDir,
    pub mock: Option<MockServer>,
    pub main: Server,
    /// A second server with a 2 s workflow tool timeout, for the timeout cases (started on first use).
    short: OnceCell<Result<Server, String>>,
    pub models: Models,
    pub tools: Vec<String>,
    corpus: OnceCell<Result<Corpus, String>>,
    tally: Mutex<Tally>,
}

/// The configuration of a server under test.
fn server_config(
    base: &Loaded,
    mode: ProviderMode,
    data_dir: &Path,
    files: &Path,
    mock_url: Option<&str>,
) -> Loaded {
    let mut l = base.clone();
    l.data_dir = data_dir.to_path_buf();
    let c = &mut l.config;
    c.kb.database = String::new();
    c.embed.backend = exai_core::EmbedBackend::None;
    c.tools.allowed_roots = vec![files.display().to_string()];
    c.tools.diagnostics = false;
    // Every tool is checked, so every tool is listed.
    c.tools.profile = exai_core::ToolProfile::Full;
    // A small output cap would drop the structured answers the checks read; the cap itself is
    // checked by chat/edge_cases against the default.
    c.tools.max_output_tokens = c.tools.max_output_tokens.max(25_000);
    if let (ProviderMode::Mock, Some(url)) = (mode, mock_url) {
        let p = &mut c.providers;
        p.kimi_api_key = Secret::new(MOCK_KEY);
        p.kimi_api_url = url.to_string();
        p.glm_api_key = Secret::new(MOCK_KEY);
        p.glm_api_url = url.to_string();
        p.openai_api_key = Secret::default();
        p.openrouter_api_key = Secret::default();
        p.custom.clear();
        p.default_model = "auto".into();
        c.tools.disabled.clear();
        c.tools.disabled_families.clear();
    }
    l
}

impl System {
    /// Start the mock (if asked for) and the server under test.
    pub async fn start(operator: &Loaded, mode: ProviderMode) -> Result<System, String> {
        let scratch = tempfile::Builder::new()
            .prefix("exai-validate-")
            .tempdir()
            .map_err(|e| format!("cannot create a scratch directory: {e}"))?;
        let files = scratch.path().join("files");
        std::fs::create_dir_all(&files).map_err(|e| format!("{}: {e}", files.display()))?;
        let mock = match mode {
            ProviderMode::Mock => Some(
                MockServer::start(Some(MOCK_KEY.into()))
                    .await
                    .map_err(|e| format!("cannot start the mock provider: {e}"))?,
            ),
            ProviderMode::Live => None,
        };
        // The mock run starts from the defaults: the operator's file and environment would make
        // it depend on their setup. The live run keeps their providers, timeouts and tool switches.
        let base = match mode {
            ProviderMode::Mock => exai_core::config::load(&Inputs {
                env: vec![("EXAI_HOME".into(), scratch.path().display().to_string())],
                ..Inputs::default()
            })
            .map_err(|e| format!("default configuration: {e}"))?,
            ProviderMode::Live => operator.clone(),
        };
        let loaded = server_config(
            &base,
            mode,
            &scratch.path().join("data"),
            &files,
            mock.as_ref().map(|m| m.url.as_str()),
        );
        let main = Server::start(loaded).await?;
        let models = Models::choose(&main.state, mode);
        let tools = main.tool_names().await?;
        Ok(System {
            mode,
            scratch,
            mock,
            main,
            short: OnceCell::new(),
            models,
            tools,
            corpus: OnceCell::new(),
            tally: Mutex::new(Tally::default()),
        })
    }

    pub async fn stop(self) {
        self.main.stop().await;
        if let Some(Ok(short)) = self.short.into_inner() {
            short.stop().await;
        }
        drop(self.scratch);
    }

    /// The directory fixture files go in (the servers' allowed root).
    pub fn files(&self) -> PathBuf {
        self.scratch.path().join("files")
    }

    /// Write a fixture file under [`System::files`]; returns its absolute path.
    pub fn write(&self, relative: &str, text: &str) -> Result<PathBuf, Problem> {
        let path = self.files().join(relative);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Problem::Error(format!("{}: {e}", dir.display())))?;
        }
        std::fs::write(&path, text)
            .map_err(|e| Problem::Error(format!("{}: {e}", path.display())))?;
        Ok(path)
    }

    /// Call a tool on the main server and count its model use towards the running case.
    pub async fn call(&self, tool: &str, args: Value) -> Result<Reply, Problem> {
        let reply = self.main.call(tool, args).await?;
        self.note(&reply);
        Ok(reply)
    }

    /// Call a tool on another server of this system (the short-timeout one).
    pub async fn call_on(
        &self,
        server: &Server,
        tool: &str,
        args: Value,
    ) -> Result<Reply, Problem> {
        let reply = server.call(tool, args).await?;
        self.note(&reply);
        Ok(reply)
    }

    fn note(&self, reply: &Reply) {
        if let Ok(mut t) = self.tally.lock() {
            t.add(reply);
        }
    }

    /// Start a case's accounting afresh.
    pub fn reset_tally(&self) {
        if let Ok(mut t) = self.tally.lock() {
            *t = Tally::default();
        }
    }

    pub fn take_tally(&self) -> Tally {
        self.tally
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default()
    }

    pub fn is_mock(&self) -> bool {
        self.mode == ProviderMode::Mock
    }

    /// Skip unless the provider is the mock (for cases that need its fault directives).
    pub fn require_mock(&self, why: &str) -> Result<&MockServer, Problem> {
        self.mock
            .as_ref()
            .ok_or_else(|| Problem::Skip(format!("needs the mock provider: {why}")))
    }

    /// Requests the mock received so far (empty for live providers).
    pub fn mock_requests(&self) -> Vec<Recorded> {
        self.mock
            .as_ref()
            .map(MockServer::requests)
            .unwrap_or_default()
    }

    /// The body of the last chat completion the mock received.
    pub fn last_chat_body(&self) -> Value {
        self.mock_requests()
            .into_iter()
            .rev()
            .find(|r| r.path == "/v1/chat/completions")
            .map(|r| r.body)
            .unwrap_or(Value::Null)
    }

    /// The cheapest configured model, or a skip naming what to set.
    pub fn model(&self) -> Result<&str, Problem> {
        self.models.primary.as_deref().ok_or_else(no_provider)
    }

    /// The server with a 2 s workflow tool timeout.
    pub async fn short_server(&self) -> Result<&Server, Problem> {
        let server = self
            .short
            .get_or_init(|| async {
                let mut loaded = self.main.state.loaded.clone();
                loaded.data_dir = self.scratch.path().join("data-short");
                let t = &mut loaded.config.timeouts;
                t.workflow_tool_secs = 2.0;
                t.simple_tool_secs = 1.0;
                t.expert_analysis_secs = 1.5;
                t.model_multipliers.clear();
                loaded.timeouts = exai_core::TimeoutHierarchy::derive(&loaded.config.timeouts)
                    .map_err(|e| format!("{}: {}", e.key, e.reason))?;
                Server::start(loaded).await
            })
            .await;
        server
            .as_ref()
            .map_err(|e| Problem::Error(format!("cannot start the short-timeout server: {e}")))
    }

    /// Index the knowledge-base fixture (once); kb cases search it.
    pub async fn corpus(&self) -> Result<Corpus, Problem> {
        let corpus = self.corpus.get_or_init(|| self.index_corpus()).await;
        corpus.clone().map_err(|e| {
            Problem::Error(format!(
                "the knowledge-base fixture could not be indexed: {e}"
            ))
        })
    }

    async fn index_corpus(&self) -> Result<Corpus, String> {
        let mut sources = Vec::new();
        for fixture in crate::cases::kb::corpus() {
            let source = fixture.name;
            for (path, text) in &fixture.files {
                self.write(&format!("corpus/{source}/{path}"), text)
                    .map_err(|p| p.message().to_string())?;
            }
            let root = self.files().join("corpus").join(source);
            let reply = self
                .main
                .call(
                    "index_path",
                    serde_json::json!({
                        "path": root.display().to_string(),
                        "source": source,
                        "technology": fixture.technology,
                        "wait_secs": 30,
                    }),
                )
                .await
                .map_err(|p| p.message().to_string())?;
            if !reply.ok || reply.str("/state") != "done" {
                return Err(format!(
                    "index_path {source}: {}",
                    crate::check::clip(&reply.text, 300)
                ));
            }
            sources.push((
                source.to_string(),
                fixture.technology.to_string(),
                fixture.files.len() as u64,
            ));
        }
        Ok(Corpus { sources })
    }
}

pub fn no_provider() -> Problem {
    Problem::Skip(
        "no provider is configured: set KIMI_API_KEY or GLM_API_KEY (or another provider's key)"
            .into(),
    )
}
