//! The stream engine: open streams, their log cache, append and fetch.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::format::StoredBatch;
use super::metrics::StreamMetrics;
use super::reader::ObjectReader;
use crate::clock::SharedClock;
use crate::metadata::{Catalog, CatalogRecord, NodeId, StreamId};
use crate::object_store::SharedStore;
use crate::wal::{RecoveredRecord, Wal, WalPosition, WalRecord};
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct StreamEngineConfig {
    pub node_id: NodeId,
    /// Key prefix of this engine's data objects. Engines sharing a bucket (brokers and the
    /// warehouse) use different prefixes, or each one's GC would take the other's objects for
    /// orphans.
    pub data_prefix: String,
    /// Upload WAL data into objects at least this often...
    pub upload_interval: Duration,
    /// ...or as soon as this many acknowledged bytes wait for upload.
    pub upload_bytes: usize,
    /// A stream with at least this many bytes in one upload or compaction gets an object of
    /// its own.
    pub stream_object_bytes: usize,
    /// Target size of object blocks (the unit of ranged reads and of the block cache).
    pub block_bytes: usize,
    /// Memory for the log cache. Acknowledged data not yet uploaded always stays; when it
    /// alone reaches this size, appends wait for uploads.
    pub log_cache_bytes: usize,
    pub block_cache_bytes: usize,
    /// Bytes fetched past the requested block on a cold read, in the same ranged GET.
    pub readahead_bytes: usize,
    /// `None` disables background compaction (it can still be run with `compact_now`).
    pub compaction_interval: Option<Duration>,
    /// Stream-set objects smaller than this are compaction candidates...
    pub compaction_small_object_bytes: u64,
    /// ...once at least this many exist...
    pub compaction_min_objects: usize,
    /// ...and one compaction reads at most this many bytes.
    pub compaction_max_bytes: u64,
    /// `None` disables background GC (it can still be run with `gc_now`).
    pub gc_interval: Option<Duration>,
    /// Unreferenced objects are deleted only after this long; uploads older than half of it
    /// are never committed, so GC cannot race a slow commit.
    pub gc_grace: Duration,
}

impl StreamEngineConfig {
    pub fn new(node_id: NodeId) -> Self {
        StreamEngineConfig {
            node_id,
            data_prefix: "data".to_string(),
            upload_interval: Duration::from_millis(1000),
            upload_bytes: 32 << 20,
            stream_object_bytes: 16 << 20,
            block_bytes: 512 << 10,
            log_cache_bytes: 256 << 20,
            block_cache_bytes: 128 << 20,
            readahead_bytes: 4 << 20,
            compaction_interval: Some(Duration::from_secs(60)),
            compaction_small_object_bytes: 16 << 20,
            compaction_min_objects: 8,
            compaction_max_bytes: 512 << 20,
            gc_interval: Some(Duration::from_secs(60)),
            gc_grace: Duration::from_secs(600),
        }
    }
}

/// A stream as opened on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamInfo {
    pub stream_id: StreamId,
    pub epoch: u64,
    pub start_offset: u64,
    pub end_offset: u64,
}

/// What a fetch returns: whole batches, the first holding the requested offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResult {
    pub batches: Vec<StoredBatch>,
    /// The stream's first readable offset.
    pub start_offset: u64,
    /// The end of acknowledged data (the high watermark).
    pub end_offset: u64,
}

#[derive(Debug)]
pub(crate) struct CachedBatch {
    pub(crate) end_offset: u64,
    pub(crate) payload: Bytes,
    pub(crate) position: WalPosition,
    pub(crate) durable: bool,
}

#[derive(Debug)]
pub(crate) struct OpenStream {
    pub(crate) epoch: u64,
    pub(crate) start_offset: u64,
    /// Offsets handed out to appends (durable or not).
    pub(crate) next_offset: u64,
    /// Contiguous durable end: what readers may see.
    pub(crate) confirmed_end: u64,
    /// End of what is in committed objects.
    pub(crate) uploaded_end: u64,
    /// The cache holds every batch from here on.
    pub(crate) cache_start: u64,
    pub(crate) batches: BTreeMap<u64, CachedBatch>,
    pub(crate) end_tx: watch::Sender<u64>,
    pub(crate) closing: bool,
}

