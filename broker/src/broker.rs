//! The broker: storage engine, topics and the partitions it leads, producer ids, groups, and
//! its place in the cluster.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use std::sync::OnceLock;

use automq_storage::clock::{self, SharedClock};
use automq_storage::metadata::state::kv_digest;
use automq_storage::metadata::{Catalog, CatalogConfig, CatalogRecord};
use automq_storage::object_store::{self, StoreOptions};
use automq_storage::stream::{StreamEngine, StreamEngineConfig, StreamMetrics};
use automq_storage::wal::{FileWal, S3Wal, S3WalConfig, Wal};
use kafka_protocol::ResponseError;
use parking_lot::{Mutex, RwLock};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::cluster::records::WalKind;
use crate::cluster::{Cluster, Identity};
use crate::config::{BrokerConfig, WalChoice};
use crate::error::{Error, Result};
use crate::groups::GroupCoordinator;
use crate::metrics::BrokerMetrics;
use crate::partition::Partition;
use crate::topics::{self, TopicConfig, TopicMeta};

/// Name of the internal topic holding consumer group offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
const CLUSTER_ID_KEY: &str = "cluster/id";
const PRODUCER_ID_KEY: &str = "producer_ids/next";
const PRODUCER_ID_BLOCK: i64 = 1000;

/// A topic and the partitions this broker leads.
#[derive(Debug)]
pub struct Topic {
    pub meta: TopicMeta,
    pub config: TopicConfig,
    /// Digest of the catalog record `meta` was read from (changes are compare-and-set on it).
    digest: String,
    /// By partition index: open here (this broker leads it) or not.
    partitions: RwLock<Vec<Option<Arc<Partition>>>>,
}

impl Topic {
    fn new(meta: TopicMeta, config: TopicConfig, digest: String, open: &[Option<Arc<Partition>>]) -> Self {
        let mut partitions: Vec<Option<Arc<Partition>>> = open.to_vec();
        partitions.resize(meta.partitions.len(), None);
        Topic { meta, config, digest, partitions: RwLock::new(partitions) }
    }

    pub fn partition_count(&self) -> usize {
        self.meta.partitions.len()
    }

    /// The partition, if this broker leads it: UNKNOWN_TOPIC_OR_PARTITION past the topic's
    /// partitions, NOT_LEADER_OR_FOLLOWER when another broker leads it (or none yet).
    pub fn led(&self, index: i32) -> Result<Arc<Partition>> {
        let i = usize::try_from(index).ok().filter(|i| *i < self.partition_count()).ok_or_else(|| {
            Error::kafka(ResponseError::UnknownTopicOrPartition, format!("{} has no partition {index}", self.meta.name))
        })?;
        self.partitions.read()[i].clone().ok_or_else(|| {
            Error::kafka(
                ResponseError::NotLeaderOrFollower,
                format!("this broker does not lead {}-{index}", self.meta.name),
            )
        })
    }

    /// The partitions this broker leads.
    pub fn led_partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().iter().flatten().cloned().collect()
    }

    pub(crate) fn set_partition(&self, index: usize, partition: Option<Arc<Partition>>) {
        if let Some(slot) = self.partitions.write().get_mut(index) {
            *slot = partition;
        }
    }
}

#[derive(Debug)]
pub struct Broker {
    pub config: BrokerConfig,
    pub cluster_id: String,
    pub engine: StreamEngine,
    /// The bucket (relayed produce objects live here too).
    pub store: object_store::SharedStore,
    pub cluster: Arc<Cluster>,
    /// Mirror partitions of topic links led here, and their fetchers.
    pub mirrors: Arc<crate::link::Mirrors>,
    pub groups: GroupCoordinator,
    pub txns: crate::txn::TransactionCoordinator,
    pub metrics: BrokerMetrics,
    pub registry: Arc<Mutex<Registry>>,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serialises topic creation, deletion and changes made through this broker.
    topic_changes: tokio::sync::Mutex<()>,
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
    advertised: (String, i32),
    /// Every listener's advertised address, by name.
    endpoints: BTreeMap<String, crate::cluster::records::Endpoint>,
    /// Partitions the ownership task is opening or closing.
    pub(crate) moving: Mutex<std::collections::HashSet<(String, i32)>>,
    /// Transaction indexes of partitions served from the bucket (zone-local fetches).
    pub(crate) bucket_txns: crate::txn::index::BucketTxns,
    /// Failed authentications by client address (they are slowed down).
    pub(crate) auth_throttle: crate::security::sasl::AuthThrottle,
    /// The Kafka listeners (each with its protocol, SASL mechanisms and certificate).
    pub listeners: Vec<Arc<crate::security::listener::Listener>>,
    /// ACL enforcement settings.
    pub authorizer: Arc<crate::security::acl::AuthorizerConfig>,
}

