//! The gateway: one entry point for every model call. Resolves the model (or routes `auto`),
//! checks capabilities and context, takes concurrency slots, coalesces identical in-flight calls,
//! runs the retry loop within the deadline, falls back along the chain, honours cancellation,
//! and reports usage, cost and every routing decision.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use exai_core::Config;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::client::{Attempt, OpenAiCompatible, ProgressFn, Provider};
use crate::error::LlmError;
use crate::limits::Limits;
use crate::metrics::ProviderMetrics;
use crate::models::{ModelInfo, Registry};
use crate::providers::{self, Endpoint};
use crate::retry;
use crate::route::{self, Category, Needs, Route};
use crate::wire::{Answer, ChatRequest, Message, Usage};

/// One model call as a tool describes it.
#[derive(Clone)]
pub struct Call {
    /// A registry name or alias, or `auto`.
    pub model: String,
    pub category: Category,
    pub messages: Vec<Message>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u64>,
    /// Ask for the model's reasoning mode.
    pub thinking: bool,
    pub web_search: bool,
    /// MCP session, for the per-session limit.
    pub session: String,
    pub deadline: Instant,
    pub progress: Option<ProgressFn>,
    pub cancel: CancellationToken,
    /// Conversation-prefix key for Kimi's context cache.
    pub cache_key: Option<String>,
}

/// A model that failed before the one that answered.
#[derive(Debug, Clone, Serialize)]
pub struct Fallback {
    pub model: String,
    pub error: String,
}

/// A finished call.
#[derive(Debug, Clone, Serialize)]
pub struct Completion {
    pub content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    pub model: String,
    pub provider: String,
    pub usage: Usage,
    /// True when the provider reported no usage and the counts are estimates.
    pub usage_estimated: bool,
    pub cost_usd: f64,
    pub finish_reason: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub web_results: Vec<serde_json::Value>,
    pub attempts: u32,
    pub route: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<Fallback>,
    /// Shared the answer of an identical call already in flight.
    pub coalesced: bool,
    pub latency_ms: f64,
}

type Flight = Shared<BoxFuture<'static, Result<(Answer, u32), LlmError>>>;

pub struct Gateway {
    registry: Registry,
    endpoints: Vec<Endpoint>,
    providers: HashMap<String, Arc<OpenAiCompatible>>,
    limits: Limits,
    max_retries: u32,
    default_model: String,
    in_flight: Mutex<HashMap<[u8; 32], Flight>>,
}

impl Gateway {
    /// Providers and models from the configuration; `env` resolves custom servers' key variables.
    pub fn from_config(config: &Config, env: &dyn Fn(&str) -> Option<String>) -> Gateway {
        Gateway::build(config, env, None)
    }

    /// The gateway for a reloaded configuration, replacing `previous`: a provider configured in
    /// both keeps counting into the same metrics, so `/metrics` totals survive a key rotation.
    /// Calls running on `previous` finish there, under its limits.
    pub fn reconfigured(
        config: &Config,
        env: &dyn Fn(&str) -> Option<String>,
        previous: &Gateway,
    ) -> Gateway {
        Gateway::build(config, env, Some(previous))
    }

