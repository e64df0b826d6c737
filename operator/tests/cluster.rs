//! The AutoMQCluster controller against a fake API server and a fake broker admin API: the
//! exact requests of each scenario.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use automq_crds::AutoMQCluster;
use automq_operator::cluster;
use automq_operator::Context;
use kube::runtime::controller::Action;
use serde_json::{json, Value};
use support::{condition, context, within, ApiServer, FakeHttp};

const CLUSTER: &str = "/apis/automq.rs/v1alpha1/namespaces/default/automqclusters/demo";
const SA: &str = "/api/v1/namespaces/default/serviceaccounts/demo-broker";
const CM: &str = "/api/v1/namespaces/default/configmaps/demo-broker-config";
const HEADLESS: &str = "/api/v1/namespaces/default/services/demo-broker";
const BOOTSTRAP: &str = "/api/v1/namespaces/default/services/demo-bootstrap";
const PDB: &str = "/apis/policy/v1/namespaces/default/poddisruptionbudgets/demo-broker";
const STS: &str = "/apis/apps/v1/namespaces/default/statefulsets/demo-broker";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";
const PODS: &str = "/api/v1/namespaces/default/pods";

fn get(path: &str) -> String {
    format!("GET {path}")
}
fn patch(path: &str) -> String {
    format!("PATCH {path}")
}

/// The StatefulSet's and the children's reads, when they all exist unchanged.
fn children_reads() -> Vec<String> {
    [STS, SA, CM, HEADLESS, BOOTSTRAP, PDB].iter().map(|p| get(p)).collect()
}

fn cluster_json(replicas: i32) -> Value {
    json!({
        "apiVersion": "automq.rs/v1alpha1",
        "kind": "AutoMQCluster",
        "metadata": {"name": "demo", "namespace": "default", "uid": "7b0c7c2e-0000-4000-8000-000000000001", "generation": 1},
        "spec": {
            "replicas": replicas,
            "image": "ghcr.io/automq-rs/automq-broker:0.1.0",
            "objectStorage": {"bucket": "data", "endpoint": "http://minio:9000", "credentials": {"secretName": "s3"}},
            "wal": {"kind": "S3"}
        }
    })
}

struct World {
    api: ApiServer,
    admin: FakeHttp,
    ctx: Arc<Context>,
}

impl World {
    async fn new(cluster: Value) -> World {
        let api = ApiServer::default();
        api.put(CLUSTER, cluster);
        let admin = FakeHttp::default();
        let base = admin.start().await;
        let ctx = context(&api, &base);
        World { api, admin, ctx }
    }

    /// One reconcile of the cluster as stored now; the requests it made.
    async fn pass(&self) -> (Result<Action, automq_operator::Error>, Vec<String>) {
        let obj: AutoMQCluster = serde_json::from_value(self.api.get(CLUSTER).unwrap()).unwrap();
        let result = within(cluster::reconcile(Arc::new(obj), self.ctx.clone())).await;
        (result, self.api.take_lines())
    }

    fn edit(&self, path: &str, f: impl FnOnce(&mut Value)) {
        self.api.edit(path, f);
    }

    fn edit_spec(&self, f: impl FnOnce(&mut Value)) {
        self.api.edit_spec(CLUSTER, f);
    }

    /// The StatefulSet controller's part: every pod of the current spec ready.
    fn settle_pods(&self) {
        self.edit(STS, |s| {
            let n = s["spec"]["replicas"].clone();
            let generation = s["metadata"]["generation"].clone();
            s["status"] =
                json!({"replicas": n, "readyReplicas": n, "updatedReplicas": n, "observedGeneration": generation});
        });
    }

    /// What the brokers report: `brokers` as (node id, draining, partitions).
    fn brokers(&self, brokers: &[(i32, bool, usize)]) {
        let list: Vec<Value> = brokers
            .iter()
            .map(|(id, draining, partitions)| {
                json!({"node_id": id, "host": format!("demo-broker-{id}"), "port": 9092, "rack": null, "wal": "s3",
                       "alive": true, "draining": draining, "leaving": false, "ready": !draining,
                       "assigned": partitions, "leading": partitions})
            })
            .collect();
        self.admin.route(
            "GET",
            "/admin/v1/cluster",
            200,
            json!({"cluster_id": "c1", "controller": {"node_id": 0, "epoch": 3}, "brokers": list}),
        );
    }

    /// Runs the creation passes and settles: 3 ready brokers, status Ready.
    async fn converged(replicas: i32) -> World {
        let world = World::new(cluster_json(replicas)).await;
        world.pass().await.0.unwrap();
        world.pass().await.0.unwrap();
        world.settle_pods();
        world.brokers(&(0..replicas).map(|id| (id, false, 4)).collect::<Vec<_>>());
        world.pass().await.0.unwrap();
        assert_eq!(condition(&world.api.get(CLUSTER).unwrap(), "Ready")["status"], "True");
        world.admin.take_calls();
        world
    }
}

