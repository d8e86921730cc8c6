//! `GET /ui/api/overview`: the daemon at a glance — the checks of `exai health`, the daemon's own
//! health report (uptime, version, the timeout hierarchy, the embedding back end, connections
//! and sessions), each provider's counters and latest failure, and the newest resource sample
//! with the thresholds it is judged by.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use exai_ops::health::Report;
use exai_server::health::HealthReport;
use serde::Serialize;

use crate::context::Ctx;
use crate::error::ApiResult;
use crate::events::{Stats, stats};

/// The checks of `exai health` read databases and disks: reused for this long.
const CHECKS_FRESH: Duration = Duration::from_secs(15);

pub(crate) fn routes() -> Router<Ctx> {
    Router::new().route("/overview", get(overview))
}

#[derive(Serialize)]
struct Thresholds {
    disk_warn_percent: f64,
    memory_warn_percent: f64,
    memory_review_percent: f64,
}

#[derive(Serialize)]
struct Overview {
    health: HealthReport,
    checks: Report,
    /// Configured providers with their counters; empty until the AI tools are first used.
    providers: Vec<exai_llm::metrics::ProviderSummary>,
    /// Whether the AI tools have started (providers are counted from then on).
    ai_started: bool,
    resources: Option<exai_ops::resources::Sample>,
    thresholds: Thresholds,
    stats: Stats,
}

async fn overview(State(ctx): State<Ctx>) -> ApiResult<serde_json::Value> {
    let state = &ctx.state;
    let tools = exai_server::ExaiServer::new(state.clone()).tool_names();
    let health = HealthReport::collect(state, tools);
    let checks = checks(&ctx).await?;
    let ai = state.ai_started();
    let config = state.config();
    let ops = &config.config.ops;
    let overview = Overview {
        health,
        checks,
        providers: ai
            .as_ref()
            .map(|ai| ai.gateway.provider_summaries())
            .unwrap_or_default(),
        ai_started: ai.is_some(),
        resources: state.metrics.resources.get(),
        thresholds: Thresholds {
            disk_warn_percent: ops.disk_warn_percent,
            memory_warn_percent: ops.memory_warn_percent,
            memory_review_percent: ops.memory_review_percent,
        },
        stats: stats(&ctx),
    };
    Ok(Json(serde_json::to_value(overview).map_err(|e| {
        crate::ApiError::internal(format!("could not encode the overview: {e}"))
    })?))
}

async fn checks(ctx: &Ctx) -> Result<Report, crate::ApiError> {
    let mut cached = ctx.checks.lock().await;
    if let Some((at, report)) = cached.as_ref()
        && at.elapsed() < CHECKS_FRESH
    {
        return Ok(report.clone());
    }
    let loaded = ctx.state.config();
    let handle = tokio::runtime::Handle::current();
    // Some checks block (SQLite, the file system): off the event loop.
    let report =
        tokio::task::spawn_blocking(move || handle.block_on(exai_ops::health::run(&loaded, false)))
            .await?;
    *cached = Some((Instant::now(), report.clone()));
    Ok(report)
}
