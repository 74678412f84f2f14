//! OffsetCommit (key 8): committed offsets, by group members or "simple" consumers.

use std::sync::Arc;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use ottla_group::types::{error, PartitionOffsetCommit};
use ottla_protocol::frame::Request;

use super::{decode, respond, HandlerError, Reply};
use crate::broker::Broker;

pub fn handle(broker: &Arc<Broker>, request: &Request) -> Result<Reply, HandlerError> {
    let req: OffsetCommitRequest = decode(request)?;
    let version = request.version();
    let image = broker.controller.image();
    let mut offsets = Vec::new();
    // (topic, partition) → error, in request order; unknown partitions fail here.
    let mut results: Vec<(String, i32, i16)> = Vec::new();
    for topic in &req.topics {
        let name = topic.name.to_string();
        let known = image.topic(&name);
        for p in &topic.partitions {
            let exists = known.is_some_and(|t| {
                p.partition_index >= 0 && (p.partition_index as usize) < t.partitions.len()
            });
            if !exists {
                results.push((
                    name.clone(),
                    p.partition_index,
                    error::UNKNOWN_TOPIC_OR_PARTITION,
                ));
                continue;
            }
            results.push((name.clone(), p.partition_index, error::NONE));
            offsets.push(PartitionOffsetCommit {
                topic: name.clone(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if version >= 6 {
                    p.committed_leader_epoch
                } else {
                    -1
                },
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            });
        }
    }
    let committed = broker.groups.commit_offsets(
        broker,
        ottla_group::types::OffsetCommitRequest {
            group_id: req.group_id.to_string(),
            generation_id: req.generation_id_or_member_epoch,
            member_id: req.member_id.to_string(),
            group_instance_id: req.group_instance_id.map(|s| s.to_string()),
            offsets,
        },
    );
    for c in committed {
        if let Some(r) = results
            .iter_mut()
            .find(|r| r.0 == c.topic && r.1 == c.partition && r.2 == error::NONE)
        {
            r.2 = c.error;
        }
    }
    let mut topics: Vec<OffsetCommitResponseTopic> = Vec::new();
    for (topic, partition, code) in results {
        let entry = OffsetCommitResponsePartition::default()
            .with_partition_index(partition)
            .with_error_code(code);
        match topics.last_mut() {
            Some(t) if t.name.as_str() == topic => t.partitions.push(entry),
            _ => topics.push(
                OffsetCommitResponseTopic::default()
                    .with_name(kafka_protocol::messages::TopicName(super::str_bytes(topic)))
                    .with_partitions(vec![entry]),
            ),
        }
    }
    respond(
        request,
        &OffsetCommitResponse::default().with_topics(topics),
    )
}
