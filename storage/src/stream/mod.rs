//! Streams: append-only sequences of opaque record batches addressed by offset.
//!
//! Write path: [`crate::wal`] (durable acknowledgement) -> the log cache (serves tailing
//! reads) -> upload into stream-set objects (many streams) and stream objects (one large
//! stream) -> commit to the [`crate::metadata::Catalog`] -> the WAL is trimmed.
//! Read path: log cache -> block cache with readahead -> ranged GETs of object blocks.
//! In the background: compaction of small objects, and GC of unreferenced objects after a
//! grace period. Retention is the caller's policy, applied with [`StreamEngine::trim`].

mod compaction;
mod engine;
mod format;
mod gc;
mod lru;
mod metrics;
mod reader;
mod rewrite;
mod upload;

pub use compaction::CompactionReport;
pub use engine::{FetchResult, StreamEngine, StreamEngineConfig, StreamInfo};
pub use format::{decode_block, decode_index, BlockEntry, ObjectBuilder, ObjectIndex, StoredBatch};
pub use gc::GcReport;
pub use metrics::StreamMetrics;
