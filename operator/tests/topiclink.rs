//! The TopicLink controller against a fake API server and a fake broker admin API: the exact
//! requests of each scenario, and that the source password goes to the brokers only.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use automq_crds::TopicLink;
use automq_operator::{topiclink, Context};
use kube::runtime::controller::Action;
use serde_json::{json, Value};
use support::{condition, context, within, ApiServer, FakeHttp};

const LINK: &str = "/apis/automq.rs/v1alpha1/namespaces/default/topiclinks/legacy";
const CLUSTER: &str = "/apis/automq.rs/v1alpha1/namespaces/default/automqclusters/automq";
const SECRET: &str = "/api/v1/namespaces/default/secrets/mirror-user";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";
const PASSWORD: &str = "s3cr3t-hunter2";

fn get(path: &str) -> String {
    format!("GET {path}")
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn link_json() -> Value {
    json!({
        "apiVersion": "automq.rs/v1alpha1",
        "kind": "TopicLink",
        "metadata": {"name": "legacy", "namespace": "default", "uid": "7b0c7c2e-0000-4000-8000-000000000003", "generation": 1},
        "spec": {
            "clusterRef": {"name": "automq"},
            "source": {"bootstrapServers": "old-kafka:9093", "securityProtocol": "SASL_SSL",
                       "sasl": {"mechanism": "SCRAM-SHA-512", "secretName": "mirror-user"}},
            "topics": [{"name": "orders"}, {"pattern": "payments\\..*"}],
            "consumerGroups": [{"name": "billing"}],
            "producerForwarding": true
        }
    })
}

fn link_state(lag: i64, state: &str, error: Option<&str>) -> Value {
    json!({"name": "legacy", "topics": [
        {"topic": "orders", "state": state, "partitions": 6, "lag": lag, "last_error": error},
        {"topic": "payments.eu", "state": "mirroring", "partitions": 3, "lag": 0, "last_error": null}
    ]})
}

struct World {
    api: ApiServer,
    admin: FakeHttp,
    ctx: Arc<Context>,
}

impl World {
    async fn new() -> World {
        let api = ApiServer::default();
        api.put(LINK, link_json());
        api.put(
            CLUSTER,
            json!({"apiVersion": "automq.rs/v1alpha1", "kind": "AutoMQCluster",
            "metadata": {"name": "automq", "namespace": "default"},
            "spec": {"replicas": 3, "image": "b", "objectStorage": {"bucket": "data"}, "wal": {"kind": "S3"}}}),
        );
        api.put(
            SECRET,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "mirror-user", "namespace": "default"},
            "data": {"username": b64("mirror"), "password": b64(PASSWORD)}}),
        );
        let admin = FakeHttp::default();
        let base = admin.start().await;
        admin.route("PUT", "/admin/v1/links/legacy", 200, json!({"name": "legacy"}));
        admin.route("GET", "/admin/v1/links/legacy", 200, link_state(120, "mirroring", None));
        admin.route("DELETE", "/admin/v1/links/legacy", 200, json!({"name": "legacy", "deleted": true}));
        let ctx = context(&api, &base);
        World { api, admin, ctx }
    }

    async fn pass(&self) -> (Result<Action, automq_operator::Error>, Vec<String>) {
        let obj: TopicLink = serde_json::from_value(self.api.get(LINK).unwrap()).unwrap();
        let result = within(topiclink::reconcile(Arc::new(obj), self.ctx.clone())).await;
        (result, self.api.take_lines())
    }

    fn edit_spec(&self, f: impl FnOnce(&mut Value)) {
        self.api.edit_spec(LINK, f);
    }
}

#[tokio::test]
async fn create_puts_the_link_and_reports_each_topic() {
    let world = World::new().await;
    assert_eq!(world.pass().await.1, vec![format!("PATCH {LINK}")], "the finalizer first");
    let (result, lines) = world.pass().await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(10)));
    assert_eq!(lines, vec![get(SECRET), get(SECRET), get(CLUSTER), format!("PATCH {LINK}/status")]);
    let calls = world.admin.take_calls();
    assert_eq!(calls.len(), 2);
    let put: Value = serde_json::from_str(calls[0].strip_prefix("PUT /admin/v1/links/legacy ").unwrap()).unwrap();
    assert_eq!(
        put,
        json!({
            "source": {"bootstrap_servers": "old-kafka:9093", "security_protocol": "SASL_SSL",
                       "sasl_mechanism": "SCRAM-SHA-512", "username": "mirror", "password": PASSWORD},
            "topics": [{"name": "orders"}, {"pattern": "payments\\..*"}],
            "consumer_groups": [{"name": "billing"}],
            "start_from": "earliest",
            "producer_forwarding": true,
            "paused": false,
            "promote": []
        })
    );
    assert_eq!(calls[1], "GET /admin/v1/links/legacy");

    let link = world.api.get(LINK).unwrap();
    assert_eq!(link["status"]["totalLag"], 120);
    assert_eq!(
        link["status"]["topics"][0],
        json!({"name": "orders", "state": "Mirroring", "partitions": 6, "lag": 120})
    );
    assert_eq!(condition(&link, "Ready")["status"], "True");
    assert_eq!(condition(&link, "Ready")["message"], "2 mirroring, 0 promoted, total lag 120");
    let stored = world.api.dump();
    assert!(stored.contains("Linked") && !stored.contains(PASSWORD), "the password reached the API server");
}

