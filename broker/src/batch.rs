//! Kafka record batches (magic v2): header parsing, validation and the in-place changes a
//! broker makes (base offset, partition leader epoch), none of which touch the CRC.
//!
//! ```text
//! offset size field
//!  0      8   baseOffset
//!  8      4   batchLength        (bytes after this field)
//! 12      4   partitionLeaderEpoch
//! 16      1   magic              (2)
//! 17      4   crc                (CRC-32C of bytes 21..end)
//! 21      2   attributes         (bits 0-2 compression, 3 timestamp type, 4 transactional, 5 control)
//! 23      4   lastOffsetDelta
//! 27      8   baseTimestamp
//! 35      8   maxTimestamp
//! 43      8   producerId
//! 51      2   producerEpoch
//! 53      4   baseSequence
//! 57      4   recordsCount
//! 61      ... records
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Size of the fixed batch header.
pub const HEADER_LEN: usize = 61;
const LENGTH_OFFSET: usize = 8;
const LEADER_EPOCH_OFFSET: usize = 12;
const MAGIC_OFFSET: usize = 16;
const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;

/// Why a batch was refused (maps to Kafka error codes at the edge).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Framing is broken: CORRUPT_MESSAGE.
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
    /// Magic 0 or 1: UNSUPPORTED_FOR_MESSAGE_FORMAT.
    #[error("record batch magic {0} is not supported (only v2)")]
    UnsupportedMagic(i8),
    /// INVALID_RECORD.
    #[error("invalid record batch: {0}")]
    Invalid(String),
}

/// The header fields of one batch, and where it sits in its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub partition_leader_epoch: i32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
    /// Total size of the batch in bytes, header included.
    pub size: usize,
}

impl BatchHeader {
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }

    /// LogAppendTime (bit 3) rather than CreateTime.
    pub fn log_append_time(&self) -> bool {
        self.attributes & 0x08 != 0
    }

    pub fn compression(&self) -> i16 {
        self.attributes & 0x07
    }

    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            -1
        } else {
            // Sequences wrap at i32::MAX, as in Kafka.
            ((self.base_sequence as i64 + self.last_offset_delta as i64) % (i32::MAX as i64 + 1)) as i32
        }
    }

    /// Offsets the batch spans: `last_offset_delta + 1`.
    pub fn offset_count(&self) -> u64 {
        self.last_offset_delta as u64 + 1
    }
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Parses and validates the header of the batch at the start of `buf` (which may hold more
/// batches after it): length, magic, CRC, counts.
pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    if buf.len() < HEADER_LEN {
        return Err(BatchError::Corrupt(format!("{} bytes is shorter than a batch header", buf.len())));
    }
    let magic = buf[MAGIC_OFFSET] as i8;
    if magic != 2 {
        return Err(BatchError::UnsupportedMagic(magic));
    }
    let batch_length = i32_at(buf, LENGTH_OFFSET);
    let size = 12i64 + batch_length as i64;
    if (batch_length as usize) < HEADER_LEN - 12 || size as usize > buf.len() {
        return Err(BatchError::Corrupt(format!(
            "batch length {batch_length} does not fit the {} bytes given",
            buf.len()
        )));
    }
    let size = size as usize;
    let stored = u32::from_be_bytes([buf[CRC_OFFSET], buf[CRC_OFFSET + 1], buf[CRC_OFFSET + 2], buf[CRC_OFFSET + 3]]);
    let computed = crc32c::crc32c(&buf[ATTRIBUTES_OFFSET..size]);
    if stored != computed {
        return Err(BatchError::Corrupt(format!("CRC mismatch (stored {stored:#010x}, computed {computed:#010x})")));
    }
    let header = BatchHeader {
        base_offset: i64_at(buf, 0),
        partition_leader_epoch: i32_at(buf, LEADER_EPOCH_OFFSET),
        attributes: i16_at(buf, ATTRIBUTES_OFFSET),
        last_offset_delta: i32_at(buf, 23),
        base_timestamp: i64_at(buf, 27),
        max_timestamp: i64_at(buf, 35),
        producer_id: i64_at(buf, 43),
        producer_epoch: i16_at(buf, 51),
        base_sequence: i32_at(buf, 53),
        records_count: i32_at(buf, 57),
        size,
    };
    if header.records_count < 0 || header.last_offset_delta < 0 {
        return Err(BatchError::Invalid(format!(
            "negative record count {} or last offset delta {}",
            header.records_count, header.last_offset_delta
        )));
    }
    if header.records_count == 0 && !header.is_control() {
        return Err(BatchError::Invalid("a batch without records".into()));
    }
    if header.records_count > 0 && header.last_offset_delta < header.records_count - 1 {
        return Err(BatchError::Invalid(format!(
            "last offset delta {} is below record count {} - 1",
            header.last_offset_delta, header.records_count
        )));
    }
    Ok(header)
}