#[tokio::test]
async fn create_adds_the_finalizer_then_applies_every_child() {
    let world = World::new(cluster_json(3)).await;
    let (result, lines) = world.pass().await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert_eq!(lines, vec![patch(CLUSTER)]);
    assert_eq!(world.api.get(CLUSTER).unwrap()["metadata"]["finalizers"], json!(["automq.rs/broker-shutdown"]));

    let (result, log) = {
        let obj: AutoMQCluster = serde_json::from_value(world.api.get(CLUSTER).unwrap()).unwrap();
        let result = within(cluster::reconcile(Arc::new(obj), world.ctx.clone())).await;
        (result, world.api.take_log())
    };
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(2)));
    let lines: Vec<String> = log.iter().map(|l| l.line()).collect();
    let mut expected = vec![get(STS)];
    for path in [SA, CM, HEADLESS, BOOTSTRAP, PDB] {
        expected.extend([get(path), patch(path)]);
    }
    expected.extend([patch(STS), patch(&format!("{CLUSTER}/status"))]);
    assert_eq!(lines, expected);
    for applied in log.iter().filter(|l| l.method == "PATCH") {
        assert_eq!(applied.content_type, "application/apply-patch+yaml", "{}", applied.path);
        assert!(applied.query.contains("fieldManager=automq-operator") && applied.query.contains("force=true"));
    }
    // No brokers yet, nobody to ask.
    assert!(world.admin.take_calls().is_empty());

    let sts = world.api.get(STS).unwrap();
    assert_eq!(sts["spec"]["replicas"], 3);
    assert_eq!(sts["spec"]["podManagementPolicy"], "Parallel");
    assert!(sts["spec"].get("volumeClaimTemplates").is_none(), "the S3 WAL needs no volumes");
    assert_eq!(sts["metadata"]["ownerReferences"][0]["kind"], "AutoMQCluster");
    assert_eq!(sts["metadata"]["ownerReferences"][0]["controller"], true);
    let env = &sts["spec"]["template"]["spec"]["containers"][0]["env"];
    let node_id = env.as_array().unwrap().iter().find(|e| e["name"] == "AUTOMQ_NODE_ID").unwrap();
    assert_eq!(node_id["valueFrom"]["fieldRef"]["fieldPath"], "metadata.labels['apps.kubernetes.io/pod-index']");
    let advertised = env.as_array().unwrap().iter().find(|e| e["name"] == "AUTOMQ_ADVERTISED_LISTENER").unwrap();
    assert_eq!(advertised["value"], "$(POD_NAME).demo-broker.default.svc:9092");
    let rack = env.as_array().unwrap().iter().find(|e| e["name"] == "AUTOMQ_RACK").unwrap();
    assert_eq!(rack["valueFrom"]["fieldRef"]["fieldPath"], "metadata.labels['topology.kubernetes.io/zone']");
    let key = env.as_array().unwrap().iter().find(|e| e["name"] == "AWS_ACCESS_KEY_ID").unwrap();
    assert_eq!(key["valueFrom"]["secretKeyRef"], json!({"name": "s3", "key": "AWS_ACCESS_KEY_ID"}));

    let cm = world.api.get(CM).unwrap();
    assert_eq!(cm["data"]["AUTOMQ_WAL"], "s3");
    assert_eq!(cm["data"]["AUTOMQ_OBJECT_STORE"], "s3://data?endpoint=http://minio:9000&region=us-east-1");
    let bootstrap = world.api.get(BOOTSTRAP).unwrap();
    assert_eq!(bootstrap["spec"]["ports"], json!([{"name": "kafka", "port": 9092, "targetPort": "kafka"}]));
    let headless = world.api.get(HEADLESS).unwrap();
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], true);

    let status = world.api.get(CLUSTER).unwrap();
    assert_eq!(condition(&status, "Ready")["status"], "False");
    assert_eq!(condition(&status, "Ready")["reason"], "ScalingOut");
    assert_eq!(condition(&status, "Progressing")["status"], "True");
    assert_eq!(condition(&status, "Degraded")["status"], "False");
    assert_eq!(status["status"]["observedGeneration"], 1);
    assert_eq!(
        status["status"]["selector"],
        "app.kubernetes.io/component=broker,app.kubernetes.io/instance=demo,app.kubernetes.io/name=automq-broker,\
         automq.rs/pool=default"
    );
    assert_eq!(status["status"]["bootstrapServers"], "demo-bootstrap.default.svc:9092");
}

#[tokio::test]
async fn a_reconcile_with_nothing_to_change_writes_nothing() {
    let world = World::converged(3).await;
    let (result, lines) = world.pass().await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(300)));
    assert_eq!(lines, children_reads(), "reads only");
    assert_eq!(world.admin.take_calls(), vec!["GET /admin/v1/cluster"]);
    let status = world.api.get(CLUSTER).unwrap();
    assert_eq!(condition(&status, "Ready")["reason"], "AllBrokersReady");
    assert_eq!(status["status"]["readyReplicas"], 3);
    assert_eq!(status["status"]["controller"], 0);
}

#[tokio::test]
async fn a_spec_change_rolls_the_brokers() {
    let world = World::converged(3).await;
    world.edit_spec(|spec| spec["image"] = json!("ghcr.io/automq-rs/automq-broker:0.2.0"));
    let (result, lines) = world.pass().await;
    result.unwrap();
    let mut expected = children_reads();
    expected.extend([patch(STS), patch(&format!("{CLUSTER}/status"))]);
    assert_eq!(lines, expected);
    let sts = world.api.get(STS).unwrap();
    assert_eq!(sts["spec"]["template"]["spec"]["containers"][0]["image"], "ghcr.io/automq-rs/automq-broker:0.2.0");
    let status = world.api.get(CLUSTER).unwrap();
    assert_eq!(status["status"]["observedGeneration"], 2);
    assert_eq!(condition(&status, "Ready")["reason"], "RollingUpdate");
    assert_eq!(condition(&status, "Progressing")["status"], "True");
}

