//! `/ui/api/logs`.

use axum::Router;

use crate::context::Ctx;

pub(crate) fn routes() -> Router<Ctx> {
    Router::new()
}
