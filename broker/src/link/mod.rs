//! Topic links: mirror topics from another Kafka-compatible cluster with offsets preserved byte
//! for byte, then promote them topic by topic (`docs/topic-links.md`).
//!
//! - A link is a cluster record `link/{name}` ([`LinkSpec`], the admin API's body), so it
//!   survives restarts and every broker sees it.
//! - The controller keeps the mirror topics: every topic of the source matching the link's
//!   selectors exists here with the source's partition count and configs, marked with the topic
//!   config [`LINK_CONFIG`] (which makes it refuse client produce).
//! - The broker leading a mirror partition runs its fetcher ([`mirror`]): it fetches raw record
//!   batches from the source partition's leader from this log's end and appends them at the
//!   source's offsets. The log end is the resume point, so a fetcher that moves with its
//!   partition (drain, failover) continues exactly where the acknowledged log ends.
//! - Promotion: once every partition of a listed topic has caught up with the source's high
//!   watermark (or at once with `force`), the controller drops [`LINK_CONFIG`] from the topic:
//!   its fetchers stop and it takes produce like any topic, continuing the offsets.

pub mod admin;
pub mod client;
pub mod forward;
pub mod groups;
pub mod mirror;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use automq_storage::metadata::CatalogRecord;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::broker::Broker;
use client::{SourceConnection, SourceError};

/// Cluster records of links: `link/{name}`.
pub const LINK_PREFIX: &str = "link/";
/// Topic config naming the link a mirror topic follows (absent: an ordinary topic).
pub const LINK_CONFIG: &str = "automq.link";
/// Source topic configs a mirror topic copies.
const COPIED_CONFIGS: &[&str] = &[
    "cleanup.policy",
    "retention.ms",
    "retention.bytes",
    "max.message.bytes",
    "message.timestamp.type",
    "delete.retention.ms",
    "min.compaction.lag.ms",
];

/// How often the controller syncs the links' consumer-group offsets.
const GROUP_SYNC_INTERVAL: Duration = Duration::from_secs(3);

pub fn link_key(name: &str) -> String {
    format!("{LINK_PREFIX}{name}")
}

/// A link as stored and as the admin API takes it (`docs/admin-api.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkSpec {
    pub source: LinkSource,
    pub topics: Vec<Selector>,
    #[serde(default)]
    pub consumer_groups: Vec<Selector>,
    #[serde(default = "earliest")]
    pub start_from: String,
    #[serde(default)]
    pub producer_forwarding: bool,
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub promote: Vec<Promotion>,
}

fn earliest() -> String {
    "earliest".into()
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkSource {
    pub bootstrap_servers: String,
    pub security_protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl_mechanism: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

// The password never reaches a log line.
impl std::fmt::Debug for LinkSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkSource")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("security_protocol", &self.security_protocol)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Promotion {
    pub topic: String,
    #[serde(default)]
    pub force: bool,
}

/// A selector ready to match: an exact name or a whole-name regular expression.
#[derive(Debug, Clone)]
pub enum Matcher {
    Name(String),
    Pattern(regex::Regex),
}

impl Matcher {
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Matcher::Name(n) => n == name,
            Matcher::Pattern(p) => p.is_match(name),
        }
    }
}

impl LinkSpec {
    /// Checks what the brokers can act on; the message says what to fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.source.bootstrap_servers.trim().is_empty() {
            return Err("source.bootstrap_servers is empty".into());
        }
        match self.source.security_protocol.as_str() {
            "PLAINTEXT" | "SSL" => {}
            "SASL_PLAINTEXT" | "SASL_SSL" => {
                let mechanism = self.source.sasl_mechanism.as_deref().unwrap_or("");
                if crate::security::sasl::SaslMechanism::parse(mechanism).is_none() {
                    return Err(format!(
                        "source.sasl_mechanism must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, not {mechanism:?}"
                    ));
                }
                if self.source.username.as_deref().unwrap_or("").is_empty() || self.source.password.is_none() {
                    return Err(format!("{} needs source.username and source.password", self.source.security_protocol));
                }
            }
            other => return Err(format!("unknown security_protocol {other:?}")),
        }
        if !matches!(self.start_from.as_str(), "earliest" | "latest") {
            return Err(format!("start_from must be earliest or latest, not {:?}", self.start_from));
        }
        if self.topics.is_empty() {
            return Err("a link needs at least one topic selector".into());
        }
        self.topic_matchers()?;
        matchers(&self.consumer_groups)?;
        Ok(())
    }

    pub fn topic_matchers(&self) -> Result<Vec<Matcher>, String> {
        matchers(&self.topics)
    }

    pub fn promotion(&self, topic: &str) -> Option<&Promotion> {
        self.promote.iter().find(|p| p.topic == topic)
    }
}

