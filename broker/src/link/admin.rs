//! The links part of the admin API (`docs/admin-api.md`): `PUT`, `GET` and `DELETE
//! /admin/v1/links/{name}`, plus `GET /internal/v1/links/{name}/partitions`, which each broker
//! answers with the mirror partitions it leads (the admin `GET` gathers them from every live
//! broker).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{links, Deleted, LinkSpec, PartitionState, PutError, LINK_CONFIG};
use crate::broker::Broker;
use crate::http::HttpState;

pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/admin/v1/links/{name}", get(get_link).put(put_link).delete(delete_link))
        .route("/internal/v1/links/{name}/partitions", get(local_partitions))
}

fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

async fn put_link(State(state): State<HttpState>, Path(name): Path<String>, body: axum::body::Bytes) -> Response {
    let broker = match state.broker() {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if name.is_empty() || name.len() > 200 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return json_error(
            StatusCode::BAD_REQUEST,
            format!("invalid link name {name:?} (letters, digits, '-', '_', '.')"),
        );
    }
    let spec: LinkSpec = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, format!("invalid link: {e}")),
    };
    match super::put(&broker, &name, &spec).await {
        Ok(()) => {
            tracing::info!(link = name, source = spec.source.bootstrap_servers, "link stored");
            (StatusCode::OK, Json(serde_json::json!({ "name": name }))).into_response()
        }
        Err(PutError::Invalid(m)) => json_error(StatusCode::BAD_REQUEST, m),
        Err(PutError::Unavailable(m)) => json_error(StatusCode::SERVICE_UNAVAILABLE, m),
    }
}

#[derive(Debug, Deserialize)]
struct DeleteQuery {
    #[serde(default)]
    force: bool,
}

async fn delete_link(
    State(state): State<HttpState>,
    Path(name): Path<String>,
    Query(query): Query<DeleteQuery>,
) -> Response {
    let broker = match state.broker() {
        Ok(b) => b,
        Err(r) => return *r,
    };
    match super::delete(&broker, &name, query.force).await {
        Ok(Deleted::Deleted) => {
            (StatusCode::OK, Json(serde_json::json!({ "name": name, "deleted": true }))).into_response()
        }
        Ok(Deleted::NoSuchLink) => json_error(StatusCode::NOT_FOUND, format!("no link {name:?}")),
        Ok(Deleted::MirrorsLeft(topics)) => json_error(
            StatusCode::CONFLICT,
            format!(
                "link {name:?} still has mirror topics ({}): promote them, or delete with ?force=true to make them ordinary topics",
                topics.join(", ")
            ),
        ),
        Err(m) => json_error(StatusCode::SERVICE_UNAVAILABLE, m),
    }
}

async fn local_partitions(State(state): State<HttpState>, Path(name): Path<String>) -> Response {
    match state.broker() {
        Ok(b) => Json(b.mirrors.states(&name)).into_response(),
        Err(r) => *r,
    }
}

/// `GET /admin/v1/links/{name}`: per topic, state and lag summed over partitions.
#[derive(Debug, Serialize, Deserialize)]
struct LinkStatus {
    name: String,
    paused: bool,
    /// A link-level problem (listing the source's topics).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    topics: Vec<TopicStatus>,
}

#[derive(Debug, Serialize, Deserialize)]
struct TopicStatus {
    topic: String,
    state: String,
    partitions: i32,
    lag: i64,
    last_error: Option<String>,
    partition_states: Vec<PartitionState>,
}

async fn get_link(State(state): State<HttpState>, Path(name): Path<String>) -> Response {
    let broker = match state.broker() {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let Some(spec) = links(&broker).remove(&name) else {
        return json_error(StatusCode::NOT_FOUND, format!("no link {name:?}"));
    };
    let states = cluster_states(&broker, &name).await.unwrap_or_default();
    let mut by_topic: BTreeMap<String, Vec<PartitionState>> = BTreeMap::new();
    for s in states {
        by_topic.entry(s.topic.clone()).or_default().push(s);
    }
    let mut topics = Vec::new();
    // Mirror topics of this link, and topics it promoted (no longer carrying the link).
    let names: Vec<String> = broker
        .topics()
        .into_iter()
        .filter(|t| t.meta.configs.get(LINK_CONFIG) == Some(&name) || spec.promotion(&t.meta.name).is_some())
        .map(|t| t.meta.name.clone())
        .collect();
    for topic_name in names {
        let Some(topic) = broker.topic(&topic_name) else { continue };
        let partitions = topic.partition_count() as i32;
        let mirrored = topic.meta.configs.get(LINK_CONFIG) == Some(&name);
        let parts = by_topic.remove(&topic_name).unwrap_or_default();
        let lag = parts.iter().map(PartitionState::lag).sum();
        let last_error = parts.iter().find_map(|p| p.last_error.clone());
        let state = if !mirrored {
            "promoted"
        } else if spec.paused {
            "paused"
        } else if last_error.is_some() {
            "failed"
        } else if spec.promotion(&topic_name).is_some() {
            "promoting"
        } else {
            "mirroring"
        };
        topics.push(TopicStatus {
            topic: topic_name,
            state: state.into(),
            partitions,
            lag,
            last_error,
            partition_states: parts,
        });
    }
    let status =
        LinkStatus { name: name.clone(), paused: spec.paused, error: broker.mirrors.link_error(&name), topics };
    Json(status).into_response()
}

/// The states of `link`'s mirror partitions from every live broker.
pub async fn cluster_states(broker: &Broker, link: &str) -> Result<Vec<PartitionState>, String> {
    let view = broker.cluster.view();
    let mut out = Vec::new();
    let http = broker.cluster.rpc().http();
    for b in view.brokers.values().filter(|b| b.alive) {
        if b.node_id == broker.cluster.node_id() {
            out.extend(broker.mirrors.states(link));
            continue;
        }
        let url = format!("http://{}/internal/v1/links/{link}/partitions", b.http);
        let states: Vec<PartitionState> = http
            .get(&url)
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?
            .json()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        out.extend(states);
    }
    Ok(out)
}
