//! The fetcher of one mirror partition, on the broker leading it.
//!
//! It resumes from this log's end (what is acknowledged here), finds the source partition's
//! leader, and loops: Fetch (read_uncommitted, so transactional data, aborted records and
//! control batches are all copied) from that offset, append the batches untouched at their
//! source offsets, record lag and state. Errors are shown in the partition's state and retried
//! with backoff; losing the partition (a move, a fence) ends the task.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, ListOffsetsRequest, TopicName};
use kafka_protocol::ResponseError;

use super::client::{SourceConnection, SourceError};
use super::{connect_any, source_metadata, LinkSpec, PartitionState, LINK_CONFIG};
use crate::broker::Broker;
use crate::partition::Partition;

const FETCH_MAX_BYTES: i32 = 16 << 20;
const PARTITION_MAX_BYTES: i32 = 8 << 20;
const FETCH_WAIT_MS: i32 = 500;

/// Starts a fetcher for every mirror partition led here whose link is active, and stops the
/// others (moved away, promoted, paused, link deleted).
pub fn reconcile_fetchers(broker: &Arc<Broker>, links: &BTreeMap<String, LinkSpec>) {
    let mut wanted: BTreeMap<(String, i32), (String, Arc<Partition>)> = BTreeMap::new();
    for topic in broker.topics() {
        let Some(link) = topic.meta.configs.get(LINK_CONFIG) else { continue };
        let Some(spec) = links.get(link) else { continue };
        for partition in topic.led_partitions() {
            let key = (topic.meta.name.clone(), partition.index);
            if spec.paused {
                broker.mirrors.set_state(PartitionState {
                    link: link.clone(),
                    topic: key.0.clone(),
                    partition: key.1,
                    state: "paused".into(),
                    next_offset: broker.engine.next_offset(partition.stream_id).map(|o| o as i64).unwrap_or(-1),
                    source_high_watermark: -1,
                    last_error: None,
                });
                continue;
            }
            wanted.insert(key, (link.clone(), partition));
        }
    }
    let mut tasks = broker.mirrors.tasks.lock();
    tasks.retain(|key, task| {
        let keep = wanted.contains_key(key) && !task.is_finished();
        if !keep {
            task.abort();
        }
        keep
    });
    {
        let mut states = broker.mirrors.states.lock();
        states.retain(|key, s| wanted.contains_key(key) || (s.state == "paused" && broker.topic(&key.0).is_some()));
    }
    for (key, (link, partition)) in wanted {
        if tasks.contains_key(&key) {
            continue;
        }
        let Some(spec) = links.get(&link).cloned() else { continue };
        let broker = broker.clone();
        let task_key = key.clone();
        tasks.insert(
            key,
            tokio::spawn(async move {
                run(broker, link, spec, task_key.0, task_key.1, partition).await;
            }),
        );
    }
}

