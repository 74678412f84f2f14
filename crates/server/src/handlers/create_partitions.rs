//! CreatePartitions (key 37): grow a topic's partition count.

use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::ResponseError;
use ottla_protocol::frame::Request;

use super::{decode, respond, str_bytes, HandlerError, Reply};
use crate::broker::Broker;

pub fn handle(broker: &Arc<Broker>, request: &Request) -> Result<Reply, HandlerError> {
    let req: CreatePartitionsRequest = decode(request)?;
    let mut results = Vec::with_capacity(req.topics.len());
    for topic in req.topics {
        let name = topic.name.as_str().to_string();
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
