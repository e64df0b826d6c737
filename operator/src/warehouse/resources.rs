//! The children of an `AnalyticsWarehouse` (pure functions, golden-tested).
//!
//! | Object | Name | Why |
//! |---|---|---|
//! | ServiceAccount | `{name}-query` | pods' identity (workload identity annotations) |
//! | ConfigMap | `{name}-query-config` | `AUTOMQ_*` settings shared by all query nodes |
//! | Service (headless) | `{name}-query` | stable pod DNS names |
//! | Service | `{name}-mysql` | the MySQL endpoint clients use |
//! | StatefulSet | `{name}-query` | the query nodes (stable node ids); Parallel |
//! | PodDisruptionBudget | `{name}-query` | at most one query node evicted at a time |
//! | HorizontalPodAutoscaler | `{name}-query` | only with `spec.autoscaling` |

use std::collections::BTreeMap;

use automq_crds::AnalyticsWarehouse;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec, MetricTarget,
    ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapEnvSource, Container, ContainerPort, EnvFromSource, EnvVar, EnvVarSource, PodSpec,
    PodTemplateSpec, SecretKeySelector, Service, ServiceAccount, ServicePort, ServiceSpec, VolumeMount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::apply::hash_of;
use crate::cluster::scale::quantity_bytes;
use crate::pods as pod;
use crate::settings::{to_env, QUERY_NODE_SETTINGS};
use crate::Result;

pub const COMPONENT: &str = "query-node";
pub const HTTP_PORT: i32 = 8030;
pub const DATA_DIR: &str = "/var/lib/automq/data";
const DEFAULT_CACHE: &str = "2Gi";

pub fn query_name(w: &AnalyticsWarehouse) -> String {
    format!("{}-query", w.name_any())
}

pub fn mysql_name(w: &AnalyticsWarehouse) -> String {
    format!("{}-mysql", w.name_any())
}

fn config_name(w: &AnalyticsWarehouse) -> String {
    format!("{}-query-config", w.name_any())
}

pub fn selector_labels(w: &AnalyticsWarehouse) -> BTreeMap<String, String> {
    pod::selector_labels("automq-query-node", &w.name_any(), COMPONENT)
}

pub fn selector_string(w: &AnalyticsWarehouse) -> String {
    pod::selector_string(&selector_labels(w))
}

fn meta(w: &AnalyticsWarehouse, name: String) -> ObjectMeta {
    pod::child_meta(w, name, "automq-query-node", COMPONENT)
}

pub fn service_account(w: &AnalyticsWarehouse) -> ServiceAccount {
    pod::service_account(meta(w, query_name(w)), &w.spec.object_storage)
}

fn cache_size(w: &AnalyticsWarehouse) -> Quantity {
    w.spec.cache_size.clone().unwrap_or_else(|| Quantity(DEFAULT_CACHE.into()))
}

/// The shared settings. `kafka_bootstrap` is the referenced cluster's bootstrap address.
pub fn config_map(w: &AnalyticsWarehouse, kafka_bootstrap: Option<String>) -> Result<ConfigMap, String> {
    let spec = &w.spec;
    let mut data = to_env(spec.config.as_ref(), QUERY_NODE_SETTINGS)?;
    let cache = cache_size(w);
    let cache_bytes = quantity_bytes(&cache)
        .filter(|b| *b > 0.0)
        .ok_or_else(|| format!("cacheSize {:?} is not a positive quantity", cache.0))?;
    let cache_mb = (cache_bytes / (1024.0 * 1024.0)).max(1.0) as u64;
    data.insert("AUTOMQ_QUERY_CACHE_MB".into(), cache_mb.to_string());
    if let Some(disk) = &spec.disk_cache_size {
        let bytes = quantity_bytes(disk)
            .filter(|b| *b >= 0.0)
            .ok_or_else(|| format!("diskCacheSize {:?} is not a quantity of at least 0", disk.0))?;
        data.insert("AUTOMQ_QUERY_DISK_CACHE_MB".into(), ((bytes / (1024.0 * 1024.0)) as u64).to_string());
    }
    data.insert("AUTOMQ_OBJECT_STORE".into(), spec.object_storage.url());
    data.insert("AUTOMQ_DATA_DIR".into(), DATA_DIR.into());
    data.insert("AUTOMQ_MYSQL_LISTEN".into(), format!("0.0.0.0:{}", spec.mysql_port()));
    data.insert("AUTOMQ_QUERY_HTTP_LISTEN".into(), format!("0.0.0.0:{HTTP_PORT}"));
    if let Some(bootstrap) = kafka_bootstrap {
        data.insert("AUTOMQ_DEFAULT_KAFKA_BROKERS".into(), bootstrap);
    }
    // Paths and flags only: certificates and passwords stay in their Secrets.
    data.extend(crate::security::query_node_settings(spec.security.as_ref()));
    Ok(ConfigMap { metadata: meta(w, config_name(w)), data: Some(data), ..ConfigMap::default() })
}

