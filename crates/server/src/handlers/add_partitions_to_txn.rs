//! AddPartitionsToTxn (key 24): add partitions to a producer's open transaction (and
//! open one). v0-3 come from producers, one transaction per request; v4+ (KIP-890)
//! batch several transactions and may only *verify* that partitions are already in
//! them (what a partition leader asks before it accepts transactional data), or add
//! them for a transactions-v2 producer (KIP-890 part 2: such a producer never sends
//! this request itself; the leader of the partition it writes to does).

use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, TopicName};
use kafka_protocol::ResponseError;
use ottla_controller::MetadataImage;
use ottla_protocol::frame::Request;
use ottla_txn::TRANSACTION_VERSION_2;

use super::{decode, respond_later, txn_error_code, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, Caller};

/// First version that knows PRODUCER_FENCED (KIP-588); older ones get
/// INVALID_PRODUCER_EPOCH instead.
const PRODUCER_FENCED_SINCE: i16 = 2;

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: AddPartitionsToTxnRequest = decode(request)?;
    let version = request.version();
    let image = broker.controller.image();
    if version <= 3 {
        let answer = add_one(
            broker,
            &image,
            req.v3_and_below_transactional_id.to_string(),
            req.v3_and_below_producer_id.0,
            req.v3_and_below_producer_epoch,
            false,
            req.v3_and_below_topics,
            version >= PRODUCER_FENCED_SINCE,
            false,
            caller,
        );
        return respond_later(request, async move {
            AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(answer.await)
        });
    }
    let answers: Vec<_> = req
        .transactions
        .into_iter()
        .map(|t| {
            let id = t.transactional_id.clone();
            let answer = add_one(
                broker,
                &image,
                t.transactional_id.to_string(),
                t.producer_id.0,
                t.producer_epoch,
                t.verify_only,
                t.topics,
                true,
                true,
                caller,
            );
            (id, answer)
        })
        .collect();
    respond_later(request, async move {
        let mut results = Vec::with_capacity(answers.len());
        for (id, answer) in answers {
            results.push(
                AddPartitionsToTxnResult::default()
                    .with_transactional_id(id)
                    .with_topic_results(answer.await),
            );
        }
        AddPartitionsToTxnResponse::default().with_results_by_transaction(results)
    })
}

/// One transaction's partitions: unknown ones get UNKNOWN_TOPIC_OR_PARTITION and then
/// the rest OPERATION_NOT_ATTEMPTED, as Kafka answers; otherwise the coordinator's
/// answer applies to every partition (per partition when verifying).
#[allow(clippy::too_many_arguments)]
fn add_one(
    broker: &Broker,
    image: &MetadataImage,
    transactional_id: String,
    producer_id: i64,
    producer_epoch: i16,
    verify_only: bool,
    topics: Vec<AddPartitionsToTxnTopic>,
    knows_fenced: bool,
    knows_batches: bool,
    caller: &Caller,
) -> impl std::future::Future<Output = Vec<AddPartitionsToTxnTopicResult>> + Send + 'static {
    let mut partitions: Vec<(String, i32)> = Vec::new();
    let mut unknown = false;
    let mut shape: Vec<(TopicName, Vec<(i32, bool)>)> = Vec::new();
    for t in topics {
        let exists = image
            .topic(t.name.as_str())
            .map(|i| i.partitions.len() as i32);
        let mut ps = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let known = exists.is_some_and(|n| p >= 0 && p < n);
            unknown |= !known;
            if known {
                partitions.push((t.name.to_string(), p));
            }
            ps.push((p, known));
        }
        shape.push((t.name, ps));
    }
    // KafkaApis: WRITE on the transactional id, then on each topic (v4+ batches come
    // from brokers, which need CLUSTER_ACTION).
    let txn_denied = if knows_batches {
        !caller.allowed_on_cluster(op::CLUSTER_ACTION)
    } else {
        !caller.allowed_on_transactional_id(op::WRITE, &transactional_id)
    };
    let denied_topics: std::collections::HashSet<String> = shape
        .iter()
        .map(|(name, _)| name.to_string())
        .filter(|name| !knows_batches && !caller.allowed_on_topic(op::WRITE, name))
        .collect();
    let fill = move |codes: &dyn Fn(&str, i32, bool) -> i16| -> Vec<AddPartitionsToTxnTopicResult> {
        shape
            .iter()
            .map(|(name, ps)| {
                AddPartitionsToTxnTopicResult::default()
                    .with_name(name.clone())
                    .with_results_by_partition(
                        ps.iter()
                            .map(|(p, known)| {
                                AddPartitionsToTxnPartitionResult::default()
                                    .with_partition_index(*p)
                                    .with_partition_error_code(codes(name.as_str(), *p, *known))
                            })
                            .collect(),
                    )
            })
            .collect()
    };
    enum Pending<A, V> {
        Denied,
        Unknown,
        Add(A),
        Verify(V),
    }
    let pending = if txn_denied || !denied_topics.is_empty() {
        Pending::Denied
    } else if unknown {
        Pending::Unknown
    } else if verify_only {
        Pending::Verify(broker.txns.verify_partitions(
            transactional_id,
            producer_id,
            producer_epoch,
            partitions.clone(),
        ))
    } else {
        // Only brokers send v4+, and they add (rather than verify) partitions only
        // for transactions-v2 producers.
        Pending::Add(broker.txns.add_partitions(
            transactional_id,
            producer_id,
            producer_epoch,
            partitions.clone(),
            if knows_batches {
                TRANSACTION_VERSION_2
            } else {
                0
            },
        ))
    };
    async move {
        match pending {
            Pending::Denied => fill(&|t, _, _| {
                if txn_denied && knows_batches {
                    ResponseError::ClusterAuthorizationFailed.code()
                } else if txn_denied {
                    ResponseError::TransactionalIdAuthorizationFailed.code()
                } else if denied_topics.contains(t) {
                    ResponseError::TopicAuthorizationFailed.code()
                } else {
                    ResponseError::OperationNotAttempted.code()
                }
            }),
            Pending::Unknown => fill(&|_, _, known| {
                if known {
                    ResponseError::OperationNotAttempted.code()
                } else {
                    ResponseError::UnknownTopicOrPartition.code()
                }
            }),
            Pending::Add(answer) => {
                let code = match answer.await {
                    Ok(()) => 0,
                    Err(e) => txn_error_code(&e, knows_fenced),
                };
                fill(&|_, _, _| code)
            }
            Pending::Verify(answer) => match answer.await {
                Ok(each) => {
                    let codes: std::collections::HashMap<(String, i32), i16> = partitions
                        .into_iter()
                        .zip(each)
                        .map(|(p, r)| (p, r.map_or_else(|e| e.code(), |()| 0)))
                        .collect();
                    fill(&|t, p, _| codes.get(&(t.to_string(), p)).copied().unwrap_or(0))
                }
                Err(e) => {
                    let code = txn_error_code(&e, knows_fenced);
                    fill(&|_, _, _| code)
                }
            },
        }
    }
}
