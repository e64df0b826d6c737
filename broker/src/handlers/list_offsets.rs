//! ListOffsets: earliest (-2), latest (-1), the record with the largest timestamp (-3), or the
//! first offset whose record timestamp is at least the given time.

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::error::Result;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

pub(super) async fn handle(
    broker: &Arc<Broker>,
    request: ListOffsetsRequest,
    version: i16,
    client_id: &str,
) -> ListOffsetsResponse {
    // A client of this broker's zone may ask for partitions led in another zone (see
    // `cluster::zones`): their earliest and latest committed offsets are answered here.
    let zoned = crate::cluster::zones::client_zone(client_id)
        .is_some_and(|z| broker.config.rack.as_deref() == Some(z.as_str()));
    // read_committed clients (v2+) see the last stable offset as the latest.
    let committed = request.isolation_level == 1;
    let mut topics = Vec::new();
    for t in request.topics {
        let mut partitions = Vec::new();
        for p in &t.partitions {
            let result = lookup(broker, t.name.0.as_str(), p.partition_index, p.timestamp, zoned, committed).await;
            partitions.push(match result {
                Ok((offset, timestamp)) => {
                    let r = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_offset(offset)
                        .with_timestamp(timestamp);
                    // The field exists from v4 on; encoding refuses it earlier.
                    if version >= 4 {
                        r.with_leader_epoch(0)
                    } else {
                        r
                    }
                }
                Err(e) => {
                    broker.metrics.error("ListOffsets", e.code());
                    ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(e.code().code())
                        .with_offset(-1)
                        .with_timestamp(-1)
                }
            });
        }
        topics.push(ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(partitions));
    }
    ListOffsetsResponse::default().with_topics(topics)
}

async fn lookup(
    broker: &Broker,
    topic: &str,
    index: i32,
    timestamp: i64,
    zoned: bool,
    committed: bool,
) -> Result<(i64, i64)> {
    let partition = match broker.led(topic, index) {
        Err(e) if zoned && e.code() == ResponseError::NotLeaderOrFollower && matches!(timestamp, LATEST | EARLIEST) => {
            let t = broker.topic(topic).ok_or(e)?;
            let state = broker.engine.catalog().state();
            let s = t.meta.partitions.get(index as usize).and_then(|id| state.streams.get(id));
            let s = s.ok_or_else(|| super::err(ResponseError::UnknownTopicOrPartition, "no such partition"))?;
            let mut offset = if timestamp == LATEST { s.end_offset as i64 } else { s.start_offset as i64 };
            if committed && timestamp == LATEST {
                let stream = t.meta.partitions[index as usize];
                offset = broker.bucket_txns.index(&broker.engine, stream, offset).await?.last_stable_offset(offset);
            }
            return Ok((offset, -1));
        }
        other => other?,
    };
    let (high_watermark, log_start) = partition.offsets(&broker.engine).await?;
    Ok(match timestamp {
        LATEST if committed => (partition.last_stable_offset(high_watermark), -1),
        LATEST => (high_watermark, -1),
        EARLIEST => (log_start, -1),
        MAX_TIMESTAMP => partition.max_timestamp(&broker.engine).await?.unwrap_or((-1, -1)),
        t if t >= 0 => partition.offset_for_timestamp(&broker.engine, t).await?.unwrap_or((-1, -1)),
        other => return Err(super::err(ResponseError::InvalidRequest, format!("unknown special timestamp {other}"))),
    })
}
