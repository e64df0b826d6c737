//! InitProducerId for idempotent producers: a fresh producer id, or (KIP-360) the same id with
//! a bumped epoch when the producer asks to recover. Transactional ids arrive with the
//! transactions work.

use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use crate::broker::Broker;

pub(super) async fn handle(broker: &Arc<Broker>, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let failed = |code: ResponseError| {
        broker.metrics.error("InitProducerId", code);
        InitProducerIdResponse::default()
            .with_error_code(code.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if request.transactional_id.is_some() {
        return failed(ResponseError::TransactionalIdAuthorizationFailed);
    }
    if request.producer_id.0 >= 0 && request.producer_epoch >= 0 {
        // Epoch bump for an idempotent producer recovering from an error; past the largest
        // epoch, a new id.
        if request.producer_epoch < i16::MAX - 1 {
            return InitProducerIdResponse::default()
                .with_producer_id(request.producer_id)
                .with_producer_epoch(request.producer_epoch + 1);
        }
    }
    match broker.next_producer_id().await {
        Ok(id) => InitProducerIdResponse::default().with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => failed(e.code()),
    }
}
