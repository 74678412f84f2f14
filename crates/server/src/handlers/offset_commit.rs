//! OffsetCommit (key 8): committed offsets, by group members or "simple" consumers.
//!
//! Partitions of unknown topics fail here with UNKNOWN_TOPIC_OR_PARTITION (as Kafka's
//! request handler does) and never reach the coordinator; a partition listed twice is
//! committed once (the last value wins), so one request costs at most one record per
//! existing partition.

use std::collections::HashMap;
use std::sync::Arc;

use kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use ottla_group::types::{error, PartitionOffsetCommit};
use ottla_protocol::frame::Request;

use super::{decode, respond_later, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, Caller};

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: OffsetCommitRequest = decode(request)?;
    // KafkaApis: READ on the group, then READ on each topic.
    let group_denied = !caller.allowed_on_group(op::READ, req.group_id.as_str());
    let denied: HashMap<usize, i16> = req
        .topics
        .iter()
        .enumerate()
        .filter_map(|(ti, t)| {
            if group_denied {
                Some((
                    ti,
                    kafka_protocol::ResponseError::GroupAuthorizationFailed.code(),
                ))
            } else if !caller.allowed_on_topic(op::READ, t.name.as_str()) {
                Some((
                    ti,
                    kafka_protocol::ResponseError::TopicAuthorizationFailed.code(),
                ))
            } else {
                None
            }
        })
        .collect();
    if group_denied {
        return super::respond(request, &to_wire(req.topics, &[], Vec::new(), &denied));
    }
    let version = request.version();
    let image = broker.controller.image();
    // (topic index in the request, partition) → index into `offsets`.
    let mut slot: HashMap<(usize, i32), usize> = HashMap::new();
    let mut offsets: Vec<PartitionOffsetCommit> = Vec::new();
    let mut topic_of_offset: Vec<usize> = Vec::new();
    for (ti, topic) in req.topics.iter().enumerate() {
        if denied.contains_key(&ti) {
            continue;
        }
        let Some(info) = image.topic(topic.name.as_str()) else {
            continue;
        };
        let partitions = info.partitions.len() as i32;
        for p in &topic.partitions {
            if p.partition_index < 0 || p.partition_index >= partitions {
                continue;
            }
            let commit = PartitionOffsetCommit {
                topic: info.name.clone(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if version >= 6 {
                    p.committed_leader_epoch
                } else {
                    -1
                },
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            };
            match slot.get(&(ti, p.partition_index)) {
                Some(&i) => offsets[i] = commit,
                None => {
                    slot.insert((ti, p.partition_index), offsets.len());
                    offsets.push(commit);
                    topic_of_offset.push(ti);
                }
            }
        }
    }
    let committed = broker
        .groups
        .commit_offsets(ottla_group::types::OffsetCommitRequest {
            group_id: req.group_id.to_string(),
            generation_id: req.generation_id_or_member_epoch,
            member_id: req.member_id.to_string(),
            group_instance_id: req.group_instance_id.map(|s| s.to_string()),
            offsets,
            offset_commit_version: Some(version),
        });
    respond_later(request, async move {
        let results = committed.await;
        to_wire(req.topics, &topic_of_offset, results, &denied)
    })
}

fn to_wire(
    topics: Vec<OffsetCommitRequestTopic>,
    topic_of_offset: &[usize],
    results: Vec<ottla_group::types::PartitionResult>,
    denied: &HashMap<usize, i16>,
) -> OffsetCommitResponse {
    // The coordinator answers in the order it was asked.
    let mut errors: HashMap<(usize, i32), i16> = HashMap::new();
    for (i, r) in results.iter().enumerate() {
        errors.insert((topic_of_offset[i], r.partition), r.error);
    }
    let topics = topics
        .into_iter()
        .enumerate()
        .map(|(ti, t)| {
            let mut answered = std::collections::HashSet::new();
            let partitions = t
                .partitions
                .iter()
                .filter(|p| answered.insert(p.partition_index))
                .map(|p| {
                    let code = denied
                        .get(&ti)
                        .or_else(|| errors.get(&(ti, p.partition_index)))
                        .copied()
                        .unwrap_or(error::UNKNOWN_TOPIC_OR_PARTITION);
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
