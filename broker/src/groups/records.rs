//! Records of `__consumer_offsets`: committed offsets and group metadata, written as Kafka
//! record batches (magic v2, no compression, producer id -1) and read back on start.
//!
//! The layouts are Kafka's own (`OffsetCommitKey` v1, `OffsetCommitValue` v3,
//! `GroupMetadataKey` v2, `GroupMetadataValue` v3), so Kafka tools that decode this topic read
//! it too. Big-endian; `string` is an i16 length then UTF-8 (-1 = null for nullable strings);
//! `bytes` is an i32 length then the bytes; arrays are an i32 count then the elements.
//!
//! ```text
//! key   := version:i16 (0 or 1)  group:string topic:string partition:i32     -- an offset
//!        | version:i16 (2)       group:string                                -- a group
//! offset value := version:i16 (3) offset:i64 leader_epoch:i32 metadata:string
//!                 commit_timestamp:i64
//! group value  := version:i16 (3) protocol_type:string generation:i32
//!                 protocol:string? leader:string? state_timestamp:i64
//!                 members:[member_id:string instance_id:string? client_id:string
//!                          client_host:string rebalance_timeout:i32 session_timeout:i32
//!                          subscription:bytes assignment:bytes]
//! ```
//!
//! A null value (tombstone) deletes the key. The latest record of a key wins: the partition a
//! group's records go to is fixed by the group id (Java's `abs(hashCode) % partitions`), so
//! log order is the order of changes to one group. Unknown key or value versions are skipped
//! with a warning rather than failing the broker's start.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder};
use kafka_protocol::ResponseError;

use super::group::{CommittedOffset, Group};
use crate::batch;
use crate::broker::{now_ms, Broker, OFFSETS_TOPIC};
use crate::error::{Error, Result};
use crate::partition::{Enqueued, Partition};

const OFFSET_KEY_VERSION: i16 = 1;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_KEY_VERSION: i16 = 2;
const GROUP_VALUE_VERSION: i16 = 3;
/// Records per batch, to stay well under `max.message.bytes` for large commits.
const RECORDS_PER_BATCH: usize = 500;

/// A key of `__consumer_offsets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordKey {
    Offset { group: String, topic: String, partition: i32 },
    Group { group: String },
}

/// A group as persisted: enough to resume a Stable group after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupValue {
    pub(crate) protocol_type: String,
    pub(crate) generation: i32,
    pub(crate) protocol: Option<String>,
    pub(crate) leader: Option<String>,
    pub(crate) state_timestamp: i64,
    pub(crate) members: Vec<MemberValue>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberValue {
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) session_timeout_ms: i32,
    pub(crate) subscription: Bytes,
    pub(crate) assignment: Bytes,
}

fn put_str(buf: &mut BytesMut, s: &str) {
    buf.put_i16(s.len().min(i16::MAX as usize) as i16);
    buf.put_slice(&s.as_bytes()[..s.len().min(i16::MAX as usize)]);
}

fn put_opt_str(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(b.len() as i32);
    buf.put_slice(b);
}

/// A reader that reports short or malformed input instead of panicking.
struct Reader(Bytes);

impl Reader {
    fn need(&self, n: usize) -> std::result::Result<(), String> {
        if self.0.remaining() < n {
            return Err(format!("needs {n} more bytes, {} left", self.0.remaining()));
        }
        Ok(())
    }
    fn i16(&mut self) -> std::result::Result<i16, String> {
        self.need(2)?;
        Ok(self.0.get_i16())
    }
    fn i32(&mut self) -> std::result::Result<i32, String> {
        self.need(4)?;
        Ok(self.0.get_i32())
    }
    fn i64(&mut self) -> std::result::Result<i64, String> {
        self.need(8)?;
        Ok(self.0.get_i64())
    }
    fn opt_str(&mut self) -> std::result::Result<Option<String>, String> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        self.need(len as usize)?;
        let raw = self.0.split_to(len as usize);
        String::from_utf8(raw.to_vec()).map(Some).map_err(|_| "string is not UTF-8".to_string())
    }
    fn str(&mut self) -> std::result::Result<String, String> {
        self.opt_str()?.ok_or_else(|| "null where a string is required".to_string())
    }
    fn bytes(&mut self) -> std::result::Result<Bytes, String> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(Bytes::new());
        }
        self.need(len as usize)?;
        Ok(self.0.split_to(len as usize))
    }
}

