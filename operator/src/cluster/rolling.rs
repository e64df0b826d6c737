//! Rolling restarts with no partition ever on a broker that is going down.
//!
//! The brokers' StatefulSet uses the `OnDelete` update strategy: after a change of the pod
//! template, the operator restarts brokers itself, one at a time, highest ordinal first:
//!
//! 1. **Draining**: drain the broker through the admin API; its partitions move to the others
//!    (no data copied) while it keeps running.
//! 2. When the cluster reports it empty, delete its pod; the StatefulSet recreates it with the
//!    new template. **Restarting** until the new pod is Ready and the broker registered.
//! 3. Cancel the drain: the broker takes its share back; then the next one.
//!
//! Clients see only the retriable NOT_LEADER_OR_FOLLOWER of an ordinary partition move. A
//! single broker has nowhere to move partitions to and is simply restarted (it hands off to
//! the bucket on SIGTERM).

use automq_crds::cluster::RollingRestart;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};

use crate::admin::{AdminClient, ClusterState};
use crate::Result;

/// The label the StatefulSet controller puts on each pod: the revision it was made from.
const REVISION_LABEL: &str = "controller-revision-hash";

/// What the rolling restart is doing, for status and requeue.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    /// The step in progress (`None`: every pod runs the current template).
    pub rolling: Option<RollingRestart>,
    /// Pods on the current template, of all.
    pub updated: i32,
    pub total: i32,
}

/// The node id of `pod` if the StatefulSet `sts` (of the pool whose ids start at `base`) made
/// it: its name is `{sts}-{ordinal}`. Pods of other pools match the default pool's selector too.
fn node_id(pod: &Pod, sts: &str, base: i32) -> Option<i32> {
    let name = pod.name_any();
    let ordinal: i32 = name.strip_prefix(sts)?.strip_prefix('-')?.parse().ok()?;
    Some(base + ordinal)
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Advances the rolling restart of one pool (node ids from `base`) by at most one step. Reads
/// the pods only while some pod runs an old template (or a step is in progress), so a settled
/// pool costs nothing.
pub async fn step(
    sts: &StatefulSet,
    base: i32,
    pods: &Api<Pod>,
    selector: &str,
    admin: &AdminClient,
    state: Option<&ClusterState>,
    current: Option<&RollingRestart>,
) -> Result<Rollout> {
    let status = sts.status.clone().unwrap_or_default();
    let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let Some(revision) = status.update_revision.clone() else {
        return Ok(Rollout { rolling: None, updated: replicas, total: replicas });
    };
    if current.is_none() && status.updated_replicas.unwrap_or(0) >= replicas {
        return Ok(Rollout { rolling: None, updated: replicas, total: replicas });
    }
    let sts_name = sts.name_any();
    let mut list = pods.list(&ListParams::default().labels(selector)).await?.items;
    list.retain(|p| node_id(p, &sts_name, base).is_some());
    let ordinal = |p: &Pod| node_id(p, &sts_name, base);
    let updated = list.iter().filter(|p| p.labels().get(REVISION_LABEL) == Some(&revision)).count() as i32;
    let mut rollout = Rollout { rolling: current.cloned(), updated, total: replicas };

    if let Some(step) = current {
        let pod = list.iter().find(|p| ordinal(p) == Some(step.node_id));
        match step.phase.as_str() {
            "Draining" => {
                let empty = state
                    .and_then(|s| s.brokers.iter().find(|b| b.node_id == step.node_id))
                    .is_none_or(|b| b.draining && b.is_empty());
                if !empty {
                    admin.set_drain(step.node_id, true).await?;
                    return Ok(rollout);
                }
                if let Some(pod) = pod {
                    pods.delete(&pod.name_any(), &DeleteParams::default()).await?;
                }
                rollout.rolling = Some(RollingRestart { node_id: step.node_id, phase: "Restarting".into() });
            }
            _ => {
                let back = pod.is_some_and(|p| p.labels().get(REVISION_LABEL) == Some(&revision) && ready(p))
                    && state
                        .and_then(|s| s.brokers.iter().find(|b| b.node_id == step.node_id))
                        .is_some_and(|b| b.alive);
                if back {
                    admin.set_drain(step.node_id, false).await?;
                    rollout.rolling = None;
                }
            }
        }
        return Ok(rollout);
    }

    // Start the next one: the highest ordinal on an old template, once every pod is Ready.
    if list.len() as i32 != replicas || !list.iter().all(ready) {
        return Ok(rollout);
    }
    let Some(next) =
        list.iter().filter(|p| p.labels().get(REVISION_LABEL) != Some(&revision)).filter_map(ordinal).max()
    else {
        return Ok(rollout);
    };
    if replicas <= 1 {
        if let Some(pod) = list.iter().find(|p| ordinal(p) == Some(next)) {
            pods.delete(&pod.name_any(), &DeleteParams::default()).await?;
        }
        rollout.rolling = Some(RollingRestart { node_id: next, phase: "Restarting".into() });
        return Ok(rollout);
    }
    admin.set_drain(next, true).await?;
    rollout.rolling = Some(RollingRestart { node_id: next, phase: "Draining".into() });
    Ok(rollout)
}
