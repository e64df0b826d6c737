//! DescribeConfigs for topics (explicit values over defaults, with their sources) and for
//! this broker.

use std::sync::Arc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::cluster::placement::POOL_CONFIG;
use crate::topics::TOPIC_CONFIGS;

pub(super) const TOPIC: i8 = 2;
pub(super) const BROKER: i8 = 4;
/// Config sources, as in Kafka's DescribeConfigsResponse.
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;
/// Config types (v3+).
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;

fn config_type(name: &str) -> i8 {
    match name {
        "cleanup.policy" => TYPE_LIST,
        "max.message.bytes" | "min.insync.replicas" | "segment.bytes" => TYPE_INT,
        n if n.ends_with(".ms") || n.ends_with(".bytes") => TYPE_LONG,
        _ => TYPE_STRING,
    }
}

pub(super) fn handle(broker: &Arc<Broker>, request: DescribeConfigsRequest, version: i16) -> DescribeConfigsResponse {
    let mut results = Vec::new();
    for resource in request.resources {
        let wanted = |name: &str| {
            resource.configuration_keys.as_ref().is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
        };
        let base = DescribeConfigsResult::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        let entry = |name: &str, value: String, source: i8, read_only: bool| {
            let mut e = DescribeConfigsResourceResult::default()
                .with_name(StrBytes::from_string(name.to_string()))
                .with_value(Some(StrBytes::from_string(value.clone())))
                .with_read_only(read_only)
                .with_config_source(source);
            if version >= 3 {
                e = e.with_config_type(config_type(name));
            }
            if request.include_synonyms {
                e = e.with_synonyms(vec![DescribeConfigsSynonym::default()
                    .with_name(StrBytes::from_string(name.to_string()))
                    .with_value(Some(StrBytes::from_string(value)))
                    .with_source(source)]);
            }
            e
        };
        let result = match resource.resource_type {
            TOPIC => match broker.topic(resource.resource_name.as_str()) {
                Some(topic) => {
                    let configs = TOPIC_CONFIGS
                        .iter()
                        .filter(|d| wanted(d.name))
                        .map(|d| match topic.meta.configs.get(d.name) {
                            Some(v) => entry(d.name, v.clone(), DYNAMIC_TOPIC_CONFIG, d.read_only),
                            // A broker message.max.bytes other than Kafka's default is the
                            // topics' default, reported as coming from the broker (as Kafka does).
                            None if d.name == "max.message.bytes"
                                && broker.config.message_max_bytes.to_string() != d.default =>
                            {
                                entry(
                                    d.name,
                                    broker.config.message_max_bytes.to_string(),
                                    STATIC_BROKER_CONFIG,
                                    d.read_only,
                                )
                            }
                            // Without its own pool, a topic's pool comes from the name rules and
                            // the cluster's default pool (broker settings).
                            None if d.name == POOL_CONFIG => {
                                let pool = broker.cluster.config.pool_rules.default_for(&topic.meta.name);
                                let source = if pool == d.default { DEFAULT_CONFIG } else { STATIC_BROKER_CONFIG };
                                entry(d.name, pool.to_string(), source, d.read_only)
                            }
                            None => entry(d.name, d.default.to_string(), DEFAULT_CONFIG, d.read_only),
                        })
                        .collect();
                    base.with_configs(configs)
                }
                None => base.with_error_code(ResponseError::UnknownTopicOrPartition.code()).with_error_message(Some(
                    StrBytes::from_string(format!("topic {} does not exist", resource.resource_name)),
                )),
            },
            BROKER => {
                let c = &broker.config;
                let values = [
                    ("broker.id", c.node_id.to_string()),
                    ("auto.create.topics.enable", c.auto_create_topics.to_string()),
                    ("num.partitions", c.num_partitions.to_string()),
                    ("message.max.bytes", c.message_max_bytes.to_string()),
                    ("socket.request.max.bytes", c.max_request_bytes.to_string()),
                    ("offsets.topic.num.partitions", c.offsets_topic_partitions.to_string()),
                    ("broker.rack", c.rack.clone().unwrap_or_default()),
                ];
                let configs = values
                    .into_iter()
                    .filter(|(n, _)| wanted(n))
                    .map(|(n, v)| entry(n, v, STATIC_BROKER_CONFIG, true))
                    .collect();
                base.with_configs(configs)
            }
            other => base.with_error_code(ResponseError::InvalidRequest.code()).with_error_message(Some(
                StrBytes::from_string(format!("config resource type {other} is not supported")),
            )),
        };
        results.push(result);
    }
    DescribeConfigsResponse::default().with_results(results)
}
