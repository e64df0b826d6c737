//! Log compaction (`cleanup.policy=compact`), with Kafka's semantics: for every key only the
//! record with the highest offset survives; a tombstone (null value) survives for
//! `delete.retention.ms` after the pass that first kept it (its delete horizon; horizons are
//! kept in memory, so a restart only makes tombstones live longer); records younger than
//! `min.compaction.lag.ms` are not touched; offsets never change (compaction leaves gaps).
//!
//! A pass reads the whole partition to learn each key's latest offset, then rewrites the
//! committed prefix of the log up to a storage range boundary: surviving records are
//! re-encoded batch by batch (same codec, producer ids, timestamps and headers; a batch that
//! loses nothing is kept byte for byte) and the storage engine swaps them in atomically.
//!
//! Transactions (Kafka's rules): cleaning stops at the last stable offset, so open
//! transactions are never touched; a transactional record counts as a key's latest only once
//! its commit marker is seen; records of aborted transactions are removed; markers are kept.
//! So `__consumer_offsets`, where TxnOffsetCommit writes transactional records, replays to the
//! same offsets after compaction.

use std::collections::HashMap;

use automq_storage::stream::{StoredBatch, StreamEngine};
use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions};
use kafka_protocol::ResponseError;

use crate::batch;
use crate::error::{Error, Result};
use crate::partition::Partition;
use crate::topics::TopicConfig;

/// What one compaction pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionStats {
    pub records_read: usize,
    pub records_kept: usize,
    pub cleaned_upto: i64,
}

fn decode_error(offset: u64, e: impl std::fmt::Display) -> Error {
    Error::kafka(ResponseError::CorruptMessage, format!("cannot decode the batch at offset {offset}: {e}"))
}

/// Decodes every record of one stored batch.
fn records_of(b: &StoredBatch) -> Result<(Compression, Vec<Record>)> {
    let mut buf = b.payload.clone();
    let sets = RecordBatchDecoder::decode_all(&mut buf).map_err(|e| decode_error(b.base_offset, e))?;
    let compression = sets.first().map(|s| s.compression).unwrap_or(Compression::None);
    Ok((compression, sets.into_iter().flat_map(|s| s.records).collect()))
}

/// Checks that every record of a produce batch for a compacted topic has a key, as Kafka does.
pub fn require_keys(batch_bytes: &Bytes, base_offset: u64) -> Result<()> {
    let b = StoredBatch { base_offset, end_offset: base_offset + 1, payload: batch_bytes.clone() };
    let (_, records) = records_of(&b)?;
    if records.iter().any(|r| r.key.is_none() && !r.control) {
        return Err(Error::kafka(
            ResponseError::InvalidRecord,
            "a compacted topic cannot accept a record without a key",
        ));
    }
    Ok(())
}

