//! Named Kafka listeners (`spec.listeners.kafka`) against the fake API server: an INTERNAL
//! PLAINTEXT listener and an EXTERNAL SASL_SSL one with its own certificate render the brokers'
//! settings, pod env, Secret volumes, ports and Services; a listener change rolls the brokers
//! one at a time, each drained first; a warehouse's routine loads get the PLAINTEXT listener;
//! the operator's own checks stand in for CEL. The fake Secrets' values are looked for in every
//! request, stored object and log line. (Clusters without named listeners: `snapshots.rs`.)
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
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";
const PODS: &str = "/api/v1/namespaces/default/pods";
const SECRETS: &str = "/api/v1/namespaces/default/secrets";

/// What the fake Secrets hold; none of it may appear anywhere the operator writes or logs.
const EXTERNAL_CERT: &str =
    "-----BEGIN CERTIFICATE-----\nCERT-ext-4be07a-only-in-the-secret\n-----END CERTIFICATE-----\n";
const EXTERNAL_KEY: &str =
    "-----BEGIN PRIVATE KEY-----\nKEY-ext-c0d2f1-only-in-the-secret\n-----END PRIVATE KEY-----\n";
const ADMIN_PASSWORD: &str = "pw-admin-77e1b0-only-in-the-secret";
const BILLING_PASSWORD: &str = "pw-billing-2d9c45-only-in-the-secret";
const ALL_VALUES: [&str; 4] = [EXTERNAL_CERT, EXTERNAL_KEY, ADMIN_PASSWORD, BILLING_PASSWORD];

fn get(path: &str) -> String {
    format!("GET {path}")
}
fn patch(path: &str) -> String {
    format!("PATCH {path}")
}
fn secret_path(name: &str) -> String {
    format!("{SECRETS}/{name}")
}

fn secret(name: &str, data: &[(&str, &str)]) -> Value {
    let b64 = |v: &str| base64::engine::general_purpose::STANDARD.encode(v);
    let data: serde_json::Map<String, Value> = data.iter().map(|(k, v)| (k.to_string(), json!(b64(v)))).collect();
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
           "metadata": {"name": name, "namespace": "default"}, "data": data})
}

/// INTERNAL: PLAINTEXT on 9092. EXTERNAL: SASL_SSL with SCRAM-SHA-512 on 9094, its own
/// certificate (custom key names). Users for EXTERNAL.
fn listeners_cluster() -> Value {
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
            "listeners": {"kafka": [
                {"name": "INTERNAL", "port": 9092},
                {"name": "EXTERNAL", "port": 9094, "tls": true, "authentication": "scram-sha-512",
                 "tlsSecret": {"secretName": "ext-tls", "certKey": "server.pem", "keyKey": "server.key"}}
            ]},
            "security": {
                "users": [
                    {"name": "admin", "passwordSecret": {"name": "kafka-users", "key": "admin"}},
                    {"name": "billing", "passwordSecret": {"name": "kafka-users", "key": "billing"}}
                ]
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
    async fn new(logs: CapturedLogs, cluster: Value) -> World {
        let api = ApiServer::default();
        api.put(
            &secret_path("ext-tls"),
            secret("ext-tls", &[("server.pem", EXTERNAL_CERT), ("server.key", EXTERNAL_KEY)]),
        );
        api.put(
            &secret_path("kafka-users"),
            secret("kafka-users", &[("admin", ADMIN_PASSWORD), ("billing", BILLING_PASSWORD)]),
        );
        api.put(CLUSTER, cluster);
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
            cluster::error_policy(Arc::new(obj), e, self.ctx.clone());
        }
        (result, self.lines())
    }

    fn settle(&self) {
        self.api.edit(STS, |s| {
            let n = s["spec"]["replicas"].clone();
            let generation = s["metadata"]["generation"].clone();
            s["status"] =
                json!({"replicas": n, "readyReplicas": n, "updatedReplicas": n, "observedGeneration": generation});
        });
    }

    fn brokers(&self, brokers: &[(i32, bool, usize)]) {
        let list: Vec<Value> = brokers
            .iter()
            .map(|(id, draining, partitions)| {
                json!({"node_id": id, "host": format!("demo-broker-{id}"), "port": 9092, "rack": null, "wal": "s3",
                       "alive": true, "draining": draining, "leaving": false, "ready": !draining,
                       "assigned": partitions, "leading": partitions})
            })
            .collect();
        let state = json!({"cluster_id": "c1", "controller": {"node_id": 0, "epoch": 3}, "brokers": list});
        self.admin.route("GET", "/admin/v1/cluster", 200, state);
    }

    /// The cluster created and settled (3 ready brokers).
    async fn converged(logs: CapturedLogs) -> World {
        let world = World::new(logs, listeners_cluster()).await;
        world.pass().await.0.unwrap();
        world.pass().await.0.unwrap();
        world.settle();
        world.brokers(&[(0, false, 4), (1, false, 4), (2, false, 4)]);
        world.pass().await.0.unwrap();
        assert_eq!(condition(&world.api.get(CLUSTER).unwrap(), "Ready")["status"], "True");
        world.admin.take_calls();
        world
    }

    fn assert_no_secret_value_anywhere(&self) {
        support::assert_no_secret_value(&self.api, &self.seen.lock().unwrap(), &self.logs.text(), &ALL_VALUES);
    }
}

