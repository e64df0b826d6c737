//! `AutoMQCluster`: brokers speaking Kafka, keeping all data in object storage.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{ConfigOverrides, ObjectStorage, PodOverrides, PullPolicy, ServiceType};
use crate::listener::KafkaListener;
use crate::security::ClusterSecurity;

/// A Kafka-compatible broker cluster. Brokers are stateless: partitions move between them
/// without copying data, so scaling takes seconds.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "automq.rs",
    version = "v1alpha1",
    kind = "AutoMQCluster",
    plural = "automqclusters",
    shortname = "amc",
    category = "automq",
    namespaced,
    status = "AutoMQClusterStatus",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "WAL", type_ = "string", json_path = ".spec.wal.kind"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Bootstrap", type_ = "string", json_path = ".status.bootstrapServers", priority = 1),
    printcolumn(name = "Protocol", type_ = "string", json_path = ".status.securityProtocol", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "!has(self.placement) || !has(self.placement.defaultPool) || self.placement.defaultPool == 'default' \
     || (has(self.pools) && self.pools.exists(p, p.name == self.placement.defaultPool))"
).message("placement.defaultPool names no pool"))]
#[x_kube(validation = Rule::new(
    "!has(self.placement) || !has(self.placement.rules) || self.placement.rules.all(r, r.pool == 'default' \
     || (has(self.pools) && self.pools.exists(p, p.name == r.pool)))"
).message("a placement rule names no pool"))]
#[x_kube(validation = Rule::new(
    "!has(self.security) || !has(self.security.users) || size(self.security.users) == 0 || has(self.security.sasl) \
     || (has(self.listeners) && has(self.listeners.kafka) \
         && self.listeners.kafka.exists(l, has(l.authentication) && l.authentication != 'none'))"
).message("users need sasl (or a kafka listener with authentication): without it nobody authenticates"))]
#[x_kube(validation = Rule::new(
    "!has(self.security) || !has(self.security.authorization) || has(self.security.sasl) \
     || (has(self.listeners) && has(self.listeners.kafka) \
         && self.listeners.kafka.exists(l, has(l.authentication) && l.authentication != 'none'))"
).message("authorization needs sasl (or a kafka listener with authentication): without it every client is User:ANONYMOUS"))]
#[x_kube(validation = Rule::new(
    "!has(self.listeners) || !has(self.listeners.kafka) || !has(self.security) || !has(self.security.sasl)"
).message("with kafka listeners, each listener's authentication replaces security.sasl: remove security.sasl"))]
#[x_kube(validation = Rule::new(
    "!has(self.listeners) || !has(self.listeners.kafka) || self.listeners.kafka.all(l, !has(l.tls) || !l.tls \
     || has(l.tlsSecret) || (has(self.security) && has(self.security.tls)))"
).message("a kafka listener with tls needs its tlsSecret or security.tls"))]
#[x_kube(validation = Rule::new(
    "!has(self.listeners) || !has(self.listeners.kafka) \
     || self.listeners.kafka.all(l, !has(l.authentication) || l.authentication == 'none') \
     || (has(self.security) && has(self.security.users) && size(self.security.users) > 0)"
).message("a kafka listener with authentication needs security.users: the operator creates no other user"))]
pub struct AutoMQClusterSpec {
    /// Number of brokers. With `autoscaling`, the size the cluster starts at (the autoscaler
    /// then chooses within its bounds). Also driven through the scale subresource.
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,
    /// Broker image (`automq-broker`).
    #[schemars(length(min = 1))]
    pub image: String,
    /// Default: the Kubernetes default for the image tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// Broker container resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Where all data lives.
    pub object_storage: ObjectStorage,
    /// The write-ahead log: in object storage (throughput, no volumes, failover in seconds)
    /// or on a volume (lowest latency; a dead broker's partitions wait for it). Fixed at
    /// creation.
    #[x_kube(validation = Rule::new("self == oldSelf").message("wal is immutable: create a new cluster to change it"))]
    pub wal: Wal,
    /// Ports and how clients reach the brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listeners: Option<Listeners>,
    /// Availability zones the brokers run in: pods are spread evenly over them (topology
    /// spread on `topology.kubernetes.io/zone`) and kept out of other zones. Each broker
    /// reports its pod's `topology.kubernetes.io/zone` label as its rack (Kubernetes 1.35+, where the
    /// PodTopologyLabels admission plugin copies it from the node), so zone-aware clients
    /// stay in their zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub zones: Option<Vec<String>>,
    /// Let the operator choose `replicas` from the brokers' load. Do not combine with an HPA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<BrokerAutoscaling>,
    /// Broker settings (flag names without the leading dashes, e.g. `num-partitions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigOverrides>,
    /// Changes to the generated broker pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<PodOverrides>,
    /// More broker pools besides the one the fields above describe (pool `default`): each has
    /// its own StatefulSet, size, resources, zones, WAL and autoscaling, and leads only the
    /// topics placed on it (`placement`, or a topic's `automq.pool` config). One bootstrap
    /// address and one set of consumer groups for all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    #[x_kube(validation = Rule::new("self.all(p, self.exists_one(q, q.nodeIdBase == p.nodeIdBase))")
        .message("every pool needs its own nodeIdBase"))]
    pub pools: Option<Vec<BrokerPool>>,
    /// Which pool topics that set no `automq.pool` go to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<TopicPlacement>,
    /// TLS, SASL, users and ACLs of the Kafka listener, with certificates and passwords in
    /// Secrets. Default: PLAINTEXT, no authentication. With named listeners
    /// (`listeners.kafka`), their own `tls` and `authentication` choose each one's protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<ClusterSecurity>,
}

