//! The brokers' internal API, JSON over the HTTP listener (`/internal/v1/...`), and its client:
//!
//! - `POST metadata/submit`: a follower's catalog submission, forwarded to the controller (the
//!   metadata log's writer). 200 `{"seq"}`; 409 a refusal (the records do not apply); 503 the
//!   outcome is unknown (not the controller any more, an append failed): retry, same records.
//! - `GET metadata/feed?after=N&wait_ms=M`: committed entries after N (long poll), or the whole
//!   state for a follower further behind than the controller remembers.
//! - `POST heartbeat`: a broker's registration, liveness and partition load, to the controller.
//!
//! Wire formats are in `docs/cluster.md`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use automq_storage::metadata::catalog::{Feed, LogWriter};
use automq_storage::metadata::CatalogRecord;
use automq_storage::Error as StorageError;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::records::ControllerClaim;
use super::Identity;
use crate::http::HttpState;

/// Bytes per second into and out of one partition, as its leader measured them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionLoad {
    pub topic: String,
    pub partition: i32,
    pub bytes_in: f64,
    pub bytes_out: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    #[serde(flatten)]
    pub identity: Identity,
    #[serde(default)]
    pub load: Vec<PartitionLoad>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// This incarnation was declared dead and its WAL taken over: it must stop.
    pub fenced: bool,
}

/// A storage error as it crosses the wire (only what callers distinguish).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum WireError {
    Unavailable { message: String },
    InvalidMetadata { message: String },
    PreconditionFailed { message: String },
    StaleEpoch { stream_id: u64, epoch: u64, current: u64 },
    StreamNotFound { stream_id: u64 },
    OffsetOutOfRange { stream_id: u64, offset: u64, start_offset: u64, end_offset: u64 },
    Other { message: String },
}

impl WireError {
    fn of(e: &StorageError) -> (StatusCode, Self) {
        let refused = |w| (StatusCode::CONFLICT, w);
        match e {
            StorageError::Unavailable(m) => {
                (StatusCode::SERVICE_UNAVAILABLE, WireError::Unavailable { message: m.clone() })
            }
            StorageError::InvalidMetadata(m) => refused(WireError::InvalidMetadata { message: m.clone() }),
            StorageError::PreconditionFailed(m) => refused(WireError::PreconditionFailed { message: m.clone() }),
            StorageError::StaleEpoch { stream_id, epoch, current } => {
                refused(WireError::StaleEpoch { stream_id: *stream_id, epoch: *epoch, current: *current })
            }
            StorageError::StreamNotFound(id) => refused(WireError::StreamNotFound { stream_id: *id }),
            StorageError::OffsetOutOfRange { stream_id, offset, start_offset, end_offset } => {
                refused(WireError::OffsetOutOfRange {
                    stream_id: *stream_id,
                    offset: *offset,
                    start_offset: *start_offset,
                    end_offset: *end_offset,
                })
            }
            other => refused(WireError::Other { message: other.to_string() }),
        }
    }

    fn into_storage(self) -> StorageError {
        match self {
            WireError::Unavailable { message } => StorageError::Unavailable(message),
            WireError::InvalidMetadata { message } | WireError::Other { message } => {
                StorageError::InvalidMetadata(message)
            }
            WireError::PreconditionFailed { message } => StorageError::PreconditionFailed(message),
            WireError::StaleEpoch { stream_id, epoch, current } => {
                StorageError::StaleEpoch { stream_id, epoch, current }
            }
            WireError::StreamNotFound { stream_id } => StorageError::StreamNotFound(stream_id),
            WireError::OffsetOutOfRange { stream_id, offset, start_offset, end_offset } => {
                StorageError::OffsetOutOfRange { stream_id, offset, start_offset, end_offset }
            }
        }
    }
}

fn error_response(e: &StorageError) -> Response {
    let (status, wire) = WireError::of(e);
    (status, Json(wire)).into_response()
}

