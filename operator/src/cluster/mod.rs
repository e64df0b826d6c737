//! The `AutoMQCluster` controller.
//!
//! Each reconcile: validate the spec; apply the ServiceAccount, ConfigMap, Services and
//! PodDisruptionBudget; choose the size (`spec.replicas` or the autoscaler's); ask the
//! brokers for the cluster state; drain before scaling in (`scale::plan`); apply the
//! StatefulSet; write status from the brokers' own view. Deletion waits for the brokers to
//! stop (each hands off and uploads its WAL on SIGTERM) before the children are collected.

pub mod autoscaler;
pub mod resources;
pub mod rolling;
pub mod scale;

use std::sync::Arc;
use std::time::Duration;

use automq_crds::cluster::{AutoMQClusterStatus, BrokerStatus, WalKind};
use automq_crds::AutoMQCluster;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use tracing::{info, instrument, warn};

use crate::admin::ClusterState;
use crate::apply::{apply, apply_over};
use crate::status::Health;
use crate::{with_finalizer, Context, Error, Result, FIELD_MANAGER};

pub const KIND: &str = "AutoMQCluster";
/// Deletion waits for the brokers to shut down cleanly.
pub const FINALIZER: &str = "automq.rs/broker-shutdown";

#[instrument(skip(cluster, ctx), fields(namespace = cluster.namespace(), name = cluster.name_any()))]
pub async fn reconcile(cluster: Arc<AutoMQCluster>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(KIND);
    let namespace = cluster.namespace().ok_or_else(|| Error::NoNamespace(cluster.name_any()))?;
    let api: Api<AutoMQCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let (apply_ctx, cleanup_ctx) = (ctx.clone(), ctx.clone());
    with_finalizer(&api, FINALIZER, cluster, |c| reconcile_apply(c, apply_ctx), |c| cleanup(c, cleanup_ctx)).await
}

pub fn error_policy(cluster: Arc<AutoMQCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    if !matches!(error, Error::Waiting(_)) {
        warn!(name = cluster.name_any(), %error, "reconcile failed");
        ctx.metrics.failure(KIND, error);
    }
    Action::requeue(crate::requeue_after(error))
}

/// What the spec asks for that the schema cannot check (or that an API server without CEL
/// support would let through).
pub fn validate(cluster: &AutoMQCluster) -> Result<ConfigMap, String> {
    let spec = &cluster.spec;
    match (spec.wal.kind, &spec.wal.volume) {
        (WalKind::File, None) => return Err("wal.volume is required with kind File".into()),
        (WalKind::S3, Some(_)) => return Err("wal.volume is not allowed with kind S3".into()),
        _ => {}
    }
    if let Some(a) = &spec.autoscaling {
        if a.min_replicas > a.max_replicas {
            return Err(format!("autoscaling.minReplicas {} exceeds maxReplicas {}", a.min_replicas, a.max_replicas));
        }
        if a.target_bytes_in_per_broker.is_none() && a.target_cpu_utilization.is_none() {
            return Err("autoscaling needs targetBytesInPerBroker or targetCpuUtilization".into());
        }
        let cpu_request = spec.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("cpu"));
        if a.target_cpu_utilization.is_some() && cpu_request.is_none() {
            return Err(
                "autoscaling.targetCpuUtilization needs resources.requests.cpu (utilization is of the request)".into(),
            );
        }
        if let Some(q) = &a.target_bytes_in_per_broker {
            if scale::quantity_bytes(q).is_none_or(|b| b <= 0.0) {
                return Err(format!("autoscaling.targetBytesInPerBroker {:?} is not a positive quantity", q.0));
            }
        }
    }
    let storage = &spec.object_storage;
    if storage.credentials.is_some() && storage.workload_identity.is_some() {
        return Err("objectStorage: set at most one of credentials and workloadIdentity".into());
    }
    crate::pods::check_env_overrides(spec.pod_template.as_ref())?;
    resources::config_map(cluster)
}

