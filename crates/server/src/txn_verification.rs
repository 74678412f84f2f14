//! Transaction verification (KIP-890 part 1, `transaction.partition.verification.enable`).
//!
//! Without it, a producer could write transactional data to a partition it never added
//! to its transaction (a bug, or a zombie whose AddPartitionsToTxn failed): no marker
//! would ever end that "transaction" there, and the partition's last stable offset
//! would hang for good. So before a partition leader appends the *first* transactional
//! batch of a producer's transaction, it asks the transaction coordinator whether the
//! partition is part of the producer's open transaction: directly when the coordinator
//! is this broker, otherwise with AddPartitionsToTxn v4 `verify_only` over the
//! inter-broker client, as Kafka's `AddPartitionsToTxnManager` does. Later batches of
//! the same transaction find it open in the partition's producer state and skip this.
//!
//! Transactions v2 (KIP-890 part 2) use the same path to *add* the partition instead:
//! a v2 producer never sends AddPartitionsToTxn, so a leader receiving Produce v12+
//! (and the group coordinator receiving TxnOffsetCommit v5+) asks the coordinator to
//! add the partition to the producer's transaction (AddPartitionsToTxn v5 without
//! `verify_only` when it is on another broker), whether or not verification is
//! enabled. Right after a commit the coordinator still writes the previous
//! transaction's markers and answers CONCURRENT_TRANSACTIONS; the add is retried here
//! for a moment (Kafka's `add.partitions.to.txn.retry.backoff.*`) rather than bouncing
//! every new transaction's first batch back to the producer.
//!
//! The coordinator's answer is read in two steps, as in Kafka: [`verdicts`] gives each
//! partition's code as `AddPartitionsToTxnManager` hands it to its caller (the
//! coordinator's code, PRODUCER_FENCED read as INVALID_PRODUCER_EPOCH;
//! COORDINATOR_NOT_AVAILABLE when no coordinator is known, NETWORK_EXCEPTION when it
//! could not be asked), and each caller translates that into its own API's terms and
//! its client's version: the Produce handler (`ReplicaManager.handleProduceAppend`),
//! the TxnOffsetCommit handler for the group coordinator
//! (`GroupCoordinatorService.handleOperationException`). A partition outside the
//! transaction is TRANSACTION_ABORTABLE in the coordinator's answer; the manager
//! reads it as INVALID_TXN_STATE for clients too old to know that error (its
//! `DEFAULT_ERROR`: Produce v0-10, TxnOffsetCommit v0-3), which here is each caller's
//! part of the translation since only the caller knows its request's version.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, ProducerId, TopicName, TransactionalId};
use kafka_protocol::ResponseError;
use ottla_client::{ClientConfig, NodeClients};
use ottla_controller::TRANSACTION_STATE_TOPIC;
use ottla_coordinator::txn::TxnRequestError;
use ottla_txn::TRANSACTION_VERSION_2;

use crate::broker::Broker;
use crate::handlers::str_bytes;

/// The AddPartitionsToTxn version with the verify-only form.
const VERIFY_VERSION: i16 = 4;
/// The AddPartitionsToTxn version a broker adds partitions with for a transactions-v2
/// producer (Kafka sends its latest, 5).
const ADD_VERSION: i16 = 5;
/// Kafka's `add.partitions.to.txn.retry.backoff.ms` default: the first pause before an
/// add that met CONCURRENT_TRANSACTIONS is tried again.
const ADD_RETRY_BACKOFF: Duration = Duration::from_millis(20);
/// Kafka's `add.partitions.to.txn.retry.backoff.max.ms` default: how long an add keeps
/// being retried before CONCURRENT_TRANSACTIONS goes back to the producer.
const ADD_RETRY_MAX: Duration = Duration::from_millis(100);
/// The first pause is shorter than Kafka's: the markers that cause the wait take
/// about a millisecond here.
const ADD_RETRY_FIRST_BACKOFF: Duration = Duration::from_millis(2);

/// One producer's transactional batches to verify or add: (topic, partition) pairs.
pub struct VerifyRequest {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub partitions: Vec<(String, i32)>,
    /// Add the partitions (transactions v2) instead of checking that they are there.
    pub add: bool,
}

/// Asks transaction coordinators on other brokers; one client per broker.
pub struct TxnVerifier {
    clients: NodeClients,
}

impl TxnVerifier {
    pub fn new(config: ClientConfig) -> TxnVerifier {
        TxnVerifier {
            clients: NodeClients::new(config),
        }
    }
}

