//! Prometheus metrics for every object-store request: count by op and outcome, bytes moved by
//! op, latency by op.

use std::ops::Range;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::{ObjectMeta, ObjectStore, SharedStore};
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum OpLabel {
    put,
    put_if_absent,
    get,
    get_range,
    head,
    delete,
    list,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum Outcome {
    ok,
    not_found,
    already_exists,
    error,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    op: OpLabel,
    outcome: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: OpLabel,
}

/// The object-store metric families. Clone is cheap (shared counters).
#[derive(Debug, Clone)]
pub struct ObjectStoreMetrics {
    requests: Family<RequestLabels, Counter>,
    bytes: Family<OpLabels, Counter>,
    latency: Family<OpLabels, Histogram>,
}

impl ObjectStoreMetrics {
    /// Registers `automq_storage_object_requests_total`, `automq_storage_object_bytes_total` and
    /// `automq_storage_object_request_duration_seconds` in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::unregistered();
        registry.register(
            "automq_storage_object_requests",
            "Object store requests by operation and outcome",
            metrics.requests.clone(),
        );
        registry.register(
            "automq_storage_object_bytes",
            "Bytes written (put) and read (get) by operation",
            metrics.bytes.clone(),
        );
        registry.register(
            "automq_storage_object_request_duration_seconds",
            "Object store request latency by operation",
            metrics.latency.clone(),
        );
        metrics
    }

    /// Metrics that are counted but exported nowhere (tests, benchmarks).
    pub fn unregistered() -> Self {
        ObjectStoreMetrics {
            requests: Family::default(),
            bytes: Family::default(),
            latency: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 16))),
        }
    }

    /// Requests of the named op (`"put"`, `"put_if_absent"`, `"get"`, ...) with any outcome.
    pub fn request_count(&self, op: &str) -> u64 {
        [Outcome::ok, Outcome::not_found, Outcome::already_exists, Outcome::error]
            .into_iter()
            .filter_map(|outcome| parse_op(op).map(|op| RequestLabels { op, outcome }))
            .map(|labels| self.requests.get_or_create(&labels).get())
            .sum()
    }

    /// Bytes moved by the named op.
    pub fn byte_count(&self, op: &str) -> u64 {
        parse_op(op).map(|op| self.bytes.get_or_create(&OpLabels { op }).get()).unwrap_or(0)
    }

    fn record<T>(&self, op: OpLabel, started: Instant, result: &Result<T>, bytes: u64) {
        let outcome = match result {
            Ok(_) => Outcome::ok,
            Err(Error::NotFound { .. }) => Outcome::not_found,
            Err(Error::AlreadyExists { .. }) => Outcome::already_exists,
            Err(_) => Outcome::error,
        };
        self.requests.get_or_create(&RequestLabels { op, outcome }).inc();
        self.latency.get_or_create(&OpLabels { op }).observe(started.elapsed().as_secs_f64());
        if bytes > 0 {
            self.bytes.get_or_create(&OpLabels { op }).inc_by(bytes);
        }
    }
}

fn parse_op(op: &str) -> Option<OpLabel> {
    Some(match op {
        "put" => OpLabel::put,
        "put_if_absent" => OpLabel::put_if_absent,
        "get" => OpLabel::get,
        "get_range" => OpLabel::get_range,
        "head" => OpLabel::head,
        "delete" => OpLabel::delete,
        "list" => OpLabel::list,
        _ => return None,
    })
}

#[derive(Debug)]
pub struct MetricsStore {
    inner: SharedStore,
    metrics: ObjectStoreMetrics,
}

impl MetricsStore {
    pub fn new(inner: SharedStore, metrics: ObjectStoreMetrics) -> Self {
        MetricsStore { inner, metrics }
    }
}

#[async_trait]
impl ObjectStore for MetricsStore {
    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        let (started, len) = (Instant::now(), data.len() as u64);
        let r = self.inner.put(key, data).await;
        self.metrics.record(OpLabel::put, started, &r, if r.is_ok() { len } else { 0 });
        r
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<()> {
        let (started, len) = (Instant::now(), data.len() as u64);
        let r = self.inner.put_if_absent(key, data).await;
        self.metrics.record(OpLabel::put_if_absent, started, &r, if r.is_ok() { len } else { 0 });
        r
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        let started = Instant::now();
        let r = self.inner.get(key).await;
        let len = r.as_ref().map(|b| b.len() as u64).unwrap_or(0);
        self.metrics.record(OpLabel::get, started, &r, len);
        r
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let started = Instant::now();
        let r = self.inner.get_range(key, range).await;
        let len = r.as_ref().map(|b| b.len() as u64).unwrap_or(0);
        self.metrics.record(OpLabel::get_range, started, &r, len);
        r
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let started = Instant::now();
        let r = self.inner.head(key).await;
        self.metrics.record(OpLabel::head, started, &r, 0);
        r
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let started = Instant::now();
        let r = self.inner.delete(key).await;
        self.metrics.record(OpLabel::delete, started, &r, 0);
        r
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let started = Instant::now();
        let r = self.inner.list(prefix).await;
        self.metrics.record(OpLabel::list, started, &r, 0);
        r
    }
}
