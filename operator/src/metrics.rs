//! The operator's Prometheus metrics.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub kind: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScaleLabels {
    pub kind: &'static str,
    /// `up` or `down`.
    pub direction: &'static str,
}

#[derive(Debug)]
pub struct Metrics {
    pub reconciles: Family<KindLabels, Counter>,
    pub failures: Family<FailureLabels, Counter>,
    pub duration: Family<KindLabels, Histogram>,
    pub leader: Gauge,
    pub scale_operations: Family<ScaleLabels, Counter>,
}

impl Metrics {
    /// The metrics, registered in `registry` (`automq_operator_*`).
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Metrics {
            reconciles: Family::default(),
            failures: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.005, 2.0, 14))),
            leader: Gauge::default(),
            scale_operations: Family::default(),
        };
        let sub = registry.sub_registry_with_prefix("automq_operator");
        sub.register("reconciles", "Reconciles run, by kind", metrics.reconciles.clone());
        sub.register("reconcile_failures", "Reconciles that failed, by kind and reason", metrics.failures.clone());
        sub.register("reconcile_duration_seconds", "Reconcile duration, by kind", metrics.duration.clone());
        sub.register("leader", "1 while this replica holds the leader lease", metrics.leader.clone());
        sub.register(
            "scale_operations",
            "Scale operations started (direction up or down), by kind",
            metrics.scale_operations.clone(),
        );
        metrics
    }

    /// Counts a reconcile; its duration is recorded when the timer drops.
    pub fn reconcile(&self, kind: &'static str) -> ReconcileTimer<'_> {
        self.reconciles.get_or_create(&KindLabels { kind }).inc();
        ReconcileTimer { metrics: self, kind, start: Instant::now() }
    }

    pub fn failure(&self, kind: &'static str, error: &crate::Error) {
        self.failures.get_or_create(&FailureLabels { kind, reason: error.metric_label() }).inc();
    }

    pub fn scaled(&self, kind: &'static str, up: bool) {
        let direction = if up { "up" } else { "down" };
        self.scale_operations.get_or_create(&ScaleLabels { kind, direction }).inc();
    }
}

/// Records the reconcile's duration when dropped (whichever way it ends).
#[derive(Debug)]
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    kind: &'static str,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        let histogram = self.metrics.duration.get_or_create(&KindLabels { kind: self.kind });
        histogram.observe(self.start.elapsed().as_secs_f64());
    }
}
