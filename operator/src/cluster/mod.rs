//! The `AutoMQCluster` controller.
//!
//! Each reconcile: validate the spec; apply the ServiceAccount, ConfigMap, Services and
//! PodDisruptionBudget; choose the size (`spec.replicas` or the autoscaler's); ask the
//! brokers for the cluster state; drain before scaling in (`scale::plan`); apply the
//! StatefulSet; write status from the brokers' own view. Deletion waits for the brokers to
//! stop (each hands off and uploads its WAL on SIGTERM) before the children are collected.

pub mod autoscaler;
pub mod listeners;
pub mod pools;
pub mod resources;
pub mod rolling;
pub mod scale;

use std::sync::Arc;
use std::time::Duration;

use automq_crds::cluster::{AutoMQClusterStatus, AutoscalerStatus, BrokerStatus, PoolStatus, WalKind};
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
/// How soon a missing Secret is looked for again (the operator does not watch Secrets).
pub const SECRET_RECHECK: Duration = Duration::from_secs(30);

#[instrument(skip(cluster, ctx), fields(namespace = cluster.namespace(), name = cluster.name_any()))]
pub async fn reconcile(cluster: Arc<AutoMQCluster>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(KIND);
    let namespace = cluster.namespace().ok_or_else(|| Error::NoNamespace(cluster.name_any()))?;
    let api: Api<AutoMQCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let (apply_ctx, cleanup_ctx) = (ctx.clone(), ctx.clone());
    // Boxed: the reconcile future is large (a step per pool), too large for small task stacks.
    with_finalizer(
        &api,
        FINALIZER,
        cluster,
        |c| Box::pin(reconcile_apply(c, apply_ctx)),
        |c| Box::pin(cleanup(c, cleanup_ctx)),
    )
    .await
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
    for pool in pools::pools(cluster) {
        let Some(a) = &pool.autoscaling else { continue };
        let at = if pool.is_default() { "autoscaling".to_string() } else { format!("pool {}: autoscaling", pool.name) };
        if a.min_replicas > a.max_replicas {
            return Err(format!("{at}.minReplicas {} exceeds maxReplicas {}", a.min_replicas, a.max_replicas));
        }
        if a.target_bytes_in_per_broker.is_none() && a.target_cpu_utilization.is_none() {
            return Err(format!("{at} needs targetBytesInPerBroker or targetCpuUtilization"));
        }
        let cpu_request = pool.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("cpu"));
        if a.target_cpu_utilization.is_some() && cpu_request.is_none() {
            return Err(format!(
                "{at}.targetCpuUtilization needs resources.requests.cpu (utilization is of the request)"
            ));
        }
        if let Some(q) = &a.target_bytes_in_per_broker {
            if scale::quantity_bytes(q).is_none_or(|b| b <= 0.0) {
                return Err(format!("{at}.targetBytesInPerBroker {:?} is not a positive quantity", q.0));
            }
        }
    }
    let storage = &spec.object_storage;
    if storage.credentials.is_some() && storage.workload_identity.is_some() {
        return Err("objectStorage: set at most one of credentials and workloadIdentity".into());
    }
    for pool in spec.pools.iter().flatten() {
        match (pool.wal.kind, &pool.wal.volume) {
            (WalKind::File, None) => return Err(format!("pool {}: wal.volume is required with kind File", pool.name)),
            (WalKind::S3, Some(_)) => {
                return Err(format!("pool {}: wal.volume is not allowed with kind S3", pool.name))
            }
            _ => {}
        }
    }
    pools::validate(cluster)?;
    crate::pods::check_env_overrides(spec.pod_template.as_ref())?;
    listeners::validate(spec)?;
    crate::security::validate_cluster(spec.security.as_ref(), listeners::named(spec))?;
    resources::config_map(cluster)
}

/// One pool's step in a reconcile.
struct PoolRun {
    pool: pools::Pool,
    sts: StatefulSet,
    target: i32,
    plan: scale::ScalePlan,
    autoscaler: Option<AutoscalerStatus>,
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

