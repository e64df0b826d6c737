//! The `AnalyticsWarehouse` controller: query nodes as a StatefulSet (stable node ids, no
//! volumes but a cache emptyDir), a MySQL Service, and an HPA when autoscaling is asked for.
//! Readiness comes from each query node's own `/readyz`.

pub mod resources;

use std::sync::Arc;
use std::time::Duration;

use automq_crds::warehouse::AnalyticsWarehouseStatus;
use automq_crds::{AnalyticsWarehouse, AutoMQCluster};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use tracing::{instrument, warn};

use crate::apply::{apply, apply_over};
use crate::status::Health;
use crate::{with_finalizer, Context, Error, Result, FIELD_MANAGER};

pub const KIND: &str = "AnalyticsWarehouse";
/// Deletion waits for the query nodes to stop (in-flight loads commit or roll back).
pub const FINALIZER: &str = "automq.rs/query-node-shutdown";

#[instrument(skip(warehouse, ctx), fields(namespace = warehouse.namespace(), name = warehouse.name_any()))]
pub async fn reconcile(warehouse: Arc<AnalyticsWarehouse>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(KIND);
    let namespace = warehouse.namespace().ok_or_else(|| Error::NoNamespace(warehouse.name_any()))?;
    let api: Api<AnalyticsWarehouse> = Api::namespaced(ctx.client.clone(), &namespace);
    let (apply_ctx, cleanup_ctx) = (ctx.clone(), ctx.clone());
    with_finalizer(&api, FINALIZER, warehouse, |w| reconcile_apply(w, apply_ctx), |w| cleanup(w, cleanup_ctx)).await
}

pub fn error_policy(warehouse: Arc<AnalyticsWarehouse>, error: &Error, ctx: Arc<Context>) -> Action {
    if !matches!(error, Error::Waiting(_)) {
        warn!(name = warehouse.name_any(), %error, "reconcile failed");
        ctx.metrics.failure(KIND, error);
    }
    Action::requeue(crate::requeue_after(error))
}

/// The referenced cluster's bootstrap address (`None` without a reference; the default port
/// when the cluster does not exist yet, so the warehouse need not wait for it). With named
/// listeners, the first PLAINTEXT one: the default list comes with no credentials.
async fn kafka_bootstrap(w: &AnalyticsWarehouse, ctx: &Context) -> Result<Option<String>> {
    let Some(reference) = &w.spec.kafka_cluster_ref else { return Ok(None) };
    let namespace = w.namespace().unwrap_or_default();
    let clusters: Api<AutoMQCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let cluster = clusters.get_opt(&reference.name).await?;
    let port = crate::cluster::listeners::routine_load_port(cluster.as_ref().and_then(|c| c.spec.listeners.as_ref()));
    Ok(Some(format!("{}-bootstrap.{namespace}.svc:{port}", reference.name)))
}

