//! One topic partition on its stream: validation, offsets, idempotent producers, reads, the
//! per-batch index used for ListOffsets by timestamp and for retention.
//!
//! Appends are pipelined: under the partition lock a batch is checked, given its offsets and
//! enqueued in the WAL (so the order of the log is fixed), then the lock is released and only
//! the caller waits for durability. acks=1 and acks=all both wait: data is acknowledged only
//! once it is durable in the WAL.

use std::sync::Arc;

use automq_storage::stream::StreamEngine;
use bytes::{Bytes, BytesMut};
use kafka_protocol::records::RecordBatchDecoder;
use kafka_protocol::ResponseError;
use parking_lot::Mutex;

use crate::batch::{self, BatchError, BatchHeader};
use crate::error::{Error, Result};
use crate::producers::{ProducerStates, SequenceCheck};
use crate::topics::TopicConfig;
use crate::txn::index::{AbortedTxn, TxnIndex};

/// The index kept per batch: base offset, the largest timestamp up to and including this
/// batch (Kafka's time index semantics), and its size.
#[derive(Debug, Clone, Copy)]
struct IndexEntry {
    base_offset: i64,
    end_offset: i64,
    running_max_timestamp: i64,
    max_timestamp: i64,
    size: u32,
}

#[derive(Debug, Default)]
struct State {
    producers: ProducerStates,
    txns: TxnIndex,
    index: Vec<IndexEntry>,
    /// Total bytes of the batches in `index`.
    bytes: u64,
    /// Offsets below this were compacted by the last pass.
    cleaned_upto: i64,
    /// Tombstone offset -> when compaction may drop it (first kept + delete.retention.ms).
    tombstone_horizons: std::collections::HashMap<i64, i64>,
}

impl State {
    fn record(&mut self, h: &BatchHeader, bytes: &Bytes, base_offset: i64) {
        self.producers.record(h, base_offset);
        self.txns.observe(h, bytes, base_offset);
        let running = self.index.last().map(|e| e.running_max_timestamp).unwrap_or(i64::MIN).max(h.max_timestamp);
        self.index.push(IndexEntry {
            base_offset,
            end_offset: base_offset + h.offset_count() as i64,
            running_max_timestamp: running,
            max_timestamp: h.max_timestamp,
            size: h.size as u32,
        });
        self.bytes += h.size as u64;
    }

    /// Forgets batches entirely below `start`.
    fn trim(&mut self, start: i64) {
        let drop = self.index.partition_point(|e| e.end_offset <= start);
        self.bytes -= self.index[..drop].iter().map(|e| e.size as u64).sum::<u64>();
        self.index.drain(..drop);
        self.txns.trim(start);
    }
}

/// The outcome of a successful produce to one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub base_offset: i64,
    /// The broker's timestamp when the topic uses LogAppendTime, else -1.
    pub log_append_time: i64,
    pub log_start_offset: i64,
}

type PendingDurable = std::pin::Pin<Box<dyn std::future::Future<Output = automq_storage::Result<()>> + Send>>;

/// Batches enqueued by [`Partition::enqueue`], not yet durable.
pub struct Enqueued {
    base_offset: i64,
    log_append_time: i64,
    pending: Vec<PendingDurable>,
}

impl std::fmt::Debug for Enqueued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enqueued")
            .field("base_offset", &self.base_offset)
            .field("batches", &self.pending.len())
            .finish()
    }
}

impl Enqueued {
    /// Waits until every enqueued batch is durable.
    pub async fn durable(self, partition: &Partition, engine: &StreamEngine) -> Result<AppendOutcome> {
        for append in self.pending {
            append.await?;
        }
        Ok(AppendOutcome {
            base_offset: self.base_offset,
            log_append_time: self.log_append_time,
            log_start_offset: partition.log_start(engine),
        })
    }
}