fn container(sts: &Value) -> &Value {
    &sts["spec"]["template"]["spec"]["containers"][0]
}

fn env_var(sts: &Value, name: &str) -> Option<Value> {
    container(sts)["env"].as_array().unwrap().iter().find(|e| e["name"] == name).cloned()
}

#[tokio::test]
async fn an_internal_and_an_external_listener_render_settings_mounts_ports_and_services() {
    let (logs, _guard) = CapturedLogs::start();
    let world = World::new(logs, listeners_cluster()).await;
    assert_eq!(world.pass().await.1, vec![patch(CLUSTER)], "the finalizer first");

    // The users' Secret and the listener's certificate are checked (key names only), then the
    // children as always.
    let (result, lines) = world.pass().await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(2)));
    let mut expected = vec![get(&secret_path("kafka-users")), get(&secret_path("ext-tls")), get(STS)];
    for path in [SA, CM, HEADLESS, BOOTSTRAP, PDB] {
        expected.extend([get(path), patch(path)]);
    }
    expected.extend([patch(STS), patch(&format!("{CLUSTER}/status"))]);
    assert_eq!(lines, expected);

    // The settings: every listener, its protocol, EXTERNAL's mechanism and certificate paths.
    // No single-listener setting, no cluster-wide mechanism or certificate.
    let cm = world.api.get(CM).unwrap();
    assert_eq!(
        cm["data"],
        json!({
            "AUTOMQ_DATA_DIR": "/var/lib/automq/data",
            "AUTOMQ_HTTP_LISTEN": "0.0.0.0:9644",
            "AUTOMQ_LISTENERS": "INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:9094",
            "AUTOMQ_LISTENER_SECURITY_PROTOCOL_MAP": "INTERNAL:PLAINTEXT,EXTERNAL:SASL_SSL",
            "AUTOMQ_LISTENER_OPTIONS": "EXTERNAL:sasl.enabled.mechanisms=SCRAM-SHA-512\n\
                                        EXTERNAL:ssl.certificate=/etc/automq/listeners/external/tls.crt\n\
                                        EXTERNAL:ssl.key=/etc/automq/listeners/external/tls.key",
            "AUTOMQ_OBJECT_STORE": "s3://data?endpoint=http://minio:9000&region=us-east-1",
            "AUTOMQ_SCRAM_USERS_DIR": "/etc/automq/users",
            "AUTOMQ_WAL": "s3"
        })
    );

    // Each pod advertises its own stable DNS name on every listener's port.
    let sts = world.api.get(STS).unwrap();
    assert_eq!(
        env_var(&sts, "AUTOMQ_ADVERTISED_LISTENERS").unwrap(),
        json!({"name": "AUTOMQ_ADVERTISED_LISTENERS",
               "value": "INTERNAL://$(POD_NAME).demo-broker.default.svc:9092,\
                         EXTERNAL://$(POD_NAME).demo-broker.default.svc:9094"})
    );
    assert!(env_var(&sts, "AUTOMQ_ADVERTISED_LISTENER").is_none());
    assert_eq!(env_var(&sts, "AUTOMQ_ADVERTISED_HTTP").unwrap()["value"], "$(POD_NAME).demo-broker.default.svc:9644");

    // EXTERNAL's certificate: its own Secret volume, mounted whole and read-only, 0440.
    let volumes = sts["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
    let names: Vec<&str> = volumes.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["data", "users", "tls-external"]);
    assert_eq!(
        volumes[2],
        json!({"name": "tls-external", "secret": {"secretName": "ext-tls", "defaultMode": 0o440,
               "items": [{"key": "server.pem", "path": "tls.crt"}, {"key": "server.key", "path": "tls.key"}]}})
    );
    let mounts = container(&sts)["volumeMounts"].as_array().unwrap();
    assert!(mounts
        .contains(&json!({"name": "tls-external", "mountPath": "/etc/automq/listeners/external", "readOnly": true})));
    assert!(mounts.iter().all(|m| m.get("subPath").is_none()), "whole volumes only: {mounts:?}");

    // A port per listener, named after it; the probes stay on HTTP.
    assert_eq!(
        container(&sts)["ports"],
        json!([{"name": "internal", "containerPort": 9092}, {"name": "external", "containerPort": 9094},
               {"name": "http", "containerPort": 9644}])
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(container(&sts)[probe]["httpGet"]["port"], "http", "{probe}");
    }
    assert_eq!(
        world.api.get(HEADLESS).unwrap()["spec"]["ports"],
        json!([{"name": "internal", "port": 9092, "targetPort": "internal"},
               {"name": "external", "port": 9094, "targetPort": "external"},
               {"name": "http", "port": 9644, "targetPort": "http"}])
    );
    assert_eq!(
        world.api.get(BOOTSTRAP).unwrap()["spec"]["ports"],
        json!([{"name": "internal", "port": 9092, "targetPort": "internal"},
               {"name": "external", "port": 9094, "targetPort": "external"}]),
        "the bootstrap Service has every listener and still no HTTP port"
    );

    // How clients reach each listener; the old pair of fields describes the first.
    let status = &world.api.get(CLUSTER).unwrap()["status"];
    assert_eq!(
        status["listeners"],
        json!([{"name": "INTERNAL", "port": 9092, "protocol": "PLAINTEXT",
                "bootstrap": "demo-bootstrap.default.svc:9092"},
               {"name": "EXTERNAL", "port": 9094, "protocol": "SASL_SSL", "saslMechanism": "SCRAM-SHA-512",
                "bootstrap": "demo-bootstrap.default.svc:9094"}])
    );
    assert_eq!(status["bootstrapServers"], "demo-bootstrap.default.svc:9092");
    assert_eq!(status["securityProtocol"], "PLAINTEXT");

    // Settled, then a quiet pass: Secrets looked at again, nothing written.
    world.settle();
    world.brokers(&[(0, false, 4), (1, false, 4), (2, false, 4)]);
    world.pass().await.0.unwrap();
    world.lines();
    let (result, lines) = world.pass().await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(300)));
    assert!(lines.iter().all(|l| l.starts_with("GET ")), "reads only: {lines:?}");

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
async fn changing_a_listener_rolls_the_brokers_one_at_a_time_each_drained_first() {
    let (logs, _guard) = CapturedLogs::start();
    let world = World::converged(logs).await;
    for id in 0..3 {
        world.api.put(&format!("{PODS}/demo-broker-{id}"), broker_pod(id, "rev1"));
    }
    let hash = |w: &World| {
        w.api.get(STS).unwrap()["spec"]["template"]["metadata"]["annotations"]["automq.rs/config-hash"].clone()
    };
    let before = hash(&world);
    world.lines();

    // Another mechanism on EXTERNAL: the settings change, so the pod template's config hash.
    world.api.edit_spec(CLUSTER, |spec| spec["listeners"]["kafka"][1]["authentication"] = json!("scram-sha-256"));
    let (_, lines) = world.pass().await;
    let writes: Vec<&String> = lines.iter().filter(|l| !l.starts_with("GET ")).collect();
    assert_eq!(writes, vec![&patch(CM), &patch(STS), &patch(&format!("{CLUSTER}/status"))]);
    assert!(world.api.get(CM).unwrap()["data"]["AUTOMQ_LISTENER_OPTIONS"]
        .as_str()
        .unwrap()
        .starts_with("EXTERNAL:sasl.enabled.mechanisms=SCRAM-SHA-256\n"));
    assert_ne!(hash(&world), before);
    assert_eq!(world.api.get(CLUSTER).unwrap()["status"]["listeners"][1]["saslMechanism"], "SCRAM-SHA-256");

    // The StatefulSet controller's part (OnDelete: a new revision, no pod on it), then the
    // operator's rolling restart: the highest ordinal is drained before its pod is deleted.
    world.api.edit(STS, |s| {
        let g = s["metadata"]["generation"].clone();
        s["status"] = json!({"replicas": 3, "readyReplicas": 3, "updatedReplicas": 0, "observedGeneration": g,
                             "currentRevision": "rev1", "updateRevision": "rev2"});
    });
    world.admin.route("POST", "/admin/v1/brokers/2/drain", 202, json!({"node_id": 2, "draining": true}));
    world.admin.take_calls();
    let (_, lines) = world.pass().await;
    assert!(!lines.iter().any(|l| l.starts_with("DELETE")), "not before it is drained: {lines:?}");
    assert_eq!(world.admin.take_calls(), vec!["GET /admin/v1/cluster", "POST /admin/v1/brokers/2/drain"]);
    let status = world.api.get(CLUSTER).unwrap();
    assert_eq!(status["status"]["rolling"], json!({"nodeId": 2, "phase": "Draining"}));
    assert_eq!(condition(&status, "Ready")["reason"], "RollingRestart");
    world.brokers(&[(0, false, 6), (1, false, 6), (2, true, 0)]);
    let (_, lines) = world.pass().await;
    assert!(lines.contains(&format!("DELETE {PODS}/demo-broker-2")), "{lines:?}");

    world.assert_no_secret_value_anywhere();
}