async fn reconcile_apply(w: Arc<AnalyticsWarehouse>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = w.namespace().unwrap_or_default();
    let status = w.status.clone().unwrap_or_default();
    let invalid = |message: String| {
        let status = status.clone();
        let (w, ctx) = (w.clone(), ctx.clone());
        async move {
            write_status(&w, &ctx, status, &Health::invalid(&message), Some(&message)).await?;
            Ok::<_, Error>(Action::await_change())
        }
    };
    let storage = &w.spec.object_storage;
    if storage.credentials.is_some() && storage.workload_identity.is_some() {
        return invalid("objectStorage: set at most one of credentials and workloadIdentity".into()).await;
    }
    if let Err(message) = crate::pods::check_env_overrides(w.spec.pod_template.as_ref()) {
        return invalid(message).await;
    }
    if let Err(message) = crate::security::validate_warehouse(&w.spec) {
        return invalid(message).await;
    }
    if let Some(a) = &w.spec.autoscaling {
        if a.min_replicas > a.max_replicas {
            return invalid(format!(
                "autoscaling.minReplicas {} exceeds maxReplicas {}",
                a.min_replicas, a.max_replicas
            ))
            .await;
        }
    }
    let config = match resources::config_map(&w, kafka_bootstrap(&w, &ctx).await?) {
        Ok(config) => config,
        Err(message) => return invalid(message).await,
    };
    // The query nodes' certificate and passwords: without them a new pod would not start, so
    // nothing changes (no rolling update) until they exist; checked again in 30 s.
    let uses = crate::security::warehouse_secrets(w.spec.security.as_ref());
    if let Some(message) = crate::security::missing_secrets(&ctx.client, &namespace, &uses).await? {
        write_status(&w, &ctx, status, &Health::failed("SecretNotFound", &message), Some(&message)).await?;
        return Ok(Action::requeue(crate::cluster::SECRET_RECHECK));
    }

    let children = async {
        apply(&ctx.client, &resources::service_account(&w)).await.map_err(|e| ("ServiceAccount", e))?;
        apply(&ctx.client, &config).await.map_err(|e| ("ConfigMap", e))?;
        apply(&ctx.client, &resources::headless_service(&w)).await.map_err(|e| ("Service", e))?;
        apply(&ctx.client, &resources::mysql_service(&w)).await.map_err(|e| ("Service", e))?;
        apply(&ctx.client, &resources::pod_disruption_budget(&w)).await.map_err(|e| ("PodDisruptionBudget", e))?;
        let hpa_api: Api<HorizontalPodAutoscaler> = Api::namespaced(ctx.client.clone(), &namespace);
        match resources::horizontal_pod_autoscaler(&w) {
            Some(hpa) => {
                apply(&ctx.client, &hpa).await.map_err(|e| ("HorizontalPodAutoscaler", e))?;
            }
            None => {
                let name = resources::query_name(&w);
                let live = hpa_api.get_opt(&name).await.map_err(|e| ("HorizontalPodAutoscaler", e.into()))?;
                if live.is_some() {
                    hpa_api
                        .delete(&name, &DeleteParams::default())
                        .await
                        .map_err(|e| ("HorizontalPodAutoscaler", e.into()))?;
                }
            }
        }
        let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
        let live = sts_api.get_opt(&resources::query_name(&w)).await.map_err(|e| ("StatefulSet", e.into()))?;
        let sts = resources::stateful_set(&w, &config).map_err(|e| ("StatefulSet", e))?;
        if let Some(before) = live.as_ref().and_then(|s| s.spec.as_ref()).and_then(|s| s.replicas) {
            if before != w.spec.replicas {
                ctx.metrics.scaled(KIND, w.spec.replicas > before);
                ctx.event(&*w, false, "Scaled", format!("query nodes {before} -> {}", w.spec.replicas)).await;
            }
        }
        apply_over(&ctx.client, &sts, live.as_ref()).await.map_err(|e| ("StatefulSet", e))
    };
    let sts = match children.await {
        Ok(sts) => sts,
        Err((kind, e)) => {
            let message = format!("applying the {kind} failed: {e}");
            write_status(&w, &ctx, status, &Health::failed("ApplyFailed", &message), Some(&message)).await?;
            return Err(e);
        }
    };

    let ready = ready_query_nodes(&w, &ctx).await?;
    let target = w.spec.replicas;
    let sts_status = sts.status.clone().unwrap_or_default();
    let rolled_out = sts_status.observed_generation >= sts.metadata.generation
        && sts_status.updated_replicas.unwrap_or(0) == sts_status.replicas
        && sts_status.replicas == target;
    let health = if ready < target {
        Health::progressing("Starting", format!("{ready}/{target} query nodes ready"))
    } else if !rolled_out {
        Health::progressing(
            "RollingUpdate",
            format!("{}/{target} pods updated", sts_status.updated_replicas.unwrap_or(0)),
        )
    } else {
        Health::ready("AllQueryNodesReady", format!("{ready}/{target} query nodes ready"))
    };
    let new_status = AnalyticsWarehouseStatus {
        observed_generation: w.metadata.generation,
        replicas: sts_status.replicas,
        ready_replicas: ready,
        selector: Some(resources::selector_string(&w)),
        mysql_endpoint: Some(format!("{}.{namespace}.svc:{}", resources::mysql_name(&w), w.spec.mysql_port())),
        conditions: status.conditions.clone(),
    };
    let settled = health.is_ready();
    write_status(&w, &ctx, new_status, &health, None).await?;
    Ok(Action::requeue(if settled { Duration::from_secs(300) } else { Duration::from_secs(2) }))
}

/// Query nodes whose `/readyz` answers 200.
async fn ready_query_nodes(w: &AnalyticsWarehouse, ctx: &Context) -> Result<i32> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &w.namespace().unwrap_or_default());
    let list = pods.list(&ListParams::default().labels(&resources::selector_string(w))).await?;
    let mut ready = 0;
    for pod in &list.items {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(base) = ctx.endpoints.pod(pod, resources::HTTP_PORT) else { continue };
        if ctx.admin(base).ready().await.unwrap_or(false) {
            ready += 1;
        }
    }
    Ok(ready)
}

async fn write_status(
    w: &AnalyticsWarehouse,
    ctx: &Context,
    status: AnalyticsWarehouseStatus,
    health: &Health,
    warning: Option<&str>,
) -> Result<()> {
    let previous = w.status.clone().unwrap_or_default();
    crate::status::write(w, ctx, &previous, status, health, warning).await
}

async fn cleanup(w: Arc<AnalyticsWarehouse>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = w.namespace().unwrap_or_default();
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let name = resources::query_name(&w);
    if let Some(sts) = sts_api.get_opt(&name).await? {
        if sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0) > 0 {
            let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() };
            sts_api.patch(&name, &params, &Patch::Merge(serde_json::json!({"spec": {"replicas": 0}}))).await?;
        }
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let left = pods.list(&ListParams::default().labels(&resources::selector_string(&w))).await?.items.len();
    if left > 0 {
        return Err(Error::Waiting(format!("{left} query-node pods still stopping")));
    }
    Ok(Action::await_change())
}