/// What a read returns.
#[derive(Debug, Clone)]
pub struct ReadResult {
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

#[derive(Debug)]
pub struct Partition {
    pub topic: String,
    pub index: i32,
    pub stream_id: u64,
    state: Mutex<State>,
    /// Record bytes produced and fetched since the last [`Partition::take_traffic`].
    traffic_in: std::sync::atomic::AtomicU64,
    traffic_out: std::sync::atomic::AtomicU64,
}

fn batch_error(e: BatchError) -> Error {
    let code = match &e {
        BatchError::Corrupt(_) => ResponseError::CorruptMessage,
        BatchError::UnsupportedMagic(_) => ResponseError::UnsupportedForMessageFormat,
        BatchError::Invalid(_) => ResponseError::InvalidRecord,
    };
    Error::kafka(code, e.to_string())
}

impl Partition {
    /// Opens the partition's stream on this broker and rebuilds producer state and the batch
    /// index from the log.
    pub async fn open(engine: &StreamEngine, topic: &str, index: i32, stream_id: u64) -> Result<Arc<Self>> {
        let info = engine.open_stream(stream_id).await?;
        let mut state = State::default();
        let mut offset = info.start_offset;
        while offset < info.end_offset {
            let read = engine.fetch(stream_id, offset, 8 << 20).await?;
            if read.batches.is_empty() {
                break;
            }
            for b in &read.batches {
                match batch::parse(&b.payload) {
                    Ok(h) => state.record(&h, &b.payload, b.base_offset as i64),
                    Err(e) => {
                        tracing::warn!(topic, index, offset = b.base_offset, error = %e, "unreadable batch in the log")
                    }
                }
                offset = b.end_offset;
            }
        }
        tracing::debug!(
            topic,
            index,
            stream_id,
            batches = state.index.len(),
            producers = state.producers.len(),
            "partition opened"
        );
        Ok(Arc::new(Partition {
            topic: topic.to_string(),
            index,
            stream_id,
            state: Mutex::new(state),
            traffic_in: Default::default(),
            traffic_out: Default::default(),
        }))
    }

    /// Counts record bytes produced to and fetched from this partition (its load, for the
    /// controller's balancing).
    pub fn count_traffic(&self, bytes_in: u64, bytes_out: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.traffic_in.fetch_add(bytes_in, Relaxed);
        self.traffic_out.fetch_add(bytes_out, Relaxed);
    }

    /// Bytes in and out since the last call.
    pub fn take_traffic(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.traffic_in.swap(0, Relaxed), self.traffic_out.swap(0, Relaxed))
    }

    /// Appends the record batches of one produce request and waits until they are durable.
    pub async fn append(
        &self,
        engine: &StreamEngine,
        records: Bytes,
        config: &TopicConfig,
        now_ms: i64,
    ) -> Result<AppendOutcome> {
        engine.wait_for_space().await?;
        self.enqueue(engine, records, config, now_ms)?.durable(self, engine).await
    }

