//! DescribeGroups (key 15): state, protocol and members (with metadata and assignment
//! when the group is Stable), as `kafka-consumer-groups --describe` shows them.

use std::sync::Arc;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, GroupId};
use ottla_group::types::GroupDescription;
use ottla_protocol::frame::Request;

use super::describe_cluster::AUTHORIZED_OPERATIONS_OMITTED;
use super::{decode, respond_later, str_bytes, HandlerError, Reply};
use crate::broker::Broker;

pub fn handle(broker: &Arc<Broker>, request: &Request) -> Result<Reply, HandlerError> {
    let req: DescribeGroupsRequest = decode(request)?;
    let version = request.version();
    let mut seen = std::collections::HashSet::new();
    let described: Vec<_> = req
        .groups
        .into_iter()
        // Each group is described once, however often it is listed.
        .filter(|id| seen.insert(id.to_string()))
        .map(|id| {
            let d = broker.groups.describe(id.to_string());
            (id, d)
        })
        .collect();
    respond_later(request, async move {
        let mut groups = Vec::with_capacity(described.len());
        for (id, d) in described {
            groups.push(to_wire(version, id, d.await));
        }
        DescribeGroupsResponse::default().with_groups(groups)
    })
}

fn to_wire(version: i16, id: GroupId, d: GroupDescription) -> DescribedGroup {
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
    let g = DescribedGroup::default()
        .with_group_id(id)
        .with_error_code(d.error)
        .with_group_state(str_bytes(d.state))
        .with_protocol_type(str_bytes(d.protocol_type))
        .with_protocol_data(str_bytes(d.protocol))
        .with_members(members);
    if version >= 3 {
        g.with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
    } else {
        g
    }
}