/// Splits a produce request's records into validated batches.
pub fn split(records: &Bytes) -> Result<Vec<(BatchHeader, Bytes)>, BatchError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < records.len() {
        let header = parse(&records[at..])?;
        out.push((header, records.slice(at..at + header.size)));
        at += header.size;
    }
    if out.is_empty() {
        return Err(BatchError::Invalid("no record batch in the request".into()));
    }
    Ok(out)
}

/// Sets the base offset and partition leader epoch of a batch (outside its CRC).
pub fn assign(batch: &Bytes, base_offset: i64, leader_epoch: i32) -> Bytes {
    let mut b = BytesMut::from(&batch[..]);
    b[..8].copy_from_slice(&base_offset.to_be_bytes());
    b[LEADER_EPOCH_OFFSET..LEADER_EPOCH_OFFSET + 4].copy_from_slice(&leader_epoch.to_be_bytes());
    b.freeze()
}

/// Rewrites a batch's timestamps to LogAppendTime `now` (attributes bit 3, max timestamp),
/// recomputing the CRC, as Kafka does for topics with `message.timestamp.type=LogAppendTime`.
pub fn set_log_append_time(batch: &Bytes, now: i64) -> Bytes {
    let mut b = BytesMut::from(&batch[..]);
    let size = (12 + i32_at(&b, LENGTH_OFFSET).max(0) as usize).min(b.len());
    let attributes = i16_at(&b, ATTRIBUTES_OFFSET) | 0x08;
    b[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
    b[35..43].copy_from_slice(&now.to_be_bytes());
    let crc = crc32c::crc32c(&b[ATTRIBUTES_OFFSET..size]);
    b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

/// Encodes records without a producer (offsets 0.., one timestamp) as one v2 batch: what the
/// broker writes itself (group records) and what tests produce.
pub fn encode_plain(
    records: &[(Option<Bytes>, Option<Bytes>)],
    timestamp: i64,
    compression: kafka_protocol::records::Compression,
) -> anyhow::Result<Bytes> {
    encode_for(records, timestamp, compression, None)
}

/// [`encode_plain`], or with `producer` (id, epoch) a transactional batch without sequence
/// numbers: what a group coordinator writes for TxnOffsetCommit.
pub fn encode_for(
    records: &[(Option<Bytes>, Option<Bytes>)],
    timestamp: i64,
    compression: kafka_protocol::records::Compression,
    producer: Option<(i64, i16)>,
) -> anyhow::Result<Bytes> {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let (producer_id, producer_epoch) = producer.unwrap_or((-1, -1));
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: producer.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder keeps records in one batch while offset - sequence is constant; this
            // makes the base sequence -1 (no producer).
            sequence: i as i32 - 1,
            timestamp,
            key: key.clone(),
            value: value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression })?;
    Ok(buf.freeze())
}

/// A transaction marker (control batch) ends a producer's transaction in one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub coordinator_epoch: i32,
}

