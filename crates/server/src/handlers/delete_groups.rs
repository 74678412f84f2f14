//! DeleteGroups (key 42): remove empty groups and their committed offsets.
//!
//! ACLs, as Kafka's `KafkaApis.handleDeleteGroupsRequest`: each group needs DELETE on the
//! GROUP; a group the caller may not delete is answered GROUP_AUTHORIZATION_FAILED and is
//! left alone.

use std::sync::Arc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};
use kafka_protocol::ResponseError;
use ottla_protocol::frame::Request;

use super::{decode, respond_later, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, Caller};

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: DeleteGroupsRequest = decode(request)?;
    let deletions: Vec<_> = req
        .groups_names
        .into_iter()
        .map(|g| {
            // Only a group the caller may delete reaches the coordinator.
            let deleted = caller
                .allowed_on_group(op::DELETE, g.as_str())
                .then(|| broker.groups.delete_group(g.to_string()));
            (g, deleted)
        })
        .collect();
    respond_later(request, async move {
        let mut results = Vec::with_capacity(deletions.len());
        for (g, deleted) in deletions {
            let code = match deleted {
                Some(deleted) => deleted.await,
                None => ResponseError::GroupAuthorizationFailed.code(),
            };
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(g)
                    .with_error_code(code),
            );
        }
        DeleteGroupsResponse::default().with_results(results)
    })
}