#[tokio::test]
async fn a_new_listener_port_reaches_the_services_and_the_pods() {
    let (logs, _guard) = CapturedLogs::start();
    let world = World::converged(logs).await;
    world.lines();
    world.api.edit_spec(CLUSTER, |spec| spec["listeners"]["kafka"][1]["port"] = json!(9095));
    let (_, lines) = world.pass().await;
    let writes: Vec<&String> = lines.iter().filter(|l| !l.starts_with("GET ")).collect();
    assert_eq!(
        writes,
        vec![&patch(CM), &patch(HEADLESS), &patch(BOOTSTRAP), &patch(STS), &patch(&format!("{CLUSTER}/status"))]
    );
    let bootstrap = world.api.get(BOOTSTRAP).unwrap();
    assert_eq!(bootstrap["spec"]["ports"][1], json!({"name": "external", "port": 9095, "targetPort": "external"}));
    let sts = world.api.get(STS).unwrap();
    assert_eq!(container(&sts)["ports"][1], json!({"name": "external", "containerPort": 9095}));
    assert!(env_var(&sts, "AUTOMQ_ADVERTISED_LISTENERS").unwrap()["value"]
        .as_str()
        .unwrap()
        .ends_with("EXTERNAL://$(POD_NAME).demo-broker.default.svc:9095"));
    assert_eq!(condition(&world.api.get(CLUSTER).unwrap(), "Ready")["reason"], "RollingUpdate");
    world.assert_no_secret_value_anywhere();
}