fn ports(w: &AnalyticsWarehouse) -> Vec<ServicePort> {
    vec![
        ServicePort {
            name: Some("mysql".into()),
            port: w.spec.mysql_port(),
            target_port: Some(IntOrString::String("mysql".into())),
            ..ServicePort::default()
        },
        ServicePort {
            name: Some("http".into()),
            port: HTTP_PORT,
            target_port: Some(IntOrString::String("http".into())),
            ..ServicePort::default()
        },
    ]
}

pub fn headless_service(w: &AnalyticsWarehouse) -> Service {
    pod::headless_service(meta(w, query_name(w)), selector_labels(w), ports(w))
}

/// The MySQL endpoint: only ready query nodes get queries.
pub fn mysql_service(w: &AnalyticsWarehouse) -> Service {
    Service {
        metadata: meta(w, mysql_name(w)),
        spec: Some(ServiceSpec {
            type_: w.spec.service_type.map(|t| t.as_str().to_string()),
            selector: Some(selector_labels(w)),
            ports: Some(ports(w).into_iter().take(1).collect()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

pub fn pod_disruption_budget(w: &AnalyticsWarehouse) -> PodDisruptionBudget {
    pod::pod_disruption_budget(meta(w, query_name(w)), selector_labels(w))
}

/// A HorizontalPodAutoscaler driving this warehouse's scale subresource on CPU.
pub fn horizontal_pod_autoscaler(w: &AnalyticsWarehouse) -> Option<HorizontalPodAutoscaler> {
    let policy = w.spec.autoscaling.as_ref()?;
    Some(HorizontalPodAutoscaler {
        metadata: meta(w, query_name(w)),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some(AnalyticsWarehouse::api_version(&()).into_owned()),
                kind: AnalyticsWarehouse::kind(&()).into_owned(),
                name: w.name_any(),
            },
            min_replicas: Some(policy.min_replicas),
            max_replicas: policy.max_replicas,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".into(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".into(),
                    target: MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(policy.target_cpu_utilization),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            behavior: None,
        }),
        ..HorizontalPodAutoscaler::default()
    })
}

pub fn stateful_set(w: &AnalyticsWarehouse, config: &ConfigMap) -> Result<StatefulSet> {
    let spec = &w.spec;
    let mut env = pod::identity_env();
    env.extend(pod::credential_env(&spec.object_storage));
    if let Some(secret) = spec.root_password() {
        env.push(EnvVar {
            name: "AUTOMQ_ROOT_PASSWORD".into(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.name.clone(),
                    key: secret.key.clone(),
                    optional: None,
                }),
                ..EnvVarSource::default()
            }),
        });
    }
    let mut mounts = vec![VolumeMount { name: "data".into(), mount_path: DATA_DIR.into(), ..VolumeMount::default() }];
    let mut volumes = vec![pod::empty_dir("data", None)];
    let security = spec.security.as_ref();
    let (secret_volumes, secret_mounts) = crate::security::volumes(
        security.and_then(|s| s.tls.as_ref()),
        security.and_then(|s| s.users.as_deref()).unwrap_or_default(),
    );
    volumes.extend(secret_volumes);
    mounts.extend(secret_mounts);
    let container = Container {
        name: "query-node".into(),
        image: Some(spec.image.clone()),
        image_pull_policy: spec.image_pull_policy.map(|p| p.as_str().to_string()),
        env: Some(pod::merge_env(env, spec.pod_template.as_ref())),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource { name: config_name(w), optional: None }),
            ..EnvFromSource::default()
        }]),
        ports: Some(vec![
            ContainerPort { name: Some("mysql".into()), container_port: spec.mysql_port(), ..ContainerPort::default() },
            ContainerPort { name: Some("http".into()), container_port: HTTP_PORT, ..ContainerPort::default() },
        ]),
        resources: spec.resources.clone(),
        readiness_probe: Some(pod::http_probe("/readyz", 2, 3)),
        liveness_probe: Some(pod::http_probe("/healthz", 10, 6)),
        volume_mounts: Some(mounts),
        security_context: Some(pod::container_security()),
        ..Container::default()
    };
    let mut pod_spec = PodSpec {
        service_account_name: Some(query_name(w)),
        containers: vec![container],
        volumes: Some(volumes),
        termination_grace_period_seconds: Some(60),
        security_context: Some(pod::pod_security()),
        ..PodSpec::default()
    };
    let mut annotations = BTreeMap::from([("automq.rs/config-hash".to_string(), hash_of(&config.data)?)]);
    pod::apply_overrides(&mut pod_spec, &mut annotations, spec.pod_template.as_ref());
    let mut labels = pod::common_labels("automq-query-node", &w.name_any(), COMPONENT);
    if let Some(extra) = spec.pod_template.as_ref().and_then(|t| t.labels.clone()) {
        labels = extra.into_iter().chain(labels).collect();
    }
    Ok(StatefulSet {
        metadata: meta(w, query_name(w)),
        spec: Some(StatefulSetSpec {
            // With an HPA, the HPA sets `spec.replicas` of the warehouse, which lands here.
            replicas: Some(spec.replicas),
            service_name: Some(query_name(w)),
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector { match_labels: Some(selector_labels(w)), ..LabelSelector::default() },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec),
            },
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    })
}
