//! What every reconcile gets: the API client, where the brokers and query nodes answer, the
//! metrics, the clock and the event recorder.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};

use crate::admin::AdminClient;
use crate::metrics::Metrics;

/// Where the operator reaches the processes it manages. In a cluster, Service DNS names and
/// pod IPs; tests point them at loopback servers.
pub trait Endpoints: Send + Sync + std::fmt::Debug {
    /// Base URL of any broker's HTTP listener of cluster `name` (through the headless
    /// Service: every broker answers for the whole cluster).
    fn cluster_admin(&self, namespace: &str, name: &str, http_port: i32) -> String {
        format!("http://{name}-broker.{namespace}.svc:{http_port}")
    }
    /// Base URL of one pod's HTTP listener (metrics, probes).
    fn pod(&self, pod: &Pod, http_port: i32) -> Option<String> {
        let ip = pod.status.as_ref()?.pod_ip.as_ref()?;
        Some(format!("http://{ip}:{http_port}"))
    }
}

/// Service DNS names and pod IPs.
#[derive(Debug, Default)]
pub struct InCluster;

impl Endpoints for InCluster {}

pub struct Context {
    pub client: Client,
    pub http: reqwest::Client,
    pub endpoints: Arc<dyn Endpoints>,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// The broker autoscaler's last measurements.
    pub samples: crate::cluster::autoscaler::Samples,
    /// The time written into conditions (injected so tests are deterministic).
    pub now: Box<dyn Fn() -> Time + Send + Sync>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("endpoints", &self.endpoints).finish_non_exhaustive()
    }
}

impl Context {
    pub fn new(client: Client, metrics: Arc<Metrics>, instance: Option<String>) -> Self {
        Context {
            client: client.clone(),
            http: reqwest::Client::new(),
            endpoints: Arc::new(InCluster),
            metrics,
            recorder: Recorder::new(client.clone(), Reporter { controller: crate::FIELD_MANAGER.into(), instance }),
            samples: Default::default(),
            now: Box::new(|| Time(k8s_openapi::jiff::Timestamp::now())),
        }
    }

    pub fn admin(&self, base: String) -> AdminClient {
        AdminClient::new(self.http.clone(), base)
    }

    /// Publishes a Kubernetes event about `obj`; a failure is logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(&self, obj: &K, warning: bool, reason: &str, note: String) {
        let event = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "cannot publish event");
        }
    }
}
