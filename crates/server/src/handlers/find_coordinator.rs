//! FindCoordinator (key 10): a group's coordinator is the broker leading its partition
//! of `__consumer_offsets`, a transactional id's the one leading its partition of
//! `__transaction_state` (Kafka's `partitionFor`). Batched lookups (v4+) answer per
//! key.

use std::sync::Arc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::ResponseError;
use ottla_group::records::partition_for;
use ottla_protocol::frame::Request;

use super::{decode, respond, str_bytes, AdvertisedEndpoint, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, Caller};

/// `key_type` values.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// Where a group's (transactional id's) coordinator is: the broker that leads its
/// partition of `__consumer_offsets` (`__transaction_state`), the topic being created
/// here on the first lookup; or (error code, message).
fn lookup(
    broker: &Broker,
    key_type: i8,
    key: &str,
    here: &AdvertisedEndpoint,
    caller: &Caller,
) -> Result<(i32, String, i32), (i16, String)> {
    // KafkaApis: DESCRIBE on the group or transactional id, before anything is created.
    match key_type {
        KEY_TYPE_GROUP if !caller.allowed_on_group(op::DESCRIBE, key) => {
            return Err((
                ResponseError::GroupAuthorizationFailed.code(),
                "Not authorized to access group".to_string(),
            ))
        }
        KEY_TYPE_TRANSACTION if !caller.allowed_on_transactional_id(op::DESCRIBE, key) => {
            return Err((
                ResponseError::TransactionalIdAuthorizationFailed.code(),
                "Transactional Id authorization failed.".to_string(),
            ))
        }
        _ => {}
    }
    let unavailable = || {
        (
            ResponseError::CoordinatorNotAvailable.code(),
            "The coordinator is not available.".to_string(),
        )
    };
    let topic = match key_type {
        KEY_TYPE_GROUP => broker.ensure_offsets_topic(),
        KEY_TYPE_TRANSACTION => broker.ensure_transaction_state_topic(),
        other => {
            return Err((
                ResponseError::InvalidRequest.code(),
                format!("Unsupported key type {other}"),
            ))
        }
    }
    .map_err(|e| {
        tracing::error!("Cannot create the coordinator's internal topic: {e:#}");
        unavailable()
    })?;
    let index = partition_for(key, topic.partitions.len() as i32);
    let leader = topic
        .partitions
        .get(index as usize)
        .map(|p| p.leader)
        .ok_or_else(unavailable)?;
    let image = broker.controller.image();
    let node = image.brokers.get(&leader).ok_or_else(unavailable)?;
    let (host, port) = here.host_port(node).ok_or_else(unavailable)?;
    Ok((leader, host, port))
}

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    here: &AdvertisedEndpoint,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: FindCoordinatorRequest = decode(request)?;
    let version = request.version();
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .iter()
            .map(|key| {
                let c = Coordinator::default().with_key(key.clone());
                match lookup(broker, req.key_type, key.as_str(), here, caller) {
                    Ok((node_id, host, port)) => c
                        .with_node_id(BrokerId(node_id))
                        .with_host(str_bytes(host))
                        .with_port(port),
                    Err((code, message)) => c
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .with_error_code(code)
                        .with_error_message(Some(str_bytes(message))),
                }
            })
            .collect();
        return respond(
            request,
            &FindCoordinatorResponse::default().with_coordinators(coordinators),
        );
    }
    let key_type = if version >= 1 {
        req.key_type
    } else {
        KEY_TYPE_GROUP
    };
    let response = match lookup(broker, key_type, req.key.as_str(), here, caller) {
        Ok((node_id, host, port)) => FindCoordinatorResponse::default()
            .with_node_id(BrokerId(node_id))
            .with_host(str_bytes(host))
            .with_port(port),
        Err((code, message)) => {
            let r = FindCoordinatorResponse::default()
                .with_node_id(BrokerId(-1))
                .with_port(-1)
                .with_error_code(code);
            if version >= 1 {
                r.with_error_message(Some(str_bytes(message)))
            } else {
                r
            }
        }
    };
    respond(request, &response)
}
