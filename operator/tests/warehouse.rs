//! The AnalyticsWarehouse controller against a fake API server, with the query nodes'
//! `/readyz` on a loopback fake: the exact requests of each scenario.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use automq_crds::AnalyticsWarehouse;
use automq_operator::{warehouse, Context};
use kube::runtime::controller::Action;
use serde_json::{json, Value};
use support::{condition, context, within, ApiServer, FakeHttp};

const WAREHOUSE: &str = "/apis/automq.rs/v1alpha1/namespaces/default/analyticswarehouses/wh";
const KAFKA: &str = "/apis/automq.rs/v1alpha1/namespaces/default/automqclusters/events";
const SA: &str = "/api/v1/namespaces/default/serviceaccounts/wh-query";
const CM: &str = "/api/v1/namespaces/default/configmaps/wh-query-config";
const HEADLESS: &str = "/api/v1/namespaces/default/services/wh-query";
const MYSQL: &str = "/api/v1/namespaces/default/services/wh-mysql";
const PDB: &str = "/apis/policy/v1/namespaces/default/poddisruptionbudgets/wh-query";
const HPA: &str = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/wh-query";
const STS: &str = "/apis/apps/v1/namespaces/default/statefulsets/wh-query";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";
const PODS: &str = "/api/v1/namespaces/default/pods";

fn get(path: &str) -> String {
    format!("GET {path}")
}
fn patch(path: &str) -> String {
    format!("PATCH {path}")
}

fn warehouse_json(replicas: i32) -> Value {
    json!({
        "apiVersion": "automq.rs/v1alpha1",
        "kind": "AnalyticsWarehouse",
        "metadata": {"name": "wh", "namespace": "default", "uid": "7b0c7c2e-0000-4000-8000-000000000002", "generation": 1},
        "spec": {
            "replicas": replicas,
            "image": "ghcr.io/automq-rs/automq-query-node:0.1.0",
            "objectStorage": {"bucket": "tables", "region": "eu-west-1", "workloadIdentity": {"serviceAccountAnnotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/wh"}}},
            "cacheSize": "4Gi",
            "kafkaClusterRef": {"name": "events"},
            "rootPasswordSecret": {"name": "wh-root", "key": "password"}
        }
    })
}

/// Reads every pass makes when nothing changes: the referenced cluster, the children, the
/// HPA (absent without autoscaling), the StatefulSet, the pods.
fn steady_reads() -> Vec<String> {
    [KAFKA, SA, CM, HEADLESS, MYSQL, PDB, HPA, STS, PODS].iter().map(|p| get(p)).collect()
}

struct World {
    api: ApiServer,
    nodes: FakeHttp,
    ctx: Arc<Context>,
}

impl World {
    async fn new(w: Value) -> World {
        let api = ApiServer::default();
        api.put(WAREHOUSE, w);
        api.put(
            KAFKA,
            json!({"apiVersion": "automq.rs/v1alpha1", "kind": "AutoMQCluster",
            "metadata": {"name": "events", "namespace": "default"},
            "spec": {"replicas": 3, "image": "b", "objectStorage": {"bucket": "data"}, "wal": {"kind": "S3"},
                     "listeners": {"kafkaPort": 9093}}}),
        );
        let nodes = FakeHttp::default();
        let base = nodes.start().await;
        let ctx = context(&api, &base);
        World { api, nodes, ctx }
    }

    async fn pass(&self) -> (Result<Action, automq_operator::Error>, Vec<String>) {
        let obj: AnalyticsWarehouse = serde_json::from_value(self.api.get(WAREHOUSE).unwrap()).unwrap();
        let result = within(warehouse::reconcile(Arc::new(obj), self.ctx.clone())).await;
        (result, self.api.take_lines())
    }

    fn edit(&self, path: &str, f: impl FnOnce(&mut Value)) {
        self.api.edit(path, f);
    }

    fn edit_spec(&self, f: impl FnOnce(&mut Value)) {
        self.api.edit_spec(WAREHOUSE, f);
    }

    /// The StatefulSet controller's part: pods exist and the StatefulSet reports them.
    fn settle_pods(&self) {
        let mut n = 0;
        self.edit(STS, |s| {
            n = s["spec"]["replicas"].as_i64().unwrap();
            let generation = s["metadata"]["generation"].clone();
            s["status"] =
                json!({"replicas": n, "readyReplicas": n, "updatedReplicas": n, "observedGeneration": generation});
        });
        for i in 0..8 {
            let path = format!("{PODS}/wh-query-{i}");
            if i < n {
                self.api.put(&path, json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("wh-query-{i}"), "namespace": "default",
                                 "labels": {"app.kubernetes.io/name": "automq-query-node", "app.kubernetes.io/instance": "wh",
                                            "app.kubernetes.io/component": "query-node"}},
                    "status": {"podIP": "127.0.0.1"}}));
            } else {
                self.api.remove(&path);
            }
        }
    }

    async fn converged(replicas: i32) -> World {
        let world = World::new(warehouse_json(replicas)).await;
        world.nodes.route("GET", "/readyz", 200, json!("ok"));
        world.pass().await.0.unwrap();
        world.pass().await.0.unwrap();
        world.settle_pods();
        world.pass().await.0.unwrap();
        assert_eq!(condition(&world.api.get(WAREHOUSE).unwrap(), "Ready")["status"], "True");
        world.nodes.take_calls();
        world.api.take_lines();
        world
    }
}

