//! JoinGroup: a member enters (or re-enters) a group and waits until the join phase ends.
//!
//! - v4+: a member without an id gets MEMBER_ID_REQUIRED with an id to join with (so a client
//!   that times out and retries does not leave a ghost member behind); static members
//!   (`group.instance.id`, v5+) skip this.
//! - A static member coming back under a new id takes its old place; in a Stable group whose
//!   protocol would not change it gets its old assignment back without a rebalance, and
//!   requests still pending under the old id get FENCED_INSTANCE_ID.
//! - The answer waits until every known member has rejoined or the rebalance timeout passed;
//!   the leader's answer carries every member's metadata.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{ApiKey, JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio::time::{Duration, Instant};

use super::group::{Group, GroupState, JoinOutcome, Member};
use super::{count_error, persist_if_needed, ClientInfo, GroupSettings};
use crate::broker::Broker;
use crate::groups::GroupCoordinator;

/// One JoinGroup request, version differences resolved.
#[derive(Debug, Clone)]
pub(crate) struct JoinParams {
    pub(crate) group_id: String,
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) client: ClientInfo,
    pub(crate) session_timeout_ms: i32,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) protocol_type: String,
    pub(crate) protocols: Vec<(String, Bytes)>,
    /// v4+: new members must first get an id (MEMBER_ID_REQUIRED).
    pub(crate) require_known_member_id: bool,
    /// v9+: a static leader rejoining a Stable group may be told to skip the assignment.
    pub(crate) supports_skip_assignment: bool,
}

pub(super) async fn handle(
    broker: &Arc<Broker>,
    r: JoinGroupRequest,
    version: i16,
    client: &ClientInfo,
) -> JoinGroupResponse {
    let params = JoinParams {
        group_id: r.group_id.0.to_string(),
        member_id: r.member_id.to_string(),
        instance_id: r.group_instance_id.map(|i| i.to_string()),
        client: client.clone(),
        session_timeout_ms: r.session_timeout_ms,
        // v0 has no rebalance timeout: the session timeout plays its part.
        rebalance_timeout_ms: if version >= 1 && r.rebalance_timeout_ms >= 0 {
            r.rebalance_timeout_ms
        } else {
            r.session_timeout_ms
        },
        protocol_type: r.protocol_type.to_string(),
        protocols: r.protocols.into_iter().map(|p| (p.name.to_string(), p.metadata)).collect(),
        require_known_member_id: version >= 4,
        supports_skip_assignment: version >= 9,
    };
    let outcome = join(broker, params).await;
    let code = outcome.error.map(|e| e.code()).unwrap_or(0);
    count_error(broker, &crate::handlers::api_name(ApiKey::JoinGroup), code);
    let members = outcome
        .members
        .into_iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(StrBytes::from_string(m.member_id))
                .with_group_instance_id(m.instance_id.map(StrBytes::from_string))
                .with_metadata(m.metadata)
        })
        .collect();
    // Before v7 the protocol name is not nullable.
    let protocol_name = match outcome.protocol_name {
        None if version < 7 => Some(String::new()),
        other => other,
    };
    JoinGroupResponse::default()
        .with_error_code(code)
        .with_generation_id(outcome.generation_id)
        .with_protocol_type(outcome.protocol_type.map(StrBytes::from_string))
        .with_protocol_name(protocol_name.map(StrBytes::from_string))
        .with_leader(StrBytes::from_string(outcome.leader))
        .with_skip_assignment(outcome.skip_assignment && version >= 9)
        .with_member_id(StrBytes::from_string(outcome.member_id))
        .with_members(members)
}