/// A broker pool: brokers with their own size, resources, zones and WAL.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.nodeIdBase == oldSelf.nodeIdBase")
    .message("nodeIdBase is immutable: brokers keep their node ids"))]
#[x_kube(validation = Rule::new("self.wal == oldSelf.wal")
    .message("a pool's wal is immutable: add a new pool and move its topics instead"))]
pub struct BrokerPool {
    /// Pool name: brokers run with `--pool NAME` and topics name it in `automq.pool`. Its
    /// StatefulSet is `{cluster}-broker-{name}`. `default` is the pool of the top-level fields.
    #[schemars(length(min = 1, max = 30), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    #[x_kube(validation = Rule::new("self != 'default'").message("`default` is the pool of the top-level fields"))]
    pub name: String,
    /// Number of brokers in this pool (with `autoscaling`, where it starts).
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,
    /// Node ids of this pool's brokers are `nodeIdBase + ordinal`: a multiple of 1000, its own
    /// per pool (the default pool's brokers are 0-999). Fixed at creation.
    #[schemars(range(min = 1000, max = 1000000))]
    #[x_kube(validation = Rule::new("self % 1000 == 0").message("nodeIdBase must be a multiple of 1000"))]
    pub node_id_base: i32,
    /// The pool's write-ahead log (fixed at creation), as `spec.wal`.
    pub wal: Wal,
    /// Broker image. Default: the cluster's `image` (set it to try a new version on one pool
    /// first: only this pool's brokers roll).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Container resources. Default: the cluster's `resources`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Zones this pool's brokers run in. Default: the cluster's `zones`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub zones: Option<Vec<String>>,
    /// The operator's autoscaler for this pool, measured on this pool's brokers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<BrokerAutoscaling>,
}

/// Where topics without their own `automq.pool` are placed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicPlacement {
    /// Pool for topics no rule matches. Default: `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_pool: Option<String>,
    /// First match wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub rules: Option<Vec<PlacementRule>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementRule {
    /// A regular expression the whole topic name must match, e.g. `outbox\..*`.
    #[schemars(length(min = 1, max = 256))]
    pub pattern: String,
    /// The pool those topics go to.
    #[schemars(length(min = 1, max = 30))]
    pub pool: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.kind == 'S3' ? !has(self.volume) : has(self.volume)")
    .message("wal.volume is required with kind File and not allowed with kind S3"))]
pub struct Wal {
    pub kind: WalKind,
    /// The file WAL's volume (one PersistentVolumeClaim per broker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<WalVolume>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum WalKind {
    /// Group commits written as objects: no volumes, a dead broker's WAL is taken over.
    S3,
    /// A local file WAL with fdatasync: lowest produce latency.
    File,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WalVolume {
    /// Claim size, e.g. `10Gi` (the WAL only holds data not yet uploaded).
    pub size: Quantity,
    /// Default: the cluster's default StorageClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.kafka) || !has(self.kafkaPort)")
    .message("kafkaPort is the single listener's port: with kafka listeners, each has its own port"))]
#[x_kube(validation = Rule::new("!has(self.kafka) || self.kafka.all(l, l.port != (has(self.httpPort) ? self.httpPort : 9644))")
    .message("a kafka listener cannot use the HTTP port"))]
pub struct Listeners {
    /// Kafka port of the single listener (without `kafka`). Default: 9092.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub kafka_port: Option<i32>,
    /// HTTP port (metrics, probes, admin API). Default: 9644.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub http_port: Option<i32>,
    /// Type of the bootstrap Service. Default: ClusterIP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_service_type: Option<ServiceType>,
    /// Annotations on the bootstrap Service (load-balancer settings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_service_annotations: Option<BTreeMap<String, String>>,
    /// Named Kafka listeners, each with its own port, TLS and authentication, instead of the
    /// single listener on `kafkaPort` (whose protocol `security.tls` and `security.sasl`
    /// choose). With them, each listener's `authentication` replaces `security.sasl`, and
    /// `security.tls` is the certificate of TLS listeners without their own `tlsSecret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 8))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    #[x_kube(validation = Rule::new("self.all(l, self.exists_one(m, m.port == l.port))")
        .message("every kafka listener needs its own port"))]
    pub kafka: Option<Vec<KafkaListener>>,
}

