//! OffsetFetch: committed positions of a group, for the partitions asked or (topics null, v2+)
//! for every partition it committed. Partitions without a commit get offset -1. v8 asks for
//! several groups at once.

use std::sync::Arc;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{ApiKey, GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::count_error;
use super::group::CommittedOffset;
use crate::broker::Broker;
use crate::groups::GroupCoordinator;

/// Committed offsets by topic, in the order asked (or by name when all are listed), with a
/// partition error (UNSTABLE_OFFSET_COMMIT) or 0.
type Fetched = Vec<(String, Vec<(i32, Option<CommittedOffset>, i16)>)>;

pub(super) fn handle(broker: &Arc<Broker>, r: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    let api = crate::handlers::api_name(ApiKey::OffsetFetch);
    if version >= 8 {
        let groups = r
            .groups
            .into_iter()
            .map(|g| {
                let topics =
                    g.topics.map(|ts| ts.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect());
                let (code, fetched) = match fetch(broker, g.group_id.0.as_str(), topics, r.require_stable) {
                    Ok(f) => (0, f),
                    Err(e) => (e.code(), Vec::new()),
                };
                count_error(broker, &api, code);
                let topics = fetched
                    .into_iter()
                    .map(|(name, partitions)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(TopicName(StrBytes::from_string(name)))
                            .with_partitions(
                                partitions
                                    .into_iter()
                                    .map(|(index, o, unstable)| {
                                        let (offset, epoch, metadata) = fields(o);
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(index)
                                            .with_committed_offset(offset)
                                            .with_committed_leader_epoch(epoch)
                                            .with_metadata(Some(StrBytes::from_string(metadata)))
                                            .with_error_code(unstable)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                OffsetFetchResponseGroup::default().with_group_id(g.group_id).with_topics(topics).with_error_code(code)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let group_id: GroupId = r.group_id;
    let asked: Option<Vec<(String, Vec<i32>)>> =
        r.topics.map(|ts| ts.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect());
    let require_stable = version >= 7 && r.require_stable;
    let (code, fetched) = match fetch(broker, group_id.0.as_str(), asked.clone(), require_stable) {
        Ok(f) => (0, f),
        // v1 has no group-level error: each partition carries it.
        Err(e) if version < 2 => {
            let per_partition = asked
                .unwrap_or_default()
                .into_iter()
                .map(|(t, ps)| (t, ps.into_iter().map(|p| (p, None, 0)).collect()))
                .collect();
            (e.code(), per_partition)
        }
        Err(e) => (e.code(), Vec::new()),
    };
    count_error(broker, &api, code);
    let partition_code = if version < 2 { code } else { 0 };
    let topics = fetched
        .into_iter()
        .map(|(name, partitions)| {
            OffsetFetchResponseTopic::default().with_name(TopicName(StrBytes::from_string(name))).with_partitions(
                partitions
                    .into_iter()
                    .map(|(index, o, unstable)| {
                        let (offset, epoch, metadata) = fields(o);
                        let p = OffsetFetchResponsePartition::default()
                            .with_partition_index(index)
                            .with_committed_offset(offset)
                            .with_metadata(Some(StrBytes::from_string(metadata)))
                            .with_error_code(if unstable != 0 { unstable } else { partition_code });
                        if version >= 5 {
                            p.with_committed_leader_epoch(epoch)
                        } else {
                            p
                        }
                    })
                    .collect(),
            )
        })
        .collect();
    let response = OffsetFetchResponse::default().with_topics(topics);
    if version >= 2 {
        response.with_error_code(code)
    } else {
        response
    }
}

fn fields(o: Option<CommittedOffset>) -> (i64, i32, String) {
    match o {
        Some(o) => (o.offset, o.leader_epoch, o.metadata),
        None => (-1, -1, String::new()),
    }
}

/// The committed offsets of `group_id` for `topics` (all when `None`). With `require_stable`
/// (KIP-447, read_committed consumers), a partition with offsets committed in a transaction
/// not ended yet gets UNSTABLE_OFFSET_COMMIT, and the client asks again.
pub(crate) fn fetch(
    broker: &Broker,
    group_id: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> Result<Fetched, ResponseError> {
    if group_id.is_empty() {
        return Err(ResponseError::InvalidGroupId);
    }
    GroupCoordinator::coordinates(broker, group_id)?;
    let groups = broker.groups.lock();
    let group = groups.get(group_id);
    let unstable = |topic: &str, p: i32| -> i16 {
        let pending = group.is_some_and(|g| {
            g.pending_txn_offsets.values().any(|offsets| offsets.contains_key(&(topic.to_string(), p)))
        });
        if require_stable && pending {
            ResponseError::UnstableOffsetCommit.code()
        } else {
            0
        }
    };
    Ok(match topics {
        Some(topics) => topics
            .into_iter()
            .map(|(topic, partitions)| {
                let found = partitions
                    .into_iter()
                    .map(|p| (p, group.and_then(|g| g.offsets.get(&(topic.clone(), p))).cloned(), unstable(&topic, p)))
                    .collect();
                (topic, found)
            })
            .collect(),
        None => {
            let mut all: Fetched = Vec::new();
            for ((topic, partition), o) in group.iter().flat_map(|g| &g.offsets) {
                let entry = (*partition, Some(o.clone()), unstable(topic, *partition));
                match all.last_mut() {
                    Some((t, ps)) if t == topic => ps.push(entry),
                    _ => all.push((topic.clone(), vec![entry])),
                }
            }
            all
        }
    })
}
