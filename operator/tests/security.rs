//! `spec.security` of clusters and warehouses against the fake API server: certificates and
//! passwords are referenced (Secret volumes, `secretKeyRef`), never copied. The fake Secrets
//! hold distinctive values, and every request body the operator sent, every object it left
//! behind and every line it logged is searched for them, plain and base64-encoded.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use automq_crds::{AnalyticsWarehouse, AutoMQCluster};
use automq_operator::{cluster, warehouse, Context};
use base64::Engine;
use kube::runtime::controller::Action;
use serde_json::{json, Value};
use support::{condition, context, within, ApiServer, CapturedLogs, FakeHttp, Logged};

const CLUSTER: &str = "/apis/automq.rs/v1alpha1/namespaces/default/automqclusters/demo";
const WAREHOUSE: &str = "/apis/automq.rs/v1alpha1/namespaces/default/analyticswarehouses/wh";
const SA: &str = "/api/v1/namespaces/default/serviceaccounts/demo-broker";
const CM: &str = "/api/v1/namespaces/default/configmaps/demo-broker-config";
const HEADLESS: &str = "/api/v1/namespaces/default/services/demo-broker";
const BOOTSTRAP: &str = "/api/v1/namespaces/default/services/demo-bootstrap";
const PDB: &str = "/apis/policy/v1/namespaces/default/poddisruptionbudgets/demo-broker";
const STS: &str = "/apis/apps/v1/namespaces/default/statefulsets/demo-broker";
const WH_CM: &str = "/api/v1/namespaces/default/configmaps/wh-query-config";
const WH_STS: &str = "/apis/apps/v1/namespaces/default/statefulsets/wh-query";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";
const PODS: &str = "/api/v1/namespaces/default/pods";
const SECRETS: &str = "/api/v1/namespaces/default/secrets";

/// What the fake Secrets hold; none of it may appear anywhere the operator writes or logs.
const TLS_CERT: &str = "-----BEGIN CERTIFICATE-----\nCERT-7d1f0c-only-in-the-secret\n-----END CERTIFICATE-----\n";
const TLS_KEY: &str = "-----BEGIN PRIVATE KEY-----\nKEY-a93b55-only-in-the-secret\n-----END PRIVATE KEY-----\n";
const ADMIN_PASSWORD: &str = "pw-admin-5e2c91-only-in-the-secret";
const ORDERS_PASSWORD: &str = "pw-orders-0b7d44-only-in-the-secret";
const ANALYTICS_PASSWORD: &str = "pw-analytics-81aa03-only-in-the-secret";
const ROOT_PASSWORD: &str = "pw-root-c4e812-only-in-the-secret";
const BI_PASSWORD: &str = "pw-bi-3f60d7-only-in-the-secret";
const ROTATED_KEY: &str = "-----BEGIN PRIVATE KEY-----\nKEY-rotated-11c2e9\n-----END PRIVATE KEY-----\n";
const ALL_VALUES: [&str; 8] =
    [TLS_CERT, TLS_KEY, ADMIN_PASSWORD, ORDERS_PASSWORD, ANALYTICS_PASSWORD, ROOT_PASSWORD, BI_PASSWORD, ROTATED_KEY];

fn get(path: &str) -> String {
    format!("GET {path}")
}
fn patch(path: &str) -> String {
    format!("PATCH {path}")
}
/// Nothing but the resource's status (and events) written.
fn only_status_written(lines: &[String]) -> bool {
    lines.iter().filter(|l| l.starts_with("PATCH")).all(|l| l.ends_with("/status"))
}
fn secret_path(name: &str) -> String {
    format!("{SECRETS}/{name}")
}

fn b64(value: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(value)
}

fn secret(name: &str, data: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> = data.iter().map(|(k, v)| (k.to_string(), json!(b64(v)))).collect();
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
           "metadata": {"name": name, "namespace": "default"}, "data": data})
}

