//! DescribeGroups: state, protocol and members of groups. As in Kafka, members carry their
//! metadata and assignment only while the group is Stable, and an unknown group is reported
//! as Dead with no error.

use std::sync::Arc;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::group::GroupState;
use crate::broker::Broker;
use crate::groups::GroupCoordinator;

pub(super) fn handle(broker: &Arc<Broker>, r: DescribeGroupsRequest, _version: i16) -> DescribeGroupsResponse {
    let groups = broker.groups.lock();
    let described = r
        .groups
        .into_iter()
        .map(|id| {
            if let Err(e) = GroupCoordinator::coordinates(broker, id.0.as_str()) {
                return DescribedGroup::default().with_group_id(id).with_error_code(e.code());
            }
            let Some(group) = groups.get(id.0.as_str()) else {
                return DescribedGroup::default()
                    .with_group_id(id)
                    .with_group_state(StrBytes::from_static_str(GroupState::Dead.name()));
            };
            let stable = group.state == GroupState::Stable;
            let protocol = if stable { group.protocol.clone().unwrap_or_default() } else { String::new() };
            let members = group
                .members
                .values()
                .map(|m| {
                    let member = DescribedGroupMember::default()
                        .with_member_id(StrBytes::from_string(m.id.clone()))
                        .with_group_instance_id(m.instance_id.clone().map(StrBytes::from_string))
                        .with_client_id(StrBytes::from_string(m.client_id.clone()))
                        .with_client_host(StrBytes::from_string(m.client_host.clone()));
                    if stable {
                        member.with_member_metadata(m.metadata(&protocol)).with_member_assignment(m.assignment.clone())
                    } else {
                        member
                    }
                })
                .collect();
            DescribedGroup::default()
                .with_group_id(id)
                .with_group_state(StrBytes::from_static_str(group.state.name()))
                .with_protocol_type(StrBytes::from_string(group.protocol_type.clone().unwrap_or_default()))
                .with_protocol_data(StrBytes::from_string(protocol))
                .with_members(members)
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(described)
}
