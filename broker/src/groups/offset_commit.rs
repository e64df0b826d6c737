//! OffsetCommit: stores consumer positions. Members of a group must name their current
//! generation; standalone consumers (generation -1, no member id) may commit to an Empty group.
//! The answer goes out only once the records are durable in `__consumer_offsets`.

use std::sync::Arc;

use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{ApiKey, OffsetCommitRequest, OffsetCommitResponse};
use kafka_protocol::ResponseError;
use tokio::time::Instant;

use super::count_error;
use super::group::{CommittedOffset, Group, GroupState};
use super::records::{self, RecordKey};
use crate::broker::{now_ms, Broker};
use crate::groups::GroupCoordinator;

/// Kafka's `offset.metadata.max.bytes`.
const MAX_METADATA_BYTES: usize = 4096;

/// One partition's position to commit.
#[derive(Debug, Clone)]
pub(crate) struct OffsetToCommit {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) leader_epoch: i32,
    pub(crate) metadata: String,
}

/// Who commits.
#[derive(Debug, Clone)]
pub(crate) struct Committer {
    pub(crate) group_id: String,
    pub(crate) generation_id: i32,
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
}

pub(super) async fn handle(broker: &Arc<Broker>, r: OffsetCommitRequest, _version: i16) -> OffsetCommitResponse {
    let committer = Committer {
        group_id: r.group_id.0.to_string(),
        generation_id: r.generation_id_or_member_epoch,
        member_id: r.member_id.to_string(),
        instance_id: r.group_instance_id.map(|s| s.to_string()),
    };
    let offsets: Vec<OffsetToCommit> = r
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| OffsetToCommit {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()).unwrap_or_default(),
            })
        })
        .collect();
    let mut results = commit(broker, &committer, offsets).await.into_iter();
    let api = crate::handlers::api_name(ApiKey::OffsetCommit);
    let topics = r
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let code = results.next().and_then(|r| r.err()).map(|e| e.code()).unwrap_or(0);
                    count_error(broker, &api, code);
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// Commits offsets; one result per offset, in order.
/// Kafka's checks of one offset to commit (plain or transactional): metadata size, and that the
/// partition exists.
pub(crate) fn check_offset(broker: &Broker, topic: &str, partition: i32, metadata: &str) -> Result<(), ResponseError> {
    if metadata.len() > MAX_METADATA_BYTES {
        Err(ResponseError::OffsetMetadataTooLarge)
    } else if broker.topic(topic).is_none_or(|t| usize::try_from(partition).map_or(true, |p| p >= t.partition_count()))
    {
        Err(ResponseError::UnknownTopicOrPartition)
    } else {
        Ok(())
    }
}

pub(crate) async fn commit(
    broker: &Arc<Broker>,
    c: &Committer,
    offsets: Vec<OffsetToCommit>,
) -> Vec<Result<(), ResponseError>> {
    let all = |e: ResponseError| vec![Err(e); offsets.len()];
    if c.group_id.is_empty() {
        return all(ResponseError::InvalidGroupId);
    }
    if let Err(e) = GroupCoordinator::coordinates(broker, &c.group_id) {
        return all(e);
    }
    let mut results: Vec<Result<(), ResponseError>> =
        offsets.iter().map(|o| check_offset(broker, &o.topic, o.partition, &o.metadata)).collect();
    let coordinator = &broker.groups;
    let _commits = coordinator.commits.read().await;
    if broker.engine.wait_for_space().await.is_err() {
        return all(ResponseError::CoordinatorNotAvailable);
    }
    let now = now_ms();
    let accepted: Vec<(RecordKey, CommittedOffset)> = offsets
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_ok())
        .map(|(o, _)| {
            let key = RecordKey::Offset { group: c.group_id.clone(), topic: o.topic.clone(), partition: o.partition };
            let value = CommittedOffset {
                offset: o.offset,
                leader_epoch: o.leader_epoch,
                metadata: o.metadata.clone(),
                commit_timestamp: now,
                record_offset: -1,
            };
            (key, value)
        })
        .collect();
    let write = {
        let mut groups = coordinator.lock();
        if !groups.contains_key(&c.group_id) {
            if c.generation_id >= 0 {
                // A member of a generation this coordinator never saw.
                return all(ResponseError::IllegalGeneration);
            }
            // Kafka only stores offsets for this group: it needs no membership.
            groups.insert(c.group_id.clone(), Group::new(&c.group_id));
        }
        let Some(group) = groups.get_mut(&c.group_id) else { return all(ResponseError::CoordinatorNotAvailable) };
        if let Err(e) = group.validate_commit(c, Instant::now()) {
            return all(e);
        }
        if accepted.is_empty() {
            return results;
        }
        let records: Vec<(RecordKey, Option<bytes::Bytes>)> =
            accepted.iter().map(|(k, v)| (k.clone(), Some(records::encode_offset(v)))).collect();
        records::enqueue(broker, &c.group_id, &records)
    };
    let first = match write {
        Ok(w) => w.durable(broker).await,
        Err(e) => Err(e),
    };
    let first = match first {
        Ok(offset) => offset,
        Err(e) => {
            tracing::warn!(group = %c.group_id, error = %e, "cannot store committed offsets");
            let code = match e.code() {
                ResponseError::MessageTooLarge | ResponseError::RecordListTooLarge => {
                    ResponseError::InvalidCommitOffsetSize
                }
                _ => ResponseError::CoordinatorNotAvailable,
            };
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                *r = Err(code);
            }
            return results;
        }
    };
    let mut groups = coordinator.lock();
    // The group cannot have been deleted meanwhile (deletion waits for `commits`), but a group
    // created by this very commit may have been forgotten as unused before holding offsets.
    let group = groups.entry(c.group_id.clone()).or_insert_with(|| Group::new(&c.group_id));
    for (i, (key, mut value)) in accepted.into_iter().enumerate() {
        value.record_offset = first + i as i64;
        if let RecordKey::Offset { topic, partition, .. } = key {
            group.apply_offset(topic, partition, value);
        }
    }
    results
}

impl Group {
    /// Kafka's rules for who may commit to this group.
    pub(crate) fn validate_commit(&mut self, c: &Committer, now: Instant) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let simple = c.generation_id < 0 && c.member_id.is_empty() && c.instance_id.is_none();
        if simple {
            // Without membership, only while nobody is a member.
            return if self.state == GroupState::Empty { Ok(()) } else { Err(ResponseError::UnknownMemberId) };
        }
        self.validate_member(&c.member_id, c.instance_id.as_deref())?;
        if c.generation_id != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        if self.state == GroupState::CompletingRebalance {
            // The member knows the new generation but has no assignment yet.
            return Err(ResponseError::RebalanceInProgress);
        }
        if let Some(m) = self.members.get_mut(&c.member_id) {
            m.last_heartbeat = now;
        }
        Ok(())
    }

    /// Applies a durable commit unless a later record of the same key got there first.
    pub(crate) fn apply_offset(&mut self, topic: String, partition: i32, value: CommittedOffset) {
        let key = (topic, partition);
        if self.offsets.get(&key).is_none_or(|old| old.record_offset < value.record_offset) {
            self.offsets.insert(key, value);
        }
    }
}
