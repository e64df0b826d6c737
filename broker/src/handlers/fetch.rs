//! Fetch: whole record batches from any offset, with Kafka's size rules (the first partition
//! may exceed the limits so consumers always progress) and long polling (max_wait_ms /
//! min_bytes) on the partitions' acknowledged ends. Fetch sessions are not offered (session
//! id 0), so clients send full requests, which every client supports. Zone-aware: see
//! `cluster::zones` (preferred read replicas, partitions led in another zone served from the
//! bucket).

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_response::{AbortedTransaction, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ProducerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::time::Instant;

use crate::broker::{Broker, Topic};
use crate::cluster::zones::zone_broker;
use crate::metrics::TopicLabels;
use crate::partition::{read_stream, Partition, ReadResult};
use crate::txn::index::AbortedTxn;

/// Kafka's INVALID_SESSION_ID: fetch sessions are not used.
const NO_SESSION: i32 = 0;

pub(super) async fn handle(
    broker: &Arc<Broker>,
    request: FetchRequest,
    version: i16,
    client_id: &str,
) -> FetchResponse {
    // The client's zone: Kafka's client.rack (v11+), else a zone in its client id.
    let zone = Some(request.rack_id.to_string())
        .filter(|r| !r.is_empty())
        .or_else(|| crate::cluster::zones::client_zone(client_id));
    let zone = zone.as_deref();
    if request.session_id != NO_SESSION || request.session_epoch > 0 {
        return FetchResponse::default().with_error_code(ResponseError::FetchSessionIdNotFound.code());
    }
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.clamp(0, 30_000) as u64);
    // Kafka's isolation levels: 0 read_uncommitted, 1 read_committed (v4+).
    let committed = request.isolation_level == 1;
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
        let (response, total) = fetch_once(broker, &topics, max_bytes, version, zone, committed).await;
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
            return fetch_once(broker, &topics, max_bytes, version, zone, committed).await.0;
        }
        let changed = watches.iter_mut().map(|rx| Box::pin(rx.changed()));
        let _ = tokio::time::timeout(remaining, futures::future::select_all(changed)).await;
    }
}

/// Where this broker gets one partition's records from.
enum Source {
    /// It leads the partition.
    Led(Arc<Partition>),
    /// A partition led in another zone, for a client of this broker's zone: its committed
    /// data, from the bucket (stream id).
    Bucket(u64),
}

/// A read for one partition: the records, the last stable offset, and (read_committed) the
/// aborted transactions among the records.
type IsolatedRead = (ReadResult, i64, Option<Vec<AbortedTxn>>);

impl Source {
    async fn read(
        &self,
        broker: &Broker,
        offset: i64,
        budget: usize,
        committed: bool,
    ) -> crate::error::Result<IsolatedRead> {
        match self {
            Source::Led(p) => p.read_isolated(&broker.engine, offset, budget, committed).await,
            // read_uncommitted needs no transaction index (its last stable offset is reported
            // as the high watermark): only read_committed pays for the scan.
            Source::Bucket(stream) if !committed => {
                let read = Self::read_bucket(broker, *stream, offset, budget, None).await?;
                let hw = read.high_watermark;
                Ok((read, hw, None))
            }
            Source::Bucket(stream) => {
                let end = broker.engine.catalog().state().streams.get(stream).map_or(0, |s| s.end_offset as i64);
                let index = broker.bucket_txns.index(&broker.engine, *stream, end).await?;
                let lso = index.last_stable_offset(end);
                let read = Self::read_bucket(broker, *stream, offset, budget, Some(lso)).await?;
                let last = crate::partition::records_end(&read.records).unwrap_or(offset);
                let aborted = index.aborted_between(offset, last);
                let lso = lso.min(read.high_watermark);
                Ok((read, lso, Some(aborted)))
            }
        }
    }

    async fn read_bucket(
        broker: &Broker,
        stream: u64,
        offset: i64,
        budget: usize,
        limit: Option<i64>,
    ) -> crate::error::Result<ReadResult> {
        match read_stream(&broker.engine, stream, offset, budget, limit).await {
            // Past the committed end (the leader has more): nothing yet, not an error.
            Err(crate::error::Error::Storage(automq_storage::Error::OffsetOutOfRange {
                offset: o,
                start_offset,
                end_offset,
                ..
            })) if o >= end_offset => Ok(ReadResult {
                records: Default::default(),
                high_watermark: end_offset as i64,
                log_start_offset: start_offset as i64,
            }),
            other => other,
        }
    }

