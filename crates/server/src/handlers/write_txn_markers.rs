//! WriteTxnMarkers (key 27): a transaction coordinator (this broker's or another's)
//! ends a transaction in the partitions this broker leads, by appending a COMMIT or
//! ABORT control batch to each. Answered per partition once the markers are on the
//! in-sync replicas (Kafka appends them with acks=all). For `__consumer_offsets`
//! partitions the group coordinator writes the marker, which also makes the
//! transaction's offsets committed (or drops them).
//!
//! Needs CLUSTER_ACTION on the cluster, or ALTER on it (KIP-1037, Kafka 3.8+), as Kafka's
//! `KafkaApis.handleWriteTxnMarkersRequest` checks them (ALTER first, without logging its
//! denial). Without either nothing is written and every partition of every marker
//! answers CLUSTER_AUTHORIZATION_FAILED (Kafka's `WriteTxnMarkersRequest.getErrorResponse`).

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use kafka_protocol::ResponseError;
use ottla_controller::OFFSETS_TOPIC;
use ottla_coordinator::CoordinatorError;
use ottla_protocol::control::ControlRecordType;
use ottla_protocol::frame::Request;
use ottla_replica::Partition;

use super::{decode, not_hosted_error, respond, respond_later, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, resource, Caller, CLUSTER_NAME};

/// How long a marker waits for the in-sync replicas (Kafka's `request.timeout.ms`).
const MARKER_REPLICATION_TIMEOUT: Duration = Duration::from_secs(30);

type MarkerFuture = std::pin::Pin<Box<dyn std::future::Future<Output = i16> + Send>>;

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: WriteTxnMarkersRequest = decode(request)?;
    let allowed = caller.allowed_quietly(op::ALTER, resource::CLUSTER, CLUSTER_NAME)
        || caller.allowed_on_cluster(op::CLUSTER_ACTION);
    if !allowed {
        let code = ResponseError::ClusterAuthorizationFailed.code();
        let results = req
            .markers
            .into_iter()
            .map(|marker| {
                let topics = marker
                    .topics
                    .into_iter()
                    .map(|topic| {
                        let partitions = topic
                            .partition_indexes
                            .into_iter()
                            .map(|index| {
                                WritableTxnMarkerPartitionResult::default()
                                    .with_partition_index(index)
                                    .with_error_code(code)
                            })
                            .collect();
                        WritableTxnMarkerTopicResult::default()
                            .with_name(topic.name)
                            .with_partitions(partitions)
                    })
                    .collect();
                WritableTxnMarkerResult::default()
                    .with_producer_id(marker.producer_id)
                    .with_topics(topics)
            })
            .collect();
        return respond(
            request,
            &WriteTxnMarkersResponse::default().with_markers(results),
        );
    }
    let image = broker.controller.image();
    // Every append starts now, in request order; the answers are awaited below.
    let mut markers = Vec::with_capacity(req.markers.len());
    for marker in req.markers {
        let kind = if marker.transaction_result {
            ControlRecordType::Commit
        } else {
            ControlRecordType::Abort
        };
        let mut topics = Vec::with_capacity(marker.topics.len());
        for topic in marker.topics {
            let info = image.topic(topic.name.as_str());
            let mut partitions: Vec<(i32, MarkerFuture)> = Vec::new();
            for index in topic.partition_indexes {
                let answer: MarkerFuture = if topic.name.as_str() == OFFSETS_TOPIC {
                    let done = broker.groups.complete_transaction(
                        index,
                        marker.producer_id.0,
                        marker.producer_epoch,
                        marker.coordinator_epoch,
                        marker.transaction_result,
                    );
                    Box::pin(async move {
                        match done.await {
                            Ok(()) => 0,
                            Err(CoordinatorError::NotCoordinator(_)) => {
                                ResponseError::NotLeaderOrFollower.code()
                            }
                            Err(e) => e.kafka_error_code(),
                        }
                    })
                } else {
                    match info.and_then(|t| broker.replicas.leader(&t.topic_id, index)) {
                        None => {
                            let code = not_hosted_error(info.map(|t| &**t), index);
                            Box::pin(async move { code })
                        }
                        Some(partition) => Box::pin(append_marker(
                            partition,
                            marker.producer_id.0,
                            marker.producer_epoch,
                            marker.coordinator_epoch,
                            kind,
                        )),
                    }
                };
                partitions.push((index, answer));
            }
            topics.push((topic.name, partitions));
        }
        markers.push((marker.producer_id, topics));
    }
    respond_later(request, async move {
        let mut results = Vec::with_capacity(markers.len());
        for (producer_id, topics) in markers {
            let mut topic_results = Vec::with_capacity(topics.len());
            for (name, partitions) in topics {
                let mut partition_results = Vec::with_capacity(partitions.len());
                for (index, answer) in partitions {
                    partition_results.push(
                        WritableTxnMarkerPartitionResult::default()
                            .with_partition_index(index)
                            .with_error_code(answer.await),
                    );
                }
                topic_results.push(
                    WritableTxnMarkerTopicResult::default()
                        .with_name(name)
                        .with_partitions(partition_results),
                );
            }
            results.push(
                WritableTxnMarkerResult::default()
                    .with_producer_id(producer_id)
                    .with_topics(topic_results),
            );
        }
        WriteTxnMarkersResponse::default().with_markers(results)
    })
}

/// Append the marker now; the returned future answers once it is replicated.
fn append_marker(
    partition: Arc<Partition>,
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
    kind: ControlRecordType,
) -> impl std::future::Future<Output = i16> + Send + 'static {
    let appended =
        partition.append_txn_marker(producer_id, producer_epoch, coordinator_epoch, kind);
    async move {
        let appended = match appended {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(
                    "Writing a transaction marker for producer {producer_id} to {} failed: {e}",
                    partition.name()
                );
                return e.kafka_error_code();
            }
        };
        if let Some(plan) = appended.background_flush {
            partition.complete_flush_in_background(plan);
        }
        if let Some(flush) = appended.flush {
            // The high watermark stays below the marker until this fsync completes, so
            // waiting for replication below also waits for it.
            let p = partition.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = p.complete_policy_flush(flush) {
                    tracing::error!("Flushing {} failed: {e}", p.name());
                }
            });
        }
        let end = appended.result.last_offset + 1;
        match partition
            .wait_for_replication(end, appended.leader_epoch, MARKER_REPLICATION_TIMEOUT)
            .await
        {
            Ok(()) => 0,
            Err(e) => e.kafka_error_code(),
        }
    }
}
