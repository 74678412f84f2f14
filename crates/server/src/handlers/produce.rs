//! Produce (key 0): validate each partition's batch and append it as leader.
//!
//! Produce v3+ carries exactly one v2 record batch per partition (Kafka's
//! `ProduceRequest.validateRecords`). The batch is appended as sent; only its header
//! is rewritten (see `ottla_replica::Partition::append_as_leader`).
//!
//! With acks=all the answer waits until the high watermark passes the batch (every
//! in-sync replica has it), bounded by the request's `timeout_ms` (Kafka's
//! `DelayedProduce`): REQUEST_TIMED_OUT when it expires, NOT_ENOUGH_REPLICAS_AFTER_APPEND
//! when the ISR shrank below `min.insync.replicas` meanwhile, NOT_LEADER_OR_FOLLOWER
//! when leadership moved. Answers refused for leadership reasons carry KIP-951's hint
//! of the current leader (see `crate::leader_hints`).
//!
//! A request with transactional records must name a transactional id (which the caller
//! may WRITE, when there is an authorizer); otherwise every partition of it is answered
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED and nothing is written (see `unauthorized`).
//! The first transactional batch of a transaction in a partition is verified with the
//! transaction coordinator first (`transaction.partition.verification.enable`, see
//! `crate::txn_verification`); if the partition is not part of the transaction the
//! batch is refused with TRANSACTION_ABORTABLE, or INVALID_TXN_STATE for v0-10 (whose
//! clients do not know that error; see [`verification_refusal`]). From v12
//! (transactions v2, KIP-890 part 2) the leader adds the partition to the producer's
//! transaction instead: such producers never send AddPartitionsToTxn.
//!
//! A topic whose `flush.messages` asks for an fsync gets it before the answer, as in
//! Kafka. The fsyncs run on the blocking pool, without the partition's lock, so the
//! connection goes on reading and appending its pipelined requests and other producers
//! to the partition are not held up.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;
use ottla_controller::TopicInfo;
use ottla_protocol::batch::{BatchHeaderView, BatchIter};
use ottla_protocol::frame::Request;
use ottla_replica::{Appended, Partition, PolicyFlush};

use super::{decode, encode, respond, str_bytes, AdvertisedEndpoint, HandlerError, Reply};
use crate::broker::Broker;
use crate::leader_hints::{self, LeaderHints};
use crate::security::authorizer::{op, Caller};
use crate::txn_verification::{self, VerifyRequest};

/// The first Produce version sent by transactions-v2 producers (KIP-890 part 2).
const FIRST_TRANSACTIONS_V2_VERSION: i16 = 12;
/// The first Produce version whose clients know TRANSACTION_ABORTABLE (Kafka's
/// `produceRequestVersionToTransactionSupportedOperation`: v0-10 `DEFAULT_ERROR`, v11
/// `GENERIC_ERROR_SUPPORTED`, v12+ `ADD_PARTITION`).
const FIRST_TRANSACTION_ABORTABLE_VERSION: i16 = 11;

/// A partition's refusal before any append: its error code and message.
type Refusal = (i16, Option<String>);

fn partition_error(
    index: i32,
    code: i16,
    message: Option<String>,
    version: i16,
) -> PartitionProduceResponse {
    let mut r = PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1);
    if version >= 8 {
        r = r.with_error_message(message.map(str_bytes));
    }
    r
}

/// Kafka's `RequestUtils.hasTransactionalRecords`: the first batch of some partition's
/// records has the transactional bit (attributes bit 4; markers have it too).
fn has_transactional_records(req: &ProduceRequest) -> bool {
    req.topic_data.iter().any(|t| {
        t.partition_data.iter().any(|p| {
            p.records
                .as_ref()
                .and_then(|r| BatchHeaderView::parse(r).ok())
                .is_some_and(|h| h.is_transactional())
        })
    })
}