/// Wall-clock milliseconds since the Unix epoch (record and log-append timestamps).
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Broker {
    /// Opens storage, joins the cluster (claiming the controller role if nobody holds it,
    /// else following the controller), recovers the WAL and starts the cluster tasks: the
    /// metadata feed, heartbeats, the controller's passes and partition ownership. The HTTP
    /// listener serves the internal API from the moment the broker can answer it.
    pub async fn start(
        config: BrokerConfig,
        listeners: Vec<crate::security::listener::ListenerSpec>,
        http: tokio::net::TcpListener,
        stop: watch::Receiver<bool>,
    ) -> Result<(Arc<Broker>, Vec<tokio::task::JoinHandle<()>>)> {
        let mut registry = Registry::default();
        automq_common::register_process_metrics(&mut registry);
        let clock: SharedClock = clock::system();
        let wal_choice = config.wal_choice().map_err(Error::Config)?;
        config.pool_rules().map_err(Error::Config)?;
        let endpoints: BTreeMap<String, crate::cluster::records::Endpoint> = listeners
            .iter()
            .map(|l| {
                let (host, port) =
                    l.advertised.clone().unwrap_or_else(|| (l.bind.ip().to_string(), i32::from(l.bind.port())));
                (l.name.clone(), crate::cluster::records::Endpoint { host, port })
            })
            .collect();
        let advertised = listeners
            .first()
            .and_then(|l| endpoints.get(&l.name))
            .map(|e| (e.host.clone(), e.port))
            .ok_or_else(|| Error::Config("no Kafka listener".into()))?;
        let opened = listeners
            .iter()
            .map(|l| crate::security::listener::Listener::open(l).map(Arc::new))
            .collect::<std::result::Result<Vec<_>, String>>()
            .map_err(Error::Config)?;
        let authorizer = Arc::new(
            crate::security::acl::AuthorizerConfig::parse(
                &config.authorizer,
                &config.super_users,
                config.allow_everyone_if_no_acl_found,
            )
            .map_err(Error::Config)?,
        );
        if config.sasl_bootstrap_user.is_some() && config.sasl_bootstrap_password.is_none() {
            return Err(Error::Config("--sasl-bootstrap-user needs AUTOMQ_SASL_BOOTSTRAP_PASSWORD".into()));
        }
        if let WalChoice::File(dir) = &wal_choice {
            config.file_wal_config(dir).map_err(Error::Config)?;
        }
        let url = config.object_store_url();
        let store = object_store::open(&url, &StoreOptions::default(), Some(&mut registry)).await?;
        let registry = Arc::new(Mutex::new(registry));
        let catalog = Catalog::open(store.clone(), CatalogConfig::default(), clock.clone()).await?;
        let identity = Identity {
            node_id: config.node_id,
            incarnation: rand::random::<u64>() >> 1,
            host: advertised.0.clone(),
            port: advertised.1,
            listeners: if endpoints.len() > 1 { endpoints.clone() } else { BTreeMap::new() },
            http: config.advertised_http.clone().unwrap_or_else(|| config.http_listen.to_string()),
            rack: config.rack.clone(),
            pool: config.pool.clone(),
            wal: match wal_choice {
                WalChoice::S3 => WalKind::S3,
                WalChoice::File(_) => WalKind::File,
            },
            wal_epoch: None,
        };
        let cluster = Cluster::new(config.cluster_config(), identity, catalog.clone());
        let slot: Arc<OnceLock<Arc<Broker>>> = Arc::new(OnceLock::new());
        let mut tasks = Vec::new();
        tasks.push(crate::http::serve(http, cluster.clone(), registry.clone(), slot.clone(), stop.clone()));
        cluster.bootstrap().await?;
        tasks.push(tokio::spawn(cluster.clone().run_metadata(stop.clone())));
        let engine =
            Self::open_storage(&config, &wal_choice, store.clone(), catalog.clone(), clock, &cluster, &registry)
                .await?;

        let cluster_id = Self::cluster_id(&config, &catalog).await?;
        let metrics = BrokerMetrics::new(&mut registry.lock());
        let mirrors = Arc::new(crate::link::Mirrors::default());
        registry.lock().register_collector(Box::new(crate::link::MirrorMetrics(mirrors.clone())));
        let broker = Arc::new(Broker {
            groups: GroupCoordinator::new(),
            txns: crate::txn::TransactionCoordinator::new(crate::txn::TxnSettings {
                max_timeout_ms: config.transaction_max_timeout_ms,
                ..Default::default()
            }),
            cluster_id,
            engine,
            store,
            cluster: cluster.clone(),
            mirrors,
            metrics,
            registry,
            topics: RwLock::new(BTreeMap::new()),
            topic_changes: tokio::sync::Mutex::new(()),
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            advertised,
            config,
            moving: Mutex::new(Default::default()),
            bucket_txns: Default::default(),
            auth_throttle: Default::default(),
            listeners: opened,
            endpoints,
            authorizer,
        });
        let _ = slot.set(broker.clone());
        broker.sync_topics();
        tasks.push(tokio::spawn(cluster.clone().run_heartbeats(stop.clone())));
        tasks.push(tokio::spawn(cluster.clone().run_controller(broker.clone(), stop.clone())));
        tasks.push(tokio::spawn(crate::cluster::ownership::run(broker.clone(), stop.clone())));
        tasks.push(tokio::spawn(crate::link::run(broker.clone(), stop.clone())));
        broker.ensure_offsets_topic().await?;
        tracing::info!(
            cluster_id = %broker.cluster_id,
            node_id = broker.config.node_id,
            controller = broker.cluster.is_controller(),
            topics = broker.topics.read().len(),
            object_store = %url,
            wal = ?wal_choice,
            "broker started"
        );
        Ok((broker, tasks))
    }

    async fn open_storage(
        config: &BrokerConfig,
        wal_choice: &WalChoice,
        store: object_store::SharedStore,
        catalog: Arc<Catalog>,
        clock: SharedClock,
        cluster: &Cluster,
        registry: &Mutex<Registry>,
    ) -> Result<StreamEngine> {
        let (wal, recovered): (Arc<dyn Wal>, _) = match wal_choice {
            WalChoice::File(dir) => {
                let wal_config = config.file_wal_config(dir).map_err(Error::Config)?;
                let (w, r) = FileWal::open(wal_config)?;
                (Arc::new(w), r)
            }
            WalChoice::S3 => {
                let (w, r) = S3Wal::open(store.clone(), S3WalConfig::new(config.node_id as u64), clock.clone()).await?;
                cluster.identity.write().wal_epoch = Some(w.epoch());
                (Arc::new(w), r)
            }
        };
        let stream_metrics = StreamMetrics::new(Some(&mut registry.lock()));
        let engine_config = StreamEngineConfig::new(config.node_id as u64);
        Ok(StreamEngine::open(engine_config, store, wal, recovered, catalog, clock, stream_metrics).await?)
    }

    /// The cluster id: the stored one, or the configured (or a new) one stored by the first
    /// broker to start.
    async fn cluster_id(config: &BrokerConfig, catalog: &Catalog) -> Result<String> {
        loop {
            if let Some(stored) = catalog.state().kv.get(CLUSTER_ID_KEY) {
                return Ok(stored.to_string());
            }
            let id = config.cluster_id.clone().unwrap_or_else(new_cluster_id);
            let records = vec![
                CatalogRecord::KvExpect { key: CLUSTER_ID_KEY.into(), digest: None },
                CatalogRecord::KvPut { key: CLUSTER_ID_KEY.into(), value: id.clone() },
            ];
            match catalog.submit(records).await {
                Ok(_) => return Ok(id),
                Err(automq_storage::Error::PreconditionFailed(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Brings the local topics in line with the catalog: new topics appear (no partition
    /// open yet), changed ones take their new metadata, deleted ones go and this broker
    /// forgets their streams.
    pub(crate) fn sync_topics(&self) {
        let view = self.cluster.view();
        let mut topics = self.topics.write();
        let gone: Vec<String> = topics.keys().filter(|n| !view.topics.contains_key(*n)).cloned().collect();
        for name in gone {
            if let Some(t) = topics.remove(&name) {
                for p in t.led_partitions() {
                    self.engine.forget_stream(p.stream_id);
                }
                if name == OFFSETS_TOPIC {
                    self.groups.unload_all();
                }
                tracing::info!(topic = %name, "topic deleted");
            }
        }
        for (name, meta) in &view.topics {
            if topics.get(name).is_some_and(|t| t.meta == **meta) {
                continue;
            }
            let config = TopicConfig::from_map_over(self.topic_defaults(), &meta.configs)
                .unwrap_or_else(|_| self.topic_defaults());
            let open = topics.get(name).map(|t| t.partitions.read().clone()).unwrap_or_default();
            let digest = view.raw.get(&TopicMeta::kv_key(name)).map(|v| kv_digest(v)).unwrap_or_default();
            topics.insert(name.clone(), Arc::new(Topic::new((**meta).clone(), config, digest, &open)));
        }
    }

    async fn ensure_offsets_topic(&self) -> Result<()> {
        if self.topic(OFFSETS_TOPIC).is_none() {
            let configs = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
            match self.create_topic(OFFSETS_TOPIC, self.config.offsets_topic_partitions.max(1), configs, true).await {
                Err(e) if e.code() == ResponseError::TopicAlreadyExists => {}
                other => {
                    other?;
                }
            }
        }
        Ok(())
    }

    /// Creates `__transaction_state` the first time a client looks for a transaction
    /// coordinator (as Kafka does), in the background; the client retries meanwhile.
    pub fn ensure_txn_topic(self: &Arc<Self>) {
        if self.topic(crate::txn::TXN_TOPIC).is_some() {
            return;
        }
        let broker = self.clone();
        tokio::spawn(async move {
            let configs = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
            let n = broker.config.transaction_state_partitions.max(1);
            match broker.create_topic(crate::txn::TXN_TOPIC, n, configs, true).await {
                Ok(_) => tracing::info!(partitions = n, "created {}", crate::txn::TXN_TOPIC),
                Err(e) if e.code() == ResponseError::TopicAlreadyExists => {}
                Err(e) => tracing::warn!(error = %e, "cannot create {}", crate::txn::TXN_TOPIC),
            }
        });
    }

    /// Topic config defaults from the broker's settings (message.max.bytes).
    pub fn topic_defaults(&self) -> TopicConfig {
        TopicConfig { max_message_bytes: self.config.message_max_bytes, ..TopicConfig::default() }
    }

    /// The advertised (host, port) of this broker (its first listener's).
    pub fn advertised(&self) -> (&str, i32) {
        (&self.advertised.0, self.advertised.1)
    }

    /// The advertised (host, port) of this broker on `listener` (the first listener's when it
    /// has only one, or the name is unknown).
    pub fn advertised_on(&self, listener: Option<&str>) -> (String, i32) {
        match listener.and_then(|l| self.endpoints.get(l)) {
            Some(e) => (e.host.clone(), e.port),
            None => (self.advertised.0.clone(), self.advertised.1),
        }
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    pub fn topic_by_id(&self, id: uuid::Uuid) -> Option<Arc<Topic>> {
        self.topics.read().values().find(|t| t.meta.id == id).cloned()
    }

    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics.read().values().cloned().collect()
    }

    /// Creates a topic: its streams and its record are one atomic catalog commit. The
    /// controller assigns its partitions next; they open on their brokers shortly after.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        internal: bool,
    ) -> Result<Arc<Topic>> {
        topics::validate_name(name)?;
        if partitions < 1 {
            return Err(Error::kafka(
                ResponseError::InvalidPartitions,
                format!("{partitions} partitions; at least 1 is needed"),
            ));
        }
        let config = TopicConfig::from_map_over(self.topic_defaults(), &configs)?;
        let _serial = self.topic_changes.lock().await;
        let exists = || Error::kafka(ResponseError::TopicAlreadyExists, format!("topic {name:?} already exists"));
        if self.topic(name).is_some() {
            return Err(exists());
        }
        let committed = self
            .commit_with_new_streams(partitions as usize, None, |streams| TopicMeta {
                name: name.to_string(),
                id: uuid::Uuid::new_v4(),
                partitions: streams,
                configs: configs.clone(),
                internal,
            })
            .await;
        match committed {
            Err(Error::Storage(automq_storage::Error::PreconditionFailed(_))) => return Err(exists()),
            other => {
                other?;
            }
        }
        self.sync_topics();
        self.wait_assigned(name, std::time::Duration::from_secs(5)).await;
        tracing::info!(topic = name, partitions, ?config, "topic created");
        self.topic(name).ok_or_else(|| Error::kafka(ResponseError::UnknownTopicOrPartition, "topic vanished"))
    }

    /// Allocates `n` streams and writes the topic record built from their ids, atomically, if
    /// the topic's record is still `before` (`None`: absent).
    async fn commit_with_new_streams(
        &self,
        n: usize,
        before: Option<&Topic>,
        build: impl Fn(Vec<u64>) -> TopicMeta,
    ) -> Result<TopicMeta> {
        let catalog = self.engine.catalog();
        loop {
            let first = catalog.state().next_stream_id.max(1);
            let ids: Vec<u64> = (first..first + n as u64).collect();
            let meta = build(ids.clone());
            let key = TopicMeta::kv_key(&meta.name);
            let mut records = vec![expect_topic(&key, before)];
            records.extend(ids.iter().map(|&stream_id| CatalogRecord::CreateStream { stream_id }));
            let value = serde_json::to_string(&meta).map_err(|e| Error::Config(e.to_string()))?;
            records.push(CatalogRecord::KvPut { key, value });
            match catalog.submit(records).await {
                Ok(_) => return Ok(meta),
                // Someone else took these stream ids first: retry.
                Err(automq_storage::Error::InvalidMetadata(_)) if catalog.state().next_stream_id.max(1) != first => {
                    continue
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Creates `name` with the broker defaults if auto-creation is on.
    pub async fn auto_create(&self, name: &str) -> Result<Arc<Topic>> {
        if let Some(t) = self.topic(name) {
            return Ok(t);
        }
        if !self.config.auto_create_topics || name.starts_with("__") {
            return Err(Error::kafka(ResponseError::UnknownTopicOrPartition, format!("topic {name:?} does not exist")));
        }
        match self.create_topic(name, self.config.num_partitions, BTreeMap::new(), false).await {
            Err(e) if e.code() == ResponseError::TopicAlreadyExists => {
                self.topic(name).ok_or_else(|| Error::kafka(ResponseError::UnknownTopicOrPartition, "topic vanished"))
            }
            other => other,
        }
    }

    /// Deletes a topic: its record and its streams go in one catalog commit; the brokers
    /// leading its partitions drop them when they see it.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let _serial = self.topic_changes.lock().await;
        let topic = self.topic(name).ok_or_else(|| {
            Error::kafka(ResponseError::UnknownTopicOrPartition, format!("topic {name:?} does not exist"))
        })?;
        if topic.meta.internal {
            return Err(Error::kafka(ResponseError::InvalidTopicException, format!("{name} is an internal topic")));
        }
        let key = TopicMeta::kv_key(name);
        let at_ms = now_ms().max(0) as u64;
        let mut records = vec![expect_topic(&key, Some(&topic)), CatalogRecord::KvDelete { key }];
        records.extend(topic.meta.partitions.iter().map(|&stream_id| CatalogRecord::DeleteStream { stream_id, at_ms }));
        self.engine.catalog().submit(records).await.map_err(|e| changed_meanwhile(name, e))?;
        self.sync_topics();
        Ok(())
    }

    /// Grows a topic to `total` partitions.
    pub async fn create_partitions(&self, name: &str, total: i32) -> Result<()> {
        let _serial = self.topic_changes.lock().await;
        let topic = self.topic(name).ok_or_else(|| {
            Error::kafka(ResponseError::UnknownTopicOrPartition, format!("topic {name:?} does not exist"))
        })?;
        let current = topic.partition_count() as i32;
        if total <= current {
            return Err(Error::kafka(
                ResponseError::InvalidPartitions,
                format!("topic {name} has {current} partitions; the new count {total} must be larger"),
            ));
        }
        self.commit_with_new_streams((total - current) as usize, Some(&topic), |streams| {
            let mut meta = topic.meta.clone();
            meta.partitions.extend(streams);
            meta
        })
        .await
        .map_err(|e| match e {
            Error::Storage(s) => changed_meanwhile(name, s),
            e => e,
        })?;
        self.sync_topics();
        Ok(())
    }

    /// A client's AlterConfigs: replaces the explicit configs but keeps what only the brokers
    /// set (a mirror topic stays a mirror).
    pub async fn set_topic_configs_by_client(&self, name: &str, mut configs: BTreeMap<String, String>) -> Result<()> {
        topics::refuse_managed(&configs)?;
        if let Some(link) = self.topic(name).and_then(|t| t.meta.configs.get(crate::link::LINK_CONFIG).cloned()) {
            configs.insert(crate::link::LINK_CONFIG.to_string(), link);
        }
        self.set_topic_configs(name, configs).await
    }

    /// Replaces a topic's explicit configs (validated first).
    pub async fn set_topic_configs(&self, name: &str, configs: BTreeMap<String, String>) -> Result<()> {
        TopicConfig::from_map_over(self.topic_defaults(), &configs)?;
        let _serial = self.topic_changes.lock().await;
        let topic = self.topic(name).ok_or_else(|| {
            Error::kafka(ResponseError::UnknownTopicOrPartition, format!("topic {name:?} does not exist"))
        })?;
        let mut meta = topic.meta.clone();
        meta.configs = configs;
        let key = TopicMeta::kv_key(name);
        let value = serde_json::to_string(&meta).map_err(|e| Error::Config(e.to_string()))?;
        let records = vec![expect_topic(&key, Some(&topic)), CatalogRecord::KvPut { key, value }];
        self.engine.catalog().submit(records).await.map_err(|e| changed_meanwhile(name, e))?;
        self.sync_topics();
        Ok(())
    }

    /// A new producer id, from blocks reserved in the catalog so that ids never repeat across
    /// restarts or brokers.
    pub async fn next_producer_id(&self) -> Result<i64> {
        let mut ids = self.producer_ids.lock().await;
        while ids.0 >= ids.1 {
            let catalog = self.engine.catalog();
            let current = catalog.state().kv.get(PRODUCER_ID_KEY).map(|v| v.to_string());
            let start: i64 = current.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
            let end = start + PRODUCER_ID_BLOCK;
            let records = vec![
                CatalogRecord::KvExpect { key: PRODUCER_ID_KEY.into(), digest: current.as_deref().map(kv_digest) },
                CatalogRecord::KvPut { key: PRODUCER_ID_KEY.into(), value: end.to_string() },
            ];
            match catalog.submit(records).await {
                Ok(_) => *ids = (start, end),
                Err(automq_storage::Error::PreconditionFailed(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    /// Makes every producer id allocated from now on greater than `id` (a mirror copies batches
    /// of the source's producers, whose ids must not be handed to local producers writing to
    /// the topic after promotion). Drops this broker's reserved block if it is not above `id`.
    pub async fn reserve_producer_ids_through(&self, id: i64) -> Result<()> {
        let mut ids = self.producer_ids.lock().await;
        if ids.0 <= id {
            *ids = (0, 0);
        }
        loop {
            let catalog = self.engine.catalog();
            let current = catalog.state().kv.get(PRODUCER_ID_KEY).map(|v| v.to_string());
            let next: i64 = current.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
            if next > id {
                return Ok(());
            }
            let records = vec![
                CatalogRecord::KvExpect { key: PRODUCER_ID_KEY.into(), digest: current.as_deref().map(kv_digest) },
                CatalogRecord::KvPut { key: PRODUCER_ID_KEY.into(), value: (id + 1).to_string() },
            ];
            match catalog.submit(records).await {
                Ok(_) => return Ok(()),
                Err(automq_storage::Error::PreconditionFailed(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The log cleaner's pass: retention for `delete` topics, compaction for `compact` ones.
    pub async fn run_log_cleaner(&self) {
        let now = now_ms();
        for topic in self.topics() {
            for p in &topic.led_partitions() {
                if let Err(e) = p.apply_retention(&self.engine, &topic.config, now).await {
                    tracing::warn!(topic = %topic.meta.name, partition = p.index, error = %e, "retention failed; will retry");
                }
                if let Err(e) = crate::cleaner::compact_partition(&self.engine, p, &topic.config, now).await {
                    tracing::warn!(topic = %topic.meta.name, partition = p.index, error = %e, "compaction failed; will retry");
                }
            }
        }
    }

    /// Hands this broker's partitions to others (when any can take them), then uploads
    /// everything acknowledged and closes the WAL.
    pub async fn shutdown(&self) -> Result<()> {
        crate::cluster::ownership::hand_off(self, std::time::Duration::from_secs(30)).await;
        self.engine.shutdown().await?;
        crate::cluster::ownership::abdicate(self).await;
        Ok(())
    }

    /// Why this broker does not serve, if it does not: storage failed, the cluster fenced it,
    /// or the controller has not registered it (yet).
    pub fn readiness(&self) -> std::result::Result<(), String> {
        if !self.engine.is_healthy() {
            return Err("storage failed; the broker must restart to recover".into());
        }
        if let Some(why) = self.cluster.fenced() {
            return Err(format!("fenced: {why}; the broker must restart"));
        }
        match self.cluster.view().brokers.get(&self.config.node_id) {
            Some(b) if b.alive && b.incarnation == self.cluster.identity.read().incarnation => Ok(()),
            _ => Err("not registered with the controller yet".into()),
        }
    }

    /// Partitions assigned to this broker that it does not lead yet.
    pub fn pending_partitions(&self) -> usize {
        let view = self.cluster.view();
        let me = self.config.node_id;
        view.partitions_of().get(&me).map_or(0, |ps| ps.iter().filter(|(t, p)| self.partition(t, *p).is_none()).count())
    }

    /// Waits until the broker is ready and leads every partition assigned to it, and every
    /// partition has a broker (when any can take it), or `timeout`.
    pub async fn wait_ready(&self, timeout: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.engine.catalog().watch();
        loop {
            let placed = self.cluster.view().placed(None);
            if self.readiness().is_ok() && placed && self.pending_partitions() == 0 && self.moving.lock().is_empty() {
                return;
            }
            if tokio::time::timeout_at(deadline, async {
                tokio::select! {
                    _ = changes.changed() => {}
                    _ = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
                }
            })
            .await
            .is_err()
            {
                tracing::warn!(pending = self.pending_partitions(), readiness = ?self.readiness(), "broker not fully ready after waiting; serving anyway");
                return;
            }
        }
    }

    /// A partition this broker leads, with the Kafka error a client should see otherwise.
    pub fn led(&self, topic: &str, index: i32) -> Result<Arc<Partition>> {
        self.topic(topic)
            .ok_or_else(|| Error::kafka(ResponseError::UnknownTopicOrPartition, format!("unknown topic {topic}")))?
            .led(index)
    }

    /// Waits up to `timeout` until the controller has assigned every partition of a topic
    /// (when some broker can take them), so that Metadata right after a creation names
    /// leaders, as Kafka's does.
    pub async fn wait_assigned(&self, topic: &str, timeout: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.engine.catalog().watch();
        loop {
            if self.cluster.view().placed(Some(topic))
                || tokio::time::timeout_at(deadline, changes.changed()).await.is_err()
            {
                return;
            }
        }
    }

    /// Waits up to `timeout` for this broker to lead a partition (just created, or moving
    /// here), then answers like [`Self::led`].
    pub async fn wait_led(&self, topic: &str, index: i32, timeout: std::time::Duration) -> Result<Arc<Partition>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.led(topic, index) {
                Err(e) if e.code() == ResponseError::NotLeaderOrFollower && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                other => return other,
            }
        }
    }

    /// A partition this broker leads, by (topic, index), for lookups from requests.
    pub fn partition(&self, topic: &str, index: i32) -> Option<(Arc<Topic>, Arc<Partition>)> {
        let t = self.topic(topic)?;
        let p = t.led(index).ok()?;
        Some((t, p))
    }

    /// Counts of topics and of the partitions led here (for logs and readiness).
    pub fn sizes(&self) -> HashMap<&'static str, usize> {
        let topics = self.topics.read();
        HashMap::from([
            ("topics", topics.len()),
            ("partitions", topics.values().map(|t| t.led_partitions().len()).sum()),
        ])
    }
}

/// A precondition: the topic's record is still the one `before` was read from (`None`:
/// absent).
fn expect_topic(key: &str, before: Option<&Topic>) -> CatalogRecord {
    CatalogRecord::KvExpect { key: key.to_string(), digest: before.map(|t| t.digest.clone()) }
}

fn changed_meanwhile(topic: &str, e: automq_storage::Error) -> Error {
    match e {
        automq_storage::Error::PreconditionFailed(_) => Error::kafka(
            ResponseError::ConcurrentTransactions,
            format!("topic {topic:?} was changed by another request meanwhile; try again"),
        ),
        e => e.into(),
    }
}

/// A Kafka-style cluster id: a random UUID in URL-safe base64 without padding (22 chars).
fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    let mut bits = u128::from_be_bytes(bytes);
    let mut out = Vec::with_capacity(22);
    for _ in 0..22 {
        out.push(ALPHABET[(bits >> 122) as usize & 63]);
        bits <<= 6;
    }
    String::from_utf8(out).unwrap_or_default()
}