#[tokio::test]
async fn create_applies_the_query_nodes_and_the_mysql_service() {
    let world = World::new(warehouse_json(2)).await;
    let (result, lines) = world.pass().await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert_eq!(lines, vec![patch(WAREHOUSE)], "the finalizer first");

    let (result, lines) = world.pass().await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(2)));
    let mut expected = vec![get(KAFKA)];
    for path in [SA, CM, HEADLESS, MYSQL, PDB] {
        expected.extend([get(path), patch(path)]);
    }
    expected.extend([get(HPA), get(STS), patch(STS), get(PODS), patch(&format!("{WAREHOUSE}/status"))]);
    assert_eq!(lines, expected);

    let cm = world.api.get(CM).unwrap();
    assert_eq!(cm["data"]["AUTOMQ_DEFAULT_KAFKA_BROKERS"], "events-bootstrap.default.svc:9093");
    assert_eq!(cm["data"]["AUTOMQ_QUERY_CACHE_MB"], "4096");
    assert_eq!(cm["data"]["AUTOMQ_OBJECT_STORE"], "s3://tables?region=eu-west-1");
    let sa = world.api.get(SA).unwrap();
    assert_eq!(sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"], "arn:aws:iam::1:role/wh");
    let sts = world.api.get(STS).unwrap();
    assert_eq!(sts["spec"]["replicas"], 2);
    assert_eq!(sts["spec"]["podManagementPolicy"], "Parallel");
    let env = sts["spec"]["template"]["spec"]["containers"][0]["env"].as_array().unwrap().clone();
    let root = env.iter().find(|e| e["name"] == "AUTOMQ_ROOT_PASSWORD").unwrap();
    assert_eq!(root["valueFrom"]["secretKeyRef"], json!({"name": "wh-root", "key": "password"}));
    assert!(env.iter().all(|e| e["name"] != "AWS_ACCESS_KEY_ID"), "workload identity needs no keys");
    let mysql = world.api.get(MYSQL).unwrap();
    assert_eq!(mysql["spec"]["ports"], json!([{"name": "mysql", "port": 9030, "targetPort": "mysql"}]));
    let status = world.api.get(WAREHOUSE).unwrap();
    assert_eq!(condition(&status, "Ready")["reason"], "Starting");
    assert_eq!(status["status"]["mysqlEndpoint"], "wh-mysql.default.svc:9030");
}

#[tokio::test]
async fn readiness_comes_from_each_query_node_and_a_quiet_pass_writes_nothing() {
    let world = World::converged(2).await;
    let (result, lines) = world.pass().await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(300)));
    assert_eq!(lines, steady_reads(), "reads only");
    assert_eq!(world.nodes.take_calls(), vec!["GET /readyz", "GET /readyz"], "one probe per query node");

    // A node stops answering ready: the warehouse is not Ready any more.
    world.nodes.route("GET", "/readyz", 503, json!("warming up"));
    let (_, lines) = world.pass().await;
    assert_eq!(lines.last().unwrap(), &patch(&format!("{WAREHOUSE}/status")));
    let status = world.api.get(WAREHOUSE).unwrap();
    assert_eq!(status["status"]["readyReplicas"], 0);
    assert_eq!(condition(&status, "Ready")["status"], "False");
}

#[tokio::test]
async fn scale_and_spec_changes_reach_the_statefulset() {
    let world = World::converged(2).await;
    world.edit_spec(|spec| spec["replicas"] = json!(4));
    let (result, lines) = world.pass().await;
    result.unwrap();
    let mut expected: Vec<String> = steady_reads()[..8].to_vec();
    expected.extend([format!("POST {EVENTS}"), patch(STS), get(PODS), patch(&format!("{WAREHOUSE}/status"))]);
    assert_eq!(lines, expected);
    assert_eq!(world.api.get(STS).unwrap()["spec"]["replicas"], 4);

    world.settle_pods();
    world.pass().await.0.unwrap();
    world.edit_spec(|spec| spec["replicas"] = json!(1));
    let (_, lines) = world.pass().await;
    assert!(lines.contains(&patch(STS)));
    assert_eq!(world.api.get(STS).unwrap()["spec"]["replicas"], 1, "query nodes need no drain");

    world.edit_spec(|spec| spec["image"] = json!("ghcr.io/automq-rs/automq-query-node:0.2.0"));
    let (_, lines) = world.pass().await;
    assert!(lines.contains(&patch(STS)));
    let sts = world.api.get(STS).unwrap();
    assert_eq!(sts["spec"]["template"]["spec"]["containers"][0]["image"], "ghcr.io/automq-rs/automq-query-node:0.2.0");
    assert_eq!(condition(&world.api.get(WAREHOUSE).unwrap(), "Ready")["reason"], "RollingUpdate");

    // The disk cache size reaches the query nodes' settings (absent until set).
    assert!(world.api.get(CM).unwrap()["data"].get("AUTOMQ_QUERY_DISK_CACHE_MB").is_none());
    world.edit_spec(|spec| spec["diskCacheSize"] = json!("20Gi"));
    let (_, lines) = world.pass().await;
    assert!(lines.contains(&patch(CM)), "{lines:?}");
    assert_eq!(world.api.get(CM).unwrap()["data"]["AUTOMQ_QUERY_DISK_CACHE_MB"], "20480");
    world.edit_spec(|spec| spec["diskCacheSize"] = json!("0"));
    world.pass().await.0.unwrap();
    assert_eq!(world.api.get(CM).unwrap()["data"]["AUTOMQ_QUERY_DISK_CACHE_MB"], "0", "0 turns it off");
}