impl Listeners {
    pub fn kafka_port(&self) -> i32 {
        self.kafka_port.unwrap_or(9092)
    }
    pub fn http_port(&self) -> i32 {
        self.http_port.unwrap_or(9644)
    }
    /// The named listeners, `None` for the single listener on `kafkaPort`.
    pub fn named(&self) -> Option<&[KafkaListener]> {
        self.kafka.as_deref()
    }
}

/// The operator's own autoscaler: keeps bytes in per broker (and/or CPU) near a target.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("minReplicas must not exceed maxReplicas"))]
#[x_kube(validation = Rule::new("has(self.targetBytesInPerBroker) || has(self.targetCpuUtilization)")
    .message("set targetBytesInPerBroker, targetCpuUtilization or both"))]
pub struct BrokerAutoscaling {
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Produce bytes per second one broker should take, e.g. `50Mi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_bytes_in_per_broker: Option<Quantity>,
    /// Percent of the CPU request one broker should use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization: Option<i32>,
    /// How long load must stay low before scaling in. Default: 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 86400))]
    pub scale_down_stabilization_seconds: Option<i32>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoMQClusterStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Broker pods that exist (the scale subresource's `status.replicas`).
    pub replicas: i32,
    /// Brokers the cluster reports ready (registered, leading all their partitions).
    pub ready_replicas: i32,
    /// The size the operator is driving towards (`spec.replicas`, or the autoscaler's
    /// choice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_replicas: Option<i32>,
    /// Label selector of the broker pods (for the scale subresource and HPAs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// `host:port` list for Kafka clients inside the cluster (with named listeners: the
    /// first's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_servers: Option<String>,
    /// What clients set as `security.protocol` for `bootstrapServers`: `PLAINTEXT`, `SSL`,
    /// `SASL_PLAINTEXT` or `SASL_SSL` (with named listeners: the first's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_protocol: Option<String>,
    /// With named listeners (`spec.listeners.kafka`), each one: how clients reach it.
    /// `bootstrapServers` and `securityProtocol` above then describe the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listeners: Option<Vec<ListenerStatus>>,
    /// Node id of the broker holding the controller role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<i32>,
    /// Brokers being drained before a scale-in (node ids); the StatefulSet shrinks once they
    /// are empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draining: Option<Vec<i32>>,
    /// The rolling restart step in progress (after a change of the pod template, brokers are
    /// drained and restarted one at a time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling: Option<RollingRestart>,
    /// Per-broker state as the cluster reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brokers: Option<Vec<BrokerStatus>>,
    /// Every pool, the default one first (also pools being removed, until their brokers are
    /// gone). `replicas`, `readyReplicas` and `selector` above describe the default pool
    /// (the scale subresource's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pools: Option<Vec<PoolStatus>>,
    /// The autoscaler's last decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaler: Option<AutoscalerStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
}

/// A named listener as clients see it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    pub name: String,
    pub port: i32,
    /// What clients set as `security.protocol`: `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or
    /// `SASL_SSL`.
    pub protocol: String,
    /// The SASL mechanism clients set (`sasl.mechanism`), with authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl_mechanism: Option<String>,
    /// `host:port` for clients inside the Kubernetes cluster: the bootstrap Service.
    pub bootstrap: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollingRestart {
    /// The broker being restarted.
    pub node_id: i32,
    /// `Draining` (its partitions moving away) or `Restarting` (its pod coming back).
    pub phase: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    pub name: String,
    /// Broker pods that exist.
    pub replicas: i32,
    /// Brokers of this pool the cluster reports ready.
    pub ready_replicas: i32,
    /// The size the operator drives this pool towards.
    pub target_replicas: i32,
    /// Node ids are `nodeIdBase + ordinal`.
    pub node_id_base: i32,
    /// `Active`, or `Removing` (no longer in the spec: drained, then stopped).
    pub phase: String,
    /// This pool's autoscaler's last decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaler: Option<AutoscalerStatus>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerStatus {
    pub node_id: i32,
    pub ready: bool,
    pub draining: bool,
    /// Partitions assigned to this broker.
    pub partitions: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalerStatus {
    /// Replicas the autoscaler wants.
    pub desired_replicas: i32,
    /// Why (the measured load against the target).
    pub reason: String,
    /// When the load was last above what `desiredReplicas - 1` brokers could take (RFC 3339);
    /// scale-in waits for the stabilization window after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_busy_time: Option<String>,
}