fn secure_cluster() -> Value {
    json!({
        "apiVersion": "automq.rs/v1alpha1",
        "kind": "AutoMQCluster",
        "metadata": {"name": "demo", "namespace": "default", "uid": "7b0c7c2e-0000-4000-8000-000000000001",
                     "generation": 1},
        "spec": {
            "replicas": 3,
            "image": "ghcr.io/automq-rs/automq-broker:0.1.0",
            "objectStorage": {"bucket": "data", "endpoint": "http://minio:9000", "credentials": {"secretName": "s3"}},
            "wal": {"kind": "S3"},
            "security": {
                "tls": {"secretName": "kafka-tls"},
                "sasl": {"mechanisms": ["SCRAM-SHA-512", "PLAIN"]},
                "users": [
                    {"name": "orders", "passwordSecret": {"name": "kafka-users", "key": "orders"}},
                    {"name": "admin", "passwordSecret": {"name": "kafka-users", "key": "admin"}}
                ],
                "authorization": {"type": "acl", "superUsers": ["admin"]}
            }
        }
    })
}

fn secure_warehouse() -> Value {
    json!({
        "apiVersion": "automq.rs/v1alpha1",
        "kind": "AnalyticsWarehouse",
        "metadata": {"name": "wh", "namespace": "default", "uid": "7b0c7c2e-0000-4000-8000-000000000002",
                     "generation": 1},
        "spec": {
            "replicas": 2,
            "image": "ghcr.io/automq-rs/automq-query-node:0.1.0",
            "objectStorage": {"bucket": "tables"},
            "security": {
                "tls": {"secretName": "wh-tls", "certKey": "server.pem", "keyKey": "server.key"},
                "requireSecureTransport": true,
                "rootPasswordSecret": {"name": "wh-passwords", "key": "root"},
                "users": [{"name": "bi", "passwordSecret": {"name": "wh-passwords", "key": "bi"}}]
            }
        }
    })
}

struct World {
    api: ApiServer,
    admin: FakeHttp,
    ctx: Arc<Context>,
    /// Every request of every pass, bodies included.
    seen: Mutex<Vec<Logged>>,
    logs: CapturedLogs,
}

impl World {
    async fn new(logs: CapturedLogs) -> World {
        let api = ApiServer::default();
        api.put(&secret_path("kafka-tls"), secret("kafka-tls", &[("tls.crt", TLS_CERT), ("tls.key", TLS_KEY)]));
        api.put(
            &secret_path("kafka-users"),
            secret(
                "kafka-users",
                &[("admin", ADMIN_PASSWORD), ("orders", ORDERS_PASSWORD), ("analytics", ANALYTICS_PASSWORD)],
            ),
        );
        api.put(&secret_path("wh-tls"), secret("wh-tls", &[("server.pem", TLS_CERT), ("server.key", TLS_KEY)]));
        api.put(&secret_path("wh-passwords"), secret("wh-passwords", &[("root", ROOT_PASSWORD), ("bi", BI_PASSWORD)]));
        let admin = FakeHttp::default();
        let base = admin.start().await;
        let ctx = context(&api, &base);
        World { api, admin, ctx, seen: Mutex::new(Vec::new()), logs }
    }

    fn lines(&self) -> Vec<String> {
        let log = self.api.take_log();
        let lines = log.iter().map(Logged::line).collect();
        self.seen.lock().unwrap().extend(log);
        lines
    }

    async fn pass(&self) -> (Result<Action, automq_operator::Error>, Vec<String>) {
        let obj: AutoMQCluster = serde_json::from_value(self.api.get(CLUSTER).unwrap()).unwrap();
        let result = within(cluster::reconcile(Arc::new(obj.clone()), self.ctx.clone())).await;
        if let Err(e) = &result {
            // What the controller would log for it.
            cluster::error_policy(Arc::new(obj), e, self.ctx.clone());
        }
        (result, self.lines())
    }

    async fn warehouse_pass(&self) -> (Result<Action, automq_operator::Error>, Vec<String>) {
        let obj: AnalyticsWarehouse = serde_json::from_value(self.api.get(WAREHOUSE).unwrap()).unwrap();
        let result = within(warehouse::reconcile(Arc::new(obj.clone()), self.ctx.clone())).await;
        if let Err(e) = &result {
            warehouse::error_policy(Arc::new(obj), e, self.ctx.clone());
        }
        (result, self.lines())
    }

    fn settle(&self, sts: &str) {
        self.api.edit(sts, |s| {
            let n = s["spec"]["replicas"].clone();
            let generation = s["metadata"]["generation"].clone();
            s["status"] =
                json!({"replicas": n, "readyReplicas": n, "updatedReplicas": n, "observedGeneration": generation});
        });
    }

