//! The children of an `AutoMQCluster`, built from its spec (pure functions, golden-tested).
//!
//! | Object | Name | Why |
//! |---|---|---|
//! | ServiceAccount | `{name}-broker` | pods' identity (workload identity annotations) |
//! | ConfigMap | `{name}-broker-config` | `AUTOMQ_*` settings shared by all brokers |
//! | Service (headless) | `{name}-broker` | per-broker DNS names (advertised addresses); the admin API |
//! | Service | `{name}-bootstrap` | bootstrap address for Kafka clients (Kafka ports only) |
//! | StatefulSet | `{name}-broker` | the brokers of pool `default`; Parallel pod management |
//! | StatefulSet | `{name}-broker-{pool}` | the brokers of each other pool (`spec.pools[]`) |
//! | PodDisruptionBudget | `{name}-broker` | at most one broker evicted at a time |

use std::collections::BTreeMap;

use automq_crds::cluster::WalKind;

use super::pools::{Pool, POOL_LABEL};
use automq_crds::AutoMQCluster;
use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerPort, EnvFromSource, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec,
    PodTemplateSpec, Service, ServiceAccount, ServicePort, ServiceSpec, TopologySpreadConstraint, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use crate::apply::hash_of;
use crate::pods as pod;
use crate::settings::{to_env, BROKER_SETTINGS};
use crate::Result;

pub const COMPONENT: &str = "broker";
/// Where the file WAL's volume is mounted.
pub const WAL_MOUNT: &str = "/var/lib/automq/wal";
pub const DATA_DIR: &str = "/var/lib/automq/data";

pub fn broker_name(cluster: &AutoMQCluster) -> String {
    format!("{}-broker", cluster.name_any())
}

pub fn bootstrap_name(cluster: &AutoMQCluster) -> String {
    format!("{}-bootstrap", cluster.name_any())
}

pub fn config_name(cluster: &AutoMQCluster) -> String {
    format!("{}-broker-config", cluster.name_any())
}

/// Labels that select this cluster's broker pods.
pub fn selector_labels(cluster: &AutoMQCluster) -> BTreeMap<String, String> {
    pod::selector_labels("automq-broker", &cluster.name_any(), COMPONENT)
}

/// `status.selector` (for the scale subresource).
pub fn selector_string(cluster: &AutoMQCluster) -> String {
    pod::selector_string(&selector_labels(cluster))
}

/// Labels that select the broker pods of one pool (every broker pod carries its pool's name).
pub fn pool_pod_labels(cluster: &AutoMQCluster, pool: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(cluster);
    labels.insert(POOL_LABEL.into(), pool.into());
    labels
}

/// A pool's StatefulSet selector. The default pool's is the cluster's (a StatefulSet's selector
/// cannot change, and it predates pools); its pods are told apart by their names (`rolling.rs`).
fn sts_selector(cluster: &AutoMQCluster, pool: &Pool) -> BTreeMap<String, String> {
    if pool.is_default() {
        selector_labels(cluster)
    } else {
        pool_pod_labels(cluster, &pool.name)
    }
}

fn meta(cluster: &AutoMQCluster, name: String) -> ObjectMeta {
    pod::child_meta(cluster, name, "automq-broker", COMPONENT)
}

pub fn service_account(cluster: &AutoMQCluster) -> ServiceAccount {
    pod::service_account(meta(cluster, broker_name(cluster)), &cluster.spec.object_storage)
}

/// The shared settings; `Err` names a `spec.config` key that may not be set.
pub fn config_map(cluster: &AutoMQCluster) -> Result<ConfigMap, String> {
    let spec = &cluster.spec;
    let mut data = to_env(spec.config.as_ref(), BROKER_SETTINGS)?;
    data.insert("AUTOMQ_OBJECT_STORE".into(), spec.object_storage.url());
    data.insert(
        "AUTOMQ_WAL".into(),
        match spec.wal.kind {
            WalKind::S3 => "s3".into(),
            WalKind::File => format!("file:{WAL_MOUNT}"),
        },
    );
    data.insert("AUTOMQ_DATA_DIR".into(), DATA_DIR.into());
    let listeners = spec.listeners.clone().unwrap_or_default();
    match listeners.named() {
        None => {
            data.insert("AUTOMQ_LISTEN".into(), format!("0.0.0.0:{}", listeners.kafka_port()));
        }
        Some(named) => data.extend(super::listeners::broker_settings(named)),
    }
    data.insert("AUTOMQ_HTTP_LISTEN".into(), format!("0.0.0.0:{}", listeners.http_port()));
    if let Some(placement) = &spec.placement {
        if let Some(pool) = &placement.default_pool {
            data.insert("AUTOMQ_DEFAULT_POOL".into(), pool.clone());
        }
        let rules: Vec<String> =
            placement.rules.iter().flatten().map(|r| format!("{}={}", r.pattern, r.pool)).collect();
        if !rules.is_empty() {
            data.insert("AUTOMQ_POOL_RULES".into(), rules.join("\n"));
        }
    }
    // Paths, mechanisms and user names only: certificates and passwords stay in their Secrets.
    data.extend(crate::security::broker_settings(spec.security.as_ref()));
    Ok(ConfigMap { metadata: meta(cluster, config_name(cluster)), data: Some(data), ..ConfigMap::default() })
}

