//! Retries with exponential backoff and full jitter.
//!
//! A conditional create is the subtle case: if an attempt times out after the store applied
//! it, the retry sees `AlreadyExists` for the caller's own write. So when a retried
//! `put_if_absent` meets `AlreadyExists`, the object is read back: identical bytes mean the
//! earlier attempt won and the call succeeds; anything else is a real conflict. Callers put a
//! writer identity in what they write so that "identical" means "mine".

use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rand::Rng;

use super::{ObjectMeta, ObjectStore, SharedStore};
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct RetryConfig {
    /// Attempts in all, including the first.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig { max_attempts: 10, base_delay: Duration::from_millis(50), max_delay: Duration::from_secs(5) }
    }
}

impl RetryConfig {
    /// Full jitter: a uniformly random delay up to the exponential bound.
    fn delay(&self, attempt: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(1u32 << attempt.min(16));
        let bound = exp.min(self.max_delay);
        let micros = bound.as_micros() as u64;
        Duration::from_micros(if micros == 0 { 0 } else { rand::rng().random_range(0..=micros) })
    }
}

#[derive(Debug)]
pub struct RetryStore {
    inner: SharedStore,
    config: RetryConfig,
}

impl RetryStore {
    pub fn new(inner: SharedStore, config: RetryConfig) -> Self {
        RetryStore { inner, config }
    }

    async fn run<T, F, Fut>(&self, op: &'static str, key: &str, mut f: F) -> Result<T>
    where
        F: FnMut(u32) -> Fut + Send,
        Fut: std::future::Future<Output = Result<T>> + Send,
    {
        let mut attempt = 0;
        loop {
            match f(attempt).await {
                Err(e) if e.is_retryable() && attempt + 1 < self.config.max_attempts => {
                    let delay = self.config.delay(attempt);
                    tracing::debug!(op, key, attempt, ?delay, error = %e, "retrying object store request");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

#[async_trait]
impl ObjectStore for RetryStore {
    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.run("put", key, |_| self.inner.put(key, data.clone())).await
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<()> {
        self.run("put_if_absent", key, |attempt| {
            let data = data.clone();
            async move {
                match self.inner.put_if_absent(key, data.clone()).await {
                    Err(Error::AlreadyExists { .. }) if attempt > 0 => match self.inner.get(key).await {
                        Ok(existing) if existing == data => Ok(()),
                        Ok(_) | Err(Error::NotFound { .. }) => Err(Error::AlreadyExists { key: key.to_string() }),
                        Err(e) => Err(e),
                    },
                    other => other,
                }
            }
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        self.run("get", key, |_| self.inner.get(key)).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.run("get_range", key, |_| self.inner.get_range(key, range.clone())).await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        self.run("head", key, |_| self.inner.head(key)).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.run("delete", key, |_| self.inner.delete(key)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.run("list", prefix, |_| self.inner.list(prefix)).await
    }
}