    // The brokers' certificate and passwords: without them a new broker pod would not start, so
    // nothing changes (no broker restarts) until they exist. Secrets are not watched: checked
    // again in 30 s.
    let uses = crate::security::cluster_secrets(cluster.spec.security.as_ref(), listeners::named(&cluster.spec));
    if let Some(message) = crate::security::missing_secrets(&ctx.client, &namespace, &uses).await? {
        let health = Health::failed("SecretNotFound", &message);
        write_status(&cluster, &ctx, status.clone(), &health, Some(&message)).await?;
        return Ok(Action::requeue(SECRET_RECHECK));
    }

    let all_pools = pools::pools(&cluster);
    let removed = pools::removed(&cluster, &status);
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut live = Vec::with_capacity(all_pools.len());
    for pool in &all_pools {
        live.push(sts_api.get_opt(&pool.sts_name(&cluster)).await?);
    }
    // A pool's WAL cannot change under running brokers (the schema refuses it too; this
    // catches API servers without CEL): checked before anything is applied, so no broker
    // restarts with a WAL setting its volumes do not match.
    for (pool, live) in all_pools.iter().zip(&live) {
        let Some(live) = live else { continue };
        let has_volume =
            live.spec.as_ref().and_then(|s| s.volume_claim_templates.as_ref()).is_some_and(|v| !v.is_empty());
        if has_volume != (pool.wal.kind == WalKind::File) {
            let message = if pool.is_default() {
                "wal cannot change on a running cluster: create a new cluster (or move topics with a TopicLink)".into()
            } else {
                format!("pool {}: wal cannot change on running brokers: add a new pool and move its topics", pool.name)
            };
            write_status(&cluster, &ctx, status.clone(), &Health::invalid(&message), Some(&message)).await?;
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
    let any_brokers =
        !removed.is_empty() || live.iter().flatten().any(|s| s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0) > 0);
    let state: Option<ClusterState> = if any_brokers {
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

    let recorded = status.draining.clone().unwrap_or_default();
    // With more than one pool, a pool going to zero drains first: the others run on.
    let drain_to_zero = all_pools.len() + removed.len() > 1;
    let mut runs: Vec<PoolRun> = Vec::with_capacity(all_pools.len());
    for (pool, live) in all_pools.into_iter().zip(live) {
        let current = live.as_ref().and_then(|s| s.spec.as_ref()).and_then(|s| s.replicas);
        let previous = status.pools.iter().flatten().find(|p| p.name == pool.name).and_then(|p| p.autoscaler.as_ref());
        let previous = if pool.is_default() { status.autoscaler.as_ref() } else { previous };
        let (target, autoscaler) = match &pool.autoscaling {
            Some(policy) => {
                let (decision, report) = autoscaler::decide(&cluster, &pool, policy, previous, &ctx, current).await;
                (decision, Some(report))
            }
            None => (pool.replicas, None),
        };
        let mine: Vec<i32> = recorded.iter().copied().filter(|id| pool.owns(*id)).collect();
        let mut plan = scale::plan(pool.node_id_base, current, target, state.as_ref(), &mine, drain_to_zero);
        let label = if pool.is_default() { String::new() } else { format!("pool {}: ", pool.name) };
        if !plan.drain.is_empty() {
            for id in &plan.drain {
                admin.set_drain(*id, true).await?;
            }
            let ids: Vec<String> = plan.drain.iter().map(|id| id.to_string()).collect();
            let message = format!("{label}draining broker {} before scaling in to {target}", ids.join(", "));
            ctx.event(&*cluster, false, "DrainingBrokers", message).await;
        }
        if let Some(current) = current {
            if plan.replicas != current {
                ctx.metrics.scaled(KIND, plan.replicas > current);
                ctx.event(&*cluster, false, "Scaled", format!("{label}brokers {current} -> {}", plan.replicas)).await;
            }
        }
        let sts = resources::stateful_set(&cluster, &pool, plan.replicas, &config)?;
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
        runs.push(PoolRun { pool, sts, target, plan, autoscaler });
    }

    // Pools gone from the spec: drained, stopped, then their StatefulSets deleted.
    let mut removing = Vec::new();
    for (pool_name, base) in removed {
        let mine: Vec<i32> = recorded.iter().copied().filter(|id| pools::ids(base).contains(id)).collect();
        if let Some(left) =
            remove_pool(&cluster, &ctx, &sts_api, &admin, state.as_ref(), &pool_name, base, &mine).await?
        {
            removing.push(left);
        }
    }

    // A changed pod template rolls the brokers one at a time across all pools, each drained
    // first; not while any pool is being resized.
    let scaling = !removing.is_empty() || runs.iter().any(|r| r.plan.waiting.is_some() || r.plan.replicas != r.target);
    let rollout = if scaling {
        rolling::Rollout { rolling: status.rolling.clone(), updated: 0, total: 0 }
    } else {
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
        let selector = resources::selector_string(&cluster);
        // The step in progress belongs to the pool owning its node id; else the first pool
        // with brokers on an old template starts.
        let in_progress = status.rolling.as_ref().and_then(|r| runs.iter().find(|run| run.pool.owns(r.node_id)));
        let mut rollout = rolling::Rollout { rolling: None, updated: 0, total: 0 };
        for run in in_progress.into_iter().chain(runs.iter()) {
            let current = status.rolling.as_ref().filter(|r| run.pool.owns(r.node_id));
            rollout = rolling::step(&run.sts, run.pool.node_id_base, &pods, &selector, &admin, state.as_ref(), current)
                .await?;
            if rollout.rolling.is_some() || current.is_some() {
                break;
            }
        }
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

    let (mut health, new_status) = summarize(&cluster, &runs, &removing, state.as_ref(), status.clone());
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
    let new_status = AutoMQClusterStatus { rolling: rollout.rolling.clone(), ..new_status };
    let settled = health.is_ready() && runs.iter().all(|r| r.plan.waiting.is_none());
    write_status(&cluster, &ctx, new_status, &health, None).await?;
    let autoscaled = runs.iter().any(|r| r.autoscaler.is_some());
    Ok(match (settled, autoscaled) {
        (false, _) => Action::requeue(Duration::from_secs(2)),
        (true, true) => Action::requeue(autoscaler::INTERVAL),
        (true, false) => Action::requeue(Duration::from_secs(300)),
    })
}

/// A pool removed from the spec, one step: drain its brokers, then stop them (replicas 0),
/// then delete its StatefulSet once no pod is left. Its status entry while that lasts, or
/// `None` once it is gone.
#[allow(clippy::too_many_arguments)]
async fn remove_pool(
    cluster: &AutoMQCluster,
    ctx: &Context,
    sts_api: &Api<StatefulSet>,
    admin: &crate::admin::AdminClient,
    state: Option<&ClusterState>,
    pool: &str,
    base: i32,
    recorded: &[i32],
) -> Result<Option<(PoolStatus, Vec<i32>, Option<String>)>> {
    let name = pools::sts_name(cluster, pool);
    let Some(sts) = sts_api.get_opt(&name).await? else {
        ctx.event(cluster, false, "PoolRemoved", format!("pool {pool}: every broker stopped, StatefulSet gone")).await;
        return Ok(None);
    };
    let current = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let entry = |replicas: i32, ready: i32| PoolStatus {
        name: pool.to_string(),
        replicas,
        ready_replicas: ready,
        target_replicas: 0,
        node_id_base: base,
        phase: "Removing".into(),
        autoscaler: None,
    };
    let ready = state
        .map_or(0, |s| s.brokers.iter().filter(|b| pools::ids(base).contains(&b.node_id) && b.alive).count() as i32);
    if current > 0 {
        let plan = scale::plan(base, Some(current), 0, state, recorded, true);
        for id in &plan.drain {
            admin.set_drain(*id, true).await?;
        }
        if !plan.drain.is_empty() {
            let ids: Vec<String> = plan.drain.iter().map(|id| id.to_string()).collect();
            let message = format!("pool {pool} removed from the spec: draining broker {}", ids.join(", "));
            ctx.event(cluster, false, "DrainingBrokers", message).await;
        }
        if plan.replicas == 0 {
            let patch = serde_json::json!({"spec": {"replicas": 0}});
            let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() };
            sts_api.patch(&name, &params, &Patch::Merge(&patch)).await?;
            ctx.event(cluster, false, "Scaled", format!("pool {pool}: brokers {current} -> 0 (pool removed)")).await;
        }
        let waiting = plan.waiting.unwrap_or_else(|| format!("pool {pool}: stopping its brokers"));
        return Ok(Some((entry(current, ready), plan.draining, Some(waiting))));
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &cluster.namespace().unwrap_or_default());
    let selector = crate::pods::selector_string(&resources::pool_pod_labels(cluster, pool));
    let left = pods.list(&ListParams::default().labels(&selector)).await?.items.len();
    if left > 0 {
        let waiting = format!("pool {pool}: {left} broker pods still stopping");
        return Ok(Some((entry(left as i32, 0), recorded.to_vec(), Some(waiting))));
    }
    sts_api.delete(&name, &Default::default()).await?;
    ctx.event(cluster, false, "PoolRemoved", format!("pool {pool}: brokers drained and stopped")).await;
    Ok(None)
}

/// Which pool's health the cluster's conditions report: the first of the most urgent (brokers
/// missing or being drained, then a pool being removed, then pods on an old template).
fn urgency(health: &Health) -> u8 {
    match health.ready.reason.as_str() {
        _ if health.is_ready() => 0,
        "RollingUpdate" => 1,
        "RemovingPool" => 2,
        _ => 3,
    }
}

/// Status and health from the StatefulSets and the brokers' view.
fn summarize(
    cluster: &AutoMQCluster,
    runs: &[PoolRun],
    removing: &[(PoolStatus, Vec<i32>, Option<String>)],
    state: Option<&ClusterState>,
    status: AutoMQClusterStatus,
) -> (Health, AutoMQClusterStatus) {
    let generation = cluster.metadata.generation;
    let brokers: Vec<BrokerStatus> = state
        .map(|s| {
            s.brokers
                .iter()
                .filter(|b| {
                    runs.iter().any(|r| r.pool.owns(b.node_id) && b.node_id < r.pool.node_id_base + r.plan.replicas)
                })
                .map(|b| BrokerStatus {
                    node_id: b.node_id,
                    ready: b.ready,
                    draining: b.draining,
                    partitions: b.assigned as i32,
                })
                .collect()
        })
        .unwrap_or_default();
    let mut health: Option<Health> = None;
    let mut pool_statuses = Vec::new();
    for run in runs {
        let (pool, target, plan) = (&run.pool, run.target, &run.plan);
        let sts_status = run.sts.status.clone().unwrap_or_default();
        let ready = brokers
            .iter()
            .filter(|b| b.ready && pool.owns(b.node_id) && b.node_id < pool.node_id_base + target)
            .count() as i32;
        let rolled_out = sts_status.observed_generation >= run.sts.metadata.generation
            && sts_status.updated_replicas.unwrap_or(0) == sts_status.replicas
            && sts_status.replicas == plan.replicas;
        let label = if pool.is_default() { String::new() } else { format!("pool {}: ", pool.name) };
        let pool_health = if let Some(waiting) = &plan.waiting {
            Health::progressing("ScalingIn", format!("{label}{waiting}"))
        } else if ready < target {
            let reason = if sts_status.replicas < target { "ScalingOut" } else { "Starting" };
            Health::progressing(reason, format!("{label}{ready}/{target} brokers ready"))
        } else if !rolled_out {
            Health::progressing(
                "RollingUpdate",
                format!("{label}{}/{} pods updated", sts_status.updated_replicas.unwrap_or(0), plan.replicas),
            )
        } else {
            Health::ready("AllBrokersReady", format!("{label}{ready}/{target} brokers ready"))
        };
        if health.as_ref().is_none_or(|h| urgency(&pool_health) > urgency(h)) {
            health = Some(pool_health);
        }
        pool_statuses.push(PoolStatus {
            name: pool.name.clone(),
            replicas: sts_status.replicas,
            ready_replicas: ready,
            target_replicas: target,
            node_id_base: pool.node_id_base,
            phase: "Active".into(),
            autoscaler: if pool.is_default() { None } else { run.autoscaler.clone() },
        });
    }
    for (entry, _, waiting) in removing {
        let removing = Health::progressing("RemovingPool", waiting.clone().unwrap_or_default());
        if health.as_ref().is_none_or(|h| urgency(&removing) > urgency(h)) {
            health = Some(removing);
        }
        pool_statuses.push(entry.clone());
    }
    let total_ready: i32 = pool_statuses.iter().filter(|p| p.phase == "Active").map(|p| p.ready_replicas).sum();
    let total_target: i32 = runs.iter().map(|r| r.target).sum();
    let mut health = health.unwrap_or_else(|| Health::ready("AllBrokersReady", "no brokers"));
    if health.is_ready() && runs.len() > 1 {
        health = Health::ready(
            "AllBrokersReady",
            format!("{total_ready}/{total_target} brokers ready in {} pools", runs.len()),
        );
    }
    let mut draining: Vec<i32> = runs
        .iter()
        .flat_map(|r| r.plan.draining.iter().copied())
        .chain(removing.iter().flat_map(|(_, d, _)| d.iter().copied()))
        .collect();
    draining.sort_unstable();
    draining.dedup();
    let default = &runs[0];
    let default_status = &pool_statuses[0];
    // Clients inside Kubernetes: the bootstrap Service. With named listeners the old pair of
    // fields describes the first listener, and `listeners` every one.
    let bootstrap_host =
        format!("{}.{}.svc", resources::bootstrap_name(cluster), cluster.namespace().unwrap_or_default());
    let (bootstrap_servers, security_protocol, listener_statuses) = match listeners::named(&cluster.spec) {
        Some(named) if !named.is_empty() => {
            let statuses = listeners::statuses(named, &bootstrap_host);
            (statuses[0].bootstrap.clone(), statuses[0].protocol.clone(), Some(statuses))
        }
        _ => {
            let port = cluster.spec.listeners.clone().unwrap_or_default().kafka_port();
            let protocol = crate::security::security_protocol(cluster.spec.security.as_ref());
            (format!("{bootstrap_host}:{port}"), protocol.to_string(), None)
        }
    };
    let new_status = AutoMQClusterStatus {
        observed_generation: generation,
        replicas: default_status.replicas,
        ready_replicas: default_status.ready_replicas,
        target_replicas: Some(default.target),
        selector: Some(crate::pods::selector_string(&resources::pool_pod_labels(cluster, pools::DEFAULT_POOL))),
        bootstrap_servers: Some(bootstrap_servers),
        controller: state.and_then(|s| s.controller.as_ref()).map(|c| c.node_id),
        security_protocol: Some(security_protocol),
        listeners: listener_statuses,
        draining: (!draining.is_empty()).then_some(draining),
        rolling: None,
        // Only what the brokers said now: without an answer, nothing is known.
        brokers: (!brokers.is_empty()).then_some(brokers),
        // Listed only once there is more than one pool (or one is being removed).
        pools: (pool_statuses.len() > 1).then_some(pool_statuses),
        autoscaler: default.autoscaler.clone(),
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
    let status = cluster.status.clone().unwrap_or_default();
    let names = pools::pools(&cluster)
        .iter()
        .map(|p| p.name.clone())
        .chain(pools::removed(&cluster, &status).into_iter().map(|(name, _)| name))
        .collect::<Vec<_>>();
    let mut stopping = false;
    for pool in names {
        let name = pools::sts_name(&cluster, &pool);
        if let Some(sts) = sts_api.get_opt(&name).await? {
            if sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0) > 0 {
                let patch = serde_json::json!({"spec": {"replicas": 0}});
                let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() };
                sts_api.patch(&name, &params, &Patch::Merge(&patch)).await?;
                stopping = true;
            }
        }
    }
    if stopping {
        ctx.event(&*cluster, false, "ShuttingDown", "stopping every broker before deletion".into()).await;
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let selector = resources::selector_string(&cluster);
    let left = pods.list(&ListParams::default().labels(&selector)).await?.items.len();
    if left > 0 {
        return Err(Error::Waiting(format!("{left} broker pods still stopping")));
    }
    Ok(Action::await_change())
}
