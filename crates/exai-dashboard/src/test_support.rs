//! What the API tests share: a dashboard over a fresh data directory, and requests to it.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use exai_core::config::{Inputs, Loaded, load};
use exai_server::{AppState, Transport};
use serde_json::Value;
use tower::ServiceExt;

use crate::context::{Ctx, Dashboard};

pub(crate) struct App {
    pub dir: tempfile::TempDir,
    pub ctx: Ctx,
}

pub(crate) fn loaded_for(home: &Path) -> Loaded {
    load(&Inputs {
        env: vec![("EXAI_HOME".into(), home.display().to_string())],
        ..Default::default()
    })
    .unwrap()
}

impl App {
    pub fn new() -> App {
        let dir = tempfile::tempdir().unwrap();
        let loaded = loaded_for(dir.path());
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        let state = AppState::new(loaded, Transport::Http, None);
        App {
            dir,
            ctx: Arc::new(Dashboard::new(state)),
        }
    }

    pub fn home(&self) -> &Path {
        self.dir.path()
    }

    /// `method` `uri` (under `/ui/api`) with an optional JSON body: the status and the JSON.
    pub async fn call(&self, method: &str, uri: &str, body: Option<&str>) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(format!("/ui/api{uri}"))
            .header("content-type", "application/json")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        let response = crate::api(self.ctx.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, json)
    }

    pub async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.call("GET", uri, None).await
    }

    pub async fn post(&self, uri: &str, body: &str) -> (StatusCode, Value) {
        self.call("POST", uri, Some(body)).await
    }
}
