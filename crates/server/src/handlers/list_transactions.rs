//! ListTransactions (key 66): the transactional ids this broker coordinates
//! (`kafka-transactions list`, Admin `listTransactions`), filtered by state, producer
//! id and (v1, KIP-994) by how long the transaction has been open. v2's id pattern is
//! not advertised.
//!
//! As Kafka's `KafkaApis.handleListTransactionsRequest`: only the transactional ids the
//! caller may DESCRIBE are listed; the others are left out without an error.

use std::sync::Arc;

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};
use ottla_protocol::frame::Request;
use ottla_txn::records::TransactionState as State;

use super::{decode, respond_later, str_bytes, HandlerError, Reply};
use crate::broker::Broker;
use crate::security::authorizer::{op, resource, Caller};

const STATES: [State; 8] = [
    State::Empty,
    State::Ongoing,
    State::PrepareCommit,
    State::PrepareAbort,
    State::CompleteCommit,
    State::CompleteAbort,
    State::Dead,
    State::PrepareEpochFence,
];

pub fn handle(
    broker: &Arc<Broker>,
    request: &Request,
    caller: &Caller,
) -> Result<Reply, HandlerError> {
    let req: ListTransactionsRequest = decode(request)?;
    let version = request.version();
    let mut wanted_states = Vec::new();
    let mut unknown_states = Vec::new();
    for f in &req.state_filters {
        match STATES.iter().find(|s| s.name() == f.as_str()) {
            Some(s) => wanted_states.push(*s),
            None => unknown_states.push(f.clone()),
        }
    }
    let producer_ids: Vec<i64> = req.producer_id_filters.iter().map(|p| p.0).collect();
    let duration = if version >= 1 {
        req.duration_filter
    } else {
        -1
    };
    let listed = broker.txns.list();
    let now = ottla_replica::partition::now_ms();
    let caller = caller.clone();
    respond_later(request, async move {
        let states = listed
            .await
            .into_iter()
            .filter(|m| req.state_filters.is_empty() || wanted_states.contains(&m.state))
            .filter(|m| producer_ids.is_empty() || producer_ids.contains(&m.producer_id))
            // Kafka: only transactions open at least `duration` ms (start time known).
            .filter(|m| duration < 0 || (m.start_ms >= 0 && now - m.start_ms >= duration))
            // Kafka: `logIfDenied = false`, a filter and not a refusal.
            .filter(|m| {
                caller.allowed_quietly(
                    op::DESCRIBE,
                    resource::TRANSACTIONAL_ID,
                    &m.transactional_id,
                )
            })
            .map(|m| {
                TransactionState::default()
                    .with_transactional_id(TransactionalId(str_bytes(m.transactional_id)))
                    .with_producer_id(ProducerId(m.producer_id))
                    .with_transaction_state(str_bytes(m.state.name()))
            })
            .collect();
        ListTransactionsResponse::default()
            .with_unknown_state_filters(unknown_states)
            .with_transaction_states(states)
    })
}
