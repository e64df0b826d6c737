//! TxnOffsetCommit: offsets a transactional producer commits for a group as part of its
//! transaction (`send_offsets_to_transaction`). They are written to `__consumer_offsets` in a
//! transactional batch of the producer and held aside (`Group::pending_txn_offsets`) until the
//! transaction's marker reaches that partition: applied on commit, dropped on abort. A replay
//! does the same from the log, so a coordinator taking over sees exactly the committed ones.

use std::sync::Arc;

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{ApiKey, TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use kafka_protocol::ResponseError;
use tokio::time::Instant;

use super::count_error;
use super::group::{CommittedOffset, Group};
use super::offset_commit::{check_offset, Committer};
use super::records::{self, RecordKey};
use crate::broker::{now_ms, Broker};
use crate::groups::GroupCoordinator;

pub(super) async fn handle(broker: &Arc<Broker>, r: TxnOffsetCommitRequest, _version: i16) -> TxnOffsetCommitResponse {
    let api = crate::handlers::api_name(ApiKey::TxnOffsetCommit);
    let group_id = r.group_id.0.to_string();
    let producer = (r.producer_id.0, r.producer_epoch);
    let offsets: Vec<(String, i32, CommittedOffset)> = r
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.name.0.to_string(),
                    p.partition_index,
                    CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p.committed_metadata.as_ref().map(|m| m.to_string()).unwrap_or_default(),
                        commit_timestamp: now_ms(),
                        record_offset: -1,
                    },
                )
            })
        })
        .collect();
    let result = commit(broker, &r, &group_id, producer, &offsets).await;
    let mut codes = result.into_iter();
    let topics = r
        .topics
        .iter()
        .map(|t| {
            TxnOffsetCommitResponseTopic::default().with_name(t.name.clone()).with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        let code = codes.next().map_or(0, |c| c.err().map_or(0, |e| e.code()));
                        count_error(broker, &api, code);
                        TxnOffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code)
                    })
                    .collect(),
            )
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

async fn commit(
    broker: &Arc<Broker>,
    r: &TxnOffsetCommitRequest,
    group_id: &str,
    producer: (i64, i16),
    offsets: &[(String, i32, CommittedOffset)],
) -> Vec<Result<(), ResponseError>> {
    let all = |e: ResponseError| vec![Err(e); offsets.len()];
    if group_id.is_empty() {
        return all(ResponseError::InvalidGroupId);
    }
    if let Err(e) = GroupCoordinator::coordinates(broker, group_id) {
        return all(e);
    }
    let mut results: Vec<Result<(), ResponseError>> =
        offsets.iter().map(|(topic, p, o)| check_offset(broker, topic, *p, &o.metadata)).collect();
    let coordinator = &broker.groups;
    let _commits = coordinator.commits.read().await;
    if broker.engine.wait_for_space().await.is_err() {
        return all(ResponseError::CoordinatorNotAvailable);
    }
    let accepted: Vec<(String, i32, CommittedOffset)> =
        offsets.iter().zip(&results).filter(|(_, r)| r.is_ok()).map(|(o, _)| o.clone()).collect();
    let write = {
        let mut groups = coordinator.lock();
        let group = groups.entry(group_id.to_string()).or_insert_with(|| Group::new(group_id));
        // KIP-447 (v3+): a member of the group commits with its generation, and is fenced like
        // an OffsetCommit when it is stale.
        if r.generation_id >= 0 || !r.member_id.is_empty() {
            let committer = Committer {
                group_id: group_id.to_string(),
                generation_id: r.generation_id,
                member_id: r.member_id.to_string(),
                instance_id: r.group_instance_id.as_ref().map(|s| s.to_string()),
            };
            if let Err(e) = group.validate_commit(&committer, Instant::now()) {
                return all(e);
            }
        }
        if accepted.is_empty() {
            return results;
        }
        let records: Vec<(RecordKey, Option<bytes::Bytes>)> = accepted
            .iter()
            .map(|(topic, partition, v)| {
                let key =
                    RecordKey::Offset { group: group_id.to_string(), topic: topic.clone(), partition: *partition };
                (key, Some(records::encode_offset(v)))
            })
            .collect();
        records::enqueue_for(broker, group_id, &records, Some(producer))
    };
    let first = match write {
        Ok(w) => w.durable(broker).await,
        Err(e) => Err(e),
    };
    let first = match first {
        Ok(offset) => offset,
        Err(e) => {
            tracing::warn!(group = %group_id, error = %e, "cannot store transactional offsets");
            let code = match e.code() {
                ResponseError::InvalidProducerEpoch => ResponseError::ProducerFenced,
                _ => ResponseError::CoordinatorNotAvailable,
            };
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                *r = Err(code);
            }
            return results;
        }
    };
    let mut groups = coordinator.lock();
    let group = groups.entry(group_id.to_string()).or_insert_with(|| Group::new(group_id));
    let pending = group.pending_txn_offsets.entry(producer.0).or_default();
    for (i, (topic, partition, mut value)) in accepted.into_iter().enumerate() {
        value.record_offset = first + i as i64;
        pending.insert((topic, partition), value);
    }
    results
}
