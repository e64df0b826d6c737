//! Cold reads: object blocks through a block cache, with readahead.
//!
//! A miss on block `i` fetches, in one ranged GET, block `i` and the blocks after it that
//! belong to the same stream and lie next to it in the object, up to `readahead_bytes`; every
//! block is checked against its CRC before it is cached or served.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use super::format::{decode_block, decode_index, BlockEntry, ObjectIndex, StoredBatch};
use super::lru::Lru;
use super::metrics::StreamMetrics;
use crate::metadata::{CatalogState, DataObject, ObjectId, StreamId};
use crate::object_store::SharedStore;
use crate::{Error, Result};

#[derive(Debug)]
pub(crate) struct ObjectReader {
    store: SharedStore,
    blocks: Mutex<Lru<(ObjectId, u32), Bytes>>,
    indexes: Mutex<Lru<ObjectId, Arc<ObjectIndex>>>,
    readahead_bytes: usize,
    metrics: StreamMetrics,
}

impl ObjectReader {
    pub(crate) fn new(store: SharedStore, cache_bytes: usize, readahead_bytes: usize, metrics: StreamMetrics) -> Self {
        ObjectReader {
            store,
            blocks: Mutex::new(Lru::new(cache_bytes)),
            indexes: Mutex::new(Lru::new((cache_bytes / 16).max(1 << 20))),
            readahead_bytes,
            metrics,
        }
    }

    pub(crate) async fn index(&self, object: &DataObject) -> Result<Arc<ObjectIndex>> {
        if let Some(index) = self.indexes.lock().get(&object.id) {
            return Ok(index);
        }
        let tail = self.store.get_range(&object.key, object.index_pos..object.size).await?;
        if tail.len() as u64 != object.size - object.index_pos {
            return Err(Error::corrupt(
                &object.key,
                format!("object is shorter than its committed size {}", object.size),
            ));
        }
        let index = Arc::new(decode_index(&object.key, &tail)?);
        self.indexes.lock().insert(object.id, index.clone(), tail.len());
        Ok(index)
    }

    async fn block(&self, object: &DataObject, index: &ObjectIndex, i: usize) -> Result<Bytes> {
        if let Some(bytes) = self.blocks.lock().get(&(object.id, i as u32)) {
            self.metrics.block_cache_hits.inc();
            return Ok(bytes);
        }
        self.metrics.block_cache_misses.inc();
        let first = index.blocks[i];
        let mut last = i;
        let mut span = first.size as u64;
        while let Some(next) = index.blocks.get(last + 1) {
            let prev = index.blocks[last];
            let adjacent = next.stream_id == first.stream_id && next.position == prev.position + prev.size as u64;
            if !adjacent || span + next.size as u64 > self.readahead_bytes as u64 {
                break;
            }
            span += next.size as u64;
            last += 1;
        }
        let data = self.store.get_range(&object.key, first.position..first.position + span).await?;
        if data.len() as u64 != span {
            return Err(Error::corrupt(&object.key, format!("ranged read returned {} of {span} bytes", data.len())));
        }
        self.metrics.cold_read_bytes.inc_by(span);
        let mut wanted = None;
        let mut blocks = self.blocks.lock();
        for (k, entry) in index.blocks[i..=last].iter().enumerate() {
            let at = (entry.position - first.position) as usize;
            let bytes = data.slice(at..at + entry.size as usize);
            if crc32c::crc32c(&bytes) != entry.crc {
                return Err(Error::corrupt(&object.key, format!("block at {} fails its checksum", entry.position)));
            }
            if k == 0 {
                wanted = Some(bytes.clone());
            }
            blocks.insert((object.id, (i + k) as u32), bytes, entry.size as usize);
        }
        self.metrics.block_cache_bytes.set(blocks.bytes() as i64);
        wanted.ok_or_else(|| Error::corrupt(&object.key, "empty readahead"))
    }

    /// Reads committed batches of `stream_id` holding offsets in `from..until`, about
    /// `max_bytes` at most (always at least one batch if any exists). The flag tells whether
    /// everything below `until` was read (rather than the budget running out).
    pub(crate) async fn read(
        &self,
        state: &CatalogState,
        stream_id: StreamId,
        from: u64,
        until: u64,
        max_bytes: usize,
    ) -> Result<(Vec<StoredBatch>, bool)> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut at = from;
        for (range, object) in state.ranges_from(stream_id, from)? {
            if range.start_offset >= until || at >= until {
                break;
            }
            let index = self.index(&object).await?;
            let wanted: Vec<(usize, BlockEntry)> = index
                .blocks
                .iter()
                .copied()
                .enumerate()
                .filter(|(_, b)| b.stream_id == stream_id && b.end_offset > at && b.start_offset < until)
                .filter(|(_, b)| b.start_offset < range.end_offset && b.end_offset > range.start_offset)
                .collect();
            for (i, entry) in wanted {
                let data = self.block(&object, &index, i).await?;
                for batch in decode_block(&object.key, &entry, &data)? {
                    if batch.end_offset <= at || batch.base_offset >= until {
                        continue;
                    }
                    if !out.is_empty() && bytes + batch.payload.len() > max_bytes {
                        return Ok((out, false));
                    }
                    bytes += batch.payload.len();
                    at = batch.end_offset;
                    out.push(batch);
                }
            }
        }
        Ok((out, true))
    }
}