#[tokio::test]
async fn a_settings_change_rolls_the_brokers_through_the_config_hash() {
    let world = World::converged(3).await;
    let before =
        world.api.get(STS).unwrap()["spec"]["template"]["metadata"]["annotations"]["automq.rs/config-hash"].clone();
    world.edit_spec(|spec| spec["config"] = json!({"num-partitions": "6"}));
    let (result, lines) = world.pass().await;
    result.unwrap();
    assert_eq!(
        lines,
        vec![
            get(STS),
            get(SA),
            get(CM),
            patch(CM),
            get(HEADLESS),
            get(BOOTSTRAP),
            get(PDB),
            patch(STS),
            patch(&format!("{CLUSTER}/status"))
        ]
    );
    assert_eq!(world.api.get(CM).unwrap()["data"]["AUTOMQ_NUM_PARTITIONS"], "6");
    let after =
        world.api.get(STS).unwrap()["spec"]["template"]["metadata"]["annotations"]["automq.rs/config-hash"].clone();
    assert_ne!(before, after);
}

#[tokio::test]
async fn scale_out_starts_every_new_broker_at_once() {
    let world = World::converged(3).await;
    world.edit_spec(|spec| spec["replicas"] = json!(5));
    let (result, lines) = world.pass().await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(2)));
    let mut expected = children_reads();
    expected.extend([format!("POST {EVENTS}"), patch(STS), patch(&format!("{CLUSTER}/status"))]);
    assert_eq!(lines, expected);
    assert_eq!(world.admin.take_calls(), vec!["GET /admin/v1/cluster"], "no drain on the way up");
    assert_eq!(world.api.get(STS).unwrap()["spec"]["replicas"], 5);
    let status = world.api.get(CLUSTER).unwrap();
    assert_eq!(condition(&status, "Ready")["reason"], "ScalingOut");
    assert_eq!(status["status"]["targetReplicas"], 5);
}

#[tokio::test]
async fn scale_in_drains_the_brokers_before_shrinking_the_statefulset() {
    let world = World::converged(5).await;
    world.admin.route("POST", "/admin/v1/brokers/3/drain", 202, json!({"node_id": 3, "draining": true}));
    world.admin.route("POST", "/admin/v1/brokers/4/drain", 202, json!({"node_id": 4, "draining": true}));
    world.edit_spec(|spec| spec["replicas"] = json!(3));

    // First: drains start; the StatefulSet is left alone.
    let (result, lines) = world.pass().await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(2)));
    let mut expected = children_reads();
    expected.extend([format!("POST {EVENTS}"), patch(&format!("{CLUSTER}/status"))]);
    assert_eq!(lines, expected, "no StatefulSet write while draining");
    assert_eq!(
        world.admin.take_calls(),
        vec!["GET /admin/v1/cluster", "POST /admin/v1/brokers/3/drain", "POST /admin/v1/brokers/4/drain"]
    );
    assert_eq!(world.api.get(STS).unwrap()["spec"]["replicas"], 5);
    let status = world.api.get(CLUSTER).unwrap();
    assert_eq!(status["status"]["draining"], json!([3, 4]));
    assert_eq!(condition(&status, "Ready")["reason"], "ScalingIn");

    // Partitions still moving: wait, drain nothing twice.
    world.brokers(&[(0, false, 6), (1, false, 6), (2, false, 6), (3, true, 1), (4, true, 0)]);
    let (_, lines) = world.pass().await;
    assert!(!lines.contains(&patch(STS)));
    assert_eq!(world.admin.take_calls(), vec!["GET /admin/v1/cluster"]);

    // Empty: now the StatefulSet shrinks.
    world.brokers(&[(0, false, 7), (1, false, 7), (2, false, 6), (3, true, 0), (4, true, 0)]);
    let (result, lines) = world.pass().await;
    result.unwrap();
    let mut expected = children_reads();
    expected.extend([format!("POST {EVENTS}"), patch(STS), patch(&format!("{CLUSTER}/status"))]);
    assert_eq!(lines, expected);
    assert_eq!(world.api.get(STS).unwrap()["spec"]["replicas"], 3);

    // Growing again cancels the drains of the returning node ids.
    world.admin.route("DELETE", "/admin/v1/brokers/3/drain", 202, json!({"node_id": 3, "draining": false}));
    world.admin.route("DELETE", "/admin/v1/brokers/4/drain", 202, json!({"node_id": 4, "draining": false}));
    world.settle_pods();
    world.admin.take_calls();
    world.edit_spec(|spec| spec["replicas"] = json!(5));
    world.pass().await.0.unwrap();
    assert_eq!(
        world.admin.take_calls(),
        vec!["GET /admin/v1/cluster", "DELETE /admin/v1/brokers/3/drain", "DELETE /admin/v1/brokers/4/drain"]
    );
    assert_eq!(world.api.get(STS).unwrap()["spec"]["replicas"], 5);
    assert!(world.api.get(CLUSTER).unwrap()["status"].get("draining").is_none());
}