/// Joins and waits for the answer.
pub(crate) async fn join(broker: &Arc<Broker>, p: JoinParams) -> JoinOutcome {
    let coordinator = &broker.groups;
    let settings = coordinator.settings();
    if p.group_id.is_empty() {
        return JoinOutcome::error(&p.member_id, ResponseError::InvalidGroupId);
    }
    if let Err(e) = GroupCoordinator::coordinates(broker, &p.group_id) {
        return JoinOutcome::error(&p.member_id, e);
    }
    if p.session_timeout_ms < settings.min_session_timeout_ms || p.session_timeout_ms > settings.max_session_timeout_ms
    {
        return JoinOutcome::error(&p.member_id, ResponseError::InvalidSessionTimeout);
    }
    let (tx, rx) = oneshot::channel();
    let member_id = p.member_id.clone();
    {
        let mut groups = coordinator.lock();
        if !p.member_id.is_empty() && !groups.contains_key(&p.group_id) {
            return JoinOutcome::error(&p.member_id, ResponseError::UnknownMemberId);
        }
        let group = groups.entry(p.group_id.clone()).or_insert_with(|| Group::new(&p.group_id));
        group.join(p, tx, Instant::now(), &settings);
        persist_if_needed(broker, group);
    }
    coordinator.deadlines_changed();
    // Every parked sender is answered before it is dropped; a dropped one means the group went
    // away under the member.
    rx.await.unwrap_or_else(|_| JoinOutcome::error(&member_id, ResponseError::UnknownMemberId))
}

