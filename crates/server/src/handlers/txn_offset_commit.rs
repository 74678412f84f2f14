//! TxnOffsetCommit (key 28): a transactional producer commits a group's offsets inside
//! its transaction (`sendOffsetsToTransaction`). The group coordinator checks them as
//! an OffsetCommit (generation and member from v3), writes them in a transactional
//! batch, and they become visible to OffsetFetch only when the COMMIT marker reaches
//! the group's partition.
//!
//! v5 comes from transactions-v2 producers (KIP-890 part 2), which send no
//! AddOffsetsToTxn: the group coordinator adds the group's `__consumer_offsets`
//! partition to the producer's transaction itself first, unless the partition already
//! holds that transaction open (Kafka's `CoordinatorPartitionWriter`
//! `maybeStartTransactionVerification`).

use std::collections::HashMap;
use std::sync::Arc;

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use kafka_protocol::ResponseError;
use ottla_controller::OFFSETS_TOPIC;
use ottla_group::types::{OffsetCommitRequest, PartitionOffsetCommit};
use ottla_protocol::frame::Request;

use super::{decode, respond_later, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, Caller};
use crate::txn_verification::{self, VerifyRequest};

/// First version that carries the group's generation and member (KIP-447).
const GROUP_METADATA_SINCE: i16 = 3;
/// First version of transactions v2 (KIP-890 part 2).
const TRANSACTIONS_V2_SINCE: i16 = 5;

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: TxnOffsetCommitRequest = decode(request)?;
    // KafkaApis: WRITE on the transactional id, READ on the group, READ on each topic.
    let refused_all =
        if !caller.allowed_on_transactional_id(op::WRITE, req.transactional_id.as_str()) {
            Some(ResponseError::TransactionalIdAuthorizationFailed.code())
        } else if !caller.allowed_on_group(op::READ, req.group_id.as_str()) {
            Some(ResponseError::GroupAuthorizationFailed.code())
        } else {
            None
        };
    let refused: HashMap<String, i16> = req
        .topics
        .iter()
        .filter_map(|t| match refused_all {
            Some(code) => Some((t.name.to_string(), code)),
            None if !caller.allowed_on_topic(op::READ, t.name.as_str()) => Some((
                t.name.to_string(),
                ResponseError::TopicAuthorizationFailed.code(),
            )),
            None => None,
        })
        .collect();
    // Nothing to commit when every topic is refused: no coordinator call at all.
    let nothing_allowed = !req.topics.is_empty()
        && req
            .topics
            .iter()
            .all(|t| refused.contains_key(t.name.as_str()));
    if refused_all.is_some() || nothing_allowed {
        let topics = req
            .topics
            .into_iter()
            .map(|t| {
                let code = refused
                    .get(t.name.as_str())
                    .copied()
                    .unwrap_or(ResponseError::OperationNotAttempted.code());
                TxnOffsetCommitResponseTopic::default()
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
                    .with_name(t.name)
            })
            .collect();
        return super::respond(
            request,
            &TxnOffsetCommitResponse::default().with_topics(topics),
        );
    }
    let version = request.version();
    let image = broker.controller.image();
    let mut offsets: Vec<PartitionOffsetCommit> = Vec::new();
    let mut seen: HashMap<(String, i32), usize> = HashMap::new();
    for topic in &req.topics {
        // A topic the caller may not read is answered TOPIC_AUTHORIZATION_FAILED; the
        // others are committed.
        if refused.contains_key(topic.name.as_str()) {
            continue;
        }
        let Some(info) = image.topic(topic.name.as_str()) else {
            continue;
        };
        let count = info.partitions.len() as i32;
        for p in topic
            .partitions
            .iter()
            .filter(|p| (0..count).contains(&p.partition_index))
        {
            let commit = PartitionOffsetCommit {
                topic: info.name.clone(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if version >= 2 {
                    p.committed_leader_epoch
                } else {
                    -1
                },
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            };
            match seen.get(&(info.name.clone(), p.partition_index)) {
                Some(&i) => offsets[i] = commit,
                None => {
                    seen.insert((info.name.clone(), p.partition_index), offsets.len());
                    offsets.push(commit);
                }
            }
        }
    }
    let (generation_id, member_id, group_instance_id) = if version >= GROUP_METADATA_SINCE {
        (
            req.generation_id,
            req.member_id.to_string(),
            req.group_instance_id.as_ref().map(|s| s.to_string()),
        )
    } else {
        (-1, String::new(), None)
    };
    let commit = OffsetCommitRequest {
        group_id: req.group_id.to_string(),
        generation_id,
        member_id,
        group_instance_id,
        offsets,
    };
    let to_add = if version >= TRANSACTIONS_V2_SINCE {
        offsets_partition_to_add(broker, &req)
    } else {
        None
    };
    let broker = broker.clone();
    let (producer_id, producer_epoch) = (req.producer_id.0, req.producer_epoch);
    respond_later(request, async move {
        let results: HashMap<(String, i32), i16> = match to_add {
            Some(add) => match add_to_transaction(&broker, add).await {
                0 => commit_results(&broker, commit, producer_id, producer_epoch).await,
                code => commit
                    .offsets
                    .iter()
                    .map(|o| ((o.topic.clone(), o.partition), code))
                    .collect(),
            },
            None => commit_results(&broker, commit, producer_id, producer_epoch).await,
        };
        let topics = req
            .topics
            .into_iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let code = refused
                            .get(t.name.as_str())
                            .or_else(|| results.get(&(t.name.to_string(), p.partition_index)))
                            .copied()
                            .unwrap_or(ResponseError::UnknownTopicOrPartition.code());
                        TxnOffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code)
                    })
                    .collect();
                TxnOffsetCommitResponseTopic::default()
                    .with_name(t.name)
                    .with_partitions(partitions)
            })
            .collect();
        TxnOffsetCommitResponse::default().with_topics(topics)
    })
}

