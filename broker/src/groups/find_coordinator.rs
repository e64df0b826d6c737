//! FindCoordinator: a group's coordinator is the leader of its `__consumer_offsets` partition
//! (Kafka's hash of the group id), a transactional id's (key type 1) the leader of its
//! `__transaction_state` partition (created on the first such request), on whichever broker
//! that is. v4+ asks for several keys at once.

use std::sync::Arc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{ApiKey, BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::count_error;
use super::records::partition_for;
use crate::broker::{Broker, OFFSETS_TOPIC};

const GROUP_KEY: i8 = 0;
const TRANSACTION_KEY: i8 = 1;

pub(super) fn handle(
    broker: &Arc<Broker>,
    r: FindCoordinatorRequest,
    version: i16,
    listener: Option<&str>,
) -> FindCoordinatorResponse {
    let api = crate::handlers::api_name(ApiKey::FindCoordinator);
    let view = broker.cluster.view();
    let state = broker.engine.catalog().state();
    let offsets = view.topics.get(OFFSETS_TOPIC).cloned();
    let txn_state = view.topics.get(crate::txn::TXN_TOPIC).cloned();
    if r.key_type == TRANSACTION_KEY && txn_state.is_none() {
        broker.ensure_txn_topic();
    }
    let lookup = |key: &str| -> Result<(i32, String, i32), (ResponseError, &'static str)> {
        match r.key_type {
            GROUP_KEY if key.is_empty() => Err((ResponseError::InvalidRequest, "the group id is empty")),
            GROUP_KEY => {
                let topic = offsets.as_ref().ok_or((ResponseError::CoordinatorNotAvailable, "no offsets topic yet"))?;
                let index = partition_for(key, topic.partitions.len()) as i32;
                let leader = view
                    .leader(&state, topic, index)
                    .and_then(|id| view.brokers.get(&id))
                    .ok_or((ResponseError::CoordinatorNotAvailable, "the group's coordinator is moving"))?;
                let (host, port) = leader
                    .endpoint(listener)
                    .ok_or((ResponseError::CoordinatorNotAvailable, "the coordinator has no such listener"))?;
                Ok((leader.node_id, host.to_string(), port))
            }
            TRANSACTION_KEY if key.is_empty() => Err((ResponseError::InvalidRequest, "the transactional id is empty")),
            TRANSACTION_KEY => {
                let topic = txn_state
                    .as_ref()
                    .ok_or((ResponseError::CoordinatorNotAvailable, "the transaction state topic is being created"))?;
                let index = partition_for(key, topic.partitions.len()) as i32;
                let leader = view
                    .leader(&state, topic, index)
                    .and_then(|id| view.brokers.get(&id))
                    .ok_or((ResponseError::CoordinatorNotAvailable, "the transaction coordinator is moving"))?;
                let (host, port) = leader
                    .endpoint(listener)
                    .ok_or((ResponseError::CoordinatorNotAvailable, "the coordinator has no such listener"))?;
                Ok((leader.node_id, host.to_string(), port))
            }
            _ => Err((ResponseError::InvalidRequest, "unknown coordinator key type")),
        }
    };
    if version >= 4 {
        let coordinators = r
            .coordinator_keys
            .iter()
            .map(|key| {
                let c = Coordinator::default().with_key(key.clone());
                match lookup(key) {
                    Ok((node, host, port)) => {
                        c.with_node_id(BrokerId(node)).with_host(StrBytes::from_string(host)).with_port(port)
                    }
                    Err((e, message)) => {
                        count_error(broker, &api, e.code());
                        c.with_node_id(BrokerId(-1))
                            .with_port(-1)
                            .with_error_code(e.code())
                            .with_error_message(Some(StrBytes::from_static_str(message)))
                    }
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    match lookup(&r.key) {
        Ok((node, host, port)) => FindCoordinatorResponse::default()
            .with_node_id(BrokerId(node))
            .with_host(StrBytes::from_string(host))
            .with_port(port),
        Err((e, message)) => {
            count_error(broker, &api, e.code());
            let response =
                FindCoordinatorResponse::default().with_error_code(e.code()).with_node_id(BrokerId(-1)).with_port(-1);
            if version >= 1 {
                response.with_error_message(Some(StrBytes::from_static_str(message)))
            } else {
                response
            }
        }
    }
}