impl RecordKey {
    pub(crate) fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        match self {
            RecordKey::Offset { group, topic, partition } => {
                buf.put_i16(OFFSET_KEY_VERSION);
                put_str(&mut buf, group);
                put_str(&mut buf, topic);
                buf.put_i32(*partition);
            }
            RecordKey::Group { group } => {
                buf.put_i16(GROUP_KEY_VERSION);
                put_str(&mut buf, group);
            }
        }
        buf.freeze()
    }

    pub(crate) fn decode(bytes: Bytes) -> std::result::Result<Self, String> {
        let mut r = Reader(bytes);
        match r.i16()? {
            0 | 1 => Ok(RecordKey::Offset { group: r.str()?, topic: r.str()?, partition: r.i32()? }),
            2 => Ok(RecordKey::Group { group: r.str()? }),
            v => Err(format!("unknown key version {v}")),
        }
    }

    fn group(&self) -> &str {
        match self {
            RecordKey::Offset { group, .. } | RecordKey::Group { group } => group,
        }
    }
}

pub(crate) fn encode_offset(o: &CommittedOffset) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(OFFSET_VALUE_VERSION);
    buf.put_i64(o.offset);
    buf.put_i32(o.leader_epoch);
    put_str(&mut buf, &o.metadata);
    buf.put_i64(o.commit_timestamp);
    buf.freeze()
}

/// Decodes an offset value; `record_offset` is where the record sits in the log.
pub(crate) fn decode_offset(bytes: Bytes, record_offset: i64) -> std::result::Result<CommittedOffset, String> {
    let mut r = Reader(bytes);
    match r.i16()? {
        OFFSET_VALUE_VERSION => Ok(CommittedOffset {
            offset: r.i64()?,
            leader_epoch: r.i32()?,
            metadata: r.str()?,
            commit_timestamp: r.i64()?,
            record_offset,
        }),
        v => Err(format!("unknown offset value version {v}")),
    }
}

impl GroupValue {
    /// The persisted form of a group: its members with the selected protocol's metadata.
    pub(crate) fn of(group: &Group, assignments: Option<&HashMap<String, Bytes>>) -> Self {
        let protocol = group.protocol.clone().unwrap_or_default();
        GroupValue {
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            generation: group.generation,
            protocol: group.protocol.clone(),
            leader: group.leader.clone(),
            state_timestamp: group.state_changed_ms,
            members: group
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(&protocol),
                    assignment: match assignments {
                        Some(a) => a.get(&m.id).cloned().unwrap_or_default(),
                        None => m.assignment.clone(),
                    },
                })
                .collect(),
        }
    }

    pub(crate) fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(GROUP_VALUE_VERSION);
        put_str(&mut buf, &self.protocol_type);
        buf.put_i32(self.generation);
        put_opt_str(&mut buf, self.protocol.as_deref());
        put_opt_str(&mut buf, self.leader.as_deref());
        buf.put_i64(self.state_timestamp);
        buf.put_i32(self.members.len() as i32);
        for m in &self.members {
            put_str(&mut buf, &m.member_id);
            put_opt_str(&mut buf, m.instance_id.as_deref());
            put_str(&mut buf, &m.client_id);
            put_str(&mut buf, &m.client_host);
            buf.put_i32(m.rebalance_timeout_ms);
            buf.put_i32(m.session_timeout_ms);
            put_bytes(&mut buf, &m.subscription);
            put_bytes(&mut buf, &m.assignment);
        }
        buf.freeze()
    }

    pub(crate) fn decode(bytes: Bytes) -> std::result::Result<Self, String> {
        let mut r = Reader(bytes);
        let version = r.i16()?;
        if version != GROUP_VALUE_VERSION {
            return Err(format!("unknown group value version {version}"));
        }
        let protocol_type = r.str()?;
        let generation = r.i32()?;
        let protocol = r.opt_str()?;
        let leader = r.opt_str()?;
        let state_timestamp = r.i64()?;
        let count = r.i32()?;
        let mut members = Vec::with_capacity(count.clamp(0, 1024) as usize);
        for _ in 0..count.max(0) {
            members.push(MemberValue {
                member_id: r.str()?,
                instance_id: r.opt_str()?,
                client_id: r.str()?,
                client_host: r.str()?,
                rebalance_timeout_ms: r.i32()?,
                session_timeout_ms: r.i32()?,
                subscription: r.bytes()?,
                assignment: r.bytes()?,
            });
        }
        Ok(GroupValue { protocol_type, generation, protocol, leader, state_timestamp, members })
    }
}

