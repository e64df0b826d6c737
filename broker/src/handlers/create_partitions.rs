//! CreatePartitions: grows topics (partitions are never removed, as in Kafka).

use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::ResponseError;

use crate::broker::Broker;

pub(super) async fn handle(broker: &Arc<Broker>, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut results = Vec::new();
    for t in request.topics {
        let name = t.name.0.to_string();
        let result = if request.validate_only {
            match broker.topic(&name) {
                None => {
                    Err(super::err(ResponseError::UnknownTopicOrPartition, format!("topic {name:?} does not exist")))
                }
                Some(topic) if t.count <= topic.partition_count() as i32 => Err(super::err(
                    ResponseError::InvalidPartitions,
                    format!(
                        "topic {name} has {} partitions; the new count {} must be larger",
                        topic.partition_count(),
                        t.count
                    ),
                )),
                Some(_) => Ok(()),
            }
        } else {
            broker.create_partitions(&name, t.count).await
        };
        let mut r = CreatePartitionsTopicResult::default().with_name(t.name).with_error_code(super::code(&result));
        if let Err(e) = &result {
            broker.metrics.error("CreatePartitions", e.code());
            r = r.with_error_message(super::message(e));
        }
        results.push(r);
    }
    CreatePartitionsResponse::default().with_results(results)
}