#[tokio::test]
async fn autoscaling_is_an_hpa_on_the_scale_subresource_removed_when_turned_off() {
    let world = World::converged(2).await;
    world.edit_spec(|spec| {
        spec["autoscaling"] = json!({"minReplicas": 2, "maxReplicas": 6, "targetCpuUtilization": 65})
    });
    let (_, lines) = world.pass().await;
    assert!(lines.contains(&patch(HPA)), "{lines:?}");
    let hpa = world.api.get(HPA).unwrap();
    assert_eq!(
        hpa["spec"]["scaleTargetRef"],
        json!({"apiVersion": "automq.rs/v1alpha1", "kind": "AnalyticsWarehouse", "name": "wh"})
    );
    assert_eq!(hpa["spec"]["maxReplicas"], 6);
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 65);

    world.edit_spec(|spec| {
        spec.as_object_mut().unwrap().remove("autoscaling");
    });
    let (_, lines) = world.pass().await;
    assert!(lines.contains(&format!("DELETE {HPA}")), "{lines:?}");
    assert!(world.api.get(HPA).is_none());
}

#[tokio::test]
async fn deletion_waits_for_the_query_nodes_to_stop() {
    let world = World::converged(2).await;
    world.edit(WAREHOUSE, |w| w["metadata"]["deletionTimestamp"] = json!("2026-12-02T10:05:00Z"));
    let (result, lines) = world.pass().await;
    assert!(matches!(result, Err(automq_operator::Error::Waiting(_))), "{result:?}");
    assert_eq!(lines, vec![get(STS), patch(STS), get(PODS)]);
    assert_eq!(world.api.get(STS).unwrap()["spec"]["replicas"], 0);

    world.settle_pods();
    let (result, lines) = world.pass().await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert_eq!(lines, vec![get(STS), get(PODS), patch(WAREHOUSE)]);
    assert_eq!(world.api.get(WAREHOUSE).unwrap()["metadata"]["finalizers"], json!([]));
}

#[tokio::test]
async fn a_failing_child_and_an_invalid_spec_are_reported_as_degraded() {
    let world = World::converged(2).await;
    world.api.fail("PATCH", MYSQL, 422, "Service \"wh-mysql\" is invalid: spec.type: Unsupported value");
    world.edit_spec(|spec| spec["serviceType"] = json!("LoadBalancer"));
    let (result, lines) = world.pass().await;
    assert!(result.is_err());
    assert_eq!(
        lines,
        vec![
            get(KAFKA),
            get(SA),
            get(CM),
            get(HEADLESS),
            get(MYSQL),
            patch(MYSQL),
            patch(&format!("{WAREHOUSE}/status")),
            format!("POST {EVENTS}")
        ]
    );
    let degraded = condition(&world.api.get(WAREHOUSE).unwrap(), "Degraded");
    assert_eq!((degraded["status"].as_str(), degraded["reason"].as_str()), (Some("True"), Some("ApplyFailed")));
    assert!(degraded["message"].as_str().unwrap().contains("Service"), "{degraded}");

    world.edit_spec(|spec| spec["config"] = json!({"mysql-listen": "0.0.0.0:3306"}));
    let (result, lines) = world.pass().await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert_eq!(lines, vec![get(KAFKA), patch(&format!("{WAREHOUSE}/status")), format!("POST {EVENTS}")]);
    let degraded = condition(&world.api.get(WAREHOUSE).unwrap(), "Degraded");
    assert_eq!(degraded["reason"], "InvalidSpec");
    assert!(degraded["message"].as_str().unwrap().contains("\"mysql-listen\" cannot be set"), "{degraded}");

    world.edit_spec(|spec| {
        spec["config"] = json!({});
        spec["diskCacheSize"] = json!("-1Gi");
    });
    let (result, _) = world.pass().await;
    assert_eq!(result.unwrap(), Action::await_change());
    let degraded = condition(&world.api.get(WAREHOUSE).unwrap(), "Degraded");
    assert_eq!(degraded["reason"], "InvalidSpec");
    assert!(degraded["message"].as_str().unwrap().contains("diskCacheSize"), "{degraded}");
}