async fn commit_results(
    broker: &Broker,
    commit: OffsetCommitRequest,
    producer_id: i64,
    producer_epoch: i16,
) -> HashMap<(String, i32), i16> {
    broker
        .groups
        .txn_commit_offsets(commit, producer_id, producer_epoch)
        .await
        .into_iter()
        .map(|r| ((r.topic, r.partition), r.error))
        .collect()
}

/// The group's offsets partition, when the producer's transaction is not open there
/// yet (a v5 client never adds it itself).
fn offsets_partition_to_add(
    broker: &Broker,
    req: &TxnOffsetCommitRequest,
) -> Option<VerifyRequest> {
    let partition = broker.groups.partition_for(req.group_id.as_str()).ok()?;
    let image = broker.controller.image();
    let topic = image.topic(OFFSETS_TOPIC)?;
    let open = broker
        .replicas
        .leader(&topic.topic_id, partition)
        .is_some_and(|p| p.has_open_transaction(req.producer_id.0, req.producer_epoch));
    (!open).then(|| VerifyRequest {
        transactional_id: req.transactional_id.to_string(),
        producer_id: req.producer_id.0,
        producer_epoch: req.producer_epoch,
        partitions: vec![(OFFSETS_TOPIC.to_string(), partition)],
        add: true,
    })
}

/// Add the offsets partition to the transaction: 0, or the error every offset gets.
/// The coordinator's unavailability reads COORDINATOR_NOT_AVAILABLE here, as Kafka's
/// group coordinator answers a failed verification.
async fn add_to_transaction(broker: &Arc<Broker>, add: VerifyRequest) -> i16 {
    let code = txn_verification::verify(broker, add)
        .await
        .into_iter()
        .map(|(_, code)| code)
        .find(|code| *code != 0)
        .unwrap_or(0);
    if code == ResponseError::NotEnoughReplicas.code() {
        ResponseError::CoordinatorNotAvailable.code()
    } else {
        code
    }
}