    /// Validates the batches of one produce request, answers retried batches of idempotent
    /// producers from their state, assigns offsets and enqueues the rest in the WAL, without
    /// waiting. The order of calls is the order of the log. Call
    /// [`StreamEngine::wait_for_space`] first (outside any lock).
    pub fn enqueue(
        &self,
        engine: &StreamEngine,
        records: Bytes,
        config: &TopicConfig,
        now_ms: i64,
    ) -> Result<Enqueued> {
        let batches = batch::split(&records).map_err(batch_error)?;
        for (h, _) in &batches {
            if h.size > config.max_message_bytes {
                return Err(Error::kafka(
                    ResponseError::MessageTooLarge,
                    format!("record batch of {} bytes exceeds max.message.bytes {}", h.size, config.max_message_bytes),
                ));
            }
            if h.is_control() {
                return Err(Error::kafka(
                    ResponseError::InvalidRecord,
                    "control batches are written by the brokers only (transaction markers)",
                ));
            }
            if h.is_transactional() && h.producer_id < 0 {
                return Err(Error::kafka(ResponseError::InvalidRecord, "a transactional batch without a producer id"));
            }
        }
        if config.cleanup_policy.compact {
            for (h, bytes) in &batches {
                crate::cleaner::require_keys(bytes, h.base_offset.max(0) as u64)?;
            }
        }
        let mut first = None;
        let mut pending: Vec<PendingDurable> = Vec::new();
        let mut state = self.state.lock();
        for (h, bytes) in &batches {
            if h.producer_id >= 0 {
                match state.producers.check(h) {
                    Ok(SequenceCheck::Append) => {}
                    Ok(SequenceCheck::Duplicate { base_offset }) => {
                        // A retry of a batch already in the log: answered with its offset, but
                        // only once the original is durable (it may still be on its way to the
                        // WAL; acknowledging the retry first would acknowledge a write a crash
                        // can still lose). The stream closing first: NOT_LEADER, and the client
                        // retries where the partition went.
                        first.get_or_insert(base_offset);
                        let end = (base_offset + h.offset_count() as i64) as u64;
                        let stream_id = self.stream_id;
                        let mut durable_end = engine.subscribe(stream_id)?;
                        pending.push(Box::pin(async move {
                            loop {
                                if *durable_end.borrow_and_update() >= end {
                                    return Ok(());
                                }
                                if durable_end.changed().await.is_err() {
                                    return Err(automq_storage::Error::StreamNotOpen { stream_id });
                                }
                            }
                        }));
                        continue;
                    }
                    Err((code, message)) => return Err(Error::kafka(code, message)),
                }
            }
            let base = engine.next_offset(self.stream_id)? as i64;
            let mut stored = batch::assign(bytes, base, 0);
            let mut header = *h;
            if config.log_append_time {
                stored = batch::set_log_append_time(&stored, now_ms);
                header.max_timestamp = now_ms;
            }
            pending.push(Box::pin(engine.start_append(
                self.stream_id,
                base as u64,
                base as u64 + h.offset_count(),
                stored.clone(),
            )?));
            state.record(&header, &stored, base);
            first.get_or_insert(base);
        }
        Ok(Enqueued {
            base_offset: first.unwrap_or(-1),
            log_append_time: if config.log_append_time { now_ms } else { -1 },
            pending,
        })
    }

    /// Appends record batches of a mirror topic at the offsets the source gave them, byte for
    /// byte (offsets, leader epochs, CRCs untouched; transactional and control batches
    /// included), and waits until they are durable. Batches wholly below the log end are
    /// skipped (a fetch repeated after a crash); a gap before a batch (source compaction,
    /// retention, aborted offsets) is covered by that batch's range, so offsets stay the
    /// source's. Returns the new log end and the highest producer id among the batches (-1:
    /// none).
    pub async fn append_mirrored(&self, engine: &StreamEngine, records: &Bytes) -> Result<(i64, i64)> {
        engine.wait_for_space().await?;
        let batches = batch::split(records).map_err(batch_error)?;
        let mut pending: Vec<PendingDurable> = Vec::new();
        let mut end;
        let max_producer_id = batches.iter().map(|(h, _)| h.producer_id).max().unwrap_or(-1);
        {
            let mut state = self.state.lock();
            end = engine.next_offset(self.stream_id)? as i64;
            for (h, bytes) in batches {
                let last = h.base_offset + h.offset_count() as i64 - 1;
                if last < end {
                    continue;
                }
                if h.base_offset < end {
                    return Err(Error::kafka(
                        ResponseError::CorruptMessage,
                        format!("source batch {}..={last} straddles the mirror's end {end}", h.base_offset),
                    ));
                }
                state.record(&h, &bytes, h.base_offset);
                pending.push(Box::pin(engine.start_append(self.stream_id, end as u64, last as u64 + 1, bytes)?));
                end = last + 1;
            }
        }
        for append in pending {
            append.await?;
        }
        Ok((end, max_producer_id))
    }

    fn log_start(&self, engine: &StreamEngine) -> i64 {
        engine.catalog().state().streams.get(&self.stream_id).map(|s| s.start_offset as i64).unwrap_or(0)
    }

