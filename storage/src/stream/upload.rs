//! Upload: acknowledged WAL data from the log cache into objects, committed to the catalog,
//! after which the WAL is trimmed. Recovery uploads what the WAL gave back on open.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::engine::Inner;
use super::format::{ObjectBuilder, StoredBatch};
use crate::metadata::{CatalogRecord, DataObject, NodeId, ObjectKind, StreamEnd, StreamId};
use crate::wal::{RecoveredRecord, WalPosition};
use crate::{Error, Result};

/// Consecutive batches of one stream, starting at offset `start` (a gap may precede the first
/// batch).
#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub(crate) stream_id: StreamId,
    pub(crate) start: u64,
    pub(crate) batches: Vec<StoredBatch>,
}

impl Run {
    fn bytes(&self) -> usize {
        self.batches.iter().map(StoredBatch::encoded_len).sum()
    }

    pub(crate) fn end(&self) -> u64 {
        self.batches.last().map(|b| b.end_offset).unwrap_or(self.start)
    }
}

/// The key of a new data object under `prefix`: a random id first (spreads keys over S3
/// partitions), then the creation time that GC reads back.
pub(crate) fn object_key(prefix: &str, id: u64, created_ms: u64) -> String {
    format!("{prefix}/{id:016x}-{created_ms:013}")
}

/// The creation time in a data object key under `prefix`, if it is one.
pub(crate) fn created_ms_of(prefix: &str, key: &str) -> Option<u64> {
    let name = key.strip_prefix(prefix)?.strip_prefix('/')?;
    let (id, created) = name.split_once('-')?;
    (id.len() == 16 && u64::from_str_radix(id, 16).is_ok()).then_some(())?;
    created.parse().ok()
}

/// Lays `runs` out in objects: a stream holding at least `stream_object_bytes` gets a stream
/// object of its own, the rest share one stream-set object.
pub(crate) fn build_objects(inner: &Inner, runs: &[Run]) -> Vec<(DataObject, Bytes)> {
    let config = &inner.config;
    let mut per_stream: BTreeMap<StreamId, Vec<&Run>> = BTreeMap::new();
    for run in runs.iter().filter(|r| !r.batches.is_empty()) {
        per_stream.entry(run.stream_id).or_default().push(run);
    }
    let now = inner.clock.now_ms();
    let mut out = Vec::new();
    let mut finish = |builder: ObjectBuilder, kind: ObjectKind| {
        if builder.is_empty() {
            return;
        }
        let (bytes, index_pos, ranges) = builder.finish();
        let id = rand::random::<u64>();
        let object = DataObject {
            id,
            key: object_key(&config.data_prefix, id, now),
            kind,
            size: bytes.len() as u64,
            index_pos,
            created_ms: now,
            ranges,
        };
        out.push((object, bytes));
    };
    let mut shared = ObjectBuilder::new(config.block_bytes);
    for (stream_id, runs) in per_stream {
        let total: usize = runs.iter().map(|r| r.bytes()).sum();
        if total >= config.stream_object_bytes {
            let mut own = ObjectBuilder::new(config.block_bytes);
            for run in runs {
                own.add_run(stream_id, run.start, &run.batches);
            }
            finish(own, ObjectKind::Stream);
        } else {
            for run in runs {
                shared.add_run(stream_id, run.start, &run.batches);
            }
        }
    }
    finish(shared, ObjectKind::StreamSet);
    out
}

impl Inner {
    /// Writes `objects` to the bucket, all at once. They stay protected from GC until
    /// [`Self::settle`] is called for them.
    pub(crate) async fn put_objects(&self, objects: &[(DataObject, Bytes)]) -> Result<()> {
        self.uncommitted.lock().extend(objects.iter().map(|(o, _)| o.key.clone()));
        let puts = objects.iter().map(|(o, bytes)| self.store.put(&o.key, bytes.clone()));
        futures::future::try_join_all(puts).await?;
        Ok(())
    }

    /// The commit of `objects` is decided (committed, refused, or abandoned): from now on the
    /// catalog alone says whether they are referenced.
    pub(crate) fn settle(&self, objects: &[(DataObject, Bytes)]) {
        let mut uncommitted = self.uncommitted.lock();
        for (o, _) in objects {
            uncommitted.remove(&o.key);
        }
    }

    /// Puts `objects`, checks they are fresh, and commits `record` (which lists them).
    pub(crate) async fn put_and_commit(
        &self,
        objects: &[(DataObject, Bytes)],
        record: impl FnOnce() -> CatalogRecord,
    ) -> Result<()> {
        let result = async {
            self.put_objects(objects).await?;
            self.check_fresh(objects)?;
            self.catalog.submit(vec![record()]).await.map(|_| ())
        }
        .await;
        self.settle(objects);
        result
    }

