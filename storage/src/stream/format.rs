//! The data object format, shared by stream-set objects (many streams) and stream objects
//! (one stream).
//!
//! ```text
//! object = block* index footer
//! block  = batch*                          one stream's batches, in offset order
//! batch  = base_offset:u64 end_offset:u64 len:u32 payload[len]
//! index  = "AQIX" count:u32 entry[count] crc:u32          (crc = CRC-32C of what precedes it)
//! entry  = stream_id:u64 start_offset:u64 end_offset:u64 position:u64 size:u32 batches:u32 crc:u32
//! footer = index_position:u64 index_size:u32 "AQOB"
//! ```
//! All integers little endian. `entry.crc` is the CRC-32C of the block's bytes, checked on
//! every read. The index is the object's offset index: blocks are ~`block_bytes` (cut at batch
//! boundaries), so a reader fetches only the blocks holding the offsets it wants.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::metadata::ObjectRange;
use crate::{Error, Result};

const INDEX_MAGIC: &[u8; 4] = b"AQIX";
const FOOTER_MAGIC: &[u8; 4] = b"AQOB";
pub(crate) const FOOTER_LEN: usize = 8 + 4 + 4;
const ENTRY_LEN: usize = 8 * 4 + 4 * 3;
const BATCH_HEADER_LEN: usize = 8 + 8 + 4;

/// One stored record batch of a stream: offsets `base_offset..end_offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBatch {
    pub base_offset: u64,
    pub end_offset: u64,
    pub payload: Bytes,
}

impl StoredBatch {
    pub(crate) fn encoded_len(&self) -> usize {
        BATCH_HEADER_LEN + self.payload.len()
    }
}

/// An index entry: where one block of one stream lives in the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockEntry {
    pub stream_id: u64,
    pub start_offset: u64,
    pub end_offset: u64,
    pub position: u64,
    pub size: u32,
    pub batches: u32,
    pub crc: u32,
}

/// A decoded object index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectIndex {
    pub blocks: Vec<BlockEntry>,
}

/// Builds an object from runs of batches. Runs of one stream must be added in offset order.
#[derive(Debug)]
pub struct ObjectBuilder {
    block_bytes: usize,
    data: BytesMut,
    blocks: Vec<BlockEntry>,
    ranges: Vec<ObjectRange>,
    open: Option<BlockEntry>,
    open_at: usize,
}

