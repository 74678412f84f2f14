//! DescribeQuorum (key 55): the metadata quorum's leader, epoch, high watermark and each
//! voter's progress, what `kafka-metadata-quorum describe --status/--replication` and
//! `Admin.describeMetadataQuorum` show. Any broker answers: a voter that is not the
//! active controller asks the active one, as Kafka's brokers forward it.
//!
//! Needs DESCRIBE on the cluster (Kafka's `ControllerApis.handleDescribeQuorum`,
//! `authorizeClusterOperation(request, DESCRIBE)`): without it the answer is
//! `DescribeQuorumRequest.getErrorResponse`, a top-level CLUSTER_AUTHORIZATION_FAILED
//! (with its message from v2) and no topics.

use std::sync::Arc;

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{
    BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName,
};
use kafka_protocol::ResponseError;
use ottla_controller::ReplicaProgress;
use ottla_protocol::frame::Request;

use super::{decode, respond, str_bytes, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, Caller};

/// KRaft's metadata topic, the only partition a quorum describes.
const METADATA_TOPIC: &str = "__cluster_metadata";

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: DescribeQuorumRequest = decode(request)?;
    let version = request.version();
    if !caller.allowed_on_cluster(op::DESCRIBE) {
        let mut response = DescribeQuorumResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
        if version >= 2 {
            response =
                response.with_error_message(Some(str_bytes("Cluster authorization failed.")));
        }
        return respond(request, &response);
    }
    let asks_metadata_partition = req.topics.len() == 1
        && req.topics[0].topic_name.as_str() == METADATA_TOPIC
        && req.topics[0].partitions.len() == 1
        && req.topics[0].partitions[0].partition_index == 0;
    if !asks_metadata_partition {
        // As Kafka's `getPartitionLevelErrorResponse`: each partition asked for gets
        // UNKNOWN_TOPIC_OR_PARTITION (only __cluster_metadata-0 has a quorum).
        let topics = req
            .topics
            .into_iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        PartitionData::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_leader_id(BrokerId(-1))
                            .with_leader_epoch(-1)
                            .with_high_watermark(-1)
                    })
                    .collect();
                TopicData::default()
                    .with_topic_name(t.topic_name)
                    .with_partitions(partitions)
            })
            .collect();
        return respond(
            request,
            &DescribeQuorumResponse::default().with_topics(topics),
        );
    }
    let partition = PartitionData::default().with_partition_index(0);
    let (partition, nodes) = match broker.controller.describe_quorum() {
        Ok(d) => {
            let state = |r: ReplicaProgress| {
                let s = ReplicaState::default()
                    .with_replica_id(BrokerId(r.replica_id))
                    .with_log_end_offset(r.log_end_offset);
                if version >= 1 {
                    s.with_last_fetch_timestamp(r.last_fetch_timestamp)
                        .with_last_caught_up_timestamp(r.last_caught_up_timestamp)
                } else {
                    s
                }
            };
            let nodes: Vec<Node> = d
                .nodes
                .iter()
                .map(|(id, host, port)| {
                    Node::default()
                        .with_node_id(BrokerId(*id))
                        .with_listeners(vec![Listener::default()
                            .with_name(str_bytes("CONTROLLER"))
                            .with_host(str_bytes(host.clone()))
                            .with_port(*port)])
                })
                .collect();
            (
                partition
                    .with_leader_id(BrokerId(d.leader_id))
                    .with_leader_epoch(d.leader_epoch)
                    .with_high_watermark(d.high_watermark)
                    .with_current_voters(d.voters.into_iter().map(state).collect())
                    .with_observers(d.observers.into_iter().map(state).collect()),
                nodes,
            )
        }
        Err(e) => {
            tracing::warn!("DescribeQuorum failed: {e}");
            (
                partition
                    .with_error_code(ResponseError::NotLeaderOrFollower.code())
                    .with_leader_id(BrokerId(-1))
                    .with_leader_epoch(-1)
                    .with_high_watermark(-1),
                Vec::new(),
            )
        }
    };
    let mut response = DescribeQuorumResponse::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(str_bytes(METADATA_TOPIC)))
        .with_partitions(vec![partition])]);
    if version >= 2 {
        response = response.with_nodes(nodes);
    }
    respond(request, &response)
}