fn matchers(selectors: &[Selector]) -> Result<Vec<Matcher>, String> {
    selectors
        .iter()
        .map(|s| match (&s.name, &s.pattern) {
            (Some(name), None) => Ok(Matcher::Name(name.clone())),
            (None, Some(pattern)) => regex::Regex::new(&format!("^(?:{pattern})$"))
                .map(Matcher::Pattern)
                .map_err(|e| format!("pattern {pattern:?}: {e}")),
            _ => Err("a selector needs exactly one of name and pattern".into()),
        })
        .collect()
}

/// The links in the cluster's records, by name (unreadable records are skipped, logged).
pub fn links(broker: &Broker) -> BTreeMap<String, LinkSpec> {
    let view = broker.cluster.view();
    view.raw
        .range(LINK_PREFIX.to_string()..)
        .take_while(|(k, _)| k.starts_with(LINK_PREFIX))
        .filter_map(|(k, v)| match serde_json::from_str(v) {
            Ok(spec) => Some((k[LINK_PREFIX.len()..].to_string(), spec)),
            Err(e) => {
                tracing::warn!(key = k, error = %e, "unreadable link record");
                None
            }
        })
        .collect()
}

/// Where a mirror partition stands, on the broker leading it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionState {
    pub link: String,
    pub topic: String,
    pub partition: i32,
    /// `mirroring`, `paused` or `failed`.
    pub state: String,
    /// This log's end: the next offset to copy.
    pub next_offset: i64,
    /// The source partition's high watermark at the last fetch (-1: not fetched yet).
    pub source_high_watermark: i64,
    pub last_error: Option<String>,
}

impl PartitionState {
    pub fn lag(&self) -> i64 {
        if self.source_high_watermark < 0 {
            return 0;
        }
        (self.source_high_watermark - self.next_offset).max(0)
    }
}

/// Mirror partitions this broker leads, and their fetchers.
#[derive(Debug, Default)]
pub struct Mirrors {
    states: Mutex<HashMap<(String, i32), PartitionState>>,
    /// Record bytes copied from sources, by link (since this process started).
    copied: Mutex<BTreeMap<String, u64>>,
    tasks: Mutex<HashMap<(String, i32), tokio::task::JoinHandle<()>>>,
    /// Link-level errors the controller met (listing source topics), by link.
    errors: Mutex<HashMap<String, String>>,
    /// Producer forwarding, by link (one forward at a time per link, in arrival order).
    pub forwarders: tokio::sync::Mutex<HashMap<String, forward::Forwarder>>,
}

impl Mirrors {
    pub fn set_state(&self, state: PartitionState) {
        self.states.lock().insert((state.topic.clone(), state.partition), state);
    }

    /// The states of `link`'s partitions led here.
    pub fn states(&self, link: &str) -> Vec<PartitionState> {
        let mut out: Vec<PartitionState> = self.states.lock().values().filter(|s| s.link == link).cloned().collect();
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        out
    }

    pub fn link_error(&self, link: &str) -> Option<String> {
        self.errors.lock().get(link).cloned()
    }

    pub fn count_copied(&self, link: &str, bytes: u64) {
        *self.copied.lock().entry(link.to_string()).or_default() += bytes;
    }
}

/// Link metrics, read from [`Mirrors`] at each scrape: records behind the source per link and
/// topic, mirror partitions by state, and bytes copied.
#[derive(Debug)]
pub struct MirrorMetrics(pub Arc<Mirrors>);

