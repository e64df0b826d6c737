//! `automq-operator`: runs the three controllers (after winning the leader Lease) and serves
//! `/metrics`, `/healthz` and `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;

use automq_crds::{AnalyticsWarehouse, AutoMQCluster, TopicLink};
use automq_operator::leader::LeaderElection;
use automq_operator::metrics::Metrics;
use automq_operator::{cluster, topiclink, warehouse, Context};
use axum::routing::get;
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::runtime::{reflector, watcher, Controller, WatchStreamExt};
use kube::{Api, Client};
use prometheus_client::registry::Registry;
use tracing::{error, info};

#[derive(Parser, Debug)]
#[command(
    name = "automq-operator",
    version,
    about = "Kubernetes operator for AutoMQCluster, AnalyticsWarehouse and TopicLink"
)]
struct Args {
    /// Listener for /metrics, /healthz and /readyz.
    #[arg(long, env = "AUTOMQ_OPERATOR_METRICS_LISTEN", default_value = "0.0.0.0:8080")]
    metrics_listen: SocketAddr,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "AUTOMQ_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// Elect a leader through a Lease, so several replicas can run (only the leader acts).
    #[arg(long, env = "AUTOMQ_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "AUTOMQ_LEASE_NAME", default_value = "automq-operator")]
    lease_name: String,
    /// Namespace of the leader Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// This replica's identity in the Lease (the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Log lines as `text` or `json` (the filter is AUTOMQ_LOG, default `info`).
    #[arg(long, env = "AUTOMQ_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    automq_common::init_tracing_as(args.log_format == "json");
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::new(&mut registry));
    automq_common::register_process_metrics(&mut registry);
    let registry = Arc::new(registry);

    let app = axum::Router::new()
        .route("/metrics", get(move || async move { automq_common::metrics_response(&registry) }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(args.metrics_listen).await?;
    info!(address = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            error!(error = %e, "metrics server stopped");
        }
    });

    // One TLS provider for the API client, whatever else the build links in.
    if rustls::crypto::ring::default_provider().install_default().is_err() {
        tracing::debug!("a TLS provider was already installed");
    }
    let client = Client::try_default().await?;
    let identity = args.identity.clone().unwrap_or_else(|| format!("automq-operator-{}", std::process::id()));
    let election = args
        .leader_election
        .then(|| LeaderElection::new(client.clone(), &args.lease_namespace, &args.lease_name, &identity));
    if let Some(election) = &election {
        info!(lease = args.lease_name, namespace = args.lease_namespace, identity, "waiting for the leader lease");
        tokio::select! {
            _ = election.acquire() => {}
            _ = automq_common::shutdown_signal() => return Ok(()),
        }
    }
    metrics.leader.set(1);

    let ctx = Arc::new(Context::new(client.clone(), metrics.clone(), Some(identity)));
    let ns = args.watch_namespace.as_deref();
    let controllers = run_controllers(client, ns, ctx);
    tokio::select! {
        _ = controllers => info!("controllers stopped"),
        _ = async { match &election { Some(e) => e.hold().await, None => std::future::pending().await } } => {
            metrics.leader.set(0);
            anyhow::bail!("lost the leader lease; exiting so another replica leads");
        }
        _ = automq_common::shutdown_signal() => info!("shutting down"),
    }
    if let Some(election) = &election {
        if let Err(e) = election.release().await {
            tracing::warn!(error = %e, "cannot release the leader lease (it expires on its own)");
        }
    }
    Ok(())
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A controller of `K` triggered by changes of its spec, finalizers or deletion, never by
/// its status: a reconcile writing status must not trigger the next one (the periodic
/// requeues and owned objects' changes bring the rest).
fn controller<K>(client: &Client, ns: Option<&str>) -> Controller<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let trigger = watcher(api::<K>(client, ns), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(automq_operator::spec_or_lifecycle, Default::default());
    Controller::for_stream(trigger, reader)
}

async fn run_controllers(client: Client, ns: Option<&str>, ctx: Arc<Context>) {
    let config = watcher::Config::default();
    let clusters = controller::<AutoMQCluster>(&client, ns)
        .owns(api::<StatefulSet>(&client, ns), config.clone())
        .shutdown_on_signal()
        .run(cluster::reconcile, cluster::error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    let warehouses = controller::<AnalyticsWarehouse>(&client, ns)
        .owns(api::<StatefulSet>(&client, ns), config.clone())
        .shutdown_on_signal()
        .run(warehouse::reconcile, warehouse::error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    let links = controller::<TopicLink>(&client, ns)
        .shutdown_on_signal()
        .run(topiclink::reconcile, topiclink::error_policy, ctx)
        .for_each(|_| futures::future::ready(()));
    futures::join!(clusters, warehouses, links);
}
