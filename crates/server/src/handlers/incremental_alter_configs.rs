//! IncrementalAlterConfigs (key 44): set, delete, append to or subtract from dynamic
//! configs, what `kafka-configs --alter --add-config/--delete-config` and
//! `kafka-reassign-partitions --throttle` send. Topic overrides and dynamic broker
//! configs (one broker's, or the cluster-wide default under an empty name) are checked
//! here ([`crate::dynamic_configs`]), committed by the active controller, and applied
//! by every broker from the metadata, with no restart.

use std::sync::Arc;

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use ottla_protocol::frame::Request;

use super::{decode, respond, str_bytes, HandlerError, Reply};
use crate::broker::Broker;
use crate::dynamic_configs::{commit, plan, ConfigOp, KeyChange};

pub fn handle(broker: &Arc<Broker>, request: &Request) -> Result<Reply, HandlerError> {
    let req: IncrementalAlterConfigsRequest = decode(request)?;
    let image = broker.controller.image();
    let planned = req
        .resources
        .iter()
        .map(|r| {
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
        .map(|(r, outcome)| {
            let (code, message) = outcome.err().unwrap_or((0, String::new()));
            AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone())
                .with_error_code(code)
                .with_error_message((code != 0).then(|| str_bytes(message)))
        })
        .collect();
    respond(
        request,
        &IncrementalAlterConfigsResponse::default().with_responses(responses),
    )
}