    fn build(
        config: &Config,
        env: &dyn Fn(&str) -> Option<String>,
        previous: Option<&Gateway>,
    ) -> Gateway {
        let p = &config.providers;
        let endpoints = providers::endpoints(p, env);
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .user_agent(concat!("exai/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        let providers = endpoints
            .iter()
            .filter(|e| e.is_configured())
            .map(|e| {
                let metrics = previous
                    .and_then(|g| g.providers.get(&e.id))
                    .map(|old| old.metrics.clone())
                    .unwrap_or_default();
                (
                    e.id.clone(),
                    Arc::new(OpenAiCompatible::counting_into(
                        e.clone(),
                        http.clone(),
                        metrics,
                    )),
                )
            })
            .collect();
        let to_usize = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        Gateway {
            registry: Registry::build(&p.custom, &p.models, &config.timeouts.model_multipliers),
            endpoints,
            providers,
            limits: Limits::new(
                to_usize(p.max_concurrent),
                to_usize(p.max_concurrent_per_provider),
                to_usize(p.max_concurrent_per_session),
            ),
            max_retries: u32::try_from(p.max_retries).unwrap_or(3),
            default_model: p.default_model.clone(),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    pub fn default_model(&self) -> &str {
        &self.default_model
    }

    /// Provider ids that have what they need to be called.
    pub fn configured(&self) -> HashSet<String> {
        self.providers.keys().cloned().collect()
    }

    /// The concrete client of a configured provider (for Kimi files, GLM web search).
    pub fn provider(&self, id: &str) -> Option<Arc<OpenAiCompatible>> {
        self.providers.get(id).cloned()
    }

    pub fn in_flight(&self) -> usize {
        self.limits.in_flight()
    }

    /// Each configured provider's counters and latest failure, by provider id.
    pub fn provider_summaries(&self) -> Vec<crate::metrics::ProviderSummary> {
        let mut out: Vec<_> = self
            .providers
            .iter()
            .map(|(id, p)| p.metrics.summary(id))
            .collect();
        out.sort_unstable_by(|a, b| a.provider.cmp(&b.provider));
        out
    }

    /// Write the configured providers' metrics in the Prometheus text format.
    pub fn encode_metrics(&self, enc: &mut exai_core::metrics::Encoder) {
        let mut providers: Vec<(&str, &ProviderMetrics)> = self
            .providers
            .iter()
            .map(|(id, p)| (id.as_str(), &*p.metrics))
            .collect();
        providers.sort_unstable_by_key(|(id, _)| *id);
        crate::metrics::encode(enc, &providers, self.in_flight());
    }

    /// Why a model can or cannot be called: `None` when it can.
    pub fn unavailable_reason(&self, model: &ModelInfo) -> Option<String> {
        if self.providers.contains_key(&model.provider) {
            return None;
        }
        Some(
            match self.endpoints.iter().find(|e| e.id == model.provider) {
                Some(e) => format!("no API key: set {}", e.key_variables),
                None => format!("provider `{}` is not configured", model.provider),
            },
        )
    }

    /// Resolve the call's model into a chain to try.
    pub fn route(&self, call: &Call) -> Result<Route, LlmError> {
        let needed = estimate(call);
        let needs = Needs {
            thinking: false, // a request, not a requirement: models without it still answer
            web_search: call.web_search,
            files: false,
        };
        let wanted = match call.model.trim() {
            "" => self.default_model.as_str(),
            m => m,
        };
        if wanted.eq_ignore_ascii_case("auto") {
            let prompt: String = call
                .messages
                .iter()
                .rev()
                .find(|m| m.role == "user")
                .map(|m| m.content.chars().take(4000).collect())
                .unwrap_or_default();
            return route::auto(
                &self.registry,
                &self.configured(),
                call.category,
                &prompt,
                needed,
                needs,
            );
        }
        let Some(model) = self.registry.get(wanted) else {
            let hints = self.registry.suggest(wanted);
            return Err(LlmError::UnknownModel {
                name: wanted.to_string(),
                hint: if hints.is_empty() {
                    String::new()
                } else {
                    format!(" (did you mean {}?)", hints.join(", "))
                },
            });
        };
        self.check(model, needed, call)?;
        Ok(Route {
            chain: vec![model.name.clone()],
            reason: format!("model `{}` requested", model.name),
        })
    }

    fn check(&self, model: &ModelInfo, needed: u64, call: &Call) -> Result<(), LlmError> {
        if !self.providers.contains_key(&model.provider) {
            if self.providers.is_empty() {
                return Err(LlmError::NoProvider);
            }
            let variables = self
                .endpoints
                .iter()
                .find(|e| e.id == model.provider)
                .map_or_else(
                    || format!("providers.custom.{}", model.provider),
                    |e| e.key_variables.clone(),
                );
            return Err(LlmError::ProviderNotConfigured {
                model: model.name.clone(),
                provider: model.provider.clone(),
                variables,
            });
        }
        if call.web_search && !model.capabilities.web_search {
            return Err(LlmError::Unsupported {
                model: model.name.clone(),
                capability: "web search".into(),
                hint: "; use a GLM model or model \"auto\"".into(),
            });
        }
        if needed > model.context_window {
            return Err(LlmError::ContextTooLong {
                model: model.name.clone(),
                needed,
                window: model.context_window,
            });
        }
        Ok(())
    }

    /// Run a call: route, then try the chain until one model answers.
    pub async fn complete(&self, call: Call) -> Result<Completion, LlmError> {
        let started = Instant::now();
        let route = self.route(&call)?;
        // Every decision and its reason also goes to the activity record; the log keeps the ones
        // exai made (auto, the default model, a chain), not the echo of the one model the caller
        // named, once per call.
        if route.chain.len() != 1 || route.chain[0] != call.model.trim() {
            tracing::info!(model = %call.model, chain = ?route.chain, reason = %route.reason, "route");
        } else {
            tracing::debug!(model = %call.model, chain = ?route.chain, reason = %route.reason, "route");
        }
        let mut fallbacks = Vec::new();
        let mut last_error = LlmError::NoProvider;
        for (i, name) in route.chain.iter().enumerate() {
            let Some(model) = self.registry.get(name).cloned() else {
                continue;
            };
            match self.call_model(&model, &call).await {
                Ok((answer, attempts, coalesced)) => {
                    return Ok(self.finish(
                        answer, attempts, coalesced, &model, &call, &route, fallbacks, started,
                    ));
                }
                Err(e) if e.allows_fallback() && i + 1 < route.chain.len() => {
                    tracing::warn!(model = %model.name, error = %e, "falling back to the next model");
                    fallbacks.push(Fallback {
                        model: model.name.clone(),
                        error: e.to_string(),
                    });
                    last_error = e;
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error)
    }

    async fn call_model(
        &self,
        model: &ModelInfo,
        call: &Call,
    ) -> Result<(Answer, u32, bool), LlmError> {
        let provider = self
            .providers
            .get(&model.provider)
            .cloned()
            .ok_or(LlmError::NoProvider)?;
        let max_out = call.max_tokens.map(|n| n.min(model.max_output));
        let req = ChatRequest {
            model: model.name.clone(),
            messages: call.messages.clone(),
            temperature: call.temperature,
            max_tokens: max_out,
            thinking: (call.thinking && model.capabilities.thinking).then_some(true),
            web_search: call.web_search && model.capabilities.web_search,
            stream: call.progress.is_some(),
        };
        let key = flight_key(&model.provider, &req);
        let existing = self
            .in_flight
            .lock()
            .ok()
            .and_then(|m| m.get(&key).cloned());
        let (flight, coalesced) = match existing {
            Some(f) => {
                provider.metrics.coalesced.inc();
                (f, true)
            }
            None => {
                let permit = self
                    .limits
                    .acquire(&model.provider, &call.session)
                    .inspect_err(|_| provider.metrics.over_capacity.inc())?;
                let attempt = Attempt {
                    idempotency_key: uuid::Uuid::new_v4().to_string(),
                    deadline: call.deadline,
                    progress: call.progress.clone(),
                    cache_key: call.cache_key.clone(),
                };
                let retries = self.max_retries;
                let provider: Arc<dyn Provider> = provider;
                let fut: BoxFuture<'static, Result<(Answer, u32), LlmError>> =
                    Box::pin(async move {
                        let _permit = permit;
                        retry::with_retries(provider.as_ref(), &req, &attempt, retries).await
                    });
                let shared = fut.shared();
                if let Ok(mut m) = self.in_flight.lock() {
                    m.insert(key, shared.clone());
                }
                (shared, false)
            }
        };
        let outcome = tokio::select! {
            r = flight => r,
            () = call.cancel.cancelled() => Err(LlmError::Cancelled),
        };
        if !coalesced && let Ok(mut m) = self.in_flight.lock() {
            m.remove(&key);
        }
        outcome.map(|(a, n)| (a, n, coalesced))
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        answer: Answer,
        attempts: u32,
        coalesced: bool,
        model: &ModelInfo,
        call: &Call,
        route: &Route,
        fallbacks: Vec<Fallback>,
        started: Instant,
    ) -> Completion {
        let (usage, usage_estimated) = match answer.usage {
            Some(u) => (u, false),
            None => (
                Usage {
                    prompt_tokens: estimate(call),
                    completion_tokens: (answer.content.len() as u64).div_ceil(4),
                },
                true,
            ),
        };
        let cost_usd = model.cost(usage.prompt_tokens, usage.completion_tokens);
        // A coalesced call shared another's request: the provider billed it once.
        if !coalesced && let Some(provider) = self.providers.get(&model.provider) {
            let m = &provider.metrics;
            m.tokens_in.add(usage.prompt_tokens);
            m.tokens_out.add(usage.completion_tokens);
            m.cost_usd.add(cost_usd);
        }
        Completion {
            cost_usd,
            content: answer.content,
            reasoning: answer.reasoning,
            model: model.name.clone(),
            provider: model.provider.clone(),
            usage,
            usage_estimated,
            finish_reason: answer.finish_reason,
            web_results: answer.web_results,
            attempts,
            route: if fallbacks.is_empty() {
                route.reason.clone()
            } else {
                let failed: Vec<&str> = fallbacks.iter().map(|f| f.model.as_str()).collect();
                format!("{}; fell back from {}", route.reason, failed.join(", "))
            },
            fallbacks,
            coalesced,
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        }
    }
}

fn estimate(call: &Call) -> u64 {
    let chars: usize = call
        .messages
        .iter()
        .map(|m| m.content.chars().count() + 4)
        .sum();
    (chars as u64).div_ceil(4) + call.max_tokens.unwrap_or(0)
}

fn flight_key(provider: &str, req: &ChatRequest) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(provider.as_bytes());
    h.update(&[0]);
    h.update(&serde_json::to_vec(req).unwrap_or_default());
    *h.finalize().as_bytes()
}
