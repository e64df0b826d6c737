//! Broker pools. The top-level fields of an `AutoMQCluster` describe pool `default` (StatefulSet
//! `{name}-broker`, node ids 0-999); each `spec.pools[]` entry adds one more (StatefulSet
//! `{name}-broker-{pool}`, node ids `nodeIdBase + ordinal`, brokers started with `--pool`). Every
//! pool is sized, autoscaled, rolled and drained on its own; one broker restarts at a time
//! across the whole cluster, and the Services, ConfigMap and PodDisruptionBudget are shared.
//!
//! A pool removed from the spec is remembered in `status.pools` (phase `Removing`) until its
//! brokers are drained, stopped and its StatefulSet deleted.

use std::ops::Range;

use automq_crds::cluster::{AutoMQClusterStatus, BrokerAutoscaling, Wal};
use automq_crds::AutoMQCluster;
use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::ResourceExt;

/// The pool of the top-level fields (and the brokers' default `--pool`).
pub const DEFAULT_POOL: &str = "default";
/// Pod label naming a broker's pool.
pub const POOL_LABEL: &str = "automq.rs/pool";
/// Node ids per pool: a pool's ids are `base..base + IDS_PER_POOL` (replicas are at most 1000).
pub const IDS_PER_POOL: i32 = 1000;

/// One pool as the spec asks for it, with the cluster-wide fallbacks applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub name: String,
    pub replicas: i32,
    pub node_id_base: i32,
    pub wal: Wal,
    pub image: String,
    pub resources: Option<ResourceRequirements>,
    pub zones: Vec<String>,
    pub autoscaling: Option<BrokerAutoscaling>,
}

impl Pool {
    pub fn is_default(&self) -> bool {
        self.name == DEFAULT_POOL
    }

    /// The pool's StatefulSet.
    pub fn sts_name(&self, cluster: &AutoMQCluster) -> String {
        sts_name(cluster, &self.name)
    }

    /// Whether `node_id` is one of this pool's.
    pub fn owns(&self, node_id: i32) -> bool {
        ids(self.node_id_base).contains(&node_id)
    }
}

/// The StatefulSet of pool `pool`.
pub fn sts_name(cluster: &AutoMQCluster, pool: &str) -> String {
    if pool == DEFAULT_POOL {
        format!("{}-broker", cluster.name_any())
    } else {
        format!("{}-broker-{pool}", cluster.name_any())
    }
}

/// The node ids a pool with `base` may use.
pub fn ids(base: i32) -> Range<i32> {
    base..base.saturating_add(IDS_PER_POOL)
}

/// Every pool of the spec, `default` first.
pub fn pools(cluster: &AutoMQCluster) -> Vec<Pool> {
    let spec = &cluster.spec;
    let zones = spec.zones.clone().unwrap_or_default();
    let mut out = vec![Pool {
        name: DEFAULT_POOL.into(),
        replicas: spec.replicas,
        node_id_base: 0,
        wal: spec.wal.clone(),
        image: spec.image.clone(),
        resources: spec.resources.clone(),
        zones: zones.clone(),
        autoscaling: spec.autoscaling.clone(),
    }];
    for p in spec.pools.iter().flatten() {
        out.push(Pool {
            name: p.name.clone(),
            replicas: p.replicas,
            node_id_base: p.node_id_base,
            wal: p.wal.clone(),
            image: p.image.clone().unwrap_or_else(|| spec.image.clone()),
            resources: p.resources.clone().or_else(|| spec.resources.clone()),
            zones: p.zones.clone().unwrap_or_else(|| zones.clone()),
            autoscaling: p.autoscaling.clone(),
        });
    }
    out
}

/// Pools the status knows that the spec no longer has: (name, node id base).
pub fn removed(cluster: &AutoMQCluster, status: &AutoMQClusterStatus) -> Vec<(String, i32)> {
    let wanted = pools(cluster);
    status
        .pools
        .iter()
        .flatten()
        .filter(|p| !wanted.iter().any(|w| w.name == p.name))
        .map(|p| (p.name.clone(), p.node_id_base))
        .collect()
}

/// What the schema's rules say, for API servers that do not run them, plus what they cannot
/// say (ranges of ids clashing with the default pool, names of placement rules' patterns).
pub fn validate(cluster: &AutoMQCluster) -> Result<(), String> {
    let all = pools(cluster);
    for (i, p) in all.iter().enumerate().skip(1) {
        if p.name == DEFAULT_POOL {
            return Err("pools: `default` is the pool of the top-level fields".into());
        }
        if p.node_id_base < IDS_PER_POOL || p.node_id_base % IDS_PER_POOL != 0 {
            return Err(format!("pools[{}] {}: nodeIdBase must be a positive multiple of 1000", i - 1, p.name));
        }
        if let Some(other) = all[..i].iter().find(|o| o.name == p.name || o.node_id_base == p.node_id_base) {
            return Err(format!(
                "pools {} and {} clash: every pool needs its own name and nodeIdBase",
                other.name, p.name
            ));
        }
    }
    let known = |pool: &str| all.iter().any(|p| p.name == pool);
    if let Some(placement) = &cluster.spec.placement {
        if let Some(pool) = placement.default_pool.as_deref().filter(|p| !known(p)) {
            return Err(format!("placement.defaultPool {pool:?} names no pool"));
        }
        for rule in placement.rules.iter().flatten() {
            if !known(&rule.pool) {
                return Err(format!("placement rule {:?} names no pool ({:?})", rule.pattern, rule.pool));
            }
            regex::Regex::new(&format!("^(?:{})$", rule.pattern))
                .map_err(|e| format!("placement rule {:?}: bad pattern: {e}", rule.pattern))?;
        }
    }
    Ok(())
}