#[derive(Debug, Default)]
pub(crate) struct LogCache {
    pub(crate) streams: HashMap<StreamId, OpenStream>,
    /// WAL positions of appended records not yet in committed objects.
    pub(crate) unpersisted: BTreeSet<WalPosition>,
    pub(crate) last_position: Option<WalPosition>,
    pub(crate) trimmed_to: Option<WalPosition>,
    pub(crate) bytes: usize,
    pub(crate) unuploaded_bytes: usize,
    /// Uploaded batches in upload order, for eviction: (stream, base offset).
    pub(crate) uploaded_order: VecDeque<(StreamId, u64)>,
}

impl LogCache {
    /// The WAL position up to which everything is in committed objects, if it moved.
    pub(crate) fn trim_point(&mut self) -> Option<WalPosition> {
        let point = match self.unpersisted.first() {
            Some(0) => return None,
            Some(p) => p - 1,
            None => self.last_position?,
        };
        if self.trimmed_to.is_some_and(|t| t >= point) {
            return None;
        }
        self.trimmed_to = Some(point);
        Some(point)
    }

    /// Drops uploaded batches, oldest first, until the cache fits `budget`.
    pub(crate) fn evict(&mut self, budget: usize) {
        while self.bytes > budget {
            let Some((stream_id, base)) = self.uploaded_order.pop_front() else { break };
            let Some(s) = self.streams.get_mut(&stream_id) else { continue };
            if s.batches.first_key_value().is_some_and(|(b, batch)| *b == base && batch.end_offset <= s.uploaded_end) {
                if let Some(batch) = s.batches.remove(&base) {
                    self.bytes -= batch.payload.len();
                    s.cache_start = s.cache_start.max(batch.end_offset);
                }
            }
        }
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: StreamEngineConfig,
    pub(crate) store: SharedStore,
    pub(crate) wal: Arc<dyn Wal>,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) clock: SharedClock,
    pub(crate) metrics: StreamMetrics,
    pub(crate) cache: Mutex<LogCache>,
    pub(crate) reader: ObjectReader,
    pub(crate) upload_lock: tokio::sync::Mutex<()>,
    pub(crate) upload_wakeup: Notify,
    pub(crate) space: Notify,
    pub(crate) failed: Mutex<Option<String>>,
    /// Keys of objects this engine has written but not yet committed (or given up on): GC
    /// never deletes them, whatever their age.
    pub(crate) uncommitted: Mutex<std::collections::HashSet<String>>,
}

/// The stream engine. Cheap to share (`Arc` inside).
#[derive(Debug)]
pub struct StreamEngine {
    pub(crate) inner: Arc<Inner>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    stop: watch::Sender<bool>,
}

impl StreamEngine {
    /// Starts the engine over an opened WAL and catalog. `recovered` (what the WAL gave back
    /// when opened) is uploaded and committed before this returns, and the WAL trimmed, so
    /// every acknowledged append of the previous incarnation is readable.
    pub async fn open(
        config: StreamEngineConfig,
        store: SharedStore,
        wal: Arc<dyn Wal>,
        recovered: Vec<RecoveredRecord>,
        catalog: Arc<Catalog>,
        clock: SharedClock,
        metrics: StreamMetrics,
    ) -> Result<Self> {
        let reader =
            ObjectReader::new(store.clone(), config.block_cache_bytes, config.readahead_bytes, metrics.clone());
        let inner = Arc::new(Inner {
            config,
            store,
            wal,
            catalog,
            clock,
            metrics,
            cache: Mutex::new(LogCache::default()),
            reader,
            upload_lock: tokio::sync::Mutex::new(()),
            upload_wakeup: Notify::new(),
            space: Notify::new(),
            failed: Mutex::new(None),
            uncommitted: Mutex::new(Default::default()),
        });
        inner.recover(recovered).await?;
        let (stop, _) = watch::channel(false);
        let engine = StreamEngine { inner, tasks: Mutex::new(Vec::new()), stop };
        engine.start_background();
        Ok(engine)
    }