    /// The high watermark (end of acknowledged data) and log start offset.
    pub async fn offsets(&self, engine: &StreamEngine) -> Result<(i64, i64)> {
        let r = engine.fetch(self.stream_id, self.log_start(engine) as u64, 0).await;
        match r {
            Ok(r) => Ok((r.end_offset as i64, r.start_offset as i64)),
            Err(automq_storage::Error::OffsetOutOfRange { start_offset, end_offset, .. }) => {
                Ok((end_offset as i64, start_offset as i64))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Reads whole batches from `offset` on, about `max_bytes` at most (at least one batch).
    pub async fn read(&self, engine: &StreamEngine, offset: i64, max_bytes: usize) -> Result<ReadResult> {
        read_stream(engine, self.stream_id, offset, max_bytes, None).await
    }

    /// A fetch's read: with `committed` (isolation level read_committed) only up to the last
    /// stable offset, with the aborted transactions among what is returned. Also returns the
    /// last stable offset.
    pub async fn read_isolated(
        &self,
        engine: &StreamEngine,
        offset: i64,
        max_bytes: usize,
        committed: bool,
    ) -> Result<(ReadResult, i64, Option<Vec<AbortedTxn>>)> {
        // The stable offset before the read: what it returns is never past the high watermark
        // it reports, so capping at an earlier LSO is safe.
        let lso_cap = { self.state.lock().txns.last_stable_offset(i64::MAX) };
        let limit = committed.then_some(lso_cap);
        let read = read_stream(engine, self.stream_id, offset, max_bytes, limit).await?;
        let lso = { self.state.lock().txns.last_stable_offset(read.high_watermark) };
        let aborted = committed.then(|| {
            let end = records_end(&read.records).unwrap_or(offset);
            self.state.lock().txns.aborted_between(offset, end)
        });
        Ok((read, lso, aborted))
    }

    /// Writes a transaction marker (WriteTxnMarkers, from a transaction coordinator) and waits
    /// until it is durable; returns its offset. A marker of an older producer epoch than this
    /// partition has seen is refused (a fenced coordinator's, or a zombie's).
    pub async fn write_marker(&self, engine: &StreamEngine, marker: &batch::Marker, now_ms: i64) -> Result<i64> {
        engine.wait_for_space().await?;
        let bytes = batch::encode_marker(marker, now_ms)
            .map_err(|e| Error::kafka(ResponseError::UnknownServerError, format!("cannot encode a marker: {e}")))?;
        let (base, pending) = {
            let mut state = self.state.lock();
            if let Some(epoch) = state.producers.epoch(marker.producer_id) {
                if marker.producer_epoch < epoch {
                    return Err(Error::kafka(
                        ResponseError::InvalidProducerEpoch,
                        format!(
                            "marker of producer {} epoch {} is older than epoch {epoch}",
                            marker.producer_id, marker.producer_epoch
                        ),
                    ));
                }
            }
            let base = engine.next_offset(self.stream_id)? as i64;
            let stored = batch::assign(&bytes, base, 0);
            let header = batch::parse(&stored).map_err(batch_error)?;
            let pending = engine.start_append(self.stream_id, base as u64, base as u64 + 1, stored.clone())?;
            state.record(&header, &stored, base);
            (base, pending)
        };
        pending.await?;
        Ok(base)
    }

    /// Calls `f` with every batch of the log, in order, from its start to the high watermark:
    /// how the coordinators of the internal topics rebuild their state.
    pub async fn replay(&self, engine: &StreamEngine, mut f: impl FnMut(&BatchHeader, Bytes)) -> Result<()> {
        let (high_watermark, log_start) = self.offsets(engine).await?;
        let mut next = log_start;
        while next < high_watermark {
            let read = self.read(engine, next, 1 << 20).await?;
            if read.records.is_empty() {
                break;
            }
            let batches = batch::split(&read.records).map_err(|e| {
                Error::kafka(ResponseError::CorruptMessage, format!("{}-{} at {next}: {e}", self.topic, self.index))
            })?;
            for (header, bytes) in batches {
                next = header.base_offset + header.offset_count() as i64;
                f(&header, bytes);
            }
        }
        Ok(())
    }

    /// The last stable offset given the high watermark.
    pub fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        self.state.lock().txns.last_stable_offset(high_watermark)
    }

    /// Transactions open in this partition: (producer id, first offset).
    pub fn open_transactions(&self) -> Vec<(i64, i64)> {
        self.state.lock().txns.open().collect()
    }

    /// The earliest offset whose record timestamp is at least `timestamp`, with that record's
    /// timestamp; `None` when every record is older.
    pub async fn offset_for_timestamp(&self, engine: &StreamEngine, timestamp: i64) -> Result<Option<(i64, i64)>> {
        let start = self.log_start(engine);
        let candidate = {
            let state = self.state.lock();
            let i = state.index.partition_point(|e| e.running_max_timestamp < timestamp);
            state.index.get(i).map(|e| e.base_offset.max(start))
        };
        let Some(base) = candidate else { return Ok(None) };
        let read = self.read(engine, base, 1).await?;
        let mut buf = read.records.clone();
        let sets = RecordBatchDecoder::decode_all(&mut buf)
            .map_err(|e| Error::kafka(ResponseError::CorruptMessage, format!("cannot decode batch at {base}: {e}")))?;
        for record in sets.iter().flat_map(|s| &s.records) {
            if record.offset >= start && record.timestamp >= timestamp {
                return Ok(Some((record.offset, record.timestamp)));
            }
        }
        Ok(None)
    }

    /// The offset and timestamp of the record with the largest timestamp (ListOffsets -3).
    pub async fn max_timestamp(&self, engine: &StreamEngine) -> Result<Option<(i64, i64)>> {
        let found = {
            let state = self.state.lock();
            state.index.iter().max_by_key(|e| e.max_timestamp).map(|e| (e.base_offset, e.max_timestamp))
        };
        let Some((base, max_ts)) = found else { return Ok(None) };
        let read = self.read(engine, base, 1).await?;
        let mut buf = read.records.clone();
        let sets = RecordBatchDecoder::decode_all(&mut buf)
            .map_err(|e| Error::kafka(ResponseError::CorruptMessage, format!("cannot decode batch at {base}: {e}")))?;
        let exact =
            sets.iter().flat_map(|s| &s.records).find(|r| r.timestamp == max_ts).map(|r| (r.offset, r.timestamp));
        Ok(exact.or(Some((base, max_ts))))
    }

    /// Applies time and size retention: returns the new log start offset if it moved.
    pub async fn apply_retention(
        &self,
        engine: &StreamEngine,
        config: &TopicConfig,
        now_ms: i64,
    ) -> Result<Option<i64>> {
        if !config.cleanup_policy.delete {
            return Ok(None);
        }
        let (high_watermark, start) = self.offsets(engine).await?;
        let target = {
            let state = self.state.lock();
            let mut keep = 0usize;
            if config.retention_ms >= 0 {
                let cutoff = now_ms.saturating_sub(config.retention_ms);
                // Batches wholly older than the cutoff go, up to the first one that is not.
                keep = state.index.iter().position(|e| e.max_timestamp >= cutoff).unwrap_or(state.index.len());
            }
            if config.retention_bytes >= 0 {
                let mut bytes = state.bytes;
                let mut i = 0;
                while i < state.index.len() && bytes > config.retention_bytes as u64 {
                    bytes -= state.index[i].size as u64;
                    i += 1;
                }
                keep = keep.max(i);
            }
            state.index.get(keep).map(|e| e.base_offset).unwrap_or(high_watermark)
        };
        if target <= start {
            return Ok(None);
        }
        engine.trim(self.stream_id, target as u64).await?;
        self.state.lock().trim(target);
        tracing::info!(topic = %self.topic, partition = self.index, log_start_offset = target, "retention deleted old records");
        Ok(Some(target))
    }

    /// The delete horizon of the tombstone at `offset`: set to `if_new` the first time a
    /// compaction pass keeps it.
    pub fn tombstone_horizon(&self, offset: i64, if_new: i64) -> i64 {
        *self.state.lock().tombstone_horizons.entry(offset).or_insert(if_new)
    }

    /// Where the last compaction pass ended.
    pub fn cleaned_upto(&self) -> i64 {
        self.state.lock().cleaned_upto
    }

    /// The base offset of the first batch holding a record newer than `timestamp`.
    pub fn first_offset_newer_than(&self, timestamp: i64) -> Option<i64> {
        let state = self.state.lock();
        state.index.iter().find(|e| e.max_timestamp > timestamp).map(|e| e.base_offset)
    }

    /// Replaces the index entries below `end` after a compaction pass rewrote `start..end`.
    pub fn reindex_compacted(&self, start: i64, end: i64, batches: &[automq_storage::stream::StoredBatch]) {
        let mut state = self.state.lock();
        let old: Vec<IndexEntry> = std::mem::take(&mut state.index);
        let rest: Vec<IndexEntry> = old.into_iter().filter(|e| e.base_offset >= end).collect();
        let rebuilt = batches
            .iter()
            .filter(|b| b.base_offset as i64 >= start)
            .filter_map(|b| batch::parse(&b.payload).ok().map(|h| (h, b.base_offset as i64)));
        for (h, base) in rebuilt {
            let running = state.index.last().map(|e| e.running_max_timestamp).unwrap_or(i64::MIN).max(h.max_timestamp);
            state.index.push(IndexEntry {
                base_offset: base,
                end_offset: base + h.offset_count() as i64,
                running_max_timestamp: running,
                max_timestamp: h.max_timestamp,
                size: h.size as u32,
            });
        }
        for mut e in rest {
            e.running_max_timestamp =
                state.index.last().map(|l| l.running_max_timestamp).unwrap_or(i64::MIN).max(e.max_timestamp);
            state.index.push(e);
        }
        state.bytes = state.index.iter().map(|e| e.size as u64).sum();
        state.cleaned_upto = end;
        // Forget horizons of tombstones this pass dropped.
        let kept: std::collections::HashSet<i64> = batches
            .iter()
            .filter_map(|b| {
                let mut buf = b.payload.clone();
                RecordBatchDecoder::decode_all(&mut buf).ok()
            })
            .flatten()
            .flat_map(|set| set.records.into_iter().filter(|r| r.value.is_none()).map(|r| r.offset))
            .collect();
        state.tombstone_horizons.retain(|offset, _| *offset >= end || kept.contains(offset));
    }

    /// Moves the log start forward (DeleteRecords, or retention).
    pub async fn delete_records_before(&self, engine: &StreamEngine, offset: i64) -> Result<i64> {
        let (high_watermark, start) = self.offsets(engine).await?;
        if offset < 0 || offset > high_watermark {
            return Err(Error::kafka(
                ResponseError::OffsetOutOfRange,
                format!("offset {offset} is outside [{start}, {high_watermark}]"),
            ));
        }
        if offset > start {
            engine.trim(self.stream_id, offset as u64).await?;
            self.state.lock().trim(offset);
        }
        Ok(offset.max(start))
    }
}

/// The offset after the last record batch in `records` (None when empty or unreadable).
pub(crate) fn records_end(records: &Bytes) -> Option<i64> {
    batch::split(records).ok()?.last().map(|(h, _)| h.base_offset + h.offset_count() as i64)
}

/// Reads whole batches of a partition's stream from `offset` on, about `max_bytes` at most (at
/// least one batch). On a broker that does not lead the partition this is its committed data,
/// read from the bucket (the high watermark is then the committed end).
///
/// With `limit`, only batches ending at or before it (the last stable offset of a
/// read_committed fetch): nothing, not an error, when `offset` is at or past it.
pub async fn read_stream(
    engine: &StreamEngine,
    stream_id: u64,
    offset: i64,
    max_bytes: usize,
    limit: Option<i64>,
) -> Result<ReadResult> {
    if offset < 0 {
        return Err(Error::kafka(ResponseError::OffsetOutOfRange, format!("negative offset {offset}")));
    }
    if limit.is_some_and(|l| offset >= l) {
        let mut r = Box::pin(read_stream(engine, stream_id, offset, 0, None)).await?;
        r.records = Bytes::new();
        return Ok(r);
    }
    let r = engine.fetch(stream_id, offset as u64, max_bytes).await?;
    let kept: Vec<&automq_storage::stream::StoredBatch> =
        r.batches.iter().filter(|b| limit.is_none_or(|l| b.end_offset as i64 <= l)).collect();
    let records = match kept.len() {
        0 => Bytes::new(),
        1 => kept[0].payload.clone(),
        _ => {
            let mut out = BytesMut::with_capacity(kept.iter().map(|b| b.payload.len()).sum());
            for b in &kept {
                out.extend_from_slice(&b.payload);
            }
            out.freeze()
        }
    };
    Ok(ReadResult { records, high_watermark: r.end_offset as i64, log_start_offset: r.start_offset as i64 })
}
