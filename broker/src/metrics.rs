//! Broker metrics: requests, errors and latency per Kafka API; bytes in and out per topic;
//! connections.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub api: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub api: String,
    pub error: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

#[derive(Debug, Clone)]
pub struct BrokerMetrics {
    pub requests: Family<ApiLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub latency: Family<ApiLabels, Histogram>,
    pub bytes_in: Family<TopicLabels, Counter>,
    pub bytes_out: Family<TopicLabels, Counter>,
    pub messages_in: Family<TopicLabels, Counter>,
    pub connections: Gauge,
    pub rejected_frames: Counter,
    /// Time to open a partition newly assigned here / to hand one off.
    pub partition_open_seconds: Histogram,
    pub partition_close_seconds: Histogram,
}

impl BrokerMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = BrokerMetrics {
            requests: Family::default(),
            errors: Family::default(),
            latency: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0001, 2.0, 18))),
            bytes_in: Family::default(),
            bytes_out: Family::default(),
            messages_in: Family::default(),
            connections: Gauge::default(),
            rejected_frames: Counter::default(),
            partition_open_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            partition_close_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
        };
        registry.register("automq_broker_requests", "Kafka requests by API", m.requests.clone());
        registry.register(
            "automq_broker_request_errors",
            "Kafka error codes returned, by API and error",
            m.errors.clone(),
        );
        registry.register("automq_broker_request_latency_seconds", "Kafka request latency by API", m.latency.clone());
        registry.register("automq_broker_bytes_in", "Record bytes produced, by topic", m.bytes_in.clone());
        registry.register("automq_broker_bytes_out", "Record bytes fetched, by topic", m.bytes_out.clone());
        registry.register("automq_broker_messages_in", "Records produced, by topic", m.messages_in.clone());
        registry.register("automq_broker_connections", "Open client connections", m.connections.clone());
        registry.register(
            "automq_broker_rejected_frames",
            "Frames refused as malformed or oversized (connection closed)",
            m.rejected_frames.clone(),
        );
        registry.register(
            "automq_broker_partition_open_seconds",
            "Time to open a partition newly assigned to this broker (part of a move)",
            m.partition_open_seconds.clone(),
        );
        registry.register(
            "automq_broker_partition_close_seconds",
            "Time to hand a partition off (flush, upload, release)",
            m.partition_close_seconds.clone(),
        );
        m
    }

    pub fn partition_opened(&self, took: std::time::Duration) {
        self.partition_open_seconds.observe(took.as_secs_f64());
    }

    pub fn partition_closed(&self, took: std::time::Duration) {
        self.partition_close_seconds.observe(took.as_secs_f64());
    }

    pub fn error(&self, api: &str, code: kafka_protocol::ResponseError) {
        self.errors.get_or_create(&ErrorLabels { api: api.to_string(), error: format!("{code:?}") }).inc();
    }
}
