//! The consumer group coordinator (classic protocol) and committed offsets, kept in the
//! internal compacted topic `__consumer_offsets` so they survive restarts. This broker is the
//! coordinator of every group.
//!
//! - `group`: one group's state machine (no I/O, no waiting).
//! - One file per Kafka API: `find_coordinator`, `join_group`, `sync_group`,
//!   `heartbeat`, `leave_group`, `offset_commit`, `offset_fetch`, `describe_groups`,
//!   `list_groups`, `delete_groups`; [`handlers`] routes requests to them.
//! - `records`: the `__consumer_offsets` format, writes and the replay on start.
//!
//! Concurrency: every group lives under one mutex, never held across an `.await`. A request
//! that must wait (JoinGroup until the join phase ends, SyncGroup until the leader assigns)
//! parks a oneshot sender on its member and awaits it after the lock is released. Time-driven
//! transitions (initial rebalance delay, rebalance and sync timeouts, session expiry) run in
//! `GroupCoordinator::tick`, which the expiry task calls at the next deadline.
//!
//! Durability: an offset commit is acknowledged only once its records are durable. Records of
//! one group are enqueued in the order of its state changes (under the lock), and a commit is
//! applied in memory only if no later record of the same key was applied first, so memory
//! always equals what a replay of the log gives.

pub mod handlers;

mod delete_groups;
mod describe_groups;
mod find_coordinator;
pub(crate) mod group;
mod heartbeat;
mod join_group;
mod leave_group;
mod list_groups;
mod offset_commit;
mod offset_fetch;
pub(crate) mod records;
mod sync_group;
#[cfg(test)]
mod tests;
mod txn_offset_commit;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard, RwLock};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use self::group::{Group, Member};
use self::records::{GroupValue, RecordKey};
use crate::broker::{Broker, OFFSETS_TOPIC};
use crate::error::Result;
use crate::partition::Partition;

pub use self::group::GroupState;

/// Coordinator limits and delays (Kafka's `group.*` broker settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSettings {
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long a rebalance of an empty group waits for
    /// more members (Kafka's default is 3 s; shorter here so that tests and small setups start
    /// quickly).
    pub initial_rebalance_delay_ms: i32,
    /// `group.max.size`.
    pub max_group_size: usize,
}

impl Default for GroupSettings {
    fn default() -> Self {
        GroupSettings {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 300_000,
            initial_rebalance_delay_ms: 300,
            max_group_size: i32::MAX as usize,
        }
    }
}

/// Who sent a request (for member ids and DescribeGroups).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub client_id: String,
    /// The client's address as Kafka shows it, e.g. `/127.0.0.1`.
    pub client_host: String,
    /// The listener it came in through (addresses given back are on that listener).
    pub listener: Option<String>,
}

#[derive(Debug, Default)]
pub struct GroupCoordinator {
    groups: Mutex<HashMap<String, Group>>,
    settings: RwLock<GroupSettings>,
    /// Wakes the expiry task when a new deadline may be earlier than the one it sleeps to.
    wakeup: Notify,
    /// Offset commits hold it shared from enqueue to apply; DeleteGroups holds it exclusively,
    /// so that its tombstones cover every commit that precedes them.
    commits: tokio::sync::RwLock<()>,
}

impl GroupCoordinator {
    pub fn new() -> Self {
        GroupCoordinator::default()
    }

    pub fn settings(&self) -> GroupSettings {
        self.settings.read().clone()
    }

    /// Changes limits and delays; applies to requests from now on.
    pub fn set_settings(&self, settings: GroupSettings) {
        *self.settings.write() = settings;
    }

    /// Rebuilds the committed offsets and metadata of the groups one `__consumer_offsets`
    /// partition holds (it was just opened on this broker, which now coordinates them).
    pub async fn load_partition(&self, broker: &Broker, partition: &Partition) -> Result<()> {
        let loaded = records::load_partition(broker, partition).await?;
        let now = Instant::now();
        let mut groups = self.groups.lock();
        groups.retain(|id, _| !self.owned_by(id, partition.index, broker));
        let (mut count, mut offsets, mut members) = (0, 0, 0);
        for (id, l) in loaded {
            if l.offsets.is_empty() && l.metadata.is_none() && l.pending.is_empty() {
                continue;
            }
            let mut group = Group::new(&id);
            offsets += l.offsets.len();
            group.offsets = l.offsets;
            group.pending_txn_offsets = l.pending;
            if let Some(meta) = l.metadata {
                restore(&mut group, meta, now);
                members += group.members.len();
            }
            groups.insert(id, group);
            count += 1;
        }
        tracing::info!(partition = partition.index, groups = count, offsets, members, "consumer groups loaded");
        Ok(())
    }

    /// A transaction marker was written to `__consumer_offsets` partition `partition`: the
    /// offsets `producer_id` committed in that transaction count now (commit) or never.
    pub fn end_transaction(&self, partition: i32, producer_id: i64, commit: bool) {
        let mut groups = self.groups.lock();
        for group in groups.values_mut() {
            let Some(pending) = group.pending_txn_offsets.remove(&producer_id) else { continue };
            if commit {
                for ((topic, index), value) in pending {
                    group.apply_offset(topic, index, value);
                }
            }
            tracing::debug!(group = %group.id, partition, producer_id, commit, "transactional offsets ended");
        }
    }

    /// Forgets the groups of a `__consumer_offsets` partition this broker no longer leads.
    pub fn unload_partition(&self, partition: i32, broker: &Broker) {
        self.groups.lock().retain(|id, _| !self.owned_by(id, partition, broker));
    }

