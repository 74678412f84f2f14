//! TxnOffsetCommit (key 28): a transactional producer commits a group's offsets inside
//! its transaction (`sendOffsetsToTransaction`). The group coordinator checks them as
//! an OffsetCommit (generation and member from v3), writes them in a transactional
//! batch, and they become visible to OffsetFetch only when the COMMIT marker reaches
//! the group's partition.
//!
//! Before anything is written, the group's `__consumer_offsets` partition is checked
//! with the transaction coordinator, unless the partition already holds that
//! producer's transaction open (Kafka's `CoordinatorPartitionWriter`
//! `maybeStartTransactionVerification`, through `ReplicaManager` and
//! `AddPartitionsToTxnManager`):
//! - v0-4 (`transaction.partition.verification.enable`, KIP-890 part 1): the check
//!   only *verifies* that AddOffsetsToTxn put the partition in the producer's open
//!   transaction. Without it a wrong epoch, an unknown producer or transactional id, or
//!   a group never added would get NONE and leave a transactional batch in
//!   `__consumer_offsets` that no marker ever ends: the partition's last stable offset
//!   would hang there for good, and `require_stable` fetches of its groups with it.
//! - v5 comes from transactions-v2 producers (KIP-890 part 2), which send no
//!   AddOffsetsToTxn: the group coordinator *adds* the partition to the producer's
//!   transaction itself, whatever the verification setting.

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
/// First version whose clients know TRANSACTION_ABORTABLE (Kafka's
/// `txnOffsetCommitRequestVersionToTransactionSupportedOperation`: v4 is
/// GENERIC_ERROR_SUPPORTED, v0-3 DEFAULT_ERROR).
const TRANSACTION_ABORTABLE_SINCE: i16 = 4;

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
        offset_commit_version: None,
    };
    // v5 adds the partition whatever the setting; v0-4 verify when it is on (Kafka:
    // "!transactionSupportedOperation.supportsEpochBump &&
    // !transactionPartitionVerificationEnable" skips). Nothing to commit (every topic
    // unknown): Kafka does not call the group coordinator at all.
    let add = version >= TRANSACTIONS_V2_SINCE;
    let to_check = if !commit.offsets.is_empty()
        && (add || broker.config.transaction_partition_verification)
    {
        offsets_partition_to_check(broker, &req, add)
    } else {
        None
    };
    let broker = broker.clone();
    let (producer_id, producer_epoch) = (req.producer_id.0, req.producer_epoch);
    respond_later(request, async move {
        let checked = match to_check {
            Some(check) if check.add => add_to_transaction(&broker, check).await,
            Some(check) => verify_in_transaction(&broker, check, version).await,
            None => 0,
        };
        // A refused check writes nothing: every offset gets its error.
        let results: HashMap<(String, i32), i16> = match checked {
            0 => commit_results(&broker, commit, producer_id, producer_epoch).await,
            code => commit
                .offsets
                .iter()
                .map(|o| ((o.topic.clone(), o.partition), code))
                .collect(),
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

/// The group's offsets partition to check with the transaction coordinator (`add`:
/// add it, transactions v2; otherwise verify it), or `None` when there is nothing to
/// check here: the producer's transaction is open there already (Kafka's
/// `UnifiedLog.maybeStartTransactionVerification`: "if (hasOngoingTransaction(producerId,
/// epoch)) VerificationGuard.SENTINEL"), or this broker is not the group's coordinator
/// (the commit then answers NOT_COORDINATOR, as Kafka's does when the partition is
/// not led here), or the group id is empty (INVALID_GROUP_ID, which Kafka's
/// `GroupCoordinatorService` answers before any verification).
fn offsets_partition_to_check(
    broker: &Broker,
    req: &TxnOffsetCommitRequest,
    add: bool,
) -> Option<VerifyRequest> {
    if req.group_id.is_empty() {
        return None;
    }
    let partition = broker.groups.partition_for(req.group_id.as_str()).ok()?;
    let image = broker.controller.image();
    let topic = image.topic(OFFSETS_TOPIC)?;
    let leader = broker.replicas.leader(&topic.topic_id, partition)?;
    if leader.has_open_transaction(req.producer_id.0, req.producer_epoch) {
        return None;
    }
    Some(VerifyRequest {
        transactional_id: req.transactional_id.to_string(),
        producer_id: req.producer_id.0,
        producer_epoch: req.producer_epoch,
        partitions: vec![(OFFSETS_TOPIC.to_string(), partition)],
        add,
    })
}

/// The first error among the coordinator's verdicts, or 0.
async fn first_error(broker: &Arc<Broker>, check: VerifyRequest) -> i16 {
    txn_verification::verdicts(broker, check)
        .await
        .into_iter()
        .map(|(_, code)| code)
        .find(|code| *code != 0)
        .unwrap_or(0)
}

/// v5: add the offsets partition to the transaction: 0, or the error every offset
/// gets. Every retriable failure (the coordinator unavailable, or still busy with the
/// previous transaction's markers after the retries) reads COORDINATOR_NOT_AVAILABLE
/// here, which clients retry after looking the coordinator up again (Kafka's Java
/// client treats CONCURRENT_TRANSACTIONS in a TxnOffsetCommit answer as fatal).
async fn add_to_transaction(broker: &Arc<Broker>, add: VerifyRequest) -> i16 {
    let code = first_error(broker, add).await;
    let retriable = [
        ResponseError::NetworkException,
        ResponseError::NotCoordinator,
        ResponseError::CoordinatorLoadInProgress,
        ResponseError::CoordinatorNotAvailable,
        ResponseError::ConcurrentTransactions,
    ];
    if retriable.iter().any(|e| e.code() == code) {
        ResponseError::CoordinatorNotAvailable.code()
    } else {
        code
    }
}

/// v0-4: verify that the offsets partition is in the producer's open transaction
/// (AddPartitionsToTxn `verify_only`): 0, or the error every offset gets, as Kafka
/// 4.1 answers it. Its verdicts arrive as `AddPartitionsToTxnManager` gives them
/// (INVALID_PRODUCER_EPOCH for a fenced epoch, INVALID_PRODUCER_ID_MAPPING for an
/// unknown id or producer, CONCURRENT_TRANSACTIONS while the previous transaction
/// commits or aborts, and the coordinator's TRANSACTION_ABORTABLE for a partition not
/// in the transaction, which the manager reads as INVALID_TXN_STATE for v0-3) and
/// become TxnOffsetCommit errors as in `GroupCoordinatorService`:
///
/// ```java
/// // AddPartitionsToTxnManager (DEFAULT_ERROR is TxnOffsetCommit v0-3)
/// } else if (partitionResult.partitionErrorCode() == Errors.TRANSACTION_ABORTABLE.code()
///         && transactionDataAndCallbacks.transactionSupportedOperation().equals(DEFAULT_ERROR)) {
///     code = Errors.INVALID_TXN_STATE.code();
/// // GroupCoordinatorService.handleOperationException
/// case NETWORK_EXCEPTION:
///     return handler.apply(Errors.COORDINATOR_LOAD_IN_PROGRESS, null);
/// case UNKNOWN_TOPIC_OR_PARTITION: case NOT_ENOUGH_REPLICAS: case REQUEST_TIMED_OUT:
///     return handler.apply(Errors.COORDINATOR_NOT_AVAILABLE, null);
/// case NOT_LEADER_OR_FOLLOWER: case KAFKA_STORAGE_ERROR:
///     return handler.apply(Errors.NOT_COORDINATOR, null);
/// case MESSAGE_TOO_LARGE: case RECORD_LIST_TOO_LARGE: case INVALID_FETCH_SIZE:
///     return handler.apply(Errors.UNKNOWN_SERVER_ERROR, null);
/// ```
async fn verify_in_transaction(broker: &Arc<Broker>, check: VerifyRequest, version: i16) -> i16 {
    verification_error(first_error(broker, check).await, version)
}

/// See [`verify_in_transaction`].
fn verification_error(code: i16, version: i16) -> i16 {
    use ResponseError as E;
    let error = match E::try_from_code(code) {
        Some(E::TransactionAbortable) if version < TRANSACTION_ABORTABLE_SINCE => {
            E::InvalidTxnState
        }
        Some(E::NetworkException) => E::CoordinatorLoadInProgress,
        Some(E::UnknownTopicOrPartition | E::NotEnoughReplicas | E::RequestTimedOut) => {
            E::CoordinatorNotAvailable
        }
        Some(E::NotLeaderOrFollower | E::KafkaStorageError) => E::NotCoordinator,
        Some(E::MessageTooLarge | E::RecordListTooLarge | E::InvalidFetchSize) => {
            E::UnknownServerError
        }
        _ => return code,
    };
    error.code()
}
