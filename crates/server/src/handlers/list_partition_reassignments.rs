//! ListPartitionReassignments (key 46): the reassignments in progress, with each
//! partition's full replica list and the replicas being added and removed, what
//! `kafka-reassign-partitions --verify` / `--list` and
//! `Admin.listPartitionReassignments` ask. Answered from this broker's metadata image
//! (every broker replays the controller's log); partitions not reassigning, and unknown
//! topics, are left out as Kafka does.
//!
//! Needs DESCRIBE on the cluster (Kafka's `ControllerApis.handleListPartitionReassignments`,
//! `authorizeClusterOperation(request, DESCRIBE)`). Without it the answer is
//! `ListPartitionReassignmentsRequest.getErrorResponse`: CLUSTER_AUTHORIZATION_FAILED at
//! the top level, and each topic and partition asked for echoed with no replicas.

use std::collections::BTreeMap;

use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::ResponseError;
use ottla_protocol::frame::Request;

use super::{decode, respond, str_bytes, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, Caller};

pub fn handle(broker: &Broker, request: &Request, caller: &Caller) -> Result<Reply, HandlerError> {
    let req: ListPartitionReassignmentsRequest = decode(request)?;
    if !caller.allowed_on_cluster(op::DESCRIBE) {
        // Kafka's message there is a dump of its internal request object; none is
        // sent here (clients fall back to the code's own text).
        let topics = req
            .topics
            .unwrap_or_default()
            .into_iter()
            .map(|t| {
                OngoingTopicReassignment::default()
                    .with_name(t.name)
                    .with_partitions(
                        t.partition_indexes
                            .into_iter()
                            .map(|p| {
                                OngoingPartitionReassignment::default().with_partition_index(p)
                            })
                            .collect(),
                    )
            })
            .collect();
        return respond(
            request,
            &ListPartitionReassignmentsResponse::default()
                .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
                .with_error_message(None)
                .with_topics(topics),
        );
    }
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
