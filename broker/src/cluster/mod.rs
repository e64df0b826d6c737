//! The broker cluster: N brokers sharing one bucket behave as one Kafka cluster, and no broker
//! owns data another cannot take over. Design notes: `docs/cluster.md`.
//!
//! - [`records`]: the cluster's records in the catalog (controller claim, brokers, assignments).
//! - [`rpc`]: the brokers' internal HTTP API (metadata forwarding and feed, heartbeats).
//! - [`controller`]: the controller's duties (membership, failover, assignment, balancing).
//! - [`placement`]: where partitions go (pure).
//! - [`ownership`]: each broker opens the partitions assigned to it and closes the others.
//! - [`zones`], [`relay`]: zone-aware routing, produce relayed through the bucket.
//!
//! Every broker runs the same tasks: it follows the controller's metadata (or is the
//! controller), heartbeats to it, and reconciles its partitions with the assignments. The
//! controller is whoever last claimed the role in the metadata log; followers claim it when
//! the controller stays unreachable for `controller_timeout`. A claim is a compare-and-set on
//! the previous claim, appended by a broker that first read the whole log from the bucket; the
//! deposed controller's next append fails, and it becomes a follower.

pub mod admin;
pub mod controller;
pub mod ownership;
pub mod placement;
pub mod records;
pub mod relay;
pub mod rpc;
pub mod zones;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use automq_storage::metadata::{Catalog, CatalogRecord};
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;

use self::records::{ClusterView, ControllerClaim, WalKind, CONTROLLER_KEY};
use self::rpc::{ControllerLink, Fed, Heartbeat, HeartbeatReply, PartitionLoad, RpcClient};

/// Timing of the cluster protocol.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// How often a broker heartbeats to the controller.
    pub heartbeat_interval: Duration,
    /// A broker not heard from for this long is dead (its S3 WAL is taken over, its partitions
    /// move).
    pub session_timeout: Duration,
    /// How long followers tolerate an unreachable controller before electing a new one.
    pub controller_timeout: Duration,
    /// Balancing moves per controller pass.
    pub max_moves_per_pass: usize,
    /// Where topics without their own `automq.pool` are placed.
    pub pool_rules: placement::PoolRules,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            heartbeat_interval: Duration::from_millis(500),
            session_timeout: Duration::from_secs(4),
            controller_timeout: Duration::from_secs(4),
            max_moves_per_pass: 16,
            pool_rules: placement::PoolRules::default(),
        }
    }
}

/// What this broker tells the controller about itself (in every heartbeat).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub node_id: i32,
    pub incarnation: u64,
    pub host: String,
    pub port: i32,
    /// Named listeners' advertised addresses (empty with a single listener).
    pub listeners: std::collections::BTreeMap<String, records::Endpoint>,
    pub http: String,
    pub rack: Option<String>,
    /// The broker pool (`--pool`).
    pub pool: String,
    pub wal: WalKind,
    /// The S3 WAL epoch this incarnation writes in (what a takeover fences up to).
    pub wal_epoch: Option<u64>,
}

/// The controller's memory of heartbeats (not persisted: a new controller starts everyone's
/// session afresh).
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    pub(crate) since: Option<Instant>,
    pub(crate) last: HashMap<i32, (Instant, Heartbeat)>,
}

#[derive(Debug)]
pub struct Cluster {
    pub config: ClusterConfig,
    pub identity: RwLock<Identity>,
    catalog: Arc<Catalog>,
    rpc: RpcClient,
    /// host:port of the controller this broker follows (`None`: it is the controller).
    following: Arc<RwLock<Option<String>>>,
    view: Mutex<Option<Arc<ClusterView>>>,
    pub(crate) sessions: Mutex<Sessions>,
    /// Measured partition load on this broker, sent with heartbeats.
    pub(crate) load: Mutex<Vec<PartitionLoad>>,
    /// Wakes the controller pass (a heartbeat brought news).
    pub(crate) wake: Notify,
    /// This incarnation was declared dead: it must stop.
    fenced: Mutex<Option<String>>,
    /// Shutting down: never claims the controller role again.
    leaving: std::sync::atomic::AtomicBool,
    /// The epoch of the claim this broker follows.
    followed_epoch: Mutex<u64>,
}