/// Java's `String.hashCode`, so that groups land on the partitions Kafka would pick.
fn java_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// The `__consumer_offsets` partition holding a group's records.
pub(crate) fn partition_for(group: &str, partitions: usize) -> usize {
    (java_hash(group) & 0x7fff_ffff) as usize % partitions.max(1)
}

/// Records enqueued on `__consumer_offsets`, not yet durable.
#[derive(Debug)]
pub(crate) struct PendingWrite {
    partition: Arc<Partition>,
    enqueued: Enqueued,
}

impl PendingWrite {
    /// Waits until durable; returns the log offset of the first record (the others follow
    /// one by one).
    pub(crate) async fn durable(self, broker: &Broker) -> Result<i64> {
        Ok(self.enqueued.durable(&self.partition, &broker.engine).await?.base_offset)
    }
}

/// Enqueues records (key, value or tombstone) for one group, in this order, without waiting.
/// Callers that need log order to follow the group's state call it under the groups lock.
pub(crate) fn enqueue(broker: &Broker, group: &str, records: &[(RecordKey, Option<Bytes>)]) -> Result<PendingWrite> {
    enqueue_for(broker, group, records, None)
}

/// [`enqueue`], as part of the transaction of `producer` (id, epoch) when given: the records
/// count only once its commit marker follows them (TxnOffsetCommit).
pub(crate) fn enqueue_for(
    broker: &Broker,
    group: &str,
    records: &[(RecordKey, Option<Bytes>)],
    producer: Option<(i64, i16)>,
) -> Result<PendingWrite> {
    let topic = broker.topic(OFFSETS_TOPIC).ok_or_else(|| {
        Error::kafka(ResponseError::CoordinatorNotAvailable, format!("{OFFSETS_TOPIC} does not exist"))
    })?;
    let partition = topic.led(partition_for(group, topic.partition_count()) as i32).map_err(|_| {
        Error::kafka(ResponseError::NotCoordinator, format!("this broker does not coordinate group {group}"))
    })?;
    let now = now_ms();
    let mut buf = BytesMut::new();
    for chunk in records.chunks(RECORDS_PER_BATCH) {
        let plain: Vec<(Option<Bytes>, Option<Bytes>)> =
            chunk.iter().map(|(key, value)| (Some(key.encode()), value.clone())).collect();
        let batch = crate::batch::encode_for(&plain, now, Compression::None, producer).map_err(|e| {
            Error::kafka(ResponseError::UnknownServerError, format!("cannot encode group {group}'s records: {e}"))
        })?;
        buf.extend_from_slice(&batch);
    }
    let enqueued = partition.enqueue(&broker.engine, buf.freeze(), &topic.config, now)?;
    Ok(PendingWrite { partition, enqueued })
}

/// What `__consumer_offsets` holds for one group once replayed.
#[derive(Debug, Default)]
pub(crate) struct LoadedGroup {
    pub(crate) offsets: BTreeMap<(String, i32), CommittedOffset>,
    pub(crate) metadata: Option<GroupValue>,
    /// Offsets of transactions with no marker yet, by producer id.
    pub(crate) pending: HashMap<i64, BTreeMap<(String, i32), CommittedOffset>>,
}

