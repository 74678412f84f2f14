//! DescribeTopicPartitions (key 75, KIP-966): topics and their partitions in pages, what
//! `kafka-topics --describe` and Admin `describeTopics` use from Kafka 3.7/3.8 on
//! instead of Metadata, so a topic with many partitions needs no single huge answer.
//!
//! As Kafka's `DescribeTopicPartitionsRequestHandler`: no topic named means every topic;
//! topics are answered in name order from the request's cursor (topic, first
//! partition); at most `response_partition_limit` partitions (capped by Kafka's
//! `max.request.partition.size.limit`, 2000) are answered, and `next_cursor` names the
//! first one left out. A named topic that does not exist gets UNKNOWN_TOPIC_OR_PARTITION;
//! a partition without a leader LEADER_NOT_AVAILABLE; replicas on fenced brokers are
//! offline. Ottla has no eligible leader replicas (KIP-966's ELR), so those lists are
//! empty.
//!
//! Needs DESCRIBE on each topic, as Kafka's handler checks it (in order, as the page
//! fills): a named topic the caller may not describe is answered, after the others, with
//! TOPIC_AUTHORIZATION_FAILED, its name, a zero topic id and no partitions, whether it
//! exists or not; when every topic is asked for, those are left out. Every topic answered otherwise (an unknown one
//! too) carries what the caller may do with it (`topic_authorized_operations`, KIP-430),
//! which Kafka always fills in since the request has no flag for it.

use std::collections::BTreeSet;
use std::sync::Arc;

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName,
};
use kafka_protocol::ResponseError;
use ottla_controller::{MetadataImage, TopicInfo};
use ottla_protocol::frame::Request;
use uuid::Uuid;

use super::describe_cluster::AUTHORIZED_OPERATIONS_OMITTED;
use super::{decode, respond, str_bytes, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, resource, Caller};

/// Kafka's `max.request.partition.size.limit` default: the most partitions one answer
/// holds, whatever the request asks.
const MAX_PARTITIONS_PER_RESPONSE: i32 = 2000;

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: DescribeTopicPartitionsRequest = decode(request)?;
    let image = broker.controller.image();
    let limit = req
        .response_partition_limit
        .clamp(1, MAX_PARTITIONS_PER_RESPONSE) as usize;
    let (cursor_topic, cursor_partition) = req.cursor.as_ref().map_or((String::new(), 0), |c| {
        (c.topic_name.to_string(), c.partition_index.max(0))
    });
    // Sorted, each once; every topic when none is named.
    let fetch_all = req.topics.is_empty();
    let names: Vec<String> = if fetch_all {
        image.topics().map(|t| t.name.clone()).collect()
    } else {
        req.topics
            .iter()
            .map(|t| t.name.to_string())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    // As Kafka's handler, whose authorizing filter is a lazy stream the page consumes:
    // topics are authorized in order as the page fills, so the ones past its end are
    // neither checked nor reported; a denial is logged whether the topic was named or not
    // (Kafka's `logIfDenied = true`).
    let mut refused = Vec::new();
    let mut topics = Vec::new();
    let mut room = limit;
    let mut next_cursor = None;
    for name in names.into_iter().filter(|n| *n >= cursor_topic) {
        if !caller.allowed_on_topic(op::DESCRIBE, &name) {
            if !fetch_all {
                refused.push(
                    DescribeTopicPartitionsResponseTopic::default()
                        .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                        .with_name(Some(TopicName(str_bytes(name))))
                        .with_topic_id(Uuid::nil())
                        .with_is_internal(false)
                        .with_partitions(Vec::new())
                        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED),
                );
            }
            continue;
        }
        let first = if name == cursor_topic {
            cursor_partition
        } else {
            0
        };
        let Some(topic) = image.topic(&name) else {
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                    .with_topic_authorized_operations(
                        caller.authorized_operations(resource::TOPIC, &name),
                    )
                    .with_name(Some(TopicName(str_bytes(name)))),
            );
            continue;
        };
        if room == 0 {
            next_cursor = Some(cursor(&name, first));
            break;
        }
        let available = topic.partitions.len().saturating_sub(first as usize);
        let taken = available.min(room);
        topics.push(
            describe(&image, topic, first as usize, taken).with_topic_authorized_operations(
                caller.authorized_operations(resource::TOPIC, &name),
            ),
        );
        room -= taken;
        if taken < available {
            next_cursor = Some(cursor(&name, first + taken as i32));
            break;
        }
    }
    topics.extend(refused);
    respond(
        request,
        &DescribeTopicPartitionsResponse::default()
            .with_topics(topics)
            .with_next_cursor(next_cursor),
    )
}

fn cursor(topic: &str, partition: i32) -> Cursor {
    Cursor::default()
        .with_topic_name(TopicName(str_bytes(topic.to_string())))
        .with_partition_index(partition)
}

fn describe(
    image: &MetadataImage,
    topic: &TopicInfo,
    first: usize,
    count: usize,
) -> DescribeTopicPartitionsResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .skip(first)
        .take(count)
        .map(|p| {
            let ids = |v: &[i32]| v.iter().copied().map(BrokerId).collect::<Vec<_>>();
            let offline: Vec<i32> = p
                .replicas
                .iter()
                .copied()
                .filter(|r| !image.is_eligible_replica(*r))
                .collect();
            let mut m = DescribeTopicPartitionsResponsePartition::default()
                .with_partition_index(p.partition)
                .with_leader_id(BrokerId(p.leader))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(ids(&p.replicas))
                .with_isr_nodes(ids(&p.isr))
                .with_eligible_leader_replicas(Some(Vec::new()))
                .with_last_known_elr(Some(Vec::new()))
                .with_offline_replicas(ids(&offline));
            if p.leader < 0 {
                m = m.with_error_code(ResponseError::LeaderNotAvailable.code());
            }
            m
        })
        .collect();
    DescribeTopicPartitionsResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(topic.name.clone()))))
        .with_topic_id(topic.topic_id)
        .with_is_internal(topic.is_internal())
        .with_partitions(partitions)
}
