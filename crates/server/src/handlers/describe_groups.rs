//! DescribeGroups (key 15): state, protocol and members (with metadata and assignment
//! when the group is Stable), as `kafka-consumer-groups --describe` shows them.
//!
//! ACLs, as Kafka's `KafkaApis.handleDescribeGroupsRequest`: each group needs DESCRIBE on
//! the GROUP; a group the caller may not describe is answered GROUP_AUTHORIZATION_FAILED
//! (with empty state, protocol and members) and is not looked up. For the others, when a
//! v3+ request sets `include_authorized_operations`, a group described without error
//! carries the caller's authorized operations on it (KIP-430).

use std::sync::Arc;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, GroupId};
use kafka_protocol::ResponseError;
use ottla_group::types::GroupDescription;
use ottla_protocol::frame::Request;

use super::describe_cluster::AUTHORIZED_OPERATIONS_OMITTED;
use super::{decode, respond_later, str_bytes, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, resource, Caller};

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: DescribeGroupsRequest = decode(request)?;
    let version = request.version();
    let include_operations = version >= 3 && req.include_authorized_operations;
    let mut seen = std::collections::HashSet::new();
    let described: Vec<_> = req
        .groups
        .into_iter()
        // Each group is described once, however often it is listed.
        .filter(|id| seen.insert(id.to_string()))
        .map(|id| {
            // Kafka: DESCRIBE on the group, or GROUP_AUTHORIZATION_FAILED without asking
            // the coordinator.
            let lookup = caller.allowed_on_group(op::DESCRIBE, id.as_str()).then(|| {
                let operations = if include_operations {
                    caller.authorized_operations(resource::GROUP, id.as_str())
                } else {
                    AUTHORIZED_OPERATIONS_OMITTED
                };
                (broker.groups.describe(id.to_string()), operations)
            });
            (id, lookup)
        })
        .collect();
    respond_later(request, async move {
        let mut groups = Vec::with_capacity(described.len());
        for (id, lookup) in described {
            groups.push(match lookup {
                Some((d, operations)) => to_wire(version, id, d.await, operations),
                None => denied(id),
            });
        }
        DescribeGroupsResponse::default().with_groups(groups)
    })
}

/// Kafka's `DescribeGroupsResponse.groupError(groupId, GROUP_AUTHORIZATION_FAILED)`: the
/// group id, empty state and protocol, no members, operations omitted (the default).
fn denied(id: GroupId) -> DescribedGroup {
    DescribedGroup::default()
        .with_group_id(id)
        .with_error_code(ResponseError::GroupAuthorizationFailed.code())
}

/// `operations` is sent (v3+) only for a group described without error, as Kafka fills
/// it only then.
fn to_wire(version: i16, id: GroupId, d: GroupDescription, operations: i32) -> DescribedGroup {
    let members = d
        .members
        .into_iter()
        .map(|m| {
            let w = DescribedGroupMember::default()
                .with_member_id(str_bytes(m.member_id))
                .with_client_id(str_bytes(m.client_id))
                .with_client_host(str_bytes(m.client_host))
                .with_member_metadata(m.metadata)
                .with_member_assignment(m.assignment);
            if version >= 4 {
                w.with_group_instance_id(m.group_instance_id.map(str_bytes))
            } else {
                w
            }
        })
        .collect();
    let operations = if d.error == 0 {
        operations
    } else {
        AUTHORIZED_OPERATIONS_OMITTED
    };
    let g = DescribedGroup::default()
        .with_group_id(id)
        .with_error_code(d.error)
        .with_group_state(str_bytes(d.state))
        .with_protocol_type(str_bytes(d.protocol_type))
        .with_protocol_data(str_bytes(d.protocol))
        .with_members(members);
    if version >= 3 {
        g.with_authorized_operations(operations)
    } else {
        g
    }
}
