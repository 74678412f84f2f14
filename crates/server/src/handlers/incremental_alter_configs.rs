//! IncrementalAlterConfigs (key 44): set, delete, append to or subtract from dynamic
//! configs, what `kafka-configs --alter --add-config/--delete-config` and
//! `kafka-reassign-partitions --throttle` send. Topic overrides and dynamic broker
//! configs (one broker's, or the cluster-wide default under an empty name) are checked
//! here ([`crate::dynamic_configs`]), committed by the active controller, and applied
//! by every broker from the metadata, with no restart.
//!
//! Needs ALTER_CONFIGS per resource, as Kafka's `ControllerApis.authorizeAlterResource`
//! and `ConfigAdminManager.preprocess`: on the cluster for a BROKER or BROKER_LOGGER
//! resource (denied: CLUSTER_AUTHORIZATION_FAILED), on the topic for a TOPIC resource
//! (denied: TOPIC_AUTHORIZATION_FAILED). A denied resource is neither checked nor
//! changed, `validate_only` or not.

use std::sync::Arc;

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use ottla_protocol::frame::Request;

use super::alter_configs::{authorize_alter, authorize_alter_logger, code_and_message, Denial};
use super::{decode, respond, str_bytes, HandlerError, Reply};
use crate::broker::Broker;
use crate::dynamic_configs::{commit, plan, ConfigOp, KeyChange};
use crate::security::authorizer::Caller;

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: IncrementalAlterConfigsRequest = decode(request)?;
    let image = broker.controller.image();
    let denials: Vec<Option<Denial>> = req
        .resources
        .iter()
        .map(|r| {
            authorize_alter_logger(caller, r.resource_type)
                .or_else(|| authorize_alter(caller, r.resource_type, r.resource_name.as_str()))
        })
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
            let changes = r
                .configs
                .iter()
                .map(|c| {
                    let op = ConfigOp::from_wire(c.config_operation).ok_or_else(|| {
                        (
                            kafka_protocol::ResponseError::InvalidRequest.code(),
                            format!("Unknown config operation {}", c.config_operation),
                        )
                    })?;
                    Ok(KeyChange {
                        key: c.name.as_str().to_string(),
                        op,
                        value: c.value.as_ref().map(|v| v.as_str().to_string()),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            plan(
                &image,
                broker.config.node_id,
                r.resource_type,
                r.resource_name.as_str(),
                &changes,
                false,
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
        &IncrementalAlterConfigsResponse::default().with_responses(responses),
    )
}
