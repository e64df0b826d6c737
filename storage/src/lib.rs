//! The storage engine shared by brokers and query nodes.
//!
//! - [`object_store`]: one small trait over S3, a local directory and memory, plus retrying,
//!   metrics and fault-injecting decorators, selected by URL.
//! - [`wal`]: the write-ahead logs (an S3 WAL for throughput, a file WAL for latency).
//! - [`stream`]: append-only streams of opaque record batches addressed by offset, with a log
//!   cache, background upload to objects, compaction, retention trim, GC and a block cache.
//! - [`metadata`]: a totally ordered, fencing metadata log kept in the object store, and the
//!   stream/object catalog built on it.
//!
//! On-disk and in-bucket formats are described in `docs/storage-formats.md`.

pub mod clock;
mod error;
pub mod metadata;
pub mod object_store;
pub mod stream;
pub mod wal;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use error::{Error, Result};