/// Encodes a transaction marker as Kafka does: a control, transactional batch of one record
/// whose key is the control type (version 0; 0 abort, 1 commit) and whose value is the
/// end-transaction marker (version 0, coordinator epoch).
pub fn encode_marker(marker: &Marker, timestamp: i64) -> anyhow::Result<Bytes> {
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let mut key = BytesMut::with_capacity(4);
    key.put_i16(0);
    key.put_i16(i16::from(marker.commit));
    let mut value = BytesMut::with_capacity(6);
    value.put_i16(0);
    value.put_i32(marker.coordinator_epoch);
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: marker.producer_id,
        producer_epoch: marker.producer_epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp,
        key: Some(key.freeze()),
        value: Some(value.freeze()),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &[record],
        &RecordEncodeOptions { version: 2, compression: Compression::None },
    )?;
    Ok(buf.freeze())
}

/// The marker a control batch holds: `Some(commit)`; `None` for other control records (or an
/// unreadable one).
pub fn marker_kind(batch: &Bytes) -> Option<bool> {
    use kafka_protocol::records::RecordBatchDecoder;
    let mut buf = batch.clone();
    let sets = RecordBatchDecoder::decode_all(&mut buf).ok()?;
    let record = sets.first()?.records.first()?;
    let mut key = record.key.clone()?;
    if key.len() < 4 {
        return None;
    }
    let _version = key.get_i16();
    match key.get_i16() {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::Compression;

    #[test]
    fn markers_round_trip_as_control_batches() {
        for commit in [true, false] {
            let m = Marker { producer_id: 42, producer_epoch: 3, commit, coordinator_epoch: 7 };
            let b = encode_marker(&m, 1_700_000_000_000).unwrap();
            let h = parse(&b).unwrap();
            assert!(h.is_control() && h.is_transactional());
            assert_eq!((h.producer_id, h.producer_epoch, h.records_count), (42, 3, 1));
            assert_eq!(marker_kind(&b), Some(commit));
        }
        assert_eq!(marker_kind(&tests::encode(1, Compression::None)), None);
    }

    pub(crate) fn encode(n: usize, compression: Compression) -> Bytes {
        let records: Vec<_> =
            (0..n).map(|i| (Some(Bytes::from(format!("k{i}"))), Some(Bytes::from(vec![b'v'; 100])))).collect();
        encode_plain(&records, 1_700_000_000_000, compression).unwrap()
    }

    #[test]
    fn parses_what_the_client_library_encodes() {
        for c in [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            let b = encode(5, c);
            let h = parse(&b).unwrap();
            assert_eq!((h.records_count, h.last_offset_delta, h.size), (5, 4, b.len()), "{c:?}");
            assert_eq!(h.max_timestamp, 1_700_000_000_000);
        }
    }

    #[test]
    fn assigning_offsets_keeps_the_crc_valid() {
        let b = encode(3, Compression::None);
        let moved = assign(&b, 1234, 7);
        let h = parse(&moved).unwrap();
        assert_eq!((h.base_offset, h.partition_leader_epoch), (1234, 7));
        let lat = set_log_append_time(&moved, 99);
        let h = parse(&lat).unwrap();
        assert!(h.log_append_time());
        assert_eq!(h.max_timestamp, 99);
    }

    #[test]
    fn damage_is_refused() {
        let b = encode(2, Compression::None);
        let mut bad = b.to_vec();
        bad[70] ^= 1;
        assert!(matches!(parse(&bad), Err(BatchError::Corrupt(_))));
        assert!(matches!(parse(&b[..40]), Err(BatchError::Corrupt(_))));
        let mut v1 = b.to_vec();
        v1[MAGIC_OFFSET] = 1;
        assert_eq!(parse(&v1), Err(BatchError::UnsupportedMagic(1)));
        let two = Bytes::from([b.to_vec(), b.to_vec()].concat());
        assert_eq!(split(&two).unwrap().len(), 2);
        assert!(split(&Bytes::from([b.to_vec(), b[..10].to_vec()].concat())).is_err());
    }
}
