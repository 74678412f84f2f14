//! ListGroups (key 16): every group, optionally filtered by state (v4+) and type (v5+).

use std::sync::Arc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use ottla_group::types::GroupListing;
use ottla_protocol::frame::Request;

use super::{decode, respond, respond_later, str_bytes, HandlerError, Reply};
use crate::broker::Broker;

/// Every group here uses the classic protocol (KIP-848 groups are a later issue).
const GROUP_TYPE: &str = "classic";

pub fn handle(broker: &Arc<Broker>, request: &Request) -> Result<Reply, HandlerError> {
    let req: ListGroupsRequest = decode(request)?;
    let version = request.version();
    let states: Vec<String> = if version >= 4 {
        req.states_filter.iter().map(|s| s.to_string()).collect()
    } else {
        vec![]
    };
    let type_ok = version < 5
        || req.types_filter.is_empty()
        || req
            .types_filter
            .iter()
            .any(|t| t.eq_ignore_ascii_case(GROUP_TYPE));
    if !type_ok {
        return respond(request, &ListGroupsResponse::default());
    }
    let listed = broker.groups.list(states);
    respond_later(request, async move {
        let (code, groups) = listed.await;
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
                l = l.with_group_type(str_bytes(GROUP_TYPE));
            }
            l
        })
        .collect();
    ListGroupsResponse::default()
        .with_error_code(code)
        .with_groups(groups)
}