impl ObjectBuilder {
    pub fn new(block_bytes: usize) -> Self {
        ObjectBuilder {
            block_bytes: block_bytes.max(1),
            data: BytesMut::new(),
            blocks: Vec::new(),
            ranges: Vec::new(),
            open: None,
            open_at: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Bytes of batch data so far.
    pub fn data_len(&self) -> usize {
        self.data.len()
    }

    /// Adds a run of `stream_id` covering offsets `range_start..` the last batch's end.
    /// `range_start` may lie below the first batch's base (offsets with no batch, e.g. a gap
    /// in a mirrored or compacted log).
    pub fn add_run(&mut self, stream_id: u64, range_start: u64, batches: &[StoredBatch]) {
        let Some(last) = batches.last() else { return };
        self.close_block();
        for batch in batches {
            if self.open.is_some() && self.data.len() - self.open_at >= self.block_bytes {
                self.close_block();
            }
            let entry = self.open.get_or_insert(BlockEntry {
                stream_id,
                start_offset: batch.base_offset,
                end_offset: batch.end_offset,
                position: self.data.len() as u64,
                size: 0,
                batches: 0,
                crc: 0,
            });
            entry.end_offset = batch.end_offset;
            entry.batches += 1;
            if entry.batches == 1 {
                self.open_at = self.data.len();
            }
            self.data.put_u64_le(batch.base_offset);
            self.data.put_u64_le(batch.end_offset);
            self.data.put_u32_le(batch.payload.len() as u32);
            self.data.put_slice(&batch.payload);
        }
        self.close_block();
        match self.ranges.last_mut() {
            Some(prev) if prev.stream_id == stream_id && prev.end_offset == range_start => {
                prev.end_offset = last.end_offset
            }
            _ => self.ranges.push(ObjectRange { stream_id, start_offset: range_start, end_offset: last.end_offset }),
        }
    }

    fn close_block(&mut self) {
        if let Some(mut entry) = self.open.take() {
            let bytes = &self.data[self.open_at..];
            entry.size = bytes.len() as u32;
            entry.crc = crc32c::crc32c(bytes);
            self.blocks.push(entry);
        }
    }

    /// Finishes the object: its bytes, where its index starts, and the stream ranges it holds.
    pub fn finish(mut self) -> (Bytes, u64, Vec<ObjectRange>) {
        self.close_block();
        let index_pos = self.data.len() as u64;
        let index_start = self.data.len();
        self.data.put_slice(INDEX_MAGIC);
        self.data.put_u32_le(self.blocks.len() as u32);
        for b in &self.blocks {
            for v in [b.stream_id, b.start_offset, b.end_offset, b.position] {
                self.data.put_u64_le(v);
            }
            self.data.put_u32_le(b.size);
            self.data.put_u32_le(b.batches);
            self.data.put_u32_le(b.crc);
        }
        let crc = crc32c::crc32c(&self.data[index_start..]);
        self.data.put_u32_le(crc);
        let index_len = (self.data.len() - index_start) as u32;
        self.data.put_u64_le(index_pos);
        self.data.put_u32_le(index_len);
        self.data.put_slice(FOOTER_MAGIC);
        (self.data.freeze(), index_pos, self.ranges)
    }
}

/// Decodes the index from the object's tail: the bytes from `index_pos` to the end.
pub fn decode_index(key: &str, tail: &Bytes) -> Result<ObjectIndex> {
    let corrupt = |reason: String| Error::corrupt(key, reason);
    if tail.len() < 4 + 4 + 4 + FOOTER_LEN {
        return Err(corrupt(format!("index tail of {} bytes is too short", tail.len())));
    }
    let footer = &tail[tail.len() - FOOTER_LEN..];
    if &footer[12..] != FOOTER_MAGIC {
        return Err(corrupt("bad footer magic".into()));
    }
    let index = &tail[..tail.len() - FOOTER_LEN];
    let stored = (&index[index.len() - 4..]).get_u32_le();
    if crc32c::crc32c(&index[..index.len() - 4]) != stored {
        return Err(corrupt("index checksum mismatch".into()));
    }
    let mut b = &index[..index.len() - 4];
    if &b[..4] != INDEX_MAGIC {
        return Err(corrupt("bad index magic".into()));
    }
    b.advance(4);
    let count = b.get_u32_le() as usize;
    if b.len() != count * ENTRY_LEN {
        return Err(corrupt(format!("index holds {} bytes for {count} entries", b.len())));
    }
    let blocks = (0..count)
        .map(|_| BlockEntry {
            stream_id: b.get_u64_le(),
            start_offset: b.get_u64_le(),
            end_offset: b.get_u64_le(),
            position: b.get_u64_le(),
            size: b.get_u32_le(),
            batches: b.get_u32_le(),
            crc: b.get_u32_le(),
        })
        .collect();
    Ok(ObjectIndex { blocks })
}

/// Checks a block's CRC and splits it into batches.
pub fn decode_block(key: &str, entry: &BlockEntry, data: &Bytes) -> Result<Vec<StoredBatch>> {
    let corrupt = |reason: String| Error::corrupt(format!("{key} block at {}", entry.position), reason);
    if data.len() != entry.size as usize {
        return Err(corrupt(format!("{} bytes where the index says {}", data.len(), entry.size)));
    }
    if crc32c::crc32c(data) != entry.crc {
        return Err(corrupt("block checksum mismatch".into()));
    }
    let mut out = Vec::with_capacity(entry.batches as usize);
    let mut rest = data.clone();
    while !rest.is_empty() {
        if rest.len() < BATCH_HEADER_LEN {
            return Err(corrupt("truncated batch header".into()));
        }
        let mut h = &rest[..BATCH_HEADER_LEN];
        let (base_offset, end_offset, len) = (h.get_u64_le(), h.get_u64_le(), h.get_u32_le() as usize);
        if rest.len() < BATCH_HEADER_LEN + len || end_offset < base_offset {
            return Err(corrupt(format!("bad batch at offset {base_offset}")));
        }
        out.push(StoredBatch {
            base_offset,
            end_offset,
            payload: rest.slice(BATCH_HEADER_LEN..BATCH_HEADER_LEN + len),
        });
        rest.advance(BATCH_HEADER_LEN + len);
    }
    if out.len() != entry.batches as usize {
        return Err(corrupt(format!("{} batches where the index says {}", out.len(), entry.batches)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(base: u64, n: u64, fill: u8, len: usize) -> StoredBatch {
        StoredBatch { base_offset: base, end_offset: base + n, payload: Bytes::from(vec![fill; len]) }
    }

    #[test]
    fn objects_roundtrip_with_blocks_and_ranges() {
        let mut b = ObjectBuilder::new(100);
        let s1: Vec<_> = (0..5).map(|i| batch(i * 10, 10, i as u8, 60)).collect();
        let s2 = vec![batch(7, 3, 9, 10)];
        b.add_run(1, 0, &s1);
        b.add_run(2, 5, &s2);
        let (obj, index_pos, ranges) = b.finish();
        assert_eq!(
            ranges,
            vec![
                ObjectRange { stream_id: 1, start_offset: 0, end_offset: 50 },
                ObjectRange { stream_id: 2, start_offset: 5, end_offset: 10 },
            ]
        );
        let index = decode_index("k", &obj.slice(index_pos as usize..)).unwrap();
        assert!(index.blocks.len() >= 3, "100-byte blocks split stream 1: {:?}", index.blocks);
        let mut back = Vec::new();
        for e in index.blocks.iter().filter(|e| e.stream_id == 1) {
            back.extend(
                decode_block("k", e, &obj.slice(e.position as usize..(e.position + e.size as u64) as usize)).unwrap(),
            );
        }
        assert_eq!(back, s1);
    }

    #[test]
    fn damage_is_detected() {
        let mut b = ObjectBuilder::new(1 << 20);
        b.add_run(1, 0, &[batch(0, 1, 1, 32)]);
        let (obj, index_pos, _) = b.finish();
        let index = decode_index("k", &obj.slice(index_pos as usize..)).unwrap();
        let e = index.blocks[0];
        let mut block = obj.slice(0..e.size as usize).to_vec();
        block[25] ^= 1;
        assert!(decode_block("k", &e, &Bytes::from(block)).is_err());
        let mut tail = obj.slice(index_pos as usize..).to_vec();
        tail[9] ^= 1;
        assert!(decode_index("k", &Bytes::from(tail)).is_err());
        assert!(decode_index("k", &obj.slice(index_pos as usize + 1..)).is_err());
    }
}
