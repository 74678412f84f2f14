//! DeleteAcls (key 31): removes what each filter selects and answers what it removed,
//! per filter, what `kafka-acls --remove` and Admin `deleteAcls` send. Needs ALTER on
//! the cluster.

use std::sync::Arc;

use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse};
use ottla_controller::acls::AclFilter;
use ottla_protocol::frame::Request;

use super::{decode, respond, str_bytes, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, Caller};

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: DeleteAclsRequest = decode(request)?;
    let everyone = |code: i16, message: &str| {
        let results = req
            .filters
            .iter()
            .map(|_| {
                DeleteAclsFilterResult::default()
                    .with_error_code(code)
                    .with_error_message(Some(str_bytes(message)))
            })
            .collect();
        respond(
            request,
            &DeleteAclsResponse::default().with_filter_results(results),
        )
    };
    if let Some((error, message)) = super::acl_api_refusal(caller, op::ALTER) {
        return everyone(error.code(), message);
    }
    let filters: Vec<AclFilter> = req
        .filters
        .iter()
        .map(|f| AclFilter {
            resource_type: f.resource_type_filter,
            resource_name: f.resource_name_filter.as_ref().map(|s| s.to_string()),
            pattern_type: f.pattern_type_filter,
            principal: f.principal_filter.as_ref().map(|s| s.to_string()),
            host: f.host_filter.as_ref().map(|s| s.to_string()),
            operation: f.operation,
            permission: f.permission_type,
        })
        .collect();
    let outcomes = match broker.controller.delete_acls(filters) {
        Ok(outcomes) => outcomes,
        Err(e) => return everyone(e.kafka_error_code(), &e.to_string()),
    };
    let results = outcomes
        .into_iter()
        .map(|outcome| match outcome {
            Ok(deleted) => DeleteAclsFilterResult::default().with_matching_acls(
                deleted
                    .into_iter()
                    .map(|acl| {
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(acl.resource_type)
                            .with_resource_name(str_bytes(acl.resource_name))
                            .with_pattern_type(acl.pattern_type)
                            .with_principal(str_bytes(acl.principal))
                            .with_host(str_bytes(acl.host))
                            .with_operation(acl.operation)
                            .with_permission_type(acl.permission)
                    })
                    .collect(),
            ),
            Err((code, message)) => DeleteAclsFilterResult::default()
                .with_error_code(code)
                .with_error_message(Some(str_bytes(message))),
        })
        .collect();
    respond(
        request,
        &DeleteAclsResponse::default().with_filter_results(results),
    )
}
