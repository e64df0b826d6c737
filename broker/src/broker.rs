//! The broker: storage engine, topics and partitions, producer ids, groups.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use automq_storage::clock::{self, SharedClock};
use automq_storage::metadata::{Catalog, CatalogConfig, CatalogRecord};
use automq_storage::object_store::{self, StoreOptions};
use automq_storage::stream::{StreamEngine, StreamEngineConfig, StreamMetrics};
use automq_storage::wal::{FileWal, FileWalConfig, S3Wal, S3WalConfig, Wal};
use kafka_protocol::ResponseError;
use parking_lot::{Mutex, RwLock};
use prometheus_client::registry::Registry;

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

/// A topic and its open partitions.
#[derive(Debug)]
pub struct Topic {
    pub meta: TopicMeta,
    pub config: TopicConfig,
    pub partitions: Vec<Arc<Partition>>,
}

#[derive(Debug)]
pub struct Broker {
    pub config: BrokerConfig,
    pub cluster_id: String,
    pub engine: StreamEngine,
    pub groups: GroupCoordinator,
    pub metrics: BrokerMetrics,
    pub registry: Mutex<Registry>,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serialises topic creation, deletion and changes.
    topic_changes: tokio::sync::Mutex<()>,
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
    advertised: (String, i32),
}

