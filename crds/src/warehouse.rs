//! `AnalyticsWarehouse`: stateless query nodes (MySQL protocol) over columnar tables in
//! object storage, ingesting continuously from Kafka topics.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{ConfigOverrides, LocalRef, ObjectStorage, PodOverrides, PullPolicy, SecretKeyRef, ServiceType};
use crate::security::WarehouseSecurity;

/// Query nodes sharing one catalog and one bucket: any node answers any query.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "automq.rs",
    version = "v1alpha1",
    kind = "AnalyticsWarehouse",
    plural = "analyticswarehouses",
    shortname = "aw",
    category = "automq",
    namespaced,
    status = "AnalyticsWarehouseStatus",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "MySQL", type_ = "string", json_path = ".status.mysqlEndpoint", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "!has(self.rootPasswordSecret) || !has(self.security) || !has(self.security.rootPasswordSecret)"
).message("set the root password in one place: security.rootPasswordSecret"))]
pub struct AnalyticsWarehouseSpec {
    /// Number of query nodes (with `autoscaling`, the starting size).
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,
    /// Query-node image (`automq-query-node`).
    #[schemars(length(min = 1))]
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Where tables and the catalog live.
    pub object_storage: ObjectStorage,
    /// Memory each query node keeps for decoded hot segments, e.g. `4Gi` (count it in
    /// `resources.requests.memory`). Default: 2Gi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_size: Option<Quantity>,
    /// Local disk each query node keeps for segment objects read from the bucket, e.g. `20Gi`;
    /// it lives in the pod's data volume (count it in `resources.requests.ephemeral-storage`).
    /// `0` turns it off. Default: the query node's own (2Gi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_cache_size: Option<Quantity>,
    /// The AutoMQCluster routine loads read from by default (its bootstrap servers become the
    /// default `kafka_broker_list`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_cluster_ref: Option<LocalRef>,
    /// The MySQL `root` password, as `security.rootPasswordSecret` (kept for existing
    /// resources; set one of the two).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_password_secret: Option<SecretKeyRef>,
    /// MySQL port. Default: 9030.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub mysql_port: Option<i32>,
    /// Type of the MySQL Service. Default: ClusterIP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<ServiceType>,
    /// CPU-based autoscaling (the operator manages a HorizontalPodAutoscaler on this
    /// resource's scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<WarehouseAutoscaling>,
    /// Query-node settings (flag names without the leading dashes, e.g. `max-allowed-packet`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigOverrides>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<PodOverrides>,
    /// TLS and users of the MySQL listener, with certificates and passwords in Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<WarehouseSecurity>,
}

impl AnalyticsWarehouseSpec {
    pub fn mysql_port(&self) -> i32 {
        self.mysql_port.unwrap_or(9030)
    }

    /// The `root` password's Secret key, wherever it is set.
    pub fn root_password(&self) -> Option<&SecretKeyRef> {
        self.security.as_ref().and_then(|s| s.root_password_secret.as_ref()).or(self.root_password_secret.as_ref())
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("minReplicas must not exceed maxReplicas"))]
pub struct WarehouseAutoscaling {
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Average CPU utilization (percent of the request) to keep.
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalyticsWarehouseStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Query-node pods that exist.
    pub replicas: i32,
    /// Query nodes whose `/readyz` answers 200.
    pub ready_replicas: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// `host:port` of the MySQL Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mysql_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
}
