//! OffsetDelete (key 47): drop committed offsets a group no longer needs; refused for
//! topics a live consumer group still subscribes to.
//!
//! ACLs, as Kafka's `KafkaApis.handleOffsetDeleteRequest`: DELETE on the GROUP, or the
//! whole request is answered GROUP_AUTHORIZATION_FAILED (no topics); then READ on each
//! TOPIC, and every partition of a topic the caller may not read is answered
//! TOPIC_AUTHORIZATION_FAILED (whether the topic exists or not) and keeps its offsets.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use kafka_protocol::ResponseError;
use ottla_group::types::PartitionResult;
use ottla_protocol::frame::Request;

use super::{decode, respond, respond_later, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, Caller};

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: OffsetDeleteRequest = decode(request)?;
    if !caller.allowed_on_group(op::DELETE, req.group_id.as_str()) {
        return respond(
            request,
            &OffsetDeleteResponse::default()
                .with_error_code(ResponseError::GroupAuthorizationFailed.code()),
        );
    }
    // Kafka checks READ on every requested topic (once per name) before it looks at
    // whether the topic exists.
    let mut denied: HashSet<String> = HashSet::new();
    let mut checked: HashSet<&str> = HashSet::new();
    for t in &req.topics {
        if checked.insert(t.name.as_str()) && !caller.allowed_on_topic(op::READ, t.name.as_str()) {
            denied.insert(t.name.to_string());
        }
    }
    // Only partitions that exist can hold offsets worth deleting; each is asked once.
    let image = broker.controller.image();
    let mut seen = HashSet::new();
    let mut partitions: Vec<(String, i32)> = Vec::new();
    for t in &req.topics {
        if denied.contains(t.name.as_str()) {
            continue;
        }
        let Some(info) = image.topic(t.name.as_str()) else {
            continue;
        };
        let count = info.partitions.len() as i32;
        for p in &t.partitions {
            let key = (info.name.clone(), p.partition_index);
            if p.partition_index >= 0 && p.partition_index < count && seen.insert(key.clone()) {
                partitions.push(key);
            }
        }
    }
    let deleted = broker
        .groups
        .delete_offsets(req.group_id.to_string(), partitions);
    respond_later(request, async move {
        let (code, results) = deleted.await;
        to_wire(req, &denied, code, results)
    })
}

/// `denied`: the topics the caller may not READ, whose partitions are all answered
/// TOPIC_AUTHORIZATION_FAILED.
fn to_wire(
    req: OffsetDeleteRequest,
    denied: &HashSet<String>,
    code: i16,
    results: Vec<PartitionResult>,
) -> OffsetDeleteResponse {
    let errors: HashMap<(&str, i32), i16> = results
        .iter()
        .map(|r| ((r.topic.as_str(), r.partition), r.error))
        .collect();
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let refused = denied.contains(t.name.as_str());
            let mut answered = HashSet::new();
            let parts = t
                .partitions
                .iter()
                .filter(|p| answered.insert(p.partition_index))
                .map(|p| {
                    let e = if refused {
                        ResponseError::TopicAuthorizationFailed.code()
                    } else {
                        errors
                            .get(&(t.name.as_str(), p.partition_index))
                            .copied()
                            .unwrap_or(ottla_group::types::error::UNKNOWN_TOPIC_OR_PARTITION)
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(e)
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(parts)
        })
        .collect();
    let response = OffsetDeleteResponse::default().with_error_code(code);
    if code == 0 {
        response.with_topics(topics)
    } else {
        response
    }
}
