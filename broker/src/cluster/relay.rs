//! Produce relayed through the bucket (see [`super::zones`]): a broker of the client's zone
//! writes the batches as an object under `relay/`, tells the partition's leader (in another
//! zone) the object's key over the internal API (`POST /internal/v1/relay/produce`), and the
//! leader reads the object, appends it like any produce and answers with the offsets. The
//! leader deletes the object once the batches are durable in its WAL; the relaying broker
//! deletes it when the leader refused it. Objects left by a crash in between are swept by the
//! controller after [`RELAY_TTL_MS`] (their key starts with their creation time).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};

use super::records::BrokerRecord;
use crate::broker::{now_ms, Broker};
use crate::error::{Error, Result};
use crate::http::HttpState;
use crate::partition::AppendOutcome;

pub const RELAY_PREFIX: &str = "relay/";
/// Relay objects older than this are garbage (a crashed relay or leader left them).
pub const RELAY_TTL_MS: u64 = 10 * 60 * 1000;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RelayRequest {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) key: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RelayReply {
    /// 0, or the Kafka error code the client should see.
    pub(crate) error_code: i16,
    #[serde(default)]
    pub(crate) message: String,
    #[serde(default)]
    pub(crate) base_offset: i64,
    #[serde(default)]
    pub(crate) log_append_time: i64,
    #[serde(default)]
    pub(crate) log_start_offset: i64,
}

/// On a broker of the client's zone: relays one partition's batches to its leader.
pub async fn relay_produce(
    broker: &Broker,
    leader: &BrokerRecord,
    topic: &str,
    partition: i32,
    records: Bytes,
) -> Result<AppendOutcome> {
    let key = format!("{RELAY_PREFIX}{}/{:013}-{:016x}", broker.config.node_id, now_ms(), rand::random::<u64>());
    let bytes = records.len() as u64;
    broker.store.put(&key, records).await?;
    let request = RelayRequest { topic: topic.to_string(), partition, key: key.clone() };
    let unavailable = |e: String| {
        Error::kafka(ResponseError::NotLeaderOrFollower, format!("relay to broker {} failed: {e}", leader.node_id))
    };
    let reply = broker
        .cluster
        .rpc()
        .relay(&leader.http, &request, Duration::from_secs(30))
        .await
        .map_err(|e| unavailable(e.to_string()));
    let reply = match reply {
        Ok(r) => r,
        Err(e) => {
            // Unknown whether the leader appended it: the client retries (an idempotent
            // producer's retry is recognised), the object expires.
            return Err(e);
        }
    };
    if reply.error_code != 0 {
        let _ = broker.store.delete(&key).await;
        let code = ResponseError::try_from_code(reply.error_code).unwrap_or(ResponseError::UnknownServerError);
        return Err(Error::kafka(code, reply.message));
    }
    broker.metrics.cluster.relayed_produce_bytes.inc_by(bytes);
    Ok(AppendOutcome {
        base_offset: reply.base_offset,
        log_append_time: reply.log_append_time,
        log_start_offset: reply.log_start_offset,
    })
}

/// On the leader: appends a relayed batch.
pub(crate) async fn accept(State(state): State<HttpState>, Json(r): Json<RelayRequest>) -> Response {
    let broker = match state.broker() {
        Ok(b) => b,
        Err(resp) => return *resp,
    };
    let reply = match append(&broker, &r).await {
        Ok(o) => RelayReply {
            error_code: 0,
            message: String::new(),
            base_offset: o.base_offset,
            log_append_time: o.log_append_time,
            log_start_offset: o.log_start_offset,
        },
        Err(e) => RelayReply {
            error_code: e.code().code(),
            message: e.to_string(),
            base_offset: -1,
            log_append_time: -1,
            log_start_offset: -1,
        },
    };
    Json(reply).into_response()
}

async fn append(broker: &Arc<Broker>, r: &RelayRequest) -> Result<AppendOutcome> {
    let topic = broker
        .topic(&r.topic)
        .ok_or_else(|| Error::kafka(ResponseError::UnknownTopicOrPartition, format!("unknown topic {}", r.topic)))?;
    if topic.meta.internal {
        return Err(Error::kafka(
            ResponseError::InvalidTopicException,
            format!("clients cannot write to internal topic {}", r.topic),
        ));
    }
    let partition = topic.led(r.partition)?;
    let records = broker.store.get(&r.key).await?;
    let bytes = records.len() as u64;
    partition.count_traffic(bytes, 0);
    let outcome = partition.append(&broker.engine, records, &topic.config, now_ms()).await?;
    // Durable in our WAL: the relay object has served its purpose.
    if let Err(e) = broker.store.delete(&r.key).await {
        tracing::debug!(key = %r.key, error = %e, "cannot delete a relay object; it expires");
    }
    broker.metrics.bytes_in.get_or_create(&crate::metrics::TopicLabels { topic: r.topic.clone() }).inc_by(bytes);
    Ok(outcome)
}

/// Deletes relay objects older than [`RELAY_TTL_MS`] (the controller runs it now and then).
pub async fn sweep(broker: &Broker) -> Result<usize> {
    let now = now_ms().max(0) as u64;
    let mut deleted = 0;
    for meta in broker.store.list(RELAY_PREFIX).await? {
        let created =
            meta.key.rsplit('/').next().and_then(|name| name.split('-').next()).and_then(|ms| ms.parse::<u64>().ok());
        if created.is_some_and(|ms| ms + RELAY_TTL_MS < now) {
            broker.store.delete(&meta.key).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}
