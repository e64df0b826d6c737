//! Heartbeat: keeps a member's session alive and tells it when to rejoin
//! (REBALANCE_IN_PROGRESS).

use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, HeartbeatRequest, HeartbeatResponse};
use kafka_protocol::ResponseError;
use tokio::time::Instant;

use super::count_error;
use super::group::{Group, GroupState};
use crate::broker::Broker;
use crate::groups::GroupCoordinator;

pub(super) fn handle(broker: &Arc<Broker>, r: HeartbeatRequest, _version: i16) -> HeartbeatResponse {
    let group_id = r.group_id.0.to_string();
    let instance_id = r.group_instance_id.map(|s| s.to_string());
    let result = if group_id.is_empty() {
        Err(ResponseError::InvalidGroupId)
    } else if let Err(e) = GroupCoordinator::coordinates(broker, &group_id) {
        Err(e)
    } else {
        let mut groups = broker.groups.lock();
        match groups.get_mut(&group_id) {
            None => Err(ResponseError::UnknownMemberId),
            Some(group) => group.heartbeat(&r.member_id, instance_id.as_deref(), r.generation_id, Instant::now()),
        }
    };
    let code = result.err().map(|e| e.code()).unwrap_or(0);
    count_error(broker, &crate::handlers::api_name(ApiKey::Heartbeat), code);
    HeartbeatResponse::default().with_error_code(code)
}

impl Group {
    pub(crate) fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
        now: Instant,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if self.state == GroupState::Empty {
            return Err(ResponseError::UnknownMemberId);
        }
        self.validate_member(member_id, instance_id)?;
        if generation_id != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat = now;
        }
        match self.state {
            GroupState::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            _ => Ok(()),
        }
    }
}
