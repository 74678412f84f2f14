//! DeleteGroups (key 42): remove empty groups and their committed offsets.

use std::sync::Arc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};
use ottla_protocol::frame::Request;

use super::{decode, respond, HandlerError, Reply};
use crate::broker::Broker;

pub fn handle(broker: &Arc<Broker>, request: &Request) -> Result<Reply, HandlerError> {
    let req: DeleteGroupsRequest = decode(request)?;
    let results = req
        .groups_names
        .into_iter()
        .map(|g| {
            let code = broker.groups.delete_group(broker, g.as_str());
            DeletableGroupResult::default()
                .with_group_id(g)
                .with_error_code(code)
        })
        .collect();
    respond(
        request,
        &DeleteGroupsResponse::default().with_results(results),
    )
}
