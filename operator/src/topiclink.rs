//! The `TopicLink` controller: puts the link into the destination cluster through its admin
//! API (`PUT /admin/v1/links/{name}`, see `docs/admin-api.md`), reports per-topic state and
//! lag in status, and deletes the link when the resource goes (finalizer).
//!
//! The source's SASL password and CA are read from Secrets at every reconcile and sent only
//! to the brokers; they never appear in status, events or logs.

use std::sync::Arc;
use std::time::Duration;

use automq_crds::topiclink::{MirrorTopicStatus, SecurityProtocol, Selector, StartFrom, TopicLinkStatus};
use automq_crds::{AutoMQCluster, TopicLink};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use tracing::{instrument, warn};

use crate::admin::{LinkPromotion, LinkSelector, LinkSource, LinkSpec, Refusal};
use crate::status::Health;
use crate::{with_finalizer, Context, Error, Result};

pub const KIND: &str = "TopicLink";
/// Deletion removes the link from the cluster.
pub const FINALIZER: &str = "automq.rs/topic-link";
/// How often a link's lag is refreshed.
pub const INTERVAL: Duration = Duration::from_secs(10);

#[instrument(skip(link, ctx), fields(namespace = link.namespace(), name = link.name_any()))]
pub async fn reconcile(link: Arc<TopicLink>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(KIND);
    let namespace = link.namespace().ok_or_else(|| Error::NoNamespace(link.name_any()))?;
    let api: Api<TopicLink> = Api::namespaced(ctx.client.clone(), &namespace);
    let (apply_ctx, cleanup_ctx) = (ctx.clone(), ctx.clone());
    with_finalizer(&api, FINALIZER, link, |l| reconcile_apply(l, apply_ctx), |l| cleanup(l, cleanup_ctx)).await
}

pub fn error_policy(link: Arc<TopicLink>, error: &Error, ctx: Arc<Context>) -> Action {
    if !matches!(error, Error::Waiting(_)) {
        warn!(name = link.name_any(), %error, "reconcile failed");
        ctx.metrics.failure(KIND, error);
    }
    Action::requeue(crate::requeue_after(error))
}

/// The admin client of the destination cluster, or `None` if it does not exist.
async fn cluster_admin(link: &TopicLink, ctx: &Context) -> Result<Option<crate::admin::AdminClient>> {
    let namespace = link.namespace().unwrap_or_default();
    let clusters: Api<AutoMQCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(cluster) = clusters.get_opt(&link.spec.cluster_ref.name).await? else { return Ok(None) };
    let port = cluster.spec.listeners.clone().unwrap_or_default().http_port();
    Ok(Some(ctx.admin(ctx.endpoints.cluster_admin(&namespace, &cluster.name_any(), port))))
}

fn selectors(list: &[Selector]) -> Vec<LinkSelector> {
    list.iter().map(|s| LinkSelector { name: s.name.clone(), pattern: s.pattern.clone() }).collect()
}

/// One key of a Secret, as text.
async fn secret_value(ctx: &Context, namespace: &str, name: &str, key: &str) -> Result<Result<String, String>> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(secret) = secrets.get_opt(name).await? else {
        return Ok(Err(format!("Secret {name:?} not found")));
    };
    let value = secret.data.and_then(|d| d.get(key).cloned());
    Ok(match value {
        Some(bytes) => String::from_utf8(bytes.0).map_err(|_| format!("Secret {name:?} key {key:?} is not UTF-8")),
        None => Err(format!("Secret {name:?} has no key {key:?}")),
    })
}