/// The partitions refused before anything is looked at, with Kafka's error
/// (`KafkaApis.handleProduceRequest`).
///
/// Transactional records need a transactional id the caller may WRITE, or the whole
/// request (every partition, transactional or not, known topic or not) is answered
/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
///
/// ```scala
/// if (RequestUtils.hasTransactionalRecords(produceRequest)) {
///   val isAuthorizedTransactional = produceRequest.transactionalId != null &&
///     authHelper.authorize(request.context, WRITE, TRANSACTIONAL_ID, produceRequest.transactionalId)
///   if (!isAuthorizedTransactional) {
///     requestHelper.sendErrorResponseMaybeThrottle(request, Errors.TRANSACTIONAL_ID_AUTHORIZATION_FAILED.exception)
/// ```
///
/// The null check holds without an authorizer too (`authorize` alone is then true):
/// a transactional batch without an id would open a transaction no coordinator knows
/// of, so no marker would ever end it and the partition's last stable offset would
/// stay behind it for good. Without transactional records the id is not checked at
/// all, whatever it is. Then, with an authorizer, WRITE on each topic
/// (TOPIC_AUTHORIZATION_FAILED for that topic's partitions).
fn unauthorized(req: &ProduceRequest, caller: &Caller) -> HashMap<(String, i32), i16> {
    let mut denied = HashMap::new();
    if has_transactional_records(req) {
        // An empty id is an id here, as in Kafka (only null is "none"); verification
        // then refuses it (see `txn_verification`).
        let allowed = req
            .transactional_id
            .as_ref()
            .is_some_and(|id| caller.allowed_on_transactional_id(op::WRITE, id.as_str()));
        if !allowed {
            let code = ResponseError::TransactionalIdAuthorizationFailed.code();
            for topic in &req.topic_data {
                for p in &topic.partition_data {
                    denied.insert((topic.name.to_string(), p.index), code);
                }
            }
            return denied;
        }
    }
    if !caller.has_authorizer() {
        return denied;
    }
    for topic in &req.topic_data {
        if caller.allowed_on_topic(op::WRITE, topic.name.as_str()) {
            continue;
        }
        for p in &topic.partition_data {
            denied.insert(
                (topic.name.to_string(), p.index),
                ResponseError::TopicAuthorizationFailed.code(),
            );
        }
    }
    denied
}

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
    here: &AdvertisedEndpoint,
) -> Result<Reply, HandlerError> {
    let req: ProduceRequest = decode(request)?;
    let denied = unauthorized(&req, caller);
    // v12+ comes from transactions-v2 producers, which leave adding the partition to
    // their transaction to the leader: that happens whatever the verification setting.
    let add = request.version() >= FIRST_TRANSACTIONS_V2_VERSION;
    let to_verify = if add || broker.config.transaction_partition_verification {
        transaction_to_verify(broker, &req, add, &denied)
    } else {
        None
    };
    let Some(to_verify) = to_verify else {
        // Unauthorized partitions are answered with their error, never appended.
        return handle_decoded(broker, request, req, &denial_refusals(denied), here);
    };
    // The first batch of a transaction in a partition: ask the coordinator first. The
    // connection awaits this, so the appends still happen in request order.
    let broker = broker.clone();
    let request = request.clone();
    let here = here.clone();
    Ok(Reply::Await(Box::pin(async move {
        let version = request.version();
        let verdicts = txn_verification::verdicts(&broker, to_verify).await;
        let mut refused: HashMap<(String, i32), Refusal> = HashMap::new();
        for ((topic, p), code) in verdicts.into_iter().filter(|(_, code)| *code != 0) {
            tracing::debug!(
                "Refused transactional produce to {topic}-{p}: transaction verification answered {code}"
            );
            refused.insert((topic, p), verification_refusal(code, version));
        }
        refused.extend(denial_refusals(denied));
        handle_decoded(&broker, &request, req, &refused, &here)
    })))
}

