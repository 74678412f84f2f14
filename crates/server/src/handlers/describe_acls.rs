//! DescribeAcls (key 29): the ACLs a filter selects, grouped by resource, what
//! `kafka-acls --list` shows. Needs DESCRIBE on the cluster.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};
use kafka_protocol::ResponseError;
use ottla_controller::acls::AclFilter;
use ottla_protocol::frame::Request;

use super::{decode, respond, str_bytes, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, Caller};

pub fn handle(broker: &Broker, request: &Request, caller: &Caller) -> Result<Reply, HandlerError> {
    let req: DescribeAclsRequest = decode(request)?;
    let error = |code: ResponseError, message: &str| {
        respond(
            request,
            &DescribeAclsResponse::default()
                .with_error_code(code.code())
                .with_error_message(Some(str_bytes(message))),
        )
    };
    if let Some((refusal, message)) = super::acl_api_refusal(caller, op::DESCRIBE) {
        return error(refusal, message);
    }
    let filter = AclFilter {
        resource_type: req.resource_type_filter,
        resource_name: req.resource_name_filter.as_ref().map(|s| s.to_string()),
        pattern_type: req.pattern_type_filter,
        principal: req.principal_filter.as_ref().map(|s| s.to_string()),
        host: req.host_filter.as_ref().map(|s| s.to_string()),
        operation: req.operation,
        permission: req.permission_type,
    };
    if let Some(why) = filter.invalid_field() {
        return error(ResponseError::InvalidRequest, why);
    }
    let image = broker.controller.image();
    let mut by_resource: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for acl in image.acls.values().filter(|a| filter.matches(a)) {
        by_resource
            .entry((
                acl.resource_type,
                acl.resource_name.clone(),
                acl.pattern_type,
            ))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(str_bytes(acl.principal.clone()))
                    .with_host(str_bytes(acl.host.clone()))
                    .with_operation(acl.operation)
                    .with_permission_type(acl.permission),
            );
    }
    let resources = by_resource
        .into_iter()
        .map(|((resource_type, name, pattern), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(str_bytes(name))
                .with_pattern_type(pattern)
                .with_acls(acls)
        })
        .collect();
    respond(
        request,
        &DescribeAclsResponse::default().with_resources(resources),
    )
}
