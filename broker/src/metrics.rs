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

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    pub mechanism: String,
    pub result: String,
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
    /// Transactions this coordinator aborted because they outlived their timeout.
    pub txn_timeouts: Counter,
    /// SASL authentications by mechanism and result.
    pub authentications: Family<AuthLabels, Counter>,
    /// TLS handshakes that failed or timed out.
    pub tls_handshake_failures: Counter,
    /// Authorization checks that refused, by API.
    pub authorization_denials: Family<ApiLabels, Counter>,
    /// The cluster as this broker sees it.
    pub cluster: ClusterMetrics,
}

/// Cluster gauges and the controller's counters.
#[derive(Debug, Clone, Default)]
pub struct ClusterMetrics {
    /// 1 on the controller.
    pub controller: Gauge,
    pub brokers_alive: Gauge,
    pub partitions_led: Gauge,
    /// Counted by the controller.
    pub brokers_declared_dead: Counter,
    pub wal_takeovers: Counter,
    pub wal_records_adopted: Counter,
    pub partitions_reassigned: Counter,
    /// Zone-aware routing: produce bytes relayed through the bucket to another zone's
    /// leader, and fetch bytes served from the bucket for partitions led in another zone.
    pub relayed_produce_bytes: Counter,
    pub zone_fetch_bytes: Counter,
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
            txn_timeouts: Counter::default(),
            authentications: Family::default(),
            tls_handshake_failures: Counter::default(),
            authorization_denials: Family::default(),
            cluster: ClusterMetrics::default(),
        };
        let c = &m.cluster;
        registry.register(
            "automq_broker_cluster_controller",
            "1 if this broker is the controller",
            c.controller.clone(),
        );
        registry.register(
            "automq_broker_cluster_brokers_alive",
            "Live brokers as this broker sees the cluster",
            c.brokers_alive.clone(),
        );
        registry.register(
            "automq_broker_cluster_partitions_led",
            "Partitions this broker leads",
            c.partitions_led.clone(),
        );
        registry.register(
            "automq_broker_cluster_brokers_declared_dead",
            "Brokers this controller declared dead (silent past the session timeout)",
            c.brokers_declared_dead.clone(),
        );
        registry.register(
            "automq_broker_cluster_wal_takeovers",
            "Dead brokers' S3 WALs this controller took over",
            c.wal_takeovers.clone(),
        );
        registry.register(
            "automq_broker_cluster_wal_records_adopted",
            "WAL records this controller committed for dead brokers",
            c.wal_records_adopted.clone(),
        );
        registry.register(
            "automq_broker_zone_relayed_produce_bytes",
            "Produce bytes relayed through the bucket to a leader in another zone",
            c.relayed_produce_bytes.clone(),
        );
        registry.register(
            "automq_broker_zone_fetch_bytes",
            "Fetch bytes served from the bucket for partitions led in another zone",
            c.zone_fetch_bytes.clone(),
        );
        registry.register(
            "automq_broker_cluster_partitions_reassigned",
            "Partition assignments this controller changed (placements and moves)",
            c.partitions_reassigned.clone(),
        );
        registry.register(
            "automq_broker_transaction_timeouts",
            "Transactions this coordinator aborted because they outlived transaction.timeout.ms",
            m.txn_timeouts.clone(),
        );
        registry.register(
            "automq_broker_authentications",
            "SASL authentications by mechanism and result (success, failure)",
            m.authentications.clone(),
        );
        registry.register(
            "automq_broker_tls_handshake_failures",
            "TLS handshakes on the Kafka listener that failed or timed out",
            m.tls_handshake_failures.clone(),
        );
        registry.register(
            "automq_broker_authorization_denials",
            "ACL checks that refused a resource of a request, by API",
            m.authorization_denials.clone(),
        );
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

    pub fn authorization_denied(&self, api: &str, n: u32) {
        self.authorization_denials.get_or_create(&ApiLabels { api: api.to_string() }).inc_by(u64::from(n));
    }

    pub fn authentication(&self, mechanism: &str, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.authentications
            .get_or_create(&AuthLabels { mechanism: mechanism.to_string(), result: result.into() })
            .inc();
    }

    pub fn error(&self, api: &str, code: kafka_protocol::ResponseError) {
        self.errors.get_or_create(&ErrorLabels { api: api.to_string(), error: format!("{code:?}") }).inc();
    }
}