    fn start_background(&self) {
        let mut tasks = self.tasks.lock();
        let inner = self.inner.clone();
        let mut stop = self.stop.subscribe();
        tasks.push(tokio::spawn(async move {
            let mut wait = inner.config.upload_interval;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = inner.upload_wakeup.notified() => {}
                    _ = stop.changed() => return,
                }
                wait = match inner.upload().await {
                    Ok(_) => inner.config.upload_interval,
                    Err(e) if inner.failed.lock().is_some() => {
                        tracing::warn!(error = %e, "upload loop stops: the engine has failed");
                        return;
                    }
                    Err(e) => {
                        // Retry soon (appends may be waiting for space), backing off from
                        // 100 ms up to the upload interval.
                        let next =
                            if wait >= inner.config.upload_interval { Duration::from_millis(100) } else { wait * 2 };
                        let next = next.min(inner.config.upload_interval);
                        tracing::warn!(error = %e, retry_in = ?next, "upload failed; will retry");
                        next
                    }
                };
            }
        }));
        if let Some(every) = self.inner.config.compaction_interval {
            tasks.push(self.every(every, "compaction", |inner| async move { inner.compact().await.map(|_| ()) }));
        }
        if let Some(every) = self.inner.config.gc_interval {
            tasks.push(self.every(every, "garbage collection", |inner| async move { inner.gc().await.map(|_| ()) }));
        }
    }

    /// Runs `work` every `period` until shutdown; a failure is logged and retried next time.
    fn every<F, Fut>(&self, period: Duration, what: &'static str, work: F) -> JoinHandle<()>
    where
        F: Fn(Arc<Inner>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<()>> + Send,
    {
        let inner = self.inner.clone();
        let mut stop = self.stop.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(period) => {}
                    _ = stop.changed() => return,
                }
                if let Err(e) = work(inner.clone()).await {
                    tracing::warn!(error = %e, what, "background work failed; will retry");
                }
            }
        })
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.inner.catalog
    }

    /// Takes over a dead node's S3 WAL (see [`crate::wal::take_over`]): fences it up to
    /// `up_to_epoch` and commits what it acknowledged and never uploaded, for the streams it
    /// still owns, under their current epochs. Afterwards those streams can be opened
    /// elsewhere without losing anything. Returns how many records were committed.
    #[tracing::instrument(skip(self, wal))]
    pub async fn adopt_wal(&self, wal: &crate::wal::S3WalConfig, up_to_epoch: u64) -> Result<usize> {
        let inner = &self.inner;
        let taken = crate::wal::take_over(&inner.store, wal, &inner.clock, up_to_epoch).await?;
        let records = taken.records.clone();
        let kept = inner.commit_recovered(records, wal.node_id).await?;
        taken.discard(&inner.store).await?;
        Ok(kept)
    }

    /// Whether the engine can take appends (for readiness probes).
    pub fn is_healthy(&self) -> bool {
        self.inner.failed.lock().is_none()
    }

    /// Creates a new, empty stream and returns its id.
    #[tracing::instrument(skip(self))]
    pub async fn create_stream(&self) -> Result<StreamId> {
        self.inner.catalog.create_stream().await
    }

    /// Opens `stream_id` on this node at a new epoch, fencing any former owner.
    #[tracing::instrument(skip(self))]
    pub async fn open_stream(&self, stream_id: StreamId) -> Result<StreamInfo> {
        let inner = &self.inner;
        if let Some(s) = inner.cache.lock().streams.get(&stream_id) {
            return Ok(StreamInfo {
                stream_id,
                epoch: s.epoch,
                start_offset: s.start_offset,
                end_offset: s.next_offset,
            });
        }
        let meta = inner.catalog.state().streams.get(&stream_id).cloned().ok_or(Error::StreamNotFound(stream_id))?;
        let epoch = meta.epoch + 1;
        inner
            .catalog
            .submit(vec![CatalogRecord::OpenStream { stream_id, epoch, node_id: inner.config.node_id }])
            .await?;
        let meta = inner.catalog.state().streams.get(&stream_id).cloned().ok_or(Error::StreamNotFound(stream_id))?;
        let end = meta.end_offset;
        let (end_tx, _) = watch::channel(end);
        inner.cache.lock().streams.insert(
            stream_id,
            OpenStream {
                epoch,
                start_offset: meta.start_offset,
                next_offset: end,
                confirmed_end: end,
                uploaded_end: end,
                cache_start: end,
                batches: BTreeMap::new(),
                end_tx,
                closing: false,
            },
        );
        Ok(StreamInfo { stream_id, epoch, start_offset: meta.start_offset, end_offset: end })
    }

    /// Uploads the stream's data, then releases it.
    #[tracing::instrument(skip(self))]
    pub async fn close_stream(&self, stream_id: StreamId) -> Result<()> {
        self.close_streams(&[stream_id]).await.pop().unwrap_or(Ok(()))
    }

    /// Closes several streams at once (a drain hands many partitions off): they stop taking
    /// appends, one upload carries all their data, and their releases are group-committed.
    /// Returns each stream's outcome, in order.
    #[tracing::instrument(skip(self))]
    pub async fn close_streams(&self, stream_ids: &[StreamId]) -> Vec<Result<()>> {
        let epochs: Vec<Result<u64>> = {
            let mut cache = self.inner.cache.lock();
            stream_ids
                .iter()
                .map(|&stream_id| {
                    let s = cache.streams.get_mut(&stream_id).ok_or(Error::StreamNotOpen { stream_id })?;
                    s.closing = true;
                    Ok(s.epoch)
                })
                .collect()
        };
        for (&stream_id, epoch) in stream_ids.iter().zip(&epochs) {
            if epoch.is_ok() {
                self.inner.wait_durable(stream_id).await;
            }
        }
        if let Err(e) = self.inner.upload_streams(Some(stream_ids)).await {
            return stream_ids.iter().map(|_| Err(e.clone())).collect();
        }
        let releases = stream_ids.iter().zip(epochs).map(|(&stream_id, epoch)| async move {
            let epoch = epoch?;
            self.inner.catalog.submit(vec![CatalogRecord::CloseStream { stream_id, epoch }]).await?;
            let mut cache = self.inner.cache.lock();
            if let Some(s) = cache.streams.remove(&stream_id) {
                let bytes: usize = s.batches.values().map(|b| b.payload.len()).sum();
                cache.bytes -= bytes;
            }
            Ok(())
        });
        futures::future::join_all(releases).await
    }

    /// Deletes a stream and, after the GC grace period, its objects.
    #[tracing::instrument(skip(self))]
    pub async fn delete_stream(&self, stream_id: StreamId) -> Result<()> {
        self.forget_stream(stream_id);
        let at_ms = self.inner.clock.now_ms();
        self.inner.catalog.submit(vec![CatalogRecord::DeleteStream { stream_id, at_ms }]).await?;
        Ok(())
    }

    /// Drops this node's state of a stream without committing anything: the stream was
    /// deleted (by another node), or this node lost it and must not write it any more. Data
    /// acknowledged and not uploaded is dropped with it.
    pub fn forget_stream(&self, stream_id: StreamId) {
        let removed = self.inner.cache.lock().streams.remove(&stream_id);
        if let Some(s) = removed {
            let bytes: usize = s.batches.values().map(|b| b.payload.len()).sum();
            let mut cache = self.inner.cache.lock();
            cache.bytes -= bytes;
            for b in s.batches.values() {
                cache.unpersisted.remove(&b.position);
                if b.end_offset > s.uploaded_end {
                    cache.unuploaded_bytes -= b.payload.len();
                }
            }
        }
    }

    /// Whether this node has the stream open.
    pub fn is_open(&self, stream_id: StreamId) -> bool {
        self.inner.cache.lock().streams.contains_key(&stream_id)
    }

    /// Appends one batch holding offsets `base_offset..end_offset`; returns once durable.
    /// `base_offset` must be at or above the stream's next offset (a gap is allowed, for
    /// mirrored logs); callers serialise appends per stream to know the next offset.
    pub async fn append(&self, stream_id: StreamId, base_offset: u64, end_offset: u64, payload: Bytes) -> Result<()> {
        self.wait_for_space().await?;
        self.start_append(stream_id, base_offset, end_offset, payload)?.await
    }

    /// Waits while acknowledged data not yet uploaded fills the log cache (back-pressure).
    /// Callers that enqueue with [`Self::start_append`] under a lock of their own call this
    /// first, outside that lock.
    pub async fn wait_for_space(&self) -> Result<()> {
        let inner = &self.inner;
        while inner.cache.lock().unuploaded_bytes >= inner.config.log_cache_bytes {
            if let Some(msg) = inner.failed.lock().clone() {
                return Err(Error::Failed(msg));
            }
            let space = inner.space.notified();
            inner.upload_wakeup.notify_one();
            let _ = tokio::time::timeout(Duration::from_millis(100), space).await;
        }
        Ok(())
    }

    /// Enqueues an append without waiting: the order of calls is the order in the stream and
    /// the WAL, so a caller holding its own per-stream lock can release it before the batch is
    /// durable and pipeline the next one. The returned future resolves once durable; dropping
    /// it does not cancel the append.
    pub fn start_append(
        &self,
        stream_id: StreamId,
        base_offset: u64,
        end_offset: u64,
        payload: Bytes,
    ) -> Result<impl std::future::Future<Output = Result<()>> + Send + 'static> {
        let inner = &self.inner;
        let started = Instant::now();
        if let Some(msg) = inner.failed.lock().clone() {
            return Err(Error::Failed(msg));
        }
        let len = payload.len();
        let pending = {
            let mut cache = inner.cache.lock();
            let s = cache.streams.get_mut(&stream_id).ok_or(Error::StreamNotOpen { stream_id })?;
            if s.closing {
                return Err(Error::StreamNotOpen { stream_id });
            }
            if end_offset <= base_offset {
                return Err(Error::InvalidAppend {
                    stream_id,
                    reason: format!("empty batch {base_offset}..{end_offset}"),
                });
            }
            if base_offset < s.next_offset {
                return Err(Error::InvalidAppend {
                    stream_id,
                    reason: format!("base offset {base_offset} is below the next offset {}", s.next_offset),
                });
            }
            let epoch = s.epoch;
            let record = WalRecord { stream_id, epoch, base_offset, end_offset, payload: payload.clone() };
            let pending = inner.wal.append(record)?;
            s.next_offset = end_offset;
            s.batches
                .insert(base_offset, CachedBatch { end_offset, payload, position: pending.position, durable: false });
            cache.unpersisted.insert(pending.position);
            cache.last_position = Some(pending.position);
            cache.bytes += len;
            cache.unuploaded_bytes += len;
            pending
        };
        // Completion runs on its own task: a caller that gives up (a request timeout drops
        // the future) must not leave the batch unconfirmed and the stream's end stuck.
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let engine = self.inner.clone();
        tokio::spawn(async move {
            let outcome = pending.durable().await;
            engine.complete_append(stream_id, base_offset, len, started, &outcome);
            let _ = done_tx.send(outcome);
        });
        Ok(async move { done_rx.await.unwrap_or(Err(Error::Closed)) })
    }

    /// The next offset an append to `stream_id` must start at or above (appends enqueued so
    /// far included).
    pub fn next_offset(&self, stream_id: StreamId) -> Result<u64> {
        let cache = self.inner.cache.lock();
        cache.streams.get(&stream_id).map(|s| s.next_offset).ok_or(Error::StreamNotOpen { stream_id })
    }

    /// Reads batches from `offset` on, at most about `max_bytes` (always at least one batch
    /// when any is available).
    pub async fn fetch(&self, stream_id: StreamId, offset: u64, max_bytes: usize) -> Result<FetchResult> {
        let inner = &self.inner;
        let (start_offset, end_offset, cache_start, mut hot) = {
            let cache = inner.cache.lock();
            match cache.streams.get(&stream_id) {
                Some(s) => {
                    let hot = if offset >= s.cache_start { collect(s, offset, max_bytes) } else { Vec::new() };
                    (s.start_offset, s.confirmed_end, s.cache_start, hot)
                }
                None => {
                    let state = inner.catalog.state();
                    let m = state.streams.get(&stream_id).ok_or(Error::StreamNotFound(stream_id))?;
                    (m.start_offset, m.end_offset, m.end_offset, Vec::new())
                }
            }
        };
        if offset < start_offset || offset > end_offset {
            return Err(Error::OffsetOutOfRange { stream_id, offset, start_offset, end_offset });
        }
        if offset >= cache_start || offset == end_offset {
            return Ok(FetchResult { batches: hot, start_offset, end_offset });
        }
        let (mut batches, exhausted) =
            inner.reader.read(&inner.catalog.state(), stream_id, offset, cache_start, max_bytes).await?;
        let got: usize = batches.iter().map(|b| b.payload.len()).sum();
        let next = batches.last().map(|b| b.end_offset).unwrap_or(offset);
        // When the cold read got through everything below `cache_start` (what is left there is
        // a gap), go on in the cache.
        if exhausted && (batches.is_empty() || got < max_bytes) {
            let cache = inner.cache.lock();
            if let Some(s) = cache.streams.get(&stream_id) {
                hot = collect(s, next.max(cache_start), max_bytes.saturating_sub(got).max(1));
                batches.extend(hot);
            }
        }
        Ok(FetchResult { batches, start_offset, end_offset })
    }

    /// Watches a stream's acknowledged end (for long-polling fetches).
    pub fn subscribe(&self, stream_id: StreamId) -> Result<watch::Receiver<u64>> {
        let cache = self.inner.cache.lock();
        let s = cache.streams.get(&stream_id).ok_or(Error::StreamNotOpen { stream_id })?;
        Ok(s.end_tx.subscribe())
    }

    /// Drops offsets below `new_start` (retention). Readers get `OffsetOutOfRange` below it;
    /// objects holding only trimmed data are deleted after the GC grace period.
    #[tracing::instrument(skip(self))]
    pub async fn trim(&self, stream_id: StreamId, new_start: u64) -> Result<()> {
        let inner = &self.inner;
        let needs_upload = {
            let cache = inner.cache.lock();
            cache.streams.get(&stream_id).is_some_and(|s| new_start > s.uploaded_end)
        };
        if needs_upload {
            inner.wait_durable(stream_id).await;
            inner.upload().await?;
        }
        let at_ms = inner.clock.now_ms();
        inner.catalog.submit(vec![CatalogRecord::TrimStream { stream_id, start_offset: new_start, at_ms }]).await?;
        let mut cache = inner.cache.lock();
        let cache = &mut *cache;
        if let Some(s) = cache.streams.get_mut(&stream_id) {
            s.start_offset = s.start_offset.max(new_start);
            while let Some((&base, b)) = s.batches.first_key_value() {
                if b.end_offset > new_start || b.end_offset > s.uploaded_end {
                    break;
                }
                cache.bytes -= b.payload.len();
                s.batches.remove(&base);
            }
            s.cache_start = s
                .cache_start
                .max(s.batches.first_key_value().map(|(b, _)| *b).unwrap_or(s.uploaded_end).min(s.uploaded_end));
        }
        Ok(())
    }

    /// Uploads everything acknowledged so far and commits it (what shutdown does).
    pub async fn flush(&self) -> Result<()> {
        let ids: Vec<StreamId> = self.inner.cache.lock().streams.keys().copied().collect();
        for id in ids {
            self.inner.wait_durable(id).await;
        }
        self.inner.upload().await.map(|_| ())
    }

    /// Runs one compaction now.
    pub async fn compact_now(&self) -> Result<super::CompactionReport> {
        self.inner.compact().await
    }

    /// Runs one garbage collection now.
    pub async fn gc_now(&self) -> Result<super::GcReport> {
        self.inner.gc().await
    }

    /// Stops background work, uploads what is acknowledged and closes the WAL.
    pub async fn shutdown(&self) -> Result<()> {
        self.stop.send_replace(true);
        let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock());
        for t in tasks {
            let _ = t.await;
        }
        let flushed = self.flush().await;
        self.inner.wal.close().await?;
        flushed
    }
}