#[tokio::test]
async fn deletion_stops_the_brokers_before_releasing_the_finalizer() {
    let world = World::converged(3).await;
    world.edit(CLUSTER, |c| c["metadata"]["deletionTimestamp"] = json!("2026-12-02T10:05:00Z"));
    world.api.put(
        &format!("{PODS}/demo-broker-0"),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "demo-broker-0", "namespace": "default",
               "labels": {"app.kubernetes.io/name": "automq-broker", "app.kubernetes.io/instance": "demo",
                          "app.kubernetes.io/component": "broker"}}}),
    );
    let (result, lines) = world.pass().await;
    assert!(matches!(result, Err(automq_operator::Error::Waiting(_))), "{result:?}");
    assert_eq!(lines, vec![get(STS), patch(STS), format!("POST {EVENTS}"), get(PODS)]);
    assert_eq!(world.api.get(STS).unwrap()["spec"]["replicas"], 0);
    assert_eq!(world.api.get(CLUSTER).unwrap()["metadata"]["finalizers"], json!(["automq.rs/broker-shutdown"]));

    // The pod is gone.
    world.api.remove(&format!("{PODS}/demo-broker-0"));
    let (result, lines) = world.pass().await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert_eq!(lines, vec![get(STS), get(PODS), patch(CLUSTER)]);
    assert_eq!(world.api.get(CLUSTER).unwrap()["metadata"]["finalizers"], json!([]));
}

#[tokio::test]
async fn a_failing_child_marks_the_cluster_degraded_with_the_reason() {
    let world = World::converged(3).await;
    world.api.fail("PATCH", STS, 422, "StatefulSet.apps \"demo-broker\" is invalid: spec.template: forbidden");
    world.edit_spec(|spec| spec["image"] = json!("ghcr.io/automq-rs/automq-broker:0.2.0"));
    let (result, lines) = world.pass().await;
    assert!(matches!(result, Err(automq_operator::Error::Kube(_))), "{result:?}");
    let mut expected = children_reads();
    expected.extend([patch(STS), patch(&format!("{CLUSTER}/status")), format!("POST {EVENTS}")]);
    assert_eq!(lines, expected);
    let status = world.api.get(CLUSTER).unwrap();
    let degraded = condition(&status, "Degraded");
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "ApplyFailed");
    assert!(degraded["message"].as_str().unwrap().contains("StatefulSet"), "{degraded}");
    assert!(degraded["message"].as_str().unwrap().contains("forbidden"), "{degraded}");
    assert_eq!(condition(&status, "Ready")["status"], "False");
}

#[tokio::test]
async fn an_invalid_spec_is_refused_with_a_clear_condition_and_nothing_applied() {
    let mut cluster = cluster_json(3);
    cluster["metadata"]["finalizers"] = json!(["automq.rs/broker-shutdown"]);
    cluster["spec"]["config"] = json!({"object-store": "file:///tmp"});
    let world = World::new(cluster).await;
    let (result, lines) = world.pass().await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert_eq!(lines, vec![patch(&format!("{CLUSTER}/status")), format!("POST {EVENTS}")]);
    let status = world.api.get(CLUSTER).unwrap();
    let degraded = condition(&status, "Degraded");
    assert_eq!((degraded["status"].as_str(), degraded["reason"].as_str()), (Some("True"), Some("InvalidSpec")));
    assert!(degraded["message"].as_str().unwrap().contains("\"object-store\" cannot be set"), "{degraded}");
    assert_eq!(degraded["lastTransitionTime"], support::NOW);
    // Again: nothing new, nothing written, no second event.
    let (_, lines) = world.pass().await;
    assert!(lines.is_empty(), "{lines:?}");
}

#[tokio::test]
async fn the_file_wal_gets_one_volume_per_broker_kept_on_scale_in() {
    let mut cluster = cluster_json(3);
    cluster["metadata"]["finalizers"] = json!(["automq.rs/broker-shutdown"]);
    cluster["spec"]["wal"] = json!({"kind": "File", "volume": {"size": "20Gi", "storageClassName": "fast"}});
    let world = World::new(cluster).await;
    world.pass().await.0.unwrap();
    let sts = world.api.get(STS).unwrap();
    let claim = &sts["spec"]["volumeClaimTemplates"][0];
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "20Gi");
    assert_eq!(claim["spec"]["storageClassName"], "fast");
    assert_eq!(
        sts["spec"]["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
    );
    assert_eq!(world.api.get(CM).unwrap()["data"]["AUTOMQ_WAL"], "file:/var/lib/automq/wal");
}

