//! Object stores: one small trait, backends chosen by URL, and decorators.
//!
//! | URL | backend |
//! |---|---|
//! | `file:///data/dir` | [`FsStore`], a local directory (the embedded default) |
//! | `s3://bucket/prefix?endpoint=..&region=..&path_style=true` | [`S3Store`] (aws-sdk-s3) |
//! | `memory://` or `memory://name` | [`MemoryStore`]; a named one is shared in-process |
//!
//! Keys are `/`-separated relative paths (`wal/1/0000000003/00000000000000000042`). Every
//! backend lists keys in byte order, so zero-padded numbers list in numeric order.

mod fault;
mod fs;
mod memory;
mod metrics;
mod retry;
mod s3;

use std::fmt::Debug;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

pub use fault::{Fault, FaultInjector, FaultRule, Op, Trigger};
pub use fs::FsStore;
pub use memory::MemoryStore;
pub use metrics::{MetricsStore, ObjectStoreMetrics};
pub use retry::{RetryConfig, RetryStore};
pub use s3::{S3Config, S3Store};

use crate::{Error, Result};

/// What a HEAD or LIST tells about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
}

/// The operations the engine needs from a bucket. Implementations must be strongly
/// consistent (read-after-write, list-after-write), as S3 has been since 2020.
#[async_trait]
pub trait ObjectStore: Send + Sync + Debug + 'static {
    /// Writes `data` at `key`, replacing any existing object. Atomic: readers see the old
    /// object or the whole new one.
    async fn put(&self, key: &str, data: Bytes) -> Result<()>;

    /// Creates `key` only if it does not exist (`If-None-Match: *`); fails with
    /// [`Error::AlreadyExists`] otherwise. Of several concurrent callers exactly one wins.
    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<()>;

    /// Reads a whole object; [`Error::NotFound`] if absent.
    async fn get(&self, key: &str) -> Result<Bytes>;

    /// Reads `range` of an object. A range running past the end is cut at the end (a start at
    /// or past the end gives empty bytes), as S3 does.
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes>;

    /// The object's metadata, or `None` if absent.
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>>;

    /// Deletes `key`. Deleting an absent key succeeds.
    async fn delete(&self, key: &str) -> Result<()>;

    /// Every object whose key starts with `prefix`, in byte order of key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;
}

/// The shared handle every component holds.
pub type SharedStore = Arc<dyn ObjectStore>;

/// Options that do not belong in a URL.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// Static S3 credentials; when `None` the AWS default chain is used (environment, profile,
    /// web identity / IRSA, container and instance metadata).
    pub s3_credentials: Option<S3Credentials>,
    /// Retry policy applied around the backend.
    pub retry: RetryConfig,
}

/// An access key pair. `Debug` never prints the secret.
#[derive(Clone)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// Opens the backend named by `url`, without decorators.
pub async fn open_backend(url: &str, options: &StoreOptions) -> Result<SharedStore> {
    let invalid = |reason: &str| Error::InvalidUrl { url: url.to_string(), reason: reason.to_string() };
    let parsed = url::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    match parsed.scheme() {
        "file" => {
            let path = parsed.to_file_path().map_err(|()| invalid("file URLs need an absolute path"))?;
            Ok(Arc::new(FsStore::open(path)?))
        }
        "memory" => Ok(match parsed.host_str().filter(|h| !h.is_empty()) {
            Some(name) => MemoryStore::named(name),
            None => Arc::new(MemoryStore::new()),
        }),
        "s3" => {
            let config =
                S3Config::from_url(&parsed, options.s3_credentials.clone()).map_err(|reason| invalid(&reason))?;
            Ok(Arc::new(S3Store::connect(config).await))
        }
        other => Err(invalid(&format!("unknown scheme {other:?}; expected file, s3 or memory"))),
    }
}

/// Opens `url` with retries (and metrics when a registry is given): what servers use.
pub async fn open(
    url: &str,
    options: &StoreOptions,
    registry: Option<&mut prometheus_client::registry::Registry>,
) -> Result<SharedStore> {
    let backend = open_backend(url, options).await?;
    let store: SharedStore = match registry {
        Some(registry) => {
            let metrics = ObjectStoreMetrics::register(registry);
            Arc::new(MetricsStore::new(backend, metrics))
        }
        None => backend,
    };
    Ok(Arc::new(RetryStore::new(store, options.retry.clone())))
}

/// Checks that `key` is a clean relative path: no empty, `.` or `..` segments, no leading
/// slash, no NUL. Every backend calls this so a key means the same thing everywhere.
pub(crate) fn validate_key(key: &str) -> Result<()> {
    let bad = |reason: &str| Err(Error::InvalidKey { key: key.to_string(), reason: reason.to_string() });
    if key.is_empty() {
        return bad("empty key");
    }
    if key.contains('\0') {
        return bad("contains NUL");
    }
    if key.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return bad("empty, '.' or '..' path segment");
    }
    Ok(())
}

/// Cuts `range` to an object of `len` bytes, as S3 does.
pub(crate) fn clamp_range(range: &Range<u64>, len: u64) -> Range<usize> {
    let start = range.start.min(len) as usize;
    let end = range.end.min(len).max(range.start.min(len)) as usize;
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated() {
        assert!(validate_key("wal/1/00001").is_ok());
        for bad in ["", "/abs", "a//b", "a/../b", "a/./b", "trailing/", "nul\0"] {
            assert!(matches!(validate_key(bad), Err(Error::InvalidKey { .. })), "{bad:?} accepted");
        }
    }

    #[test]
    fn ranges_are_clamped_like_s3() {
        assert_eq!(clamp_range(&(2..5), 10), 2..5);
        assert_eq!(clamp_range(&(8..20), 10), 8..10);
        assert_eq!(clamp_range(&(12..20), 10), 10..10);
    }

    #[tokio::test]
    async fn unknown_schemes_and_relative_file_urls_are_rejected() {
        let opts = StoreOptions::default();
        let err = open_backend("gs://bucket", &opts).await.unwrap_err();
        assert!(err.to_string().contains("unknown scheme"), "{err}");
        let err = open_backend("not a url", &opts).await.unwrap_err();
        assert!(matches!(err, Error::InvalidUrl { .. }));
    }
}
