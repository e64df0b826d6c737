//! Topic metadata, kept in the storage catalog's key-value namespace (`topic/{name}`) so it
//! shares the metadata log's durability and fencing, and topic configs with Kafka's names and
//! defaults.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Catalog key prefix of topic records.
pub const KV_PREFIX: &str = "topic/";

/// A topic as stored: one stream per partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    /// Kafka topic id (a UUID), used by Metadata v10+ and Fetch v13+.
    pub id: uuid::Uuid,
    /// Stream id of each partition, by partition index.
    pub partitions: Vec<u64>,
    /// Only the configs set explicitly; defaults are not stored (so they can change).
    pub configs: BTreeMap<String, String>,
    #[serde(default)]
    pub internal: bool,
}

impl TopicMeta {
    pub fn kv_key(name: &str) -> String {
        format!("{KV_PREFIX}{name}")
    }
}

/// The cleanup policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    pub delete: bool,
    pub compact: bool,
}

/// Effective topic configuration (explicit values over broker defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    /// retention.ms; -1 keeps forever.
    pub retention_ms: i64,
    /// retention.bytes per partition; -1 is unlimited.
    pub retention_bytes: i64,
    pub cleanup_policy: CleanupPolicy,
    /// max.message.bytes: largest record batch accepted.
    pub max_message_bytes: usize,
    /// message.timestamp.type = LogAppendTime.
    pub log_append_time: bool,
    /// delete.retention.ms: how long tombstones survive compaction.
    pub delete_retention_ms: i64,
    /// min.compaction.lag.ms
    pub min_compaction_lag_ms: i64,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            cleanup_policy: CleanupPolicy { delete: true, compact: false },
            max_message_bytes: 1_048_588,
            log_append_time: false,
            delete_retention_ms: 24 * 3600 * 1000,
            min_compaction_lag_ms: 0,
        }
    }
}

/// A config this broker knows: name, default, whether it is read-only, and a validator.
#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    pub name: &'static str,
    pub default: &'static str,
    pub read_only: bool,
}

/// Every topic config DescribeConfigs lists. Others are accepted for compatibility (clients
/// and tools set them) only if listed here.
pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    ConfigDef { name: "cleanup.policy", default: "delete", read_only: false },
    ConfigDef { name: "retention.ms", default: "604800000", read_only: false },
    ConfigDef { name: "retention.bytes", default: "-1", read_only: false },
    ConfigDef { name: "max.message.bytes", default: "1048588", read_only: false },
    ConfigDef { name: "message.timestamp.type", default: "CreateTime", read_only: false },
    ConfigDef { name: "delete.retention.ms", default: "86400000", read_only: false },
    ConfigDef { name: "min.compaction.lag.ms", default: "0", read_only: false },
    ConfigDef { name: "segment.bytes", default: "1073741824", read_only: false },
    ConfigDef { name: "segment.ms", default: "604800000", read_only: false },
    ConfigDef { name: "min.insync.replicas", default: "1", read_only: false },
    ConfigDef { name: "compression.type", default: "producer", read_only: false },
    ConfigDef { name: "unclean.leader.election.enable", default: "false", read_only: false },
    ConfigDef { name: "min.cleanable.dirty.ratio", default: "0.5", read_only: false },
    // The broker pool the topic's partitions are placed on (cluster::placement).
    ConfigDef { name: crate::cluster::placement::POOL_CONFIG, default: "default", read_only: false },
    // The topic link a mirror topic follows (crate::link); set and cleared by the brokers only.
    ConfigDef { name: crate::link::LINK_CONFIG, default: "", read_only: true },
];

/// Refuses configs that only the brokers set (a client setting `automq.link` could turn a topic
/// into a mirror, or promote one behind the link's back).
pub fn refuse_managed(configs: &BTreeMap<String, String>) -> Result<()> {
    if configs.contains_key(crate::link::LINK_CONFIG) {
        return Err(invalid(format!("{} is managed by topic links", crate::link::LINK_CONFIG)));
    }
    Ok(())
}

fn parse_i64(name: &str, value: &str) -> Result<i64> {
    value.trim().parse().map_err(|_| invalid(format!("{name} must be an integer, got {value:?}")))
}

