//! Types shared by the kinds: object storage, references, pod overrides.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, EnvVar, LocalObjectReference, Toleration};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The S3-compatible bucket a cluster or warehouse keeps its data in.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.credentials) && has(self.workloadIdentity))")
    .message("set at most one of credentials and workloadIdentity"))]
pub struct ObjectStorage {
    /// Bucket name.
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// Key prefix inside the bucket, so several clusters can share one bucket. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Endpoint URL of an S3-compatible service (MinIO, SeaweedFS, Ceph...). Default: AWS S3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')")
        .message("endpoint must be an http:// or https:// URL"))]
    pub endpoint: Option<String>,
    /// Region. Default: `us-east-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Path-style addressing. Default: true when `endpoint` is set, false otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_style: Option<bool>,
    /// Static credentials from a Secret. Leave unset to use workload identity or the
    /// node's instance role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<S3Credentials>,
    /// Workload identity (IRSA, GKE/Azure workload identity): annotations put on the pods'
    /// ServiceAccount, e.g. `eks.amazonaws.com/role-arn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_identity: Option<WorkloadIdentity>,
}

/// Access keys in a Secret of the resource's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Credentials {
    /// Secret name.
    #[schemars(length(min = 1))]
    pub secret_name: String,
    /// Key holding the access key id. Default: `AWS_ACCESS_KEY_ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id_key: Option<String>,
    /// Key holding the secret access key. Default: `AWS_SECRET_ACCESS_KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key_key: Option<String>,
}

impl S3Credentials {
    pub fn access_key_id_key(&self) -> &str {
        self.access_key_id_key.as_deref().unwrap_or("AWS_ACCESS_KEY_ID")
    }
    pub fn secret_access_key_key(&self) -> &str {
        self.secret_access_key_key.as_deref().unwrap_or("AWS_SECRET_ACCESS_KEY")
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadIdentity {
    /// Annotations for the ServiceAccount the pods run as.
    pub service_account_annotations: BTreeMap<String, String>,
}

impl ObjectStorage {
    /// The object-store URL the brokers and query nodes take (`--object-store`).
    pub fn url(&self) -> String {
        let mut url = format!("s3://{}", self.bucket);
        if let Some(prefix) = self.prefix.as_deref().map(|p| p.trim_matches('/')).filter(|p| !p.is_empty()) {
            url.push('/');
            url.push_str(prefix);
        }
        let mut params = Vec::new();
        if let Some(endpoint) = &self.endpoint {
            params.push(format!("endpoint={endpoint}"));
        }
        params.push(format!("region={}", self.region.as_deref().unwrap_or("us-east-1")));
        if let Some(path_style) = self.path_style {
            params.push(format!("path_style={path_style}"));
        }
        url.push('?');
        url.push_str(&params.join("&"));
        url
    }
}

/// Another resource in the same namespace, by name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct LocalRef {
    #[schemars(length(min = 1))]
    pub name: String,
}

/// One key of a Secret in the resource's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct SecretKeyRef {
    #[schemars(length(min = 1))]
    pub name: String,
    #[schemars(length(min = 1))]
    pub key: String,
}

/// When the kubelet pulls the image.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// How a Service is exposed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// What may be changed in the generated pods. Everything else is the operator's.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodOverrides {
    /// Extra pod labels (the operator's own labels win on conflict).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Extra pod annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Replaces the operator's affinity (zone spreading uses topology spread constraints and
    /// is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// Extra environment variables for the main container (after the operator's; a variable
    /// set here wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvVar>>,
    /// Seconds a pod gets between SIGTERM and SIGKILL. Default: 60 (brokers hand their
    /// partitions off first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub termination_grace_period_seconds: Option<i64>,
}

/// Settings passed to the process as `AUTOMQ_*` variables: keys are the process's flag names
/// without the dashes' prefix (`num-partitions`, `session-timeout-ms`...), values strings.
pub type ConfigOverrides = BTreeMap<String, String>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_store_url_carries_endpoint_region_and_prefix() {
        let storage = ObjectStorage {
            bucket: "data".into(),
            prefix: Some("/prod/".into()),
            endpoint: Some("http://minio:9000".into()),
            region: None,
            path_style: Some(true),
            credentials: None,
            workload_identity: None,
        };
        assert_eq!(storage.url(), "s3://data/prod?endpoint=http://minio:9000&region=us-east-1&path_style=true");
    }
}
