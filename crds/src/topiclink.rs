//! `TopicLink`: mirror topics (offsets preserved byte for byte) and consumer-group offsets
//! from another Kafka-compatible cluster into an `AutoMQCluster`, then promote topic by topic.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::LocalRef;
pub use crate::security::SaslMechanism;

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "automq.rs",
    version = "v1alpha1",
    kind = "TopicLink",
    plural = "topiclinks",
    shortname = "tl",
    category = "automq",
    namespaced,
    status = "TopicLinkStatus",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.clusterRef.name"),
    printcolumn(name = "Source", type_ = "string", json_path = ".spec.source.bootstrapServers"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Lag", type_ = "integer", json_path = ".status.totalLag"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct TopicLinkSpec {
    /// The destination AutoMQCluster (same namespace). Cannot be changed.
    #[x_kube(validation = Rule::new("self == oldSelf").message("clusterRef is immutable"))]
    pub cluster_ref: LocalRef,
    /// The cluster topics are mirrored from.
    pub source: SourceCluster,
    /// Topics to mirror, by name or pattern.
    #[schemars(length(min = 1))]
    pub topics: Vec<Selector>,
    /// Consumer groups whose committed offsets are synced (while they have no members on the
    /// destination).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_groups: Option<Vec<Selector>>,
    /// Where a new mirror partition starts. Default: Earliest (the source's log start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_from: Option<StartFrom>,
    /// Forward produce requests on mirror topics to the source, so producers can move before
    /// consumers. Default: false (produce is refused with a clear error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_forwarding: Option<bool>,
    /// Topics to promote: stop mirroring once caught up, then make them ordinary writable
    /// topics. Promotion cannot be undone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote: Option<Vec<Promotion>>,
    /// Stop fetching without forgetting anything. Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.securityProtocol in ['SASL_PLAINTEXT', 'SASL_SSL'] == has(self.sasl)")
    .message("sasl is required with SASL_PLAINTEXT and SASL_SSL, and not allowed otherwise"))]
pub struct SourceCluster {
    /// Comma-separated `host:port` list.
    #[schemars(length(min = 1))]
    pub bootstrap_servers: String,
    pub security_protocol: SecurityProtocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<SaslAuth>,
    /// CA bundle to trust for SSL and SASL_SSL (a Secret key). Default: the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret: Option<crate::common::SecretKeyRef>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[allow(non_camel_case_types)] // Kafka's own spelling of the values.
pub enum SecurityProtocol {
    PLAINTEXT,
    SSL,
    SASL_PLAINTEXT,
    SASL_SSL,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SaslAuth {
    pub mechanism: SaslMechanism,
    /// Secret holding the user name and password.
    #[schemars(length(min = 1))]
    pub secret_name: String,
    /// Default: `username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_key: Option<String>,
    /// Default: `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_key: Option<String>,
}

/// A topic or group, by exact name or by regular expression (one of the two).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.name) != has(self.pattern)").message("set exactly one of name and pattern"))]
pub struct Selector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A regular expression matched against the whole name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum StartFrom {
    Earliest,
    Latest,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Promotion {
    /// Topic name.
    #[schemars(length(min = 1))]
    pub topic: String,
    /// Promote even if not caught up (records the source gets later are not mirrored).
    /// Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<bool>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicLinkStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Per mirror topic, as the destination cluster reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics: Option<Vec<MirrorTopicStatus>>,
    /// Sum of the topics' lag (records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_lag: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MirrorTopicStatus {
    pub name: String,
    /// `Mirroring`, `Paused`, `Promoting`, `Promoted` or `Failed`.
    pub state: String,
    pub partitions: i32,
    /// Records behind the source's high watermark, summed over partitions.
    pub lag: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}