#[tokio::test]
async fn the_autoscaler_scales_out_on_the_brokers_measured_bytes_in() {
    let world = World::converged(3).await;
    for id in 0..3 {
        world.api.put(
            &format!("{PODS}/demo-broker-{id}"),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("demo-broker-{id}"), "namespace": "default",
                   "labels": {"app.kubernetes.io/name": "automq-broker", "app.kubernetes.io/instance": "demo",
                              "app.kubernetes.io/component": "broker", "automq.rs/pool": "default"}},
                   "status": {"podIP": "127.0.0.1"}}),
        );
    }
    let scrape = |bytes: u64| {
        json!(format!(
            "# TYPE automq_broker_bytes_in counter\nautomq_broker_bytes_in_total{{topic=\"t\"}} {bytes}\n# EOF\n"
        ))
    };
    world.admin.route("GET", "/metrics", 200, scrape(1000));
    world.edit_spec(|spec| {
        spec["autoscaling"] = json!({"minReplicas": 3, "maxReplicas": 6, "targetBytesInPerBroker": "1Mi"});
    });
    // First measurement: no rate yet, the size stays.
    let (result, _) = world.pass().await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(15)));
    let status = world.api.get(CLUSTER).unwrap();
    assert_eq!(status["status"]["autoscaler"]["desiredReplicas"], 3);
    assert_eq!(status["status"]["autoscaler"]["reason"], "no load measured yet");
    assert_eq!(world.api.get(STS).unwrap()["spec"]["replicas"], 3);

    // 100 MiB more per broker since: far above 1 MiB/s per broker, up to maxReplicas at once.
    world.admin.route("GET", "/metrics", 200, scrape(1000 + 100 * 1024 * 1024));
    world.admin.take_calls();
    world.pass().await.0.unwrap();
    let calls = world.admin.take_calls();
    assert_eq!(calls.iter().filter(|c| *c == "GET /metrics").count(), 3, "{calls:?}");
    let status = world.api.get(CLUSTER).unwrap();
    assert_eq!(status["status"]["autoscaler"]["desiredReplicas"], 6, "{}", status["status"]["autoscaler"]);
    assert!(status["status"]["autoscaler"]["reason"].as_str().unwrap().contains("per broker"));
    assert_eq!(world.api.get(STS).unwrap()["spec"]["replicas"], 6);
}