    fn brokers(&self, ids: &[i32]) {
        let list: Vec<Value> = ids
            .iter()
            .map(|id| {
                json!({"node_id": id, "host": format!("demo-broker-{id}"), "port": 9092, "rack": null, "wal": "s3",
                       "alive": true, "draining": false, "leaving": false, "ready": true,
                       "assigned": 4, "leading": 4})
            })
            .collect();
        let state = json!({"cluster_id": "c1", "controller": {"node_id": 0, "epoch": 3}, "brokers": list});
        self.admin.route("GET", "/admin/v1/cluster", 200, state);
    }

    /// The secure cluster created and settled (3 ready brokers).
    async fn converged_cluster(logs: CapturedLogs) -> World {
        let world = World::new(logs).await;
        world.api.put(CLUSTER, secure_cluster());
        world.pass().await.0.unwrap();
        world.pass().await.0.unwrap();
        world.settle(STS);
        world.brokers(&[0, 1, 2]);
        world.pass().await.0.unwrap();
        assert_eq!(condition(&world.api.get(CLUSTER).unwrap(), "Ready")["status"], "True");
        world.admin.take_calls();
        world
    }

    /// No Secret value in any request body the operator sent, in any object stored by the fake
    /// API server but the Secrets themselves, nor in any log line.
    fn assert_no_secret_value_anywhere(&self) {
        support::assert_no_secret_value(&self.api, &self.seen.lock().unwrap(), &self.logs.text(), &ALL_VALUES);
    }
}

fn pod_spec(sts: &Value) -> &Value {
    &sts["spec"]["template"]["spec"]
}

fn volume<'a>(sts: &'a Value, name: &str) -> &'a Value {
    pod_spec(sts)["volumes"].as_array().unwrap().iter().find(|v| v["name"] == name).unwrap()
}

fn mount<'a>(sts: &'a Value, name: &str) -> &'a Value {
    pod_spec(sts)["containers"][0]["volumeMounts"].as_array().unwrap().iter().find(|m| m["name"] == name).unwrap()
}

