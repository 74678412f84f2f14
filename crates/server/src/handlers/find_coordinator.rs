//! FindCoordinator (key 10): this broker leads every `__consumer_offsets` partition, so
//! it coordinates every group. Batched lookups (v4+) answer per key.

use std::sync::Arc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::ResponseError;
use ottla_protocol::frame::Request;

use super::{decode, respond, str_bytes, HandlerError, Reply};
use crate::broker::Broker;

/// `key_type` values.
const KEY_TYPE_GROUP: i8 = 0;

/// (error code, message) for one key, or this broker's endpoint.
fn lookup(broker: &Broker, key_type: i8) -> Result<(), (i16, String)> {
    if key_type != KEY_TYPE_GROUP {
        return Err((
            ResponseError::CoordinatorNotAvailable.code(),
            "Transaction coordinators are not supported yet".into(),
        ));
    }
    broker.ensure_offsets_topic().map(|_| ()).map_err(|e| {
        tracing::error!("Cannot create the offsets topic: {e:#}");
        (
            ResponseError::CoordinatorNotAvailable.code(),
            "The coordinator is not available.".into(),
        )
    })
}

pub fn handle(broker: &Arc<Broker>, request: &Request) -> Result<Reply, HandlerError> {
    let req: FindCoordinatorRequest = decode(request)?;
    let version = request.version();
    let endpoint = &broker.config.advertised_listeners[0];
    let node_id = BrokerId(broker.config.node_id);
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .iter()
            .map(|key| {
                let c = Coordinator::default().with_key(key.clone());
                match lookup(broker, req.key_type) {
                    Ok(()) => c
                        .with_node_id(node_id)
                        .with_host(str_bytes(endpoint.host.clone()))
                        .with_port(i32::from(endpoint.port)),
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
    let response = match lookup(broker, key_type) {
        Ok(()) => FindCoordinatorResponse::default()
            .with_node_id(node_id)
            .with_host(str_bytes(endpoint.host.clone()))
            .with_port(i32::from(endpoint.port)),
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
