//! InitProducerId (key 22) for idempotent, non-transactional producers.
//!
//! Without a transactional id Kafka hands out a fresh producer id with epoch 0 every
//! time, including when a producer asks to bump its epoch (KIP-360): the new id starts
//! a new sequence space, so the partitions accept it from sequence 0.

use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;
use ottla_protocol::frame::Request;

use super::{decode, respond, HandlerError, Reply};
use crate::broker::Broker;

pub fn handle(broker: &Arc<Broker>, request: &Request) -> Result<Reply, HandlerError> {
    let req: InitProducerIdRequest = decode(request)?;
    let response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if let Some(id) = req.transactional_id.as_ref().filter(|id| !id.is_empty()) {
        // The transaction coordinator is a later issue. INVALID_REQUEST is fatal for the
        // client ("see the broker logs"), and the log line says why; a retriable code
        // would make it retry forever, and an id without a coordinator is useless.
        tracing::warn!(
            "Rejected InitProducerId for transactional id {}: transactions are not supported yet",
            id.as_str()
        );
        return respond(
            request,
            &response.with_error_code(ResponseError::InvalidRequest.code()),
        );
    }
    match broker.next_producer_id() {
        Ok(id) => respond(
            request,
            &response
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(0),
        ),
        Err(e) => {
            tracing::error!("Cannot allocate a producer id: {e:#}");
            respond(
                request,
                &response.with_error_code(ResponseError::CoordinatorNotAvailable.code()),
            )
        }
    }
}