/// The authorization refusals with their messages: none for
/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED (Kafka's error response for the whole request
/// carries none: `ApiError.fromThrowable` drops the error's generic one).
fn denial_refusals(denied: HashMap<(String, i32), i16>) -> HashMap<(String, i32), Refusal> {
    denied
        .into_iter()
        .map(|(p, code)| {
            let message = (code == ResponseError::TopicAuthorizationFailed.code())
                .then(|| "Not authorized to write".to_string());
            (p, (code, message))
        })
        .collect()
}

/// What a transaction coordinator's verdict (as [`txn_verification::verdicts`] gives
/// it) becomes in the answer to a Produce v`version`, as in Kafka 4.1. First
/// `AddPartitionsToTxnManager` reads TRANSACTION_ABORTABLE as INVALID_TXN_STATE for
/// clients that do not know it:
///
/// ```java
/// } else if (partitionResult.partitionErrorCode() == Errors.TRANSACTION_ABORTABLE.code()
///         && transactionDataAndCallbacks.transactionSupportedOperation().equals(DEFAULT_ERROR)) { // For backward compatibility with clients
///     code = Errors.INVALID_TXN_STATE.code();
/// ```
///
/// then `ReplicaManager.handleProduceAppend` translates the rest, with a message only
/// where it makes its own exception:
///
/// ```scala
/// case Errors.INVALID_TXN_STATE => Some(error.exception("Partition was not added to the transaction"))
/// case Errors.NETWORK_EXCEPTION |
///      Errors.COORDINATOR_LOAD_IN_PROGRESS |
///      Errors.COORDINATOR_NOT_AVAILABLE |
///      Errors.NOT_COORDINATOR => Some(new NotEnoughReplicasException(
///   s"Unable to verify the partition has been added to the transaction. Underlying error: ${error.toString}"))
/// case Errors.CONCURRENT_TRANSACTIONS =>
///   if (!transactionSupportedOperation.supportsEpochBump) {
///     Some(new NotEnoughReplicasException(...))
///   } else {
///     // Don't convert the Concurrent Transaction exception for TV2. ...
///     None
///   }
/// case _ => None
/// ```
///
/// NOT_ENOUGH_REPLICAS is retriable and, unlike the coordinator errors, "does not
/// trigger a metadata refresh".
fn verification_refusal(code: i16, version: i16) -> Refusal {
    use ResponseError as E;
    let error = E::try_from_code(code);
    let unverified = |name: &str| {
        (
            E::NotEnoughReplicas.code(),
            Some(format!(
                "Unable to verify the partition has been added to the transaction. Underlying error: {name}"
            )),
        )
    };
    match error {
        Some(E::TransactionAbortable) if version < FIRST_TRANSACTION_ABORTABLE_VERSION => (
            E::InvalidTxnState.code(),
            Some("Partition was not added to the transaction".to_string()),
        ),
        Some(E::InvalidTxnState) => (
            code,
            Some("Partition was not added to the transaction".to_string()),
        ),
        Some(E::NetworkException) => unverified("NETWORK_EXCEPTION"),
        Some(E::CoordinatorLoadInProgress) => unverified("COORDINATOR_LOAD_IN_PROGRESS"),
        Some(E::CoordinatorNotAvailable) => unverified("COORDINATOR_NOT_AVAILABLE"),
        Some(E::NotCoordinator) => unverified("NOT_COORDINATOR"),
        Some(E::ConcurrentTransactions) if version < FIRST_TRANSACTIONS_V2_VERSION => {
            unverified("CONCURRENT_TRANSACTIONS")
        }
        _ => (code, None),
    }
}

/// The partitions whose transactional batch opens the producer's transaction there
/// (KIP-890 part 1: they are verified with the transaction coordinator first; part 2,
/// `add`: the coordinator adds them).
fn transaction_to_verify(
    broker: &Broker,
    req: &ProduceRequest,
    add: bool,
    denied: &HashMap<(String, i32), i16>,
) -> Option<VerifyRequest> {
    // Kafka verifies whenever the id is not null: an empty one is refused by the
    // coordinator (INVALID_REQUEST) rather than let through unchecked.
    let transactional_id = req.transactional_id.as_ref()?;
    let image = broker.controller.image();
    let mut producer: Option<(i64, i16)> = None;
    let mut partitions = Vec::new();
    for topic_data in &req.topic_data {
        let Some(topic) = image.topic(topic_data.name.as_str()) else {
            continue;
        };
        for data in &topic_data.partition_data {
            if !denied.is_empty() && denied.contains_key(&(topic_data.name.to_string(), data.index))
            {
                continue;
            }
            let Some(header) = data
                .records
                .as_ref()
                .and_then(|r| BatchHeaderView::parse(r).ok())
            else {
                continue;
            };
            if !header.is_transactional() || header.is_control() || !header.has_producer_id() {
                continue;
            }
            let Some(partition) = broker.replicas.leader(&topic.topic_id, data.index) else {
                continue;
            };
            // One producer per request; a batch of another is checked as this one's
            // (and fails), never waved through.
            let (pid, epoch) =
                *producer.get_or_insert((header.producer_id(), header.producer_epoch()));
            if !partition.has_open_transaction(pid, epoch)
                || (header.producer_id(), header.producer_epoch()) != (pid, epoch)
            {
                partitions.push((topic.name.clone(), data.index));
            }
        }
    }
    let (producer_id, producer_epoch) = producer?;
    (!partitions.is_empty()).then(|| VerifyRequest {
        transactional_id: transactional_id.to_string(),
        producer_id,
        producer_epoch,
        partitions,
        add,
    })
}

fn handle_decoded(
    broker: &Arc<Broker>,
    request: &Request,
    req: ProduceRequest,
    refused: &HashMap<(String, i32), Refusal>,
    here: &AdvertisedEndpoint,
) -> Result<Reply, HandlerError> {
    let version = request.version();
    let acks = req.acks;
    let timeout = std::time::Duration::from_millis(req.timeout_ms.max(0) as u64);
    let image = broker.controller.image();
    let mut any_error = false;
    let mut responses = Vec::with_capacity(req.topic_data.len());
    let mut flushes = Vec::new();
    let mut replication = Vec::new();
    for topic_data in req.topic_data {
        let name = topic_data.name.as_str().to_string();
        let topic = image.topic(&name).cloned();
        let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
        for data in topic_data.partition_data {
            let index = data.index;
            if let Some((code, message)) = refused.get(&(name.clone(), index)) {
                any_error = true;
                partitions.push(partition_error(index, *code, message.clone(), version));
                continue;
            }
            let (partition, appended) = match append(
                broker,
                topic.as_deref(),
                &name,
                index,
                data.records,
                acks,
                version,
            ) {
                Ok(done) => done,
                Err(Rejected { code, message }) => {
                    any_error = true;
                    partitions.push(partition_error(index, code, message, version));
                    continue;
                }
            };
            if let Some(plan) = appended.background_flush {
                partition.complete_flush_in_background(plan);
            }
            if let Some(flush) = appended.flush {
                flushes.push(PendingFlush {
                    partition: partition.clone(),
                    flush,
                    topic: responses.len(),
                    index: partitions.len(),
                });
            }
            let result = appended.result;
            if acks == -1 && partition.high_watermark() <= result.last_offset {
                replication.push(PendingReplication {
                    partition,
                    end: result.last_offset + 1,
                    leader_epoch: appended.leader_epoch,
                    topic: responses.len(),
                    index: partitions.len(),
                });
            }
            let mut r = PartitionProduceResponse::default()
                .with_index(index)
                .with_base_offset(result.base_offset)
                .with_log_append_time_ms(result.log_append_time);
            if version >= 5 {
                r = r.with_log_start_offset(result.log_start_offset);
            }
            partitions.push(r);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic_data.name)
                .with_partition_responses(partitions),
        );
    }
    if acks == 0 {
        if !flushes.is_empty() {
            // Nobody waits for the answer, but the policy still wants the fsync.
            tokio::task::spawn_blocking(move || complete_flushes(flushes));
        }
        // Kafka sends nothing for acks=0, and closes the connection on an error so the
        // producer notices something went wrong and refreshes its metadata.
        return if any_error {
            Err(HandlerError::AcksZeroError)
        } else {
            Ok(Reply::Nothing)
        };
    }
    if flushes.is_empty() && replication.is_empty() {
        let mut response = ProduceResponse::default().with_responses(responses);
        add_leader_hints(broker, version, here, &mut response);
        return respond(request, &response);
    }
    let (api_key, version, correlation_id) = (request.api_key, version, request.correlation_id());
    let all: Vec<(usize, usize)> = flushes.iter().map(|f| (f.topic, f.index)).collect();
    // Started now, not when the reply's turn comes: it runs to the end even if the
    // connection goes away first, so no plan is left unfinished (an unfinished plan
    // would hold the log's recovery point back until restart).
    let flushing = tokio::task::spawn_blocking(move || complete_flushes(flushes));
    let broker = broker.clone();
    let here = here.clone();
    Ok(Reply::Later(Box::pin(async move {
        let failed = match flushing.await {
            Ok(failed) => failed,
            Err(e) => {
                tracing::error!("Flushing after a produce failed: {e}");
                all
            }
        };
        for (topic, index) in failed {
            // Kafka answers KAFKA_STORAGE_ERROR for a partition whose log cannot be
            // written (it takes the log directory offline).
            responses[topic].partition_responses[index] = partition_error(
                responses[topic].partition_responses[index].index,
                ResponseError::KafkaStorageError.code(),
                Some("fsync failed".to_string()),
                version,
            );
        }
        // acks=all: every partition's wait runs at once, under one deadline; one whose
        // flush failed already has its answer.
        let replication: Vec<PendingReplication> = replication
            .into_iter()
            .filter(|w| responses[w.topic].partition_responses[w.index].error_code == 0)
            .collect();
        let waits = replication.iter().map(|w| {
            w.partition
                .wait_for_replication(w.end, w.leader_epoch, timeout)
        });
        let outcomes = futures_util::future::join_all(waits).await;
        for (w, outcome) in replication.iter().zip(outcomes) {
            if let Err(e) = outcome {
                tracing::debug!(
                    "Produce to {} failed after the append: {e}",
                    w.partition.name()
                );
                responses[w.topic].partition_responses[w.index] = partition_error(
                    responses[w.topic].partition_responses[w.index].index,
                    e.kafka_error_code(),
                    Some(e.to_string()),
                    version,
                );
            }
        }
        let mut response = ProduceResponse::default().with_responses(responses);
        add_leader_hints(&broker, version, &here, &mut response);
        encode(api_key, version, correlation_id, &response)
    })))
}

