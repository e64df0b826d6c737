//! Group API handlers (FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, OffsetFetch, DescribeGroups, ListGroups, DeleteGroups).

use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};

use crate::broker::Broker;

/// Versions of the group APIs this broker implements.
pub fn supported_versions(_api_key: ApiKey) -> Option<(i16, i16)> {
    None
}

/// Handles a group API request; `None` for APIs that are not group APIs.
pub async fn dispatch(_broker: &Arc<Broker>, _request: RequestKind, _version: i16) -> Option<ResponseKind> {
    None
}