impl Drop for StreamEngine {
    fn drop(&mut self) {
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
    }
}

/// Durable batches of `s` from `offset`, up to about `max_bytes` (at least one).
fn collect(s: &OpenStream, offset: u64, max_bytes: usize) -> Vec<StoredBatch> {
    let mut out = Vec::new();
    let mut bytes = 0;
    // The batch holding `offset` starts at or before it.
    let from = s
        .batches
        .range(..=offset)
        .next_back()
        .filter(|(_, b)| b.end_offset > offset)
        .map(|(k, _)| *k)
        .unwrap_or(offset);
    for (&base, b) in s.batches.range(from..) {
        if b.end_offset > s.confirmed_end || (!out.is_empty() && bytes + b.payload.len() > max_bytes) {
            break;
        }
        bytes += b.payload.len();
        out.push(StoredBatch { base_offset: base, end_offset: b.end_offset, payload: b.payload.clone() });
    }
    out
}

impl Inner {
    /// Marks the engine failed: appends and uploads stop until it is reopened (recovery then
    /// brings back everything acknowledged).
    pub(crate) fn fail(&self, reason: String) {
        let mut failed = self.failed.lock();
        if failed.is_none() {
            tracing::error!(%reason, "stream engine failed; it refuses appends until reopened");
            *failed = Some(reason);
        }
        drop(failed);
        self.space.notify_waiters();
    }

