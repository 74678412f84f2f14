//! CreatePartitions (key 37): grow a topic's partition count.
//!
//! Needs ALTER on each topic (Kafka's `ControllerApis.createPartitions`): a topic the
//! caller may not alter gets TOPIC_AUTHORIZATION_FAILED, without a message, whether it
//! exists or not, and is left unchanged.

use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::ResponseError;
use ottla_protocol::frame::Request;

use super::{decode, respond, str_bytes, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, Caller};

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: CreatePartitionsRequest = decode(request)?;
    let mut results = Vec::with_capacity(req.topics.len());
    for topic in req.topics {
        let name = topic.name.as_str().to_string();
        if !caller.allowed_on_topic(op::ALTER, &name) {
            results.push(
                CreatePartitionsTopicResult::default()
                    .with_name(topic.name)
                    .with_error_code(ResponseError::TopicAuthorizationFailed.code()),
            );
            continue;
        }
        let assignments = topic.assignments.map(|a| {
            a.into_iter()
                .map(|x| x.broker_ids.into_iter().map(|b| b.0).collect())
                .collect()
        });
        let outcome = broker
            .controller
            .create_partitions(&name, topic.count, assignments, req.validate_only)
            .map_err(|e| (e.kafka_error_code(), e.to_string()))
            .and_then(|updated| {
                if req.validate_only || broker.hosts_led_partitions(&updated) {
                    return Ok(());
                }
                Err((
                    ResponseError::KafkaStorageError.code(),
                    format!("Added partitions to {name} but could not open them"),
                ))
            });
        let mut result = CreatePartitionsTopicResult::default().with_name(topic.name);
        if let Err((code, message)) = outcome {
            result = result
                .with_error_code(code)
                .with_error_message(Some(str_bytes(message)));
        }
        results.push(result);
    }
    respond(
        request,
        &CreatePartitionsResponse::default().with_results(results),
    )
}
