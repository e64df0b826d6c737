//! A local-disk cache of segment and delete-vector objects, least recently used evicted past
//! a byte limit: the second tier under the in-memory cache of decoded segments, so a restarted
//! node (or one whose memory cache turned over) reads hot segments from its disk rather than
//! the bucket.
//!
//! Objects are immutable, so an entry never goes stale: it is only evicted (past the limit) or
//! removed (the object was deleted). Files are written to a temporary name and renamed, so a
//! crash leaves whole files or `.tmp` leftovers (removed at open); a damaged file is caught by
//! the reader's own checks (Parquet, the delete vector's CRC) and dropped with
//! [`DiskCache::remove`]. The cache is never the only copy of anything: every error here is a
//! miss, logged, never a failed read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use sha2::Digest;

#[derive(Debug)]
pub(super) struct DiskCache {
    dir: PathBuf,
    limit: u64,
    inner: parking_lot::Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// File name -> (bytes, last use).
    entries: HashMap<String, (u64, u64)>,
    bytes: u64,
    tick: u64,
}

/// What the cache holds (for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskCacheUsage {
    pub entries: usize,
    pub bytes: u64,
}

fn file_name(key: &str) -> String {
    sha2::Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

impl DiskCache {
    /// Opens (creating) the cache directory and indexes what a previous run left there, oldest
    /// first by modification time.
    pub(super) fn open(dir: &Path, limit: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let meta = entry.metadata()?;
            if !meta.is_file() {
                continue;
            }
            if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
                // A temporary file of a write the process did not finish, or a stranger.
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            let modified = meta.modified().ok();
            found.push((modified, name, meta.len()));
        }
        found.sort();
        let cache = DiskCache { dir: dir.to_path_buf(), limit, inner: parking_lot::Mutex::new(Inner::default()) };
        {
            let mut inner = cache.inner.lock();
            for (_, name, len) in found {
                inner.tick += 1;
                let tick = inner.tick;
                inner.entries.insert(name, (len, tick));
                inner.bytes += len;
            }
        }
        let evicted = cache.evict();
        cache.delete_files(evicted);
        Ok(cache)
    }

    pub(super) fn usage(&self) -> DiskCacheUsage {
        let inner = self.inner.lock();
        DiskCacheUsage { entries: inner.entries.len(), bytes: inner.bytes }
    }

    /// The cached bytes of an object, if present.
    pub(super) async fn get(&self, key: &str) -> Option<Bytes> {
        let name = file_name(key);
        {
            let mut inner = self.inner.lock();
            inner.tick += 1;
            let tick = inner.tick;
            inner.entries.get_mut(&name)?.1 = tick;
        }
        match tokio::fs::read(self.dir.join(&name)).await {
            Ok(data) => Some(Bytes::from(data)),
            Err(e) => {
                tracing::warn!(key, error = %e, "segment disk cache read failed; reading the object store");
                self.forget(&name);
                None
            }
        }
    }

    /// Stores an object's bytes (a failure only costs a later miss).
    pub(super) async fn put(&self, key: &str, data: &Bytes) {
        if data.len() as u64 > self.limit / 4 {
            return; // one object must not flush everything else out
        }
        let name = file_name(key);
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!("{name}.{:08x}.tmp", rand::random::<u32>()));
        let written = async {
            tokio::fs::write(&tmp, data).await?;
            tokio::fs::rename(&tmp, &path).await
        }
        .await;
        if let Err(e) = written {
            tracing::warn!(key, error = %e, "segment disk cache write failed");
            let _ = tokio::fs::remove_file(&tmp).await;
            return;
        }
        {
            let mut inner = self.inner.lock();
            inner.tick += 1;
            let tick = inner.tick;
            let len = data.len() as u64;
            if let Some((old, _)) = inner.entries.insert(name, (len, tick)) {
                inner.bytes -= old;
            }
            inner.bytes += len;
        }
        let evicted = self.evict();
        self.delete_files(evicted);
    }

    /// Drops an object (deleted from the bucket, or found damaged).
    pub(super) fn remove(&self, key: &str) {
        let name = file_name(key);
        if self.forget(&name) {
            self.delete_files(vec![name]);
        }
    }

    fn forget(&self, name: &str) -> bool {
        let mut inner = self.inner.lock();
        match inner.entries.remove(name) {
            Some((len, _)) => {
                inner.bytes -= len;
                true
            }
            None => false,
        }
    }

    /// Takes least recently used entries out of the index until under the limit.
    fn evict(&self) -> Vec<String> {
        let mut inner = self.inner.lock();
        if inner.bytes <= self.limit {
            return Vec::new();
        }
        let mut by_age: Vec<(u64, String, u64)> =
            inner.entries.iter().map(|(name, (len, tick))| (*tick, name.clone(), *len)).collect();
        by_age.sort_unstable();
        let mut out = Vec::new();
        for (_, name, len) in by_age {
            if inner.bytes <= self.limit {
                break;
            }
            inner.entries.remove(&name);
            inner.bytes -= len;
            out.push(name);
        }
        out
    }

    fn delete_files(&self, names: Vec<String>) {
        for name in names {
            if let Err(e) = std::fs::remove_file(self.dir.join(&name)) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(file = name, error = %e, "cannot delete an evicted cache file");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn evicts_least_recently_used_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(dir.path(), 250).unwrap();
        let blob = |c: u8| Bytes::from(vec![c; 60]);
        for (i, key) in ["a", "b", "c", "d"].iter().enumerate() {
            cache.put(key, &blob(i as u8)).await;
        }
        assert_eq!(cache.usage(), DiskCacheUsage { entries: 4, bytes: 240 });
        assert_eq!(cache.get("a").await.unwrap(), blob(0), "a is now the most recently used");
        cache.put("e", &blob(9)).await;
        assert!(cache.get("b").await.is_none(), "b was the least recently used");
        assert_eq!(cache.get("a").await.unwrap(), blob(0));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 4, "the evicted file is gone");

        cache.remove("a");
        assert!(cache.get("a").await.is_none());
        std::fs::write(dir.path().join("leftover.tmp"), b"torn").unwrap();
        drop(cache);
        let reopened = DiskCache::open(dir.path(), 250).unwrap();
        assert_eq!(reopened.usage(), DiskCacheUsage { entries: 3, bytes: 180 });
        assert_eq!(reopened.get("e").await.unwrap(), blob(9), "entries survive a restart");
        assert!(!dir.path().join("leftover.tmp").exists(), "temporary files are removed at open");

        let small = DiskCache::open(dir.path(), 100).unwrap();
        assert_eq!(small.usage().entries, 1, "a smaller limit evicts at open");
        small.put("big", &Bytes::from(vec![0u8; 80])).await;
        assert!(small.get("big").await.is_none(), "an object over a quarter of the cache is not kept");
    }
}
