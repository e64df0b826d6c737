//! The automq operator: reconciles `AutoMQCluster`, `AnalyticsWarehouse` and `TopicLink`
//! resources (crate `automq-crds`) into StatefulSets, Services and the like, and drives the
//! brokers' admin API (`docs/admin-api.md`) for drains and topic links.
//!
//! One controller per kind (`cluster`, `warehouse`, `topiclink`), each a `reconcile` plus an
//! `error_policy` over a shared [`Context`]. Children are applied with server-side apply
//! under the field manager [`FIELD_MANAGER`] and carry owner references, so deleting a
//! resource garbage-collects what it made.

pub mod admin;
pub mod apply;
pub mod cluster;
pub mod context;
pub mod leader;
pub mod metrics;
pub mod pods;
pub mod security;
pub mod settings;
pub mod status;
pub mod topiclink;
pub mod warehouse;

pub use context::{Context, Endpoints};

/// The field manager of every server-side apply, and the events' reporting controller.
pub const FIELD_MANAGER: &str = "automq-operator";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0} has no namespace (the automq kinds are namespaced)")]
    NoNamespace(String),
    #[error("broker admin API at {url}: {message}")]
    Admin { url: String, message: String },
    #[error("query node at {url}: {message}")]
    QueryNode { url: String, message: String },
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// Not a failure: a cleanup waiting for something (retried shortly).
    #[error("waiting: {0}")]
    Waiting(String),
    #[error("serializing {what}: {source}")]
    Serialize { what: &'static str, source: serde_json::Error },
    /// The answer to a GET of Secret `{0}` did not parse (its body is never quoted).
    #[error("Secret {0}: the API server's answer is not a Secret")]
    Secret(String),
}

impl Error {
    /// A short stable label for metrics (`reason`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::NoNamespace(_) => "no_namespace",
            Error::Admin { .. } => "admin_api",
            Error::QueryNode { .. } => "query_node",
            Error::Finalizer(_) => "finalizer",
            Error::Waiting(_) => "waiting",
            Error::Serialize { .. } => "serialize",
            Error::Secret(_) => "secret",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs `reconcile` under `finalizer_name` (added before the first apply; `cleanup` must
/// succeed before it is removed), unwrapping kube's finalizer error into ours.
pub async fn with_finalizer<K, A, AF, C, CF>(
    api: &kube::Api<K>,
    finalizer_name: &str,
    obj: std::sync::Arc<K>,
    apply: A,
    cleanup: C,
) -> Result<kube::runtime::controller::Action>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
    A: FnOnce(std::sync::Arc<K>) -> AF,
    AF: std::future::Future<Output = Result<kube::runtime::controller::Action>>,
    C: FnOnce(std::sync::Arc<K>) -> CF,
    CF: std::future::Future<Output = Result<kube::runtime::controller::Action>>,
{
    use kube::runtime::finalizer::{finalizer, Error as FinalizerError, Event};
    let outcome = finalizer(api, finalizer_name, obj, |event| async move {
        match event {
            Event::Apply(obj) => apply(obj).await,
            Event::Cleanup(obj) => cleanup(obj).await,
        }
    })
    .await;
    outcome.map_err(|e| match e {
        FinalizerError::ApplyFailed(e) | FinalizerError::CleanupFailed(e) => e,
        FinalizerError::AddFinalizer(e) | FinalizerError::RemoveFinalizer(e) => Error::Kube(e),
        other => Error::Finalizer(other.to_string()),
    })
}

/// Requeue policy shared by the controllers: a cleanup that waits comes back in 2 s, a
/// failure in 10 s (the controller's own backoff applies on top for repeated failures).
pub fn requeue_after(error: &Error) -> std::time::Duration {
    match error {
        Error::Waiting(_) => std::time::Duration::from_secs(2),
        _ => std::time::Duration::from_secs(10),
    }
}

/// What a reconcile must react to: the spec (`generation`), the finalizers and deletion.
/// Status and resourceVersion are left out, so status writes do not trigger reconciles.
pub fn spec_or_lifecycle<K: kube::Resource>(obj: &K) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let meta = obj.meta();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    meta.generation.hash(&mut hasher);
    meta.deletion_timestamp.as_ref().map(|t| t.0.to_string()).hash(&mut hasher);
    meta.finalizers.hash(&mut hasher);
    Some(hasher.finish())
}
