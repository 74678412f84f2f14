//! DescribeTransactions (key 65): the coordinator's view of transactional ids
//! (`kafka-transactions describe`, Admin `describeTransactions`).
//!
//! As Kafka's `KafkaApis.handleDescribeTransactionsRequest`: each transactional id needs
//! DESCRIBE on it, else its entry carries TRANSACTIONAL_ID_AUTHORIZATION_FAILED and
//! nothing else; a described transaction lists only the topics the caller may DESCRIBE
//! (the others are left out without a word).

use std::sync::Arc;

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};
use kafka_protocol::ResponseError;
use ottla_protocol::frame::Request;

use super::{decode, respond_later, str_bytes, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, resource, Caller};

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: DescribeTransactionsRequest = decode(request)?;
    // `None` for an id the caller may not describe: the coordinator is not asked.
    let lookups: Vec<_> = req
        .transactional_ids
        .into_iter()
        .map(|id| {
            let described = caller
                .allowed_on_transactional_id(op::DESCRIBE, id.as_str())
                .then(|| broker.txns.describe(id.to_string()));
            (id, described)
        })
        .collect();
    let caller = caller.clone();
    respond_later(request, async move {
        let mut states = Vec::with_capacity(lookups.len());
        for (id, described) in lookups {
            let state = TransactionState::default().with_transactional_id(id);
            let Some(described) = described else {
                states.push(
                    state.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code()),
                );
                continue;
            };
            states.push(match described.await {
                Err(e) => state
                    .with_error_code(e.kafka_error_code())
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
                    .with_transaction_start_time_ms(-1),
                Ok(m) => {
                    let mut topics: Vec<TopicData> = Vec::new();
                    for (topic, p) in &m.partitions {
                        // Kafka: `logIfDenied = false`, a filter and not a refusal.
                        if !caller.allowed_quietly(op::DESCRIBE, resource::TOPIC, topic) {
                            continue;
                        }
                        match topics.last_mut() {
                            Some(t) if t.topic.as_str() == topic => t.partitions.push(*p),
                            _ => topics.push(
                                TopicData::default()
                                    .with_topic(TopicName(str_bytes(topic.clone())))
                                    .with_partitions(vec![*p]),
                            ),
                        }
                    }
                    state
                        .with_transaction_state(str_bytes(m.state.name()))
                        .with_transaction_timeout_ms(m.timeout_ms)
                        .with_transaction_start_time_ms(m.start_ms)
                        .with_producer_id(ProducerId(m.producer_id))
                        .with_producer_epoch(m.producer_epoch)
                        .with_topics(topics)
                }
            });
        }
        DescribeTransactionsResponse::default().with_transaction_states(states)
    })
}