/// KIP-951: a partition refused because this broker does not lead it (or no longer
/// does) names its current leader, and the response says where that leader is.
fn add_leader_hints(
    broker: &Broker,
    version: i16,
    here: &AdvertisedEndpoint,
    response: &mut ProduceResponse,
) {
    if version < leader_hints::FIRST_PRODUCE_VERSION {
        return;
    }
    let mut hints = LeaderHints::new(broker.controller.image(), here.clone());
    for topic in &mut response.responses {
        let info = hints.image().topic(topic.name.as_str()).cloned();
        for p in &mut topic.partition_responses {
            if let Some((leader, epoch)) =
                hints.current_leader(info.as_deref(), p.index, p.error_code)
            {
                p.current_leader = LeaderIdAndEpoch::default()
                    .with_leader_id(BrokerId(leader))
                    .with_leader_epoch(epoch);
            }
        }
    }
    response.node_endpoints = leader_hints::node_endpoints!(hints, NodeEndpoint);
}

/// Why one partition's part of a Produce request is refused: Kafka's error code, and
/// the message for versions that carry one.
struct Rejected {
    code: i16,
    message: Option<String>,
}

impl Rejected {
    fn new(code: i16, message: Option<String>) -> Rejected {
        Rejected { code, message }
    }
}

/// Check and append one partition's records (a single v2 batch, Kafka's
/// `ProduceRequest.validateRecords`).
fn append(
    broker: &Broker,
    topic: Option<&TopicInfo>,
    name: &str,
    index: i32,
    records: Option<Bytes>,
    acks: i16,
    version: i16,
) -> Result<(Arc<Partition>, Appended), Rejected> {
    if !matches!(acks, -1..=1) {
        return Err(Rejected::new(
            ResponseError::InvalidRequiredAcks.code(),
            None,
        ));
    }
    if topic.is_some_and(TopicInfo::is_internal) {
        // Kafka: "Cannot append to internal topic". Only the broker's own coordinators
        // write there.
        return Err(Rejected::new(
            ResponseError::InvalidTopicException.code(),
            Some(format!("Cannot append to internal topic {name}")),
        ));
    }
    let Some(partition) = topic.and_then(|t| broker.replicas.leader(&t.topic_id, index)) else {
        return Err(Rejected::new(super::not_hosted_error(topic, index), None));
    };
    let records = records.unwrap_or_default();
    // Exactly one whole batch: count batches without copying.
    let mut batches = BatchIter::new(&records);
    let single = match (batches.next(), batches.next()) {
        (Some(Ok(_)), None) => Ok(()),
        (Some(Err(e)), _) => Err((e.kafka_error_code(), e.to_string())),
        (None, _) => Err((
            ResponseError::InvalidRecord.code(),
            "Produce request contains no record batch".to_string(),
        )),
        (Some(Ok(_)), Some(_)) => Err((
            ResponseError::InvalidRecord.code(),
            format!(
                "Produce requests with version {version} must have exactly one record batch \
                 per partition"
            ),
        )),
    };
    let appended = single.and_then(|()| {
        partition
            .append_as_leader(records.to_vec(), acks)
            .map_err(|e| (e.kafka_error_code(), e.to_string()))
    });
    match appended {
        Ok(appended) => Ok((partition, appended)),
        Err((code, message)) => {
            tracing::debug!("Rejected produce to {}: {message}", partition.name());
            Err(Rejected::new(code, Some(message)))
        }
    }
}

