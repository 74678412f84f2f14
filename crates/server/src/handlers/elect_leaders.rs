//! ElectLeaders (key 43): preferred or unclean leader elections, what
//! `kafka-leader-election` and `Admin.electLeaders` send. The active controller decides
//! (forwarded from any broker, as Kafka does); the answer lists each partition with
//! ELECTION_NOT_NEEDED, PREFERRED_LEADER_NOT_AVAILABLE, ELIGIBLE_LEADERS_NOT_AVAILABLE
//! or UNKNOWN_TOPIC_OR_PARTITION where no election took place. Without a partition
//! list every partition is tried and only those that changed or failed are listed.
//!
//! Needs ALTER on the cluster (Kafka's `ControllerApis.handleElectLeaders`,
//! `authorizeClusterOperation(request, ALTER)`). Without it nothing is elected and the
//! answer is `ElectLeadersRequest.getErrorResponse`: CLUSTER_AUTHORIZATION_FAILED at the
//! top level (v1+; v0 has no such field) and for every partition asked for.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::ResponseError;
use ottla_controller::{ElectionType, PartitionOutcome};
use ottla_protocol::frame::Request;

use super::{decode, respond, str_bytes, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, Caller};

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: ElectLeadersRequest = decode(request)?;
    if !caller.allowed_on_cluster(op::ALTER) {
        let code = ResponseError::ClusterAuthorizationFailed.code();
        // Each topic as asked, in request order (Kafka's message is a dump of its
        // internal request object; none is sent here).
        let results = req
            .topic_partitions
            .unwrap_or_default()
            .into_iter()
            .map(|t| {
                ReplicaElectionResult::default()
                    .with_topic(t.topic)
                    .with_partition_result(
                        t.partitions
                            .into_iter()
                            .map(|p| {
                                PartitionResult::default()
                                    .with_partition_id(p)
                                    .with_error_code(code)
                                    .with_error_message(None)
                            })
                            .collect(),
                    )
            })
            .collect();
        let mut response = ElectLeadersResponse::default().with_replica_election_results(results);
        if request.version() >= 1 {
            response = response.with_error_code(code);
        }
        return respond(request, &response);
    }
    // v0 has no election type: preferred only.
    let Some(election) = ElectionType::from_wire(req.election_type) else {
        let response =
            ElectLeadersResponse::default().with_error_code(ResponseError::InvalidRequest.code());
        return respond(request, &response);
    };
    let partitions = req.topic_partitions.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.topic.as_str().to_string(), t.partitions))
            .collect::<Vec<_>>()
    });
    let results = match broker
        .controller
        .elect_leaders(election, partitions.clone())
    {
        Ok(results) => results,
        // The whole request failed (no quorum): Kafka answers the top-level error; v0
        // has none, so there every partition asked for carries it.
        Err(e) if request.version() >= 1 => {
            let response = ElectLeadersResponse::default().with_error_code(e.kafka_error_code());
            return respond(request, &response);
        }
        Err(e) => partitions
            .unwrap_or_default()
            .into_iter()
            .flat_map(|(topic, indexes)| {
                let error = (e.kafka_error_code(), e.to_string());
                indexes.into_iter().map(move |partition| PartitionOutcome {
                    topic: topic.clone(),
                    partition,
                    error: Some(error.clone()),
                })
            })
            .collect(),
    };
    let mut by_topic: BTreeMap<String, Vec<PartitionResult>> = BTreeMap::new();
    for result in results {
        let (code, message) = result.error.unwrap_or((0, String::new()));
        by_topic.entry(result.topic).or_default().push(
            PartitionResult::default()
                .with_partition_id(result.partition)
                .with_error_code(code)
                .with_error_message((code != 0).then(|| str_bytes(message))),
        );
    }
    let response = ElectLeadersResponse::default().with_replica_election_results(
        by_topic
            .into_iter()
            .map(|(topic, partitions)| {
                ReplicaElectionResult::default()
                    .with_topic(TopicName(str_bytes(topic)))
                    .with_partition_result(partitions)
            })
            .collect(),
    );
    respond(request, &response)
}
