//! AlterConfigs (key 33, the older API): replace a resource's dynamic configs with the
//! ones given (keys not named are removed), with the checks and the commit of
//! IncrementalAlterConfigs ([`crate::dynamic_configs`]).
//!
//! Needs ALTER_CONFIGS per resource, as Kafka's `ControllerApis.authorizeAlterResource`:
//! on the cluster for a BROKER resource (denied: CLUSTER_AUTHORIZATION_FAILED), on the
//! topic for a TOPIC resource (denied: TOPIC_AUTHORIZATION_FAILED). A denied resource
//! is neither checked nor changed, `validate_only` or not. This older API does not take
//! BROKER_LOGGER resources (INVALID_REQUEST whoever asks, as Kafka's broker answers).

use std::sync::Arc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::ResponseError;
use ottla_protocol::frame::Request;

use super::{decode, respond, str_bytes, HandlerError, Reply};
use crate::broker::Broker;
use crate::dynamic_configs::{commit, plan, ConfigOp, KeyChange, RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::security::authorizer::{op, resource, Caller};

/// `ConfigResource.Type` ids of the resources Kafka authorizes that Ottla does not
/// configure (their changes are refused as unsupported once authorized).
const RESOURCE_BROKER_LOGGER: i8 = 8;
const RESOURCE_CLIENT_METRICS: i8 = 16;
const RESOURCE_GROUP: i8 = 32;

/// A refusal for lack of permission: Kafka's code and message (`None` for null).
pub(super) type Denial = (i16, Option<&'static str>);

/// The refusal of a change to config resource (`resource_type`, `name`) the caller may
/// not make, `None` when it may, as Kafka's `ControllerApis.authorizeAlterResource`:
/// ALTER_CONFIGS on the cluster for BROKER (and CLIENT_METRICS), on the topic for
/// TOPIC, on the group for GROUP, each refused with `ApiError(error)`, whose message is
/// the error's default one. Other types are not authorized here (they are refused as
/// invalid whoever asks).
pub(super) fn authorize_alter(caller: &Caller, resource_type: i8, name: &str) -> Option<Denial> {
    match resource_type {
        RESOURCE_BROKER | RESOURCE_CLIENT_METRICS => {
            (!caller.allowed_on_cluster(op::ALTER_CONFIGS)).then_some((
                ResponseError::ClusterAuthorizationFailed.code(),
                Some("Cluster authorization failed."),
            ))
        }
        RESOURCE_TOPIC => (!caller.allowed_on_topic(op::ALTER_CONFIGS, name)).then_some((
            ResponseError::TopicAuthorizationFailed.code(),
            Some("Topic authorization failed."),
        )),
        RESOURCE_GROUP => (!caller.allowed(op::ALTER_CONFIGS, resource::GROUP, name)).then_some((
            ResponseError::GroupAuthorizationFailed.code(),
            Some("Group authorization failed."),
        )),
        _ => None,
    }
}

/// IncrementalAlterConfigs' BROKER_LOGGER resources (log levels): ALTER_CONFIGS on the
/// cluster, refused by Kafka's `RuntimeLoggerManager` with a null message.
pub(super) fn authorize_alter_logger(caller: &Caller, resource_type: i8) -> Option<Denial> {
    (resource_type == RESOURCE_BROKER_LOGGER && !caller.allowed_on_cluster(op::ALTER_CONFIGS))
        .then_some((ResponseError::ClusterAuthorizationFailed.code(), None))
}

/// The response's code and message for one resource: its denial if it was refused for
/// lack of permission, else the outcome of its check and commit.
pub(super) fn code_and_message(
    denial: Option<Denial>,
    outcome: Result<(), (i16, String)>,
) -> (i16, Option<String>) {
    match (denial, outcome) {
        (Some((code, message)), _) => (code, message.map(str::to_string)),
        (None, Ok(())) => (0, None),
        (None, Err((code, message))) => (code, Some(message)),
    }
}

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: AlterConfigsRequest = decode(request)?;
    let image = broker.controller.image();
    let denials: Vec<Option<Denial>> = req
        .resources
        .iter()
        .map(|r| authorize_alter(caller, r.resource_type, r.resource_name.as_str()))
        .collect();
    let planned = req
        .resources
        .iter()
        .zip(&denials)
        .map(|(r, denial)| {
            if let Some((code, _)) = denial {
                // Not checked, and left out of the commit.
                return Err((*code, String::new()));
            }
            let changes: Vec<KeyChange> = r
                .configs
                .iter()
                .map(|c| KeyChange {
                    key: c.name.as_str().to_string(),
                    op: ConfigOp::Set,
                    value: c.value.as_ref().map(|v| v.as_str().to_string()),
                })
                .collect();
            plan(
                &image,
                broker.config.node_id,
                r.resource_type,
                r.resource_name.as_str(),
                &changes,
                true,
            )
        })
        .collect::<Vec<_>>();
    let outcomes = commit(broker, planned, req.validate_only);
    let responses = req
        .resources
        .iter()
        .zip(outcomes)
        .zip(denials)
        .map(|((r, outcome), denial)| {
            let (code, message) = code_and_message(denial, outcome);
            AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone())
                .with_error_code(code)
                .with_error_message(message.map(str_bytes))
        })
        .collect();
    respond(
        request,
        &AlterConfigsResponse::default().with_responses(responses),
    )
}
