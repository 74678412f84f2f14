//! AddOffsetsToTxn (key 25): a producer will commit a group's offsets in its
//! transaction; the coordinator adds the group's `__consumer_offsets` partition to it,
//! so the COMMIT/ABORT marker goes there too.

use std::sync::Arc;

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};
use ottla_controller::OFFSETS_TOPIC;
use ottla_group::records::partition_for;
use ottla_protocol::frame::Request;

use super::{decode, respond_later, txn_error_code, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, Caller};

/// First version that knows PRODUCER_FENCED (KIP-588).
const PRODUCER_FENCED_SINCE: i16 = 2;

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: AddOffsetsToTxnRequest = decode(request)?;
    // KafkaApis: WRITE on the transactional id, READ on the group.
    let refused = if !caller.allowed_on_transactional_id(op::WRITE, req.transactional_id.as_str()) {
        Some(kafka_protocol::ResponseError::TransactionalIdAuthorizationFailed)
    } else if !caller.allowed_on_group(op::READ, req.group_id.as_str()) {
        Some(kafka_protocol::ResponseError::GroupAuthorizationFailed)
    } else {
        None
    };
    if let Some(error) = refused {
        return super::respond(
            request,
            &AddOffsetsToTxnResponse::default().with_error_code(error.code()),
        );
    }
    let knows_fenced = request.version() >= PRODUCER_FENCED_SINCE;
    // Kafka's `partitionFor(groupId)`: the topic's partition count once it exists, the
    // configured count before.
    let partitions = broker
        .controller
        .image()
        .topic(OFFSETS_TOPIC)
        .map_or(broker.config.offsets_topic_num_partitions, |t| {
            t.partitions.len() as i32
        });
    let partition = partition_for(req.group_id.as_str(), partitions.max(1));
    let added = broker.txns.add_partitions(
        req.transactional_id.to_string(),
        req.producer_id.0,
        req.producer_epoch,
        vec![(OFFSETS_TOPIC.to_string(), partition)],
        0,
    );
    respond_later(request, async move {
        let code = match added.await {
            Ok(()) => 0,
            Err(e) => txn_error_code(&e, knows_fenced),
        };
        AddOffsetsToTxnResponse::default().with_error_code(code)
    })
}
