//! EndTxn (key 26): commit or abort a producer's transaction. Answered once the
//! coordinator's PrepareCommit/PrepareAbort record is committed; the markers and the
//! Complete record follow in the background (a read_committed consumer sees the
//! transaction once the marker reaches its partition). v5 (KIP-890's epoch bump) is not
//! advertised: clients use it only with `transaction.version` 2.

use std::sync::Arc;

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};
use ottla_protocol::frame::Request;

use super::{decode, respond_later, txn_error_code, HandlerError, Reply};
use crate::broker::Broker;

/// First version that knows PRODUCER_FENCED (KIP-588).
const PRODUCER_FENCED_SINCE: i16 = 2;

pub fn handle(broker: &Arc<Broker>, request: &Request) -> Result<Reply, HandlerError> {
    let req: EndTxnRequest = decode(request)?;
    let knows_fenced = request.version() >= PRODUCER_FENCED_SINCE;
    let ended = broker.txns.end_transaction(
        req.transactional_id.to_string(),
        req.producer_id.0,
        req.producer_epoch,
        req.committed,
    );
    respond_later(request, async move {
        let code = match ended.await {
            Ok(()) => 0,
            Err(e) => txn_error_code(&e, knows_fenced),
        };
        EndTxnResponse::default().with_error_code(code)
    })
}
