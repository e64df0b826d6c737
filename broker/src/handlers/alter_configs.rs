//! AlterConfigs: replaces a topic's explicit configs (the legacy, non-incremental API).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::ResponseError;

use super::describe_configs::TOPIC;
use crate::broker::Broker;
use crate::topics::TopicConfig;

pub(super) async fn handle(broker: &Arc<Broker>, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::new();
    for resource in request.resources {
        let result = async {
            if resource.resource_type != TOPIC {
                return Err(super::err(ResponseError::InvalidRequest, "only topic configs can be altered"));
            }
            let name = resource.resource_name.to_string();
            if broker.topic(&name).is_none() {
                return Err(super::err(ResponseError::UnknownTopicOrPartition, format!("topic {name} does not exist")));
            }
            let configs: BTreeMap<String, String> = resource
                .configs
                .iter()
                .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
                .collect();
            TopicConfig::from_map(&configs)?;
            crate::topics::refuse_managed(&configs)?;
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
            broker.metrics.error("AlterConfigs", e.code());
            r = r.with_error_message(super::message(e));
        }
        responses.push(r);
    }
    AlterConfigsResponse::default().with_responses(responses)
}
