//! Signing in to the daemon's web dashboard (`/` and `/ui/…`).
//!
//! A browser cannot send a bearer token with a page load, so when tokens are configured the
//! dashboard signs in once: `POST /ui/signin` with a token of `server.tokens` or
//! `server.auth_token` answers with a session cookie (HttpOnly, SameSite=Strict, named after the
//! port so two daemons on one host keep apart), standing for that token's principal while the
//! token stays configured. Without tokens (the loopback default) the local user needs no sign-in.
//!
//! Cross-site requests: every request that changes something under `/ui/` must carry
//! `x-exai-csrf`, a value only a page of the dashboard can read (`GET /ui/api/session`); the
//! guard's Origin check and the Strict cookie already stop other sites, and this stops a request
//! that carries neither Origin nor cookie trouble (an old browser, a form post) as well. A
//! request with a bearer token needs no CSRF value: the token is not sent by a browser on its own.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::{Guard, GuardState, Principal, refuse};

/// A signed-in browser stays signed in this long after its last request.
const IDLE: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most; signing in beyond it ends the least recently used.
const MAX_SESSIONS: usize = 256;
/// The header a dashboard page sends with every change.
pub const CSRF_HEADER: &str = "x-exai-csrf";

/// Where a request goes, as far as signing in is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// `/mcp`, `/health`, `/metrics`…: bearer token only.
    Api,
    /// The page, its assets, signing in and the session probe: open to anyone past Host and
    /// Origin (they reveal nothing), with the principal named when the request has one.
    DashboardOpen,
    /// The rest of `/ui/`: bearer token or session cookie, CSRF value on changes.
    Dashboard,
}

impl Area {
    pub fn of(method: &Method, path: &str) -> Area {
        let open = path == "/"
            || path.starts_with("/ui/assets/")
            || path == "/ui/api/session"
            || (path == "/ui/signin" && method == Method::POST);
        if open {
            Area::DashboardOpen
        } else if path.starts_with("/ui/") {
            Area::Dashboard
        } else {
            Area::Api
        }
    }
}

#[derive(Debug)]
struct Session {
    principal: Principal,
    /// The token it signed in with, to end the session when the token is no longer configured.
    token: String,
    csrf: String,
    last_used: Instant,
}

/// The dashboard's signed-in browsers, and the local user's CSRF value when no token is set.
#[derive(Debug)]
pub struct SignIns {
    cookie: String,
    sessions: Mutex<HashMap<String, Session>>,
    local_csrf: String,
}

/// Who a dashboard request is, and the CSRF value its changes must carry (`None`: none needed).
#[derive(Debug, Clone)]
pub struct Visitor {
    pub principal: Principal,
    pub csrf: Option<String>,
    pub signed_in: bool,
}

fn random_secret() -> String {
    // Two v4 UUIDs: 244 random bits from the operating system's generator.
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl SignIns {
    pub fn new(port: u16) -> SignIns {
        SignIns {
            cookie: format!("exai_session_{port}"),
            sessions: Mutex::new(HashMap::new()),
            local_csrf: random_secret(),
        }
    }

    /// The visitor a dashboard request stands for: its bearer token's principal, else its
    /// session cookie's (while the token it signed in with is still configured), else — with no
    /// token configured — the local user.
    pub fn visitor(&self, guard: &Guard, headers: &HeaderMap) -> Option<Visitor> {
        if guard.tokens.is_empty() {
            return Some(Visitor {
                principal: Principal::local(),
                csrf: Some(self.local_csrf.clone()),
                signed_in: false,
            });
        }
        if headers.contains_key(header::AUTHORIZATION) {
            return guard.authenticate(headers).map(|principal| Visitor {
                principal,
                csrf: None,
                signed_in: false,
            });
        }
        let id = self.cookie_value(headers)?;
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let session = sessions.get_mut(id)?;
        let still_valid = session.last_used.elapsed() < IDLE
            && guard
                .tokens
                .iter()
                .any(|(p, t)| *p == session.principal && same(t, &session.token));
        if !still_valid {
            sessions.remove(id);
            return None;
        }
        session.last_used = Instant::now();
        Some(Visitor {
            principal: session.principal.clone(),
            csrf: Some(session.csrf.clone()),
            signed_in: true,
        })
    }

    fn cookie_value<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == self.cookie)
            .map(|(_, value)| value)
    }

    fn open(&self, principal: Principal, token: &str) -> (String, String) {
        let id = random_secret();
        let csrf = random_secret();
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.retain(|_, s| s.last_used.elapsed() < IDLE);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            id.clone(),
            Session {
                principal,
                token: token.to_string(),
                csrf: csrf.clone(),
                last_used: Instant::now(),
            },
        );
        (id, csrf)
    }

    fn close(&self, headers: &HeaderMap) {
        if let Some(id) = self.cookie_value(headers) {
            self.sessions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(id);
        }
    }

    fn set_cookie(&self, id: &str, max_age: u64) -> Option<HeaderValue> {
        HeaderValue::from_str(&format!(
            "{}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}",
            self.cookie
        ))
        .ok()
    }
}

