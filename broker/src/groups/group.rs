//! One consumer group's state machine (classic protocol), as Kafka's `GroupMetadata` and
//! `GroupCoordinator` define it:
//!
//! ```text
//!   Empty ──join──> PreparingRebalance ──all joined / timeout──> CompletingRebalance
//!     ^                 ^        |                                   |  leader's SyncGroup
//!     |                 |        └── no member left ──> Empty        v
//!     |                 └──── join / leave / expiry ────────────── Stable
//!   Dead: deleted (DeleteGroups); requests get COORDINATOR_NOT_AVAILABLE and retry.
//! ```
//!
//! Invariants:
//! - A member awaiting a JoinGroup answer has `join_waiter`; one awaiting its assignment has
//!   `sync_waiter`. Every member removed, and every waiter replaced, is answered (never
//!   dropped), so no request hangs.
//! - `generation` increases by one each time a join phase completes, also when it leaves the
//!   group empty. `leader` is always a current member, or `None` when there are none.
//! - `static_members` maps each `group.instance.id` to the member id that holds it now.
//! - Nothing here does I/O or waits: the coordinator calls in under its lock, and time comes
//!   in as `now` (tokio's clock, so tests may pause it).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::GroupSettings;
use crate::broker::now_ms;

/// Kafka's group states, named as DescribeGroups and ListGroups report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A member as the leader sees it in its JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JoinedMember {
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) metadata: Bytes,
}

/// The answer to one JoinGroup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JoinOutcome {
    pub(crate) error: Option<ResponseError>,
    pub(crate) generation_id: i32,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) leader: String,
    pub(crate) member_id: String,
    /// Every member with its metadata, for the leader only.
    pub(crate) members: Vec<JoinedMember>,
    pub(crate) skip_assignment: bool,
}

impl JoinOutcome {
    pub(crate) fn error(member_id: &str, error: ResponseError) -> Self {
        JoinOutcome {
            error: Some(error),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
            skip_assignment: false,
        }
    }
}

/// The answer to one SyncGroup request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SyncOutcome {
    pub(crate) error: Option<ResponseError>,
    pub(crate) assignment: Bytes,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
}

impl SyncOutcome {
    pub(crate) fn error(error: ResponseError) -> Self {
        SyncOutcome { error: Some(error), ..Default::default() }
    }
}

/// A committed offset, with where its record sits in `__consumer_offsets` (so that a late
/// durable acknowledgement never overwrites a newer commit: the log order decides, as on
/// replay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommittedOffset {
    pub(crate) offset: i64,
    pub(crate) leader_epoch: i32,
    pub(crate) metadata: String,
    pub(crate) commit_timestamp: i64,
    pub(crate) record_offset: i64,
}

#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) session_timeout_ms: i32,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) protocol_type: String,
    /// Supported protocols (assignors) with their metadata, in the member's preference order.
    pub(crate) protocols: Vec<(String, Bytes)>,
    pub(crate) assignment: Bytes,
    pub(crate) join_waiter: Option<oneshot::Sender<JoinOutcome>>,
    pub(crate) sync_waiter: Option<oneshot::Sender<SyncOutcome>>,
    pub(crate) last_heartbeat: Instant,
    /// Order of arrival, to elect the longest-standing member as leader.
    pub(crate) seq: u64,
}

impl Member {
    pub(crate) fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(name, _)| name == protocol).map(|(_, m)| m.clone()).unwrap_or_default()
    }

    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(name, _)| name == protocol)
    }

    fn session_expired(&self, now: Instant) -> bool {
        // A member waiting for its JoinGroup or SyncGroup answer cannot heartbeat meanwhile.
        self.join_waiter.is_none()
            && self.sync_waiter.is_none()
            && now >= self.last_heartbeat + Duration::from_millis(self.session_timeout_ms.max(0) as u64)
    }

    fn answer_join(&mut self, outcome: JoinOutcome) {
        if let Some(tx) = self.join_waiter.take() {
            let _ = tx.send(outcome);
        }
    }

    fn answer_sync(&mut self, outcome: SyncOutcome) {
        if let Some(tx) = self.sync_waiter.take() {
            let _ = tx.send(outcome);
        }
    }
}

/// The deadline of the join phase. A rebalance from Empty first waits the initial delay,
/// extended while new members keep arriving (Kafka's `InitialDelayedJoin`).
#[derive(Debug)]
struct JoinPhase {
    deadline: Instant,
    initial: Option<InitialDelay>,
}

