use std::path::PathBuf;
use std::sync::Arc;

/// Result alias for the storage crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure the storage engine reports. Cloneable so that one failed group commit can be
/// reported to every append that was waiting on it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("object {key:?} not found")]
    NotFound { key: String },

    /// A conditional create lost: the key was already taken.
    #[error("object {key:?} already exists")]
    AlreadyExists { key: String },

    /// The object store failed a request. `retryable` tells whether trying again may help
    /// (throttling, 5xx, timeouts, connection errors).
    #[error("object store {op} of {key:?} failed ({}): {message}", if *retryable { "retryable" } else { "permanent" })]
    ObjectStore { op: &'static str, key: String, retryable: bool, message: String },

    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },

    #[error("invalid object store URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },

    /// Bytes read back did not pass their checksum or framing checks. Never served.
    #[error("corrupt data in {location}: {reason}")]
    Corrupt { location: String, reason: String },

    /// Another writer took over (a metadata log sequence or WAL epoch was claimed by someone
    /// else). The fenced writer must stop and, if it still should own the resource, recover.
    #[error("fenced: {0}")]
    Fenced(String),

    #[error("stream {0} does not exist")]
    StreamNotFound(u64),

    #[error("stream {stream_id}: offset {offset} is out of range [{start_offset}, {end_offset})")]
    OffsetOutOfRange { stream_id: u64, offset: u64, start_offset: u64, end_offset: u64 },

    #[error("stream {stream_id}: epoch {epoch} is stale, the stream is at epoch {current}")]
    StaleEpoch { stream_id: u64, epoch: u64, current: u64 },

    #[error("stream {stream_id}: {reason}")]
    InvalidAppend { stream_id: u64, reason: String },

    /// One record is larger than the WAL can hold (a file-WAL segment); retrying cannot help.
    /// Sizes are of the framed record.
    #[error("stream {stream_id}: a record of {bytes} bytes (framed) does not fit the WAL (at most {limit} bytes)")]
    RecordTooLarge { stream_id: u64, bytes: u64, limit: u64 },

    #[error("stream {stream_id} is not open on this node")]
    StreamNotOpen { stream_id: u64 },

    /// An upload took so long that GC may treat its objects as orphans; it is not committed
    /// and its data is uploaded again.
    #[error("object {key} is older than half the GC grace period; not committing it (it will be uploaded again)")]
    UploadExpired { key: String },

    #[error("invalid metadata operation: {0}")]
    InvalidMetadata(String),

    /// A compare-and-set precondition of a catalog change failed: the writer's view was
    /// stale. Nothing was applied; refresh, recompute the change and try again.
    #[error("catalog precondition failed: {0}")]
    PreconditionFailed(String),

    /// The metadata log's writer (the controller) could not be reached, or lost its position:
    /// whether a forwarded submission was applied is unknown. Retry it (with the same id).
    #[error("metadata writer unavailable: {0}")]
    Unavailable(String),

    /// A submission was already applied (a retry after an ambiguous failure); nothing more
    /// was applied.
    #[error("catalog submission {0} was already applied")]
    DuplicateSubmission(String),

    /// The WAL or engine hit an unrecoverable error earlier and refuses further work; the
    /// process must restart (and recover) to continue.
    #[error("storage is failed and must be reopened: {0}")]
    Failed(String),

    #[error("storage is shut down")]
    Closed,
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source: Arc::new(source) }
    }

    pub(crate) fn corrupt(location: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Corrupt { location: location.into(), reason: reason.into() }
    }

    /// True when retrying the same request may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::ObjectStore { retryable: true, .. })
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}
