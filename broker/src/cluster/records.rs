//! Cluster records in the catalog's key-value namespace, written only by the controller (or a
//! broker claiming the controller role), read by every broker from its replicated catalog:
//!
//! - `cluster/controller`: the controller's claim ([`ControllerClaim`]). A new controller
//!   replaces it with a compare-and-set on the claim it saw, so two claimants cannot both win.
//! - `cluster/broker/{id}`: a broker's registration and liveness ([`BrokerRecord`]).
//! - `cluster/assign/{topic}`: the broker each partition of a topic is assigned to.
//!
//! A partition's leader epoch is its stream's epoch: the assigned broker opens the stream at
//! the next epoch, which fences whoever had it before. See `docs/cluster.md`.

use std::collections::BTreeMap;
use std::sync::Arc;

use automq_storage::metadata::CatalogState;
use serde::{Deserialize, Serialize};

use crate::topics::{TopicMeta, KV_PREFIX};

pub const CONTROLLER_KEY: &str = "cluster/controller";
/// The pool of brokers started without `--pool`, and of topics without `automq.pool`.
pub const DEFAULT_POOL: &str = "default";

fn default_pool() -> String {
    DEFAULT_POOL.to_string()
}
pub const BROKER_PREFIX: &str = "cluster/broker/";
pub const ASSIGN_PREFIX: &str = "cluster/assign/";

pub fn broker_key(node_id: i32) -> String {
    format!("{BROKER_PREFIX}{node_id}")
}

pub fn assign_key(topic: &str) -> String {
    format!("{ASSIGN_PREFIX}{topic}")
}

/// Who the controller is, and where its internal API listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerClaim {
    pub node_id: i32,
    /// The broker process that claimed (a restarted broker is a new incarnation).
    pub incarnation: u64,
    /// Bumped by every claim.
    pub epoch: u64,
    /// host:port of the claimant's HTTP listener.
    pub http: String,
    /// The claimant gave the role up (a planned shutdown): nobody holds it, and the next
    /// claim takes `epoch + 1`, so epochs only grow.
    #[serde(default)]
    pub resigned: bool,
}

/// Which write-ahead log a broker runs, which decides what happens when it dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WalKind {
    /// In the bucket: a peer can fence and replay it, so the partitions move elsewhere.
    S3,
    /// On the broker's own disk: its partitions wait for it to come back.
    File,
}

/// A broker as the controller registered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRecord {
    pub node_id: i32,
    /// The Kafka listener clients are told about (the first listener's advertised address).
    pub host: String,
    pub port: i32,
    /// The advertised address of every named listener, when the broker has more than one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub listeners: BTreeMap<String, Endpoint>,
    /// host:port of its HTTP listener (internal and admin API, metrics).
    pub http: String,
    pub rack: Option<String>,
    /// The broker pool: topics placed on it are led only by its brokers.
    #[serde(default = "default_pool")]
    pub pool: String,
    pub wal: WalKind,
    /// The S3 WAL epoch of this incarnation (what a takeover fences up to).
    #[serde(default)]
    pub wal_epoch: Option<u64>,
    /// Random per process start.
    pub incarnation: u64,
    /// Heartbeating within the session timeout (as the controller last decided).
    pub alive: bool,
    /// An operator asked for the broker to be emptied (it keeps running, leads nothing) until
    /// the drain is cancelled.
    pub draining: bool,
    /// This incarnation is shutting down and hands its partitions off first (cleared when
    /// the broker comes back as a new incarnation).
    #[serde(default)]
    pub leaving: bool,
    /// The incarnation whose S3 WAL a peer fenced and replayed after it died: that process
    /// may never acknowledge anything again (its WAL writes fail), and its partitions may
    /// open elsewhere.
    #[serde(default)]
    pub wal_recovered: Option<u64>,
}

/// A listener's advertised address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub host: String,
    pub port: i32,
}

impl BrokerRecord {
    /// Where clients that came in through `listener` reach this broker: that listener's
    /// address; a broker with one listener has only `host:port`. `None`: it has listeners but
    /// not that one.
    pub fn endpoint(&self, listener: Option<&str>) -> Option<(&str, i32)> {
        match listener {
            Some(name) if !self.listeners.is_empty() => self.listeners.get(name).map(|e| (e.host.as_str(), e.port)),
            _ => Some((self.host.as_str(), self.port)),
        }
    }

    /// The record of a broker that just heartbeated as `me` (alive), keeping what an operator
    /// set on `previous` (a drain) and, for the same incarnation, its shutdown.
    pub fn registered(me: &crate::cluster::Identity, previous: Option<&BrokerRecord>) -> Self {
        BrokerRecord {
            node_id: me.node_id,
            host: me.host.clone(),
            port: me.port,
            listeners: me.listeners.clone(),
            http: me.http.clone(),
            rack: me.rack.clone(),
            pool: me.pool.clone(),
            wal: me.wal,
            wal_epoch: me.wal_epoch,
            incarnation: me.incarnation,
            alive: true,
            draining: previous.is_some_and(|b| b.draining),
            leaving: previous.is_some_and(|b| b.leaving && b.incarnation == me.incarnation),
            wal_recovered: previous.and_then(|b| b.wal_recovered),
        }
    }

    /// Whether `me`'s registration details differ from the record.
    pub fn registration_differs(&self, me: &crate::cluster::Identity) -> bool {
        self.incarnation != me.incarnation
            || self.host != me.host
            || self.port != me.port
            || self.listeners != me.listeners
            || self.http != me.http
            || self.rack != me.rack
            || self.pool != me.pool
            || self.wal != me.wal
            || self.wal_epoch != me.wal_epoch
    }

