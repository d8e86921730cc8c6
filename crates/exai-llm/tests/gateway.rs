//! The gateway against the mock provider over real HTTP: wire format, streaming, retries,
//! deadlines, cancellation, fallback, coalescing, limits and the provider extras.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use exai_core::{Config, Secret};
use exai_llm::metrics::Operation;
use exai_llm::mock::MockServer;
use exai_llm::{Attempt, Call, Category, Gateway, LlmError, Message};
use tokio_util::sync::CancellationToken;

const KEY: &str = "test-key";

fn config(mock: &MockServer, kimi_key: &str, glm_key: &str) -> Config {
    let mut c = Config::default();
    c.providers.kimi_api_url = mock.url.clone();
    c.providers.kimi_api_key = Secret::new(kimi_key);
    c.providers.glm_api_url = mock.url.clone();
    c.providers.glm_api_key = Secret::new(glm_key);
    c
}

fn gateway(mock: &MockServer) -> Gateway {
    Gateway::from_config(&config(mock, KEY, KEY), &|_| None)
}

fn call(model: &str, prompt: &str) -> Call {
    Call {
        model: model.into(),
        category: Category::Fast,
        messages: vec![Message::system("be brief"), Message::user(prompt)],
        temperature: Some(0.2),
        max_tokens: None,
        thinking: false,
        web_search: false,
        session: "test".into(),
        deadline: Instant::now() + Duration::from_secs(20),
        progress: None,
        cancel: CancellationToken::new(),
        cache_key: None,
    }
}

#[tokio::test]
async fn answers_with_usage_cost_and_idempotency_key() {
    let mock = MockServer::start(Some(KEY.into())).await.unwrap();
    let gw = gateway(&mock);
    let done = gw.complete(call("glm-4.6", "hello there")).await.unwrap();
    assert!(
        done.content
            .starts_with("mock answer from glm-4.6 (2 messages): hello there")
    );
    assert_eq!(done.provider, "glm");
    assert!(!done.usage_estimated && done.usage.prompt_tokens > 0);
    let expected = gw
        .registry()
        .get("glm-4.6")
        .unwrap()
        .cost(done.usage.prompt_tokens, done.usage.completion_tokens);
    assert!((done.cost_usd - expected).abs() < 1e-12);
    assert_eq!(done.attempts, 1);
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].authorized);
    assert!(
        reqs[0]
            .idempotency_key
            .as_deref()
            .is_some_and(|k| k.len() == 36)
    );
    assert_eq!(reqs[0].body["temperature"], 0.2);
}

#[tokio::test]
async fn streams_with_progress_thinking_and_web_search() {
    let mock = MockServer::start(Some(KEY.into())).await.unwrap();
    let gw = gateway(&mock);
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let mut c = call("glm-4.6", "stream this please [[mock:stream_delay=5]]");
    c.progress = Some(Arc::new(move |_chars| {
        counter.fetch_add(1, Ordering::SeqCst);
    }));
    c.thinking = true;
    c.web_search = true;
    let done = gw.complete(c).await.unwrap();
    assert!(done.content.contains("stream this please"));
    assert!(
        done.reasoning
            .as_deref()
            .unwrap()
            .starts_with("mock reasoning")
    );
    assert_eq!(done.web_results.len(), 1);
    assert!(seen.load(Ordering::SeqCst) >= 3, "progress per chunk");
    let body = &mock.requests()[0].body;
    assert_eq!(body["stream"], true);
    assert_eq!(body["thinking"]["type"], "enabled");
    assert_eq!(body["tools"][0]["type"], "web_search");
}