/// The Kafka ports: `kafka`, or one per named listener.
fn kafka_ports(cluster: &AutoMQCluster) -> Vec<ServicePort> {
    let listeners = cluster.spec.listeners.clone().unwrap_or_default();
    match listeners.named() {
        None => vec![ServicePort {
            name: Some("kafka".into()),
            port: listeners.kafka_port(),
            target_port: Some(IntOrString::String("kafka".into())),
            ..ServicePort::default()
        }],
        Some(named) => super::listeners::service_ports(named),
    }
}

/// Per-broker DNS names (the advertised addresses) and the admin API.
pub fn headless_service(cluster: &AutoMQCluster) -> Service {
    let listeners = cluster.spec.listeners.clone().unwrap_or_default();
    let mut ports = kafka_ports(cluster);
    ports.push(ServicePort {
        name: Some("http".into()),
        port: listeners.http_port(),
        target_port: Some(IntOrString::String("http".into())),
        ..ServicePort::default()
    });
    pod::headless_service(meta(cluster, broker_name(cluster)), selector_labels(cluster), ports)
}

/// Kafka only (every listener's port): the HTTP port (admin and internal API) stays on the
/// headless Service, inside the cluster network, even when the bootstrap Service is a load
/// balancer.
pub fn bootstrap_service(cluster: &AutoMQCluster) -> Service {
    let listeners = cluster.spec.listeners.clone().unwrap_or_default();
    let mut metadata = meta(cluster, bootstrap_name(cluster));
    metadata.annotations = listeners.bootstrap_service_annotations.clone();
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: listeners.bootstrap_service_type.map(|t| t.as_str().to_string()),
            selector: Some(selector_labels(cluster)),
            ports: Some(kafka_ports(cluster)),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

pub fn pod_disruption_budget(cluster: &AutoMQCluster) -> PodDisruptionBudget {
    pod::pod_disruption_budget(meta(cluster, broker_name(cluster)), selector_labels(cluster))
}

/// The StatefulSet of one pool's brokers at `replicas`. `config` is the ConfigMap it reads,
/// hashed into a pod annotation so a settings change rolls the brokers.
pub fn stateful_set(cluster: &AutoMQCluster, pool: &Pool, replicas: i32, config: &ConfigMap) -> Result<StatefulSet> {
    let spec = &cluster.spec;
    let name = cluster.name_any();
    let namespace = cluster.namespace().unwrap_or_default();
    let listeners = spec.listeners.clone().unwrap_or_default();
    let headless = broker_name(cluster);
    let (kafka_port, http_port) = (listeners.kafka_port(), listeners.http_port());

    let named = listeners.named();
    let mut env = pod::identity_env();
    env.push(match named {
        None => pod::env("AUTOMQ_ADVERTISED_LISTENER", format!("$(POD_NAME).{headless}.{namespace}.svc:{kafka_port}")),
        Some(named) => {
            pod::env("AUTOMQ_ADVERTISED_LISTENERS", super::listeners::advertised(named, &headless, &namespace))
        }
    });
    env.push(pod::env("AUTOMQ_ADVERTISED_HTTP", format!("$(POD_NAME).{headless}.{namespace}.svc:{http_port}")));
    env.extend(pod::credential_env(&spec.object_storage));
    // The zone the pod landed in, copied from its node by the PodTopologyLabels admission
    // plugin (Kubernetes 1.35+; empty where it is off, and the broker then has no rack).
    env.push(pod::field_env("AUTOMQ_RACK", "metadata.labels['topology.kubernetes.io/zone']"));
    if !pool.is_default() {
        // The shared ConfigMap carries the default pool's WAL; these win over it.
        env.push(pod::env("AUTOMQ_POOL", pool.name.clone()));
        env.push(pod::env("AUTOMQ_NODE_ID_BASE", pool.node_id_base.to_string()));
        env.push(pod::env(
            "AUTOMQ_WAL",
            match pool.wal.kind {
                WalKind::S3 => "s3".into(),
                WalKind::File => format!("file:{WAL_MOUNT}"),
            },
        ));
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
    if let Some(named) = named {
        let (listener_volumes, listener_mounts) = super::listeners::volumes(named);
        volumes.extend(listener_volumes);
        mounts.extend(listener_mounts);
    }
    let mut claims = None;
    if let (WalKind::File, Some(volume)) = (pool.wal.kind, &pool.wal.volume) {
        mounts.push(VolumeMount { name: "wal".into(), mount_path: WAL_MOUNT.into(), ..VolumeMount::default() });
        claims = Some(vec![PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("wal".into()),
                // Claim templates cannot change on a StatefulSet: the default pool's keep the
                // labels they had before pools.
                labels: Some(sts_selector(cluster, pool)),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: volume.storage_class_name.clone(),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([("storage".to_string(), volume.size.clone())])),
                    ..VolumeResourceRequirements::default()
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            ..PersistentVolumeClaim::default()
        }]);
    }

    let container = Container {
        name: "broker".into(),
        image: Some(pool.image.clone()),
        image_pull_policy: spec.image_pull_policy.map(|p| p.as_str().to_string()),
        env: Some(pod::merge_env(env, spec.pod_template.as_ref())),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(k8s_openapi::api::core::v1::ConfigMapEnvSource {
                name: config_name(cluster),
                optional: None,
            }),
            ..EnvFromSource::default()
        }]),
        ports: Some(
            match named {
                None => vec![ContainerPort {
                    name: Some("kafka".into()),
                    container_port: kafka_port,
                    ..ContainerPort::default()
                }],
                Some(named) => super::listeners::container_ports(named),
            }
            .into_iter()
            .chain([ContainerPort { name: Some("http".into()), container_port: http_port, ..ContainerPort::default() }])
            .collect(),
        ),
        resources: pool.resources.clone(),
        readiness_probe: Some(pod::http_probe("/readyz", 2, 3)),
        liveness_probe: Some(pod::http_probe("/healthz", 10, 6)),
        volume_mounts: Some(mounts),
        security_context: Some(pod::container_security()),
        ..Container::default()
    };

    let zones = pool.zones.clone();
    let mut pod_spec = PodSpec {
        service_account_name: Some(broker_name(cluster)),
        containers: vec![container],
        volumes: Some(volumes),
        // Brokers hand their partitions off on SIGTERM; give them time to.
        termination_grace_period_seconds: Some(60),
        security_context: Some(pod::pod_security()),
        topology_spread_constraints: (!zones.is_empty()).then(|| {
            vec![TopologySpreadConstraint {
                max_skew: 1,
                topology_key: "topology.kubernetes.io/zone".into(),
                when_unsatisfiable: "DoNotSchedule".into(),
                label_selector: Some(LabelSelector {
                    match_labels: Some(pool_pod_labels(cluster, &pool.name)),
                    ..LabelSelector::default()
                }),
                ..TopologySpreadConstraint::default()
            }]
        }),
        affinity: pod::zone_affinity(&zones),
        ..PodSpec::default()
    };
    let mut annotations = BTreeMap::from([("automq.rs/config-hash".to_string(), hash_of(&config.data)?)]);
    pod::apply_overrides(&mut pod_spec, &mut annotations, spec.pod_template.as_ref());
    let mut labels = pod::common_labels("automq-broker", &name, COMPONENT);
    labels.insert(POOL_LABEL.into(), pool.name.clone());
    if let Some(extra) = spec.pod_template.as_ref().and_then(|t| t.labels.clone()) {
        labels = extra.into_iter().chain(labels).collect();
    }

    let mut metadata = meta(cluster, pool.sts_name(cluster));
    metadata.labels.get_or_insert_with(BTreeMap::new).insert(POOL_LABEL.into(), pool.name.clone());
    Ok(StatefulSet {
        metadata,
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(headless),
            // All new brokers start at once; they are stateless, order buys nothing.
            pod_management_policy: Some("Parallel".into()),
            // The operator restarts brokers itself, each drained first (`rolling.rs`).
            update_strategy: Some(StatefulSetUpdateStrategy { type_: Some("OnDelete".into()), rolling_update: None }),
            selector: LabelSelector { match_labels: Some(sts_selector(cluster, pool)), ..LabelSelector::default() },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec),
            },
            volume_claim_templates: claims,
            // Kept on scale-in and deletion: a broker killed before its hand-off finished has
            // acknowledged records only in its WAL, and the same node id (the same claim)
            // replays them when it comes back. Delete claims by hand once a broker is gone
            // for good (docs/operator.md).
            persistent_volume_claim_retention_policy: (pool.wal.kind == WalKind::File).then(|| {
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_scaled: Some("Retain".into()),
                    when_deleted: Some("Retain".into()),
                }
            }),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    })
}
