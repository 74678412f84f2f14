//! AlterConfigs (key 33, the older API): replace a resource's dynamic configs with the
//! ones given (keys not named are removed), with the checks and the commit of
//! IncrementalAlterConfigs ([`crate::dynamic_configs`]).

use std::sync::Arc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use ottla_protocol::frame::Request;

use super::{decode, respond, str_bytes, HandlerError, Reply};
use crate::broker::Broker;
use crate::dynamic_configs::{commit, plan, ConfigOp, KeyChange};

pub fn handle(broker: &Arc<Broker>, request: &Request) -> Result<Reply, HandlerError> {
    let req: AlterConfigsRequest = decode(request)?;
    let image = broker.controller.image();
    let planned = req
        .resources
        .iter()
        .map(|r| {
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
        &AlterConfigsResponse::default().with_responses(responses),
    )
}
