//! EndTxn (key 26): commit or abort a producer's transaction. Answered once the
//! coordinator's PrepareCommit/PrepareAbort record is committed; the markers and the
//! Complete record follow in the background (a read_committed consumer sees the
//! transaction once the marker reaches its partition).
//!
//! v5 comes from transactions-v2 producers (KIP-890 part 2): the coordinator bumps the
//! producer's epoch at every commit and abort and answers the new producer id and
//! epoch, which the producer uses for its next transaction.

use std::sync::Arc;

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId};
use kafka_protocol::ResponseError;
use ottla_protocol::frame::Request;
use ottla_txn::{EndTxn, EndTxnAnswer, TRANSACTION_VERSION_2};

use super::{decode, respond_later, txn_error_code, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, Caller};

/// First version that knows PRODUCER_FENCED (KIP-588).
const PRODUCER_FENCED_SINCE: i16 = 2;
/// First version of transactions v2 (KIP-890 part 2).
const TRANSACTIONS_V2_SINCE: i16 = 5;

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: EndTxnRequest = decode(request)?;
    if !caller.allowed_on_transactional_id(op::WRITE, req.transactional_id.as_str()) {
        return super::respond(
            request,
            &EndTxnResponse::default().with_error_code(
                kafka_protocol::ResponseError::TransactionalIdAuthorizationFailed.code(),
            ),
        );
    }
    let knows_fenced = request.version() >= PRODUCER_FENCED_SINCE;
    let mut end = EndTxn {
        transactional_id: req.transactional_id.to_string(),
        producer_id: req.producer_id.0,
        producer_epoch: req.producer_epoch,
        commit: req.committed,
        transaction_version: if request.version() >= TRANSACTIONS_V2_SINCE {
            TRANSACTION_VERSION_2
        } else {
            0
        },
        fresh_producer_id: None,
    };
    let ended = broker.txns.end_transaction(end.clone());
    let broker = broker.clone();
    respond_later(request, async move {
        let mut answer = ended.await;
        if answer == Ok(EndTxnAnswer::NeedsProducerId) {
            // The bump exhausts the epoch: the producer moves to a new id. Taking one
            // may be a controller write, so it runs on the blocking pool.
            let fresh = {
                let broker = broker.clone();
                tokio::task::spawn_blocking(move || broker.next_producer_id()).await
            };
            answer = match fresh {
                Ok(Ok(id)) => {
                    end.fresh_producer_id = Some(id);
                    broker.txns.end_transaction(end).await
                }
                Ok(Err(e)) => {
                    tracing::error!("Cannot allocate a producer id: {e:#}");
                    return failed(ResponseError::CoordinatorNotAvailable.code());
                }
                Err(e) => {
                    tracing::error!("Cannot allocate a producer id: {e}");
                    return failed(ResponseError::CoordinatorNotAvailable.code());
                }
            };
        }
        match answer {
            Ok(EndTxnAnswer::Ended {
                producer_id,
                producer_epoch,
            }) => EndTxnResponse::default()
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(producer_epoch),
            // Asked with an id: never needs another.
            Ok(EndTxnAnswer::NeedsProducerId) => {
                failed(ResponseError::CoordinatorNotAvailable.code())
            }
            Err(e) => failed(txn_error_code(&e, knows_fenced)),
        }
    })
}

/// An error answer: v5's producer id and epoch are -1 then, as Kafka sends them.
fn failed(code: i16) -> EndTxnResponse {
    EndTxnResponse::default()
        .with_error_code(code)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}
