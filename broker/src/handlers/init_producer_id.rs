//! InitProducerId: for an idempotent producer a fresh producer id, or (KIP-360) the same id
//! with a bumped epoch when the producer asks to recover; for a transactional producer the
//! transaction coordinator's answer (`txn::coordinator`): its id with a new epoch, after
//! aborting what a previous instance left open.

use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use crate::broker::Broker;

pub(super) async fn handle(
    broker: &Arc<Broker>,
    request: InitProducerIdRequest,
    version: i16,
) -> InitProducerIdResponse {
    let failed = |code: ResponseError| {
        broker.metrics.error("InitProducerId", code);
        InitProducerIdResponse::default()
            .with_error_code(code.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if let Some(txn_id) = request.transactional_id.as_ref().filter(|id| !id.0.is_empty()) {
        let expected = (request.producer_id.0 >= 0 && request.producer_epoch >= 0)
            .then_some((request.producer_id.0, request.producer_epoch));
        return match broker
            .txns
            .init_producer(broker, txn_id.0.as_str(), request.transaction_timeout_ms, expected)
            .await
        {
            Ok((id, epoch)) => {
                InitProducerIdResponse::default().with_producer_id(ProducerId(id)).with_producer_epoch(epoch)
            }
            // PRODUCER_FENCED is known to clients from v3 on (KIP-588).
            Err(e) if e.code() == ResponseError::ProducerFenced && version < 3 => {
                failed(ResponseError::InvalidProducerEpoch)
            }
            Err(e) => {
                tracing::debug!(transactional_id = %txn_id.0, error = %e, "InitProducerId refused");
                failed(e.code())
            }
        };
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
