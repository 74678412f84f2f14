//! DeleteRecords (key 21): move partitions' log start offsets forward (what
//! `kafka-delete-records` and Admin `deleteRecords` send), on the blocking pool since
//! whole segments below the new start are deleted and the start is checkpointed
//! (`log-start-offset-checkpoint`) before the answer, so the deletion survives a crash.
//!
//! Needs DELETE on each topic (Kafka's `KafkaApis.handleDeleteRecordsRequest`): every
//! requested partition of a topic the caller may not delete from gets
//! TOPIC_AUTHORIZATION_FAILED (low watermark -1), whether the topic exists or not, and
//! is not trimmed.
//!
//! Other errors are Kafka's: UNKNOWN_TOPIC_OR_PARTITION, NOT_LEADER_OR_FOLLOWER,
//! OFFSET_OUT_OF_RANGE (an offset above the high watermark, or negative other than -1,
//! which means the high watermark), POLICY_VIOLATION for a topic without the `delete`
//! cleanup policy. The low watermark answered is the leader's new log start offset;
//! followers follow it on their next fetch (Kafka also waits for them, bounded by the
//! request's timeout; Ottla does not yet).

use std::sync::Arc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::ResponseError;
use ottla_protocol::frame::Request;

use super::{decode, respond, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, Caller};

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: DeleteRecordsRequest = decode(request)?;
    let image = broker.controller.image();
    let mut moved = false;
    let topics = req
        .topics
        .into_iter()
        .map(|topic| {
            // Authorization before existence, as Kafka checks it.
            let allowed = caller.allowed_on_topic(op::DELETE, topic.name.as_str());
            let info = image.topic(topic.name.as_str());
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let answer = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index);
                    let exists = info.is_some_and(|t| {
                        p.partition_index >= 0 && (p.partition_index as usize) < t.partitions.len()
                    });
                    let hosted =
                        info.and_then(|t| broker.replicas.get(&t.topic_id, p.partition_index));
                    let result = match (exists, hosted) {
                        _ if !allowed => Err(ResponseError::TopicAuthorizationFailed.code()),
                        (false, _) => Err(ResponseError::UnknownTopicOrPartition.code()),
                        (true, None) => Err(ResponseError::NotLeaderOrFollower.code()),
                        (true, Some(partition)) => {
                            let before = partition.log_start_offset();
                            partition
                                .delete_records(p.offset)
                                .map_err(|e| {
                                    tracing::info!(
                                        "DeleteRecords on {} to offset {} refused: {e}",
                                        partition.name(),
                                        p.offset
                                    );
                                    e.kafka_error_code()
                                })
                                .inspect(|&start| moved |= start != before)
                        }
                    };
                    match result {
                        Ok(low_watermark) => answer.with_low_watermark(low_watermark),
                        Err(code) => answer.with_error_code(code).with_low_watermark(-1),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    if moved {
        if let Err(e) = broker.replicas.checkpoint_log_start_offsets() {
            tracing::error!("Failed to checkpoint the log start offsets after DeleteRecords: {e}");
        }
    }
    respond(
        request,
        &DeleteRecordsResponse::default().with_topics(topics),
    )
}