/// An acks=all append whose answer waits for the in-sync replicas.
struct PendingReplication {
    partition: Arc<Partition>,
    /// The offset after the batch: the high watermark must reach it.
    end: i64,
    leader_epoch: i32,
    /// Where the partition's answer is: `responses[topic].partition_responses[index]`.
    topic: usize,
    index: usize,
}

/// An fsync a partition's flush policy wants before its part of the answer goes out.
struct PendingFlush {
    partition: Arc<Partition>,
    flush: PolicyFlush,
    /// Where the partition's answer is: `responses[topic].partition_responses[index]`.
    topic: usize,
    index: usize,
}

/// Run the fsyncs (blocking); returns where the answers of the failed ones are.
fn complete_flushes(flushes: Vec<PendingFlush>) -> Vec<(usize, usize)> {
    let mut failed = Vec::new();
    for f in flushes {
        // The log reports the failure (once) and keeps its recovery point.
        if f.partition.complete_policy_flush(f.flush).is_err() {
            failed.push((f.topic, f.index));
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka 4.1's verdict-to-Produce table, by request version.
    #[test]
    fn verification_refusals_follow_kafkas_produce_versions() {
        use ResponseError as E;
        let not_added = Some("Partition was not added to the transaction".to_string());
        let unverified = |name: &str| {
            (
                E::NotEnoughReplicas.code(),
                Some(format!(
                    "Unable to verify the partition has been added to the transaction. Underlying error: {name}"
                )),
            )
        };
        let abortable = E::TransactionAbortable.code();
        // DEFAULT_ERROR (v0-10): INVALID_TXN_STATE; GENERIC_ERROR_SUPPORTED (v11) and
        // ADD_PARTITION (v12): TRANSACTION_ABORTABLE, with no message of the broker's.
        for version in [0, 3, 9, 10] {
            assert_eq!(
                verification_refusal(abortable, version),
                (E::InvalidTxnState.code(), not_added.clone()),
                "v{version}"
            );
        }
        for version in [11, 12] {
            assert_eq!(
                verification_refusal(abortable, version),
                (abortable, None),
                "v{version}"
            );
        }
        // Whatever the version.
        for version in [9, 11, 12] {
            assert_eq!(
                verification_refusal(E::InvalidTxnState.code(), version),
                (E::InvalidTxnState.code(), not_added.clone())
            );
            assert_eq!(
                verification_refusal(E::NetworkException.code(), version),
                unverified("NETWORK_EXCEPTION")
            );
            assert_eq!(
                verification_refusal(E::CoordinatorNotAvailable.code(), version),
                unverified("COORDINATOR_NOT_AVAILABLE")
            );
            for plain in [
                E::InvalidProducerEpoch,
                E::InvalidProducerIdMapping,
                E::InvalidRequest,
            ] {
                assert_eq!(
                    verification_refusal(plain.code(), version),
                    (plain.code(), None)
                );
            }
        }
        // CONCURRENT_TRANSACTIONS: retriable NOT_ENOUGH_REPLICAS unless the leader
        // added the partition (v12, `supportsEpochBump`).
        for version in [9, 10, 11] {
            assert_eq!(
                verification_refusal(E::ConcurrentTransactions.code(), version),
                unverified("CONCURRENT_TRANSACTIONS")
            );
        }
        assert_eq!(
            verification_refusal(E::ConcurrentTransactions.code(), 12),
            (E::ConcurrentTransactions.code(), None)
        );
    }
}