#[derive(Debug)]
struct InitialDelay {
    delay: Duration,
    remaining: Duration,
    new_member_added: bool,
}

#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) id: String,
    pub(crate) state: GroupState,
    pub(crate) generation: i32,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol: Option<String>,
    pub(crate) leader: Option<String>,
    pub(crate) members: BTreeMap<String, Member>,
    pub(crate) static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until they join or their session ends.
    pub(crate) pending_members: HashMap<String, Instant>,
    join_phase: Option<JoinPhase>,
    /// Members of this generation that have not sent SyncGroup yet, and until when they may.
    pending_sync: HashSet<String>,
    sync_deadline: Option<Instant>,
    pub(crate) offsets: BTreeMap<(String, i32), CommittedOffset>,
    /// Offsets committed inside transactions not ended yet, by producer id: applied to
    /// `offsets` on the commit marker, dropped on the abort marker.
    pub(crate) pending_txn_offsets: HashMap<i64, BTreeMap<(String, i32), CommittedOffset>>,
    pub(crate) state_changed_ms: i64,
    /// The generation, members or assignments changed in a way worth a group metadata record;
    /// the coordinator writes one and clears this.
    pub(crate) store_needed: bool,
    next_seq: u64,
}

impl Group {
    pub(crate) fn new(id: &str) -> Self {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            join_phase: None,
            pending_sync: HashSet::new(),
            sync_deadline: None,
            offsets: BTreeMap::new(),
            pending_txn_offsets: HashMap::new(),
            state_changed_ms: now_ms(),
            store_needed: false,
            next_seq: 0,
        }
    }

    pub(crate) fn set_state(&mut self, state: GroupState) {
        self.state = state;
        self.state_changed_ms = now_ms();
    }

    pub(crate) fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    pub(crate) fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Adds a member (the first one leads).
    pub(crate) fn add_member(&mut self, member: Member) {
        if self.leader.is_none() {
            self.leader = Some(member.id.clone());
        }
        if let Some(instance) = &member.instance_id {
            self.static_members.insert(instance.clone(), member.id.clone());
        }
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if let Some(phase) = self.join_phase.as_mut().and_then(|p| p.initial.as_mut()) {
            phase.new_member_added = true;
        }
        self.members.insert(member.id.clone(), member);
    }

    /// Removes a member, answering its pending requests with UNKNOWN_MEMBER_ID.
    fn remove_member(&mut self, member_id: &str) {
        let Some(mut member) = self.members.remove(member_id) else { return };
        member.answer_join(JoinOutcome::error(member_id, ResponseError::UnknownMemberId));
        member.answer_sync(SyncOutcome::error(ResponseError::UnknownMemberId));
        if let Some(instance) = &member.instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        self.pending_sync.remove(member_id);
        if self.is_leader(member_id) {
            self.leader = self.members.values().min_by_key(|m| m.seq).map(|m| m.id.clone());
        }
    }

    /// Removes a member that left or expired, and rebalances the others.
    pub(crate) fn remove_member_and_rebalance(&mut self, member_id: &str, now: Instant, settings: &GroupSettings) {
        self.remove_member(member_id);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(now, settings),
            GroupState::PreparingRebalance => self.try_complete_join(now),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    pub(crate) fn remove_pending_member(&mut self, member_id: &str, now: Instant) {
        if self.pending_members.remove(member_id).is_some() && self.state == GroupState::PreparingRebalance {
            self.try_complete_join(now);
        }
    }

    /// FENCED_INSTANCE_ID when another member holds `instance_id`; UNKNOWN_MEMBER_ID when the
    /// member is not in the group.
    pub(crate) fn validate_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), ResponseError> {
        if let Some(holder) = instance_id.and_then(|i| self.static_members.get(i)) {
            if holder != member_id {
                return Err(ResponseError::FencedInstanceId);
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        Ok(())
    }

    /// Whether a member speaking `protocol_type` with these protocols may join: an empty group
    /// takes anything non-empty; otherwise the type must match and one protocol must be
    /// supported by every member.
    pub(crate) fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| self.members.values().all(|m| m.supports(name)))
    }

    /// The protocol for the next generation: among those every member supports, each member
    /// votes for its most preferred; most votes wins, ties going to the leader's preference.
    pub(crate) fn select_protocol(&self) -> Option<String> {
        let leader = self.leader.as_ref().and_then(|l| self.members.get(l)).or_else(|| self.members.values().next())?;
        let candidates: Vec<&str> = leader
            .protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| self.members.values().all(|m| m.supports(name)))
            .collect();
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(name, _)| candidates.contains(&name.as_str())) {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let best = candidates.iter().map(|c| votes.get(c).copied().unwrap_or(0)).max()?;
        candidates.iter().find(|c| votes.get(*c).copied().unwrap_or(0) == best).map(|c| c.to_string())
    }

    fn max_rebalance_timeout(&self) -> Duration {
        let ms = self.members.values().map(|m| m.rebalance_timeout_ms).max().unwrap_or(0);
        Duration::from_millis(ms.max(0) as u64)
    }

    /// Starts a join phase: members must rejoin within the rebalance timeout.
    pub(crate) fn prepare_rebalance(&mut self, now: Instant, settings: &GroupSettings) {
        if self.state == GroupState::CompletingRebalance {
            self.reset_and_propagate_assignment_error(ResponseError::RebalanceInProgress);
        }
        let timeout = self.max_rebalance_timeout();
        self.join_phase = Some(if self.state == GroupState::Empty {
            let delay = Duration::from_millis(settings.initial_rebalance_delay_ms.max(0) as u64);
            JoinPhase {
                deadline: now + delay,
                initial: Some(InitialDelay {
                    delay,
                    remaining: timeout.saturating_sub(delay),
                    new_member_added: false,
                }),
            }
        } else {
            JoinPhase { deadline: now + timeout, initial: None }
        });
        self.pending_sync.clear();
        self.sync_deadline = None;
        self.set_state(GroupState::PreparingRebalance);
        tracing::info!(group = %self.id, generation = self.generation, members = self.members.len(), "preparing to rebalance");
        self.try_complete_join(now);
    }

    /// Rebalances unless a join phase is already under way.
    pub(crate) fn maybe_prepare_rebalance(&mut self, now: Instant, settings: &GroupSettings) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty => {
                self.prepare_rebalance(now, settings)
            }
            GroupState::PreparingRebalance => self.try_complete_join(now),
            GroupState::Dead => {}
        }
    }

    /// Completes the join phase early once every known member has rejoined (never during
    /// the initial delay, which exists to gather members that have not joined yet).
    pub(crate) fn try_complete_join(&mut self, now: Instant) {
        let initial = self.join_phase.as_ref().is_some_and(|p| p.initial.is_some());
        let all_joined = self.members.values().all(|m| m.join_waiter.is_some()) && self.pending_members.is_empty();
        if self.state == GroupState::PreparingRebalance && !initial && all_joined {
            self.complete_join(now);
        }
    }

    /// Ends the join phase: members that did not rejoin are removed, the generation moves on
    /// and every joined member gets its answer (the leader with everyone's metadata).
    fn complete_join(&mut self, now: Instant) {
        self.join_phase = None;
        let missing: Vec<String> =
            self.members.values().filter(|m| m.join_waiter.is_none()).map(|m| m.id.clone()).collect();
        for id in &missing {
            tracing::info!(group = %self.id, member = %id, "member did not rejoin in time; removing it");
            self.remove_member(id);
        }
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol = None;
            self.set_state(GroupState::Empty);
            self.store_needed = true;
            tracing::info!(group = %self.id, generation = self.generation, "group is empty");
            return;
        }
        self.protocol = self.select_protocol();
        self.set_state(GroupState::CompletingRebalance);
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in &ids {
            let outcome = self.current_generation(id, self.is_leader(id));
            if let Some(m) = self.members.get_mut(id) {
                m.last_heartbeat = now;
                m.answer_join(outcome);
            }
        }
        self.pending_sync = ids.into_iter().collect();
        self.sync_deadline = Some(now + self.max_rebalance_timeout());
        tracing::info!(
            group = %self.id, generation = self.generation, leader = ?self.leader, protocol = ?self.protocol,
            members = self.members.len(), "join phase complete"
        );
    }

    /// A JoinGroup answer describing the current generation, with every member's metadata
    /// when `with_members`.
    pub(crate) fn current_generation(&self, member_id: &str, with_members: bool) -> JoinOutcome {
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = if with_members {
            self.members
                .values()
                .map(|m| JoinedMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    metadata: m.metadata(&protocol),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinOutcome {
            error: None,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members,
            skip_assignment: false,
        }
    }

    /// Clears assignments and answers members waiting in SyncGroup with `error`.
    pub(crate) fn reset_and_propagate_assignment_error(&mut self, error: ResponseError) {
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
            m.answer_sync(SyncOutcome::error(error));
        }
    }

    /// Installs the leader's assignments, answers members waiting in SyncGroup, and makes the
    /// group Stable.
    pub(crate) fn set_and_propagate_assignment(&mut self, mut assignments: HashMap<String, Bytes>, now: Instant) {
        let (protocol_type, protocol_name) = (self.protocol_type.clone(), self.protocol.clone());
        for m in self.members.values_mut() {
            m.assignment = assignments.remove(&m.id).unwrap_or_default();
            if m.sync_waiter.is_some() {
                m.last_heartbeat = now;
                m.answer_sync(SyncOutcome {
                    error: None,
                    assignment: m.assignment.clone(),
                    protocol_type: protocol_type.clone(),
                    protocol_name: protocol_name.clone(),
                });
            }
        }
        self.set_state(GroupState::Stable);
        tracing::info!(group = %self.id, generation = self.generation, "group is stable");
    }

    /// Marks a member as having sent SyncGroup for this generation.
    pub(crate) fn synced(&mut self, member_id: &str) {
        self.pending_sync.remove(member_id);
    }

    /// Gives `old_id`'s place (assignment, leadership, protocols) to `new_id`: a static member
    /// came back under a new member id. Requests still pending under the old id are fenced.
    pub(crate) fn replace_static_member(&mut self, instance_id: &str, old_id: &str, new_id: &str) {
        let Some(mut member) = self.members.remove(old_id) else { return };
        member.answer_join(JoinOutcome::error(old_id, ResponseError::FencedInstanceId));
        member.answer_sync(SyncOutcome::error(ResponseError::FencedInstanceId));
        member.id = new_id.to_string();
        self.members.insert(new_id.to_string(), member);
        self.static_members.insert(instance_id.to_string(), new_id.to_string());
        if self.is_leader(old_id) {
            self.leader = Some(new_id.to_string());
        }
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.to_string());
        }
    }

    /// Applies what time has done: pending member ids and sessions expire, join phases and
    /// sync phases time out.
    pub(crate) fn expire(&mut self, now: Instant, settings: &GroupSettings) {
        let expired_pending: Vec<String> =
            self.pending_members.iter().filter(|(_, d)| **d <= now).map(|(id, _)| id.clone()).collect();
        for id in expired_pending {
            self.remove_pending_member(&id, now);
        }
        let expired: Vec<String> =
            self.members.values().filter(|m| m.session_expired(now)).map(|m| m.id.clone()).collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "session expired; removing the member");
            self.remove_member_and_rebalance(&id, now, settings);
        }
        if self.state == GroupState::PreparingRebalance {
            if let Some(phase) = self.join_phase.as_mut().filter(|p| p.deadline <= now) {
                match phase.initial.as_mut() {
                    // New members arrived during the initial delay: wait a little more for
                    // others, as long as the rebalance timeout allows.
                    Some(init) if init.new_member_added && !init.remaining.is_zero() => {
                        let extra = init.delay.min(init.remaining);
                        init.remaining -= extra;
                        init.new_member_added = false;
                        phase.deadline = now + extra;
                    }
                    _ => self.complete_join(now),
                }
            }
        }
        if matches!(self.state, GroupState::CompletingRebalance | GroupState::Stable)
            && self.sync_deadline.is_some_and(|d| d <= now)
        {
            self.sync_deadline = None;
            let late: Vec<String> = self.pending_sync.drain().collect();
            if !late.is_empty() {
                for id in &late {
                    tracing::info!(group = %self.id, member = %id, "member did not sync in time; removing it");
                    self.remove_member(id);
                }
                self.prepare_rebalance(now, settings);
            }
        }
    }

    /// When `expire` next has something to do.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let sessions = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.sync_waiter.is_none())
            .map(|m| m.last_heartbeat + Duration::from_millis(m.session_timeout_ms.max(0) as u64));
        let phase =
            self.join_phase.as_ref().filter(|_| self.state == GroupState::PreparingRebalance).map(|p| p.deadline);
        let sync =
            self.sync_deadline.filter(|_| matches!(self.state, GroupState::CompletingRebalance | GroupState::Stable));
        sessions.chain(self.pending_members.values().copied()).chain(phase).chain(sync).min()
    }
}