    /// Refuses to commit objects so old that GC may already treat them as orphans.
    pub(crate) fn check_fresh(&self, objects: &[(DataObject, Bytes)]) -> Result<()> {
        let max_age = self.config.gc_grace.as_millis() as u64 / 2;
        let now = self.clock.now_ms();
        match objects.iter().find(|(o, _)| o.created_ms + max_age < now) {
            Some((o, _)) => Err(Error::UploadExpired { key: o.key.clone() }),
            None => Ok(()),
        }
    }

    /// Puts and commits uploaded objects that extend streams to `ends`.
    async fn commit_upload(&self, objects: &[(DataObject, Bytes)], ends: Vec<StreamEnd>) -> Result<()> {
        let record = || CatalogRecord::CommitObjects {
            objects: objects.iter().map(|(o, _)| o.clone()).collect(),
            stream_ends: ends,
            compacted: vec![],
            at_ms: self.clock.now_ms(),
        };
        self.put_and_commit(objects, record).await
    }

    /// Uploads every acknowledged batch not yet in an object, commits, trims the WAL and
    /// evicts what the log cache no longer needs. Returns the bytes uploaded.
    #[tracing::instrument(skip(self))]
    pub(crate) async fn upload(&self) -> Result<usize> {
        self.upload_streams(None).await
    }

    /// Like [`Self::upload`], for only these streams (closing streams: a smaller object, so a
    /// hand-off does not wait for everybody's data to be uploaded).
    pub(crate) async fn upload_streams(&self, only: Option<&[StreamId]>) -> Result<usize> {
        let _one_at_a_time = self.upload_lock.lock().await;
        if let Some(msg) = self.failed.lock().clone() {
            return Err(Error::Failed(msg));
        }
        let mut runs = Vec::new();
        let mut ends = Vec::new();
        let mut positions: Vec<WalPosition> = Vec::new();
        let mut payload_bytes = 0usize;
        {
            let cache = self.cache.lock();
            for (&stream_id, s) in &cache.streams {
                if only.is_some_and(|only| !only.contains(&stream_id)) {
                    continue;
                }
                let batches: Vec<StoredBatch> = s
                    .batches
                    .range(s.uploaded_end..)
                    .take_while(|(_, b)| b.end_offset <= s.confirmed_end)
                    .map(|(&base, b)| {
                        positions.push(b.position);
                        payload_bytes += b.payload.len();
                        StoredBatch { base_offset: base, end_offset: b.end_offset, payload: b.payload.clone() }
                    })
                    .collect();
                if let Some(last) = batches.last() {
                    ends.push(StreamEnd { stream_id, epoch: s.epoch, end_offset: last.end_offset });
                    runs.push(Run { stream_id, start: s.uploaded_end, batches });
                }
            }
        }
        if runs.is_empty() {
            return Ok(0);
        }
        let objects = build_objects(self, &runs);
        if let Err(e) = self.commit_upload(&objects, ends).await {
            match &e {
                // Another node owns the stream now: forget it here; the other streams go in
                // the next upload (these objects become orphans for GC).
                Error::StaleEpoch { stream_id, .. } => {
                    tracing::warn!(stream_id, "stream was fenced by a newer owner; dropping it from this node");
                    self.forget_stream(*stream_id);
                }
                // The catalog no longer knows whether its last entry landed: only a reopen
                // (and WAL recovery) can continue from here.
                Error::Failed(_) | Error::Fenced(_) | Error::Unavailable(_) => {
                    self.fail(format!("catalog commit failed: {e}"))
                }
                _ => {}
            }
            return Err(e);
        }
        let trim = {
            let mut cache = self.cache.lock();
            let cache = &mut *cache;
            for run in &runs {
                if let Some(s) = cache.streams.get_mut(&run.stream_id) {
                    s.uploaded_end = s.uploaded_end.max(run.end());
                    cache.uploaded_order.extend(run.batches.iter().map(|b| (run.stream_id, b.base_offset)));
                }
            }
            for p in &positions {
                cache.unpersisted.remove(p);
            }
            cache.unuploaded_bytes = cache.unuploaded_bytes.saturating_sub(payload_bytes);
            cache.evict(self.config.log_cache_bytes);
            self.metrics.log_cache_bytes.set(cache.bytes as i64);
            self.metrics.unuploaded_bytes.set(cache.unuploaded_bytes as i64);
            cache.trim_point()
        };
        self.space.notify_waiters();
        self.metrics.uploads.inc();
        self.metrics.upload_bytes.inc_by(objects.iter().map(|(o, _)| o.size).sum());
        if let Some(position) = trim {
            self.wal.trim(position).await?;
        }
        Ok(payload_bytes)
    }

