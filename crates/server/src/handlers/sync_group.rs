//! SyncGroup (key 14): the leader hands out assignments; followers wait for them.

use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, SyncGroupRequest, SyncGroupResponse};
use ottla_coordinator::group::PARKED_REPLY_GRACE;
use ottla_group::types::{SyncRequest, SyncResponse};
use ottla_protocol::frame::Request;

use super::{decode, encode, str_bytes, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, Caller};

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: SyncGroupRequest = decode(request)?;
    if !caller.allowed_on_group(op::READ, req.group_id.as_str()) {
        return super::respond(
            request,
            &SyncGroupResponse::default()
                .with_error_code(kafka_protocol::ResponseError::GroupAuthorizationFailed.code()),
        );
    }
    let version = request.version();
    let sync = SyncRequest {
        group_id: req.group_id.to_string(),
        generation_id: req.generation_id,
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|s| s.to_string()),
        protocol_type: req.protocol_type.map(|s| s.to_string()),
        protocol_name: req.protocol_name.map(|s| s.to_string()),
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let correlation_id = request.correlation_id();
    let reply = move |r: SyncResponse| {
        let mut w = SyncGroupResponse::default()
            .with_error_code(r.error)
            .with_assignment(r.assignment);
        if version >= 5 {
            w = w
                .with_protocol_type(r.protocol_type.map(str_bytes))
                .with_protocol_name(r.protocol_name.map(str_bytes));
        }
        encode(ApiKey::SyncGroup, version, correlation_id, &w)
    };
    // A follower waits for the leader's sync, which comes within the leader's session
    // timeout or the leader is expired and everyone rejoins.
    let limit =
        std::time::Duration::from_millis(broker.config.group.max_session_timeout_ms.max(0) as u64)
            + PARKED_REPLY_GRACE;
    let synced = broker.groups.sync(sync, limit);
    Ok(Reply::Later(Box::pin(async move { reply(synced.await) })))
}
