//! The controller's duties, one pass at a time (woken by heartbeats bringing news and by
//! metadata changes, and at least every 250 ms):
//!
//! 1. Registration: a heartbeat from a new broker, a new incarnation or changed details
//!    updates the broker's record (alive).
//! 2. Liveness: a broker not heard from within the session timeout is recorded dead.
//! 3. Takeover: for a dead broker that ran the S3 WAL, the controller takes its WAL over
//!    (fences it, commits what it acknowledged), then records its WAL recovered, which
//!    releases its partitions. Only a committed death triggers a takeover, so a deposed
//!    controller waking up with stale heartbeats cannot fence a live broker. A dead file-WAL
//!    broker keeps its partitions until it comes back.
//! 4. Placement: [`placement::plan`] on the resulting view; changed assignments are committed.
//!
//! Every change is a compare-and-set on the records the pass read, so a deposed controller's
//! pass (or a stale one) changes nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use automq_storage::metadata::state::kv_digest;
use automq_storage::metadata::CatalogRecord;
use automq_storage::wal::S3WalConfig;

use super::placement;
use super::records::{assign_key, broker_key, BrokerRecord, ClusterView, WalKind, ASSIGN_PREFIX, CONTROLLER_KEY};
use super::Cluster;
use crate::broker::Broker;

/// Catalog changes of one pass: key -> new value (`None`: delete), each guarded by the value
/// the pass read. A key changed twice keeps the last value.
#[derive(Debug, Default)]
struct Changes {
    values: BTreeMap<String, Option<String>>,
}

impl Changes {
    fn set(&mut self, key: String, value: Option<String>) {
        self.values.insert(key, value);
    }

    fn put_broker(&mut self, b: &BrokerRecord) {
        match serde_json::to_string(b) {
            Ok(v) => self.set(broker_key(b.node_id), Some(v)),
            Err(e) => tracing::error!(error = %e, "cannot encode a broker record"),
        }
    }

    fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The records, each change guarded by the value read, all by the controller's claim: a
    /// controller deposed since it read the view (paused, partitioned) changes nothing.
    fn records(self, view: &ClusterView) -> Vec<CatalogRecord> {
        let mut out = Vec::with_capacity(self.values.len() * 2 + 1);
        out.push(CatalogRecord::KvExpect {
            key: CONTROLLER_KEY.into(),
            digest: view.raw.get(CONTROLLER_KEY).map(|v| kv_digest(v)),
        });
        for (key, value) in self.values {
            out.push(CatalogRecord::KvExpect { key: key.clone(), digest: view.raw.get(&key).map(|v| kv_digest(v)) });
            out.push(match value {
                Some(value) => CatalogRecord::KvPut { key, value },
                None => CatalogRecord::KvDelete { key },
            });
        }
        out
    }
}

