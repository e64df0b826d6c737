//! Compaction: merges small stream-set objects into fewer, larger ones (splitting out streams
//! big enough for objects of their own) and drops trimmed or deleted data on the way.
//!
//! The new objects and the removal of the old ones are one catalog commit. If the commit is
//! refused (an input object was released meanwhile) the new objects are deleted; if the
//! process dies first they are orphans, which GC removes. Old objects are deleted by GC after
//! the grace period, so readers that started before the commit can finish.

use std::collections::BTreeMap;

use super::engine::Inner;
use super::format::{decode_block, decode_index, StoredBatch};
use super::upload::{build_objects, Run};
use crate::metadata::{CatalogRecord, ObjectKind, ObjectRange, StreamId};
use crate::{Error, Result};

/// What one compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionReport {
    pub objects_read: usize,
    pub objects_written: usize,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

impl Inner {
    #[tracing::instrument(skip(self))]
    pub(crate) async fn compact(&self) -> Result<CompactionReport> {
        let state = self.catalog.state();
        let mut candidates: Vec<_> = state
            .objects
            .values()
            .filter(|o| o.kind == ObjectKind::StreamSet && o.size < self.config.compaction_small_object_bytes)
            .cloned()
            .collect();
        candidates.sort_by(|a, b| (a.created_ms, &a.key).cmp(&(b.created_ms, &b.key)));
        let mut total = 0u64;
        candidates.retain(|o| {
            total += o.size;
            total <= self.config.compaction_max_bytes
        });
        if candidates.len() < self.config.compaction_min_objects.max(2) {
            return Ok(CompactionReport::default());
        }
        let mut report = CompactionReport { objects_read: candidates.len(), ..Default::default() };
        let mut pieces: BTreeMap<StreamId, Vec<(ObjectRange, Vec<StoredBatch>)>> = BTreeMap::new();
        for object in &candidates {
            let data = self.store.get(&object.key).await?;
            report.bytes_read += data.len() as u64;
            let tail = data.slice(object.index_pos as usize..);
            let index = decode_index(&object.key, &tail)?;
            for range in &object.ranges {
                // Deleted streams are dropped; trimmed batches too.
                let Some(stream) = state.streams.get(&range.stream_id) else { continue };
                let mut batches = Vec::new();
                for entry in index.blocks.iter().filter(|b| {
                    b.stream_id == range.stream_id
                        && b.start_offset < range.end_offset
                        && b.end_offset > range.start_offset
                }) {
                    let block = data.slice(entry.position as usize..(entry.position + entry.size as u64) as usize);
                    batches.extend(
                        decode_block(&object.key, entry, &block)?
                            .into_iter()
                            .filter(|b| b.end_offset > stream.start_offset),
                    );
                }
                pieces.entry(range.stream_id).or_default().push((*range, batches));
            }
        }
        let mut runs = Vec::new();
        for (stream_id, mut list) in pieces {
            list.sort_by_key(|(r, _)| r.start_offset);
            for (range, batches) in list {
                let Some(first) = batches.first() else { continue };
                // A partly trimmed run now starts at its first kept batch.
                let start = if first.base_offset > range.start_offset && first.base_offset <= batches[0].end_offset {
                    let trimmed = state.streams.get(&stream_id).is_some_and(|s| s.start_offset > range.start_offset);
                    if trimmed {
                        first.base_offset
                    } else {
                        range.start_offset
                    }
                } else {
                    range.start_offset
                };
                runs.push(Run { stream_id, start, batches });
            }
        }
        let objects = build_objects(self, &runs);
        report.objects_written = objects.len();
        report.bytes_written = objects.iter().map(|(o, _)| o.size).sum();
        let record = || CatalogRecord::CommitObjects {
            objects: objects.iter().map(|(o, _)| o.clone()).collect(),
            stream_ends: vec![],
            compacted: candidates.iter().map(|o| o.id).collect(),
            at_ms: self.clock.now_ms(),
        };
        if let Err(e) = self.put_and_commit(&objects, record).await {
            // Only a definite refusal makes the new objects garbage now; after an ambiguous
            // failure the commit may have landed, and GC decides later from the catalog.
            if matches!(e, Error::InvalidMetadata(_) | Error::StaleEpoch { .. } | Error::StreamNotFound(_)) {
                for (o, _) in &objects {
                    let _ = self.store.delete(&o.key).await;
                }
            }
            return Err(e);
        }
        self.metrics.compactions.inc();
        self.metrics.compacted_bytes.inc_by(report.bytes_read);
        tracing::info!(?report, "compaction committed");
        Ok(report)
    }
}