async fn run(broker: Arc<Broker>, link: String, spec: LinkSpec, topic: String, index: i32, partition: Arc<Partition>) {
    let mut state = PartitionState {
        link: link.clone(),
        topic: topic.clone(),
        partition: index,
        state: "mirroring".into(),
        next_offset: broker.engine.next_offset(partition.stream_id).map(|o| o as i64).unwrap_or(0),
        source_high_watermark: -1,
        last_error: None,
    };
    broker.mirrors.set_state(state.clone());
    let mut backoff = Duration::from_millis(200);
    loop {
        match copy(&broker, &link, &spec, &topic, index, &partition, &mut state).await {
            Ok(()) => return,
            Err(Stop::Lost(why)) => {
                tracing::info!(link, topic, partition = index, why, "mirror fetcher stops: partition no longer here");
                return;
            }
            Err(Stop::Retry(e)) => {
                tracing::warn!(link, topic, partition = index, error = %e, "mirroring failed; retrying");
                state.state = "failed".into();
                state.last_error = Some(e);
                broker.mirrors.set_state(state.clone());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

enum Stop {
    /// This broker no longer leads the partition: another fetcher takes over from the log end.
    Lost(String),
    /// Source or local trouble: shown in the state, retried.
    Retry(String),
}

impl From<SourceError> for Stop {
    fn from(e: SourceError) -> Self {
        Stop::Retry(e.0)
    }
}

/// Connects to the source partition's leader and copies until an error.
async fn copy(
    broker: &Arc<Broker>,
    link: &str,
    spec: &LinkSpec,
    topic: &str,
    index: i32,
    partition: &Arc<Partition>,
    state: &mut PartitionState,
) -> Result<(), Stop> {
    let client_id = format!("automq-link-{link}");
    let mut bootstrap = connect_any(&spec.source, &client_id).await?;
    let metadata = source_metadata(&mut bootstrap, Some(vec![topic.to_string()])).await?;
    let source_topic = metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        .ok_or_else(|| Stop::Retry(format!("source has no topic {topic}")))?;
    let leader = source_topic
        .partitions
        .iter()
        .find(|p| p.partition_index == index)
        .map(|p| p.leader_id)
        .ok_or_else(|| Stop::Retry(format!("source topic {topic} has no partition {index}")))?;
    let address = metadata
        .brokers
        .iter()
        .find(|b| b.node_id == leader)
        .map(|b| format!("{}:{}", b.host, b.port))
        .ok_or_else(|| Stop::Retry(format!("source partition {topic}-{index} has no live leader")))?;
    let mut conn = if address == bootstrap.address() { bootstrap } else { bootstrap.sibling(&address).await? };

    let engine = &broker.engine;
    let mut next = engine.next_offset(partition.stream_id).map_err(|e| Stop::Lost(e.to_string()))? as i64;
    let mut producer_ids_above = -1;
    // A new mirror starts at the source's log start (or its end with start_from latest), and
    // its own log start moves there once the first batch is in (an empty stream cannot start
    // past offset 0), so ListOffsets earliest answers what the source answers.
    let mut align_start = None;
    if next == 0 {
        let timestamp = if spec.start_from == "latest" { -1 } else { -2 };
        next = list_offset(&mut conn, topic, index, timestamp).await?;
        align_start = (next > 0).then_some(next);
    }
    loop {
        if !still_mirrored(broker, link, topic, index, partition) {
            return Err(Stop::Lost("moved, promoted or unlinked".into()));
        }
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(FETCH_WAIT_MS)
            .with_min_bytes(1)
            .with_max_bytes(FETCH_MAX_BYTES)
            .with_isolation_level(0)
            .with_topics(vec![FetchTopic::default().with_topic(TopicName(topic.to_string().into())).with_partitions(
                vec![FetchPartition::default()
                    .with_partition(index)
                    .with_fetch_offset(next)
                    .with_partition_max_bytes(PARTITION_MAX_BYTES)],
            )]);
        let (response, _) = conn.call(&request, 12).await?;
        if response.error_code != 0 {
            return Err(Stop::Retry(format!(
                "source fetch failed: {:?}",
                ResponseError::try_from_code(response.error_code)
            )));
        }
        let Some(data) = response.responses.first().and_then(|t| t.partitions.first()) else {
            return Err(Stop::Retry("source fetch answered no partition".into()));
        };
        match data.error_code {
            0 => {}
            code if code == ResponseError::OffsetOutOfRange.code() => {
                // Source retention passed us: continue from its log start (the gap stays a gap).
                let start = list_offset(&mut conn, topic, index, -2).await?;
                if start > next {
                    tracing::warn!(
                        link,
                        topic,
                        partition = index,
                        from = next,
                        to = start,
                        "source log start passed the mirror; skipping ahead"
                    );
                    next = start;
                    continue;
                }
                return Err(Stop::Retry(format!("offset {next} out of range at the source (log start {start})")));
            }
            code => {
                let error =
                    ResponseError::try_from_code(code).map(|e| format!("{e:?}")).unwrap_or_else(|| code.to_string());
                return Err(Stop::Retry(format!("source partition error {error}")));
            }
        }
        state.source_high_watermark = data.high_watermark;
        if let Some(records) = data.records.as_ref().filter(|r| !r.is_empty()) {
            let (end, max_producer_id) = partition.append_mirrored(engine, records).await.map_err(|e| match e {
                crate::error::Error::Storage(se) => Stop::Lost(se.to_string()),
                other => Stop::Retry(other.to_string()),
            })?;
            // The source's producer ids now have state here: local producers get others.
            if max_producer_id > producer_ids_above {
                broker.reserve_producer_ids_through(max_producer_id).await.map_err(|e| Stop::Retry(e.to_string()))?;
                producer_ids_above = max_producer_id;
            }
            if end > next {
                partition.count_traffic(records.len() as u64, 0);
                broker.mirrors.count_copied(link, records.len() as u64);
                if let Some(start) = align_start.take() {
                    partition.delete_records_before(engine, start).await.map_err(|e| Stop::Retry(e.to_string()))?;
                }
            }
            next = end.max(next);
        }
        state.next_offset = next;
        state.state = "mirroring".into();
        state.last_error = None;
        broker.mirrors.set_state(state.clone());
    }
}

/// Whether this broker still leads `topic`-`index` as a mirror of `link`.
fn still_mirrored(broker: &Broker, link: &str, topic: &str, index: i32, partition: &Arc<Partition>) -> bool {
    let Some(t) = broker.topic(topic) else { return false };
    if t.meta.configs.get(LINK_CONFIG).map(String::as_str) != Some(link) {
        return false;
    }
    t.led(index).is_ok_and(|p| Arc::ptr_eq(&p, partition))
}

/// ListOffsets at the source: -2 earliest, -1 latest.
async fn list_offset(conn: &mut SourceConnection, topic: &str, index: i32, timestamp: i64) -> Result<i64, Stop> {
    let request =
        ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(topic.to_string().into()))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(index)
                .with_timestamp(timestamp)])]);
    let (response, _) = conn.call(&request, 7).await?;
    let p = response
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or_else(|| Stop::Retry("source ListOffsets answered no partition".into()))?;
    if p.error_code != 0 {
        return Err(Stop::Retry(format!("source ListOffsets error {}", p.error_code)));
    }
    Ok(p.offset)
}
