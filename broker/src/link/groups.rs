//! Consumer-group offset sync: the committed offsets of the link's groups on the source are
//! committed here for the link's mirror topics, so a group stopped on the source resumes here
//! where it left off.
//!
//! The commit is an OffsetCommit as a standalone consumer (generation -1, no member id), handed
//! to the group's coordinator in-process or over the internal API (`POST
//! /internal/v1/groups/commit`), never through a Kafka listener, so it works whatever
//! authentication the listeners require. The coordinator accepts it only while the group has
//! no active members here, which is exactly when syncing is wanted. Once consumers run here, their own
//! commits win and the sync leaves the group alone. An offset beyond what the mirror holds yet
//! waits for the next round (a consumer must not start past the mirrored data).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::{
    GroupId, ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest, RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::client::{SourceConnection, SourceError};
use super::{connect_any, source_metadata, LinkSpec, Matcher, LINK_CONFIG};
use crate::broker::Broker;

/// Committed offsets: topic -> partition -> offset.
type Offsets = BTreeMap<String, BTreeMap<i32, i64>>;

/// One round for one link; returns how many partition offsets were committed here.
pub async fn sync(broker: &Arc<Broker>, link: &str, spec: &LinkSpec) -> Result<usize, String> {
    if spec.consumer_groups.is_empty() {
        return Ok(0);
    }
    let matchers = super::matchers(&spec.consumer_groups)?;
    let mirror_topics: BTreeSet<String> = broker
        .topics()
        .into_iter()
        .filter(|t| t.meta.configs.get(LINK_CONFIG).map(String::as_str) == Some(link))
        .map(|t| t.meta.name.clone())
        .collect();
    if mirror_topics.is_empty() {
        return Ok(0);
    }
    let client_id = format!("automq-link-{link}");
    let mut source = connect_any(&spec.source, &client_id).await.map_err(|e| e.0)?;
    let groups = source_groups(&mut source, &matchers).await.map_err(|e| e.0)?;
    // How far each mirror partition got, from the brokers leading them.
    let ends: BTreeMap<(String, i32), i64> = super::admin::cluster_states(broker, link)
        .await?
        .into_iter()
        .map(|s| ((s.topic, s.partition), s.next_offset))
        .collect();
    let mut committed = 0;
    for group in groups {
        let offsets = match fetch_offsets(&mut source, &group).await {
            Ok(o) => o,
            Err(e) => {
                tracing::debug!(link, group, error = %e, "cannot read the group's source offsets");
                continue;
            }
        };
        let mut wanted: Offsets = BTreeMap::new();
        for (topic, partitions) in offsets {
            if !mirror_topics.contains(&topic) {
                continue;
            }
            for (partition, offset) in partitions {
                // Only offsets the mirror already holds.
                let end = ends.get(&(topic.clone(), partition)).copied();
                if offset >= 0 && end.is_some_and(|end| offset <= end) {
                    wanted.entry(topic.clone()).or_default().insert(partition, offset);
                }
            }
        }
        if wanted.is_empty() {
            continue;
        }
        match commit_here(broker, &group, &wanted).await {
            Ok(n) => committed += n,
            Err(e) => tracing::debug!(link, group, error = %e, "offset sync skipped"),
        }
    }
    Ok(committed)
}

/// The source's groups matching the selectors (exact names without asking).
async fn source_groups(conn: &mut SourceConnection, matchers: &[Matcher]) -> Result<Vec<String>, SourceError> {
    let mut groups: BTreeSet<String> =
        matchers.iter().filter_map(|m| if let Matcher::Name(n) = m { Some(n.clone()) } else { None }).collect();
    if matchers.iter().any(|m| matches!(m, Matcher::Pattern(_))) {
        // ListGroups answers for one broker's groups: ask every source broker.
        let metadata = source_metadata(conn, Some(vec![])).await?;
        for b in &metadata.brokers {
            let address = format!("{}:{}", b.host, b.port);
            let mut other;
            let c = if address == conn.address() {
                &mut *conn
            } else {
                other = conn.sibling(&address).await?;
                &mut other
            };
            let (response, _) = c.call(&ListGroupsRequest::default(), 4).await?;
            for g in response.groups {
                let id = g.group_id.0.to_string();
                if matchers.iter().any(|m| m.matches(&id)) {
                    groups.insert(id);
                }
            }
        }
    }
    Ok(groups.into_iter().collect())
}

/// Connects to `group`'s coordinator through `conn`'s cluster.
async fn coordinator(conn: &mut SourceConnection, group: &str) -> Result<Option<SourceConnection>, SourceError> {
    let request = FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_string())).with_key_type(0);
    let (response, _) = conn.call(&request, 3).await?;
    if response.error_code != 0 {
        return Err(SourceError(format!("FindCoordinator({group}) error {}", response.error_code)));
    }
    let address = format!("{}:{}", response.host, response.port);
    if address == conn.address() {
        return Ok(None);
    }
    Ok(Some(conn.sibling(&address).await?))
}

