//! Every child the operator renders for clusters that declare no named listeners, compared with
//! a committed snapshot (`tests/snapshots/clusters-without-listeners.json`). Each child is
//! applied under the hash of what is rendered (`apply.rs`), so an unchanged rendering means an
//! operator upgrade writes nothing and rolls no broker. Features that add fields must leave
//! these objects byte-for-byte as they were.
//!
//! A deliberate change: `UPDATE_SNAPSHOTS=1 cargo nextest run -p automq-operator snapshots`,
//! then review the diff (a changed StatefulSet template rolls every cluster on upgrade).
#![allow(clippy::unwrap_used)]

use automq_crds::AutoMQCluster;
use automq_operator::apply::hash_of;
use automq_operator::cluster::{pools, resources};
use serde_json::{json, Value};

fn cluster(name: &str, spec: Value) -> AutoMQCluster {
    serde_json::from_value(json!({
        "apiVersion": "automq.rs/v1alpha1",
        "kind": "AutoMQCluster",
        "metadata": {"name": name, "namespace": "prod", "uid": "7b0c7c2e-0000-4000-8000-00000000000a", "generation": 4},
        "spec": spec
    }))
    .unwrap()
}

/// The shapes of cluster in use before named listeners: the defaults, custom ports with a load
/// balancer, the file WAL, pools, placement and every security field.
fn clusters() -> Vec<AutoMQCluster> {
    let base = json!({
        "replicas": 3,
        "image": "ghcr.io/automq-rs/automq-broker:0.1.0",
        "objectStorage": {"bucket": "data", "endpoint": "http://minio:9000", "credentials": {"secretName": "s3"}},
        "wal": {"kind": "S3"}
    });
    let mut ports = base.clone();
    ports["listeners"] = json!({"kafkaPort": 19092, "httpPort": 19644, "bootstrapServiceType": "LoadBalancer",
                                "bootstrapServiceAnnotations": {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}});
    ports["wal"] = json!({"kind": "File", "volume": {"size": "10Gi", "storageClassName": "gp3"}});
    ports["zones"] = json!(["eu-west-1a", "eu-west-1b"]);
    ports["config"] = json!({"num-partitions": "6"});
    ports["podTemplate"] = json!({"labels": {"team": "data"}, "env": [{"name": "AUTOMQ_LOG", "value": "debug"}]});
    let mut pooled = base.clone();
    pooled["pools"] = json!([{"name": "latency", "replicas": 2, "nodeIdBase": 1000,
                              "wal": {"kind": "File", "volume": {"size": "20Gi"}}, "image": "ghcr.io/automq-rs/automq-broker:0.2.0"}]);
    pooled["placement"] = json!({"defaultPool": "default", "rules": [{"pattern": "outbox\\..*", "pool": "latency"}]});
    let mut secure = base.clone();
    secure["security"] = json!({
        "tls": {"secretName": "kafka-tls", "certKey": "server.pem", "keyKey": "server.key"},
        "sasl": {"mechanisms": ["SCRAM-SHA-512", "PLAIN"]},
        "users": [{"name": "orders", "passwordSecret": {"name": "kafka-users", "key": "orders"}},
                  {"name": "admin", "passwordSecret": {"name": "kafka-users", "key": "admin"}}],
        "authorization": {"type": "acl", "superUsers": ["admin"], "allowEveryoneIfNoAclFound": true}
    });
    vec![cluster("plain", base), cluster("ports", ports), cluster("pooled", pooled), cluster("secure", secure)]
}

/// Every child of `cluster` as the operator applies it (before the applied-hash annotation).
fn render(cluster: &AutoMQCluster) -> Value {
    let config = resources::config_map(cluster).unwrap();
    let statefulsets: Vec<Value> = pools::pools(cluster)
        .iter()
        .map(|pool| {
            serde_json::to_value(resources::stateful_set(cluster, pool, pool.replicas, &config).unwrap()).unwrap()
        })
        .collect();
    let hashes: Vec<String> = pools::pools(cluster)
        .iter()
        .map(|pool| hash_of(&resources::stateful_set(cluster, pool, pool.replicas, &config).unwrap()).unwrap())
        .collect();
    json!({
        "serviceAccount": resources::service_account(cluster),
        "configMap": config,
        "headlessService": resources::headless_service(cluster),
        "bootstrapService": resources::bootstrap_service(cluster),
        "podDisruptionBudget": resources::pod_disruption_budget(cluster),
        "statefulSets": statefulsets,
        // What `apply` compares with the live objects' annotation: the same hash, no write.
        "appliedHashes": {
            "configMap": hash_of(&config).unwrap(),
            "headlessService": hash_of(&resources::headless_service(cluster)).unwrap(),
            "bootstrapService": hash_of(&resources::bootstrap_service(cluster)).unwrap(),
            "statefulSets": hashes,
        },
    })
}

#[test]
fn clusters_without_named_listeners_render_as_before() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/clusters-without-listeners.json");
    let rendered: serde_json::Map<String, Value> =
        clusters().iter().map(|c| (c.metadata.name.clone().unwrap(), render(c))).collect();
    let rendered = Value::Object(rendered);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&rendered).unwrap() + "\n").unwrap();
    }
    let committed: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for (name, objects) in rendered.as_object().unwrap() {
        for (child, object) in objects.as_object().unwrap() {
            assert_eq!(
                object, &committed[name][child],
                "cluster {name}: the {child} changed: every existing cluster would be rewritten (and rolled, for a \
                 StatefulSet or the ConfigMap) on upgrade"
            );
        }
    }
    assert_eq!(rendered, committed);
}