async fn reconcile_apply(cluster: Arc<AutoMQCluster>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = cluster.namespace().unwrap_or_default();
    let name = cluster.name_any();
    let status = cluster.status.clone().unwrap_or_default();

    let config = match validate(&cluster) {
        Ok(config) => config,
        Err(message) => {
            let health = Health::invalid(&message);
            write_status(&cluster, &ctx, AutoMQClusterStatus { ..status.clone() }, &health, Some(&message)).await?;
            return Ok(Action::await_change());
        }
    };

    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let live = sts_api.get_opt(&resources::broker_name(&cluster)).await?;
    let current = live.as_ref().and_then(|s| s.spec.as_ref()).and_then(|s| s.replicas);
    // The WAL of running brokers cannot change (the schema refuses it too; this catches API
    // servers without CEL): checked before anything is applied, so no broker restarts with a
    // WAL setting its volumes do not match.
    if let Some(live) = &live {
        let has_volume =
            live.spec.as_ref().and_then(|s| s.volume_claim_templates.as_ref()).is_some_and(|v| !v.is_empty());
        if has_volume != (cluster.spec.wal.kind == WalKind::File) {
            let message =
                "wal cannot change on a running cluster: create a new cluster (or move topics with a TopicLink)";
            write_status(&cluster, &ctx, status.clone(), &Health::invalid(message), Some(message)).await?;
            return Ok(Action::await_change());
        }
    }

    let children = async {
        apply(&ctx.client, &resources::service_account(&cluster)).await.map_err(|e| ("ServiceAccount", e))?;
        apply(&ctx.client, &config).await.map_err(|e| ("ConfigMap", e))?;
        apply(&ctx.client, &resources::headless_service(&cluster)).await.map_err(|e| ("Service", e))?;
        apply(&ctx.client, &resources::bootstrap_service(&cluster)).await.map_err(|e| ("Service", e))?;
        apply(&ctx.client, &resources::pod_disruption_budget(&cluster))
            .await
            .map_err(|e| ("PodDisruptionBudget", e))?;
        Ok::<_, (&str, Error)>(())
    };
    if let Err((kind, e)) = children.await {
        return child_failed(&cluster, &ctx, status, kind, e).await;
    }

    let http_port = cluster.spec.listeners.clone().unwrap_or_default().http_port();
    let admin = ctx.admin(ctx.endpoints.cluster_admin(&namespace, &name, http_port));
    // No brokers, no one to ask.
    let state: Option<ClusterState> = if current.unwrap_or(0) > 0 {
        match admin.cluster().await {
            Ok(state) => Some(state),
            Err(e) => {
                info!(error = %e, "cluster state unavailable");
                None
            }
        }
    } else {
        None
    };

    let (target, autoscaler) = match &cluster.spec.autoscaling {
        Some(policy) => {
            let (decision, report) = autoscaler::decide(&cluster, policy, &status, &ctx, current).await;
            (decision, Some(report))
        }
        None => (cluster.spec.replicas, None),
    };

    let mut plan = scale::plan(current, target, state.as_ref(), status.draining.as_deref().unwrap_or_default());
    if !plan.drain.is_empty() {
        for id in &plan.drain {
            admin.set_drain(*id, true).await?;
        }
        let ids: Vec<String> = plan.drain.iter().map(|id| id.to_string()).collect();
        ctx.event(
            &*cluster,
            false,
            "DrainingBrokers",
            format!("draining broker {} before scaling in to {target}", ids.join(", ")),
        )
        .await;
    }
    if let Some(current) = current {
        if plan.replicas != current {
            let up = plan.replicas > current;
            ctx.metrics.scaled(KIND, up);
            ctx.event(&*cluster, false, "Scaled", format!("brokers {current} -> {}", plan.replicas)).await;
        }
    }

    let sts = resources::stateful_set(&cluster, plan.replicas, &config)?;
    let sts = match apply_over(&ctx.client, &sts, live.as_ref()).await {
        Ok(sts) => sts,
        Err(e) => return child_failed(&cluster, &ctx, status, "StatefulSet", e).await,
    };
    // After the StatefulSet grew: coming back from zero, no broker answered before it did.
    // A drain that cannot be cancelled yet stays recorded and is retried next time.
    for id in std::mem::take(&mut plan.undrain) {
        if let Err(e) = admin.set_drain(id, false).await {
            info!(node_id = id, error = %e, "cannot cancel the drain yet");
            plan.draining.push(id);
        }
    }
    plan.draining.sort_unstable();

    // A changed pod template rolls the brokers one at a time, each drained first; not while
    // the cluster is being resized.
    let scaling = plan.waiting.is_some() || plan.replicas != target;
    let rollout = if scaling {
        rolling::Rollout { rolling: status.rolling.clone(), updated: 0, total: plan.replicas }
    } else {
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
        let selector = resources::selector_string(&cluster);
        let rollout = rolling::step(&sts, &pods, &selector, &admin, state.as_ref(), status.rolling.as_ref()).await?;
        if rollout.rolling.as_ref().map(|r| (r.node_id, r.phase.as_str()))
            != status.rolling.as_ref().map(|r| (r.node_id, r.phase.as_str()))
        {
            if let Some(r) = &rollout.rolling {
                ctx.event(
                    &*cluster,
                    false,
                    "RollingRestart",
                    format!("broker {}: {}", r.node_id, r.phase.to_lowercase()),
                )
                .await;
            }
        }
        rollout
    };

    let (mut health, new_status) = summarize(&cluster, &sts, state.as_ref(), target, &plan, status.clone());
    if let Some(r) = &rollout.rolling {
        health = Health::progressing(
            "RollingRestart",
            format!(
                "{} broker {} ({}/{} on the new template)",
                r.phase.to_lowercase(),
                r.node_id,
                rollout.updated,
                rollout.total
            ),
        );
    }
    let new_status = AutoMQClusterStatus { autoscaler, rolling: rollout.rolling.clone(), ..new_status };
    let settled = health.is_ready() && plan.waiting.is_none();
    write_status(&cluster, &ctx, new_status, &health, None).await?;
    Ok(match (settled, cluster.spec.autoscaling.is_some()) {
        (false, _) => Action::requeue(Duration::from_secs(2)),
        (true, true) => Action::requeue(autoscaler::INTERVAL),
        (true, false) => Action::requeue(Duration::from_secs(300)),
    })
}

