//! DescribeProducers (key 61): the producer state of partitions this broker leads
//! (`kafka-transactions describe-producers`, Admin `describeProducers`): each active
//! producer's epoch, last sequence and the first offset of its open transaction.
//!
//! Needs READ on each topic (Kafka's `KafkaApis.handleDescribeProducersRequest`): every
//! requested partition of a topic the caller may not read gets TOPIC_AUTHORIZATION_FAILED
//! ("Topic authorization failed."), whether the topic exists or not.

use std::sync::Arc;

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use kafka_protocol::ResponseError;
use ottla_protocol::frame::Request;

use super::{decode, not_hosted_error, respond, str_bytes, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, Caller};

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: DescribeProducersRequest = decode(request)?;
    let image = broker.controller.image();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            // Authorization before existence, as Kafka checks it.
            let allowed = caller.allowed_on_topic(op::READ, t.name.as_str());
            let info = image.topic(t.name.as_str());
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&index| {
                    let r = PartitionResponse::default().with_partition_index(index);
                    if !allowed {
                        return r
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                            .with_error_message(Some(str_bytes("Topic authorization failed.")));
                    }
                    match info.and_then(|i| broker.replicas.leader(&i.topic_id, index)) {
                        None => r.with_error_code(not_hosted_error(info.map(|t| &**t), index)),
                        Some(partition) => {
                            let mut producers = partition.producers();
                            producers.sort_by_key(|p| p.producer_id());
                            r.with_active_producers(
                                producers
                                    .iter()
                                    .map(|p| {
                                        ProducerState::default()
                                            .with_producer_id(ProducerId(p.producer_id()))
                                            .with_producer_epoch(i32::from(p.epoch()))
                                            .with_last_sequence(p.last_sequence().unwrap_or(-1))
                                            .with_last_timestamp(p.last_timestamp())
                                            .with_coordinator_epoch(p.coordinator_epoch())
                                            .with_current_txn_start_offset(
                                                p.current_txn_first_offset().unwrap_or(-1),
                                            )
                                    })
                                    .collect(),
                            )
                        }
                    }
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    respond(
        request,
        &DescribeProducersResponse::default().with_topics(topics),
    )
}
