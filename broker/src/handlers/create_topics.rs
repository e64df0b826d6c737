//! CreateTopics. Replication factors are accepted and ignored: data is already durable in
//! object storage, so a topic has one replica per partition (reported as such).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::error::Result;
use crate::topics::{self, TopicConfig};

pub(super) async fn handle(broker: &Arc<Broker>, request: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let mut results = Vec::new();
    for t in request.topics {
        let name = t.name.0.to_string();
        let outcome: Result<(i32, BTreeMap<String, String>)> = async {
            topics::validate_name(&name)?;
            let partitions = if !t.assignments.is_empty() {
                t.assignments.len() as i32
            } else if t.num_partitions == -1 {
                broker.config.num_partitions
            } else {
                t.num_partitions
            };
            if t.replication_factor == 0 || t.replication_factor < -1 {
                return Err(super::err(
                    ResponseError::InvalidReplicationFactor,
                    format!("replication factor {} is invalid", t.replication_factor),
                ));
            }
            let mut configs = BTreeMap::new();
            for c in &t.configs {
                if let Some(v) = &c.value {
                    configs.insert(c.name.to_string(), v.to_string());
                }
            }
            TopicConfig::from_map(&configs)?;
            if partitions < 1 {
                return Err(super::err(
                    ResponseError::InvalidPartitions,
                    format!("{partitions} partitions; at least 1 is needed"),
                ));
            }
            if request.validate_only {
                if broker.topic(&name).is_some() {
                    return Err(super::err(
                        ResponseError::TopicAlreadyExists,
                        format!("topic {name:?} already exists"),
                    ));
                }
            } else {
                crate::topics::refuse_managed(&configs)?;
                broker.create_topic(&name, partitions, configs.clone(), false).await?;
            }
            Ok((partitions, configs))
        }
        .await;
        let base = CreatableTopicResult::default().with_name(t.name.clone());
        results.push(match outcome {
            Ok((partitions, explicit)) => {
                let topic_id = broker.topic(&name).map(|t| t.meta.id).unwrap_or_default();
                let configs = (version >= 5).then(|| {
                    topics::TOPIC_CONFIGS
                        .iter()
                        .map(|d| {
                            let value = match explicit.get(d.name) {
                                Some(v) => v.clone(),
                                None if d.name == crate::cluster::placement::POOL_CONFIG => {
                                    broker.cluster.config.pool_rules.default_for(&name).to_string()
                                }
                                None => d.default.to_string(),
                            };
                            CreatableTopicConfigs::default()
                                .with_name(StrBytes::from_static_str(d.name))
                                .with_value(Some(StrBytes::from_string(value)))
                                .with_read_only(d.read_only)
                                .with_config_source(if explicit.contains_key(d.name) { 1 } else { 5 })
                        })
                        .collect()
                });
                base.with_topic_id(topic_id)
                    .with_num_partitions(partitions)
                    .with_replication_factor(1)
                    .with_configs(configs)
            }
            Err(e) => {
                broker.metrics.error("CreateTopics", e.code());
                base.with_error_code(e.code().code())
                    .with_error_message(super::message(&e))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
            }
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}