#[tokio::test]
async fn retries_429_with_retry_after_and_5xx_with_one_idempotency_key() {
    let mock = MockServer::start(Some(KEY.into())).await.unwrap();
    let gw = gateway(&mock);
    let started = Instant::now();
    let done = gw
        .complete(call("kimi-k2-0905-preview", "busy [[mock:rate_limit=1]]"))
        .await
        .unwrap();
    assert_eq!(done.attempts, 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    let done = gw
        .complete(call("kimi-k2-0905-preview", "flaky [[mock:error500=2]]"))
        .await
        .unwrap();
    assert_eq!(done.attempts, 3);
    let m = &gw.provider("kimi").unwrap().metrics;
    assert_eq!(m.requests(Operation::Chat, "rate_limited"), 1);
    assert_eq!(m.requests(Operation::Chat, "server_error"), 2);
    assert_eq!(m.requests(Operation::Chat, "ok"), 2);
    assert_eq!(m.retries.get(), 3);
    assert!(m.tokens_in.get() > 0 && m.tokens_out.get() > 0 && m.cost_usd.get() > 0.0);
    let reqs = mock.requests();
    let keys: std::collections::HashSet<_> = reqs[2..]
        .iter()
        .map(|r| r.idempotency_key.clone())
        .collect();
    assert_eq!(keys.len(), 1, "retries reuse the idempotency key");
}

#[tokio::test]
async fn final_errors_are_not_retried() {
    let mock = MockServer::start(Some(KEY.into())).await.unwrap();
    let gw = gateway(&mock);
    let e = gw
        .complete(call("glm-4.6", "huge [[mock:context_length]]"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "context_length");
    assert_eq!(mock.requests().len(), 1);
    let bad = Gateway::from_config(&config(&mock, "wrong", KEY), &|_| None);
    let e = bad
        .complete(call("kimi-k2-0905-preview", "hi"))
        .await
        .unwrap_err();
    assert!(matches!(e, LlmError::Auth { status: 401, .. }), "{e}");
    assert!(e.to_string().contains("KIMI_API_KEY") && !e.to_string().contains("wrong"));
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test]
async fn broken_answers_end_in_clear_errors() {
    let mock = MockServer::start(Some(KEY.into())).await.unwrap();
    let mut cfg = config(&mock, KEY, KEY);
    cfg.providers.max_retries = 1;
    let gw = Gateway::from_config(&cfg, &|_| None);
    let e = gw
        .complete(call("glm-4.6", "x [[mock:malformed]]"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "malformed");
    let mut c = call("glm-4.6", "x [[mock:truncate]]");
    c.progress = Some(Arc::new(|_| {}));
    let e = gw.complete(c).await.unwrap_err();
    assert_eq!(e.kind(), "truncated_stream");
    assert_eq!(mock.requests().len(), 4, "each retried once");
}

#[tokio::test]
async fn deadline_and_cancellation_stop_the_request() {
    let mock = MockServer::start(Some(KEY.into())).await.unwrap();
    let gw = gateway(&mock);
    let mut c = call("glm-4.6", "slow [[mock:slow=5000]]");
    c.deadline = Instant::now() + Duration::from_millis(300);
    let started = Instant::now();
    let e = gw.complete(c).await.unwrap_err();
    assert_eq!(e.kind(), "timeout");
    assert!(started.elapsed() < Duration::from_secs(2));
    let mut c = call(
        "glm-4.6",
        "long stream [[mock:stream_delay=200]] a b c d e f g h i j k l",
    );
    c.progress = Some(Arc::new(|_| {}));
    let cancel = c.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    let e = gw.complete(c).await.unwrap_err();
    assert_eq!(e.kind(), "cancelled");
    assert!(started.elapsed() < Duration::from_secs(2));
    let m = &gw.provider("glm").unwrap().metrics;
    assert_eq!(m.requests(Operation::Chat, "timeout"), 1);
    assert_eq!(
        m.requests(Operation::Chat, "cancelled"),
        1,
        "a dropped request is counted"
    );
}

#[tokio::test]
async fn auto_falls_back_to_another_provider() {
    let mock = MockServer::start(Some(KEY.into())).await.unwrap();
    // Kimi's key is wrong: a deep task routes to Kimi first, gets 401 and moves on to GLM.
    let gw = Gateway::from_config(&config(&mock, "wrong", KEY), &|_| None);
    let mut c = call("auto", "think hard");
    c.category = Category::Deep;
    let done = gw.complete(c).await.unwrap();
    assert_eq!(done.provider, "glm");
    assert_eq!(done.fallbacks.len(), 1);
    assert!(done.fallbacks[0].error.contains("KIMI_API_KEY"));
    assert!(done.route.contains("deep-reasoning"), "{}", done.route);
    assert!(
        done.route.contains("fell back from kimi-k2-0905-preview"),
        "{}",
        done.route
    );
}

#[tokio::test]
async fn identical_calls_in_flight_are_coalesced() {
    let mock = MockServer::start(Some(KEY.into())).await.unwrap();
    let gw = Arc::new(gateway(&mock));
    let a = tokio::spawn({
        let gw = gw.clone();
        async move { gw.complete(call("glm-4.6", "same [[mock:slow=300]]")).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let b = gw
        .complete(call("glm-4.6", "same [[mock:slow=300]]"))
        .await
        .unwrap();
    let a = a.await.unwrap().unwrap();
    assert_eq!(a.content, b.content);
    assert!(b.coalesced && !a.coalesced);
    assert_eq!(mock.requests().len(), 1);
    let m = &gw.provider("glm").unwrap().metrics;
    assert_eq!(m.coalesced.get(), 1);
    assert_eq!(m.requests(Operation::Chat, "ok"), 1);
    assert_eq!(
        m.tokens_in.get(),
        a.usage.prompt_tokens,
        "a shared answer is billed once"
    );
}

#[tokio::test]
async fn a_full_session_gets_over_capacity() {
    let mock = MockServer::start(Some(KEY.into())).await.unwrap();
    let mut cfg = config(&mock, KEY, KEY);
    cfg.providers.max_concurrent_per_session = 1;
    let gw = Arc::new(Gateway::from_config(&cfg, &|_| None));
    let slow = tokio::spawn({
        let gw = gw.clone();
        async move {
            gw.complete(call("glm-4.6", "first [[mock:slow=400]]"))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let e = gw.complete(call("glm-4.6", "second")).await.unwrap_err();
    assert_eq!(e.kind(), "OVER_CAPACITY");
    assert!(e.retry_after().is_some());
    assert_eq!(gw.provider("glm").unwrap().metrics.over_capacity.get(), 1);
    slow.await.unwrap().unwrap();
    let mut other = call("glm-4.6", "other session");
    other.session = "another".into();
    assert!(gw.complete(other).await.is_ok());
}

#[tokio::test]
async fn kimi_cache_token_files_and_glm_search() {
    let mock = MockServer::start(Some(KEY.into())).await.unwrap();
    let gw = gateway(&mock);
    let mut c = call("kimi-k2-0905-preview", "with a long shared prefix");
    c.cache_key = Some("session:chat:prefix".into());
    gw.complete(c.clone()).await.unwrap();
    gw.complete(c).await.unwrap();
    let reqs = mock.requests();
    assert!(reqs[0].cache_token.is_none());
    assert!(
        reqs[1]
            .cache_token
            .as_deref()
            .is_some_and(|t| t.starts_with("cache-"))
    );
    let attempt = Attempt {
        idempotency_key: "k".into(),
        deadline: Instant::now() + Duration::from_secs(5),
        progress: None,
        cache_key: None,
    };
    let kimi = gw.provider("kimi").unwrap();
    let text = kimi
        .kimi_extract("notes.txt", b"hello file".to_vec(), &attempt)
        .await
        .unwrap();
    assert_eq!(text, "hello file");
    assert_eq!(mock.stored_files(), 0, "deleted after reading");
    // Deleted when reading the content fails, too.
    let failed = kimi
        .kimi_extract("mock-content-error.txt", b"x".to_vec(), &attempt)
        .await;
    assert!(failed.is_err());
    assert_eq!(mock.stored_files(), 0, "deleted after a failed read");
    // And when the call is dropped half way (a client's cancel), soon after.
    {
        let upload = kimi.kimi_extract("mock-content-slow.txt", b"y".to_vec(), &attempt);
        tokio::pin!(upload);
        let stored = async {
            while mock.stored_files() == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::select! {
            _ = &mut upload => panic!("the slow content answered first"),
            () = stored => {}
        }
        assert_eq!(mock.stored_files(), 1, "uploaded, its content pending");
        // `upload` is dropped here, as a cancelled tool call drops it.
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while mock.stored_files() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(mock.stored_files(), 0, "deleted after a cancelled call");
    let glm = gw.provider("glm").unwrap();
    let results = glm.glm_web_search("rust async", 2, &attempt).await.unwrap();
    assert_eq!(results.len(), 2);
    assert!(glm.kimi_extract("x", vec![], &attempt).await.is_err());
    assert_eq!(kimi.metrics.context_cache_misses.get(), 1);
    assert_eq!(kimi.metrics.context_cache_hits.get(), 1);
    assert_eq!(kimi.metrics.requests(Operation::FileExtract, "ok"), 1);
    assert_eq!(glm.metrics.requests(Operation::WebSearch, "ok"), 1);
    assert_eq!(
        glm.metrics.requests(Operation::FileExtract, "other"),
        0,
        "refused before any request"
    );
}

#[tokio::test]
async fn no_provider_and_unknown_models_are_clear() {
    let gw = Gateway::from_config(&Config::default(), &|_| None);
    let e = gw.complete(call("auto", "hi")).await.unwrap_err();
    assert_eq!(e.kind(), "no_provider");
    assert!(e.to_string().contains("KIMI_API_KEY") && e.to_string().contains("GLM_API_KEY"));
    let mock = MockServer::start(None).await.unwrap();
    let gw = gateway(&mock);
    let e = gw.complete(call("kimi-k2", "hi")).await.unwrap_err();
    assert!(e.to_string().contains("did you mean"), "{e}");
    let e = gw.complete(call("gpt-4.1", "hi")).await.unwrap_err();
    assert!(e.to_string().contains("OPENAI_API_KEY"), "{e}");
    let mut c = call("kimi-k2-0905-preview", "search");
    c.web_search = true;
    assert_eq!(gw.complete(c).await.unwrap_err().kind(), "unsupported");
}

/// A configuration reload rotates a key: the new gateway sends the new key, the provider
/// refuses the old one, and the provider's counters carry on from the gateway replaced.
#[tokio::test]
async fn a_reconfigured_gateway_uses_the_new_key_and_keeps_counting() {
    let mock = MockServer::start(Some(KEY.into())).await.unwrap();
    let old = Gateway::from_config(&config(&mock, "revoked-key", "revoked-key"), &|_| None);
    let e = old.complete(call("glm-4.6", "before")).await.unwrap_err();
    assert_eq!(e.kind(), "auth", "{e}");
    let new = Gateway::reconfigured(&config(&mock, KEY, KEY), &|_| None, &old);
    let done = new.complete(call("glm-4.6", "after")).await.unwrap();
    assert!(done.content.contains("after"));
    let m = &new.provider("glm").unwrap().metrics;
    assert_eq!(
        m.requests(Operation::Chat, "auth"),
        1,
        "counted before the reload"
    );
    assert_eq!(m.requests(Operation::Chat, "ok"), 1);
    let authorized: Vec<bool> = mock.requests().iter().map(|r| r.authorized).collect();
    assert_eq!(authorized, [false, true]);
}
