//! AlterPartitionReassignments (key 45): move partitions to new replicas, or cancel a
//! move, what `kafka-reassign-partitions --execute` / `--cancel` and
//! `Admin.alterPartitionReassignments` send (KIP-455; v1 adds KIP-860's
//! `allow_replication_factor_change`). The active controller decides (forwarded from
//! any broker, as Kafka does) and answers per partition: INVALID_REPLICA_ASSIGNMENT,
//! INVALID_REPLICATION_FACTOR, NO_REASSIGNMENT_IN_PROGRESS, UNKNOWN_TOPIC_OR_PARTITION.
//! The data moves afterwards, through ordinary follower fetching (see
//! `ottla_controller::reassignment`).
//!
//! Needs ALTER on the cluster (Kafka's `ControllerApis.handleAlterPartitionReassignments`,
//! `authorizeClusterOperation(request, ALTER)`). Without it nothing moves and the answer
//! is `AlterPartitionReassignmentsRequest.getErrorResponse`: CLUSTER_AUTHORIZATION_FAILED
//! at the top level and for every partition asked for.

use std::sync::Arc;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
};
use kafka_protocol::ResponseError;
use ottla_controller::ReassignmentRequest;
use ottla_protocol::frame::Request;

use super::{decode, respond, str_bytes, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, Caller};

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: AlterPartitionReassignmentsRequest = decode(request)?;
    if !caller.allowed_on_cluster(op::ALTER) {
        // As Kafka's error response: `allow_replication_factor_change` stays at its
        // default (true). Kafka's message there is a dump of its internal request
        // object; none is sent here (clients fall back to the code's own text).
        let code = ResponseError::ClusterAuthorizationFailed.code();
        let responses = req
            .topics
            .iter()
            .map(|t| {
                ReassignableTopicResponse::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                ReassignablePartitionResponse::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code)
                                    .with_error_message(None)
                            })
                            .collect(),
                    )
            })
            .collect();
        let response = AlterPartitionReassignmentsResponse::default()
            .with_error_code(code)
            .with_error_message(None)
            .with_responses(responses);
        return respond(request, &response);
    }
    // v0 has no such field: the replication factor may change, as before KIP-860.
    let allow_rf_change = request.version() == 0 || req.allow_replication_factor_change;
    let requests: Vec<ReassignmentRequest> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| ReassignmentRequest {
                topic: t.name.as_str().to_string(),
                partition: p.partition_index,
                target: p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect()),
                allow_replication_factor_change: allow_rf_change,
            })
        })
        .collect();
    let mut response = AlterPartitionReassignmentsResponse::default();
    if request.version() >= 1 {
        response = response.with_allow_replication_factor_change(allow_rf_change);
    }
    let outcomes = match broker.controller.alter_partition_reassignments(requests) {
        Ok(outcomes) => outcomes,
        Err(e) => {
            let response = response
                .with_error_code(e.kafka_error_code())
                .with_error_message(Some(str_bytes(e.to_string())));
            return respond(request, &response);
        }
    };
    // Answer in the request's order, one entry per topic as asked.
    let mut outcomes = outcomes.into_iter();
    let responses = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let (code, message) = outcomes
                        .next()
                        .and_then(|o| o.error)
                        .unwrap_or((0, String::new()));
                    ReassignablePartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                        .with_error_message((code != 0).then(|| str_bytes(message)))
                })
                .collect();
            ReassignableTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    respond(request, &response.with_responses(responses))
}