fn invalid(message: String) -> Error {
    Error::kafka(ResponseError::InvalidConfig, message)
}

impl TopicConfig {
    /// Validates explicit configs and builds the effective configuration over Kafka's
    /// defaults.
    pub fn from_map(map: &BTreeMap<String, String>) -> Result<Self> {
        Self::from_map_over(TopicConfig::default(), map)
    }

    /// Validates explicit configs and applies them over `defaults` (the broker's).
    pub fn from_map_over(defaults: TopicConfig, map: &BTreeMap<String, String>) -> Result<Self> {
        let mut c = defaults;
        for (name, value) in map {
            match name.as_str() {
                "retention.ms" => c.retention_ms = parse_i64(name, value)?,
                "retention.bytes" => c.retention_bytes = parse_i64(name, value)?,
                "delete.retention.ms" => c.delete_retention_ms = parse_i64(name, value)?,
                "min.compaction.lag.ms" => c.min_compaction_lag_ms = parse_i64(name, value)?,
                "max.message.bytes" => {
                    let v = parse_i64(name, value)?;
                    if v < 0 {
                        return Err(invalid(format!("max.message.bytes must be at least 0, got {v}")));
                    }
                    c.max_message_bytes = v as usize;
                }
                "cleanup.policy" => {
                    let mut p = CleanupPolicy { delete: false, compact: false };
                    for part in value.split(',').map(str::trim) {
                        match part {
                            "delete" => p.delete = true,
                            "compact" => p.compact = true,
                            other => {
                                return Err(invalid(format!(
                                    "cleanup.policy must be delete and/or compact, got {other:?}"
                                )))
                            }
                        }
                    }
                    if !p.delete && !p.compact {
                        return Err(invalid("cleanup.policy may not be empty".into()));
                    }
                    c.cleanup_policy = p;
                }
                "message.timestamp.type" => match value.as_str() {
                    "CreateTime" => c.log_append_time = false,
                    "LogAppendTime" => c.log_append_time = true,
                    other => {
                        return Err(invalid(format!(
                            "message.timestamp.type must be CreateTime or LogAppendTime, got {other:?}"
                        )))
                    }
                },
                "compression.type" => match value.as_str() {
                    "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd" => {}
                    other => return Err(invalid(format!("unknown compression.type {other:?}"))),
                },
                other => {
                    if !TOPIC_CONFIGS.iter().any(|d| d.name == other) {
                        return Err(invalid(format!("unknown topic config {other:?}")));
                    }
                    if other.ends_with(".ms") || other.ends_with(".bytes") || other.ends_with(".replicas") {
                        parse_i64(other, value)?;
                    }
                }
            }
        }
        Ok(c)
    }
}

/// Kafka's legal topic names: 1-249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::kafka(ResponseError::InvalidTopicException, format!("invalid topic name {name:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn configs_parse_and_validate() {
        let c = TopicConfig::from_map(&map(&[("cleanup.policy", "compact,delete"), ("retention.ms", "1000")])).unwrap();
        assert_eq!(c.cleanup_policy, CleanupPolicy { delete: true, compact: true });
        assert_eq!(c.retention_ms, 1000);
        for bad in [("retention.ms", "soon"), ("cleanup.policy", "archive"), ("no.such.config", "1")] {
            let err = TopicConfig::from_map(&map(&[bad])).unwrap_err();
            assert_eq!(err.code(), ResponseError::InvalidConfig, "{bad:?}");
        }
    }

    #[test]
    fn explicit_configs_override_broker_defaults() {
        let defaults = TopicConfig { max_message_bytes: 5 << 20, ..TopicConfig::default() };
        assert_eq!(TopicConfig::from_map_over(defaults.clone(), &map(&[])).unwrap().max_message_bytes, 5 << 20);
        let c = TopicConfig::from_map_over(defaults, &map(&[("max.message.bytes", "1000")])).unwrap();
        assert_eq!(c.max_message_bytes, 1000);
    }

    #[test]
    fn topic_names_follow_kafka() {
        assert!(validate_name("orders.v1_x-y").is_ok());
        for bad in ["", ".", "..", "has space", "slash/", &"x".repeat(250)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