#[tokio::test]
async fn changing_the_wal_of_a_running_cluster_is_refused_before_anything_is_applied() {
    let world = World::converged(3).await;
    world.edit_spec(|spec| spec["wal"] = json!({"kind": "File", "volume": {"size": "10Gi"}}));
    let (result, lines) = world.pass().await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert_eq!(lines, vec![get(STS), patch(&format!("{CLUSTER}/status")), format!("POST {EVENTS}")]);
    assert_eq!(world.api.get(CM).unwrap()["data"]["AUTOMQ_WAL"], "s3", "the settings were not touched");
    let degraded = condition(&world.api.get(CLUSTER).unwrap(), "Degraded");
    assert_eq!(degraded["reason"], "InvalidSpec");
    assert!(degraded["message"].as_str().unwrap().starts_with("wal cannot change"), "{degraded}");
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
async fn a_template_change_restarts_brokers_one_at_a_time_each_drained_first() {
    let world = World::converged(3).await;
    assert_eq!(world.api.get(STS).unwrap()["spec"]["updateStrategy"], json!({"type": "OnDelete"}));
    for id in 0..3 {
        world.api.put(&format!("{PODS}/demo-broker-{id}"), broker_pod(id, "rev1"));
    }
    world.edit_spec(|spec| spec["image"] = json!("ghcr.io/automq-rs/automq-broker:0.2.0"));
    // The StatefulSet controller's part: a new revision, no pod on it yet.
    world.pass().await.0.unwrap();
    world.edit(STS, |s| {
        let g = s["metadata"]["generation"].clone();
        s["status"] = json!({"replicas": 3, "readyReplicas": 3, "updatedReplicas": 0, "observedGeneration": g,
                             "currentRevision": "rev1", "updateRevision": "rev2"});
    });
    world.admin.route("POST", "/admin/v1/brokers/2/drain", 202, json!({"node_id": 2, "draining": true}));
    world.admin.route("DELETE", "/admin/v1/brokers/2/drain", 202, json!({"node_id": 2, "draining": false}));
    world.admin.take_calls();

    // 1. The highest ordinal is drained first; its pod is left alone while it holds partitions.
    let (result, lines) = world.pass().await;
    result.unwrap();
    assert!(lines.contains(&get(PODS)), "{lines:?}");
    assert!(!lines.iter().any(|l| l.starts_with("DELETE")), "{lines:?}");
    assert_eq!(world.admin.take_calls(), vec!["GET /admin/v1/cluster", "POST /admin/v1/brokers/2/drain"]);
    let status = world.api.get(CLUSTER).unwrap();
    assert_eq!(status["status"]["rolling"], json!({"nodeId": 2, "phase": "Draining"}));
    assert_eq!(condition(&status, "Ready")["reason"], "RollingRestart");

    // 2. Still moving: nothing is deleted.
    world.brokers(&[(0, false, 5), (1, false, 5), (2, true, 2)]);
    let (_, lines) = world.pass().await;
    assert!(!lines.iter().any(|l| l.starts_with("DELETE")), "{lines:?}");

    // 3. Empty: its pod is deleted (the StatefulSet recreates it on the new template).
    world.brokers(&[(0, false, 6), (1, false, 6), (2, true, 0)]);
    let (_, lines) = world.pass().await;
    assert!(lines.contains(&format!("DELETE {PODS}/demo-broker-2")), "{lines:?}");
    assert_eq!(world.api.get(CLUSTER).unwrap()["status"]["rolling"], json!({"nodeId": 2, "phase": "Restarting"}));

    // 4. Back on the new template and registered: the drain is cancelled; broker 1 is next.
    world.api.put(&format!("{PODS}/demo-broker-2"), broker_pod(2, "rev2"));
    world.edit(STS, |s| s["status"]["updatedReplicas"] = json!(1));
    world.admin.take_calls();
    world.pass().await.0.unwrap();
    assert_eq!(world.admin.take_calls(), vec!["GET /admin/v1/cluster", "DELETE /admin/v1/brokers/2/drain"]);
    assert!(world.api.get(CLUSTER).unwrap()["status"].get("rolling").is_none());
    world.brokers(&[(0, false, 4), (1, false, 4), (2, false, 4)]);
    world.admin.route("POST", "/admin/v1/brokers/1/drain", 202, json!({"node_id": 1, "draining": true}));
    world.pass().await.0.unwrap();
    assert_eq!(world.admin.take_calls(), vec!["GET /admin/v1/cluster", "POST /admin/v1/brokers/1/drain"]);
    assert_eq!(world.api.get(CLUSTER).unwrap()["status"]["rolling"], json!({"nodeId": 1, "phase": "Draining"}));
}

// --- broker pools ---------------------------------------------------------------------------

const STS_LATENCY: &str = "/apis/apps/v1/namespaces/default/statefulsets/demo-broker-latency";

/// The demo cluster with a file-WAL pool `latency` (node ids from 1000) and a placement rule.
fn pools_json(default_replicas: i32, latency_replicas: i32) -> Value {
    let mut c = cluster_json(default_replicas);
    c["spec"]["pools"] = json!([{
        "name": "latency", "replicas": latency_replicas, "nodeIdBase": 1000,
        "wal": {"kind": "File", "volume": {"size": "20Gi"}},
        "resources": {"requests": {"cpu": "1"}}
    }]);
    c["spec"]["placement"] = json!({"rules": [{"pattern": "outbox\\..*", "pool": "latency"}]});
    c
}

impl World {
    /// Pools created and settled: the default pool's brokers 0.. and the latency pool's 1000..
    async fn converged_pools(default_replicas: i32, latency_replicas: i32) -> World {
        let world = World::new(pools_json(default_replicas, latency_replicas)).await;
        world.pass().await.0.unwrap();
        world.pass().await.0.unwrap();
        for sts in [STS, STS_LATENCY] {
            world.settle(sts);
        }
        let mut brokers: Vec<(i32, bool, usize)> = (0..default_replicas).map(|id| (id, false, 4)).collect();
        brokers.extend((1000..1000 + latency_replicas).map(|id| (id, false, 2)));
        world.brokers(&brokers);
        world.pass().await.0.unwrap();
        assert_eq!(condition(&world.api.get(CLUSTER).unwrap(), "Ready")["status"], "True");
        world.admin.take_calls();
        world.api.take_lines();
        world
    }

    /// The StatefulSet controller's part for one StatefulSet: its pods exist, ready, updated.
    fn settle(&self, sts: &str) {
        self.edit(sts, |s| {
            let n = s["spec"]["replicas"].clone();
            let generation = s["metadata"]["generation"].clone();
            s["status"] =
                json!({"replicas": n, "readyReplicas": n, "updatedReplicas": n, "observedGeneration": generation});
        });
    }
}

fn env_of(sts: &Value, name: &str) -> Value {
    sts["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn pools_get_a_statefulset_each_with_their_own_wal_node_ids_and_status() {
    let world = World::new(pools_json(3, 2)).await;
    world.pass().await.0.unwrap();
    let (result, lines) = world.pass().await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(2)));
    let mut expected = vec![get(STS), get(STS_LATENCY)];
    for path in [SA, CM, HEADLESS, BOOTSTRAP, PDB] {
        expected.extend([get(path), patch(path)]);
    }
    expected.extend([patch(STS), patch(STS_LATENCY), patch(&format!("{CLUSTER}/status"))]);
    assert_eq!(lines, expected);

    let latency = world.api.get(STS_LATENCY).unwrap();
    assert_eq!(latency["spec"]["replicas"], 2);
    assert_eq!(env_of(&latency, "AUTOMQ_POOL")["value"], "latency");
    assert_eq!(env_of(&latency, "AUTOMQ_NODE_ID_BASE")["value"], "1000");
    assert_eq!(env_of(&latency, "AUTOMQ_WAL")["value"], "file:/var/lib/automq/wal");
    assert_eq!(latency["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"], "20Gi");
    assert_eq!(latency["spec"]["selector"]["matchLabels"]["automq.rs/pool"], "latency");
    assert_eq!(latency["spec"]["template"]["metadata"]["labels"]["automq.rs/pool"], "latency");
    assert_eq!(latency["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"], "1");
    assert_eq!(latency["spec"]["serviceName"], "demo-broker", "one headless Service names every broker");
    let default = world.api.get(STS).unwrap();
    assert_eq!(env_of(&default, "AUTOMQ_POOL"), Value::Null, "the default pool runs with the brokers' defaults");
    assert!(default["spec"].get("volumeClaimTemplates").is_none());
    let cm = world.api.get(CM).unwrap();
    assert_eq!(cm["data"]["AUTOMQ_WAL"], "s3");
    assert_eq!(cm["data"]["AUTOMQ_POOL_RULES"], "outbox\\..*=latency");

    world.settle(STS);
    world.settle(STS_LATENCY);
    world.brokers(&[(0, false, 4), (1, false, 4), (2, false, 4), (1000, false, 2), (1001, false, 2)]);
    world.pass().await.0.unwrap();
    let status = world.api.get(CLUSTER).unwrap();
    assert_eq!(condition(&status, "Ready")["message"], "5/5 brokers ready in 2 pools");
    assert_eq!(status["status"]["replicas"], 3, "the scale subresource is the default pool's");
    let pools: Vec<(String, i64, i64, i64)> = status["status"]["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["readyReplicas"].as_i64().unwrap(),
                p["nodeIdBase"].as_i64().unwrap(),
                p["targetReplicas"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(pools, vec![("default".into(), 3, 0, 3), ("latency".into(), 2, 1000, 2)]);
}

#[tokio::test]
async fn scaling_one_pool_drains_its_own_brokers_and_leaves_the_other_alone() {
    let world = World::converged_pools(3, 3).await;
    world.admin.route("POST", "/admin/v1/brokers/1002/drain", 202, json!({"node_id": 1002, "draining": true}));
    world.edit_spec(|spec| spec["pools"][0]["replicas"] = json!(2));
    let (_, lines) = world.pass().await;
    assert!(!lines.contains(&patch(STS)) && !lines.contains(&patch(STS_LATENCY)), "{lines:?}");
    assert_eq!(world.admin.take_calls(), vec!["GET /admin/v1/cluster", "POST /admin/v1/brokers/1002/drain"]);
    let status = world.api.get(CLUSTER).unwrap();
    assert_eq!(status["status"]["draining"], json!([1002]));
    assert!(condition(&status, "Ready")["message"].as_str().unwrap().starts_with("pool latency: draining broker 1002"));

    world.brokers(&[(0, false, 4), (1, false, 4), (2, false, 4), (1000, false, 3), (1001, false, 3), (1002, true, 0)]);
    let (_, lines) = world.pass().await;
    assert!(lines.contains(&patch(STS_LATENCY)) && !lines.contains(&patch(STS)), "{lines:?}");
    assert_eq!(world.api.get(STS_LATENCY).unwrap()["spec"]["replicas"], 2);
    assert_eq!(world.api.get(STS).unwrap()["spec"]["replicas"], 3);
}

#[tokio::test]
async fn a_pool_image_change_rolls_only_that_pool_each_broker_drained_first() {
    let world = World::converged_pools(2, 2).await;
    for id in 0..2 {
        world.api.put(&format!("{PODS}/demo-broker-{id}"), broker_pod(id, "d1"));
    }
    for ordinal in 0..2 {
        let mut pod = broker_pod(ordinal, "l1");
        pod["metadata"]["name"] = json!(format!("demo-broker-latency-{ordinal}"));
        pod["metadata"]["labels"]["automq.rs/pool"] = json!("latency");
        world.api.put(&format!("{PODS}/demo-broker-latency-{ordinal}"), pod);
    }
    world.edit_spec(|spec| spec["pools"][0]["image"] = json!("ghcr.io/automq-rs/automq-broker:0.2.0-rc1"));
    let (_, lines) = world.pass().await;
    assert!(lines.contains(&patch(STS_LATENCY)) && !lines.contains(&patch(STS)), "only the pool's brokers change");
    world.edit(STS_LATENCY, |s| {
        let g = s["metadata"]["generation"].clone();
        s["status"] = json!({"replicas": 2, "readyReplicas": 2, "updatedReplicas": 0, "observedGeneration": g,
                             "currentRevision": "l1", "updateRevision": "l2"});
    });
    world.admin.route("POST", "/admin/v1/brokers/1001/drain", 202, json!({"node_id": 1001, "draining": true}));
    world.admin.route("DELETE", "/admin/v1/brokers/1001/drain", 202, json!({"node_id": 1001, "draining": false}));
    world.admin.take_calls();

    // The pool's highest node id is drained first, its pod left alone while it holds partitions.
    world.pass().await.0.unwrap();
    assert_eq!(world.admin.take_calls(), vec!["GET /admin/v1/cluster", "POST /admin/v1/brokers/1001/drain"]);
    assert_eq!(world.api.get(CLUSTER).unwrap()["status"]["rolling"], json!({"nodeId": 1001, "phase": "Draining"}));
    world.brokers(&[(0, false, 4), (1, false, 4), (1000, false, 3), (1001, true, 1)]);
    let (_, lines) = world.pass().await;
    assert!(!lines.iter().any(|l| l.starts_with("DELETE")), "{lines:?}");

    // Empty: only then is its pod deleted; the default pool's pods are never touched.
    world.brokers(&[(0, false, 4), (1, false, 4), (1000, false, 4), (1001, true, 0)]);
    let (_, lines) = world.pass().await;
    let deletes: Vec<&String> = lines.iter().filter(|l| l.starts_with("DELETE")).collect();
    assert_eq!(deletes, vec![&format!("DELETE {PODS}/demo-broker-latency-1")]);
    assert_eq!(world.api.get(CLUSTER).unwrap()["status"]["rolling"], json!({"nodeId": 1001, "phase": "Restarting"}));

    // Back on the new template and registered: undrained, then the pool's next broker.
    let mut pod = broker_pod(1, "l2");
    pod["metadata"]["name"] = json!("demo-broker-latency-1");
    pod["metadata"]["labels"]["automq.rs/pool"] = json!("latency");
    world.api.put(&format!("{PODS}/demo-broker-latency-1"), pod);
    world.edit(STS_LATENCY, |s| s["status"]["updatedReplicas"] = json!(1));
    world.admin.take_calls();
    world.pass().await.0.unwrap();
    assert_eq!(world.admin.take_calls(), vec!["GET /admin/v1/cluster", "DELETE /admin/v1/brokers/1001/drain"]);
    world.brokers(&[(0, false, 4), (1, false, 4), (1000, false, 2), (1001, false, 2)]);
    world.admin.route("POST", "/admin/v1/brokers/1000/drain", 202, json!({"node_id": 1000, "draining": true}));
    world.pass().await.0.unwrap();
    assert_eq!(world.admin.take_calls(), vec!["GET /admin/v1/cluster", "POST /admin/v1/brokers/1000/drain"]);
    assert_eq!(world.api.get(CLUSTER).unwrap()["status"]["rolling"], json!({"nodeId": 1000, "phase": "Draining"}));
}

#[tokio::test]
async fn a_pool_removed_from_the_spec_is_drained_then_stopped_then_deleted() {
    let world = World::converged_pools(3, 2).await;
    world.admin.route("POST", "/admin/v1/brokers/1000/drain", 202, json!({"node_id": 1000, "draining": true}));
    world.admin.route("POST", "/admin/v1/brokers/1001/drain", 202, json!({"node_id": 1001, "draining": true}));
    world.edit_spec(|spec| {
        spec.as_object_mut().unwrap().remove("pools");
        spec.as_object_mut().unwrap().remove("placement");
    });

    // 1. Drained first; the StatefulSet keeps its brokers running.
    let (_, lines) = world.pass().await;
    assert!(lines.contains(&get(STS_LATENCY)) && !lines.contains(&patch(STS_LATENCY)), "{lines:?}");
    assert_eq!(
        world.admin.take_calls(),
        vec!["GET /admin/v1/cluster", "POST /admin/v1/brokers/1000/drain", "POST /admin/v1/brokers/1001/drain"]
    );
    let status = world.api.get(CLUSTER).unwrap();
    assert_eq!(status["status"]["pools"][1]["phase"], "Removing");
    assert_eq!(status["status"]["draining"], json!([1000, 1001]));
    assert_eq!(condition(&status, "Ready")["reason"], "RemovingPool");

    // 2. Still holding partitions: nothing stops.
    world.brokers(&[(0, false, 4), (1, false, 4), (2, false, 4), (1000, true, 1), (1001, true, 0)]);
    let (_, lines) = world.pass().await;
    assert!(!lines.contains(&patch(STS_LATENCY)), "{lines:?}");

    // 3. Empty: the brokers stop (replicas 0).
    world.brokers(&[(0, false, 5), (1, false, 5), (2, false, 4), (1000, true, 0), (1001, true, 0)]);
    let (_, lines) = world.pass().await;
    assert!(lines.contains(&patch(STS_LATENCY)), "{lines:?}");
    assert_eq!(world.api.get(STS_LATENCY).unwrap()["spec"]["replicas"], 0);

    // 4. A pod still stopping: the StatefulSet stays.
    let mut pod = broker_pod(0, "l1");
    pod["metadata"]["name"] = json!("demo-broker-latency-0");
    pod["metadata"]["labels"]["automq.rs/pool"] = json!("latency");
    world.api.put(&format!("{PODS}/demo-broker-latency-0"), pod);
    let (_, lines) = world.pass().await;
    assert!(!lines.iter().any(|l| l.starts_with("DELETE")), "{lines:?}");

    // 5. Gone: the StatefulSet is deleted and the pool leaves the status.
    world.api.remove(&format!("{PODS}/demo-broker-latency-0"));
    let (_, lines) = world.pass().await;
    assert!(lines.contains(&format!("DELETE {STS_LATENCY}")), "{lines:?}");
    assert!(world.api.get(STS_LATENCY).is_none());
    world.brokers(&[(0, false, 5), (1, false, 5), (2, false, 4)]);
    // (The placement rules went too: the default pool's brokers got new settings.)
    world.settle(STS);
    world.pass().await.0.unwrap();
    let status = world.api.get(CLUSTER).unwrap();
    assert!(status["status"].get("pools").is_none(), "{}", status["status"]);
    assert_eq!(condition(&status, "Ready")["status"], "True");
}

#[tokio::test]
async fn invalid_pools_are_refused_before_anything_is_applied() {
    for (edit, message) in [
        (
            json!({"pools": [{"name": "latency", "replicas": 1, "nodeIdBase": 1500, "wal": {"kind": "S3"}}]}),
            "nodeIdBase must be a positive multiple of 1000",
        ),
        (
            json!({"pools": [{"name": "a", "replicas": 1, "nodeIdBase": 1000, "wal": {"kind": "S3"}},
                          {"name": "b", "replicas": 1, "nodeIdBase": 1000, "wal": {"kind": "S3"}}]}),
            "pools a and b clash",
        ),
        (json!({"placement": {"defaultPool": "bulk"}}), "placement.defaultPool \"bulk\" names no pool"),
        (json!({"placement": {"rules": [{"pattern": "(", "pool": "default"}]}}), "bad pattern"),
        (
            json!({"pools": [{"name": "latency", "replicas": 1, "nodeIdBase": 1000, "wal": {"kind": "File"}}]}),
            "pool latency: wal.volume is required with kind File",
        ),
    ] {
        let mut c = cluster_json(3);
        for (k, v) in edit.as_object().unwrap() {
            c["spec"][k] = v.clone();
        }
        let world = World::new(c).await;
        world.pass().await.0.unwrap();
        let (result, lines) = world.pass().await;
        assert_eq!(result.unwrap(), Action::await_change());
        assert!(!lines.iter().any(|l| l.starts_with("PATCH /apis/apps")), "{lines:?}");
        let degraded = condition(&world.api.get(CLUSTER).unwrap(), "Degraded");
        assert!(degraded["message"].as_str().unwrap().contains(message), "{message}: {degraded}");
    }
}