fn env_of(sts: &Value) -> Vec<Value> {
    pod_spec(sts)["containers"][0]["env"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_secure_cluster_mounts_its_secrets_and_copies_no_value_anywhere() {
    let (logs, _guard) = CapturedLogs::start();
    let world = World::new(logs).await;
    world.api.put(CLUSTER, secure_cluster());
    let (result, lines) = world.pass().await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert_eq!(lines, vec![patch(CLUSTER)], "the finalizer first");

    // Each Secret read once (existence and key names), then the children as always.
    let (result, lines) = world.pass().await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(2)));
    let mut expected = vec![get(&secret_path("kafka-tls")), get(&secret_path("kafka-users")), get(STS)];
    for path in [SA, CM, HEADLESS, BOOTSTRAP, PDB] {
        expected.extend([get(path), patch(path)]);
    }
    expected.extend([patch(STS), patch(&format!("{CLUSTER}/status"))]);
    assert_eq!(lines, expected);

    let sts = world.api.get(STS).unwrap();
    assert_eq!(
        volume(&sts, "tls")["secret"],
        json!({"secretName": "kafka-tls", "defaultMode": 0o440,
               "items": [{"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}]})
    );
    assert_eq!(
        volume(&sts, "users")["projected"],
        json!({"defaultMode": 0o440, "sources": [{"secret": {"name": "kafka-users",
               "items": [{"key": "admin", "path": "admin"}, {"key": "orders", "path": "orders"}]}}]})
    );
    assert_eq!(mount(&sts, "tls"), &json!({"name": "tls", "mountPath": "/etc/automq/tls", "readOnly": true}));
    assert_eq!(mount(&sts, "users"), &json!({"name": "users", "mountPath": "/etc/automq/users", "readOnly": true}));
    // No subPath anywhere: the kubelet updates only whole-volume mounts in place.
    assert!(pod_spec(&sts)["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m.get("subPath").is_none()));
    // Only the object-store keys come from Secrets through the environment, by reference.
    for var in env_of(&sts) {
        if let Some(from) = var["valueFrom"].get("secretKeyRef") {
            assert_eq!(from["name"], "s3", "{var}");
        }
    }

    let cm = world.api.get(CM).unwrap();
    let data = &cm["data"];
    assert_eq!(data["AUTOMQ_TLS_CERT"], "/etc/automq/tls/tls.crt");
    assert_eq!(data["AUTOMQ_TLS_KEY"], "/etc/automq/tls/tls.key");
    assert_eq!(data["AUTOMQ_SASL_MECHANISMS"], "SCRAM-SHA-512,PLAIN");
    assert_eq!(data["AUTOMQ_SCRAM_USERS_DIR"], "/etc/automq/users");
    assert_eq!(data["AUTOMQ_AUTHORIZER"], "acl");
    assert_eq!(data["AUTOMQ_SUPER_USERS"], "User:admin");
    assert_eq!(data["AUTOMQ_ALLOW_EVERYONE_IF_NO_ACL_FOUND"], "false");
    assert_eq!(world.api.get(CLUSTER).unwrap()["status"]["securityProtocol"], "SASL_SSL");

    // Settled, then a quiet pass: the Secrets are looked at again, nothing is written.
    world.settle(STS);
    world.brokers(&[0, 1, 2]);
    world.pass().await.0.unwrap();
    world.lines();
    let (result, lines) = world.pass().await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(300)));
    let mut reads = vec![get(&secret_path("kafka-tls")), get(&secret_path("kafka-users"))];
    reads.extend([STS, SA, CM, HEADLESS, BOOTSTRAP, PDB].iter().map(|p| get(p)));
    assert_eq!(lines, reads, "reads only");

    world.assert_no_secret_value_anywhere();
}

#[tokio::test]
async fn a_secure_warehouse_mounts_its_secrets_and_copies_no_value_anywhere() {
    let (logs, _guard) = CapturedLogs::start();
    let world = World::new(logs).await;
    world.api.put(WAREHOUSE, secure_warehouse());
    world.admin.route("GET", "/readyz", 200, json!("ok"));
    world.warehouse_pass().await.0.unwrap();
    let (result, lines) = world.warehouse_pass().await;
    result.unwrap();
    assert_eq!(&lines[..2], [get(&secret_path("wh-tls")), get(&secret_path("wh-passwords"))]);
    assert!(lines.contains(&patch(WH_STS)), "{lines:?}");

    let sts = world.api.get(WH_STS).unwrap();
    assert_eq!(
        volume(&sts, "tls")["secret"]["items"],
        json!([{"key": "server.pem", "path": "tls.crt"}, {"key": "server.key", "path": "tls.key"}])
    );
    assert_eq!(
        volume(&sts, "users")["projected"]["sources"],
        json!([{"secret": {"name": "wh-passwords", "items": [{"key": "bi", "path": "bi"}]}}])
    );
    let root = env_of(&sts).into_iter().find(|e| e["name"] == "AUTOMQ_ROOT_PASSWORD").unwrap();
    assert_eq!(
        root,
        json!({"name": "AUTOMQ_ROOT_PASSWORD",
                            "valueFrom": {"secretKeyRef": {"name": "wh-passwords", "key": "root"}}})
    );
    let cm = world.api.get(WH_CM).unwrap();
    assert_eq!(cm["data"]["AUTOMQ_MYSQL_TLS_CERT"], "/etc/automq/tls/tls.crt");
    assert_eq!(cm["data"]["AUTOMQ_MYSQL_TLS_KEY"], "/etc/automq/tls/tls.key");
    assert_eq!(cm["data"]["AUTOMQ_REQUIRE_SECURE_TRANSPORT"], "true");
    assert_eq!(cm["data"]["AUTOMQ_USERS_DIR"], "/etc/automq/users");

    world.assert_no_secret_value_anywhere();
}

#[tokio::test]
async fn a_missing_secret_or_key_is_a_condition_and_nothing_is_applied() {
    let (logs, _guard) = CapturedLogs::start();
    let world = World::new(logs).await;
    world.api.remove(&secret_path("kafka-tls"));
    let mut cluster = secure_cluster();
    cluster["metadata"]["finalizers"] = json!(["automq.rs/broker-shutdown"]);
    world.api.put(CLUSTER, cluster);

    let (result, lines) = world.pass().await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)), "looked for again soon");
    assert_eq!(
        lines,
        vec![
            get(&secret_path("kafka-tls")),
            get(&secret_path("kafka-users")),
            patch(&format!("{CLUSTER}/status")),
            format!("POST {EVENTS}")
        ]
    );
    let status = world.api.get(CLUSTER).unwrap();
    let degraded = condition(&status, "Degraded");
    assert_eq!((degraded["status"].as_str(), degraded["reason"].as_str()), (Some("True"), Some("SecretNotFound")));
    assert_eq!(degraded["message"], "Secret \"kafka-tls\" not found (security.tls)");
    assert_eq!(condition(&status, "Ready")["reason"], "SecretNotFound");
    assert!(world.api.get(STS).is_none() && world.api.get(CM).is_none(), "nothing applied");
    let event = world.seen.lock().unwrap().iter().find(|l| l.path == EVENTS).unwrap().body.clone();
    assert_eq!((event["type"].as_str(), event["reason"].as_str()), (Some("Warning"), Some("SecretNotFound")));

    // The Secret exists, but one user's key is missing.
    world.api.put(&secret_path("kafka-tls"), secret("kafka-tls", &[("tls.crt", TLS_CERT), ("tls.key", TLS_KEY)]));
    world.api.put(&secret_path("kafka-users"), secret("kafka-users", &[("admin", ADMIN_PASSWORD)]));
    let (result, lines) = world.pass().await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));
    assert!(only_status_written(&lines), "{lines:?}");
    let degraded = condition(&world.api.get(CLUSTER).unwrap(), "Degraded");
    assert_eq!(degraded["message"], "Secret \"kafka-users\" has no key \"orders\" (security.users[orders])");

    // Both there: the cluster is created.
    world.api.put(
        &secret_path("kafka-users"),
        secret("kafka-users", &[("admin", ADMIN_PASSWORD), ("orders", ORDERS_PASSWORD)]),
    );
    let (result, lines) = world.pass().await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(2)));
    assert!(lines.contains(&patch(STS)), "{lines:?}");
    assert_eq!(condition(&world.api.get(CLUSTER).unwrap(), "Degraded")["status"], "False");

    // A running cluster whose Secret goes away: a spec change waits (no broker would start).
    world.settle(STS);
    world.brokers(&[0, 1, 2]);
    world.pass().await.0.unwrap();
    world.api.remove(&secret_path("kafka-users"));
    world.api.edit_spec(CLUSTER, |spec| spec["image"] = json!("ghcr.io/automq-rs/automq-broker:0.2.0"));
    let (_, lines) = world.pass().await;
    assert!(!lines.contains(&patch(STS)), "{lines:?}");
    let degraded = condition(&world.api.get(CLUSTER).unwrap(), "Degraded");
    assert_eq!(degraded["message"], "Secret \"kafka-users\" not found (security.users[orders], security.users[admin])");

    // The same for a warehouse.
    world.api.remove(&secret_path("wh-passwords"));
    let mut w = secure_warehouse();
    w["metadata"]["finalizers"] = json!(["automq.rs/query-node-shutdown"]);
    world.api.put(WAREHOUSE, w);
    let (result, lines) = world.warehouse_pass().await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));
    assert!(only_status_written(&lines), "{lines:?}");
    let degraded = condition(&world.api.get(WAREHOUSE).unwrap(), "Degraded");
    assert_eq!(degraded["reason"], "SecretNotFound");
    assert!(degraded["message"].as_str().unwrap().starts_with("Secret \"wh-passwords\" not found"), "{degraded}");

    world.assert_no_secret_value_anywhere();
}

