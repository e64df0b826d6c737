//! IncrementalAlterConfigs: SET, DELETE, APPEND and SUBTRACT on topic configs.

use std::sync::Arc;

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::ResponseError;

use super::describe_configs::TOPIC;
use crate::broker::Broker;
use crate::topics::{TopicConfig, TOPIC_CONFIGS};

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

pub(super) async fn handle(
    broker: &Arc<Broker>,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::new();
    for resource in request.resources {
        let result = async {
            if resource.resource_type != TOPIC {
                return Err(super::err(ResponseError::InvalidRequest, "only topic configs can be altered"));
            }
            let name = resource.resource_name.to_string();
            let topic = broker.topic(&name).ok_or_else(|| {
                super::err(ResponseError::UnknownTopicOrPartition, format!("topic {name} does not exist"))
            })?;
            let mut configs = topic.meta.configs.clone();
            // Broker-managed configs are carried over by set_topic_configs_by_client, and
            // refused if a client touches them.
            configs.remove(crate::link::LINK_CONFIG);
            for c in &resource.configs {
                if c.name.as_str() == crate::link::LINK_CONFIG {
                    return Err(super::err(
                        ResponseError::InvalidConfig,
                        format!("{} is managed by topic links", crate::link::LINK_CONFIG),
                    ));
                }
                let key = c.name.to_string();
                let value = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                let current = || {
                    configs
                        .get(&key)
                        .cloned()
                        .or_else(|| TOPIC_CONFIGS.iter().find(|d| d.name == key).map(|d| d.default.to_string()))
                };
                match c.config_operation {
                    SET => {
                        configs.insert(key, value);
                    }
                    DELETE => {
                        configs.remove(&key);
                    }
                    APPEND | SUBTRACT => {
                        let mut items: Vec<String> = current()
                            .unwrap_or_default()
                            .split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect();
                        for v in value.split(',').filter(|s| !s.is_empty()) {
                            if c.config_operation == APPEND && !items.iter().any(|i| i == v) {
                                items.push(v.to_string());
                            } else if c.config_operation == SUBTRACT {
                                items.retain(|i| i != v);
                            }
                        }
                        configs.insert(key, items.join(","));
                    }
                    other => {
                        return Err(super::err(
                            ResponseError::InvalidRequest,
                            format!("unknown config operation {other}"),
                        ))
                    }
                }
            }
            TopicConfig::from_map(&configs)?;
            if request.validate_only {
                return Ok(());
            }
            broker.set_topic_configs_by_client(&name, configs).await
        }
        .await;
        let mut r = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name)
            .with_error_code(super::code(&result));
        if let Err(e) = &result {
            broker.metrics.error("IncrementalAlterConfigs", e.code());
            r = r.with_error_message(super::message(e));
        }
        responses.push(r);
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