impl prometheus_client::collector::Collector for MirrorMetrics {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        use prometheus_client::metrics::MetricType;
        let states: Vec<PartitionState> = self.0.states.lock().values().cloned().collect();
        let mut lag: BTreeMap<(String, String), i64> = BTreeMap::new();
        let mut by_state: BTreeMap<(String, String), i64> = BTreeMap::new();
        for s in &states {
            *lag.entry((s.link.clone(), s.topic.clone())).or_default() += s.lag();
            *by_state.entry((s.link.clone(), s.state.clone())).or_default() += 1;
        }
        let mut family = encoder.encode_descriptor(
            "automq_broker_link_lag_records",
            "Records behind the source's high watermark, by link and topic (partitions led here)",
            None,
            MetricType::Gauge,
        )?;
        for ((link, topic), value) in lag {
            let labels = [("link", link), ("topic", topic)];
            ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "automq_broker_link_partitions",
            "Mirror partitions led here, by link and state (mirroring, paused, failed)",
            None,
            MetricType::Gauge,
        )?;
        for ((link, state), value) in by_state {
            let labels = [("link", link), ("state", state)];
            ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
        }
        let copied: Vec<(String, u64)> = self.0.copied.lock().iter().map(|(k, v)| (k.clone(), *v)).collect();
        let mut family = encoder.encode_descriptor(
            "automq_broker_link_copied_bytes",
            "Record bytes copied from the source, by link",
            None,
            MetricType::Counter,
        )?;
        for (link, value) in copied {
            let labels = [("link", link)];
            ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// Connects to the first bootstrap server that answers.
pub async fn connect_any(source: &LinkSource, client_id: &str) -> Result<SourceConnection, SourceError> {
    let security = client::SourceSecurity::of(source)?;
    let mut last = SourceError("no bootstrap server".into());
    for address in source.bootstrap_servers.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        match SourceConnection::connect(address, client_id, &security).await {
            Ok(conn) => return Ok(conn),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Source metadata for `topics` (all topics when `None`).
pub async fn source_metadata(
    conn: &mut SourceConnection,
    topics: Option<Vec<String>>,
) -> Result<MetadataResponse, SourceError> {
    let request = MetadataRequest::default().with_topics(topics.map(|names| {
        names
            .into_iter()
            .map(|n| MetadataRequestTopic::default().with_name(Some(kafka_protocol::messages::TopicName(n.into()))))
            .collect()
    }));
    Ok(conn.call(&request, 12).await?.0)
}

/// Runs on every broker: keeps mirror topics (on the controller), fetchers for the mirror
/// partitions led here, and promotions (on the controller).
pub async fn run(broker: Arc<Broker>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_topic_sync = std::time::Instant::now() - Duration::from_secs(60);
    let mut last_group_sync = std::time::Instant::now() - Duration::from_secs(60);
    let mut previous: BTreeMap<String, LinkSpec> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let links = links(&broker);
        // A new or changed link is acted on at once, not at the next listing.
        let changed = links != previous;
        previous = links.clone();
        if broker.cluster.is_controller() && (changed || last_topic_sync.elapsed() >= Duration::from_secs(2)) {
            last_topic_sync = std::time::Instant::now();
            for (name, spec) in &links {
                let outcome = if spec.paused { Ok(()) } else { sync_topics(&broker, name, spec).await };
                let mut errors = broker.mirrors.errors.lock();
                match outcome {
                    Ok(()) => errors.remove(name),
                    Err(e) => errors.insert(name.clone(), e),
                };
            }
            promote(&broker, &links).await;
        }
        if broker.cluster.is_controller() && last_group_sync.elapsed() >= GROUP_SYNC_INTERVAL {
            last_group_sync = std::time::Instant::now();
            for (name, spec) in links.iter().filter(|(_, s)| !s.paused) {
                match groups::sync(&broker, name, spec).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(link = name, partitions = n, "consumer offsets synced"),
                    Err(e) => tracing::info!(link = name, error = %e, "consumer offset sync failed"),
                }
            }
        }
        mirror::reconcile_fetchers(&broker, &links);
    }
    for (_, task) in broker.mirrors.tasks.lock().drain() {
        task.abort();
    }
}

/// Creates the mirror topics of `link` that are missing here and grows their partitions.
async fn sync_topics(broker: &Arc<Broker>, link: &str, spec: &LinkSpec) -> Result<(), String> {
    let matchers = spec.topic_matchers()?;
    let client_id = format!("automq-link-{link}");
    let mut conn = connect_any(&spec.source, &client_id).await.map_err(|e| e.0)?;
    let metadata = source_metadata(&mut conn, None).await.map_err(|e| e.0)?;
    for topic in &metadata.topics {
        let Some(name) = topic.name.as_ref().map(|n| n.0.to_string()) else { continue };
        if topic.is_internal || name.starts_with("__") || !matchers.iter().any(|m| m.matches(&name)) {
            continue;
        }
        if topic.error_code != 0 {
            continue;
        }
        let partitions = topic.partitions.len() as i32;
        match broker.topic(&name) {
            Some(existing) => {
                let follows = existing.meta.configs.get(LINK_CONFIG).map(String::as_str) == Some(link);
                if follows && (existing.partition_count() as i32) < partitions {
                    broker.create_partitions(&name, partitions).await.map_err(|e| e.to_string())?;
                    tracing::info!(link, topic = name, partitions, "mirror topic grew with its source");
                }
            }
            None => {
                let mut configs = source_configs(&mut conn, &name).await.unwrap_or_default();
                configs.insert(LINK_CONFIG.to_string(), link.to_string());
                match broker.create_topic(&name, partitions.max(1), configs, false).await {
                    Ok(_) => tracing::info!(link, topic = name, partitions, "mirror topic created"),
                    Err(e) => return Err(format!("creating mirror topic {name}: {e}")),
                }
            }
        }
    }
    Ok(())
}

/// The source topic's explicit configs that a mirror copies.
async fn source_configs(conn: &mut SourceConnection, topic: &str) -> Result<BTreeMap<String, String>, SourceError> {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::DescribeConfigsRequest;
    let request = DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(topic.to_string().into())]);
    let (response, _) = conn.call(&request, 4).await?;
    let mut configs = BTreeMap::new();
    for result in response.results {
        for c in result.configs {
            let name = c.name.to_string();
            // Only what the source set for this topic (DYNAMIC_TOPIC_CONFIG), not its defaults.
            let explicit = c.config_source == 1;
            if explicit && COPIED_CONFIGS.contains(&name.as_str()) {
                if let Some(v) = c.value {
                    configs.insert(name, v.to_string());
                }
            }
        }
    }
    Ok(configs)
}