/// A broker pod as the StatefulSet controller makes it, Ready, from template `revision`.
fn broker_pod(id: i32, revision: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": format!("demo-broker-{id}"), "namespace": "default",
                        "labels": {"app.kubernetes.io/name": "automq-broker", "app.kubernetes.io/instance": "demo",
                                   "app.kubernetes.io/component": "broker", "automq.rs/pool": "default",
                                   "controller-revision-hash": revision}},
           "status": {"podIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]}})
}

#[tokio::test]
async fn changing_the_tls_secret_rolls_the_brokers_each_drained_first() {
    let (logs, _guard) = CapturedLogs::start();
    let world = World::converged_cluster(logs).await;
    for id in 0..3 {
        world.api.put(&format!("{PODS}/demo-broker-{id}"), broker_pod(id, "rev1"));
    }
    world.api.put(&secret_path("kafka-tls-2"), secret("kafka-tls-2", &[("tls.crt", TLS_CERT), ("tls.key", TLS_KEY)]));
    world.lines();
    world.api.edit_spec(CLUSTER, |spec| spec["security"]["tls"]["secretName"] = json!("kafka-tls-2"));
    let (_, lines) = world.pass().await;
    assert!(lines.contains(&patch(STS)), "{lines:?}");
    assert!(!lines.contains(&patch(CM)), "the paths did not change: {lines:?}");
    assert_eq!(volume(&world.api.get(STS).unwrap(), "tls")["secret"]["secretName"], "kafka-tls-2");

    // The StatefulSet controller's part: a new revision, no pod on it yet. Then the operator's
    // rolling restart: the highest ordinal is drained before its pod is deleted.
    world.api.edit(STS, |s| {
        let g = s["metadata"]["generation"].clone();
        s["status"] = json!({"replicas": 3, "readyReplicas": 3, "updatedReplicas": 0, "observedGeneration": g,
                             "currentRevision": "rev1", "updateRevision": "rev2"});
    });
    world.admin.route("POST", "/admin/v1/brokers/2/drain", 202, json!({"node_id": 2, "draining": true}));
    world.admin.take_calls();
    world.pass().await.0.unwrap();
    assert_eq!(world.admin.take_calls(), vec!["GET /admin/v1/cluster", "POST /admin/v1/brokers/2/drain"]);
    let status = world.api.get(CLUSTER).unwrap();
    assert_eq!(status["status"]["rolling"], json!({"nodeId": 2, "phase": "Draining"}));
    assert_eq!(condition(&status, "Ready")["reason"], "RollingRestart");

    world.assert_no_secret_value_anywhere();
}