    async fn offsets(&self, broker: &Broker) -> (i64, i64) {
        match self {
            Source::Led(p) => p.offsets(&broker.engine).await.unwrap_or((-1, -1)),
            Source::Bucket(stream) => broker
                .engine
                .catalog()
                .state()
                .streams
                .get(stream)
                .map_or((-1, -1), |s| (s.end_offset as i64, s.start_offset as i64)),
        }
    }

    fn count(&self, broker: &Broker, bytes: u64) {
        match self {
            Source::Led(p) => p.count_traffic(0, bytes),
            Source::Bucket(_) => {
                broker.metrics.cluster.zone_fetch_bytes.inc_by(bytes);
            }
        }
    }
}

/// How this broker answers for one partition: from a source, or (the leader, to a client in
/// another zone, v11+) by naming a same-zone broker to fetch from instead.
fn resolve(
    broker: &Broker,
    topic: &Topic,
    index: i32,
    version: i16,
    zone: Option<&str>,
) -> crate::error::Result<Result<Source, i32>> {
    let mine = broker.config.rack.as_deref();
    match topic.led(index) {
        Ok(partition) => {
            if let Some(zone) = zone.filter(|z| version >= 11 && Some(*z) != mine) {
                let view = broker.cluster.view();
                let me = broker.config.node_id;
                if let Some(b) = zone_broker(&view, zone, Some(me), &topic.meta.name, index).filter(|b| b.node_id != me)
                {
                    return Ok(Err(b.node_id));
                }
            }
            Ok(Ok(Source::Led(partition)))
        }
        Err(e) if e.code() == ResponseError::NotLeaderOrFollower && zone.is_some() && zone == mine => {
            Ok(Ok(Source::Bucket(topic.meta.partitions[index as usize])))
        }
        Err(e) => Err(e),
    }
}

async fn fetch_once(
    broker: &Arc<Broker>,
    topics: &[(Option<Arc<Topic>>, &kafka_protocol::messages::fetch_request::FetchTopic)],
    max_bytes: usize,
    version: i16,
    zone: Option<&str>,
    committed: bool,
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
            let partition = match resolve(broker, topic, p.partition, version, zone) {
                Ok(Ok(source)) => source,
                Ok(Err(replica)) => {
                    let (hw, start) = match topic.led(p.partition) {
                        Ok(led) => led.offsets(&broker.engine).await.unwrap_or((-1, -1)),
                        Err(_) => (-1, -1),
                    };
                    partitions.push(
                        base.with_preferred_read_replica(BrokerId(replica))
                            .with_high_watermark(hw)
                            .with_last_stable_offset(hw)
                            .with_log_start_offset(start)
                            .with_records(Some(Default::default())),
                    );
                    continue;
                }
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
                let (hw, start) = partition.offsets(broker).await;
                partitions.push(
                    base.with_high_watermark(hw)
                        .with_last_stable_offset(hw)
                        .with_log_start_offset(start)
                        .with_records(Some(Default::default())),
                );
                continue;
            }
            match partition.read(broker, p.fetch_offset, budget, committed).await {
                Ok((read, lso, aborted)) => {
                    let n = read.records.len();
                    // Past the first partition, a batch larger than the budget is left for the
                    // next fetch rather than sent.
                    let records = if total > 0 && n > budget { Default::default() } else { read.records };
                    total += records.len();
                    if !records.is_empty() {
                        partition.count(broker, records.len() as u64);
                        broker
                            .metrics
                            .bytes_out
                            .get_or_create(&TopicLabels { topic: topic.meta.name.clone() })
                            .inc_by(records.len() as u64);
                    }
                    let aborted = aborted.map(|list| {
                        list.into_iter()
                            .map(|a| {
                                AbortedTransaction::default()
                                    .with_producer_id(ProducerId(a.producer_id))
                                    .with_first_offset(a.first_offset)
                            })
                            .collect()
                    });
                    partitions.push(
                        base.with_high_watermark(read.high_watermark)
                            .with_last_stable_offset(lso)
                            .with_log_start_offset(read.log_start_offset)
                            .with_aborted_transactions(aborted)
                            .with_records(Some(records)),
                    );
                }
                Err(e) => {
                    broker.metrics.error("Fetch", e.code());
                    let (hw, start) = partition.offsets(broker).await;
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
