//! Pieces of pod templates shared by brokers and query nodes.

use std::collections::BTreeMap;

use automq_crds::common::{ObjectStorage, PodOverrides};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction, NodeAffinity, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, ObjectFieldSelector, PodSecurityContext, PodSpec, Probe, SeccompProfile,
    SecretKeySelector, SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec, Volume,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

/// Metadata of a child `name` of `owner`: same namespace, our labels, a controller owner
/// reference (so deleting the owner collects it).
pub fn child_meta<K: Resource<DynamicType = ()>>(owner: &K, name: String, app: &str, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: owner.namespace(),
        labels: Some(common_labels(app, &owner.name_any(), component)),
        owner_references: owner.controller_owner_ref(&()).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// Labels as a selector string (`status.selector` for the scale subresource).
pub fn selector_string(labels: &BTreeMap<String, String>) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// The pods' ServiceAccount, with the workload-identity annotations if any.
pub fn service_account(mut metadata: ObjectMeta, storage: &ObjectStorage) -> ServiceAccount {
    metadata.annotations = storage.workload_identity.as_ref().map(|w| w.service_account_annotations.clone());
    ServiceAccount { metadata, ..ServiceAccount::default() }
}

/// Headless: stable DNS names for every pod, also before it is ready (a broker must reach its
/// peers to become ready).
pub fn headless_service(metadata: ObjectMeta, selector: BTreeMap<String, String>, ports: Vec<ServicePort>) -> Service {
    Service {
        metadata,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// At most one pod of the workload evicted at a time.
pub fn pod_disruption_budget(metadata: ObjectMeta, selector: BTreeMap<String, String>) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata,
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector { match_labels: Some(selector), ..LabelSelector::default() }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

/// Labels on everything the operator makes for one resource.
pub fn common_labels(app: &str, instance: &str, component: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(app, instance, component);
    labels.insert("app.kubernetes.io/managed-by".into(), crate::FIELD_MANAGER.into());
    labels.insert("app.kubernetes.io/part-of".into(), "automq".into());
    labels
}

/// The subset that selects pods (stable for the life of the resource).
pub fn selector_labels(app: &str, instance: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), app.to_string()),
        ("app.kubernetes.io/instance".to_string(), instance.to_string()),
        ("app.kubernetes.io/component".to_string(), component.to_string()),
    ])
}

pub fn env(name: &str, value: String) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value), value_from: None }
}

/// A variable from a field of the pod (downward API).
pub fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: path.into(), api_version: None }),
            ..EnvVarSource::default()
        }),
    }
}

/// POD_NAME, POD_NAMESPACE and the node id: the StatefulSet ordinal, from the
/// `apps.kubernetes.io/pod-index` label (Kubernetes 1.28+), so a restarted pod keeps its id.
pub fn identity_env() -> Vec<EnvVar> {
    vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("AUTOMQ_NODE_ID", "metadata.labels['apps.kubernetes.io/pod-index']"),
    ]
}

/// Access keys from the Secret the spec names (nothing with workload identity).
pub fn credential_env(storage: &ObjectStorage) -> Vec<EnvVar> {
    let Some(credentials) = &storage.credentials else { return Vec::new() };
    let secret = |name: &str, key: &str| EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: credentials.secret_name.clone(),
                key: key.into(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
    };
    vec![
        secret("AWS_ACCESS_KEY_ID", credentials.access_key_id_key()),
        secret("AWS_SECRET_ACCESS_KEY", credentials.secret_access_key_key()),
    ]
}

/// The operator's variables, then the user's (a user's variable replaces one of ours).
pub fn merge_env(mut ours: Vec<EnvVar>, overrides: Option<&PodOverrides>) -> Vec<EnvVar> {
    for extra in overrides.and_then(|o| o.env.clone()).unwrap_or_default() {
        ours.retain(|e| e.name != extra.name);
        ours.push(extra);
    }
    ours
}

pub fn http_probe(path: &str, period_seconds: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period_seconds),
        failure_threshold: Some(failure_threshold),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

pub fn empty_dir(name: &str, size_limit: Option<Quantity>) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource { size_limit, ..EmptyDirVolumeSource::default() }),
        ..Volume::default()
    }
}

/// Non-root, no privilege escalation, read-only root filesystem (data goes to volumes).
pub fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
        ..SecurityContext::default()
    }
}

pub fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(65532),
        fs_group: Some(65532),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }),
        ..PodSecurityContext::default()
    }
}

/// Keeps pods in the listed zones (none listed: anywhere).
pub fn zone_affinity(zones: &[String]) -> Option<Affinity> {
    if zones.is_empty() {
        return None;
    }
    Some(Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: "topology.kubernetes.io/zone".into(),
                        operator: "In".into(),
                        values: Some(zones.to_vec()),
                    }]),
                    match_fields: None,
                }],
            }),
            ..NodeAffinity::default()
        }),
        ..Affinity::default()
    })
}

/// Applies `spec.podTemplate` to a generated pod spec and its annotations.
pub fn apply_overrides(
    pod: &mut PodSpec,
    annotations: &mut BTreeMap<String, String>,
    overrides: Option<&PodOverrides>,
) {
    let Some(o) = overrides else { return };
    if let Some(extra) = &o.annotations {
        for (k, v) in extra {
            annotations.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    if o.node_selector.is_some() {
        pod.node_selector = o.node_selector.clone();
    }
    if o.tolerations.is_some() {
        pod.tolerations = o.tolerations.clone();
    }
    if o.affinity.is_some() {
        pod.affinity = o.affinity.clone();
    }
    if o.priority_class_name.is_some() {
        pod.priority_class_name = o.priority_class_name.clone();
    }
    if o.image_pull_secrets.is_some() {
        pod.image_pull_secrets = o.image_pull_secrets.clone();
    }
    if o.termination_grace_period_seconds.is_some() {
        pod.termination_grace_period_seconds = o.termination_grace_period_seconds;
    }
}

/// Refuses `podTemplate.env` entries that would override what the operator sets: the pod's
/// identity, credentials, and every `AUTOMQ_*` setting (those go through `spec.config` and its
/// allowlist) except the log filter `AUTOMQ_LOG`.
pub fn check_env_overrides(overrides: Option<&PodOverrides>) -> Result<(), String> {
    const OWNED: &[&str] = &["POD_NAME", "POD_NAMESPACE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"];
    for var in overrides.and_then(|o| o.env.as_ref()).into_iter().flatten() {
        let name = var.name.as_str();
        if OWNED.contains(&name) || (name.starts_with("AUTOMQ_") && name != "AUTOMQ_LOG") {
            return Err(format!(
                "podTemplate.env cannot set {name}: the operator sets it (settings go in spec.config)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_env(names: &[&str]) -> PodOverrides {
        PodOverrides { env: Some(names.iter().map(|n| env(n, "x".into())).collect()), ..PodOverrides::default() }
    }

    #[test]
    fn env_overrides_cannot_replace_what_the_operator_sets() {
        assert!(check_env_overrides(Some(&with_env(&["AUTOMQ_LOG", "TZ", "HTTPS_PROXY"]))).is_ok());
        for owned in ["AUTOMQ_NODE_ID", "AUTOMQ_OBJECT_STORE", "POD_NAME", "AWS_SECRET_ACCESS_KEY"] {
            let err = check_env_overrides(Some(&with_env(&[owned]))).unwrap_err();
            assert!(err.contains(owned), "{err}");
        }
    }
}