/// Each partition's verdict as Kafka's `AddPartitionsToTxnManager` gives it to its
/// caller: 0, the coordinator's error (PRODUCER_FENCED read as INVALID_PRODUCER_EPOCH,
/// "producers expect to handle INVALID_PRODUCER_EPOCH in this scenario"),
/// COORDINATOR_NOT_AVAILABLE when no coordinator is known or its answer lacks the
/// partition, NETWORK_EXCEPTION when asking it failed. An add (transactions v2) that
/// meets CONCURRENT_TRANSACTIONS is retried for a moment first.
///
/// TRANSACTION_ABORTABLE (a partition outside the transaction) is left as it is: the
/// manager's reading of it for older clients depends on the request's version, so
/// the caller does it (see the module's documentation).
pub async fn verdicts(broker: &Arc<Broker>, req: VerifyRequest) -> Vec<((String, i32), i16)> {
    let as_manager_gives = |verdicts: Vec<((String, i32), i16)>| {
        verdicts
            .into_iter()
            .map(|(p, code)| {
                if code == ResponseError::ProducerFenced.code() {
                    (p, ResponseError::InvalidProducerEpoch.code())
                } else {
                    (p, code)
                }
            })
            .collect()
    };
    if !req.add {
        return as_manager_gives(ask(broker, &req).await);
    }
    let started = Instant::now();
    let mut backoff = ADD_RETRY_FIRST_BACKOFF;
    loop {
        let verdicts = ask(broker, &req).await;
        let busy = verdicts
            .iter()
            .any(|(_, code)| *code == ResponseError::ConcurrentTransactions.code());
        if !busy || started.elapsed() >= ADD_RETRY_MAX {
            return as_manager_gives(verdicts);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(ADD_RETRY_BACKOFF);
    }
}

/// Ask the coordinator once: its codes; the runtime's own code when the local
/// coordinator could not run the check, COORDINATOR_NOT_AVAILABLE when no coordinator
/// is known, NETWORK_EXCEPTION when the request to it failed.
async fn ask(broker: &Arc<Broker>, req: &VerifyRequest) -> Vec<((String, i32), i16)> {
    let unavailable = ResponseError::CoordinatorNotAvailable.code();
    let all =
        |code: i16, parts: &[(String, i32)]| parts.iter().map(|p| (p.clone(), code)).collect();
    if req.transactional_id.is_empty() {
        // Kafka's coordinator (`handleVerifyPartitionsInTransaction`,
        // `handleAddPartitionsToTransaction`): "if (transactionalId == null ||
        // transactionalId.isEmpty)" -> INVALID_REQUEST. No transaction has that id.
        return all(ResponseError::InvalidRequest.code(), &req.partitions);
    }
    let Ok(txn_partition) = broker
        .txns
        .partition_for(&req.transactional_id)
        .or_else(|_| {
            // The topic's partition count, when this broker has no shard of it yet.
            broker
                .controller
                .image()
                .topic(TRANSACTION_STATE_TOPIC)
                .map(|t| {
                    ottla_group::records::partition_for(
                        &req.transactional_id,
                        t.partitions.len() as i32,
                    )
                })
                .ok_or(())
        })
    else {
        return all(ResponseError::InvalidTxnState.code(), &req.partitions);
    };
    if broker.txns.hosts(txn_partition) && req.add {
        let added = broker
            .txns
            .add_partitions(
                req.transactional_id.clone(),
                req.producer_id,
                req.producer_epoch,
                req.partitions.clone(),
                TRANSACTION_VERSION_2,
            )
            .await;
        return match added {
            Ok(()) => all(0, &req.partitions),
            Err(TxnRequestError::Txn(e)) => all(e.code(), &req.partitions),
            Err(TxnRequestError::Coordinator(e)) => all(e.kafka_error_code(), &req.partitions),
        };
    }
    if broker.txns.hosts(txn_partition) {
        let verdicts = broker
            .txns
            .verify_partitions(
                req.transactional_id.clone(),
                req.producer_id,
                req.producer_epoch,
                req.partitions.clone(),
            )
            .await;
        return match verdicts {
            Ok(each) => req
                .partitions
                .iter()
                .cloned()
                .zip(each)
                .map(|(p, r)| (p, r.map_or_else(|e| e.code(), |()| 0)))
                .collect(),
            Err(TxnRequestError::Txn(e)) => all(e.code(), &req.partitions),
            Err(TxnRequestError::Coordinator(e)) => all(e.kafka_error_code(), &req.partitions),
        };
    }
    // Another broker coordinates the id: ask it.
    let image = broker.controller.image();
    let Some(node) = image
        .topic(TRANSACTION_STATE_TOPIC)
        .and_then(|t| t.partitions.get(txn_partition as usize))
        .and_then(|p| image.brokers.get(&p.leader))
    else {
        return all(unavailable, &req.partitions);
    };
    let client = broker
        .txn_verifier
        .clients
        .get(node.node_id, format!("{}:{}", node.host, node.port));
    let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
    for (topic, p) in &req.partitions {
        match topics.iter_mut().find(|t| t.name.as_str() == topic) {
            Some(t) => t.partitions.push(*p),
            None => topics.push(
                AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(str_bytes(topic.clone())))
                    .with_partitions(vec![*p]),
            ),
        }
    }
    let request = AddPartitionsToTxnRequest::default().with_transactions(vec![
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(TransactionalId(str_bytes(req.transactional_id.clone())))
            .with_producer_id(ProducerId(req.producer_id))
            .with_producer_epoch(req.producer_epoch)
            .with_verify_only(!req.add)
            .with_topics(topics),
    ]);
    let version = if req.add { ADD_VERSION } else { VERIFY_VERSION };
    let response = match client.send(version, &request).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(
                "Could not verify the transaction of {} with broker {}: {e}",
                req.transactional_id,
                node.node_id
            );
            return all(ResponseError::NetworkException.code(), &req.partitions);
        }
    };
    if response.error_code != 0 {
        // Kafka's `AddPartitionsToTxnManager`: a request-level error applies to every
        // partition; CLUSTER_AUTHORIZATION_FAILED is not shown to the client: "Return
        // INVALID_TXN_STATE".
        let code = if response.error_code == ResponseError::ClusterAuthorizationFailed.code() {
            ResponseError::InvalidTxnState.code()
        } else {
            response.error_code
        };
        return all(code, &req.partitions);
    }
    let mut codes: HashMap<(String, i32), i16> = HashMap::new();
    for result in &response.results_by_transaction {
        for topic in &result.topic_results {
            for p in &topic.results_by_partition {
                codes.insert(
                    (topic.name.to_string(), p.partition_index),
                    p.partition_error_code,
                );
            }
        }
    }
    req.partitions
        .iter()
        .cloned()
        .map(|p| {
            let code = codes.get(&p).copied().unwrap_or(unavailable);
            (p, code)
        })
        .collect()
}
