//! OffsetFetch (key 9): committed offsets of one group (v1-7) or several (v8+).
//! A partition without a commit reports offset -1 and no error, as in Kafka.

use std::sync::Arc;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use ottla_group::types::FetchedOffset;
use ottla_protocol::frame::Request;

use super::{decode, respond, str_bytes, HandlerError, Reply};
use crate::broker::Broker;

/// Group results by topic, keeping first-seen order.
fn by_topic(offsets: Vec<FetchedOffset>) -> Vec<(String, Vec<FetchedOffset>)> {
    let mut out: Vec<(String, Vec<FetchedOffset>)> = Vec::new();
    for o in offsets {
        match out.iter_mut().find(|(t, _)| *t == o.topic) {
            Some((_, list)) => list.push(o),
            None => out.push((o.topic.clone(), vec![o])),
        }
    }
    out
}

pub fn handle(broker: &Arc<Broker>, request: &Request) -> Result<Reply, HandlerError> {
    let req: OffsetFetchRequest = decode(request)?;
    let version = request.version();
    if version >= 8 {
        let groups = req
            .groups
            .iter()
            .map(|g| {
                let topics: Option<Vec<(String, Vec<i32>)>> = g.topics.as_ref().map(|ts| {
                    ts.iter()
                        .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                        .collect()
                });
                let offsets = broker
                    .groups
                    .fetch_offsets(g.group_id.as_str(), topics.as_deref());
                let topics = by_topic(offsets)
                    .into_iter()
                    .map(|(name, list)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(TopicName(str_bytes(name)))
                            .with_partitions(
                                list.into_iter()
                                    .map(|o| {
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(o.partition)
                                            .with_committed_offset(o.offset)
                                            .with_committed_leader_epoch(o.leader_epoch)
                                            .with_metadata(o.metadata.map(str_bytes))
                                            .with_error_code(o.error)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_topics(topics)
            })
            .collect();
        return respond(request, &OffsetFetchResponse::default().with_groups(groups));
    }
    let topics: Option<Vec<(String, Vec<i32>)>> = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let offsets = broker
        .groups
        .fetch_offsets(req.group_id.as_str(), topics.as_deref());
    let topics = by_topic(offsets)
        .into_iter()
        .map(|(name, list)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(str_bytes(name)))
                .with_partitions(
                    list.into_iter()
                        .map(|o| {
                            let p = OffsetFetchResponsePartition::default()
                                .with_partition_index(o.partition)
                                .with_committed_offset(o.offset)
                                .with_metadata(o.metadata.map(str_bytes))
                                .with_error_code(o.error);
                            if version >= 5 {
                                p.with_committed_leader_epoch(o.leader_epoch)
                            } else {
                                p
                            }
                        })
                        .collect(),
                )
        })
        .collect();
    respond(request, &OffsetFetchResponse::default().with_topics(topics))
}
