//! A fake Kubernetes API server behind kube's `Client` (over `tower_test::mock`), and a fake
//! broker admin API on loopback.
//!
//! The fake API server keeps objects by path and answers the requests the operator makes:
//! GET (404 when absent), LIST with a label selector, server-side apply (stores the applied
//! object, keeping a stored `status`), JSON patches and merge patches, status applies, POST
//! and DELETE. Every request is logged as `METHOD path`, so a test asserts the exact requests
//! of a scenario, in order, and inspects the bodies it cares about. Failures are injected per
//! `METHOD path`.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)] // Each test binary uses a different part.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use automq_operator::{Context, Endpoints};
use http::{Request, Response};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::client::Body;
use kube::Client;
use prometheus_client::registry::Registry;
use serde_json::{json, Value};

/// One request as the fake API server saw it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

impl Logged {
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    log: Vec<Logged>,
    failures: BTreeMap<String, (u16, String)>,
}

#[derive(Clone, Default)]
pub struct ApiServer {
    state: Arc<Mutex<State>>,
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "reason": reason, "message": message, "code": code})
}

impl ApiServer {
    /// A client talking to this fake, and the task serving it.
    pub fn client(&self) -> Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let server = self.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let response = server.handle(request).await;
                send.send_response(response);
            }
        });
        Client::new(service, "default")
    }

    pub fn put(&self, path: &str, obj: Value) {
        self.state.lock().unwrap().objects.insert(path.to_string(), obj);
    }

    /// Changes a stored object in place.
    pub fn edit(&self, path: &str, f: impl FnOnce(&mut Value)) {
        let mut obj = self.get(path).unwrap();
        f(&mut obj);
        self.put(path, obj);
    }

    /// Changes a stored object's spec, bumping its generation as the API server does.
    pub fn edit_spec(&self, path: &str, f: impl FnOnce(&mut Value)) {
        self.edit(path, |obj| {
            f(&mut obj["spec"]);
            let generation = obj["metadata"]["generation"].as_i64().unwrap();
            obj["metadata"]["generation"] = json!(generation + 1);
        });
    }

    /// Every stored object (statuses, events...) as one JSON text.
    pub fn dump(&self) -> String {
        serde_json::to_string(&self.state.lock().unwrap().objects).unwrap()
    }

    pub fn remove(&self, path: &str) {
        self.state.lock().unwrap().objects.remove(path);
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        self.state.lock().unwrap().objects.get(path).cloned()
    }

    /// Makes `METHOD path` fail with `code` from now on.
    pub fn fail(&self, method: &str, path: &str, code: u16, message: &str) {
        self.state.lock().unwrap().failures.insert(format!("{method} {path}"), (code, message.to_string()));
    }

    /// The requests since the last call, and forgets them.
    pub fn take_log(&self) -> Vec<Logged> {
        std::mem::take(&mut self.state.lock().unwrap().log)
    }

    /// `METHOD path` of the requests since the last call (and forgets them).
    pub fn take_lines(&self) -> Vec<String> {
        self.take_log().iter().map(Logged::line).collect()
    }

    async fn handle(&self, request: Request<Body>) -> Response<Body> {
        let method = request.method().to_string();
        let path = request.uri().path().to_string();
        let query = request.uri().query().unwrap_or_default().to_string();
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let bytes = request.into_body().collect().await.unwrap().to_bytes();
        let body: Value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        let (code, reply) = self.respond(&method, &path, &query, &content_type, &body);
        let mut state = self.state.lock().unwrap();
        state.log.push(Logged { method, path, query, content_type, body });
        drop(state);
        Response::builder().status(code).body(Body::from(serde_json::to_vec(&reply).unwrap())).unwrap()
    }

    fn respond(&self, method: &str, path: &str, query: &str, content_type: &str, body: &Value) -> (u16, Value) {
        let mut state = self.state.lock().unwrap();
        if let Some((code, message)) = state.failures.get(&format!("{method} {path}")) {
            let reason = if *code == 422 { "Invalid" } else { "InternalError" };
            return (*code, status_body(*code, reason, message));
        }
        let (object_path, subresource) = match path.strip_suffix("/status") {
            Some(parent) => (parent.to_string(), true),
            None => (path.to_string(), false),
        };
        match method {
            "GET" => {
                if let Some(obj) = state.objects.get(path) {
                    return (200, obj.clone());
                }
                // A collection: list the objects directly under it, filtered by labels.
                let prefix = format!("{path}/");
                let selector = label_selector(query);
                let items: Vec<Value> = state
                    .objects
                    .iter()
                    .filter(|(k, _)| k.starts_with(&prefix) && !k[prefix.len()..].contains('/'))
                    .map(|(_, v)| v.clone())
                    .filter(|v| selector.iter().all(|(k, val)| v["metadata"]["labels"][k] == json!(val)))
                    .collect();
                if is_collection(path) {
                    return (
                        200,
                        json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}),
                    );
                }
                (404, status_body(404, "NotFound", &format!("{path} not found")))
            }
            "PATCH" => {
                let current = state.objects.get(&object_path).cloned();
                let updated = if content_type.starts_with("application/apply-patch") {
                    let mut applied = body.clone();
                    if subresource {
                        let mut obj = current.clone().unwrap_or(json!({}));
                        obj["status"] = applied["status"].take();
                        obj
                    } else {
                        if let Some(status) = current.as_ref().and_then(|c| c.get("status")) {
                            applied["status"] = status.clone();
                        }
                        if let Some(generation) = current.as_ref().and_then(|c| c["metadata"].get("generation")) {
                            let changed = current.as_ref().map(|c| c["spec"] != applied["spec"]).unwrap_or(true);
                            let g = generation.as_i64().unwrap() + i64::from(changed);
                            applied["metadata"]["generation"] = json!(g);
                        } else {
                            applied["metadata"]["generation"] = json!(1);
                        }
                        applied
                    }
                } else {
                    let Some(mut obj) = current else {
                        return (404, status_body(404, "NotFound", &format!("{path} not found")));
                    };
                    if content_type.starts_with("application/json-patch") {
                        // Like the API server: a `test` for null passes on a missing path.
                        let ops: Vec<Value> = body
                            .as_array()
                            .unwrap()
                            .iter()
                            .filter(|op| {
                                !(op["op"] == "test"
                                    && op["value"].is_null()
                                    && obj.pointer(op["path"].as_str().unwrap()).is_none())
                            })
                            .cloned()
                            .collect();
                        let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).unwrap();
                        if let Err(e) = json_patch::patch(&mut obj, &patch) {
                            return (422, status_body(422, "Invalid", &e.to_string()));
                        }
                    } else {
                        json_patch::merge(&mut obj, body);
                    }
                    obj
                };
                state.objects.insert(object_path, updated.clone());
                (200, updated)
            }
            "POST" => {
                let name = body["metadata"]["name"].as_str().unwrap_or("generated").to_string();
                state.objects.insert(format!("{path}/{name}"), body.clone());
                (201, body.clone())
            }
            "PUT" => {
                state.objects.insert(path.to_string(), body.clone());
                (200, body.clone())
            }
            "DELETE" => match state.objects.remove(path) {
                Some(obj) => (200, obj),
                None => (404, status_body(404, "NotFound", &format!("{path} not found"))),
            },
            other => panic!("unexpected method {other} {path}"),
        }
    }
}

