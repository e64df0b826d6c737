//! The admin API the operator uses (`docs/admin-api.md`), served by every broker:
//!
//! - `GET /admin/v1/cluster`: brokers (liveness, drain, readiness, partitions led), the
//!   controller, and with `?partitions=true` every partition's assignment and leader.
//! - `POST /admin/v1/brokers/{id}/drain`: move every partition off a broker and keep it empty.
//! - `DELETE /admin/v1/brokers/{id}/drain`: cancel the drain; the broker takes its share again.
//!
//! A drain is recorded in the broker's cluster record (through the controller), so it
//! survives restarts of the broker and of the controller until cancelled.

use std::collections::BTreeMap;

use automq_storage::metadata::state::kv_digest;
use automq_storage::metadata::CatalogRecord;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::records::{broker_key, BrokerRecord, WalKind};
use crate::http::HttpState;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct ClusterState {
    pub cluster_id: String,
    pub controller: Option<ControllerState>,
    pub brokers: Vec<BrokerState>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionState>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct ControllerState {
    pub node_id: i32,
    pub epoch: u64,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct BrokerState {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    pub wal: WalKind,
    pub alive: bool,
    pub draining: bool,
    pub leaving: bool,
    /// Alive, not draining or leaving, and leading every partition assigned to it.
    pub ready: bool,
    /// Partitions assigned to it.
    pub assigned: usize,
    /// Partitions whose stream it holds open (leads).
    pub leading: usize,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct PartitionState {
    pub topic: String,
    pub partition: i32,
    pub assigned: Option<i32>,
    pub leader: Option<i32>,
    pub leader_epoch: u64,
}

#[derive(Debug, Deserialize)]
struct ClusterQuery {
    #[serde(default)]
    partitions: bool,
}

pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/admin/v1/cluster", get(cluster))
        .route("/admin/v1/brokers/{id}/drain", post(drain).delete(undrain))
}

fn json_error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn cluster(State(state): State<HttpState>, Query(q): Query<ClusterQuery>) -> Response {
    let broker = match state.broker() {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let view = state.cluster.view();
    let catalog = state.cluster.catalog().state();
    let assigned = view.partitions_of();
    let mut leading: BTreeMap<i32, usize> = BTreeMap::new();
    let mut partitions = Vec::new();
    for (name, topic) in &view.topics {
        for (i, stream) in topic.partitions.iter().enumerate() {
            let meta = catalog.streams.get(stream);
            let owner = meta.and_then(|s| s.owner).map(|o| o as i32);
            if let Some(o) = owner {
                *leading.entry(o).or_default() += 1;
            }
            if q.partitions {
                partitions.push(PartitionState {
                    topic: name.clone(),
                    partition: i as i32,
                    assigned: view.assigned(name, i as i32),
                    leader: view.leader(&catalog, topic, i as i32),
                    leader_epoch: meta.map_or(0, |s| s.epoch),
                });
            }
        }
    }
    let brokers = view
        .brokers
        .values()
        .map(|b| {
            let n_assigned = assigned.get(&b.node_id).map_or(0, Vec::len);
            let n_leading = leading.get(&b.node_id).copied().unwrap_or(0);
            let all_led = assigned
                .get(&b.node_id)
                .is_none_or(|ps| ps.iter().all(|(t, p)| view.leader(&catalog, &view.topics[t], *p) == Some(b.node_id)));
            BrokerState {
                node_id: b.node_id,
                host: b.host.clone(),
                port: b.port,
                rack: b.rack.clone(),
                wal: b.wal,
                alive: b.alive,
                draining: b.draining,
                leaving: b.leaving,
                ready: b.eligible() && all_led,
                assigned: n_assigned,
                leading: n_leading,
            }
        })
        .collect();
    Json(ClusterState {
        cluster_id: broker.cluster_id.clone(),
        controller: view.controller.as_ref().map(|c| ControllerState { node_id: c.node_id, epoch: c.epoch }),
        brokers,
        partitions,
    })
    .into_response()
}

async fn drain(State(state): State<HttpState>, Path(id): Path<i32>) -> Response {
    set_draining(&state, id, true).await
}

async fn undrain(State(state): State<HttpState>, Path(id): Path<i32>) -> Response {
    set_draining(&state, id, false).await
}

async fn set_draining(state: &HttpState, id: i32, draining: bool) -> Response {
    for _ in 0..16 {
        let view = state.cluster.view();
        let Some(raw) = view.raw.get(&broker_key(id)).cloned() else {
            return json_error(StatusCode::NOT_FOUND, format!("broker {id} is not registered"));
        };
        let mut record: BrokerRecord = match serde_json::from_str(&raw) {
            Ok(r) => r,
            Err(e) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, format!("unreadable broker record: {e}")),
        };
        if record.draining != draining {
            record.draining = draining;
            let value = match serde_json::to_string(&record) {
                Ok(v) => v,
                Err(e) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            };
            let records = vec![
                CatalogRecord::KvExpect { key: broker_key(id), digest: Some(kv_digest(&raw)) },
                CatalogRecord::KvPut { key: broker_key(id), value },
            ];
            match state.cluster.catalog().submit(records).await {
                Ok(_) => {}
                Err(automq_storage::Error::PreconditionFailed(_)) => continue,
                Err(e) => return json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            }
            tracing::info!(broker = id, draining, "drain changed through the admin API");
        }
        return (StatusCode::ACCEPTED, Json(serde_json::json!({ "node_id": id, "draining": draining })))
            .into_response();
    }
    json_error(StatusCode::CONFLICT, format!("broker {id}'s record kept changing; try again"))
}
