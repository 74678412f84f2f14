//! InitProducerId (key 22): a producer id and epoch for idempotent and transactional
//! producers.
//!
//! Without a transactional id Kafka hands out a fresh producer id with epoch 0 every
//! time, including when a producer asks to bump its epoch (KIP-360): the new id starts
//! a new sequence space, so the partitions accept it from sequence 0.
//!
//! With one, the transaction coordinator answers: the id's producer id with its epoch
//! bumped (fencing every older producer of that id), after aborting a transaction the
//! previous producer left open (CONCURRENT_TRANSACTIONS until that is done; the client
//! retries). Runs on the blocking pool: taking a new block of producer ids is a
//! controller write.

use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;
use ottla_protocol::frame::Request;
use ottla_txn::InitProducerId;

use super::{decode, respond, respond_later, txn_error_code, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, Caller};

/// First version that knows PRODUCER_FENCED (KIP-588).
const PRODUCER_FENCED_SINCE: i16 = 4;

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: InitProducerIdRequest = decode(request)?;
    let response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    // KafkaApis: WRITE on the transactional id; an idempotent producer needs
    // IDEMPOTENT_WRITE on the cluster or WRITE on some topic (KIP-679).
    let refused = match req.transactional_id.as_ref().filter(|id| !id.is_empty()) {
        Some(id) if !caller.allowed_on_transactional_id(op::WRITE, id) => {
            Some(ResponseError::TransactionalIdAuthorizationFailed)
        }
        None if !caller.allowed_on_cluster(op::IDEMPOTENT_WRITE)
            && !caller.may_write_some_topic() =>
        {
            Some(ResponseError::ClusterAuthorizationFailed)
        }
        _ => None,
    };
    if let Some(error) = refused {
        return respond(request, &response.with_error_code(error.code()));
    }
    let fresh = match broker.next_producer_id() {
        Ok(id) => id,
        Err(e) => {
            tracing::error!("Cannot allocate a producer id: {e:#}");
            return respond(
                request,
                &response.with_error_code(ResponseError::CoordinatorNotAvailable.code()),
            );
        }
    };
    let Some(transactional_id) = req.transactional_id.as_ref().filter(|id| !id.is_empty()) else {
        return respond(
            request,
            &response
                .with_producer_id(ProducerId(fresh))
                .with_producer_epoch(0),
        );
    };
    let knows_fenced = request.version() >= PRODUCER_FENCED_SINCE;
    let initialised = broker.txns.init_producer_id(
        InitProducerId {
            transactional_id: transactional_id.to_string(),
            timeout_ms: req.transaction_timeout_ms,
            producer_id: req.producer_id.0,
            producer_epoch: req.producer_epoch,
        },
        fresh,
    );
    respond_later(request, async move {
        match initialised.await {
            Ok((producer_id, epoch)) => response
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(epoch),
            Err(e) => response.with_error_code(txn_error_code(&e, knows_fenced)),
        }
    })
}
