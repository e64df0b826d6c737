//! The committed CRDs are what the types generate, they are structural apiextensions/v1
//! objects, and their CEL rules (evaluated with kube-cel, as the API server would) accept
//! every example in `deploy/examples` and refuse the mistakes they exist for.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

#[test]
fn committed_crds_match_the_types() {
    for (file, crd) in automq_crds::all() {
        let path = repo().join("crds").join(file);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == automq_crds::to_yaml(&crd).unwrap(),
            "{} is stale: run `cargo run -p automq-crds --bin crdgen` (and copy crds/*.yaml to charts/automq-operator/files/crds/)",
            path.display()
        );
    }
}

/// The openAPIV3Schema of the CRD serving `kind`.
fn schema(kind: &str) -> Value {
    let crd = automq_crds::all().into_iter().map(|(_, c)| c).find(|c| c.spec.names.kind == kind).unwrap();
    assert_eq!(crd.spec.versions.len(), 1);
    let version = &crd.spec.versions[0];
    assert!(version.served && version.storage);
    serde_json::to_value(version.schema.as_ref().unwrap().open_api_v3_schema.as_ref().unwrap()).unwrap()
}

/// Every node of a structural schema has a type (or is int-or-string / preserves unknown
/// fields), which the API server requires of apiextensions/v1 CRDs.
fn assert_structural(node: &Value, at: &str) {
    let typed = node.get("type").is_some()
        || node.get("x-kubernetes-int-or-string") == Some(&json!(true))
        || node.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
    assert!(typed, "{at} has no type");
    for key in ["anyOf", "oneOf", "allOf", "not"] {
        if let Some(list) = node.get(key).and_then(Value::as_array) {
            // Allowed only as value validation, never introducing fields of their own.
            for (i, branch) in list.iter().enumerate() {
                assert!(branch.get("properties").is_none(), "{at}.{key}[{i}] declares properties");
            }
        }
    }
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (name, child) in props {
            assert_structural(child, &format!("{at}.{name}"));
        }
    }
    if let Some(items) = node.get("items") {
        assert_structural(items, &format!("{at}[]"));
    }
    if let Some(extra) = node.get("additionalProperties").filter(|v| v.is_object()) {
        assert_structural(extra, &format!("{at}{{}}"));
    }
    // No defaults: the API server would write them into stored objects (GitOps drift).
    assert!(node.get("default").is_none(), "{at} has a default");
}

#[test]
fn schemas_are_structural_without_defaults() {
    for (_, crd) in automq_crds::all() {
        let kind = crd.spec.names.kind.clone();
        assert_structural(&schema(&kind), &kind);
        assert_eq!(crd.spec.group, automq_crds::GROUP);
        assert_eq!(crd.spec.versions[0].name, automq_crds::VERSION);
        assert!(crd.spec.names.short_names.as_ref().is_some_and(|s| !s.is_empty()), "{kind} has no short name");
        let columns = crd.spec.versions[0].additional_printer_columns.as_ref().unwrap();
        assert!(columns.iter().any(|c| c.name == "Status"), "{kind} prints no status column");
    }
    for workload in ["AutoMQCluster", "AnalyticsWarehouse"] {
        let crd = automq_crds::all().into_iter().map(|(_, c)| c).find(|c| c.spec.names.kind == workload).unwrap();
        let scale = crd.spec.versions[0].subresources.as_ref().unwrap().scale.clone().unwrap();
        assert_eq!(scale.spec_replicas_path, ".spec.replicas");
        assert_eq!(scale.label_selector_path.as_deref(), Some(".status.selector"));
    }
}

/// Every automq.rs object in deploy/examples, with its file.
fn examples() -> Vec<(String, Value)> {
    let dir = repo().join("deploy/examples");
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for path in files.into_iter().filter(|p| p.extension().is_some_and(|e| e == "yaml")) {
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(doc).unwrap();
            if value["apiVersion"] == "automq.rs/v1alpha1" {
                out.push((path.file_name().unwrap().to_string_lossy().into_owned(), value));
            }
        }
    }
    out
}

fn cel(obj: &Value, old: Option<&Value>) -> Result<(), String> {
    let kind = obj["kind"].as_str().unwrap();
    kube_cel::Validator::new().validate(&schema(kind), obj, old).map_err(|e| format!("{e:?}"))
}

