//! The transaction APIs a producer calls on its transaction coordinator: AddPartitionsToTxn,
//! AddOffsetsToTxn, EndTxn (InitProducerId with a transactional id is in
//! `handlers::init_producer_id`), and the admin APIs DescribeTransactions and
//! ListTransactions. TxnOffsetCommit goes to the group coordinator (`groups::txn_offsets`).
//!
//! Fencing errors follow Kafka: PRODUCER_FENCED from the versions that know it (v2+ of the
//! producer APIs), INVALID_PRODUCER_EPOCH before.

use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedTransaction;
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse,
    DescribeTransactionsRequest, DescribeTransactionsResponse, EndTxnRequest, EndTxnResponse, ListTransactionsRequest,
    ListTransactionsResponse, ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::coordinator::{TransactionCoordinator, TxnState};
use crate::broker::{now_ms, Broker};

/// The error a fenced producer gets at this request version.
fn fenced(version: i16) -> ResponseError {
    if version >= 2 {
        ResponseError::ProducerFenced
    } else {
        ResponseError::InvalidProducerEpoch
    }
}

fn count(broker: &Broker, api: &str, code: ResponseError) {
    broker.metrics.error(api, code);
}

pub async fn add_partitions(
    broker: &Arc<Broker>,
    r: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    let txn_id = r.v3_and_below_transactional_id.0.to_string();
    // Unknown topics and partitions fail the request (as Kafka: the others get
    // OPERATION_NOT_ATTEMPTED).
    let mut wanted = Vec::new();
    let mut unknown = Vec::new();
    for t in &r.v3_and_below_topics {
        let topic = broker.topic(t.name.0.as_str());
        for p in &t.partitions {
            match &topic {
                Some(topic) if *p >= 0 && (*p as usize) < topic.partition_count() && !topic.meta.internal => {
                    wanted.push((t.name.0.to_string(), *p))
                }
                _ => unknown.push((t.name.0.to_string(), *p)),
            }
        }
    }
    let result = if unknown.is_empty() {
        broker
            .txns
            .add_partitions(
                broker,
                &txn_id,
                r.v3_and_below_producer_id.0,
                r.v3_and_below_producer_epoch,
                &wanted,
                fenced(version),
            )
            .await
            .map_err(|e| e.code())
    } else {
        Err(ResponseError::UnknownTopicOrPartition)
    };
    let code_for = |topic: &str, p: i32| -> i16 {
        match &result {
            Ok(()) => 0,
            Err(ResponseError::UnknownTopicOrPartition) if !unknown.iter().any(|(t, i)| t == topic && *i == p) => {
                ResponseError::OperationNotAttempted.code()
            }
            Err(e) => e.code(),
        }
    };
    if let Err(e) = &result {
        count(broker, "AddPartitionsToTxn", *e);
    }
    let topics = r
        .v3_and_below_topics
        .iter()
        .map(|t| {
            AddPartitionsToTxnTopicResult::default().with_name(t.name.clone()).with_results_by_partition(
                t.partitions
                    .iter()
                    .map(|p| {
                        AddPartitionsToTxnPartitionResult::default()
                            .with_partition_index(*p)
                            .with_partition_error_code(code_for(t.name.0.as_str(), *p))
                    })
                    .collect(),
            )
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics)
}

pub async fn add_offsets(broker: &Arc<Broker>, r: AddOffsetsToTxnRequest, version: i16) -> AddOffsetsToTxnResponse {
    let txn_id = r.transactional_id.0.to_string();
    let result = async {
        let partition = TransactionCoordinator::offsets_partition(broker, r.group_id.0.as_str())?;
        broker
            .txns
            .add_partitions(broker, &txn_id, r.producer_id.0, r.producer_epoch, &[partition], fenced(version))
            .await
    }
    .await;
    match result {
        Ok(()) => AddOffsetsToTxnResponse::default(),
        Err(e) => {
            count(broker, "AddOffsetsToTxn", e.code());
            AddOffsetsToTxnResponse::default().with_error_code(e.code().code())
        }
    }
}

pub async fn end_txn(broker: &Arc<Broker>, r: EndTxnRequest, version: i16) -> EndTxnResponse {
    let txn_id = r.transactional_id.0.to_string();
    match broker.txns.end_txn(broker, &txn_id, r.producer_id.0, r.producer_epoch, r.committed, fenced(version)).await {
        Ok(()) => EndTxnResponse::default().with_producer_id(r.producer_id).with_producer_epoch(r.producer_epoch),
        Err(e) => {
            count(broker, "EndTxn", e.code());
            tracing::debug!(transactional_id = %txn_id, error = %e, "EndTxn refused");
            EndTxnResponse::default()
                .with_error_code(e.code().code())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        }
    }
}

pub fn describe(broker: &Arc<Broker>, r: DescribeTransactionsRequest) -> DescribeTransactionsResponse {
    let states = r
        .transactional_ids
        .iter()
        .map(|id| {
            let base = TransactionState::default().with_transactional_id(id.clone());
            if let Err(e) = TransactionCoordinator::coordinates(broker, id.0.as_str()) {
                return base.with_error_code(e.code().code()).with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
            }
            let Some(meta) = broker.txns.get(id.0.as_str()) else {
                return base
                    .with_error_code(ResponseError::TransactionalIdNotFound.code())
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1);
            };
            let mut topics: Vec<TopicData> = Vec::new();
            for (topic, p) in &meta.partitions {
                match topics.last_mut() {
                    Some(t) if t.topic.0.as_str() == topic => t.partitions.push(*p),
                    _ => topics.push(
                        TopicData::default()
                            .with_topic(TopicName(StrBytes::from_string(topic.clone())))
                            .with_partitions(vec![*p]),
                    ),
                }
            }
            let started = if meta.state == TxnState::Ongoing { meta.started_ms } else { -1 };
            base.with_transaction_state(StrBytes::from_static_str(meta.state.name()))
                .with_transaction_timeout_ms(meta.timeout_ms)
                .with_transaction_start_time_ms(started)
                .with_producer_id(ProducerId(meta.producer_id))
                .with_producer_epoch(meta.epoch)
                .with_topics(topics)
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

pub fn list(broker: &Arc<Broker>, r: ListTransactionsRequest) -> ListTransactionsResponse {
    const KNOWN: [&str; 6] = ["Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort"];
    let unknown: Vec<StrBytes> = r.state_filters.iter().filter(|s| !KNOWN.contains(&s.as_str())).cloned().collect();
    let now = now_ms();
    let mut listed: Vec<ListedTransaction> = broker
        .txns
        .all()
        .into_iter()
        .filter(|(_, m)| r.state_filters.is_empty() || r.state_filters.iter().any(|s| s.as_str() == m.state.name()))
        .filter(|(_, m)| r.producer_id_filters.is_empty() || r.producer_id_filters.contains(&ProducerId(m.producer_id)))
        // v1: only transactions running longer than the duration filter (ms).
        .filter(|(_, m)| {
            r.duration_filter < 0 || (m.state == TxnState::Ongoing && now - m.started_ms > r.duration_filter)
        })
        .map(|(id, m)| {
            ListedTransaction::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(id)))
                .with_producer_id(ProducerId(m.producer_id))
                .with_transaction_state(StrBytes::from_static_str(m.state.name()))
        })
        .collect();
    listed.sort_by(|a, b| a.transactional_id.0.cmp(&b.transactional_id.0));
    ListTransactionsResponse::default().with_unknown_state_filters(unknown).with_transaction_states(listed)
}
