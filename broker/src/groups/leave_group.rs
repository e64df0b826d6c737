//! LeaveGroup: members leave (v3+: several at once, also by `group.instance.id` alone, which
//! is how administrators remove static members); the others rebalance.

use std::sync::Arc;

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{ApiKey, LeaveGroupRequest, LeaveGroupResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::time::Instant;

use super::group::{Group, GroupState};
use super::{count_error, persist_if_needed, GroupSettings};
use crate::broker::Broker;
use crate::groups::GroupCoordinator;

pub(super) fn handle(broker: &Arc<Broker>, r: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let group_id = r.group_id.0.to_string();
    let leaving: Vec<(String, Option<String>)> = if version >= 3 {
        r.members
            .iter()
            .map(|m| (m.member_id.to_string(), m.group_instance_id.as_ref().map(|s| s.to_string())))
            .collect()
    } else {
        vec![(r.member_id.to_string(), None)]
    };
    let settings = broker.groups.settings();
    let (group_error, member_errors) = leave(broker, &group_id, &leaving, &settings);
    let api = crate::handlers::api_name(ApiKey::LeaveGroup);
    count_error(broker, &api, group_error.map(|e| e.code()).unwrap_or(0));
    for e in member_errors.iter().flatten() {
        count_error(broker, &api, e.code());
    }
    if version >= 3 {
        let members = leaving
            .into_iter()
            .zip(&member_errors)
            .map(|((member_id, instance_id), e)| {
                MemberResponse::default()
                    .with_member_id(StrBytes::from_string(member_id))
                    .with_group_instance_id(instance_id.map(StrBytes::from_string))
                    .with_error_code(e.map(|e| e.code()).unwrap_or(0))
            })
            .collect();
        LeaveGroupResponse::default().with_error_code(group_error.map(|e| e.code()).unwrap_or(0)).with_members(members)
    } else {
        // One member: its error is the response's.
        let error = group_error.or(member_errors.first().copied().flatten());
        LeaveGroupResponse::default().with_error_code(error.map(|e| e.code()).unwrap_or(0))
    }
}

/// Removes members; returns the group-level error and one error per member.
fn leave(
    broker: &Arc<Broker>,
    group_id: &str,
    leaving: &[(String, Option<String>)],
    settings: &GroupSettings,
) -> (Option<ResponseError>, Vec<Option<ResponseError>>) {
    if group_id.is_empty() {
        return (Some(ResponseError::InvalidGroupId), vec![Some(ResponseError::InvalidGroupId); leaving.len()]);
    }
    if let Err(e) = GroupCoordinator::coordinates(broker, group_id) {
        return (Some(e), vec![None; leaving.len()]);
    }
    let mut groups = broker.groups.lock();
    let Some(group) = groups.get_mut(group_id) else {
        return (None, vec![Some(ResponseError::UnknownMemberId); leaving.len()]);
    };
    if group.state == GroupState::Dead {
        return (
            Some(ResponseError::CoordinatorNotAvailable),
            vec![Some(ResponseError::CoordinatorNotAvailable); leaving.len()],
        );
    }
    let now = Instant::now();
    let errors = leaving
        .iter()
        .map(|(member_id, instance_id)| group.leave(member_id, instance_id.as_deref(), now, settings).err())
        .collect();
    persist_if_needed(broker, group);
    drop(groups);
    broker.groups.deadlines_changed();
    (None, errors)
}

impl Group {
    pub(crate) fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
        settings: &GroupSettings,
    ) -> Result<(), ResponseError> {
        let id = if member_id.is_empty() {
            // Removal by instance id alone (v4+, administrators).
            instance_id.and_then(|i| self.static_members.get(i).cloned()).ok_or(ResponseError::UnknownMemberId)?
        } else if self.pending_members.contains_key(member_id) {
            self.remove_pending_member(member_id, now);
            return Ok(());
        } else {
            self.validate_member(member_id, instance_id)?;
            member_id.to_string()
        };
        tracing::info!(group = %self.id, member = %id, "member leaves");
        self.remove_member_and_rebalance(&id, now, settings);
        Ok(())
    }
}