#[tokio::test]
async fn a_missing_listener_certificate_is_a_condition_and_nothing_is_applied() {
    let (logs, _guard) = CapturedLogs::start();
    let mut cluster = listeners_cluster();
    cluster["metadata"]["finalizers"] = json!(["automq.rs/broker-shutdown"]);
    let world = World::new(logs, cluster).await;
    world.api.put(&secret_path("ext-tls"), secret("ext-tls", &[("server.pem", EXTERNAL_CERT)]));
    let (result, lines) = world.pass().await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));
    assert_eq!(
        lines,
        vec![
            get(&secret_path("kafka-users")),
            get(&secret_path("ext-tls")),
            patch(&format!("{CLUSTER}/status")),
            format!("POST {EVENTS}")
        ]
    );
    let degraded = condition(&world.api.get(CLUSTER).unwrap(), "Degraded");
    assert_eq!(degraded["reason"], "SecretNotFound");
    assert_eq!(
        degraded["message"],
        "Secret \"ext-tls\" has no key \"server.key\" (listeners.kafka[EXTERNAL].tlsSecret)"
    );
    assert!(world.api.get(STS).is_none() && world.api.get(CM).is_none(), "nothing applied");
    world.assert_no_secret_value_anywhere();
}

/// What CEL refuses, refused by the operator too (API servers that skip the rules, or objects
/// stored before them): the condition names the rule, and nothing is applied.
#[tokio::test]
async fn invalid_listeners_are_refused_before_anything_is_applied() {
    type Edit = fn(&mut Value);
    let cases: [(Edit, &str); 9] = [
        (
            |s| s["listeners"]["kafka"][1]["port"] = json!(9092),
            "listeners.kafka[EXTERNAL]: port 9092 is another listener's",
        ),
        (|s| s["listeners"]["kafka"][1]["port"] = json!(9644), "listeners.kafka[EXTERNAL]: port 9644 is the HTTP port"),
        (|s| s["listeners"]["kafka"][1]["name"] = json!("INTERNAL"), "listeners.kafka[INTERNAL] is declared twice"),
        (|s| s["listeners"]["kafka"][0]["name"] = json!("internal"), "listeners.kafka[internal]: a listener name is"),
        (|s| s["listeners"]["kafkaPort"] = json!(9092), "listeners.kafkaPort is the single listener's port"),
        (
            |s| s["security"]["sasl"] = json!({"mechanisms": ["PLAIN"]}),
            "with listeners.kafka, each listener's authentication replaces security.sasl",
        ),
        (
            |s| {
                s["listeners"]["kafka"][1].as_object_mut().unwrap().remove("tlsSecret");
            },
            "listeners.kafka[EXTERNAL]: tls needs the listener's tlsSecret or security.tls",
        ),
        (
            |s| {
                s.as_object_mut().unwrap().remove("security");
            },
            "listeners.kafka[EXTERNAL]: authentication needs security.users",
        ),
        (
            |s| s["listeners"]["kafka"][1]["authentication"] = json!("none"),
            "security.users need security.sasl (or a kafka listener with authentication)",
        ),
    ];
    for (edit, message) in cases {
        let (logs, _guard) = CapturedLogs::start();
        let mut cluster = listeners_cluster();
        cluster["metadata"]["finalizers"] = json!(["automq.rs/broker-shutdown"]);
        edit(&mut cluster["spec"]);
        let world = World::new(logs, cluster).await;
        let (result, lines) = world.pass().await;
        assert_eq!(result.unwrap(), Action::await_change(), "{message}");
        assert_eq!(lines, vec![patch(&format!("{CLUSTER}/status")), format!("POST {EVENTS}")], "{message}");
        let degraded = condition(&world.api.get(CLUSTER).unwrap(), "Degraded");
        assert_eq!(degraded["reason"], "InvalidSpec", "{message}");
        let text = degraded["message"].as_str().unwrap();
        assert!(text.starts_with(message), "expected {message:?}, got {text:?}");
    }
}