    /// Forgets every group.
    pub fn unload_all(&self) {
        self.groups.lock().clear();
    }

    fn owned_by(&self, group: &str, partition: i32, broker: &Broker) -> bool {
        let n = broker.topic(OFFSETS_TOPIC).map_or(0, |t| t.partition_count());
        records::partition_for(group, n) as i32 == partition
    }

    /// Whether this broker coordinates `group` (leads its `__consumer_offsets` partition):
    /// NOT_COORDINATOR otherwise, COORDINATOR_LOAD_IN_PROGRESS while it is being opened.
    pub fn coordinates(broker: &Broker, group: &str) -> std::result::Result<(), kafka_protocol::ResponseError> {
        use kafka_protocol::ResponseError;
        let Some(topic) = broker.topic(OFFSETS_TOPIC) else { return Err(ResponseError::CoordinatorNotAvailable) };
        let index = records::partition_for(group, topic.partition_count()) as i32;
        if topic.led(index).is_ok() {
            return Ok(());
        }
        if broker.moving.lock().contains(&(OFFSETS_TOPIC.to_string(), index)) {
            return Err(ResponseError::CoordinatorLoadInProgress);
        }
        Err(ResponseError::NotCoordinator)
    }

    /// Expires members whose session timed out, and ends join and sync phases that timed
    /// out, until shutdown.
    pub fn spawn_expiry(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let next = broker.groups.tick(&broker, Instant::now());
                // Sleep to the next deadline, at most a second: a notification may be missed
                // between computing `next` and waiting.
                let until = next
                    .unwrap_or_else(|| Instant::now() + Duration::from_secs(1))
                    .min(Instant::now() + Duration::from_secs(1));
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = broker.groups.wakeup.notified() => {}
                    _ = shutdown.changed() => return,
                }
            }
        })
    }

    /// Applies what time has done to every group; returns the next deadline.
    pub(crate) fn tick(&self, broker: &Arc<Broker>, now: Instant) -> Option<Instant> {
        let settings = self.settings();
        let mut groups = self.groups.lock();
        let mut next: Option<Instant> = None;
        for group in groups.values_mut() {
            group.expire(now, &settings);
            persist_if_needed(broker, group);
            next = match (next, group.next_deadline()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        // Forget groups that never formed and hold nothing (e.g. after MEMBER_ID_REQUIRED
        // answers to clients that never came back).
        groups.retain(|_, g| {
            !(g.state == GroupState::Empty
                && g.generation == 0
                && g.members.is_empty()
                && g.pending_members.is_empty()
                && g.offsets.is_empty()
                && g.pending_txn_offsets.is_empty())
        });
        next
    }

    /// Locks every group.
    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock()
    }

    /// Tells the expiry task that deadlines changed.
    pub(crate) fn deadlines_changed(&self) {
        self.wakeup.notify_one();
    }
}

/// Rebuilds a group from its persisted metadata: Stable with its members if it had any (their
/// sessions start now), Empty otherwise.
fn restore(group: &mut Group, meta: GroupValue, now: Instant) {
    group.generation = meta.generation;
    group.protocol_type = Some(meta.protocol_type.clone()).filter(|t| !t.is_empty());
    group.protocol = meta.protocol.clone();
    group.state_changed_ms = meta.state_timestamp;
    // Members are only kept with the protocol they were assigned under.
    let Some(protocol) = meta.protocol.clone() else { return };
    for m in meta.members {
        let seq = group.next_seq();
        group.add_member(Member {
            id: m.member_id,
            instance_id: m.instance_id,
            client_id: m.client_id,
            client_host: m.client_host,
            session_timeout_ms: m.session_timeout_ms,
            rebalance_timeout_ms: m.rebalance_timeout_ms,
            protocol_type: meta.protocol_type.clone(),
            protocols: vec![(protocol.clone(), m.subscription)],
            assignment: m.assignment,
            join_waiter: None,
            sync_waiter: None,
            last_heartbeat: now,
            seq,
        });
    }
    if let Some(leader) = meta.leader.filter(|l| group.members.contains_key(l)) {
        group.leader = Some(leader);
    }
    group.state =
        if group.members.is_empty() || group.protocol.is_none() { GroupState::Empty } else { GroupState::Stable };
}

/// Writes a group metadata record if the group changed in a way worth persisting. The write
/// is enqueued now (log order follows state order) and its durability awaited in the
/// background: only offset commits and the leader's assignments are acknowledged after it.
pub(crate) fn persist_if_needed(broker: &Arc<Broker>, group: &mut Group) {
    if !std::mem::take(&mut group.store_needed) {
        return;
    }
    let value = GroupValue::of(group, None).encode();
    match records::enqueue(broker, &group.id, &[(RecordKey::Group { group: group.id.clone() }, Some(value))]) {
        Ok(write) => {
            let (broker, id) = (broker.clone(), group.id.clone());
            tokio::spawn(async move {
                if let Err(e) = write.durable(&broker).await {
                    tracing::warn!(group = %id, error = %e, "cannot store group metadata; it is lost on restart");
                }
            });
        }
        Err(e) => tracing::warn!(group = %group.id, error = %e, "cannot store group metadata; it is lost on restart"),
    }
}

/// Counts an error code in the broker's metrics (0 is success, not counted).
pub(crate) fn count_error(broker: &Broker, api: &str, code: i16) {
    if code != 0 {
        broker.metrics.error(
            api,
            kafka_protocol::ResponseError::try_from_code(code)
                .unwrap_or(kafka_protocol::ResponseError::UnknownServerError),
        );
    }
}