#[derive(Debug, Serialize, Deserialize)]
struct Submitted {
    seq: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct FeedReply {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    entries: Vec<(u64, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state: Option<String>,
}

#[derive(Debug, Deserialize)]
struct FeedQuery {
    after: u64,
    #[serde(default)]
    wait_ms: u64,
}

/// The internal routes, for the broker's HTTP router.
pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/internal/v1/metadata/submit", post(submit))
        .route("/internal/v1/metadata/feed", get(feed))
        .route("/internal/v1/heartbeat", post(heartbeat))
        .route("/internal/v1/controller", get(controller))
        .route("/internal/v1/relay/produce", post(super::relay::accept))
        .route("/internal/v1/txn/markers", post(crate::txn::markers::accept))
        .route("/internal/v1/groups/commit", post(crate::link::groups::accept))
}

/// The controller as this broker knows it (`null`: none holds the role).
async fn controller(State(state): State<HttpState>) -> Response {
    Json(state.cluster.view().controller.clone()).into_response()
}

async fn submit(State(state): State<HttpState>, Json(records): Json<Vec<CatalogRecord>>) -> Response {
    match state.cluster.catalog().accept_forwarded(records).await {
        Ok(seq) => Json(Submitted { seq }).into_response(),
        Err(e) => error_response(&e),
    }
}

async fn feed(State(state): State<HttpState>, Query(q): Query<FeedQuery>) -> Response {
    let wait = Duration::from_millis(q.wait_ms.min(30_000));
    match state.cluster.catalog().feed(q.after, wait).await {
        Ok(Feed::Entries(entries)) => Json(FeedReply {
            entries: entries.into_iter().map(|(seq, p)| (seq, String::from_utf8_lossy(&p).into_owned())).collect(),
            state: None,
        })
        .into_response(),
        Ok(Feed::State(json)) => {
            Json(FeedReply { entries: Vec::new(), state: Some(String::from_utf8_lossy(&json).into_owned()) })
                .into_response()
        }
        Err(e) => error_response(&e),
    }
}

async fn heartbeat(State(state): State<HttpState>, Json(hb): Json<Heartbeat>) -> Response {
    match state.cluster.controller_heartbeat(hb) {
        Some(reply) => Json(reply).into_response(),
        None => error_response(&StorageError::Unavailable("this broker is not the controller".into())),
    }
}

/// What the client learns from a feed request.
#[derive(Debug)]
pub enum Fed {
    Entries(Vec<(u64, Bytes)>),
    State(Bytes),
}

/// Calls other brokers' internal API.
#[derive(Debug, Clone)]
pub struct RpcClient {
    http: reqwest::Client,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Unavailable(format!("{what}: {e}"))
}

impl RpcClient {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        RpcClient { http }
    }