    /// Records the outcome of an append: on success the stream's durable prefix (what readers
    /// see) advances; a WAL failure fails the engine.
    fn complete_append(
        &self,
        stream_id: StreamId,
        base_offset: u64,
        len: usize,
        started: Instant,
        outcome: &Result<()>,
    ) {
        let mut cache = self.cache.lock();
        if let Err(e) = outcome {
            drop(cache);
            self.fail(format!("WAL append to stream {stream_id} at offset {base_offset} failed: {e}"));
            return;
        }
        if let Some(s) = cache.streams.get_mut(&stream_id) {
            if let Some(b) = s.batches.get_mut(&base_offset) {
                b.durable = true;
            }
            // The durable prefix ends at the first batch still waiting for the WAL.
            let end = s
                .batches
                .range(s.confirmed_end..)
                .take_while(|(_, b)| b.durable)
                .map(|(_, b)| b.end_offset)
                .last()
                .unwrap_or(s.confirmed_end);
            if end > s.confirmed_end {
                s.confirmed_end = end;
                s.end_tx.send_replace(end);
            }
        }
        let wake = cache.unuploaded_bytes >= self.config.upload_bytes;
        drop(cache);
        if wake {
            self.upload_wakeup.notify_one();
        }
        self.metrics.append_bytes.inc_by(len as u64);
        self.metrics.append_latency.observe(started.elapsed().as_secs_f64());
    }

    /// Waits until every append to `stream_id` issued so far is durable (or failed).
    pub(crate) async fn wait_durable(&self, stream_id: StreamId) {
        loop {
            let rx = {
                let cache = self.cache.lock();
                match cache.streams.get(&stream_id) {
                    Some(s) if s.confirmed_end < s.next_offset && self.failed.lock().is_none() => s.end_tx.subscribe(),
                    _ => return,
                }
            };
            let mut rx = rx;
            let _ = tokio::time::timeout(Duration::from_millis(50), rx.changed()).await;
        }
    }
}