#[tokio::test]
async fn adding_a_user_changes_only_the_users_volume_and_a_rotated_secret_writes_nothing() {
    let (logs, _guard) = CapturedLogs::start();
    let world = World::converged_cluster(logs).await;
    let before = world.api.get(STS).unwrap();
    world.lines();

    // A new password in a Secret: the kubelet updates the mounted files and the brokers reload
    // them; the operator has nothing to write, so no broker restarts.
    world.api.put(&secret_path("kafka-tls"), secret("kafka-tls", &[("tls.crt", TLS_CERT), ("tls.key", ROTATED_KEY)]));
    let (_, lines) = world.pass().await;
    assert!(lines.iter().all(|l| l.starts_with("GET ")), "a rotation writes nothing: {lines:?}");

    // A new user: the users volume gains its file; the settings (ConfigMap) stay as they were.
    world.api.edit_spec(CLUSTER, |spec| {
        spec["security"]["users"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "analytics", "passwordSecret": {"name": "kafka-users", "key": "analytics"}}));
    });
    let (_, lines) = world.pass().await;
    let writes: Vec<&String> = lines.iter().filter(|l| !l.starts_with("GET ")).collect();
    assert_eq!(writes, vec![&patch(STS), &patch(&format!("{CLUSTER}/status"))]);
    let after = world.api.get(STS).unwrap();
    assert_eq!(
        volume(&after, "users")["projected"]["sources"][0]["secret"]["items"],
        json!([{"key": "admin", "path": "admin"}, {"key": "analytics", "path": "analytics"},
               {"key": "orders", "path": "orders"}])
    );
    // A pod's volumes are fixed when it is created: the brokers roll (drained one at a time) to
    // get the new file.
    assert_eq!(condition(&world.api.get(CLUSTER).unwrap(), "Ready")["reason"], "RollingUpdate");
    // Everything else in the StatefulSet is as it was (the applied hash aside).
    let strip = |sts: &Value| {
        let mut sts = sts.clone();
        let volumes = sts["spec"]["template"]["spec"]["volumes"].as_array_mut().unwrap();
        volumes.retain(|v| v["name"] != "users");
        sts["metadata"]["annotations"].as_object_mut().unwrap().remove("automq.rs/applied-hash");
        sts["metadata"].as_object_mut().unwrap().remove("generation");
        sts.as_object_mut().unwrap().remove("status");
        sts
    };
    assert_eq!(strip(&before), strip(&after));

    world.assert_no_secret_value_anywhere();
}