impl Cluster {
    pub fn new(config: ClusterConfig, identity: Identity, catalog: Arc<Catalog>) -> Arc<Self> {
        Arc::new(Cluster {
            config,
            identity: RwLock::new(identity),
            catalog,
            rpc: RpcClient::new(),
            following: Arc::new(RwLock::new(None)),
            view: Mutex::new(None),
            sessions: Mutex::new(Sessions::default()),
            load: Mutex::new(Vec::new()),
            wake: Notify::new(),
            fenced: Mutex::new(None),
            leaving: std::sync::atomic::AtomicBool::new(false),
            followed_epoch: Mutex::new(0),
        })
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    pub fn rpc(&self) -> &RpcClient {
        &self.rpc
    }

    pub fn node_id(&self) -> i32 {
        self.identity.read().node_id
    }

    /// The cluster as the current catalog state describes it (cached per state).
    pub fn view(&self) -> Arc<ClusterView> {
        let state = self.catalog.state();
        let mut cached = self.view.lock();
        if let Some(v) = cached.as_ref().filter(|v| v.applied_seq == state.applied_seq && state.applied_seq > 0) {
            return v.clone();
        }
        let v = Arc::new(ClusterView::of(&state));
        *cached = Some(v.clone());
        v
    }

    /// Whether this broker is the controller (writes the metadata log and holds the claim).
    pub fn is_controller(&self) -> bool {
        self.catalog.is_writer() && self.view().controller.as_ref().is_some_and(|c| self.is_me(c))
    }

    fn is_me(&self, claim: &ControllerClaim) -> bool {
        let me = self.identity.read();
        claim.node_id == me.node_id && claim.incarnation == me.incarnation
    }

    /// Why this incarnation must stop, if it was declared dead and its WAL taken over.
    pub fn fenced(&self) -> Option<String> {
        self.fenced.lock().clone()
    }

    /// A planned shutdown started.
    pub fn set_leaving(&self) {
        self.leaving.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn fence(&self, why: String) {
        tracing::error!(reason = %why, "this broker was fenced by the cluster; it acknowledges nothing more and must restart");
        *self.fenced.lock() = Some(why);
    }

    /// Settles this broker's role at start-up, before anything is submitted: claims the
    /// controller role when there is none (or the claimant was this node's previous
    /// incarnation), else follows the claimant.
    pub async fn bootstrap(&self) -> automq_storage::Result<()> {
        let view = self.view();
        match view.controller.clone() {
            Some(c) if c.node_id != self.node_id() => self.follow(&c),
            _ => self.claim().await?,
        }
        Ok(())
    }

    fn follow(&self, claim: &ControllerClaim) {
        tracing::info!(controller = claim.node_id, epoch = claim.epoch, at = %claim.http, "following the controller");
        *self.following.write() = Some(claim.http.clone());
        *self.followed_epoch.lock() = claim.epoch;
        self.catalog.follow(Arc::new(ControllerLink { rpc: self.rpc.clone(), target: self.following.clone() }));
    }

    /// Claims the controller role: reads the log from the bucket, then replaces the claim it
    /// saw. On losing (someone else claimed first), follows the winner.
    pub async fn claim(&self) -> automq_storage::Result<()> {
        if self.leaving.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        self.catalog.become_writer().await?;
        let view = self.view();
        let seen = view.raw.get(CONTROLLER_KEY).cloned();
        let epoch = view.controller_epoch + 1;
        let me = self.identity.read().clone();
        let claim = ControllerClaim {
            node_id: me.node_id,
            incarnation: me.incarnation,
            epoch,
            http: me.http.clone(),
            resigned: false,
        };
        let value = serde_json::to_string(&claim).map_err(|e| automq_storage::Error::Failed(e.to_string()))?;
        let records = vec![
            CatalogRecord::KvExpect {
                key: CONTROLLER_KEY.into(),
                digest: seen.as_deref().map(automq_storage::metadata::state::kv_digest),
            },
            CatalogRecord::KvPut { key: CONTROLLER_KEY.into(), value },
        ];
        // Every broker's session starts afresh before the claim can land: the controller pass
        // may run the moment the state holds the claim, and stale heartbeats from an earlier
        // stint as controller would declare live brokers dead.
        {
            let mut s = self.sessions.lock();
            s.since = Some(Instant::now());
            s.last.clear();
        }
        match self.catalog.submit(records).await {
            Ok(_) => {
                *self.following.write() = None;
                tracing::info!(epoch, "this broker is the controller");
                self.wake.notify_one();
                Ok(())
            }
            Err(e) => {
                tracing::info!(error = %e, "lost the controller election");
                let _ = self.catalog.refresh().await;
                match self.view().controller.clone() {
                    Some(c) if !self.is_me(&c) => {
                        self.follow(&c);
                        Ok(())
                    }
                    _ => Err(e),
                }
            }
        }
    }

    /// Follows the controller's metadata (or, as the controller, checks it still is), and
    /// elects a new controller when the current one stays unreachable. Runs until `stop`.
    pub async fn run_metadata(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        // The controller is presumed gone only after failing for `controller_timeout` over
        // several attempts: one long gap (this process was paused) proves nothing.
        let mut failing: Option<(Instant, u32)> = None;
        let mut last_check = Instant::now();
        loop {
            if *stop.borrow() {
                return;
            }
            if self.catalog.is_writer() {
                if let Some(c) = self.view().controller.clone().filter(|c| !self.is_me(c)) {
                    // Our catalog caught up with another writer's claim.
                    self.follow(&c);
                    continue;
                }
                // Deposed controllers learn it from the bucket: one HEAD a second.
                if last_check.elapsed() >= Duration::from_secs(1) || self.catalog.submit_failed() {
                    last_check = Instant::now();
                    if let Err(e) = self.catalog.refresh().await {
                        tracing::warn!(error = %e, "cannot check the metadata log");
                    }
                    match self.view().controller.clone() {
                        Some(c) if !self.is_me(&c) => self.follow(&c),
                        None => {
                            let _ = self.claim().await;
                        }
                        _ => {}
                    }
                }
                failing = None;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = stop.changed() => return,
                }
                continue;
            }
            let Some(addr) = self.following.read().clone() else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let after = self.catalog.state().applied_seq;
            let attempt = Instant::now();
            let wait = (self.config.controller_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
            let fed = tokio::select! {
                r = self.rpc.feed(&addr, after, wait, wait + self.config.controller_timeout / 2) => r,
                _ = stop.changed() => return,
            };
            let applied = match fed {
                Ok(Fed::Entries(entries)) => self.catalog.apply_entries(entries),
                Ok(Fed::State(json)) => self.catalog.apply_state(&json),
                Err(e) => Err(e),
            };
            match applied {
                Ok(()) => {
                    failing = None;
                    self.after_metadata_change();
                    if self.view().controller.is_none() {
                        // The controller gave up its role (a planned shutdown).
                        if let Err(e) = self.claim().await {
                            tracing::warn!(error = %e, "controller claim failed; will retry");
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, controller = %addr, "metadata feed failed");
                    // Another broker may know of a newer controller (we missed its claim because
                    // the one we follow stopped writing, e.g. it shut down and restarted).
                    if let Some(newer) = self.newer_claim(&addr).await {
                        self.follow(&newer);
                        failing = None;
                        continue;
                    }
                    // The streak starts when its first failed attempt was sent: a hung controller
                    // costs the full timeout per attempt.
                    let (since, attempts) = failing.get_or_insert((attempt, 0));
                    *attempts += 1;
                    if since.elapsed() >= self.config.controller_timeout && *attempts >= 2 && self.fenced().is_none() {
                        tracing::warn!(controller = %addr, failing_for = ?since.elapsed(), "controller unreachable; claiming the role");
                        if let Err(e) = self.claim().await {
                            tracing::warn!(error = %e, "controller claim failed; will retry");
                        }
                        failing = None;
                    } else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
    }

    /// Asks the broker we follow, then the others we know of, who the controller is; returns a
    /// claim newer than the one we follow, if any of them knows one.
    async fn newer_claim(&self, followed: &str) -> Option<ControllerClaim> {
        let view = self.view();
        let mut peers: Vec<String> = vec![followed.to_string()];
        peers.extend(view.brokers.values().filter(|b| b.node_id != self.node_id()).map(|b| b.http.clone()));
        peers.dedup();
        let known = *self.followed_epoch.lock();
        let mut best: Option<ControllerClaim> = None;
        for peer in peers {
            if let Ok(Some(c)) = self.rpc.controller(&peer).await {
                if c.epoch > known && !self.is_me(&c) && best.as_ref().is_none_or(|b| c.epoch > b.epoch) {
                    best = Some(c);
                }
            }
        }
        best
    }

    /// Follows a new claim seen in replicated metadata, and notices being declared dead.
    fn after_metadata_change(&self) {
        let view = self.view();
        if let Some(c) = &view.controller {
            if !self.is_me(c) && self.following.read().as_deref() != Some(c.http.as_str()) {
                self.follow(c);
            }
        }
        let me = self.identity.read().clone();
        if let Some(b) = view.brokers.get(&me.node_id) {
            if b.incarnation == me.incarnation && b.wal_recovered == Some(me.incarnation) {
                self.fence(format!("the controller declared broker {} dead and took over its WAL", me.node_id));
            }
        }
    }

    /// Heartbeats to the controller until `stop` (as the controller, to itself).
    pub async fn run_heartbeats(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let hb = self.heartbeat_message();
            let following = self.following.read().clone();
            let reply = match following {
                None if self.catalog.is_writer() => self.controller_heartbeat(hb),
                None => None,
                Some(addr) => self.rpc.heartbeat(&addr, &hb, self.config.heartbeat_interval * 2).await.ok(),
            };
            if reply.is_some_and(|r| r.fenced) {
                self.fence("the controller says this incarnation was declared dead".into());
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.heartbeat_interval) => {}
                _ = stop.changed() => return,
            }
        }
    }

    fn heartbeat_message(&self) -> Heartbeat {
        Heartbeat { identity: self.identity.read().clone(), load: self.load.lock().clone() }
    }

    /// On the controller: records a heartbeat. `None` if this broker is not the controller.
    pub fn controller_heartbeat(&self, hb: Heartbeat) -> Option<HeartbeatReply> {
        if !self.is_controller() {
            return None;
        }
        let view = self.view();
        let me = &hb.identity;
        let fenced = view
            .brokers
            .get(&me.node_id)
            .is_some_and(|b| b.incarnation == me.incarnation && b.wal_recovered == Some(me.incarnation));
        let news = match view.brokers.get(&me.node_id) {
            Some(b) => !fenced && (!b.alive || b.registration_differs(me)),
            None => true,
        };
        self.sessions.lock().last.insert(me.node_id, (Instant::now(), hb));
        if news {
            self.wake.notify_one();
        }
        Some(HeartbeatReply { fenced })
    }
}