/// Status and health from the StatefulSet and the brokers' view.
fn summarize(
    cluster: &AutoMQCluster,
    sts: &StatefulSet,
    state: Option<&ClusterState>,
    target: i32,
    plan: &scale::ScalePlan,
    status: AutoMQClusterStatus,
) -> (Health, AutoMQClusterStatus) {
    let generation = cluster.metadata.generation;
    let sts_status = sts.status.clone().unwrap_or_default();
    let listeners = cluster.spec.listeners.clone().unwrap_or_default();
    let brokers: Vec<BrokerStatus> = state
        .map(|s| {
            s.brokers
                .iter()
                .filter(|b| b.node_id < plan.replicas)
                .map(|b| BrokerStatus {
                    node_id: b.node_id,
                    ready: b.ready,
                    draining: b.draining,
                    partitions: b.assigned as i32,
                })
                .collect()
        })
        .unwrap_or_default();
    let ready = brokers.iter().filter(|b| b.ready && b.node_id < target).count() as i32;
    let rolled_out = sts_status.observed_generation >= sts.metadata.generation
        && sts_status.updated_replicas.unwrap_or(0) == sts_status.replicas
        && sts_status.replicas == plan.replicas;
    let health = if let Some(waiting) = &plan.waiting {
        Health::progressing("ScalingIn", waiting.clone())
    } else if ready < target {
        let reason = if sts_status.replicas < target { "ScalingOut" } else { "Starting" };
        Health::progressing(reason, format!("{ready}/{target} brokers ready"))
    } else if !rolled_out {
        Health::progressing(
            "RollingUpdate",
            format!("{}/{} pods updated", sts_status.updated_replicas.unwrap_or(0), plan.replicas),
        )
    } else {
        Health::ready("AllBrokersReady", format!("{ready}/{target} brokers ready"))
    };
    let new_status = AutoMQClusterStatus {
        observed_generation: generation,
        replicas: sts_status.replicas,
        ready_replicas: ready,
        target_replicas: Some(target),
        selector: Some(resources::selector_string(cluster)),
        bootstrap_servers: Some(format!(
            "{}.{}.svc:{}",
            resources::bootstrap_name(cluster),
            cluster.namespace().unwrap_or_default(),
            listeners.kafka_port()
        )),
        controller: state.and_then(|s| s.controller.as_ref()).map(|c| c.node_id),
        draining: (!plan.draining.is_empty()).then(|| plan.draining.clone()),
        rolling: None,
        // Only what the brokers said now: without an answer, nothing is known.
        brokers: (!brokers.is_empty()).then_some(brokers),
        autoscaler: None,
        conditions: status.conditions,
    };
    (health, new_status)
}

async fn child_failed(
    cluster: &AutoMQCluster,
    ctx: &Context,
    status: AutoMQClusterStatus,
    kind: &str,
    error: Error,
) -> Result<Action> {
    let message = format!("applying the {kind} failed: {error}");
    write_status(cluster, ctx, status, &Health::failed("ApplyFailed", &message), Some(&message)).await?;
    Err(error)
}

async fn write_status(
    cluster: &AutoMQCluster,
    ctx: &Context,
    status: AutoMQClusterStatus,
    health: &Health,
    warning: Option<&str>,
) -> Result<()> {
    let previous = cluster.status.clone().unwrap_or_default();
    crate::status::write(cluster, ctx, &previous, status, health, warning).await
}

/// Deletion: stop every broker (each hands off and uploads its WAL on SIGTERM), then let the
/// finalizer go and the garbage collector take the children.
async fn cleanup(cluster: Arc<AutoMQCluster>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = cluster.namespace().unwrap_or_default();
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let name = resources::broker_name(&cluster);
    if let Some(sts) = sts_api.get_opt(&name).await? {
        if sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0) > 0 {
            let patch = serde_json::json!({"spec": {"replicas": 0}});
            let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() };
            sts_api.patch(&name, &params, &Patch::Merge(&patch)).await?;
            ctx.event(&*cluster, false, "ShuttingDown", "stopping every broker before deletion".into()).await;
        }
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let selector = resources::selector_string(&cluster);
    let left = pods.list(&ListParams::default().labels(&selector)).await?.items.len();
    if left > 0 {
        return Err(Error::Waiting(format!("{left} broker pods still stopping")));
    }
    Ok(Action::await_change())
}