#[test]
fn every_example_passes_the_cel_rules_and_parses_as_its_type() {
    let examples = examples();
    let kinds: std::collections::BTreeSet<&str> = examples.iter().map(|(_, v)| v["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.into_iter().collect::<Vec<_>>(), ["AnalyticsWarehouse", "AutoMQCluster", "TopicLink"]);
    for (file, obj) in &examples {
        cel(obj, None).unwrap_or_else(|e| panic!("{file}: {e}"));
        let parsed = match obj["kind"].as_str().unwrap() {
            "AutoMQCluster" => serde_json::from_value::<automq_crds::AutoMQCluster>(obj.clone()).map(|_| ()),
            "AnalyticsWarehouse" => serde_json::from_value::<automq_crds::AnalyticsWarehouse>(obj.clone()).map(|_| ()),
            _ => serde_json::from_value::<automq_crds::TopicLink>(obj.clone()).map(|_| ()),
        };
        parsed.unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}

/// The plain example of `kind` (the refusal tests below edit it).
fn example(kind: &str) -> Value {
    let file = match kind {
        "AutoMQCluster" => "automqcluster-filewal.yaml",
        "AnalyticsWarehouse" => "analyticswarehouse.yaml",
        _ => "topiclink.yaml",
    };
    example_in(file)
}

fn example_in(file: &str) -> Value {
    examples().into_iter().find(|(f, _)| f == file).map(|(_, v)| v).unwrap_or_else(|| panic!("no example {file}"))
}

/// Applies `edit` to an example of `kind`; the CEL rules must refuse it with `message`.
fn refused(kind: &str, edit: impl FnOnce(&mut Value), message: &str) {
    let mut obj = example(kind);
    edit(&mut obj);
    let err = cel(&obj, None).expect_err(message);
    assert!(err.contains(message), "expected {message:?}, got {err}");
}

#[test]
fn cel_rules_refuse_what_they_exist_for() {
    refused("AutoMQCluster", |c| c["spec"]["wal"] = json!({"kind": "File"}), "wal.volume is required with kind File");
    refused(
        "AutoMQCluster",
        |c| c["spec"]["wal"] = json!({"kind": "S3", "volume": {"size": "1Gi"}}),
        "wal.volume is required with kind File and not allowed with kind S3",
    );
    refused(
        "AutoMQCluster",
        |c| c["spec"]["autoscaling"] = json!({"minReplicas": 5, "maxReplicas": 3, "targetCpuUtilization": 60}),
        "minReplicas must not exceed maxReplicas",
    );
    refused(
        "AutoMQCluster",
        |c| c["spec"]["autoscaling"] = json!({"minReplicas": 1, "maxReplicas": 3}),
        "set targetBytesInPerBroker, targetCpuUtilization or both",
    );
    refused(
        "AutoMQCluster",
        |c| c["spec"]["objectStorage"]["workloadIdentity"] = json!({"serviceAccountAnnotations": {"a": "b"}}),
        "set at most one of credentials and workloadIdentity",
    );
    refused(
        "AutoMQCluster",
        |c| c["spec"]["objectStorage"]["endpoint"] = json!("minio:9000"),
        "endpoint must be an http:// or https:// URL",
    );
    refused(
        "TopicLink",
        |l| l["spec"]["topics"] = json!([{"name": "a", "pattern": "b.*"}]),
        "set exactly one of name and pattern",
    );
    refused(
        "TopicLink",
        |l| {
            l["spec"]["source"]["sasl"].take();
            l["spec"]["source"].as_object_mut().unwrap().remove("sasl");
        },
        "sasl is required with SASL_PLAINTEXT and SASL_SSL",
    );
    refused(
        "AnalyticsWarehouse",
        |w| w["spec"]["autoscaling"] = json!({"minReplicas": 4, "maxReplicas": 2, "targetCpuUtilization": 70}),
        "minReplicas must not exceed maxReplicas",
    );
}

/// The example with broker pools.
fn pools_example() -> Value {
    examples().into_iter().map(|(_, v)| v).find(|v| v["spec"].get("pools").is_some()).unwrap()
}

fn pools_refused(edit: impl FnOnce(&mut Value), message: &str) {
    let mut obj = pools_example();
    edit(&mut obj);
    let err = cel(&obj, None).expect_err(message);
    assert!(err.contains(message), "expected {message:?}, got {err}");
}

#[test]
fn pools_refuse_clashing_node_ids_and_unknown_placement_pools() {
    pools_refused(|c| c["spec"]["pools"][0]["nodeIdBase"] = json!(1500), "nodeIdBase must be a multiple of 1000");
    pools_refused(
        |c| {
            let mut second = c["spec"]["pools"][0].clone();
            second["name"] = json!("outbox");
            c["spec"]["pools"].as_array_mut().unwrap().push(second);
        },
        "every pool needs its own nodeIdBase",
    );
    pools_refused(
        |c| c["spec"]["pools"][0]["name"] = json!("default"),
        "`default` is the pool of the top-level fields",
    );
    pools_refused(|c| c["spec"]["placement"]["defaultPool"] = json!("bulk"), "placement.defaultPool names no pool");
    pools_refused(|c| c["spec"]["placement"]["rules"][0]["pool"] = json!("fast"), "a placement rule names no pool");
    let mut ok = pools_example();
    ok["spec"]["placement"]["defaultPool"] = json!("latency");
    cel(&ok, None).unwrap();
}

#[test]
fn a_pools_node_ids_and_wal_cannot_change() {
    let old = pools_example();
    let mut moved = old.clone();
    moved["spec"]["pools"][0]["nodeIdBase"] = json!(2000);
    assert!(cel(&moved, Some(&old)).unwrap_err().contains("nodeIdBase is immutable"));
    let mut rewal = old.clone();
    rewal["spec"]["pools"][0]["wal"] = json!({"kind": "S3"});
    assert!(cel(&rewal, Some(&old)).unwrap_err().contains("a pool's wal is immutable"));
    let mut resized = old.clone();
    resized["spec"]["pools"][0]["replicas"] = json!(6);
    cel(&resized, Some(&old)).unwrap();
}

#[test]
fn a_topic_link_cannot_change_its_cluster() {
    let old = example("TopicLink");
    let mut new = old.clone();
    new["spec"]["clusterRef"]["name"] = json!("another");
    let err = cel(&new, Some(&old)).unwrap_err();
    assert!(err.contains("clusterRef is immutable"), "{err}");
    cel(&old, Some(&old)).unwrap();
}

#[test]
fn the_wal_of_a_cluster_cannot_change() {
    let old = example("AutoMQCluster");
    let mut new = old.clone();
    new["spec"]["wal"] = json!({"kind": "File", "volume": {"size": "10Gi"}});
    let err = cel(&new, Some(&old)).unwrap_err();
    assert!(err.contains("wal is immutable"), "{err}");
    let mut resized = old.clone();
    resized["spec"]["replicas"] = json!(9);
    cel(&resized, Some(&old)).unwrap();
}

// --- security ---------------------------------------------------------------------------------

/// Applies `edit` to the example in `file`; the CEL rules must refuse it with `message`.
fn refused_in(file: &str, edit: impl FnOnce(&mut Value), message: &str) {
    let mut obj = example_in(file);
    edit(&mut obj);
    let err = cel(&obj, None).expect_err(message);
    assert!(err.contains(message), "expected {message:?}, got {err}");
}

const SECURE_CLUSTER: &str = "automqcluster-secure.yaml";
const SECURE_WAREHOUSE: &str = "analyticswarehouse-secure.yaml";

#[test]
fn the_secure_examples_use_every_security_field() {
    let cluster = example_in(SECURE_CLUSTER);
    let security = &cluster["spec"]["security"];
    for field in ["tls", "sasl", "users", "authorization"] {
        assert!(security.get(field).is_some(), "{SECURE_CLUSTER} has no security.{field}");
    }
    let warehouse = example_in(SECURE_WAREHOUSE);
    let security = &warehouse["spec"]["security"];
    for field in ["tls", "requireSecureTransport", "rootPasswordSecret", "users"] {
        assert!(security.get(field).is_some(), "{SECURE_WAREHOUSE} has no security.{field}");
    }
}

#[test]
fn cluster_security_rules_refuse_what_they_exist_for() {
    let drop = |c: &mut Value, field: &str| {
        c["spec"]["security"].as_object_mut().unwrap().remove(field);
    };
    refused_in(SECURE_CLUSTER, |c| drop(c, "sasl"), "users need sasl");
    refused_in(
        SECURE_CLUSTER,
        |c| {
            drop(c, "users");
            drop(c, "sasl");
        },
        "authorization needs sasl",
    );
    for bad in ["..data", ".hidden", "a/b", "User:alice", "a;b", "a b", "-x"] {
        refused_in(
            SECURE_CLUSTER,
            |c| c["spec"]["security"]["users"][1]["name"] = json!(bad),
            "a user name is letters, digits",
        );
    }
    refused_in(
        SECURE_CLUSTER,
        |c| c["spec"]["security"]["authorization"]["superUsers"] = json!(["User:admin"]),
        "superUsers are user names (without 'User:')",
    );
    // Allowed: TLS alone (SSL), SASL without users (users made through the admin API), names
    // with dots, dashes and at signs.
    let mut ok = example_in(SECURE_CLUSTER);
    ok["spec"]["security"] = json!({"tls": {"secretName": "t"}});
    cel(&ok, None).unwrap();
    ok["spec"]["security"] = json!({"sasl": {"mechanisms": ["SCRAM-SHA-256"]}, "authorization": {"type": "acl"}});
    cel(&ok, None).unwrap();
    let mut ok = example_in(SECURE_CLUSTER);
    ok["spec"]["security"]["users"][1]["name"] = json!("svc.orders-1@prod");
    cel(&ok, None).unwrap();
}

#[test]
fn warehouse_security_rules_refuse_what_they_exist_for() {
    refused_in(
        SECURE_WAREHOUSE,
        |w| {
            w["spec"]["security"].as_object_mut().unwrap().remove("tls");
        },
        "requireSecureTransport needs tls",
    );
    refused_in(
        SECURE_WAREHOUSE,
        |w| w["spec"]["security"]["users"][0]["name"] = json!("root"),
        "root is not declared in users",
    );
    refused_in(
        SECURE_WAREHOUSE,
        |w| w["spec"]["security"]["users"][0]["name"] = json!("x".repeat(33)),
        "MySQL user names are at most 32 characters",
    );
    refused_in(
        SECURE_WAREHOUSE,
        |w| w["spec"]["rootPasswordSecret"] = json!({"name": "old", "key": "password"}),
        "set the root password in one place",
    );
    // TLS offered but not required; the old top-level root password alone.
    let mut ok = example_in(SECURE_WAREHOUSE);
    ok["spec"]["security"]["requireSecureTransport"] = json!(false);
    ok["spec"]["security"].as_object_mut().unwrap().remove("rootPasswordSecret");
    ok["spec"]["rootPasswordSecret"] = json!({"name": "old", "key": "password"});
    cel(&ok, None).unwrap();
}

/// What CEL cannot see, the structural schema says: the mechanisms and the authorization type
/// are enums, lists of names are sets or maps keyed by name, every string a rule reads is
/// bounded (the API server refuses a CRD whose rules may cost too much).
#[test]
fn security_schemas_bound_and_enumerate_their_values() {
    let cluster = schema("AutoMQCluster");
    let security = &cluster["properties"]["spec"]["properties"]["security"]["properties"];
    let mechanisms = &security["sasl"]["properties"]["mechanisms"];
    assert_eq!(mechanisms["items"]["enum"], json!(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]));
    assert_eq!(mechanisms["x-kubernetes-list-type"], "set");
    assert_eq!(mechanisms["minItems"], 1);
    assert_eq!(security["authorization"]["properties"]["type"]["enum"], json!(["acl"]));
    assert_eq!(security["authorization"]["properties"]["superUsers"]["items"]["maxLength"], 64);
    assert_eq!(security["users"]["x-kubernetes-list-type"], "map");
    assert_eq!(security["users"]["x-kubernetes-list-map-keys"], json!(["name"]));
    assert_eq!(security["tls"]["properties"]["secretName"]["minLength"], 1);
    let rule = security["users"]["items"]["properties"]["name"]["x-kubernetes-validations"][0]["rule"].clone();
    assert!(rule.as_str().unwrap().contains(automq_crds::security::USER_NAME_PATTERN), "{rule}");
    let warehouse = schema("AnalyticsWarehouse");
    let security = &warehouse["properties"]["spec"]["properties"]["security"]["properties"];
    assert_eq!(security["users"]["x-kubernetes-list-type"], "map");
    assert_eq!(security["tls"]["properties"]["secretName"]["minLength"], 1);
}

/// Every rule of every CRD has a cost estimate (kube-cel's coarse one) within the API server's
/// budget. (Its scope check is not used: it counts comprehension variables as out of scope.)
#[test]
fn every_cel_rule_is_within_the_cost_budget() {
    fn walk(node: &Value, at: &str, found: &mut usize) {
        if let Some(rules) = node.get("x-kubernetes-validations").and_then(Value::as_array) {
            let compiled = kube_cel::compile_schema(node);
            for rule in rules {
                let rule = rule["rule"].as_str().unwrap();
                *found += 1;
                let warnings = kube_cel::estimate_rule_cost(rule, &compiled);
                let serious: Vec<_> =
                    warnings.iter().filter(|w| matches!(w.kind, kube_cel::WarningKind::CostExceeded)).collect();
                assert!(serious.is_empty(), "{at}: {rule}: {serious:?}");
            }
        }
        for (name, child) in node.get("properties").and_then(Value::as_object).into_iter().flatten() {
            walk(child, &format!("{at}.{name}"), found);
        }
        if let Some(items) = node.get("items") {
            walk(items, &format!("{at}[]"), found);
        }
    }
    let mut found = 0;
    for (_, crd) in automq_crds::all() {
        let kind = crd.spec.names.kind.clone();
        walk(&schema(&kind), &kind, &mut found);
    }
    assert!(found >= 20, "only {found} rules found");
}

// --- named listeners --------------------------------------------------------------------------

const LISTENERS_CLUSTER: &str = "automqcluster-listeners.yaml";

#[test]
fn the_listeners_example_has_an_internal_and_an_external_listener_that_differ() {
    let cluster = example_in(LISTENERS_CLUSTER);
    let listeners = cluster["spec"]["listeners"]["kafka"].as_array().unwrap();
    let names: Vec<&str> = listeners.iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["INTERNAL", "EXTERNAL"]);
    assert!(listeners[0].get("tls").is_none() && listeners[0].get("authentication").is_none());
    assert_eq!(listeners[1]["tls"], true);
    assert_eq!(listeners[1]["authentication"], "scram-sha-512");
    assert!(listeners[1]["tlsSecret"]["secretName"].is_string());
    let parsed: automq_crds::AutoMQCluster = serde_json::from_value(cluster).unwrap();
    let external = &parsed.spec.listeners.unwrap().kafka.unwrap()[1];
    assert_eq!(external.security_protocol(), "SASL_SSL");
}

/// Listener `i` of a cluster.
fn listener(c: &mut Value, i: usize) -> &mut Value {
    &mut c["spec"]["listeners"]["kafka"][i]
}

#[test]
fn listener_rules_refuse_what_they_exist_for() {
    refused_in(LISTENERS_CLUSTER, |c| listener(c, 1)["port"] = json!(9092), "every kafka listener needs its own port");
    refused_in(
        LISTENERS_CLUSTER,
        |c| listener(c, 1)["port"] = json!(9644),
        "a kafka listener cannot use the HTTP port",
    );
    refused_in(
        LISTENERS_CLUSTER,
        |c| {
            c["spec"]["listeners"]["httpPort"] = json!(8080);
            listener(c, 0)["port"] = json!(8080);
        },
        "a kafka listener cannot use the HTTP port",
    );
    refused_in(
        LISTENERS_CLUSTER,
        |c| c["spec"]["listeners"]["kafkaPort"] = json!(9092),
        "kafkaPort is the single listener's port",
    );
    refused_in(LISTENERS_CLUSTER, |c| listener(c, 0)["name"] = json!("HTTP"), "HTTP is the name of the HTTP port");
    refused_in(
        LISTENERS_CLUSTER,
        |c| listener(c, 0)["tlsSecret"] = json!({"secretName": "internal-tls"}),
        "tlsSecret needs tls: true",
    );
    // TLS needs a certificate: the listener's own, or the cluster's.
    refused_in(
        LISTENERS_CLUSTER,
        |c| {
            listener(c, 1).as_object_mut().unwrap().remove("tlsSecret");
        },
        "a kafka listener with tls needs its tlsSecret or security.tls",
    );
    let mut ok = example_in(LISTENERS_CLUSTER);
    listener(&mut ok, 1).as_object_mut().unwrap().remove("tlsSecret");
    ok["spec"]["security"]["tls"] = json!({"secretName": "cluster-tls"});
    cel(&ok, None).unwrap();
    // Authentication is per listener: security.sasl would be a second, conflicting answer.
    refused_in(
        LISTENERS_CLUSTER,
        |c| c["spec"]["security"]["sasl"] = json!({"mechanisms": ["SCRAM-SHA-512"]}),
        "each listener's authentication replaces security.sasl",
    );
    // Someone must be able to log in: the operator declares no user of its own.
    refused_in(
        LISTENERS_CLUSTER,
        |c| {
            c["spec"]["security"].as_object_mut().unwrap().remove("users");
        },
        "a kafka listener with authentication needs security.users",
    );
    // Users and ACLs need some listener that authenticates.
    let unauthenticated = |c: &mut Value| listener(c, 1)["authentication"] = json!("none");
    refused_in(LISTENERS_CLUSTER, unauthenticated, "users need sasl (or a kafka listener with authentication)");
    refused_in(
        LISTENERS_CLUSTER,
        |c| {
            unauthenticated(c);
            c["spec"]["security"] = json!({"authorization": {"type": "acl"}});
        },
        "authorization needs sasl (or a kafka listener with authentication)",
    );
    // Allowed: ACLs with one authenticated listener, several TLS listeners sharing the
    // cluster's certificate, every mechanism, one listener only.
    let mut ok = example_in(LISTENERS_CLUSTER);
    ok["spec"]["security"]["authorization"] = json!({"type": "acl", "superUsers": ["admin"]});
    cel(&ok, None).unwrap();
    let mut ok = example_in(LISTENERS_CLUSTER);
    ok["spec"]["security"]["tls"] = json!({"secretName": "cluster-tls"});
    ok["spec"]["listeners"]["kafka"] = json!([
        {"name": "TLS", "port": 9093, "tls": true},
        {"name": "SCRAM_256", "port": 9095, "authentication": "scram-sha-256"},
        {"name": "PLAIN_TLS", "port": 9096, "tls": true, "authentication": "plain"}
    ]);
    cel(&ok, None).unwrap();
    let mut ok = example_in(LISTENERS_CLUSTER);
    ok["spec"]["listeners"]["kafka"] = json!([{"name": "INTERNAL", "port": 9092}]);
    ok["spec"].as_object_mut().unwrap().remove("security");
    cel(&ok, None).unwrap();
    // A cluster without named listeners keeps its old rules: SASL without users is allowed.
    let mut old = example_in(SECURE_CLUSTER);
    old["spec"]["security"].as_object_mut().unwrap().remove("users");
    cel(&old, None).unwrap();
}

/// The listener name's pattern (enforced by the API server, not by CEL) agrees with the
/// operator's own check, and the list is keyed by name and bounded (the rules' cost).
#[test]
fn listener_names_are_checked_by_the_schema_as_by_the_operator() {
    use automq_crds::listener::{valid_listener_name, LISTENER_NAME_MAX, LISTENER_NAME_PATTERN};
    let cluster = schema("AutoMQCluster");
    let kafka = &cluster["properties"]["spec"]["properties"]["listeners"]["properties"]["kafka"];
    assert_eq!(kafka["x-kubernetes-list-type"], "map");
    assert_eq!(kafka["x-kubernetes-list-map-keys"], json!(["name"]));
    assert_eq!(kafka["maxItems"], 8);
    let name = &kafka["items"]["properties"]["name"];
    assert_eq!(name["pattern"], LISTENER_NAME_PATTERN);
    assert_eq!(name["maxLength"], LISTENER_NAME_MAX);
    assert_eq!(
        kafka["items"]["properties"]["authentication"]["enum"],
        json!(["none", "plain", "scram-sha-256", "scram-sha-512", null])
    );
    // The pattern, evaluated by CEL's RE2-style `matches`, against the operator's check.
    let probe = json!({"type": "string", "x-kubernetes-validations": [
        {"rule": format!("self.matches('{LISTENER_NAME_PATTERN}') && size(self) <= {LISTENER_NAME_MAX} && self != 'HTTP'")}
    ]});
    for name in [
        "INTERNAL",
        "EXTERNAL",
        "A",
        "TENANT_2",
        "SASL_SSL",
        "ABCDEFGHIJKLMNO",
        "",
        "internal",
        "_A",
        "A_",
        "A__B",
        "1A",
        "A-B",
        "HTTP",
        "ABCDEFGHIJKLMNOP",
        "A B",
    ] {
        let by_schema = kube_cel::Validator::new().validate(&probe, &json!(name), None).is_ok();
        assert_eq!(by_schema, valid_listener_name(name), "{name:?}");
    }
}