    fn forget_stream(&self, stream_id: StreamId) {
        let mut cache = self.cache.lock();
        if let Some(s) = cache.streams.remove(&stream_id) {
            for b in s.batches.values() {
                cache.bytes -= b.payload.len();
                cache.unpersisted.remove(&b.position);
                if b.end_offset > s.uploaded_end {
                    cache.unuploaded_bytes = cache.unuploaded_bytes.saturating_sub(b.payload.len());
                }
            }
        }
    }

    /// Commits what the WAL gave back on open: records above each stream's committed end, for
    /// streams this node owns. Then trims the WAL past them.
    pub(crate) async fn recover(&self, recovered: Vec<RecoveredRecord>) -> Result<()> {
        let Some(last) = recovered.iter().map(|r| r.position).max() else { return Ok(()) };
        self.commit_recovered(recovered, self.config.node_id).await?;
        self.wal.trim(last).await?;
        self.cache.lock().trimmed_to = Some(last);
        Ok(())
    }

    /// Uploads and commits WAL records `owner` acknowledged and never uploaded (see
    /// [`Self::commit_recovered_once`]). Another node may commit the same records at the same
    /// time (a node restarting while a peer takes its WAL over): a commit refused because the
    /// stream moved on is redone against the new state, where those records are committed.
    pub(crate) async fn commit_recovered(&self, recovered: Vec<RecoveredRecord>, owner: NodeId) -> Result<usize> {
        let mut attempt = 0;
        loop {
            match self.commit_recovered_once(recovered.clone(), owner).await {
                Err(e @ (Error::InvalidMetadata(_) | Error::StaleEpoch { .. })) if attempt < 20 => {
                    attempt += 1;
                    tracing::info!(error = %e, attempt, "recovered records raced another commit; redoing against the new state");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    /// One attempt: uploads and commits WAL records `owner` acknowledged and never uploaded, under the
    /// streams' current epochs: only for streams `owner` still owns (or nobody does), and only
    /// what lies past each stream's committed end. Returns how many records were committed.
    async fn commit_recovered_once(&self, recovered: Vec<RecoveredRecord>, owner: NodeId) -> Result<usize> {
        let state = self.catalog.state();
        let mut runs: BTreeMap<StreamId, (u64, Run)> = BTreeMap::new();
        let (mut kept, mut skipped) = (0usize, 0usize);
        for RecoveredRecord { record: r, .. } in recovered {
            let Some(meta) = state.streams.get(&r.stream_id) else {
                skipped += 1;
                continue;
            };
            if meta.owner.is_some_and(|o| o != owner) {
                tracing::warn!(stream_id = r.stream_id, owner = ?meta.owner, wal_of = owner, "WAL holds records of a stream another node owns; leaving them");
                skipped += 1;
                continue;
            }
            let (_, run) = runs
                .entry(r.stream_id)
                .or_insert((meta.epoch, Run { stream_id: r.stream_id, start: meta.end_offset, batches: Vec::new() }));
            let end = run.end();
            if r.end_offset <= end {
                skipped += 1; // already committed (or a duplicate)
                continue;
            }
            if r.base_offset < end {
                tracing::warn!(
                    stream_id = r.stream_id,
                    base = r.base_offset,
                    end,
                    "WAL record overlaps committed data; skipping it"
                );
                skipped += 1;
                continue;
            }
            run.batches.push(StoredBatch { base_offset: r.base_offset, end_offset: r.end_offset, payload: r.payload });
            kept += 1;
        }
        let runs: Vec<(u64, Run)> = runs.into_values().filter(|(_, r)| !r.batches.is_empty()).collect();
        if !runs.is_empty() {
            let ends = runs
                .iter()
                .map(|(epoch, r)| StreamEnd { stream_id: r.stream_id, epoch: *epoch, end_offset: r.end() })
                .collect();
            let runs: Vec<Run> = runs.into_iter().map(|(_, r)| r).collect();
            let objects = build_objects(self, &runs);
            self.commit_upload(&objects, ends).await?;
        }
        tracing::info!(kept, skipped, wal_of = owner, "WAL records committed");
        Ok(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_carry_their_creation_time() {
        let key = object_key("data", 0xabc, 1_700_000_000_123);
        assert_eq!(created_ms_of("data", &key), Some(1_700_000_000_123));
        assert_eq!(created_ms_of("warehouse/data", &key), None, "another engine's prefix");
        assert_eq!(created_ms_of("data", "data/zz-12"), None);
        assert_eq!(created_ms_of("data", "wal/1/0"), None);
    }
}
