//! In-memory backend for tests. `memory://name` stores are shared in-process, so a test can
//! "restart" an engine over the same bucket.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;

use super::{clamp_range, validate_key, ObjectMeta, ObjectStore, SharedStore};
use crate::{Error, Result};

#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<String, Bytes>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide store called `name`, created on first use.
    pub fn named(name: &str) -> SharedStore {
        static NAMED: OnceLock<Mutex<HashMap<String, Arc<MemoryStore>>>> = OnceLock::new();
        let mut named = NAMED.get_or_init(Default::default).lock();
        named.entry(name.to_string()).or_default().clone()
    }

    /// Total bytes stored: used by tests to measure storage amplification.
    pub fn total_bytes(&self) -> u64 {
        self.objects.lock().values().map(|b| b.len() as u64).sum()
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        validate_key(key)?;
        self.objects.lock().insert(key.to_string(), data);
        Ok(())
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<()> {
        validate_key(key)?;
        let mut objects = self.objects.lock();
        if objects.contains_key(key) {
            return Err(Error::AlreadyExists { key: key.to_string() });
        }
        objects.insert(key.to_string(), data);
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        validate_key(key)?;
        self.objects.lock().get(key).cloned().ok_or_else(|| Error::NotFound { key: key.to_string() })
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let data = self.get(key).await?;
        Ok(data.slice(clamp_range(&range, data.len() as u64)))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        validate_key(key)?;
        Ok(self.objects.lock().get(key).map(|d| ObjectMeta { key: key.to_string(), size: d.len() as u64 }))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        self.objects.lock().remove(key);
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let objects = self.objects.lock();
        Ok(objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| ObjectMeta { key: k.clone(), size: v.len() as u64 })
            .collect())
    }
}