/// Replays one partition of `__consumer_offsets` from its log start to its high watermark.
pub(crate) async fn load_partition(broker: &Broker, partition: &Partition) -> Result<HashMap<String, LoadedGroup>> {
    let mut groups: HashMap<String, LoadedGroup> = HashMap::new();
    partition
        .replay(&broker.engine, |header, bytes| {
            if header.is_control() {
                // A transaction marker: that producer's offsets count (commit) or go.
                if let Some(commit) = batch::marker_kind(&bytes) {
                    for group in groups.values_mut() {
                        if let Some(offsets) = group.pending.remove(&header.producer_id) {
                            if commit {
                                group.offsets.extend(offsets);
                            }
                        }
                    }
                }
                return;
            }
            let txn = header.is_transactional().then_some(header.producer_id);
            let mut buf = bytes;
            match RecordBatchDecoder::decode_all(&mut buf) {
                Ok(sets) => {
                    for record in sets.into_iter().flat_map(|s| s.records) {
                        apply(&mut groups, partition.index, record, txn);
                    }
                }
                Err(e) => {
                    tracing::warn!(partition = partition.index, offset = header.base_offset, error = %e, "undecodable batch in {OFFSETS_TOPIC}; skipping it")
                }
            }
        })
        .await?;
    Ok(groups)
}

fn apply(groups: &mut HashMap<String, LoadedGroup>, partition: i32, record: Record, txn: Option<i64>) {
    let Some(key) = record.key else { return };
    let key = match RecordKey::decode(key) {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(partition, offset = record.offset, error = %e, "unreadable key in {OFFSETS_TOPIC}; skipping it");
            return;
        }
    };
    let group = groups.entry(key.group().to_string()).or_default();
    let result = match (key, record.value) {
        (RecordKey::Offset { topic, partition, .. }, None) => {
            group.offsets.remove(&(topic, partition));
            Ok(())
        }
        (RecordKey::Offset { topic, partition, .. }, Some(v)) => decode_offset(v, record.offset).map(|o| {
            match txn {
                Some(producer) => group.pending.entry(producer).or_default().insert((topic, partition), o),
                None => group.offsets.insert((topic, partition), o),
            };
        }),
        (RecordKey::Group { .. }, None) => {
            group.metadata = None;
            Ok(())
        }
        (RecordKey::Group { .. }, Some(v)) => GroupValue::decode(v).map(|g| group.metadata = Some(g)),
    };
    if let Err(e) = result {
        tracing::warn!(partition, offset = record.offset, error = %e, "unreadable value in {OFFSETS_TOPIC}; skipping it");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip() {
        let k = RecordKey::Offset { group: "g".into(), topic: "t".into(), partition: 7 };
        assert_eq!(RecordKey::decode(k.encode()).unwrap(), k);
        let k = RecordKey::Group { group: "g".into() };
        assert_eq!(RecordKey::decode(k.encode()).unwrap(), k);
        let o = CommittedOffset {
            offset: 42,
            leader_epoch: 3,
            metadata: "m".into(),
            commit_timestamp: 99,
            record_offset: 5,
        };
        assert_eq!(decode_offset(encode_offset(&o), 5).unwrap(), o);
        let g = GroupValue {
            protocol_type: "consumer".into(),
            generation: 4,
            protocol: Some("range".into()),
            leader: None,
            state_timestamp: 1,
            members: vec![MemberValue {
                member_id: "m-1".into(),
                instance_id: Some("i".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 1000,
                session_timeout_ms: 500,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(GroupValue::decode(g.encode()).unwrap(), g);
        assert!(GroupValue::decode(g.encode().slice(..20)).is_err(), "truncated values are refused, not panicked on");
    }

    #[test]
    fn groups_hash_like_java() {
        // "hello".hashCode() == 99162322 in Java; "polygenelubricants".hashCode() == i32::MIN.
        assert_eq!(java_hash("hello"), 99_162_322);
        assert_eq!(java_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert_eq!(partition_for("hello", 50), 99_162_322 % 50);
    }
}
