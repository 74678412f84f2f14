//! LeaveGroup (key 13): one member (v0-2) or a batch of members (v3+) leave.

use std::sync::Arc;

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use ottla_group::types::LeaveMember;
use ottla_protocol::frame::Request;

use super::{decode, respond_later, str_bytes, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, Caller};

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: LeaveGroupRequest = decode(request)?;
    if !caller.allowed_on_group(op::READ, req.group_id.as_str()) {
        return super::respond(
            request,
            &LeaveGroupResponse::default()
                .with_error_code(kafka_protocol::ResponseError::GroupAuthorizationFailed.code()),
        );
    }
    let version = request.version();
    let members: Vec<LeaveMember> = if version >= 3 {
        req.members
            .iter()
            .map(|m| LeaveMember {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
            })
            .collect()
    } else {
        vec![LeaveMember {
            member_id: req.member_id.to_string(),
            group_instance_id: None,
        }]
    };
    let left = broker
        .groups
        .leave(req.group_id.to_string(), members.clone());
    respond_later(request, async move {
        match left.await {
            Err(code) => LeaveGroupResponse::default().with_error_code(code),
            Ok(errors) if version >= 3 => LeaveGroupResponse::default().with_members(
                members
                    .into_iter()
                    .zip(errors)
                    .map(|(m, e)| {
                        MemberResponse::default()
                            .with_member_id(str_bytes(m.member_id))
                            .with_group_instance_id(m.group_instance_id.map(str_bytes))
                            .with_error_code(e)
                    })
                    .collect(),
            ),
            Ok(errors) => LeaveGroupResponse::default().with_error_code(errors[0]),
        }
    })
}
