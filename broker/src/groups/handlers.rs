//! Group API handlers (FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, OffsetFetch, DescribeGroups, ListGroups, DeleteGroups): versions and routing.

use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};

use super::{
    delete_groups, describe_groups, find_coordinator, heartbeat, join_group, leave_group, list_groups, offset_commit,
    offset_fetch, sync_group, ClientInfo,
};
use crate::broker::Broker;

/// Versions of the group APIs this broker implements (within what the codec supports).
pub fn supported_versions(api_key: ApiKey) -> Option<(i16, i16)> {
    let ours = match api_key {
        ApiKey::FindCoordinator => (0, 4),
        ApiKey::JoinGroup => (0, 9),
        ApiKey::SyncGroup => (0, 5),
        ApiKey::Heartbeat => (0, 4),
        ApiKey::LeaveGroup => (0, 5),
        ApiKey::OffsetCommit => (2, 8),
        ApiKey::OffsetFetch => (1, 8),
        ApiKey::DescribeGroups => (0, 5),
        ApiKey::ListGroups => (0, 4),
        ApiKey::DeleteGroups => (0, 2),
        ApiKey::TxnOffsetCommit => (0, 3),
        _ => return None,
    };
    let codec = api_key.valid_versions();
    let (min, max) = (ours.0.max(codec.min), ours.1.min(codec.max));
    (min <= max).then_some((min, max))
}

/// Handles a group API request, knowing the client (its id and address name the members it
/// creates and show in DescribeGroups); `None` for APIs that are not group APIs.
pub async fn dispatch(
    broker: &Arc<Broker>,
    request: RequestKind,
    version: i16,
    client: &ClientInfo,
) -> Option<ResponseKind> {
    Some(match request {
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(find_coordinator::handle(broker, r, version, client.listener.as_deref()))
        }
        RequestKind::JoinGroup(r) => ResponseKind::JoinGroup(join_group::handle(broker, r, version, client).await),
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(sync_group::handle(broker, r, version).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(heartbeat::handle(broker, r, version)),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(leave_group::handle(broker, r, version)),
        RequestKind::OffsetCommit(r) => ResponseKind::OffsetCommit(offset_commit::handle(broker, r, version).await),
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(offset_fetch::handle(broker, r, version)),
        RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(describe_groups::handle(broker, r, version)),
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(list_groups::handle(broker, r, version)),
        RequestKind::DeleteGroups(r) => ResponseKind::DeleteGroups(delete_groups::handle(broker, r, version).await),
        RequestKind::TxnOffsetCommit(r) => {
            ResponseKind::TxnOffsetCommit(super::txn_offset_commit::handle(broker, r, version).await)
        }
        _ => return None,
    })
}
