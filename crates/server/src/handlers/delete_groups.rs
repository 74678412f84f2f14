//! DeleteGroups (key 42): remove empty groups and their committed offsets.

use std::sync::Arc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};
use ottla_protocol::frame::Request;

use super::{decode, respond_later, HandlerError, Reply};
use crate::broker::Broker;

pub fn handle(broker: &Arc<Broker>, request: &Request) -> Result<Reply, HandlerError> {
    let req: DeleteGroupsRequest = decode(request)?;
    let deletions: Vec<_> = req
        .groups_names
        .into_iter()
        .map(|g| {
            let deleted = broker.groups.delete_group(g.to_string());
            (g, deleted)
        })
        .collect();
    respond_later(request, async move {
        let mut results = Vec::with_capacity(deletions.len());
        for (g, deleted) in deletions {
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(g)
                    .with_error_code(deleted.await),
            );
        }
        DeleteGroupsResponse::default().with_results(results)
    })
}