/// Promotes the topics the links list once every partition caught up (or at once with
/// `force`): drops [`LINK_CONFIG`], after which the topic takes produce.
async fn promote(broker: &Arc<Broker>, links: &BTreeMap<String, LinkSpec>) {
    for (name, spec) in links {
        for promotion in &spec.promote {
            let Some(topic) = broker.topic(&promotion.topic) else { continue };
            if topic.meta.configs.get(LINK_CONFIG) != Some(name) {
                continue;
            }
            let ready = promotion.force
                || match admin::cluster_states(broker, name).await {
                    Ok(states) => {
                        let mine: Vec<&PartitionState> = states.iter().filter(|s| s.topic == promotion.topic).collect();
                        mine.len() == topic.partition_count()
                            && mine.iter().all(|s| s.source_high_watermark >= 0 && s.lag() == 0)
                    }
                    Err(e) => {
                        tracing::debug!(link = name, error = %e, "cannot gather partition states");
                        false
                    }
                };
            if !ready {
                continue;
            }
            let mut configs = topic.meta.configs.clone();
            configs.remove(LINK_CONFIG);
            match broker.set_topic_configs(&promotion.topic, configs).await {
                Ok(()) => tracing::info!(
                    link = name,
                    topic = promotion.topic,
                    force = promotion.force,
                    "mirror topic promoted"
                ),
                Err(e) => tracing::warn!(link = name, topic = promotion.topic, error = %e, "promotion failed"),
            }
        }
    }
}

/// Stores (or replaces) a link; refuses one that cannot work.
pub async fn put(broker: &Broker, name: &str, spec: &LinkSpec) -> Result<(), PutError> {
    spec.validate().map_err(PutError::Invalid)?;
    let value = serde_json::to_string(spec).map_err(|e| PutError::Unavailable(e.to_string()))?;
    let key = link_key(name);
    if broker.cluster.view().raw.get(&key) == Some(&value) {
        return Ok(());
    }
    broker
        .cluster
        .catalog()
        .submit(vec![CatalogRecord::KvPut { key, value }])
        .await
        .map(|_| ())
        .map_err(|e| PutError::Unavailable(e.to_string()))
}

/// What deleting a link found.
#[derive(Debug, PartialEq, Eq)]
pub enum Deleted {
    Deleted,
    NoSuchLink,
    /// Mirror topics still follow the link (listed): promote them, or delete with `force`.
    MirrorsLeft(Vec<String>),
}

/// Forgets a link. Mirror topics must be promoted first; with `force`, the ones left become
/// ordinary topics (as a forced promotion would make them) instead of staying read-only with
/// no link to promote them.
pub async fn delete(broker: &Broker, name: &str, force: bool) -> Result<Deleted, String> {
    let key = link_key(name);
    if !broker.cluster.view().raw.contains_key(&key) {
        return Ok(Deleted::NoSuchLink);
    }
    let mirrors: Vec<_> = broker
        .topics()
        .into_iter()
        .filter(|t| t.meta.configs.get(LINK_CONFIG).map(String::as_str) == Some(name))
        .collect();
    if !mirrors.is_empty() && !force {
        return Ok(Deleted::MirrorsLeft(mirrors.iter().map(|t| t.meta.name.clone()).collect()));
    }
    for topic in mirrors {
        let mut configs = topic.meta.configs.clone();
        configs.remove(LINK_CONFIG);
        broker.set_topic_configs(&topic.meta.name, configs).await.map_err(|e| e.to_string())?;
        tracing::info!(link = name, topic = topic.meta.name, "mirror topic made ordinary as its link is deleted");
    }
    broker.cluster.catalog().submit(vec![CatalogRecord::KvDelete { key }]).await.map_err(|e| e.to_string())?;
    Ok(Deleted::Deleted)
}

#[derive(Debug)]
pub enum PutError {
    Invalid(String),
    Unavailable(String),
}
