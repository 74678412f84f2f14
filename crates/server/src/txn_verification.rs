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

use std::collections::HashMap;
use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, ProducerId, TopicName, TransactionalId};
use kafka_protocol::ResponseError;
use ottla_client::{ClientConfig, NodeClients};
use ottla_controller::TRANSACTION_STATE_TOPIC;
use ottla_coordinator::txn::TxnRequestError;

use crate::broker::Broker;
use crate::handlers::str_bytes;

/// The AddPartitionsToTxn version with the verify-only form.
const VERIFY_VERSION: i16 = 4;

/// One producer's transactional batches to verify: (topic, partition) pairs.
pub struct VerifyRequest {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub partitions: Vec<(String, i32)>,
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

/// Each partition's verdict: 0 (part of the open transaction) or the Produce error to
/// answer: INVALID_TXN_STATE when it is not, INVALID_PRODUCER_EPOCH for a fenced
/// producer, NOT_ENOUGH_REPLICAS (retriable, as Kafka maps it) when the coordinator
/// could not be asked.
pub async fn verify(broker: &Arc<Broker>, req: VerifyRequest) -> Vec<((String, i32), i16)> {
    let retriable = ResponseError::NotEnoughReplicas.code();
    let all =
        |code: i16, parts: &[(String, i32)]| parts.iter().map(|p| (p.clone(), code)).collect();
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
                .into_iter()
                .zip(each)
                .map(|(p, r)| (p, r.map_or_else(|e| produce_code(e.code()), |()| 0)))
                .collect(),
            Err(TxnRequestError::Txn(e)) => all(produce_code(e.code()), &req.partitions),
            Err(TxnRequestError::Coordinator(_)) => all(retriable, &req.partitions),
        };
    }
    // Another broker coordinates the id: ask it.
    let image = broker.controller.image();
    let Some(node) = image
        .topic(TRANSACTION_STATE_TOPIC)
        .and_then(|t| t.partitions.get(txn_partition as usize))
        .and_then(|p| image.brokers.get(&p.leader))
    else {
        return all(retriable, &req.partitions);
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
            .with_verify_only(true)
            .with_topics(topics),
    ]);
    let response = match client.send(VERIFY_VERSION, &request).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(
                "Could not verify the transaction of {} with broker {}: {e}",
                req.transactional_id,
                node.node_id
            );
            return all(retriable, &req.partitions);
        }
    };
    let mut codes: HashMap<(String, i32), i16> = HashMap::new();
    for result in &response.results_by_transaction {
        for topic in &result.topic_results {
            for p in &topic.results_by_partition {
                codes.insert(
                    (topic.name.to_string(), p.partition_index),
                    produce_code(p.partition_error_code),
                );
            }
        }
    }
    req.partitions
        .into_iter()
        .map(|p| {
            let code = codes.get(&p).copied().unwrap_or(retriable);
            (p, code)
        })
        .collect()
}

/// What a coordinator's verdict becomes in a Produce answer.
fn produce_code(code: i16) -> i16 {
    if code == ResponseError::ProducerFenced.code() {
        ResponseError::InvalidProducerEpoch.code()
    } else if code == ResponseError::NotCoordinator.code()
        || code == ResponseError::CoordinatorLoadInProgress.code()
        || code == ResponseError::CoordinatorNotAvailable.code()
        || code == ResponseError::ConcurrentTransactions.code()
    {
        ResponseError::NotEnoughReplicas.code()
    } else {
        code
    }
}
