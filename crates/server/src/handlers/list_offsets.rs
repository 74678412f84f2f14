//! ListOffsets (key 2): earliest, latest, by timestamp, and max timestamp (v7+).

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;
use ottla_protocol::frame::Request;
use ottla_replica::partition::{
    EARLIEST_LOCAL_TIMESTAMP, LATEST_TIERED_TIMESTAMP, LATEST_TIMESTAMP, MAX_TIMESTAMP,
};
use ottla_replica::FetchIsolation;

use super::{check_leader_epoch, decode, respond, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, Caller};

/// Lowest request version that may ask for each special timestamp (Kafka's rule).
fn min_version_for(timestamp: i64) -> i16 {
    match timestamp {
        MAX_TIMESTAMP => 7,
        EARLIEST_LOCAL_TIMESTAMP => 8,
        LATEST_TIERED_TIMESTAMP => 9,
        _ => 0,
    }
}

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: ListOffsetsRequest = decode(request)?;
    let version = request.version();
    let image = broker.controller.image();
    // Consumers see up to the high watermark (read_committed ones up to the last
    // stable offset); a replica id (follower or admin tool asking as a replica) sees
    // the log end.
    let isolation = if req.replica_id.0 >= 0 {
        FetchIsolation::LogEnd
    } else if req.isolation_level == 1 {
        FetchIsolation::TxnCommitted
    } else {
        FetchIsolation::HighWatermark
    };
    let mut topics = Vec::with_capacity(req.topics.len());
    for topic in req.topics {
        let info = image.topic(topic.name.as_str());
        let authorized = caller.allowed_on_topic(op::DESCRIBE, topic.name.as_str());
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let mut r =
                ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            let partition =
                info.and_then(|t| broker.replicas.leader(&t.topic_id, p.partition_index));
            let outcome = match partition {
                _ if !authorized => Err(ResponseError::TopicAuthorizationFailed.code()),
                None => Err(super::not_hosted_error(
                    info.map(|t| &**t),
                    p.partition_index,
                )),
                Some(_) if version < min_version_for(p.timestamp) => {
                    Err(ResponseError::UnsupportedVersion.code())
                }
                Some(partition) => {
                    let fenced = if version >= 4 {
                        check_leader_epoch(&partition, p.current_leader_epoch)
                    } else {
                        Ok(())
                    };
                    if let Err(code) = fenced {
                        Err(code)
                    } else {
                        partition
                            .offset_for(p.timestamp, isolation)
                            .map(|(offset, timestamp)| {
                                // Kafka reports the epoch of the batch holding the offset
                                // (the latest epoch for the log end), -1 if unknown.
                                let epoch = if p.timestamp == LATEST_TIMESTAMP {
                                    partition.latest_epoch()
                                } else if offset >= 0 {
                                    partition.epoch_for_offset(offset)
                                } else {
                                    None
                                };
                                (offset, timestamp, epoch.unwrap_or(-1))
                            })
                            .map_err(|e| {
                                tracing::warn!("ListOffsets on {} failed: {e}", partition.name());
                                e.kafka_error_code()
                            })
                    }
                }
            };
            match outcome {
                Ok((offset, timestamp, epoch)) => {
                    r = r.with_offset(offset).with_timestamp(timestamp);
                    if version >= 4 {
                        r = r.with_leader_epoch(epoch);
                    }
                }
                Err(code) => {
                    r = r.with_error_code(code).with_offset(-1).with_timestamp(-1);
                }
            }
            partitions.push(r);
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    respond(request, &ListOffsetsResponse::default().with_topics(topics))
}