    /// Can lead partitions now.
    pub fn eligible(&self) -> bool {
        self.alive && !self.draining && !self.leaving
    }

    /// Dead, and its S3 WAL taken over: its former partitions may be opened by others
    /// without it closing them. (A dead file-WAL broker never releases its partitions: what
    /// it acknowledged may be only on its disk.)
    pub fn released(&self) -> bool {
        !self.alive && self.wal == WalKind::S3 && self.wal_recovered == Some(self.incarnation)
    }
}

/// The cluster as one catalog state describes it.
#[derive(Debug, Default)]
pub struct ClusterView {
    pub applied_seq: u64,
    /// The controller, if one holds the role.
    pub controller: Option<ControllerClaim>,
    /// The newest claim's epoch (resigned or not; 0: never claimed).
    pub controller_epoch: u64,
    pub brokers: BTreeMap<i32, BrokerRecord>,
    /// Broker per partition, by topic (shorter than the topic, or -1: not assigned yet).
    pub assignments: BTreeMap<String, Vec<i32>>,
    pub topics: BTreeMap<String, Arc<TopicMeta>>,
    /// The raw catalog values of the cluster records, for compare-and-set changes.
    pub raw: BTreeMap<String, String>,
    /// The cluster's ACLs, indexed for the authorizer.
    pub acls: crate::security::acl::Acls,
}

fn scan<'a>(
    state: &'a CatalogState,
    prefix: &'a str,
) -> impl Iterator<Item = (&'a String, &'a std::sync::Arc<str>)> + 'a {
    state.kv.range(prefix.to_string()..).take_while(move |(k, _)| k.starts_with(prefix))
}

impl ClusterView {
    pub fn of(state: &CatalogState) -> Self {
        let mut view = ClusterView { applied_seq: state.applied_seq, ..ClusterView::default() };
        if let Some(raw) = state.kv.get(CONTROLLER_KEY) {
            let claim: Option<ControllerClaim> = serde_json::from_str(raw).ok();
            view.controller_epoch = claim.as_ref().map_or(0, |c| c.epoch);
            view.controller = claim.filter(|c| !c.resigned);
            view.raw.insert(CONTROLLER_KEY.to_string(), raw.to_string());
        }
        for (k, v) in scan(state, BROKER_PREFIX) {
            match serde_json::from_str::<BrokerRecord>(v) {
                Ok(b) => {
                    view.brokers.insert(b.node_id, b);
                    view.raw.insert(k.clone(), v.to_string());
                }
                Err(e) => tracing::error!(key = %k, error = %e, "unreadable broker record"),
            }
        }
        for (k, v) in scan(state, ASSIGN_PREFIX) {
            match serde_json::from_str::<Vec<i32>>(v) {
                Ok(a) => {
                    view.assignments.insert(k[ASSIGN_PREFIX.len()..].to_string(), a);
                    view.raw.insert(k.clone(), v.to_string());
                }
                Err(e) => tracing::error!(key = %k, error = %e, "unreadable assignment record"),
            }
        }
        // Topic links, SCRAM credentials and ACLs: kept raw, parsed where used (crate::link,
        // crate::security::credentials).
        for prefix in [crate::link::LINK_PREFIX, crate::security::credentials::PREFIX, crate::security::acl::PREFIX] {
            for (k, v) in scan(state, prefix) {
                view.raw.insert(k.clone(), v.to_string());
            }
        }
        view.acls = crate::security::acl::Acls::from_raw(&view.raw);
        for (k, v) in scan(state, KV_PREFIX) {
            match serde_json::from_str::<TopicMeta>(v) {
                Ok(t) => {
                    view.topics.insert(t.name.clone(), Arc::new(t));
                    view.raw.insert(k.clone(), v.to_string());
                }
                Err(e) => tracing::error!(key = %k, error = %e, "unreadable topic record; skipping it"),
            }
        }
        view
    }

    /// The broker a partition is assigned to, if any.
    pub fn assigned(&self, topic: &str, partition: i32) -> Option<i32> {
        let a = self.assignments.get(topic)?.get(usize::try_from(partition).ok()?).copied()?;
        (a >= 0).then_some(a)
    }

    /// The live broker clients should talk to for a partition: its current stream owner if
    /// that broker is alive (a move not finished yet), else the assigned one if alive.
    pub fn leader(&self, state: &CatalogState, topic: &TopicMeta, partition: i32) -> Option<i32> {
        let alive = |id: i32| self.brokers.get(&id).is_some_and(|b| b.alive);
        let stream = usize::try_from(partition).ok().and_then(|i| topic.partitions.get(i))?;
        let owner = state.streams.get(stream).and_then(|s| s.owner).map(|o| o as i32);
        owner.filter(|o| alive(*o)).or_else(|| self.assigned(&topic.name, partition).filter(|a| alive(*a)))
    }

    /// Whether every partition (of `topic`, or of every topic) is assigned, or no broker can
    /// take one.
    pub fn placed(&self, topic: Option<&str>) -> bool {
        let assigned = |(name, t): (&String, &Arc<TopicMeta>)| {
            (0..t.partitions.len()).all(|p| self.assigned(name, p as i32).is_some())
        };
        self.brokers.values().all(|b| !b.eligible())
            || match topic {
                Some(name) => self.topics.get_key_value(name).is_none_or(assigned),
                None => self.topics.iter().all(assigned),
            }
    }

    /// Partitions assigned to each broker.
    pub fn partitions_of(&self) -> BTreeMap<i32, Vec<(String, i32)>> {
        let mut out: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
        for (topic, brokers) in &self.assignments {
            for (p, b) in brokers.iter().enumerate() {
                if *b >= 0 {
                    out.entry(*b).or_default().push((topic.clone(), p as i32));
                }
            }
        }
        out
    }
}
