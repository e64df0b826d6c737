//! The controller's duties, one pass at a time (woken by heartbeats bringing news and by
//! metadata changes, and at least every 250 ms):
//!
//! 1. Registration: a heartbeat from a new broker, a new incarnation or changed details
//!    updates the broker's record (alive).
//! 2. Liveness: a broker not heard from within the session timeout is dead. If it ran the S3
//!    WAL, the controller first takes its WAL over (fences it, commits what it acknowledged),
//!    then records it dead with its WAL recovered, which releases its partitions. A dead
//!    file-WAL broker keeps its partitions until it comes back.
//! 3. Placement: [`placement::plan`] on the resulting view; changed assignments are committed.
//!
//! Every change is a compare-and-set on the records the pass read, so a deposed controller's
//! pass (or a stale one) changes nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use automq_storage::metadata::state::kv_digest;
use automq_storage::metadata::CatalogRecord;
use automq_storage::wal::S3WalConfig;

use super::placement;
use super::records::{assign_key, broker_key, BrokerRecord, ClusterView, WalKind, ASSIGN_PREFIX};
use super::{registration_differs, Cluster};
use crate::broker::Broker;

/// Catalog changes of one pass: key -> new value (`None`: delete), each guarded by the value
/// the pass read.
#[derive(Debug, Default)]
struct Changes {
    records: Vec<CatalogRecord>,
}

impl Changes {
    fn set(&mut self, view: &ClusterView, key: String, value: Option<String>) {
        self.records
            .push(CatalogRecord::KvExpect { key: key.clone(), digest: view.raw.get(&key).map(|v| kv_digest(v)) });
        self.records.push(match value {
            Some(value) => CatalogRecord::KvPut { key, value },
            None => CatalogRecord::KvDelete { key },
        });
    }

    fn put_broker(&mut self, view: &ClusterView, b: &BrokerRecord) {
        match serde_json::to_string(b) {
            Ok(v) => self.set(view, broker_key(b.node_id), Some(v)),
            Err(e) => tracing::error!(error = %e, "cannot encode a broker record"),
        }
    }

    fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

impl Cluster {
    /// Runs controller passes while this broker is the controller, until `stop`.
    pub async fn run_controller(self: Arc<Self>, broker: Arc<Broker>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut changes = broker.engine.catalog().watch();
        loop {
            if self.is_controller() && self.fenced().is_none() {
                if let Err(e) = self.controller_pass(&broker).await {
                    tracing::warn!(error = %e, "controller pass failed; will retry");
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

        // 1. Registrations.
        for (id, (at, hb)) in &beats {
            if now.duration_since(*at) > session {
                continue;
            }
            let record = match view.brokers.get(id) {
                Some(b) if b.incarnation == hb.incarnation && b.wal_recovered == Some(hb.incarnation) => continue,
                Some(b) if b.alive && !registration_differs(b, hb) => continue,
                Some(b) => BrokerRecord {
                    host: hb.host.clone(),
                    port: hb.port,
                    http: hb.http.clone(),
                    rack: hb.rack.clone(),
                    wal: hb.wal,
                    wal_epoch: hb.wal_epoch,
                    leaving: b.leaving && b.incarnation == hb.incarnation,
                    incarnation: hb.incarnation,
                    alive: true,
                    ..b.clone()
                },
                None => BrokerRecord {
                    node_id: *id,
                    host: hb.host.clone(),
                    port: hb.port,
                    http: hb.http.clone(),
                    rack: hb.rack.clone(),
                    wal: hb.wal,
                    wal_epoch: hb.wal_epoch,
                    incarnation: hb.incarnation,
                    alive: true,
                    draining: false,
                    leaving: false,
                    wal_recovered: None,
                },
            };
            tracing::info!(broker = id, incarnation = record.incarnation, host = %record.host, port = record.port, "broker registered");
            changes.put_broker(&view, &record);
        }

        // 2. Deaths (never this broker: it heartbeats to itself).
        for b in view.brokers.values().filter(|b| b.alive && b.node_id != self.node_id()) {
            let last =
                beats.get(&b.node_id).filter(|(_, hb)| hb.incarnation == b.incarnation).map_or(since, |(at, _)| *at);
            let silent = now.duration_since(last.max(since));
            if silent <= session {
                continue;
            }
            let mut dead = BrokerRecord { alive: false, ..b.clone() };
            if b.wal == WalKind::S3 {
                if let Some(epoch) = b.wal_epoch {
                    let started = Instant::now();
                    let adopted = broker.engine.adopt_wal(&S3WalConfig::new(b.node_id as u64), epoch).await?;
                    tracing::warn!(
                        broker = b.node_id,
                        ?silent,
                        adopted,
                        took_ms = started.elapsed().as_millis() as u64,
                        "broker died; took over its S3 WAL, its partitions move"
                    );
                }
                dead.wal_recovered = Some(b.incarnation);
            } else {
                tracing::warn!(broker = b.node_id, ?silent, "broker died; its file-WAL partitions wait for it");
            }
            changes.put_broker(&view, &dead);
        }
        if !changes.is_empty() {
            self.commit(changes).await;
            return Ok(()); // the next pass places partitions on the new view
        }

        // 3. Placement.
        let load: HashMap<(String, i32), f64> = beats
            .values()
            .flat_map(|(_, hb)| hb.load.iter())
            .map(|l| ((l.topic.clone(), l.partition), l.bytes_in + l.bytes_out))
            .collect();
        let plan = placement::plan(&view, &load, self.config.max_moves_per_pass);
        for (topic, list) in plan {
            if let Ok(value) = serde_json::to_string(&list) {
                tracing::debug!(topic, assignment = ?list, "assignment changed");
                changes.set(&view, assign_key(&topic), Some(value));
            }
        }
        for topic in view.assignments.keys().filter(|t| !view.topics.contains_key(*t)) {
            changes.set(&view, format!("{ASSIGN_PREFIX}{topic}"), None);
        }
        if !changes.is_empty() {
            self.commit(changes).await;
        }
        Ok(())
    }

    async fn commit(&self, changes: Changes) {
        match self.catalog.submit(changes.records).await {
            Ok(_) => {}
            Err(automq_storage::Error::PreconditionFailed(m)) => {
                tracing::debug!(reason = %m, "controller pass raced another change; redoing it");
                self.wake.notify_one();
            }
            Err(e) => tracing::warn!(error = %e, "controller could not commit its changes"),
        }
    }
}
