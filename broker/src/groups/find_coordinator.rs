//! FindCoordinator: this broker coordinates every group. Transaction coordinators (key type 1)
//! do not exist yet: COORDINATOR_NOT_AVAILABLE. v4+ asks for several keys at once.

use std::sync::Arc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{ApiKey, BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::count_error;
use crate::broker::Broker;

const GROUP_KEY: i8 = 0;
const TRANSACTION_KEY: i8 = 1;

pub(super) fn handle(broker: &Arc<Broker>, r: FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
    let api = crate::handlers::api_name(ApiKey::FindCoordinator);
    let (host, port) = broker.advertised();
    let node = broker.config.node_id;
    let lookup = |key: &str| -> Result<(), (ResponseError, &'static str)> {
        match r.key_type {
            GROUP_KEY if key.is_empty() => Err((ResponseError::InvalidRequest, "the group id is empty")),
            GROUP_KEY => Ok(()),
            TRANSACTION_KEY => Err((ResponseError::CoordinatorNotAvailable, "transactions are not supported yet")),
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
                    Ok(()) => c
                        .with_node_id(BrokerId(node))
                        .with_host(StrBytes::from_string(host.to_string()))
                        .with_port(port),
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
        Ok(()) => FindCoordinatorResponse::default()
            .with_node_id(BrokerId(node))
            .with_host(StrBytes::from_string(host.to_string()))
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
