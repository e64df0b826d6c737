//! The HTTP side port: `/metrics` (Prometheus text format), `/healthz` (the process runs),
//! `/readyz` (the broker serves: storage accepts writes, it is registered in the cluster and
//! leads what it is assigned), the brokers' internal API (`/internal/v1/...`, see
//! [`crate::cluster::rpc`]) and the admin API (`/admin/v1/...`, see `docs/admin-api.md`).

use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::broker::Broker;
use crate::cluster::Cluster;

/// What the HTTP handlers reach: the cluster from the start (peers forward metadata to a
/// broker still opening its storage), the broker once it is up.
#[derive(Debug, Clone)]
pub struct HttpState {
    pub cluster: Arc<Cluster>,
    pub registry: Arc<Mutex<Registry>>,
    pub broker: Arc<OnceLock<Arc<Broker>>>,
}

impl HttpState {
    /// The broker, or 503 while it is starting.
    pub fn broker(&self) -> Result<Arc<Broker>, Box<Response>> {
        self.broker
            .get()
            .cloned()
            .ok_or_else(|| Box::new((StatusCode::SERVICE_UNAVAILABLE, "the broker is starting\n").into_response()))
    }
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .merge(crate::cluster::rpc::routes())
        .merge(crate::cluster::admin::routes())
        .merge(crate::link::admin::routes())
        .with_state(state)
}

/// Serves the HTTP listener until `stop`.
pub fn serve(
    listener: TcpListener,
    cluster: Arc<Cluster>,
    registry: Arc<Mutex<Registry>>,
    broker: Arc<OnceLock<Arc<Broker>>>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let app = router(HttpState { cluster, registry, broker });
    tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stop.changed().await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "HTTP listener failed");
        }
    })
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    automq_common::metrics_response(&state.registry.lock())
}

async fn ready(State(state): State<HttpState>) -> Response {
    let broker = match state.broker() {
        Ok(b) => b,
        Err(r) => return *r,
    };
    match broker.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}
