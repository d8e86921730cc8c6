//! The safe client against a loopback server: redirects, caps, deadlines, retries, encodings
//! and the address policy.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, client, policy};
use exai_fetch::{Body, FetchError, FetchPolicy, Format, SafeClient, Validators};

fn text(fetched: &exai_fetch::Fetched) -> &str {
    match &fetched.content.as_ref().unwrap().body {
        Body::Text(text) => text,
        Body::Bytes(_) => panic!("expected text"),
    }
}

#[tokio::test]
async fn a_redirect_chain_is_followed_and_recorded() {
    let server = TestServer::start().await;
    let fetched = client()
        .get(&server.url("/site/redirect/1"), None)
        .await
        .unwrap();
    assert_eq!(fetched.url.path(), "/site/final.html");
    let hops: Vec<_> = fetched
        .redirects
        .iter()
        .map(|u| u.path().to_string())
        .collect();
    assert_eq!(
        hops,
        ["/site/redirect/2", "/site/redirect/3", "/site/final.html"]
    );
    assert!(text(&fetched).contains("redirect targets"));
}

#[tokio::test]
async fn redirect_loops_and_long_chains_fail_with_their_reason() {
    let server = TestServer::start().await;
    let err = client()
        .get(&server.url("/site/loop/a"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::RedirectLoop { .. }), "{err}");
    assert!(err.to_string().contains("redirect loop"), "{err}");
    let short = SafeClient::new(FetchPolicy {
        max_redirects: 2,
        ..policy()
    })
    .unwrap();
    let err = short
        .get(&server.url("/site/redirect/1"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::TooManyRedirects { max: 2, .. }),
        "{err}"
    );
    let err = client()
        .get_scoped(&server.url("/site/redirect/1"), None, &|u| {
            u.path() != "/site/final.html"
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::RedirectOutOfScope { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_page_over_the_cap_is_refused() {
    let server = TestServer::start().await;
    let err = client()
        .get(&server.url("/site/big.html"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::TooLarge { limit: 8388608, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("too large"));
}

#[tokio::test]
async fn a_decompression_bomb_stops_at_the_cap() {
    let server = TestServer::start().await;
    let small = SafeClient::new(FetchPolicy {
        max_page_bytes: 1024 * 1024,
        ..policy()
    })
    .unwrap();
    let err = small
        .get(&server.url("/site/bomb.html"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::TooLarge { limit: 1048576, .. }),
        "{err}"
    );
    // The same body is read when the cap is above its decompressed size: it is decompressed.
    let large = SafeClient::new(FetchPolicy {
        max_page_bytes: 32 * 1024 * 1024,
        ..policy()
    })
    .unwrap();
    let fetched = large
        .get(&server.url("/site/bomb.html"), None)
        .await
        .unwrap();
    assert!(text(&fetched).len() > 16 * 1024 * 1024);
}

#[tokio::test]
async fn legacy_encodings_are_decoded() {
    let server = TestServer::start().await;
    let cp1252 = client()
        .get(&server.url("/site/cp1252.html"), None)
        .await
        .unwrap();
    assert!(
        text(&cp1252).contains("Café crème “quoted” € 10"),
        "{}",
        &text(&cp1252)[..80]
    );
    let sjis = client()
        .get(&server.url("/site/sjis.html"), None)
        .await
        .unwrap();
    assert!(
        text(&sjis).contains("日本語のテキスト"),
        "{}",
        &text(&sjis)[..120]
    );
}

#[tokio::test]
async fn the_deadline_covers_a_slow_page() {
    let server = TestServer::start().await;
    let started = Instant::now();
    let err = client()
        .get(&server.url("/site/slow.html"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Timeout { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the 3 s deadline did not hold"
    );
}

#[tokio::test]
async fn retry_after_is_waited_out_within_bounds() {
    let server = TestServer::start().await;
    let fetched = client()
        .get(&server.url("/site/busy.html"), None)
        .await
        .unwrap();
    assert!(text(&fetched).contains("rate limits"));
    assert_eq!(server.hits("/site/busy.html"), 2);
    let err = client()
        .get(&server.url("/site/too-busy.html"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::RateLimited { status: 503, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("exceeds the 60s bound"), "{err}");
    assert_eq!(server.hits("/site/too-busy.html"), 1);
}

#[tokio::test]
async fn conditional_requests_get_not_modified() {
    let server = TestServer::start().await;
    let first = client()
        .get(&server.url("/site/changing.html"), None)
        .await
        .unwrap();
    assert!(first.etag.is_some() && first.last_modified.is_some());
    let validators = Validators {
        etag: first.etag.clone(),
        last_modified: None,
    };
    let second = client()
        .get(&server.url("/site/changing.html"), Some(&validators))
        .await
        .unwrap();
    assert!(second.not_modified());
    let dated = client()
        .get(&server.url("/site/lm-only.html"), None)
        .await
        .unwrap();
    let validators = Validators {
        etag: None,
        last_modified: dated.last_modified.clone(),
    };
    assert!(
        client()
            .get(&server.url("/site/lm-only.html"), Some(&validators))
            .await
            .unwrap()
            .not_modified()
    );
}

#[tokio::test]
async fn content_types_are_checked() {
    let server = TestServer::start().await;
    let err = client()
        .get(&server.url("/site/image.png"), None)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("unsupported content type image/png"),
        "{err}"
    );
    let md = client()
        .get(&server.url("/site/notes.md"), None)
        .await
        .unwrap();
    assert_eq!(md.content.unwrap().format, Format::Markdown);
    let err = client()
        .get(&server.url("/site/missing.html"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Http { status: 404, .. }), "{err}");
}

#[tokio::test]
async fn loopback_is_refused_unless_allowed() {
    let server = TestServer::start().await;
    let closed = SafeClient::new(FetchPolicy::default()).unwrap();
    let err = closed.get(&server.url("/site/"), None).await.unwrap_err();
    assert!(matches!(err, FetchError::Refused { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("127.0.0.1") && message.contains("kb.fetch_allowed_hosts"),
        "{message}"
    );
    // A name that resolves to loopback is refused after resolution.
    let by_name =
        url::Url::parse(&format!("http://localhost:{}/site/", server.addr.port())).unwrap();
    let err = closed.get(&by_name, None).await.unwrap_err();
    assert!(matches!(err, FetchError::Refused { .. }), "{err}");
    assert!(
        err.to_string().contains("localhost") && err.to_string().contains("resolves to"),
        "{err}"
    );
    assert_eq!(
        server.hits("/site/"),
        0,
        "a refused request reached the server"
    );
    // Allowed on another port only: still refused.
    let other_port = SafeClient::new(FetchPolicy {
        allowed_hosts: vec!["127.0.0.1:1".into()],
        ..policy()
    })
    .unwrap();
    assert!(other_port.get(&server.url("/site/"), None).await.is_err());
    let allowed_name = SafeClient::new(FetchPolicy {
        allowed_hosts: vec!["localhost".into()],
        ..policy()
    })
    .unwrap();
    assert!(allowed_name.get(&by_name, None).await.is_ok());
    // A redirect from an allowed host to a refused address is refused at the hop.
    let err = client()
        .get(&server.url("/site/to-metadata"), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("169.254.169.254"), "{err}");
}