#[tokio::test]
async fn an_unchanged_link_writes_nothing_to_kubernetes() {
    let world = World::new().await;
    world.pass().await.0.unwrap();
    world.pass().await.0.unwrap();
    world.admin.take_calls();
    let (result, lines) = world.pass().await;
    result.unwrap();
    assert_eq!(lines, vec![get(SECRET), get(SECRET), get(CLUSTER)], "reads only");
    assert_eq!(world.admin.take_calls().len(), 2, "PUT (idempotent) and GET");
}

#[tokio::test]
async fn pausing_and_promoting_go_to_the_brokers() {
    let world = World::new().await;
    world.pass().await.0.unwrap();
    world.pass().await.0.unwrap();
    world.admin.take_calls();
    world.edit_spec(|spec| {
        spec["paused"] = json!(true);
        spec["promote"] = json!([{"topic": "orders", "force": true}]);
    });
    world.admin.route("GET", "/admin/v1/links/legacy", 200, link_state(0, "promoted", None));
    world.pass().await.0.unwrap();
    let calls = world.admin.take_calls();
    let put: Value = serde_json::from_str(calls[0].strip_prefix("PUT /admin/v1/links/legacy ").unwrap()).unwrap();
    assert_eq!(put["paused"], true);
    assert_eq!(put["promote"], json!([{"topic": "orders", "force": true}]));
    let link = world.api.get(LINK).unwrap();
    assert_eq!(link["status"]["observedGeneration"], 2);
    assert_eq!(condition(&link, "Ready")["reason"], "Paused");
    assert_eq!(link["status"]["topics"][0]["state"], "Promoted");
}

#[tokio::test]
async fn deletion_removes_the_link_from_the_cluster() {
    let world = World::new().await;
    world.pass().await.0.unwrap();
    world.pass().await.0.unwrap();
    world.admin.take_calls();
    let mut link = world.api.get(LINK).unwrap();
    link["metadata"]["deletionTimestamp"] = json!("2026-12-02T10:05:00Z");
    world.api.put(LINK, link);
    let (result, lines) = world.pass().await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert_eq!(lines, vec![get(CLUSTER), format!("POST {EVENTS}"), format!("PATCH {LINK}")]);
    assert_eq!(world.admin.take_calls(), vec!["DELETE /admin/v1/links/legacy?force=true"]);
    assert_eq!(world.api.get(LINK).unwrap()["metadata"]["finalizers"], json!([]));
}

#[tokio::test]
async fn refusals_and_failures_degrade_the_link_with_their_reason() {
    let world = World::new().await;
    world.pass().await.0.unwrap();

    // The brokers refuse the link.
    world.admin.route("PUT", "/admin/v1/links/legacy", 400, json!({"error": "source old-kafka:9093 unreachable"}));
    let (result, lines) = world.pass().await;
    assert!(result.is_err());
    assert_eq!(
        lines,
        vec![get(SECRET), get(SECRET), get(CLUSTER), format!("PATCH {LINK}/status"), format!("POST {EVENTS}")]
    );
    let degraded = condition(&world.api.get(LINK).unwrap(), "Degraded");
    assert_eq!(degraded["reason"], "LinkApplyFailed");
    assert!(degraded["message"].as_str().unwrap().contains("unreachable"), "{degraded}");

    // Brokers without the links API.
    world.admin.route("PUT", "/admin/v1/links/legacy", 404, json!({"error": "no route"}));
    world.pass().await.0.unwrap();
    assert_eq!(condition(&world.api.get(LINK).unwrap(), "Degraded")["reason"], "LinkApiUnavailable");

    // A topic fails at the source.
    world.admin.route("PUT", "/admin/v1/links/legacy", 200, json!({"name": "legacy"}));
    world.admin.route(
        "GET",
        "/admin/v1/links/legacy",
        200,
        link_state(5, "failed", Some("TOPIC_AUTHORIZATION_FAILED")),
    );
    world.pass().await.0.unwrap();
    let degraded = condition(&world.api.get(LINK).unwrap(), "Degraded");
    assert_eq!(degraded["reason"], "TopicFailed");
    assert_eq!(degraded["message"], "1 of 2 topics failed; orders: TOPIC_AUTHORIZATION_FAILED");

    // The Secret is gone: an invalid spec, nothing sent to the brokers.
    world.api.remove(SECRET);
    world.admin.take_calls();
    let (result, lines) = world.pass().await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));
    assert_eq!(lines, vec![get(SECRET), format!("PATCH {LINK}/status"), format!("POST {EVENTS}")]);
    assert!(world.admin.take_calls().is_empty());
    let degraded = condition(&world.api.get(LINK).unwrap(), "Degraded");
    assert_eq!(degraded["reason"], "InvalidSpec");
    assert_eq!(degraded["message"], "Secret \"mirror-user\" not found");
}
