//! JoinGroup (key 11): the first step of a rebalance. The reply usually waits until
//! every member has rejoined (or the rebalance times out), so it is a `Reply::Later`.

use std::sync::Arc;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{ApiKey, JoinGroupRequest, JoinGroupResponse};
use ottla_group::types::{JoinRequest, JoinResponse};
use ottla_protocol::frame::Request;

use ottla_coordinator::group::PARKED_REPLY_GRACE;

use super::{decode, encode, str_bytes, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, Caller};

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    client_host: String,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: JoinGroupRequest = decode(request)?;
    if !caller.allowed_on_group(op::READ, req.group_id.as_str()) {
        return super::respond(
            request,
            &JoinGroupResponse::default()
                .with_error_code(kafka_protocol::ResponseError::GroupAuthorizationFailed.code()),
        );
    }
    let version = request.version();
    let join = JoinRequest {
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|s| s.to_string()),
        client_id: request
            .header
            .client_id
            .as_deref()
            .unwrap_or("")
            .to_string(),
        client_host,
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: version >= 4,
        reason: req.reason.map(|s| s.to_string()),
        topic_access: caller.topic_describe_access(),
    };
    // A join waits at most for the rebalance timeout (then the coordinator completes the
    // rebalance without the stragglers).
    let limit = std::time::Duration::from_millis(join.rebalance_timeout_ms.max(0) as u64)
        + PARKED_REPLY_GRACE;
    let joined = broker.groups.join(join, limit);
    let correlation_id = request.correlation_id();
    Ok(Reply::Later(Box::pin(async move {
        let r: JoinResponse = joined.await;
        encode(
            ApiKey::JoinGroup,
            version,
            correlation_id,
            &to_wire(version, r),
        )
    })))
}

fn to_wire(version: i16, r: JoinResponse) -> JoinGroupResponse {
    let members = r
        .members
        .into_iter()
        .map(|m| {
            let w = JoinGroupResponseMember::default()
                .with_member_id(str_bytes(m.member_id))
                .with_metadata(m.metadata);
            if version >= 5 {
                w.with_group_instance_id(m.group_instance_id.map(str_bytes))
            } else {
                w
            }
        })
        .collect();
    let mut w = JoinGroupResponse::default()
        .with_error_code(r.error)
        .with_generation_id(r.generation_id)
        .with_leader(str_bytes(r.leader))
        .with_member_id(str_bytes(r.member_id))
        .with_members(members);
    if version >= 9 {
        w = w.with_skip_assignment(r.skip_assignment);
    }
    if version >= 7 {
        w = w
            .with_protocol_type(r.protocol_type.map(str_bytes))
            .with_protocol_name(r.protocol_name.map(str_bytes));
    } else {
        w = w.with_protocol_name(Some(str_bytes(r.protocol_name.unwrap_or_default())));
    }
    w
}