/// Wall-clock milliseconds since the Unix epoch (record and log-append timestamps).
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Broker {
    /// Opens storage (recovering the WAL), loads topics and opens every partition.
    pub async fn start(config: BrokerConfig) -> Result<Arc<Broker>> {
        let mut registry = Registry::default();
        let clock: SharedClock = clock::system();
        let url = config.object_store_url();
        let store =
            object_store::open(&url, &StoreOptions::default(), Some(registry.sub_registry_with_prefix(""))).await?;
        let catalog = Catalog::open(store.clone(), CatalogConfig::default(), clock.clone()).await?;
        let wal_choice = config.wal_choice().map_err(Error::Config)?;
        let (wal, recovered): (Arc<dyn Wal>, _) = match &wal_choice {
            WalChoice::File(dir) => {
                let (w, r) = FileWal::open(FileWalConfig::new(dir))?;
                (Arc::new(w), r)
            }
            WalChoice::S3 => {
                let (w, r) = S3Wal::open(store.clone(), S3WalConfig::new(config.node_id as u64), clock.clone()).await?;
                (Arc::new(w), r)
            }
        };
        let stream_metrics = StreamMetrics::new(Some(&mut registry));
        let engine_config = StreamEngineConfig::new(config.node_id as u64);
        let engine =
            StreamEngine::open(engine_config, store, wal, recovered, catalog.clone(), clock, stream_metrics).await?;

        let cluster_id = match (&config.cluster_id, catalog.state().kv.get(CLUSTER_ID_KEY)) {
            (_, Some(stored)) => stored.clone(),
            (given, None) => {
                let id = given.clone().unwrap_or_else(new_cluster_id);
                catalog.submit(vec![CatalogRecord::KvPut { key: CLUSTER_ID_KEY.into(), value: id.clone() }]).await?;
                id
            }
        };
        let advertised = parse_advertised(&config)?;
        let metrics = BrokerMetrics::new(&mut registry);
        let broker = Arc::new(Broker {
            groups: GroupCoordinator::new(),
            cluster_id,
            engine,
            metrics,
            registry: Mutex::new(registry),
            topics: RwLock::new(BTreeMap::new()),
            topic_changes: tokio::sync::Mutex::new(()),
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            advertised,
            config,
        });
        let metas: Vec<TopicMeta> = catalog
            .state()
            .kv
            .range(topics::KV_PREFIX.to_string()..)
            .take_while(|(k, _)| k.starts_with(topics::KV_PREFIX))
            .filter_map(|(k, v)| match serde_json::from_str(v) {
                Ok(meta) => Some(meta),
                Err(e) => {
                    tracing::error!(key = %k, error = %e, "unreadable topic record; skipping it");
                    None
                }
            })
            .collect();
        for meta in metas {
            let topic = broker.open_topic(meta).await?;
            broker.topics.write().insert(topic.meta.name.clone(), topic);
        }
        broker.ensure_offsets_topic().await?;
        GroupCoordinator::load(&broker).await?;
        tracing::info!(
            cluster_id = %broker.cluster_id,
            node_id = broker.config.node_id,
            topics = broker.topics.read().len(),
            object_store = %url,
            wal = ?wal_choice,
            "broker started"
        );
        Ok(broker)
    }

    async fn open_topic(&self, meta: TopicMeta) -> Result<Arc<Topic>> {
        let mut partitions = Vec::with_capacity(meta.partitions.len());
        for (index, stream_id) in meta.partitions.iter().enumerate() {
            partitions.push(Partition::open(&self.engine, &meta.name, index as i32, *stream_id).await?);
        }
        let config =
            TopicConfig::from_map_over(self.topic_defaults(), &meta.configs).unwrap_or_else(|_| self.topic_defaults());
        Ok(Arc::new(Topic { meta, config, partitions }))
    }

    async fn ensure_offsets_topic(&self) -> Result<()> {
        if self.topic(OFFSETS_TOPIC).is_none() {
            let configs = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
            self.create_topic(OFFSETS_TOPIC, self.config.offsets_topic_partitions.max(1), configs, true).await?;
        }
        Ok(())
    }

    /// Topic config defaults from the broker's settings (message.max.bytes).
    pub fn topic_defaults(&self) -> TopicConfig {
        TopicConfig { max_message_bytes: self.config.message_max_bytes, ..TopicConfig::default() }
    }

    /// The advertised (host, port) of this broker.
    pub fn advertised(&self) -> (&str, i32) {
        (&self.advertised.0, self.advertised.1)
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

    /// Creates a topic: its streams and its record are one atomic catalog commit.
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
        if self.topic(name).is_some() {
            return Err(Error::kafka(ResponseError::TopicAlreadyExists, format!("topic {name:?} already exists")));
        }
        let meta = self
            .commit_with_new_streams(partitions as usize, |streams| TopicMeta {
                name: name.to_string(),
                id: uuid::Uuid::new_v4(),
                partitions: streams,
                configs: configs.clone(),
                internal,
            })
            .await?;
        let topic = self.open_topic(meta).await?;
        self.topics.write().insert(name.to_string(), topic.clone());
        tracing::info!(topic = name, partitions, ?config, "topic created");
        Ok(topic)
    }

    /// Allocates `n` streams and writes the topic record built from their ids, atomically.
    async fn commit_with_new_streams(&self, n: usize, build: impl Fn(Vec<u64>) -> TopicMeta) -> Result<TopicMeta> {
        let catalog = self.engine.catalog();
        loop {
            let first = catalog.state().next_stream_id.max(1);
            let ids: Vec<u64> = (first..first + n as u64).collect();
            let meta = build(ids.clone());
            let mut records: Vec<CatalogRecord> =
                ids.iter().map(|&stream_id| CatalogRecord::CreateStream { stream_id }).collect();
            let value = serde_json::to_string(&meta).map_err(|e| Error::Config(e.to_string()))?;
            records.push(CatalogRecord::KvPut { key: TopicMeta::kv_key(&meta.name), value });
            match catalog.submit(records).await {
                Ok(_) => return Ok(meta),
                // Someone else took these stream ids in the same group commit: retry.
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

    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let _serial = self.topic_changes.lock().await;
        let topic = self.topic(name).ok_or_else(|| {
            Error::kafka(ResponseError::UnknownTopicOrPartition, format!("topic {name:?} does not exist"))
        })?;
        if topic.meta.internal {
            return Err(Error::kafka(ResponseError::InvalidTopicException, format!("{name} is an internal topic")));
        }
        self.topics.write().remove(name);
        let catalog = self.engine.catalog();
        catalog.submit(vec![CatalogRecord::KvDelete { key: TopicMeta::kv_key(name) }]).await?;
        for p in &topic.partitions {
            self.engine.delete_stream(p.stream_id).await?;
        }
        tracing::info!(topic = name, "topic deleted");
        Ok(())
    }

    /// Grows a topic to `total` partitions.
    pub async fn create_partitions(&self, name: &str, total: i32) -> Result<()> {
        let _serial = self.topic_changes.lock().await;
        let topic = self.topic(name).ok_or_else(|| {
            Error::kafka(ResponseError::UnknownTopicOrPartition, format!("topic {name:?} does not exist"))
        })?;
        let current = topic.partitions.len() as i32;
        if total <= current {
            return Err(Error::kafka(
                ResponseError::InvalidPartitions,
                format!("topic {name} has {current} partitions; the new count {total} must be larger"),
            ));
        }
        let meta = self
            .commit_with_new_streams((total - current) as usize, |streams| {
                let mut meta = topic.meta.clone();
                meta.partitions.extend(streams);
                meta
            })
            .await?;
        let mut partitions = topic.partitions.clone();
        for (index, stream_id) in meta.partitions.iter().enumerate().skip(current as usize) {
            partitions.push(Partition::open(&self.engine, name, index as i32, *stream_id).await?);
        }
        let updated = Arc::new(Topic { config: topic.config.clone(), meta, partitions });
        self.topics.write().insert(name.to_string(), updated);
        Ok(())
    }

    /// Replaces a topic's explicit configs (validated first).
    pub async fn set_topic_configs(&self, name: &str, configs: BTreeMap<String, String>) -> Result<()> {
        let config = TopicConfig::from_map_over(self.topic_defaults(), &configs)?;
        let _serial = self.topic_changes.lock().await;
        let topic = self.topic(name).ok_or_else(|| {
            Error::kafka(ResponseError::UnknownTopicOrPartition, format!("topic {name:?} does not exist"))
        })?;
        let mut meta = topic.meta.clone();
        meta.configs = configs;
        let value = serde_json::to_string(&meta).map_err(|e| Error::Config(e.to_string()))?;
        self.engine.catalog().submit(vec![CatalogRecord::KvPut { key: TopicMeta::kv_key(name), value }]).await?;
        let updated = Arc::new(Topic { meta, config, partitions: topic.partitions.clone() });
        self.topics.write().insert(name.to_string(), updated);
        Ok(())
    }

    /// A new producer id, from blocks reserved in the catalog so that ids never repeat across
    /// restarts.
    pub async fn next_producer_id(&self) -> Result<i64> {
        let mut ids = self.producer_ids.lock().await;
        if ids.0 >= ids.1 {
            let catalog = self.engine.catalog();
            let start: i64 = catalog.state().kv.get(PRODUCER_ID_KEY).and_then(|v| v.parse().ok()).unwrap_or(0);
            let end = start + PRODUCER_ID_BLOCK;
            catalog.submit(vec![CatalogRecord::KvPut { key: PRODUCER_ID_KEY.into(), value: end.to_string() }]).await?;
            *ids = (start, end);
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    /// The log cleaner's pass: retention for `delete` topics, compaction for `compact` ones.
    pub async fn run_log_cleaner(&self) {
        let now = now_ms();
        for topic in self.topics() {
            for p in &topic.partitions {
                if let Err(e) = p.apply_retention(&self.engine, &topic.config, now).await {
                    tracing::warn!(topic = %topic.meta.name, partition = p.index, error = %e, "retention failed; will retry");
                }
                if let Err(e) = crate::cleaner::compact_partition(&self.engine, p, &topic.config, now).await {
                    tracing::warn!(topic = %topic.meta.name, partition = p.index, error = %e, "compaction failed; will retry");
                }
            }
        }
    }

    /// Uploads everything acknowledged and closes the WAL.
    pub async fn shutdown(&self) -> Result<()> {
        self.engine.shutdown().await?;
        Ok(())
    }

    /// Partitions by (topic, index), for lookups from requests.
    pub fn partition(&self, topic: &str, index: i32) -> Option<(Arc<Topic>, Arc<Partition>)> {
        let t = self.topic(topic)?;
        let p = t.partitions.get(usize::try_from(index).ok()?)?.clone();
        Some((t, p))
    }

    /// Counts of topics and partitions (for logs and readiness).
    pub fn sizes(&self) -> HashMap<&'static str, usize> {
        let topics = self.topics.read();
        HashMap::from([("topics", topics.len()), ("partitions", topics.values().map(|t| t.partitions.len()).sum())])
    }
}

fn parse_advertised(config: &BrokerConfig) -> Result<(String, i32)> {
    match &config.advertised_listener {
        Some(a) => {
            let (host, port) = a
                .rsplit_once(':')
                .ok_or_else(|| Error::Config(format!("advertised listener {a:?} must be host:port")))?;
            let port = port.parse().map_err(|_| Error::Config(format!("advertised listener {a:?} has a bad port")))?;
            Ok((host.to_string(), port))
        }
        None => Ok((config.listen.ip().to_string(), config.listen.port() as i32)),
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
