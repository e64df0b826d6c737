//! Writing transaction markers into the partitions of a transaction, wherever they are led:
//! directly when this broker leads the partition, else through the leader's internal API
//! (`POST /internal/v1/txn/markers`, the role Kafka's WriteTxnMarkers plays). A partition
//! moving, or its leader restarting, is retried until the marker is written; a deleted topic
//! needs none.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::batch::Marker;
use crate::broker::{now_ms, Broker, OFFSETS_TOPIC};
use crate::error::{Error, Result};
use crate::http::HttpState;

/// How long markers are retried before the coordinator gives up (and retries on the next
/// request or coordinator change).
const MARKER_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MarkerRequest {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub coordinator_epoch: i32,
    pub partitions: Vec<(String, i32)>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MarkerReply {
    /// Error code per partition, in request order (0: written).
    pub errors: Vec<i16>,
}

/// Writes `marker` into one partition led here; the offsets topic's group coordinator then
/// applies or drops the transaction's offsets.
pub async fn write_local(broker: &Broker, topic: &str, index: i32, marker: &Marker) -> Result<()> {
    let t = broker
        .topic(topic)
        .ok_or_else(|| Error::kafka(ResponseError::UnknownTopicOrPartition, format!("no topic {topic}")))?;
    let partition = t.led(index)?;
    partition.write_marker(&broker.engine, marker, now_ms()).await?;
    if topic == OFFSETS_TOPIC {
        broker.groups.end_transaction(index, marker.producer_id, marker.commit);
    }
    Ok(())
}

/// Writes `marker` into every partition, retrying moves, until all are written.
pub async fn write_all(broker: &Broker, partitions: &BTreeSet<(String, i32)>, marker: Marker) -> Result<()> {
    let deadline = Instant::now() + MARKER_DEADLINE;
    let mut left: Vec<(String, i32)> = partitions.iter().cloned().collect();
    let mut backoff = Duration::from_millis(20);
    loop {
        let view = broker.cluster.view();
        let state = broker.engine.catalog().state();
        let me = broker.config.node_id;
        let mut by_leader: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
        let mut waiting = Vec::new();
        for (topic, index) in left {
            let Some(meta) = view.topics.get(&topic) else { continue }; // deleted: nothing to end
            if index as usize >= meta.partitions.len() {
                continue;
            }
            match view.leader(&state, meta, index) {
                Some(leader) => by_leader.entry(leader).or_default().push((topic, index)),
                None => waiting.push((topic, index)),
            }
        }
        let mut failed = waiting;
        let mut last_error = None;
        for (leader, parts) in by_leader {
            if leader == me {
                for (topic, index) in parts {
                    if let Err(e) = write_local(broker, &topic, index, &marker).await {
                        if e.code() == ResponseError::InvalidProducerEpoch {
                            return Err(e); // a newer epoch wrote there: this coordinator is stale
                        }
                        last_error = Some(e.to_string());
                        failed.push((topic, index));
                    }
                }
                continue;
            }
            let Some(addr) = view.brokers.get(&leader).map(|b| b.http.clone()) else {
                failed.extend(parts);
                continue;
            };
            let request = MarkerRequest {
                producer_id: marker.producer_id,
                producer_epoch: marker.producer_epoch,
                commit: marker.commit,
                coordinator_epoch: marker.coordinator_epoch,
                partitions: parts.clone(),
            };
            match send(broker, &addr, &request).await {
                Ok(reply) => {
                    for (part, code) in parts.into_iter().zip(reply.errors.iter().copied().chain(std::iter::repeat(-1)))
                    {
                        if code == ResponseError::InvalidProducerEpoch.code() {
                            return Err(Error::kafka(
                                ResponseError::InvalidProducerEpoch,
                                "a newer producer epoch wrote there",
                            ));
                        }
                        if code != 0 {
                            last_error = Some(format!("broker {leader}: error {code} for {}-{}", part.0, part.1));
                            failed.push(part);
                        }
                    }
                }
                Err(e) => {
                    last_error = Some(format!("broker {leader}: {e}"));
                    failed.extend(parts);
                }
            }
        }
        if failed.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::kafka(
                ResponseError::CoordinatorNotAvailable,
                format!(
                    "transaction markers not written to {} partitions: {}",
                    failed.len(),
                    last_error.unwrap_or_else(|| "no leader".into())
                ),
            ));
        }
        tracing::debug!(partitions = failed.len(), error = ?last_error, "retrying transaction markers");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
        left = failed;
    }
}

async fn send(broker: &Broker, addr: &str, request: &MarkerRequest) -> std::result::Result<MarkerReply, String> {
    let r = broker
        .cluster
        .rpc()
        .http()
        .post(format!("http://{addr}/internal/v1/txn/markers"))
        .timeout(Duration::from_secs(30))
        .json(request)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!("HTTP {}", r.status()));
    }
    r.json().await.map_err(|e| e.to_string())
}

/// The internal route: writes the markers into the partitions this broker leads.
pub(crate) async fn accept(State(state): State<HttpState>, Json(r): Json<MarkerRequest>) -> Response {
    let broker: Arc<Broker> = match state.broker() {
        Ok(b) => b,
        Err(resp) => return *resp,
    };
    let marker = Marker {
        producer_id: r.producer_id,
        producer_epoch: r.producer_epoch,
        commit: r.commit,
        coordinator_epoch: r.coordinator_epoch,
    };
    let mut errors = Vec::with_capacity(r.partitions.len());
    for (topic, index) in &r.partitions {
        errors.push(match write_local(&broker, topic, *index, &marker).await {
            Ok(()) => 0,
            Err(e) => e.code().code(),
        });
    }
    Json(MarkerReply { errors }).into_response()
}
