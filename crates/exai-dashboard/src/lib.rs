//! The daemon's web dashboard: one page at `/` and its JSON API under `/ui/api`, live data by
//! server push at `/ui/events`, the assets compiled into the binary (no CDN, no build step).
//!
//! The binary mounts [`router`] into `exai daemon`, behind the same guard as `/mcp`: Host and
//! Origin checks, and a sign-in when tokens are configured (exai-server's `http::signin`, which
//! also demands the CSRF value on every change). Each page has a module here for its API and a
//! script under `assets/pages/`; `events` is the push channel all pages share.

mod activity;
mod assets;
mod context;
mod conversations;
mod error;
mod events;
mod kb;
mod logs;
mod maintenance;
mod overview;
#[cfg(test)]
mod test_support;
mod validation;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use exai_server::AppState;

pub use context::{Ctx, Dashboard};
pub use error::{ApiError, ApiResult};

/// The dashboard's routes, for [`exai_server::daemon::run`]'s mount.
pub fn router(state: Arc<AppState>) -> Router {
    api(Arc::new(Dashboard::new(state)))
}

/// The routes over a given context (tests reach into it).
fn api(ctx: Ctx) -> Router {
    let api = Router::new()
        .merge(overview::routes())
        .nest("/activity", activity::routes())
        .nest("/kb", kb::routes())
        .nest("/conversations", conversations::routes())
        .nest("/validation", validation::routes())
        .nest("/logs", logs::routes())
        .nest("/maintenance", maintenance::routes())
        .fallback(|| async { ApiError::not_found("no such dashboard API; see the page at /") });
    Router::new()
        .route("/", get(assets::index))
        .route("/ui/assets/{*file}", get(assets::file))
        .route("/ui/events", get(events::stream))
        .nest("/ui/api", api)
        .with_state(ctx)
}
