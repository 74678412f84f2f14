//! Heartbeat (key 12): keeps a member's session alive and tells it about rebalances.

use std::sync::Arc;

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};
use ottla_protocol::frame::Request;

use super::{decode, respond_later, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, Caller};

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: HeartbeatRequest = decode(request)?;
    if !caller.allowed_on_group(op::READ, req.group_id.as_str()) {
        return super::respond(
            request,
            &HeartbeatResponse::default()
                .with_error_code(kafka_protocol::ResponseError::GroupAuthorizationFailed.code()),
        );
    }
    let code = broker
        .groups
        .heartbeat(ottla_group::types::HeartbeatRequest {
            group_id: req.group_id.to_string(),
            generation_id: req.generation_id,
            member_id: req.member_id.to_string(),
            group_instance_id: req.group_instance_id.map(|s| s.to_string()),
        });
    respond_later(request, async move {
        HeartbeatResponse::default().with_error_code(code.await)
    })
}
