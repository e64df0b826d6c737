//! ListGroups: every group with its protocol type and (v4+) state, optionally only those in
//! the given states (compared case-insensitively, as Kafka does).

use std::sync::Arc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::group::GroupState;
use crate::broker::Broker;

pub(super) fn handle(broker: &Arc<Broker>, r: ListGroupsRequest, version: i16) -> ListGroupsResponse {
    let wanted: Vec<String> = r.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let groups = broker.groups.lock();
    let mut listed: Vec<ListedGroup> = groups
        .values()
        .filter(|g| g.state != GroupState::Dead)
        .filter(|g| wanted.is_empty() || wanted.iter().any(|w| *w == g.state.name().to_lowercase()))
        .map(|g| {
            let listed = ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(g.id.clone())))
                .with_protocol_type(StrBytes::from_string(g.protocol_type.clone().unwrap_or_default()));
            if version >= 4 {
                listed.with_group_state(StrBytes::from_static_str(g.state.name()))
            } else {
                listed
            }
        })
        .collect();
    listed.sort_by(|a, b| a.group_id.0.cmp(&b.group_id.0));
    ListGroupsResponse::default().with_groups(listed)
}