/// Compacts one partition of a compacted topic; `None` when there was nothing to clean.
pub async fn compact_partition(
    engine: &StreamEngine,
    partition: &Partition,
    config: &TopicConfig,
    now_ms: i64,
) -> Result<Option<CompactionStats>> {
    if !config.cleanup_policy.compact {
        return Ok(None);
    }
    let (high_watermark, start) = partition.offsets(engine).await?;
    let lag_limit = partition
        .first_offset_newer_than(now_ms.saturating_sub(config.min_compaction_lag_ms))
        .unwrap_or(high_watermark)
        .min(partition.last_stable_offset(high_watermark));
    let Some(end) = engine.rewrite_boundary(partition.stream_id, lag_limit.max(0) as u64)? else { return Ok(None) };
    if end as i64 <= partition.cleaned_upto() {
        return Ok(None); // nothing new became cleanable since the last pass
    }
    // Pass 1: each key's latest offset over the whole log, counting transactional records once
    // committed; and the aborted transactions' ranges.
    let mut latest: HashMap<Bytes, i64> = HashMap::new();
    let mut open: HashMap<i64, (i64, Vec<(Bytes, i64)>)> = HashMap::new();
    let mut aborted: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
    let mut offset = start;
    let mut records_read = 0usize;
    let newest = |latest: &mut HashMap<Bytes, i64>, key: Bytes, offset: i64| {
        let at = latest.entry(key).or_insert(offset);
        *at = (*at).max(offset);
    };
    while offset < high_watermark {
        let read = engine.fetch(partition.stream_id, offset as u64, 8 << 20).await?;
        if read.batches.is_empty() {
            break;
        }
        for b in &read.batches {
            offset = b.end_offset as i64;
            let header = batch::parse(&b.payload).map_err(|e| decode_error(b.base_offset, e))?;
            if header.is_control() {
                let Some(commit) = batch::marker_kind(&b.payload) else { continue };
                if let Some((first, records)) = open.remove(&header.producer_id) {
                    if commit {
                        for (key, at) in records {
                            newest(&mut latest, key, at);
                        }
                    } else {
                        aborted.entry(header.producer_id).or_default().push((first, b.base_offset as i64));
                    }
                }
                continue;
            }
            let (_, records) = records_of(b)?;
            if header.is_transactional() {
                let entry = open.entry(header.producer_id).or_insert((b.base_offset as i64, Vec::new()));
                entry.1.extend(records.into_iter().filter_map(|r| r.key.map(|k| (k, r.offset))));
                continue;
            }
            for r in records {
                if let Some(key) = r.key {
                    newest(&mut latest, key, r.offset);
                }
            }
        }
    }
    let was_aborted = |producer_id: i64, offset: i64| {
        aborted
            .get(&producer_id)
            .is_some_and(|ranges| ranges.iter().any(|(first, end)| *first <= offset && offset < *end))
    };
    // Pass 2: rewrite start..end keeping the survivors.
    let mut rewritten = Vec::new();
    let mut records_kept = 0usize;
    let mut offset = start;
    while offset < end as i64 {
        let read = engine.fetch(partition.stream_id, offset as u64, 8 << 20).await?;
        if read.batches.is_empty() {
            break;
        }
        for b in read.batches.iter().filter(|b| b.end_offset <= end) {
            offset = b.end_offset as i64;
            let (compression, records) = records_of(b)?;
            records_read += records.len();
            let total = records.len();
            let mut kept: Vec<Record> = records
                .into_iter()
                .filter(|r| {
                    if r.control {
                        return true; // transaction markers stay
                    }
                    if r.transactional && was_aborted(r.producer_id, r.offset) {
                        return false;
                    }
                    let Some(key) = &r.key else { return false };
                    if latest.get(key) != Some(&r.offset) {
                        return false;
                    }
                    r.value.is_some()
                        || now_ms < partition.tombstone_horizon(r.offset, now_ms + config.delete_retention_ms)
                })
                .collect();
            if kept.is_empty() {
                continue;
            }
            records_kept += kept.len();
            if kept.len() == total {
                rewritten.push(b.clone()); // untouched: the very same bytes
                continue;
            }
            // The encoder keeps records in one batch while offset - sequence is constant:
            // give records without a producer consecutive sequences ending at -1 as base.
            let first = kept[0].offset;
            for r in kept.iter_mut().filter(|r| r.producer_id < 0) {
                r.sequence = (r.offset - first) as i32 - 1;
            }
            let mut buf = BytesMut::new();
            RecordBatchEncoder::encode(&mut buf, &kept, &RecordEncodeOptions { version: 2, compression })
                .map_err(|e| decode_error(b.base_offset, e))?;
            let mut bytes = buf.freeze();
            // One stored batch per encoded batch (the encoder may split).
            while !bytes.is_empty() {
                let h = batch::parse(&bytes).map_err(|e| decode_error(b.base_offset, e))?;
                let one = bytes.split_to(h.size);
                rewritten.push(StoredBatch {
                    base_offset: h.base_offset as u64,
                    end_offset: (h.base_offset + h.last_offset_delta as i64 + 1) as u64,
                    payload: one,
                });
            }
        }
        if offset >= end as i64 {
            break;
        }
    }
    engine.rewrite_range(partition.stream_id, start as u64, end, rewritten.clone()).await?;
    partition.reindex_compacted(start, end as i64, &rewritten);
    tracing::info!(
        topic = %partition.topic,
        partition = partition.index,
        records_read,
        records_kept,
        cleaned_upto = end,
        "compacted"
    );
    Ok(Some(CompactionStats { records_read, records_kept, cleaned_upto: end as i64 }))
}