fn is_collection(path: &str) -> bool {
    // /api/v1/namespaces/{ns}/{plural} or /apis/{group}/{version}/namespaces/{ns}/{plural}
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    matches!((parts.first(), parts.len()), (Some(&"api"), 5) | (Some(&"apis"), 6))
}

fn label_selector(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter_map(|kv| kv.strip_prefix("labelSelector="))
        .flat_map(|s| {
            let decoded = percent_decode(s);
            decoded
                .split(',')
                .filter_map(|pair| pair.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// A fake broker admin API / query-node HTTP listener on loopback.
#[derive(Clone, Default)]
pub struct FakeHttp {
    pub calls: Arc<Mutex<Vec<String>>>,
    /// Responses by `METHOD path`: (status, body).
    pub routes: Arc<Mutex<BTreeMap<String, (u16, Value)>>>,
}

impl FakeHttp {
    /// Serves on 127.0.0.1:0; returns the base URL.
    pub async fn start(&self) -> String {
        let me = self.clone();
        let app = axum::Router::new().fallback(move |method: http::Method, uri: http::Uri, body: axum::body::Bytes| {
            let me = me.clone();
            async move {
                let key = format!("{method} {}", uri.path());
                // Calls are logged with their query; routes match on the path.
                let call = match uri.query() {
                    Some(q) => format!("{key}?{q}"),
                    None => key.clone(),
                };
                let body_text = String::from_utf8_lossy(&body).to_string();
                me.calls.lock().unwrap().push(if body_text.is_empty() { call } else { format!("{call} {body_text}") });
                let (status, value) =
                    me.routes.lock().unwrap().get(&key).cloned().unwrap_or((404, json!({"error": "no route"})));
                let status = http::StatusCode::from_u16(status).unwrap();
                // A string is served as text (metrics, probes); anything else as JSON.
                match value {
                    Value::String(text) => axum::response::IntoResponse::into_response((status, text)),
                    other => axum::response::IntoResponse::into_response((status, axum::Json(other))),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    pub fn route(&self, method: &str, path: &str, status: u16, body: Value) {
        self.routes.lock().unwrap().insert(format!("{method} {path}"), (status, body));
    }

    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.calls.lock().unwrap())
    }
}

/// Every cluster's admin API and every pod's HTTP listener are the one fake.
#[derive(Debug)]
pub struct TestEndpoints {
    pub base: String,
}

impl Endpoints for TestEndpoints {
    fn cluster_admin(&self, _namespace: &str, _name: &str, _http_port: i32) -> String {
        self.base.clone()
    }
    fn pod(&self, _pod: &Pod, _http_port: i32) -> Option<String> {
        Some(self.base.clone())
    }
}

pub const NOW: &str = "2026-12-02T10:00:00Z";

pub fn context(api: &ApiServer, http_base: &str) -> Arc<Context> {
    let mut registry = Registry::default();
    let metrics = Arc::new(automq_operator::metrics::Metrics::new(&mut registry));
    let mut ctx = Context::new(api.client(), metrics, Some("test".into()));
    ctx.endpoints = Arc::new(TestEndpoints { base: http_base.to_string() });
    ctx.now = Box::new(|| Time(NOW.parse().unwrap()));
    Arc::new(ctx)
}

/// Runs a reconcile with a timeout (a hang is a failure, not a stuck test).
pub async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), future).await.expect("reconcile timed out")
}

/// The condition of `type_` in an object's status.
pub fn condition(obj: &Value, type_: &str) -> Value {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_).cloned())
        .unwrap_or(Value::Null)
}

/// Everything the code under test logs (every level, span fields included) while the guard
/// lives, on this thread: `#[tokio::test]` runs the reconciles and the fake servers on it.
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    pub fn start() -> (CapturedLogs, tracing::subscriber::DefaultGuard) {
        let logs = CapturedLogs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Asserts that none of `values` (Secret contents) reached anything the operator wrote or
/// logged: not a body of the requests in `seen`, not an object the fake API server holds (the
/// Secrets themselves aside), not a line of `logs`. Each value is looked for plain, as JSON
/// escapes it, base64-encoded as in a Secret's data, and by its second line (a PEM's body).
/// Also asserts that Secrets were only ever read.
pub fn assert_no_secret_value(api: &ApiServer, seen: &[Logged], logs: &str, values: &[&str]) {
    use base64::Engine;
    let is_secret = |path: &str| path.contains("/secrets");
    assert!(!seen.is_empty());
    let mut places: Vec<(String, String)> = seen
        .iter()
        .filter(|l| !l.body.is_null())
        .map(|l| (format!("the body of {}", l.line()), l.body.to_string()))
        .collect();
    let stored: Value = serde_json::from_str(&api.dump()).unwrap();
    for (path, obj) in stored.as_object().unwrap() {
        if !is_secret(path) {
            places.push((format!("the stored {path}"), obj.to_string()));
        }
    }
    assert!(logs.contains("reconcile"), "no log captured: {logs}");
    places.push(("the logs".into(), logs.to_string()));
    for value in values {
        let escaped = serde_json::to_string(value).unwrap().trim_matches('"').to_string();
        let b64 = base64::engine::general_purpose::STANDARD.encode(value);
        for needle in [value.to_string(), escaped, b64, value.lines().nth(1).unwrap_or(value).to_string()] {
            for (place, text) in &places {
                assert!(!text.contains(&needle), "{place} holds a Secret value ({needle:?})");
            }
        }
    }
    let touched: Vec<String> = seen.iter().filter(|l| is_secret(&l.path)).map(Logged::line).collect();
    assert!(touched.iter().all(|l| l.starts_with("GET ")), "{touched:?}");
}
