//! The operator's own broker autoscaler: scrapes every broker's `/metrics`, turns the
//! counters into rates between two reconciles, and asks `scale::autoscale` for a size.
//!
//! Bytes in: `automq_broker_bytes_in_total` (all topics). CPU: `process_cpu_seconds_total`
//! against the container's CPU request, per pool. The last sample per pool is kept in memory: an
//! operator restart costs one interval of measurements, nothing else.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use automq_crds::cluster::{AutoscalerStatus, BrokerAutoscaling};
use automq_crds::AutoMQCluster;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use super::pools::Pool;
use super::resources;
use super::scale::{autoscale, parse_quantity, Load};
use crate::admin::sum_samples;
use crate::Context;

/// How often an autoscaled cluster is reconciled (and measured).
pub const INTERVAL: Duration = Duration::from_secs(15);

const BYTES_IN: &str = "automq_broker_bytes_in_total";
const CPU_SECONDS: &str = "process_cpu_seconds_total";

/// Counter totals per pod at one instant.
#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    per_pod: HashMap<String, (f64, f64)>,
}

/// Last samples, per pool (`namespace/name/pool`).
#[derive(Debug, Default)]
pub struct Samples(Mutex<HashMap<String, Sample>>);

/// Chooses one pool's size and says why; `previous` is its last decision.
pub async fn decide(
    cluster: &AutoMQCluster,
    pool: &Pool,
    policy: &BrokerAutoscaling,
    previous: Option<&AutoscalerStatus>,
    ctx: &Context,
    live_replicas: Option<i32>,
) -> (i32, AutoscalerStatus) {
    let current = previous
        .map(|a| a.desired_replicas)
        .or(live_replicas)
        .unwrap_or(pool.replicas)
        .clamp(policy.min_replicas, policy.max_replicas);
    let load = measure(cluster, pool, ctx).await;
    let now = (ctx.now)();
    let last_busy = previous.and_then(|a| a.last_busy_time.clone());
    let quiet_for = last_busy
        .as_deref()
        .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .and_then(|t| Duration::try_from(now.0.duration_since(t)).ok());
    let decision = autoscale(policy, current, load, quiet_for);
    let last_busy_time = if decision.busy || last_busy.is_none() { Some(now.0.to_string()) } else { last_busy };
    (
        decision.replicas,
        AutoscalerStatus { desired_replicas: decision.replicas, reason: decision.reason, last_busy_time },
    )
}

/// Load of one pool's brokers (the pods carrying its pool label).
async fn measure(cluster: &AutoMQCluster, pool: &Pool, ctx: &Context) -> Load {
    let none = Load { bytes_in_per_sec: None, cpu_utilization: None };
    let namespace = cluster.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let selector = crate::pods::selector_string(&resources::pool_pod_labels(cluster, &pool.name));
    let Ok(list) = pods.list(&ListParams::default().labels(&selector)).await else {
        return none;
    };
    let http_port = cluster.spec.listeners.clone().unwrap_or_default().http_port();
    let mut per_pod = HashMap::new();
    for pod in &list.items {
        let Some(base) = ctx.endpoints.pod(pod, http_port) else { continue };
        match ctx.admin(base).metrics().await {
            Ok(scrape) => {
                let bytes = sum_samples(&scrape, BYTES_IN).unwrap_or(0.0);
                let cpu = sum_samples(&scrape, CPU_SECONDS).unwrap_or(0.0);
                per_pod.insert(pod.name_any(), (bytes, cpu));
            }
            Err(e) => tracing::debug!(pod = pod.name_any(), error = %e, "cannot scrape broker"),
        }
    }
    let sample = Sample { at: Instant::now(), per_pod };
    let key = format!("{namespace}/{}/{}", cluster.name_any(), pool.name);
    let previous = {
        let mut samples = ctx.samples.0.lock().unwrap_or_else(|e| e.into_inner());
        samples.insert(key, sample.clone())
    };
    let Some(previous) = previous else { return none };
    let elapsed = sample.at.duration_since(previous.at).as_secs_f64();
    if elapsed <= 0.0 {
        return none;
    }
    let (mut bytes, mut cpu, mut pods_measured) = (0.0, 0.0, 0usize);
    for (pod, (b, c)) in &sample.per_pod {
        // Only pods seen twice, and not restarted in between (counters went down).
        if let Some((pb, pc)) = previous.per_pod.get(pod) {
            if b >= pb && c >= pc {
                bytes += b - pb;
                cpu += c - pc;
                pods_measured += 1;
            }
        }
    }
    if pods_measured == 0 {
        return none;
    }
    let cpu_request = pool
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("cpu"))
        .and_then(|q| parse_quantity(&q.0))
        .filter(|c| *c > 0.0);
    Load {
        bytes_in_per_sec: Some(bytes / elapsed),
        cpu_utilization: cpu_request.map(|request| cpu / elapsed / (request * pods_measured as f64)),
    }
}
