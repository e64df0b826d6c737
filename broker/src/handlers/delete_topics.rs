//! DeleteTopics, by name (v1-5) or by name or id (v6). Objects of deleted topics are removed
//! by the storage GC after its grace period.

use std::sync::Arc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::broker::Broker;

pub(super) async fn handle(broker: &Arc<Broker>, request: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
    let targets: Vec<(Option<String>, uuid::Uuid)> = if version >= 6 {
        request.topics.iter().map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)).collect()
    } else {
        request.topic_names.iter().map(|n| (Some(n.0.to_string()), uuid::Uuid::nil())).collect()
    };
    let mut responses = Vec::new();
    for (name, id) in targets {
        let name = name.or_else(|| broker.topic_by_id(id).map(|t| t.meta.name.clone()));
        let result = match &name {
            Some(n) => broker.delete_topic(n).await,
            None => Err(super::err(ResponseError::UnknownTopicId, format!("unknown topic id {id}"))),
        };
        let mut r = DeletableTopicResult::default()
            .with_name(name.map(|n| TopicName(StrBytes::from_string(n))))
            .with_topic_id(id)
            .with_error_code(super::code(&result));
        if let Err(e) = &result {
            broker.metrics.error("DeleteTopics", e.code());
            r = r.with_error_message(super::message(e));
        }
        responses.push(r);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
