//! The HTTP side port: `/metrics` (Prometheus text format), `/healthz` (the process runs) and
//! `/readyz` (storage accepts writes).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::broker::Broker;

pub fn router(broker: Arc<Broker>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(broker)
}

async fn metrics(State(broker): State<Arc<Broker>>) -> impl IntoResponse {
    automq_common::metrics_response(&broker.registry.lock())
}

async fn ready(State(broker): State<Arc<Broker>>) -> impl IntoResponse {
    if broker.engine.is_healthy() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "storage failed; the broker must restart to recover\n".to_string())
    }
}