#[tokio::test]
async fn a_warehouse_loads_from_the_plaintext_listener_whatever_its_place() {
    let (logs, _guard) = CapturedLogs::start();
    // EXTERNAL first: the default broker list (no credentials, no CA) must still be INTERNAL's.
    let mut cluster = listeners_cluster();
    cluster["spec"]["listeners"]["kafka"] = json!([
        {"name": "EXTERNAL", "port": 9094, "tls": true, "authentication": "scram-sha-512",
         "tlsSecret": {"secretName": "ext-tls"}},
        {"name": "INTERNAL", "port": 9192}
    ]);
    let world = World::new(logs, cluster).await;
    world.api.put(
        WAREHOUSE,
        json!({"apiVersion": "automq.rs/v1alpha1", "kind": "AnalyticsWarehouse",
               "metadata": {"name": "wh", "namespace": "default", "uid": "7b0c7c2e-0000-4000-8000-000000000002",
                            "generation": 1, "finalizers": ["automq.rs/query-node-shutdown"]},
               "spec": {"replicas": 1, "image": "ghcr.io/automq-rs/automq-query-node:0.1.0",
                        "objectStorage": {"bucket": "tables"}, "kafkaClusterRef": {"name": "demo"}}}),
    );
    world.admin.route("GET", "/readyz", 200, json!("ok"));
    let obj: AnalyticsWarehouse = serde_json::from_value(world.api.get(WAREHOUSE).unwrap()).unwrap();
    within(warehouse::reconcile(Arc::new(obj), world.ctx.clone())).await.unwrap();
    let cm = world.api.get(WH_CM).unwrap();
    assert_eq!(cm["data"]["AUTOMQ_DEFAULT_KAFKA_BROKERS"], "demo-bootstrap.default.svc:9192");
}
