//! SyncGroup: after a join phase the leader sends every member's assignment; the others wait
//! for theirs. The leader's assignments are stored (a group metadata record) before anyone is
//! answered and the group becomes Stable, as Kafka does.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::count_error;
use super::group::{Group, GroupState, SyncOutcome};
use super::records::{self, GroupValue, RecordKey};
use crate::broker::Broker;
use crate::groups::GroupCoordinator;

/// One SyncGroup request, version differences resolved.
#[derive(Debug, Clone)]
pub(crate) struct SyncParams {
    pub(crate) group_id: String,
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) generation_id: i32,
    /// v5+: must match the group's, when given.
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) assignments: Vec<(String, Bytes)>,
}

pub(super) async fn handle(broker: &Arc<Broker>, r: SyncGroupRequest, _version: i16) -> SyncGroupResponse {
    let params = SyncParams {
        group_id: r.group_id.0.to_string(),
        member_id: r.member_id.to_string(),
        instance_id: r.group_instance_id.map(|s| s.to_string()),
        generation_id: r.generation_id,
        protocol_type: r.protocol_type.map(|s| s.to_string()),
        protocol_name: r.protocol_name.map(|s| s.to_string()),
        assignments: r.assignments.into_iter().map(|a| (a.member_id.to_string(), a.assignment)).collect(),
    };
    let outcome = sync(broker, params).await;
    let code = outcome.error.map(|e| e.code()).unwrap_or(0);
    count_error(broker, &crate::handlers::api_name(ApiKey::SyncGroup), code);
    SyncGroupResponse::default()
        .with_error_code(code)
        .with_protocol_type(outcome.protocol_type.map(StrBytes::from_string))
        .with_protocol_name(outcome.protocol_name.map(StrBytes::from_string))
        .with_assignment(outcome.assignment)
}

/// Syncs and waits for this member's assignment.
pub(crate) async fn sync(broker: &Arc<Broker>, p: SyncParams) -> SyncOutcome {
    if p.group_id.is_empty() {
        return SyncOutcome::error(ResponseError::InvalidGroupId);
    }
    if let Err(e) = GroupCoordinator::coordinates(broker, &p.group_id) {
        return SyncOutcome::error(e);
    }
    let coordinator = &broker.groups;
    let settings = coordinator.settings();
    let (tx, rx) = oneshot::channel();
    let store = {
        let mut groups = coordinator.lock();
        let Some(group) = groups.get_mut(&p.group_id) else {
            return SyncOutcome::error(ResponseError::UnknownMemberId);
        };
        match group.sync(&p, tx, Instant::now()) {
            None => None,
            Some(assignments) => {
                let value = GroupValue::of(group, Some(&assignments)).encode();
                match records::enqueue(
                    broker,
                    &group.id,
                    &[(RecordKey::Group { group: group.id.clone() }, Some(value))],
                ) {
                    Ok(write) => Some((write, assignments, group.generation)),
                    Err(e) => {
                        tracing::warn!(group = %group.id, error = %e, "cannot store the group's assignments");
                        group.reset_and_propagate_assignment_error(ResponseError::CoordinatorNotAvailable);
                        group.maybe_prepare_rebalance(Instant::now(), &settings);
                        None
                    }
                }
            }
        }
    };
    if let Some((write, assignments, generation)) = store {
        let stored = write.durable(broker).await;
        let mut groups = coordinator.lock();
        if let Some(group) = groups.get_mut(&p.group_id) {
            // A rebalance may have started meanwhile: then these assignments are moot.
            if group.state == GroupState::CompletingRebalance && group.generation == generation {
                match stored {
                    Ok(_) => group.set_and_propagate_assignment(assignments, Instant::now()),
                    Err(e) => {
                        tracing::warn!(group = %group.id, error = %e, "cannot store the group's assignments");
                        group.reset_and_propagate_assignment_error(ResponseError::CoordinatorNotAvailable);
                        group.maybe_prepare_rebalance(Instant::now(), &settings);
                    }
                }
            }
        }
    }
    coordinator.deadlines_changed();
    rx.await.unwrap_or_else(|_| SyncOutcome::error(ResponseError::RebalanceInProgress))
}

impl Group {
    /// Handles one SyncGroup: answers `tx` now or parks it on the member. Returns the
    /// assignments to store when this is the leader completing the rebalance.
    pub(crate) fn sync(
        &mut self,
        p: &SyncParams,
        tx: oneshot::Sender<SyncOutcome>,
        now: Instant,
    ) -> Option<HashMap<String, Bytes>> {
        let refuse = |tx: oneshot::Sender<SyncOutcome>, e| {
            let _ = tx.send(SyncOutcome::error(e));
        };
        if self.state == GroupState::Dead {
            refuse(tx, ResponseError::CoordinatorNotAvailable);
            return None;
        }
        if let Err(e) = self.validate_member(&p.member_id, p.instance_id.as_deref()) {
            refuse(tx, e);
            return None;
        }
        if p.generation_id != self.generation {
            refuse(tx, ResponseError::IllegalGeneration);
            return None;
        }
        let type_differs = p.protocol_type.as_ref().is_some_and(|t| self.protocol_type.as_ref() != Some(t));
        let name_differs = p.protocol_name.as_ref().is_some_and(|n| self.protocol.as_ref() != Some(n));
        if type_differs || name_differs {
            refuse(tx, ResponseError::InconsistentGroupProtocol);
            return None;
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => refuse(tx, ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => refuse(tx, ResponseError::RebalanceInProgress),
            GroupState::CompletingRebalance => {
                self.synced(&p.member_id);
                if let Some(m) = self.members.get_mut(&p.member_id) {
                    if let Some(old) = m.sync_waiter.replace(tx) {
                        let _ = old.send(SyncOutcome::error(ResponseError::RebalanceInProgress));
                    }
                }
                if self.is_leader(&p.member_id) {
                    // Members the leader left out get an empty assignment; unknown ids are
                    // dropped.
                    let assignments = p
                        .assignments
                        .iter()
                        .filter(|(id, _)| self.members.contains_key(id))
                        .map(|(id, a)| (id.clone(), a.clone()))
                        .collect();
                    return Some(assignments);
                }
            }
            GroupState::Stable => {
                self.synced(&p.member_id);
                let (protocol_type, protocol_name) = (self.protocol_type.clone(), self.protocol.clone());
                if let Some(m) = self.members.get_mut(&p.member_id) {
                    m.last_heartbeat = now;
                    let _ = tx.send(SyncOutcome {
                        error: None,
                        assignment: m.assignment.clone(),
                        protocol_type,
                        protocol_name,
                    });
                }
            }
        }
        None
    }
}
