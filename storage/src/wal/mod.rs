//! Write-ahead logs. An append is acknowledged only once durable; after a crash the WAL gives
//! back every acknowledged record (and possibly some unacknowledged ones, which the stream
//! layer deduplicates by offset), never a corrupt one.
//!
//! - [`FileWal`]: preallocated segment files on a local or persistent volume, group commit with
//!   `fdatasync`: lowest latency.
//! - [`S3Wal`]: appends from all streams group-committed into one object per batch; per-node
//!   epochs and strictly sequential keys written with conditional creates, so a peer (or the
//!   node's next incarnation) can fence a zombie writer.
//!
//! Formats: `docs/storage-formats.md`.

mod file;
mod record;
mod s3;

use std::fmt::Debug;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::oneshot;

pub use file::{FileWal, FileWalConfig};
pub use record::{decode_frame, encode_frame, Decoded, FRAME_HEADER_LEN, MAX_PAYLOAD_LEN};
pub use s3::{take_over, S3Wal, S3WalConfig, TakenOver};

use crate::{Error, Result};

/// A position in a WAL: increases with every append, across restarts.
pub type WalPosition = u64;

/// One appended record batch of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalRecord {
    pub stream_id: u64,
    /// The stream epoch the writer held when it appended.
    pub epoch: u64,
    pub base_offset: u64,
    /// Exclusive end: the batch holds offsets `base_offset..end_offset`.
    pub end_offset: u64,
    pub payload: Bytes,
}

/// A record read back during recovery, with the position it was written at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredRecord {
    pub position: WalPosition,
    pub record: WalRecord,
}

/// An append that has been given its position and is on its way to durability.
#[derive(Debug)]
pub struct PendingAppend {
    pub position: WalPosition,
    done: oneshot::Receiver<Result<()>>,
}

impl PendingAppend {
    fn new(position: WalPosition) -> (Self, oneshot::Sender<Result<()>>) {
        let (tx, rx) = oneshot::channel();
        (PendingAppend { position, done: rx }, tx)
    }

    /// Resolves once the record is durable (or the WAL failed).
    pub async fn durable(self) -> Result<()> {
        self.done.await.unwrap_or(Err(Error::Closed))
    }
}

#[async_trait]
pub trait Wal: Send + Sync + Debug + 'static {
    /// Enqueues `record`. Positions are assigned here, in call order, so a caller that holds a
    /// lock while calling knows the order of its records.
    fn append(&self, record: WalRecord) -> Result<PendingAppend>;

    /// Declares every record at or below `position` persisted elsewhere; the WAL may discard
    /// them. Records above it must survive.
    async fn trim(&self, position: WalPosition) -> Result<()>;

    /// Waits for everything enqueued, then stops accepting appends.
    async fn close(&self) -> Result<()>;

    /// `"file"` or `"s3"`, for logs and metrics.
    fn kind(&self) -> &'static str;
}
