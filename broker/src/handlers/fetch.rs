//! Fetch: whole record batches from any offset, with Kafka's size rules (the first partition
//! may exceed the limits so consumers always progress) and long polling (max_wait_ms /
//! min_bytes) on the partitions' acknowledged ends. Fetch sessions are not offered (session
//! id 0), so clients send full requests, which every client supports.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::time::Instant;

use crate::broker::{Broker, Topic};
use crate::metrics::TopicLabels;

/// Kafka's INVALID_SESSION_ID: fetch sessions are not used.
const NO_SESSION: i32 = 0;

pub(super) async fn handle(broker: &Arc<Broker>, request: FetchRequest, version: i16) -> FetchResponse {
    if request.session_id != NO_SESSION || request.session_epoch > 0 {
        return FetchResponse::default().with_error_code(ResponseError::FetchSessionIdNotFound.code());
    }
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.clamp(0, 30_000) as u64);
    let min_bytes = request.min_bytes.max(0) as usize;
    let max_bytes = if request.max_bytes <= 0 { usize::MAX } else { request.max_bytes as usize };
    // Resolve topics once (by id from v13 on).
    let topics: Vec<(Option<Arc<Topic>>, &kafka_protocol::messages::fetch_request::FetchTopic)> = request
        .topics
        .iter()
        .map(|t| {
            let found = if version >= 13 { broker.topic_by_id(t.topic_id) } else { broker.topic(t.topic.0.as_str()) };
            (found, t)
        })
        .collect();
    loop {
        let (response, total) = fetch_once(broker, &topics, max_bytes, version).await;
        let remaining = deadline.saturating_duration_since(Instant::now());
        if total >= min_bytes || remaining.is_zero() {
            return response;
        }
        // Wait until any fetched partition gets new data, or the deadline.
        let mut watches = Vec::new();
        for (topic, t) in &topics {
            let Some(topic) = topic else { continue };
            for p in &t.partitions {
                if let Ok(partition) = topic.led(p.partition) {
                    if let Ok(rx) = broker.engine.subscribe(partition.stream_id) {
                        watches.push(rx);
                    }
                }
            }
        }
        if watches.is_empty() {
            tokio::time::sleep(remaining).await;
            return fetch_once(broker, &topics, max_bytes, version).await.0;
        }
        let changed = watches.iter_mut().map(|rx| Box::pin(rx.changed()));
        let _ = tokio::time::timeout(remaining, futures::future::select_all(changed)).await;
    }
}

async fn fetch_once(
    broker: &Arc<Broker>,
    topics: &[(Option<Arc<Topic>>, &kafka_protocol::messages::fetch_request::FetchTopic)],
    max_bytes: usize,
    version: i16,
) -> (FetchResponse, usize) {
    let mut total = 0usize;
    let mut responses = Vec::with_capacity(topics.len());
    for (topic, t) in topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let base = PartitionData::default()
                .with_partition_index(p.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_preferred_read_replica(BrokerId(-1));
            let Some(topic) = topic else {
                let code =
                    if version >= 13 { ResponseError::UnknownTopicId } else { ResponseError::UnknownTopicOrPartition };
                partitions.push(base.with_error_code(code.code()));
                continue;
            };
            let partition = match topic.led(p.partition) {
                Ok(partition) => partition,
                Err(e) => {
                    partitions.push(base.with_error_code(e.code().code()));
                    continue;
                }
            };
            // The first partition with data may exceed the limits; later ones get what is left.
            let budget = if total == 0 {
                p.partition_max_bytes.max(1) as usize
            } else {
                (p.partition_max_bytes.max(0) as usize).min(max_bytes.saturating_sub(total))
            };
            if budget == 0 {
                let (hw, start) = partition.offsets(&broker.engine).await.unwrap_or((-1, -1));
                partitions.push(
                    base.with_high_watermark(hw)
                        .with_last_stable_offset(hw)
                        .with_log_start_offset(start)
                        .with_records(Some(Default::default())),
                );
                continue;
            }
            match partition.read(&broker.engine, p.fetch_offset, budget).await {
                Ok(read) => {
                    let n = read.records.len();
                    // Past the first partition, a batch larger than the budget is left for the
                    // next fetch rather than sent.
                    let records = if total > 0 && n > budget { Default::default() } else { read.records };
                    total += records.len();
                    if !records.is_empty() {
                        partition.count_traffic(0, records.len() as u64);
                        broker
                            .metrics
                            .bytes_out
                            .get_or_create(&TopicLabels { topic: topic.meta.name.clone() })
                            .inc_by(records.len() as u64);
                    }
                    partitions.push(
                        base.with_high_watermark(read.high_watermark)
                            .with_last_stable_offset(read.high_watermark)
                            .with_log_start_offset(read.log_start_offset)
                            .with_records(Some(records)),
                    );
                }
                Err(e) => {
                    broker.metrics.error("Fetch", e.code());
                    let (hw, start) = partition.offsets(&broker.engine).await.unwrap_or((-1, -1));
                    partitions.push(
                        base.with_error_code(e.code().code())
                            .with_high_watermark(hw)
                            .with_last_stable_offset(hw)
                            .with_log_start_offset(start),
                    );
                }
            }
        }
        let name = topic.as_ref().map(|t| t.meta.name.clone()).unwrap_or_else(|| t.topic.0.to_string());
        responses.push(
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_string(name)))
                .with_topic_id(t.topic_id)
                .with_partitions(partitions),
        );
    }
    (FetchResponse::default().with_session_id(NO_SESSION).with_responses(responses), total)
}
