//! The optional second listener (`metrics_listen`): `GET /metrics` only,
//! without authentication, for a Prometheus scraper on an address the API's
//! clients cannot reach. Everything else on it answers 404. Its
//! connections have the header-read timeout of the API's and are at most
//! [`METRICS_CONNECTIONS`] at once (within the descriptors kept in reserve,
//! `crate::net::FD_RESERVE`).

use anyhow::Context;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::task::AbortOnDropHandle;

use crate::net::Listening;
use crate::state::AppState;

/// Connections the metrics listener serves at once.
pub const METRICS_CONNECTIONS: usize = 16;

async fn metrics(State(handle): State<PrometheusHandle>) -> Response {
    crate::handlers::render_metrics(&handle)
}

/// Binds `metrics_listen` when it is set and serves it until the returned
/// handle is dropped; `None` when it is not set.
pub async fn spawn(state: &AppState) -> anyhow::Result<Option<AbortOnDropHandle<()>>> {
    let Some(addr) = state.config.metrics_listen else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding metrics_listen {addr}"))?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .fallback(crate::handlers::not_found_fallback)
        .with_state(state.metrics.clone());
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics");
    let listening = Listening::over(listener, None, METRICS_CONNECTIONS, &state.config);
    Ok(Some(AbortOnDropHandle::new(tokio::spawn(async move {
        if let Err(e) = listening.serve(app, std::future::pending()).await {
            tracing::error!(error = %e, "metrics listener failed");
        }
    }))))
}
