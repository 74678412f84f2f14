//! ListPartitionReassignments (key 46): the reassignments in progress, with each
//! partition's full replica list and the replicas being added and removed, what
//! `kafka-reassign-partitions --verify` / `--list` and
//! `Admin.listPartitionReassignments` ask. Answered from this broker's metadata image
//! (every broker replays the controller's log); partitions not reassigning, and unknown
//! topics, are left out as Kafka does.

use std::collections::BTreeMap;

use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use ottla_protocol::frame::Request;

use super::{decode, respond, str_bytes, HandlerError, Reply};
use crate::broker::Broker;

pub fn handle(broker: &Broker, request: &Request) -> Result<Reply, HandlerError> {
    let req: ListPartitionReassignmentsRequest = decode(request)?;
    let only: Option<Vec<(String, Vec<i32>)>> = req.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.name.as_str().to_string(), t.partition_indexes))
            .collect()
    });
    let ongoing = broker
        .controller
        .list_partition_reassignments(only.as_deref());
    let ids = |v: Vec<i32>| v.into_iter().map(BrokerId).collect::<Vec<_>>();
    let mut by_topic: BTreeMap<String, Vec<OngoingPartitionReassignment>> = BTreeMap::new();
    for r in ongoing {
        by_topic.entry(r.topic).or_default().push(
            OngoingPartitionReassignment::default()
                .with_partition_index(r.partition)
                .with_replicas(ids(r.replicas))
                .with_adding_replicas(ids(r.adding_replicas))
                .with_removing_replicas(ids(r.removing_replicas)),
        );
    }
    let topics = by_topic
        .into_iter()
        .map(|(name, partitions)| {
            OngoingTopicReassignment::default()
                .with_name(TopicName(str_bytes(name)))
                .with_partitions(partitions)
        })
        .collect();
    respond(
        request,
        &ListPartitionReassignmentsResponse::default().with_topics(topics),
    )
}
