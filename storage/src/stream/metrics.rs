//! Stream engine metrics, named `automq_storage_<thing>_<unit>`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone)]
pub struct StreamMetrics {
    pub(crate) append_bytes: Counter,
    pub(crate) append_latency: Histogram,
    pub(crate) log_cache_bytes: Gauge,
    pub(crate) unuploaded_bytes: Gauge,
    pub(crate) block_cache_bytes: Gauge,
    pub(crate) block_cache_hits: Counter,
    pub(crate) block_cache_misses: Counter,
    pub(crate) uploads: Counter,
    pub(crate) upload_bytes: Counter,
    pub(crate) compactions: Counter,
    pub(crate) compacted_bytes: Counter,
    pub(crate) gc_deleted_objects: Counter,
    pub(crate) cold_read_bytes: Counter,
}

impl StreamMetrics {
    pub fn new(registry: Option<&mut Registry>) -> Self {
        let m = StreamMetrics {
            append_bytes: Counter::default(),
            append_latency: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            log_cache_bytes: Gauge::default(),
            unuploaded_bytes: Gauge::default(),
            block_cache_bytes: Gauge::default(),
            block_cache_hits: Counter::default(),
            block_cache_misses: Counter::default(),
            uploads: Counter::default(),
            upload_bytes: Counter::default(),
            compactions: Counter::default(),
            compacted_bytes: Counter::default(),
            gc_deleted_objects: Counter::default(),
            cold_read_bytes: Counter::default(),
        };
        if let Some(r) = registry {
            r.register("automq_storage_append_bytes", "Bytes appended to streams", m.append_bytes.clone());
            r.register(
                "automq_storage_append_latency_seconds",
                "Time from append to durable acknowledgement",
                m.append_latency.clone(),
            );
            r.register("automq_storage_log_cache_bytes", "Bytes held in the log cache", m.log_cache_bytes.clone());
            r.register(
                "automq_storage_unuploaded_bytes",
                "Acknowledged bytes not yet in committed objects",
                m.unuploaded_bytes.clone(),
            );
            r.register(
                "automq_storage_block_cache_bytes",
                "Bytes held in the block cache",
                m.block_cache_bytes.clone(),
            );
            r.register("automq_storage_block_cache_hits", "Block cache hits", m.block_cache_hits.clone());
            r.register(
                "automq_storage_block_cache_misses",
                "Block cache misses (ranged GETs)",
                m.block_cache_misses.clone(),
            );
            r.register("automq_storage_uploads", "Uploads of WAL data into objects", m.uploads.clone());
            r.register(
                "automq_storage_upload_bytes",
                "Bytes uploaded from the WAL into objects",
                m.upload_bytes.clone(),
            );
            r.register("automq_storage_compactions", "Compactions committed", m.compactions.clone());
            r.register("automq_storage_compacted_bytes", "Bytes rewritten by compaction", m.compacted_bytes.clone());
            r.register(
                "automq_storage_gc_deleted_objects",
                "Objects deleted by garbage collection",
                m.gc_deleted_objects.clone(),
            );
            r.register(
                "automq_storage_cold_read_bytes",
                "Bytes read from objects for fetches",
                m.cold_read_bytes.clone(),
            );
        }
        m
    }
}
