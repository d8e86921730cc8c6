//! The page and its assets, compiled in. Every response carries a strict Content-Security-Policy
//! (scripts, styles and connections only from this origin; no inline code, no framing) and an
//! ETag, so a browser revalidates after an upgrade and otherwise reuses what it has.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The page shell; `<!-- pages -->` becomes one script tag per page, in [`ASSETS`] order.
const INDEX: &str = include_str!("../assets/index.html");

/// Name (under `/ui/assets/`), content type, content. The nav lists pages in this order.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.css", CSS, include_str!("../assets/app.css")),
    ("app.js", JS, include_str!("../assets/app.js")),
    (
        "pages/overview.js",
        JS,
        include_str!("../assets/pages/overview.js"),
    ),
    (
        "pages/activity.js",
        JS,
        include_str!("../assets/pages/activity.js"),
    ),
    ("pages/kb.js", JS, include_str!("../assets/pages/kb.js")),
    (
        "pages/conversations.js",
        JS,
        include_str!("../assets/pages/conversations.js"),
    ),
    (
        "pages/validation.js",
        JS,
        include_str!("../assets/pages/validation.js"),
    ),
    ("pages/logs.js", JS, include_str!("../assets/pages/logs.js")),
    (
        "pages/maintenance.js",
        JS,
        include_str!("../assets/pages/maintenance.js"),
    ),
    ("favicon.svg", SVG, include_str!("../assets/favicon.svg")),
];

const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const SVG: &str = "image/svg+xml";

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

struct Built {
    index: String,
    index_etag: String,
    etags: Vec<String>,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let etags: Vec<String> = ASSETS.iter().map(|(_, _, body)| etag(body)).collect();
        // Each script's ETag in its URL too: a new build's page never runs an old script.
        let scripts: String = ASSETS
            .iter()
            .zip(&etags)
            .filter(|((name, _, _), _)| name.starts_with("pages/"))
            .map(|((name, _, _), tag)| {
                format!(
                    "<script src=\"/ui/assets/{name}?v={}\" defer></script>\n",
                    tag.trim_matches('"')
                )
            })
            .collect();
        let version = |name: &str| {
            ASSETS
                .iter()
                .zip(&etags)
                .find(|((n, _, _), _)| *n == name)
                .map(|(_, t)| t.trim_matches('"').to_string())
                .unwrap_or_default()
        };
        let index = INDEX
            .replace("<!-- pages -->", &scripts)
            .replace("{{app.css}}", &version("app.css"))
            .replace("{{app.js}}", &version("app.js"))
            .replace("{{version}}", exai_core::VERSION);
        Built {
            index_etag: etag(&index),
            index,
            etags,
        }
    })
}

fn etag(body: &str) -> String {
    let hash = blake3::hash(body.as_bytes()).to_hex();
    format!("\"{}\"", &hash[..16])
}

/// The headers every dashboard document carries.
fn secure(response: &mut Response) {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}

fn serve(
    headers: &HeaderMap,
    content_type: &'static str,
    body: &'static str,
    tag: &str,
) -> Response {
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], body).into_response()
    };
    if let Ok(tag) = HeaderValue::from_str(tag) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    secure(&mut response);
    response
}

pub(crate) async fn index(headers: HeaderMap) -> Response {
    let b = built();
    serve(
        &headers,
        "text/html; charset=utf-8",
        &b.index,
        &b.index_etag,
    )
}

pub(crate) async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let b = built();
    match ASSETS.iter().position(|(n, _, _)| *n == name) {
        Some(i) => {
            let (_, content_type, body) = ASSETS[i];
            serve(&headers, content_type, body, &b.etags[i])
        }
        None => {
            let mut r = (StatusCode::NOT_FOUND, "no such dashboard asset").into_response();
            secure(&mut r);
            r
        }
    }
}

#[cfg(test)]
/// Bytes of the page and everything it loads (HTML + JS + CSS, uncompressed), for the benchmark
/// and the test that holds it to its budget.
pub(crate) fn page_weight() -> usize {
    built().index.len()
        + ASSETS
            .iter()
            .filter(|(_, t, _)| *t == CSS || *t == JS)
            .map(|(_, _, b)| b.len())
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_script_is_in_the_page_and_nothing_inline() {
        let b = built();
        for (name, _, _) in ASSETS.iter().filter(|(n, _, _)| n.starts_with("pages/")) {
            assert!(b.index.contains(&format!("/ui/assets/{name}?v=")), "{name}");
        }
        assert!(!b.index.contains("{{"), "unreplaced placeholder");
        // The CSP forbids inline code: the page must not need any.
        assert!(!b.index.contains("<script>") && !b.index.contains("style=\""));
        for handler in ["onclick=", "onload=", "onsubmit=", "onerror=", "onchange="] {
            assert!(!b.index.contains(handler), "{handler}");
        }
    }

    #[test]
    fn the_page_stays_within_its_weight_budget() {
        // ARCHITECTURE §5: HTML + JS + CSS ≤ 300 KB uncompressed.
        assert!(page_weight() <= 300 * 1024, "{} bytes", page_weight());
    }
}