fn new_member_id(client: &ClientInfo) -> String {
    let prefix = if client.client_id.is_empty() { "consumer" } else { client.client_id.as_str() };
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

impl Group {
    /// Handles one JoinGroup: answers `tx` now, or parks it on the member until the join phase
    /// ends.
    pub(crate) fn join(
        &mut self,
        p: JoinParams,
        tx: oneshot::Sender<JoinOutcome>,
        now: Instant,
        settings: &GroupSettings,
    ) {
        if self.state == GroupState::Dead {
            let _ = tx.send(JoinOutcome::error(&p.member_id, ResponseError::CoordinatorNotAvailable));
        } else if !self.supports_protocols(&p.protocol_type, &p.protocols) {
            let _ = tx.send(JoinOutcome::error(&p.member_id, ResponseError::InconsistentGroupProtocol));
        } else if p.member_id.is_empty() {
            self.join_new(p, tx, now, settings);
        } else {
            self.join_known(p, tx, now, settings);
        }
    }

    fn join_new(&mut self, p: JoinParams, tx: oneshot::Sender<JoinOutcome>, now: Instant, settings: &GroupSettings) {
        let new_id = new_member_id(&p.client);
        if let Some(instance) = p.instance_id.clone() {
            if let Some(old_id) = self.static_members.get(&instance).cloned() {
                return self.rejoin_static(&instance, &old_id, &new_id, p, tx, now, settings);
            }
        } else if p.require_known_member_id {
            let deadline = now + Duration::from_millis(p.session_timeout_ms.max(0) as u64);
            self.pending_members.insert(new_id.clone(), deadline);
            let _ = tx.send(JoinOutcome::error(&new_id, ResponseError::MemberIdRequired));
            return;
        }
        self.add_member_and_rebalance(new_id, p, tx, now, settings);
    }

    fn join_known(&mut self, p: JoinParams, tx: oneshot::Sender<JoinOutcome>, now: Instant, settings: &GroupSettings) {
        if self.pending_members.remove(&p.member_id).is_some() {
            // The id handed out with MEMBER_ID_REQUIRED: now the member really joins.
            let id = p.member_id.clone();
            return self.add_member_and_rebalance(id, p, tx, now, settings);
        }
        if let Err(e) = self.validate_member(&p.member_id, p.instance_id.as_deref()) {
            let _ = tx.send(JoinOutcome::error(&p.member_id, e));
            return;
        }
        let unchanged = self.members.get(&p.member_id).is_some_and(|m| m.protocols == p.protocols);
        match self.state {
            GroupState::PreparingRebalance => {
                self.update_member(p, tx, now);
                self.try_complete_join(now);
            }
            // The member missed the answer of the join phase that just ended: answer it again.
            GroupState::CompletingRebalance if unchanged => {
                let _ = tx.send(self.current_generation(&p.member_id, self.is_leader(&p.member_id)));
            }
            // A follower rejoining with what it had: nothing to rebalance.
            GroupState::Stable if unchanged && !self.is_leader(&p.member_id) => {
                let _ = tx.send(self.current_generation(&p.member_id, false));
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member(p, tx, now);
                self.prepare_rebalance(now, settings);
            }
            GroupState::Empty | GroupState::Dead => {
                let _ = tx.send(JoinOutcome::error(&p.member_id, ResponseError::UnknownMemberId));
            }
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        id: String,
        p: JoinParams,
        tx: oneshot::Sender<JoinOutcome>,
        now: Instant,
        settings: &GroupSettings,
    ) {
        if self.members.len() >= settings.max_group_size {
            let _ = tx.send(JoinOutcome::error(&id, ResponseError::GroupMaxSizeReached));
            return;
        }
        let seq = self.next_seq();
        tracing::info!(group = %self.id, member = %id, instance = ?p.instance_id, client = %p.client.client_id, "member joins");
        self.add_member(Member {
            id,
            instance_id: p.instance_id,
            client_id: p.client.client_id,
            client_host: p.client.client_host,
            session_timeout_ms: p.session_timeout_ms,
            rebalance_timeout_ms: p.rebalance_timeout_ms,
            protocol_type: p.protocol_type,
            protocols: p.protocols,
            assignment: Bytes::new(),
            join_waiter: Some(tx),
            sync_waiter: None,
            last_heartbeat: now,
            seq,
        });
        self.maybe_prepare_rebalance(now, settings);
    }

    /// Takes a rejoining member's new protocols and timeouts and parks its answer.
    fn update_member(&mut self, p: JoinParams, tx: oneshot::Sender<JoinOutcome>, now: Instant) {
        let Some(m) = self.members.get_mut(&p.member_id) else { return };
        if let Some(old) = m.join_waiter.replace(tx) {
            // A retried JoinGroup replaces the earlier one, which is told to rejoin.
            let _ = old.send(JoinOutcome::error(&p.member_id, ResponseError::RebalanceInProgress));
        }
        m.protocols = p.protocols;
        m.session_timeout_ms = p.session_timeout_ms;
        m.rebalance_timeout_ms = p.rebalance_timeout_ms;
        m.client_id = p.client.client_id;
        m.client_host = p.client.client_host;
        m.last_heartbeat = now;
    }

    #[allow(clippy::too_many_arguments)]
    fn rejoin_static(
        &mut self,
        instance: &str,
        old_id: &str,
        new_id: &str,
        mut p: JoinParams,
        tx: oneshot::Sender<JoinOutcome>,
        now: Instant,
        settings: &GroupSettings,
    ) {
        let old_leader = self.leader.clone().unwrap_or_default();
        tracing::info!(group = %self.id, instance, old_id, new_id, "static member rejoins under a new member id");
        self.replace_static_member(instance, old_id, new_id);
        p.member_id = new_id.to_string();
        let supports_skip = p.supports_skip_assignment;
        self.update_member(p, tx, now);
        match self.state {
            GroupState::Stable if self.select_protocol() == self.protocol => {
                // Same protocol for the next generation: keep the assignment, no rebalance.
                let is_leader = self.is_leader(new_id);
                let skip = is_leader && supports_skip;
                let mut outcome = self.current_generation(new_id, skip);
                outcome.skip_assignment = skip;
                // A leader that cannot skip the assignment is not told it leads, so it does
                // not recompute assignments nobody would receive (Kafka does the same).
                outcome.leader = if skip { new_id.to_string() } else { old_leader };
                if let Some(m) = self.members.get_mut(new_id) {
                    if let Some(waiter) = m.join_waiter.take() {
                        let _ = waiter.send(outcome);
                    }
                }
                self.store_needed = true;
            }
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(now, settings),
            GroupState::PreparingRebalance => self.try_complete_join(now),
            // Static members exist only in groups with members; a join phase answers anyway.
            GroupState::Empty | GroupState::Dead => self.maybe_prepare_rebalance(now, settings),
        }
    }
}
