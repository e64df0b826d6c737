//! Rewriting a committed range of one stream (log compaction done by the layer above): the
//! new batches go into a stream object that replaces the stream's references to the old data
//! in one catalog commit. Offsets are the caller's; the range may end up with gaps. Objects
//! shared with other streams stay for them; objects left unreferenced go to GC.

use super::engine::StreamEngine;
use super::format::StoredBatch;
use super::upload::{build_objects, Run};
use crate::metadata::{CatalogRecord, StreamId};
use crate::{Error, Result};

impl StreamEngine {
    /// The largest end of a committed range of `stream_id` at or below `at_most`: where a
    /// rewrite starting at the stream's start may end.
    pub fn rewrite_boundary(&self, stream_id: StreamId, at_most: u64) -> Result<Option<u64>> {
        let state = self.inner.catalog.state();
        let s = state.streams.get(&stream_id).ok_or(Error::StreamNotFound(stream_id))?;
        Ok(s.ranges.iter().map(|r| r.end_offset).filter(|e| *e <= at_most && *e > s.start_offset).max())
    }

    /// Replaces the committed batches of `stream_id` in `start..end` with `batches` (in offset
    /// order, within the range; possibly none). `start..end` must begin and end on committed
    /// range boundaries (see [`Self::rewrite_boundary`]).
    #[tracing::instrument(skip(self, batches), fields(batches = batches.len()))]
    pub async fn rewrite_range(
        &self,
        stream_id: StreamId,
        start: u64,
        end: u64,
        batches: Vec<StoredBatch>,
    ) -> Result<()> {
        let mut at = start;
        for b in &batches {
            if b.base_offset < at || b.end_offset > end || b.end_offset <= b.base_offset {
                return Err(Error::InvalidAppend {
                    stream_id,
                    reason: format!(
                        "rewritten batch {}..{} is out of order or outside {start}..{end}",
                        b.base_offset, b.end_offset
                    ),
                });
            }
            at = b.end_offset;
        }
        let inner = &self.inner;
        let runs = if batches.is_empty() { Vec::new() } else { vec![Run { stream_id, start, batches }] };
        let mut objects = build_objects(inner, &runs);
        for (o, _) in &mut objects {
            o.kind = crate::metadata::ObjectKind::Stream;
        }
        let record = || CatalogRecord::RewriteStreamRange {
            stream_id,
            start,
            end,
            objects: objects.iter().map(|(o, _)| o.clone()).collect(),
            at_ms: inner.clock.now_ms(),
        };
        inner.put_and_commit(&objects, record).await?;
        // Cached copies of the old batches would keep serving superseded records.
        let mut cache = inner.cache.lock();
        let cache = &mut *cache;
        if let Some(s) = cache.streams.get_mut(&stream_id) {
            let stale: Vec<u64> = s
                .batches
                .range(..end)
                .filter(|(_, b)| b.end_offset <= end && b.end_offset <= s.uploaded_end)
                .map(|(k, _)| *k)
                .collect();
            for base in stale {
                if let Some(b) = s.batches.remove(&base) {
                    cache.bytes -= b.payload.len();
                }
            }
            s.cache_start = s.cache_start.max(end);
        }
        Ok(())
    }
}