async fn fetch_offsets(source: &mut SourceConnection, group: &str) -> Result<Offsets, SourceError> {
    let mut other = coordinator(source, group).await?;
    let conn = other.as_mut().unwrap_or(source);
    let request = OffsetFetchRequest::default().with_group_id(GroupId(group.to_string().into())).with_topics(None);
    let (response, _) = conn.call(&request, 7).await?;
    if response.error_code != 0 {
        return Err(SourceError(format!("OffsetFetch({group}) error {}", response.error_code)));
    }
    let mut out: Offsets = BTreeMap::new();
    for t in response.topics {
        for p in t.partitions {
            if p.error_code == 0 && p.committed_offset >= 0 {
                out.entry(t.name.0.to_string()).or_default().insert(p.partition_index, p.committed_offset);
            }
        }
    }
    Ok(out)
}

/// A commit handed to the group's coordinator over the internal API.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct CommitRequest {
    group: String,
    offsets: Offsets,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct CommitReply {
    committed: usize,
    #[serde(default)]
    error: Option<String>,
}

/// Commits `offsets` for `group` on this cluster as a standalone consumer, through the group's
/// coordinator; refused while the group has members here. Returns the partitions committed.
async fn commit_here(broker: &Arc<Broker>, group: &str, offsets: &Offsets) -> Result<usize, SourceError> {
    let view = broker.cluster.view();
    let state = broker.engine.catalog().state();
    let topic =
        view.topics.get(crate::broker::OFFSETS_TOPIC).ok_or_else(|| SourceError("no offsets topic yet".into()))?;
    let index = crate::groups::records::partition_for(group, topic.partitions.len()) as i32;
    let coordinator = view
        .leader(&state, topic, index)
        .and_then(|id| view.brokers.get(&id))
        .ok_or_else(|| SourceError(format!("group {group}'s coordinator is moving")))?;
    if coordinator.node_id == broker.config.node_id {
        return commit_local(broker, group, offsets).await.map_err(SourceError);
    }
    let request = CommitRequest { group: group.to_string(), offsets: offsets.clone() };
    let reply: CommitReply = async {
        let r = broker
            .cluster
            .rpc()
            .http()
            .post(format!("http://{}/internal/v1/groups/commit", coordinator.http))
            .timeout(std::time::Duration::from_secs(30))
            .json(&request)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("HTTP {}", r.status()));
        }
        r.json().await.map_err(|e| e.to_string())
    }
    .await
    .map_err(|e| SourceError(format!("broker {}: {e}", coordinator.node_id)))?;
    match reply.error {
        Some(e) => Err(SourceError(e)),
        None => Ok(reply.committed),
    }
}

/// On the coordinator: the commit, through the group API handler.
async fn commit_local(broker: &Arc<Broker>, group: &str, offsets: &Offsets) -> Result<usize, String> {
    let topics = offsets
        .iter()
        .map(|(topic, partitions)| {
            OffsetCommitRequestTopic::default().with_name(TopicName(topic.clone().into())).with_partitions(
                partitions
                    .iter()
                    .map(|(p, o)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(*p)
                            .with_committed_offset(*o)
                            .with_committed_leader_epoch(-1)
                    })
                    .collect(),
            )
        })
        .collect();
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(group.to_string().into()))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::default())
        .with_topics(topics);
    let client = crate::groups::ClientInfo {
        client_id: "automq-link-group-sync".into(),
        client_host: String::new(),
        listener: None,
    };
    let response = crate::groups::handlers::dispatch(broker, RequestKind::OffsetCommit(request), 7, &client).await;
    let Some(ResponseKind::OffsetCommit(response)) = response else {
        return Err("the group coordinator gave no OffsetCommit answer".into());
    };
    let mut committed = 0;
    for t in response.topics {
        for p in t.partitions {
            if p.error_code == 0 {
                committed += 1;
            } else {
                return Err(format!("group {group} refused the sync (error {}): it has members here", p.error_code));
            }
        }
    }
    Ok(committed)
}

/// The internal route: commits on this broker, the group's coordinator.
pub(crate) async fn accept(
    axum::extract::State(state): axum::extract::State<crate::http::HttpState>,
    axum::Json(r): axum::Json<CommitRequest>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let broker = match state.broker() {
        Ok(b) => b,
        Err(resp) => return *resp,
    };
    let reply = match commit_local(&broker, &r.group, &r.offsets).await {
        Ok(committed) => CommitReply { committed, error: None },
        Err(e) => CommitReply { committed: 0, error: Some(e) },
    };
    axum::Json(reply).into_response()
}
