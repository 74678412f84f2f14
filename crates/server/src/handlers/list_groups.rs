//! ListGroups (key 16): every group, optionally filtered by state (v4+) and type (v5+).
//!
//! ACLs, as Kafka's `KafkaApis.handleListGroupsRequest`: a caller with DESCRIBE on the
//! CLUSTER sees every group; any other caller sees only the groups it may DESCRIBE (both
//! checked without logging a denial). Never an authorization error.

use std::sync::Arc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use ottla_group::types::GroupListing;
use ottla_protocol::frame::Request;

use super::{decode, respond_later, str_bytes, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, resource, Caller, CLUSTER_NAME};

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: ListGroupsRequest = decode(request)?;
    let version = request.version();
    let states: Vec<String> = if version >= 4 {
        req.states_filter.iter().map(|s| s.to_string()).collect()
    } else {
        vec![]
    };
    // Kafka's type names (`classic`, `consumer`), case-insensitive; unknown names
    // match nothing.
    let types: Vec<String> = if version >= 5 {
        req.types_filter.iter().map(|s| s.to_string()).collect()
    } else {
        vec![]
    };
    // Kafka: `authorize(DESCRIBE, CLUSTER, logIfDenied = false)`, then, without it, each
    // listed group filtered by DESCRIBE on it (`logIfDenied = false`).
    let every_group = caller.allowed_quietly(op::DESCRIBE, resource::CLUSTER, CLUSTER_NAME);
    let caller = caller.clone();
    let listed = broker.groups.list(states);
    respond_later(request, async move {
        let (code, mut groups) = listed.await;
        if !every_group {
            groups.retain(|g| caller.allowed_quietly(op::DESCRIBE, resource::GROUP, &g.group_id));
        }
        if !types.is_empty() {
            groups.retain(|g| {
                types
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case(g.group_type.name()))
            });
        }
        to_wire(version, code, groups)
    })
}

fn to_wire(version: i16, code: i16, groups: Vec<GroupListing>) -> ListGroupsResponse {
    let groups = groups
        .into_iter()
        .map(|g| {
            let mut l = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(g.group_id)))
                .with_protocol_type(str_bytes(g.protocol_type));
            if version >= 4 {
                l = l.with_group_state(str_bytes(g.state));
            }
            if version >= 5 {
                l = l.with_group_type(str_bytes(g.group_type.name()));
            }
            l
        })
        .collect();
    ListGroupsResponse::default()
        .with_error_code(code)
        .with_groups(groups)
}