impl Cluster {
    /// Runs controller passes while this broker is the controller, until `stop`.
    pub async fn run_controller(self: Arc<Self>, broker: Arc<Broker>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut changes = broker.engine.catalog().watch();
        let mut last_pass = Instant::now();
        let mut last_sweep = Instant::now();
        loop {
            // This loop runs at least every 250 ms: a longer gap means this process was
            // stalled (paused, starved), so every heartbeat it holds is stale, not the brokers.
            if last_pass.elapsed() > self.config.session_timeout / 2 {
                tracing::warn!(stalled = ?last_pass.elapsed(), "controller loop stalled; restarting every session");
                self.sessions.lock().since = Some(Instant::now());
            }
            last_pass = Instant::now();
            if self.is_controller() && self.fenced().is_none() {
                if let Err(e) = self.controller_pass(&broker).await {
                    tracing::warn!(error = %e, "controller pass failed; will retry");
                }
                if last_sweep.elapsed() >= Duration::from_secs(300) {
                    last_sweep = Instant::now();
                    match super::relay::sweep(&broker).await {
                        Ok(n) if n > 0 => tracing::info!(deleted = n, "expired relay objects deleted"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "relay sweep failed; will retry"),
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = self.wake.notified() => {}
                _ = changes.changed() => {}
                _ = stop.changed() => return,
            }
        }
    }

    async fn controller_pass(&self, broker: &Broker) -> automq_storage::Result<()> {
        let view = self.view();
        let now = Instant::now();
        let (since, beats) = {
            let s = self.sessions.lock();
            (s.since.unwrap_or(now), s.last.clone())
        };
        let session = self.config.session_timeout;
        let mut changes = Changes::default();

        // 1. Registrations. A new incarnation recovered its own WAL when it started: it just
        // replaces the old one's record, whatever became of that one.
        let mut registered = BTreeSet::new();
        for (id, (at, hb)) in &beats {
            if now.duration_since(*at) > session {
                continue;
            }
            let me = &hb.identity;
            let record = match view.brokers.get(id) {
                Some(b) if b.incarnation == me.incarnation && b.wal_recovered == Some(me.incarnation) => continue,
                Some(b) if b.alive && !b.registration_differs(me) => continue,
                previous => BrokerRecord::registered(me, previous),
            };
            tracing::info!(broker = id, incarnation = record.incarnation, host = %record.host, port = record.port, "broker registered");
            changes.put_broker(&record);
            registered.insert(*id);
        }

        // 2. Deaths (never this broker: it heartbeats to itself).
        for b in
            view.brokers.values().filter(|b| b.alive && b.node_id != self.node_id() && !registered.contains(&b.node_id))
        {
            let last = beats
                .get(&b.node_id)
                .filter(|(_, hb)| hb.identity.incarnation == b.incarnation)
                .map_or(since, |(at, _)| *at);
            let silent = now.duration_since(last.max(since));
            if silent <= session {
                continue;
            }
            if b.wal == WalKind::S3 {
                tracing::warn!(broker = b.node_id, ?silent, "broker died; taking over its S3 WAL next");
            } else {
                tracing::warn!(broker = b.node_id, ?silent, "broker died; its file-WAL partitions wait for it");
            }
            changes.put_broker(&BrokerRecord { alive: false, ..b.clone() });
            broker.metrics.cluster.brokers_declared_dead.inc();
        }
        if !changes.is_empty() {
            self.commit(changes.records(&view)).await;
            return Ok(());
        }

        // 3. WAL takeovers, only of brokers a committed record says are dead: a deposed
        // controller could not have committed that, so it never fences a live broker's WAL.
        for b in view.brokers.values() {
            if b.alive || b.wal != WalKind::S3 || b.wal_recovered == Some(b.incarnation) {
                continue;
            }
            if let Some(epoch) = b.wal_epoch {
                let started = Instant::now();
                let adopted = broker.engine.adopt_wal(&S3WalConfig::new(b.node_id as u64), epoch).await?;
                broker.metrics.cluster.wal_takeovers.inc();
                broker.metrics.cluster.wal_records_adopted.inc_by(adopted as u64);
                tracing::warn!(
                    broker = b.node_id,
                    adopted,
                    took_ms = started.elapsed().as_millis() as u64,
                    "took over a dead broker's S3 WAL; its partitions move"
                );
            }
            changes.put_broker(&BrokerRecord { wal_recovered: Some(b.incarnation), ..b.clone() });
        }
        if !changes.is_empty() {
            self.commit(changes.records(&view)).await;
            return Ok(()); // the next pass places partitions on the new view
        }

        // 4. Placement.
        let load: HashMap<(String, i32), f64> = beats
            .values()
            .flat_map(|(_, hb)| hb.load.iter())
            .map(|l| ((l.topic.clone(), l.partition), l.bytes_in + l.bytes_out))
            .collect();
        let plan = placement::plan(&view, &load, self.config.max_moves_per_pass, &self.config.pool_rules);
        for (topic, list) in plan {
            let before = view.assignments.get(&topic);
            let changed = list.iter().enumerate().filter(|(i, b)| before.and_then(|l| l.get(*i)) != Some(b)).count();
            broker.metrics.cluster.partitions_reassigned.inc_by(changed as u64);
            if let Ok(value) = serde_json::to_string(&list) {
                tracing::debug!(topic, assignment = ?list, "assignment changed");
                changes.set(assign_key(&topic), Some(value));
            }
        }
        for topic in view.assignments.keys().filter(|t| !view.topics.contains_key(*t)) {
            changes.set(format!("{ASSIGN_PREFIX}{topic}"), None);
        }
        if !changes.is_empty() {
            self.commit(changes.records(&view)).await;
        }
        Ok(())
    }

    async fn commit(&self, records: Vec<CatalogRecord>) {
        match self.catalog.submit(records).await {
            Ok(_) => {}
            Err(automq_storage::Error::PreconditionFailed(m)) => {
                // Another change landed since this pass read the view: the next pass (woken by
                // that change) works from the new one.
                tracing::debug!(reason = %m, "controller pass raced another change; redoing it");
            }
            Err(e) => tracing::warn!(error = %e, "controller could not commit its changes"),
        }
    }
}