    /// The HTTP client brokers reach each other with (one connection pool per process).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    async fn decode<T: serde::de::DeserializeOwned>(what: &str, r: reqwest::Response) -> Result<T, StorageError> {
        let status = r.status();
        if status.is_success() {
            return r.json::<T>().await.map_err(|e| unavailable(what, e));
        }
        match r.json::<WireError>().await {
            Ok(w) => Err(w.into_storage()),
            Err(e) => Err(unavailable(what, format!("HTTP {status}: {e}"))),
        }
    }

    pub async fn submit(&self, addr: &str, records: &[CatalogRecord]) -> Result<u64, StorageError> {
        let what = "forwarding metadata to the controller";
        let r = self
            .http
            .post(format!("http://{addr}/internal/v1/metadata/submit"))
            .timeout(Duration::from_secs(10))
            .json(records)
            .send()
            .await
            .map_err(|e| unavailable(what, e))?;
        Ok(Self::decode::<Submitted>(what, r).await?.seq)
    }

    /// Long-polls for entries after `after` (the controller answers within `wait`); gives up
    /// after `timeout` (a controller that does not answer in time counts as unreachable).
    pub async fn feed(&self, addr: &str, after: u64, wait: Duration, timeout: Duration) -> Result<Fed, StorageError> {
        let what = "following the controller's metadata";
        let r = self
            .http
            .get(format!("http://{addr}/internal/v1/metadata/feed"))
            .query(&[("after", after), ("wait_ms", wait.as_millis() as u64)])
            .timeout(timeout.max(wait + Duration::from_millis(200)))
            .send()
            .await
            .map_err(|e| unavailable(what, e))?;
        let reply = Self::decode::<FeedReply>(what, r).await?;
        Ok(match reply.state {
            Some(state) => Fed::State(Bytes::from(state)),
            None => Fed::Entries(reply.entries.into_iter().map(|(s, p)| (s, Bytes::from(p))).collect()),
        })
    }

    /// Hands a relayed produce to the partition's leader (see [`super::relay`]).
    pub(crate) async fn relay(
        &self,
        addr: &str,
        request: &super::relay::RelayRequest,
        timeout: Duration,
    ) -> Result<super::relay::RelayReply, StorageError> {
        let what = "relaying a produce to the leader";
        let r = self
            .http
            .post(format!("http://{addr}/internal/v1/relay/produce"))
            .timeout(timeout)
            .json(request)
            .send()
            .await
            .map_err(|e| unavailable(what, e))?;
        Self::decode(what, r).await
    }

    /// Who `addr` believes the controller is.
    pub async fn controller(&self, addr: &str) -> Result<Option<ControllerClaim>, StorageError> {
        let what = "asking who the controller is";
        let r = self
            .http
            .get(format!("http://{addr}/internal/v1/controller"))
            .timeout(Duration::from_millis(500))
            .send()
            .await
            .map_err(|e| unavailable(what, e))?;
        Self::decode(what, r).await
    }

    pub async fn heartbeat(
        &self,
        addr: &str,
        hb: &Heartbeat,
        timeout: Duration,
    ) -> Result<HeartbeatReply, StorageError> {
        let what = "heartbeat to the controller";
        let r = self
            .http
            .post(format!("http://{addr}/internal/v1/heartbeat"))
            .timeout(timeout)
            .json(hb)
            .send()
            .await
            .map_err(|e| unavailable(what, e))?;
        Self::decode(what, r).await
    }
}

impl Default for RpcClient {
    fn default() -> Self {
        RpcClient::new()
    }
}

/// Forwards a follower's submissions to whichever broker it currently follows.
#[derive(Debug)]
pub struct ControllerLink {
    pub rpc: RpcClient,
    /// host:port of the controller's HTTP listener.
    pub target: Arc<RwLock<Option<String>>>,
}

#[async_trait]
impl LogWriter for ControllerLink {
    async fn forward(&self, records: &[CatalogRecord]) -> Result<u64, StorageError> {
        let Some(addr) = self.target.read().clone() else {
            return Err(StorageError::Unavailable("no controller known yet".into()));
        };
        self.rpc.submit(&addr, records).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_their_kind_across_the_wire() {
        let cases = [
            StorageError::Unavailable("x".into()),
            StorageError::PreconditionFailed("k".into()),
            StorageError::StaleEpoch { stream_id: 1, epoch: 2, current: 3 },
            StorageError::StreamNotFound(4),
            StorageError::OffsetOutOfRange { stream_id: 1, offset: 9, start_offset: 0, end_offset: 5 },
        ];
        for e in cases {
            let (_, wire) = WireError::of(&e);
            let back: WireError = serde_json::from_str(&serde_json::to_string(&wire).unwrap()).unwrap();
            assert_eq!(back.into_storage().to_string(), e.to_string());
        }
        assert_eq!(WireError::of(&StorageError::Unavailable("x".into())).0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(WireError::of(&StorageError::StreamNotFound(1)).0, StatusCode::CONFLICT);
    }
}
