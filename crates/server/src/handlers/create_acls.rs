//! CreateAcls (key 30): what `kafka-acls --add` and Admin `createAcls` send. Each
//! creation succeeds or fails on its own (INVALID_REQUEST for a malformed ACL); the
//! controller stores them. Needs ALTER on the cluster; SECURITY_DISABLED without an
//! authorizer, as Kafka answers.

use std::sync::Arc;

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse};
use ottla_controller::acls::AclBinding;
use ottla_protocol::frame::Request;

use super::{decode, respond, str_bytes, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, Caller};

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: CreateAclsRequest = decode(request)?;
    let everyone = |code: i16, message: &str| {
        let results = req
            .creations
            .iter()
            .map(|_| {
                AclCreationResult::default()
                    .with_error_code(code)
                    .with_error_message(Some(str_bytes(message)))
            })
            .collect();
        respond(
            request,
            &CreateAclsResponse::default().with_results(results),
        )
    };
    if let Some((error, message)) = super::acl_api_refusal(caller, op::ALTER) {
        return everyone(error.code(), message);
    }
    let acls: Vec<AclBinding> = req
        .creations
        .iter()
        .map(|c| AclBinding {
            resource_type: c.resource_type,
            resource_name: c.resource_name.to_string(),
            pattern_type: c.resource_pattern_type,
            principal: c.principal.to_string(),
            host: c.host.to_string(),
            operation: c.operation,
            permission: c.permission_type,
        })
        .collect();
    let results = match broker.controller.create_acls(acls) {
        Ok(outcomes) => outcomes
            .into_iter()
            .map(|outcome| match outcome {
                None => AclCreationResult::default(),
                Some((code, message)) => AclCreationResult::default()
                    .with_error_code(code)
                    .with_error_message(Some(str_bytes(message))),
            })
            .collect(),
        Err(e) => return everyone(e.kafka_error_code(), &e.to_string()),
    };
    respond(
        request,
        &CreateAclsResponse::default().with_results(results),
    )
}