/// Whether a dashboard request may change something: reads always may; a change needs the
/// visitor's CSRF value in [`CSRF_HEADER`] unless it came with a bearer token.
pub fn csrf_ok(visitor: &Visitor, method: &Method, headers: &HeaderMap) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return true;
    }
    match &visitor.csrf {
        None => true,
        Some(expected) => headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|given| same(given, expected)),
    }
}

#[derive(Deserialize)]
pub struct SignInForm {
    token: String,
}

/// `POST /ui/signin {"token": "…"}`: a session cookie for the token's principal.
pub(super) async fn sign_in(
    State(cell): State<std::sync::Arc<GuardState>>,
    request: Request,
) -> Response {
    let guard = cell.current();
    if guard.tokens.is_empty() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "this daemon has no token configured: the dashboard needs no sign-in",
        );
    }
    let peer = super::refusal::peer(&request);
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    // A JSON body cannot be sent across sites without the browser asking first (CORS), which
    // this server never grants.
    if !is_json {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "sign in with a JSON body: {\"token\": \"…\"}",
        );
    }
    let body = match axum::body::to_bytes(request.into_body(), 16 * 1024).await {
        Ok(body) => body,
        Err(_) => return refuse(StatusCode::PAYLOAD_TOO_LARGE, "sign-in body too large"),
    };
    let Ok(form) = serde_json::from_slice::<SignInForm>(&body) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "sign in with a JSON body: {\"token\": \"…\"}",
        );
    };
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&format!("Bearer {}", form.token)) {
        headers.insert(header::AUTHORIZATION, value);
    }
    let Some(principal) = guard.authenticate(&headers) else {
        super::refusal::refused(
            &cell.state.metrics.transport,
            peer,
            crate::metrics::Refusal::Token,
            "wrong token at dashboard sign-in",
        );
        return refuse(
            StatusCode::UNAUTHORIZED,
            "wrong token: use EXAI_AUTH_TOKEN or one of server.tokens",
        );
    };
    let (id, csrf) = cell.signins.open(principal.clone(), &form.token);
    let body = serde_json::json!({
        "principal": principal.name(),
        "csrf": csrf,
        "signed_in": true,
        "token_required": true,
    });
    let mut response = Json(body).into_response();
    if let Some(cookie) = cell.signins.set_cookie(&id, IDLE.as_secs()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// `POST /ui/signout`: ends the session and clears the cookie.
pub(super) async fn sign_out(
    State(cell): State<std::sync::Arc<GuardState>>,
    headers: HeaderMap,
) -> Response {
    cell.signins.close(&headers);
    let mut response = Json(serde_json::json!({ "signed_in": false })).into_response();
    if let Some(cookie) = cell.signins.set_cookie("", 0) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// `GET /ui/api/session`: who the browser is and its CSRF value, or that it must sign in.
pub(super) async fn session(
    State(cell): State<std::sync::Arc<GuardState>>,
    headers: HeaderMap,
) -> Response {
    let guard = cell.current();
    let token_required = !guard.tokens.is_empty();
    let body = match cell.signins.visitor(&guard, &headers) {
        Some(v) => serde_json::json!({
            "principal": v.principal.name(),
            "csrf": v.csrf,
            "signed_in": v.signed_in,
            "token_required": token_required,
        }),
        None => serde_json::json!({
            "principal": null,
            "csrf": null,
            "signed_in": false,
            "token_required": token_required,
        }),
    };
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(tokens: &[(&str, &str)]) -> Guard {
        Guard {
            tokens: tokens
                .iter()
                .map(|(p, t)| (Principal::named(p), t.to_string()))
                .collect(),
            hosts: None,
            origins: vec![],
        }
    }

    fn with_cookie(name: &str, id: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {name}={id}")).unwrap(),
        );
        h
    }

    #[test]
    fn areas() {
        assert_eq!(Area::of(&Method::GET, "/"), Area::DashboardOpen);
        assert_eq!(
            Area::of(&Method::GET, "/ui/assets/app.js"),
            Area::DashboardOpen
        );
        assert_eq!(Area::of(&Method::POST, "/ui/signin"), Area::DashboardOpen);
        assert_eq!(Area::of(&Method::GET, "/ui/signin"), Area::Dashboard);
        assert_eq!(
            Area::of(&Method::GET, "/ui/api/kb/sources"),
            Area::Dashboard
        );
        assert_eq!(Area::of(&Method::POST, "/mcp"), Area::Api);
        assert_eq!(Area::of(&Method::GET, "/metrics"), Area::Api);
        assert_eq!(Area::of(&Method::GET, "/uix"), Area::Api);
    }

    #[test]
    fn no_token_is_the_local_user_with_a_csrf_value() {
        let s = SignIns::new(1);
        let v = s.visitor(&guard(&[]), &HeaderMap::new()).unwrap();
        assert_eq!(v.principal, Principal::local());
        let csrf = v.csrf.clone().unwrap();
        let mut h = HeaderMap::new();
        assert!(!csrf_ok(&v, &Method::POST, &h));
        assert!(csrf_ok(&v, &Method::GET, &h));
        h.insert(CSRF_HEADER, HeaderValue::from_str("wrong").unwrap());
        assert!(!csrf_ok(&v, &Method::DELETE, &h));
        h.insert(CSRF_HEADER, HeaderValue::from_str(&csrf).unwrap());
        assert!(csrf_ok(&v, &Method::DELETE, &h));
    }

    #[test]
    fn cookie_sessions_follow_the_configured_tokens() {
        let s = SignIns::new(8080);
        let g = guard(&[("alice", "tok-a"), ("bob", "tok-b")]);
        assert!(s.visitor(&g, &HeaderMap::new()).is_none());
        assert!(
            s.visitor(&g, &with_cookie("exai_session_8080", "nope"))
                .is_none()
        );
        let (id, csrf) = s.open(Principal::named("alice"), "tok-a");
        let v = s
            .visitor(&g, &with_cookie("exai_session_8080", &id))
            .unwrap();
        assert_eq!(v.principal.name(), "alice");
        assert_eq!(v.csrf.as_deref(), Some(csrf.as_str()));
        assert!(v.signed_in);
        // Another port's cookie is another daemon's.
        assert!(
            s.visitor(&g, &with_cookie("exai_session_8081", &id))
                .is_none()
        );
        // Alice's token removed by a reload: her session ends with it.
        let g2 = guard(&[("bob", "tok-b")]);
        assert!(
            s.visitor(&g2, &with_cookie("exai_session_8080", &id))
                .is_none()
        );
        assert!(
            s.visitor(&g, &with_cookie("exai_session_8080", &id))
                .is_none()
        );
    }

    #[test]
    fn a_bearer_token_needs_no_csrf_value() {
        let s = SignIns::new(1);
        let g = guard(&[("alice", "tok-a")]);
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer tok-a"),
        );
        let v = s.visitor(&g, &h).unwrap();
        assert!(v.csrf.is_none());
        assert!(csrf_ok(&v, &Method::POST, &h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer wrong"),
        );
        assert!(s.visitor(&g, &h).is_none());
    }

    #[test]
    fn sessions_are_capped() {
        let s = SignIns::new(1);
        let first = s.open(Principal::named("a"), "t").0;
        for _ in 0..MAX_SESSIONS {
            s.open(Principal::named("a"), "t");
        }
        let g = guard(&[("a", "t")]);
        assert!(
            s.visitor(&g, &with_cookie("exai_session_1", &first))
                .is_none()
        );
        assert_eq!(s.sessions.lock().unwrap().len(), MAX_SESSIONS);
    }
}