/// The link as the brokers take it; `Err` says what in the spec or its Secrets is wrong.
async fn link_spec(link: &TopicLink, ctx: &Context) -> Result<Result<LinkSpec, String>> {
    let namespace = link.namespace().unwrap_or_default();
    let spec = &link.spec;
    for s in spec.topics.iter().chain(spec.consumer_groups.iter().flatten()) {
        if s.name.is_some() == s.pattern.is_some() {
            return Ok(Err("each topic and consumer group selector needs exactly one of name and pattern".into()));
        }
    }
    let source = &spec.source;
    let protocol = match source.security_protocol {
        SecurityProtocol::PLAINTEXT => "PLAINTEXT",
        SecurityProtocol::SSL => "SSL",
        SecurityProtocol::SASL_PLAINTEXT => "SASL_PLAINTEXT",
        SecurityProtocol::SASL_SSL => "SASL_SSL",
    };
    let sasl_needed = matches!(source.security_protocol, SecurityProtocol::SASL_PLAINTEXT | SecurityProtocol::SASL_SSL);
    if sasl_needed != source.sasl.is_some() {
        return Ok(Err(format!(
            "source.sasl is {} with securityProtocol {protocol}",
            if sasl_needed { "required" } else { "not allowed" }
        )));
    }
    let mut wire = LinkSource {
        bootstrap_servers: source.bootstrap_servers.clone(),
        security_protocol: protocol.into(),
        sasl_mechanism: None,
        username: None,
        password: None,
        ca_pem: None,
    };
    if let Some(sasl) = &source.sasl {
        wire.sasl_mechanism = Some(
            serde_json::to_value(sasl.mechanism).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
        );
        let user_key = sasl.username_key.as_deref().unwrap_or("username");
        let password_key = sasl.password_key.as_deref().unwrap_or("password");
        match secret_value(ctx, &namespace, &sasl.secret_name, user_key).await? {
            Ok(v) => wire.username = Some(v),
            Err(e) => return Ok(Err(e)),
        }
        match secret_value(ctx, &namespace, &sasl.secret_name, password_key).await? {
            Ok(v) => wire.password = Some(v),
            Err(e) => return Ok(Err(e)),
        }
    }
    if let Some(ca) = &source.ca_secret {
        match secret_value(ctx, &namespace, &ca.name, &ca.key).await? {
            Ok(v) => wire.ca_pem = Some(v),
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok(LinkSpec {
        source: wire,
        topics: selectors(&spec.topics),
        consumer_groups: selectors(spec.consumer_groups.as_deref().unwrap_or_default()),
        start_from: match spec.start_from.unwrap_or(StartFrom::Earliest) {
            StartFrom::Earliest => "earliest".into(),
            StartFrom::Latest => "latest".into(),
        },
        producer_forwarding: spec.producer_forwarding.unwrap_or(false),
        paused: spec.paused.unwrap_or(false),
        promote: spec
            .promote
            .iter()
            .flatten()
            .map(|p| LinkPromotion { topic: p.topic.clone(), force: p.force.unwrap_or(false) })
            .collect(),
    }))
}

/// The name of the link inside the cluster: the resource's name (clusters are per namespace).
fn link_name(link: &TopicLink) -> String {
    link.name_any()
}

async fn reconcile_apply(link: Arc<TopicLink>, ctx: Arc<Context>) -> Result<Action> {
    let status = link.status.clone().unwrap_or_default();
    let wire = match link_spec(&link, &ctx).await? {
        Ok(wire) => wire,
        Err(message) => {
            write_status(&link, &ctx, status, &Health::invalid(&message), Some(&message)).await?;
            return Ok(Action::requeue(Duration::from_secs(30)));
        }
    };
    let Some(admin) = cluster_admin(&link, &ctx).await? else {
        let message = format!("AutoMQCluster {:?} not found", link.spec.cluster_ref.name);
        write_status(&link, &ctx, status, &Health::failed("ClusterNotFound", &message), Some(&message)).await?;
        return Ok(Action::requeue(Duration::from_secs(30)));
    };
    let name = link_name(&link);
    let applied = match admin.put_link(&name, &wire).await {
        Ok(r) => r,
        Err(e) => {
            // Refused (a 4xx with the brokers' reason) or not reachable: the message says which.
            let message = format!("applying the link failed: {e}");
            write_status(&link, &ctx, status, &Health::failed("LinkApplyFailed", &message), Some(&message)).await?;
            return Err(e);
        }
    };
    if applied == Err(Refusal::Unsupported) {
        let message = "the cluster's brokers do not serve /admin/v1/links (a version without TopicLink support)";
        write_status(&link, &ctx, status, &Health::failed("LinkApiUnavailable", message), Some(message)).await?;
        return Ok(Action::requeue(Duration::from_secs(60)));
    }
    let state = match admin.link(&name).await? {
        Ok(state) => state,
        Err(_) => {
            let health = Health::progressing("Creating", "link created; waiting for its state");
            write_status(&link, &ctx, status, &health, None).await?;
            return Ok(Action::requeue(Duration::from_secs(2)));
        }
    };
    let topics: Vec<MirrorTopicStatus> = state
        .topics
        .iter()
        .map(|t| MirrorTopicStatus {
            name: t.topic.clone(),
            state: capitalize(&t.state),
            partitions: t.partitions,
            lag: t.lag,
            last_error: t.last_error.clone(),
        })
        .collect();
    let failed: Vec<&MirrorTopicStatus> = topics.iter().filter(|t| t.state == "Failed").collect();
    let total_lag: i64 = topics.iter().map(|t| t.lag).sum();
    let health = if let Some(first) = failed.first() {
        let message = format!(
            "{} of {} topics failed; {}: {}",
            failed.len(),
            topics.len(),
            first.name,
            first.last_error.clone().unwrap_or_default()
        );
        Health::failed("TopicFailed", message)
    } else if topics.is_empty() {
        Health::progressing("NoTopics", "no source topic matches yet")
    } else {
        let mirroring = topics.iter().filter(|t| t.state == "Mirroring").count();
        let promoted = topics.iter().filter(|t| t.state == "Promoted").count();
        Health::ready(
            if wire.paused { "Paused" } else { "Linked" },
            format!("{mirroring} mirroring, {promoted} promoted, total lag {total_lag}"),
        )
    };
    let new_status = TopicLinkStatus {
        observed_generation: link.metadata.generation,
        topics: Some(topics),
        total_lag: Some(total_lag),
        conditions: status.conditions.clone(),
    };
    let warning = health.degraded.status.then(|| health.degraded.message.clone());
    write_status(&link, &ctx, new_status, &health, warning.as_deref()).await?;
    Ok(Action::requeue(INTERVAL))
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

async fn write_status(
    link: &TopicLink,
    ctx: &Context,
    status: TopicLinkStatus,
    health: &Health,
    warning: Option<&str>,
) -> Result<()> {
    let previous = link.status.clone().unwrap_or_default();
    crate::status::write(link, ctx, &previous, status, health, warning).await
}

/// Deletion: remove the link from the cluster (its mirror topics stay, read-only until
/// promoted). A cluster that is gone has nothing to remove.
async fn cleanup(link: Arc<TopicLink>, ctx: Arc<Context>) -> Result<Action> {
    if let Some(admin) = cluster_admin(&link, &ctx).await? {
        admin.delete_link(&link_name(&link)).await?;
        ctx.event(&*link, false, "LinkDeleted", format!("link {} removed from the cluster", link_name(&link))).await;
    }
    Ok(Action::await_change())
}
