//! OffsetForLeaderEpoch (key 23): where a leader epoch ends in this partition's log.
//! A follower asks it after a leader change to find where its log diverges from the
//! new leader's (KIP-101/279); a consumer asks it to check that its position still
//! exists after a leader change (KIP-320). The answer comes from the partition's
//! leader-epoch cache (`leader-epoch-checkpoint`).

use std::sync::Arc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::ResponseError;
use ottla_protocol::frame::Request;

use super::{check_leader_epoch, decode, respond, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, Caller};

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: OffsetForLeaderEpochRequest = decode(request)?;
    // KafkaApis: CLUSTER_ACTION (a follower) or DESCRIBE on each topic.
    let image = broker.controller.image();
    let topics = req
        .topics
        .into_iter()
        .map(|topic| {
            let info = image.topic(topic.topic.as_str());
            let authorized = caller.allowed_on_cluster(op::CLUSTER_ACTION)
                || caller.allowed_on_topic(op::DESCRIBE, topic.topic.as_str());
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let answer = EpochEndOffset::default().with_partition(p.partition);
                    let hosted =
                        info.and_then(|t| broker.replicas.leader(&t.topic_id, p.partition));
                    let found = match (info, hosted) {
                        _ if !authorized => Err(ResponseError::TopicAuthorizationFailed.code()),
                        (None, _) => Err(ResponseError::UnknownTopicOrPartition.code()),
                        (Some(t), None)
                            if p.partition >= 0 && (p.partition as usize) < t.partitions.len() =>
                        {
                            // The partition exists but is led elsewhere.
                            Err(ResponseError::NotLeaderOrFollower.code())
                        }
                        (Some(_), None) => Err(ResponseError::UnknownTopicOrPartition.code()),
                        (Some(_), Some(partition)) => {
                            check_leader_epoch(&partition, p.current_leader_epoch)
                                .map(|()| partition.end_offset_for_epoch(p.leader_epoch))
                        }
                    };
                    match found {
                        Ok((epoch, end_offset)) => {
                            answer.with_leader_epoch(epoch).with_end_offset(end_offset)
                        }
                        Err(code) => answer
                            .with_error_code(code)
                            .with_leader_epoch(-1)
                            .with_end_offset(-1),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic)
                .with_partitions(partitions)
        })
        .collect();
    respond(
        request,
        &OffsetForLeaderEpochResponse::default().with_topics(topics),
    )
}
